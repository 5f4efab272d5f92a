//! The MQTT transport: devices that reach the center through an MQTT broker instead of
//! HTTP, with the same messages (topics and envelopes in [`fleetcare_wire::mqtt`]).
//!
//! Each instance with `mqtt_url` set holds one client session to the broker and subscribes
//! to every device's up topics through the shared subscription
//! `$share/<group>/fleetcare/+/+/up/+`: the broker hands each message to one of the
//! instances, so several split the load, and one that dies stops getting messages. A message
//! is processed like the HTTP request it stands for (credential, the device's own topic, its
//! request budget, the same validation and store), answered on the device's `down/ack`
//! once durable, and only then acknowledged to the broker (manual PUBACK), so the broker's
//! in-flight window is the backpressure. A device that gets no answer publishes again:
//! reports and error batches are idempotent.
//!
//! Where devices are: a device's `up/status` (`online`, and `offline` as its last will) and
//! its first message at an instance record it as connected over MQTT. Alone, an instance
//! keeps that in memory; on a shared store it writes the device's presence under the
//! pseudo-instance [`INSTANCE`], which every MQTT instance keeps alive with its heartbeat:
//! any of them can publish a command on the device's `down/command`, since the broker, not
//! an instance, holds the device's connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetcare_core::DeviceId;
use fleetcare_core::limits::MAX_DEVICE_BODY;
use fleetcare_store::DeviceKey;
use fleetcare_wire::device::StructureReport;
use fleetcare_wire::errors::ErrorBatch;
use fleetcare_wire::mqtt::{self as w, Ack, Status};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, Transport};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::AppState;
use crate::config::MqttSettings;
use crate::devices::link::{INSTANCE, Mqtt};
use crate::error::ApiError;

/// Messages processed at once by one instance (more wait at the broker).
pub const IN_FLIGHT: usize = 256;
/// Longest message the center takes (the largest HTTP body plus its envelope).
pub const MAX_PACKET: usize = MAX_DEVICE_BODY + 4096;
/// Wait before connecting again after the broker went away.
const RECONNECT: Duration = Duration::from_secs(1);

use fleetcare_wire::mqtt::parse_url;

/// Connect to the broker and start taking devices' messages. The session reconnects by
/// itself; a broker that cannot be reached at start is an error only in the log (devices
/// retry, and HTTP keeps working).
pub async fn start(st: &AppState, s: &MqttSettings) -> Result<(), String> {
    let (tls, host, port) = parse_url(&s.url)?;
    let mut o = MqttOptions::new(
        format!("fleetcare-center-{}", st.devices.cluster.me),
        host,
        port,
    );
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, 64 * 1024)
        .set_inflight(u16::try_from(IN_FLIGHT).unwrap_or(u16::MAX));
    if let Some(user) = &s.username {
        let password = match &s.password_file {
            Some(p) => fleetcare_fs::read_password(p)
                .map_err(|e| format!("mqtt_password_file {}: {e}", p.display()))?,
            None => String::new(),
        };
        o.set_credentials(user, password);
    }
    if tls {
        let ca = s
            .ca_file
            .as_deref()
            .ok_or("mqtts:// needs mqtt_ca_file (the CA of the broker's certificate)")?;
        let mut config = fleetcare_tls::client_config(ca, None).map_err(|e| e.to_string())?;
        config.alpn_protocols.clear();
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
    }
    let (client, mut events) = AsyncClient::new(o, IN_FLIGHT);
    events.set_network_options(no_delay());
    let link = Arc::new(Mqtt {
        client,
        online: Mutex::default(),
    });
    if st.devices.mqtt.set(link.clone()).is_err() {
        return Err("the MQTT link was started twice".into());
    }
    let filter = format!("$share/{}/{}/+/+/up/+", s.share_group, w::ROOT);
    tokio::spawn(run(st.clone(), link, events, filter));
    Ok(())
}

/// Small messages go out at once (Nagle's algorithm with delayed ACKs holds an answer for
/// up to 40 ms), and a broker that does not answer a connect fails it within 10 s.
pub fn no_delay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n.set_connection_timeout(10);
    n
}

