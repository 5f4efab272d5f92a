//! The agent's typed config: defaults → `agent.toml` → `FLEETCARE_AGENT_*` environment.
//! Every key is documented in `examples/agent.toml`. Relative paths in the file are relative
//! to the file's own directory; relative paths from the environment, to the working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcare_core::config::{ConfigError, ConfigReader};

/// Where the broker is and who the device is there (config keys `mqtt_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// `<tenant>/<device id>`: the broker account, and the device's topics.
    pub username: String,
    pub password_file: Option<PathBuf>,
    /// For `mqtts://`, the CA of the broker's certificate (else the center's `tls_ca_file`).
    pub ca_file: Option<PathBuf>,
}

/// When to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggers {
    pub interval: Duration,
    /// Rank in `SEVERITIES` at or above which an event goes at once (`None`: never).
    pub immediate: Option<usize>,
    pub batch_events: u64,
    pub batch_bytes: u64,
    pub batch_weight: u64,
    /// How often the journal is looked at for the immediate and accumulation triggers.
    pub check: Duration,
}

/// How the agent keeps its push channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket; falls back to long polling where a WebSocket cannot be opened (a proxy
    /// that does not pass upgrades), and tries the WebSocket again every ten minutes.
    Auto,
    WebSocket,
    Poll,
    /// Through an MQTT broker (`mqtt_*` keys): reports, error batches and commands; the rest
    /// (enrollment, jobs, downloads) over HTTP.
    Mqtt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `http://host:port` of the center, without a trailing slash.
    pub center_url: String,
    /// TLS (an `https://` center): the CA certificates trusted for the center, and the
    /// device's own certificate and key where the center asks for mutual TLS.
    pub tls: Option<TlsFiles>,
    /// The fleet's enrollment key; needed until the agent has its own credential.
    pub enrollment_key: Option<String>,
    /// Credential, state and the report outbox.
    pub data_dir: PathBuf,
    /// The inventory file the structure comes from.
    pub inventory: Option<PathBuf>,
    /// Periodic reports, unless the center sets another interval.
    pub report_interval: Duration,
    pub transport: Transport,
    /// The broker, for `transport = "mqtt"`.
    pub mqtt: Option<MqttSettings>,
    /// The agent pings its push channel this often; silence for twice as long means it is dead.
    pub keepalive: Duration,
    /// How long one long poll waits at the center.
    pub poll_wait: Duration,
    /// How often the structure source is checked for changes.
    pub watch_interval: Duration,
    /// Reconnection and retry backoff: first delay and ceiling (with jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Longest a request to the center may take.
    pub request_timeout: Duration,
    /// Reports kept while the center cannot be reached; the oldest go first beyond it.
    pub outbox_max: usize,
    /// The provisioned root of trust (`root.json`); without it every install is refused.
    pub trust_root: Option<PathBuf>,
    /// Where the built-in A/B driver keeps every unit's banks; without it (and without
    /// command slots) this device installs nothing.
    pub units_dir: Option<PathBuf>,
    /// Run by the A/B driver as a unit's health check after its own file check.
    pub health_command: Vec<String>,
    /// Units whose installs run the integrator's commands instead of the A/B driver.
    pub command_slots: Vec<String>,
    pub commands: crate::update::command::Commands,
    /// Slower than this (bytes/s, averaged over `download_window`) is slow retrieval.
    pub download_min_rate: u64,
    pub download_window: Duration,
    /// When the error log is sent.
    pub errors: Triggers,
    /// Bounds of the error journal.
    pub journal: crate::journal::JournalLimits,
    /// The local API's Unix socket (`None`: no local API).
    pub local_socket: Option<PathBuf>,
    /// LAN-proxy mode: the printers this agent stands in for (`ipp://…`, `http://…`,
    /// `snmp://community@host:port`); each becomes its own device.
    pub printers: Vec<String>,
    /// The device id and model a printer is named by where the config names it (a printer
    /// that tells no serial number and no UUID), by its `printers` entry.
    pub printer_names: std::collections::BTreeMap<String, PrinterName>,
    /// How often each printer is read.
    pub printer_poll: Duration,
    /// Longest one read of a printer may take.
    pub printer_timeout: Duration,
    /// Also read IPP printers' hosts over SNMP with this community.
    pub printer_snmp_community: Option<String>,
    pub printer_snmp_port: u16,
    /// Firmware component name → unit kind, where the guess from the name is wrong.
    pub printer_unit_kinds: std::collections::BTreeMap<String, String>,
    /// Printer profiles (`printer_profiles = "DIR"`: every `*.toml` in it), loaded and
    /// checked with the config.
    pub printer_profiles: Vec<crate::proxy::profile::Profile>,
}

