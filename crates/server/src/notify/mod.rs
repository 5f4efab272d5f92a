//! Notifications: events leave the center as signed webhooks and e-mail, at least once, from
//! a durable outbox (see ARCHITECTURE.md, "Notifications").
//!
//! - **Outbox.** Store triggers append an event in the very transaction that opens or
//!   resolves a trouble, makes a hardware advice, pauses a rollout or fails a job; the sweep
//!   marks silent devices offline with its event in one transaction too. Nothing here decides
//!   whether an event exists: a committed change has its event, a rolled-back one has none.
//! - **Fan-out** (on the instance holding the engines' lease): each waiting event's body is
//!   rendered once and a delivery is made for each matching subscription, in one
//!   transaction that also marks the event fanned out.
//! - **Sending** (on every instance): due deliveries are claimed (see the store's
//!   `claim_deliveries`), sent, and their outcome recorded by the claimer alone. A failure is
//!   retried after a delay that doubles with the delivery's age (1 s to 1 h) until
//!   `notify_retry_hours` have passed; then the delivery has failed and, if nothing reached
//!   the subscription since, the subscription is disabled, logged and audited.

pub mod api;
pub mod email;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fleetcare_core::clock::rfc3339;
use fleetcare_store::notify::{DueDelivery, OutboxEvent, Outcome, SendResult, SubscriptionRecord};
use fleetcare_store::{DeviceKey, NewAudit, StoreError, TenantId};
use fleetcare_wire::notify::{self as w, Event, EventDevice};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::ctx::Ctx;
use crate::diag::api::severity_rank;
use crate::rollout::Rollouts;

/// Events fanned out per round.
const FAN_OUT_BATCH: u32 = 500;
/// Deliveries looked at per round.
const SEND_BATCH: u32 = 1024;
/// How often the worker looks for work when nothing woke it.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The PostgreSQL channel the outbox triggers wake workers on.
pub const OUTBOX_CHANNEL: &str = "fleetcare_outbox";

/// Severities, lowest first.
pub const SEVERITIES: &[&str] = fleetcare_wire::troubles::TROUBLE_SEVERITIES;

/// The notification worker's shared parts.
pub struct Notifier {
    pub guard: Arc<webhook::Guard>,
    client: reqwest::Client,
    mailer: OnceLock<email::Mailer>,
    retry_for_ms: i64,
    timeout: Duration,
    concurrency: usize,
    keep_days: u64,
    public_url: Option<String>,
    nudge: Notify,
    tenants: Mutex<HashMap<TenantId, String>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(config: &ServerConfig) -> Notifier {
        let n = &config.notify;
        let guard = Arc::new(webhook::Guard::new(&n.allow_networks));
        let tls = match fleetcare_tls::client_config(&n.ca_file, None) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "webhooks over https will fail: no CA certificates (`notify_ca_file`)");
                None
            }
        };
        Notifier {
            client: webhook::client(guard.clone(), tls, n.timeout),
            guard,
            mailer: OnceLock::new(),
            retry_for_ms: crate::cluster::ms(n.retry_for),
            timeout: n.timeout,
            concurrency: n.concurrency,
            keep_days: n.keep_days,
            public_url: config.public_url.clone(),
            nudge: Notify::new(),
            tenants: Mutex::default(),
        }
    }

    /// Connect the SMTP relay the config names (checked at start: a bad relay setting stops
    /// the center with the reason).
    pub fn configure_mail(&self, config: &ServerConfig) -> Result<(), String> {
        if let Some(s) = &config.notify.smtp {
            let m = email::Mailer::new(s, &config.notify.ca_file, config.notify.timeout)?;
            let _ = self.mailer.set(m);
        }
        Ok(())
    }

    /// Wake the worker (an event may be waiting).
    pub fn wake(&self) {
        self.nudge.notify_one();
    }

    /// When a failed send is tried again, or `None` when its retries are over.
    fn retry_at(&self, created_at_ms: i64, now_ms: i64, salt: u64) -> Option<i64> {
        let age = now_ms.saturating_sub(created_at_ms);
        if age >= self.retry_for_ms {
            return None;
        }
        let delay = age.clamp(1_000, 3_600_000);
        // Up to a tenth more, so receivers coming back are not hit by every retry at once.
        let jitter = i64::try_from(salt % 1000).unwrap_or(0) * delay / 10_000;
        Some(now_ms + delay + jitter)
    }
}

