//! Several center instances on one PostgreSQL database. Any instance takes any request; this
//! module makes what one instance does reach the others:
//!
//! - **Heartbeats.** Each instance beats every [`BEAT`] in the `instances` table; one silent
//!   for [`ALIVE`] is dead: its devices are nowhere and its leases lapse.
//! - **Presence.** A device that connects (push channel or first long poll) is recorded as
//!   connected to this instance; last writer wins, so a device that moved is where it went.
//! - **Commands.** A command for a device connected elsewhere travels over PostgreSQL
//!   `NOTIFY` on [`CHANNEL`] to the instance holding it, which queues it in the device's
//!   mailbox; it is on the device's push channel within milliseconds. `NOTIFY` is
//!   transactional, ordered per sender and needs nothing beside the database every instance
//!   already has, which is why it was chosen over NATS. Like any command, one is at most once:
//!   a device that is gone by then does not get it, as if it had been offline.
//! - **Caches.** Compiled catalogs, rules, labels, sites and the fleet index are each
//!   instance's own; a change on one instance is announced on the same channel and the others
//!   read it back from the store.
//! - **Leases.** The background engines (rollouts, job expiry, diagnosis quiet periods,
//!   error-log schedules, forgetting dead instances) run on the one instance holding the
//!   [`ENGINES`] lease, renewed with each beat; if it dies another takes the lease within
//!   [`LEASE`]. A fleet re-judgement takes a per-tenant lease and records the revision it
//!   finished, so one cut short is taken up again by the lease holder.
//!
//! On SQLite there is one instance: it holds every lease, and nothing is sent.

pub mod bus;
pub mod events;
pub mod listen;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fleetcare_store::{DeviceKey, TenantId};
use fleetcare_wire::device::Command;
use serde::{Deserialize, Serialize};

use fleetcare_core::clock::Clock;
use fleetcare_store::Store;
use tokio::sync::watch;

use crate::access::credentials::CredentialCache;
use crate::devices::hub::{Hub, Via};
use crate::devices::link::Mqtt;
use crate::metrics::Metrics;

/// The channel instances talk on.
pub const CHANNEL: &str = "fleetcare_cluster";
/// How often an instance beats (and renews its leases).
pub const BEAT: Duration = Duration::from_secs(2);
/// An instance silent this long is dead.
pub const ALIVE: Duration = Duration::from_secs(8);
/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// The lease of the background engines.
pub const ENGINES: &str = "engines";
/// How long a snapshot of where a tenant's devices are connected is used for views.
const SNAPSHOT_TTL: Duration = Duration::from_secs(2);

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What one instance tells the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Message {
    /// Queue a command for a device connected to instance `to`.
    Command {
        to: String,
        t: TenantId,
        d: String,
        c: Command,
    },
    /// Queue one command for several devices connected to instance `to`.
    Commands {
        to: String,
        t: TenantId,
        ds: Vec<String>,
        c: Command,
    },
    /// The device's credential was revoked: close its channels, forget its cached credential.
    Revoked { t: TenantId, d: String },
    /// The tenant has a new catalog revision.
    Catalog { t: TenantId },
    /// The tenant has new diagnosis rules.
    Rules { t: TenantId },
    /// The device's current structure changed.
    Structure { t: TenantId, d: String },
    /// The device's labels changed.
    Labels { t: TenantId, d: String },
    /// One of the tenant's sites changed.
    Sites { t: TenantId },
    /// A trouble was resolved (diagnosis engines may open it again).
    TroubleClosed {
        t: TenantId,
        d: String,
        rule: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) from: String,
    #[serde(flatten)]
    pub(crate) m: Message,
}

/// Where a tenant's devices are connected on other instances, and when that was read.
type Snapshot = (Instant, Arc<HashMap<String, Via>>);

/// This instance in the cluster.
pub struct Cluster {
    /// This instance's id (random, new at each start).
    pub me: String,
    /// Whether this instance holds the engines' lease (always on SQLite).
    leader: AtomicBool,
    shared: bool,
    /// Where other instances' devices are connected, per tenant, briefly kept for views.
    snapshots: Mutex<HashMap<TenantId, Snapshot>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn via_of(s: &str) -> Via {
    match s {
        "poll" => Via::Poll,
        "mqtt" => Via::Mqtt,
        _ => Via::Push,
    }
}

impl Cluster {
    pub fn new(shared: bool) -> Cluster {
        Cluster {
            me: format!("{:016x}", fleetcare_core::secret::random_u64()),
            leader: AtomicBool::new(!shared),
            shared,
            snapshots: Mutex::default(),
        }
    }

