//! One function per fuzz target, each taking arbitrary bytes through a parser of untrusted
//! input and on into what consumes its result. None may panic, loop or allocate without
//! bound, whatever the bytes. Each says whether its main parser accepted the input (the
//! regression test checks that every seed is accepted, so seeds reach past the parser). The names are the targets' names in
//! `fuzz/fuzz_targets/`, and the directories of seeds and regressions under `fuzz/`.
//!
//! Where the bytes come from, and who sends them:
//! - `device_report`, `device_errors`, `device_misc`: device request bodies, to the center.
//! - `ddi_bodies`: a hawkBit client's feedback and `configData` bodies, to the center.
//! - `center_messages`: commands, poll answers, settings and jobs, from the center to the agent.
//! - `signed`: envelopes, key lists, release manifests and roots, verified by the agent.
//! - `ipp_answer`: a printer's Get-Printer-Attributes answer, to the LAN proxy.
//! - `snmp_response`: a printer's SNMP response, to the LAN proxy.
//! - `rollout_filter`, `version`: operator filters and versions found in device reports.
//! - `catalog`, `rules`: catalog and diagnosis rule files loaded by operators.
//! - `local_api`: request lines from local programs to the agent's Unix socket.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fleetcare_server::extract::parse_json;

/// A target: bytes in, whether its main parser accepted them.
pub type Target = fn(&[u8]) -> bool;

/// The targets, by name (what the regression test walks).
pub const TARGETS: &[(&str, Target)] = &[
    ("device_report", device_report),
    ("device_errors", device_errors),
    ("device_misc", device_misc),
    ("ddi_bodies", ddi_bodies),
    ("center_messages", center_messages),
    ("signed", signed),
    ("ipp_answer", ipp_answer),
    ("snmp_response", snmp_response),
    ("rollout_filter", rollout_filter),
    ("version", version),
    ("catalog", catalog),
    ("rules", rules),
    ("local_api", local_api),
];

/// A structure report as the center takes it: parsed, validated, fingerprinted, and diffed
/// against nothing (every unit new).
pub fn device_report(data: &[u8]) -> bool {
    let Ok(r) = parse_json::<fleetcare_wire::device::StructureReport>(data) else {
        return false;
    };
    let Ok((_, s)) =
        fleetcare_core::structure::validate_report(&r.device_id, &r.model, r.units, &r.operating)
    else {
        return false;
    };
    let _ = s.fingerprint();
    for c in fleetcare_core::structure::diff(None, &s) {
        let _ = fleetcare_core::structure::describe(&c);
    }
    true
}

/// An error-log batch as the center takes it.
pub fn device_errors(data: &[u8]) -> bool {
    parse_json::<fleetcare_wire::errors::ErrorBatch>(data)
        .is_ok_and(|b| fleetcare_server::diag::logs::check(&b).is_empty())
}

/// The device's other bodies: enrollment and job status.
pub fn device_misc(data: &[u8]) -> bool {
    let enroll = parse_json::<fleetcare_wire::device::EnrollRequest>(data).is_ok_and(|e| {
        fleetcare_core::structure::validate_identity(&e.device_id, &e.model).is_ok()
    });
    let status = parse_json::<fleetcare_wire::delivery::JobStatus>(data).is_ok();
    enroll || status
}

/// A hawkBit client's bodies as the DDI adapter takes them: feedback into a job's next state,
/// `configData` merged into attributes and read as a structure, validated as a report.
pub fn ddi_bodies(data: &[u8]) -> bool {
    let feedback = fleetcare_server::ddi::parse_feedback(data).is_ok_and(|(f, _)| {
        let _ = fleetcare_server::ddi::detail_text(&f);
        true
    });
    let old: BTreeMap<String, String> = [("board".to_owned(), "rev 1.0".to_owned())].into();
    let config = match fleetcare_server::ddi::parse_config(data, &old) {
        Ok((_, Some(f))) => fleetcare_core::structure::validate_report(
            "DDI-0001",
            f.model.as_deref().unwrap_or("acme-printer-p500"),
            f.units,
            &f.operating,
        )
        .is_ok(),
        Ok((_, None)) => true,
        Err(_) => false,
    };
    feedback || config
}

/// What the agent reads from the center.
pub fn center_messages(data: &[u8]) -> bool {
    use fleetcare_wire::{delivery, device, errors};
    [
        serde_json::from_slice::<device::Command>(data).is_ok(),
        serde_json::from_slice::<device::PollResponse>(data).is_ok(),
        serde_json::from_slice::<delivery::DeviceJobs>(data).is_ok(),
        serde_json::from_slice::<device::ReportAck>(data).is_ok(),
        serde_json::from_slice::<errors::ErrorAck>(data).is_ok(),
    ]
    .contains(&true)
}

