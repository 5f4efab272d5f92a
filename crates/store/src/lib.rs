//! Fleetcare's store: one interface ([`Store`]), two backends.
//!
//! * [`sqlite`]: embedded SQLite in WAL mode. One writer thread owns the only write
//!   connection and commits in groups: every write waits in a queue, the writer takes all that
//!   are waiting, runs each in its own savepoint, commits once with `synchronous=FULL`, and only
//!   then answers them. A write is acknowledged only once durable; one fsync covers a whole
//!   group. Automatic checkpoints are off; a checkpointer thread runs passive checkpoints
//!   every second and a truncating one at shutdown, so WAL growth and checkpoint pauses are
//!   under our control. Reads use a small pool of read connections.
//! * [`postgres`]: PostgreSQL through sqlx; each write is one transaction.
//!
//! Both speak the same SQL (written with `$N` placeholders) and are held to one conformance
//! suite (`tests/conformance.rs`). Every row carries a tenant. Store methods are written once,
//! as statements run through the small executor in `exec` (`Store::run`, `Store::select`),
//! with one decode function per record; only storing a report, closing and the integrity
//! check are written per backend (see `dispatch!`).

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod billing;
pub mod cluster;
pub mod compat;
pub mod ddi;
pub mod delivery;
pub mod doctor;
pub mod errors;
mod exec;
pub mod fleet;
mod migrate;
pub mod notices;
pub mod notify;
pub mod operating;
pub mod partitions;
pub mod postgres;
pub mod retention;
pub mod rollouts;
pub mod sqlite;
pub mod tenants;
pub mod testing;
pub mod troubles;
pub mod tuf;
pub mod units;

use std::collections::BTreeMap;
use std::path::Path;

use crate::exec::{Guard, Stmt, Ty};
pub use accounts::{AccountRecord, StoredAccount};
pub use audit::{AuditArchive, AuditRecord, NewAudit, TOKEN_ID_LEN, TokenRecord};
pub use compat::{
    CatalogRevision, FindingRecord, FindingRow, JobEventRecord, JobFilter, JobRecord, Judgement,
    NewJob, NewNotification, NotificationRecord, PolicyRecord, Rejudged, StructureRow,
    TERMINAL_JOB_STATES, Transition,
};
pub use ddi::{DdiAction, DdiDevice};
pub use delivery::{KeyListRecord, ReleaseRecord};
pub use errors::{ErrorBatchStored, ErrorEventRecord, ErrorSchedule, NewErrorEvent};
use fleetcare_core::{DeviceId, Structure};
use fleetcare_wire::Trigger;
use fleetcare_wire::operator::Change;
pub use partitions::{Horizons, PartitionInfo, PartitionWork};
pub use retention::{MAX_RETENTION_DAYS, PruneWork, RETENTION_KINDS};
pub use rollouts::{
    DeviceCondition, FinishedJob, LabelRecord, NewRollout, NewRolloutDevice, RolloutDeviceRecord,
    RolloutMove, RolloutRecord, SiteRecord, WaveRecord,
};
pub use tenants::{CustomerRecord, MAX_CUSTOMER_NAME};
pub use troubles::{
    AbnormalRecord, NewTrouble, RuleSetRecord, SettingRecord, TroubleFilter, TroubleRecord,
    TroubleRecurrence,
};

/// A tenant's row id.
pub type TenantId = i64;

/// The tenant every first start creates.
pub const DEFAULT_TENANT: &str = "default";

/// A device, as every query names it: within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    pub tenant: TenantId,
    pub device_id: DeviceId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub tenant: TenantId,
    pub name: String,
    pub role: String,
}

/// A structure report, validated, to be stored.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub key: DeviceKey,
    pub seq: u64,
    pub trigger: Trigger,
    pub observed_at_ms: i64,
    pub received_at_ms: i64,
    pub structure: Structure,
    pub operating: BTreeMap<String, f64>,
    /// Supplies with their levels (their identities are in `structure` too).
    pub supplies: Vec<fleetcare_wire::Supply>,
    /// The structure's judgement against the tenant's catalog, if it has one: stored with the
    /// report when the report becomes the device's current structure and the findings differ
    /// from those stored.
    pub judgement: Option<Judgement>,
    /// Why the device cannot install software, as the report says (`None`: it can).
    pub install_blocked: Option<String>,
}

/// The outcome of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// Enrolled; the center's reporting interval for the device, if set.
    Enrolled { report_interval_s: Option<u64> },
    /// The device id is enrolled already and nothing admitted a new enrollment.
    Refused,
}

/// What storing a report did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// Stored before (a retry); nothing changed now.
    pub duplicate: bool,
    /// Structure changes recorded.
    pub changes: u32,
    /// The center's reporting interval for this device, if set.
    pub report_interval_s: Option<u64>,
    /// The report is now the device's current structure (it was the newest).
    pub current: bool,
    /// The stored findings changed with this report.
    pub findings_changed: bool,
    /// Supplies whose state changed with this report, or that are new cartridges.
    pub supply_changes: Vec<SupplyChange>,
    /// The report opened its device's UTC day in the operating history (its first of the
    /// day): what judges history once a day does it then.
    pub keyframe: bool,
}

