//! Devices with hawkBit clients: Eclipse hawkBit's Direct Device Integration API (DDI v1)
//! translated into what the center already does (see ARCHITECTURE.md, "Devices with hawkBit
//! clients"). This file holds the decisions, free of IO: attributes into a structure, feedback
//! into job states, the links' shapes; `api.rs` the poll, actions, attributes and
//! downloads; `actions.rs` feedback and cancellations; `device.rs` who is asking; `admin.rs`
//! targets and gateway tokens for operators.

pub mod actions;
pub mod admin;
pub mod api;
pub mod device;

use std::collections::BTreeMap;

use fleetcare_wire::ddi::{ConfigData, Feedback};
use fleetcare_wire::{Software, Unit};

/// Attributes a DDI device may keep, and their sizes (hawkBit's key limit; a longer value
/// than hawkBit's 128 characters, since a version list may be long).
pub const MAX_ATTRIBUTES: usize = 256;
pub const MAX_ATTRIBUTE_KEY: usize = 128;
pub const MAX_ATTRIBUTE_VALUE: usize = 512;
/// Characters of a feedback's details kept with the job's event.
pub const MAX_DETAIL: usize = 1000;
/// Steps of a job a software module id can name (`job * 64 + step`); a device has at most
/// `MAX_UNITS` (64) units, so a job has at most 64 steps.
pub const STEPS_PER_MODULE: u64 = 64;
/// Longest sleep a poll answer says (`HH:MM:SS`, hours below 24 for clients that parse it
/// with `strptime("%H:%M:%S")`).
pub const MAX_SLEEP_S: u64 = 24 * 3600 - 1;

/// `HH:MM:SS` for a poll's sleep.
pub fn sleep_text(seconds: u64) -> String {
    let s = seconds.clamp(1, MAX_SLEEP_S);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The software module id of a job's step, and back.
pub fn module_id(job: u64, step: usize) -> u64 {
    job.saturating_mul(STEPS_PER_MODULE) + step as u64
}

pub fn module_parts(module: u64) -> (u64, usize) {
    (
        module / STEPS_PER_MODULE,
        (module % STEPS_PER_MODULE) as usize,
    )
}

/// The attributes after a `configData` request, or why it is refused (nothing changes then).
pub fn apply_config(
    old: &BTreeMap<String, String>,
    c: &ConfigData,
) -> Result<BTreeMap<String, String>, String> {
    let mut problems = Vec::new();
    for (k, v) in &c.data {
        if k.is_empty() || k.chars().count() > MAX_ATTRIBUTE_KEY {
            problems.push(format!(
                "attribute {:?}: a key has 1 to {MAX_ATTRIBUTE_KEY} characters",
                k.chars().take(40).collect::<String>()
            ));
        }
        if k.chars().any(char::is_control) || v.chars().any(char::is_control) {
            problems.push(format!("attribute {k:?}: no control characters"));
        }
        if v.chars().count() > MAX_ATTRIBUTE_VALUE {
            problems.push(format!(
                "attribute {k:?}: a value has at most {MAX_ATTRIBUTE_VALUE} characters"
            ));
        }
    }
    let new = match c.mode.as_deref().unwrap_or("merge") {
        "merge" => {
            let mut m = old.clone();
            m.extend(c.data.clone());
            m
        }
        "replace" => c.data.clone(),
        "remove" => {
            let mut m = old.clone();
            for k in c.data.keys() {
                m.remove(k);
            }
            m
        }
        other => {
            problems.push(format!("mode {other:?}: merge, replace or remove"));
            BTreeMap::new()
        }
    };
    if new.len() > MAX_ATTRIBUTES {
        problems.push(format!(
            "{} attributes: a device keeps at most {MAX_ATTRIBUTES}",
            new.len()
        ));
    }
    if problems.is_empty() {
        Ok(new)
    } else {
        Err(problems.join("; "))
    }
}

/// What attributes in the flattened form say of the device: its model (when named), its
/// units and its operating info. `None` when they name no unit (they are only kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Flattened {
    pub model: Option<String>,
    pub units: Vec<Unit>,
    pub operating: BTreeMap<String, f64>,
}

