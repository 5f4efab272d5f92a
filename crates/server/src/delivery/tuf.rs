//! The tenant's TUF repository at the center (ARCHITECTURE.md, "Software delivery with TUF
//! roles"): roles published by operators and makers (root, targets, a role per maker) are
//! checked as a client would check them and stored as signed; the center signs snapshot and
//! timestamp with its online keys, one each, when a role changes and before the timestamp
//! runs out; devices and standard TUF clients read the repository at the specification's
//! layout under `/device/v1/tuf/`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetcare_store::tuf::TufRecord;
use fleetcare_store::{ReleaseRecord, StoreError, TenantId};
use fleetcare_trust::tuf::{
    self, Common, MetaFile, RootRole, SnapshotRole, TargetsRole, TimestampRole, TrustedSet,
};
use fleetcare_trust::{Envelope, KeyPair, SecretKeyFile};
use serde_json::json;

use crate::AppState;
use crate::ctx::Ctx;
use crate::delivery::artifacts::{serve_file, valid_sha};
use crate::delivery::{system_time, trust_err};
use crate::error::ApiError;
use crate::extract::{DeviceAuth, OperatorAuth};
use fleetcare_wire::ErrorBody;

/// A timestamp is good for a day; the center signs a new one when half of that is left.
pub const TIMESTAMP_LIFE: Duration = Duration::from_secs(24 * 3600);
/// A snapshot is good for a week, re-signed likewise.
pub const SNAPSHOT_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);

fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The tenant's online key for `role` (`snapshot` or `timestamp`), made on first use.
async fn online_key(st: &Ctx, tenant: TenantId, role: &str) -> Result<KeyPair, ApiError> {
    let fresh = SecretKeyFile::new(role, &KeyPair::generate()).to_json();
    let stored = st
        .store
        .tuf_online_key(tenant, role, &fresh, st.clock.now_ms())
        .await?;
    SecretKeyFile::parse(stored.as_bytes(), role)
        .map_err(|e| ApiError::Internal(format!("the stored online {role} key: {e}")))
}

fn envelope_of(rec: &TufRecord) -> Result<Envelope, ApiError> {
    serde_json::from_str(&rec.envelope)
        .map_err(|e| ApiError::Internal(format!("stored {} metadata: {e}", rec.role)))
}

async fn newest<T: tuf::Signed>(
    st: &Ctx,
    tenant: TenantId,
    role: &str,
) -> Result<Option<(TufRecord, T)>, ApiError> {
    let Some(rec) = st.store.tuf(tenant, role, None).await? else {
        return Ok(None);
    };
    let doc = tuf::unverified::<T>(&envelope_of(&rec)?).map_err(trust_err)?;
    Ok(Some((rec, doc)))
}

/// The online keys' public halves (snapshot, timestamp), for the root that names them; made
/// the first time they are asked for.
#[utoipa::path(get, path = "/api/v1/tuf/online-keys",
    responses((status = 200, body = Object, description = "{snapshot, timestamp}: {keyid, key}")))]
