//! TLS end to end on 127.0.0.1: a center serving HTTPS with a device CA and
//! `device_client_cert = "required"`, a real agent connecting over HTTPS and WSS with its own
//! certificate, an operator over HTTPS without one, the refusals of mutual TLS (no
//! certificate, another device's), and credential rotation through the push channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig, config::TlsFiles, local};
use fleetcare_server::config::{ClientCert, TlsFiles as CenterTls};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(10);

/// A CA that signs certificates into `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).expect("ca");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write");
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A leaf certificate and key, written as `name.pem` and `name.key`.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        sans: &[&str],
        subject: &[(DnType, &str)],
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut p =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = DistinguishedName::new();
        for (t, v) in subject {
            dn.push(t.clone(), *v);
        }
        p.distinguished_name = dn;
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }
}

fn device_cert(ca: &Ca, dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    ca.issue(
        dir,
        id,
        &[],
        &[
            (DnType::CommonName, id),
            (DnType::OrganizationName, "default"),
        ],
    )
}

fn client(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let tls = fleetcare_tls::client_config(ca, identity.map(|(c, k)| (c.as_path(), k.as_path())))
        .expect("client tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(m, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the center answers over TLS");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn inventory(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "[device]\nid = \"{id}\"\nmodel = \"acme-mfp-9000\"\n\n[[unit]]\nslot = \"controller\"\n\
             kind = \"controller\"\nmodel = \"ctl-x2\"\nserial = \"CTL-{id}\"\n"
        ),
    )
    .expect("write");
    path
}

#[tokio::test]
async fn devices_and_operators_over_tls_with_device_certificates_and_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let center_ca = Ca::new(d, "center-ca");
    let device_ca = Ca::new(d, "device-ca");
    let (cert_file, key_file) = center_ca.issue(
        d,
        "center",
        &["localhost", "127.0.0.1"],
        &[(DnType::CommonName, "center")],
    );
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: d.join("center"),
        tls: Some(CenterTls {
            cert_file,
            key_file,
            client_ca_file: Some(device_ca.pem.clone()),
        }),
        device_client_cert: ClientCert::Required,
        ..ServerConfig::default()
    };
    let center = Center::start(&config)
        .await
        .expect("center starts with TLS");
    let url = center.url();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let admin = center.boot.admin_token.clone();
    let key = center.boot.enrollment_key.clone();

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", center.addr))
        .timeout(PATIENCE)
        .send()
        .await;
    assert!(plain.is_err() || !plain.expect("answer").status().is_success());

    // A real agent, over HTTPS and WSS, with its own certificate.
    let dev1 = device_cert(&device_ca, d, "DEV-1");
    let mut cfg = AgentConfig::new(&url, d.join("agent-data"));
    cfg.enrollment_key = Some(key.clone());
    cfg.inventory = Some(inventory(d, "DEV-1"));
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg.tls = Some(TlsFiles {
        ca_file: center_ca.pem.clone(),
        identity: Some(dev1.clone()),
    });
    let data_dir = cfg.data_dir.clone();
    let (stop, shutdown) = watch::channel(false);
    let inventory = cfg.inventory.clone().expect("inventory");
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inventory)).run(shutdown));

    // The operator needs no certificate.
    let op = client(&center_ca.pem, None);
    let device = eventually("DEV-1 online over TLS", PATIENCE, || async {
        let (s, v) = call(
            &op,
            "GET",
            &format!("{url}/api/v1/devices/DEV-1"),
            &admin,
            None,
        )
        .await;
        (s == StatusCode::OK && v["online"] == true && v["last_report"]["trigger"] == "connect")
            .then_some(v)
    })
    .await;
    assert_eq!(device["units"][0]["serial"], "CTL-DEV-1");
    eventually("DEV-1's push channel open over WSS", PATIENCE, || async {
        let m = op
            .get(format!("{url}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        m.lines()
            .any(|l| l == "fleetcare_push_connected_devices 1")
            .then_some(())
    })
    .await;
    // A dashboard login over HTTPS gets a Secure cookie.
    let (s, v) = call(
        &op,
        "POST",
        &format!("{url}/api/v1/accounts"),
        &admin,
        Some(json!({"name": "olga", "role": "viewer", "password": "a long enough passphrase"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let login = op
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"name": "olga", "password": "a long enough passphrase"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let set = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let old = local::view(&data_dir)
        .expect("view")
        .credential
        .expect("enrolled")
        .device_token;

    // Mutual TLS refusals: no certificate, or another device's.
    let bare = client(&center_ca.pem, None);
    let (s, v) = call(&bare, "GET", &format!("{url}/device/v1/self"), &old, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("device certificate"),
        "{v}"
    );
    let dev2 = device_cert(&device_ca, d, "DEV-2");
    let as_dev2 = client(&center_ca.pem, Some(&dev2));
    let (s, v) = call(
        &as_dev2,
        "GET",
        &format!("{url}/device/v1/self"),
        &old,
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "DEV-2's certificate with DEV-1's credential: {v}"
    );
    let enroll = json!({"enrollment_key": key, "device_id": "DEV-3", "model": "acme-mfp-9000"});
    let (s, v) = call(
        &as_dev2,
        "POST",
        &format!("{url}/device/v1/enroll"),
        "",
        Some(enroll),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "enrolling as a device the certificate does not name: {v}"
    );
    let foreign = Ca::new(d, "foreign-ca");
    let forged = device_cert(&foreign, d, "DEV-1-forged");
    let forged_client = client(&center_ca.pem, Some(&forged));
    let r = forged_client.get(format!("{url}/healthz")).send().await;
    assert!(
        r.is_err(),
        "a certificate from another CA fails the handshake"
    );

    // Rotation: the operator asks, the agent gets a new credential through its push channel,
    // saves it, and once it uses it the old one stops working.
    let (s, v) = call(
        &op,
        "POST",
        &format!("{url}/api/v1/devices/DEV-1/rotate-credential"),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let new = eventually("the agent saved a new credential", PATIENCE, || async {
        let c = local::view(&data_dir).ok()?.credential?;
        (c.device_token != old).then_some(c.device_token)
    })
    .await;
    let (s, _) = call(
        &op,
        "POST",
        &format!("{url}/api/v1/devices/DEV-1/request-report?wait_s=5"),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let as_dev1 = client(&center_ca.pem, Some(&dev1));
    eventually("the old credential is refused", PATIENCE, || async {
        let (s, _) = call(
            &as_dev1,
            "GET",
            &format!("{url}/device/v1/self"),
            &old,
            None,
        )
        .await;
        (s == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let (s, v) = call(
        &as_dev1,
        "GET",
        &format!("{url}/device/v1/self"),
        &new,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let _ = stop.send(true);
    tokio::time::timeout(PATIENCE, agent)
        .await
        .expect("agent stops")
        .expect("task")
        .expect("clean");
    center.stop().await.expect("stop");
}
