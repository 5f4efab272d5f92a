//! The push channel: how the center reaches the device.
//!
//! A WebSocket to `/device/v1/push` (read buffer 4 KiB) that the agent keeps open, pinging it
//! every `keepalive`; or, where a WebSocket cannot be opened (a proxy that does not pass
//! upgrades), long polls on `/device/v1/poll`. In `auto` mode two refused upgrades switch to
//! long polling, and the WebSocket is tried again every ten minutes. Broken connections are
//! reopened with backoff and jitter. The channel tells the agent's main loop when it comes up
//! (the agent then sends its `connect` report), goes down, or carries a command. With
//! `transport = "mqtt"` the channel is the broker session instead ([`crate::mqtt`]).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use fleetcare_wire::device::Command;

use crate::backoff::{Backoff, Complaint};
use crate::client::{CenterClient, error_chain};
use crate::config::{AgentConfig, Transport};

/// Read buffer of the agent's end of the push channel (the center's is as small).
const READ_BUFFER: usize = 4 * 1024;
/// Largest command message accepted from the center.
const MAX_MESSAGE: usize = 64 * 1024;
/// In `auto` mode, how long the agent long-polls before trying a WebSocket again.
const RETRY_WEBSOCKET_AFTER: Duration = Duration::from_secs(600);
/// Upgrades refused before `auto` mode falls back to long polling.
const REFUSALS_BEFORE_POLLING: u32 = 2;

/// How the channel is connected.
pub use fleetcare_wire::Via;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    Up(Via),
    Down(String),
    Command(Command),
    /// The center does not know the credential: the agent must enroll again.
    Unauthorized,
}

