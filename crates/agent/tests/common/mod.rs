//! What several of the agent's test binaries share.

/// An acme-mfp-9000 with one unit: a controller (hardware revision B) on ctl-firmware 5.2.1.
pub fn inventory(id: &str) -> String {
    format!(
        r#"[device]
id = "{id}"
model = "acme-mfp-9000"

[[unit]]
slot = "controller"
kind = "controller"
model = "ctl-x2"
serial = "CTL-{id}"
hw_revision = "B"
  [[unit.software]]
  product = "ctl-firmware"
  maker = "acme"
  version = "5.2.1"
"#
    )
}
