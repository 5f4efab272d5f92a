//! Secrets: device credentials, operator tokens, enrollment keys.
//!
//! Every secret is 32 random bytes, hex-encoded behind a prefix that says what it is
//! (`fcd_` device, `fco_` operator, `fce_` enrollment). The center stores only the SHA-256
//! of a secret: they are random, so a fast hash is enough and lookups stay indexed.

use sha2::{Digest, Sha256};

/// What a secret is for; its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Device,
    Operator,
    Enrollment,
    /// A webhook subscription's signing secret (kept as is: the center signs with it).
    Webhook,
    /// A tenant's DDI gateway token (its holder acts as any controllerId of the tenant).
    Gateway,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::Device => "fcd_",
            SecretKind::Operator => "fco_",
            SecretKind::Enrollment => "fce_",
            SecretKind::Webhook => "fcw_",
            SecretKind::Gateway => "fcg_",
        }
    }
}

/// A fresh random secret of this kind.
pub fn generate(kind: SecretKind) -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing leaves no safe way on: refuse to make a guessable secret.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{}{}", kind.prefix(), hex(&bytes))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Random `u64`, for jitter and ids that need not be secret.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_hash_stably() {
        let a = generate(SecretKind::Device);
        let b = generate(SecretKind::Device);
        assert!(a.starts_with("fcd_") && a.len() == 4 + 64);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(generate(SecretKind::Enrollment).starts_with("fce_"));
    }
}
