//! Vendor version strings and their total order, and version ranges.
//!
//! # The order
//!
//! A version is split into tokens: maximal runs of digits (numbers) and maximal runs of
//! letters (words); the other characters allowed (`.`, `-`, `_`, `+`, `~`, `:`) only separate. A word is a
//! *pre-release* word if it is one of `dev`, `snapshot`, `alpha`, `beta`, `pre`, `preview`, `rc`
//! (in that rank, case-insensitive) or follows a `~`; any other word is a *build or revision*
//! qualifier (`b45` in `5.2.1-b45`, `r3` in `6.2-r3`). Two versions compare token by token, a
//! shorter one as if padded with an "end" token, where
//!
//! ```text
//! pre-release word  <  end  <  other word  <  number
//! ```
//!
//! numbers compare by value, pre-release words by rank then text, other words by text
//! (case-insensitive). So `5.2.1-rc1 < 5.2.1 < 5.2.1-b45 < 5.2.1-b46 < 5.2.1.1 < 5.2.2` and
//! `2.10 > 2.9`, and `5.2 < 5.2.0` (a longer numeric version is newer). Versions equal by
//! these rules (`5.02` and `5.2`) are ordered by their text, so the order is total and only
//! identical strings are equal.
//!
//! # Ranges
//!
//! `*` (any version), or comparators joined by `,` (all must hold): `>= 5.2`, `> 5.2`,
//! `<= 6`, `< 6`, `= 5.2.1` (or a bare version), `!= 5.2.0`; alternatives joined by `||`.

use std::cmp::Ordering;
use std::fmt;

pub use pubgrub::Ranges;

/// A set of versions.
pub type VersionRange = Ranges<Version>;

/// Longest version string accepted.
pub const MAX_VERSION_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// rank, lower-case text
    Pre(u8, Box<str>),
    Word(Box<str>),
    /// digits without leading zeros ("0" for zero)
    Num(Box<str>),
}

/// What an absent token compares as.
const END: Option<&Token> = None;

fn class(t: Option<&Token>) -> u8 {
    match t {
        Some(Token::Pre(..)) => 0,
        None => 1,
        Some(Token::Word(_)) => 2,
        Some(Token::Num(_)) => 3,
    }
}

fn cmp_tokens(a: Option<&Token>, b: Option<&Token>) -> Ordering {
    match (a, b) {
        (Some(Token::Num(x)), Some(Token::Num(y))) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Some(Token::Pre(rx, x)), Some(Token::Pre(ry, y))) => rx.cmp(ry).then_with(|| x.cmp(y)),
        (Some(Token::Word(x)), Some(Token::Word(y))) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}

fn pre_rank(word: &str) -> Option<u8> {
    ["dev", "snapshot", "alpha", "beta", "pre", "preview", "rc"]
        .iter()
        .position(|w| *w == word)
        .map(|i| i as u8)
}