#[derive(Debug, Clone)]
pub struct Channel {
    transport: Transport,
    keepalive: Duration,
    poll_wait: Duration,
    request_timeout: Duration,
    backoff: Backoff,
    client: CenterClient,
    push_url: String,
    /// Why the channel cannot be opened, said in the log (rate-limited).
    complaint: Complaint,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Connect {
    /// Boxed: the stream is large and the other outcomes are not.
    Open(Box<Socket>),
    Unauthorized,
    /// The endpoint answered, but not with an upgrade.
    Refused(u16),
    Failed(String),
}

impl Channel {
    pub fn new(config: &AgentConfig, client: CenterClient) -> Channel {
        let push_url = format!(
            "{}/device/v1/push",
            client
                .base()
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        Channel {
            transport: config.transport,
            keepalive: config.keepalive,
            poll_wait: config.poll_wait,
            request_timeout: config.request_timeout,
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            client,
            push_url,
            complaint: Complaint::new(
                "opening the channel to the center",
                config.center_url_hint(),
            ),
        }
    }

    /// Keep the channel until `shutdown`, reporting to `events`. `token` holds the current
    /// device credential (the main loop replaces it after a new enrollment).
    pub async fn run(
        mut self,
        mut token: watch::Receiver<Option<String>>,
        events: mpsc::Sender<ChannelEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.transport == Transport::Mqtt {
            if let Some(link) = self.client.mqtt().cloned() {
                self.run_mqtt(&link, token, events, shutdown).await;
            }
            return;
        }
        let mut polling = self.transport == Transport::Poll;
        let mut polling_since = Instant::now();
        let mut refusals = 0;
        let mut up = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let Some(current) = token.borrow_and_update().clone() else {
                tokio::select! {
                    _ = token.changed() => continue,
                    () = stopped(&mut shutdown) => return,
                }
            };
            let mut unauthorized = false;
            let mut cause = None;
            if !polling {
                match self.connect(&current).await {
                    Connect::Open(ws) => {
                        refusals = 0;
                        self.backoff.reset();
                        self.complaint.recovered();
                        if events.send(ChannelEvent::Up(Via::Push)).await.is_err() {
                            return;
                        }
                        let opened = Instant::now();
                        let reason = self.session(*ws, &events, &mut shutdown).await;
                        if events.send(ChannelEvent::Down(reason)).await.is_err() {
                            return;
                        }
                        // A channel that held for a while is reopened at once.
                        if opened.elapsed() > self.keepalive * 2 {
                            continue;
                        }
                    }
                    Connect::Unauthorized => unauthorized = true,
                    Connect::Refused(status) => {
                        refusals += 1;
                        tracing::warn!(status, "the center refused the WebSocket upgrade");
                        if self.transport == Transport::Auto && refusals >= REFUSALS_BEFORE_POLLING
                        {
                            tracing::warn!("falling back to long polling");
                            polling = true;
                            polling_since = Instant::now();
                            continue;
                        }
                    }
                    Connect::Failed(e) => cause = Some(e),
                }
            } else {
                // Until the channel is up, poll without waiting: being up is news.
                let wait = if up { self.poll_wait } else { Duration::ZERO };
                let answer = tokio::select! {
                    a = self.client.poll(&current, wait) => a,
                    () = stopped(&mut shutdown) => return,
                };
                match answer {
                    Ok(answer) => {
                        self.backoff.reset();
                        self.complaint.recovered();
                        if !up {
                            up = true;
                            if events.send(ChannelEvent::Up(Via::Poll)).await.is_err() {
                                return;
                            }
                        }
                        for c in answer {
                            if events.send(ChannelEvent::Command(c)).await.is_err() {
                                return;
                            }
                        }
                        if self.transport == Transport::Auto
                            && polling_since.elapsed() > RETRY_WEBSOCKET_AFTER
                        {
                            polling = false;
                            refusals = 0;
                            up = false;
                            let _ = events
                                .send(ChannelEvent::Down("trying a WebSocket again".into()))
                                .await;
                        }
                        continue;
                    }
                    Err(e) => {
                        unauthorized = e.is_unauthorized();
                        cause = Some(e.to_string());
                        if up {
                            up = false;
                            if events
                                .send(ChannelEvent::Down(e.to_string()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
            if unauthorized && events.send(ChannelEvent::Unauthorized).await.is_err() {
                return;
            }
            let delay = self.backoff.next_delay();
            if let Some(c) = cause.filter(|_| !unauthorized) {
                self.complaint.failed(&c, delay);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // A new credential is worth trying at once.
                _ = token.changed(), if unauthorized => {}
                () = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Drive the broker session until `shutdown`: on every connect, subscribe to the
    /// device's down topics and say it is online; hand answers to their requests and
    /// commands to the agent.
    async fn run_mqtt(
        mut self,
        link: &std::sync::Arc<crate::mqtt::MqttLink>,
        mut token: watch::Receiver<Option<String>>,
        events: mpsc::Sender<ChannelEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        use rumqttc::{Event, Packet, QoS};
        let Some(mut session) = link.take_events() else {
            return;
        };
        let announce = |link: std::sync::Arc<crate::mqtt::MqttLink>,
                        token: Option<String>,
                        events: mpsc::Sender<ChannelEvent>| {
            let Some(token) = token else { return };
            tokio::spawn(async move {
                let said: Result<fleetcare_wire::mqtt::Status, _> = link
                    .request(
                        fleetcare_wire::mqtt::STATUS,
                        &token,
                        &fleetcare_wire::mqtt::Status { online: true },
                    )
                    .await;
                match said {
                    Ok(_) => {}
                    Err(e) if e.is_unauthorized() => {
                        let _ = events.send(ChannelEvent::Unauthorized).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "saying online over MQTT failed"),
                }
            });
        };
        let mut up = false;
        loop {
            tokio::select! {
                e = session.poll() => match e {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        self.backoff.reset();
                        // Queued ahead of what follows (so answers find the subscription);
                        // from another task if the queue is full, since only this loop
                        // empties it.
                        if link.client().try_subscribe(link.down_filter(), QoS::AtLeastOnce).is_err() {
                            let (client, filter) = (link.client().clone(), link.down_filter());
                            tokio::spawn(async move {
                                if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                                    tracing::warn!(error = %e, "subscribing to the device's topics failed");
                                }
                            });
                        }
                        announce(link.clone(), token.borrow_and_update().clone(), events.clone());
                        up = true;
                        self.complaint.recovered();
                        if events.send(ChannelEvent::Up(Via::Mqtt)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic.ends_with("/down/ack") {
                            match serde_json::from_slice(&p.payload) {
                                Ok(ack) => link.answered(ack),
                                Err(e) => tracing::warn!(error = %e, "ignoring an answer this agent does not understand"),
                            }
                        } else if p.topic.ends_with("/down/command") {
                            match serde_json::from_slice::<Command>(&p.payload) {
                                Ok(c) => {
                                    if events.send(ChannelEvent::Command(c)).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "ignoring a command this agent does not understand"),
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if up {
                            up = false;
                            if events.send(ChannelEvent::Down(error_chain(&e))).await.is_err() {
                                return;
                            }
                        }
                        let delay = self.backoff.next_delay();
                        self.complaint.failed(&error_chain(&e), delay);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stopped(&mut shutdown) => return,
                        }
                    }
                },
                // A new credential: say online with it.
                Ok(()) = token.changed() => {
                    if up {
                        announce(link.clone(), token.borrow_and_update().clone(), events.clone());
                    }
                }
                () = stopped(&mut shutdown) => {
                    // A clean disconnect sends no will: say offline first, and let the
                    // session send both (for a second at most).
                    if up {
                        let _ = link.goodbye();
                    }
                    let _ = link.client().try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        loop {
                            match session.poll().await {
                                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                    })
                    .await;
                    return;
                }
            }
        }
    }

    async fn connect(&self, token: &str) -> Connect {
        let mut req = match self.push_url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return Connect::Failed(e.to_string()),
        };
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(v) => {
                req.headers_mut().insert("authorization", v);
            }
            Err(e) => return Connect::Failed(e.to_string()),
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connector = self.client.tls().map(tokio_tungstenite::Connector::Rustls);
        let attempt =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, connector);
        // (Shutdown waits at most one request timeout for a connection attempt.)
        match tokio::time::timeout(self.request_timeout, attempt).await {
            Err(_) => Connect::Failed("timed out opening the push channel".into()),
            Ok(Ok((ws, _))) => Connect::Open(Box::new(ws)),
            Ok(Err(tungstenite::Error::Http(resp))) if resp.status().as_u16() == 401 => {
                Connect::Unauthorized
            }
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let s = resp.status().as_u16();
                // Overload and outages are not a missing endpoint.
                if s == 429 || s >= 500 {
                    Connect::Failed(format!("the center answered {s}"))
                } else {
                    Connect::Refused(s)
                }
            }
            Ok(Err(e)) => Connect::Failed(error_chain(&e)),
        }
    }

    /// Carry commands until the channel breaks; returns why it ended.
    async fn session(
        &self,
        mut ws: Socket,
        events: &mpsc::Sender<ChannelEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> String {
        let mut ping = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        match serde_json::from_str::<Command>(&text) {
                            Ok(c) => {
                                if events.send(ChannelEvent::Command(c)).await.is_err() {
                                    return "agent stopping".into();
                                }
                            }
                            // A newer center may send commands this agent does not know.
                            Err(e) => tracing::warn!(error = %e, "ignoring a command this agent does not understand"),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return match frame {
                            Some(f) => format!("closed by the center: {}", f.reason),
                            None => "closed by the center".into(),
                        };
                    }
                    Some(Ok(_)) => heard = Instant::now(),
                    Some(Err(e)) => return error_chain(&e),
                    None => return "connection ended".into(),
                },
                _ = ping.tick() => {
                    if heard.elapsed() > self.keepalive * 2 {
                        return "the center went silent".into();
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return error_chain(&e);
                    }
                }
                () = stopped(shutdown) => {
                    let _ = ws.close(None).await;
                    return "agent stopping".into();
                }
            }
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
