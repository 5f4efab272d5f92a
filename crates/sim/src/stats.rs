//! What the simulated fleet saw: latencies per operation (HdrHistogram, microseconds), counts,
//! and the summary printed at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use fleetcare_agent::Observer;
use fleetcare_wire::Trigger;
use hdrhistogram::Histogram;
use serde::Serialize;

fn histogram() -> Mutex<Histogram<u64>> {
    // 1 µs to 10 min, 3 significant digits.
    Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"))
}

fn record(h: &Mutex<Histogram<u64>>, took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
    h.lock().expect("histogram").saturating_record(us);
}

/// The fleet's counters and histograms (shared by every virtual device).
#[derive(Debug)]
pub struct Stats {
    pub report_ack: Mutex<Histogram<u64>>,
    pub errors_ack: Mutex<Histogram<u64>>,
    pub enroll: Mutex<Histogram<u64>>,
    reports: Mutex<BTreeMap<&'static str, u64>>,
    pub report_failures: AtomicU64,
    pub error_batches: AtomicU64,
    pub error_events_sent: AtomicU64,
    pub connected_push: AtomicI64,
    pub connected_poll: AtomicI64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    jobs: Mutex<BTreeMap<String, u64>>,
    pub events_logged: AtomicU64,
    pub swaps: AtomicU64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            report_ack: histogram(),
            errors_ack: histogram(),
            enroll: histogram(),
            reports: Mutex::new(BTreeMap::new()),
            report_failures: AtomicU64::new(0),
            error_batches: AtomicU64::new(0),
            error_events_sent: AtomicU64::new(0),
            connected_push: AtomicI64::new(0),
            connected_poll: AtomicI64::new(0),
            connects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            jobs: Mutex::new(BTreeMap::new()),
            events_logged: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
        }
    }
}

/// Per virtual device: what its channel is, so a disconnect lowers the right gauge.
#[derive(Debug)]
pub struct DeviceObserver {
    pub stats: std::sync::Arc<Stats>,
    via: Mutex<Option<&'static str>>,
}

impl DeviceObserver {
    pub fn new(stats: std::sync::Arc<Stats>) -> DeviceObserver {
        DeviceObserver {
            stats,
            via: Mutex::new(None),
        }
    }
}

impl Observer for DeviceObserver {
    fn report_acked(&self, trigger: Trigger, took: Duration) {
        record(&self.stats.report_ack, took);
        *self
            .stats
            .reports
            .lock()
            .expect("reports")
            .entry(trigger.as_str())
            .or_insert(0) += 1;
    }
    fn report_failed(&self) {
        self.stats.report_failures.fetch_add(1, Ordering::Relaxed);
    }
    fn errors_acked(&self, events: usize, took: Duration) {
        record(&self.stats.errors_ack, took);
        self.stats.error_batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .error_events_sent
            .fetch_add(events as u64, Ordering::Relaxed);
    }
    fn connected(&self, via: &str) {
        let via: &'static str = if via == "poll" { "poll" } else { "push" };
        let mut v = self.via.lock().expect("via");
        if v.is_none() {
            self.stats.connects.fetch_add(1, Ordering::Relaxed);
            let g = if via == "poll" {
                &self.stats.connected_poll
            } else {
                &self.stats.connected_push
            };
            g.fetch_add(1, Ordering::Relaxed);
            *v = Some(via);
        }
    }
    fn disconnected(&self) {
        let mut v = self.via.lock().expect("via");
        if let Some(via) = v.take() {
            self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
            let g = if via == "poll" {
                &self.stats.connected_poll
            } else {
                &self.stats.connected_push
            };
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }
    fn enrolled(&self, took: Duration) {
        record(&self.stats.enroll, took);
    }
    fn job_finished(&self, _job: u64, state: &str) {
        *self
            .stats
            .jobs
            .lock()
            .expect("jobs")
            .entry(state.to_owned())
            .or_insert(0) += 1;
    }
}

/// Percentiles of one operation, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Mutex<Histogram<u64>>) -> Latency {
        let h = h.lock().expect("histogram");
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The center, as its `/metrics` tells (both ends of the measured window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CenterUse {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
}

/// What a run did (`--json` prints this).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub devices: usize,
    pub offset: usize,
    /// Seconds measured: from the moment every device had started to the end.
    pub measured_s: f64,
    pub connected_push: i64,
    pub connected_poll: i64,
    pub agents_failed: usize,
    pub first_agent_error: Option<String>,
    pub reports_by_trigger: BTreeMap<String, u64>,
    pub reports_per_s: f64,
    pub report_failures: u64,
    pub report_ack: Latency,
    pub enroll: Latency,
    pub error_events_logged: u64,
    pub error_events_sent: u64,
    pub error_batches: u64,
    pub errors_ack: Latency,
    pub unit_swaps: u64,
    pub jobs: BTreeMap<String, u64>,
    /// The center's CPU seconds per wall second over the measured window (cores in use).
    pub center_cores: Option<f64>,
    /// Reports per second per core the center used.
    pub reports_per_center_core: Option<f64>,
    pub center_resident_mb: Option<f64>,
    pub center_open_fds: Option<f64>,
    /// This process (the simulator itself).
    pub sim_cores: f64,
    pub sim_resident_mb: f64,
}

impl Stats {
    /// Forget the latencies so far (the ramp), keeping counts.
    pub fn reset_latencies(&self) {
        for h in [&self.report_ack, &self.errors_ack] {
            h.lock().expect("histogram").reset();
        }
    }

