//! Notifications as the operator API shows them, and the body of a webhook.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/v1/notify` | | [`SubscriptionList`] |
//! | POST | `/api/v1/notify` | [`NewSubscription`] | [`Created`] (the secret, shown once) |
//! | GET | `/api/v1/notify/{name}` | | [`Subscription`] |
//! | DELETE | `/api/v1/notify/{name}` | | 204 |
//! | POST | `/api/v1/notify/{name}/test` | | [`TestSent`] |
//! | POST | `/api/v1/notify/{name}/enable` | | [`Subscription`] |
//! | GET | `/api/v1/notify/{name}/deliveries?before=&limit=` | | [`DeliveryList`] |
//! | POST | `/api/v1/notify/{name}/deliveries/{id}/redeliver` | | [`Delivery`] |
//! | GET, PUT | `/api/v1/notify-settings` | [`NotifySettings`] | [`NotifySettings`] |
//!
//! A webhook is a `POST` of an [`Event`] as JSON with these headers:
//! `Fleetcare-Event-Id`, `Fleetcare-Event-Type`, `Fleetcare-Delivery` (the delivery's id), and
//! `Fleetcare-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the
//! subscription's secret>`. The receiver answers 2xx once it has kept the event; anything else
//! (or no answer within 10 s) is retried with growing delays for at least 24 hours. The same
//! event keeps its `id` on every attempt and every redelivery: receivers de-duplicate by it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every event type, in the order the CLI lists them.
pub const EVENT_TYPES: &[&str] = &[
    "trouble.opened",
    "trouble.resolved",
    "advice.created",
    "supply.low",
    "part.end_of_life",
    "rollout.paused",
    "job.failed",
    "device.offline",
    "device.online",
    "test",
];

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "fleetcare-signature";
pub const EVENT_ID_HEADER: &str = "fleetcare-event-id";
pub const EVENT_TYPE_HEADER: &str = "fleetcare-event-type";
pub const DELIVERY_HEADER: &str = "fleetcare-delivery";

/// `POST /api/v1/notify`: a webhook (`webhook`) or e-mail addresses (`email`), not both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// Event types; every type (but `test`, which is always sent) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Devices, in the rollout filter language; every device when absent. Events about no
    /// device (a rollout paused) pass any filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `info`, `minor`, `major` or `critical`; `info` (everything) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// E-mail: at most one mail per this many minutes (the events between make one digest);
    /// 0 (the default) mails each event at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_minutes: Option<u64>,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub name: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The URL, or the addresses. Only admins see a webhook's whole URL; other roles see its
    /// origin (chat and ticket systems carry their own secret in the path or query).
    pub target: Vec<String>,
    pub events: Vec<String>,
    pub filter: String,
    pub min_severity: String,
    pub digest_minutes: u64,
    /// `active`, or `disabled` (it kept failing, with why in `state_reason`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub created_by: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Deliveries waiting to be sent (or retried).
    pub pending: u64,
}

/// The answer to adding a subscription: it, and its signing secret (shown only here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub subscription: Subscription,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
}

/// One event sent (or to be sent) to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: u64,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, or `failed` (its retries are over).
    pub state: String,
    pub attempts: u64,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    /// Pass as `before` for older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The answer to a test: the event made (it arrives like any other).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestSent {
    pub event_id: String,
}

/// A tenant's notification settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// A device silent this long is offline (`device.offline`); when absent, 3 × its report
    /// interval.
    #[serde(default)]
    pub offline_after_s: Option<u64>,
}

/// What a webhook receives (and an e-mail is made of).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Stable across attempts and redeliveries: `evt_<n>`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339).
    pub created_at: String,
    pub tenant: String,
    /// `critical`, `major`, `minor` or `info`.
    pub severity: String,
    /// One line a person reads first.
    pub summary: String,
    /// The device it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<EventDevice>,
    /// The object: `{"trouble": …}` (with its evidence and recommended action),
    /// `{"advice": …}` (with its ranked configurations), `{"rollout": …}`, `{"job": …}`,
    /// `{"offline": {"last_report_at", "silent_s"}}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The device an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventDevice {
    pub device_id: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The device's page on the dashboard (when the center knows its `public_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