/// What the worker works with: the engines' handles, the notifier, and the rollouts' fleet
/// index and labels (for subscription filters).
struct Worker {
    ctx: Ctx,
    notify: Arc<Notifier>,
    rollouts: Arc<Rollouts>,
}

impl std::ops::Deref for Worker {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

/// The worker: fan out waiting events, send due deliveries; woken by the outbox (on
/// PostgreSQL, by the triggers' `NOTIFY`), by this instance's own changes, or every
/// [`IDLE_POLL`].
pub async fn run(ctx: Ctx, notify: Arc<Notifier>, rollouts: Arc<Rollouts>) {
    let st = &Worker {
        ctx,
        notify,
        rollouts,
    };
    if let Ok(Some(mut sub)) = st.store.subscribe(OUTBOX_CHANNEL).await {
        let n = st.notify.clone();
        tokio::spawn(async move {
            while sub.next().await.is_ok() {
                n.wake();
            }
        });
    }
    if let Some(signal) = st.store.outbox_signal() {
        let n = st.notify.clone();
        let mut stop = st.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = signal.notified() => n.wake(),
                    () = crate::center::stopped(&mut stop) => return,
                }
            }
        });
    }
    let mut stop = st.shutdown.clone();
    loop {
        tokio::select! {
            () = st.notify.nudge.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
            () = crate::center::stopped(&mut stop) => return,
        }
        if st.devices.cluster.leads() {
            loop {
                match fan_out(st).await {
                    Ok(n) if n == FAN_OUT_BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "fanning notifications out failed");
                        break;
                    }
                }
            }
        }
        loop {
            match send_due(st).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sending notifications failed");
                    break;
                }
            }
        }
    }
}

/// On the engines' lease holder, every few seconds: silent devices go offline (each with
/// its event); once in a while the delivery log is pruned.
pub async fn sweep(st: &Ctx, notify: &Notifier, prune: bool) {
    match st.store.mark_offline(st.clock.now_ms()).await {
        Ok(marked) if !marked.is_empty() => {
            tracing::info!(
                devices = marked.len(),
                "devices went offline (silent too long)"
            );
            notify.wake();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "marking silent devices offline failed"),
    }
    if prune {
        let before = st.clock.now_ms() - i64::try_from(notify.keep_days).unwrap_or(30) * 86_400_000;
        if let Err(e) = st.store.prune_notifications(before).await {
            tracing::warn!(error = %e, "pruning the notification log failed");
        }
    }
}

/// Does subscription `s` want event `e` (about a device matching `device`)?
fn wants(st: &Worker, s: &SubscriptionRecord, e: &OutboxEvent) -> bool {
    if e.kind == "test" {
        return e.detail.as_deref() == Some(s.name.as_str());
    }
    if s.events.split(',').all(|k| k != e.kind) {
        return false;
    }
    if severity_rank(e.severity.as_deref().unwrap_or("info")) < severity_rank(&s.min_severity) {
        return false;
    }
    match (&e.device_id, s.filter.trim()) {
        (_, "") | (None, _) => true,
        (Some(d), f) => match fleetcare_rollout::Filter::parse(f) {
            Ok(filter) => fleetcare_core::DeviceId::parse(d).is_ok_and(|id| {
                st.rollouts.device_matches(
                    &DeviceKey {
                        tenant: e.tenant,
                        device_id: id,
                    },
                    &filter,
                )
            }),
            Err(_) => false,
        },
    }
}