/// A supply whose state changed with a report (or a new cartridge in its slot), with what a
/// person needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplyChange {
    pub slot: String,
    pub kind: fleetcare_wire::SupplyKind,
    pub color: Option<String>,
    pub part_number: Option<String>,
    pub level_pct: Option<f64>,
    /// Its state before (`None`: the slot is new).
    pub was: Option<fleetcare_wire::SupplyState>,
    pub now: fleetcare_wire::SupplyState,
    /// Another serial or part number than before: a new cartridge.
    pub replaced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMeta {
    pub seq: u64,
    pub trigger: Trigger,
    pub received_at_ms: i64,
    pub observed_at_ms: i64,
}

/// A device as `devices list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub device_id: String,
    pub model: String,
    pub units: u32,
    pub last_report: Option<ReportMeta>,
}

/// Everything the store knows of one device's present.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub model: String,
    pub enrolled_at_ms: i64,
    pub last_report: Option<ReportMeta>,
    pub structure: Option<Structure>,
    pub structure_changed_at_ms: Option<i64>,
    pub operating: BTreeMap<String, f64>,
    /// Supplies with their levels, as the newest report said.
    pub supplies: Vec<fleetcare_wire::Supply>,
    pub report_interval_s: Option<u64>,
    /// `compatible`, `software`, `hardware`, `unknown`; `None` until judged.
    pub compat_state: Option<String>,
    /// Why the device cannot install software, as its newest report said (`None`: it can).
    pub install_blocked: Option<String>,
}

