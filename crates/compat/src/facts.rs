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
