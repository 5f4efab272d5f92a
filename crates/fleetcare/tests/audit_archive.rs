//! `fleetcare audit-archive` with the real binaries, while the center runs: the oldest lines
//! of the audit log move to a file whose SHA-256 the store records, leave the store, and the
//! next archive starts where the last one ended.

mod common;

use common::{cli, read_secret, serve};
use sha2::Digest;

fn archive(data: &std::path::Path, before: &str, out: &std::path::Path) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(["audit-archive", "--before", before, "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .expect("fleetcare runs");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

async fn audit(url: &str, token: &str) -> Vec<serde_json::Value> {
    let (ok, out, err) = cli(url, token, &["audit", "--json", "--limit", "500"]).await;
    assert!(ok, "{err}");
    let log: serde_json::Value = serde_json::from_str(&out).expect("json");
    log["entries"].as_array().expect("entries").clone()
}

/// Lines of a JSON-lines file, and the file's SHA-256.
fn read_archive(path: &std::path::Path) -> (Vec<serde_json::Value>, String) {
    let bytes = std::fs::read(path).expect("archive");
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    (
        lines,
        fleetcare_core::secret::hex(&sha2::Sha256::digest(&bytes)),
    )
}

#[tokio::test]
async fn the_oldest_audit_lines_move_to_a_file_and_leave_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    for name in ["one", "two", "three"] {
        let (ok, _, err) = cli(
            &url,
            &token,
            &["tokens", "create", name, "--role", "viewer"],
        )
        .await;
        assert!(ok, "{err}");
    }
    let before = audit(&url, &token).await;
    assert!(before.len() >= 3, "{before:?}");

    // Tomorrow (UTC): every line so far was appended before it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let (y, m, d) = fleetcare_core::meters::civil_date(now + 86_400_000);
    let tomorrow = format!("{y:04}-{m:02}-{d:02}");
    let first = dir.path().join("audit-1.jsonl");
    let (ok, said) = archive(&data, &tomorrow, &first);
    assert!(ok, "{said}");
    let (lines, sha) = read_archive(&first);
    assert!(said.contains(&format!("sha256 {sha}")), "{said}");
    assert!(lines.len() >= before.len(), "{said}");
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "token.create").count(),
        3,
        "{actions:?}"
    );
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()),
        "oldest first"
    );
    // Gone from the store: the tenant's log holds only what came after.
    let after = audit(&url, &token).await;
    assert!(
        after.iter().all(|e| e["action"] != "token.create"),
        "{after:?}"
    );
    // An archive is never overwritten.
    let (ok, said) = archive(&data, &tomorrow, &first);
    assert!(!ok && said.contains("never overwritten"), "{said}");

    // The next archive starts after the last: the lines since, and the first archive's own
    // line, none twice.
    let (ok, _, err) = cli(
        &url,
        &token,
        &["tokens", "create", "four", "--role", "viewer"],
    )
    .await;
    assert!(ok, "{err}");
    let second = dir.path().join("audit-2.jsonl");
    let (ok, said) = archive(&data, &tomorrow, &second);
    assert!(ok, "{said}");
    let (next, _) = read_archive(&second);
    let last_id = lines.last().expect("a line")["id"].as_u64();
    assert!(next.iter().all(|l| l["id"].as_u64() > last_id), "{next:?}");
    assert!(
        next.iter().any(|l| l["action"] == "audit.archive"),
        "{next:?}"
    );
    assert!(
        next.iter().any(|l| l["action"] == "token.create"),
        "{next:?}"
    );
    // Bad input changes nothing.
    let (ok, said) = archive(&data, "2026-13-01", &dir.path().join("x.jsonl"));
    assert!(!ok && said.contains("not a date"), "{said}");
    assert!(!dir.path().join("x.jsonl").exists());
    served.terminate().await;
}
