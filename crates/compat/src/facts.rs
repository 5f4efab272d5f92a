//! A device's structure in compact, interned form: what judgement reads and what the fleet
//! index keeps for every device (every name four bytes; about 600 bytes for ten units).

use fleetcare_wire::Unit;

use crate::vocab::{Name, Sym, Vocab};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFacts {
    pub slot: Name,
    pub kind: Name,
    pub model: Name,
    /// `None` when the device reports no revision.
    pub hw_revision: Option<Name>,
    pub in_service: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareFacts {
    /// Index into [`DeviceFacts::units`].
    pub unit: u16,
    pub product: Name,
    pub maker: Name,
    /// `None` for software a replacement unit will carry, its version still to be chosen.
    pub version: Option<Name>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub model: Name,
    pub units: Vec<UnitFacts>,
    pub software: Vec<SoftwareFacts>,
    /// The strings of names the vocabulary does not hold.
    others: Vec<Box<str>>,
}

impl DeviceFacts {
    /// Facts of a validated structure (units in slot order).
    pub fn new<'a>(vocab: &Vocab, model: &str, units: impl IntoIterator<Item = &'a Unit>) -> Self {
        let units: Vec<&Unit> = units.into_iter().collect();
        // Slot names may be added to the vocabulary (under its write lock), so first.
        let slots: Vec<Option<Sym>> = units.iter().map(|u| vocab.device_sym(&u.slot)).collect();
        let mut others = Vec::new();
        let mut facts = vocab.with_lookup(|get| {
            let mut name = |s: &str| match get(s) {
                Some(sym) => Name::of(sym),
                None => {
                    others.push(Box::from(s));
                    Name::local(others.len() - 1)
                }
            };
            let mut facts = DeviceFacts {
                model: name(model),
                units: Vec::with_capacity(units.len()),
                software: Vec::with_capacity(units.iter().map(|u| u.software.len()).sum()),
                others: Vec::new(),
            };
            for (i, u) in units.iter().enumerate() {
                let index = u16::try_from(i).expect("a structure has at most 64 units");
                let slot = match slots[i] {
                    Some(sym) => Name::of(sym),
                    None => name(&u.slot),
                };
                facts.units.push(UnitFacts {
                    slot,
                    kind: name(&u.kind),
                    model: name(&u.model),
                    hw_revision: (!u.hw_revision.is_empty()).then(|| name(&u.hw_revision)),
                    in_service: u.in_service,
                });
                for s in &u.software {
                    facts.software.push(SoftwareFacts {
                        unit: index,
                        product: name(&s.product),
                        maker: name(&s.maker),
                        version: Some(name(&s.version)),
                        active: s.active,
                    });
                }
            }
            facts
        });
        facts.others = others;
        facts
    }

    /// Some names are the facts' own strings: the vocabulary did not hold them when the facts
    /// were made.
    pub fn has_local_names(&self) -> bool {
        !self.others.is_empty()
    }

    /// The same facts with every name the vocabulary has learned since they were made (a
    /// catalog revision added it) as its symbol, so that judgement sees it as the catalog
    /// defines it; `None` when the vocabulary still knows none of the facts' own strings.
    /// Symbols never go away, so a name a later revision drops stays a symbol that revision
    /// does not know, which judgement reports as unknown.
    pub fn relinked(&self, vocab: &Vocab) -> Option<DeviceFacts> {
        if self.others.is_empty() {
            return None;
        }
        let found: Vec<Option<Sym>> =
            vocab.with_lookup(|get| self.others.iter().map(|s| get(s)).collect());
        if found.iter().all(Option::is_none) {
            return None;
        }
        // Old local index → new name; the strings still unknown keep their order.
        let mut others = Vec::new();
        let map: Vec<Name> = found
            .iter()
            .zip(&self.others)
            .map(|(sym, s)| match sym {
                Some(sym) => Name::of(*sym),
                None => {
                    others.push(s.clone());
                    Name::local(others.len() - 1)
                }
            })
            .collect();
        let name = |n: Name| n.local_index().map_or(n, |i| map[i]);
        Some(DeviceFacts {
            model: name(self.model),
            units: self
                .units
                .iter()
                .map(|u| UnitFacts {
                    slot: name(u.slot),
                    kind: name(u.kind),
                    model: name(u.model),
                    hw_revision: u.hw_revision.map(name),
                    in_service: u.in_service,
                })
                .collect(),
            software: self
                .software
                .iter()
                .map(|s| SoftwareFacts {
                    product: name(s.product),
                    maker: name(s.maker),
                    version: s.version.map(name),
                    ..*s
                })
                .collect(),
            others,
        })
    }

    /// The string of a name of these facts.
    pub fn text(&self, vocab: &Vocab, name: &Name) -> std::sync::Arc<str> {
        match (name.sym(), name.local_index()) {
            (Some(sym), _) => vocab.resolve(sym),
            (None, Some(i)) => std::sync::Arc::from(&*self.others[i]),
            (None, None) => std::sync::Arc::from(""),
        }
    }

    /// Active software on units in service: what compatibility is judged on.
    pub fn live_software(&self) -> impl Iterator<Item = (usize, &SoftwareFacts)> {
        self.software
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active && self.units[s.unit as usize].in_service)
    }

    /// The inactive copy of `product` on `unit`, if any.
    pub fn inactive_copy(&self, unit: u16, product: &Name) -> Option<&SoftwareFacts> {
        self.software
            .iter()
            .find(|s| s.unit == unit && !s.active && &s.product == product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetcare_wire::Software;

    fn unit(slot: &str, model: &str, product: &str) -> Unit {
        Unit {
            slot: slot.into(),
            kind: slot.into(),
            model: model.into(),
            serial: format!("{slot}-1"),
            hw_revision: "B".into(),
            software: vec![Software {
                product: product.into(),
                maker: "acme".into(),
                version: "1.0".into(),
                active: true,
            }],
            in_service: true,
        }
    }

    #[test]
    fn names_a_catalog_learned_later_become_symbols_and_the_rest_stay_local() {
        let vocab = Vocab::new();
        vocab.intern("acme");
        let units = [
            unit("controller", "ctl-x2", "fw"),
            unit("engine", "eng-9", "efw"),
        ];
        let facts = DeviceFacts::new(&vocab, "mfp", &units);
        assert!(facts.has_local_names());
        assert!(facts.units[0].model.sym().is_none());
        assert!(facts.relinked(&vocab).is_none(), "nothing new was learned");

        // A revision adds the device model and the controller's model, not the engine's.
        let (mfp, ctl) = (vocab.intern("mfp"), vocab.intern("ctl-x2"));
        let after = facts.relinked(&vocab).expect("two names learned");
        assert_eq!(after.model, Name::of(mfp));
        assert_eq!(after.units[0].model, Name::of(ctl));
        assert!(
            after.units[1].model.sym().is_none(),
            "eng-9 is still unknown"
        );
        for (old, new) in facts.units.iter().zip(&after.units) {
            assert_eq!(
                facts.text(&vocab, &old.model),
                after.text(&vocab, &new.model)
            );
            assert_eq!(facts.text(&vocab, &old.kind), after.text(&vocab, &new.kind));
        }
        for (old, new) in facts.software.iter().zip(&after.software) {
            assert_eq!(
                facts.text(&vocab, &old.product),
                after.text(&vocab, &new.product)
            );
            assert_eq!(
                facts.text(&vocab, old.version.as_ref().expect("version")),
                after.text(&vocab, new.version.as_ref().expect("version"))
            );
        }
        // The same as facts made from scratch now.
        assert_eq!(after, DeviceFacts::new(&vocab, "mfp", &units));
    }
}
