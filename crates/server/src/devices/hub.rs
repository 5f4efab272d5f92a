//! The push hub: which devices are connected to this instance, and the commands waiting for
//! them.
//!
//! Each connected device has a mailbox: a short queue of [`Command`]s and a [`Notify`]. A
//! WebSocket task or a long-poll request waits on it; `send` queues and wakes. A device is
//! online while a push channel is open or it polled within the poll grace. Mailboxes of
//! devices that went away are swept. The mailbox also carries the newest report received
//! from the device while it is connected, so an operator's request can wait for its answer.
//! The hub holds no device data beyond that, and nothing here is stored: a command for an
//! offline device is refused, not kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use fleetcare_core::clock::Clock;
use fleetcare_store::{DeviceKey, ReportMeta};
use fleetcare_wire::device::Command;
use tokio::sync::{Notify, watch};

/// Commands kept for one device at most; older ones are dropped first.
const MAX_QUEUED: usize = 32;

pub use fleetcare_wire::Via;

pub struct Mailbox {
    queue: Mutex<VecDeque<Command>>,
    notify: Notify,
    push_channels: AtomicU32,
    last_poll_ms: AtomicI64,
    /// Made when someone first waits for a report (376 bytes, which most connected devices
    /// never need).
    reports: OnceLock<watch::Sender<Option<ReportMeta>>>,
    /// Set when the device's credential was revoked: its channels close.
    revoked: AtomicBool,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            queue: Mutex::default(),
            notify: Notify::new(),
            push_channels: AtomicU32::new(0),
            last_poll_ms: AtomicI64::new(0),
            reports: OnceLock::new(),
            revoked: AtomicBool::new(false),
        }
    }
}

impl Mailbox {
    /// Reports received from now on (the current one counts as seen).
    pub fn subscribe_reports(&self) -> watch::Receiver<Option<ReportMeta>> {
        self.reports
            .get_or_init(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Wait until a command may be waiting.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Take every waiting command.
    pub fn drain(&self) -> Vec<Command> {
        self.queue.lock().expect("mailbox").drain(..).collect()
    }

    /// The device's credential was revoked: its channels must close.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }
}

pub struct Hub {
    mailboxes: Mutex<HashMap<DeviceKey, Arc<Mailbox>>>,
    clock: Arc<dyn Clock>,
    poll_grace_ms: i64,
}

/// Keeps a push channel registered; unregisters on drop.
pub struct PushGuard {
    hub: Arc<Hub>,
    key: DeviceKey,
    pub mailbox: Arc<Mailbox>,
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.mailbox.push_channels.fetch_sub(1, Ordering::SeqCst);
        self.hub.forget_if_idle(&self.key);
    }
}

impl Hub {
    pub fn new(clock: Arc<dyn Clock>, poll_grace_ms: i64) -> Hub {
        Hub {
            mailboxes: Mutex::new(HashMap::new()),
            clock,
            poll_grace_ms,
        }
    }

