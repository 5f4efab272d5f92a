//! When a rollout advances, waits, or stops itself: a pure decision from the waves' counters.

use serde::{Deserialize, Serialize};

/// A wave's counters (kept by the store as devices and jobs change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveCounts {
    pub devices: u64,
    /// Not yet looked at, or waiting for a slot.
    pub pending: u64,
    /// Not in a proper state now (looked at again later).
    pub ineligible: u64,
    /// A job is on the way.
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Nothing to do (already on the target, or the target does not apply).
    pub skipped: u64,
}

/// How a rollout moves from wave to wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Advance {
    /// As soon as the gate passes.
    Automatic,
    /// After an operator (not the rollout's creator) approved the next wave.
    Approval,
}

/// Built from the API's `RolloutGates` (whose defaults are the only ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    /// Share of a wave's finished devices that must have succeeded before the next wave.
    pub success_ratio: f64,
    /// Pause when the failed share of finished devices passes this (once `min_finished`
    /// finished)…
    pub failure_ratio: Option<f64>,
    pub min_finished: u64,
    /// …or when this many failed.
    pub failure_count: Option<u64>,
    /// Installs at the same time, over the whole rollout.
    pub max_concurrent: u64,
    pub advance: Advance,
}

impl Gates {
    /// Every problem at once.
    pub fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..=1.0).contains(&self.success_ratio) {
            p.push(format!(
                "success_ratio {}: a share within [0, 1]",
                self.success_ratio
            ));
        }
        if self
            .failure_ratio
            .is_some_and(|r| !(0.0..=1.0).contains(&r))
        {
            p.push("failure_ratio: a share within [0, 1]".into());
        }
        if self.failure_count == Some(0) {
            p.push("failure_count: at least 1".into());
        }
        if !(1..=100_000).contains(&self.max_concurrent) {
            p.push(format!(
                "max_concurrent {}: 1 to 100000",
                self.max_concurrent
            ));
        }
        p
    }
}

/// What the engine does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep dispatching the started waves.
    Continue,
    /// Stop: too many failures, or a wave below its gate.
    Pause(String),
    /// Start this wave.
    Advance(usize),
    /// This wave waits for an operator's approval.
    AwaitApproval(usize),
    /// Every wave is done (the rollout keeps taking newcomers).
    Done,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// Decide from the counters of every wave, `current` the newest started one.
pub fn decide(g: &Gates, current: usize, waves: &[WaveCounts], next_approved: bool) -> Decision {
    let started = waves.get(..=current).unwrap_or(waves);
    let failed: u64 = started.iter().map(|w| w.failed).sum();
    let finished: u64 = started.iter().map(|w| w.failed + w.succeeded).sum();
    if let Some(limit) = g.failure_count
        && failed >= limit
    {
        return Decision::Pause(format!(
            "{failed} installs failed; the rollout stops at {limit}"
        ));
    }
    if let Some(r) = g.failure_ratio
        && finished >= g.min_finished.max(1)
        && failed as f64 / finished as f64 > r
    {
        return Decision::Pause(format!(
            "{failed} of {finished} finished installs failed ({}); the limit is {}",
            pct(failed as f64 / finished as f64),
            pct(r)
        ));
    }
    let Some(w) = waves.get(current) else {
        return Decision::Done;
    };
    let done_now = w.pending == 0 && w.running == 0;
    let proven = w.failed + w.succeeded > 0 || w.ineligible == 0;
    if !(done_now && proven) {
        return Decision::Continue;
    }
    let fin = w.failed + w.succeeded;
    let ratio = if fin == 0 {
        1.0
    } else {
        w.succeeded as f64 / fin as f64
    };
    if ratio < g.success_ratio {
        return Decision::Pause(format!(
            "wave {}: {} of its finished installs succeeded; the gate is {}",
            current + 1,
            pct(ratio),
            pct(g.success_ratio)
        ));
    }
    if current + 1 >= waves.len() {
        return Decision::Done;
    }
    match g.advance {
        Advance::Approval if !next_approved => Decision::AwaitApproval(current + 1),
        _ => Decision::Advance(current + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's default gates.
    fn defaults() -> Gates {
        let d = fleetcare_wire::rollouts::RolloutGates::default();
        assert_eq!(d.advance, "automatic");
        Gates {
            success_ratio: d.success_ratio,
            failure_ratio: d.failure_ratio,
            min_finished: d.min_finished,
            failure_count: d.failure_count,
            max_concurrent: d.max_concurrent,
            advance: Advance::Automatic,
        }
    }

    fn w(pending: u64, running: u64, succeeded: u64, failed: u64) -> WaveCounts {
        WaveCounts {
            devices: pending + running + succeeded + failed,
            pending,
            running,
            succeeded,
            failed,
            ..WaveCounts::default()
        }
    }

    #[test]
    fn no_waves_is_no_decision_to_panic_over() {
        assert_eq!(decide(&defaults(), 0, &[], false), Decision::Done);
        assert_eq!(
            decide(&defaults(), 3, &[w(1, 0, 0, 0)], false),
            Decision::Done
        );
    }

    #[test]
    fn failures_pause_before_the_next_wave() {
        let g = Gates {
            failure_count: Some(3),
            failure_ratio: None,
            ..defaults()
        };
        assert_eq!(
            decide(&g, 0, &[w(10, 5, 30, 2), w(100, 0, 0, 0)], false),
            Decision::Continue
        );
        assert!(matches!(
            decide(&g, 0, &[w(10, 5, 30, 3), w(100, 0, 0, 0)], false),
            Decision::Pause(r) if r.contains("3 installs failed")
        ));
        let ratio = defaults();
        assert!(matches!(
            decide(&ratio, 0, &[w(0, 0, 9, 2), w(100, 0, 0, 0)], false),
            Decision::Pause(r) if r.contains("2 of 11")
        ));
    }

    #[test]
    fn a_finished_wave_advances_or_waits_for_approval() {
        let g = defaults();
        assert_eq!(
            decide(&g, 0, &[w(0, 0, 50, 0), w(100, 0, 0, 0)], false),
            Decision::Advance(1)
        );
        let a = Gates {
            advance: Advance::Approval,
            ..defaults()
        };
        assert_eq!(
            decide(&a, 0, &[w(0, 0, 50, 0), w(100, 0, 0, 0)], false),
            Decision::AwaitApproval(1)
        );
        assert_eq!(
            decide(&a, 0, &[w(0, 0, 50, 0), w(100, 0, 0, 0)], true),
            Decision::Advance(1)
        );
        assert_eq!(
            decide(&g, 1, &[w(0, 0, 50, 0), w(0, 0, 100, 0)], false),
            Decision::Done
        );
        // All ineligible: nothing is proven yet.
        let all_out = WaveCounts {
            devices: 5,
            ineligible: 5,
            ..WaveCounts::default()
        };
        assert_eq!(
            decide(&g, 0, &[all_out, w(100, 0, 0, 0)], false),
            Decision::Continue
        );
    }
}