pub async fn online_keys(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut out = serde_json::Map::new();
    for role in ["snapshot", "timestamp"] {
        let k = online_key(&st, op.0.tenant, role).await?.public().to_tuf();
        out.insert(role.into(), json!({"keyid": k.keyid(), "key": k}));
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// The root must give snapshot and timestamp to this center's keys, one each, so that it can
/// sign them.
async fn check_online_roles(st: &Ctx, tenant: TenantId, root: &RootRole) -> Result<(), ApiError> {
    for role in ["snapshot", "timestamp"] {
        let id = online_key(st, tenant, role)
            .await?
            .public()
            .to_tuf()
            .keyid();
        let r = &root.roles[role];
        if r.keyids != [id.clone()] || r.threshold != 1 {
            return Err(ApiError::BadRequest(format!(
                "the root must give the {role} role to this center's online {role} key \
                 {id}, alone, threshold 1 (fleetcare keys online)"
            )));
        }
    }
    if !root.consistent_snapshot {
        return Err(ApiError::BadRequest(
            "the root must set consistent_snapshot (the center serves N.role.json)".into(),
        ));
    }
    Ok(())
}

fn not_expired(c: &Common, now: SystemTime) -> Result<(), ApiError> {
    if tuf::expires_at(c).map_err(trust_err)? <= now {
        return Err(ApiError::BadRequest(format!(
            "expired: the document expired at {}",
            c.expires
        )));
    }
    Ok(())
}

fn next_version(current: Option<u64>, offered: u64, role: &str) -> Result<(), ApiError> {
    let want = current.map_or(1, |v| v + 1);
    if offered != want {
        return Err(ApiError::Conflict {
            code: "version",
            message: format!("{role} version {offered} offered; the next version is {want}"),
        });
    }
    Ok(())
}

/// What a published role changed, for the log and the answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Published {
    pub role: String,
    pub version: u64,
    pub expires: String,
    /// Releases the role made known (maker roles).
    pub releases: Vec<String>,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
}

/// Publish one version of a role: `root` (the next version, signed by a threshold of the
/// current root's keys and of its own), `targets` (signed by the root's targets keys) or a
/// maker's role (signed by the keys `targets` delegates it to, listing that maker's
/// releases). Snapshot and timestamp follow at once.
#[utoipa::path(post, path = "/api/v1/tuf/root", request_body(content = Object, description = "a DSSE envelope of a TUF root"),
    responses((status = 200, body = Published), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_root(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<Published>, ApiError> {
    publish(st, op, "root".into(), body).await
}

/// Publish the top-level targets role (its delegations to makers).
#[utoipa::path(post, path = "/api/v1/tuf/targets", request_body(content = Object, description = "a DSSE envelope of the targets role"),
    responses((status = 200, body = Published), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_targets(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<Published>, ApiError> {
    publish(st, op, "targets".into(), body).await
}

/// Publish a maker's role (its releases).
#[utoipa::path(post, path = "/api/v1/tuf/makers/{maker}", params(("maker" = String, Path, description = "the maker")),
    request_body(content = Object, description = "a DSSE envelope of the maker's targets role"),
    responses((status = 200, body = Published), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_maker(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(maker): Path<String>,
    body: Bytes,
) -> Result<Json<Published>, ApiError> {
    if tuf::TOP_LEVEL.contains(&maker.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "{maker} is a top-level role, not a maker"
        )));
    }
    publish(st, op, maker, body).await
}

/// A role's newest version as published (the document to build the next version on).
#[utoipa::path(get, path = "/api/v1/tuf/roles/{role}", params(("role" = String, Path, description = "root, timestamp, snapshot, targets or a maker")),
    responses((status = 200, body = Object, description = "the DSSE envelope"), (status = 404, body = ErrorBody)))]
pub async fn show_role(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(role): Path<String>,
) -> Result<Response, ApiError> {
    let rec = st
        .store
        .tuf(op.0.tenant, &role, None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("a published {role} role")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        rec.envelope,
    )
        .into_response())
}