/// How the config names a printer behind the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrinterName {
    pub device_id: Option<String>,
    pub model: Option<String>,
}

/// `printers`: each a URL, or a table `{ url = "…", device_id = "…", model = "…" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Printers(Vec<(String, PrinterName)>);

impl fleetcare_core::config::Setting for Printers {
    const EXPECTED: &'static str =
        "a list of printer URLs or tables { url = \"…\", device_id = \"…\", model = \"…\" }";
    fn from_toml(v: &toml::Value) -> Option<Self> {
        let mut out = Vec::new();
        for p in v.as_array()? {
            match p {
                toml::Value::String(url) => out.push((url.clone(), PrinterName::default())),
                toml::Value::Table(t) => {
                    if t.keys()
                        .any(|k| !matches!(k.as_str(), "url" | "device_id" | "model"))
                    {
                        return None;
                    }
                    let text = |k: &str| match t.get(k) {
                        None => Some(None),
                        Some(toml::Value::String(s)) => Some(Some(s.clone())),
                        Some(_) => None,
                    };
                    out.push((
                        t.get("url")?.as_str()?.to_owned(),
                        PrinterName {
                            device_id: text("device_id")?,
                            model: text("model")?,
                        },
                    ));
                }
                _ => return None,
            }
        }
        Some(Printers(out))
    }
    fn from_env(s: &str) -> Option<Self> {
        Some(Printers(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| (p.to_owned(), PrinterName::default()))
                .collect(),
        ))
    }
}

/// Files of the agent's TLS (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    /// `(certificate chain, key)` naming this device: subject CN = device id, O = tenant.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The environment variables' prefix: `FLEETCARE_AGENT_CENTER_URL`, …
pub const ENV_PREFIX: &str = "FLEETCARE_AGENT_";

impl AgentConfig {
    /// Said beside every failure to reach the center when `center_url` has a path (the
    /// dashboard's `/ui/`, say): the agent adds `/device/v1/…` to it.
    pub fn center_url_hint(&self) -> Option<String> {
        let rest = self.center_url.split_once("://").map_or("", |(_, r)| r);
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        (!path.is_empty()).then(|| {
            format!(
                " (center_url has a path, /{path}: the agent adds /device/v1/… to it; the \
                 center's own address is {}://{host} unless a proxy serves it below a path)",
                self.center_url.split_once("://").map_or("http", |(s, _)| s)
            )
        })
    }

