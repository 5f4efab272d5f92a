//! The diagnosis rules: a TOML file (documented by `examples/rules.toml`) of trouble rules,
//! which judge error events, and abnormal-unit rules, which judge operating info.
//! [`RuleSet::parse`] lists every problem of a file at once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

/// Largest rules file accepted, in bytes.
pub const MAX_RULES_BYTES: usize = 1024 * 1024;
/// Most rules of either kind in one file.
pub const MAX_RULES: usize = 1000;
/// Largest `count` or `fleet_devices`: the engine keeps that many events per device and rule.
pub const MAX_COUNT: u32 = 1000;
/// Longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);
/// Longest id, code pattern, kind, counter or setting name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest title or recommended action.
pub const MAX_TEXT_LEN: usize = 1000;
/// Quiet period after which a trouble resolves itself, unless the rule says otherwise.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(86_400);

/// Event severities, least severe first (the wire's names).
pub const EVENT_SEVERITIES: &[&str] = &["debug", "info", "warning", "error", "critical"];

/// The rank of an event severity (`None` for a name that is not one).
pub fn event_rank(s: &str) -> Option<u8> {
    EVENT_SEVERITIES
        .iter()
        .position(|x| *x == s)
        .and_then(|p| u8::try_from(p).ok())
}

/// How serious a trouble is, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TroubleSeverity {
    Info,
    Minor,
    Major,
    Critical,
}