async fn publish(
    st: AppState,
    op: OperatorAuth,
    role: String,
    body: Bytes,
) -> Result<Json<Published>, ApiError> {
    let tenant = op.0.tenant;
    let env = tuf::parse_envelope(&body).map_err(trust_err)?;
    let now = system_time(st.clock.now_ms());
    let text = serde_json::to_string(&env).expect("an envelope serializes");
    // The very document already published (a retry after a lost answer) changes nothing.
    if let Some(rec) = st.store.tuf(tenant, &role, None).await?
        && rec.envelope == text
    {
        let (snapshot_version, timestamp_version) = refresh(&st, tenant).await?;
        return Ok(Json(Published {
            role,
            version: rec.version,
            expires: fleetcare_core::clock::rfc3339(rec.expires_at_ms),
            releases: Vec::new(),
            snapshot_version,
            timestamp_version,
        }));
    }
    let root = newest::<RootRole>(&st, tenant, "root").await?;
    let mut releases = Vec::new();
    let (version, common) = match role.as_str() {
        "root" => {
            let set = match &root {
                None => TrustedSet::new(&body, now).map_err(trust_err)?,
                Some((rec, _)) => {
                    let mut set =
                        TrustedSet::new(rec.envelope.as_bytes(), now).map_err(trust_err)?;
                    set.update_root(&body).map_err(trust_err)?;
                    set
                }
            };
            let doc = set.root().clone();
            next_version(
                root.as_ref().map(|r| r.1.common.version),
                doc.common.version,
                "root",
            )?;
            check_online_roles(&st, tenant, &doc).await?;
            not_expired(&doc.common, now)?;
            (doc.common.version, doc.common)
        }
        "snapshot" | "timestamp" => {
            return Err(ApiError::BadRequest(format!(
                "the center signs {role} itself with its online key"
            )));
        }
        _ => {
            let Some((_, root_doc)) = &root else {
                return Err(ApiError::BadRequest(
                    "no root is published: publish 1.root.json first (fleetcare keys root)".into(),
                ));
            };
            let current = st.store.tuf(tenant, &role, None).await?.map(|r| r.version);
            let doc = if role == "targets" {
                let doc: TargetsRole =
                    tuf::verify_top(root_doc, "targets", &env).map_err(trust_err)?;
                if !doc.targets.is_empty() {
                    return Err(ApiError::BadRequest(
                        "the top-level targets role lists no files: releases belong in their \
                         maker's role (fleetcare keys delegate)"
                            .into(),
                    ));
                }
                for r in doc.delegations.iter().flat_map(|d| &d.roles) {
                    if r.paths.as_ref() != Some(&tuf::maker_paths(&r.name)) || !r.terminating {
                        return Err(ApiError::BadRequest(format!(
                            "the delegation to {} must be terminating with paths {:?}: a \
                             maker's role covers its own releases and nothing else",
                            r.name,
                            tuf::maker_paths(&r.name)
                        )));
                    }
                }
                doc
            } else {
                let Some((_, parent)) = newest::<TargetsRole>(&st, tenant, "targets").await? else {
                    return Err(ApiError::BadRequest(
                        "no targets role is published: delegate to the maker first \
                         (fleetcare keys delegate)"
                            .into(),
                    ));
                };
                let doc = tuf::verify_delegated(&parent, &role, &env).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "{role}: {e} (checked against the delegation in targets version {})",
                        parent.common.version
                    ))
                })?;
                if doc.delegations.is_some() {
                    return Err(ApiError::BadRequest(format!(
                        "{role}: a maker's role delegates no further"
                    )));
                }
                let found = tuf::releases_of_role(&role, &doc).map_err(trust_err)?;
                for m in found {
                    let rec = ReleaseRecord {
                        product: m.product.clone(),
                        version: m.version.clone(),
                        maker: m.maker.clone(),
                        counter: m.counter,
                        envelope: json!({"tuf": {
                            "role": role,
                            "paths": m.artifacts.iter()
                                .map(|a| tuf::target_path(&m.maker, &m.product, &m.version, &a.name))
                                .collect::<Vec<_>>(),
                            "manifest": m,
                        }})
                        .to_string(),
                        artifacts_json: serde_json::to_string(&m.artifacts)
                            .expect("artifacts serialize"),
                        published_by: op.0.name.clone(),
                        published_at_ms: st.clock.now_ms(),
                    };
                    match st.store.release(tenant, &m.product, &m.version).await? {
                        Some(have)
                            if have.artifacts_json != rec.artifacts_json
                                || have.counter != rec.counter
                                || have.maker != rec.maker =>
                        {
                            return Err(ApiError::Conflict {
                                code: "release_changed",
                                message: format!(
                                    "{} {} is already published with other files, counter or \
                                     maker: a version, once published, means one thing",
                                    m.product, m.version
                                ),
                            });
                        }
                        Some(_) => {}
                        None => releases.push(rec),
                    }
                }
                doc
            };
            next_version(current, doc.common.version, &role)?;
            not_expired(&doc.common, now)?;
            (doc.common.version, doc.common)
        }
    };
    let stored = st
        .store
        .put_tuf(
            tenant,
            &TufRecord {
                role: role.clone(),
                version,
                envelope: text,
                expires_at_ms: ms_of(tuf::expires_at(&common).map_err(trust_err)?),
                published_by: op.0.name.clone(),
                published_at_ms: st.clock.now_ms(),
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::Conflict {
                code: "version",
                message: m,
            },
            e => e.into(),
        })?;
    let mut named = Vec::new();
    for rec in &releases {
        if st.store.publish_release(tenant, rec).await? {
            named.push(format!("{} {}", rec.product, rec.version));
            let (p, v) = (rec.product.clone(), rec.version.clone());
            crate::delivery::tell_waiting(&st, tenant, |r| r.product == p && r.version == v)
                .await?;
        }
    }
    let (snapshot_version, timestamp_version) = refresh(&st, tenant).await?;
    if stored {
        tracing::info!(tenant, role = %role, version, operator = %op.0.name, releases = ?named, "TUF role published");
    }
    Ok(Json(Published {
        role,
        version,
        expires: common.expires,
        releases: named,
        snapshot_version,
        timestamp_version,
    }))
}

