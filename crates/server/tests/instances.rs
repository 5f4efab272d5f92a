//! Several center instances on one PostgreSQL database: a dashboard page served by one
//! instance hears of what another instance took (change notices over `NOTIFY`/`LISTEN`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{NOW, call, json_body};
use fleetcare_core::clock::ManualClock;
use fleetcare_server::cluster::bus;
use fleetcare_server::cluster::events::Topic;
use fleetcare_server::{AppState, ServerConfig, app, bootstrap};
use fleetcare_store::Store;
use fleetcare_store::testing::{fresh_postgres, postgres_url};
use fleetcare_testkit::eventually;
use serde_json::json;

#[tokio::test]
async fn a_report_taken_by_one_instance_reaches_the_pages_of_another() {
    let Some(url) = postgres_url("a_report_taken_by_one_instance_reaches_the_pages_of_another")
    else {
        return;
    };
    let (store_a, db) = fresh_postgres(&url).await.expect("database");
    let store_b = Store::open_postgres(&db.url)
        .await
        .expect("a second instance's store");
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = bootstrap::run(&store_a, dir.path(), "default", NOW)
        .await
        .expect("bootstrap");
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, _stop_a) = AppState::new(store_a.clone(), &ServerConfig::default(), clock.clone());
    let (b, _stop_b) = AppState::new(store_b.clone(), &ServerConfig::default(), clock);
    bus::start(&a).await;
    bus::start(&b).await;
    let mut heard = b.events.subscribe();
    let mut own = a.events.subscribe();

    // B listens once its subscription is up: until then a notice may pass it by.
    eventually("instance B listening", Duration::from_secs(10), || {
        a.events.notify(boot.tenant, Topic::Troubles);
        let got = heard.try_recv().is_ok();
        async move { got.then_some(()) }
    })
    .await;
    while heard.try_recv().is_ok() {}
    while own.try_recv().is_ok() {}

    // A device reports to instance A; B's pages hear of it.
    let router_a = app(a.clone());
    let (s, v) = call(
        &router_a,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&json!({"enrollment_key": boot.enrollment_key, "device_id": "DEV-1", "model": "acme-mfp-9000"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["device_token"].as_str().expect("token").to_owned();
    let report = json!({
        "device_id": "DEV-1", "model": "acme-mfp-9000", "seq": 1, "trigger": "connect",
        "observed_at_ms": NOW,
        "units": [{"slot": "fuser", "kind": "fuser", "model": "fus-7", "serial": "F1"}]
    });
    let (s, v) = call(
        &router_a,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let n = tokio::time::timeout(
        Duration::from_secs(5) * fleetcare_testkit::patience_factor(),
        async {
            loop {
                match heard.recv().await {
                    Ok(n) if n.topic == Topic::Device("DEV-1".into()) => return n,
                    Ok(_) => {}
                    Err(e) => panic!("instance B's notices: {e}"),
                }
            }
        },
    )
    .await
    .expect("instance B hears of the report instance A took");
    assert_eq!(n.tenant, boot.tenant);
    // A's own pages heard it once, from A itself, not again through the database: B sends a
    // marker after it heard the report, and A hears B's marker after any echo of its own
    // (a listener hears notices in the order they were sent).
    b.events.notify(boot.tenant, Topic::Device("MARK".into()));
    let mine = tokio::time::timeout(
        Duration::from_secs(5) * fleetcare_testkit::patience_factor(),
        async {
            let mut mine = 0;
            loop {
                match own.recv().await {
                    Ok(n) if n.topic == Topic::Device("DEV-1".into()) => mine += 1,
                    Ok(n) if n.topic == Topic::Device("MARK".into()) => return mine,
                    Ok(_) => {}
                    Err(e) => panic!("instance A's notices: {e}"),
                }
            }
        },
    )
    .await
    .expect("instance A hears B's marker");
    assert_eq!(mine, 1, "an instance does not hear itself twice");

    store_b.close().await.expect("close");
    store_a.close().await.expect("close");
    db.drop_database().await.expect("drop");
}