/// Fan one batch of waiting events out; how many there were.
async fn fan_out(st: &Worker) -> Result<usize, StoreError> {
    let events = st.store.waiting_events(FAN_OUT_BATCH).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let mut subs: HashMap<TenantId, Vec<SubscriptionRecord>> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        let of_tenant = match subs.entry(e.tenant) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(st.store.subscriptions(e.tenant).await?)
            }
        };
        let matched: Vec<u64> = of_tenant
            .iter()
            .filter(|s| wants(st, s, e))
            .map(|s| s.id)
            .collect();
        let body = if matched.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&render(st, e).await?).expect("an event serializes")
        };
        st.metrics.notify_events.inc();
        out.push((e.id, e.tenant, body, matched));
    }
    st.store.fan_out(&out, st.clock.now_ms()).await?;
    Ok(events.len())
}

async fn tenant_name(st: &Worker, tenant: TenantId) -> Result<String, StoreError> {
    if let Some(n) = st.notify.tenants.lock().expect("tenants").get(&tenant) {
        return Ok(n.clone());
    }
    let name = st
        .store
        .tenant_name(tenant)
        .await?
        .unwrap_or_else(|| tenant.to_string());
    st.notify
        .tenants
        .lock()
        .expect("tenants")
        .insert(tenant, name.clone());
    Ok(name)
}

/// The body of an event: what happened, to which device, and the object as the API shows it.
async fn render(st: &Worker, e: &OutboxEvent) -> Result<Event, StoreError> {
    let key = e
        .device_id
        .as_deref()
        .and_then(|d| fleetcare_core::DeviceId::parse(d).ok())
        .map(|device_id| DeviceKey {
            tenant: e.tenant,
            device_id,
        });
    let device = match &key {
        None => None,
        Some(k) => {
            let (model, site) = match st.rollouts.device_facts(k) {
                Some(f) => f,
                None => (
                    st.store
                        .device(k)
                        .await?
                        .map(|d| d.model)
                        .unwrap_or_default(),
                    None,
                ),
            };
            Some(EventDevice {
                device_id: k.device_id.to_string(),
                model,
                site,
                url: st
                    .notify
                    .public_url
                    .as_ref()
                    .map(|u| format!("{u}/ui/devices/{}", k.device_id)),
            })
        }
    };
    let on = device
        .as_ref()
        .map(|d| format!(" on {}", d.device_id))
        .unwrap_or_default();
    let subject = e.subject_id.unwrap_or(0);
    let (summary, data) = match e.kind.as_str() {
        "trouble.opened" | "trouble.resolved" | "supply.low" | "part.end_of_life" => {
            match st.store.trouble(e.tenant, subject).await? {
                Some(t) => {
                    let title = t.title.clone();
                    let v = crate::diag::api::trouble_view(t, None);
                    let summary = if e.kind == "trouble.resolved" {
                        format!("Resolved: {title}{on}")
                    } else {
                        format!("{title}{on}")
                    };
                    (summary, serde_json::json!({ "trouble": v }))
                }
                None => (format!("trouble {subject}{on}"), serde_json::json!({})),
            }
        }
        "advice.created" => match st.store.notification(e.tenant, subject).await? {
            Some(n) => {
                let body: crate::compat::notice::NotificationBody =
                    serde_json::from_str(&n.body_json).unwrap_or_default();
                (
                    format!("{}{on}", n.title),
                    serde_json::json!({ "advice": {
                        "id": n.id, "kind": n.kind, "title": n.title, "summary": body.summary,
                        "recommendations": body.recommendations,
                        "created_at": rfc3339(n.created_at_ms),
                    }}),
                )
            }
            None => (format!("advice{on}"), serde_json::json!({})),
        },
        "rollout.paused" => match st.store.rollout(e.tenant, subject).await? {
            Some(r) => (
                format!(
                    "Rollout {} paused: {}",
                    r.name,
                    e.detail.clone().unwrap_or_else(|| "no reason given".into())
                ),
                serde_json::json!({ "rollout": {
                    "id": r.id, "name": r.name, "state": r.state, "state_reason": e.detail,
                    "current_wave": r.current_wave,
                }}),
            ),
            None => (format!("rollout {subject} paused"), serde_json::json!({})),
        },
        "job.failed" => match st.store.job(e.tenant, subject).await? {
            Some(j) => {
                let v = crate::delivery::job_view(j);
                (
                    format!(
                        "Job {subject} failed{on}: {}",
                        e.detail.clone().unwrap_or_default()
                    ),
                    serde_json::json!({ "job": v }),
                )
            }
            None => (format!("job {subject} failed{on}"), serde_json::json!({})),
        },
        "device.offline" => {
            let seen: i64 = e
                .detail
                .as_deref()
                .and_then(|d| d.parse().ok())
                .unwrap_or(e.at_ms);
            (
                format!(
                    "{} is offline: no report since {}",
                    e.device_id.as_deref().unwrap_or("a device"),
                    rfc3339(seen)
                ),
                serde_json::json!({ "offline": {
                    "last_report_at": rfc3339(seen),
                    "silent_s": (e.at_ms - seen).max(0) / 1000,
                }}),
            )
        }
        "device.online" => (
            format!(
                "{} is back online",
                e.device_id.as_deref().unwrap_or("a device")
            ),
            serde_json::json!({ "online": { "last_report_at": rfc3339(e.at_ms) } }),
        ),
        _ => (
            format!(
                "Test notification for subscription {}",
                e.detail.as_deref().unwrap_or("")
            ),
            serde_json::json!({ "test": { "subscription": e.detail } }),
        ),
    };
    Ok(Event {
        id: event_id(e.id),
        kind: e.kind.clone(),
        created_at: rfc3339(e.at_ms),
        tenant: tenant_name(st, e.tenant).await?,
        severity: e.severity.clone().unwrap_or_else(|| "info".into()),
        summary,
        device,
        data,
    })
}

