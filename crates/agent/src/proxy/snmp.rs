//! Reading a printer over SNMP v2c: the Printer MIB (RFC 3805: `prtGeneralSerialNumber`,
//! `prtAlertTable`, `prtMarkerLifeCount`) and HOST-RESOURCES-MIB (`hrDeviceTable`), walked with
//! GETBULK, bounded in requests, rows and time. Blocking (UDP with a timeout): run it on a
//! blocking thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use snmp2::{Oid, SyncSession, Value};

use super::facts::{Alert, HrDevice, PrinterFacts};
use super::profile::Profile;
use super::supplies::{MIB_TYPES, SupplyRow};
use fleetcare_wire::errors::PrinterAlert;

/// Variables read from one table at most.
const MAX_VARBINDS: usize = 4096;
/// GETBULK repetitions per request.
const REPETITIONS: u32 = 24;

const SYS_DESCR: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 1];
const SYS_OBJECT_ID: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 2];
const HR_DEVICE_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 3, 2, 1];
const PRT_GENERAL_SERIAL: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17];
const PRT_MARKER_LIFE_COUNT: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4];
const PRT_ALERT_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 18, 1, 1];
const PRT_MARKER_SUPPLIES_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 11, 1, 1];
const PRT_MARKER_COLORANT_VALUE: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 12, 1, 1, 4];

#[derive(Debug, thiserror::Error)]
#[error("SNMP {target}: {detail}")]
pub struct SnmpError {
    pub target: String,
    pub detail: String,
}

/// A value as the proxy keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Oid(Vec<u64>),
    Other,
}

