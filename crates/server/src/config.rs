//! The center's typed config: defaults → `--config` file → `FLEETCARE_*` environment →
//! command-line flags. Every key is documented in `examples/center.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleetcare_core::config::{ConfigError, ConfigReader};

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where the embedded store, `admin-token` and `enrollment-key` live.
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded store.
    pub database_url: Option<String>,
    /// Where artifacts are kept (content-addressed); `<data_dir>/artifacts` when unset.
    /// Instances sharing one PostgreSQL share this directory too (a shared file system),
    /// since a device may download from any of them.
    pub artifact_dir: Option<PathBuf>,
    /// The tenant the first start creates, and the bootstrap token and key belong to.
    pub tenant: String,
    pub log_format: LogFormat,
    /// A polling device counts as online this long after its last poll ended.
    pub poll_grace: Duration,
    /// A push channel on which the device sent nothing (not even a ping) this long is closed.
    pub push_idle_timeout: Duration,
    /// Longest time a request (other than a long poll or a push channel) may take, body
    /// included.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's head (slowloris).
    pub header_read_timeout: Duration,
    /// Memory for artifacts that devices are downloading over TLS (served from memory,
    /// checked against their hash when loaded); 0 serves every download from the file. Plain
    /// connections send downloads with `sendfile` and do not use it.
    pub artifact_cache_bytes: u64,
    /// TLS: the certificate chain and key (PEM) the center presents; unset serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Mutual TLS for devices: whether a device must present a certificate (from the device
    /// CA, naming itself) on its own routes.
    pub device_client_cert: ClientCert,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (networks).
    pub trusted_proxies: Vec<String>,
    /// Requests a device may make per second, sustained (0: no limit).
    pub device_rate_per_s: u64,
    /// Requests a device may make at once before the sustained rate applies.
    pub device_burst: u64,
    /// Failed authentications (bad token, credential or key) a client address may make per
    /// minute; after that it is answered 429 until its budget refills (0: no limit).
    pub auth_failures_per_min: u64,
    /// Devices may also connect through this MQTT broker (`mqtt_url` and the other `mqtt_*`
    /// keys); `None`: HTTP only.
    pub mqtt: Option<MqttSettings>,
    /// Days the raw points of operating history are kept before they are rolled up by day.
    pub operating_raw_days: u64,
    /// Days the daily rollups of operating history are kept (at least `operating_raw_days`).
    pub operating_keep_days: u64,
    /// The center's address as people reach it (links in notifications), such as
    /// `https://fleet.example.com`.
    pub public_url: Option<String>,
    /// Seconds a DDI client sleeps between polls when its device has no reporting interval
    /// of its own.
    pub ddi_poll_s: u64,
    /// Notifications: webhooks, e-mail relay, retries.
    pub notify: NotifyConfig,
    /// New data is refused (503) while less than this is free on the data directory's disk.
    pub disk_reserve_bytes: u64,
}

/// How notifications leave the center (config keys `notify_*` and `smtp_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Networks a webhook may point at although they are link-local or a cloud metadata
    /// address (refused otherwise).
    pub allow_networks: Vec<String>,
    /// CA certificates webhooks over https and the SMTP relay's TLS are checked against.
    pub ca_file: PathBuf,
    /// How long a failing delivery is retried before it is given up (at least 24 hours).
    pub retry_for: Duration,
    /// The longest a receiver may take to answer.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Days delivered notifications stay in the delivery log.
    pub keep_days: u64,
    pub smtp: Option<SmtpSettings>,
}

/// The SMTP relay mail goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: String,
    pub user: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// The sender, such as `Fleetcare <fleetcare@example.com>`.
    pub from: String,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            allow_networks: Vec::new(),
            ca_file: PathBuf::from(DEFAULT_CA_FILE),
            retry_for: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            concurrency: 32,
            keep_days: 30,
            smtp: None,
        }
    }
}

/// The system's bundle of public CA certificates (Debian).
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The center's certificate and key, and the CA that signs device certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// Whether devices present client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// Not asked for (a certificate a device presents anyway is still checked against its
    /// credential when a device CA is configured).
    Optional,
    /// Every device request must come with a certificate naming that device.
    Required,
}

/// The environment variables' prefix: `FLEETCARE_LISTEN`, `FLEETCARE_DATA_DIR`, …
pub const ENV_PREFIX: &str = "FLEETCARE_";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            data_dir: PathBuf::from("fleetcare-data"),
            database_url: None,
            artifact_dir: None,
            tenant: "default".to_owned(),
            log_format: LogFormat::Text,
            poll_grace: Duration::from_secs(90),
            push_idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            artifact_cache_bytes: 512 << 20,
            tls: None,
            device_client_cert: ClientCert::Optional,
            trusted_proxies: Vec::new(),
            device_rate_per_s: 10,
            device_burst: 120,
            auth_failures_per_min: 30,
            mqtt: None,
            operating_raw_days: 35,
            operating_keep_days: 800,
            public_url: None,
            ddi_poll_s: 300,
            notify: NotifyConfig::default(),
            disk_reserve_bytes: 256 << 20,
        }
    }
}