/// Read the flattened form: `model`, `maker`, `unit.<slot>.kind | model | serial |
/// hw_revision | in_service`, `unit.<slot>.software.<product>` = version,
/// `unit.<slot>.software.<product>.maker`, `operating.<name>` = number. A product's maker is
/// its own attribute, else the device's `maker`, else what `maker_of(product, version)` says.
pub fn flattened(
    attrs: &BTreeMap<String, String>,
    maker_of: &BTreeMap<(String, String), String>,
) -> Result<Option<Flattened>, String> {
    #[derive(Default)]
    struct U {
        kind: Option<String>,
        model: Option<String>,
        serial: Option<String>,
        hw: Option<String>,
        in_service: Option<bool>,
        software: BTreeMap<String, (Option<String>, Option<String>)>,
    }
    let mut units: BTreeMap<String, U> = BTreeMap::new();
    let mut operating = BTreeMap::new();
    let mut problems = Vec::new();
    for (k, v) in attrs {
        if let Some(name) = k.strip_prefix("operating.") {
            match v.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    operating.insert(name.to_owned(), x);
                }
                _ => problems.push(format!("{k}: a number")),
            }
            continue;
        }
        let Some(rest) = k.strip_prefix("unit.") else {
            continue;
        };
        let Some((slot, field)) = rest.split_once('.') else {
            problems.push(format!("{k}: unit.<slot>.<field>"));
            continue;
        };
        let u = units.entry(slot.to_owned()).or_default();
        match field {
            "kind" => u.kind = Some(v.clone()),
            "model" => u.model = Some(v.clone()),
            "serial" => u.serial = Some(v.clone()),
            "hw_revision" => u.hw = Some(v.clone()),
            "in_service" => match v.as_str() {
                "true" => u.in_service = Some(true),
                "false" => u.in_service = Some(false),
                _ => problems.push(format!("{k}: true or false")),
            },
            f => match f.strip_prefix("software.") {
                Some(p) => match p.strip_suffix(".maker") {
                    Some(product) => {
                        u.software.entry(product.to_owned()).or_default().1 = Some(v.clone())
                    }
                    None => u.software.entry(p.to_owned()).or_default().0 = Some(v.clone()),
                },
                None => problems.push(format!(
                    "{k}: a unit's field is kind, model, serial, hw_revision, in_service or \
                     software.<product>"
                )),
            },
        }
    }
    if units.is_empty() {
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems.join("; "))
        };
    }
    let device_maker = attrs.get("maker");
    let mut out = Vec::new();
    for (slot, u) in units {
        let mut software = Vec::new();
        for (product, (version, maker)) in u.software {
            let Some(version) = version else {
                problems.push(format!(
                    "unit.{slot}.software.{product}: the version is missing"
                ));
                continue;
            };
            let maker = maker
                .or_else(|| device_maker.cloned())
                .or_else(|| maker_of.get(&(product.clone(), version.clone())).cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            software.push(Software {
                product,
                maker,
                version,
                active: true,
            });
        }
        let (Some(model), Some(serial)) = (u.model, u.serial) else {
            problems.push(format!(
                "unit.{slot}: unit.{slot}.model and unit.{slot}.serial are both needed"
            ));
            continue;
        };
        out.push(Unit {
            kind: u.kind.unwrap_or_else(|| slot.clone()),
            slot,
            model,
            serial,
            hw_revision: u.hw.unwrap_or_default(),
            software,
            in_service: u.in_service.unwrap_or(true),
        });
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Some(Flattened {
        model: attrs.get("model").cloned(),
        units: out,
        operating,
    }))
}

/// The (product, version) pairs whose maker `flattened` may need to look up.
pub fn unnamed_makers(attrs: &BTreeMap<String, String>) -> Vec<(String, String)> {
    if attrs.contains_key("maker") {
        return Vec::new();
    }
    attrs
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("unit.")?;
            let (_, field) = rest.split_once('.')?;
            let product = field.strip_prefix("software.")?;
            if product.ends_with(".maker") {
                return None;
            }
            let slot_prefix = &k[..k.len() - product.len()];
            (!attrs.contains_key(&format!("{slot_prefix}{product}.maker")))
                .then(|| (product.to_owned(), v.clone()))
        })
        .collect()
}

