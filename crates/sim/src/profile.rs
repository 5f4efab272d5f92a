//! The simulation profile (TOML; commented sample: `examples/sim.toml`): how the fleet is
//! made and how it behaves. Every key has a default, so an empty profile is a valid one; a
//! profile with problems is refused with every problem listed.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The sample profile, the default of `fleetcare sim`.
pub const SAMPLE: &str = include_str!("../../../examples/sim.toml");

/// Largest profile accepted.
pub const MAX_PROFILE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the simulation profile was refused:\n  {}", .problems.join("\n  "))]
pub struct ProfileError {
    pub problems: Vec<String>,
}

/// An error process: a code a unit raises at a rate per printed page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorProcess {
    pub code: String,
    /// The units of this kind raise it (each of them, by its own pages).
    pub unit_kind: String,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// One occurrence in this many printed pages, on average.
    pub per_pages: f64,
    #[serde(default)]
    pub detail: Option<String>,
    /// Also counts as a paper jam (`jams_total`).
    #[serde(default)]
    pub jam: bool,
}

fn default_severity() -> String {
    "error".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Simulated seconds per real second (printing, errors, swaps).
    pub speed: f64,
    /// Mean pages a device prints per simulated hour; each device gets its own factor
    /// between a quarter and four times that.
    pub pages_per_hour: f64,
    /// The agents' own periodic report interval, real seconds (the center may set another).
    pub report_interval_s: u64,
    /// The agents' periodic error-log upload, real seconds.
    pub errors_interval_s: u64,
    /// `auto`, `websocket` or `poll`.
    pub transport: String,
    /// How long one long poll waits at the center (poll transport).
    pub poll_wait_s: u64,
    /// Devices started per second.
    pub connect_per_s: u64,
    /// Unit replacements per device per simulated day (a new serial: a `change` report).
    pub swaps_per_device_day: f64,
    /// Share of devices whose installs fail their health check (the agent reverts:
    /// `rolled_back`); the same devices every time.
    pub install_failure: f64,
    /// Share of installs that fail while staging (`failed`, nothing switched).
    pub stage_failure: f64,
    /// Share of a device's looks at a job that find it busy (it says "busy, later").
    pub busy_share: f64,
    /// Include the sample fleet's incompatible and faulty devices (a few in every hundred).
    pub scenarios: bool,
    /// The model mix: sample inventory (device model) → weight.
    pub models: BTreeMap<String, u32>,
    #[serde(rename = "error")]
    pub errors: Vec<ErrorProcess>,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            speed: 60.0,
            pages_per_hour: 120.0,
            report_interval_s: 3600,
            errors_interval_s: 3600,
            transport: "auto".into(),
            poll_wait_s: 25,
            connect_per_s: 2000,
            swaps_per_device_day: 0.01,
            install_failure: 0.0,
            stage_failure: 0.0,
            busy_share: 0.0,
            scenarios: true,
            models: BTreeMap::new(),
            errors: Vec::new(),
        }
    }
}

const SEVERITIES: &[&str] = &["debug", "info", "warning", "error", "critical"];

