//! Signed software metadata, without IO.
//!
//! Three kinds of signed or provisioned documents, in the spirit of TUF and Uptane:
//!
//! - the **root** (`root.json`): root public keys and how many of them must sign a key list.
//!   It is provisioned onto every agent out of band and is the only thing an agent trusts
//!   from the start; it is not itself signed.
//! - the **key list** (`keys.json`): the release public keys and how many of them must sign a
//!   release, with a version that only grows and an expiry; signed by the root keys. Rotating
//!   or revoking a release key is publishing a new key list; no device is re-provisioned.
//! - the **release manifest**: product, maker, version, a release counter that only grows,
//!   the unit models and hardware revisions it is made for, every artifact's name, size and
//!   SHA-256, and an expiry; signed by release keys.
//!
//! Signed documents travel as DSSE envelopes (`payload`, `payloadType`, `signatures`); a
//! signature covers the pre-authentication encoding of type and payload, so a signature made
//! for one kind of document is never valid for another. A key id is the hex SHA-256 of the
//! public key. Signatures by unknown keys are ignored, and each key counts at most once toward
//! a threshold, however often it appears.

mod keys;
mod manifest;
mod name;
pub mod tuf;

pub use keys::{KeyList, KeyPair, PublicKey, Root, SecretKeyFile};
pub use manifest::{
    Artifact, MAX_ARTIFACT_BYTES, MAX_ARTIFACTS, ReleaseManifest, Target, is_sha256_hex,
};
pub use name::{ArtifactName, NameError};

