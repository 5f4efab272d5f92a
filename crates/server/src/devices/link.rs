//! This instance's link to the MQTT broker as a way to reach devices: which devices it
//! holds, and sending them commands. The cluster routes commands through it; taking the
//! devices' messages is [`super::mqtt`]'s.

use std::collections::HashSet;
use std::sync::Mutex;

use fleetcare_store::DeviceKey;
use fleetcare_wire::device::Command;
use fleetcare_wire::mqtt as w;
use rumqttc::{AsyncClient, QoS};

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

    /// Whether this link knows the device to be connected over MQTT.
    pub fn holds(&self, key: &DeviceKey) -> bool {
        self.online.lock().expect("mqtt").contains(key)
    }

    /// Publish a command on the device's command topic.
    pub async fn send(&self, key: &DeviceKey, command: &Command) -> bool {
        match self
            .publish(
                w::command_topic(key.tenant, key.device_id.as_str()),
                command,
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = %key.device_id, error = %e, "publishing a command failed");
                false
            }
        }
    }

    /// The device's credential was revoked: it is no longer connected (its broker session
    /// is the broker's; every message it sends is refused from now on).
    pub fn revoked(&self, key: &DeviceKey) {
        self.online.lock().expect("mqtt").remove(key);
    }
}
