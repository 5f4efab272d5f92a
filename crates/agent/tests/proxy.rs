//! LAN-proxy mode end to end: the real `fleetcare-agent run` binary stands in for a real IPP
//! printer (`ippeveprinter`, CUPS) and for a printer that speaks only SNMP (`snmpd` serving
//! the Printer MIB through `pass_persist`), in front of a real center. The center shows each
//! printer as a device with its units and software, the state reasons and alerts that appear
//! as error events, and a firmware change after the printer restarts with other versions.
//!
//! The printers come from Debian packages (`cups-ipp-utils`, `snmpd`; `scripts/test` installs
//! them). Without them each test says loudly that it was skipped — except under CI, where a
//! missing printer is a failure. `ippeveprinter` needs a D-Bus system bus (for its DNS-SD
//! client; no Avahi daemon is needed); the tests start one if none answers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `name` from the PATH or /usr/sbin, if installed.
fn tool(name: &str) -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// The tool, or `None` after saying loudly that the test is skipped (a failure under CI).
fn needed(name: &str, package: &str) -> Option<PathBuf> {
    let t = tool(name);
    if t.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing under CI: scripts/test installs {package}"
        );
        eprintln!(
            "SKIPPED: {name} is not installed (Debian package {package}; scripts/test installs it)"
        );
    }
    t
}

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// ippeveprinter's DNS-SD client (Avahi's; with `-r off` it advertises nothing and needs no
/// Avahi daemon) still stops the printer at once when there is no D-Bus system bus: make sure one answers (started here if
/// none does, after clearing a pid file a dead bus left behind).
async fn ensure_system_bus() -> bool {
    const SOCKET: &str = "/run/dbus/system_bus_socket";
    let answers = || std::os::unix::net::UnixStream::connect(SOCKET).is_ok();
    if answers() {
        return true;
    }
    let Some(dbus) = tool("dbus-daemon") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "dbus-daemon is missing under CI: scripts/test installs dbus"
        );
        eprintln!("SKIPPED: dbus-daemon is not installed (Debian package dbus)");
        return false;
    };
    let _ = std::fs::create_dir_all("/run/dbus");
    let _ = std::fs::remove_file(SOCKET);
    let _ = std::fs::remove_file("/run/dbus/pid");
    let started = Command::new(&dbus)
        .args(["--system", "--fork"])
        .status()
        .is_ok_and(|s| s.success());
    if !started && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: no D-Bus system bus, and this user cannot start one");
        return false;
    }
    eventually("the D-Bus system bus answers", PATIENCE, || async {
        answers().then_some(())
    })
    .await;
    true
}

/// ippeveprinter on `port` with these attributes, until dropped.
async fn printer(bin: &Path, dir: &Path, port: u16, attrs: &str) -> Proc {
    let conf = dir.join(format!("attrs-{port}.conf"));
    std::fs::write(&conf, attrs).expect("attrs");
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).expect("spool");
    let child = Command::new(bin)
        .arg("-a")
        .arg(&conf)
        .arg("-c")
        .arg(data("print-command.sh"))
        .arg("-d")
        .arg(&spool)
        // No DNS-SD advertisement: nothing outside loopback, and no Avahi daemon needed.
        .args(["-r", "off"])
        .args(["-p", &port.to_string(), "-n", "localhost", "fleetcare-test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ippeveprinter starts");
    let p = Proc(child);
    eventually("the printer listens", PATIENCE, || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .await;
    p
}

fn attrs(controller: &str, engine: &str) -> String {
    format!(
        "ATTR textWithoutLanguage printer-make-and-model \"Acme MFP 9000\"\n\
         ATTR textWithoutLanguage printer-device-id \"MFG:Acme;MDL:MFP 9000;CMD:PWGRaster;SN:ACM9K-000777;\"\n\
         ATTR nameWithoutLanguage printer-firmware-name \"Main Controller\",\"Print Engine\"\n\
         ATTR textWithoutLanguage printer-firmware-string-version \"{controller}\",\"{engine}\"\n\
         ATTR octetString printer-firmware-version \"{controller}\",\"{engine}\"\n\
         ATTR octetString printer-supply \"index=1;class=supplyThatIsConsumed;type=toner;unit=percent;maxcapacity=100;level=12;colorantname=black;\"\n\
         ATTR textWithoutLanguage printer-supply-description \"Black Toner\"\n\
         ATTR integer printer-impressions-completed 184220\n\
         ATTR mimeMediaType document-format-supported \"application/octet-stream\",\"text/plain\"\n"
    )
}

async fn center(dir: &Path) -> Center {
    Center::start(&ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("center"),
        ..ServerConfig::default()
    })
    .await
    .expect("center")
}