    pub fn reports(&self) -> BTreeMap<String, u64> {
        self.reports
            .lock()
            .expect("reports")
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }

    pub fn reports_total(&self) -> u64 {
        self.reports.lock().expect("reports").values().sum()
    }

    pub fn jobs(&self) -> BTreeMap<String, u64> {
        self.jobs.lock().expect("jobs").clone()
    }

    pub(crate) fn latencies(&self) -> (Latency, Latency, Latency) {
        (
            Latency::of(&self.report_ack),
            Latency::of(&self.enroll),
            Latency::of(&self.errors_ack),
        )
    }
}

impl Summary {
    /// The summary in words and figures.
    pub fn render(&self) -> String {
        let lat = |l: &Latency| {
            format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            )
        };
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line(format!(
            "fleetcare sim: {} devices (from number {}), {:.1} s measured",
            self.devices, self.offset, self.measured_s
        ));
        line(format!(
            "  connected     {} push, {} poll; {} agents stopped with an error{}",
            self.connected_push,
            self.connected_poll,
            self.agents_failed,
            self.first_agent_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        ));
        line(format!("  enrollments   {}", lat(&self.enroll)));
        let by: Vec<String> = self
            .reports_by_trigger
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(format!(
            "  reports       {:.0}/s in the window ({}); {} not delivered at once",
            self.reports_per_s,
            by.join(", "),
            self.report_failures
        ));
        line(format!("  report ack    {}", lat(&self.report_ack)));
        line(format!(
            "  error log     {} events logged, {} sent in {} batches; ack {}",
            self.error_events_logged,
            self.error_events_sent,
            self.error_batches,
            lat(&self.errors_ack)
        ));
        let jobs: Vec<String> = self.jobs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line(format!(
            "  units swapped {}; jobs ended: {}",
            self.unit_swaps,
            if jobs.is_empty() {
                "none".into()
            } else {
                jobs.join(", ")
            }
        ));
        match self.center_cores {
            Some(c) => line(format!(
                "  center        {c:.2} cores in use{}; {:.0} MB resident, {:.0} descriptors",
                self.reports_per_center_core
                    .map_or(String::new(), |r| format!(
                        " = {r:.0} reports/s per server core"
                    )),
                self.center_resident_mb.unwrap_or(0.0),
                self.center_open_fds.unwrap_or(0.0)
            )),
            None => line("  center        CPU not known (its /metrics was not readable)".into()),
        }
        line(format!(
            "  simulator     {:.2} cores, {:.0} MB resident",
            self.sim_cores, self.sim_resident_mb
        ));
        o
    }
}