    /// A config for `center_url` with every other key at its default.
    pub fn new(center_url: &str, data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            center_url: center_url.trim_end_matches('/').to_owned(),
            tls: None,
            enrollment_key: None,
            data_dir,
            inventory: None,
            report_interval: Duration::from_secs(3600),
            transport: Transport::Auto,
            mqtt: None,
            keepalive: Duration::from_secs(30),
            poll_wait: Duration::from_secs(25),
            watch_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15),
            outbox_max: 1000,
            trust_root: None,
            units_dir: None,
            health_command: Vec::new(),
            command_slots: Vec::new(),
            commands: crate::update::command::Commands::default(),
            download_min_rate: 4096,
            download_window: Duration::from_secs(30),
            errors: Triggers {
                interval: Duration::from_secs(3600),
                immediate: crate::journal::severity_rank("error"),
                batch_events: 200,
                batch_bytes: 64 * 1024,
                batch_weight: 100,
                check: Duration::from_millis(500),
            },
            journal: crate::journal::JournalLimits::default(),
            local_socket: None,
            printers: Vec::new(),
            printer_names: std::collections::BTreeMap::new(),
            printer_poll: Duration::from_secs(60),
            printer_timeout: Duration::from_secs(10),
            printer_snmp_community: None,
            printer_snmp_port: 161,
            printer_unit_kinds: std::collections::BTreeMap::new(),
            printer_profiles: Vec::new(),
        }
    }

    /// Read the config file at `path` (if given) and the environment.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![format!("reading {}: {e}", p.display())],
            })?),
            None => None,
        };
        let base = path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = path.map(|p| p.display().to_string()).unwrap_or_default();
        let file = text.as_deref().map(|t| (name.as_str(), t));
        AgentConfig::parse(file, &base, env)
    }

    /// Read from the file's text; relative paths in the file are joined to `base`.
    pub fn parse(
        file: Option<(&str, &str)>,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let mut r = ConfigReader::new(file, ENV_PREFIX, env);
        let c = AgentConfig::read(&mut r, base, env);
        r.finish().map(|()| c)
    }

    /// The keys this config understands (a test checks the example documents each).
    pub fn keys() -> Vec<String> {
        let none = |_: &str| None;
        let mut r = ConfigReader::new(None, ENV_PREFIX, &none);
        AgentConfig::read(&mut r, Path::new(""), &none);
        r.keys().map(str::to_owned).collect()
    }

    fn read(
        r: &mut ConfigReader<'_>,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> AgentConfig {
        // A path from the file is relative to the file; one from the environment is not.
        let resolve = |r: &ConfigReader<'_>, key: &str, p: PathBuf| -> PathBuf {
            if p.is_absolute() || env(&r.env_var(key)).is_some() {
                p
            } else {
                base.join(p)
            }
        };
        let center_url: String = r.value("center_url", String::new());
        if center_url.is_empty() {
            r.problem("`center_url`: required (for example \"http://127.0.0.1:8470\")");
        } else if !(center_url.starts_with("http://") || center_url.starts_with("https://")) {
            r.problem(format!(
                "`center_url`: {center_url:?} must start with http:// or https://"
            ));
        }
        let data_dir = r.value("data_dir", PathBuf::from("fleetcare-agent-data"));
        let data_dir = resolve(r, "data_dir", data_dir);
        let mut c = AgentConfig::new(&center_url, data_dir);
        let ca_file: Option<PathBuf> = r.optional("ca_file");
        let cert_file: Option<PathBuf> = r.optional("client_cert_file");
        let key_file: Option<PathBuf> = r.optional("client_key_file");
        let identity = match (cert_file, key_file) {
            (Some(c), Some(k)) => Some((
                resolve(r, "client_cert_file", c),
                resolve(r, "client_key_file", k),
            )),
            (None, None) => None,
            _ => {
                r.problem("`client_cert_file` and `client_key_file` go together");
                None
            }
        };
        c.tls = match ca_file {
            Some(f) => Some(TlsFiles {
                ca_file: resolve(r, "ca_file", f),
                identity,
            }),
            None => {
                if center_url.starts_with("https://") {
                    r.problem(
                        "`ca_file`: required for an https:// center_url (the CA certificates \
                         to trust; the system's bundle is /etc/ssl/certs/ca-certificates.crt)",
                    );
                }
                if identity.is_some() {
                    r.problem("`client_cert_file`: needs `ca_file` (mutual TLS is TLS)");
                }
                None
            }
        };
        let key: Option<String> = r.optional("enrollment_key");
        let key_file: Option<PathBuf> = r.optional("enrollment_key_file");
        c.enrollment_key = match (key, key_file) {
            (Some(_), Some(_)) => {
                r.problem("`enrollment_key` and `enrollment_key_file`: set one, not both");
                None
            }
            (Some(k), None) => Some(k),
            (None, Some(f)) => {
                let f = resolve(r, "enrollment_key_file", f);
                match std::fs::read_to_string(&f) {
                    Ok(k) if !k.trim().is_empty() => Some(k.trim().to_owned()),
                    Ok(_) => {
                        r.problem(format!("`enrollment_key_file`: {} is empty", f.display()));
                        None
                    }
                    Err(e) => {
                        r.problem(format!(
                            "`enrollment_key_file`: reading {}: {e}",
                            f.display()
                        ));
                        None
                    }
                }
            }
            (None, None) => None,
        };
        c.inventory = r
            .optional::<PathBuf>("inventory")
            .map(|p| resolve(r, "inventory", p));
        // The agent's own interval may be as short as a second (labs, tests); the center
        // cannot set one below MIN_REPORT_INTERVAL_S for a fleet.
        c.report_interval = Duration::from_secs(r.bounded(
            "report_interval_s",
            3600,
            1,
            fleetcare_core::limits::MAX_REPORT_INTERVAL_S,
        ));
        c.transport = match r
            .choice("transport", "auto", &["auto", "websocket", "poll", "mqtt"])
            .as_str()
        {
            "websocket" => Transport::WebSocket,
            "poll" => Transport::Poll,
            "mqtt" => Transport::Mqtt,
            _ => Transport::Auto,
        };
        let mqtt_url: Option<String> = r.optional("mqtt_url");
        let mqtt_username: Option<String> = r.optional("mqtt_username");
        let mqtt_password_file = r
            .optional::<PathBuf>("mqtt_password_file")
            .map(|p| resolve(r, "mqtt_password_file", p));
        let mqtt_ca_file = r
            .optional::<PathBuf>("mqtt_ca_file")
            .map(|p| resolve(r, "mqtt_ca_file", p));
        c.mqtt = match (mqtt_url, mqtt_username) {
            (Some(url), Some(username)) => {
                if let Err(e) = fleetcare_wire::mqtt::parse_url(&url) {
                    r.problem(format!("`mqtt_url`: {e}"));
                }
                if let Err(e) = parse_username(&username) {
                    r.problem(format!("`mqtt_username`: {e}"));
                }
                Some(MqttSettings {
                    url,
                    username,
                    password_file: mqtt_password_file,
                    ca_file: mqtt_ca_file,
                })
            }
            (None, None) => None,
            _ => {
                r.problem("`mqtt_url` and `mqtt_username` go together");
                None
            }
        };
        if (c.transport == Transport::Mqtt) != c.mqtt.is_some() {
            r.problem(
                "`transport = \"mqtt\"` and the `mqtt_url` and `mqtt_username` keys go together",
            );
        }
        c.keepalive = Duration::from_secs(r.bounded("keepalive_s", 30, 1, 600));
        c.poll_wait = Duration::from_secs(r.bounded(
            "poll_wait_s",
            25,
            1,
            fleetcare_core::limits::MAX_POLL_WAIT_S,
        ));
        c.watch_interval = Duration::from_millis(r.bounded("watch_interval_ms", 500, 50, 600_000));
        c.backoff_initial = Duration::from_millis(r.bounded("backoff_initial_ms", 500, 10, 60_000));
        c.backoff_max = Duration::from_secs(r.bounded("backoff_max_s", 60, 1, 3600));
        c.request_timeout = Duration::from_secs(r.bounded("request_timeout_s", 15, 1, 600));
        c.outbox_max =
            usize::try_from(r.bounded("outbox_max", 1000, 1, 1_000_000)).unwrap_or(usize::MAX);
        c.trust_root = r
            .optional::<PathBuf>("trust_root")
            .map(|p| resolve(r, "trust_root", p));
        c.units_dir = r
            .optional::<PathBuf>("units_dir")
            .map(|p| resolve(r, "units_dir", p));
        c.health_command = r.value("health_command", Vec::new());
        c.command_slots = r.value("command_slots", Vec::new());
        c.commands = crate::update::command::Commands {
            stage: r.value("command_stage", Vec::new()),
            activate: r.value("command_activate", Vec::new()),
            health: r.value("command_health", Vec::new()),
            confirm: r.value("command_confirm", Vec::new()),
            revert: r.value("command_revert", Vec::new()),
            timeout: Some(Duration::from_secs(r.bounded(
                "command_timeout_s",
                600,
                1,
                86_400,
            ))),
        };
        if !c.command_slots.is_empty() && c.commands.activate.is_empty() {
            r.problem("`command_slots` needs at least `command_activate`");
        }
        c.download_min_rate = r.bounded("download_min_rate", 4096, 0, 1 << 40);
        c.download_window = Duration::from_secs(r.bounded("download_window_s", 30, 1, 3600));
        let immediate = r.choice(
            "errors_immediate_severity",
            "error",
            &["debug", "info", "warning", "error", "critical", "never"],
        );
        c.errors = Triggers {
            interval: Duration::from_secs(r.bounded(
                "errors_interval_s",
                3600,
                1,
                fleetcare_core::limits::MAX_REPORT_INTERVAL_S,
            )),
            immediate: crate::journal::severity_rank(&immediate),
            batch_events: r.bounded("errors_batch_events", 200, 1, 1_000_000),
            batch_bytes: r.bounded("errors_batch_bytes", 64 * 1024, 1, 1 << 30),
            batch_weight: r.bounded("errors_batch_weight", 100, 1, 1 << 40),
            check: c.watch_interval,
        };
        let socket: Option<PathBuf> = r
            .optional::<PathBuf>("local_socket")
            .map(|p| resolve(r, "local_socket", p));
        c.local_socket = if r.value("local_api", true) {
            Some(socket.unwrap_or_else(|| c.data_dir.join("agent.sock")))
        } else {
            None
        };
        c.journal = crate::journal::JournalLimits {
            max_events: r.bounded("journal_max_events", 100_000, 10, 100_000_000),
            max_bytes: r.bounded("journal_max_mb", 64, 1, 1 << 20) << 20,
        };
        let printers = r.value("printers", Printers::default()).0;
        for (url, name) in &printers {
            if let Some(id) = &name.device_id
                && let Err(e) = fleetcare_core::DeviceId::parse(id)
            {
                r.problem(format!("`printers`: {url:?}: device_id: {e}"));
            }
            if let Some(m) = &name.model
                && (m.trim().is_empty() || m.chars().count() > fleetcare_core::limits::MAX_NAME_LEN)
            {
                r.problem(format!(
                    "`printers`: {url:?}: model must be 1 to {} characters",
                    fleetcare_core::limits::MAX_NAME_LEN
                ));
            }
        }
        c.printer_names = printers
            .iter()
            .filter(|(_, n)| *n != PrinterName::default())
            .cloned()
            .collect();
        c.printers = printers.into_iter().map(|(url, _)| url).collect();
        c.printer_poll = Duration::from_secs(r.bounded("printer_poll_s", 60, 1, 86_400));
        c.printer_timeout = Duration::from_secs(r.bounded("printer_timeout_s", 10, 1, 300));
        c.printer_snmp_community = r.optional("printer_snmp_community");
        c.printer_snmp_port =
            u16::try_from(r.bounded("printer_snmp_port", 161, 1, 65_535)).unwrap_or(161);
        c.printer_unit_kinds = r.value("printer_unit_kinds", std::collections::BTreeMap::new());
        if let Some(dir) = r
            .optional::<PathBuf>("printer_profiles")
            .map(|p| resolve(r, "printer_profiles", p))
        {
            match crate::proxy::profile::load_dir(&dir) {
                Ok(p) => c.printer_profiles = p,
                Err(e) => r.problem(format!("`printer_profiles`: {e}")),
            }
        }
        if c.printers.len() > 1000 {
            r.problem(format!(
                "`printers`: {} printers; one agent stands in for at most 1000",
                c.printers.len()
            ));
        }
        for p in &c.printers {
            if let Err(e) = crate::proxy::addr::PrinterAddr::parse(
                p,
                c.printer_snmp_community.as_deref(),
                c.printer_snmp_port,
            ) {
                r.problem(format!("`printers`: {e}"));
            }
        }
        if !c.printers.is_empty() && c.inventory.is_some() {
            r.problem(
                "`printers` and `inventory`: a proxy's structure comes from its printers; set one",
            );
        }
        c
    }
}