    fn mailbox(&self, key: &DeviceKey) -> Arc<Mailbox> {
        self.mailboxes
            .lock()
            .expect("hub")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Register an open push channel for the device.
    pub fn attach_push(self: &Arc<Self>, key: &DeviceKey) -> PushGuard {
        let mailbox = self.mailbox(key);
        mailbox.push_channels.fetch_add(1, Ordering::SeqCst);
        PushGuard {
            hub: self.clone(),
            key: key.clone(),
            mailbox,
        }
    }

    /// Register a long poll for the device; its mailbox.
    pub fn poll(&self, key: &DeviceKey) -> Arc<Mailbox> {
        let mailbox = self.mailbox(key);
        mailbox
            .last_poll_ms
            .store(self.clock.now_ms(), Ordering::SeqCst);
        mailbox
    }

    /// Mark the end of a long poll (the device is polling: online for the grace from now).
    pub fn poll_done(&self, mailbox: &Mailbox) {
        mailbox
            .last_poll_ms
            .store(self.clock.now_ms(), Ordering::SeqCst);
    }

    fn via(&self, mailbox: &Mailbox) -> Option<Via> {
        if mailbox.push_channels.load(Ordering::SeqCst) > 0 {
            Some(Via::Push)
        } else {
            let last = mailbox.last_poll_ms.load(Ordering::SeqCst);
            (last > 0 && self.clock.now_ms() - last <= self.poll_grace_ms).then_some(Via::Poll)
        }
    }

    /// How the device is connected now, if it is.
    pub fn online(&self, key: &DeviceKey) -> Option<Via> {
        self.connected(key).map(|(_, via)| via)
    }

    /// The mailbox of a connected device, and how it is connected.
    pub fn connected(&self, key: &DeviceKey) -> Option<(Arc<Mailbox>, Via)> {
        let mailbox = self.mailboxes.lock().expect("hub").get(key).cloned()?;
        let via = self.via(&mailbox)?;
        Some((mailbox, via))
    }

    /// A report from the device was stored: wake whoever waits for one.
    pub fn reported(&self, key: &DeviceKey, meta: ReportMeta) {
        let mailbox = self.mailboxes.lock().expect("hub").get(key).cloned();
        if let Some(s) = mailbox.as_ref().and_then(|m| m.reports.get()) {
            s.send_replace(Some(meta));
        }
    }

    /// Queue a command for a connected device and wake its channel. `None` if it is offline.
    /// A command equal to one already waiting is not queued twice.
    pub fn send(&self, key: &DeviceKey, command: Command) -> Option<Via> {
        let (mailbox, via) = self.connected(key)?;
        Self::queue(&mailbox, command);
        Some(via)
    }

    /// Queue a command in a mailbox already looked up with [`Hub::connected`].
    pub fn queue(mailbox: &Mailbox, command: Command) {
        {
            let mut q = mailbox.queue.lock().expect("mailbox");
            if !q.contains(&command) {
                if q.len() >= MAX_QUEUED {
                    q.pop_front();
                }
                q.push_back(command);
            }
        }
        mailbox.notify.notify_one();
    }

    /// The device's credential was revoked: close its push channels and long polls now, and
    /// forget its mailbox.
    pub fn revoke(&self, key: &DeviceKey) {
        let mailbox = self.mailboxes.lock().expect("hub").remove(key);
        if let Some(m) = mailbox {
            m.revoked.store(true, Ordering::SeqCst);
            m.notify.notify_waiters();
            m.notify.notify_one();
        }
    }

    fn forget_if_idle(&self, key: &DeviceKey) {
        let mut map = self.mailboxes.lock().expect("hub");
        if let Some(m) = map.get(key)
            && self.via(m).is_none()
        {
            map.remove(key);
        }
    }

    /// Drop the mailboxes of devices no longer connected; the devices dropped.
    pub fn sweep(&self) -> Vec<DeviceKey> {
        let mut map = self.mailboxes.lock().expect("hub");
        let mut gone = Vec::new();
        map.retain(|k, m| {
            let keep = self.via(m).is_some();
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        gone
    }

    /// Devices with an open push channel to this instance.
    pub fn push_connected(&self) -> usize {
        let map = self.mailboxes.lock().expect("hub");
        map.values()
            .filter(|m| m.push_channels.load(Ordering::SeqCst) > 0)
            .count()
    }
}

impl crate::devices::report::AfterReport for Hub {
    /// Whoever waits for the device's next report (a requested report) hears of it.
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        if !r.duplicate {
            self.reported(
                r.key,
                ReportMeta {
                    seq: r.seq,
                    trigger: r.trigger,
                    received_at_ms: r.received_at_ms,
                    observed_at_ms: r.observed_at_ms,
                },
            );
        }
        crate::devices::report::done()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleetcare_core::DeviceId;
    use fleetcare_core::clock::ManualClock;

    use super::*;

    fn key(id: &str) -> DeviceKey {
        DeviceKey {
            tenant: 1,
            device_id: DeviceId::parse(id).expect("id"),
        }
    }

    #[test]
    fn push_channels_make_devices_online_until_dropped() {
        let hub = Arc::new(Hub::new(Arc::new(ManualClock::new(1_000)), 30_000));
        let k = key("A");
        assert_eq!(
            hub.send(&k, Command::RequestReport),
            None,
            "offline: refused"
        );
        let guard = hub.attach_push(&k);
        assert_eq!(hub.online(&k), Some(Via::Push));
        assert_eq!(hub.send(&k, Command::RequestReport), Some(Via::Push));
        assert_eq!(hub.send(&k, Command::RequestReport), Some(Via::Push));
        assert_eq!(
            guard.mailbox.drain(),
            vec![Command::RequestReport],
            "equal commands coalesce"
        );
        drop(guard);
        assert_eq!(hub.online(&k), None);
        assert!(hub.sweep().is_empty());
        assert_eq!(hub.push_connected(), 0);
    }

    #[test]
    fn polling_devices_stay_online_for_the_grace() {
        let clock = ManualClock::new(1_000);
        let hub = Hub::new(Arc::new(clock.clone()), 30_000);
        let k = key("B");
        let mb = hub.poll(&k);
        hub.poll_done(&mb);
        assert_eq!(hub.online(&k), Some(Via::Poll));
        assert_eq!(hub.send(&k, Command::RequestReport), Some(Via::Poll));
        assert_eq!(mb.drain(), vec![Command::RequestReport]);
        clock.advance(Duration::from_secs(31));
        assert_eq!(hub.online(&k), None);
        assert_eq!(hub.send(&k, Command::RequestReport), None);
        assert_eq!(hub.sweep(), vec![k], "the polling device is gone");
    }

    #[test]
    fn revocation_closes_channels_and_forgets_the_device() {
        let hub = Arc::new(Hub::new(Arc::new(ManualClock::new(1)), 1));
        let k = key("R");
        let g = hub.attach_push(&k);
        hub.revoke(&k);
        assert!(g.mailbox.is_revoked());
        assert_eq!(hub.online(&k), None);
        assert_eq!(hub.send(&k, Command::RequestReport), None);
    }

    #[test]
    fn queue_is_bounded() {
        let hub = Arc::new(Hub::new(Arc::new(ManualClock::new(1)), 1));
        let k = key("C");
        let g = hub.attach_push(&k);
        for s in 0..100u64 {
            hub.send(
                &k,
                Command::SetReportInterval {
                    seconds: Some(s + 10),
                },
            );
        }
        let got = g.mailbox.drain();
        assert_eq!(got.len(), MAX_QUEUED);
        assert_eq!(
            got.last(),
            Some(&Command::SetReportInterval { seconds: Some(109) }),
            "newest kept"
        );
    }
}
