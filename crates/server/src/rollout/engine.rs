//! The rollout engine's work: every second (and at once when nudged) it moves devices whose
//! jobs ended, asks the gates whether to pause, advance or wait, and dispatches pending devices
//! that are in a proper state and whose own plan reaches the target; reverts on abort.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetcare_compat::plan::{PlanOutcome, Policy};
use fleetcare_compat::version::Version;
use fleetcare_core::DeviceId;
use fleetcare_rollout::eligibility::{self, DeviceState};
use fleetcare_rollout::waves::{self};
use fleetcare_rollout::{Decision, WaveCounts};
use fleetcare_store::{
    DeviceKey, NewJob, NewRolloutDevice, RolloutMove, RolloutRecord, StoreError, WaveRecord,
};
use fleetcare_wire::device::Command;

use crate::compat::decide::Entry;
use crate::ctx::Ctx;
use crate::rollout::select::{DeviceSubject, first_state, running_version};
use crate::rollout::{Label, Rollouts, Spec, Thresholds, site_rt};

/// How often the engine works unasked.
const TICK: Duration = Duration::from_secs(1);

/// An ineligible device is looked at again after this long.
const RECHECK_MS: i64 = 10_000;

/// Most devices looked at per rollout per tick.
const MAX_LOOK: u32 = 5000;

/// The plan search's budget per device.
const PLAN_BUDGET: Duration = Duration::from_millis(50);

