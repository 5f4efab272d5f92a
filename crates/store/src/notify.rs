//! Notifications in the store: subscriptions, the outbox of events (written in the causing
//! transaction, by triggers or by the group that marks a device offline), deliveries with
//! their attempts, and devices gone silent.
//!
//! A delivery is claimed before it is sent: the claim adds one to `attempts` and moves
//! `next_at` past the send's lease, so an instance that dies mid-send leaves it due again
//! later, and only the claimer (same `attempts`) can record its outcome.

use crate::exec::{Guard, Stmt, Ty, Val, sql};
use crate::{Result, Store, TenantId, to_i64, to_u64};

/// `next_at` of the pending deliveries of a disabled subscription (not due until enabled).
pub const PARKED: i64 = i64::MAX / 2;

/// A subscription to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub name: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The URL, or the addresses separated by commas.
    pub target: String,
    /// Event types separated by commas.
    pub events: String,
    /// The rollout filter language; empty: every device.
    pub filter: String,
    pub min_severity: String,
    pub digest_minutes: u64,
    /// The signing secret (webhooks); empty for e-mail.
    pub secret: String,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: u64,
    pub tenant: TenantId,
    pub name: String,
    pub channel: String,
    pub target: String,
    pub events: String,
    pub filter: String,
    pub min_severity: String,
    pub digest_minutes: u64,
    pub secret: String,
    /// `active` or `disabled`.
    pub state: String,
    pub state_reason: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub last_success_at_ms: Option<i64>,
    pub last_mail_at_ms: Option<i64>,
}

/// An event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: u64,
    pub tenant: TenantId,
    pub kind: String,
    pub device_id: Option<String>,
    /// The trouble, notification, rollout or job it is about.
    pub subject_id: Option<u64>,
    pub severity: Option<String>,
    pub at_ms: i64,
    pub detail: Option<String>,
}

/// A delivery due to be sent, with its event's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: u64,
    pub tenant: TenantId,
    pub subscription_id: u64,
    pub event_id: u64,
    pub event_kind: String,
    pub body: String,
    pub attempts: u64,
    pub next_at_ms: i64,
    pub created_at_ms: i64,
}

/// A delivery in a subscription's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: u64,
    pub event_id: u64,
    pub event_kind: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: u64,
    pub next_at_ms: i64,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// What became of one claimed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; tried again at `next_at_ms`.
    Retry {
        next_at_ms: i64,
    },
    /// Failed, and the retries are over.
    GaveUp,
}

/// The outcome of one claimed send, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub delivery_id: u64,
    pub subscription_id: u64,
    /// The `attempts` the claim set (only the claimer records).
    pub attempts: u64,
    pub created_at_ms: i64,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// An e-mail was sent (the digest window starts).
    pub mailed: bool,
}

const SUBSCRIPTION_SELECT: &str = "SELECT id, tenant_id, name, channel, target, events, filter, \
    min_severity, digest_minutes, secret, state, state_reason, created_by, created_at, \
    last_success_at, last_mail_at FROM notify_subscriptions";
const SUBSCRIPTION_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Int,
];

fn subscription(r: &[Val]) -> Result<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: to_u64(r[0].int()?),
        tenant: r[1].int()?,
        name: r[2].text()?,
        channel: r[3].text()?,
        target: r[4].text()?,
        events: r[5].text()?,
        filter: r[6].text()?,
        min_severity: r[7].text()?,
        digest_minutes: to_u64(r[8].int()?),
        secret: r[9].text()?,
        state: r[10].text()?,
        state_reason: r[11].opt_text()?,
        created_by: r[12].text()?,
        created_at_ms: r[13].int()?,
        last_success_at_ms: r[14].opt_int()?,
        last_mail_at_ms: r[15].opt_int()?,
    })
}

fn opt_u64(v: &Val) -> Result<Option<u64>> {
    Ok(v.opt_int()?.map(to_u64))
}

