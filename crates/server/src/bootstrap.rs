//! First start: the data dir, the default tenant, and the two secrets an operator needs to
//! begin — `admin-token` (operator API) and `enrollment-key` (agents) — written with mode 0600.
//!
//! The files are the source of truth: on every start each file's secret is registered in the
//! store if it is not there yet (a new PostgreSQL database, say). A secret is registered in
//! the store before its file is written, so a crash between the two leaves an unused hash,
//! never a file whose secret the center does not know.

use std::path::{Path, PathBuf};

use fleetcare_core::secret::{self, SecretKind};
use fleetcare_fs::{Mode, write_atomic};
use fleetcare_store::{Store, TenantId};

use crate::ServeError;

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const ENROLLMENT_KEY_FILE: &str = "enrollment-key";

/// What bootstrap found or made.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub tenant: TenantId,
    pub admin_token: String,
    pub admin_token_path: PathBuf,
    pub enrollment_key: String,
    pub enrollment_key_path: PathBuf,
    /// `true` when this start wrote the files.
    pub created: bool,
}

pub async fn run(
    store: &Store,
    data_dir: &Path,
    tenant_name: &str,
    now_ms: i64,
) -> Result<Bootstrap, ServeError> {
    let tenant = store.ensure_tenant(tenant_name, now_ms).await?;
    let admin_token_path = data_dir.join(ADMIN_TOKEN_FILE);
    let enrollment_key_path = data_dir.join(ENROLLMENT_KEY_FILE);
    let (admin_token, made_token) = secret_file(&admin_token_path, SecretKind::Operator)?;
    store
        .add_operator_token(
            tenant,
            "admin",
            "admin",
            &secret::hash(&admin_token),
            now_ms,
        )
        .await?;
    let (enrollment_key, made_key) = secret_file(&enrollment_key_path, SecretKind::Enrollment)?;
    store
        .add_enrollment_key(tenant, &secret::hash(&enrollment_key), now_ms)
        .await?;
    if made_token {
        write_secret(&admin_token_path, &admin_token)?;
    }
    if made_key {
        write_secret(&enrollment_key_path, &enrollment_key)?;
    }
    Ok(Bootstrap {
        tenant,
        admin_token,
        admin_token_path,
        enrollment_key,
        enrollment_key_path,
        created: made_token || made_key,
    })
}

/// The secret in `path`, or a fresh one (`true`) to be written once it is registered.
fn secret_file(path: &Path, kind: SecretKind) -> Result<(String, bool), ServeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let s = text.trim().to_owned();
            if s.is_empty() {
                return Err(ServeError::Bootstrap(format!(
                    "{} is empty; delete it to have a new secret made",
                    path.display()
                )));
            }
            Ok((s, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((secret::generate(kind), true)),
        Err(e) => Err(ServeError::Bootstrap(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

fn write_secret(path: &Path, secret: &str) -> Result<(), ServeError> {
    write_atomic(path, format!("{secret}\n").as_bytes(), Mode::Private)
        .map_err(|e| ServeError::Bootstrap(format!("writing {}: {e}", path.display())))
}