/// Signed documents: the envelope (verified against a fixed root: the seeds' key list is
/// signed by it, so verification goes on to the payload), and each payload kind alone.
pub fn signed(data: &[u8]) -> bool {
    use fleetcare_trust::{KeyList, KeyPair, ReleaseManifest, Root};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let mut accepted = false;
    if let Ok(env) = fleetcare_trust::Envelope::parse(data) {
        let _ = env.unverified_payload();
        let key = KeyPair::from_seed(&[7; 32]);
        let root = Root {
            threshold: 1,
            keys: vec![key.public().clone()],
        };
        let mut trust = fleetcare_trust::Trust::new(root);
        let keys = trust.update_keys(&env, now).is_ok();
        let release = trust.verify_release(&env, now).is_ok();
        accepted = keys || release || env.unverified_payload().is_ok();
    }
    let root = Root::from_json(data).is_ok();
    let list = KeyList::from_json(data).is_ok();
    let manifest = ReleaseManifest::from_json(data).is_ok_and(|m| {
        let _ = m.targets_unit("ctl-x2", "B");
        m.validate().is_ok()
    });
    accepted || root || list || manifest
}

/// A printer's IPP answer, into facts, a device snapshot and events.
pub fn ipp_answer(data: &[u8]) -> bool {
    use fleetcare_agent::proxy::facts;
    let Ok(f) = fleetcare_agent::proxy::ipp::parse_answer("ipp://127.0.0.1/ipp/print", data) else {
        return false;
    };
    match facts::snapshot(&f, &facts::Naming::default()) {
        Ok(snap) => {
            let _ = facts::events(&f, &snap, &facts::Seen::default());
            true
        }
        Err(_) => false,
    }
}

/// A printer's SNMP response, its values read as the Printer MIB tables.
pub fn snmp_response(data: &[u8]) -> bool {
    use fleetcare_agent::proxy::snmp;
    let Ok(pdu) = snmp2::Pdu::from_bytes(data) else {
        return false;
    };
    let rows: Vec<(Vec<u64>, snmp::Val)> = pdu
        .varbinds
        .take(1000)
        .map(|(name, v)| {
            let arcs: Vec<u64> = name.iter().map(|i| i.collect()).unwrap_or_default();
            (arcs, snmp::val(&v))
        })
        .collect();
    let _ = snmp::facts_from(&rows, &rows, &rows, &rows, &rows);
    !rows.is_empty()
}

/// A rollout filter, parsed and matched against a device.
pub fn rollout_filter(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match fleetcare_rollout::query::Filter::parse(text) {
        Ok(f) => {
            let _ = f.matches(&Sample);
            true
        }
        Err(_) => false,
    }
}

/// Versions and ranges, and their comparisons: the first line against the second.
pub fn version(data: &[u8]) -> bool {
    use fleetcare_compat::version::{Version, describe_range, parse_range};
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, "1.0"));
    let mut accepted = false;
    if let (Ok(x), Ok(y)) = (Version::parse(a), Version::parse(b)) {
        let _ = x.cmp(&y);
        accepted = true;
    }
    if let Ok(r) = parse_range(a) {
        let _ = describe_range(&r);
        if let Ok(v) = Version::parse(b) {
            let _ = r.contains(&v);
            accepted = true;
        }
    }
    accepted
}

/// A catalog file.
pub fn catalog(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| {
        fleetcare_compat::catalog::Catalog::parse(text, &fleetcare_compat::vocab::Vocab::new())
            .is_ok()
    })
}

/// A diagnosis rules file.
pub fn rules(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| fleetcare_diag::rules::RuleSet::parse(text).is_ok())
}

/// A request line to the agent's local API, against an in-memory journal (one per input).
pub fn local_api(data: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(journal) = fleetcare_agent::journal::Journal::memory(
        fleetcare_agent::journal::JournalLimits::default(),
    ) else {
        return false;
    };
    fleetcare_agent::local_api::handle(&journal, line)["ok"] == true
}

/// A device for filters to match.
struct Sample;

impl fleetcare_rollout::query::Subject for Sample {
    fn id(&self) -> &str {
        "MFP-0001"
    }
    fn model(&self) -> &str {
        "acme-mfp-9000"
    }
    fn site(&self) -> Option<&str> {
        Some("berlin")
    }
    fn has_tag(&self, tag: &str) -> bool {
        tag == "pilot"
    }
    fn any_unit(&self, name: &str, f: &mut dyn FnMut(&str, &str, &str) -> bool) -> bool {
        let units: BTreeMap<&str, (&str, &str, &str)> = [
            ("controller", ("controller", "ctl-x2", "B")),
            ("fuser", ("fuser", "fus-7", "A")),
        ]
        .into();
        units
            .iter()
            .any(|(slot, (kind, model, hw))| (*slot == name || *kind == name) && f(kind, model, hw))
    }
    fn any_software(&self, product: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        product == "ctl-firmware" && f("5.2.1")
    }
}
