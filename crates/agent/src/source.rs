//! Where a device's structure comes from.
//!
//! A [`StructureSource`] answers "what is this device made of now". Two come with the agent:
//! [`InventoryFile`] (a TOML file, re-read when it changes) and [`DriverSource`] (the device's
//! identity plus one [`UnitDriver`] per unit, written by an integrator). Sources are called
//! on a blocking thread, so a driver may talk to hardware synchronously.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use fleetcare_wire::{Software, Supply, Unit};
use serde::Deserialize;

/// What a source says a device is, now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub device_id: String,
    pub model: String,
    pub units: Vec<Unit>,
    /// Operating info: counters and gauges by name.
    pub operating: BTreeMap<String, f64>,
    /// Supplies (toner, drums, …) with their levels.
    pub supplies: Vec<Supply>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unit driver for slot {slot:?}: {message}")]
    Driver { slot: String, message: String },
}

/// "What is this device made of now". Called from a blocking thread, often (every
/// `watch_interval_ms`), so it should be cheap when nothing changed.
pub trait StructureSource: Send + Sync + 'static {
    fn read(&self) -> Result<Snapshot, SourceError>;

    /// `read` only copies what is in memory (or stats a file): call it on the agent's own
    /// thread instead of a blocking one.
    fn cheap(&self) -> bool {
        false
    }

    /// A token that changes whenever what `read` returns may have changed (`None`: unknown,
    /// read every time). The agent's periodic change check skips a source whose token is the
    /// same as last time.
    fn version(&self) -> Option<u64> {
        None
    }

    /// The center takes a unit out of service (`false`) or puts it back: stop (or resume)
    /// using it. The agent then reports the unit with `in_service = false` whatever `read`
    /// says. The default does nothing (an inventory file has nothing to stop).
    fn set_in_service(&self, _slot: &str, _in_service: bool) -> Result<(), String> {
        Ok(())
    }

    /// The unit in slot `to` takes over the work of the unit in slot `from`, which the center
    /// took out of service (both are of the same kind: a second paper feeder, say). The
    /// default does nothing; the agent records the switch either way.
    fn switch_unit(&self, _from: &str, _to: &str) -> Result<(), String> {
        Ok(())
    }
}

/// An integrator's driver for one unit: it says what the unit is and what runs on it.
/// (Installing software through the driver comes with the delivery capability.)
pub trait UnitDriver: Send + Sync + 'static {
    /// The slot this driver speaks for, for messages.
    fn slot(&self) -> &str;
    /// The unit as it is now: kind, model, serial, hardware revision, software.
    fn describe(&self) -> Result<Unit, String>;

    /// Stop using the unit (`false`), or use it again; the device keeps working without it.
    fn set_in_service(&self, _in_service: bool) -> Result<(), String> {
        Ok(())
    }

    /// Take over the work of the unit in slot `from` (of the same kind), which was taken out
    /// of service.
    fn take_over(&self, _from: &str) -> Result<(), String> {
        Ok(())
    }

    /// The supplies this unit holds (the engine's toners and drums, the finisher's staples),
    /// with their levels, part and serial numbers. The default: none.
    fn supplies(&self) -> Result<Vec<Supply>, String> {
        Ok(Vec::new())
    }
}

/// A device described by its identity and one driver per unit.
pub struct DriverSource {
    device_id: String,
    model: String,
    drivers: Vec<Box<dyn UnitDriver>>,
    operating: Box<dyn Fn() -> BTreeMap<String, f64> + Send + Sync>,
}

impl std::fmt::Debug for DriverSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverSource")
            .field("device_id", &self.device_id)
            .field("model", &self.model)
            .field("drivers", &self.drivers.len())
            .finish()
    }
}

impl DriverSource {
    pub fn new(device_id: &str, model: &str, drivers: Vec<Box<dyn UnitDriver>>) -> DriverSource {
        DriverSource {
            device_id: device_id.to_owned(),
            model: model.to_owned(),
            drivers,
            operating: Box::new(BTreeMap::new),
        }
    }

    /// Where operating info (counters, gauges) comes from.
    pub fn with_operating(
        mut self,
        f: impl Fn() -> BTreeMap<String, f64> + Send + Sync + 'static,
    ) -> DriverSource {
        self.operating = Box::new(f);
        self
    }
}

