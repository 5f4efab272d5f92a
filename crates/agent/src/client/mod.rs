//! The HTTP client of the device protocol (`/device/v1/`).

use std::time::Duration;

use fleetcare_wire::ErrorBody;
use fleetcare_wire::compat::CompatReport;
use fleetcare_wire::delivery::{DeviceJobs, JobStatus, JobStatusAck};
use fleetcare_wire::device::{
    Command, CredentialResponse, EnrollRequest, EnrollResponse, ReportAck, StructureReport,
};
use fleetcare_wire::errors::{ErrorAck, ErrorBatch};
use fleetcare_wire::operator::DeviceView;
use serde::de::DeserializeOwned;

pub mod error;
pub use error::{ClientError, error_chain};

/// Bodies larger than this go gzipped (reports of a dozen units shrink to about a third).
pub const COMPRESS_ABOVE: usize = 1024;

/// `bytes`, gzipped. The compressor's tables are kept per thread and reset, not made
/// anew for every body (they are most of a small body's compression time).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    thread_local! {
        static COMPRESS: std::cell::RefCell<flate2::Compress> =
            std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::default(), false));
    }
    // The gzip wrapper (RFC 1952) around a raw deflate stream: header, data, CRC-32, size.
    let mut out = Vec::with_capacity(bytes.len() / 2 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    COMPRESS.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        loop {
            out.reserve(1024);
            let before = c.total_in();
            let status = c
                .compress_vec(
                    &bytes[usize::try_from(before)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len())..],
                    &mut out,
                    flate2::FlushCompress::Finish,
                )
                .expect("compressing in memory");
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

/// The device protocol over HTTP.
#[derive(Debug, Clone)]
pub struct CenterClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    tls: Option<std::sync::Arc<fleetcare_tls::rustls::ClientConfig>>,
    /// Reports and error batches go through the broker instead (`transport = "mqtt"`).
    mqtt: Option<std::sync::Arc<crate::mqtt::MqttLink>>,
}

impl CenterClient {
    pub fn new(center_url: &str, timeout: Duration) -> CenterClient {
        CenterClient::with_pool(center_url, timeout, usize::MAX)
    }

    /// A client keeping at most `max_idle` idle connections (many virtual devices sharing one
    /// client need not hold a connection each).
    pub fn with_pool(center_url: &str, timeout: Duration, max_idle: usize) -> CenterClient {
        CenterClient::with_tls(center_url, timeout, max_idle, None)
    }

    /// A client of an `https://` center with this TLS config (trusted CAs, and the device's
    /// certificate for mutual TLS); `None`: plain HTTP.
    pub fn with_tls(
        center_url: &str,
        timeout: Duration,
        max_idle: usize,
        tls: Option<fleetcare_tls::rustls::ClientConfig>,
    ) -> CenterClient {
        let mut b = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("fleetcare-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &tls {
            b = b.use_preconfigured_tls(tls.clone());
        }
        let http = b
            .build()
            .expect("an HTTP client with a plain configuration builds");
        CenterClient {
            http,
            base: center_url.trim_end_matches('/').to_owned(),
            timeout,
            tls: tls.map(std::sync::Arc::new),
            mqtt: None,
        }
    }

    /// The client an agent's config describes (its TLS files read and checked).
    pub fn for_config(
        cfg: &crate::config::AgentConfig,
    ) -> Result<CenterClient, fleetcare_tls::TlsError> {
        let tls = match &cfg.tls {
            None => None,
            Some(t) => Some(fleetcare_tls::client_config(
                &t.ca_file,
                t.identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            )?),
        };
        let mut client =
            CenterClient::with_tls(&cfg.center_url, cfg.request_timeout, usize::MAX, tls);
        if let (crate::config::Transport::Mqtt, Some(m)) = (cfg.transport, &cfg.mqtt) {
            let ca = m
                .ca_file
                .as_deref()
                .or(cfg.tls.as_ref().map(|t| t.ca_file.as_path()));
            let broker_tls = match ca {
                Some(ca) => Some(fleetcare_tls::client_config(ca, None)?),
                None => None,
            };
            client.mqtt = Some(
                crate::mqtt::MqttLink::new(m, broker_tls, cfg.request_timeout)
                    .map_err(fleetcare_tls::TlsError::Config)?,
            );
        }
        Ok(client)
    }

    /// The broker session, where reports go through MQTT.
    pub fn mqtt(&self) -> Option<&std::sync::Arc<crate::mqtt::MqttLink>> {
        self.mqtt.as_ref()
    }

