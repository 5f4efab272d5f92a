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

/// Pages a supply lasts (a toner of a colour: colour pages only; a waste box fills with all).
fn pages_per_supply(s: &fleetcare_wire::Supply) -> f64 {
    use fleetcare_wire::SupplyKind as K;
    match s.kind {
        K::Toner | K::Ink => PAGES_PER_CARTRIDGE,
        K::Drum | K::Developer => 5.0 * PAGES_PER_CARTRIDGE,
        K::Waste => 8.0 * PAGES_PER_CARTRIDGE,
        K::Fuser | K::Transfer => 20.0 * PAGES_PER_CARTRIDGE,
        _ => 2.0 * PAGES_PER_CARTRIDGE,
    }
}

/// Supplies used by `pages` printed (30 % of them colour): levels go down (a waste box up),
/// the state follows (low at 10 %, empty at 0), and an empty one is replaced, on a later
/// tick (someone has to come by), by a new cartridge with a new serial.
fn consume(supplies: &mut [fleetcare_wire::Supply], pages: f64, rng: &mut crate::rng::Rng) {
    use fleetcare_wire::{SupplyKind as K, SupplyState as S};
    for s in supplies.iter_mut() {
        let Some(level) = s.level_pct else { continue };
        let colour = s.color.as_deref().is_some_and(|c| c != "black");
        let used = if colour && matches!(s.kind, K::Toner | K::Ink) {
            pages * 0.3
        } else {
            pages
        };
        let waste = s.kind == K::Waste;
        let spent = if waste { 100.0 - level } else { level };
        if spent <= 0.0 && rng.chance(0.2) {
            // A new cartridge (an emptied waste box).
            s.level_pct = Some(if waste { 0.0 } else { 100.0 });
            s.serial = s.serial.as_ref().map(|old| next_serial(old));
            s.state = S::Ok;
            continue;
        }
        let delta = used * 100.0 / pages_per_supply(s);
        let next = if waste { level + delta } else { level - delta }.clamp(0.0, 100.0);
        let next = (next * 10.0).round() / 10.0;
        s.level_pct = Some(next);
        let left = if waste { 100.0 - next } else { next };
        s.state = if left <= 0.0 {
            S::Empty
        } else if left <= 10.0 {
            S::Low
        } else {
            S::Ok
        };
        if let (Some(max), true) = (s.max, s.level.is_some()) {
            s.level = Some((next / 100.0 * max as f64).round() as i64);
        }
    }
}

/// The serial of the next cartridge: the trailing number one up (`K-20931` → `K-20932`).
fn next_serial(old: &str) -> String {
    let digits = old.len() - old.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = old.split_at(old.len() - digits);
    match tail.parse::<u64>() {
        Ok(n) => format!("{head}{:0width$}", n + 1, width = digits),
        Err(_) => format!("{old}-2"),
    }
}

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
            consume(&mut w.snapshot.supplies, pages, &mut w.rng);
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

#[cfg(test)]
mod tests {
    use super::*;
    use fleetcare_wire::{Supply, SupplyKind, SupplyState};

    #[test]
    fn toner_runs_low_then_empty_and_a_new_cartridge_goes_in() {
        let mut s = vec![Supply {
            slot: "toner.cyan".into(),
            kind: SupplyKind::Toner,
            color: Some("cyan".into()),
            level_pct: Some(12.0),
            level: None,
            max: None,
            part_number: Some("TN-45C".into()),
            serial: Some("C-00099".into()),
            state: SupplyState::Ok,
        }];
        let mut rng = crate::rng::Rng::new(7);
        // 1,000 pages, 300 in colour: 2.5 points of a 12,000-page cartridge.
        consume(&mut s, 1000.0, &mut rng);
        assert_eq!((s[0].level_pct, s[0].state), (Some(9.5), SupplyState::Low));
        consume(&mut s, 40_000.0, &mut rng);
        assert_eq!(
            (s[0].level_pct, s[0].state),
            (Some(0.0), SupplyState::Empty)
        );
        // Replaced within a bounded number of ticks, with the next serial.
        let mut ticks = 0;
        while s[0].state == SupplyState::Empty && ticks < 200 {
            consume(&mut s, 10.0, &mut rng);
            ticks += 1;
        }
        assert_eq!(s[0].level_pct, Some(100.0), "after {ticks} ticks");
        assert_eq!(s[0].serial.as_deref(), Some("C-00100"));
        assert_eq!(next_serial("X"), "X-2");
    }
}
