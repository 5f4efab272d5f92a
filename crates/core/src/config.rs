//! The layered config reader both binaries use: defaults → file → environment.
//!
//! A binary asks for each of its keys once, with its default; the reader takes the value from
//! the TOML file if present, then from the environment variable `PREFIX_KEY` (dots become
//! underscores, upper case) if set, and records every problem instead of stopping at the
//! first. [`ConfigReader::finish`] adds every key the file holds that nobody asked for, so a
//! misspelled key is an error, not a silent default. The reader does no IO: the caller passes
//! the file's text and a lookup for the environment.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Every problem of one configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A value a config key can hold: read from TOML or from an environment variable's text.
pub trait Setting: Sized {
    /// What the value should look like, for messages.
    const EXPECTED: &'static str;
    fn from_toml(v: &toml::Value) -> Option<Self>;
    fn from_env(s: &str) -> Option<Self>;
}

impl Setting for String {
    const EXPECTED: &'static str = "a string";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_str().map(str::to_owned)
    }
    fn from_env(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl Setting for PathBuf {
    const EXPECTED: &'static str = "a path";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_str().filter(|s| !s.is_empty()).map(PathBuf::from)
    }
    fn from_env(s: &str) -> Option<Self> {
        (!s.is_empty()).then(|| PathBuf::from(s))
    }
}

impl Setting for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_integer().and_then(|i| u64::try_from(i).ok())
    }
    fn from_env(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

impl Setting for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_bool()
    }
    fn from_env(s: &str) -> Option<Self> {
        match s.trim() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        }
    }
}

impl Setting for Vec<String> {
    const EXPECTED: &'static str = "a list of strings (in the environment: comma-separated)";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect()
    }
    fn from_env(s: &str) -> Option<Self> {
        Some(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

impl Setting for std::collections::BTreeMap<String, String> {
    const EXPECTED: &'static str =
        "a table of strings (in the environment: comma-separated name=value pairs)";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        v.as_table()?
            .iter()
            .map(|(k, x)| x.as_str().map(|x| (k.clone(), x.to_owned())))
            .collect()
    }
    fn from_env(s: &str) -> Option<Self> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect()
    }
}

/// Reads one binary's keys; see the module documentation.
pub struct ConfigReader<'e> {
    file: toml::Table,
    file_name: String,
    env_prefix: &'static str,
    env: &'e dyn Fn(&str) -> Option<String>,
    asked: BTreeSet<String>,
    problems: Vec<String>,
}

impl std::fmt::Debug for ConfigReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigReader")
            .field("file_name", &self.file_name)
            .field("env_prefix", &self.env_prefix)
            .finish_non_exhaustive()
    }
}

impl<'e> ConfigReader<'e> {
    /// `file`: the config file's name (for messages) and text, if there is one.
    pub fn new(
        file: Option<(&str, &str)>,
        env_prefix: &'static str,
        env: &'e dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut problems = Vec::new();
        let (file_name, table) = match file {
            None => (String::new(), toml::Table::new()),
            Some((name, text)) => match text.parse::<toml::Table>() {
                Ok(t) => (name.to_owned(), t),
                Err(e) => {
                    problems.push(format!("{name}: not valid TOML: {}", e.message()));
                    (name.to_owned(), toml::Table::new())
                }
            },
        };
        ConfigReader {
            file: table,
            file_name,
            env_prefix,
            env,
            asked: BTreeSet::new(),
            problems,
        }
    }

