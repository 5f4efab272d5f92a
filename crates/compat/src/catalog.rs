//! The catalog: what the center knows about device models, unit models, software products and
//! their releases. Its format is TOML, documented by `examples/catalog.toml`. [`Catalog::parse`]
//! validates a catalog completely — every problem is listed, not just the first — and compiles
//! it into symbol-keyed indexes for judgement and planning.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use crate::version::{Version, VersionRange, describe_range, parse_range};
use crate::vocab::{Sym, Vocab};

/// Largest catalog source accepted, in bytes.
pub const MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;
/// Longest name (model, kind, revision, product, maker) in a catalog.
pub const MAX_NAME_LEN: usize = 64;

// ---- the file format ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogDoc {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    device_model: Vec<DeviceModelDoc>,
    #[serde(default)]
    unit_model: Vec<UnitModelDoc>,
    #[serde(default)]
    product: Vec<ProductDoc>,
    #[serde(default)]
    release: Vec<ReleaseDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceModelDoc {
    name: String,
    #[serde(default)]
    maker: Option<String>,
    #[serde(default)]
    optional_kinds: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitModelDoc {
    name: String,
    kind: String,
    #[serde(default)]
    hw_revisions: Vec<String>,
    #[serde(default)]
    accepted_by: Vec<String>,
    #[serde(default)]
    not_with: Vec<String>,
    #[serde(default)]
    software: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetDoc {
    unit_model: String,
    #[serde(default)]
    hw_revisions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductDoc {
    name: String,
    maker: String,
    #[serde(default)]
    runs_on: Vec<TargetDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintDoc {
    product: String,
    versions: String,
    #[serde(default)]
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseDoc {
    product: String,
    version: String,
    #[serde(default)]
    counter: Option<u64>,
    #[serde(default)]
    targets: Vec<TargetDoc>,
    #[serde(default)]
    requires: Vec<ConstraintDoc>,
    #[serde(default)]
    conflicts: Vec<ConstraintDoc>,
    #[serde(default = "yes")]
    switchable: bool,
    #[serde(default)]
    notes: Option<String>,
}

fn yes() -> bool {
    true
}

// ---- the compiled catalog ----------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct DeviceModel {
    pub name: Sym,
    pub maker: Option<Sym>,
    pub optional_kinds: Vec<Sym>,
}

#[derive(Debug, Clone)]
pub struct UnitModel {
    pub name: Sym,
    pub kind: Sym,
    /// Known hardware revisions; empty: any revision is known.
    pub hw_revisions: Vec<Sym>,
    pub accepted_by: FxHashSet<Sym>,
    /// Unit models this one does not work with (made symmetric when compiled).
    pub not_with: Vec<Sym>,
    /// Products a unit of this model carries (for planning a replacement unit's software).
    pub software: Vec<Sym>,
}

/// Where software runs: a unit model, and (if not empty) only these revisions of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub unit_model: Sym,
    pub hw_revisions: Vec<Sym>,
}

impl Target {
    pub fn matches(&self, model: Sym, revision: Option<Sym>) -> bool {
        self.unit_model == model
            && (self.hw_revisions.is_empty()
                || revision.is_some_and(|r| self.hw_revisions.contains(&r)))
    }
}

#[derive(Debug, Clone)]
pub struct Product {
    pub name: Sym,
    pub maker: Sym,
    pub runs_on: Vec<Target>,
    /// This product's releases, oldest first.
    pub releases: Vec<ReleaseId>,
}

/// Where a requirement or conflict looks for the other product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On every unit of the device that carries it.
    AnyUnit,
    /// On the same unit.
    SameUnit,
    /// On the units of this kind.
    Kind(Sym),
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub product: Sym,
    pub range: VersionRange,
    pub scope: Scope,
}

impl Constraint {
    /// The range in words.
    pub fn describe(&self) -> String {
        describe_range(&self.range)
    }
}

/// Index of a release in [`Catalog::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId(pub u32);

#[derive(Debug, Clone)]
pub struct Release {
    pub product: Sym,
    pub version: Version,
    pub version_sym: Sym,
    pub counter: Option<u64>,
    /// Where it runs (the product's `runs_on`, or narrower).
    pub targets: Vec<Target>,
    pub requires: Vec<Constraint>,
    pub conflicts: Vec<Constraint>,
    /// A copy in a unit's inactive slot can be switched to without downloading it.
    pub switchable: bool,
    pub notes: Option<String>,
}

impl Release {
    pub fn runs_on(&self, model: Sym, revision: Option<Sym>) -> bool {
        self.targets.iter().any(|t| t.matches(model, revision))
    }
}

/// How many of each thing a catalog holds; `rules` counts every constraint judgement checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CatalogStats {
    pub device_models: usize,
    pub unit_models: usize,
    pub products: usize,
    pub releases: usize,
    pub rules: usize,
}

/// A validated, compiled catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub vocab: Vocab,
    pub title: Option<String>,
    pub(crate) device_models: FxHashMap<Sym, DeviceModel>,
    pub(crate) unit_models: FxHashMap<Sym, UnitModel>,
    pub(crate) products: FxHashMap<Sym, Product>,
    pub(crate) releases: Vec<Release>,
    pub(crate) release_index: FxHashMap<(Sym, Sym), ReleaseId>,
    stats: CatalogStats,
}