    /// The TLS config, for the push channel's connection.
    pub fn tls(&self) -> Option<std::sync::Arc<fleetcare_tls::rustls::ClientConfig>> {
        self.tls.clone()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client (for artifact downloads).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The jobs the center has for this device, with their signed releases.
    pub async fn jobs(&self, token: &str) -> Result<DeviceJobs, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/jobs", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    /// Send a batch of the error log.
    pub async fn errors(&self, token: &str, batch: &ErrorBatch) -> Result<ErrorAck, ClientError> {
        if let Some(m) = &self.mqtt {
            return m.request(fleetcare_wire::mqtt::ERRORS, token, batch).await;
        }
        self.post_json(token, "/device/v1/errors", batch).await
    }

    /// POST a JSON body, gzipped when it is larger than [`COMPRESS_ABOVE`] (a center that
    /// does not take gzip, 415, gets it plain).
    async fn post_json<T: serde::Serialize, R: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: &T,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).expect("wire types serialize");
        let url = format!("{}{path}", self.base);
        let plain = |json: Vec<u8>| {
            self.http
                .post(&url)
                .bearer_auth(token)
                .timeout(self.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json)
        };
        if json.len() > COMPRESS_ABOVE {
            let gz = gzip(&json);
            let r = self
                .http
                .post(&url)
                .bearer_auth(token)
                .timeout(self.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(gz);
            match answer(r.send().await).await {
                Err(ClientError::Refused { status: 415, .. }) => {}
                other => return other,
            }
        }
        answer(plain(json).send().await).await
    }

    /// Tell the center where a job is.
    pub async fn job_status(
        &self,
        token: &str,
        job: u64,
        status: &JobStatus,
    ) -> Result<JobStatusAck, ClientError> {
        let r = self
            .http
            .post(format!("{}/device/v1/jobs/{job}/status", self.base))
            .bearer_auth(token)
            .timeout(self.timeout)
            .json(status);
        answer(r.send().await).await
    }

    /// Get a new credential for this device (the one presented stays valid until the new
    /// one is first used).
    pub async fn rotate_credential(&self, token: &str) -> Result<CredentialResponse, ClientError> {
        let r = self
            .http
            .post(format!("{}/device/v1/credential", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        let r = self
            .http
            .post(format!("{}/device/v1/enroll", self.base))
            .timeout(self.timeout)
            .json(req);
        answer(r.send().await).await
    }

    pub async fn report(
        &self,
        token: &str,
        report: &StructureReport,
    ) -> Result<ReportAck, ClientError> {
        if let Some(m) = &self.mqtt {
            return m.request(fleetcare_wire::mqtt::REPORT, token, report).await;
        }
        self.post_json(token, "/device/v1/reports", report).await
    }

    /// One long poll: waits up to `wait` at the center for commands. A command this agent
    /// does not know (from a newer center) is skipped, not the whole answer.
    pub async fn poll(&self, token: &str, wait: Duration) -> Result<Vec<Command>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            commands: Vec<serde_json::Value>,
        }
        let r = self
            .http
            .get(format!(
                "{}/device/v1/poll?wait_s={}",
                self.base,
                wait.as_secs()
            ))
            .bearer_auth(token)
            .timeout(wait + self.timeout);
        let raw: Raw = answer(r.send().await).await?;
        Ok(raw
            .commands
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<Command>(v) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a command this agent does not understand");
                    None
                }
            })
            .collect())
    }

    /// This device's compatibility as the center judges it: findings, plan or advice, jobs,
    /// notifications.
    pub async fn compat(&self, token: &str) -> Result<CompatReport, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/compat", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    /// Everything the center knows about this device: compatibility, troubles, recommended
    /// actions, abnormal units, settings, recent jobs, error rate against its model.
    pub async fn about(
        &self,
        token: &str,
    ) -> Result<fleetcare_wire::troubles::DeviceAbout, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/about", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    /// The settings the center set on this device.
    pub async fn settings(
        &self,
        token: &str,
    ) -> Result<fleetcare_wire::troubles::DeviceSettings, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/settings", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    /// The device's open notifications.
    pub async fn notifications(
        &self,
        token: &str,
    ) -> Result<fleetcare_wire::compat::DeviceNotifications, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/notifications", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }

    /// What the center knows about this device.
    pub async fn whoami(&self, token: &str) -> Result<DeviceView, ClientError> {
        let r = self
            .http
            .get(format!("{}/device/v1/self", self.base))
            .bearer_auth(token)
            .timeout(self.timeout);
        answer(r.send().await).await
    }
}

/// Largest answer the agent reads from the center.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

async fn answer<T: DeserializeOwned>(
    sent: reqwest::Result<reqwest::Response>,
) -> Result<T, ClientError> {
    let resp = sent.map_err(|e| ClientError::Network(error_chain(&e)))?;
    let status = resp.status();
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(ClientError::Decode(format!(
            "an answer larger than {MAX_ANSWER} bytes"
        )));
    }
    let url = resp.url().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Network(error_chain(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            if bytes.trim_ascii_start().starts_with(b"<") {
                ClientError::Decode(format!(
                    "{url} answered a web page, not the center's API: is center_url the \
                     center's base address (http://host:port)?"
                ))
            } else {
                ClientError::Decode(e.to_string())
            }
        });
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.code, b.error),
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        ),
    };
    Err(ClientError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

#[cfg(test)]
mod gzip_tests {
    use std::io::Read;

    #[test]
    fn gzip_round_trips_at_every_size() {
        for n in [0usize, 1, 100, 1024, 5000, 300_000] {
            let input: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            for _ in 0..2 {
                // Twice: the second reuses the thread's compressor.
                let gz = super::gzip(&input);
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .expect("valid gzip");
                assert_eq!(back, input, "size {n}");
            }
        }
    }
}