    /// The environment variable that sets `key`.
    pub fn env_var(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.env_prefix,
            key.replace(['.', '-'], "_").to_uppercase()
        )
    }

    fn file_value(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let first = parts.next()?;
        let mut v = self.file.get(first)?;
        for p in parts {
            v = v.as_table()?.get(p)?;
        }
        Some(v)
    }

    /// The key's value, if the file or the environment sets it (the environment wins).
    pub fn optional<T: Setting>(&mut self, key: &str) -> Option<T> {
        self.asked.insert(key.to_owned());
        let var = self.env_var(key);
        if let Some(text) = (self.env)(&var) {
            return match T::from_env(&text) {
                Some(v) => Some(v),
                None => {
                    self.problems
                        .push(format!("{var}: expected {}, got {text:?}", T::EXPECTED));
                    None
                }
            };
        }
        let v = self.file_value(key)?;
        match T::from_toml(v) {
            Some(v) => Some(v),
            None => {
                self.problems.push(format!(
                    "{}: `{key}`: expected {}, got {v}",
                    self.file_name,
                    T::EXPECTED
                ));
                None
            }
        }
    }

    /// The key's value, or `default`.
    pub fn value<T: Setting>(&mut self, key: &str, default: T) -> T {
        self.optional(key).unwrap_or(default)
    }

    /// The key's value, or `default`, refused unless within `min..=max`.
    pub fn bounded(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let v = self.value(key, default);
        if (min..=max).contains(&v) {
            v
        } else {
            self.problem(format!("`{key}`: must be between {min} and {max}, got {v}"));
            default
        }
    }

    /// The key's value, which must be one of `choices`, or `default`.
    pub fn choice(&mut self, key: &str, default: &'static str, choices: &[&'static str]) -> String {
        let v: String = self.value(key, default.to_owned());
        if choices.contains(&v.as_str()) {
            v
        } else {
            self.problem(format!(
                "`{key}`: must be one of {}, got {v:?}",
                choices.join(", ")
            ));
            default.to_owned()
        }
    }

    /// Record a problem found while checking values together.
    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// Every key asked for, in order: the keys this binary understands.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.asked.iter().map(String::as_str)
    }

    /// Done asking: every problem, including keys in the file that nobody asked for.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        let mut unknown = Vec::new();
        collect_keys(&self.file, "", &mut |k| {
            let known = self
                .asked
                .iter()
                .any(|a| a == k || a.starts_with(&format!("{k}.")));
            if !known {
                unknown.push(k.to_owned());
            }
        });
        for k in unknown {
            self.problems.push(format!(
                "{}: unknown key `{k}` (see the commented example config)",
                self.file_name
            ));
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// Leaf keys of a table, dotted (`tls.cert`).
fn collect_keys(t: &toml::Table, prefix: &str, f: &mut dyn FnMut(&str)) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v.as_table() {
            Some(inner) => collect_keys(inner, &key, f),
            None => f(&key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn file_then_environment_then_default() {
        let e = env(&[("X_PORT", "9"), ("X_TLS_CERT", "/e.pem")]);
        let text = "name = \"a\"\nport = 1\n[tls]\ncert = \"/f.pem\"\n";
        let mut r = ConfigReader::new(Some(("c.toml", text)), "X_", &e);
        assert_eq!(r.value("name", String::from("d")), "a");
        assert_eq!(r.value("port", 0u64), 9, "environment wins over the file");
        assert_eq!(r.value("missing", 7u64), 7);
        assert_eq!(
            r.optional::<PathBuf>("tls.cert"),
            Some(PathBuf::from("/e.pem"))
        );
        r.finish().expect("valid");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = env(&[("X_FLAG", "maybe")]);
        let text = "port = \"eighty\"\ntypo = 1\nmode = \"fast\"\nn = 99\n";
        let mut r = ConfigReader::new(Some(("c.toml", text)), "X_", &e);
        assert_eq!(r.value("port", 80u64), 80);
        assert!(!r.value("flag", false));
        assert_eq!(r.choice("mode", "safe", &["safe", "slow"]), "safe");
        assert_eq!(r.bounded("n", 5, 1, 10), 5);
        let err = r.finish().expect_err("invalid");
        assert_eq!(
            err.problems,
            vec![
                "c.toml: `port`: expected a non-negative integer, got \"eighty\"",
                "X_FLAG: expected true or false, got \"maybe\"",
                "`mode`: must be one of safe, slow, got \"fast\"",
                "`n`: must be between 1 and 10, got 99",
                "c.toml: unknown key `typo` (see the commented example config)",
            ]
        );
    }

    #[test]
    fn broken_toml_is_one_clear_problem() {
        let e = env(&[]);
        let r = ConfigReader::new(Some(("c.toml", "port = ")), "X_", &e);
        let err = r.finish().expect_err("invalid");
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].starts_with("c.toml: not valid TOML"),
            "{err}"
        );
    }
}
