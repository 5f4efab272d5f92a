//! A synthetic fleet built through the real ingest path (enroll, judge, store with findings),
//! for the benchmarks that need one in the store and the fleet index.

use std::collections::BTreeMap;

use fleetcare_core::DeviceId;
use fleetcare_core::structure::validate_report;
use fleetcare_server::AppState;
use fleetcare_store::{DeviceKey, Enrollment, NewReport};
use fleetcare_wire::Trigger;

/// A device of the synthetic fleet by its number: `(model, units)`.
pub type Make = fn(u64) -> (String, Vec<fleetcare_wire::Unit>);

/// `n` devices `D00000000`… made by `make`, each reported once, by 256 tasks at a time.
pub async fn build(st: &AppState, tenant: i64, n: u64, make: Make) {
    let mut tasks = tokio::task::JoinSet::new();
    let per = n.div_ceil(256);
    for w in 0..256u64 {
        let st = st.clone();
        tasks.spawn(async move {
            for i in (w * per)..((w + 1) * per).min(n) {
                let (model, units) = make(i);
                let key = DeviceKey {
                    tenant,
                    device_id: DeviceId::parse(&format!("D{i:08}")).expect("id"),
                };
                let e = st
                    .store
                    .enroll_device(&key, &model, &format!("cred-{i}"), None, 0)
                    .await
                    .expect("enroll");
                assert!(matches!(e, Enrollment::Enrolled { .. }));
                let (_, structure) =
                    validate_report(key.device_id.as_str(), &model, units, &BTreeMap::new())
                        .expect("valid");
                let judged = st.compat.judge(tenant, &structure);
                let hash = structure.fingerprint();
                let ingested = st
                    .store
                    .ingest_report(NewReport {
                        key: key.clone(),
                        seq: 1,
                        trigger: Trigger::Connect,
                        observed_at_ms: 0,
                        received_at_ms: 0,
                        structure,
                        operating: BTreeMap::new(),
                        supplies: Vec::new(),
                        judgement: judged.as_ref().map(|(_, j)| j.clone()),
                        install_blocked: None,
                    })
                    .await
                    .expect("ingest");
                st.compat
                    .after_ingest(&key, hash, judged, ingested.current, false, false);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
}