/// What a feedback does to its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Move a running job forward to this state (never back).
    Progress(&'static str),
    /// The device says it installed: the job awaits the report that shows it.
    Installed,
    /// The job failed, with a reason code.
    Failed(&'static str),
    /// Nothing changes (kept as a note).
    Note,
}

/// The effect of a deployment's feedback, or why it is refused.
pub fn effect(f: &Feedback) -> Result<Effect, String> {
    let s = &f.status;
    let all_chunks = s.result.progress.is_some_and(|p| p.of > 0 && p.cnt >= p.of);
    match (s.execution.as_str(), s.result.finished.as_str()) {
        (_, f) if !matches!(f, "success" | "failure" | "none") => Err(format!(
            "status.result.finished {f:?}: success, failure or none"
        )),
        ("closed", "success") => Ok(Effect::Installed),
        ("closed", "failure") => Ok(Effect::Failed(failure_reason(&s.details))),
        ("closed", _) => Err("a closed action is finished with success or failure".into()),
        ("proceeding" | "resumed" | "download", "failure") => {
            Ok(Effect::Failed(failure_reason(&s.details)))
        }
        ("proceeding" | "resumed", _) if all_chunks => Ok(Effect::Progress("installing")),
        ("proceeding" | "resumed" | "download", _) => Ok(Effect::Progress("downloading")),
        ("downloaded", _) => Ok(Effect::Progress("downloaded")),
        ("scheduled", _) => Ok(Effect::Note),
        ("canceled", _) => Ok(Effect::Failed("cancelled")),
        ("rejected", _) => Ok(Effect::Failed("rejected")),
        (e, _) => Err(format!(
            "status.execution {e:?}: proceeding, closed, canceled, rejected, scheduled, \
             resumed, download or downloaded"
        )),
    }
}

/// The running states a job moves to `to` from: those before it.
pub fn states_before(to: &str) -> &'static [&'static str] {
    match to {
        "downloading" => &["queued"],
        "downloaded" => &["queued", "downloading"],
        "installing" => &["queued", "downloading", "downloaded", "verifying"],
        _ => &[],
    }
}

/// The uniform reason code a client's words of failure come closest to.
pub fn failure_reason(details: &[String]) -> &'static str {
    let text = details.join(" ").to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["hardware", "hwrevision", "not compatible"]) {
        "incompatible_hardware"
    } else if has(&["signature", "signed", "certificate"]) {
        "signature"
    } else if has(&["checksum", "hash", "sha1", "sha256", "corrupt"]) {
        "integrity"
    } else if has(&["no space", "space left", "enospc"]) {
        "no_space"
    } else if has(&["download", "channel", "connection"]) {
        "download"
    } else {
        "install"
    }
}

/// A feedback's details as one line a job event keeps.
pub fn detail_text(f: &Feedback) -> Option<String> {
    let joined = f
        .status
        .details
        .iter()
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    (!joined.is_empty()).then(|| {
        joined
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DETAIL)
            .collect()
    })
}

/// Parse a feedback body (what the fuzz target feeds).
pub fn parse_feedback(body: &[u8]) -> Result<(Feedback, Effect), String> {
    let f: Feedback = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let e = effect(&f)?;
    Ok((f, e))
}