/// A vendor version string with its parsed tokens.
#[derive(Clone)]
pub struct Version {
    raw: Box<str>,
    tokens: Box<[Token]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("a version must not be empty")]
    Empty,
    #[error("version {0:?} is longer than {MAX_VERSION_LEN} characters")]
    TooLong(String),
    #[error("version {0:?} holds no digits or letters")]
    NoTokens(String),
    #[error("version {0:?} may hold only letters, digits and . - _ + ~ :")]
    BadCharacter(String),
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.chars().count() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong(s.to_owned()));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~' | ':'))
        {
            return Err(VersionError::BadCharacter(s.to_owned()));
        }
        let mut tokens = Vec::new();
        let mut chars = s.char_indices().peekable();
        let mut after_tilde = false;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_ascii_digit() {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let digits = s[i..end].trim_start_matches('0');
                tokens.push(Token::Num(
                    if digits.is_empty() { "0" } else { digits }.into(),
                ));
                after_tilde = false;
            } else if c.is_alphabetic() {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if !d.is_alphabetic() {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let word = s[i..end].to_lowercase();
                tokens.push(match (after_tilde, pre_rank(&word)) {
                    (_, Some(rank)) => Token::Pre(rank, word.into()),
                    (true, None) => Token::Pre(u8::MAX, word.into()),
                    (false, None) => Token::Word(word.into()),
                });
                after_tilde = false;
            } else {
                after_tilde = c == '~';
                chars.next();
            }
        }
        if tokens.is_empty() {
            return Err(VersionError::NoTokens(s.to_owned()));
        }
        Ok(Version {
            raw: s.into(),
            tokens: tokens.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.tokens.len().max(other.tokens.len());
        for i in 0..n {
            let o = cmp_tokens(self.tokens.get(i).or(END), other.tokens.get(i).or(END));
            if o != Ordering::Equal {
                return o;
            }
        }
        self.raw.cmp(&other.raw)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range {range:?}: {problem}")]
    Bad { range: String, problem: String },
}

/// Parse a range (see the module documentation).
pub fn parse_range(text: &str) -> Result<VersionRange, RangeError> {
    let bad = |problem: String| RangeError::Bad {
        range: text.to_owned(),
        problem,
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty; write `*` for any version".into()));
    }
    let mut union = Ranges::empty();
    for alternative in t.split("||") {
        let mut set = Ranges::full();
        for comparator in alternative.split(',') {
            let c = comparator.trim();
            if c.is_empty() {
                return Err(bad("an empty comparator".into()));
            }
            if c == "*" {
                continue;
            }
            let (op, rest) = [">=", "<=", "!=", "==", ">", "<", "="]
                .iter()
                .find_map(|op| c.strip_prefix(op).map(|r| (*op, r.trim())))
                .unwrap_or(("=", c));
            let v = Version::parse(rest).map_err(|e| bad(e.to_string()))?;
            let one = match op {
                ">=" => Ranges::higher_than(v),
                ">" => Ranges::strictly_higher_than(v),
                "<=" => Ranges::lower_than(v),
                "<" => Ranges::strictly_lower_than(v),
                "!=" => Ranges::singleton(v).complement(),
                _ => Ranges::singleton(v),
            };
            set = set.intersection(&one);
        }
        union = union.union(&set);
    }
    if union.is_empty() {
        return Err(bad("no version can satisfy it".into()));
    }
    Ok(union)
}

/// A range in words for people: `any version`, `>= 5.2, < 6`, `5.2.1`, `< 5 or >= 6`.
pub fn describe_range(r: &VersionRange) -> String {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    if r.is_empty() {
        return "no version".into();
    }
    let parts: Vec<String> = r
        .iter()
        .map(|(lo, hi)| match (lo, hi) {
            (Unbounded, Unbounded) => "any version".to_owned(),
            (Included(a), Included(b)) if a == b => format!("{a}"),
            (lo, hi) => {
                let mut v = Vec::new();
                match lo {
                    Included(a) => v.push(format!(">= {a}")),
                    Excluded(a) => v.push(format!("> {a}")),
                    Unbounded => {}
                }
                match hi {
                    Included(b) => v.push(format!("<= {b}")),
                    Excluded(b) => v.push(format!("< {b}")),
                    Unbounded => {}
                }
                v.join(", ")
            }
        })
        .collect();
    parts.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn the_documented_order() {
        let ordered = [
            "5.2.1-dev",
            "5.2.1-alpha2",
            "5.2.1-beta",
            "5.2.1-rc1",
            "5.2.1-rc2",
            "5.2.1~foo",
            "5.2.1",
            "5.2.1-b45",
            "5.2.1-b46",
            "5.2.1-r2",
            "5.2.1.1",
            "5.2.2",
            "5.10",
            "11.0.3",
        ];
        // "5.2.1~foo" is a pre-release too: it sorts below 5.2.1.
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert!(v("2.10") > v("2.9"));
        assert!(v("5.2") < v("5.2.0"), "a longer numeric version is newer");
        assert!(v("5.02") != v("5.2") && (v("5.02") < v("5.2")) != (v("5.2") < v("5.02")));
        assert_eq!(v("1.0").cmp(&v("1.0")), Ordering::Equal);
        assert!(v("1.0-RC1") > v("1.0-beta"), "words are case-insensitive");
        assert!(v("2024.2") > v("2023.12"));
        assert!(
            v("99999999999999999999999") > v("9999999999999999999999"),
            "big numbers"
        );
    }

    #[test]
    fn bad_versions_are_refused() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert!(matches!(
            Version::parse("..-"),
            Err(VersionError::NoTokens(_))
        ));
        assert!(matches!(
            Version::parse("1 2"),
            Err(VersionError::BadCharacter(_))
        ));
        assert!(matches!(
            Version::parse(&"1".repeat(65)),
            Err(VersionError::TooLong(_))
        ));
    }

    #[test]
    fn ranges_parse_and_describe() {
        let r = parse_range(">= 5.2, < 6").expect("range");
        assert!(r.contains(&v("5.2")) && r.contains(&v("5.9.9-b3")) && !r.contains(&v("6")));
        assert!(
            !r.contains(&v("5.2-rc1")),
            "a pre-release sorts below its release"
        );
        assert_eq!(describe_range(&r), ">= 5.2, < 6");
        assert_eq!(
            describe_range(&parse_range("*").expect("any")),
            "any version"
        );
        assert_eq!(describe_range(&parse_range("5.2.1").expect("one")), "5.2.1");
        assert_eq!(
            describe_range(&parse_range("<5 || >=6").expect("two")),
            "< 5 or >= 6"
        );
        let ne = parse_range("!= 2.0").expect("ne");
        assert!(!ne.contains(&v("2.0")) && ne.contains(&v("2.0.1")));
        assert!(parse_range("").is_err());
        assert!(
            parse_range(">= 6, < 5").is_err(),
            "empty ranges are refused"
        );
        assert!(parse_range(">= ").is_err());
        assert!(parse_range("1.0,,2.0").is_err());
    }
}