/// Every problem of a catalog, each naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the catalog has {} problem(s):\n  {}", .problems.len(), .problems.join("\n  "))]
pub struct CatalogError {
    pub problems: Vec<String>,
}

struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn name(&mut self, at: &str, field: &str, s: &str) -> bool {
        let n = s.chars().count();
        let problem = if n == 0 {
            Some("must not be empty".to_owned())
        } else if n > MAX_NAME_LEN {
            Some(format!("is longer than {MAX_NAME_LEN} characters"))
        } else if s.chars().any(char::is_control) || s.trim() != s {
            Some("holds control characters or surrounding whitespace".to_owned())
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.problems.push(format!("{at}: {field} {s:?} {p}"));
                false
            }
            None => true,
        }
    }

    fn push(&mut self, p: String) {
        self.problems.push(p);
    }
}

/// " (did you mean \"x\"?)" when a known name is near `name`, else nothing.
pub fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let limit = (name.chars().count() / 3).max(2);
    known
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map_or(String::new(), |(_, k)| format!(" (did you mean {k:?}?)"))
}

/// A problem about an item (`unit_model "fu-7": …`, `device_model[1]: …`,
/// `release fw 1.0: …`) with the line of the file where that item is:
/// `line 12, unit_model "fu-7": …`. Other problems as they are.
fn located(text: &str, problem: &str) -> String {
    let Some((item, _)) = problem.split_once(": ") else {
        return problem.to_owned();
    };
    let line = if let Some((table, rest)) = item.split_once('[') {
        // The i-th table of its kind.
        rest.strip_suffix(']')
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| headers(text, table).nth(i))
    } else if let Some((table, quoted)) = item.split_once(' ')
        && matches!(table, "device_model" | "unit_model" | "product")
        && let Some(name) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'))
    {
        headers(text, table).find(|&h| value_in(text, h, "name").as_deref() == Some(name))
    } else if let Some(rest) = item.strip_prefix("release ")
        && let Some((product, version)) = rest.split_once(' ')
    {
        headers(text, "release").find(|&h| {
            value_in(text, h, "product").as_deref() == Some(product)
                && value_in(text, h, "version").as_deref() == Some(version)
        })
    } else {
        None
    };
    match line {
        Some(n) => format!("line {n}, {problem}"),
        None => problem.to_owned(),
    }
}

