//! Software delivery at the center: release key lists, signed releases, content-addressed
//! artifacts (upload and Range downloads), operator jobs, and the device's job endpoints.
//!
//! The center checks a release's signatures against the newest published key list so that
//! mistakes show at once, but it is not what devices trust: agents verify everything again
//! against their provisioned root.
//!
//! This file is the engine: which steps a job may carry, the wait queue for artifacts that
//! are not yet available, the job views and expiry. `api` holds the HTTP handlers,
//! `artifacts` the files on disk. The engine imports neither compat's nor diag's handlers.

pub mod api;
pub mod artifacts;
pub mod tuf;

use fleetcare_core::clock::rfc3339;
use fleetcare_store::{DeviceKey, ReleaseRecord, StoreError, TenantId};
use fleetcare_trust::{Envelope, ReleaseManifest, TrustError};
use fleetcare_wire::compat as cw;
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::delivery as w;
use fleetcare_wire::device::Command;

use crate::ctx::Ctx;
use crate::error::ApiError;

/// Resolve an operator's or a plan's steps against the device's structure and the published
/// releases: every problem at once.
pub(crate) async fn check_steps(
    st: &Ctx,
    key: &DeviceKey,
    req: &[w::JobStepRequest],
) -> Result<Vec<SoftwareStep>, ApiError> {
    let rec = crate::extract::known_device(st, key).await?;
    if let Some(why) = rec.install_blocked {
        return Err(ApiError::Conflict {
            code: "cannot_install",
            message: format!("device {} cannot install software: {why}", key.device_id),
        });
    }
    let structure = rec.structure.ok_or_else(|| ApiError::Conflict {
        code: "no_structure",
        message: format!(
            "device {} has not reported its structure yet",
            key.device_id
        ),
    })?;
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    if req.is_empty() || req.len() > fleetcare_core::limits::MAX_UNITS {
        problems.push(format!(
            "a job has 1 to {} steps",
            fleetcare_core::limits::MAX_UNITS
        ));
    }
    for (i, s) in req.iter().enumerate() {
        if req[..i]
            .iter()
            .any(|o| o.slot == s.slot && o.product == s.product)
        {
            problems.push(format!("{} {} is changed twice", s.slot, s.product));
            continue;
        }
        let Some(unit) = structure.units().find(|u| u.slot == s.slot) else {
            problems.push(format!("the device has no unit in slot {}", s.slot));
            continue;
        };
        let installed = unit.software.iter().find(|sw| sw.product == s.product);
        let maker = match s.action.as_str() {
            "install" => match st.store.release(key.tenant, &s.product, &s.version).await? {
                None => {
                    problems.push(format!("{} {} is not published", s.product, s.version));
                    continue;
                }
                Some(r) => {
                    let m = manifest_of(&r)?;
                    if !m.targets_unit(&unit.model, &unit.hw_revision) {
                        problems.push(format!(
                            "{} {} is not made for {} revision {} (slot {})",
                            s.product, s.version, unit.model, unit.hw_revision, s.slot
                        ));
                        continue;
                    }
                    m.maker
                }
            },
            "switch" => match installed {
                Some(sw) => sw.maker.clone(),
                None => {
                    problems.push(format!(
                        "switch needs {} installed in slot {}",
                        s.product, s.slot
                    ));
                    continue;
                }
            },
            other => {
                problems.push(format!(
                    "action {other:?}: `install` or `switch` (step {})",
                    i + 1
                ));
                continue;
            }
        };
        steps.push(SoftwareStep {
            slot: s.slot.clone(),
            product: s.product.clone(),
            maker,
            from: installed.map(|sw| sw.version.clone()),
            to: s.version.clone(),
            action: s.action.clone(),
        });
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        Err(ApiError::Invalid {
            message: format!("the job was refused: {} problem(s)", problems.len()),
            problems,
        })
    }
}

/// Whether releases can be delivered: published, with every file on the center. Answers are
/// kept for the life of the value (one request), so a page of jobs asks once per release.
#[derive(Default)]
pub struct Availability {
    known: std::collections::HashMap<(String, String), Option<String>>,
}

impl Availability {
    /// Why `product version` cannot be delivered now; `None`: it can.
    pub async fn release(
        &mut self,
        st: &Ctx,
        tenant: TenantId,
        product: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        let k = (product.to_owned(), version.to_owned());
        if let Some(w) = self.known.get(&k) {
            return Ok(w.clone());
        }
        let why = match st.store.release(tenant, product, version).await? {
            None => Some(format!(
                "{product} {version} is not published (fleetcare release publish)"
            )),
            Some(r) => {
                let arts: Vec<fleetcare_trust::Artifact> =
                    serde_json::from_str(&r.artifacts_json).unwrap_or_default();
                let mut missing = None;
                for a in &arts {
                    if st.store.artifact(tenant, &a.sha256).await? != Some(a.size) {
                        missing = Some(format!(
                            "{product} {version}: its file {} is not on the center yet \
                             (fleetcare release publish uploads it)",
                            a.name
                        ));
                        break;
                    }
                }
                missing
            }
        };
        self.known.insert(k, why.clone());
        Ok(why)
    }

    /// Why a job with these steps cannot be offered to its device now; `None`: it can.
    pub async fn steps(
        &mut self,
        st: &Ctx,
        tenant: TenantId,
        steps: &[SoftwareStep],
    ) -> Result<Option<String>, StoreError> {
        for s in steps.iter().filter(|s| s.action == "install") {
            if let Some(why) = self.release(st, tenant, &s.product, &s.to).await? {
                return Ok(Some(format!("waiting for its release: {why}")));
            }
        }
        Ok(None)
    }
}