/// An SNMP value as the tables read it.
pub fn val(v: &Value<'_>) -> Val {
    match v {
        Value::Integer(i) => Val::Int(*i),
        Value::Counter32(i) | Value::Unsigned32(i) | Value::Timeticks(i) => Val::Int(i64::from(*i)),
        Value::Counter64(i) => Val::Int(i64::try_from(*i).unwrap_or(i64::MAX)),
        Value::OctetString(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
        Value::ObjectIdentifier(o) => Val::Oid(o.iter().map(|i| i.collect()).unwrap_or_default()),
        _ => Val::Other,
    }
}

/// Walk the subtree under `prefix`: (the arcs after the prefix, value), in order.
fn walk(
    s: &mut SyncSession,
    target: &str,
    prefix: &[u64],
    deadline: Instant,
) -> Result<Vec<(Vec<u64>, Val)>, SnmpError> {
    let err = |detail: String| SnmpError {
        target: target.to_owned(),
        detail,
    };
    let mut out = Vec::new();
    let mut cur: Vec<u64> = prefix.to_vec();
    while out.len() < MAX_VARBINDS {
        if Instant::now() > deadline {
            return Err(err("no complete answer in time".into()));
        }
        let oid = Oid::from(&cur).map_err(|e| err(format!("{e:?}")))?;
        let pdu = s.getbulk(&[&oid], 0, REPETITIONS).map_err(|e| {
            err(format!(
                "{e} (is the community right, and the agent reachable?)"
            ))
        })?;
        if pdu.error_status != 0 {
            return Err(err(format!("error status {}", pdu.error_status)));
        }
        let mut advanced = false;
        for (name, v) in pdu.varbinds {
            if matches!(
                v,
                Value::EndOfMibView | Value::NoSuchObject | Value::NoSuchInstance
            ) {
                return Ok(out);
            }
            let arcs: Vec<u64> = name.iter().map(|i| i.collect()).unwrap_or_default();
            if !arcs.starts_with(prefix) {
                return Ok(out);
            }
            if arcs <= cur {
                // An agent that does not move forward would loop forever.
                return Err(err("the agent answered out of order".into()));
            }
            out.push((arcs[prefix.len()..].to_vec(), val(&v)));
            cur = arcs;
            advanced = true;
        }
        if !advanced {
            return Ok(out);
        }
    }
    Ok(out)
}

fn text(v: &Val) -> Option<String> {
    match v {
        Val::Text(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Val) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        _ => None,
    }
}

fn name(table: &[(i64, &str)], n: i64) -> String {
    table
        .iter()
        .find(|(k, _)| *k == n)
        .map_or_else(|| format!("code-{n}"), |(_, s)| (*s).to_owned())
}

const SEVERITY: &[(i64, &str)] = &[
    (1, "other"),
    (3, "critical"),
    (4, "warning"),
    (5, "warningBinaryChangeEvent"),
];
const TRAINING: &[(i64, &str)] = &[
    (1, "other"),
    (2, "unknown"),
    (3, "untrained"),
    (4, "trained"),
    (5, "fieldService"),
    (6, "management"),
    (7, "noInterventionRequired"),
];
const GROUP: &[(i64, &str)] = &[
    (1, "other"),
    (3, "hostResourcesMIBStorageTable"),
    (4, "hostResourcesMIBDeviceTable"),
    (5, "generalPrinter"),
    (6, "cover"),
    (7, "localization"),
    (8, "input"),
    (9, "output"),
    (10, "marker"),
    (11, "markerSupplies"),
    (12, "markerColorant"),
    (13, "mediaPath"),
    (14, "channel"),
    (15, "interpreter"),
    (16, "consoleDisplayBuffer"),
    (17, "consoleLights"),
    (18, "alert"),
    (30, "finDevice"),
    (31, "finSupply"),
];
/// `PrtAlertCodeTC` (IANA Printer MIB), the codes printers raise most.
const CODE: &[(i64, &str)] = &[
    (1, "other"),
    (2, "unknown"),
    (3, "coverOpen"),
    (4, "coverClosed"),
    (5, "interlockOpen"),
    (6, "interlockClosed"),
    (7, "configurationChange"),
    (8, "jam"),
    (9, "subunitMissing"),
    (10, "subunitLifeAlmostOver"),
    (11, "subunitLifeOver"),
    (12, "subunitAlmostEmpty"),
    (13, "subunitEmpty"),
    (14, "subunitAlmostFull"),
    (15, "subunitFull"),
    (16, "subunitNearLimit"),
    (17, "subunitAtLimit"),
    (18, "subunitOpened"),
    (19, "subunitClosed"),
    (22, "subunitOffline"),
    (29, "subunitRecoverableFailure"),
    (30, "subunitUnrecoverableFailure"),
    (33, "subunitMotorFailure"),
    (34, "subunitMemoryExhausted"),
    (35, "subunitUnderTemperature"),
    (36, "subunitOverTemperature"),
    (37, "subunitTimingFailure"),
    (38, "subunitThermistorFailure"),
    (501, "doorOpen"),
    (502, "doorClosed"),
    (503, "powerUp"),
    (504, "powerDown"),
    (801, "inputMediaTrayMissing"),
    (807, "inputMediaSupplyLow"),
    (808, "inputMediaSupplyEmpty"),
    (813, "inputCannotFeedSizeSelected"),
    (901, "outputMediaTrayMissing"),
    (902, "outputMediaTrayAlmostFull"),
    (903, "outputMediaTrayFull"),
    (1001, "markerFuserUnderTemperature"),
    (1002, "markerFuserOverTemperature"),
    (1003, "markerFuserTimingFailure"),
    (1004, "markerFuserThermistorFailure"),
    (1005, "markerAdjustingPrintQuality"),
    (1101, "markerTonerEmpty"),
    (1102, "markerInkEmpty"),
    (1104, "markerTonerAlmostEmpty"),
    (1105, "markerInkAlmostEmpty"),
    (1107, "markerWasteTonerReceptacleAlmostFull"),
    (1109, "markerWasteTonerReceptacleFull"),
    (1111, "markerOpcLifeAlmostOver"),
    (1112, "markerOpcLifeOver"),
    (1113, "markerDeveloperAlmostEmpty"),
    (1114, "markerDeveloperEmpty"),
    (1115, "markerTonerCartridgeMissing"),
    (1301, "mediaPathMediaTrayMissing"),
    (1302, "mediaPathMediaTrayAlmostFull"),
    (1303, "mediaPathMediaTrayFull"),
    (1304, "mediaPathCannotDuplexMediaSelected"),
    (1507, "interpreterResourceUnavailable"),
];

/// `prtMarkerSuppliesTable` rows (rest = `[column, hrDeviceIndex, index]`), with the colour of
/// each from `prtMarkerColorantValue` (rest = `[hrDeviceIndex, colorantIndex]`).
pub fn supply_rows(table: &[(Vec<u64>, Val)], colorants: &[(Vec<u64>, Val)]) -> Vec<SupplyRow> {
    let mut rows: BTreeMap<(u64, u64), SupplyRow> = BTreeMap::new();
    let mut colorant_of: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (rest, v) in table {
        let [col, dev, idx] = rest.as_slice() else {
            continue;
        };
        let r = rows.entry((*dev, *idx)).or_insert_with(|| SupplyRow {
            index: i64::try_from(*idx).unwrap_or(i64::MAX),
            ..SupplyRow::default()
        });
        match col {
            3 => {
                if let Some(c) = int(v).and_then(|c| u64::try_from(c).ok()) {
                    colorant_of.insert((*dev, *idx), c);
                }
            }
            4 => r.class = int(v),
            5 => r.kind = int(v).map(|t| name(MIB_TYPES, t)).unwrap_or_default(),
            6 => r.description = text(v).filter(|d| !d.trim().is_empty()),
            // 7: the unit; 19 is percent (`PrtMarkerSuppliesSupplyUnitTC`).
            7 => r.percent = int(v) == Some(19),
            8 => r.max = int(v),
            9 => r.level = int(v),
            _ => {}
        }
    }
    let colors: BTreeMap<(u64, u64), String> = colorants
        .iter()
        .filter_map(|(rest, v)| match rest.as_slice() {
            [dev, idx] => Some(((*dev, *idx), text(v)?)),
            _ => None,
        })
        .collect();
    rows.into_iter()
        .map(|((dev, idx), mut r)| {
            r.colorant = colorant_of
                .get(&(dev, idx))
                .and_then(|c| colors.get(&(dev, *c)))
                .cloned();
            r
        })
        .collect()
}

/// What the tables say, as facts (merged into the IPP facts by the caller, or alone for a
/// printer that speaks only SNMP).
pub fn facts_from(
    serial: &[(Vec<u64>, Val)],
    sys_descr: &[(Vec<u64>, Val)],
    hr: &[(Vec<u64>, Val)],
    alerts: &[(Vec<u64>, Val)],
    life: &[(Vec<u64>, Val)],
) -> PrinterFacts {
    // Tables: rest = [column, index…].
    let mut devices: BTreeMap<i64, HrDevice> = BTreeMap::new();
    for (rest, v) in hr {
        let (Some(&col), Some(&idx)) = (rest.first(), rest.get(1)) else {
            continue;
        };
        let idx = i64::try_from(idx).unwrap_or(i64::MAX);
        let d = devices.entry(idx).or_insert_with(|| HrDevice {
            index: idx,
            ..HrDevice::default()
        });
        match (col, v) {
            (2, Val::Oid(o)) => {
                d.kind = o.last().map_or(1, |k| i64::try_from(*k).unwrap_or(1));
            }
            (3, v) => d.descr = text(v).unwrap_or_default(),
            (5, v) => d.status = int(v),
            _ => {}
        }
    }
    let mut rows: BTreeMap<Vec<u64>, BTreeMap<u64, Val>> = BTreeMap::new();
    for (rest, v) in alerts {
        let Some((&col, index)) = rest.split_first() else {
            continue;
        };
        rows.entry(index.to_vec())
            .or_default()
            .insert(col, v.clone());
    }
    let alerts = rows
        .into_iter()
        .take(64)
        .map(|(index, cols)| {
            let get = |c: u64| cols.get(&c).and_then(int);
            let code = get(7).map(|c| name(CODE, c));
            let key = format!(
                "snmp:{}:{}",
                index
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
                code.as_deref().unwrap_or("")
            );
            Alert {
                key,
                alert: PrinterAlert {
                    severity_level: get(2).map(|s| name(SEVERITY, s)),
                    training_level: get(3).map(|s| name(TRAINING, s)),
                    group: get(4).map(|s| name(GROUP, s)),
                    group_index: get(5),
                    location: get(6),
                    code,
                },
                description: cols.get(&8).and_then(text).filter(|d| !d.is_empty()),
            }
        })
        .collect();
    let mut counters = BTreeMap::new();
    if let Some(pages) = life.first().and_then(|(_, v)| int(v)) {
        counters.insert("pages_total".to_owned(), pages as f64);
    }
    let hr_devices: Vec<HrDevice> = devices.into_values().take(32).collect();
    PrinterFacts {
        serial: serial
            .first()
            .and_then(|(_, v)| text(v))
            .filter(|s| !s.trim().is_empty()),
        make_and_model: hr_devices
            .iter()
            .find(|h| h.kind == 5 && !h.descr.is_empty())
            .map(|h| h.descr.clone())
            .or_else(|| sys_descr.first().and_then(|(_, v)| text(v))),
        hr_devices,
        alerts,
        counters,
        ..PrinterFacts::default()
    }
}

/// Read the printer at `target` (`host:port`) with `community`, within `timeout`.
/// Read the printer; `profiles`: the first that matches (by `sysObjectID`, or by what the
/// printer calls itself, or `make_and_model` from IPP) adds its vendor meters, firmware
/// components and host-resources rules.
pub fn query(
    target: &str,
    community: &str,
    timeout: Duration,
    profiles: &[Profile],
    make_and_model: Option<&str>,
) -> Result<PrinterFacts, SnmpError> {
    let err = |detail: String| SnmpError {
        target: target.to_owned(),
        detail,
    };
    let per_request = (timeout / 4).max(Duration::from_millis(200));
    let mut s = SyncSession::new_v2c(target, community.as_bytes(), Some(per_request), 1)
        .map_err(|e| err(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let serial = walk(&mut s, target, PRT_GENERAL_SERIAL, deadline)?;
    let descr = walk(&mut s, target, SYS_DESCR, deadline)?;
    let hr = walk(&mut s, target, HR_DEVICE_ENTRY, deadline)?;
    let alerts = walk(&mut s, target, PRT_ALERT_ENTRY, deadline)?;
    let life = walk(&mut s, target, PRT_MARKER_LIFE_COUNT, deadline)?;
    let supplies = walk(&mut s, target, PRT_MARKER_SUPPLIES_ENTRY, deadline)?;
    let colorants = walk(&mut s, target, PRT_MARKER_COLORANT_VALUE, deadline)?;
    if serial.is_empty() && hr.is_empty() && descr.is_empty() {
        return Err(err("the agent answers, but not with the Printer MIB".into()));
    }
    let mut facts = PrinterFacts {
        supply_rows: supply_rows(&supplies, &colorants),
        ..facts_from(&serial, &descr, &hr, &alerts, &life)
    };
    let object_id = walk(&mut s, target, SYS_OBJECT_ID, deadline)?
        .into_iter()
        .find_map(|(_, v)| match v {
            Val::Oid(o) => Some(o),
            _ => None,
        });
    let sys_descr = descr.first().and_then(|(_, v)| text(v));
    let name = make_and_model
        .or(facts.make_and_model.as_deref())
        .map(str::to_owned);
    if let Some(p) = profiles
        .iter()
        .find(|p| p.applies(object_id.as_deref(), name.as_deref()))
    {
        let meters = get_many(&mut s, target, &p.meter_oids(), deadline)?;
        p.apply(&mut facts, sys_descr.as_deref(), &meters);
    }
    Ok(facts)
}

/// GET the given OIDs (16 to a request): the integer values there are.
fn get_many(
    s: &mut SyncSession,
    target: &str,
    oids: &[(Vec<u64>, String)],
    deadline: Instant,
) -> Result<BTreeMap<Vec<u64>, i64>, SnmpError> {
    let err = |detail: String| SnmpError {
        target: target.to_owned(),
        detail,
    };
    let mut out = BTreeMap::new();
    for chunk in oids.chunks(16) {
        if Instant::now() > deadline {
            return Err(err("no complete answer in time".into()));
        }
        let owned: Vec<Oid<'static>> = chunk
            .iter()
            .map(|(o, _)| Oid::from(o).map_err(|e| err(format!("{e:?}"))))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Oid<'_>> = owned.iter().collect();
        let pdu = s
            .get_many(&refs)
            .map_err(|e| err(format!("{e} (reading the profile's meters)")))?;
        for (name, v) in pdu.varbinds {
            if let Val::Int(i) = val(&v) {
                out.insert(name.iter().map(|i| i.collect()).unwrap_or_default(), i);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_become_units_alerts_and_counters() {
        let f = facts_from(
            &[(vec![1], Val::Text("SNMP-PR-42".into()))],
            &[(vec![0], Val::Text("Acme Laser 5".into()))],
            &[
                (vec![2, 1], Val::Oid(vec![1, 3, 6, 1, 2, 1, 25, 3, 1, 5])),
                (vec![2, 2], Val::Oid(vec![1, 3, 6, 1, 2, 1, 25, 3, 1, 3])),
                (vec![3, 1], Val::Text("Acme Laser 5 Printer".into())),
                (vec![3, 2], Val::Text("Controller CPU".into())),
                (vec![5, 1], Val::Int(2)),
            ],
            &[
                (vec![2, 1, 7], Val::Int(3)),
                (vec![4, 1, 7], Val::Int(13)),
                (vec![6, 1, 7], Val::Int(3)),
                (vec![7, 1, 7], Val::Int(8)),
                (vec![8, 1, 7], Val::Text("Paper jam".into())),
            ],
            &[(vec![1, 1], Val::Int(51_234))],
        );
        assert_eq!(f.serial.as_deref(), Some("SNMP-PR-42"));
        assert_eq!(f.make_and_model.as_deref(), Some("Acme Laser 5 Printer"));
        assert_eq!(f.hr_devices.len(), 2);
        assert_eq!(
            (f.hr_devices[1].kind, f.hr_devices[1].descr.as_str()),
            (3, "Controller CPU")
        );
        assert_eq!(f.alerts.len(), 1);
        let a = &f.alerts[0].alert;
        assert_eq!(a.code.as_deref(), Some("jam"));
        assert_eq!(a.severity_level.as_deref(), Some("critical"));
        assert_eq!(a.group.as_deref(), Some("mediaPath"));
        assert_eq!(a.location, Some(3));
        assert_eq!(f.counters["pages_total"], 51_234.0);
    }
}
