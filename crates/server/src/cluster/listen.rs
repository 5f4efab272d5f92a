//! Joining the cluster: this instance beats, holds or watches the engines' lease, and acts on
//! what the other instances tell it (it routes their messages to its own engines, so it sees
//! the whole [`AppState`], like a request handler).

use std::sync::atomic::Ordering;

use crate::AppState;
use crate::cluster::{ALIVE, BEAT, CHANNEL, ENGINES, Envelope, LEASE, Message, key_of, ms};

/// Join the cluster (on a shared store): beat, and listen to the others. The task that
/// beats ends, having left the cluster, once the center shuts down.
pub async fn start(st: &AppState, addr: String) -> Option<tokio::task::JoinHandle<()>> {
    if !st.devices.cluster.shared {
        return None;
    }
    // The first beat before anything is served, so the others see this instance at once.
    beat(st, &addr).await;
    let b = st.clone();
    let beating = tokio::spawn(async move {
        let mut shutdown = b.shutdown.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(BEAT) => beat(&b, &addr).await,
                () = crate::stopped(&mut shutdown) => {
                    b.devices.cluster.leader.store(false, Ordering::SeqCst);
                    if let Err(e) = b.store.leave(&b.devices.cluster.me).await {
                        tracing::warn!(error = %e, "leaving the cluster failed");
                    }
                    return;
                }
            }
        }
    });
    let l = st.clone();
    tokio::spawn(async move { listen(l).await });
    Some(beating)
}

async fn beat(st: &AppState, addr: &str) {
    let now = st.clock.now_ms();
    if let Err(e) = st.store.heartbeat(&st.devices.cluster.me, addr, now).await {
        tracing::warn!(error = %e, "the heartbeat failed");
    }
    // Devices on the broker are present while any instance linked to it lives.
    if st.devices.linked()
        && let Err(e) = st
            .store
            .heartbeat(crate::devices::link::INSTANCE, "mqtt", now)
            .await
    {
        tracing::warn!(error = %e, "the MQTT heartbeat failed");
    }
    let leads = st
        .store
        .lease(ENGINES, &st.devices.cluster.me, now, now + ms(LEASE))
        .await
        .unwrap_or(false);
    let was = st.devices.cluster.leader.swap(leads, Ordering::SeqCst);
    if leads != was {
        tracing::info!(instance = %st.devices.cluster.me, leads, "the background engines' lease changed hands");
        st.metrics.leader.set(i64::from(leads));
    }
    if leads {
        match st.store.forget_dead_instances(now - ms(ALIVE)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                instances = n,
                "dead instances forgotten (their devices connect elsewhere)"
            ),
            Err(e) => tracing::warn!(error = %e, "forgetting dead instances failed"),
        }
    }
}

async fn listen(st: AppState) {
    super::each_message(&st.store, st.shutdown.clone(), CHANNEL, |text| {
        let st = st.clone();
        async move {
            match serde_json::from_str::<Envelope>(&text) {
                Ok(e) if e.from == st.devices.cluster.me => {}
                Ok(e) => heard(&st, e.m).await,
                Err(e) => {
                    tracing::warn!(error = %e, "a message from another instance that does not read")
                }
            }
        }
    })
    .await;
}

/// Act on what another instance said.
async fn heard(st: &AppState, m: Message) {
    match m {
        Message::Command { to, t, d, c } => {
            if to == st.devices.cluster.me
                && let Some(key) = key_of(t, &d)
                && st.devices.hub.send(&key, c).is_none()
            {
                tracing::debug!(device = %d, "a command for a device no longer connected here");
            }
        }
        Message::Commands { to, t, ds, c } => {
            if to == st.devices.cluster.me {
                for d in ds {
                    if let Some(key) = key_of(t, &d) {
                        st.devices.hub.send(&key, c.clone());
                    }
                }
            }
        }
        Message::Revoked { t, d } => {
            if let Some(key) = key_of(t, &d) {
                st.devices.credentials.forget(&key);
                st.devices.hub.revoke(&key);
                st.devices.mqtt_revoked(&key);
            }
        }
        Message::Catalog { t } => st.compat.reload_catalog(st, t).await,
        Message::Rules { t } => st.diag.reload_rules(st, t).await,
        Message::Structure { t, d } => {
            if let Some(key) = key_of(t, &d) {
                st.compat.refresh(st, &key).await;
                st.rollouts.device_changed(&key);
            }
        }
        Message::Labels { t, d } => {
            if let Some(key) = key_of(t, &d) {
                st.rollouts.reload_label(st, &key).await;
            }
        }
        Message::Sites { t } => st.rollouts.reload_sites(st, t).await,
        Message::TroubleClosed { t, d, rule } => st.diag.closed_elsewhere(t, &d, &rule),
    }
}