/// Sign a new snapshot if a targets role changed (or the snapshot's life is half gone), and a
/// new timestamp if the snapshot changed (or likewise): `(snapshot, timestamp)` versions now
/// published. Idempotent; another instance signing the same version first is fine.
pub async fn refresh(st: &Ctx, tenant: TenantId) -> Result<(u64, u64), ApiError> {
    let now_ms = st.clock.now_ms();
    let now = system_time(now_ms);
    let all = st.store.tuf_newest(tenant).await?;
    if !all.iter().any(|r| r.role == "root") {
        return Ok((0, 0));
    }
    let Some(targets) = all.iter().find(|r| r.role == "targets") else {
        return Ok((0, 0));
    };
    let top = tuf::unverified::<TargetsRole>(&envelope_of(targets)?).map_err(trust_err)?;
    let mut meta: BTreeMap<String, MetaFile> = BTreeMap::new();
    meta.insert("targets.json".into(), MetaFile::version(targets.version));
    for d in top.delegations.iter().flat_map(|d| &d.roles) {
        if let Some(r) = all.iter().find(|r| r.role == d.name) {
            meta.insert(format!("{}.json", d.name), MetaFile::version(r.version));
        }
    }
    // The online roles' versions follow the clock (seconds), and are never less than one more
    // than the newest: a center restored from an older backup still signs versions above any
    // a device has seen, instead of versions its devices refuse as rollbacks.
    let next = |cur: u64| (cur + 1).max(u64::try_from(now_ms / 1000).unwrap_or(0));
    let half_gone = |rec: &TufRecord, life: Duration| {
        rec.expires_at_ms - now_ms < i64::try_from(life.as_millis() / 2).unwrap_or(i64::MAX)
    };
    let snap = all.iter().find(|r| r.role == "snapshot");
    let snap_doc = match snap {
        Some(r) => Some(tuf::unverified::<SnapshotRole>(&envelope_of(r)?).map_err(trust_err)?),
        None => None,
    };
    let mut snapshot_version = snap.map_or(0, |r| r.version);
    let snapshot_changed = match (&snap_doc, snap) {
        (Some(d), Some(r)) => d.meta != meta || half_gone(r, SNAPSHOT_LIFE),
        _ => true,
    };
    if snapshot_changed {
        snapshot_version = next(snapshot_version);
        let doc = SnapshotRole {
            common: Common::new("snapshot", snapshot_version, now + SNAPSHOT_LIFE),
            meta,
        };
        let key = online_key(st, tenant, "snapshot").await?;
        put_online(
            st,
            tenant,
            "snapshot",
            snapshot_version,
            &tuf::sign(&doc, &[&key]),
            now + SNAPSHOT_LIFE,
        )
        .await?;
    }
    let ts = all.iter().find(|r| r.role == "timestamp");
    let mut timestamp_version = ts.map_or(0, |r| r.version);
    let ts_doc = match ts {
        Some(r) => Some(tuf::unverified::<TimestampRole>(&envelope_of(r)?).map_err(trust_err)?),
        None => None,
    };
    let names = ts_doc
        .as_ref()
        .and_then(|d| d.meta.get("snapshot.json"))
        .map(|m| m.version);
    if names != Some(snapshot_version) || ts.is_none_or(|r| half_gone(r, TIMESTAMP_LIFE)) {
        timestamp_version = next(timestamp_version);
        let doc = TimestampRole {
            common: Common::new("timestamp", timestamp_version, now + TIMESTAMP_LIFE),
            meta: BTreeMap::from([(
                "snapshot.json".to_owned(),
                MetaFile::version(snapshot_version),
            )]),
        };
        let key = online_key(st, tenant, "timestamp").await?;
        put_online(
            st,
            tenant,
            "timestamp",
            timestamp_version,
            &tuf::sign(&doc, &[&key]),
            now + TIMESTAMP_LIFE,
        )
        .await?;
    }
    // Versions no client asks for any more: the newest two of each are kept (a client that
    // read the previous timestamp a moment ago still finds the snapshot it names).
    for (role, previous, now) in [
        ("timestamp", ts.map(|r| r.version), timestamp_version),
        ("snapshot", snap.map(|r| r.version), snapshot_version),
    ] {
        if let Some(p) = previous.filter(|p| *p < now) {
            st.store.forget_tuf(tenant, role, p).await?;
        }
    }
    Ok((snapshot_version, timestamp_version))
}