impl ServerConfig {
    /// Read the config from an optional file (`(name, text)`) and the environment.
    pub fn load(
        file: Option<(&str, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let mut r = ConfigReader::new(file, ENV_PREFIX, env);
        let c = ServerConfig::read(&mut r);
        r.finish().map(|()| c)
    }

    fn read(r: &mut ConfigReader<'_>) -> ServerConfig {
        let d = ServerConfig::default();
        let listen = match r.optional::<String>("listen") {
            None => d.listen,
            Some(s) => s.parse().unwrap_or_else(|_| {
                r.problem(format!(
                    "`listen`: {s:?} is not an address such as 127.0.0.1:8470"
                ));
                d.listen
            }),
        };
        let database_url: Option<String> = r.optional("database_url");
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            r.problem("`database_url`: must start with postgres:// or postgresql://");
        }
        let tenant: String = r.value("tenant", d.tenant.clone());
        if fleetcare_core::DeviceId::parse(&tenant).is_err() {
            r.problem(format!(
                "`tenant`: {tenant:?} may hold only letters, digits and . _ : -"
            ));
        }
        let log_format = match r.choice("log_format", "text", &["text", "json"]).as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let cert_file: Option<PathBuf> = r.optional("tls_cert_file");
        let key_file: Option<PathBuf> = r.optional("tls_key_file");
        let client_ca_file: Option<PathBuf> = r.optional("tls_client_ca_file");
        let tls = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
                client_ca_file,
            }),
            (None, None) => {
                if client_ca_file.is_some() {
                    r.problem("`tls_client_ca_file`: needs `tls_cert_file` and `tls_key_file`");
                }
                None
            }
            _ => {
                r.problem("`tls_cert_file` and `tls_key_file` go together");
                None
            }
        };
        let device_client_cert = match r
            .choice("device_client_cert", "optional", &["optional", "required"])
            .as_str()
        {
            "required" => ClientCert::Required,
            _ => ClientCert::Optional,
        };
        if device_client_cert == ClientCert::Required
            && tls.as_ref().is_none_or(|t| t.client_ca_file.is_none())
        {
            r.problem(
                "`device_client_cert = \"required\"`: needs `tls_client_ca_file` (the device CA)",
            );
        }
        let trusted_proxies: Vec<String> = r.value("trusted_proxies", Vec::new());
        if let Err(e) = crate::access::peer::TrustedProxies::parse(&trusted_proxies) {
            r.problem(format!("`trusted_proxies`: {e}"));
        }
        let mqtt_url: Option<String> = r.optional("mqtt_url");
        let mqtt_username: Option<String> = r.optional("mqtt_username");
        let mqtt_password_file: Option<PathBuf> = r.optional("mqtt_password_file");
        let mqtt_ca_file: Option<PathBuf> = r.optional("mqtt_ca_file");
        let mqtt_share_group: String = r.value("mqtt_share_group", "fleetcare".to_owned());
        let mqtt = match mqtt_url {
            None => {
                if mqtt_username.is_some() || mqtt_password_file.is_some() || mqtt_ca_file.is_some()
                {
                    r.problem(
                        "`mqtt_username`, `mqtt_password_file` and `mqtt_ca_file` need `mqtt_url`",
                    );
                }
                None
            }
            Some(url) => {
                match fleetcare_wire::mqtt::parse_url(&url) {
                    Err(e) => r.problem(format!("`mqtt_url`: {e}")),
                    Ok((true, _, _)) if mqtt_ca_file.is_none() => {
                        r.problem("`mqtt_url`: mqtts:// needs `mqtt_ca_file`");
                    }
                    Ok(_) => {}
                }
                if mqtt_password_file.is_some() && mqtt_username.is_none() {
                    r.problem("`mqtt_password_file`: needs `mqtt_username`");
                }
                if mqtt_share_group.is_empty() || mqtt_share_group.contains(['/', '+', '#']) {
                    r.problem("`mqtt_share_group`: a name without / + #");
                }
                Some(MqttSettings {
                    url,
                    username: mqtt_username,
                    password_file: mqtt_password_file,
                    ca_file: mqtt_ca_file,
                    share_group: mqtt_share_group,
                })
            }
        };
        let operating_raw_days = r.bounded("operating_raw_days", 35, 1, 3650);
        let public_url: Option<String> = r.optional("public_url");
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            r.problem("`public_url`: must start with http:// or https://");
        }
        let notify = read_notify(r);
        let ddi_poll_s = r.bounded("ddi_poll_s", 300, 1, 86_399);
        ServerConfig {
            ddi_poll_s,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            notify,
            mqtt,
            tls,
            device_client_cert,
            trusted_proxies,
            device_rate_per_s: r.bounded("device_rate_per_s", 10, 0, 100_000),
            device_burst: r.bounded("device_burst", 120, 1, 1_000_000),
            auth_failures_per_min: r.bounded("auth_failures_per_min", 30, 0, 1_000_000),
            listen,
            data_dir: r.value("data_dir", d.data_dir),
            database_url,
            artifact_dir: r.optional::<PathBuf>("artifact_dir"),
            tenant,
            log_format,
            poll_grace: Duration::from_secs(r.bounded("poll_grace_s", 90, 5, 3600)),
            push_idle_timeout: Duration::from_secs(r.bounded("push_idle_timeout_s", 120, 10, 3600)),
            request_timeout: Duration::from_secs(r.bounded("request_timeout_s", 30, 1, 600)),
            header_read_timeout: Duration::from_secs(r.bounded(
                "header_read_timeout_s",
                10,
                1,
                120,
            )),
            artifact_cache_bytes: r.bounded("artifact_cache_mb", 512, 0, 1 << 20) << 20,
            disk_reserve_bytes: r.bounded("disk_reserve_mb", 256, 0, 1 << 20) << 20,
            operating_raw_days,
            operating_keep_days: r
                .bounded("operating_keep_days", 800, 1, 36_500)
                .max(operating_raw_days),
        }
    }

    /// The keys this config understands (for the test that checks the example documents each).
    pub fn keys() -> Vec<String> {
        let none = |_: &str| None;
        let mut r = ConfigReader::new(None, ENV_PREFIX, &none);
        ServerConfig::read(&mut r);
        r.keys().map(str::to_owned).collect()
    }
}