    /// Whether this instance runs the background engines now.
    pub fn leads(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }
}

/// Device ids per [`Message::Commands`] (well below what `NOTIFY` takes, for the longest ids).
const IDS_PER_MESSAGE: usize = 80;
/// Up to this many devices are looked up one by one; more, by their tenant's presence.
const LOOKUPS: usize = 32;

/// The sender to devices and to the other instances: a command reaches a device wherever it
/// is connected (this instance's hub, the broker, another instance), a [`Message`] reaches
/// every other instance, and leases say who runs what. Engines hold it in their `Ctx`.
#[derive(Clone)]
pub struct Devices {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Devices connected to this instance.
    pub hub: Arc<Hub>,
    /// This instance among the others.
    pub cluster: Arc<Cluster>,
    /// The link to the MQTT broker, where `mqtt_url` is set (once connected at start).
    pub mqtt: Arc<OnceLock<Arc<Mqtt>>>,
    /// Device credentials trusted for a while (a revocation forgets one).
    pub credentials: Arc<CredentialCache>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Devices {
    /// Whether this instance alone knows the device to be connected over MQTT (on a shared
    /// store the store's presence answers instead).
    fn mqtt_holds(&self, key: &DeviceKey) -> bool {
        !self.cluster.is_shared() && self.mqtt.get().is_some_and(|l| l.holds(key))
    }

    /// Publish a command on the device's command topic; `false` if this instance has no
    /// broker.
    async fn mqtt_send(&self, key: &DeviceKey, command: &Command) -> bool {
        let Some(link) = self.mqtt.get() else {
            tracing::warn!(device = %key.device_id, "a device is connected over MQTT, but this instance has no mqtt_url");
            return false;
        };
        let sent = link.send(key, command).await;
        if sent {
            self.metrics.commands_sent.inc();
        }
        sent
    }

    pub(crate) fn mqtt_revoked(&self, key: &DeviceKey) {
        if let Some(link) = self.mqtt.get() {
            link.revoked(key);
        }
    }

    /// Whether this instance is linked to a broker (it keeps [`INSTANCE`] alive).
    pub fn linked(&self) -> bool {
        self.mqtt.get().is_some()
    }

    fn alive_since(&self) -> i64 {
        self.clock.now_ms() - ms(ALIVE)
    }

    /// Tell every other instance (nothing on SQLite). Lost messages are logged: what they carry
    /// is either a command (at most once, like any) or a cache change the others also pick up at
    /// their next start.
    pub async fn tell(&self, m: Message) {
        if !self.cluster.shared {
            return;
        }
        let text = serde_json::to_string(&Envelope {
            from: self.cluster.me.clone(),
            m,
        })
        .expect("messages serialize");
        if let Err(e) = self.store.publish(CHANNEL, &text).await {
            tracing::warn!(error = %e, "telling the other instances failed");
        }
    }

    /// How the device is connected, to this instance or another (commands use this: fresh).
    pub async fn online(&self, key: &DeviceKey) -> Option<Via> {
        if let Some(v) = self.hub.online(key) {
            return Some(v);
        }
        if self.mqtt_holds(key) {
            return Some(Via::Mqtt);
        }
        self.remote(key).await.map(|(_, v)| v)
    }

    async fn remote(&self, key: &DeviceKey) -> Option<(String, Via)> {
        if !self.cluster.shared {
            return None;
        }
        match self.store.presence(key, self.alive_since()).await {
            Ok(Some(p)) if p.instance != self.cluster.me => Some((p.instance, via_of(&p.via))),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "reading where a device is connected failed");
                None
            }
        }
    }

