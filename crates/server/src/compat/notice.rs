//! Notifications to devices: the stored body of a notice and telling the device of it.

use crate::ctx::Ctx;
use fleetcare_store::{DeviceKey, NewNotification, StoreError};
use fleetcare_wire::compat::{self as w};
use fleetcare_wire::device::Command;

/// Tell a device of a notification stored for it, wherever it is connected (an offline
/// device fetches its open notifications when it connects).
pub async fn push_notification(
    st: &Ctx,
    key: &DeviceKey,
    id: u64,
    n: &NewNotification,
    now: i64,
) -> Result<(), StoreError> {
    let body: NotificationBody = serde_json::from_str(&n.body_json).unwrap_or_default();
    let notification = w::Notification {
        id,
        kind: n.kind.clone(),
        title: n.title.clone(),
        summary: body.summary,
        recommendations: body.recommendations,
        created_at: fleetcare_core::clock::rfc3339(now),
        delivered_at: None,
        switched_to: body.switched_to,
    };
    if st
        .devices
        .send(key, Command::Notify { notification })
        .await
        .is_some()
    {
        st.store.mark_delivered(key.tenant, &[id], now).await?;
    }
    Ok(())
}

/// The stored body of a notification.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NotificationBody {
    pub summary: String,
    #[serde(default)]
    pub recommendations: Vec<w::Recommendation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
}
