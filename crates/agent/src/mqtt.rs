//! The device protocol through an MQTT broker (`transport = "mqtt"`): reports and error
//! batches are published on the device's up topics and answered on its `down/ack`, commands
//! arrive on its `down/command` (topics and envelopes in [`fleetcare_wire::mqtt`]). The
//! broker account's username is `<tenant>/<device id>`, which also names the topics.
//! Enrollment, jobs and downloads stay on HTTP.
//!
//! A request waits for its answer up to the request timeout; without one it fails as a
//! network error would, and the agent sends it again later (the center stores a report or an
//! error batch once, whatever the retries). The session's last will tells the center the
//! device went away; on every connect the agent says it is online.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetcare_wire::mqtt::{self as w, Ack, Status, Up};
use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, QoS, Transport};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::client::error::ClientError;
use crate::config::{MqttSettings, parse_username};

/// Largest message taken from the broker (commands and answers are small).
const MAX_INCOMING: usize = 64 * 1024;
/// Largest message published (the center's limit for a body, plus the envelope).
const MAX_OUTGOING: usize = 256 * 1024 + 4096;

pub use fleetcare_wire::mqtt::parse_url;

/// The device's session with the broker.
pub struct MqttLink {
    client: AsyncClient,
    events: Mutex<Option<EventLoop>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    tenant: i64,
    device: String,
    next: AtomicU64,
    timeout: Duration,
}

impl std::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLink")
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl MqttLink {
    /// The session (not connected until the channel drives it); `tls` for `mqtts://`.
    pub fn new(
        s: &MqttSettings,
        tls: Option<fleetcare_tls::rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Arc<MqttLink>, String> {
        let (secure, host, port) = parse_url(&s.url)?;
        let (tenant, device) = parse_username(&s.username)?;
        let password = match &s.password_file {
            Some(p) => fleetcare_fs::read_password(p)
                .map_err(|e| format!("mqtt_password_file {}: {e}", p.display()))?,
            None => String::new(),
        };
        let mut o = MqttOptions::new(format!("fleetcare-{tenant}-{device}"), host, port);
        // The will needs no credential: only this device may publish on its topics.
        let will = Up {
            id: "will".into(),
            credential: String::new(),
            body: Status { online: false },
        };
        o.set_credentials(&s.username, password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
            .set_last_will(LastWill::new(
                w::up_topic(tenant, &device, w::STATUS),
                serde_json::to_vec(&will).expect("the will serializes"),
                QoS::AtLeastOnce,
                false,
            ));
        if secure {
            let mut config = tls.ok_or("mqtts:// needs mqtt_ca_file or tls_ca_file")?;
            config.alpn_protocols.clear();
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
            ));
        }
        let (client, mut events) = AsyncClient::new(o, 16);
        // Small messages go out at once (Nagle's algorithm with delayed ACKs holds one for
        // up to 40 ms); a broker that does not answer a connect fails it within the timeout.
        let mut n = rumqttc::NetworkOptions::new();
        n.set_tcp_nodelay(true);
        n.set_connection_timeout(timeout.as_secs().max(1));
        events.set_network_options(n);
        Ok(Arc::new(MqttLink {
            client,
            events: Mutex::new(Some(events)),
            pending: Mutex::default(),
            tenant,
            device,
            next: AtomicU64::new(0),
            timeout,
        }))
    }

    /// The session's event loop, for the channel that drives it (once).
    pub fn take_events(&self) -> Option<EventLoop> {
        self.events.lock().expect("mqtt").take()
    }

    /// The filter of the device's own down topics.
    pub fn down_filter(&self) -> String {
        format!("{}/{}/{}/down/#", w::ROOT, self.tenant, self.device)
    }

    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Publish `body` as `kind` with the credential and wait for the center's answer.
    pub async fn request<B: serde::Serialize, R: DeserializeOwned>(
        &self,
        kind: &str,
        token: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let id = format!("{:x}", self.next.fetch_add(1, Ordering::Relaxed));
        let payload = serde_json::to_vec(&Up {
            id: id.clone(),
            credential: token.to_owned(),
            body,
        })
        .expect("wire types serialize");
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("mqtt").insert(id.clone(), tx);
        let topic = w::up_topic(self.tenant, &self.device, kind);
        let outcome = tokio::time::timeout(self.timeout, async {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| ClientError::Network(e.to_string()))?;
            rx.await
                .map_err(|_| ClientError::Network("the MQTT session ended".into()))
        })
        .await;
        self.pending.lock().expect("mqtt").remove(&id);
        let ack = match outcome {
            Err(_) => {
                return Err(ClientError::Network(
                    "no answer from the center over MQTT".into(),
                ));
            }
            Ok(r) => r?,
        };
        if ack.status == 200 {
            let body = ack.body.unwrap_or(serde_json::Value::Null);
            return serde_json::from_value(body).map_err(|e| ClientError::Decode(e.to_string()));
        }
        let (code, message) = ack.error.map_or_else(
            || ("error".to_owned(), String::new()),
            |e| (e.code, e.error),
        );
        Err(ClientError::Refused {
            status: ack.status,
            code,
            message,
        })
    }

    /// Queue "offline" (what the will would say), for a clean disconnect.
    pub fn goodbye(&self) -> Result<(), rumqttc::ClientError> {
        let bye = Up {
            id: "bye".into(),
            credential: String::new(),
            body: Status { online: false },
        };
        self.client.try_publish(
            w::up_topic(self.tenant, &self.device, w::STATUS),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&bye).expect("status serializes"),
        )
    }

    /// An answer arrived on `down/ack`: hand it to its request.
    pub fn answered(&self, ack: Ack) {
        if let Some(tx) = self.pending.lock().expect("mqtt").remove(&ack.id) {
            let _ = tx.send(ack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_name_the_device() {
        assert_eq!(parse_username("7/PRN-1"), Ok((7, "PRN-1".into())));
        assert!(parse_username("PRN-1").is_err());
        assert!(parse_username("x/PRN-1").is_err());
        assert!(parse_username("7/a b").is_err());
    }
}