    /// Send a command to a connected device, wherever it is connected. `None` if it is offline.
    pub async fn send(&self, key: &DeviceKey, command: Command) -> Option<Via> {
        if let Some(v) = self.hub.send(key, command.clone()) {
            return Some(v);
        }
        if self.mqtt_holds(key) {
            return self.mqtt_send(key, &command).await.then_some(Via::Mqtt);
        }
        let (to, via) = self.remote(key).await?;
        if to == crate::devices::link::INSTANCE {
            // The broker holds the device's connection: any instance linked to it publishes.
            return self.mqtt_send(key, &command).await.then_some(Via::Mqtt);
        }
        self.tell(Message::Command {
            to,
            t: key.tenant,
            d: key.device_id.to_string(),
            c: command,
        })
        .await;
        Some(via)
    }

    /// Send one command to several devices wherever each is connected; how many were connected.
    pub async fn send_many(&self, keys: &[DeviceKey], command: &Command) -> usize {
        let mut told = 0;
        let mut rest: HashMap<TenantId, Vec<&DeviceKey>> = HashMap::new();
        for k in keys {
            if self.hub.send(k, command.clone()).is_some()
                || (self.mqtt_holds(k) && self.mqtt_send(k, command).await)
            {
                told += 1;
            } else if self.cluster.shared {
                rest.entry(k.tenant).or_default().push(k);
            }
        }
        for (t, ks) in rest {
            let mut by: HashMap<String, Vec<String>> = HashMap::new();
            if ks.len() <= LOOKUPS {
                for k in ks {
                    if let Some((to, _)) = self.remote(k).await {
                        by.entry(to).or_default().push(k.device_id.to_string());
                    }
                }
            } else {
                match self.store.presence_of_tenant(t, self.alive_since()).await {
                    Ok(all) => {
                        for k in ks {
                            if let Some(p) = all.get(k.device_id.as_str())
                                && p.instance != self.cluster.me
                            {
                                by.entry(p.instance.clone())
                                    .or_default()
                                    .push(k.device_id.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading where devices are connected failed")
                    }
                }
            }
            if let Some(ds) = by.remove(crate::devices::link::INSTANCE) {
                for d in ds {
                    if let Some(k) = key_of(t, &d)
                        && self.mqtt_send(&k, command).await
                    {
                        told += 1;
                    }
                }
            }
            for (to, ds) in by {
                told += ds.len();
                for chunk in ds.chunks(IDS_PER_MESSAGE) {
                    self.tell(Message::Commands {
                        to: to.clone(),
                        t,
                        ds: chunk.to_vec(),
                        c: command.clone(),
                    })
                    .await;
                }
            }
        }
        told
    }

    /// The device's credential was revoked: close its channels here and everywhere, and forget
    /// its cached credential on every instance.
    pub async fn revoke(&self, key: &DeviceKey) {
        self.credentials.forget(key);
        self.hub.revoke(key);
        self.mqtt_revoked(key);
        self.tell(Message::Revoked {
            t: key.tenant,
            d: key.device_id.to_string(),
        })
        .await;
    }

    /// Whether a device is connected anywhere, for views: this instance's hub, else a snapshot
    /// of the tenant's presence at most [`SNAPSHOT_TTL`] old (one query per tenant, not one per
    /// device shown).
    pub async fn seen_online(&self, key: &DeviceKey) -> bool {
        if self.hub.online(key).is_some() || self.mqtt_holds(key) {
            return true;
        }
        self.snapshot(key.tenant)
            .await
            .contains_key(key.device_id.as_str())
    }

    /// Where the tenant's devices are connected on other instances, at most [`SNAPSHOT_TTL`] old.
    pub async fn snapshot(&self, tenant: TenantId) -> Arc<HashMap<String, Via>> {
        if !self.cluster.shared {
            return Arc::default();
        }
        if let Some((at, s)) = self
            .cluster
            .snapshots
            .lock()
            .expect("snapshots")
            .get(&tenant)
            && at.elapsed() < SNAPSHOT_TTL
        {
            return s.clone();
        }
        let fresh: HashMap<String, Via> = match self
            .store
            .presence_of_tenant(tenant, self.alive_since())
            .await
        {
            Ok(all) => all
                .into_iter()
                .filter(|(_, p)| p.instance != self.cluster.me)
                .map(|(d, p)| (d, via_of(&p.via)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading where devices are connected failed");
                HashMap::new()
            }
        };
        let fresh = Arc::new(fresh);
        self.cluster
            .snapshots
            .lock()
            .expect("snapshots")
            .insert(tenant, (Instant::now(), fresh.clone()));
        fresh
    }

    /// A device connected to this instance (it was not connected here before).
    pub async fn arrived(&self, key: &DeviceKey, via: Via) {
        if !self.cluster.shared {
            return;
        }
        if let Err(e) = self
            .store
            .set_presence(key, &self.cluster.me, via.as_str(), self.clock.now_ms())
            .await
        {
            tracing::warn!(device = %key.device_id, error = %e, "recording where a device is connected failed");
        }
    }

    /// Devices no longer connected to this instance.
    pub async fn left(&self, keys: &[DeviceKey]) {
        if !self.cluster.shared || keys.is_empty() {
            return;
        }
        if let Err(e) = self.store.clear_presence(keys, &self.cluster.me).await {
            tracing::warn!(error = %e, "recording that devices left failed");
        }
    }

    /// Run `work` if this instance holds (or can take) the lease `name`, renewing it while the
    /// work goes on; `None` if another instance holds it.
    pub async fn with_lease<F, T>(&self, name: &str, work: F) -> Option<T>
    where
        F: std::future::Future<Output = T>,
    {
        let now = self.clock.now_ms();
        let me = self.cluster.me.clone();
        match self.store.lease(name, &me, now, now + ms(LEASE)).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "taking a lease failed");
                return None;
            }
        }
        let renew = {
            let (st, name, me) = (self.clone(), name.to_owned(), me.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(BEAT).await;
                    let now = st.clock.now_ms();
                    if !matches!(
                        st.store.lease(&name, &me, now, now + ms(LEASE)).await,
                        Ok(true)
                    ) {
                        tracing::warn!(lease = %name, "a lease was lost while its work went on");
                    }
                }
            })
        };
        let out = work.await;
        renew.abort();
        if let Err(e) = self.store.release_lease(name, &me).await {
            tracing::warn!(lease = name, error = %e, "giving a lease up failed");
        }
        Some(out)
    }
}

