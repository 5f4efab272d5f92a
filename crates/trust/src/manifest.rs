//! Release manifests.

use serde::{Deserialize, Serialize};

use crate::{ArtifactName, TrustError, parse_time};

/// The largest artifact a release may name.
pub const MAX_ARTIFACT_BYTES: u64 = 8 << 30;
/// The most artifacts in one release.
pub const MAX_ARTIFACTS: usize = 16;
/// The most target unit models of one release.
pub const MAX_TARGETS: usize = 64;

/// A unit model a release is made for, and its hardware revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub unit_model: String,
    pub hw_revisions: Vec<String>,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: ArtifactName,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// What a release signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    pub product: String,
    pub maker: String,
    pub version: String,
    /// Only grows from release to release of a product; an agent refuses a release whose
    /// counter is lower than the installed one's.
    pub counter: u64,
    pub targets: Vec<Target>,
    pub artifacts: Vec<Artifact>,
    /// RFC 3339.
    pub expires: String,
}

/// A plain identifier: 1–64 printable ASCII characters without spaces.
fn plain(what: &str, s: &str, problems: &mut Vec<String>) {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        problems.push(format!(
            "{what} {s:?} must be 1 to 64 printable ASCII characters without spaces"
        ));
    }
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ReleaseManifest {
    pub fn from_json(text: &[u8]) -> Result<ReleaseManifest, TrustError> {
        let m: ReleaseManifest =
            serde_json::from_slice(text).map_err(|e| TrustError::Malformed {
                what: "release",
                detail: e.to_string(),
            })?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a release serializes")
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), TrustError> {
        let mut p = Vec::new();
        plain("product", &self.product, &mut p);
        plain("maker", &self.maker, &mut p);
        plain("version", &self.version, &mut p);
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            p.push(format!("1 to {MAX_TARGETS} targets are needed"));
        }
        for t in &self.targets {
            plain("unit model", &t.unit_model, &mut p);
            if t.hw_revisions.is_empty() || t.hw_revisions.len() > 64 {
                p.push(format!(
                    "target {}: 1 to 64 hardware revisions are needed",
                    t.unit_model
                ));
            }
            for r in &t.hw_revisions {
                plain("hardware revision", r, &mut p);
            }
        }
        if self.artifacts.is_empty() || self.artifacts.len() > MAX_ARTIFACTS {
            p.push(format!("1 to {MAX_ARTIFACTS} artifacts are needed"));
        }
        for (i, a) in self.artifacts.iter().enumerate() {
            if self.artifacts[..i].iter().any(|b| b.name == a.name) {
                p.push(format!("artifact {} is listed twice", a.name));
            }
            if a.size > MAX_ARTIFACT_BYTES {
                p.push(format!(
                    "artifact {}: {} bytes, at most {MAX_ARTIFACT_BYTES}",
                    a.name, a.size
                ));
            }
            if !is_sha256_hex(&a.sha256) {
                p.push(format!(
                    "artifact {}: sha256 must be 64 lower-case hex digits",
                    a.name
                ));
            }
        }
        if let Err(e) = parse_time("release", &self.expires) {
            p.push(e.to_string());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(TrustError::Malformed {
                what: "release",
                detail: p.join("; "),
            })
        }
    }

    /// Is it made for this unit model and hardware revision?
    pub fn targets_unit(&self, unit_model: &str, hw_revision: &str) -> bool {
        self.targets
            .iter()
            .any(|t| t.unit_model == unit_model && t.hw_revisions.iter().any(|r| r == hw_revision))
    }
}