async fn run(st: AppState, link: Arc<Mqtt>, mut events: EventLoop, filter: String) {
    let mut shutdown = st.shutdown.clone();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let event = tokio::select! {
            e = events.poll() => e,
            () = crate::stopped(&mut shutdown) => {
                let _ = link.client.try_disconnect();
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(%filter, "connected to the MQTT broker");
                st.metrics.mqtt_connected.set(1);
                // A clean session: subscribe on every connect. From another task if the
                // session's queue is full of answers, since only this loop empties it.
                if link
                    .client
                    .try_subscribe(&filter, QoS::AtLeastOnce)
                    .is_err()
                {
                    let (client, filter) = (link.client.clone(), filter.clone());
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe(&filter, QoS::AtLeastOnce).await {
                            tracing::error!(error = %e, "subscribing to the devices' topics failed");
                        }
                    });
                }
            }
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                if a.return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::error!(%filter, "the broker refused the devices' topics (its ACL must let the center read fleetcare/#)");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // The session keeps being driven while messages wait for a slot (it carries
                // their answers); the broker's in-flight window bounds how many wait.
                let (st, link, slots) = (st.clone(), link.clone(), slots.clone());
                tokio::spawn(async move {
                    let Ok(permit) = slots.acquire_owned().await else {
                        return;
                    };
                    take(&st, &link, &p).await;
                    if let Err(e) = link.client.ack(&p).await {
                        tracing::debug!(error = %e, "acknowledging a message to the broker failed");
                    }
                    drop(permit);
                });
            }
            Ok(_) => {}
            Err(e) => {
                st.metrics.mqtt_connected.set(0);
                tracing::warn!(error = %e, "the MQTT broker connection failed; connecting again");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT) => {} // pacing: reconnect backoff
                    () = crate::stopped(&mut shutdown) => return,
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    id: String,
    credential: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// One up message: processed, answered on the device's `down/ack`.
async fn take(st: &AppState, link: &Mqtt, p: &Publish) {
    let Some((tenant, device, kind)) = w::parse_up_topic(&p.topic) else {
        tracing::warn!(topic = %p.topic, "a message on a topic that is not a device's up topic");
        return;
    };
    let Ok(device_id) = DeviceId::parse(device) else {
        tracing::warn!(topic = %p.topic, "a message on a topic that names no valid device");
        return;
    };
    let topic_key = DeviceKey { tenant, device_id };
    let envelope: Envelope<'_> = match serde_json::from_slice(&p.payload) {
        Ok(e) => e,
        Err(e) => {
            // No id to answer by: the device sees no ack and its retries are refused alike.
            st.metrics.rejected("bad_mqtt_envelope");
            tracing::warn!(device = %topic_key.device_id, error = %e, "a malformed MQTT envelope");
            let ack = Ack {
                id: String::new(),
                status: 400,
                body: None,
                error: Some(ApiError::BadJson(format!("malformed envelope: {e}")).body()),
            };
            answer(st, link, &topic_key, &ack).await;
            return;
        }
    };
    let id = envelope.id.chars().take(w::MAX_ID_LEN).collect::<String>();
    let outcome = tokio::time::timeout(
        st.settings.request_timeout,
        serve(st, link, &topic_key, kind, &envelope),
    )
    .await
    .unwrap_or_else(|_| Err(ApiError::Timeout(st.settings.request_timeout)));
    let ack = match outcome {
        Ok(None) => return,
        Ok(Some(body)) => Ack {
            id,
            status: 200,
            body: Some(body),
            error: None,
        },
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(device = %topic_key.device_id, error = %e, "an MQTT message failed");
            }
            Ack {
                id,
                status: e.status().as_u16(),
                body: None,
                error: Some(e.body()),
            }
        }
    };
    answer(st, link, &topic_key, &ack).await;
}

