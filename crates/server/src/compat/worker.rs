//! The compatibility worker: at start it loads every catalog and the fleet index, then acts on
//! findings — a version-change job where software can fix it, an advice notification where
//! only hardware can, units taken out of service.

use crate::compat::Compat;
use crate::compat::decide::{Advice, Current, decide};
use crate::compat::notice::{NotificationBody, push_notification};
use crate::ctx::Ctx;
use fleetcare_compat::{Catalog, DeviceFacts, Policy};
use fleetcare_store::{DeviceKey, NewJob, NewNotification, PolicyRecord, StoreError, TenantId};
use fleetcare_wire::compat::{self as w};
use fleetcare_wire::device::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Compat {
    /// At start: every tenant's current catalog, the fleet index from the store, then a
    /// re-judgement of every tenant (only changed findings are written).
    pub async fn start(self: Arc<Self>, st: Ctx) {
        match st.store.current_catalogs().await {
            Ok(list) => {
                for (tenant, rev) in list {
                    let Some(source) = rev.source else { continue };
                    match Catalog::parse(&source, &self.vocab) {
                        Ok(catalog) => {
                            self.install(
                                tenant,
                                Current {
                                    revision: rev.revision,
                                    catalog,
                                },
                            );
                        }
                        Err(e) => tracing::error!(tenant, revision = rev.revision, error = %e,
                            "a stored catalog no longer compiles; the tenant has no catalog until one is loaded"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the catalogs failed"),
        }
        let mut after: Option<DeviceKey> = None;
        let mut loaded = 0usize;
        loop {
            let rows = match st.store.structures(after.as_ref(), 5000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "loading the fleet index failed");
                    return;
                }
            };
            let Some(last) = rows.last() else { break };
            after = Some(last.key.clone());
            let mut index = self.index.write().expect("fleet index");
            for r in rows {
                let tenant = r.key.tenant;
                if let Some((id, entry)) = self.entry_of(r) {
                    index.entry(tenant).or_default().insert(id, entry);
                    loaded += 1;
                }
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(devices = loaded, "fleet index loaded");
        let tenants: Vec<TenantId> = self
            .catalogs
            .read()
            .expect("catalogs")
            .keys()
            .copied()
            .collect();
        for t in tenants {
            let g = self.generation(t);
            self.rejudge(&st, t, g).await;
        }
    }

    /// The worker: act on each device queued (see the module documentation).
    pub async fn run_worker(self: Arc<Self>, st: Ctx) {
        let Some(mut rx) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        while let Some(key) = rx.recv().await {
            self.pending.lock().expect("pending").remove(&key);
            if let Err(e) = self.act(&st, &key).await {
                tracing::warn!(device = %key.device_id, error = %e, "acting on compatibility failed");
            }
        }
    }

    async fn act(&self, st: &Ctx, key: &DeviceKey) -> Result<(), StoreError> {
        let Some(cur) = self.current(key.tenant) else {
            return Ok(());
        };
        let Some(rec) = st.store.device(key).await? else {
            return Ok(());
        };
        let Some(structure) = rec.structure else {
            return Ok(());
        };
        // Units out of service whose slot holds a unit that works now go back first.
        crate::compat::units::reconcile(st, self, key, &cur, &structure).await?;
        let policy = st.store.policy(key.tenant).await?;
        // Reads first: write only what changes.
        let open_jobs = st.store.open_jobs(key).await?;
        let advised = st
            .store
            .notifications(key, false, 50)
            .await?
            .iter()
            .any(|n| n.kind == "compat_advice");
        // Judging, planning and searching for advice are CPU work: off the async runtime.
        let plan_policy = Policy::parse(&policy.plan).unwrap_or_default();
        let (vocab, cur2, structure2) = (self.vocab.clone(), cur.clone(), structure.clone());
        let started = Instant::now();
        let d = tokio::task::spawn_blocking(move || {
            let facts = DeviceFacts::new(&vocab, structure2.model(), structure2.units());
            decide(&cur2, &facts, &structure2, plan_policy)
        })
        .await
        .map_err(|e| StoreError::Db(format!("the compatibility decision failed: {e}")))?;
        st.metrics
            .compat_plan_seconds
            .observe(started.elapsed().as_secs_f64());
        // The stored state was judged before any plan was searched: settle it.
        if rec.compat_state.as_deref() != Some(d.state)
            && st
                .store
                .settle_compat_state(key, &d.findings_hash, d.state)
                .await?
        {
            st.events.device(key.tenant, key.device_id.as_str());
        }
        let now = st.clock.now_ms();
        let pending = open_jobs.iter().any(|j| {
            j.origin == "compat" && matches!(j.state.as_str(), "awaiting_approval" | "queued")
        });
        // A device that cannot install gets no job; its plan says why.
        let blocked = rec.install_blocked.as_deref();
        if (d.job_steps.is_none() || blocked.is_some()) && pending {
            let why = match blocked {
                Some(why) => format!("the device cannot install software: {why}"),
                None => "the device needs no software change now".into(),
            };
            st.store
                .cancel_pending_jobs(key, "compat", &why, now)
                .await?;
        }
        if let Some(steps) = d.job_steps.filter(|_| blocked.is_none()) {
            self.ensure_job(st, key, &cur, steps, &policy, &open_jobs)
                .await?;
        }
        match d.advice {
            Some(a) => self.advise(st, key, &cur, a, &policy).await?,
            None if advised => {
                st.store
                    .close_notifications(key, "compat_advice", now)
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn ensure_job(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        cur: &Current,
        steps: Vec<w::SoftwareStep>,
        policy: &PolicyRecord,
        open: &[fleetcare_store::JobRecord],
    ) -> Result<(), StoreError> {
        if policy.fix == "off" {
            return Ok(());
        }
        let steps_json = serde_json::to_string(&steps).expect("steps serialize");
        if open
            .iter()
            .any(|j| !matches!(j.state.as_str(), "awaiting_approval" | "queued"))
        {
            return Ok(()); // one change at a time: a job is running
        }
        if let Some(same) = open
            .iter()
            .find(|j| j.origin == "compat" && j.steps_json == steps_json)
        {
            if same.state == "queued" {
                st.devices.send(key, Command::JobsAvailable).await;
            }
            return Ok(());
        }
        let now = st.clock.now_ms();
        if open.iter().any(|j| j.origin == "compat") {
            st.store
                .cancel_pending_jobs(key, "compat", "replaced by a newer compatibility plan", now)
                .await?;
        }
        let state = policy.fix_job_state();
        let ttl_ms = policy.job_ttl_ms();
        let id = st
            .store
            .create_job(
                key,
                &NewJob {
                    origin: "compat".into(),
                    state: state.into(),
                    steps_json,
                    catalog_revision: Some(cur.revision),
                    created_by: "center (compatibility plan)".into(),
                    expires_at_ms: now.saturating_add(ttl_ms),
                },
                now,
            )
            .await?;
        st.metrics.jobs_created.inc();
        tracing::info!(device = %key.device_id, job = id, state, "version-change job created");
        if state == "queued" {
            st.devices.send(key, Command::JobsAvailable).await;
        }
        Ok(())
    }

    async fn advise(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        cur: &Current,
        a: Advice,
        policy: &PolicyRecord,
    ) -> Result<(), StoreError> {
        let Advice {
            summary,
            recommendations: wire_recs,
            key: notice_key,
            out_of_service,
        } = a;
        let notice = NewNotification {
            key: notice_key,
            kind: "compat_advice".into(),
            title: format!("{}: a hardware change is needed", key.device_id),
            body_json: serde_json::to_string(&NotificationBody {
                summary: summary.clone(),
                recommendations: wire_recs.clone(),
                switched_to: None,
            })
            .expect("bodies serialize"),
            catalog_revision: Some(cur.revision),
            replaces: true,
        };
        let now = st.clock.now_ms();
        if let Some(id) = st.store.notify(key, &notice, now).await? {
            st.metrics.notifications.inc();
            push_notification(st, key, id, &notice, now).await?;
        }
        // Where policy allows: take an optional incompatible unit out of service, so the
        // device keeps working without it until the hardware is changed.
        if policy.out_of_service
            && let Some((slot, serial, switched_to)) = out_of_service
        {
            let reason = format!(
                "the {slot} does not work in this configuration; the device keeps working without it until it is replaced"
            );
            crate::compat::units::take_out(
                st,
                key,
                fleetcare_store::units::UnitService {
                    slot,
                    serial,
                    origin: fleetcare_store::units::BY_POLICY.into(),
                    taken_by: "center (compatibility policy)".into(),
                    reason,
                    switched_to,
                    taken_at_ms: now,
                },
                &summary,
                wire_recs,
                Some(cur.revision),
            )
            .await?;
        }
        Ok(())
    }
}
