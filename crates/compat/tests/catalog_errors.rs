//! A catalog that names what it does not define is refused with each problem placed: the line
//! of the item, and the nearest defined name.

use fleetcare_compat::catalog::Catalog;
use fleetcare_compat::vocab::Vocab;

const BAD: &str = r#"
[[device_model]]
name = "acme-mfp-9000"

[[product]]
name = "ctl-firmware"
maker = "acme"
runs_on = [{ unit_model = "ctl-9" }]

[[unit_model]]
name = "ctl-9"
kind = "controller"
hw_revisions = ["A"]
accepted_by = ["acme-mfp-900"]
software = ["ctl-firmwar"]
"#;

#[test]
fn reference_errors_carry_their_line_and_a_near_name() {
    let err = Catalog::parse(BAD, &Vocab::new()).expect_err("refused");
    let all = err.problems.join("\n");
    assert!(
        err.problems.iter().any(|p| p.starts_with("line 10, unit_model \"ctl-9\": accepted_by names unknown device model \"acme-mfp-900\" (did you mean \"acme-mfp-9000\"?)")),
        "{all}"
    );
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("line 10, unit_model \"ctl-9\"")
                && p.contains("(did you mean \"ctl-firmware\"?)")),
        "{all}"
    );
}