impl TroubleSeverity {
    pub const NAMES: &'static [&'static str] = &["info", "minor", "major", "critical"];

    pub fn parse(s: &str) -> Option<TroubleSeverity> {
        Some(match s {
            "info" => TroubleSeverity::Info,
            "minor" => TroubleSeverity::Minor,
            "major" => TroubleSeverity::Major,
            "critical" => TroubleSeverity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

// ---- the file format ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesDoc {
    #[serde(default)]
    rule: Vec<RuleDoc>,
    #[serde(default)]
    abnormal: Vec<AbnormalDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDoc {
    code: Option<String>,
    unit_kind: Option<String>,
    severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixDoc {
    release: Option<String>,
    version: Option<String>,
    setting: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: String,
    title: String,
    severity: String,
    action: String,
    #[serde(rename = "match")]
    matcher: MatchDoc,
    count: Option<u32>,
    within: Option<String>,
    per_pages: Option<f64>,
    counter: Option<String>,
    followed_by: Option<MatchDoc>,
    fleet_devices: Option<u32>,
    resolve_after: Option<String>,
    resolve_on_fix: Option<bool>,
    fix: Option<FixDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbnormalDoc {
    id: String,
    title: String,
    unit_kind: String,
    counter: String,
    per: Option<String>,
    above: Option<f64>,
    below: Option<f64>,
    #[serde(default)]
    expected_life: BTreeMap<String, f64>,
    /// `value` (default), `rate`, `trend` or `since_install`.
    measure: Option<String>,
    /// The span of history a `rate` or `trend` looks at ("7d").
    window: Option<String>,
}

// ---- compiled -----------------------------------------------------------------------------

/// A code pattern: `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn matches(&self, code: &str) -> bool {
        glob(self.0.as_bytes(), code.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Glob matching with one backtrack point (linear in practice, no recursion).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Which events a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub code: Option<Pattern>,
    pub unit_kind: Option<String>,
    /// At or above this event severity.
    pub min_severity: Option<u8>,
}

impl Matcher {
    /// Does the event match (`kind`: the kind of the event's unit, when the device has one in
    /// that slot)?
    pub fn matches(&self, code: &str, kind: Option<&str>, severity: u8) -> bool {
        self.min_severity.is_none_or(|m| severity >= m)
            && self.unit_kind.as_deref().is_none_or(|k| kind == Some(k))
            && self.code.as_ref().is_none_or(|p| p.matches(code))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.code {
            parts.push(format!("code {}", c.as_str()));
        }
        if let Some(k) = &self.unit_kind {
            parts.push(format!("on a {k}"));
        }
        if let Some(s) = self.min_severity {
            parts.push(format!("{} or worse", EVENT_SEVERITIES[s as usize]));
        }
        if parts.is_empty() {
            "any event".into()
        } else {
            parts.join(", ")
        }
    }
}

/// When a rule's matching events make a trouble.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// At least `n` matching events within `window_ms` (device time).
    Count { n: u32, window_ms: i64 },
    /// At least `n` matching events within `pages` printed pages (the `counter` the events
    /// carry).
    PerPages { n: u32, pages: f64, counter: String },
    /// A matching event followed by one matching `then` within `window_ms`.
    Sequence { then: Matcher, window_ms: i64 },
    /// At least `devices` devices of the same model, with the same software on the event's
    /// unit, each with a matching event within `window_ms` (center time): a suspected
    /// software defect. Every such device gets the trouble.
    Fleet { devices: u32, window_ms: i64 },
}

/// What fixes a trouble, when it is a known issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Install this release of the product on the unit that holds it.
    Release { product: String, version: String },
    /// Set a device setting.
    Setting { key: String, value: String },
}

/// A trouble rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: TroubleSeverity,
    pub action: String,
    pub matcher: Matcher,
    pub condition: Condition,
    pub resolve_after_ms: i64,
    pub fix: Option<Fix>,
    /// Resolved at once when its fix job succeeds (else `fixed`, and resolved when no
    /// matching event follows within `resolve_after_ms`).
    pub resolve_on_fix: bool,
}

impl Rule {
    /// The rule in words, for evidence and the CLI.
    pub fn describe(&self) -> String {
        let m = self.matcher.describe();
        match &self.condition {
            Condition::Count { n, window_ms } => {
                format!("{n} events ({m}) within {}", span(*window_ms))
            }
            Condition::PerPages { n, pages, counter } => {
                format!("{n} events ({m}) within {pages} pages ({counter})")
            }
            Condition::Sequence { then, window_ms } => format!(
                "an event ({m}) followed by one ({}) within {}",
                then.describe(),
                span(*window_ms)
            ),
            Condition::Fleet { devices, window_ms } => format!(
                "{devices} devices of one model and software version with events ({m}) within {}",
                span(*window_ms)
            ),
        }
    }
}

fn span(ms: i64) -> String {
    duration_words(ms)
}

/// A duration as people write it: "1 day", "2 hours 30 minutes", "90 seconds" becomes
/// "1 minute 30 seconds".
pub fn duration_words(ms: i64) -> String {
    let mut s = ms.max(0) / 1000;
    if s == 0 {
        return format!("{} ms", ms.max(0));
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ] {
        let n = s / size;
        s %= size;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    parts.join(" ")
}

/// An abnormal-unit rule: a counter or gauge of the device's operating info out of range
/// marks every unit of a kind abnormal.
#[derive(Debug, Clone, PartialEq)]
pub struct AbnormalRule {
    pub id: String,
    pub title: String,
    pub unit_kind: String,
    /// The operating-info name; `{slot}` stands for the unit's slot.
    pub counter: String,
    /// Divide by this counter first (a rate: jams per page).
    pub per: Option<String>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// Abnormal beyond the unit model's expected life (by unit model).
    pub expected_life: BTreeMap<String, f64>,
    /// What is judged: the newest value, or something of the device's history.
    pub measure: Measure,
}

/// What an abnormal-unit rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The newest report's value (or `counter / per`), at every report.
    Value,
    /// How much `counter` grew per growth of `per` over the last `window_ms` (jams per page
    /// over the last 7 days), from the history.
    Rate { window_ms: i64 },
    /// The slope per day of `counter` over the last `window_ms` (a robust fit: a fuser's
    /// temperature climbing), from the history.
    Trend { window_ms: i64 },
    /// How much `counter` grew since the unit's current serial appeared (pages since this
    /// fuser went in), from the history: the device need not count it.
    SinceInstall,
}

impl Measure {
    /// Judged from the history, once a day per device (not from each report's values).
    pub fn from_history(self) -> bool {
        self != Measure::Value
    }
}

/// A compiled, validated rules file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub abnormal: Vec<AbnormalRule>,
}

/// Why a rules file was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rules were refused: {}", .problems.join("; "))]
pub struct RulesError {
    pub problems: Vec<String>,
}

/// A problem about the `i`th rule or abnormal rule (`rule[2] (paper-jams).within: …`) with the
/// line of the file where that item's id is: `line 40, rule[2] (paper-jams)…`. Other
/// problems as they are.
pub fn locate(source: &str, problem: &str) -> String {
    let table = if problem.starts_with("rule[") {
        "rule"
    } else if problem.starts_with("abnormal[") {
        "abnormal"
    } else {
        return problem.to_owned();
    };
    let Some(index) = problem
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse::<usize>().ok())
    else {
        return problem.to_owned();
    };
    let header = format!("[[{table}]]");
    let mut seen = 0;
    let mut at_header = None;
    for (n, line) in source.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            if at_header.is_some() {
                break;
            }
            if l == header {
                if seen == index {
                    at_header = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if at_header.is_some() && l.split_once('=').is_some_and(|(k, _)| k.trim() == "id") {
            return format!("line {}, {problem}", n + 1);
        }
    }
    at_header.map_or_else(|| problem.to_owned(), |n| format!("line {n}, {problem}"))
}

fn window(at: &str, text: &Option<String>, p: &mut Vec<String>) -> Option<i64> {
    let t = text.as_deref()?;
    match humantime::parse_duration(t) {
        Ok(d) if !d.is_zero() && d <= MAX_WINDOW => i64::try_from(d.as_millis()).ok(),
        Ok(_) => {
            p.push(format!("{at}: {t:?}: between 1 ms and 90 days"));
            None
        }
        Err(e) => {
            p.push(format!(
                "{at}: {t:?}: {e} (a duration such as \"30m\" or \"2h\")"
            ));
            None
        }
    }
}

fn name(at: &str, v: &str, p: &mut Vec<String>) {
    if v.is_empty() || v.chars().count() > MAX_NAME_LEN || v.chars().any(char::is_control) {
        p.push(format!(
            "{at}: {v:?}: 1 to {MAX_NAME_LEN} characters, no control characters"
        ));
    }
}

fn text(at: &str, v: &str, p: &mut Vec<String>) {
    if v.trim().is_empty() || v.chars().count() > MAX_TEXT_LEN {
        p.push(format!("{at}: 1 to {MAX_TEXT_LEN} characters"));
    }
}

fn matcher(at: &str, m: &MatchDoc, p: &mut Vec<String>) -> Matcher {
    if let Some(c) = &m.code {
        name(&format!("{at}.code"), c, p);
    }
    if let Some(k) = &m.unit_kind {
        name(&format!("{at}.unit_kind"), k, p);
    }
    let min_severity = m.severity.as_deref().and_then(|s| {
        let r = event_rank(s);
        if r.is_none() {
            p.push(format!(
                "{at}.severity: {s:?} is not one of {}",
                EVENT_SEVERITIES.join(", ")
            ));
        }
        r
    });
    if m.code.is_none() && m.unit_kind.is_none() && m.severity.is_none() {
        p.push(format!(
            "{at}: give at least one of code, unit_kind, severity"
        ));
    }
    Matcher {
        code: m.code.clone().map(Pattern),
        unit_kind: m.unit_kind.clone(),
        min_severity,
    }
}

impl RuleSet {
    /// Parse and validate a rules file.
    pub fn parse(source: &str) -> Result<RuleSet, RulesError> {
        RuleSet::parse_unlocated(source).map_err(|e| RulesError {
            problems: e.problems.iter().map(|p| locate(source, p)).collect(),
        })
    }

    fn parse_unlocated(source: &str) -> Result<RuleSet, RulesError> {
        if source.len() > MAX_RULES_BYTES {
            return Err(RulesError {
                problems: vec![format!("{} bytes: at most {MAX_RULES_BYTES}", source.len())],
            });
        }
        let doc: RulesDoc = toml::from_str(source).map_err(|e| RulesError {
            problems: vec![e.to_string().trim().replace('\n', " ")],
        })?;
        let mut p = Vec::new();
        if doc.rule.len() + doc.abnormal.len() > MAX_RULES {
            p.push(format!("at most {MAX_RULES} rules"));
        }
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for (i, r) in doc.rule.iter().enumerate() {
            let at = format!("rule[{i}] ({})", r.id);
            name(&format!("{at}.id"), &r.id, &mut p);
            if !ids.insert(r.id.clone()) {
                p.push(format!("{at}.id: used twice"));
            }
            text(&format!("{at}.title"), &r.title, &mut p);
            text(&format!("{at}.action"), &r.action, &mut p);
            let severity = TroubleSeverity::parse(&r.severity).unwrap_or_else(|| {
                p.push(format!(
                    "{at}.severity: {:?} is not one of {}",
                    r.severity,
                    TroubleSeverity::NAMES.join(", ")
                ));
                TroubleSeverity::Info
            });
            let m = matcher(&format!("{at}.match"), &r.matcher, &mut p);
            let w = window(&format!("{at}.within"), &r.within, &mut p);
            for (field, v) in [("count", r.count), ("fleet_devices", r.fleet_devices)] {
                if let Some(v) = v
                    && !(1..=MAX_COUNT).contains(&v)
                {
                    p.push(format!("{at}.{field}: 1 to {MAX_COUNT}"));
                }
            }
            let condition = match (r.count, r.per_pages, &r.followed_by, r.fleet_devices) {
                (Some(n), None, None, None) => match w {
                    Some(window_ms) => Some(Condition::Count { n, window_ms }),
                    None => {
                        if r.within.is_none() {
                            p.push(format!("{at}: count needs within (or per_pages)"));
                        }
                        None
                    }
                },
                (Some(n), Some(pages), None, None) => {
                    if !(pages.is_finite() && pages > 0.0) {
                        p.push(format!("{at}.per_pages: a positive number"));
                    }
                    if r.within.is_some() {
                        p.push(format!("{at}: per_pages and within exclude each other"));
                    }
                    let counter = r.counter.clone().unwrap_or_else(|| "pages_total".into());
                    name(&format!("{at}.counter"), &counter, &mut p);
                    Some(Condition::PerPages { n, pages, counter })
                }
                (None, None, Some(then), None) => {
                    let then = matcher(&format!("{at}.followed_by"), then, &mut p);
                    if r.within.is_none() {
                        p.push(format!("{at}: followed_by needs within"));
                    }
                    w.map(|window_ms| Condition::Sequence { then, window_ms })
                }
                (None, None, None, Some(devices)) => {
                    if r.within.is_none() {
                        p.push(format!("{at}: fleet_devices needs within"));
                    }
                    w.map(|window_ms| Condition::Fleet { devices, window_ms })
                }
                _ => {
                    p.push(format!(
                        "{at}: give exactly one condition: count with within, count with \
                         per_pages, followed_by with within, or fleet_devices with within"
                    ));
                    None
                }
            };
            if r.counter.is_some() && r.per_pages.is_none() {
                p.push(format!("{at}.counter: only with per_pages"));
            }
            let resolve_after_ms = match &r.resolve_after {
                None => i64::try_from(DEFAULT_RESOLVE_AFTER.as_millis()).unwrap_or(i64::MAX),
                some => window(&format!("{at}.resolve_after"), some, &mut p).unwrap_or(0),
            };
            let fix =
                r.fix
                    .as_ref()
                    .and_then(|f| match (&f.release, &f.version, &f.setting, &f.value) {
                        (Some(product), Some(version), None, None) => {
                            name(&format!("{at}.fix.release"), product, &mut p);
                            name(&format!("{at}.fix.version"), version, &mut p);
                            Some(Fix::Release {
                                product: product.clone(),
                                version: version.clone(),
                            })
                        }
                        (None, None, Some(key), Some(value)) => {
                            name(&format!("{at}.fix.setting"), key, &mut p);
                            if value.chars().count() > MAX_TEXT_LEN {
                                p.push(format!(
                                    "{at}.fix.value: at most {MAX_TEXT_LEN} characters"
                                ));
                            }
                            Some(Fix::Setting {
                                key: key.clone(),
                                value: value.clone(),
                            })
                        }
                        _ => {
                            p.push(format!(
                                "{at}.fix: either release and version, or setting and value"
                            ));
                            None
                        }
                    });
            if r.resolve_on_fix.is_some() && !matches!(fix, Some(Fix::Release { .. })) {
                p.push(format!(
                    "{at}.resolve_on_fix: only with a fix that is a release (a job)"
                ));
            }
            if let Some(condition) = condition {
                rules.push(Rule {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    severity,
                    action: r.action.clone(),
                    matcher: m,
                    condition,
                    resolve_after_ms,
                    fix,
                    resolve_on_fix: r.resolve_on_fix.unwrap_or(false),
                });
            }
        }
        let mut abnormal = Vec::new();
        for (i, a) in doc.abnormal.iter().enumerate() {
            let at = format!("abnormal[{i}] ({})", a.id);
            name(&format!("{at}.id"), &a.id, &mut p);
            if !ids.insert(a.id.clone()) {
                p.push(format!("{at}.id: used twice"));
            }
            text(&format!("{at}.title"), &a.title, &mut p);
            name(&format!("{at}.unit_kind"), &a.unit_kind, &mut p);
            name(&format!("{at}.counter"), &a.counter, &mut p);
            if let Some(per) = &a.per {
                name(&format!("{at}.per"), per, &mut p);
            }
            let limits = [a.above, a.below]
                .into_iter()
                .flatten()
                .chain(a.expected_life.values().copied());
            if limits.clone().any(|v| !v.is_finite()) {
                p.push(format!("{at}: limits are finite numbers"));
            }
            if a.above.is_none() && a.below.is_none() && a.expected_life.is_empty() {
                p.push(format!("{at}: give above, below or expected_life"));
            }
            if !a.expected_life.is_empty() && (a.above.is_some() || a.per.is_some()) {
                p.push(format!(
                    "{at}: expected_life stands alone (no above, no per)"
                ));
            }
            if let (Some(lo), Some(hi)) = (a.below, a.above)
                && lo > hi
            {
                p.push(format!(
                    "{at}: below {lo} is more than above {hi}: nothing would be normal"
                ));
            }
            let win = window(&format!("{at}.window"), &a.window, &mut p);
            let measure = match (a.measure.as_deref().unwrap_or("value"), win) {
                ("value", None) => Measure::Value,
                ("value", Some(_)) => {
                    p.push(format!(
                        "{at}: a window needs measure = \"rate\" or \"trend\""
                    ));
                    Measure::Value
                }
                ("rate", w) => {
                    if a.per.is_none() || w.is_none() {
                        p.push(format!("{at}: measure = \"rate\" needs per and window"));
                    }
                    Measure::Rate {
                        window_ms: w.unwrap_or(0),
                    }
                }
                ("trend", w) => {
                    if w.is_none() || a.per.is_some() || !a.expected_life.is_empty() {
                        p.push(format!(
                            "{at}: measure = \"trend\" needs a window and above or below (per day), no per"
                        ));
                    }
                    Measure::Trend {
                        window_ms: w.unwrap_or(0),
                    }
                }
                ("since_install", w) => {
                    if w.is_some() || a.per.is_some() {
                        p.push(format!(
                            "{at}: measure = \"since_install\" takes no window and no per"
                        ));
                    }
                    Measure::SinceInstall
                }
                (other, _) => {
                    p.push(format!(
                        "{at}.measure: {other:?}: value, rate, trend or since_install"
                    ));
                    Measure::Value
                }
            };
            abnormal.push(AbnormalRule {
                measure,
                id: a.id.clone(),
                title: a.title.clone(),
                unit_kind: a.unit_kind.clone(),
                counter: a.counter.clone(),
                per: a.per.clone(),
                above: a.above,
                below: a.below,
                expected_life: a.expected_life.clone(),
            });
        }
        if p.is_empty() {
            Ok(RuleSet { rules, abnormal })
        } else {
            Err(RulesError { problems: p })
        }
    }

    /// The longest per-device window of any rule (how far back a restart replays events).
    pub fn max_window_ms(&self) -> i64 {
        self.rules
            .iter()
            .map(|r| match &r.condition {
                Condition::Count { window_ms, .. }
                | Condition::Sequence { window_ms, .. }
                | Condition::Fleet { window_ms, .. } => *window_ms,
                Condition::PerPages { .. } => 0,
            })
            .max()
            .unwrap_or(0)
    }

    pub fn rule(&self, id: &str) -> Option<(usize, &Rule)> {
        self.rules.iter().enumerate().find(|(_, r)| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_people_write_them() {
        assert_eq!(duration_words(86_400_000), "1 day");
        assert_eq!(duration_words(2 * 86_400_000), "2 days");
        assert_eq!(duration_words(9_000_000), "2 hours 30 minutes");
        assert_eq!(duration_words(90_000), "1 minute 30 seconds");
        assert_eq!(duration_words(250), "250 ms");
    }

    #[test]
    fn globs_match_like_shell_patterns() {
        let p = |s: &str| Pattern(s.into());
        assert!(p("SC54*").matches("SC541"));
        assert!(p("SC54*").matches("SC54"));
        assert!(!p("SC54*").matches("SC55"));
        assert!(p("J?-*-X").matches("J1-abc-X"));
        assert!(!p("J?-*-X").matches("J12-abc-X"));
        assert!(p("*").matches(""));
        assert!(p("a*b*c").matches("aXXbYYc"));
        assert!(!p("a*b*c").matches("aXXbYY"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exactly"));
    }

    #[test]
    fn every_problem_of_a_file_is_listed() {
        let err = RuleSet::parse(
            r#"
[[rule]]
id = "a"
title = ""
severity = "dire"
action = "x"
match = { severity = "loud" }
count = 3

[[rule]]
id = "a"
title = "t"
severity = "minor"
action = "x"
match = { code = "E1" }
count = 2
within = "soon"
fix = { release = "fw" }

[[abnormal]]
id = "b"
title = "t"
unit_kind = "fuser"
counter = "c"
"#,
        )
        .expect_err("refused");
        let all = err.problems.join("\n");
        for want in [
            "rule[0] (a).title",
            "rule[0] (a).severity: \"dire\"",
            "rule[0] (a).match.severity: \"loud\"",
            "count needs within",
            "rule[1] (a).id: used twice",
            "rule[1] (a).within: \"soon\"",
            "rule[1] (a).fix: either release and version",
            "abnormal[0] (b): give above, below or expected_life",
        ] {
            assert!(all.contains(want), "{want:?} missing from:\n{all}");
        }
    }

    #[test]
    fn a_rule_needs_exactly_one_condition() {
        let err = RuleSet::parse(
            r#"
[[rule]]
id = "a"
title = "t"
severity = "minor"
action = "x"
match = { code = "E1" }
count = 2
within = "1h"
fleet_devices = 3
"#,
        )
        .expect_err("refused");
        assert!(err.problems[0].contains("exactly one condition"), "{err}");
    }
}
