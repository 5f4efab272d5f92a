//! Artifact names: untrusted text that ends up as a file name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest artifact name.
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("artifact name {name:?} refused: {why}")]
pub struct NameError {
    pub name: String,
    pub why: &'static str,
}

/// A validated artifact name: one plain path component of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with a dot, at most 128 characters. It can be joined to a directory
/// and never leaves it. It is a label only: the center stores artifacts by their SHA-256 and
/// never uses a name as a path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactName(String);

impl ArtifactName {
    pub fn new(name: &str) -> Result<ArtifactName, NameError> {
        let why = if name.is_empty() {
            Some("empty")
        } else if name.len() > MAX_NAME {
            Some("longer than 128 characters")
        } else if name.starts_with('.') {
            Some("starts with a dot (hidden, `.` or `..`)")
        } else if name.contains(['/', '\\']) {
            Some("contains a path separator")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
        } else {
            None
        };
        match why {
            Some(why) => Err(NameError {
                name: name.chars().take(MAX_NAME + 8).collect(),
                why,
            }),
            None => Ok(ArtifactName(name.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ArtifactName {
    type Error = NameError;
    fn try_from(s: String) -> Result<ArtifactName, NameError> {
        ArtifactName::new(&s)
    }
}

impl From<ArtifactName> for String {
    fn from(n: ArtifactName) -> String {
        n.0
    }
}

impl fmt::Debug for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