/// Hear every payload sent on `channel` until shutdown, listening again (after a second)
/// whenever the connection is lost; returns at once on SQLite.
pub(crate) async fn each_message<F, Fut>(
    store: &Store,
    mut shutdown: watch::Receiver<bool>,
    channel: &str,
    mut on: F,
) where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        let mut sub = match store.subscribe(channel).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            // The store closes after a shutdown: nothing to listen to any more.
            Err(_) if *shutdown.borrow() => return,
            Err(e) => {
                tracing::warn!(channel, error = %e, "listening to the other instances failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = crate::stopped(&mut shutdown) => return,
                }
            }
        };
        loop {
            let got = tokio::select! {
                got = sub.next() => got,
                () = crate::stopped(&mut shutdown) => return,
            };
            let Ok(text) = got else { break };
            on(text).await;
        }
    }
}

pub(crate) fn key_of(t: TenantId, d: &str) -> Option<DeviceKey> {
    fleetcare_core::DeviceId::parse(d)
        .ok()
        .map(|device_id| DeviceKey {
            tenant: t,
            device_id,
        })
}

/// The other instances' fleet indexes follow a device's structure (a first report may record
/// no change, so a connect is told too).
pub struct FollowStructure(pub Devices);

impl crate::devices::report::AfterReport for FollowStructure {
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        if !(r.current && (r.changes > 0 || r.trigger == fleetcare_wire::Trigger::Connect)) {
            return crate::devices::report::done();
        }
        Box::pin(self.0.tell(Message::Structure {
            t: r.key.tenant,
            d: r.key.device_id.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back() {
        let all = [
            Message::Command {
                to: "ab".into(),
                t: 1,
                d: "PRN-1".into(),
                c: Command::RequestReport,
            },
            Message::Revoked {
                t: 1,
                d: "PRN-1".into(),
            },
            Message::Catalog { t: 2 },
            Message::TroubleClosed {
                t: 2,
                d: "X".into(),
                rule: "r".into(),
            },
        ];
        for m in all {
            let text = serde_json::to_string(&Envelope {
                from: "me".into(),
                m: m.clone(),
            })
            .expect("serializes");
            let back: Envelope = serde_json::from_str(&text).expect("reads");
            assert_eq!((back.from.as_str(), back.m), ("me", m));
        }
    }
}
