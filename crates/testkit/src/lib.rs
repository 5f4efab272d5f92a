//! Test helpers shared by the workspace. Used only as a dev-dependency; depends on no
//! Fleetcare crate, so every crate's tests can use it.
//!
//! * [`check`]: data-driven tests. Each file under a suite directory holds an input and the
//!   expected text, separated by `--- <section>` lines; `check` runs every file and compares
//!   the `expect` section. With `UPDATE_EXPECT=1` it rewrites the expected sections instead
//!   (review the diff before committing).
//! * [`eventually`]: wait for a condition, polling, up to a patience; the patience is
//!   multiplied by `FLEETCARE_TEST_PATIENCE` (default 1) on slow machines. A deadline that
//!   is itself the contract under test (say, "within 2 seconds") is not stretched: pass it
//!   to [`within`].
//! * [`mirror::Mirror`]: a mirror in front of a center that can serve tampered documents.

pub mod mirror;
pub mod receivers;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// The sections of one case file.
pub fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut body = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("--- ") {
            match name.replace(n.trim().to_owned()) {
                Some(prev) => {
                    out.insert(prev, std::mem::take(&mut body));
                }
                // Text before the first section describes the case.
                None => body.clear(),
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some(prev) = name {
        out.insert(prev, body);
    }
    out
}

/// Run every case file in `dir` through `run` and compare with its `expect` section.
pub fn check(dir: &Path, run: impl Fn(&BTreeMap<String, String>) -> String) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("suite dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("case file");
        let s = sections(&text);
        let actual = run(&s);
        let expected = s.get("expect").cloned().unwrap_or_default();
        if actual.trim_end() == expected.trim_end() {
            continue;
        }
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            let head = text.split("--- expect").next().unwrap_or(&text);
            std::fs::write(&file, format!("{head}--- expect\n{}\n", actual.trim_end()))
                .expect("write");
        } else {
            failures.push(format!(
                "{}:\n--- expected\n{}\n--- actual\n{}",
                file.display(),
                expected.trim_end(),
                actual.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The patience multiplier from `FLEETCARE_TEST_PATIENCE` (default 1).
pub fn patience_factor() -> u32 {
    std::env::var("FLEETCARE_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Poll `probe` every 20 ms until it returns `Some`, for at most `patience` (times the
/// patience factor). Panics naming `what` when it never does.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, patience * patience_factor(), probe).await
}

/// Like [`eventually`], but the deadline is exact: it is the contract being tested.
pub async fn within<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!(
                "{what}: not true after {:?} ({tries} tries)",
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_on_markers() {
        let s = sections("--- a\none\ntwo\n--- b\nthree\n");
        assert_eq!(s["a"], "one\ntwo\n");
        assert_eq!(s["b"], "three\n");
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value_and_gives_up_loudly() {
        let mut n = 0;
        let v = eventually("counts to 3", Duration::from_secs(5), || {
            n += 1;
            let v = (n >= 3).then_some(n);
            async move { v }
        })
        .await;
        assert_eq!(v, 3);
        let failed = tokio::spawn(within("never", Duration::from_millis(50), || async {
            None::<()>
        }))
        .await;
        assert!(failed.is_err(), "a condition that never holds panics");
    }
}
