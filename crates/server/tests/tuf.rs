//! The tenant's TUF repository at the center, on both stores: what publication refuses, what
//! the center signs itself and when (snapshot and timestamp, before they run out), and the
//! specification's layout served to devices.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, NOW, call, enroll, fixtures};
use fleetcare_trust::KeyPair;
use fleetcare_trust::Target;
use fleetcare_trust::tuf::{
    self, Common, DelegatedRole, Delegations, ReleaseCustom, RoleKeys, RootRole, TargetFile,
    TargetsRole, TimestampRole, TufKey,
};
use serde_json::Value;

fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

/// Documents expire relative to the fixture's clock.
fn at(days: i64) -> SystemTime {
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(NOW as u64);
    if days >= 0 {
        now + Duration::from_secs(days as u64 * 86_400)
    } else {
        now - Duration::from_secs(days.unsigned_abs() * 86_400)
    }
}

async fn post(f: &Fixture, path: &str, body: String) -> (StatusCode, Value) {
    call(&f.app, "POST", path, Some(&f.admin), Some(Body::from(body))).await
}

async fn online(f: &Fixture) -> (TufKey, TufKey) {
    let (s, v) = call(
        &f.app,
        "GET",
        "/api/v1/tuf/online-keys",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let k = |r: &str| serde_json::from_value(v[r]["key"].clone()).expect("key");
    (k("snapshot"), k("timestamp"))
}

fn root(version: u64, online: &(TufKey, TufKey), expires: SystemTime) -> String {
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (name, k) in [
        ("root", key(1).public().to_tuf()),
        ("targets", key(3).public().to_tuf()),
        ("snapshot", online.0.clone()),
        ("timestamp", online.1.clone()),
    ] {
        roles.insert(
            name.to_owned(),
            RoleKeys {
                keyids: vec![k.keyid()],
                threshold: 1,
            },
        );
        keys.insert(k.keyid(), k);
    }
    tuf::sign(
        &RootRole {
            common: Common::new("root", version, expires),
            consistent_snapshot: true,
            keys,
            roles,
        },
        &[&key(1)],
    )
    .to_json()
}

fn targets(version: u64, paths: Vec<String>, terminating: bool) -> String {
    tuf::sign(
        &TargetsRole {
            common: Common::new("targets", version, at(365)),
            targets: BTreeMap::new(),
            delegations: Some(Delegations {
                keys: BTreeMap::from([(
                    key(6).public().to_tuf().keyid(),
                    key(6).public().to_tuf(),
                )]),
                roles: vec![DelegatedRole {
                    name: "acme".into(),
                    keyids: vec![key(6).public().to_tuf().keyid()],
                    threshold: 1,
                    terminating,
                    paths: Some(paths),
                    path_hash_prefixes: None,
                }],
            }),
        },
        &[&key(3)],
    )
    .to_json()
}

fn acme(version: u64, maker_field: &str, signer: &KeyPair) -> String {
    let file = TargetFile {
        length: 3,
        hashes: BTreeMap::from([(
            "sha256".to_owned(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(),
        )]),
        custom: Some(
            serde_json::to_value(ReleaseCustom {
                product: "ctl-firmware".into(),
                maker: maker_field.into(),
                version: "5.3.0".into(),
                counter: 7,
                targets: vec![Target {
                    unit_model: "ctl-x2".into(),
                    hw_revisions: vec!["B".into()],
                }],
            })
            .expect("json"),
        ),
    };
    tuf::sign(
        &TargetsRole {
            common: Common::new("targets", version, at(90)),
            targets: BTreeMap::from([("acme/ctl-firmware/5.3.0/ctl.bin".to_owned(), file)]),
            delegations: None,
        },
        &[signer],
    )
    .to_json()
}

async fn metadata(f: &Fixture, token: &str, file: &str) -> (StatusCode, Value) {
    call(
        &f.app,
        "GET",
        &format!("/device/v1/tuf/metadata/{file}"),
        Some(token),
        None,
    )
    .await
}

fn timestamp_of(v: &Value) -> TimestampRole {
    tuf::unverified(&serde_json::from_value(v.clone()).expect("envelope")).expect("timestamp")
}

#[tokio::test]
async fn the_repository_refuses_what_a_client_would_and_keeps_its_timestamp_fresh() {
    for (store, f) in fixtures("tuf repository").await {
        let online = online(&f).await;
        // A root that does not give snapshot and timestamp to this center's keys.
        let other = (key(4).public().to_tuf(), key(5).public().to_tuf());
        let (s, e) = post(&f, "/api/v1/tuf/root", root(1, &other, at(365))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{store}: {e}");
        // Nothing else before a root.
        let (s, _) = post(
            &f,
            "/api/v1/tuf/targets",
            targets(1, tuf::maker_paths("acme"), true),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{store}");
        // Expired, or not version 1 first.
        assert_eq!(
            post(&f, "/api/v1/tuf/root", root(1, &online, at(-1)))
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "{store}"
        );
        assert_eq!(
            post(&f, "/api/v1/tuf/root", root(2, &online, at(365)))
                .await
                .0,
            StatusCode::CONFLICT,
            "{store}"
        );
        let (s, p) = post(&f, "/api/v1/tuf/root", root(1, &online, at(365))).await;
        assert_eq!(s, StatusCode::OK, "{store}: {p}");
        // The same document again changes nothing.
        let (s, again) = post(&f, "/api/v1/tuf/root", root(1, &online, at(365))).await;
        assert_eq!(
            (s, &again["version"]),
            (StatusCode::OK, &Value::from(1)),
            "{store}: {again}"
        );
        // A delegation that could reach beyond the maker's own releases.
        for (paths, terminating) in [
            (vec!["*".to_owned()], true),
            (tuf::maker_paths("acme"), false),
        ] {
            let (s, e) = post(&f, "/api/v1/tuf/targets", targets(1, paths, terminating)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{store}: {e}");
        }
        let (s, p) = post(
            &f,
            "/api/v1/tuf/targets",
            targets(1, tuf::maker_paths("acme"), true),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {p}");
        // A maker's role signed by a key it is not delegated to; one whose files name another
        // maker; a version skipped.
        assert_eq!(
            post(&f, "/api/v1/tuf/makers/acme", acme(1, "acme", &key(7)))
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "{store}"
        );
        assert_eq!(
            post(&f, "/api/v1/tuf/makers/acme", acme(1, "zenith", &key(6)))
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "{store}"
        );
        assert_eq!(
            post(&f, "/api/v1/tuf/makers/acme", acme(2, "acme", &key(6)))
                .await
                .0,
            StatusCode::CONFLICT,
            "{store}"
        );
        assert_eq!(
            post(&f, "/api/v1/tuf/makers/zenith", acme(1, "acme", &key(6)))
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "{store}"
        );
        let (s, p) = post(&f, "/api/v1/tuf/makers/acme", acme(1, "acme", &key(6))).await;
        assert_eq!(s, StatusCode::OK, "{store}: {p}");
        assert_eq!(
            p["releases"],
            serde_json::json!(["ctl-firmware 5.3.0"]),
            "{store}: {p}"
        );
        // The center signs snapshot and timestamp itself.
        let (s, _) = post(&f, "/api/v1/tuf/makers/snapshot", acme(1, "acme", &key(6))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{store}");

        // The layout devices read; operators' tokens do not read it.
        let device = enroll(&f, "TUF-S").await;
        assert_eq!(
            metadata(&f, &device, "1.root.json").await.0,
            StatusCode::OK,
            "{store}"
        );
        assert_eq!(
            metadata(&f, &device, "2.root.json").await.0,
            StatusCode::NOT_FOUND,
            "{store}"
        );
        for bad in ["x.1.root.json", "..json", "root", "1..json", "0.root.json"] {
            assert_eq!(
                metadata(&f, &device, bad).await.0,
                StatusCode::NOT_FOUND,
                "{store}: {bad}"
            );
        }
        assert_eq!(
            metadata(&f, &f.admin, "timestamp.json").await.0,
            StatusCode::UNAUTHORIZED,
            "{store}"
        );
        let (s, t1) = metadata(&f, &device, "timestamp.json").await;
        assert_eq!(s, StatusCode::OK, "{store}");
        let t1 = timestamp_of(&t1);
        let snap = t1.meta["snapshot.json"].version;
        let (s, sn) = metadata(&f, &device, &format!("{snap}.snapshot.json")).await;
        assert_eq!(s, StatusCode::OK, "{store}: {sn}");
        let sn: tuf::SnapshotRole =
            tuf::unverified(&serde_json::from_value(sn).expect("envelope")).expect("snapshot");
        assert_eq!(sn.meta["acme.json"].version, 1, "{store}");
        assert_eq!(sn.meta["targets.json"].version, 1, "{store}");

        // Before half its day is gone, the timestamp stays; after, the sweep signs a new one
        // naming the same snapshot.
        f.clock.advance(Duration::from_secs(6 * 3600));
        fleetcare_server::delivery::tuf::refresh_all(&f.state.ctx).await;
        let (_, t) = metadata(&f, &device, "timestamp.json").await;
        assert_eq!(
            timestamp_of(&t).common.version,
            t1.common.version,
            "{store}"
        );
        f.clock.advance(Duration::from_secs(7 * 3600));
        fleetcare_server::delivery::tuf::refresh_all(&f.state.ctx).await;
        let (_, t) = metadata(&f, &device, "timestamp.json").await;
        let t2 = timestamp_of(&t);
        // Versions of the online roles follow the clock's seconds.
        let clock_s = (NOW as u64) / 1000 + 13 * 3600;
        assert_eq!(t2.common.version, clock_s, "{store}");
        assert_eq!(t2.meta["snapshot.json"].version, snap, "{store}");
        // Past half a week, the snapshot is signed anew too.
        f.clock.advance(Duration::from_secs(4 * 86_400));
        fleetcare_server::delivery::tuf::refresh_all(&f.state.ctx).await;
        let (_, t) = metadata(&f, &device, "timestamp.json").await;
        let t3 = timestamp_of(&t);
        assert!(t3.meta["snapshot.json"].version > snap, "{store}");
        // Only the newest two timestamps are kept: older ones no client asks for.
        let file = |v: u64| format!("{v}.timestamp.json");
        for (v, want) in [
            (t3.common.version, StatusCode::OK),
            (t2.common.version, StatusCode::OK),
            (t1.common.version, StatusCode::NOT_FOUND),
        ] {
            assert_eq!(
                metadata(&f, &device, &file(v)).await.0,
                want,
                "{store}: {v}"
            );
        }
        // A center restored from an older backup (its newest timestamp gone) still signs a
        // version above every one a device saw.
        f.store
            .forget_tuf(f.tenant, "timestamp", u64::MAX)
            .await
            .expect("forget");
        f.clock.advance(Duration::from_secs(1));
        fleetcare_server::delivery::tuf::refresh_all(&f.state.ctx).await;
        assert!(
            f.store
                .tuf(f.tenant, "timestamp", None)
                .await
                .expect("read")
                .is_none()
        );
        fleetcare_server::delivery::tuf::refresh(&f.state.ctx, f.tenant)
            .await
            .expect("refresh");
        let (_, t) = metadata(&f, &device, "timestamp.json").await;
        assert!(
            timestamp_of(&t).common.version > t3.common.version,
            "{store}"
        );
        f.finish().await;
    }
}