/// `(tenant, device id)` of a username `<tenant>/<device id>`.
pub fn parse_username(u: &str) -> Result<(i64, String), String> {
    let (t, d) = u
        .split_once('/')
        .ok_or_else(|| format!("{u:?}: must be <tenant number>/<device id>"))?;
    let tenant = t
        .parse::<i64>()
        .map_err(|_| format!("{u:?}: {t:?} is not a tenant number"))?;
    fleetcare_core::DeviceId::parse(d).map_err(|e| format!("{u:?}: {e}"))?;
    Ok((tenant, d.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_are_relative_to_the_file() {
        let env = |k: &str| (k == "FLEETCARE_AGENT_DATA_DIR").then(|| "rel/data".to_owned());
        let c = AgentConfig::parse(
            Some((
                "a.toml",
                "center_url = \"http://c:1/\"\ninventory = \"inv.toml\"\nenrollment_key = \"k\"\n",
            )),
            Path::new("/etc/fleetcare"),
            &env,
        )
        .expect("valid");
        assert_eq!(c.center_url, "http://c:1");
        assert_eq!(c.inventory, Some(PathBuf::from("/etc/fleetcare/inv.toml")));
        assert_eq!(
            c.data_dir,
            PathBuf::from("rel/data"),
            "from the environment"
        );
        assert_eq!(c.enrollment_key.as_deref(), Some("k"));
    }

    #[test]
    fn every_problem_at_once() {
        let env = |_: &str| None;
        let err = AgentConfig::parse(
            Some((
                "a.toml",
                "center_url = \"ftp://x\"\nenrollment_key = \"k\"\nenrollment_key_file = \"f\"\ntransport = \"carrier-pigeon\"\nreport_interval_s = 0\n",
            )),
            Path::new("/"),
            &env,
        )
        .expect_err("invalid");
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn printers_are_urls_or_tables_that_name_them() {
        let env = |_: &str| None;
        let parse = |printers: &str| {
            AgentConfig::parse(
                Some((
                    "a.toml",
                    &format!(
                        "center_url = \"http://c:1\"\nenrollment_key = \"k\"\nprinters = {printers}\n"
                    ),
                )),
                Path::new("/"),
                &env,
            )
        };
        let c = parse(
            r#"["ipp://p1/ipp/print", { url = "snmp://public@p2", device_id = "FRONT-DESK-1", model = "acme-laser-5" }]"#,
        )
        .expect("valid");
        assert_eq!(c.printers, ["ipp://p1/ipp/print", "snmp://public@p2"]);
        assert_eq!(
            c.printer_names["snmp://public@p2"],
            PrinterName {
                device_id: Some("FRONT-DESK-1".into()),
                model: Some("acme-laser-5".into()),
            }
        );
        assert!(!c.printer_names.contains_key("ipp://p1/ipp/print"));
        for bad in [
            r#"[{ url = "snmp://p", device_id = "no spaces please" }]"#,
            r#"[{ url = "snmp://p", serial = "x" }]"#,
            r#"[{ device_id = "X" }]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_center_url_with_a_path_gets_a_hint() {
        let at = |u: &str| AgentConfig::new(u, PathBuf::from("/tmp/x")).center_url_hint();
        assert_eq!(at("http://127.0.0.1:8470"), None);
        assert_eq!(at("http://127.0.0.1:8470/"), None);
        let hint = at("http://127.0.0.1:8470/ui/").expect("a hint");
        assert!(hint.contains("/ui"), "{hint}");
        assert!(hint.contains("http://127.0.0.1:8470 "), "{hint}");
    }
}