/// What the engine makes of one device now.
pub(crate) enum Verdict {
    Dispatch(String),
    Done(&'static str, String),
    Ineligible(String),
}

/// The plan of one device for the rollout's target.
pub(crate) fn plan_verdict(
    cur: &crate::compat::decide::Current,
    entry: &Entry,
    policy: Policy,
    pins: &[(fleetcare_compat::vocab::Sym, Version)],
    release: bool,
) -> Verdict {
    if release && pins.is_empty() {
        return Verdict::Ineligible("the catalog does not know the release's product".into());
    }
    match cur
        .catalog
        .plan_pinned(&entry.facts, policy, PLAN_BUDGET, pins)
    {
        PlanOutcome::Change(steps) => {
            if !cur
                .catalog
                .software_compatible(&cur.catalog.apply(&entry.facts, &steps))
            {
                Verdict::Ineligible("its plan would leave it incompatible".into())
            } else {
                let wire =
                    crate::compat::decide::software_steps(&cur.catalog, &entry.facts, &steps);
                Verdict::Dispatch(serde_json::to_string(&wire).expect("steps serialize"))
            }
        }
        PlanOutcome::Keep => {
            Verdict::Done("skipped", "compatible already: nothing to change".into())
        }
        PlanOutcome::NoSolution(why) => Verdict::Ineligible(format!(
            "no plan for it reaches the target: {} (`compat check` shows the whole reasoning)",
            fleetcare_compat::plan::summarize(&why)
        )),
        PlanOutcome::OutOfTime => Verdict::Ineligible("its plan search ran out of time".into()),
    }
}

/// After an abort with `on_abort = revert`: the device switches back to what it had.
pub(crate) async fn revert(
    st: &Ctx,
    r: &RolloutRecord,
    device: &str,
    job: u64,
    steps_json: &str,
) -> Result<(), StoreError> {
    let Ok(device_id) = DeviceId::parse(device) else {
        return Ok(());
    };
    let steps: Vec<fleetcare_wire::compat::SoftwareStep> =
        serde_json::from_str(steps_json).unwrap_or_default();
    let back: Vec<fleetcare_wire::compat::SoftwareStep> = steps
        .into_iter()
        .filter_map(|s| {
            Some(fleetcare_wire::compat::SoftwareStep {
                from: Some(s.to.clone()),
                to: s.from?,
                action: "switch".into(),
                ..s
            })
        })
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    let key = DeviceKey {
        tenant: r.tenant,
        device_id,
    };
    let now = st.clock.now_ms();
    let id = st
        .store
        .create_job(
            &key,
            &NewJob {
                origin: "rollout".into(),
                state: "queued".into(),
                steps_json: serde_json::to_string(&back).expect("steps serialize"),
                catalog_revision: None,
                created_by: format!("rollout {} aborted: revert of job {job}", r.id),
                expires_at_ms: now.saturating_add(7 * 86_400_000),
            },
            now,
        )
        .await?;
    st.devices.send(&key, Command::JobsAvailable).await;
    tracing::info!(
        rollout = r.id,
        device,
        job = id,
        "rollout aborted: the device switches back"
    );
    Ok(())
}

/// How a rollout ended, in words: "done: 4 succeeded" or "done with 3 ineligible: …".
pub(crate) fn done_words(succeeded: u64, failed: u64, ineligible: u64, skipped: u64) -> String {
    let mut left = Vec::new();
    if failed > 0 {
        left.push(format!("{failed} failed"));
    }
    if ineligible > 0 {
        left.push(format!("{ineligible} ineligible"));
    }
    let mut parts = vec![format!("{succeeded} succeeded")];
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    if ineligible > 0 {
        parts.push(format!(
            "{ineligible} ineligible (not in a proper state while it ran; a new rollout takes them)"
        ));
    }
    if skipped > 0 {
        parts.push(format!("{skipped} had it already"));
    }
    if left.is_empty() {
        format!("done: {}", parts.join(", "))
    } else {
        format!("done with {}: {}", left.join(" and "), parts.join(", "))
    }
}

pub(crate) fn counts(w: &WaveRecord) -> WaveCounts {
    WaveCounts {
        devices: w.devices,
        pending: w.pending,
        ineligible: w.ineligible,
        running: w.running,
        succeeded: w.succeeded,
        failed: w.failed,
        skipped: w.skipped,
    }
}

impl Rollouts {
    /// Load labels and sites, then work until shutdown.
    pub async fn run(self: Arc<Self>, st: Ctx) {
        match st.store.all_labels().await {
            Ok(all) => {
                for (t, l) in all {
                    let tags = serde_json::from_str(&l.tags_json).unwrap_or_default();
                    self.set_label(t, &l.device_id, Label { site: l.site, tags });
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the device labels failed"),
        }
        match st.store.all_sites().await {
            Ok(all) => {
                for (t, s) in all {
                    let windows: Vec<String> =
                        serde_json::from_str(&s.windows_json).unwrap_or_default();
                    if let Ok(rt) = site_rt(&s.timezone, &windows) {
                        self.set_site(t, &s.name, rt);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the sites failed"),
        }
        self.ready.store(true, Ordering::SeqCst);
        let mut shutdown = st.shutdown.clone();
        loop {
            // Rollouts move on the one instance that holds the engines' lease.
            if !st.devices.cluster.leads() {
                // Changed devices are the leader's to look at (it hears of them too).
                self.changed.lock().expect("changed").clear();
            } else if let Err(e) = self.work(&st).await {
                tracing::warn!(error = %e, "the rollout engine: will try again");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.nudge.notified() => {}
                () = crate::stopped(&mut shutdown) => return,
            }
        }
    }

    /// One round over every active rollout.
    pub async fn work(&self, st: &Ctx) -> Result<(), StoreError> {
        let changed = std::mem::take(&mut *self.changed.lock().expect("changed"));
        self.abandon_unfinished(st).await?;
        let active = st.store.active_rollouts().await?;
        for r in &active {
            if !changed.is_empty() && r.state == "running" {
                self.newcomers(st, r, &changed).await?;
            }
            self.tick(st, r).await?;
        }
        if st.events.watched() {
            self.tell_pages(st, &active).await?;
        }
        Ok(())
    }

    /// Rollouts cut off while being created (a creation takes seconds even for a million
    /// devices; one older than this was cut off by a stopped center and would otherwise show
    /// `creating` for ever) are aborted. A write, so once a minute, not on every round.
    async fn abandon_unfinished(&self, st: &Ctx) -> Result<(), StoreError> {
        const UNFINISHED_MS: i64 = 15 * 60 * 1000;
        const EVERY_MS: i64 = 60 * 1000;
        let now = st.clock.now_ms();
        if now.saturating_sub(self.swept_at_ms.load(Ordering::Relaxed)) < EVERY_MS {
            return Ok(());
        }
        self.swept_at_ms.store(now, Ordering::Relaxed);
        let abandoned = st
            .store
            .abandon_unfinished_rollouts(now - UNFINISHED_MS, now)
            .await?;
        if abandoned > 0 {
            tracing::warn!(
                rollouts = abandoned,
                "rollouts whose creation did not finish were aborted"
            );
        }
        Ok(())
    }

    /// A rollout change notice for each tenant whose active rollouts moved since the last
    /// round (the live pages watch; one read of the wave counters per active rollout).
    async fn tell_pages(&self, st: &Ctx, active: &[RolloutRecord]) -> Result<(), StoreError> {
        use std::hash::{Hash, Hasher};
        let mut now = HashMap::new();
        let mut moved = std::collections::BTreeSet::new();
        for r in active {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for w in st.store.rollout_waves(r.tenant, r.id).await? {
                (
                    w.pending,
                    w.ineligible,
                    w.running,
                    w.succeeded,
                    w.failed,
                    w.skipped,
                )
                    .hash(&mut h);
            }
            if let Some(now) = st.store.rollout(r.tenant, r.id).await? {
                (now.state, now.current_wave, now.updated_at_ms).hash(&mut h);
            }
            let fp = h.finish();
            now.insert(r.id, fp);
            if self.seen.lock().expect("seen").get(&r.id) != Some(&fp) {
                moved.insert(r.tenant);
            }
        }
        *self.seen.lock().expect("seen") = now;
        for tenant in moved {
            st.events
                .notify(tenant, crate::cluster::events::Topic::Rollouts);
        }
        Ok(())
    }

    /// Devices that reported a new structure: join the rollout if they match and are new to
    /// it, or are looked at again if what they run changed.
    async fn newcomers(
        &self,
        st: &Ctx,
        r: &RolloutRecord,
        keys: &[DeviceKey],
    ) -> Result<(), StoreError> {
        let Some(spec) = self.spec(r) else {
            return Ok(());
        };
        let th: Thresholds = match serde_json::from_str(&r.thresholds_json) {
            Ok(t) => t,
            Err(_) => return Ok(()),
        };
        let now = st.clock.now_ms();
        for key in keys.iter().filter(|k| k.tenant == r.tenant) {
            let id = key.device_id.as_str();
            let Some(entry) = self.compat.snapshot_one(key) else {
                continue;
            };
            let label = self.label(r.tenant, id);
            let subject = DeviceSubject {
                id,
                entry: &entry,
                vocab: &self.compat.vocab,
                label: label.as_ref(),
                model: entry.facts.text(&self.compat.vocab, &entry.facts.model),
            };
            if !spec.filter.matches(&subject) {
                continue;
            }
            let (state, reason) = first_state(self, r.tenant, &spec, &entry);
            match st.store.rollout_device(r.tenant, r.id, id).await? {
                None => {
                    let wave = waves::wave_of(&th.up_to, waves::place(th.seed, id)) as u32;
                    st.store
                        .add_rollout_devices(
                            r.tenant,
                            r.id,
                            &[NewRolloutDevice {
                                device_id: id.to_owned(),
                                wave,
                                state,
                                reason,
                            }],
                            now,
                        )
                        .await?;
                }
                Some(d)
                    if matches!(d.state.as_str(), "succeeded" | "skipped")
                        && state == "pending" =>
                {
                    // It runs something else now: planned again.
                    st.store
                        .set_rollout_device(
                            r.tenant,
                            r.id,
                            id,
                            d.wave,
                            &d.state,
                            "pending",
                            Some("its software changed: planned again"),
                            now,
                        )
                        .await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn tick(&self, st: &Ctx, r: &RolloutRecord) -> Result<(), StoreError> {
        let Some(spec) = self.spec(r) else {
            tracing::error!(
                rollout = r.id,
                "a stored rollout no longer parses; it is left alone"
            );
            return Ok(());
        };
        let now = st.clock.now_ms();
        self.settle_finished(st, r, &spec, now).await?;
        if r.state != "running" {
            return Ok(());
        }
        let waves_now = st.store.rollout_waves(r.tenant, r.id).await?;
        if waves_now.is_empty() {
            // Being created (its waves are written next): nothing to decide yet.
            return Ok(());
        }
        let Some(max_wave) = self.gate(st, r, &spec, &waves_now, now).await? else {
            return Ok(());
        };
        let running: u64 = waves_now.iter().map(|w| w.running).sum();
        let slots = spec.gates.max_concurrent.saturating_sub(running);
        if slots == 0 {
            return Ok(());
        }
        self.dispatch(st, r, &spec, max_wave, slots, now).await
    }

    /// Devices whose jobs ended move to succeeded or failed, in one transaction; an aborted
    /// rollout that reverts undoes each success.
    async fn settle_finished(
        &self,
        st: &Ctx,
        r: &RolloutRecord,
        spec: &Spec,
        now: i64,
    ) -> Result<(), StoreError> {
        let finished = st
            .store
            .finished_rollout_jobs(r.tenant, r.id, MAX_LOOK)
            .await?;
        let ended: Vec<RolloutMove> = finished
            .iter()
            .map(|f| {
                let ok = f.job_state == "succeeded";
                RolloutMove {
                    device_id: f.device_id.clone(),
                    wave: f.wave,
                    from: "running".into(),
                    to: if ok { "succeeded" } else { "failed" }.into(),
                    reason: (!ok).then(|| {
                        format!(
                            "job {} {}: {}",
                            f.job_id,
                            f.job_state,
                            f.reason.clone().unwrap_or_default()
                        )
                    }),
                }
            })
            .collect();
        let moved = st
            .store
            .move_rollout_devices(r.tenant, r.id, &ended, now)
            .await?;
        if r.state == "aborted" && spec.wire.on_abort == "revert" {
            for (f, moved) in finished.iter().zip(moved) {
                if moved && f.job_state == "succeeded" {
                    revert(st, r, &f.device_id, f.job_id, &f.steps_json).await?;
                }
            }
        }
        Ok(())
    }

    /// Ask the gates: pause, advance, wait for approval, finish or go on. `Some(highest wave
    /// that may dispatch)` when the rollout goes on dispatching this round.
    async fn gate(
        &self,
        st: &Ctx,
        r: &RolloutRecord,
        spec: &Spec,
        waves_now: &[WaveRecord],
        now: i64,
    ) -> Result<Option<u32>, StoreError> {
        let counts: Vec<WaveCounts> = waves_now.iter().map(counts).collect();
        let current = r.current_wave as usize;
        let mut max_wave = r.current_wave;
        match fleetcare_rollout::gates::decide(
            &spec.gates,
            current,
            &counts,
            r.wave_approved as usize > current,
        ) {
            Decision::Pause(reason) => {
                tracing::warn!(rollout = r.id, %reason, "rollout paused itself");
                st.store
                    .set_rollout_state(r.tenant, r.id, &["running"], "paused", Some(&reason), now)
                    .await?;
                return Ok(None);
            }
            Decision::Advance(n) => {
                tracing::info!(rollout = r.id, wave = n + 1, "rollout: next wave");
                st.store.start_wave(r.tenant, r.id, n as u32, now).await?;
                max_wave = n as u32;
            }
            Decision::AwaitApproval(n) => {
                let why = format!("wave {} waits for approval", n + 1);
                if r.state_reason.as_deref() != Some(why.as_str()) {
                    st.store
                        .set_rollout_reason(r.tenant, r.id, Some(&why), now)
                        .await?;
                }
            }
            Decision::Done => {
                let sum = |f: fn(&WaveRecord) -> u64| waves_now.iter().map(f).sum::<u64>();
                let (pending, running) = (sum(|w| w.pending), sum(|w| w.running));
                if pending == 0 && running == 0 {
                    let why = done_words(
                        sum(|w| w.succeeded),
                        sum(|w| w.failed),
                        sum(|w| w.ineligible),
                        sum(|w| w.skipped),
                    );
                    if st
                        .store
                        .set_rollout_state(r.tenant, r.id, &["running"], "done", Some(&why), now)
                        .await?
                    {
                        tracing::info!(rollout = r.id, %why, "rollout done");
                        st.events
                            .notify(r.tenant, crate::cluster::events::Topic::Rollouts);
                    }
                    return Ok(None);
                }
                let why = format!(
                    "every wave has started; {pending} device(s) wait for their turn, {running} \
                     install(s) running"
                );
                if r.state_reason.as_deref() != Some(why.as_str()) {
                    st.store
                        .set_rollout_reason(r.tenant, r.id, Some(&why), now)
                        .await?;
                }
            }
            Decision::Continue => {}
        }
        Ok(Some(max_wave))
    }

    /// Pending devices of the started waves, up to `slots`: each is checked for its proper
    /// state, then every plan is searched in one blocking task, then every move and every
    /// dispatch is stored in one transaction each.
    async fn dispatch(
        &self,
        st: &Ctx,
        r: &RolloutRecord,
        spec: &Spec,
        max_wave: u32,
        mut slots: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let look = u32::try_from(slots.saturating_mul(2))
            .unwrap_or(MAX_LOOK)
            .min(MAX_LOOK);
        let candidates = st
            .store
            .rollout_candidates(r.tenant, r.id, max_wave, now - RECHECK_MS, look)
            .await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let policy = st.store.policy(r.tenant).await?;
        let plan_policy = Policy::parse(&policy.plan).unwrap_or_default();
        let ttl = policy.job_ttl_ms();
        // The proper state of each, then every plan in one blocking task, then every move and
        // every dispatch in one transaction each.
        let mut moves = Vec::new();
        let mut to_plan = Vec::new();
        for c in candidates {
            let Ok(device_id) = DeviceId::parse(&c.device_id) else {
                continue;
            };
            let key = DeviceKey {
                tenant: r.tenant,
                device_id,
            };
            match self.precheck(st, &key, spec, now).await? {
                Ok(entry) => to_plan.push((c, key, entry)),
                Err((state, reason)) => moves.push(RolloutMove {
                    device_id: c.device_id.clone(),
                    wave: c.wave,
                    from: c.state.clone(),
                    to: state.into(),
                    reason: Some(reason),
                }),
            }
        }
        let mut dispatch = Vec::new();
        if !to_plan.is_empty() {
            let entries: Vec<Arc<Entry>> = to_plan.iter().map(|(_, _, e)| e.clone()).collect();
            let verdicts = plan_all(&self.compat, r.tenant, spec, entries, plan_policy).await?;
            for ((c, key, _), v) in to_plan.into_iter().zip(verdicts) {
                match v {
                    Verdict::Dispatch(steps_json) if slots > 0 => {
                        slots -= 1;
                        dispatch.push((
                            key,
                            c.wave,
                            c.state.clone(),
                            NewJob {
                                origin: "rollout".into(),
                                state: "queued".into(),
                                steps_json,
                                catalog_revision: self.compat.current(r.tenant).map(|c| c.revision),
                                created_by: format!("rollout {} ({})", r.id, r.name),
                                expires_at_ms: now.saturating_add(ttl),
                            },
                        ));
                    }
                    Verdict::Dispatch(_) => {}
                    Verdict::Done(state, reason) => moves.push(RolloutMove {
                        device_id: c.device_id.clone(),
                        wave: c.wave,
                        from: c.state.clone(),
                        to: state.into(),
                        reason: Some(reason),
                    }),
                    Verdict::Ineligible(reason) => moves.push(RolloutMove {
                        device_id: c.device_id.clone(),
                        wave: c.wave,
                        from: c.state.clone(),
                        to: "ineligible".into(),
                        reason: Some(reason),
                    }),
                }
            }
        }
        st.store
            .move_rollout_devices(r.tenant, r.id, &moves, now)
            .await?;
        let ids = st.store.dispatch_rollout_jobs(r.id, &dispatch, now).await?;
        let mut told = Vec::new();
        for ((key, _, _, _), job) in dispatch.iter().zip(ids) {
            if job.is_some() {
                st.metrics.jobs_created.inc();
                told.push(key.clone());
            }
        }
        st.devices.send_many(&told, &Command::JobsAvailable).await;
        Ok(())
    }

    /// The checks before a plan: the target, the device's condition, its site's window.
    /// `Ok` with the device's entry if it should be planned, else where it goes and why.
    async fn precheck(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        spec: &Spec,
        now: i64,
    ) -> Result<Result<Arc<Entry>, (&'static str, String)>, StoreError> {
        let Some(entry) = self.compat.snapshot_one(key) else {
            return Ok(Err((
                "ineligible",
                "the center holds no structure of it".into(),
            )));
        };
        if let Some((product, version)) = &spec.release {
            match running_version(self, &entry, product) {
                None => return Ok(Err(("skipped", format!("runs no {product}")))),
                Some(v) if Version::parse(&v).is_ok_and(|v| v == *version) => {
                    return Ok(Err((
                        "succeeded",
                        format!("runs {product} {version} already"),
                    )));
                }
                Some(_) => {}
            }
        }
        let state = self.device_state(st, key, now).await?;
        if let Err(why) = eligibility::check(now, &spec.requirements, &state) {
            return Ok(Err(("ineligible", why)));
        }
        Ok(Ok(entry))
    }

    /// What a rollout judges a device's proper state by, now.
    pub async fn device_state(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        now: i64,
    ) -> Result<DeviceState, StoreError> {
        let cond = st.store.device_condition(key).await?;
        let label = self.label(key.tenant, key.device_id.as_str());
        Ok(DeviceState {
            connected: st.devices.seen_online(key).await,
            last_seen_ms: cond.last_report_at_ms,
            worst_trouble: cond.worst_trouble,
            abnormal_units: cond.abnormal_slots,
            open_job: cond.open_job,
            window_open: self.window_open(
                key.tenant,
                label.as_ref().and_then(|l| l.site.as_deref()),
                now,
            ),
            install_blocked: cond.install_blocked,
        })
    }
}

/// Every entry's verdict for the rollout's target, the plan searches in one blocking task.
async fn plan_all(
    compat: &crate::compat::Compat,
    tenant: fleetcare_store::TenantId,
    spec: &Spec,
    entries: Vec<Arc<Entry>>,
    plan_policy: Policy,
) -> Result<Vec<Verdict>, StoreError> {
    Ok(match compat.current(tenant) {
        None => entries
            .iter()
            .map(|_| Verdict::Ineligible("the tenant has no catalog to plan with".into()))
            .collect::<Vec<_>>(),
        Some(cur) => {
            let pins: Vec<(fleetcare_compat::vocab::Sym, Version)> = match &spec.release {
                Some((product, version)) => compat
                    .vocab
                    .get(product)
                    .map(|sym| vec![(sym, version.clone())])
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let (cur2, release) = (cur.clone(), spec.release.is_some());
            tokio::task::spawn_blocking(move || {
                entries
                    .iter()
                    .map(|e| plan_verdict(&cur2, e, plan_policy, &pins, release))
                    .collect()
            })
            .await
            .map_err(|e| StoreError::Db(format!("the plan search failed: {e}")))?
        }
    })
}
