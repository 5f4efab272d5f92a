//! The `notify` command: subscriptions that send events to webhooks and e-mail, their delivery
//! log, and the tenant's offline threshold.

use fleetcare_agent::{out, outln};
use fleetcare_wire::notify::{
    Created, Delivery, DeliveryList, NewSubscription, NotifySettings, Subscription,
    SubscriptionList, TestSent,
};

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

#[derive(clap::Subcommand)]
pub enum NotifyCmd {
    /// Add a subscription: a webhook (signed; its secret is shown once) or e-mail addresses.
    Add {
        name: String,
        /// POST each event here as signed JSON.
        #[arg(long, conflicts_with = "email")]
        webhook: Option<String>,
        /// Mail each event (or a digest) to these addresses.
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        email: Vec<String>,
        /// Event types, comma-separated: trouble.opened, trouble.resolved, advice.created,
        /// supply.low, part.end_of_life, rollout.paused, job.failed, device.offline,
        /// device.online; all when absent.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only devices matching this filter (the rollout filter language).
        #[arg(long)]
        filter: Option<String>,
        /// Only events at least this severe: info, minor, major, critical.
        #[arg(long)]
        min_severity: Option<String>,
        /// E-mail: at most one mail per this many minutes (a digest of what happened meanwhile).
        #[arg(long)]
        digest_minutes: Option<u64>,
    },
    /// List the tenant's subscriptions.
    List,
    /// Show one subscription.
    Show { name: String },
    /// Send a test event to a subscription (it goes through the outbox like any other).
    Test { name: String },
    /// Remove a subscription (its waiting deliveries are not sent).
    Remove { name: String },
    /// Enable a subscription the center disabled because it kept failing.
    Enable { name: String },
    /// A subscription's delivery log, newest first.
    Deliveries {
        name: String,
        /// Deliveries older than this one.
        #[arg(long)]
        before: Option<u64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a delivery again (same event id; its retries start over).
    Redeliver { name: String, id: u64 },
    /// After how long a silent device is offline: show it, or set it in seconds (`default`:
    /// 3 × the device's report interval).
    OfflineAfter { seconds: Option<String> },
}

fn row(s: &Subscription) -> Vec<String> {
    vec![
        s.name.clone(),
        s.channel.clone(),
        s.target.join(", "),
        s.events.join(","),
        if s.filter.is_empty() {
            "-".into()
        } else {
            s.filter.clone()
        },
        s.min_severity.clone(),
        match &s.state_reason {
            Some(r) => format!("{} ({r})", s.state),
            None => s.state.clone(),
        },
        s.pending.to_string(),
    ]
}

const HEADER: &[&str] = &[
    "NAME", "CHANNEL", "TARGET", "EVENTS", "FILTER", "MIN", "STATE", "PENDING",
];

fn show(s: &Subscription) {
    out!("{}", table::render(HEADER, &[row(s)]));
    if let Some(t) = &s.last_success_at {
        outln!("last delivered: {t}");
    }
}

/// Run a `notify` subcommand.
pub async fn notify(c: NotifyCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match c {
        NotifyCmd::Add {
            name,
            webhook,
            email,
            events,
            filter,
            min_severity,
            digest_minutes,
        } => {
            let created: Created = api
                .post(
                    "/api/v1/notify",
                    Some(&NewSubscription {
                        name,
                        webhook,
                        email,
                        events,
                        filter,
                        min_severity,
                        digest_minutes,
                    }),
                )
                .await?;
            if remote.json {
                return print_json(&created);
            }
            show(&created.subscription);
            if let Some(secret) = &created.secret {
                outln!(
                    "signing secret (shown only now; receivers check Fleetcare-Signature with it):\n{secret}"
                );
            }
        }
        NotifyCmd::List => {
            let list: SubscriptionList = api.get("/api/v1/notify").await?;
            if remote.json {
                return print_json(&list);
            }
            if list.subscriptions.is_empty() {
                outln!("no subscriptions");
            } else {
                let rows: Vec<Vec<String>> = list.subscriptions.iter().map(row).collect();
                out!("{}", table::render(HEADER, &rows));
            }
        }
        NotifyCmd::Show { name } => {
            let s: Subscription = api
                .get(&format!("/api/v1/notify/{}", segment(&name)?))
                .await?;
            if remote.json {
                return print_json(&s);
            }
            show(&s);
        }
        NotifyCmd::Test { name } => {
            let t: TestSent = api
                .post::<(), _>(&format!("/api/v1/notify/{}/test", segment(&name)?), None)
                .await?;
            if remote.json {
                return print_json(&t);
            }
            outln!(
                "test event {} sent to {name}; see `fleetcare notify deliveries {name}`",
                t.event_id
            );
        }
        NotifyCmd::Remove { name } => {
            let _: Option<serde_json::Value> = api
                .delete(&format!("/api/v1/notify/{}", segment(&name)?), &())
                .await?;
            if remote.json {
                return print_json(&serde_json::json!({ "removed": name }));
            }
            outln!("removed {name}");
        }
        NotifyCmd::Enable { name } => {
            let s: Subscription = api
                .post::<(), _>(&format!("/api/v1/notify/{}/enable", segment(&name)?), None)
                .await?;
            if remote.json {
                return print_json(&s);
            }
            show(&s);
        }
        NotifyCmd::Deliveries {
            name,
            before,
            limit,
        } => {
            let mut path = format!(
                "/api/v1/notify/{}/deliveries?limit={limit}",
                segment(&name)?
            );
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let list: DeliveryList = api.get(&path).await?;
            if remote.json {
                return print_json(&list);
            }
            deliveries(&list.deliveries);
            if let Some(n) = list.next {
                outln!("older: --before {n}");
            }
        }
        NotifyCmd::Redeliver { name, id } => {
            let d: Delivery = api
                .post::<(), _>(
                    &format!(
                        "/api/v1/notify/{}/deliveries/{id}/redeliver",
                        segment(&name)?
                    ),
                    None,
                )
                .await?;
            if remote.json {
                return print_json(&d);
            }
            deliveries(&[d]);
        }
        NotifyCmd::OfflineAfter { seconds } => {
            let s: NotifySettings = match seconds.as_deref() {
                None => api.get("/api/v1/notify-settings").await?,
                Some(v) => {
                    let offline_after_s = if v == "default" {
                        None
                    } else {
                        Some(v.parse::<u64>().map_err(|_| {
                            anyhow::anyhow!("{v:?}: seconds (a whole number) or `default`")
                        })?)
                    };
                    api.put(
                        "/api/v1/notify-settings",
                        &NotifySettings { offline_after_s },
                    )
                    .await?
                }
            };
            if remote.json {
                return print_json(&s);
            }
            match s.offline_after_s {
                Some(v) => outln!("a device silent for {v} s is offline"),
                None => outln!("a device silent for 3 × its report interval is offline"),
            }
        }
    }
    Ok(())
}

fn deliveries(ds: &[Delivery]) {
    if ds.is_empty() {
        outln!("no deliveries");
        return;
    }
    let rows: Vec<Vec<String>> = ds
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.event_id.clone(),
                d.event_type.clone(),
                d.state.clone(),
                d.attempts.to_string(),
                d.created_at.clone(),
                d.delivered_at
                    .clone()
                    .or_else(|| d.next_attempt_at.as_ref().map(|n| format!("next {n}")))
                    .unwrap_or_else(|| "-".into()),
                d.last_error
                    .clone()
                    .or_else(|| d.last_status.map(|s| s.to_string()))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &[
                "ID",
                "EVENT",
                "TYPE",
                "STATE",
                "ATTEMPTS",
                "MADE",
                "DELIVERED",
                "LAST"
            ],
            &rows
        )
    );
}