fn read_notify(r: &mut ConfigReader<'_>) -> NotifyConfig {
    let d = NotifyConfig::default();
    let allow_networks: Vec<String> = r.value("notify_allow_networks", Vec::new());
    for n in &allow_networks {
        if n.parse::<ipnet::IpNet>().is_err() {
            r.problem(format!(
                "`notify_allow_networks`: {n:?} is not a network such as 169.254.0.0/16"
            ));
        }
    }
    let host: Option<String> = r.optional("smtp_host");
    let tls = r.choice("smtp_tls", "starttls", &["none", "starttls", "tls"]);
    let port: u64 = r.bounded("smtp_port", if tls == "tls" { 465 } else { 587 }, 1, 65_535);
    let user: Option<String> = r.optional("smtp_user");
    let password_file: Option<PathBuf> = r.optional("smtp_password_file");
    let from: Option<String> = r.optional("smtp_from");
    let smtp = match host {
        None => {
            if user.is_some() || password_file.is_some() || from.is_some() {
                r.problem("`smtp_user`, `smtp_password_file` and `smtp_from` need `smtp_host`");
            }
            None
        }
        Some(host) => {
            let from = from.unwrap_or_else(|| {
                r.problem("`smtp_host`: needs `smtp_from` (the sender's address)");
                String::new()
            });
            if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
                r.problem(format!("`smtp_from`: {from:?} is not an e-mail address"));
            }
            if password_file.is_some() != user.is_some() {
                r.problem("`smtp_user` and `smtp_password_file` go together");
            }
            Some(SmtpSettings {
                host,
                port: u16::try_from(port).unwrap_or(587),
                tls,
                user,
                password_file,
                from,
            })
        }
    };
    NotifyConfig {
        allow_networks,
        ca_file: r.value("notify_ca_file", d.ca_file),
        retry_for: Duration::from_secs(3600 * r.bounded("notify_retry_hours", 24, 24, 24 * 30)),
        timeout: Duration::from_secs(r.bounded("notify_timeout_s", 10, 1, 60)),
        concurrency: usize::try_from(r.bounded("notify_concurrency", 32, 1, 1024)).unwrap_or(32),
        keep_days: r.bounded("notify_keep_days", 30, 1, 3650),
        smtp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_environment() {
        let env = |k: &str| (k == "FLEETCARE_POLL_GRACE_S").then(|| "30".to_owned());
        let c = ServerConfig::load(
            Some((
                "c.toml",
                "listen = \"0.0.0.0:9000\"\nlog_format = \"json\"\n",
            )),
            &env,
        )
        .expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.poll_grace, Duration::from_secs(30));
        assert_eq!(c.data_dir, PathBuf::from("fleetcare-data"));
    }

    #[test]
    fn all_problems_at_once() {
        let env = |_: &str| None;
        let err = ServerConfig::load(
            Some((
                "c.toml",
                "listen = \"here\"\ndatabase_url = \"mysql://x\"\npoll_grace_s = 1\nlisten_port = 3\n",
            )),
            &env,
        )
        .expect_err("invalid");
        assert_eq!(err.problems.len(), 4, "{err}");
    }
}

/// Where the broker is and how the center logs in (config keys `mqtt_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    pub username: Option<String>,
    /// A file holding the password (never the password in the config itself).
    pub password_file: Option<PathBuf>,
    /// For `mqtts://`: the CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// The shared subscription's group: instances in one group split the messages.
    pub share_group: String,
}
