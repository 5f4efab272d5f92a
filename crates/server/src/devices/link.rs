//! This instance's link to the MQTT broker as a way to reach devices: which devices it
//! holds, and sending them commands. The cluster routes commands through it; taking the
//! devices' messages is [`super::mqtt`]'s.

use std::collections::HashSet;
use std::sync::Mutex;

use fleetcare_store::DeviceKey;
use fleetcare_wire::device::Command;
use fleetcare_wire::mqtt as w;
use rumqttc::{AsyncClient, QoS};

use crate::AppState;

/// The pseudo-instance under which devices connected over MQTT are present.
pub const INSTANCE: &str = "mqtt";

/// This instance's link to the broker.
pub struct Mqtt {
    pub(crate) client: AsyncClient,
    /// Devices known here to be connected over MQTT (alone; on a shared store, the store's
    /// presence is the truth and this only saves writing it again).
    pub(crate) online: Mutex<HashSet<DeviceKey>>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt").finish_non_exhaustive()
    }
}

impl Mqtt {
    /// Publish `message` as JSON on `topic` (QoS 1, not retained).
    pub(crate) async fn publish(
        &self,
        topic: String,
        message: &impl serde::Serialize,
    ) -> Result<(), rumqttc::ClientError> {
        let payload = serde_json::to_vec(message).expect("wire types serialize");
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
    }
}

/// Whether this instance alone knows the device to be connected over MQTT (on a shared store
/// the store's presence answers instead).
pub fn holds(st: &AppState, key: &DeviceKey) -> bool {
    !st.cluster.is_shared()
        && st
            .mqtt
            .get()
            .is_some_and(|l| l.online.lock().expect("mqtt").contains(key))
}

/// Publish a command on the device's command topic; `false` if this instance has no broker.
pub async fn send(st: &AppState, key: &DeviceKey, command: &Command) -> bool {
    let Some(link) = st.mqtt.get() else {
        tracing::warn!(device = %key.device_id, "a device is connected over MQTT, but this instance has no mqtt_url");
        return false;
    };
    match link
        .publish(
            w::command_topic(key.tenant, key.device_id.as_str()),
            command,
        )
        .await
    {
        Ok(()) => {
            st.metrics.commands_sent.inc();
            true
        }
        Err(e) => {
            tracing::warn!(device = %key.device_id, error = %e, "publishing a command failed");
            false
        }
    }
}

/// The device's credential was revoked: it is no longer connected (its broker session is
/// the broker's; every message it sends is refused from now on).
pub async fn revoked(st: &AppState, key: &DeviceKey) {
    if let Some(link) = st.mqtt.get() {
        link.online.lock().expect("mqtt").remove(key);
    }
}

/// Whether this instance is linked to a broker (it keeps [`INSTANCE`] alive).
pub fn linked(st: &AppState) -> bool {
    st.mqtt.get().is_some()
}
