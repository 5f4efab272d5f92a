//! The world: one task that advances every virtual device — pages printed, counters, errors
//! drawn per printed page, unit swaps — on a simulated clock that runs `speed` times real
//! time. One task for the whole fleet, not a timer per device.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetcare_agent::journal::NewEvent;
use tokio::sync::watch;

use crate::device::SimDevice;
use crate::profile::Profile;
use crate::stats::Stats;

/// How often the world advances (real time).
pub const TICK: Duration = Duration::from_secs(1);

/// Pages per toner cartridge (the gauge `toner_black_pct` goes down with pages, and a new
/// cartridge goes in below 5 %).
const PAGES_PER_CARTRIDGE: f64 = 12_000.0;

/// Advance one device by `sim_s` simulated seconds: what it printed, what went wrong.
/// Returns (events logged, swapped a unit).
pub(crate) fn advance(d: &SimDevice, p: &Profile, sim_s: f64) -> (u64, bool) {
    let mut events: Vec<NewEvent> = Vec::new();
    let swapped;
    {
        let mut w = d.working.lock().expect("device");
        let w = &mut *w;
        let pages = w.rng.poisson(p.pages_per_hour * w.pace * sim_s / 3600.0) as f64;
        let op = &mut w.snapshot.operating;
        if pages > 0.0 {
            *op.entry("pages_total".into()).or_insert(0.0) += pages;
            if let Some(c) = op.get_mut("pages_color") {
                *c += (pages * 0.3).round();
            }
            if let Some(t) = op.get_mut("toner_black_pct") {
                *t -= pages * 100.0 / PAGES_PER_CARTRIDGE;
                if *t < 5.0 {
                    *t = 100.0;
                }
                *t = (*t * 10.0).round() / 10.0;
            }
            for u in w.snapshot.units.iter().filter(|u| u.kind == "fuser") {
                *op.entry(format!("{}.life_pages", u.slot)).or_insert(0.0) += pages;
            }
        }
        for e in &p.errors {
            for u in w.snapshot.units.iter().filter(|u| u.kind == e.unit_kind) {
                let n = w.rng.poisson(pages / e.per_pages);
                for _ in 0..n {
                    if e.jam {
                        *w.snapshot
                            .operating
                            .entry("jams_total".into())
                            .or_insert(0.0) += 1.0;
                    }
                    events.push(NewEvent {
                        slot: u.slot.clone(),
                        code: e.code.clone(),
                        severity: e.severity.clone(),
                        counters: w
                            .snapshot
                            .operating
                            .iter()
                            .filter(|(k, _)| k.starts_with("pages") || k.starts_with("jams"))
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                        detail: e.detail.clone(),
                        alert: None,
                    });
                }
            }
        }
        swapped = w.rng.chance(p.swaps_per_device_day * sim_s / 86_400.0) && swap(w);
    }
    let logged = events.len() as u64;
    if !events.is_empty() {
        let at = fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock);
        match d.journal.append_batch(&events, at) {
            Ok(_) => {
                if let Some(h) = d.handle.get() {
                    h.errors_logged();
                }
            }
            Err(e) => tracing::warn!(device = %d.id, error = %e, "the journal refused events"),
        }
    }
    if swapped {
        d.version.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = d.handle.get() {
            h.structure_changed();
        }
    }
    (logged, swapped)
}

/// Replace one unit (any but the controller, where the device's identity lives): a new
/// serial, its life counter back to zero.
fn swap(w: &mut crate::device::Working) -> bool {
    let candidates: Vec<usize> = (0..w.snapshot.units.len())
        .filter(|&i| w.snapshot.units[i].kind != "controller")
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let i = candidates[w.rng.below(candidates.len())];
    w.swaps += 1;
    let u = &mut w.snapshot.units[i];
    let base = u.serial.split("-R").next().unwrap_or_default().to_owned();
    u.serial = format!("{base}-R{}", w.swaps);
    let life = format!("{}.life_pages", u.slot);
    if let Some(l) = w.snapshot.operating.get_mut(&life) {
        *l = 0.0;
    }
    true
}

/// Run the world until shutdown.
pub(crate) async fn run(
    devices: Arc<Vec<Arc<SimDevice>>>,
    profile: Arc<Profile>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let sim_s = (now - last).as_secs_f64() * profile.speed;
        last = now;
        let (d, p, s) = (devices.clone(), profile.clone(), stats.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for dev in d.iter() {
                let (events, swapped) = advance(dev, &p, sim_s);
                s.events_logged.fetch_add(events, Ordering::Relaxed);
                if swapped {
                    s.swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    }
}
