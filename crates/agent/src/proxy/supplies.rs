//! A printer's supplies as the Printer MIB (`prtMarkerSuppliesTable`, RFC 3805) and IPP
//! (`printer-supply`, PWG 5100.13) describe them, made into the wire's [`Supply`]: kind from
//! the supply type, level in percent from level and capacity with the MIB's special values
//! (−1 other, −2 unknown, −3 "some remains"), colour from the colorant, and part and serial
//! numbers from descriptions such as "Black Toner, PN 006R01509;SN 2BCB0A0A". Pure; every
//! value is untrusted and cut to the wire's limits.

use std::collections::BTreeSet;

use fleetcare_core::limits::MAX_SUPPLIES;
use fleetcare_wire::{Supply, SupplyKind, SupplyState};

use super::facts::{clean, slug};

/// One supply as the printer tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupplyRow {
    pub index: i64,
    /// `prtMarkerSuppliesClass`: 3 consumed (toner), 4 filled (a waste receptacle).
    pub class: Option<i64>,
    /// The supply type's name (`toner`, `opc`, `wasteToner`, …).
    pub kind: String,
    pub description: Option<String>,
    /// Capacity and level in the supply's own unit; negative: the MIB's special values.
    pub max: Option<i64>,
    pub level: Option<i64>,
    /// `percent` when the printer says the unit is percent.
    pub percent: bool,
    pub colorant: Option<String>,
}

/// `PrtMarkerSuppliesTypeTC` by number.
pub const MIB_TYPES: &[(i64, &str)] = &[
    (1, "other"),
    (2, "unknown"),
    (3, "toner"),
    (4, "wasteToner"),
    (5, "ink"),
    (6, "inkCartridge"),
    (7, "inkRibbon"),
    (8, "wasteInk"),
    (9, "opc"),
    (10, "developer"),
    (11, "fuserOil"),
    (12, "solidWax"),
    (13, "ribbonWax"),
    (14, "wasteWax"),
    (15, "fuser"),
    (16, "coronaWire"),
    (17, "fuserOilWick"),
    (18, "cleanerUnit"),
    (19, "fuserCleaningPad"),
    (20, "transferUnit"),
    (21, "tonerCartridge"),
    (22, "fuserOiler"),
    (23, "water"),
    (24, "wasteWater"),
    (25, "glueWaterAdditive"),
    (26, "wastePaper"),
    (27, "bindingSupply"),
    (28, "bandingSupply"),
    (29, "stitchingWire"),
    (30, "shrinkWrap"),
    (31, "paperWrap"),
    (32, "staples"),
    (33, "inserts"),
    (34, "covers"),
];

fn kind_of(t: &str) -> SupplyKind {
    match t.to_ascii_lowercase().as_str() {
        "toner" | "tonercartridge" => SupplyKind::Toner,
        "ink" | "inkcartridge" | "inkribbon" | "solidwax" | "ribbonwax" => SupplyKind::Ink,
        "opc" | "drum" => SupplyKind::Drum,
        "developer" => SupplyKind::Developer,
        "fuser" | "fuseroil" | "fuseroiler" | "fuseroilwick" | "fusercleaningpad" => {
            SupplyKind::Fuser
        }
        "transferunit" | "coronawire" => SupplyKind::Transfer,
        "wastetoner" | "wasteink" | "wastewax" | "wastewater" | "wastepaper" => SupplyKind::Waste,
        "staples" | "stitchingwire" => SupplyKind::Staples,
        _ => SupplyKind::Other,
    }
}

/// The token after one of `markers` in `text` (`PN 123`, `P/N: 123`, `SN2BCB…`).
fn after_marker(text: &str, markers: &[&str]) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    for m in markers {
        let mut from = 0;
        while let Some(at) = upper[from..].find(m) {
            let start = from + at;
            from = start + m.len();
            // A marker starts a word: at the beginning, or after a space or punctuation.
            let before = upper[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let rest = text[start + m.len()..].trim_start_matches([' ', ':', '#', '.', '=']);
            let token: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                .collect();
            let token = token.trim_end_matches(['.', '/']).to_owned();
            if token.len() >= 3 && token.chars().any(|c| c.is_ascii_digit()) {
                return Some(clean(&token));
            }
        }
    }
    None
}

/// Part and serial numbers in a supply's description, where it gives them.
pub fn part_and_serial(description: &str) -> (Option<String>, Option<String>) {
    (
        after_marker(description, &["PART NUMBER", "PART NO", "P/N", "PN"]),
        after_marker(description, &["SERIAL NUMBER", "SERIAL NO", "S/N", "SN"]),
    )
}