/// The lines (from 1) of the `[[table]]` headers.
fn headers<'a>(text: &'a str, table: &str) -> impl Iterator<Item = usize> + 'a {
    let header = format!("[[{table}]]");
    text.lines()
        .enumerate()
        .filter(move |(_, l)| l.trim() == header)
        .map(|(n, _)| n + 1)
}

/// The string value of `key` in the table whose header is on line `header`.
fn value_in(text: &str, header: usize, key: &str) -> Option<String> {
    text.lines()
        .skip(header)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

impl Catalog {
    /// Parse, validate and compile a catalog; names go into `vocab`.
    pub fn parse(text: &str, vocab: &Vocab) -> Result<Catalog, CatalogError> {
        if text.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError {
                problems: vec![format!(
                    "the catalog is larger than {MAX_CATALOG_BYTES} bytes"
                )],
            });
        }
        let doc: CatalogDoc = toml::from_str(text).map_err(|e| CatalogError {
            problems: vec![format!(
                "not a valid catalog file: {}",
                e.to_string().trim_end()
            )],
        })?;
        compile(doc, vocab).map_err(|e| CatalogError {
            problems: e.problems.iter().map(|p| located(text, p)).collect(),
        })
    }

    pub fn stats(&self) -> CatalogStats {
        self.stats
    }

    pub fn device_model(&self, name: Sym) -> Option<&DeviceModel> {
        self.device_models.get(&name)
    }

    pub fn unit_model(&self, name: Sym) -> Option<&UnitModel> {
        self.unit_models.get(&name)
    }

    pub fn product(&self, name: Sym) -> Option<&Product> {
        self.products.get(&name)
    }

    pub fn release(&self, id: ReleaseId) -> &Release {
        &self.releases[id.0 as usize]
    }

    pub fn find_release(&self, product: Sym, version: Sym) -> Option<ReleaseId> {
        self.release_index.get(&(product, version)).copied()
    }

    /// Unit models of `kind` that `device_model` accepts, by name.
    pub fn unit_models_for(&self, device_model: Sym, kind: Sym) -> Vec<&UnitModel> {
        let mut v: Vec<&UnitModel> = self
            .unit_models
            .values()
            .filter(|u| u.kind == kind && u.accepted_by.contains(&device_model))
            .collect();
        v.sort_by_key(|u| self.vocab.resolve(u.name));
        v
    }

    /// Every unit model, for listings.
    pub fn unit_models(&self) -> impl Iterator<Item = &UnitModel> {
        self.unit_models.values()
    }

    /// Every device model, for listings.
    pub fn device_models(&self) -> impl Iterator<Item = &DeviceModel> {
        self.device_models.values()
    }

    /// Every product, for listings.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    pub fn text(&self, s: Sym) -> std::sync::Arc<str> {
        self.vocab.resolve(s)
    }
}

