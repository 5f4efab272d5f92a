//! A Mosquitto with the shipped `deploy/mosquitto` config and ACL, for the MQTT tests and
//! benchmarks.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The center's broker password in tests.
pub const CENTER_PASSWORD: &str = "center-secret-for-this-test";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

fn passwd(file: &Path, user: &str, password: &str) {
    let ok = std::process::Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd runs (apt-get install mosquitto)");
    assert!(ok.success(), "mosquitto_passwd {user}");
}

/// A Mosquitto with the shipped config and ACL, on `port`, with accounts in `dir/passwd`.
pub struct Broker {
    child: tokio::process::Child,
    passwd: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path, port: u16) -> Broker {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/mosquitto");
        let conf = std::fs::read_to_string(shipped.join("fleetcare.conf")).expect("shipped conf");
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "").expect("passwd");
        passwd_file_mode(&passwd);
        self::passwd(&passwd, "center", CENTER_PASSWORD);
        let mut lines = Vec::new();
        for l in conf.lines() {
            lines.push(if l.starts_with("password_file ") {
                format!("password_file {}", passwd.display())
            } else if l.starts_with("acl_file ") {
                format!(
                    "acl_file {}",
                    shipped
                        .join("fleetcare.acl")
                        .canonicalize()
                        .expect("acl")
                        .display()
                )
            } else if l.starts_with("listener 1883 ") {
                format!("listener {port} 127.0.0.1")
            } else {
                l.to_owned()
            });
        }
        // Started as root, Mosquitto would drop to its own user, who cannot read the test's
        // files; as anyone else this line changes nothing.
        let me = std::process::Command::new("id")
            .arg("-un")
            .output()
            .expect("id");
        lines.push(format!(
            "user {}",
            String::from_utf8_lossy(&me.stdout).trim()
        ));
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, lines.join("\n") + "\n").expect("conf");
        let child = tokio::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto starts (apt-get install mosquitto)");
        Broker { child, passwd }
    }

    /// Add an account and have the broker read its accounts again.
    pub fn add(&self, user: &str, password: &str) {
        passwd(&self.passwd, user, password);
    }

    pub fn reload(&self) {
        let pid = self.child.id().expect("mosquitto runs");
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

fn passwd_file_mode(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// One center linked to `port`, with its config in `dir`.
pub async fn center_on_broker(dir: &Path, port: u16, extra: &[&str]) -> super::Served {
    let pw = dir.join("mqtt-password");
    std::fs::write(&pw, format!("{CENTER_PASSWORD}\n")).expect("password file");
    let conf = dir.join("center.toml");
    std::fs::write(
        &conf,
        format!(
            "mqtt_url = \"mqtt://127.0.0.1:{port}\"\nmqtt_username = \"center\"\nmqtt_password_file = \"{}\"\n",
            pw.display()
        ),
    )
    .expect("config");
    let mut args = vec!["--config", conf.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    super::serve(dir, &args).await
}

impl Broker {
    /// The broker's process id (its CPU time, in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("mosquitto runs")
    }
}