async fn put_online(
    st: &Ctx,
    tenant: TenantId,
    role: &str,
    version: u64,
    env: &Envelope,
    expires: SystemTime,
) -> Result<(), ApiError> {
    let rec = TufRecord {
        role: role.to_owned(),
        version,
        envelope: serde_json::to_string(env).expect("an envelope serializes"),
        expires_at_ms: ms_of(expires),
        published_by: "center".into(),
        published_at_ms: st.clock.now_ms(),
    };
    match st.store.put_tuf(tenant, &rec).await {
        // Another instance signed this version first: its document stands.
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Every tenant's repository brought up to date: a snapshot that misses a role's newest
/// version (two publications racing, an instance that died between role and snapshot) is
/// signed anew, and timestamp and snapshot before they run out.
pub async fn refresh_all(st: &Ctx) {
    let tenants = match st.store.tuf_timestamps().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "TUF timestamps");
            return;
        }
    };
    for (tenant, _) in tenants {
        if let Err(e) = refresh(st, tenant).await {
            tracing::warn!(tenant, error = %e, "re-signing the TUF snapshot and timestamp");
        }
    }
}

/// A metadata file at the specification's layout: `timestamp.json`, `N.root.json`,
/// `N.<role>.json` (and `<role>.json`, the newest).
#[utoipa::path(get, path = "/device/v1/tuf/metadata/{file}", params(("file" = String, Path, description = "timestamp.json, N.root.json, N.<role>.json")),
    responses((status = 200, body = Object, description = "the DSSE envelope"), (status = 404, body = ErrorBody)))]
pub async fn metadata(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let Some(stem) = file.strip_suffix(".json") else {
        return Err(ApiError::NotFound(format!("metadata {file}")));
    };
    let (version, role) = match stem.split_once('.') {
        Some((v, role)) if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() => {
            (v.parse::<u64>().ok().filter(|v| *v > 0), role)
        }
        _ => (None, stem),
    };
    if stem.contains('.') && version.is_none() || role.is_empty() || role.contains('.') {
        return Err(ApiError::NotFound(format!("metadata {file}")));
    }
    let rec = st
        .store
        .tuf(key.tenant, role, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("metadata {file}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        rec.envelope,
    )
        .into_response())
}

/// A target file: `targets/<dirs>/<sha256>.<file>` (consistent snapshots: the name starts
/// with the file's hash), served like any artifact the tenant holds.
#[utoipa::path(get, path = "/device/v1/tuf/targets/{path}", params(("path" = String, Path, description = "<dirs>/<sha256>.<file>")),
    responses((status = 200, description = "the file"), (status = 206, description = "one range"), (status = 404, body = ErrorBody)))]
pub async fn target(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    Path(path): Path<String>,
    zero_copy: Option<axum::Extension<crate::sendfile::ZeroCopy>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = path.rsplit('/').next().unwrap_or("");
    let Some((sha256, _)) = name.split_once('.') else {
        return Err(ApiError::NotFound(format!("target {path}")));
    };
    valid_sha(sha256)?;
    let size = st
        .store
        .artifact(key.tenant, sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("target {path}")))?;
    serve_file(&st.artifacts, sha256, size, &headers, zero_copy.is_some()).await
}
