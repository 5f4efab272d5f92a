//! Data-driven diagnosis tests: each file under `tests/data/` holds rules, devices and an
//! event stream (or operating info); the expected troubles (or abnormal units) follow.
//!
//! Lines of `--- devices`: `ID MODEL SLOT:KIND:MODEL[:SOFTWARE] …` (software as
//! `product@version+product@version`). Lines of `--- events`: `ID EPOCH:SEQ AT_S RECEIVED_S
//! SLOT CODE SEVERITY [COUNTER=VALUE …]`, or `resolve ID RULE`. Lines of `--- operating`:
//! `ID NAME=VALUE …`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fleetcare_diag::rules::event_rank;
use fleetcare_diag::{DeviceCtx, Engine, Event, EventRef, RuleSet, UnitCtx, abnormal_units};

fn devices(text: &str) -> BTreeMap<String, DeviceCtx> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut w = line.split_whitespace();
        let id = w.next().expect("id").to_owned();
        let model = w.next().expect("model").to_owned();
        let units = w
            .map(|u| {
                let p: Vec<&str> = u.split(':').collect();
                UnitCtx {
                    slot: p[0].into(),
                    kind: p[1].into(),
                    model: p[2].into(),
                    software: p
                        .get(3)
                        .map(|s| s.replace('@', " ").replace('+', ", "))
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.insert(id, DeviceCtx { model, units });
    }
    out
}

fn counters(words: &mut dyn Iterator<Item = &str>) -> BTreeMap<String, f64> {
    words
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=VALUE");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

fn run(s: &BTreeMap<String, String>) -> String {
    let rules = match RuleSet::parse(s.get("rules").map_or("", String::as_str)) {
        Ok(r) => Arc::new(r),
        Err(e) => return format!("refused:\n{}", e.problems.join("\n")),
    };
    let devices = devices(s.get("devices").map_or("", String::as_str));
    let mut out = Vec::new();
    if let Some(op) = s.get("operating") {
        for line in op.lines().filter(|l| !l.trim().is_empty()) {
            let mut w = line.split_whitespace();
            let id = w.next().expect("id");
            let values = counters(&mut w);
            for m in abnormal_units(&rules, &devices[id], &values) {
                out.push(format!("abnormal {id} {} {} {}", m.slot, m.rule, m.reason));
            }
        }
    }
    let mut engine = Engine::new(rules.clone());
    for line in s
        .get("events")
        .map_or("", String::as_str)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut w = line.split_whitespace();
        let first = w.next().expect("a device");
        if first == "resolve" {
            let (id, rule) = (w.next().expect("id"), w.next().expect("rule"));
            engine.resolved(id, rule);
            out.push(format!("resolved {rule} {id}"));
            continue;
        }
        let (epoch, seq) = w
            .next()
            .expect("EPOCH:SEQ")
            .split_once(':')
            .expect("EPOCH:SEQ");
        let at: i64 = w.next().expect("at").parse().expect("seconds");
        let received: i64 = w.next().expect("received").parse().expect("seconds");
        let slot = w.next().expect("slot");
        let code = w.next().expect("code");
        let severity = event_rank(w.next().expect("severity")).expect("a severity");
        let c = counters(&mut w);
        let ev = Event {
            r: EventRef {
                boot_epoch: epoch.parse().expect("epoch"),
                seq: seq.parse().expect("seq"),
            },
            at_ms: at * 1000,
            received_ms: received * 1000,
            slot,
            code,
            severity,
            counters: &c,
        };
        for f in engine.ingest(first, &devices[first], &[ev]) {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|r| format!("{}:{}", r.boot_epoch, r.seq))
                .collect();
            out.push(format!(
                "{} {} {} evidence={}{}",
                if f.opens { "open" } else { "recur" },
                rules.rules[f.rule].id,
                f.device,
                ev.join(","),
                f.note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
        }
    }
    out.join("\n")
}

#[test]
fn rule_cases() {
    fleetcare_testkit::check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
        run,
    );
}

#[test]
fn the_sample_rules_parse() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules.toml"),
    )
    .expect("examples/rules.toml");
    let rules = RuleSet::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.rules.len() >= 4, "the sample shows every condition");
    assert!(!rules.abnormal.is_empty());
}