impl Profile {
    /// Parse and check a profile; every problem at once.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        if text.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError {
                problems: vec![format!(
                    "the profile is {} bytes; at most {MAX_PROFILE_BYTES}",
                    text.len()
                )],
            });
        }
        let p: Profile = toml::from_str(text).map_err(|e| ProfileError {
            problems: vec![e.to_string()],
        })?;
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        check(
            p.speed > 0.0 && p.speed <= 100_000.0,
            format!("`speed`: {} is not within (0, 100000]", p.speed),
        );
        check(
            (0.0..=1_000_000.0).contains(&p.pages_per_hour),
            format!(
                "`pages_per_hour`: {} is not within [0, 1000000]",
                p.pages_per_hour
            ),
        );
        check(
            (1..=7 * 86_400).contains(&p.report_interval_s),
            format!(
                "`report_interval_s`: {} is not within 1 to 604800",
                p.report_interval_s
            ),
        );
        check(
            (1..=7 * 86_400).contains(&p.errors_interval_s),
            format!(
                "`errors_interval_s`: {} is not within 1 to 604800",
                p.errors_interval_s
            ),
        );
        check(
            ["auto", "websocket", "poll"].contains(&p.transport.as_str()),
            format!(
                "`transport`: {:?} is not auto, websocket or poll",
                p.transport
            ),
        );
        check(
            (1..=60).contains(&p.poll_wait_s),
            format!("`poll_wait_s`: {} is not within 1 to 60", p.poll_wait_s),
        );
        check(
            (1..=1_000_000).contains(&p.connect_per_s),
            format!(
                "`connect_per_s`: {} is not within 1 to 1000000",
                p.connect_per_s
            ),
        );
        check(
            (0.0..=1000.0).contains(&p.swaps_per_device_day),
            format!(
                "`swaps_per_device_day`: {} is not within [0, 1000]",
                p.swaps_per_device_day
            ),
        );
        for (key, v) in [
            ("install_failure", p.install_failure),
            ("stage_failure", p.stage_failure),
            ("busy_share", p.busy_share),
        ] {
            check(
                (0.0..=1.0).contains(&v),
                format!("`{key}`: {v} is not a share within [0, 1]"),
            );
        }
        let known: Vec<String> = crate::fleet::template_models();
        for (model, weight) in &p.models {
            check(
                known.contains(model),
                format!(
                    "`models`: {model:?} is not a sample model (one of {})",
                    known.join(", ")
                ),
            );
            check(
                *weight > 0,
                format!("`models.{model}`: the weight must be ≥ 1"),
            );
        }
        let kinds = crate::fleet::template_unit_kinds();
        for (i, e) in p.errors.iter().enumerate() {
            let at = format!("[[error]] #{} ({})", i + 1, e.code);
            check(
                !e.code.is_empty() && e.code.len() <= 64,
                format!("{at}: `code` must be 1 to 64 characters"),
            );
            check(
                SEVERITIES.contains(&e.severity.as_str()),
                format!(
                    "{at}: `severity` {:?} is not one of {}",
                    e.severity,
                    SEVERITIES.join(", ")
                ),
            );
            check(
                e.per_pages >= 1.0 && e.per_pages.is_finite(),
                format!("{at}: `per_pages` must be at least 1"),
            );
            check(
                kinds.contains(&e.unit_kind),
                format!(
                    "{at}: no sample unit is of kind {:?} (kinds: {})",
                    e.unit_kind,
                    kinds.join(", ")
                ),
            );
            check(
                e.detail.as_ref().is_none_or(|d| d.chars().count() <= 4096),
                format!("{at}: `detail` is longer than 4096 characters"),
            );
        }
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(ProfileError { problems })
        }
    }

    /// The model weights, defaulting to one of each sample model.
    pub fn weights(&self) -> Vec<(usize, u32)> {
        let models = crate::fleet::template_models();
        if self.models.is_empty() {
            return (0..models.len()).map(|i| (i, 1)).collect();
        }
        models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| self.models.get(m).map(|w| (i, *w)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_profile_parses() {
        let p = Profile::parse(SAMPLE).expect("examples/sim.toml");
        assert!(!p.errors.is_empty());
        assert!(p.models.len() >= 2);
    }

    #[test]
    fn an_empty_profile_is_the_defaults() {
        assert_eq!(Profile::parse("").expect("valid"), Profile::default());
    }

    #[test]
    fn every_problem_at_once() {
        let err = Profile::parse(
            "speed = 0\ntransport = \"pigeon\"\ninstall_failure = 2.0\n\
             [models]\n\"acme-mfp-1\" = 1\n\
             [[error]]\ncode = \"\"\nunit_kind = \"toaster\"\nseverity = \"bad\"\nper_pages = 0\n",
        )
        .expect_err("refused");
        assert_eq!(err.problems.len(), 8, "{err}");
    }
}
