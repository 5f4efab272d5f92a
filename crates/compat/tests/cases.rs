//! Data-driven compatibility tests: each file under `tests/data/<suite>/` holds a catalog, a
//! device and the expected findings, plan and advice as text (`UPDATE_EXPECT=1` rewrites the
//! expectations; review the diff).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use fleetcare_compat::{Catalog, DeviceFacts, PlanOutcome, Policy, Version, Vocab};
use fleetcare_wire::Unit;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceDoc {
    model: String,
    #[serde(default)]
    unit: Vec<Unit>,
}

const BUDGET: Duration = Duration::from_secs(5);

fn check(suite: &str, run: impl Fn(&BTreeMap<String, String>) -> String) {
    fleetcare_testkit::check(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(suite),
        run,
    );
}

fn catalog(s: &BTreeMap<String, String>, vocab: &Vocab) -> Result<Catalog, String> {
    Catalog::parse(&s["catalog"], vocab).map_err(|e| e.problems.join("\n"))
}

fn device(s: &BTreeMap<String, String>, vocab: &Vocab) -> DeviceFacts {
    let d: DeviceDoc = toml::from_str(&s["device"]).expect("device section parses");
    DeviceFacts::new(vocab, &d.model, &d.unit)
}

fn policy(s: &BTreeMap<String, String>) -> Policy {
    s.get("policy")
        .map(|p| Policy::parse(p.trim()).expect("policy is minimal or latest"))
        .unwrap_or_default()
}

/// Findings, plan and advice of a device, as text.
fn everything(s: &BTreeMap<String, String>) -> String {
    let vocab = Vocab::new();
    let cat = match catalog(s, &vocab) {
        Ok(c) => c,
        Err(e) => return format!("catalog refused:\n{e}"),
    };
    let facts = device(s, &vocab);
    let mut out = String::new();
    let findings = cat.judge(&facts);
    if findings.is_empty() {
        out.push_str("findings: none\n");
    } else {
        out.push_str("findings:\n");
        for f in &findings {
            let r = cat.render(&facts, f);
            let _ = writeln!(
                out,
                "- {}: {}\n  rule: {}",
                r.kind.as_str(),
                r.explanation,
                r.rule
            );
        }
    }
    let p = policy(s);
    let _ = write!(out, "plan ({}): ", p.as_str());
    let plan = cat.plan(&facts, p, BUDGET);
    match &plan {
        PlanOutcome::Keep => out.push_str("keep everything\n"),
        PlanOutcome::Change(steps) => {
            out.push('\n');
            for st in steps {
                let _ = writeln!(out, "- {}", cat.describe_step(&facts, st));
            }
        }
        PlanOutcome::NoSolution(why) => {
            let _ = writeln!(out, "none\n{}", indent(why));
        }
        PlanOutcome::OutOfTime => out.push_str("out of time\n"),
    }
    let _ = writeln!(
        out,
        "state: {}",
        fleetcare_compat::State::settled(&findings, Some(&plan)).as_str()
    );
    let hardware = findings
        .iter()
        .any(|f| f.kind.hardware() || f.kind == fleetcare_compat::FindingKind::UnknownUnitModel);
    if hardware || matches!(plan, PlanOutcome::NoSolution(_)) {
        let advice = cat.advise(&facts, p, BUDGET);
        if advice.is_empty() {
            out.push_str("advice: none found\n");
        } else {
            out.push_str("advice:\n");
            for (i, r) in advice.iter().enumerate() {
                let _ = writeln!(out, "{}. {}", i + 1, cat.describe_recommendation(&facts, r));
            }
        }
    }
    out
}

fn indent(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn judge_plan_and_advise() {
    check("devices", everything);
}

#[test]
fn catalogs_that_contradict_themselves_are_refused_with_every_problem() {
    check("catalogs", |s| match catalog(s, &Vocab::new()) {
        Ok(c) => format!("ok: {:?}", c.stats()),
        Err(e) => e,
    });
}

#[test]
fn version_order() {
    check("versions", |s| {
        let mut v: Vec<Version> = s["input"]
            .split_whitespace()
            .map(|t| Version::parse(t).expect("a version"))
            .collect();
        v.sort();
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" < ")
    });
}
