//! Backup and restore of the embedded store (see ARCHITECTURE.md, "Data lifecycle: backup and
//! restore"). A backup is one file, itself a SQLite database: a consistent snapshot of the
//! store taken while the center runs (`VACUUM INTO`, one read transaction), plus the artifact
//! files the snapshot names (chunked blobs), the data directory's secret files, and what made
//! it. A restore rebuilds a data directory from it, checking every artifact's SHA-256.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::sqlite::DB_FILE;

/// Marks every error-log watermark of a restored store (see `restored_watermarks`).
pub const MARK_RESTORED: &str = "INSERT INTO restored_watermarks (tenant_id, device_id, boot_epoch) \
     SELECT tenant_id, device_id, boot_epoch FROM error_watermarks WHERE true \
     ON CONFLICT (tenant_id, device_id, boot_epoch) DO NOTHING";

/// What a backup file says it is.
const FORMAT: &str = "fleetcare-backup-1";
/// Bytes of an artifact per row of the backup.
const CHUNK: usize = 8 << 20;
/// The data directory's secret files a backup carries (a backup is as secret as they are).
pub const SECRET_FILES: &[&str] = &["admin-token", "enrollment-key"];

/// What a backup or a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupSummary {
    /// Bytes of the store's snapshot.
    pub store_bytes: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    /// Artifacts the store names whose file was missing (listed in the backup, not held).
    pub missing: Vec<String>,
    pub files: Vec<String>,
    /// The schema version of the store in the backup.
    pub schema_version: i64,
}

fn err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

fn artifact_path(artifacts: &Path, sha256: &str) -> PathBuf {
    artifacts.join("sha256").join(&sha256[..2]).join(sha256)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Back up the embedded store in `data_dir` (and the artifacts under `artifacts`) to `out`,
/// which must not exist. Safe while the center runs: the snapshot is one read transaction.
pub fn backup_sqlite(
    data_dir: &Path,
    artifacts: &Path,
    out: &Path,
) -> std::io::Result<BackupSummary> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(err(
            "backup",
            format!("{} holds no embedded store ({DB_FILE})", data_dir.display()),
        ));
    }
    if out.exists() {
        return Err(err("backup", format!("{} exists already", out.display())));
    }
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let result = write_backup(data_dir, &db, artifacts, &tmp);
    match result {
        Ok(summary) => {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, out)?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fleetcare_fs::sync_dir(parent)?;
            }
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_backup(
    data_dir: &Path,
    db: &Path,
    artifacts: &Path,
    tmp: &Path,
) -> std::io::Result<BackupSummary> {
    let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| err("opening the store", e))?;
    src.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| err("opening the store", e))?;
    src.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])
        .map_err(|e| err("taking the snapshot", e))?;
    drop(src);
    let mut summary = BackupSummary {
        store_bytes: std::fs::metadata(tmp)?.len(),
        ..BackupSummary::default()
    };
    let mut out = Connection::open(tmp).map_err(|e| err("opening the backup", e))?;
    let tx = out
        .transaction()
        .map_err(|e| err("writing the backup", e))?;
    tx.execute_batch(
        "CREATE TABLE backup_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE backup_artifacts (sha256 TEXT NOT NULL, part INTEGER NOT NULL,
             bytes BLOB NOT NULL, PRIMARY KEY (sha256, part));
         CREATE TABLE backup_missing (sha256 TEXT PRIMARY KEY);
         CREATE TABLE backup_files (name TEXT PRIMARY KEY, bytes BLOB NOT NULL);",
    )
    .map_err(|e| err("writing the backup", e))?;
    summary.schema_version = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM fleetcare_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| err("reading the schema version", e))?;
    let hashes: Vec<String> = {
        let mut q = tx
            .prepare("SELECT DISTINCT sha256 FROM artifacts ORDER BY sha256")
            .map_err(|e| err("listing artifacts", e))?;
        q.query_map([], |r| r.get(0))
            .map_err(|e| err("listing artifacts", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err("listing artifacts", e))?
    };
    for sha in hashes.iter().filter(|h| is_sha256(h)) {
        let path = artifact_path(artifacts, sha);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(_) => {
                tx.execute("INSERT INTO backup_missing (sha256) VALUES (?1)", [sha])
                    .map_err(|e| err("writing the backup", e))?;
                summary.missing.push(sha.clone());
                continue;
            }
        };
        let mut buf = vec![0u8; CHUNK];
        let mut part = 0i64;
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                let n = file.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 && part > 0 {
                break;
            }
            tx.execute(
                "INSERT INTO backup_artifacts (sha256, part, bytes) VALUES (?1, ?2, ?3)",
                rusqlite::params![sha, part, &buf[..filled]],
            )
            .map_err(|e| err("writing the backup", e))?;
            summary.artifact_bytes += filled as u64;
            part += 1;
            if filled < CHUNK {
                break;
            }
        }
        summary.artifacts += 1;
    }
    for name in SECRET_FILES {
        if let Ok(bytes) = std::fs::read(data_dir.join(name)) {
            tx.execute(
                "INSERT INTO backup_files (name, bytes) VALUES (?1, ?2)",
                rusqlite::params![name, bytes],
            )
            .map_err(|e| err("writing the backup", e))?;
            summary.files.push((*name).to_owned());
        }
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (k, v) in [
        ("format", FORMAT.to_owned()),
        ("fleetcare_version", env!("CARGO_PKG_VERSION").to_owned()),
        ("schema_version", summary.schema_version.to_string()),
        ("created_at_unix_s", created.to_string()),
    ] {
        tx.execute(
            "INSERT INTO backup_meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![k, v],
        )
        .map_err(|e| err("writing the backup", e))?;
    }
    tx.commit().map_err(|e| err("writing the backup", e))?;
    Ok(summary)
}

