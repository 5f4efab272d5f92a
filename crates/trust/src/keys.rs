//! Keys: ed25519 key pairs, public keys with their ids, the root and the key list.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{MAX_KEYS, TrustError, parse_time};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A public key and its id (hex SHA-256 of the key bytes).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PublicKeyJson", into = "PublicKeyJson")]
pub struct PublicKey {
    keyid: String,
    key: VerifyingKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyJson {
    keyid: String,
    /// Base64 of the 32-byte ed25519 public key.
    public: String,
}

impl TryFrom<PublicKeyJson> for PublicKey {
    type Error = String;
    fn try_from(j: PublicKeyJson) -> Result<PublicKey, String> {
        let bytes: [u8; 32] = B64
            .decode(&j.public)
            .map_err(|e| format!("public key: {e}"))?
            .try_into()
            .map_err(|_| "public key: not 32 bytes".to_owned())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("public key: {e}"))?;
        let pk = PublicKey::from_key(key);
        if pk.keyid != j.keyid {
            return Err(format!(
                "key id {} is not the SHA-256 of its public key ({})",
                j.keyid, pk.keyid
            ));
        }
        Ok(pk)
    }
}

impl From<PublicKey> for PublicKeyJson {
    fn from(k: PublicKey) -> PublicKeyJson {
        PublicKeyJson {
            public: B64.encode(k.key.as_bytes()),
            keyid: k.keyid,
        }
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

impl PublicKey {
    fn from_key(key: VerifyingKey) -> PublicKey {
        PublicKey {
            keyid: hex(&Sha256::digest(key.as_bytes())),
            key,
        }
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The key in TUF's form (`keytype`, `scheme`, `keyval.public` in hex).
    pub fn to_tuf(&self) -> crate::tuf::TufKey {
        crate::tuf::TufKey::ed25519(&hex(self.key.as_bytes()))
    }

    /// An ed25519 public key from its 32 bytes in hex.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        VerifyingKey::from_bytes(&bytes)
            .ok()
            .map(PublicKey::from_key)
    }

    /// A valid signature of `msg` by this key (strict: no malleable or weak-key signatures).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// A secret signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct KeyPair {
    secret: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.public.keyid)
    }
}

impl KeyPair {
    /// A new key from the operating system's random source.
    pub fn generate() -> KeyPair {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source failed");
        KeyPair::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        let secret = SigningKey::from_bytes(seed);
        let public = PublicKey::from_key(secret.verifying_key());
        KeyPair { secret, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.secret.sign(msg).to_bytes()
    }
}

/// A secret key as stored in a file (mode 0600, kept offline).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyFile {
    /// `root` or `release`.
    pub role: String,
    pub keyid: String,
    /// Base64 of the 32-byte seed.
    pub seed: String,
}

impl std::fmt::Debug for SecretKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKeyFile({} {})", self.role, self.keyid)
    }
}

impl SecretKeyFile {
    pub fn new(role: &str, key: &KeyPair) -> SecretKeyFile {
        SecretKeyFile {
            role: role.to_owned(),
            keyid: key.public.keyid.clone(),
            seed: B64.encode(key.secret.to_bytes()),
        }
    }

    /// Parse a key file; the role must be `role`.
    pub fn parse(text: &[u8], role: &str) -> Result<KeyPair, TrustError> {
        let bad = |detail: String| TrustError::Malformed {
            what: "key file",
            detail,
        };
        let f: SecretKeyFile = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if f.role != role {
            return Err(bad(format!(
                "it holds a {} key, a {role} key is needed",
                f.role
            )));
        }
        let seed: [u8; 32] = B64
            .decode(&f.seed)
            .map_err(|e| bad(format!("seed: {e}")))?
            .try_into()
            .map_err(|_| bad("seed: not 32 bytes".into()))?;
        let k = KeyPair::from_seed(&seed);
        if k.public.keyid != f.keyid {
            return Err(bad("the key id does not match the key".into()));
        }
        Ok(k)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a key file serializes")
    }
}

fn check_keys(what: &'static str, keys: &[PublicKey], threshold: usize) -> Result<(), TrustError> {
    let bad = |detail: String| TrustError::Malformed { what, detail };
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(bad(format!(
            "{} keys; 1 to {MAX_KEYS} are needed",
            keys.len()
        )));
    }
    if threshold == 0 || threshold > keys.len() {
        return Err(bad(format!(
            "threshold {threshold} with {} keys: it must be 1 to the number of keys",
            keys.len()
        )));
    }
    let mut ids: Vec<&str> = keys.iter().map(|k| k.keyid()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("a key is listed twice".into()));
    }
    Ok(())
}

/// The provisioned root of trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// How many root keys must sign a key list.
    pub threshold: usize,
    pub keys: Vec<PublicKey>,
}

impl Root {
    pub fn from_json(text: &[u8]) -> Result<Root, TrustError> {
        let r: Root = serde_json::from_slice(text).map_err(|e| TrustError::Malformed {
            what: "root",
            detail: e.to_string(),
        })?;
        check_keys("root", &r.keys, r.threshold)?;
        Ok(r)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a root serializes")
    }
}

/// The release keys, signed by the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    /// Only grows; an agent refuses an older one.
    pub version: u64,
    /// RFC 3339; an agent refuses an expired list (and so every release) until a fresh one
    /// arrives: a frozen repository is noticed.
    pub expires: String,
    /// How many release keys must sign a release.
    pub threshold: usize,
    pub keys: Vec<PublicKey>,
}

impl KeyList {
    pub fn from_json(text: &[u8]) -> Result<KeyList, TrustError> {
        let l: KeyList = serde_json::from_slice(text).map_err(|e| TrustError::Malformed {
            what: "key list",
            detail: e.to_string(),
        })?;
        check_keys("key list", &l.keys, l.threshold)?;
        parse_time("key list", &l.expires)?;
        Ok(l)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key list serializes")
    }
}