impl StructureSource for DriverSource {
    fn set_in_service(&self, slot: &str, in_service: bool) -> Result<(), String> {
        match self.drivers.iter().find(|d| d.slot() == slot) {
            Some(d) => d.set_in_service(in_service),
            None => Err(format!("no unit driver for slot {slot:?}")),
        }
    }

    fn switch_unit(&self, from: &str, to: &str) -> Result<(), String> {
        match self.drivers.iter().find(|d| d.slot() == to) {
            Some(d) => d.take_over(from),
            None => Err(format!("no unit driver for slot {to:?}")),
        }
    }

    fn read(&self) -> Result<Snapshot, SourceError> {
        let units = self
            .drivers
            .iter()
            .map(|d| {
                d.describe().map_err(|message| SourceError::Driver {
                    slot: d.slot().to_owned(),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut supplies = Vec::new();
        for d in &self.drivers {
            supplies.extend(d.supplies().map_err(|message| SourceError::Driver {
                slot: d.slot().to_owned(),
                message,
            })?);
        }
        Ok(Snapshot {
            device_id: self.device_id.clone(),
            model: self.model.clone(),
            units,
            operating: (self.operating)(),
            supplies,
        })
    }
}

// ---- the inventory file ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryDoc {
    device: DeviceSection,
    #[serde(default)]
    unit: Vec<UnitSection>,
    #[serde(default)]
    operating: BTreeMap<String, toml::Value>,
    /// `[[supply]]`: the supply fields of the wire (`slot`, `kind`, `color`, `level_pct`,
    /// `level`, `max`, `part_number`, `serial`, `state`).
    #[serde(default)]
    supply: Vec<Supply>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSection {
    id: String,
    model: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitSection {
    slot: String,
    kind: String,
    model: String,
    serial: String,
    #[serde(default)]
    hw_revision: String,
    #[serde(default)]
    software: Vec<SoftwareSection>,
    #[serde(default = "yes")]
    in_service: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftwareSection {
    product: String,
    maker: String,
    version: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// Parse an inventory file's text (format in the README and `examples/inventories/`).
/// Structural checks (unique slots and serials, name limits) happen when the agent validates
/// the snapshot, so every problem of the file is reported together there.
pub fn parse_inventory(path: &Path, text: &str) -> Result<Snapshot, SourceError> {
    let doc: InventoryDoc = toml::from_str(text).map_err(|e| SourceError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut operating = BTreeMap::new();
    for (k, v) in doc.operating {
        let n = match v {
            toml::Value::Integer(i) => i as f64,
            toml::Value::Float(f) => f,
            other => {
                return Err(SourceError::Parse {
                    path: path.to_owned(),
                    message: format!("operating.{k}: must be a number, got {other}"),
                });
            }
        };
        operating.insert(k, n);
    }
    Ok(Snapshot {
        device_id: doc.device.id,
        model: doc.device.model,
        units: doc
            .unit
            .into_iter()
            .map(|u| Unit {
                slot: u.slot,
                kind: u.kind,
                model: u.model,
                serial: u.serial,
                hw_revision: u.hw_revision,
                software: u
                    .software
                    .into_iter()
                    .map(|s| Software {
                        product: s.product,
                        maker: s.maker,
                        version: s.version,
                        active: s.active,
                    })
                    .collect(),
                in_service: u.in_service,
            })
            .collect(),
        operating,
        supplies: doc.supply,
    })
}

/// The inventory file text for a snapshot (what [`parse_inventory`] reads back).
pub fn render_inventory(s: &Snapshot) -> String {
    use std::fmt::Write;
    let q = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[device]\nid = {}\nmodel = {}",
        q(&s.device_id),
        q(&s.model)
    );
    if !s.operating.is_empty() {
        out.push_str("\n[operating]\n");
        for (k, v) in &s.operating {
            let _ = writeln!(out, "{} = {}", q(k), toml::Value::Float(*v));
        }
    }
    for u in &s.units {
        let _ = writeln!(
            out,
            "\n[[unit]]\nslot = {}\nkind = {}\nmodel = {}\nserial = {}\nhw_revision = {}",
            q(&u.slot),
            q(&u.kind),
            q(&u.model),
            q(&u.serial),
            q(&u.hw_revision)
        );
        if !u.in_service {
            out.push_str("in_service = false\n");
        }
        for sw in &u.software {
            let _ = writeln!(
                out,
                "  [[unit.software]]\n  product = {}\n  maker = {}\n  version = {}",
                q(&sw.product),
                q(&sw.maker),
                q(&sw.version)
            );
            if !sw.active {
                out.push_str("  active = false\n");
            }
        }
    }
    for sup in &s.supplies {
        let _ = writeln!(
            out,
            "\n[[supply]]\nslot = {}\nkind = {}\nstate = {}",
            q(&sup.slot),
            q(sup.kind.as_str()),
            q(sup.state.as_str())
        );
        for (k, v) in [
            ("color", &sup.color),
            ("part_number", &sup.part_number),
            ("serial", &sup.serial),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {}", q(v));
            }
        }
        if let Some(p) = sup.level_pct {
            let _ = writeln!(out, "level_pct = {}", toml::Value::Float(p));
        }
        for (k, v) in [("level", sup.level), ("max", sup.max)] {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
    }
    out
}

/// Largest inventory file read, in bytes.
pub const MAX_INVENTORY_BYTES: u64 = 1024 * 1024;

/// The structure from an inventory file. The file is parsed again only when its size,
/// modification time or inode changed, so checking it often costs one `stat`.
#[derive(Debug)]
pub struct InventoryFile {
    path: PathBuf,
    cache: Mutex<Option<(Stamp, Snapshot)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl InventoryFile {
    pub fn new(path: impl Into<PathBuf>) -> InventoryFile {
        InventoryFile {
            path: path.into(),
            cache: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StructureSource for InventoryFile {
    fn cheap(&self) -> bool {
        true
    }

    /// The file's size, modification time and inode (a `stat`).
    fn version(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path).ok()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (meta.len(), meta.modified().ok(), meta.ino()).hash(&mut h);
        Some(h.finish())
    }

    fn read(&self) -> Result<Snapshot, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let io = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(io)?;
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        };
        let mut cache = self.cache.lock().expect("inventory cache");
        if let Some((s, snap)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(snap.clone());
        }
        if meta.len() > MAX_INVENTORY_BYTES {
            return Err(SourceError::Parse {
                path: self.path.clone(),
                message: format!("larger than {MAX_INVENTORY_BYTES} bytes"),
            });
        }
        let text = std::fs::read_to_string(&self.path).map_err(io)?;
        let snap = parse_inventory(&self.path, &text)?;
        *cache = Some((stamp, snap.clone()));
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver that records what it was asked.
    struct Recorder {
        slot: &'static str,
        calls: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl UnitDriver for Recorder {
        fn slot(&self) -> &str {
            self.slot
        }
        fn describe(&self) -> Result<Unit, String> {
            Ok(Unit {
                slot: self.slot.into(),
                kind: "paper-feeder".into(),
                model: "pf-550".into(),
                serial: format!("S-{}", self.slot),
                hw_revision: String::new(),
                software: Vec::new(),
                in_service: true,
            })
        }
        fn set_in_service(&self, in_service: bool) -> Result<(), String> {
            self.calls
                .lock()
                .expect("calls")
                .push(format!("{} in_service={in_service}", self.slot));
            Ok(())
        }
        fn take_over(&self, from: &str) -> Result<(), String> {
            self.calls
                .lock()
                .expect("calls")
                .push(format!("{} takes over from {from}", self.slot));
            Ok(())
        }
    }

    #[test]
    fn the_unit_that_takes_over_is_the_one_its_driver_is_told() {
        let calls = std::sync::Arc::new(Mutex::new(Vec::new()));
        let d = |slot| -> Box<dyn UnitDriver> {
            Box::new(Recorder {
                slot,
                calls: calls.clone(),
            })
        };
        let source = DriverSource::new("D-1", "mfp", vec![d("tray-1"), d("tray-2")]);
        source.set_in_service("tray-1", false).expect("out");
        source.switch_unit("tray-1", "tray-2").expect("switch");
        assert_eq!(
            *calls.lock().expect("calls"),
            ["tray-1 in_service=false", "tray-2 takes over from tray-1"]
        );
        assert!(
            source.switch_unit("tray-1", "tray-9").is_err(),
            "no such driver"
        );
    }

    #[test]
    fn inventory_round_trip_and_refusals() {
        let p = Path::new("inv.toml");
        let snap = parse_inventory(
            p,
            r#"
[device]
id = "D-1"
model = "m"
[operating]
pages_total = 12
toner_black_pct = 40.5
[[unit]]
slot = "engine"
kind = "engine"
model = "e"
serial = "E1"
  [[unit.software]]
  product = "fw"
  maker = "acme"
  version = "1.0"
  active = false
[[supply]]
slot = "toner.black"
kind = "toner"
color = "black"
level_pct = 35.5
part_number = "TN-328K"
serial = "K-0001"
state = "ok"
[[supply]]
slot = "staples"
kind = "staples"
"#,
        )
        .expect("valid");
        assert_eq!(snap.supplies.len(), 2);
        assert_eq!(snap.supplies[0].level_pct, Some(35.5));
        assert_eq!(snap.supplies[1].state, fleetcare_wire::SupplyState::Unknown);
        assert_eq!(snap.device_id, "D-1");
        assert!(!snap.units[0].software[0].active);
        let again = parse_inventory(p, &render_inventory(&snap)).expect("rendered text parses");
        assert_eq!(again, snap, "render and parse round-trip");
        assert_eq!(snap.operating["pages_total"], 12.0);
        let err = parse_inventory(p, "[device]\nid = \"D\"\nmodel = \"m\"\n[[unit]]\nslot = \"a\"\nkind = \"k\"\nmodel = \"m\"\nserial = \"s\"\nhw_revison = \"B\"\n")
            .expect_err("typo");
        assert!(err.to_string().contains("hw_revison"), "{err}");
        let err = parse_inventory(
            p,
            "[device]\nid = \"D\"\nmodel = \"m\"\n[operating]\nx = \"lots\"\n",
        )
        .expect_err("not a number");
        assert!(err.to_string().contains("operating.x"), "{err}");
    }

    struct Fixed(&'static str);
    impl UnitDriver for Fixed {
        fn slot(&self) -> &str {
            self.0
        }
        fn describe(&self) -> Result<Unit, String> {
            if self.0 == "broken" {
                return Err("no answer on the bus".into());
            }
            Ok(Unit {
                slot: self.0.into(),
                kind: self.0.into(),
                model: "m".into(),
                serial: format!("S-{}", self.0),
                hw_revision: String::new(),
                software: vec![],
                in_service: true,
            })
        }

        fn supplies(&self) -> Result<Vec<Supply>, String> {
            Ok(if self.0 == "engine" {
                vec![Supply {
                    slot: "toner.black".into(),
                    kind: fleetcare_wire::SupplyKind::Toner,
                    color: Some("black".into()),
                    level_pct: Some(40.0),
                    level: None,
                    max: None,
                    part_number: Some("TN-1".into()),
                    serial: Some("K-1".into()),
                    state: fleetcare_wire::SupplyState::Ok,
                }]
            } else {
                vec![]
            })
        }
    }

    #[test]
    fn driver_source_asks_every_driver() {
        let s = DriverSource::new(
            "D",
            "m",
            vec![Box::new(Fixed("engine")), Box::new(Fixed("fuser"))],
        )
        .with_operating(|| BTreeMap::from([("pages_total".to_owned(), 3.0)]));
        let snap = s.read().expect("read");
        assert_eq!(snap.units.len(), 2);
        assert_eq!(snap.operating["pages_total"], 3.0);
        assert_eq!(snap.supplies.len(), 1, "the engine's toner");
        assert_eq!(snap.supplies[0].serial.as_deref(), Some("K-1"));
        let s = DriverSource::new("D", "m", vec![Box::new(Fixed("broken"))]);
        let err = s.read().expect_err("driver failed");
        assert!(err.to_string().contains("\"broken\": no answer"), "{err}");
    }
}
