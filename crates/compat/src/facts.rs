//! A device's structure in compact, interned form: what judgement reads and what the fleet
//! index keeps for every device (about half a kilobyte for ten units).

use fleetcare_wire::Unit;

use crate::vocab::{Name, Vocab};

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
}

impl DeviceFacts {
    /// Facts of a validated structure (units in slot order).
    pub fn new<'a>(vocab: &Vocab, model: &str, units: impl IntoIterator<Item = &'a Unit>) -> Self {
        let mut facts = DeviceFacts {
            model: vocab.name(model),
            units: Vec::new(),
            software: Vec::new(),
        };
        for (i, u) in units.into_iter().enumerate() {
            let index = u16::try_from(i).expect("a structure has at most 64 units");
            facts.units.push(UnitFacts {
                slot: vocab.device_name(&u.slot),
                kind: vocab.name(&u.kind),
                model: vocab.name(&u.model),
                hw_revision: (!u.hw_revision.is_empty()).then(|| vocab.name(&u.hw_revision)),
                in_service: u.in_service,
            });
            for s in &u.software {
                facts.software.push(SoftwareFacts {
                    unit: index,
                    product: vocab.name(&s.product),
                    maker: vocab.name(&s.maker),
                    version: Some(vocab.name(&s.version)),
                    active: s.active,
                });
            }
        }
        facts
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