pub fn event_id(id: u64) -> String {
    format!("evt_{id}")
}

/// Claim and send one round of due deliveries; how many were claimed.
async fn send_due(st: &Worker) -> Result<usize, StoreError> {
    let now = st.clock.now_ms();
    let due = st.store.due_deliveries(now, SEND_BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut by_sub: HashMap<u64, Vec<DueDelivery>> = HashMap::new();
    for d in due {
        by_sub.entry(d.subscription_id).or_default().push(d);
    }
    let mut hooks = Vec::new();
    let mut mails = Vec::new();
    for (sub_id, ds) in by_sub {
        let Some(sub) = st.store.subscription_by_id(sub_id).await? else {
            continue;
        };
        if sub.state != "active" {
            continue;
        }
        if sub.channel == "email" {
            let window = i64::try_from(sub.digest_minutes).unwrap_or(0) * 60_000;
            if let Some(last) = sub.last_mail_at_ms
                && window > 0
                && last + window > now
            {
                st.store.defer_deliveries(sub_id, last + window).await?;
                continue;
            }
            let ds: Vec<DueDelivery> = ds.into_iter().take(email::MAX_DIGEST).collect();
            mails.push((sub, ds));
        } else {
            hooks.extend(ds.into_iter().map(|d| (sub.clone(), d)));
        }
    }
    // The lease: a send takes at most the timeout; an instance that died holding a claim
    // leaves the delivery due again after it.
    let lease = now + 3 * crate::cluster::ms(st.notify.timeout) + 5_000;
    let mut claimed = 0;
    let mut results = Vec::new();
    if !hooks.is_empty() {
        let (subs, ds): (Vec<SubscriptionRecord>, Vec<DueDelivery>) = hooks.into_iter().unzip();
        let subs: HashMap<u64, SubscriptionRecord> = subs.into_iter().map(|s| (s.id, s)).collect();
        let ds = st.store.claim_deliveries(ds, lease).await?;
        claimed += ds.len();
        let sends = futures_util::stream::iter(ds.into_iter().map(|d| {
            let sub = subs[&d.subscription_id].clone();
            async move { send_hook(st, &sub, d).await }
        }))
        .buffer_unordered(st.notify.concurrency);
        results.extend(sends.collect::<Vec<_>>().await);
    }
    for (sub, ds) in mails {
        let ds = st.store.claim_deliveries(ds, lease).await?;
        claimed += ds.len();
        if !ds.is_empty() {
            results.extend(send_mail(st, &sub, ds).await);
        }
    }
    record(st, results).await?;
    Ok(claimed)
}

fn outcome(st: &Worker, d: &DueDelivery, ok: bool) -> Outcome {
    if ok {
        return Outcome::Delivered;
    }
    match st.notify.retry_at(
        d.created_at_ms,
        st.clock.now_ms(),
        d.id.wrapping_mul(2_654_435_761),
    ) {
        Some(next_at_ms) => Outcome::Retry { next_at_ms },
        None => Outcome::GaveUp,
    }
}

async fn send_hook(st: &Worker, sub: &SubscriptionRecord, d: DueDelivery) -> SendResult {
    let unix_s = st.clock.now_ms() / 1000;
    let body = bytes::Bytes::from(d.body.clone());
    let headers = [
        (
            w::SIGNATURE_HEADER,
            webhook::signature(&sub.secret, unix_s, &body),
        ),
        (w::EVENT_ID_HEADER, event_id(d.event_id)),
        (w::EVENT_TYPE_HEADER, d.event_kind.clone()),
        (w::DELIVERY_HEADER, d.id.to_string()),
    ];
    let sent = webhook::send(
        &st.notify.client,
        &st.notify.guard,
        &sub.target,
        &headers,
        body,
    )
    .await;
    if !sent.ok {
        tracing::debug!(subscription = %sub.name, delivery = d.id, error = ?sent.error, "webhook failed");
    }
    SendResult {
        delivery_id: d.id,
        subscription_id: d.subscription_id,
        attempts: d.attempts,
        created_at_ms: d.created_at_ms,
        outcome: outcome(st, &d, sent.ok),
        status: sent.status,
        error: sent.error,
        mailed: false,
    }
}

async fn send_mail(st: &Worker, sub: &SubscriptionRecord, ds: Vec<DueDelivery>) -> Vec<SendResult> {
    let events: Vec<Event> = ds
        .iter()
        .filter_map(|d| serde_json::from_str(&d.body).ok())
        .collect();
    let to: Vec<lettre::message::Mailbox> = sub
        .target
        .split(',')
        .filter_map(|a| email::parse_mailbox(a).ok())
        .collect();
    let sent = match st.notify.mailer.get() {
        None => Err("no SMTP relay is configured (`smtp_host`)".to_owned()),
        Some(_) if to.is_empty() => Err("no address to mail".to_owned()),
        Some(m) => m.send(&to, &events).await,
    };
    ds.iter()
        .map(|d| SendResult {
            delivery_id: d.id,
            subscription_id: d.subscription_id,
            attempts: d.attempts,
            created_at_ms: d.created_at_ms,
            outcome: outcome(st, d, sent.is_ok()),
            status: None,
            error: sent.clone().err(),
            mailed: sent.is_ok(),
        })
        .collect()
}

async fn record(st: &Worker, results: Vec<SendResult>) -> Result<(), StoreError> {
    if results.is_empty() {
        return Ok(());
    }
    for r in &results {
        match r.outcome {
            Outcome::Delivered => st.metrics.notify_delivered.inc(),
            Outcome::Retry { .. } => st.metrics.notify_failed_attempts.inc(),
            Outcome::GaveUp => st.metrics.notify_gave_up.inc(),
        };
    }
    let hours = st.notify.retry_for_ms / 3_600_000;
    let disabled = st
        .store
        .record_sends(&results, st.clock.now_ms(), &|r| {
            format!(
                "no delivery succeeded for {hours} h; the last error: {}",
                r.error.as_deref().unwrap_or("unknown")
            )
        })
        .await?;
    for sub_id in disabled {
        if let Some(s) = st.store.subscription_by_id(sub_id).await? {
            tracing::warn!(subscription = %s.name, reason = ?s.state_reason, "a notification subscription kept failing and was disabled");
            let a = NewAudit {
                tenant: Some(s.tenant),
                actor: Some("center".into()),
                role: None,
                action: "notify.disabled".into(),
                method: "-".into(),
                path: format!("/api/v1/notify/{}", s.name),
                status: 0,
                outcome: "ok".into(),
                detail: s.state_reason.clone(),
                source: None,
            };
            if let Err(e) = st.store.append_audit(&a, st.clock.now_ms()).await {
                tracing::error!(error = %e, "writing the audit log failed");
            }
        }
    }
    Ok(())
}