/// One structure change, with the report that showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub seq: u64,
    pub trigger: Trigger,
    pub observed_at_ms: i64,
    pub received_at_ms: i64,
    pub change: Change,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("opening the store at {at}: {reason}")]
    Open { at: String, reason: String },
    #[error("migrating the schema: {0}")]
    Migrate(String),
    #[error("database: {0}")]
    Db(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    /// A write found no room (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`): nothing of it
    /// was stored.
    #[error("the disk is full: {0}")]
    DiskFull(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(e.to_string()),
            _ => StoreError::Db(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // 53100: disk_full.
        match e.as_database_error().and_then(|d| d.code()).as_deref() {
            Some("53100") => StoreError::DiskFull(e.to_string()),
            _ => StoreError::Db(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store: one interface over both backends.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend())
    }
}

/// The few methods each backend writes for itself, because what they do is the backend's own:
/// storing a report (the hot path — SQLite's writer thread runs it synchronously inside its
/// group commit with cached statements, PostgreSQL locks the device row and groups reports
/// in one transaction; the decisions both make are shared: [`is_newest`],
/// [`needs_old_structure`], [`ingest_rows`]), closing, and the integrity check. Every other
/// method is written once, over [`exec`].
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Embedded SQLite in `dir` (created if missing), migrated.
    pub async fn open_sqlite(dir: &Path) -> Result<Store> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(dir).await?))
    }

    /// PostgreSQL at `url`, migrated.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        Ok(Store::Postgres(postgres::PgStore::open(url).await?))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Commits that stored several writes at once: the embedded store's group commits, or
    /// PostgreSQL's grouped report transactions.
    pub fn group_commits(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.group_commits(),
            Store::Postgres(p) => p.group_commits(),
        }
    }

    /// The tenant's id, creating it if it does not exist.
    pub async fn ensure_tenant(&self, name: &str, now_ms: i64) -> Result<TenantId> {
        self.run(
            vec![Stmt::new(
                sql::INSERT_TENANT,
                vec![name.into(), now_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        self.tenant_id(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("tenant {name} vanished")))
    }

    /// Register an operator token by its hash; `false` (and nothing changed) if the hash is
    /// registered already, revoked or not.
    pub async fn add_operator_token(
        &self,
        tenant: TenantId,
        name: &str,
        role: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            sql::INSERT_OPERATOR_TOKEN,
            vec![
                token_hash.into(),
                tenant.into(),
                name.into(),
                role.into(),
                now_ms.into(),
            ],
        ))
        .await
    }

    /// The operator a token hash belongs to, unless unknown or revoked.
    /// The operator a live token or session belongs to (a session lapses at its expiry).
    pub async fn operator_by_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Operator>> {
        let rows = self
            .select(
                exec::sql(sql::OPERATOR_BY_TOKEN),
                vec![token_hash.into(), now_ms.into()],
                &[Ty::Int, Ty::Text, Ty::Text],
            )
            .await?;
        rows.first().map(|r| operator(r)).transpose()
    }

    /// Register an enrollment key by its hash; `false` (and nothing changed) if the hash is
    /// registered already.
    pub async fn add_enrollment_key(
        &self,
        tenant: TenantId,
        key_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            sql::INSERT_ENROLLMENT_KEY,
            vec![key_hash.into(), tenant.into(), now_ms.into()],
        ))
        .await
    }

    /// The tenant an enrollment key hash admits devices to, unless unknown or revoked.
    pub async fn enrollment_tenant(&self, key_hash: &str) -> Result<Option<TenantId>> {
        let rows = self
            .select(
                exec::sql(sql::ENROLLMENT_TENANT),
                vec![key_hash.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| r[0].int()).transpose()
    }

    /// Enroll a device. A device id not enrolled yet is always admitted. An enrolled one is
    /// enrolled again only if `current_credential_hash` is its current (unrevoked) credential,
    /// or an operator allowed it ([`Store::allow_reenroll`]) until at least `now_ms`; then the
    /// new credential replaces the old one, which stops working at once, report sequence
    /// numbers start again (a new generation), and the allowance is used up.
    pub async fn enroll_device(
        &self,
        key: &DeviceKey,
        model: &str,
        credential_hash: &str,
        current_credential_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<Enrollment> {
        let out = self
            .run(
                vec![Stmt::returning(
                    sql::ENROLL,
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        model.into(),
                        credential_hash.into(),
                        now_ms.into(),
                        current_credential_hash.unwrap_or_default().into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        // ENROLL returns the interval plus one, so that 0 (no row) means refused.
        Ok(match out.first().copied().unwrap_or(0) {
            0 => Enrollment::Refused,
            1 => Enrollment::Enrolled {
                report_interval_s: None,
            },
            n => Enrollment::Enrolled {
                report_interval_s: Some(n - 1),
            },
        })
    }

    /// Revoke a device's credential: it stops working at once, and the device can enroll
    /// again only after [`Store::allow_reenroll`]. `false` if the device is unknown.
    pub async fn revoke_device(&self, key: &DeviceKey, now_ms: i64) -> Result<bool> {
        self.changed_one(Stmt::new(sql::REVOKE, device_params(key, now_ms.into())))
            .await
    }

    /// Allow one new enrollment of an enrolled device id until `until_ms` (a device that
    /// lost its credential, or a replaced controller). `false` if the device is unknown.
    pub async fn allow_reenroll(&self, key: &DeviceKey, until_ms: i64) -> Result<bool> {
        self.changed_one(Stmt::new(
            sql::ALLOW_REENROLL,
            device_params(key, until_ms.into()),
        ))
        .await
    }

    /// The device a credential hash belongs to: its current credential, or the one before it
    /// while a rotation is unconfirmed and within its grace. The first use of a rotated-to
    /// credential confirms the rotation: the previous one stops working at once.
    pub async fn device_by_credential(
        &self,
        credential_hash: &str,
        now_ms: i64,
    ) -> Result<Option<DeviceKey>> {
        let current = self
            .select(
                exec::sql(sql::DEVICE_BY_CREDENTIAL),
                vec![credential_hash.into()],
                &[Ty::Int, Ty::Text, Ty::Int],
            )
            .await?;
        let current = current
            .first()
            .map(|r| Ok::<_, StoreError>((device_key(r)?, r[2].int()? != 0)))
            .transpose()?;
        match current {
            Some((key, false)) => Ok(Some(key)),
            Some((key, true)) => {
                self.run(
                    vec![Stmt::new(
                        sql::CONFIRM_ROTATION,
                        vec![
                            key.tenant.into(),
                            key.device_id.as_str().into(),
                            credential_hash.into(),
                        ],
                    )],
                    Guard::None,
                )
                .await?;
                Ok(Some(key))
            }
            None => {
                let rows = self
                    .select(
                        exec::sql(sql::DEVICE_BY_PREVIOUS_CREDENTIAL),
                        vec![credential_hash.into(), now_ms.into()],
                        &[Ty::Int, Ty::Text],
                    )
                    .await?;
                rows.first().map(|r| device_key(r)).transpose()
            }
        }
    }

    /// Give a device a new credential (`new_hash`), keeping the one it presented
    /// (`presented_hash`) valid until the device first uses the new one or until
    /// `grace_until_ms`. `false` if the device is unknown or revoked.
    pub async fn rotate_credential(
        &self,
        key: &DeviceKey,
        presented_hash: &str,
        new_hash: &str,
        now_ms: i64,
        grace_until_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            sql::ROTATE,
            vec![
                key.tenant.into(),
                key.device_id.as_str().into(),
                presented_hash.into(),
                new_hash.into(),
                now_ms.into(),
                grace_until_ms.into(),
            ],
        ))
        .await
    }

    /// Store a report durably, with the history events it shows. Idempotent by sequence number.
    pub async fn ingest_report(&self, report: NewReport) -> Result<Ingested> {
        dispatch!(self.ingest_report(report))
    }

    /// Devices of a tenant ordered by id, after `after`, at most `limit`.
    pub async fn list_devices(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRow>> {
        let rows = self
            .select(
                exec::sql(sql::LIST_DEVICES),
                vec![
                    tenant.into(),
                    after.unwrap_or("").into(),
                    i64::from(limit).into(),
                ],
                &[
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Int,
                    Ty::Int,
                ],
            )
            .await?;
        rows.iter().map(|r| device_row(r)).collect()
    }

    pub async fn device(&self, key: &DeviceKey) -> Result<Option<DeviceRecord>> {
        use exec::Ty::{Int, Text};
        let rows = self
            .select(
                exec::sql(sql::DEVICE),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[
                    Text, Text, Int, Int, Text, Int, Int, Text, Int, Text, Int, Text, Text, Text,
                ],
            )
            .await?;
        rows.first().map(|r| device_record(r)).transpose()
    }

    /// The newest `limit` structure changes of a device, oldest first.
    pub async fn history(&self, key: &DeviceKey, limit: u32) -> Result<Vec<HistoryRecord>> {
        let rows = self
            .select(
                exec::sql(sql::HISTORY),
                device_params(key, i64::from(limit).into()),
                &[Ty::Int, Ty::Text, Ty::Int, Ty::Int, Ty::Text],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                history_record(
                    r[0].int()?,
                    r[1].text()?,
                    r[2].int()?,
                    r[3].int()?,
                    r[4].text()?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Set or clear the center's reporting interval; `false` if the device is unknown.
    pub async fn set_report_interval(&self, key: &DeviceKey, seconds: Option<u64>) -> Result<bool> {
        self.changed_one(Stmt::new(
            sql::SET_INTERVAL,
            device_params(key, seconds.map(to_i64).into()),
        ))
        .await
    }

    /// Sequence numbers of the reports stored for the device's current credential, ascending.
    pub async fn stored_seqs(&self, key: &DeviceKey) -> Result<Vec<u64>> {
        let rows = self
            .select(
                exec::sql(sql::STORED_SEQS),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Int],
            )
            .await?;
        rows.iter().map(|r| r[0].int().map(to_u64)).collect()
    }

    /// Number of devices in a tenant.
    pub async fn count_devices(&self, tenant: TenantId) -> Result<u64> {
        let rows = self
            .select(
                exec::sql(sql::COUNT_DEVICES),
                vec![tenant.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r[0].int().map(to_u64))
    }

    /// Finish pending writes and leave the store tidy (SQLite: truncating checkpoint).
    pub async fn close(&self) -> Result<()> {
        dispatch!(self.close())
    }

    /// A digest of everything stored but the audit log (the embedded store only; `None` on
    /// PostgreSQL): tests prove with it that a refused request changed nothing.
    pub async fn content_digest(&self) -> Result<Option<String>> {
        match self {
            Store::Sqlite(s) => s.content_digest().await.map(Some),
            Store::Postgres(_) => Ok(None),
        }
    }

    /// The backend's own consistency check; `ok` when clean.
    pub async fn integrity_check(&self) -> Result<String> {
        dispatch!(self.integrity_check())
    }
}

// ---- shared between the backends ------------------------------------------------------

/// SQL shared by both backends, with `$N` placeholders (SQLite reads them as `?N`).
pub(crate) mod sql {
    pub const TENANT_BY_NAME: &str = "SELECT id FROM tenants WHERE name = $1";
    pub const INSERT_TENANT: &str =
        "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    pub const INSERT_OPERATOR_TOKEN: &str = "INSERT INTO operator_tokens \
        (token_hash, tenant_id, name, role, created_at) VALUES ($1, $2, $3, $4, $5) \
        ON CONFLICT (token_hash) DO NOTHING";
    pub const OPERATOR_BY_TOKEN: &str = "SELECT tenant_id, name, role FROM operator_tokens \
        WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
    pub const INSERT_ENROLLMENT_KEY: &str = "INSERT INTO enrollment_keys (key_hash, tenant_id, created_at) VALUES ($1, $2, $3) \
        ON CONFLICT (key_hash) DO NOTHING";
    pub const ENROLLMENT_TENANT: &str =
        "SELECT tenant_id FROM enrollment_keys WHERE key_hash = $1 AND revoked_at IS NULL";
    /// No row comes back when the device exists and neither its current credential nor an
    /// operator's allowance admits the new enrollment; otherwise the stored interval plus one
    /// (1: none), so that the statement's one integer tells the three cases apart.
    pub const ENROLL: &str = "INSERT INTO devices \
        (tenant_id, device_id, model, credential_hash, generation, enrolled_at) \
        VALUES ($1, $2, $3, $4, 1, $5) \
        ON CONFLICT (tenant_id, device_id) DO UPDATE SET \
        credential_hash = excluded.credential_hash, generation = devices.generation + 1, \
        enrolled_at = excluded.enrolled_at, last_seq = 0, model = excluded.model, \
        revoked_at = NULL, reenroll_until = NULL, previous_credential_hash = NULL, \
        previous_valid_until = NULL, credential_issued_at = excluded.enrolled_at \
        WHERE devices.reenroll_until >= $5 \
        OR (devices.revoked_at IS NULL AND devices.credential_hash = $6) \
        RETURNING COALESCE(report_interval_s + 1, 1)";
    pub const REVOKE: &str = "UPDATE devices SET revoked_at = $3 \
        WHERE tenant_id = $1 AND device_id = $2";
    pub const ALLOW_REENROLL: &str = "UPDATE devices SET reenroll_until = $3 \
        WHERE tenant_id = $1 AND device_id = $2";
    /// The third column: a rotation to this credential is still unconfirmed.
    pub const DEVICE_BY_CREDENTIAL: &str = "SELECT tenant_id, device_id, \
        CAST(CASE WHEN previous_credential_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM devices \
        WHERE credential_hash = $1 AND revoked_at IS NULL";
    pub const DEVICE_BY_PREVIOUS_CREDENTIAL: &str = "SELECT tenant_id, device_id FROM devices \
        WHERE previous_credential_hash = $1 AND previous_valid_until >= $2 AND revoked_at IS NULL";
    pub const CONFIRM_ROTATION: &str = "UPDATE devices SET previous_credential_hash = NULL, \
        previous_valid_until = NULL WHERE tenant_id = $1 AND device_id = $2 \
        AND credential_hash = $3";
    /// Only a device that presented its current credential, or its previous one within the
    /// grace, rotates (the presented one becomes the previous: it is the one proven in use).
    pub const ROTATE: &str = "UPDATE devices SET previous_credential_hash = $3, \
        previous_valid_until = $6, credential_hash = $4, credential_issued_at = $5 \
        WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL \
        AND (credential_hash = $3 OR (previous_credential_hash = $3 AND previous_valid_until >= $5))";
    pub const INGEST_STATE: &str = "SELECT d.generation, d.last_seq, d.structure_hash, \
        d.report_interval_s, c.findings_hash, c.judged_revision, d.operating, \
        d.last_observed_at, d.supplies FROM devices d \
        LEFT JOIN device_compat c ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id \
        WHERE d.tenant_id = $1 AND d.device_id = $2";
    pub const OLD_STRUCTURE: &str = "SELECT model, structure, supplies FROM devices \
        WHERE tenant_id = $1 AND device_id = $2";
    pub const INSERT_REPORT: &str = "INSERT INTO reports (tenant_id, device_id, generation, seq, \
        trigger, observed_at, received_at, structure_hash, changes, op_keyframe, op_vals) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
        ON CONFLICT (tenant_id, device_id, generation, seq) DO NOTHING";
    pub const INSERT_EVENT: &str = "INSERT INTO structure_events (tenant_id, device_id, seq, \
        trigger, observed_at, received_at, kind, slot, change) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// The device-day a keyframe of operating history opens (the pruner's work list).
    pub const INSERT_OPERATING_DAY: &str = "INSERT INTO operating_days (rolled, day, \
        tenant_id, device_id) VALUES (0, $1, $2, $3) \
        ON CONFLICT (rolled, day, tenant_id, device_id) DO NOTHING";
    pub const INSERT_EDGE_READ: &str = "INSERT INTO meter_edge_reads (tenant_id, device_id, \
        at, vals) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, device_id, at) DO NOTHING";
    pub const INSERT_METER_RESET: &str = "INSERT INTO meter_resets (tenant_id, device_id, at, \
        name, before, after) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (tenant_id, device_id, at, name) DO NOTHING";
    /// `silent_at`, a lower bound of the device's deadline, is set only when it has none or
    /// the device was offline (the sweep moves it otherwise: `notify::mark_offline`), so the
    /// update changes no indexed column (3600: `DEFAULT_REPORT_INTERVAL_S`).
    pub const UPDATE_AFTER_REPORT: &str = "UPDATE devices SET last_seq = $3, last_trigger = $4, \
        last_report_at = $5, last_observed_at = $6, model = $7, operating = $8, \
        install_blocked = $9, supplies = $10, silent_at = CASE WHEN silent_at IS NULL \
        OR offline_since IS NOT NULL THEN $5 + 1000 * COALESCE((SELECT \
        n.offline_after_s FROM notify_settings n WHERE n.tenant_id = $1), \
        3 * COALESCE(report_interval_s, 3600)) ELSE silent_at END \
        WHERE tenant_id = $1 AND device_id = $2";
    /// The compatibility row follows the structure's fingerprint (same transaction).
    pub const COMPAT_STRUCTURE: &str = "INSERT INTO device_compat (tenant_id, device_id, \
        structure_hash) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, device_id) DO UPDATE SET \
        structure_hash = excluded.structure_hash";
    pub const UPDATE_STRUCTURE: &str = "UPDATE devices SET structure = $3, structure_hash = $4, \
        structure_changed_at = $5, unit_count = $6 WHERE tenant_id = $1 AND device_id = $2";
    pub const LIST_DEVICES: &str = "SELECT device_id, model, unit_count, last_seq, last_trigger, \
        last_report_at, last_observed_at FROM devices \
        WHERE tenant_id = $1 AND device_id > $2 ORDER BY device_id LIMIT $3";
    pub const DEVICE: &str = "SELECT d.device_id, d.model, d.enrolled_at, d.last_seq, \
        d.last_trigger, d.last_report_at, d.last_observed_at, d.structure, d.structure_changed_at, \
        d.operating, d.report_interval_s, c.compat_state, d.install_blocked, d.supplies \
        FROM devices d LEFT JOIN device_compat c \
        ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id \
        WHERE d.tenant_id = $1 AND d.device_id = $2";
    pub const HISTORY: &str = "SELECT seq, trigger, observed_at, received_at, change \
        FROM structure_events WHERE tenant_id = $1 AND device_id = $2 ORDER BY id DESC LIMIT $3";
    /// The interval, and the silence deadline's bound recomputed with it (a shorter interval
    /// brings the deadline nearer).
    pub const SET_INTERVAL: &str = "UPDATE devices SET report_interval_s = $3, \
        silent_at = last_report_at + 1000 * COALESCE((SELECT n.offline_after_s \
        FROM notify_settings n WHERE n.tenant_id = $1), 3 * COALESCE($3, 3600)) \
        WHERE tenant_id = $1 AND device_id = $2";
    pub const STORED_SEQS: &str = "SELECT r.seq FROM reports r JOIN devices d \
        ON d.tenant_id = r.tenant_id AND d.device_id = r.device_id AND d.generation = r.generation \
        WHERE r.tenant_id = $1 AND r.device_id = $2 ORDER BY r.seq";
    pub const COUNT_DEVICES: &str = "SELECT COUNT(*) FROM devices WHERE tenant_id = $1";
}

/// What the store holds of a device before a report, for deciding what the report does.
pub(crate) struct IngestState {
    pub generation: i64,
    pub last_seq: i64,
    pub structure_hash: Option<String>,
    pub report_interval_s: Option<i64>,
    pub findings_hash: Option<String>,
    pub judged_revision: Option<i64>,
    /// The newest report's operating info (JSON) and when it was observed.
    pub operating: Option<String>,
    pub last_observed_at: Option<i64>,
    pub supplies: Option<String>,
}

/// A row as each backend's driver reads it, so that a record both backends read has one
/// decode function ([`IngestState::decode`]).
pub(crate) trait Columns {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
}

impl IngestState {
    /// Decode the columns of [`sql::INGEST_STATE`], starting at column `at` of a row.
    pub(crate) fn decode(r: &impl Columns, at: usize) -> Result<IngestState> {
        Ok(IngestState {
            generation: r.int(at)?,
            last_seq: r.int(at + 1)?,
            structure_hash: r.opt_text(at + 2)?,
            report_interval_s: r.opt_int(at + 3)?,
            findings_hash: r.opt_text(at + 4)?,
            judged_revision: r.opt_int(at + 5)?,
            operating: r.opt_text(at + 6)?,
            last_observed_at: r.opt_int(at + 7)?,
            supplies: r.opt_text(at + 8)?,
        })
    }
}

impl Ingested {
    /// A report stored before (a retry): nothing changed now.
    pub(crate) fn duplicate(report_interval_s: Option<u64>) -> Ingested {
        Ingested {
            duplicate: true,
            changes: 0,
            report_interval_s,
            current: false,
            findings_changed: false,
            supply_changes: Vec::new(),
            keyframe: false,
        }
    }

    /// A report stored now but older than the device's newest: it changes no state.
    pub(crate) fn stale(report_interval_s: Option<u64>) -> Ingested {
        Ingested {
            duplicate: false,
            ..Ingested::duplicate(report_interval_s)
        }
    }
}

/// The statements that store a report's judgement, if it differs from what is stored.
pub(crate) fn judgement_update(
    report: &NewReport,
    state: &IngestState,
) -> Option<(Vec<exec::Stmt>, exec::Guard)> {
    let j = report.judgement.as_ref()?;
    let same = state.findings_hash.as_deref() == Some(j.hash.as_str())
        && state.judged_revision == Some(to_i64(j.revision));
    let had_findings = state.findings_hash.as_deref() != Some("");
    (!same)
        .then(|| compat::judgement_stmts(&report.key, None, j, had_findings, report.received_at_ms))
}

/// One history event's columns: `(kind, slot, change as JSON)`.
pub(crate) type EventRow = (&'static str, String, String);

/// The rows one report writes, decided from the stored state (pure, shared by backends).
/// A report newer than every stored one moves the current structure; an older one that was
/// never stored (reordered in flight) is kept in the report log only.
pub(crate) struct IngestRows {
    pub fingerprint: String,
    /// `Some` when the structure changed: the new stored form and the history events.
    pub structure_change: Option<(String, Vec<EventRow>)>,
    pub operating_json: String,
    /// The supplies with their levels (`None`: the report has none).
    pub supplies_json: Option<String>,
    /// What the report adds to the operating history, if anything.
    pub history: Option<HistoryRow>,
    /// Supplies whose state changed, or new cartridges.
    pub supply_changes: Vec<SupplyChange>,
    /// What the report adds for meter reads.
    pub meters: MeterRows,
}

/// What a report adds for meter reads (tables `meter_edge_reads`, `meter_resets`).
#[derive(Default)]
pub(crate) struct MeterRows {
    /// `(observed at, billing meters as JSON)`: this report and its predecessor, when they
    /// are the neighbours of a month's edge.
    pub edge_reads: Vec<(i64, String)>,
    /// `(operating name, before, after)` of each billing meter that went backwards.
    pub resets: Vec<(String, i64, i64)>,
}

/// What a report adds to the operating history (stored in its own `reports` row): `(at,
/// keyframe, values as JSON)`; a keyframe also opens its device-day in the pruner's work list.
pub(crate) struct HistoryRow {
    pub at_ms: i64,
    pub keyframe: bool,
    pub vals: String,
}

impl HistoryRow {
    pub fn day(&self) -> i64 {
        fleetcare_core::meters::day_of(self.at_ms)
    }
}

impl IngestRows {
    /// The report row's `op_keyframe` and `op_vals`.
    pub fn history_columns(&self) -> (Option<i64>, Option<&str>) {
        self.history.as_ref().map_or((None, None), |h| {
            (Some(i64::from(h.keyframe)), Some(h.vals.as_str()))
        })
    }
}

/// The supplies whose state changed from `old` to `new`, or that are new cartridges.
fn supply_changes(
    old: &[fleetcare_wire::Supply],
    new: &[fleetcare_wire::Supply],
) -> Vec<SupplyChange> {
    new.iter()
        .filter_map(|n| {
            let o = old.iter().find(|o| o.slot == n.slot);
            let replaced =
                o.is_some_and(|o| (&o.serial, &o.part_number) != (&n.serial, &n.part_number));
            (o.map(|o| o.state) != Some(n.state) || replaced).then(|| SupplyChange {
                slot: n.slot.clone(),
                kind: n.kind,
                color: n.color.clone(),
                part_number: n.part_number.clone(),
                level_pct: n.level_pct,
                was: o.map(|o| o.state),
                now: n.state,
                replaced,
            })
        })
        .collect()
}

/// Stored supplies (JSON), or none.
pub(crate) fn supplies_of(json: Option<&str>) -> Result<Vec<fleetcare_wire::Supply>> {
    json.map_or(Ok(Vec::new()), |j| {
        serde_json::from_str(j).map_err(|e| StoreError::Corrupt(format!("stored supplies: {e}")))
    })
}

/// The values a report adds to the operating history: its operating info and each supply's
/// level as `supply.<slot>.level_pct`.
fn history_values(
    operating: &BTreeMap<String, f64>,
    supplies: &[fleetcare_wire::Supply],
) -> BTreeMap<String, f64> {
    let mut out = operating.clone();
    for s in supplies {
        if let Some(p) = s.level_pct {
            out.insert(format!("supply.{}.level_pct", s.slot), p);
        }
    }
    out
}

/// What a report adds to its device's operating history, from the stored newest values
/// (`operating_json` and `supplies_json`: the report's own, as they will be stored; `prev`:
/// the stored operating info, parsed, when it differs from the report's).
fn history_row(
    report: &NewReport,
    state: &IngestState,
    prev: Option<&BTreeMap<String, f64>>,
    operating_json: &str,
    supplies_json: Option<&str>,
) -> Result<Option<HistoryRow>> {
    use fleetcare_core::meters;
    let at = report.observed_at_ms;
    let same_day = state
        .last_observed_at
        .is_some_and(|prev| meters::day_of(prev) == meters::day_of(at));
    // An idle device reports what it reported before: nothing to parse, nothing to keep.
    if same_day
        && state.operating.as_deref() == Some(operating_json)
        && state.supplies.as_deref() == supplies_json
    {
        return Ok(None);
    }
    let prev: Option<BTreeMap<String, f64>> = if same_day {
        let parsed;
        let op = match prev {
            Some(p) => p,
            None => {
                parsed = stored_operating(state)?.unwrap_or_default();
                &parsed
            }
        };
        Some(history_values(op, &supplies_of(state.supplies.as_deref())?))
    } else {
        None
    };
    let prev_at = state.last_observed_at.unwrap_or(i64::MIN);
    let now = history_values(&report.operating, &report.supplies);
    Ok(
        meters::point(prev.as_ref().map(|p| (p, prev_at)), at, &now).map(|p| HistoryRow {
            at_ms: p.at_ms,
            keyframe: p.keyframe,
            vals: serde_json::to_string(&p.vals).expect("numbers serialize"),
        }),
    )
}

/// The device's stored operating info (its newest report's), parsed.
fn stored_operating(state: &IngestState) -> Result<Option<BTreeMap<String, f64>>> {
    state
        .operating
        .as_deref()
        .map(|json| {
            serde_json::from_str(json)
                .map_err(|e| StoreError::Corrupt(format!("stored operating info: {e}")))
        })
        .transpose()
}

/// A report's billing meters (by their operating names), as JSON for `meter_edge_reads`.
fn billing_json(operating: &BTreeMap<String, f64>) -> Option<String> {
    let b: BTreeMap<&str, f64> = operating
        .iter()
        .filter(|(k, _)| fleetcare_core::meters::billing_meter(k).is_some())
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    (!b.is_empty()).then(|| serde_json::to_string(&b).expect("numbers serialize"))
}

/// What a report adds for meter reads: its billing meters (and its predecessor's) when the
/// two are the neighbours of a month's edge (`near_edge`) or it is the device's first, and
/// the billing meters that went backwards.
fn meter_rows(
    report: &NewReport,
    state: &IngestState,
    prev: Option<&BTreeMap<String, f64>>,
    near_edge: bool,
) -> MeterRows {
    use fleetcare_core::meters;
    let at = report.observed_at_ms;
    let resets = prev
        .map(|prev| {
            report
                .operating
                .iter()
                .filter(|(k, _)| meters::billing_meter(k).is_some())
                .filter_map(|(k, v)| {
                    let before = *prev.get(k)?;
                    (*v < before).then(|| (k.clone(), before.round() as i64, v.round() as i64))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut edge_reads = Vec::new();
    // A device's first reading is kept too: it is the first edge value of a device that
    // joined mid-period.
    if state.last_observed_at.is_none() || near_edge {
        if let (Some(prev_at), Some(prev)) = (state.last_observed_at, prev) {
            edge_reads.extend(billing_json(prev).map(|j| (prev_at, j)));
        }
        edge_reads.extend(billing_json(&report.operating).map(|j| (at, j)));
    }
    MeterRows { edge_reads, resets }
}

impl IngestRows {
    pub fn changes(&self) -> u32 {
        self.structure_change
            .as_ref()
            .map_or(0, |(_, ev)| u32::try_from(ev.len()).unwrap_or(u32::MAX))
    }
}

pub(crate) fn is_newest(state: &IngestState, seq: i64) -> bool {
    seq > state.last_seq
}

pub(crate) fn needs_old_structure(state: &IngestState, fingerprint: &str) -> bool {
    state.structure_hash.as_deref() != Some(fingerprint)
}

pub(crate) fn ingest_rows(
    report: &NewReport,
    state: &IngestState,
    old: Option<(String, Option<String>, Option<String>)>,
    fingerprint: String,
) -> Result<IngestRows> {
    let structure_change = if needs_old_structure(state, &fingerprint) {
        let old = match old {
            Some((model, Some(json), supplies)) => {
                let supplies = supplies_of(supplies.as_deref())?;
                Some(
                    Structure::from_json(&model, &json)
                        .and_then(|s| s.with_supplies(&supplies))
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
            }
            _ => None,
        };
        let changes = fleetcare_core::structure::diff(old.as_ref(), &report.structure);
        let rows = changes
            .iter()
            .map(|c| {
                let (kind, slot) = change_kind_slot(c);
                (
                    kind,
                    slot.to_owned(),
                    serde_json::to_string(c).expect("changes serialize"),
                )
            })
            .collect();
        Some((report.structure.to_json(), rows))
    } else {
        None
    };
    let operating_json = serde_json::to_string(&report.operating).expect("numbers serialize");
    let supplies_json = (!report.supplies.is_empty())
        .then(|| serde_json::to_string(&report.supplies).expect("supplies serialize"));
    // The stored operating info, parsed once, when something may be compared with it.
    let changed = state.operating.as_deref() != Some(operating_json.as_str());
    let near_edge =
        fleetcare_core::meters::near_billing_edge(state.last_observed_at, report.observed_at_ms);
    let prev = if changed || near_edge {
        stored_operating(state)?
    } else {
        None
    };
    let history = history_row(
        report,
        state,
        prev.as_ref(),
        &operating_json,
        supplies_json.as_deref(),
    )?;
    let meters = meter_rows(report, state, prev.as_ref(), near_edge);
    let supply_changes = if supplies_json.as_deref() == state.supplies.as_deref() {
        Vec::new()
    } else {
        supply_changes(&supplies_of(state.supplies.as_deref())?, &report.supplies)
    };
    Ok(IngestRows {
        fingerprint,
        structure_change,
        operating_json,
        supplies_json,
        history,
        supply_changes,
        meters,
    })
}

fn change_kind_slot(c: &Change) -> (&'static str, &str) {
    match c {
        Change::UnitAdded { slot, .. } => ("unit_added", slot),
        Change::UnitRemoved { slot, .. } => ("unit_removed", slot),
        Change::UnitReplaced { slot, .. } => ("unit_replaced", slot),
        Change::UnitChanged { slot, .. } => ("unit_changed", slot),
        Change::UnitServiceChanged { slot, .. } => ("unit_service_changed", slot),
        Change::SoftwareAdded { slot, .. } => ("software_added", slot),
        Change::SoftwareRemoved { slot, .. } => ("software_removed", slot),
        Change::SoftwareChanged { slot, .. } => ("software_changed", slot),
        Change::SupplyAdded { slot, .. } => ("supply_added", slot),
        Change::SupplyRemoved { slot, .. } => ("supply_removed", slot),
        Change::SupplyReplaced { slot, .. } => ("supply_replaced", slot),
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn trigger(s: &str) -> Result<Trigger> {
    Trigger::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown trigger {s:?}")))
}

pub(crate) fn report_meta(
    seq: i64,
    trigger_s: Option<String>,
    received: Option<i64>,
    observed: Option<i64>,
) -> Result<Option<ReportMeta>> {
    match (trigger_s, received, observed) {
        (Some(t), Some(r), Some(o)) if seq > 0 => Ok(Some(ReportMeta {
            seq: to_u64(seq),
            trigger: trigger(&t)?,
            received_at_ms: r,
            observed_at_ms: o,
        })),
        _ => Ok(None),
    }
}

pub(crate) fn device_id(s: String) -> Result<DeviceId> {
    DeviceId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `$1` tenant, `$2` device id, `$3` the value a statement sets.
fn device_params(key: &DeviceKey, value: exec::Val) -> Vec<exec::Val> {
    vec![key.tenant.into(), key.device_id.as_str().into(), value]
}

/// Decode `tenant_id, device_id` at the start of a row.
fn device_key(r: &[exec::Val]) -> Result<DeviceKey> {
    Ok(DeviceKey {
        tenant: r[0].int()?,
        device_id: device_id(r[1].text()?)?,
    })
}

/// Decode a row of [`sql::OPERATOR_BY_TOKEN`].
fn operator(r: &[exec::Val]) -> Result<Operator> {
    Ok(Operator {
        tenant: r[0].int()?,
        name: r[1].text()?,
        role: r[2].text()?,
    })
}

/// Decode a row of [`sql::LIST_DEVICES`].
fn device_row(r: &[exec::Val]) -> Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: r[0].text()?,
        model: r[1].text()?,
        units: u32::try_from(r[2].int()?).unwrap_or(u32::MAX),
        last_report: report_meta(
            r[3].int()?,
            r[4].opt_text()?,
            r[5].opt_int()?,
            r[6].opt_int()?,
        )?,
    })
}

/// Decode a row of [`sql::DEVICE`].
fn device_record(r: &[exec::Val]) -> Result<DeviceRecord> {
    let model = r[1].text()?;
    let supplies = supplies_of(r[13].opt_text()?.as_deref())?;
    let structure = r[7]
        .opt_text()?
        .map(|j| {
            Structure::from_json(&model, &j)
                .and_then(|s| s.with_supplies(&supplies))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()?;
    let operating = match r[9].opt_text()? {
        Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => BTreeMap::new(),
    };
    Ok(DeviceRecord {
        device_id: r[0].text()?,
        enrolled_at_ms: r[2].int()?,
        last_report: report_meta(
            r[3].int()?,
            r[4].opt_text()?,
            r[5].opt_int()?,
            r[6].opt_int()?,
        )?,
        structure,
        structure_changed_at_ms: r[8].opt_int()?,
        operating,
        supplies,
        report_interval_s: r[10].opt_int()?.map(to_u64),
        compat_state: r[11].opt_text()?,
        install_blocked: r[12].opt_text()?,
        model,
    })
}

pub(crate) fn history_record(
    seq: i64,
    trigger_s: String,
    observed_at_ms: i64,
    received_at_ms: i64,
    change: String,
) -> Result<HistoryRecord> {
    Ok(HistoryRecord {
        seq: to_u64(seq),
        trigger: trigger(&trigger_s)?,
        observed_at_ms,
        received_at_ms,
        change: serde_json::from_str(&change).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}
