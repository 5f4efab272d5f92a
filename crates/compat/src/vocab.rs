//! The vocabulary: strings (model, kind, revision, product, maker, version, slot names) as small
//! integer symbols, so that judging a device is lookups by integer, not by string.
//!
//! Catalogs add their names when they are compiled ([`Vocab::intern`]); device facts only look
//! names up ([`Vocab::get`]) and keep a name the vocabulary does not know as a string of its own
//! (it is unknown to every catalog anyway), so devices cannot grow the vocabulary — except slot
//! names, which are interned up to [`MAX_DEVICE_SYMBOLS`] and kept as strings beyond it.

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

/// A name that is a symbol, or a string the vocabulary does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    Sym(Sym),
    Other(Box<str>),
}

impl Name {
    pub fn sym(&self) -> Option<Sym> {
        match self {
            Name::Sym(s) => Some(*s),
            Name::Other(_) => None,
        }
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
        let sym = Sym(u32::try_from(t.names.len()).expect("fewer than 4 billion names"));
        let name: Arc<str> = Arc::from(s);
        t.names.push(name.clone());
        t.ids.insert(name, sym);
        sym
    }

    /// The symbol for `s`, if the vocabulary holds it.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.0.read().expect("vocabulary").ids.get(s).copied()
    }

    /// `s` as a [`Name`]: its symbol if known.
    pub fn name(&self, s: &str) -> Name {
        match self.get(s) {
            Some(sym) => Name::Sym(sym),
            None => Name::Other(s.into()),
        }
    }

    /// `s` as a [`Name`], adding it to the vocabulary while devices have added fewer than
    /// [`MAX_DEVICE_SYMBOLS`] names (for slot names, a small set in practice).
    pub fn device_name(&self, s: &str) -> Name {
        if let Some(sym) = self.get(s) {
            return Name::Sym(sym);
        }
        let mut t = self.0.write().expect("vocabulary");
        if let Some(&sym) = t.ids.get(s) {
            return Name::Sym(sym);
        }
        if t.device_added >= MAX_DEVICE_SYMBOLS {
            return Name::Other(s.into());
        }
        t.device_added += 1;
        Name::Sym(Self::add(&mut t, s))
    }

    /// The string of a symbol.
    pub fn resolve(&self, sym: Sym) -> Arc<str> {
        self.0.read().expect("vocabulary").names[sym.0 as usize].clone()
    }

    /// The string of a name.
    pub fn text(&self, name: &Name) -> Arc<str> {
        match name {
            Name::Sym(s) => self.resolve(*s),
            Name::Other(s) => Arc::from(&**s),
        }
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
        assert_eq!(v.name("ctl-x2"), Name::Sym(a));
        assert_eq!(v.name("nope"), Name::Other("nope".into()));
        assert_eq!(v.get("nope"), None, "looking up adds nothing");
        let slot = v.device_name("tray-1");
        assert!(slot.sym().is_some());
        assert_eq!(v.device_name("tray-1"), slot);
    }
}