/// The wire's supplies from what the printer says: each slot once, at most [`MAX_SUPPLIES`].
pub fn supplies(rows: &[SupplyRow]) -> Vec<Supply> {
    let mut slots = BTreeSet::new();
    let mut out = Vec::new();
    for r in rows.iter().take(MAX_SUPPLIES) {
        let kind = kind_of(&r.kind);
        let color = r
            .colorant
            .as_deref()
            .map(clean)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("unknown"));
        let base = match &color {
            Some(c) => format!("{}.{}", kind.as_str(), slug(c)),
            None => format!("{}.{}", kind.as_str(), r.index),
        };
        let mut slot = clean(&base);
        if !slots.insert(slot.clone()) {
            slot = clean(&format!("{base}.{}", r.index));
            if !slots.insert(slot.clone()) {
                continue;
            }
        }
        let max = r.max.filter(|m| *m > 0);
        let level = r
            .level
            .filter(|l| *l >= 0)
            .map(|l| max.map_or(l, |m| l.min(m)));
        let level_pct = match (level, max) {
            (Some(l), Some(m)) => Some((l as f64 * 1000.0 / m as f64).round() / 10.0),
            (Some(l), None) if r.percent => Some(l.min(100) as f64),
            _ => None,
        };
        let filled = r.class == Some(4) || kind == SupplyKind::Waste;
        let state = match (level_pct, r.level) {
            (Some(p), _) if filled => {
                if p >= 100.0 {
                    SupplyState::Empty
                } else if p >= 90.0 {
                    SupplyState::Low
                } else {
                    SupplyState::Ok
                }
            }
            (Some(p), _) if p <= 0.0 => SupplyState::Empty,
            (Some(p), _) if p <= 10.0 => SupplyState::Low,
            (Some(_), _) | (None, Some(-3)) => SupplyState::Ok,
            _ => SupplyState::Unknown,
        };
        let (part_number, serial) = r
            .description
            .as_deref()
            .map_or((None, None), part_and_serial);
        out.push(Supply {
            slot,
            kind,
            color,
            level_pct,
            level,
            max,
            part_number,
            serial,
            state,
        });
    }
    out
}

/// An IPP `printer-supply` value (`type=toner;maxcapacity=100;level=40;…`) and its
/// `printer-supply-description`, as a row.
pub fn ipp_row(position: usize, value: &str, description: Option<&str>) -> SupplyRow {
    let mut r = SupplyRow {
        index: i64::try_from(position + 1).unwrap_or(i64::MAX),
        description: description.map(str::to_owned),
        ..SupplyRow::default()
    };
    for field in value.split(';') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "type" => r.kind = v.to_owned(),
            "maxcapacity" => r.max = v.parse().ok(),
            "level" => r.level = v.parse().ok(),
            "index" => r.index = v.parse().unwrap_or(r.index),
            "class" => {
                r.class = Some(if v.eq_ignore_ascii_case("receptacleThatIsFilled") {
                    4
                } else {
                    3
                });
            }
            "unit" => r.percent = v.eq_ignore_ascii_case("percent"),
            "colorantname" => r.colorant = Some(v.to_owned()),
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: i64, kind: &str, color: Option<&str>, max: i64, level: i64) -> SupplyRow {
        SupplyRow {
            index,
            class: Some(if kind.starts_with("waste") { 4 } else { 3 }),
            kind: kind.into(),
            colorant: color.map(str::to_owned),
            max: Some(max),
            level: Some(level),
            ..SupplyRow::default()
        }
    }

    #[test]
    fn levels_kinds_colours_and_special_values() {
        let s = supplies(&[
            row(1, "toner", Some("black"), 20000, 3000),
            row(2, "toner", Some("cyan"), 100, 0),
            row(3, "opc", Some("black"), 100, -3),
            row(4, "wasteToner", None, 100, 95),
            row(5, "fuser", None, -2, -2),
            row(6, "toner", Some("black"), 100, 50),
        ]);
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.slot.as_str(), s.kind, s.level_pct, s.state))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "toner.black",
                    SupplyKind::Toner,
                    Some(15.0),
                    SupplyState::Ok
                ),
                (
                    "toner.cyan",
                    SupplyKind::Toner,
                    Some(0.0),
                    SupplyState::Empty
                ),
                ("drum.black", SupplyKind::Drum, None, SupplyState::Ok),
                ("waste.4", SupplyKind::Waste, Some(95.0), SupplyState::Low),
                ("fuser.5", SupplyKind::Fuser, None, SupplyState::Unknown),
                (
                    "toner.black.6",
                    SupplyKind::Toner,
                    Some(50.0),
                    SupplyState::Ok
                ),
            ]
        );
        assert!(fleetcare_core::structure::check_supplies(&s).is_ok());
    }

    #[test]
    fn part_and_serial_numbers_from_descriptions() {
        for (text, part, serial) in [
            (
                "Black Toner Cartridge, PN 006R01509;SN 2BCB0A0A4A000A2F",
                Some("006R01509"),
                Some("2BCB0A0A4A000A2F"),
            ),
            ("Cyan Toner;SN2BCB0A0A5B", None, Some("2BCB0A0A5B")),
            (
                "Drum Unit P/N: DR-2400 S/N: E73512K9",
                Some("DR-2400"),
                Some("E73512K9"),
            ),
            ("Black Cartridge HP CF410A", None, None),
            ("Snapshot toner", None, None),
        ] {
            assert_eq!(
                part_and_serial(text),
                (part.map(str::to_owned), serial.map(str::to_owned)),
                "{text}"
            );
        }
    }

    #[test]
    fn ipp_supply_values_read_as_rows() {
        let r = ipp_row(
            0,
            "index=1;class=supplyThatIsConsumed;type=tonerCartridge;unit=percent;maxcapacity=100;level=40;colorantname=magenta;",
            Some("Magenta Toner PN TN-45M"),
        );
        let s = supplies(&[r]);
        assert_eq!(
            (
                s[0].slot.as_str(),
                s[0].level_pct,
                s[0].part_number.as_deref()
            ),
            ("toner.magenta", Some(40.0), Some("TN-45M"))
        );
    }
}
