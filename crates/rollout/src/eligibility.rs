//! Whether a device is in a proper state for an install now, and if not, why.

use serde::{Deserialize, Serialize};

/// Trouble severities, least severe first (as troubles have them).
pub const SEVERITIES: &[&str] = &["info", "minor", "major", "critical"];

/// What a rollout asks of a device before it installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// Seen (connected, or a report) within this long.
    pub online_within_ms: i64,
    /// A live trouble at or above this severity keeps the device out (`None`: troubles do
    /// not).
    pub trouble_severity: Option<String>,
}

impl Default for Requirements {
    fn default() -> Requirements {
        Requirements {
            online_within_ms: 3_600_000,
            trouble_severity: Some("major".into()),
        }
    }
}

/// What the center knows of the device now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub connected: bool,
    pub last_seen_ms: Option<i64>,
    /// The most severe live trouble.
    pub worst_trouble: Option<String>,
    pub abnormal_units: Vec<String>,
    /// Another job of the device's that has not ended.
    pub open_job: Option<u64>,
    /// The device's site lets installs start now.
    pub window_open: bool,
    /// Why the device cannot install software at all (a printer behind the LAN proxy, an
    /// agent without a root of trust).
    pub install_blocked: Option<String>,
}

fn rank(s: &str) -> Option<usize> {
    SEVERITIES.iter().position(|x| *x == s)
}

/// `Ok` or the reason, in words an operator reads in the list of ineligible devices.
pub fn check(now_ms: i64, req: &Requirements, d: &DeviceState) -> Result<(), String> {
    if let Some(why) = &d.install_blocked {
        return Err(format!("cannot install software: {why}"));
    }
    let recent = d
        .last_seen_ms
        .is_some_and(|t| now_ms - t <= req.online_within_ms);
    if !d.connected && !recent {
        return Err(match d.last_seen_ms {
            Some(t) => format!("offline: last seen {} s ago", (now_ms - t).max(0) / 1000),
            None => "offline: never seen".into(),
        });
    }
    if let (Some(min), Some(worst)) = (&req.trouble_severity, &d.worst_trouble)
        && rank(worst) >= rank(min)
    {
        return Err(format!("a {worst} trouble is open"));
    }
    if !d.abnormal_units.is_empty() {
        return Err(format!("abnormal unit: {}", d.abnormal_units.join(", ")));
    }
    if let Some(j) = d.open_job {
        return Err(format!("busy: job {j} is not over"));
    }
    if !d.window_open {
        return Err("outside its site's maintenance window".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_says_why() {
        let req = Requirements::default();
        let ok = DeviceState {
            connected: true,
            window_open: true,
            ..DeviceState::default()
        };
        assert_eq!(check(0, &req, &ok), Ok(()));
        let cases = [
            (
                DeviceState {
                    connected: false,
                    last_seen_ms: Some(-7_200_000),
                    ..ok.clone()
                },
                "offline",
            ),
            (
                DeviceState {
                    worst_trouble: Some("critical".into()),
                    ..ok.clone()
                },
                "critical trouble",
            ),
            (
                DeviceState {
                    abnormal_units: vec!["fuser".into()],
                    ..ok.clone()
                },
                "abnormal unit: fuser",
            ),
            (
                DeviceState {
                    open_job: Some(9),
                    ..ok.clone()
                },
                "job 9",
            ),
            (
                DeviceState {
                    install_blocked: Some("no root of trust".into()),
                    ..ok.clone()
                },
                "cannot install software: no root of trust",
            ),
            (
                DeviceState {
                    window_open: false,
                    ..ok.clone()
                },
                "maintenance window",
            ),
        ];
        for (d, why) in cases {
            let e = check(0, &req, &d).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
        let minor = DeviceState {
            worst_trouble: Some("minor".into()),
            ..ok
        };
        assert_eq!(check(0, &req, &minor), Ok(()), "below the severity: fine");
    }
}
