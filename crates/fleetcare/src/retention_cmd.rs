//! The `retention` command: how long the tenant keeps each kind of data.

use fleetcare_agent::{out, outln};
use fleetcare_wire::retention::{Retention, SetRetention};

use crate::table;
use crate::{Remote, print_json};

#[derive(clap::Subcommand)]
pub enum RetentionCmd {
    /// Days each kind of data is kept (0: forever).
    Show,
    /// Keep a kind of data (`reports`, `error_events`) for so many days; 0 keeps it forever.
    Set { kind: String, days: u64 },
}

fn print(r: &Retention) {
    let rows: Vec<Vec<String>> = r
        .kinds
        .iter()
        .map(|k| {
            let days = |d: u64| {
                if d == 0 {
                    "forever".to_owned()
                } else {
                    format!("{d} days")
                }
            };
            vec![k.kind.clone(), days(k.days), days(k.default_days)]
        })
        .collect();
    out!("{}", table::render(&["KIND", "KEPT", "DEFAULT"], &rows));
}

/// Run a `retention` subcommand.
pub async fn retention(c: RetentionCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    let r: Retention = match c {
        RetentionCmd::Show => api.get("/api/v1/retention").await?,
        RetentionCmd::Set { kind, days } => {
            api.put("/api/v1/retention", &SetRetention { kind, days })
                .await?
        }
    };
    if remote.json {
        return print_json(&r);
    }
    print(&r);
    Ok(())
}

/// Milliseconds at midnight UTC of a `YYYY-MM-DD` date.
fn date_ms(date: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("{date:?}: not a date (YYYY-MM-DD)");
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(fleetcare_core::meters::days_from_civil(y, m, d) * 86_400_000)
}

/// Lines read from the store at a time while archiving.
const ARCHIVE_PAGE: u32 = 10_000;

/// `audit-archive`: the oldest lines of the audit log, appended before `before`, written to
/// `out` (JSON lines, mode 0600, fsynced) and then, recorded with the file's SHA-256 in
/// `audit_archives`, deleted from the store. An archive interrupted before its lines were
/// deleted is finished first, so no line lands in two files.
pub async fn audit_archive(
    store: fleetcare_store::Store,
    before: &str,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use sha2::Digest;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let before_ms = date_ms(before)?;
    let finished = store.delete_archived_audit().await?;
    if finished > 0 {
        outln!("finished an earlier archive: {finished} line(s) it holds deleted");
    }
    if out.exists() {
        anyhow::bail!("{} exists: an archive is never overwritten", out.display());
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    let mut w = std::io::BufWriter::new(file);
    let mut hash = sha2::Sha256::new();
    let (mut after, mut lines) = (0u64, 0u64);
    loop {
        let page = store
            .audit_to_archive(after, before_ms, ARCHIVE_PAGE)
            .await?;
        for (tenant, l) in &page {
            let mut line = serde_json::to_vec(&serde_json::json!({
                "id": l.id, "tenant_id": tenant, "at_ms": l.at_ms, "actor": l.actor,
                "role": l.role, "action": l.action, "method": l.method, "path": l.path,
                "status": l.status, "outcome": l.outcome, "detail": l.detail,
                "source": l.source,
            }))?;
            line.push(b'\n');
            hash.update(&line);
            w.write_all(&line)?;
            after = l.id;
            lines += 1;
        }
        if page.len() < ARCHIVE_PAGE as usize {
            break;
        }
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    if lines == 0 {
        std::fs::remove_file(&partial)?;
        outln!("no line of the audit log was appended before {before}: nothing to archive");
        return Ok(());
    }
    std::fs::rename(&partial, out)?;
    fleetcare_fs::sync_dir(
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new(".")),
    )?;
    let sha256 = fleetcare_core::secret::hex(&hash.finalize());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let deleted = store
        .archive_audit(&fleetcare_store::AuditArchive {
            through_id: after,
            lines,
            sha256: sha256.clone(),
            name: out.display().to_string(),
            at_ms: now,
        })
        .await?;
    store
        .append_audit(
            &fleetcare_store::NewAudit {
                tenant: None,
                actor: Some("fleetcare audit-archive".into()),
                role: None,
                action: "audit.archive".into(),
                method: "-".into(),
                path: "-".into(),
                status: 0,
                outcome: "ok".into(),
                detail: Some(format!(
                    "{lines} line(s) through {after} to {} (sha256 {sha256})",
                    out.display()
                )),
                source: None,
            },
            now,
        )
        .await?;
    outln!(
        "archived {lines} line(s) of the audit log (through line {after}, appended before \
         {before}) to {}, sha256 {sha256}; {deleted} deleted from the store",
        out.display()
    );
    Ok(())
}
