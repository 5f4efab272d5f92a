//! The `doctor` command: a center's embedded store checked in place (safe while the center
//! runs) — whole or damaged, its schema against this release's, what it keeps and since when,
//! the free space — and what to do about each.

use std::path::PathBuf;

use fleetcare_agent::{out, outln};

use crate::table;

const DAY_MS: i64 = 86_400_000;

fn age(now_ms: i64, at: Option<i64>) -> String {
    match at {
        None => "-".into(),
        Some(t) => format!("{} days", (now_ms - t).max(0) / DAY_MS),
    }
}

/// Run `doctor` on the embedded store in `data_dir`, or on the PostgreSQL database at
/// `database_url` (the data directory then holds only artifacts and secrets): problems make
/// the exit status non-zero.
pub async fn doctor(
    data_dir: PathBuf,
    database_url: Option<String>,
    full: bool,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut todo: Vec<String> = Vec::new();
    let found = if let Some(url) = database_url {
        let pg = fleetcare_store::doctor::inspect_postgres(&url, full).await?;
        outln!(
            "PostgreSQL{}",
            if pg.estimated {
                " (rows estimated from its statistics; --full counts them and checks every \
                 index with amcheck)"
            } else {
                ""
            }
        );
        partitions(&pg.partitions, now, &mut todo);
        pg.inspection
    } else {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || fleetcare_store::doctor::inspect_sqlite(&dir, full))
            .await??
    };
    // The data directory's file system: the whole store (embedded), or the artifacts.
    let free = fleetcare_fs::free_space(&data_dir).ok();
    report(&found, full, free, now, todo)
}

/// PostgreSQL's partitions: how many, how far ahead, what waits in the default partition.
fn partitions(
    found: &[fleetcare_store::doctor::PartitionSummary],
    now: i64,
    todo: &mut Vec<String>,
) {
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|p| {
            vec![
                p.table.clone(),
                p.ranges.to_string(),
                p.covered_until.map_or("-".into(), |u| {
                    format!("{} days ahead", (u - now).div_euclid(DAY_MS))
                }),
                p.default_rows.to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &["PARTITIONED", "PARTITIONS", "MADE UNTIL", "DEFAULT ROWS"],
            &rows
        )
    );
    for p in found {
        if p.covered_until.is_none_or(|u| u < now + DAY_MS) {
            todo.push(format!(
                "{}: no partition made for tomorrow (rows will go to its default partition): \
                 is a center running on this database? It makes them at start and every hour",
                p.table
            ));
        }
    }
}

fn report(
    found: &fleetcare_store::doctor::Inspection,
    full: bool,
    free: Option<u64>,
    now: i64,
    mut todo: Vec<String>,
) -> anyhow::Result<()> {
    let whole = found.integrity == ["ok"];
    outln!(
        "integrity ({}): {}",
        if full {
            "full check"
        } else {
            "quick check; --full reads every page"
        },
        found.integrity.join("; ")
    );
    if !whole {
        todo.push(
            "the database is damaged: stop the center and restore the newest backup \
             (fleetcare restore FILE --data-dir NEW)"
                .into(),
        );
    }
    let known = fleetcare_store::doctor::schema_version();
    outln!(
        "schema version {} (this release: {known})",
        found.schema_version
    );
    match found.schema_version.cmp(&known) {
        std::cmp::Ordering::Less => outln!("  the next `fleetcare serve` of this release migrates it (take a backup first)"),
        std::cmp::Ordering::Greater => todo.push(format!(
            "a newer release (schema {}) wrote this database: run that release, or restore a backup made by this one",
            found.schema_version
        )),
        std::cmp::Ordering::Equal => {}
    }
    outln!("database: {:.1} MB", found.bytes as f64 / 1e6);
    let rows: Vec<Vec<String>> = found
        .tables
        .iter()
        .map(|(t, n, oldest)| vec![t.clone(), n.to_string(), age(now, *oldest)])
        .collect();
    out!("{}", table::render(&["KEPT", "ROWS", "OLDEST"], &rows));
    for (t, _, oldest) in &found.tables {
        let limit = match t.as_str() {
            "reports" => Some(30 + 7),
            "error_events" => Some(180 + 7),
            _ => None,
        };
        if let (Some(days), Some(at)) = (limit, oldest)
            && now - at > days * DAY_MS
        {
            outln!(
                "  {t}: rows older than the default retention plus a week; if the tenant keeps \
                 them no longer (`fleetcare retention show`), the pruner is behind: is a center \
                 running on this store?"
            );
        }
    }
    match free {
        Some(f) => {
            outln!("free space: {:.1} GB", f as f64 / 1e9);
            if f < found.bytes / 2 || f < 1 << 30 {
                todo.push(format!(
                    "little free space ({:.1} GB for a {:.1} GB database): a full disk stops \
                     writes; make room, or shorten retention (fleetcare retention set reports DAYS)",
                    f as f64 / 1e9,
                    found.bytes as f64 / 1e9
                ));
            }
        }
        None => outln!("free space: unknown"),
    }
    if todo.is_empty() {
        outln!("nothing to do");
        Ok(())
    } else {
        for t in &todo {
            outln!("to do: {t}");
        }
        anyhow::bail!("{} problem(s) found", todo.len())
    }
}