/// Rebuild a data directory from a backup: the store, every artifact (its SHA-256 checked),
/// the secret files. `data_dir` must hold no store; nothing is left behind on failure but the
/// files already checked.
pub fn restore_sqlite(
    backup: &Path,
    data_dir: &Path,
    artifacts: &Path,
) -> std::io::Result<BackupSummary> {
    if data_dir.join(DB_FILE).exists() {
        return Err(err(
            "restore",
            format!(
                "{} holds a store already; restore into a new data directory",
                data_dir.display()
            ),
        ));
    }
    {
        let b = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| err("opening the backup", e))?;
        let format: Option<String> = b
            .query_row(
                "SELECT value FROM backup_meta WHERE key = 'format'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|_| {
                err(
                    "restore",
                    format!("{} is not a Fleetcare backup", backup.display()),
                )
            })?;
        if format.as_deref() != Some(FORMAT) {
            return Err(err(
                "restore",
                format!(
                    "{} is not a Fleetcare backup of a format this release reads ({FORMAT})",
                    backup.display()
                ),
            ));
        }
    }
    fleetcare_fs::create_private_dir(data_dir)?;
    let work = data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(backup, &work)?;
    let result = restore_from(&work, data_dir, artifacts);
    match result {
        Ok(summary) => {
            std::fs::File::open(&work)?.sync_all()?;
            std::fs::rename(&work, data_dir.join(DB_FILE))?;
            fleetcare_fs::sync_dir(data_dir)?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&work);
            Err(e)
        }
    }
}

fn restore_from(work: &Path, data_dir: &Path, artifacts: &Path) -> std::io::Result<BackupSummary> {
    let conn = Connection::open(work).map_err(|e| err("opening the backup", e))?;
    let mut summary = BackupSummary {
        schema_version: conn
            .query_row(
                "SELECT value FROM backup_meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .map_err(|e| err("reading the backup", e))?
            .parse()
            .unwrap_or(0),
        ..BackupSummary::default()
    };
    let hashes: Vec<String> = {
        let mut q = conn
            .prepare("SELECT DISTINCT sha256 FROM backup_artifacts ORDER BY sha256")
            .map_err(|e| err("reading the backup", e))?;
        q.query_map([], |r| r.get(0))
            .map_err(|e| err("reading the backup", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err("reading the backup", e))?
    };
    for sha in &hashes {
        if !is_sha256(sha) {
            return Err(err(
                "restore",
                format!("artifact name {sha:?} is not a SHA-256"),
            ));
        }
        let dest = artifact_path(artifacts, sha);
        let parent = dest.parent().expect("an artifact path has a parent");
        std::fs::create_dir_all(parent)?;
        let tmp = dest.with_extension("restoring");
        let mut file = std::fs::File::create(&tmp)?;
        let mut hasher = Sha256::new();
        let mut q = conn
            .prepare("SELECT bytes FROM backup_artifacts WHERE sha256 = ?1 ORDER BY part")
            .map_err(|e| err("reading the backup", e))?;
        let mut rows = q.query([sha]).map_err(|e| err("reading the backup", e))?;
        while let Some(row) = rows.next().map_err(|e| err("reading the backup", e))? {
            let bytes: Vec<u8> = row.get(0).map_err(|e| err("reading the backup", e))?;
            hasher.update(&bytes);
            file.write_all(&bytes)?;
            summary.artifact_bytes += bytes.len() as u64;
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if &got != sha {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(err(
                "restore",
                format!("artifact {sha} in the backup hashes to {got}: the backup is damaged"),
            ));
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        fleetcare_fs::sync_dir(parent)?;
        summary.artifacts += 1;
    }
    {
        let mut q = conn
            .prepare("SELECT sha256 FROM backup_missing ORDER BY sha256")
            .map_err(|e| err("reading the backup", e))?;
        summary.missing = q
            .query_map([], |r| r.get(0))
            .map_err(|e| err("reading the backup", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err("reading the backup", e))?;
    }
    {
        let mut q = conn
            .prepare("SELECT name, bytes FROM backup_files ORDER BY name")
            .map_err(|e| err("reading the backup", e))?;
        let files: Vec<(String, Vec<u8>)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| err("reading the backup", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err("reading the backup", e))?;
        for (name, bytes) in files {
            if !SECRET_FILES.contains(&name.as_str()) {
                continue;
            }
            fleetcare_fs::write_atomic(&data_dir.join(&name), &bytes, fleetcare_fs::Mode::Private)?;
            summary.files.push(name);
        }
    }
    conn.execute_batch(
        "DROP TABLE backup_artifacts; DROP TABLE backup_missing; DROP TABLE backup_files; \
         DROP TABLE backup_meta;",
    )
    .map_err(|e| err("finishing the store", e))?;
    // Devices acknowledged error events after the backup and deleted them: each epoch's next
    // batch moves its watermark over the gap (a store of an older schema gets its marks when
    // the center migrates it: none, then; the first batch waits for no gap it cannot fill).
    if conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'restored_watermarks'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(|e| err("finishing the store", e))?
        .is_some()
    {
        conn.execute(MARK_RESTORED, [])
            .map_err(|e| err("finishing the store", e))?;
    }
    conn.execute_batch("VACUUM;")
        .map_err(|e| err("finishing the store", e))?;
    summary.store_bytes = std::fs::metadata(work)?.len();
    Ok(summary)
}