/// Parse a `configData` body and apply it to `old`, then read the flattened form (what the
/// fuzz target feeds).
pub fn parse_config(
    body: &[u8],
    old: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Option<Flattened>), String> {
    let c: ConfigData = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let new = apply_config(old, &c)?;
    let f = flattened(&new, &BTreeMap::new())?;
    Ok((new, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetcare_wire::ddi::{FeedbackResult, FeedbackStatus, Progress};

    fn fb(
        execution: &str,
        finished: &str,
        progress: Option<(u64, u64)>,
        details: &[&str],
    ) -> Feedback {
        Feedback {
            status: FeedbackStatus {
                execution: execution.into(),
                result: FeedbackResult {
                    finished: finished.into(),
                    progress: progress.map(|(cnt, of)| Progress { cnt, of }),
                },
                details: details.iter().map(|d| (*d).to_owned()).collect(),
            },
        }
    }

    #[test]
    fn sleep_is_hh_mm_ss_within_a_day() {
        assert_eq!(sleep_text(1), "00:00:01");
        assert_eq!(sleep_text(300), "00:05:00");
        assert_eq!(sleep_text(3661), "01:01:01");
        assert_eq!(sleep_text(10 * 86_400), "23:59:59");
        assert_eq!(sleep_text(0), "00:00:01");
    }

    #[test]
    fn module_ids_name_a_job_and_a_step() {
        assert_eq!(module_parts(module_id(17, 3)), (17, 3));
        assert_eq!(module_parts(module_id(1, 63)), (1, 63));
        assert_ne!(module_id(1, 0), module_id(0, 63));
    }

    #[test]
    fn feedback_maps_to_job_states() {
        let e = |f: Feedback| effect(&f).unwrap();
        assert_eq!(
            e(fb("proceeding", "none", Some((0, 1)), &[])),
            Effect::Progress("downloading")
        );
        assert_eq!(
            e(fb("proceeding", "none", Some((1, 1)), &[])),
            Effect::Progress("installing")
        );
        assert_eq!(
            e(fb("proceeding", "none", Some((3, 0)), &[])),
            Effect::Progress("downloading")
        );
        assert_eq!(
            e(fb("downloaded", "none", None, &[])),
            Effect::Progress("downloaded")
        );
        assert_eq!(e(fb("closed", "success", None, &[])), Effect::Installed);
        assert_eq!(
            e(fb(
                "closed",
                "failure",
                None,
                &["ERROR : SW not compatible with hardware"]
            )),
            Effect::Failed("incompatible_hardware")
        );
        assert_eq!(
            e(fb(
                "closed",
                "failure",
                None,
                &["Signature verification failed"]
            )),
            Effect::Failed("signature")
        );
        assert_eq!(
            e(fb("closed", "failure", None, &["boom"])),
            Effect::Failed("install")
        );
        assert_eq!(
            e(fb("canceled", "none", None, &[])),
            Effect::Failed("cancelled")
        );
        assert_eq!(
            e(fb("rejected", "none", None, &[])),
            Effect::Failed("rejected")
        );
        assert_eq!(e(fb("scheduled", "none", None, &[])), Effect::Note);
        assert!(effect(&fb("closed", "none", None, &[])).is_err());
        assert!(effect(&fb("exploded", "none", None, &[])).is_err());
        assert!(effect(&fb("closed", "maybe", None, &[])).is_err());
    }

    #[test]
    fn config_modes_merge_replace_remove_within_limits() {
        let old: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]
        .into();
        let c = |mode: Option<&str>, kv: &[(&str, &str)]| ConfigData {
            mode: mode.map(str::to_owned),
            data: kv
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let merged = apply_config(&old, &c(None, &[("b", "3"), ("c", "4")])).unwrap();
        assert_eq!(merged.len(), 3);
        assert_eq!(merged["b"], "3");
        let replaced = apply_config(&old, &c(Some("replace"), &[("c", "4")])).unwrap();
        assert_eq!(replaced.keys().collect::<Vec<_>>(), ["c"]);
        let removed = apply_config(&old, &c(Some("remove"), &[("a", "")])).unwrap();
        assert_eq!(removed.keys().collect::<Vec<_>>(), ["b"]);
        assert!(apply_config(&old, &c(Some("append"), &[])).is_err());
        let long = "x".repeat(MAX_ATTRIBUTE_VALUE + 1);
        assert!(apply_config(&old, &c(None, &[("k", &long)])).is_err());
        let many: Vec<(String, String)> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        let many = ConfigData {
            mode: None,
            data: many.into_iter().collect(),
        };
        assert!(apply_config(&BTreeMap::new(), &many).is_err());
    }

    #[test]
    fn the_flattened_form_becomes_units() {
        let attrs: BTreeMap<String, String> = [
            ("model", "acme-printer-p500"),
            ("unit.controller.kind", "controller"),
            ("unit.controller.model", "ctl-lite"),
            ("unit.controller.serial", "CTL-1"),
            ("unit.controller.hw_revision", "C"),
            ("unit.controller.software.ctl-lite-firmware", "1.9.12"),
            ("unit.fuser.model", "fus-2"),
            ("unit.fuser.serial", "F-1"),
            ("operating.pages_total", "1200"),
            ("board", "kept only"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let makers: BTreeMap<(String, String), String> = [(
            ("ctl-lite-firmware".to_owned(), "1.9.12".to_owned()),
            "acme".to_owned(),
        )]
        .into();
        assert_eq!(
            unnamed_makers(&attrs),
            vec![("ctl-lite-firmware".to_owned(), "1.9.12".to_owned())]
        );
        let f = flattened(&attrs, &makers).unwrap().unwrap();
        assert_eq!(f.model.as_deref(), Some("acme-printer-p500"));
        assert_eq!(f.units.len(), 2);
        let c = &f.units[0];
        assert_eq!(
            (c.slot.as_str(), c.kind.as_str(), c.hw_revision.as_str()),
            ("controller", "controller", "C")
        );
        assert_eq!(c.software[0].maker, "acme");
        assert_eq!(f.units[1].kind, "fuser");
        assert_eq!(f.operating["pages_total"], 1200.0);
        let only_kept: BTreeMap<String, String> = [("board".to_owned(), "x".to_owned())].into();
        assert_eq!(flattened(&only_kept, &BTreeMap::new()).unwrap(), None);
        let no_serial: BTreeMap<String, String> =
            [("unit.c.model".to_owned(), "m".to_owned())].into();
        assert!(
            flattened(&no_serial, &BTreeMap::new())
                .unwrap_err()
                .contains("serial")
        );
        let bad_field: BTreeMap<String, String> =
            [("unit.c.colour".to_owned(), "red".to_owned())].into();
        assert!(flattened(&bad_field, &BTreeMap::new()).is_err());
    }
}