use std::collections::BTreeSet;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The payload type of a key list.
pub const KEYS_TYPE: &str = "application/vnd.fleetcare.keys+json";
/// The payload type of a release manifest.
pub const RELEASE_TYPE: &str = "application/vnd.fleetcare.release+json";
/// The largest envelope accepted, encoded.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// The most signatures looked at in one envelope.
pub const MAX_SIGNATURES: usize = 16;
/// The most keys in a root or a key list.
pub const MAX_KEYS: usize = 32;

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the document is a {found}, expected a {expected}")]
    WrongType { expected: String, found: String },
    #[error(
        "not enough valid signatures by trusted keys: {valid} of the {needed} needed \
         (each key counts once; unknown keys and bad signatures do not count)"
    )]
    Signature { valid: usize, needed: usize },
    #[error("{what} expired at {at}")]
    Expired { what: &'static str, at: String },
    #[error("{what} version {offered} is older than the {current} already trusted")]
    Rollback {
        what: &'static str,
        offered: u64,
        current: u64,
    },
    #[error("too large: {what} is {size} bytes, at most {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Base64 of the 64-byte ed25519 signature.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the signed JSON document.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// DSSE's pre-authentication encoding: what a signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Sign `payload` as `payload_type` with every key given.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&KeyPair]) -> Envelope {
        let msg = pae(payload_type, payload);
        Envelope {
            payload: B64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: keys
                .iter()
                .map(|k| Signature {
                    keyid: k.public().keyid().to_owned(),
                    sig: B64.encode(k.sign(&msg)),
                })
                .collect(),
        }
    }

    /// Parse an envelope from its JSON text, bounded in size.
    pub fn parse(text: &[u8]) -> Result<Envelope, TrustError> {
        if text.len() > MAX_ENVELOPE_BYTES {
            return Err(TrustError::TooLarge {
                what: "envelope",
                size: text.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        serde_json::from_slice(text).map_err(|e| TrustError::Malformed {
            what: "envelope",
            detail: e.to_string(),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an envelope serializes")
    }

    /// The payload, decoded but not verified (for display and for routing only).
    pub fn unverified_payload(&self) -> Result<Vec<u8>, TrustError> {
        self.unverified_payload_bounded(MAX_ENVELOPE_BYTES)
    }

    /// [`Envelope::unverified_payload`] of at most `max` bytes encoded.
    pub fn unverified_payload_bounded(&self, max: usize) -> Result<Vec<u8>, TrustError> {
        if self.payload.len() > max {
            return Err(TrustError::TooLarge {
                what: "payload",
                size: self.payload.len(),
                max,
            });
        }
        B64.decode(&self.payload)
            .map_err(|e| TrustError::Malformed {
                what: "payload",
                detail: e.to_string(),
            })
    }

    /// The payload, if at least `threshold` distinct keys among `trusted` signed it.
    pub fn verify(
        &self,
        payload_type: &str,
        trusted: &[PublicKey],
        threshold: usize,
    ) -> Result<Vec<u8>, TrustError> {
        if self.payload_type != payload_type {
            return Err(TrustError::WrongType {
                expected: payload_type.to_owned(),
                found: self.payload_type.clone(),
            });
        }
        let payload = self.unverified_payload()?;
        let msg = pae(payload_type, &payload);
        let mut counted: BTreeSet<&str> = BTreeSet::new();
        for s in self.signatures.iter().take(MAX_SIGNATURES) {
            let Some(key) = trusted.iter().find(|k| k.keyid() == s.keyid) else {
                continue;
            };
            if counted.contains(key.keyid()) {
                continue;
            }
            let Ok(sig) = B64.decode(&s.sig) else {
                continue;
            };
            if key.verify(&msg, &sig) {
                counted.insert(key.keyid());
            }
        }
        // A threshold of 0 would trust anything: never.
        let needed = threshold.max(1);
        if counted.len() < needed {
            return Err(TrustError::Signature {
                valid: counted.len(),
                needed,
            });
        }
        Ok(payload)
    }
}

/// Parse an RFC 3339 time.
pub fn parse_time(what: &'static str, text: &str) -> Result<SystemTime, TrustError> {
    humantime::parse_rfc3339_weak(text).map_err(|e| TrustError::Malformed {
        what,
        detail: format!("expires {text:?}: {e}"),
    })
}

/// RFC 3339, seconds, UTC.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn check_expiry(what: &'static str, expires: &str, now: SystemTime) -> Result<(), TrustError> {
    if parse_time(what, expires)? <= now {
        return Err(TrustError::Expired {
            what,
            at: expires.to_owned(),
        });
    }
    Ok(())
}

/// What an agent trusts: its provisioned root and the newest key list it has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub root: Root,
    pub keys: Option<KeyList>,
}

impl Trust {
    pub fn new(root: Root) -> Trust {
        Trust { root, keys: None }
    }

    /// Accept a key list signed by the root. An older version than the one held is a
    /// rollback; an expired one is a freeze. `Ok(true)` if it replaced the one held.
    pub fn update_keys(&mut self, env: &Envelope, now: SystemTime) -> Result<bool, TrustError> {
        let payload = env.verify(KEYS_TYPE, &self.root.keys, self.root.threshold)?;
        let list = KeyList::from_json(&payload)?;
        if let Some(cur) = &self.keys {
            if list.version < cur.version {
                return Err(TrustError::Rollback {
                    what: "key list",
                    offered: list.version,
                    current: cur.version,
                });
            }
            if list.version == cur.version {
                if list != *cur {
                    return Err(TrustError::Malformed {
                        what: "key list",
                        detail: format!(
                            "version {} differs from the key list of the same version already \
                             trusted",
                            list.version
                        ),
                    });
                }
                check_expiry("key list", &list.expires, now)?;
                return Ok(false);
            }
        }
        check_expiry("key list", &list.expires, now)?;
        self.keys = Some(list);
        Ok(true)
    }

    /// A release manifest signed by enough current release keys, not expired, and with valid
    /// artifact names.
    pub fn verify_release(
        &self,
        env: &Envelope,
        now: SystemTime,
    ) -> Result<ReleaseManifest, TrustError> {
        let Some(keys) = &self.keys else {
            return Err(TrustError::Signature {
                valid: 0,
                needed: 1,
            });
        };
        check_expiry("key list", &keys.expires, now)?;
        let payload = env.verify(RELEASE_TYPE, &keys.keys, keys.threshold)?;
        let m = ReleaseManifest::from_json(&payload)?;
        check_expiry("release", &m.expires, now)?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
