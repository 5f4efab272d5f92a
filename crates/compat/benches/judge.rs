//! B5: indexed judgement against a 10 K-rule catalog, and plan search times.
//!
//! `cargo bench -p fleetcare-compat --bench judge` (BENCH_DEVICES, default 200 000).
//! Checks per second are measured on one thread: the figure per core.

#[path = "support/synth.rs"]
mod synth;

use std::time::{Duration, Instant};

use fleetcare_compat::{Catalog, DeviceFacts, PlanOutcome, Policy, Vocab};

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    let n: u64 = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let vocab = Vocab::new();
    let text = synth::catalog(synth::Change::None);
    let t = Instant::now();
    let catalog = Catalog::parse(&text, &vocab).unwrap_or_else(|e| panic!("{e}"));
    let stats = catalog.stats();
    println!(
        "catalog: {} bytes, {} rules ({} device models, {} unit models, {} products, {} releases), compiled in {:?}",
        text.len(),
        stats.rules,
        stats.device_models,
        stats.unit_models,
        stats.products,
        stats.releases,
        t.elapsed()
    );
    let rss0 = rss_kib();
    let devices: Vec<DeviceFacts> = (0..n)
        .map(|i| {
            let (model, units) = synth::device(i);
            DeviceFacts::new(&vocab, &model, &units)
        })
        .collect();
    println!(
        "device facts in memory: {:.0} bytes per 10-unit device (resident set growth)",
        (rss_kib() - rss0) * 1024.0 / n as f64
    );

    let mut kinds = std::collections::BTreeMap::new();
    for d in devices.iter().take(20_000) {
        for f in catalog.judge(d) {
            *kinds.entry(f.kind.as_str()).or_insert(0u32) += 1;
        }
    }
    println!("findings in the first 20 000 devices, by kind: {kinds:?}");

    // Checks per second, one thread, five passes (median, min, max).
    let mut rates = Vec::new();
    let mut with_findings = 0;
    for pass in 0..5 {
        let t = Instant::now();
        let mut found = 0usize;
        for d in &devices {
            found += usize::from(!catalog.judge(d).is_empty());
        }
        let secs = t.elapsed().as_secs_f64();
        rates.push(n as f64 / secs);
        if pass == 0 {
            with_findings = found;
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "judge: {n} devices x 10 units, {:.1} % with findings: median {:.0} checks/s per core (min {:.0}, max {:.0})",
        100.0 * with_findings as f64 / n as f64,
        rates[2],
        rates[0],
        rates[4]
    );

    // Judging plus rendering the findings (what storing a judgement needs), one thread.
    let t = Instant::now();
    let mut keys = 0usize;
    for d in &devices {
        for f in catalog.judge(d) {
            keys += catalog.render(d, &f).key.len();
        }
    }
    println!(
        "judge and render: {:.0} devices/s per core ({keys} bytes of keys)",
        n as f64 / t.elapsed().as_secs_f64()
    );

    // Plan search on every device with a software finding (at most 20 000).
    let needing: Vec<&DeviceFacts> = devices
        .iter()
        .filter(|d| catalog.judge(d).iter().any(|f| f.kind.software_fixable()))
        .take(20_000)
        .collect();
    let budget = Duration::from_millis(50);
    let mut times = Vec::with_capacity(needing.len());
    let (mut changed, mut none, mut late) = (0, 0, 0);
    for d in &needing {
        let t = Instant::now();
        match catalog.plan(d, Policy::MinimalChange, budget) {
            PlanOutcome::Change(_) | PlanOutcome::Keep => changed += 1,
            PlanOutcome::NoSolution(_) => none += 1,
            PlanOutcome::OutOfTime => late += 1,
        }
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    if !times.is_empty() {
        println!(
            "plan: {} devices with software findings: {changed} planned, {none} without a software solution, {late} out of the {budget:?} budget; p50 {:?} p99 {:?} max {:?}",
            times.len(),
            pct(0.5),
            pct(0.99),
            times[times.len() - 1]
        );
    }
}