fn compile(doc: CatalogDoc, vocab: &Vocab) -> Result<Catalog, CatalogError> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    // Names first, so references can be checked against them.
    let mut device_names = BTreeSet::new();
    for (i, d) in doc.device_model.iter().enumerate() {
        let at = format!("device_model[{i}]");
        if c.name(&at, "name", &d.name) && !device_names.insert(d.name.as_str()) {
            c.push(format!("{at}: device model {:?} is defined twice", d.name));
        }
    }
    let mut unit_names: BTreeMap<&str, &UnitModelDoc> = BTreeMap::new();
    for (i, u) in doc.unit_model.iter().enumerate() {
        let at = format!("unit_model[{i}]");
        if c.name(&at, "name", &u.name) && unit_names.insert(&u.name, u).is_some() {
            c.push(format!("{at}: unit model {:?} is defined twice", u.name));
        }
    }
    let mut product_names: BTreeMap<&str, &ProductDoc> = BTreeMap::new();
    for (i, p) in doc.product.iter().enumerate() {
        let at = format!("product[{i}]");
        if c.name(&at, "name", &p.name) && product_names.insert(&p.name, p).is_some() {
            c.push(format!("{at}: product {:?} is defined twice", p.name));
        }
    }
    let kinds: BTreeSet<&str> = doc.unit_model.iter().map(|u| u.kind.as_str()).collect();

    let mut device_models = FxHashMap::default();
    for (i, d) in doc.device_model.iter().enumerate() {
        let at = format!("device_model {:?}", d.name);
        let _ = i;
        if let Some(m) = &d.maker {
            c.name(&at, "maker", m);
        }
        for k in &d.optional_kinds {
            if !kinds.contains(k.as_str()) {
                c.push(format!(
                    "{at}: optional kind {k:?} is the kind of no unit model"
                ));
            }
        }
        device_models.insert(
            vocab.intern(&d.name),
            DeviceModel {
                name: vocab.intern(&d.name),
                maker: d.maker.as_deref().map(|m| vocab.intern(m)),
                optional_kinds: d.optional_kinds.iter().map(|k| vocab.intern(k)).collect(),
            },
        );
    }

    let mut unit_models: FxHashMap<Sym, UnitModel> = FxHashMap::default();
    for u in &doc.unit_model {
        let at = format!("unit_model {:?}", u.name);
        c.name(&at, "kind", &u.kind);
        let mut revs = BTreeSet::new();
        for r in &u.hw_revisions {
            if c.name(&at, "hardware revision", r) && !revs.insert(r) {
                c.push(format!("{at}: hardware revision {r:?} is listed twice"));
            }
        }
        if u.accepted_by.is_empty() {
            c.push(format!(
                "{at}: accepted_by is empty: no device model accepts this unit model"
            ));
        }
        for d in &u.accepted_by {
            if !device_names.contains(d.as_str()) {
                c.push(format!(
                    "{at}: accepted_by names unknown device model {d:?}{}",
                    did_you_mean(d, device_names.iter().copied())
                ));
            }
        }
        for o in &u.not_with {
            if o == &u.name {
                c.push(format!("{at}: not_with names the unit model itself"));
            } else if !unit_names.contains_key(o.as_str()) {
                c.push(format!(
                    "{at}: not_with names unknown unit model {o:?}{}",
                    did_you_mean(o, unit_names.keys().copied())
                ));
            }
        }
        for p in &u.software {
            match product_names.get(p.as_str()) {
                None => c.push(format!(
                    "{at}: software names unknown product {p:?}{}",
                    did_you_mean(p, product_names.keys().copied())
                )),
                Some(pd) if !pd.runs_on.iter().any(|t| t.unit_model == u.name) => c.push(format!(
                    "{at}: carries product {p:?}, but that product does not run on {:?}",
                    u.name
                )),
                Some(_) => {}
            }
        }
        unit_models.insert(
            vocab.intern(&u.name),
            UnitModel {
                name: vocab.intern(&u.name),
                kind: vocab.intern(&u.kind),
                hw_revisions: u.hw_revisions.iter().map(|r| vocab.intern(r)).collect(),
                accepted_by: u.accepted_by.iter().map(|d| vocab.intern(d)).collect(),
                not_with: u.not_with.iter().map(|o| vocab.intern(o)).collect(),
                software: u.software.iter().map(|p| vocab.intern(p)).collect(),
            },
        );
    }
    // "A does not work with B" is symmetric.
    let pairs: Vec<(Sym, Sym)> = unit_models
        .values()
        .flat_map(|u| u.not_with.iter().map(move |o| (*o, u.name)))
        .collect();
    for (a, b) in pairs {
        if let Some(u) = unit_models.get_mut(&a)
            && !u.not_with.contains(&b)
        {
            u.not_with.push(b);
        }
    }

    let check_target = |c: &mut Checker, at: &str, t: &TargetDoc| -> Option<Target> {
        let Some(um) = unit_names.get(t.unit_model.as_str()) else {
            c.push(format!("{at}: names unknown unit model {:?}", t.unit_model));
            return None;
        };
        for r in &t.hw_revisions {
            if !um.hw_revisions.is_empty() && !um.hw_revisions.contains(r) {
                c.push(format!(
                    "{at}: unit model {:?} has no hardware revision {r:?} (it has {})",
                    t.unit_model,
                    um.hw_revisions.join(", ")
                ));
            }
        }
        Some(Target {
            unit_model: vocab.intern(&t.unit_model),
            hw_revisions: t.hw_revisions.iter().map(|r| vocab.intern(r)).collect(),
        })
    };

    let mut products: FxHashMap<Sym, Product> = FxHashMap::default();
    for p in &doc.product {
        let at = format!("product {:?}", p.name);
        c.name(&at, "maker", &p.maker);
        if p.runs_on.is_empty() {
            c.push(format!("{at}: runs_on is empty: it runs on no unit model"));
        }
        let runs_on = p
            .runs_on
            .iter()
            .filter_map(|t| check_target(&mut c, &format!("{at}: runs_on"), t))
            .collect();
        products.insert(
            vocab.intern(&p.name),
            Product {
                name: vocab.intern(&p.name),
                maker: vocab.intern(&p.maker),
                runs_on,
                releases: Vec::new(),
            },
        );
    }

    // Releases: versions, targets within the product's, constraints.
    let mut parsed: Vec<Option<Version>> = Vec::with_capacity(doc.release.len());
    let mut seen_release = BTreeSet::new();
    for r in &doc.release {
        let at = format!("release {} {}", r.product, r.version);
        let v = match Version::parse(&r.version) {
            Ok(v) => Some(v),
            Err(e) => {
                c.push(format!("release of {:?}: {e}", r.product));
                None
            }
        };
        if !product_names.contains_key(r.product.as_str()) {
            c.push(format!(
                "{at}: unknown product {:?}{}",
                r.product,
                did_you_mean(&r.product, product_names.keys().copied())
            ));
        }
        if !seen_release.insert((r.product.as_str(), r.version.as_str())) {
            c.push(format!("{at}: released twice"));
        }
        parsed.push(v);
    }
    // Versions of each product, to check that requirements can be met at all.
    let mut versions_of: BTreeMap<&str, Vec<Version>> = BTreeMap::new();
    for (r, v) in doc.release.iter().zip(&parsed) {
        if let Some(v) = v {
            versions_of
                .entry(r.product.as_str())
                .or_default()
                .push(v.clone());
        }
    }

    let mut releases = Vec::new();
    let mut release_index = FxHashMap::default();
    let mut rules = 0usize;
    for (r, v) in doc.release.iter().zip(parsed) {
        let at = format!("release {} {}", r.product, r.version);
        let product_doc = product_names.get(r.product.as_str());
        let targets: Vec<Target> = if r.targets.is_empty() {
            products
                .get(&vocab.intern(&r.product))
                .map(|p| p.runs_on.clone())
                .unwrap_or_default()
        } else {
            r.targets
                .iter()
                .filter_map(|t| {
                    let target = check_target(&mut c, &format!("{at}: targets"), t)?;
                    let within = product_doc.is_some_and(|pd| {
                        pd.runs_on.iter().any(|pt| {
                            pt.unit_model == t.unit_model
                                && (pt.hw_revisions.is_empty()
                                    || (!t.hw_revisions.is_empty()
                                        && t.hw_revisions
                                            .iter()
                                            .all(|h| pt.hw_revisions.contains(h))))
                        })
                    });
                    if product_doc.is_some() && !within {
                        c.push(format!(
                            "{at}: targets {:?}{}, which the product {:?} does not run on",
                            t.unit_model,
                            if t.hw_revisions.is_empty() {
                                String::new()
                            } else {
                                format!(" rev {}", t.hw_revisions.join(", "))
                            },
                            r.product
                        ));
                    }
                    Some(target)
                })
                .collect()
        };
        let constraints = |list: &[ConstraintDoc], what: &str, verb: &str, c: &mut Checker| {
            let mut out = Vec::new();
            for k in list {
                let here = format!("{at}: {what} {:?}", k.product);
                if k.product == r.product {
                    c.push(format!("{here}: a release cannot {verb} its own product"));
                    continue;
                }
                if !product_names.contains_key(k.product.as_str()) {
                    c.push(format!("{here}: unknown product"));
                    continue;
                }
                let range = match parse_range(&k.versions) {
                    Ok(range) => range,
                    Err(e) => {
                        c.push(format!("{here}: {e}"));
                        continue;
                    }
                };
                let scope = match k.unit.as_deref() {
                    None | Some("any") => Scope::AnyUnit,
                    Some("same") => Scope::SameUnit,
                    Some(kind) if kinds.contains(kind) => Scope::Kind(vocab.intern(kind)),
                    Some(other) => {
                        c.push(format!(
                            "{here}: unit {other:?} is neither \"same\", \"any\" nor a unit kind"
                        ));
                        continue;
                    }
                };
                if what == "requires"
                    && !versions_of
                        .get(k.product.as_str())
                        .is_some_and(|vs| vs.iter().any(|v| range.contains(v)))
                {
                    c.push(format!(
                        "{here}: no release of {:?} is {}: the requirement can never be met",
                        k.product,
                        describe_range(&range)
                    ));
                }
                out.push(Constraint {
                    product: vocab.intern(&k.product),
                    range,
                    scope,
                });
            }
            out
        };
        let requires = constraints(&r.requires, "requires", "require", &mut c);
        let conflicts = constraints(&r.conflicts, "conflicts with", "conflict with", &mut c);
        for q in &requires {
            for k in conflicts.iter().filter(|k| k.product == q.product) {
                let both = q.range.intersection(&k.range);
                if both == q.range {
                    c.push(format!(
                        "{at}: requires {} {} and conflicts with all of it",
                        vocab.resolve(q.product),
                        q.describe()
                    ));
                }
            }
        }
        rules += targets.len() + requires.len() + conflicts.len();
        let Some(version) = v else { continue };
        let id = ReleaseId(u32::try_from(releases.len()).expect("fewer than 4 billion releases"));
        let product = vocab.intern(&r.product);
        let version_sym = vocab.intern(&r.version);
        release_index.insert((product, version_sym), id);
        releases.push(Release {
            product,
            version,
            version_sym,
            counter: r.counter,
            targets,
            requires,
            conflicts,
            switchable: r.switchable,
            notes: r.notes.clone(),
        });
    }

    // Each product's releases, oldest first; release counters never go down as versions go up.
    for (i, rel) in releases.iter().enumerate() {
        if let Some(p) = products.get_mut(&rel.product) {
            p.releases.push(ReleaseId(i as u32));
        }
    }
    for p in products.values_mut() {
        p.releases.sort_by(|a, b| {
            releases[a.0 as usize]
                .version
                .cmp(&releases[b.0 as usize].version)
        });
        let mut last: Option<(&Version, u64)> = None;
        for id in &p.releases {
            let rel = &releases[id.0 as usize];
            if let Some(counter) = rel.counter {
                if let Some((lv, lc)) = last
                    && counter < lc
                {
                    c.push(format!(
                        "release {} {}: release counter {counter} is lower than {lc} of the older {lv}",
                        vocab.resolve(p.name),
                        rel.version
                    ));
                }
                last = Some((&rel.version, counter));
            }
        }
    }

    if !c.problems.is_empty() {
        return Err(CatalogError {
            problems: c.problems,
        });
    }
    for u in unit_models.values() {
        rules += u.accepted_by.len() + u.not_with.len();
    }
    let stats = CatalogStats {
        device_models: device_models.len(),
        unit_models: unit_models.len(),
        products: products.len(),
        releases: releases.len(),
        rules,
    };
    Ok(Catalog {
        vocab: vocab.clone(),
        title: doc.title,
        device_models,
        unit_models,
        products,
        releases,
        release_index,
        stats,
    })
}