/// Queued jobs looked at when a release becomes deliverable, at most (the oldest beyond it
/// wait for their device's next look, at most five minutes).
pub(crate) const WAITING_JOBS: u32 = 10_000;

/// A release became deliverable (published, or its last file arrived): tell the devices
/// whose queued jobs waited for a release that `concerns` picks and can be offered now.
pub(crate) async fn tell_waiting(
    st: &Ctx,
    tenant: TenantId,
    concerns: impl Fn(&ReleaseRecord) -> bool,
) -> Result<(), StoreError> {
    let mut releases: std::collections::HashMap<(String, String), bool> = Default::default();
    let mut avail = Availability::default();
    let mut told = Vec::new();
    let mut before = None;
    let mut seen = 0;
    loop {
        let page = st
            .store
            .jobs(
                tenant,
                &fleetcare_store::JobFilter {
                    device_id: None,
                    state: Some("queued".into()),
                    before_id: before,
                },
                1000,
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen += page.len() as u32;
        for j in &page {
            let steps: Vec<SoftwareStep> = serde_json::from_str(&j.steps_json).unwrap_or_default();
            let mut waited = false;
            for s in steps.iter().filter(|s| s.action == "install") {
                let k = (s.product.clone(), s.to.clone());
                let hit = match releases.get(&k) {
                    Some(h) => *h,
                    None => {
                        let h = st
                            .store
                            .release(tenant, &s.product, &s.to)
                            .await?
                            .is_some_and(|r| concerns(&r));
                        releases.insert(k, h);
                        h
                    }
                };
                waited |= hit;
            }
            if waited
                && avail.steps(st, tenant, &steps).await?.is_none()
                && let Ok(device_id) = fleetcare_core::DeviceId::parse(&j.device_id)
            {
                told.push(DeviceKey { tenant, device_id });
            }
        }
        if page.len() < 1000 || seen >= WAITING_JOBS {
            break;
        }
    }
    if !told.is_empty() {
        let n = st.devices.send_many(&told, &Command::JobsAvailable).await;
        tracing::info!(
            tenant,
            jobs = told.len(),
            connected = n,
            "jobs that waited for a release can run now"
        );
    }
    Ok(())
}

/// Jobs as the operator API shows them, each queued one saying why it waits, if it does.
pub async fn job_views(
    st: &Ctx,
    tenant: TenantId,
    jobs: Vec<fleetcare_store::JobRecord>,
) -> Result<Vec<fleetcare_wire::compat::Job>, StoreError> {
    let mut avail = Availability::default();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let queued = j.state == "queued";
        let mut v = job_view(j);
        if queued {
            v.waiting = avail.steps(st, tenant, &v.steps).await?;
        }
        out.push(v);
    }
    Ok(out)
}

/// Mark jobs that were never taken and whose time ran out as failed (`expired`).
pub async fn expire_jobs(st: &Ctx) {
    match st.store.expire_jobs(st.clock.now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "jobs expired"),
        Err(e) => tracing::warn!(error = %e, "expiring jobs"),
    }
}

pub(crate) fn job_view(j: fleetcare_store::JobRecord) -> cw::Job {
    let progress: Option<serde_json::Value> = j
        .progress_json
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    let bytes = |k: &str| progress.as_ref().and_then(|p| p[k].as_u64());
    cw::Job {
        bytes_done: bytes("bytes_done"),
        bytes_total: bytes("bytes_total"),
        events: Vec::new(),
        id: j.id,
        device_id: j.device_id,
        origin: j.origin,
        state: j.state,
        reason: j.reason,
        detail: j.detail,
        steps: serde_json::from_str(&j.steps_json).unwrap_or_default(),
        catalog_revision: j.catalog_revision,
        created_by: j.created_by,
        created_at: rfc3339(j.created_at_ms),
        updated_at: rfc3339(j.updated_at_ms),
        expires_at: rfc3339(j.expires_at_ms),
        approved_by: j.approved_by,
        approved_at: j.approved_at_ms.map(rfc3339),
        waiting: None,
    }
}

/// A published release's manifest, as signed (not verified again: it was at publication).
/// A release published through TUF is stored as `{"tuf": {role, paths, manifest}}`: the files
/// a device looks up in the repository, and the manifest they make, for the center's checks.
pub(crate) fn manifest_of(r: &ReleaseRecord) -> Result<ReleaseManifest, ApiError> {
    let v: serde_json::Value = serde_json::from_str(&r.envelope)
        .map_err(|e| ApiError::Internal(format!("stored release: {e}")))?;
    if let Some(t) = v.get("tuf") {
        return serde_json::from_value(t["manifest"].clone())
            .map_err(|e| ApiError::Internal(format!("stored TUF release: {e}")));
    }
    let env: Envelope = serde_json::from_value(v)
        .map_err(|e| ApiError::Internal(format!("stored release: {e}")))?;
    ReleaseManifest::from_json(&env.unverified_payload().map_err(trust_err)?).map_err(trust_err)
}

/// The time `ms` (milliseconds since the epoch, the clock's unit) as the signed documents'
/// checks take it.
pub(crate) fn system_time(ms: i64) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn trust_err(e: TrustError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}
