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
    /// Memory for artifacts that devices are downloading (served from memory, checked
    /// against their hash when loaded); 0 serves every download from the file.
    pub artifact_cache_bytes: u64,
}

/// The environment variables' prefix: `FLEETCARE_LISTEN`, `FLEETCARE_DATA_DIR`, …
pub const ENV_PREFIX: &str = "FLEETCARE_";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            data_dir: PathBuf::from("fleetcare-data"),
            database_url: None,
            tenant: "default".to_owned(),
            log_format: LogFormat::Text,
            poll_grace: Duration::from_secs(90),
            push_idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            artifact_cache_bytes: 512 << 20,
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
        ServerConfig {
            listen,
            data_dir: r.value("data_dir", d.data_dir),
            database_url,
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