/// Authenticate and process; the answer's body (`None`: nothing to answer).
async fn serve(
    st: &AppState,
    link: &Mqtt,
    topic_key: &DeviceKey,
    kind: &str,
    e: &Envelope<'_>,
) -> Result<Option<serde_json::Value>, ApiError> {
    // A last will carries no credential (it is fixed when the session opens, and outlives
    // rotations); the broker's ACL says only the device publishes on its topics, so
    // "offline" is believed as it is. Nothing else goes without a credential.
    if kind == w::STATUS && e.credential.is_empty() {
        let s: Status = crate::extract::parse_json(e.body.get().as_bytes())?;
        if s.online {
            return Err(ApiError::Unauthorized(
                "a device says it is online with its credential".into(),
            ));
        }
        left(st, link, topic_key).await;
        return Ok(None);
    }
    let key = crate::extract::device_of_credential(st, &e.credential)
        .await?
        .ok_or_else(|| {
            st.metrics.rejected("bad_credential");
            ApiError::Unauthorized("unknown or revoked device credential".into())
        })?;
    if key != *topic_key {
        st.metrics.rejected("other_device");
        return Err(ApiError::Forbidden(format!(
            "this credential belongs to device {} of tenant {}; a device publishes only on \
             its own topics",
            key.device_id, key.tenant
        )));
    }
    let body = e.body.get().as_bytes();
    fn json(v: &impl serde::Serialize) -> serde_json::Value {
        serde_json::to_value(v).expect("answers serialize")
    }
    match kind {
        w::STATUS => {
            crate::extract::take_budget(st, &key)?;
            let s: Status = crate::extract::parse_json(body)?;
            if s.online {
                arrived(st, link, &key, true).await;
                Ok(Some(json(&s)))
            } else {
                left(st, link, &key).await;
                Ok(None)
            }
        }
        w::REPORT => {
            crate::extract::take_budget(st, &key)?;
            let r: StructureReport = crate::extract::parse_json(body)?;
            arrived(st, link, &key, false).await;
            let ack = crate::devices::protocol::take_report(st, key, r).await?;
            Ok(Some(json(&ack)))
        }
        w::ERRORS => {
            crate::extract::take_budget(st, &key)?;
            let b: ErrorBatch = crate::extract::parse_json(body)?;
            arrived(st, link, &key, false).await;
            let ack = crate::diag::logs::take_batch(st, key, b).await?;
            Ok(Some(json(&ack)))
        }
        other => Err(ApiError::NotFound(format!(
            "{other:?} is not a message kind (report, errors, status)"
        ))),
    }
}

async fn answer(st: &AppState, link: &Mqtt, key: &DeviceKey, ack: &Ack) {
    if let Err(e) = link
        .publish(w::ack_topic(key.tenant, key.device_id.as_str()), ack)
        .await
    {
        tracing::warn!(device = %key.device_id, error = %e, "answering a device over MQTT failed");
    } else {
        st.metrics.mqtt_messages.inc();
    }
}

/// The device is connected over MQTT (`announced`: it said so; otherwise it sent a message
/// here): recorded where commands look.
async fn arrived(st: &AppState, link: &Mqtt, key: &DeviceKey, announced: bool) {
    let new = link.online.lock().expect("mqtt").insert(key.clone());
    if !(new || announced) {
        return;
    }
    if st.devices.cluster.is_shared()
        && let Err(e) = st
            .store
            .set_presence(
                key,
                INSTANCE,
                fleetcare_wire::Via::Mqtt.as_str(),
                st.clock.now_ms(),
            )
            .await
    {
        tracing::warn!(device = %key.device_id, error = %e, "recording a device connected over MQTT failed");
    }
    st.events.device(key.tenant, key.device_id.as_str());
}

async fn left(st: &AppState, link: &Mqtt, key: &DeviceKey) {
    link.online.lock().expect("mqtt").remove(key);
    if st.devices.cluster.is_shared()
        && let Err(e) = st
            .store
            .clear_presence(std::slice::from_ref(key), INSTANCE)
            .await
    {
        tracing::warn!(device = %key.device_id, error = %e, "recording a device gone from MQTT failed");
    }
    st.events.device(key.tenant, key.device_id.as_str());
}