impl Store {
    /// Add a subscription; `false` if the tenant has one of that name.
    pub async fn add_subscription(
        &self,
        tenant: TenantId,
        s: &NewSubscription,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            "INSERT INTO notify_subscriptions (tenant_id, name, channel, target, events, filter, \
             min_severity, digest_minutes, secret, state, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
            vec![
                tenant.into(),
                (&s.name).into(),
                (&s.channel).into(),
                (&s.target).into(),
                (&s.events).into(),
                (&s.filter).into(),
                (&s.min_severity).into(),
                to_i64(s.digest_minutes).into(),
                (&s.secret).into(),
                by.into(),
                now_ms.into(),
            ],
        ))
        .await
    }

    /// A tenant's subscriptions by name.
    pub async fn subscriptions(&self, tenant: TenantId) -> Result<Vec<SubscriptionRecord>> {
        const ALL: &str = "SELECT id, tenant_id, name, channel, target, events, filter, \
            min_severity, digest_minutes, secret, state, state_reason, created_by, created_at, \
            last_success_at, last_mail_at FROM notify_subscriptions WHERE tenant_id = $1 \
            ORDER BY name";
        debug_assert!(ALL.starts_with(SUBSCRIPTION_SELECT));
        let rows = self
            .select(sql(ALL), vec![tenant.into()], SUBSCRIPTION_COLUMNS)
            .await?;
        rows.iter().map(|r| subscription(r)).collect()
    }

    pub async fn subscription(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<SubscriptionRecord>> {
        const ONE: &str = "SELECT id, tenant_id, name, channel, target, events, filter, \
            min_severity, digest_minutes, secret, state, state_reason, created_by, created_at, \
            last_success_at, last_mail_at FROM notify_subscriptions WHERE tenant_id = $1 \
            AND name = $2";
        debug_assert!(ONE.starts_with(SUBSCRIPTION_SELECT));
        let rows = self
            .select(
                sql(ONE),
                vec![tenant.into(), name.into()],
                SUBSCRIPTION_COLUMNS,
            )
            .await?;
        rows.first().map(|r| subscription(r)).transpose()
    }

    /// Subscriptions by id (the worker's view of those it sends to).
    pub async fn subscription_by_id(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        const ONE: &str = "SELECT id, tenant_id, name, channel, target, events, filter, \
            min_severity, digest_minutes, secret, state, state_reason, created_by, created_at, \
            last_success_at, last_mail_at FROM notify_subscriptions WHERE id = $1";
        debug_assert!(ONE.starts_with(SUBSCRIPTION_SELECT));
        let rows = self
            .select(sql(ONE), vec![to_i64(id).into()], SUBSCRIPTION_COLUMNS)
            .await?;
        rows.first().map(|r| subscription(r)).transpose()
    }

    /// Remove a subscription and its deliveries (pending ones are not sent); whether it was.
    pub async fn remove_subscription(&self, tenant: TenantId, name: &str) -> Result<bool> {
        let out = self
            .run(
                vec![
                    Stmt::returning(
                        "DELETE FROM notify_subscriptions WHERE tenant_id = $1 AND name = $2 \
                         RETURNING id",
                        vec![tenant.into(), name.into()],
                    ),
                    Stmt::new(
                        "DELETE FROM notify_deliveries WHERE tenant_id = $1 AND subscription_id \
                         NOT IN (SELECT id FROM notify_subscriptions WHERE tenant_id = $1)",
                        vec![tenant.into()],
                    ),
                ],
                Guard::First,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0) > 0)
    }

    /// Enable or disable a subscription (with why); whether its state changed. A disabled
    /// subscription's pending deliveries wait, and are due at once when it is enabled.
    pub async fn set_subscription_state(
        &self,
        tenant: TenantId,
        id: u64,
        enable: bool,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        let (from, to, next) = if enable {
            ("disabled", "active", now_ms)
        } else {
            ("active", "disabled", PARKED)
        };
        let out = self
            .run(
                vec![
                    Stmt::new(
                        "UPDATE notify_subscriptions SET state = $3, state_reason = $4 \
                         WHERE tenant_id = $1 AND id = $2 AND state = $5",
                        vec![
                            tenant.into(),
                            to_i64(id).into(),
                            to.into(),
                            reason.into(),
                            from.into(),
                        ],
                    ),
                    Stmt::new(
                        "UPDATE notify_deliveries SET next_at = $2 WHERE subscription_id = $1 \
                         AND state = 'pending'",
                        vec![to_i64(id).into(), next.into()],
                    ),
                ],
                Guard::First,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Append an event to the outbox (one the center raises itself: a test event); its id.
    pub async fn add_outbox_event(&self, e: &OutboxEvent) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::returning(
                    "INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, \
                     at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    vec![
                        e.tenant.into(),
                        (&e.kind).into(),
                        e.device_id.clone().into(),
                        e.subject_id.map(to_i64).into(),
                        e.severity.clone().into(),
                        e.at_ms.into(),
                        e.detail.clone().into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// Events not yet fanned out, oldest first.
    pub async fn waiting_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows = self
            .select(
                sql(
                    "SELECT id, tenant_id, kind, device_id, subject_id, severity, at, detail \
                     FROM notify_events WHERE fanned_out = 0 ORDER BY id LIMIT $1",
                ),
                vec![i64::from(limit).into()],
                &[
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                    Ty::Text,
                    Ty::Int,
                    Ty::Text,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEvent {
                    id: to_u64(r[0].int()?),
                    tenant: r[1].int()?,
                    kind: r[2].text()?,
                    device_id: r[3].opt_text()?,
                    subject_id: opt_u64(&r[4])?,
                    severity: r[5].opt_text()?,
                    at_ms: r[6].int()?,
                    detail: r[7].opt_text()?,
                })
            })
            .collect()
    }

    /// Fan events out, each once: its body is kept and a delivery made for each subscription
    /// named; an event another instance fanned out meanwhile is left as it is. One
    /// transaction for them all.
    pub async fn fan_out(
        &self,
        events: &[(u64, TenantId, String, Vec<u64>)],
        now_ms: i64,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let groups = events
            .iter()
            .map(|(id, tenant, body, subs)| {
                let mut stmts = vec![Stmt::new(
                    "UPDATE notify_events SET fanned_out = 1, body = $2 WHERE id = $1 \
                     AND fanned_out = 0",
                    vec![to_i64(*id).into(), body.as_str().into()],
                )];
                stmts.extend(subs.iter().map(|s| {
                    Stmt::new(
                        "INSERT INTO notify_deliveries (tenant_id, subscription_id, event_id, \
                         state, next_at, created_at) SELECT $1, $2, $3, 'pending', \
                         CASE WHEN state = 'active' THEN $4 ELSE $5 END, $4 \
                         FROM notify_subscriptions WHERE id = $2 \
                         ON CONFLICT (subscription_id, event_id) DO NOTHING",
                        vec![
                            (*tenant).into(),
                            to_i64(*s).into(),
                            to_i64(*id).into(),
                            now_ms.into(),
                            PARKED.into(),
                        ],
                    )
                }));
                (stmts, Guard::First)
            })
            .collect();
        self.run_groups(groups).await?;
        Ok(())
    }

    /// Deliveries due now to active subscriptions, soonest first.
    pub async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.id, d.tenant_id, d.subscription_id, d.event_id, e.kind, \
                     COALESCE(e.body, ''), d.attempts, d.next_at, d.created_at \
                     FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id \
                     WHERE d.state = 'pending' AND d.next_at <= $1 ORDER BY d.next_at, d.id \
                     LIMIT $2",
                ),
                vec![now_ms.into(), i64::from(limit).into()],
                &[
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: to_u64(r[0].int()?),
                    tenant: r[1].int()?,
                    subscription_id: to_u64(r[2].int()?),
                    event_id: to_u64(r[3].int()?),
                    event_kind: r[4].text()?,
                    body: r[5].text()?,
                    attempts: to_u64(r[6].int()?),
                    next_at_ms: r[7].int()?,
                    created_at_ms: r[8].int()?,
                })
            })
            .collect()
    }

    /// Claim deliveries for sending until `lease_until_ms`; the ones this call claimed, with
    /// their new `attempts`. A delivery someone else claimed (or that changed) is left out.
    pub async fn claim_deliveries(
        &self,
        due: Vec<DueDelivery>,
        lease_until_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        if due.is_empty() {
            return Ok(due);
        }
        let stmts = due
            .iter()
            .map(|d| {
                Stmt::new(
                    "UPDATE notify_deliveries SET attempts = attempts + 1, next_at = $4 \
                     WHERE id = $1 AND state = 'pending' AND attempts = $2 AND next_at = $3",
                    vec![
                        to_i64(d.id).into(),
                        to_i64(d.attempts).into(),
                        d.next_at_ms.into(),
                        lease_until_ms.into(),
                    ],
                )
            })
            .collect();
        let out = self.run(stmts, Guard::None).await?;
        Ok(due
            .into_iter()
            .zip(out)
            .filter(|(_, n)| *n == 1)
            .map(|(mut d, _)| {
                d.attempts += 1;
                d.next_at_ms = lease_until_ms;
                d
            })
            .collect())
    }

    /// Put off pending deliveries of a subscription until `next_at_ms` (an e-mail digest's
    /// window).
    pub async fn defer_deliveries(&self, subscription_id: u64, next_at_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "UPDATE notify_deliveries SET next_at = $2 WHERE subscription_id = $1 \
                 AND state = 'pending' AND next_at < $2",
                vec![to_i64(subscription_id).into(), next_at_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Record what became of claimed sends, in one transaction; the subscriptions that were
    /// disabled because a delivery gave up and none succeeded since it was made.
    pub async fn record_sends(
        &self,
        results: &[SendResult],
        now_ms: i64,
        disabled_reason: &(dyn Fn(&SendResult) -> String + Sync),
    ) -> Result<Vec<u64>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups = Vec::with_capacity(results.len());
        let mut disabling = Vec::new();
        for r in results {
            let status = r.status.map(i64::from);
            let error = r.error.clone();
            let id = to_i64(r.delivery_id);
            let attempts = to_i64(r.attempts);
            let sub = to_i64(r.subscription_id);
            let mut stmts = vec![match &r.outcome {
                Outcome::Delivered => Stmt::new(
                    "UPDATE notify_deliveries SET state = 'delivered', delivered_at = $3, \
                     last_status = $4, last_error = NULL WHERE id = $1 AND attempts = $2 \
                     AND state = 'pending'",
                    vec![id.into(), attempts.into(), now_ms.into(), status.into()],
                ),
                Outcome::Retry { next_at_ms } => Stmt::new(
                    "UPDATE notify_deliveries SET next_at = $3, last_status = $4, \
                     last_error = $5 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                    vec![
                        id.into(),
                        attempts.into(),
                        (*next_at_ms).into(),
                        status.into(),
                        error.into(),
                    ],
                ),
                Outcome::GaveUp => Stmt::new(
                    "UPDATE notify_deliveries SET state = 'failed', last_status = $3, \
                     last_error = $4 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                    vec![id.into(), attempts.into(), status.into(), error.into()],
                ),
            }];
            match &r.outcome {
                Outcome::Delivered => stmts.push(Stmt::new(
                    "UPDATE notify_subscriptions SET last_success_at = $2, \
                     last_mail_at = CASE WHEN $3 = 1 THEN $2 ELSE last_mail_at END WHERE id = $1",
                    vec![sub.into(), now_ms.into(), r.mailed.into()],
                )),
                Outcome::Retry { .. } if r.mailed => stmts.push(Stmt::new(
                    "UPDATE notify_subscriptions SET last_mail_at = $2 WHERE id = $1",
                    vec![sub.into(), now_ms.into()],
                )),
                Outcome::Retry { .. } => {}
                Outcome::GaveUp => {
                    disabling.push((groups.len(), r.subscription_id));
                    stmts.push(Stmt::new(
                        "UPDATE notify_subscriptions SET state = 'disabled', state_reason = $3 \
                         WHERE id = $1 AND state = 'active' \
                         AND COALESCE(last_success_at, 0) < $2",
                        vec![
                            sub.into(),
                            r.created_at_ms.into(),
                            disabled_reason(r).into(),
                        ],
                    ));
                    stmts.push(Stmt::new(
                        "UPDATE notify_deliveries SET next_at = $2 WHERE subscription_id = $1 \
                         AND state = 'pending' AND EXISTS (SELECT 1 FROM notify_subscriptions s \
                         WHERE s.id = $1 AND s.state = 'disabled')",
                        vec![sub.into(), PARKED.into()],
                    ));
                }
            }
            groups.push((stmts, Guard::First));
        }
        let out = self.run_groups(groups).await?;
        Ok(disabling
            .into_iter()
            .filter(|(g, _)| out[*g].get(1).copied() == Some(1))
            .map(|(_, s)| s)
            .collect())
    }

    /// A subscription's deliveries, newest first (before delivery `before`), at most `limit`.
    pub async fn deliveries(
        &self,
        tenant: TenantId,
        subscription_id: u64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.id, d.event_id, e.kind, d.state, d.attempts, d.next_at, \
                     d.created_at, d.delivered_at, d.last_status, d.last_error \
                     FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id \
                     WHERE d.tenant_id = $1 AND d.subscription_id = $2 AND d.id < $3 \
                     ORDER BY d.id DESC LIMIT $4",
                ),
                vec![
                    tenant.into(),
                    to_i64(subscription_id).into(),
                    before.map_or(i64::MAX, to_i64).into(),
                    i64::from(limit).into(),
                ],
                &[
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    id: to_u64(r[0].int()?),
                    event_id: to_u64(r[1].int()?),
                    event_kind: r[2].text()?,
                    state: r[3].text()?,
                    attempts: to_u64(r[4].int()?),
                    next_at_ms: r[5].int()?,
                    created_at_ms: r[6].int()?,
                    delivered_at_ms: r[7].opt_int()?,
                    last_status: r[8]
                        .opt_int()?
                        .map(|s| u16::try_from(s).unwrap_or(u16::MAX)),
                    last_error: r[9].opt_text()?,
                })
            })
            .collect()
    }

    /// Send a delivery again (its retries start over); whether the tenant has it.
    pub async fn redeliver(
        &self,
        tenant: TenantId,
        subscription_id: u64,
        delivery_id: u64,
        now_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            "UPDATE notify_deliveries SET state = 'pending', created_at = $3, \
             next_at = CASE WHEN EXISTS (SELECT 1 FROM notify_subscriptions s \
               WHERE s.id = subscription_id AND s.state = 'active') THEN $3 ELSE $4 END \
             WHERE tenant_id = $1 AND id = $2 AND subscription_id = $5",
            vec![
                tenant.into(),
                to_i64(delivery_id).into(),
                now_ms.into(),
                PARKED.into(),
                to_i64(subscription_id).into(),
            ],
        ))
        .await
    }

    /// Pending deliveries per subscription of a tenant, as `(subscription id, count)`.
    pub async fn pending_deliveries(&self, tenant: TenantId) -> Result<Vec<(u64, u64)>> {
        let rows = self
            .select(
                sql("SELECT subscription_id, COUNT(*) FROM notify_deliveries \
                     WHERE tenant_id = $1 AND state = 'pending' GROUP BY subscription_id"),
                vec![tenant.into()],
                &[Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((to_u64(r[0].int()?), to_u64(r[1].int()?))))
            .collect()
    }

    /// A tenant's name.
    pub async fn tenant_name(&self, tenant: TenantId) -> Result<Option<String>> {
        let rows = self
            .select(
                sql("SELECT name FROM tenants WHERE id = $1"),
                vec![tenant.into()],
                &[Ty::Text],
            )
            .await?;
        rows.first().map(|r| r[0].text()).transpose()
    }

    /// After how long a silent device of the tenant is offline (`None`: 3 × its report
    /// interval).
    pub async fn offline_after(&self, tenant: TenantId) -> Result<Option<u64>> {
        let rows = self
            .select(
                sql("SELECT offline_after_s FROM notify_settings WHERE tenant_id = $1"),
                vec![tenant.into()],
                &[Ty::Int],
            )
            .await?;
        Ok(rows.first().map(|r| opt_u64(&r[0])).transpose()?.flatten())
    }

    /// Set it, and move each of the tenant's devices' `silent_at` to match (one statement
    /// over the tenant's devices: an administrator's rare change).
    pub async fn set_offline_after(&self, tenant: TenantId, secs: Option<u64>) -> Result<()> {
        self.run(
            vec![
                Stmt::new(
                    "INSERT INTO notify_settings (tenant_id, offline_after_s) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET offline_after_s = excluded.offline_after_s",
                    vec![tenant.into(), secs.map(to_i64).into()],
                ),
                Stmt::new(
                    "UPDATE devices SET silent_at = last_report_at + 1000 * \
                     COALESCE($2, 3 * COALESCE(report_interval_s, 3600)) \
                     WHERE tenant_id = $1 AND last_report_at IS NOT NULL",
                    vec![tenant.into(), secs.map(to_i64).into()],
                ),
            ],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Mark devices silent too long offline (at most 1000 per call: those whose `silent_at`
    /// passed, soonest first, by its index), each with a `device.offline` event in the same
    /// transaction (when its tenant has subscriptions); the ones this call marked.
    ///
    /// `silent_at` is a lower bound of a device's deadline (reports leave it where it is):
    /// a device whose bound passed but which reported since has its bound moved to its true
    /// deadline instead, by one statement over the devices this call looked at.
    pub async fn mark_offline(&self, now_ms: i64) -> Result<Vec<(TenantId, String)>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.tenant_id, d.device_id, d.last_report_at, d.silent_at, \
                     d.last_report_at + 1000 * COALESCE(n.offline_after_s, \
                     3 * COALESCE(d.report_interval_s, 3600)) FROM devices d \
                     LEFT JOIN notify_settings n ON n.tenant_id = d.tenant_id \
                     WHERE d.offline_since IS NULL AND d.silent_at < $1 \
                     AND d.revoked_at IS NULL AND d.last_report_at IS NOT NULL \
                     ORDER BY d.silent_at LIMIT 1000",
                ),
                vec![now_ms.into()],
                &[Ty::Int, Ty::Text, Ty::Int, Ty::Int, Ty::Int],
            )
            .await?;
        let mut silent: Vec<(TenantId, String, i64)> = Vec::new();
        let (mut late, mut last_bound) = (false, i64::MIN);
        for r in &rows {
            let (deadline, bound) = (r[4].int()?, r[3].int()?);
            last_bound = last_bound.max(bound);
            if deadline < now_ms {
                silent.push((r[0].int()?, r[1].text()?, r[2].int()?));
            } else {
                late = true;
            }
        }
        if late {
            // The bound moves to the true deadline for the devices looked at (those up to the
            // last bound read; ties past the limit with it), never past a report's deadline.
            self.run(
                vec![Stmt::new(
                    "UPDATE devices SET silent_at = last_report_at + 1000 * COALESCE((SELECT \
                     n.offline_after_s FROM notify_settings n \
                     WHERE n.tenant_id = devices.tenant_id), \
                     3 * COALESCE(report_interval_s, 3600)) \
                     WHERE offline_since IS NULL AND silent_at < $1 AND silent_at <= $2 \
                     AND revoked_at IS NULL AND last_report_at IS NOT NULL \
                     AND last_report_at + 1000 * COALESCE((SELECT n.offline_after_s \
                     FROM notify_settings n WHERE n.tenant_id = devices.tenant_id), \
                     3 * COALESCE(report_interval_s, 3600)) >= $1",
                    vec![now_ms.into(), last_bound.into()],
                )],
                Guard::None,
            )
            .await?;
        }
        if silent.is_empty() {
            return Ok(Vec::new());
        }
        let groups = silent
            .iter()
            .map(|(t, d, seen)| {
                (
                    vec![
                        Stmt::new(
                            "UPDATE devices SET offline_since = $3 WHERE tenant_id = $1 \
                             AND device_id = $2 AND offline_since IS NULL AND last_report_at = $4",
                            vec![(*t).into(), d.as_str().into(), now_ms.into(), (*seen).into()],
                        ),
                        Stmt::each(
                            "INSERT INTO notify_events (tenant_id, kind, device_id, severity, at, \
                             detail) SELECT $1, 'device.offline', $2, 'major', $3, $4 \
                             WHERE EXISTS (SELECT 1 FROM notify_subscriptions WHERE tenant_id = $1)",
                            "SELECT fleetcare_outbox($1, 'device.offline', $2, NULL, 'major', $3, $4)",
                            vec![
                                (*t).into(),
                                d.as_str().into(),
                                now_ms.into(),
                                seen.to_string().into(),
                            ],
                        ),
                    ],
                    Guard::First,
                )
            })
            .collect();
        let out = self.run_groups(groups).await?;
        Ok(silent
            .into_iter()
            .zip(out)
            .filter(|(_, n)| n.first().copied() == Some(1))
            .map(|((t, d, _), _)| (t, d))
            .collect())
    }

    /// Forget what was delivered (or given up) and events fanned out before `before_ms`; how
    /// many rows went.
    pub async fn prune_notifications(&self, before_ms: i64) -> Result<u64> {
        let out = self
            .run(
                vec![
                    Stmt::new(
                        "DELETE FROM notify_deliveries WHERE state <> 'pending' \
                         AND created_at < $1",
                        vec![before_ms.into()],
                    ),
                    Stmt::new(
                        "DELETE FROM notify_events WHERE fanned_out = 1 AND at < $1 \
                         AND NOT EXISTS (SELECT 1 FROM notify_deliveries d \
                         WHERE d.event_id = notify_events.id)",
                        vec![before_ms.into()],
                    ),
                ],
                Guard::None,
            )
            .await?;
        Ok(out.iter().sum())
    }
}
