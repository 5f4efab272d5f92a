//! The vocabulary: strings (model, kind, revision, product, maker, version, slot names) as small
//! integer symbols, so that judging a device is lookups by integer, not by string.
//!
//! Catalogs add their names when they are compiled ([`Vocab::intern`]); device facts only look
//! names up ([`Vocab::get`]) and keep a name the vocabulary does not know as a string of their
//! own (it is unknown to every catalog anyway), so devices cannot grow the vocabulary — except
//! slot names, which are interned up to [`MAX_DEVICE_SYMBOLS`] ([`Vocab::device_sym`]).

use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

/// A string in the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

/// Symbols devices may add (slot names); beyond it their names stay strings.
pub const MAX_DEVICE_SYMBOLS: usize = 100_000;

#[derive(Debug, Default)]
struct Table {
    ids: FxHashMap<Arc<str>, Sym>,
    names: Vec<Arc<str>>,
    device_added: usize,
}

/// A shared vocabulary; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Vocab(Arc<RwLock<Table>>);

/// A name in device facts: a vocabulary symbol, or — for a string no catalog knows — an index
/// into the facts' own strings (see [`crate::facts::DeviceFacts::text`]). Four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name(u32);

const LOCAL: u32 = 1 << 31;

impl Name {
    /// The name of a symbol.
    pub fn of(sym: Sym) -> Name {
        Name(sym.0)
    }

    /// The name of the facts' own string number `i`.
    pub(crate) fn local(i: usize) -> Name {
        Name(LOCAL | u32::try_from(i).expect("fewer than 2^31 strings"))
    }

    /// The symbol, if the vocabulary holds the name.
    pub fn sym(self) -> Option<Sym> {
        (self.0 & LOCAL == 0).then_some(Sym(self.0))
    }

    pub(crate) fn local_index(self) -> Option<usize> {
        (self.0 & LOCAL != 0).then_some((self.0 & !LOCAL) as usize)
    }
}

impl From<Sym> for Name {
    fn from(s: Sym) -> Name {
        Name::of(s)
    }
}

impl Vocab {
    pub fn new() -> Vocab {
        Vocab::default()
    }

    /// The symbol for `s`, adding it if new.
    pub fn intern(&self, s: &str) -> Sym {
        if let Some(sym) = self.get(s) {
            return sym;
        }
        let mut t = self.0.write().expect("vocabulary");
        Self::add(&mut t, s)
    }

    fn add(t: &mut Table, s: &str) -> Sym {
        if let Some(&sym) = t.ids.get(s) {
            return sym;
        }
        let n = u32::try_from(t.names.len()).expect("fewer than 2^31 names");
        assert!(n < LOCAL, "fewer than 2^31 names");
        let sym = Sym(n);
        let name: Arc<str> = Arc::from(s);
        t.names.push(name.clone());
        t.ids.insert(name, sym);
        sym
    }

    /// The symbol for `s`, if the vocabulary holds it.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.0.read().expect("vocabulary").ids.get(s).copied()
    }

    /// The symbol for `s`, adding it while devices have added fewer than
    /// [`MAX_DEVICE_SYMBOLS`] names (for slot names, a small set in practice).
    pub fn device_sym(&self, s: &str) -> Option<Sym> {
        if let Some(sym) = self.get(s) {
            return Some(sym);
        }
        let mut t = self.0.write().expect("vocabulary");
        if let Some(&sym) = t.ids.get(s) {
            return Some(sym);
        }
        if t.device_added >= MAX_DEVICE_SYMBOLS {
            return None;
        }
        t.device_added += 1;
        Some(Self::add(&mut t, s))
    }

    /// The string of a symbol.
    pub fn resolve(&self, sym: Sym) -> Arc<str> {
        self.0.read().expect("vocabulary").names[sym.0 as usize].clone()
    }

    pub fn len(&self) -> usize {
        self.0.read().expect("vocabulary").names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Look up many names under one lock: `f` gets a lookup function.
    pub fn with_lookup<T>(&self, f: impl FnOnce(&dyn Fn(&str) -> Option<Sym>) -> T) -> T {
        let t = self.0.read().expect("vocabulary");
        f(&|s| t.ids.get(s).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_devices_cannot_grow_it_without_bound() {
        let v = Vocab::new();
        let a = v.intern("ctl-x2");
        assert_eq!(v.intern("ctl-x2"), a);
        assert_eq!(&*v.resolve(a), "ctl-x2");
        assert_eq!(Name::of(a).sym(), Some(a));
        assert_eq!(Name::local(3).sym(), None);
        assert_eq!(Name::local(3).local_index(), Some(3));
        assert_eq!(v.get("nope"), None, "looking up adds nothing");
        let slot = v.device_sym("tray-1");
        assert!(slot.is_some());
        assert_eq!(v.device_sym("tray-1"), slot);
    }
}