/// The real agent binary in proxy mode for these printers.
fn proxy(center: &Center, dir: &Path, printers: &[String], extra: &str) -> Proc {
    // A URL, or a table (`{ url = …, device_id = … }`) as it stands.
    let list: Vec<String> = printers
        .iter()
        .map(|p| {
            if p.starts_with('{') {
                p.clone()
            } else {
                format!("{p:?}")
            }
        })
        .collect();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"proxy-data\"\n\
             printers = [{}]\nprinter_poll_s = 1\nprinter_timeout_s = 5\n\
             backoff_initial_ms = 50\nbackoff_max_s = 1\nerrors_immediate_severity = \"info\"\n{extra}",
            center.url(),
            center.boot.enrollment_key,
            list.join(", ")
        ),
    )
    .expect("config");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("FLEETCARE_LOG", "warn")
            .spawn()
            .expect("the agent starts"),
    )
}

async fn get(center: &Center, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", center.url()))
        .bearer_auth(&center.boot.admin_token)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .unwrap_or(Value::Null)
}

fn versions(d: &Value) -> Vec<(String, String)> {
    d["units"]
        .as_array()
        .map(|units| {
            units
                .iter()
                .map(|u| {
                    (
                        u["slot"].as_str().unwrap_or_default().to_owned(),
                        u["software"][0]["version"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_ipp_printer_becomes_a_device_with_units_alerts_and_firmware_changes() {
    let Some(bin) = needed("ippeveprinter", "cups-ipp-utils") else {
        return;
    };
    let Some(ipptool) = needed("ipptool", "cups-ipp-utils") else {
        return;
    };
    if !ensure_system_bus().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let center = center(dir.path()).await;
    let port = free_port();
    let uri = format!("ipp://localhost:{port}/ipp/print");
    let p = printer(&bin, dir.path(), port, &attrs("G1.23", "3.01.04")).await;
    let _agent = proxy(&center, dir.path(), std::slice::from_ref(&uri), "");

    // The printer, as a device: its units are its firmware components.
    let d = eventually("the printer is a device", PATIENCE, || async {
        let d = get(&center, "/api/v1/devices/ACM9K-000777").await;
        (d["online"] == true && d["units"].as_array().is_some_and(|u| u.len() == 2)).then_some(d)
    })
    .await;
    assert_eq!(d["model"], "acme-mfp-9000", "{d}");
    assert_eq!(
        versions(&d),
        [
            ("main-controller".to_owned(), "G1.23".to_owned()),
            ("print-engine".to_owned(), "3.01.04".to_owned())
        ]
    );
    assert_eq!(d["units"][0]["kind"], "controller");
    assert_eq!(d["units"][1]["kind"], "engine");
    assert_eq!(d["units"][0]["software"][0]["maker"], "acme");
    assert_eq!(d["operating"]["supply.black-toner_pct"], 12.0, "{d}");
    assert_eq!(d["operating"]["pages_total"], 184_220.0, "{d}");

    // A job jams the printer: the state reason and the alert that appear are error events.
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, "hello").expect("doc");
    let printed = Command::new(&ipptool)
        .arg("-f")
        .arg(&doc)
        .arg(&uri)
        .arg("/usr/share/cups/ipptool/print-job.test")
        .output()
        .expect("ipptool runs");
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stdout)
    );
    let events = eventually("the jam reaches the center", PATIENCE, || async {
        let e = get(&center, "/api/v1/devices/ACM9K-000777/errors").await;
        let ev = e["events"].as_array()?.clone();
        let codes: Vec<&str> = ev.iter().filter_map(|e| e["code"].as_str()).collect();
        (codes.contains(&"media-jam") && codes.contains(&"jam")).then_some(ev)
    })
    .await;
    let alert = events
        .iter()
        .find(|e| e["code"] == "jam")
        .expect("the alert");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["alert"]["group"], "mediaPath", "{alert}");
    assert_eq!(alert["alert"]["location"], 3, "{alert}");
    let reason = events
        .iter()
        .find(|e| e["code"] == "media-jam")
        .expect("the reason");
    assert_eq!(reason["slot"], "print-engine", "{reason}");
    let n = events.len();

    // The printer restarts with other firmware: a `change` report with the new versions, and
    // the jam it still shows is not news.
    drop(p);
    let _p = printer(&bin, dir.path(), port, &attrs("G1.24", "3.02.00")).await;
    let d = eventually(
        "the firmware change reaches the center",
        PATIENCE,
        || async {
            let d = get(&center, "/api/v1/devices/ACM9K-000777").await;
            (versions(&d)
                == [
                    ("main-controller".to_owned(), "G1.24".to_owned()),
                    ("print-engine".to_owned(), "3.02.00".to_owned()),
                ])
            .then_some(d)
        },
    )
    .await;
    assert_eq!(d["last_report"]["trigger"], "change", "{d}");
    let h = get(&center, "/api/v1/devices/ACM9K-000777/history").await;
    assert!(
        h.to_string().contains("G1.24"),
        "the history shows the change: {h}"
    );
    let e = get(&center, "/api/v1/devices/ACM9K-000777/errors").await;
    assert_eq!(
        e["events"].as_array().map(Vec::len),
        Some(n),
        "no event twice: {e}"
    );
}

#[tokio::test]
async fn an_snmp_printer_shows_its_host_resources_and_its_alert_table() {
    let Some(snmpd) = needed("snmpd", "snmpd") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let center = center(dir.path()).await;
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let mib = dir.path().join("printer.data");
    std::fs::copy(data("printer-mib.data"), &mib).expect("copy");
    let conf = dir.path().join("snmpd.conf");
    let script = data("printer-mib.py");
    std::fs::write(
        &conf,
        format!(
            "agentaddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\n\
             pass_persist .1.3.6.1.2.1.43 /usr/bin/python3 {s} {m}\n\
             pass_persist .1.3.6.1.2.1.25.3.2 /usr/bin/python3 {s} {m}\n",
            s = script.display(),
            m = mib.display()
        ),
    )
    .expect("snmpd.conf");
    let _snmpd = Proc(
        Command::new(&snmpd)
            .args(["-f", "-Lf", "/dev/null", "-C", "-c"])
            .arg(&conf)
            .args([
                "-I",
                "-hr_device,hr_disk,hr_network,hr_print,hr_proc,hr_partition,hr_filesys",
            ])
            .env("MIBS", "")
            .env("MIBDIRS", "/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmpd starts"),
    );
    let _agent = proxy(
        &center,
        dir.path(),
        &[format!("snmp://public@127.0.0.1:{port}")],
        "",
    );
    // Online comes with the push channel; the units with the first report, a moment later.
    let d = eventually("the SNMP printer is a device", PATIENCE, || async {
        let d = get(&center, "/api/v1/devices/SNMP-PR-42").await;
        (d["online"] == true && d["units"].as_array().is_some_and(|u| !u.is_empty())).then_some(d)
    })
    .await;
    assert_eq!(d["model"], "acme-laser-5", "{d}");
    let units: Vec<(&str, &str, &str)> = d["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| {
            (
                u["slot"].as_str().unwrap_or_default(),
                u["kind"].as_str().unwrap_or_default(),
                u["model"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [
            ("hr-1", "printer", "Acme Laser 5"),
            ("hr-2", "processor", "Controller CPU")
        ]
    );
    assert_eq!(d["operating"]["pages_total"], 51_234.0, "{d}");
    // The supplies from prtMarkerSuppliesTable: levels, colours, part and serial numbers.
    let supplies: Vec<(String, Value, String, Value, Value)> = d["supplies"]
        .as_array()
        .expect("supplies")
        .iter()
        .map(|s| {
            (
                s["slot"].as_str().unwrap_or_default().to_owned(),
                s["level_pct"].clone(),
                s["state"].as_str().unwrap_or_default().to_owned(),
                s["part_number"].clone(),
                s["serial"].clone(),
            )
        })
        .collect();
    assert_eq!(
        supplies,
        [
            (
                "toner.black".into(),
                json!(25.0),
                "ok".into(),
                json!("006R01509"),
                json!("2BCB0A0A4A000A2F")
            ),
            (
                "toner.cyan".into(),
                json!(6.0),
                "low".into(),
                json!("006R01510"),
                json!("2BCB0A0A4A000B11")
            ),
            (
                "drum.black".into(),
                Value::Null,
                "ok".into(),
                Value::Null,
                Value::Null
            ),
            (
                "waste.4".into(),
                json!(95.0),
                "low".into(),
                Value::Null,
                Value::Null
            ),
        ],
        "{d}"
    );
    let jam = eventually("the alert reaches the center", PATIENCE, || async {
        let e = get(&center, "/api/v1/devices/SNMP-PR-42/errors").await;
        e["events"]
            .as_array()?
            .iter()
            .find(|e| e["code"] == "jam")
            .cloned()
    })
    .await;
    assert_eq!(jam["severity"], "critical", "{jam}");
    assert_eq!(jam["alert"]["group"], "mediaPath", "{jam}");
    assert_eq!(jam["alert"]["training_level"], "trained", "{jam}");
    assert_eq!(jam["detail"], "Paper jam in tray 2", "{jam}");

    // A new row in the alert table (the fuser runs hot) is one more event.
    let mut text = std::fs::read_to_string(&mib).expect("read");
    text.push_str(
        ".1.3.6.1.2.1.43.18.1.1.2.1.8 integer 4\n.1.3.6.1.2.1.43.18.1.1.4.1.8 integer 10\n\
         .1.3.6.1.2.1.43.18.1.1.7.1.8 integer 1002\n.1.3.6.1.2.1.43.18.1.1.8.1.8 string Fuser over temperature\n",
    );
    // Replaced whole (a reader never sees half a table: a row that vanished and came back
    // would rightly be a new event).
    let tmp = dir.path().join("printer.data.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &mib).expect("rename");
    let ev = eventually("the second alert reaches the center", PATIENCE, || async {
        let e = get(&center, "/api/v1/devices/SNMP-PR-42/errors").await;
        let ev = e["events"].as_array()?.clone();
        ev.iter()
            .any(|e| e["code"] == "markerFuserOverTemperature")
            .then_some(ev)
    })
    .await;
    assert_eq!(ev.len(), 2, "the jam is not sent again: {ev:?}");

    // A new cyan cartridge: a replacement in the structure history.
    let text = std::fs::read_to_string(&mib)
        .expect("read")
        .replace("2BCB0A0A4A000B11", "2BCB0A0A4A000C42")
        .replace(
            ".1.3.6.1.2.1.43.11.1.1.9.1.2 integer 1200",
            ".1.3.6.1.2.1.43.11.1.1.9.1.2 integer 20000",
        );
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &mib).expect("rename");
    let swap = eventually("the cartridge swap in the history", PATIENCE, || async {
        let h = get(&center, "/api/v1/devices/SNMP-PR-42/history").await;
        h["events"]
            .as_array()?
            .iter()
            .find(|e| e["change"]["kind"] == "supply_replaced")
            .cloned()
    })
    .await;
    assert_eq!(swap["change"]["slot"], "toner.cyan", "{swap}");
    assert_eq!(
        swap["change"]["new"]["serial"], "2BCB0A0A4A000C42",
        "{swap}"
    );
}

/// `snmpsimd` replaying the recordings in `data`, on `port` (as `nobody` when run as root:
/// it refuses to run privileged; the data and cache are made readable to it).
fn snmpsim(bin: &Path, data: &Path, cache: &Path, port: u16) -> Proc {
    use std::os::unix::fs::PermissionsExt;
    for d in [data, cache] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    for f in std::fs::read_dir(data).expect("data").flatten() {
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut c = Command::new(bin);
    c.arg(format!("--data-dir={}", data.display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        .arg("--logging-method=null")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root {
        c.args(["--process-user=nobody", "--process-group=nogroup"]);
    }
    Proc(c.spawn().expect("snmpsimd starts"))
}

#[tokio::test]
async fn replayed_walks_of_real_printers_show_supplies_meters_and_firmware_from_profiles() {
    let Some(bin) = needed("snmpsimd", "snmpsim") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let center = center(dir.path()).await;
    let (walks, cache) = (dir.path().join("walks"), dir.path().join("cache"));
    std::fs::create_dir_all(&walks).expect("walks");
    std::fs::create_dir_all(&cache).expect("cache");
    for f in ["colour-mfp.snmprec", "mono-mfp.snmprec"] {
        std::fs::copy(data("snmpsim").join(f), walks.join(f)).expect("copy");
    }
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let sim = snmpsim(&bin, &walks, &cache, port);
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/profiles");
    let _agent = proxy(
        &center,
        dir.path(),
        &[
            format!("snmp://colour-mfp@127.0.0.1:{port}"),
            format!(
                "{{ url = \"snmp://mono-mfp@127.0.0.1:{port}\", device_id = \"KM-NOSERIAL-1\", \
                 model = \"bizhub-367\" }}"
            ),
        ],
        &format!("printer_profiles = {:?}\n", profiles.display().to_string()),
    );
    let d = eventually("the colour MFP is a device", PATIENCE, || async {
        let d = get(&center, "/api/v1/devices/XRX3356123456").await;
        d["supplies"]
            .as_array()
            .is_some_and(|s| s.len() == 12)
            .then_some(d)
    })
    .await;
    // The firmware components listed only in sysDescr are units with their software, of the
    // kinds the Xerox profile names; the network port is not a unit.
    let units: Vec<(String, String, String)> = d["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| {
            (
                u["slot"].as_str().unwrap_or_default().to_owned(),
                u["kind"].as_str().unwrap_or_default().to_owned(),
                u["software"][0]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for want in [
        ("system-software", "controller", "073.040.075.34540"),
        ("ess", "controller", "073.045.34540.LL"),
        ("iot", "engine", "92.25.0"),
        ("iit", "scanner", "22.13.1"),
        ("adf", "document-feeder", "20.0.0"),
        ("finisher", "finisher", "21.2.0"),
    ] {
        assert!(
            units
                .iter()
                .any(|u| (u.0.as_str(), u.1.as_str(), u.2.as_str()) == want),
            "{want:?} in {units:?}"
        );
    }
    assert!(
        !units.iter().any(|u| u.1 == "network"),
        "a network port is noise: {units:?}"
    );
    assert!(
        units
            .iter()
            .any(|u| u.1 == "engine" && u.0.starts_with("hr-")),
        "{units:?}"
    );
    // The vendor meters, named as billing meters.
    assert_eq!(d["operating"]["pages_total"], 187_654.0, "{d}");
    assert_eq!(d["operating"]["pages_color"], 61_234.0, "{d}");
    assert_eq!(d["operating"]["pages_black"], 126_420.0, "{d}");
    // Supplies with their levels, part and serial numbers.
    let supplies = d["supplies"].as_array().expect("supplies");
    let cyan = supplies
        .iter()
        .find(|s| s["slot"] == "toner.cyan")
        .expect("cyan toner");
    assert_eq!(cyan["level_pct"], 6.0, "{cyan}");
    assert_eq!(cyan["state"], "low", "{cyan}");
    assert_eq!(cyan["part_number"], "006R01510", "{cyan}");
    assert_eq!(cyan["serial"], "2BCB0A0A4A000B11", "{cyan}");
    let kinds: std::collections::BTreeSet<&str> =
        supplies.iter().filter_map(|s| s["kind"].as_str()).collect();
    for k in ["toner", "drum", "fuser", "transfer", "waste", "staples"] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    // The cyan toner running low is a trouble with the part to order.
    let trouble = eventually("the low toner is a trouble", PATIENCE, || async {
        let t = get(&center, "/api/v1/troubles?device=XRX3356123456").await;
        t["troubles"]
            .as_array()?
            .iter()
            .find(|t| t["rule_id"] == "supply-low:toner.cyan")
            .cloned()
    })
    .await;
    assert!(
        trouble.to_string().contains("006R01510"),
        "the part to order: {trouble}"
    );

    // The printer with no serial number is the device its config entry names, with the
    // Konica Minolta profile's meters; memory and the network port are not units.
    let km = eventually(
        "the unnamed printer is the named device",
        PATIENCE,
        || async {
            let d = get(&center, "/api/v1/devices/KM-NOSERIAL-1").await;
            d["operating"]["pages_duplex"].is_number().then_some(d)
        },
    )
    .await;
    assert_eq!(km["model"], "bizhub-367", "{km}");
    assert_eq!(km["operating"]["pages_total"], 42_100.0, "{km}");
    assert_eq!(km["operating"]["pages_duplex"], 9_800.0, "{km}");
    let kinds: Vec<&str> = km["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter_map(|u| u["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["engine", "finisher"], "{km}");

    // A new cyan cartridge in the printer (the walk replayed again with it): a replacement in
    // the structure history, and the trouble resolved.
    drop(sim);
    let walk = walks.join("colour-mfp.snmprec");
    let text = std::fs::read_to_string(&walk)
        .expect("read")
        .replace("2BCB0A0A4A000B11", "2BCB0A0A4A000E55")
        .replace(
            "1.3.6.1.2.1.43.11.1.1.9.1.2|2|900",
            "1.3.6.1.2.1.43.11.1.1.9.1.2|2|15000",
        );
    std::fs::write(&walk, text).expect("write");
    let _sim = snmpsim(&bin, &walks, &cache, port);
    let swap = eventually("the cartridge swap in the history", PATIENCE, || async {
        let h = get(&center, "/api/v1/devices/XRX3356123456/history").await;
        h["events"]
            .as_array()?
            .iter()
            .find(|e| e["change"]["kind"] == "supply_replaced")
            .cloned()
    })
    .await;
    assert_eq!(
        swap["change"]["new"]["serial"], "2BCB0A0A4A000E55",
        "{swap}"
    );
    eventually("the trouble is resolved", PATIENCE, || async {
        let t = get(&center, "/api/v1/troubles?device=XRX3356123456&state=all").await;
        t["troubles"]
            .as_array()?
            .iter()
            .find(|t| t["rule_id"] == "supply-low:toner.cyan" && t["state"] == "resolved")
            .cloned()
    })
    .await;
}
