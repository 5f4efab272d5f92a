//! One conformance suite, run against both backends: every behaviour of the store interface
//! that callers rely on. The PostgreSQL half needs `FLEETCARE_TEST_DATABASE_URL`; without it,
//! each PostgreSQL test says loudly that it was skipped.

use std::collections::BTreeMap;
use std::future::Future;

use fleetcare_core::{DeviceId, Structure};
use fleetcare_store::testing::{fresh_postgres, postgres_url};
use fleetcare_store::{
    DeviceKey, Enrollment, FindingRow, JobFilter, Judgement, NewErrorEvent, NewJob,
    NewNotification, NewReport, NewRollout, NewRolloutDevice, NewTrouble, PolicyRecord, Rejudged,
    ReleaseRecord, RolloutMove, Store, StoreError, Transition, TroubleFilter, TroubleRecurrence,
    WaveRecord,
};
use fleetcare_wire::operator::Change;
use fleetcare_wire::{Software, Trigger, Unit};

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("open sqlite");
    test(store.clone()).await;
    assert_eq!(store.integrity_check().await.expect("integrity"), "ok");
    store.close().await.expect("close");
}

async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = postgres_url(name) else {
        return;
    };
    let (store, db) = fresh_postgres(&url).await.expect("fresh postgres database");
    test(store.clone()).await;
    store.close().await.expect("close");
    db.drop_database().await.expect("drop test database");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::on_sqlite(super::$name).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::on_postgres(stringify!($name), super::$name).await } )* }
    };
}

conformance!(
    the_outbox_follows_every_change_that_notifies,
    deliveries_are_claimed_once_and_recorded_by_the_claimer,
    customers_of_a_provider,
    accounts_and_sessions,
    credential_rotation,
    tenants_tokens_and_keys,
    enrollment_and_reenrollment,
    reports_are_idempotent_and_record_history,
    device_views_and_listing,
    report_interval,
    tenants_are_isolated,
    report_for_unknown_device_changes_nothing,
    concurrent_reports_are_each_stored_once,
    revocation_and_operator_allowed_reenrollment,
    catalog_revisions,
    findings_follow_judgements,
    rejudgement_never_overwrites_a_newer_structure,
    policies_notifications_and_jobs,
    releases_key_lists_artifacts_and_expiry,
    tuf_roles_keep_each_version_once,
    error_events_once_with_watermarks,
    troubles_abnormal_units_and_settings,
    rollouts_keep_their_counters,
    a_rollout_being_created_is_not_active,
    fleet_aggregates,
    instances_presence_and_leases,
    units_out_of_service_settled_states_and_install_blocked,
    operating_history_keeps_changes_and_rolls_old_days_up,
    supplies_are_structure_and_their_levels_history,
    ddi_devices_actions_gateways_and_digests,
    retention_settings_and_bounded_pruning,
    old_partitions_go_and_keep_what_must_stay,
    only_archived_audit_lines_leave_the_log,
);

const NOW: i64 = 1_790_000_000_000;

fn unit(slot: &str, serial: &str, fw: &str) -> Unit {
    Unit {
        slot: slot.into(),
        kind: slot.into(),
        model: format!("{slot}-m1"),
        serial: serial.into(),
        hw_revision: "A".into(),
        software: vec![Software {
            product: format!("{slot}-fw"),
            maker: "acme".into(),
            version: fw.into(),
            active: true,
        }],
        in_service: true,
    }
}

fn report(key: &DeviceKey, seq: u64, trigger: Trigger, units: Vec<Unit>) -> NewReport {
    NewReport {
        key: key.clone(),
        seq,
        trigger,
        observed_at_ms: NOW + i64::try_from(seq).expect("small") * 1000,
        received_at_ms: NOW + i64::try_from(seq).expect("small") * 1000 + 5,
        structure: Structure::new("acme-mfp-9000", units).expect("valid"),
        operating: BTreeMap::from([("pages_total".to_owned(), 1234.0)]),
        supplies: Vec::new(),
        judgement: None,
        install_blocked: None,
    }
}

async fn enrolled(store: &Store, tenant: i64, id: &str) -> DeviceKey {
    let key = DeviceKey {
        tenant,
        device_id: DeviceId::parse(id).expect("id"),
    };
    let got = store
        .enroll_device(&key, "acme-mfp-9000", &cred(tenant, id), None, NOW)
        .await
        .expect("enroll");
    assert!(matches!(got, Enrollment::Enrolled { .. }), "{got:?}");
    key
}

fn cred(tenant: i64, id: &str) -> String {
    format!("cred-{tenant}-{id}")
}

async fn tenants_tokens_and_keys(store: Store) {
    let a = store.ensure_tenant("default", NOW).await.expect("tenant");
    assert_eq!(
        store.ensure_tenant("default", NOW).await.expect("again"),
        a,
        "ensure_tenant is idempotent"
    );
    let b = store.ensure_tenant("other", NOW).await.expect("tenant");
    assert_ne!(a, b);
    assert!(
        store
            .add_operator_token(a, "admin", "admin", "h-admin", NOW)
            .await
            .expect("token")
    );
    let op = store
        .operator_by_token("h-admin", NOW)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (op.tenant, op.name.as_str(), op.role.as_str()),
        (a, "admin", "admin")
    );
    assert!(
        store
            .operator_by_token("h-unknown", NOW)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        store
            .add_enrollment_key(b, "h-key", NOW)
            .await
            .expect("key")
    );
    assert!(
        !store
            .add_enrollment_key(a, "h-key", NOW)
            .await
            .expect("again"),
        "a registered key is not registered twice"
    );
    assert_eq!(
        store.enrollment_tenant("h-key").await.expect("lookup"),
        Some(b)
    );
    assert_eq!(
        store.enrollment_tenant("h-nope").await.expect("lookup"),
        None
    );
    // A duplicate token hash is refused and leaves the first one in place.
    assert!(
        !store
            .add_operator_token(b, "x", "viewer", "h-admin", NOW)
            .await
            .expect("duplicate")
    );
    assert_eq!(
        store
            .operator_by_token("h-admin", NOW)
            .await
            .expect("lookup")
            .expect("found")
            .tenant,
        a
    );
}

async fn enrollment_and_reenrollment(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "DEV-1").await;
    assert_eq!(
        store
            .device_by_credential(&format!("cred-{t}-DEV-1"), 0)
            .await
            .expect("lookup"),
        Some(key.clone())
    );
    store
        .ingest_report(report(
            &key,
            1,
            Trigger::Connect,
            vec![unit("engine", "E1", "1.0")],
        ))
        .await
        .expect("ingest");
    store
        .ingest_report(report(
            &key,
            2,
            Trigger::Periodic,
            vec![unit("engine", "E1", "1.0")],
        ))
        .await
        .expect("ingest");
    assert_eq!(store.stored_seqs(&key).await.expect("seqs"), vec![1, 2]);

    // Enrolling an enrolled id again without its credential is refused and changes nothing.
    let refused = store
        .enroll_device(&key, "acme-mfp-9000", "cred-thief", None, NOW + 1)
        .await
        .expect("enroll");
    assert_eq!(refused, Enrollment::Refused);
    let refused = store
        .enroll_device(
            &key,
            "acme-mfp-9000",
            "cred-thief",
            Some("cred-wrong"),
            NOW + 1,
        )
        .await
        .expect("enroll");
    assert_eq!(refused, Enrollment::Refused);
    assert!(
        store
            .device_by_credential("cred-thief", 0)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(store.stored_seqs(&key).await.expect("seqs"), vec![1, 2]);

    // Rotation with the current credential: new credential, old one dead, sequence numbers
    // start again.
    let rotated = store
        .enroll_device(
            &key,
            "acme-mfp-9000",
            "cred-new",
            Some(&cred(t, "DEV-1")),
            NOW + 1,
        )
        .await
        .expect("re-enroll");
    assert!(matches!(rotated, Enrollment::Enrolled { .. }));
    assert!(
        store
            .device_by_credential(&cred(t, "DEV-1"), 0)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        store
            .device_by_credential("cred-new", 0)
            .await
            .expect("lookup"),
        Some(key.clone())
    );
    assert_eq!(
        store.stored_seqs(&key).await.expect("seqs"),
        Vec::<u64>::new()
    );
    let ack = store
        .ingest_report(report(
            &key,
            1,
            Trigger::Connect,
            vec![unit("engine", "E1", "1.0")],
        ))
        .await
        .expect("ingest");
    assert!(!ack.duplicate, "seq 1 of a new generation is new");
    assert_eq!(ack.changes, 0, "the structure itself did not change");
    assert_eq!(store.stored_seqs(&key).await.expect("seqs"), vec![1]);
    // The structure survives re-enrollment.
    let rec = store.device(&key).await.expect("device").expect("found");
    assert_eq!(rec.structure.expect("structure").units().len(), 1);
}

async fn reports_are_idempotent_and_record_history(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "DEV-2").await;
    let first = vec![
        unit("controller", "C1", "5.2.1"),
        unit("fuser", "F1", "1.0"),
    ];
    let ack = store
        .ingest_report(report(&key, 1, Trigger::Connect, first.clone()))
        .await
        .expect("ingest");
    assert_eq!(
        (ack.duplicate, ack.changes),
        (false, 2),
        "first report: every unit added"
    );

    let again = store
        .ingest_report(report(&key, 1, Trigger::Connect, first.clone()))
        .await
        .expect("retry");
    assert_eq!((again.duplicate, again.changes), (true, 0));

    // A report older than the newest that was never stored (reordered in flight) is kept in
    // the log but does not move the current structure back.
    let stale = store
        .ingest_report(report(&key, 5, Trigger::Periodic, first.clone()))
        .await
        .expect("newer");
    assert!(!stale.duplicate);
    let same = store
        .ingest_report(report(&key, 2, Trigger::Periodic, first.clone()))
        .await
        .expect("same");
    assert_eq!((same.duplicate, same.changes), (false, 0));

    let swapped = vec![
        unit("controller", "C1", "5.3.0"),
        unit("fuser", "F9", "1.0"),
    ];
    let ack = store
        .ingest_report(report(&key, 6, Trigger::Change, swapped.clone()))
        .await
        .expect("swap");
    assert_eq!(ack.changes, 2);
    let late = store
        .ingest_report(report(&key, 3, Trigger::Periodic, first.clone()))
        .await
        .expect("late");
    assert_eq!(
        (late.duplicate, late.changes),
        (false, 0),
        "stored, but stale"
    );
    let rec = store.device(&key).await.expect("device").expect("found");
    assert_eq!(
        rec.structure
            .expect("structure")
            .unit("fuser")
            .expect("fuser")
            .serial,
        "F9"
    );
    assert_eq!(rec.last_report.expect("reported").seq, 6);

    let history = store.history(&key, 100).await.expect("history");
    let kinds: Vec<(u64, Trigger, &str)> = history
        .iter()
        .map(|h| {
            let k = match &h.change {
                Change::UnitAdded { .. } => "unit_added",
                Change::UnitReplaced { .. } => "unit_replaced",
                Change::SoftwareChanged { .. } => "software_changed",
                _ => "other",
            };
            (h.seq, h.trigger, k)
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, Trigger::Connect, "unit_added"),
            (1, Trigger::Connect, "unit_added"),
            (6, Trigger::Change, "software_changed"),
            (6, Trigger::Change, "unit_replaced"),
        ]
    );
    match &history[3].change {
        Change::UnitReplaced { slot, old, new } => {
            assert_eq!(
                (slot.as_str(), old.serial.as_str(), new.serial.as_str()),
                ("fuser", "F1", "F9")
            );
        }
        other => panic!("expected a replacement, got {other:?}"),
    }
    assert_eq!(history[3].observed_at_ms, NOW + 6000);
    assert_eq!(
        store.history(&key, 1).await.expect("history").len(),
        1,
        "limit keeps the newest"
    );
    assert_eq!(
        store.stored_seqs(&key).await.expect("seqs"),
        vec![1, 2, 3, 5, 6]
    );
}

async fn device_views_and_listing(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    for i in 0..5 {
        let key = enrolled(&store, t, &format!("D-{i}")).await;
        if i % 2 == 0 {
            store
                .ingest_report(report(
                    &key,
                    7,
                    Trigger::Request,
                    vec![unit("engine", &format!("E{i}"), "2.0")],
                ))
                .await
                .expect("ingest");
        }
    }
    assert_eq!(store.count_devices(t).await.expect("count"), 5);
    let page1 = store.list_devices(t, None, 3).await.expect("list");
    let ids: Vec<&str> = page1.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["D-0", "D-1", "D-2"]);
    let page2 = store.list_devices(t, Some("D-2"), 3).await.expect("list");
    let ids: Vec<&str> = page2.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["D-3", "D-4"]);
    assert_eq!(page1[0].units, 1);
    assert_eq!(page1[1].units, 0);
    assert!(
        page1[1].last_report.is_none(),
        "enrolled but never reported"
    );
    let last = page1[0].last_report.as_ref().expect("reported");
    assert_eq!(
        (last.seq, last.trigger, last.received_at_ms),
        (7, Trigger::Request, NOW + 7005)
    );

    let key = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("D-0").expect("id"),
    };
    let rec = store.device(&key).await.expect("device").expect("found");
    assert_eq!(rec.model, "acme-mfp-9000");
    assert_eq!(rec.operating.get("pages_total"), Some(&1234.0));
    assert_eq!(rec.structure_changed_at_ms, Some(NOW + 7000));
    let s = rec.structure.expect("structure");
    assert_eq!(s.unit("engine").expect("engine").serial, "E0");
    let missing = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("NOPE").expect("id"),
    };
    assert!(store.device(&missing).await.expect("device").is_none());
}

async fn report_interval(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "DEV-3").await;
    assert!(
        store
            .set_report_interval(&key, Some(600))
            .await
            .expect("set")
    );
    let ack = store
        .ingest_report(report(&key, 1, Trigger::Connect, vec![]))
        .await
        .expect("ingest");
    assert_eq!(ack.report_interval_s, Some(600));
    assert_eq!(
        store
            .device(&key)
            .await
            .expect("device")
            .expect("found")
            .report_interval_s,
        Some(600)
    );
    assert_eq!(
        store
            .enroll_device(&key, "acme-mfp-9000", "c2", Some(&cred(t, "DEV-3")), NOW)
            .await
            .expect("re-enroll"),
        Enrollment::Enrolled {
            report_interval_s: Some(600)
        }
    );
    assert!(store.set_report_interval(&key, None).await.expect("clear"));
    assert_eq!(
        store
            .device(&key)
            .await
            .expect("device")
            .expect("found")
            .report_interval_s,
        None
    );
    let missing = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("NOPE").expect("id"),
    };
    assert!(
        !store
            .set_report_interval(&missing, Some(60))
            .await
            .expect("set")
    );
}

async fn tenants_are_isolated(store: Store) {
    let a = store.ensure_tenant("a", NOW).await.expect("tenant");
    let b = store.ensure_tenant("b", NOW).await.expect("tenant");
    let ka = enrolled(&store, a, "SAME-ID").await;
    let kb = enrolled(&store, b, "SAME-ID").await;
    store
        .ingest_report(report(
            &ka,
            1,
            Trigger::Connect,
            vec![unit("engine", "EA", "1")],
        ))
        .await
        .expect("a");
    assert!(
        store
            .device(&kb)
            .await
            .expect("device")
            .expect("b's own")
            .structure
            .is_none(),
        "b sees nothing of a's report"
    );
    assert_eq!(store.history(&kb, 10).await.expect("history").len(), 0);
    assert_eq!(
        store.list_devices(b, None, 10).await.expect("list").len(),
        1
    );
    let ghost = DeviceKey {
        tenant: b,
        device_id: DeviceId::parse("ONLY-A").expect("id"),
    };
    enrolled(&store, a, "ONLY-A").await;
    assert!(store.device(&ghost).await.expect("device").is_none());
}

async fn report_for_unknown_device_changes_nothing(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("NEVER-ENROLLED").expect("id"),
    };
    let err = store
        .ingest_report(report(
            &key,
            1,
            Trigger::Connect,
            vec![unit("engine", "E", "1")],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    assert_eq!(store.count_devices(t).await.expect("count"), 0);
    assert_eq!(
        store.stored_seqs(&key).await.expect("seqs"),
        Vec::<u64>::new()
    );
    assert_eq!(store.history(&key, 10).await.expect("history").len(), 0);
}

async fn concurrent_reports_are_each_stored_once(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(enrolled(&store, t, &format!("C-{i}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for key in &keys {
        for seq in 1..=10u64 {
            for _retry in 0..2 {
                let (store, key) = (store.clone(), key.clone());
                tasks.spawn(async move {
                    let fw = if seq > 5 { "2.0" } else { "1.0" };
                    store
                        .ingest_report(report(
                            &key,
                            seq,
                            Trigger::Periodic,
                            vec![unit("engine", "E", fw)],
                        ))
                        .await
                });
            }
        }
    }
    // Reports of a device that is not enrolled, among the others (grouped with them on a
    // backend that groups): each is refused, and the others are stored all the same.
    let stranger = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("NOT-ENROLLED").expect("id"),
    };
    let mut refused = tokio::task::JoinSet::new();
    for seq in 1..=5u64 {
        let (store, key) = (store.clone(), stranger.clone());
        refused.spawn(async move {
            store
                .ingest_report(report(
                    &key,
                    seq,
                    Trigger::Periodic,
                    vec![unit("engine", "E", "1.0")],
                ))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("ingest");
    }
    while let Some(r) = refused.join_next().await {
        assert!(
            matches!(r.expect("task"), Err(StoreError::NotFound(_))),
            "a report of a device that is not enrolled is refused"
        );
    }
    assert!(store.group_commits() > 0, "concurrent reports were grouped");
    for key in &keys {
        assert_eq!(
            store.stored_seqs(key).await.expect("seqs"),
            (1..=10).collect::<Vec<_>>()
        );
        // Whatever order they arrived in, the newest report is the current structure.
        let rec = store.device(key).await.expect("device").expect("found");
        assert_eq!(rec.last_report.expect("reported").seq, 10);
        let s = rec.structure.expect("structure");
        assert_eq!(s.unit("engine").expect("engine").software[0].version, "2.0");
    }
}

async fn customers_of_a_provider(store: Store) {
    let p = store.ensure_tenant("prov", NOW).await.expect("tenant");
    let q = store.ensure_tenant("other", NOW).await.expect("tenant");
    let acme = store
        .create_customer(p, "acme", NOW)
        .await
        .expect("customer");
    assert!(matches!(
        store.create_customer(p, "acme", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let other_acme = store
        .create_customer(q, "acme", NOW)
        .await
        .expect("names are per provider");
    assert_ne!(acme, other_acme);
    assert!(
        matches!(
            store.create_customer(acme, "sub", NOW).await,
            Err(StoreError::Conflict(_))
        ),
        "no customers of customers"
    );
    assert_eq!(store.customer(p, "acme").await.expect("lookup"), Some(acme));
    assert_eq!(
        store.customer(q, "acme").await.expect("lookup"),
        Some(other_acme)
    );
    assert_eq!(store.customer(p, "globex").await.expect("lookup"), None);
    assert_eq!(store.customer(acme, "acme").await.expect("lookup"), None);
    enrolled(&store, acme, "A-1").await;
    let listed = store.customers(p).await.expect("customers");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].devices, listed[0].tenant),
        ("acme", 1, acme)
    );
    assert_eq!(store.tenant_id("prov/acme").await.expect("id"), Some(acme));
    store
        .create_customer(p, "globex", NOW)
        .await
        .expect("customer");
    assert_eq!(
        store.customer_names(p).await.expect("names"),
        ["acme", "globex"]
    );
    assert!(store.customer_names(acme).await.expect("names").is_empty());
}

async fn accounts_and_sessions(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    assert!(
        store
            .create_account(t, "olga", "operator", "$argon2id$x", NOW)
            .await
            .expect("create")
    );
    assert!(
        !store
            .create_account(t, "olga", "admin", "$argon2id$y", NOW)
            .await
            .expect("create"),
        "one per name"
    );
    let a = store
        .account(t, "olga")
        .await
        .expect("account")
        .expect("found");
    assert_eq!(
        (a.role.as_str(), a.password_hash.as_str(), a.disabled),
        ("operator", "$argon2id$x", false)
    );
    store
        .create_session(t, "olga", "operator", "s1", NOW, NOW + 100)
        .await
        .expect("session");
    store
        .create_session(t, "olga", "operator", "s2", NOW, NOW + 100)
        .await
        .expect("session");
    let op = store
        .operator_by_token("s1", NOW + 99)
        .await
        .expect("lookup")
        .expect("live");
    assert_eq!((op.name.as_str(), op.role.as_str()), ("olga", "operator"));
    assert!(
        store
            .operator_by_token("s1", NOW + 100)
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );
    assert!(
        store.operator_tokens(t).await.expect("tokens").is_empty(),
        "sessions are not listed as tokens"
    );
    assert!(store.end_session("s1", NOW + 1).await.expect("end"));
    assert!(
        !store.end_session("s1", NOW + 2).await.expect("end"),
        "once"
    );
    assert!(
        store
            .operator_by_token("s1", NOW + 3)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        store
            .disable_account(t, "olga", NOW + 4)
            .await
            .expect("disable")
    );
    assert!(
        store
            .operator_by_token("s2", NOW + 5)
            .await
            .expect("lookup")
            .is_none(),
        "disabling ends every session"
    );
    assert!(
        store
            .account(t, "olga")
            .await
            .expect("account")
            .expect("found")
            .disabled
    );
    assert!(
        !store
            .disable_account(t, "olga", NOW + 6)
            .await
            .expect("disable")
    );
    let listed = store.accounts(t).await.expect("accounts");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].disabled_at_ms, Some(NOW + 4));
}

async fn credential_rotation(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "ROT-1").await;
    let old = cred(t, "ROT-1");
    let who = |h: String, now: i64| {
        let store = store.clone();
        async move { store.device_by_credential(&h, now).await.expect("lookup") }
    };
    assert!(
        !store
            .rotate_credential(&key, "not-its-credential", "n0", NOW, NOW + 100)
            .await
            .expect("rotate"),
        "only a credential the device holds rotates"
    );
    assert!(
        store
            .rotate_credential(&key, &old, "n1", NOW, NOW + 100)
            .await
            .expect("rotate")
    );
    assert_eq!(
        who(old.clone(), NOW + 1).await,
        Some(key.clone()),
        "the old one works until the new one is used"
    );
    assert_eq!(
        who(old.clone(), NOW + 101).await,
        None,
        "…or until its grace ends"
    );
    // The device lost the answer and rotates again with the old one: the lost one is replaced,
    // the old one stays the fallback.
    assert!(
        store
            .rotate_credential(&key, &old, "n2", NOW + 2, NOW + 100)
            .await
            .expect("rotate")
    );
    assert_eq!(
        who("n1".into(), NOW + 3).await,
        None,
        "a credential the device never used is gone"
    );
    assert_eq!(who("n2".into(), NOW + 3).await, Some(key.clone()));
    assert_eq!(
        who(old.clone(), NOW + 3).await,
        None,
        "first use of the new one retires the old at once"
    );
    assert!(
        !store
            .rotate_credential(&key, &old, "n3", NOW + 4, NOW + 100)
            .await
            .expect("rotate"),
        "a retired credential cannot rotate"
    );
    assert!(store.revoke_device(&key, NOW + 5).await.expect("revoke"));
    assert!(
        !store
            .rotate_credential(&key, "n2", "n4", NOW + 6, NOW + 100)
            .await
            .expect("rotate"),
        "a revoked device cannot rotate"
    );
    assert_eq!(who("n2".into(), NOW + 6).await, None);
}

async fn revocation_and_operator_allowed_reenrollment(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "REV-1").await;
    assert!(store.revoke_device(&key, NOW + 1).await.expect("revoke"));
    assert!(
        store
            .device_by_credential(&cred(t, "REV-1"), 0)
            .await
            .expect("lookup")
            .is_none(),
        "a revoked credential stops working at once"
    );
    // Not even the revoked credential re-enrolls it.
    let again = store
        .enroll_device(
            &key,
            "acme-mfp-9000",
            "c2",
            Some(&cred(t, "REV-1")),
            NOW + 2,
        )
        .await
        .expect("enroll");
    assert_eq!(again, Enrollment::Refused);

    // An expired allowance admits nothing; a live one admits exactly one enrollment.
    assert!(store.allow_reenroll(&key, NOW + 5).await.expect("allow"));
    let late = store
        .enroll_device(&key, "acme-mfp-9000", "c3", None, NOW + 6)
        .await
        .expect("enroll");
    assert_eq!(late, Enrollment::Refused);
    assert!(store.allow_reenroll(&key, NOW + 100).await.expect("allow"));
    let ok = store
        .enroll_device(&key, "acme-mfp-9000", "c4", None, NOW + 7)
        .await
        .expect("enroll");
    assert!(matches!(ok, Enrollment::Enrolled { .. }));
    assert_eq!(
        store.device_by_credential("c4", 0).await.expect("lookup"),
        Some(key.clone())
    );
    let used_up = store
        .enroll_device(&key, "acme-mfp-9000", "c5", None, NOW + 8)
        .await
        .expect("enroll");
    assert_eq!(used_up, Enrollment::Refused, "the allowance is single use");

    let missing = DeviceKey {
        tenant: t,
        device_id: DeviceId::parse("NOPE").expect("id"),
    };
    assert!(!store.revoke_device(&missing, NOW).await.expect("revoke"));
    assert!(!store.allow_reenroll(&missing, NOW).await.expect("allow"));
}

async fn catalog_revisions(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    assert!(
        store
            .catalog_revision(t, None, false)
            .await
            .expect("read")
            .is_none()
    );
    let r1 = store
        .add_catalog_revision(t, "admin", "d1", "{}", "title = \"one\"", NOW)
        .await
        .expect("load");
    let r2 = store
        .add_catalog_revision(t, "admin", "d2", "{}", "title = \"two\"", NOW + 1)
        .await
        .expect("load");
    assert_eq!((r1, r2), (1, 2));
    assert_eq!(
        store
            .add_catalog_revision(other, "eve", "d9", "{}", "x", NOW)
            .await
            .expect("load"),
        1,
        "revisions count per tenant"
    );
    let latest = store
        .catalog_revision(t, None, true)
        .await
        .expect("read")
        .expect("some");
    assert_eq!((latest.revision, latest.digest.as_str()), (2, "d2"));
    assert_eq!(latest.source.as_deref(), Some("title = \"two\""));
    let first = store
        .catalog_revision(t, Some(1), false)
        .await
        .expect("read")
        .expect("some");
    assert_eq!((first.digest.as_str(), first.source), ("d1", None));
    assert_eq!(
        store
            .catalog_revisions(t)
            .await
            .expect("list")
            .iter()
            .map(|r| r.revision)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
    let mut current: Vec<(i64, u64)> = store
        .current_catalogs()
        .await
        .expect("current")
        .into_iter()
        .map(|(t, r)| (t, r.revision))
        .collect();
    current.sort();
    assert_eq!(current, vec![(t, 2), (other, 1)]);
}

fn finding(key: &str, kind: &str) -> FindingRow {
    FindingRow {
        key: key.into(),
        kind: kind.into(),
        rule: format!("rule of {key}"),
        subject_json: "{}".into(),
        explanation: format!("explanation of {key}"),
    }
}

fn judgement(revision: u64, findings: Vec<FindingRow>) -> Judgement {
    let hash = findings
        .iter()
        .map(|f| f.key.as_str())
        .collect::<Vec<_>>()
        .join("+");
    Judgement {
        revision,
        state: if findings.is_empty() {
            "compatible"
        } else {
            "software"
        }
        .into(),
        hash,
        findings,
    }
}

async fn findings_follow_judgements(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "J-1").await;
    let mut r = report(&key, 1, Trigger::Connect, vec![unit("engine", "E1", "1.0")]);
    r.judgement = Some(judgement(
        1,
        vec![
            finding("a", "unit_software"),
            finding("b", "software_software"),
        ],
    ));
    let ack = store.ingest_report(r).await.expect("ingest");
    assert!(ack.current && ack.findings_changed);
    let open = store.open_findings(&key).await.expect("findings");
    assert_eq!(
        open.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(open[0].catalog_revision, 1);
    assert_eq!(open[0].explanation, "explanation of a");

    // The same findings again: nothing is written.
    let mut r = report(
        &key,
        2,
        Trigger::Periodic,
        vec![unit("engine", "E1", "1.0")],
    );
    r.judgement = Some(judgement(
        1,
        vec![
            finding("a", "unit_software"),
            finding("b", "software_software"),
        ],
    ));
    assert!(
        !store
            .ingest_report(r)
            .await
            .expect("ingest")
            .findings_changed
    );

    // One no longer holds and a new one appears: "a" keeps its row, "b" is closed.
    let mut r = report(&key, 3, Trigger::Change, vec![unit("engine", "E1", "1.1")]);
    r.judgement = Some(judgement(
        1,
        vec![finding("a", "unit_software"), finding("c", "device_unit")],
    ));
    assert!(
        store
            .ingest_report(r)
            .await
            .expect("ingest")
            .findings_changed
    );
    let now_open = store.open_findings(&key).await.expect("findings");
    assert_eq!(
        now_open.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(
        now_open[0].id, open[0].id,
        "a finding that still holds is the same row"
    );
    let closed = store.closed_findings(&key, 10).await.expect("closed");
    assert_eq!(
        closed.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
        ["b"]
    );

    // A stale report never changes findings.
    let mut stale = report(&key, 2, Trigger::Periodic, vec![]);
    stale.judgement = Some(judgement(1, vec![]));
    let ack = store.ingest_report(stale).await.expect("ingest");
    assert!(!ack.current && !ack.findings_changed);
    assert_eq!(store.open_findings(&key).await.expect("findings").len(), 2);

    let counts = store.finding_counts(t).await.expect("counts");
    assert_eq!(
        counts,
        vec![
            ("acme-mfp-9000".to_owned(), "device_unit".to_owned(), 1),
            ("acme-mfp-9000".to_owned(), "unit_software".to_owned(), 1),
        ]
    );
    let states = store.compat_states(t).await.expect("states");
    assert_eq!(
        states,
        vec![("acme-mfp-9000".to_owned(), "software".to_owned(), 1)]
    );

    // Compatible again: everything closes.
    let mut r = report(&key, 4, Trigger::Change, vec![unit("engine", "E1", "1.2")]);
    r.judgement = Some(judgement(2, vec![]));
    assert!(
        store
            .ingest_report(r)
            .await
            .expect("ingest")
            .findings_changed
    );
    assert!(
        store
            .open_findings(&key)
            .await
            .expect("findings")
            .is_empty()
    );
    let rows = store.structures(None, 10).await.expect("structures");
    let row = rows.iter().find(|r| r.key == key).expect("listed");
    assert_eq!(
        (row.findings_hash.as_deref(), row.judged_revision),
        (Some(""), Some(2))
    );
    assert!(
        row.structure_json
            .as_deref()
            .is_some_and(|j| j.contains("E1"))
    );
}

async fn rejudgement_never_overwrites_a_newer_structure(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let a = enrolled(&store, t, "RJ-A").await;
    let b = enrolled(&store, t, "RJ-B").await;
    for k in [&a, &b] {
        store
            .ingest_report(report(
                k,
                1,
                Trigger::Connect,
                vec![unit("engine", "E1", "1.0")],
            ))
            .await
            .expect("ingest");
    }
    let rows = store.structures(None, 10).await.expect("structures");
    let hash_of = |k: &DeviceKey| {
        rows.iter()
            .find(|r| &r.key == k)
            .and_then(|r| r.structure_hash.clone())
            .expect("hash")
    };
    let (ha, hb) = (hash_of(&a), hash_of(&b));
    // B's structure moves on before the re-judgement is stored.
    store
        .ingest_report(report(
            &b,
            2,
            Trigger::Change,
            vec![unit("engine", "E2", "2.0")],
        ))
        .await
        .expect("ingest");
    let applied = store
        .apply_judgements(
            &[
                Rejudged {
                    key: a.clone(),
                    structure_hash: ha,
                    judgement: judgement(7, vec![finding("x", "unit_unit")]),
                    had_findings: false,
                },
                Rejudged {
                    key: b.clone(),
                    structure_hash: hb,
                    judgement: judgement(7, vec![finding("y", "unit_unit")]),
                    had_findings: true,
                },
            ],
            NOW,
        )
        .await
        .expect("apply");
    assert_eq!(applied, vec![true, false]);
    assert_eq!(store.open_findings(&a).await.expect("a").len(), 1);
    assert!(
        store.open_findings(&b).await.expect("b").is_empty(),
        "stale judgement skipped"
    );
    // Paging over every tenant's devices.
    let first = store.structures(None, 1).await.expect("page");
    let rest = store
        .structures(Some(&first[0].key), 10)
        .await
        .expect("page");
    assert_eq!(first.len() + rest.len(), 2);
}

async fn policies_notifications_and_jobs(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    assert_eq!(
        store.policy(t).await.expect("policy"),
        PolicyRecord::default()
    );
    let p = PolicyRecord {
        plan: "latest".into(),
        fix: "automatic".into(),
        out_of_service: true,
        job_ttl_s: 3600,
    };
    store.set_policy(t, &p).await.expect("set");
    store.set_policy(t, &p).await.expect("set twice");
    assert_eq!(store.policy(t).await.expect("policy"), p);

    let key = enrolled(&store, t, "N-1").await;
    let n = |k: &str| NewNotification {
        key: k.into(),
        kind: "compat_advice".into(),
        title: format!("advice {k}"),
        body_json: "{}".into(),
        catalog_revision: Some(3),
        replaces: true,
    };
    let first = store.notify(&key, &n("k1"), NOW).await.expect("notify");
    assert!(first.is_some());
    assert_eq!(
        store.notify(&key, &n("k1"), NOW).await.expect("again"),
        None,
        "one open per key"
    );
    let second = store.notify(&key, &n("k2"), NOW + 1).await.expect("notify");
    assert!(second.is_some());
    let open = store.notifications(&key, false, 10).await.expect("list");
    assert_eq!(
        open.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
        ["k2"],
        "k2 supersedes k1"
    );
    let all = store.notifications(&key, true, 10).await.expect("list");
    assert_eq!(all.len(), 2);
    store
        .mark_delivered(t, &[second.expect("id")], NOW + 2)
        .await
        .expect("delivered");
    assert_eq!(
        store.notifications(&key, false, 10).await.expect("list")[0].delivered_at_ms,
        Some(NOW + 2)
    );
    assert_eq!(
        store
            .close_notifications(&key, "compat_advice", NOW + 3)
            .await
            .expect("close"),
        1
    );
    assert!(
        store
            .notifications(&key, false, 10)
            .await
            .expect("list")
            .is_empty()
    );

    let job = NewJob {
        origin: "compat".into(),
        state: "awaiting_approval".into(),
        steps_json: "[]".into(),
        catalog_revision: Some(3),
        created_by: "center".into(),
        expires_at_ms: NOW + 1000,
    };
    let j1 = store.create_job(&key, &job, NOW).await.expect("job");
    let j2 = store.create_job(&key, &job, NOW).await.expect("job");
    assert!(j2 > j1);
    assert!(
        store
            .approve_job(t, j1, "approver", NOW + 1)
            .await
            .expect("approve")
    );
    assert!(
        !store
            .approve_job(t, j1, "approver", NOW + 1)
            .await
            .expect("again"),
        "only once"
    );
    let rec = store.job(t, j1).await.expect("job").expect("found");
    assert_eq!(
        (rec.state.as_str(), rec.approved_by.as_deref()),
        ("queued", Some("approver"))
    );
    assert!(
        store
            .transition_job(t, j1, &Transition::new(&["queued"], "downloading"), NOW + 2)
            .await
            .expect("move")
    );
    assert!(
        !store
            .transition_job(t, j1, &Transition::new(&["queued"], "installing"), NOW + 2)
            .await
            .expect("not from there")
    );
    assert_eq!(
        store
            .cancel_pending_jobs(&key, "compat", "superseded", NOW + 3)
            .await
            .expect("cancel"),
        1
    );
    let open: Vec<u64> = store
        .open_jobs(&key)
        .await
        .expect("open")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(open, vec![j1], "j2 cancelled, j1 running");
    let listed = store
        .jobs(
            t,
            &JobFilter {
                state: Some("failed".into()),
                ..JobFilter::default()
            },
            10,
        )
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![j2]);
    assert_eq!(listed[0].reason.as_deref(), Some("cancelled"));
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    assert!(
        store.job(other, j1).await.expect("job").is_none(),
        "tenants are isolated"
    );
}

async fn tuf_roles_keep_each_version_once(store: Store) {
    use fleetcare_store::tuf::TufRecord;
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let rec = |role: &str, version: u64, env: &str, expires: i64| TufRecord {
        role: role.into(),
        version,
        envelope: env.into(),
        expires_at_ms: expires,
        published_by: "ops".into(),
        published_at_ms: NOW,
    };
    assert!(store.tuf(t, "root", None).await.expect("none").is_none());
    assert!(
        store
            .put_tuf(t, &rec("root", 1, "r1", NOW + 10))
            .await
            .expect("new")
    );
    assert!(
        !store
            .put_tuf(t, &rec("root", 1, "r1", NOW + 10))
            .await
            .expect("same")
    );
    assert!(matches!(
        store
            .put_tuf(t, &rec("root", 1, "r1-other", NOW + 10))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .put_tuf(t, &rec("root", 2, "r2", NOW + 20))
        .await
        .expect("v2");
    store
        .put_tuf(t, &rec("timestamp", 1, "t1", NOW + 5))
        .await
        .expect("ts");
    store
        .put_tuf(t, &rec("timestamp", 2, "t2", NOW + 7))
        .await
        .expect("ts");
    let newest = store
        .tuf(t, "root", None)
        .await
        .expect("read")
        .expect("some");
    assert_eq!((newest.version, newest.envelope.as_str()), (2, "r2"));
    let v1 = store
        .tuf(t, "root", Some(1))
        .await
        .expect("read")
        .expect("v1");
    assert_eq!(v1.envelope, "r1");
    let all = store.tuf_newest(t).await.expect("newest");
    assert_eq!(
        all.iter()
            .map(|r| (r.role.as_str(), r.version))
            .collect::<Vec<_>>(),
        [("root", 2), ("timestamp", 2)]
    );
    assert_eq!(store.tuf_timestamps().await.expect("ts"), [(t, NOW + 7)]);
    // Old timestamps go; roots never do.
    assert_eq!(
        store.forget_tuf(t, "timestamp", 2).await.expect("forget"),
        1
    );
    assert!(
        store
            .tuf(t, "timestamp", Some(1))
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .tuf(t, "timestamp", Some(2))
            .await
            .expect("read")
            .is_some()
    );
    assert!(matches!(
        store.forget_tuf(t, "root", 2).await,
        Err(StoreError::Conflict(_))
    ));
    // Another tenant sees none of it, and gets keys of its own.
    assert!(
        store
            .tuf(other, "root", None)
            .await
            .expect("read")
            .is_none()
    );
    let k = store
        .tuf_online_key(t, "timestamp", "k-1", NOW)
        .await
        .expect("key");
    assert_eq!(k, "k-1");
    let again = store
        .tuf_online_key(t, "timestamp", "k-2", NOW)
        .await
        .expect("key");
    assert_eq!(again, "k-1", "the first key made stays");
    let theirs = store
        .tuf_online_key(other, "timestamp", "k-3", NOW)
        .await
        .expect("key");
    assert_eq!(theirs, "k-3");
}

async fn releases_key_lists_artifacts_and_expiry(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    assert!(store.key_list(t, None).await.expect("none").is_none());
    assert!(
        store
            .publish_key_list(t, 1, "env-1", "ops", NOW)
            .await
            .expect("new")
    );
    assert!(
        !store
            .publish_key_list(t, 1, "env-1", "ops", NOW)
            .await
            .expect("same again")
    );
    assert!(matches!(
        store.publish_key_list(t, 1, "env-X", "ops", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .publish_key_list(t, 2, "env-2", "ops", NOW + 1)
        .await
        .expect("v2");
    assert_eq!(
        store
            .key_list(t, None)
            .await
            .expect("newest")
            .expect("some")
            .version,
        2
    );
    assert_eq!(
        store
            .key_list(t, Some(1))
            .await
            .expect("v1")
            .expect("some")
            .envelope,
        "env-1"
    );
    assert!(
        store.key_list(other, None).await.expect("other").is_none(),
        "tenants are isolated"
    );

    let sha = "ab".repeat(32);
    let r = ReleaseRecord {
        product: "ctl-firmware".into(),
        version: "5.3.0".into(),
        maker: "acme".into(),
        counter: 3,
        envelope: "signed".into(),
        artifacts_json: format!(r#"[{{"name":"a.bin","size":42,"sha256":"{sha}"}}]"#),
        published_by: "ops".into(),
        published_at_ms: NOW,
    };
    assert!(store.publish_release(t, &r).await.expect("new"));
    assert!(!store.publish_release(t, &r).await.expect("idempotent"));
    let changed = ReleaseRecord {
        envelope: "other".into(),
        ..r.clone()
    };
    assert!(matches!(
        store.publish_release(t, &changed).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .release(t, "ctl-firmware", "5.3.0")
            .await
            .expect("get"),
        Some(r.clone())
    );
    assert_eq!(
        store
            .releases(t, Some("ctl-firmware"), 10)
            .await
            .expect("list"),
        vec![r]
    );
    assert!(
        store
            .releases(t, Some("nothing"), 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.release_artifact_size(t, &sha).await.expect("size"),
        Some(42)
    );
    assert_eq!(
        store
            .release_artifact_size(other, &sha)
            .await
            .expect("size"),
        None
    );
    assert_eq!(store.artifact(t, &sha).await.expect("none"), None);
    store.add_artifact(t, &sha, 42, NOW).await.expect("add");
    store
        .add_artifact(t, &sha, 42, NOW)
        .await
        .expect("add twice");
    assert_eq!(store.artifact(t, &sha).await.expect("held"), Some(42));
    assert_eq!(store.artifact(other, &sha).await.expect("other"), None);

    // Jobs not taken before they expire fail with reason `expired`; running ones do not.
    let key = enrolled(&store, t, "E-1").await;
    let job = |state: &str| NewJob {
        origin: "operator".into(),
        state: state.into(),
        steps_json: "[]".into(),
        catalog_revision: None,
        created_by: "ops".into(),
        expires_at_ms: NOW + 1000,
    };
    let queued = store
        .create_job(&key, &job("queued"), NOW)
        .await
        .expect("job");
    let waiting = store
        .create_job(&key, &job("awaiting_approval"), NOW)
        .await
        .expect("job");
    let running = store
        .create_job(&key, &job("downloading"), NOW)
        .await
        .expect("job");
    assert_eq!(store.expire_jobs(NOW + 999).await.expect("not yet"), 0);
    assert_eq!(store.expire_jobs(NOW + 1000).await.expect("expire"), 2);
    for id in [queued, waiting] {
        let j = store.job(t, id).await.expect("job").expect("some");
        assert_eq!(
            (j.state.as_str(), j.reason.as_deref()),
            ("failed", Some("expired"))
        );
    }
    assert_eq!(
        store
            .job(t, running)
            .await
            .expect("job")
            .expect("some")
            .state,
        "downloading"
    );
    // Each change of state is an event; a progress-only update is not.
    let ev = store.job_events(t, queued).await.expect("events");
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].state.as_str(), ev[0].reason.as_deref()),
        ("failed", Some("expired"))
    );
    assert_eq!(ev[0].at_ms, NOW + 1000);
    let moved = store
        .transition_job(
            t,
            running,
            &Transition::new(&["downloading"], "downloaded"),
            NOW + 5,
        )
        .await
        .expect("transition");
    assert!(moved);
    let progress = Transition {
        progress_json: Some("{}"),
        event: false,
        ..Transition::new(&["downloaded"], "downloaded")
    };
    assert!(
        store
            .transition_job(t, running, &progress, NOW + 6)
            .await
            .expect("progress")
    );
    let refused = store
        .transition_job(
            t,
            running,
            &Transition::new(&["queued"], "installing"),
            NOW + 7,
        )
        .await
        .expect("transition");
    assert!(!refused);
    let ev = store.job_events(t, running).await.expect("events");
    assert_eq!(
        ev.iter()
            .map(|e| (e.state.as_str(), e.at_ms))
            .collect::<Vec<_>>(),
        vec![("downloaded", NOW + 5)]
    );
    // States recorded in one millisecond come back in the order a job goes through them,
    // not by name ("installing" sorts before "verifying").
    for (from, to) in [
        ("downloaded", "verifying"),
        ("verifying", "installing"),
        ("installing", "activating"),
    ] {
        assert!(
            store
                .transition_job(t, running, &Transition::new(&[from], to), NOW + 8)
                .await
                .expect("transition")
        );
    }
    let ev = store.job_events(t, running).await.expect("events");
    assert_eq!(
        ev.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(),
        vec!["downloaded", "verifying", "installing", "activating"]
    );
    assert!(
        store
            .job_events(other, running)
            .await
            .expect("events")
            .is_empty()
    );
}

async fn error_events_once_with_watermarks(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "L-1").await;
    let ev = |seq: u64, code: &str| NewErrorEvent {
        seq,
        at_ms: NOW + i64::try_from(seq).expect("small"),
        slot: "fuser".into(),
        code: code.into(),
        severity: "error".into(),
        counters_json: Some(r#"{"pages_total":10.0}"#.into()),
        detail: Some("jam".into()),
        alert_json: None,
        dropped: false,
    };
    let b = store
        .store_error_batch(
            &key,
            1,
            "immediate",
            &[ev(1, "J-1"), ev(2, "J-2"), ev(4, "J-4")],
            NOW,
        )
        .await
        .expect("store");
    assert_eq!((b.stored, b.duplicates, b.acked_seq), (3, 0, 2));
    let b = store
        .store_error_batch(&key, 1, "periodic", &[ev(2, "J-2"), ev(3, "J-3")], NOW + 1)
        .await
        .expect("store");
    assert_eq!((b.stored, b.duplicates, b.acked_seq), (1, 1, 4));
    assert_eq!(store.watermark(&key, 1).await.expect("wm"), 4);
    assert_eq!(
        store.watermark(&key, 2).await.expect("wm"),
        0,
        "epochs are separate"
    );
    let tomb = NewErrorEvent {
        dropped: true,
        severity: "dropped".into(),
        ..ev(5, "")
    };
    let b = store
        .store_error_batch(&key, 1, "periodic", &[tomb], NOW + 2)
        .await
        .expect("store");
    assert_eq!(b.acked_seq, 5);
    let all = store.error_events(&key, 0, None, 100).await.expect("list");
    assert_eq!(
        all.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(),
        vec!["J-4", "J-3", "J-2", "J-1"],
        "newest first, tombstones not listed"
    );
    assert_eq!(all[1].trigger, "periodic");
    assert_eq!(all[3].trigger, "immediate");
    assert_eq!(store.dropped_error_events(&key).await.expect("dropped"), 1);
    let j3 = store
        .error_events(&key, 0, Some("J-3"), 100)
        .await
        .expect("list");
    assert_eq!(j3.len(), 1);
    let recent = store
        .error_events(&key, NOW + 3, None, 100)
        .await
        .expect("list");
    assert_eq!(recent.len(), 2);
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let stranger = DeviceKey {
        tenant: other,
        device_id: key.device_id.clone(),
    };
    assert!(
        store
            .error_events(&stranger, 0, None, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(store.count_error_events(t).await.expect("count"), 4);
}

async fn troubles_abnormal_units_and_settings(store: Store) {
    let t = store.ensure_tenant("acme", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "T-1").await;
    // Rules: each load a revision, per tenant.
    assert_eq!(
        store
            .load_rules(t, "# one", "admin", NOW)
            .await
            .expect("load"),
        1
    );
    assert_eq!(
        store
            .load_rules(t, "# two", "admin", NOW)
            .await
            .expect("load"),
        2
    );
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    assert_eq!(
        store
            .load_rules(other, "# x", "o", NOW)
            .await
            .expect("load"),
        1
    );
    let current = store.current_rules().await.expect("rules");
    assert_eq!(
        current
            .iter()
            .map(|r| (r.tenant, r.revision, r.source.as_str()))
            .collect::<Vec<_>>(),
        vec![(t, 2, "# two"), (other, 1, "# x")]
    );

    // One live trouble per device and rule.
    let new = NewTrouble {
        rule_id: "overheat".into(),
        severity: "major".into(),
        title: "Overheats".into(),
        action: "Check".into(),
        note: None,
        evidence_json: r#"[{"boot_epoch":1,"seq":3}]"#.into(),
        occurrences: 3,
        last_event_at_ms: NOW,
        quiet_until_ms: NOW + 1000,
        fix_json: Some("install fw 2".into()),
    };
    let id = store
        .open_trouble(&key, &new, NOW)
        .await
        .expect("open")
        .expect("an id");
    assert_eq!(
        store.open_trouble(&key, &new, NOW).await.expect("open"),
        None
    );
    store
        .recur_troubles(
            t,
            &[TroubleRecurrence {
                device_id: "T-1".into(),
                rule_id: "overheat".into(),
                events: 2,
                last_event_at_ms: NOW + 500,
                quiet_until_ms: NOW + 1500,
            }],
        )
        .await
        .expect("recur");
    let rec = store.trouble(t, id).await.expect("get").expect("there");
    assert_eq!(
        (
            rec.occurrences,
            rec.last_event_at_ms,
            rec.quiet_until_ms,
            rec.state.as_str()
        ),
        (5, NOW + 500, NOW + 1500, "open")
    );
    assert!(
        store.trouble(other, id).await.expect("get").is_none(),
        "tenants are apart"
    );
    assert!(
        store
            .acknowledge_trouble(t, id, "ann", NOW)
            .await
            .expect("ack")
    );
    assert!(
        !store
            .acknowledge_trouble(t, id, "ann", NOW)
            .await
            .expect("ack")
    );
    assert!(
        !store
            .acknowledge_trouble(other, id, "x", NOW)
            .await
            .expect("ack")
    );
    assert_eq!(
        store.live_troubles().await.expect("live"),
        vec![(t, "T-1".to_owned(), "overheat".to_owned())]
    );
    // Not quiet yet; then quiet: resolved once.
    assert!(
        store
            .resolve_quiet_troubles(NOW + 1499)
            .await
            .expect("quiet")
            .is_empty()
    );
    let done = store
        .resolve_quiet_troubles(NOW + 1500)
        .await
        .expect("quiet");
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].1.resolved_by.as_deref(),
        Some("center (quiet period)")
    );
    assert!(
        store
            .resolve_quiet_troubles(NOW + 9999)
            .await
            .expect("quiet")
            .is_empty()
    );
    assert_eq!(
        store.last_resolved(&key, "overheat").await.expect("last"),
        Some(NOW + 1500)
    );
    // A new one may open now; resolving it by hand.
    let id2 = store
        .open_trouble(&key, &new, NOW + 2000)
        .await
        .expect("open")
        .expect("an id");
    assert_ne!(id, id2);
    store
        .set_fix_outcome(t, id2, "job 7 created", Some(7))
        .await
        .expect("fix");
    // Its fix job succeeds: fixed, watched until its new quiet time; a matching event
    // opens it again, saying the fix did not help.
    let by7 = store.troubles_fixed_by(t, 7).await.expect("by job");
    assert_eq!(by7.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id2]);
    assert_eq!(by7[0].fix_job, Some(7));
    assert!(
        store
            .mark_trouble_fixed(t, id2, NOW + 2000, NOW + 5000, "its fix (job 7) succeeded")
            .await
            .expect("fixed")
    );
    let fixed = store.trouble(t, id2).await.expect("read").expect("there");
    assert_eq!(
        (
            fixed.state.as_str(),
            fixed.fixed_at_ms,
            fixed.quiet_until_ms
        ),
        ("fixed", Some(NOW + 2000), NOW + 5000)
    );
    store
        .recur_troubles(
            t,
            &[TroubleRecurrence {
                device_id: "T-1".into(),
                rule_id: "overheat".into(),
                events: 1,
                last_event_at_ms: NOW + 2100,
                quiet_until_ms: NOW + 3600,
            }],
        )
        .await
        .expect("recur");
    let again = store.trouble(t, id2).await.expect("read").expect("there");
    assert_eq!(again.state, "open");
    assert_eq!(
        again.fix_outcome.as_deref(),
        Some("its fix (job 7) succeeded, but matching events followed")
    );
    assert_eq!(
        again.quiet_until_ms,
        NOW + 5000,
        "the later quiet time stays"
    );
    assert!(
        store
            .resolve_trouble(t, id2, "ann", NOW + 2001)
            .await
            .expect("resolve")
    );
    assert!(
        !store
            .resolve_trouble(t, id2, "ann", NOW + 2002)
            .await
            .expect("resolve")
    );
    let all = store
        .troubles(t, &TroubleFilter::default(), 10)
        .await
        .expect("list");
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id2, id]);
    assert_eq!(
        all[0].fix_outcome.as_deref(),
        Some("its fix (job 7) succeeded, but matching events followed")
    );
    let live = TroubleFilter {
        state: Some("live".into()),
        ..TroubleFilter::default()
    };
    assert!(store.troubles(t, &live, 10).await.expect("list").is_empty());

    // Abnormal units: exactly the marks given; kept ones keep their time.
    let mark = |slot: &str, rule: &str| {
        (
            slot.to_owned(),
            rule.to_owned(),
            format!("{rule} on {slot}"),
        )
    };
    assert!(
        store
            .set_abnormal_units(&key, &[mark("fuser", "life"), mark("engine", "jams")], NOW)
            .await
            .expect("set")
    );
    assert!(
        !store
            .set_abnormal_units(
                &key,
                &[mark("fuser", "life"), mark("engine", "jams")],
                NOW + 5
            )
            .await
            .expect("set")
    );
    assert!(
        store
            .set_abnormal_units(&key, &[mark("fuser", "life")], NOW + 10)
            .await
            .expect("set")
    );
    let marks = store.abnormal_units(&key).await.expect("marks");
    assert_eq!(
        marks
            .iter()
            .map(|m| (m.slot.as_str(), m.since_ms))
            .collect::<Vec<_>>(),
        vec![("fuser", NOW)]
    );

    // Settings: replaced by name.
    store
        .set_device_setting(&key, "a", "1", "center", NOW)
        .await
        .expect("set");
    store
        .set_device_setting(&key, "a", "2", "ann", NOW + 1)
        .await
        .expect("set");
    let s = store.device_settings(&key).await.expect("settings");
    assert_eq!(
        s.iter()
            .map(|s| (s.name.as_str(), s.value.as_str(), s.set_by.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "2", "ann")]
    );

    // The replay reads what was received since a time, in order, by cursor.
    let ev = |seq: u64| NewErrorEvent {
        seq,
        at_ms: NOW,
        slot: "fuser".into(),
        code: "E".into(),
        severity: "error".into(),
        counters_json: None,
        detail: None,
        alert_json: None,
        dropped: false,
    };
    let b = store
        .store_error_batch(&key, 1, "immediate", &[ev(1), ev(2), ev(3)], NOW + 100)
        .await
        .expect("store");
    assert_eq!(b.new, vec![true, true, true]);
    let b = store
        .store_error_batch(&key, 1, "immediate", &[ev(3), ev(4)], NOW + 200)
        .await
        .expect("store");
    assert_eq!(b.new, vec![false, true]);
    let first = store
        .error_events_received_since(NOW + 100, None, 2)
        .await
        .expect("replay");
    assert_eq!(
        first.iter().map(|(_, _, e)| e.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let (tt, d, last) = first.last().cloned().expect("rows");
    let rest = store
        .error_events_received_since(
            NOW + 100,
            Some((last.received_at_ms, tt, d, last.boot_epoch, last.seq)),
            10,
        )
        .await
        .expect("replay");
    assert_eq!(
        rest.iter().map(|(_, _, e)| e.seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let (own, fleet, devices) = store
        .error_rates(&key, "acme-mfp-9000", NOW - 1)
        .await
        .expect("rates");
    assert_eq!(own, 4);
    assert!(fleet >= own && devices >= 1, "{fleet} {devices}");
}

/// A rollout's devices move between states and its waves' counters follow in the same
/// transaction; dispatching claims a device once and creates its job; an abort cancels what
/// has not started; tenants do not see each other's rollouts.
async fn rollouts_keep_their_counters(store: Store) {
    let t = store.ensure_tenant("roll", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(enrolled(&store, t, &format!("RD-{i:03}")).await);
    }
    let id = store
        .create_rollout(
            t,
            &NewRollout {
                name: "fw 2".into(),
                spec_json: "{}".into(),
                thresholds_json: "{}".into(),
                waves: 2,
                state: "running".into(),
                created_by: "alice".into(),
            },
            NOW,
        )
        .await
        .expect("rollout");
    assert!(store.rollout(other, id).await.expect("read").is_none());
    assert_eq!(store.rollouts(other, 10).await.expect("list"), vec![]);
    let dev = |i: usize, wave: u32, state: &str| NewRolloutDevice {
        device_id: keys[i].device_id.as_str().to_owned(),
        wave,
        state: state.into(),
        reason: (state == "skipped").then(|| "runs it already".into()),
    };
    store
        .add_fresh_rollout_devices(
            t,
            id,
            &[
                dev(0, 0, "pending"),
                dev(1, 1, "pending"),
                dev(2, 1, "skipped"),
            ],
            NOW,
        )
        .await
        .expect("fresh");
    // A newcomer joins once; a device already in the rollout is left alone.
    let added = store
        .add_rollout_devices(t, id, &[dev(3, 1, "pending"), dev(0, 1, "pending")], NOW)
        .await
        .expect("add");
    assert_eq!(added, 1);
    let waves = store.rollout_waves(t, id).await.expect("waves");
    let counts = |w: &WaveRecord| (w.devices, w.pending, w.running, w.succeeded, w.skipped);
    assert_eq!(counts(&waves[0]), (1, 1, 0, 0, 0));
    assert_eq!(counts(&waves[1]), (3, 2, 0, 0, 1));
    assert_eq!(store.rollout_waves(other, id).await.expect("waves"), vec![]);

    // Candidates: pending devices of started waves only.
    let c = store
        .rollout_candidates(t, id, 0, NOW, 10)
        .await
        .expect("candidates");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].device_id, "RD-000");
    // Ineligible, then looked at again once its recheck time has come.
    let moved = store
        .move_rollout_devices(
            t,
            id,
            &[RolloutMove {
                device_id: "RD-000".into(),
                wave: 0,
                from: "pending".into(),
                to: "ineligible".into(),
                reason: Some("offline".into()),
            }],
            NOW + 1,
        )
        .await
        .expect("move");
    assert_eq!(moved, vec![true]);
    assert!(
        store
            .rollout_candidates(t, id, 0, NOW, 10)
            .await
            .expect("candidates")
            .is_empty()
    );
    assert_eq!(
        store
            .rollout_candidates(t, id, 0, NOW + 2, 10)
            .await
            .expect("candidates")
            .len(),
        1
    );
    // A move from a state the device is not in changes nothing.
    assert!(
        !store
            .set_rollout_device(t, id, "RD-000", 0, "pending", "running", None, NOW + 2)
            .await
            .expect("guarded")
    );
    assert_eq!(
        counts(&store.rollout_waves(t, id).await.expect("waves")[0]),
        (1, 0, 0, 0, 0)
    );

    // Dispatch: once, with its job.
    let job = NewJob {
        origin: format!("rollout:{id}"),
        state: "queued".into(),
        steps_json: "[]".into(),
        catalog_revision: None,
        created_by: "rollout".into(),
        expires_at_ms: NOW + 100_000,
    };
    let items = vec![
        (keys[1].clone(), 1, "pending".to_owned(), job.clone()),
        (keys[3].clone(), 1, "pending".to_owned(), job.clone()),
    ];
    let jobs = store
        .dispatch_rollout_jobs(id, &items, NOW + 3)
        .await
        .expect("dispatch");
    assert!(jobs.iter().all(Option::is_some), "{jobs:?}");
    let again = store
        .dispatch_rollout_jobs(id, &items[..1], NOW + 4)
        .await
        .expect("dispatch again");
    assert_eq!(again, vec![None]);
    assert_eq!(
        counts(&store.rollout_waves(t, id).await.expect("waves")[1]),
        (3, 0, 2, 0, 1)
    );
    let d1 = store
        .rollout_device(t, id, "RD-001")
        .await
        .expect("device")
        .expect("in the rollout");
    assert_eq!((d1.state.as_str(), d1.job_id), ("running", jobs[0]));
    let j1 = jobs[0].expect("job");
    assert!(
        store
            .transition_job(
                t,
                j1,
                &Transition {
                    from: &["queued"],
                    to: "succeeded",
                    reason: None,
                    detail: None,
                    progress_json: None,
                    event: true,
                },
                NOW + 5,
            )
            .await
            .expect("job ends")
    );
    let done = store.finished_rollout_jobs(t, id, 10).await.expect("done");
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].device_id.as_str(), done[0].job_state.as_str()),
        ("RD-001", "succeeded")
    );
    assert!(
        store
            .set_rollout_device(t, id, "RD-001", 1, "running", "succeeded", None, NOW + 6)
            .await
            .expect("moved")
    );
    let unstarted = store
        .unstarted_rollout_jobs(t, id)
        .await
        .expect("unstarted");
    assert_eq!(unstarted.len(), 1);
    assert_eq!(unstarted[0].0, "RD-003");

    // Abort: what has not started is cancelled (counted as skipped).
    assert!(
        store
            .set_rollout_state(
                t,
                id,
                &["running", "paused"],
                "aborted",
                Some("ops"),
                NOW + 7
            )
            .await
            .expect("abort")
    );
    assert!(
        !store
            .set_rollout_state(other, id, &["aborted"], "running", None, NOW + 7)
            .await
            .expect("other tenant")
    );
    assert_eq!(
        store
            .cancel_rollout_devices(t, id, NOW + 8)
            .await
            .expect("cancel"),
        1
    );
    let waves = store.rollout_waves(t, id).await.expect("waves");
    assert_eq!(counts(&waves[0]), (1, 0, 0, 0, 1));
    assert_eq!(counts(&waves[1]), (3, 0, 1, 1, 1));
    // Still active: a device is running.
    let active = store.active_rollouts().await.expect("active");
    assert_eq!(active.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(active[0].state, "aborted");
    let all = store
        .rollout_devices(t, id, "", "", 10)
        .await
        .expect("devices");
    assert_eq!(all.len(), 4);
    let cancelled = store
        .rollout_devices(t, id, "cancelled", "", 10)
        .await
        .expect("devices");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].device_id, "RD-000");
}

/// A rollout is stored before its devices; until they are, the engine must not see it (it
/// would add reporting devices itself, or judge an empty wave), and one whose creation was
/// cut off is aborted after a while with the reason.
async fn a_rollout_being_created_is_not_active(store: Store) {
    let t = store.ensure_tenant("roll", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "RC-001").await;
    let new = |name: &str| NewRollout {
        name: name.into(),
        spec_json: "{}".into(),
        thresholds_json: "{}".into(),
        waves: 1,
        state: "creating".into(),
        created_by: "alice".into(),
    };
    let cut_off = store
        .create_rollout(t, &new("cut off"), NOW)
        .await
        .expect("rollout");
    let fresh = store
        .create_rollout(t, &new("fresh"), NOW + 500)
        .await
        .expect("rollout");
    assert_eq!(store.active_rollouts().await.expect("active"), vec![]);
    store
        .add_fresh_rollout_devices(
            t,
            fresh,
            &[NewRolloutDevice {
                device_id: key.device_id.as_str().to_owned(),
                wave: 0,
                state: "pending".into(),
                reason: None,
            }],
            NOW + 600,
        )
        .await
        .expect("devices");
    assert!(
        store
            .set_rollout_state(t, fresh, &["creating"], "running", None, NOW + 700)
            .await
            .expect("state")
    );
    assert_eq!(
        store
            .abandon_unfinished_rollouts(NOW + 100, NOW + 800)
            .await
            .expect("abandon"),
        1
    );
    let active = store.active_rollouts().await.expect("active");
    assert_eq!(active.iter().map(|r| r.id).collect::<Vec<_>>(), vec![fresh]);
    let gone = store
        .rollout(t, cut_off)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(gone.state, "aborted");
    assert!(
        gone.state_reason
            .as_deref()
            .unwrap_or("")
            .contains("did not finish"),
        "{gone:?}"
    );
    assert_eq!(
        store
            .abandon_unfinished_rollouts(NOW + 10_000, NOW + 10_000)
            .await
            .expect("again"),
        0
    );
}

async fn fleet_aggregates(store: Store) {
    let t = store.ensure_tenant("acme", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let a = enrolled(&store, t, "A-1").await;
    let b = enrolled(&store, t, "B-1").await;
    let x = enrolled(&store, other, "X-1").await;
    const HOUR: i64 = 3_600_000;
    let base = (NOW / HOUR) * HOUR;
    let ev = |seq: u64, at_ms: i64| NewErrorEvent {
        seq,
        at_ms,
        slot: "fuser".into(),
        code: "J".into(),
        severity: "error".into(),
        counters_json: None,
        detail: None,
        alert_json: None,
        dropped: false,
    };
    let events = [ev(1, base), ev(2, base + 10), ev(3, base + 2 * HOUR + 5)];
    store
        .store_error_batch(&a, 1, "immediate", &events, NOW)
        .await
        .expect("store");
    store
        .store_error_batch(
            &b,
            1,
            "immediate",
            &[ev(1, base + 20), ev(2, base - 5 * HOUR)],
            NOW,
        )
        .await
        .expect("store");
    store
        .store_error_batch(&x, 1, "immediate", &[ev(1, base)], NOW)
        .await
        .expect("store");
    assert_eq!(
        store
            .error_counts(t, None, base - HOUR, HOUR)
            .await
            .expect("counts"),
        vec![(base, 3), (base + 2 * HOUR, 1)],
        "the tenant's events since then, per hour; another tenant's are not counted"
    );
    assert_eq!(
        store
            .error_counts(t, Some("B-1"), base - 6 * HOUR, HOUR)
            .await
            .expect("counts"),
        vec![(base - 5 * HOUR, 1), (base, 1)]
    );

    let mut r = report(&a, 1, Trigger::Connect, vec![unit("engine", "E1", "1.0")]);
    r.judgement = Some(judgement(1, vec![finding("k", "unit_software")]));
    store.ingest_report(r).await.expect("ingest");
    let mut r = report(&x, 1, Trigger::Connect, vec![unit("engine", "E9", "1.0")]);
    r.judgement = Some(judgement(1, vec![finding("k", "unit_software")]));
    store.ingest_report(r).await.expect("ingest");
    assert_eq!(
        store
            .devices_with_finding(t, "unit_software")
            .await
            .expect("f"),
        ["A-1"]
    );
    assert!(
        store
            .devices_with_finding(t, "device_unit")
            .await
            .expect("f")
            .is_empty()
    );

    let trouble = |rule: &str, severity: &str| NewTrouble {
        rule_id: rule.into(),
        severity: severity.into(),
        title: "t".into(),
        action: "a".into(),
        note: None,
        evidence_json: "[]".into(),
        occurrences: 1,
        last_event_at_ms: NOW,
        quiet_until_ms: NOW + HOUR,
        fix_json: None,
    };
    store
        .open_trouble(&b, &trouble("r1", "major"), NOW)
        .await
        .expect("open");
    store
        .open_trouble(&b, &trouble("r2", "minor"), NOW)
        .await
        .expect("open");
    let resolved = store
        .open_trouble(&a, &trouble("r1", "major"), NOW)
        .await
        .expect("open")
        .expect("id");
    assert!(
        store
            .resolve_trouble(t, resolved, "me", NOW)
            .await
            .expect("resolve")
    );
    store
        .open_trouble(&x, &trouble("r1", "critical"), NOW)
        .await
        .expect("open");
    assert_eq!(
        store.devices_with_troubles(t, None).await.expect("t"),
        ["B-1"]
    );
    assert_eq!(
        store
            .devices_with_troubles(t, Some("minor"))
            .await
            .expect("t"),
        ["B-1"]
    );
    assert!(
        store
            .devices_with_troubles(t, Some("critical"))
            .await
            .expect("t")
            .is_empty()
    );
    assert_eq!(
        store
            .live_troubles_by_severity(t)
            .await
            .expect("by severity"),
        vec![("major".to_owned(), 1), ("minor".to_owned(), 1)]
    );
}

async fn instances_presence_and_leases(store: Store) {
    let t = store.ensure_tenant("acme", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "PRN-1").await;
    store
        .heartbeat("a", "10.0.0.1:8470", NOW)
        .await
        .expect("beat a");
    store
        .heartbeat("b", "10.0.0.2:8470", NOW)
        .await
        .expect("beat b");
    assert_eq!(
        store.presence(&key, NOW - 10_000).await.expect("presence"),
        None
    );

    // The device connects to A, then moves to B: the last connection wins.
    store
        .set_presence(&key, "a", "push", NOW)
        .await
        .expect("on a");
    let p = store.presence(&key, NOW - 10_000).await.expect("presence");
    assert_eq!(p.map(|p| p.instance), Some("a".to_owned()));
    store
        .set_presence(&key, "b", "poll", NOW + 1)
        .await
        .expect("on b");
    // A's late goodbye does not take the device from B.
    store
        .clear_presence(std::slice::from_ref(&key), "a")
        .await
        .expect("a clears");
    let p = store
        .presence(&key, NOW - 10_000)
        .await
        .expect("presence")
        .expect("on b");
    assert_eq!((p.instance.as_str(), p.via.as_str()), ("b", "poll"));
    assert_eq!(
        store
            .presence_of_tenant(t, NOW - 10_000)
            .await
            .expect("all")
            .len(),
        1
    );

    // B stops beating: its devices are nowhere, then B is forgotten.
    store
        .heartbeat("a", "10.0.0.1:8470", NOW + 20_000)
        .await
        .expect("beat a");
    assert_eq!(
        store.presence(&key, NOW + 10_000).await.expect("presence"),
        None
    );
    let live = store.live_instances(NOW + 10_000).await.expect("live");
    assert_eq!(live, vec![("a".to_owned(), "10.0.0.1:8470".to_owned())]);
    assert_eq!(
        store
            .forget_dead_instances(NOW + 10_000)
            .await
            .expect("forget"),
        1
    );
    assert!(
        store
            .presence_of_tenant(t, 0)
            .await
            .expect("all")
            .is_empty(),
        "B's devices forgotten"
    );

    // Leases: one holder at a time, kept by renewing, taken over after expiry.
    assert!(
        store
            .lease("engines", "a", NOW, NOW + 15_000)
            .await
            .expect("a takes")
    );
    assert!(
        !store
            .lease("engines", "b", NOW + 1, NOW + 15_001)
            .await
            .expect("b refused")
    );
    assert!(
        store
            .lease("engines", "a", NOW + 5_000, NOW + 20_000)
            .await
            .expect("a renews")
    );
    assert_eq!(
        store
            .lease_holder("engines", NOW + 6_000)
            .await
            .expect("holder"),
        Some("a".into())
    );
    assert!(
        !store
            .lease("engines", "b", NOW + 19_000, NOW + 34_000)
            .await
            .expect("still a's")
    );
    assert!(
        store
            .lease("engines", "b", NOW + 20_001, NOW + 35_000)
            .await
            .expect("b takes over")
    );
    assert!(
        !store
            .lease("engines", "a", NOW + 20_002, NOW + 35_000)
            .await
            .expect("a lost it")
    );
    store
        .release_lease("engines", "a")
        .await
        .expect("not a's to release");
    assert_eq!(
        store
            .lease_holder("engines", NOW + 21_000)
            .await
            .expect("holder"),
        Some("b".into())
    );
    store.release_lease("engines", "b").await.expect("release");
    assert!(
        store
            .lease("engines", "a", NOW + 21_000, NOW + 36_000)
            .await
            .expect("free again")
    );

    // Leaving takes an instance's presence and leases with it.
    store
        .set_presence(&key, "a", "push", NOW + 21_000)
        .await
        .expect("on a");
    store.leave("a").await.expect("leave");
    assert_eq!(store.presence(&key, 0).await.expect("presence"), None);
    assert_eq!(
        store
            .lease_holder("engines", NOW + 21_000)
            .await
            .expect("holder"),
        None
    );

    // Judged revisions.
    assert_eq!(store.judged_revision(t).await.expect("none yet"), None);
    store.set_judged_revision(t, 3, NOW).await.expect("judged");
    store
        .set_judged_revision(t, 4, NOW)
        .await
        .expect("judged again");
    assert_eq!(store.judged_revision(t).await.expect("judged"), Some(4));
}

async fn units_out_of_service_settled_states_and_install_blocked(store: Store) {
    use fleetcare_store::units::{BY_OPERATOR, BY_POLICY, UnitService};
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "U-1").await;

    // What a report says of installing is kept until a report says otherwise.
    let mut r = report(&key, 1, Trigger::Connect, vec![unit("engine", "E1", "1.0")]);
    r.install_blocked = Some("no root of trust".into());
    r.judgement = Some(judgement(1, vec![finding("a", "software_software")]));
    store.ingest_report(r).await.expect("ingest");
    let d = store.device(&key).await.expect("device").expect("known");
    assert_eq!(d.install_blocked.as_deref(), Some("no root of trust"));
    assert_eq!(d.compat_state.as_deref(), Some("software"));
    assert_eq!(
        store
            .device_condition(&key)
            .await
            .expect("condition")
            .install_blocked
            .as_deref(),
        Some("no root of trust")
    );

    // The state is settled only while the findings are the ones it was planned for.
    assert!(
        !store
            .settle_compat_state(&key, "other", "hardware")
            .await
            .expect("settle")
    );
    assert!(
        store
            .settle_compat_state(&key, "a", "hardware")
            .await
            .expect("settle")
    );
    assert!(
        !store
            .settle_compat_state(&key, "a", "hardware")
            .await
            .expect("settle again"),
        "nothing to change"
    );
    // A report with the same findings keeps the settled state.
    let mut r = report(
        &key,
        2,
        Trigger::Periodic,
        vec![unit("engine", "E1", "1.0")],
    );
    r.judgement = Some(judgement(1, vec![finding("a", "software_software")]));
    store.ingest_report(r).await.expect("ingest");
    let d = store.device(&key).await.expect("device").expect("known");
    assert_eq!(d.compat_state.as_deref(), Some("hardware"));
    assert_eq!(d.install_blocked, None, "the newest report can install");

    // Units out of service: the policy never overrides an operator's reason; an operator
    // does; a new serial in the slot is another unit.
    let unit_out = |origin: &str, reason: &str, serial: &str| UnitService {
        slot: "fuser".into(),
        serial: serial.into(),
        origin: origin.into(),
        taken_by: origin.into(),
        reason: reason.into(),
        switched_to: Some("fuser-2".into()),
        taken_at_ms: NOW,
    };
    assert!(
        store
            .take_unit_out(&key, &unit_out(BY_POLICY, "does not fit", "F1"))
            .await
            .expect("take out")
    );
    assert!(
        !store
            .take_unit_out(&key, &unit_out(BY_POLICY, "does not fit", "F1"))
            .await
            .expect("again")
    );
    assert!(
        store
            .take_unit_out(&key, &unit_out(BY_OPERATOR, "smells of smoke", "F1"))
            .await
            .expect("operator")
    );
    assert!(
        !store
            .take_unit_out(&key, &unit_out(BY_POLICY, "does not fit", "F1"))
            .await
            .expect("policy after operator")
    );
    let out = store.units_out(&key).await.expect("units");
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].origin.as_str(),
            out[0].reason.as_str(),
            out[0].switched_to.as_deref()
        ),
        (BY_OPERATOR, "smells of smoke", Some("fuser-2"))
    );
    assert!(
        store
            .take_unit_out(&key, &unit_out(BY_POLICY, "does not fit", "F2"))
            .await
            .expect("another unit in the slot")
    );
    let back = store.put_unit_back(&key, "fuser").await.expect("back");
    assert_eq!(back.map(|u| u.serial), Some("F2".into()));
    assert_eq!(
        store.put_unit_back(&key, "fuser").await.expect("again"),
        None
    );
    assert!(store.units_out(&key).await.expect("units").is_empty());

    // Notices of units stay open beside each other; each closes by its key.
    let n = |k: &str| NewNotification {
        key: k.into(),
        kind: "unit_out_of_service".into(),
        title: k.into(),
        body_json: "{}".into(),
        catalog_revision: None,
        replaces: false,
    };
    store
        .notify(&key, &n("out:fuser"), NOW)
        .await
        .expect("notify");
    store
        .notify(&key, &n("out:tray"), NOW)
        .await
        .expect("notify");
    assert_eq!(
        store
            .notifications(&key, false, 10)
            .await
            .expect("list")
            .len(),
        2
    );
    assert!(
        store
            .close_notification(&key, "out:fuser", NOW + 1)
            .await
            .expect("close")
    );
    assert!(
        !store
            .close_notification(&key, "out:fuser", NOW + 2)
            .await
            .expect("closed")
    );
    let open = store.notifications(&key, false, 10).await.expect("list");
    assert_eq!(
        open.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
        ["out:tray"]
    );
}

/// A report at `at` (ms) with the given operating values.
fn op_report(key: &DeviceKey, seq: u64, at: i64, op: &[(&str, f64)]) -> NewReport {
    NewReport {
        observed_at_ms: at,
        received_at_ms: at + 5,
        operating: op.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        ..report(
            key,
            seq,
            Trigger::Periodic,
            vec![unit("engine", "E", "1.0")],
        )
    }
}

async fn operating_history_keeps_changes_and_rolls_old_days_up(store: Store) {
    use fleetcare_core::meters::{self, DAY_MS, HOUR_MS};
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "OPS-1").await;
    let d0 = meters::day_of(NOW);
    let at = move |day: i64, hour: i64| (d0 + day) * DAY_MS + hour * HOUR_MS;
    let reports = [
        (1, at(0, 1), vec![("pages", 100.0), ("toner.k", 90.0)]),
        (2, at(0, 2), vec![("pages", 100.0), ("toner.k", 90.0)]), // nothing changed
        (3, at(0, 3), vec![("pages", 150.0), ("toner.k", 88.0)]),
        (4, at(1, 1), vec![("pages", 150.0), ("toner.k", 88.0)]), // a new day: keyframe
        (
            5,
            at(1, 5),
            vec![("pages", 400.0), ("toner.k", 60.0), ("temp", 180.0)],
        ),
        (6, at(2, 1), vec![("pages", 410.0), ("toner.k", 59.5)]),
    ];
    for (seq, when, op) in &reports {
        store
            .ingest_report(op_report(&key, *seq, *when, op))
            .await
            .expect("ingest");
    }
    // A retry and a late, older report add nothing.
    let again = &reports[2];
    let dup = store
        .ingest_report(op_report(&key, again.0, again.1, &again.2))
        .await
        .expect("retry");
    assert!(dup.duplicate);
    let h = store
        .operating_history(&key, at(0, 0), at(3, 0))
        .await
        .expect("history");
    assert_eq!(
        h.points.len(),
        5,
        "one point per report that changed something"
    );
    assert_eq!(
        h.points.iter().filter(|p| p.keyframe).count(),
        3,
        "one keyframe per day"
    );
    assert_eq!(h.points[1].vals.len(), 2, "only the changed values");
    let states = meters::replay(&h.points);
    assert_eq!(states[3].1["temp"], 180.0);
    assert_eq!(
        states[4].1.get("temp"),
        None,
        "a vanished value is gone from the series"
    );
    assert_eq!(states[4].1["pages"], 410.0);
    // Devices reporting together (grouped on a backend that groups) each keep their own.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let key = enrolled(&store, t, &format!("OPS-G{i}")).await;
        let store = store.clone();
        tasks.spawn(async move {
            for seq in 1..=3u64 {
                let pages = 10.0 * f64::from(u32::try_from(seq).expect("small"));
                store
                    .ingest_report(op_report(
                        &key,
                        seq,
                        at(0, 1) + 1000 * seq as i64,
                        &[("pages", pages)],
                    ))
                    .await
                    .expect("ingest");
            }
            key
        });
    }
    while let Some(key) = tasks.join_next().await {
        let key = key.expect("task");
        let h = store
            .operating_history(&key, at(0, 0), at(1, 0))
            .await
            .expect("history");
        let last = meters::replay(&h.points).pop().expect("values");
        assert_eq!((h.points.len(), last.1["pages"]), (3, 30.0));
    }
    // Days before day 2 are rolled up: their raw points go, a daily rollup stays.
    let pruned = store
        .prune_operating(d0 + 2, d0 - 800, 1000)
        .await
        .expect("prune");
    assert_eq!(
        pruned.rolled,
        2 + 8,
        "two days of OPS-1, one of each other device"
    );
    assert_eq!(pruned.dropped, 0);
    let h = store
        .operating_history(&key, at(0, 0), at(3, 0))
        .await
        .expect("history");
    assert_eq!(h.points.len(), 1, "only day 2's raw point is left");
    assert_eq!(h.daily.len(), 2);
    assert_eq!(
        h.daily[0].1["pages"].to_array(),
        [100.0, 150.0, 100.0, 150.0]
    );
    assert_eq!(h.daily[1].1["toner.k"].to_array(), [88.0, 60.0, 60.0, 88.0]);
    assert_eq!(
        store
            .prune_operating(d0 + 2, d0 - 800, 1000)
            .await
            .expect("prune"),
        fleetcare_store::operating::Pruned::default(),
        "nothing is done twice"
    );
    // Rollups past the keep limit go.
    let pruned = store
        .prune_operating(d0 + 2, d0 + 1, 1000)
        .await
        .expect("prune");
    assert_eq!(pruned.dropped, 1 + 8);
    let h = store
        .operating_history(&key, at(0, 0), at(3, 0))
        .await
        .expect("history");
    assert_eq!((h.points.len(), h.daily.len()), (1, 1));
}

fn toner(serial: &str, level: f64) -> fleetcare_wire::Supply {
    fleetcare_wire::Supply {
        slot: "toner.black".into(),
        kind: fleetcare_wire::SupplyKind::Toner,
        color: Some("black".into()),
        level_pct: Some(level),
        level: None,
        max: None,
        part_number: Some("TN-1".into()),
        serial: Some(serial.into()),
        state: fleetcare_wire::SupplyState::Ok,
    }
}

async fn supplies_are_structure_and_their_levels_history(store: Store) {
    use fleetcare_core::meters::{self, HOUR_MS};
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "SUP-1").await;
    let with = |seq: u64, serial: &str, level: f64| {
        let supplies = vec![toner(serial, level)];
        let mut r = op_report(
            &key,
            seq,
            NOW + seq as i64 * HOUR_MS / 10,
            &[("pages", 1.0)],
        );
        r.structure = r.structure.with_supplies(&supplies).expect("valid");
        r.supplies = supplies;
        r
    };
    let first = store
        .ingest_report(with(1, "K-1", 40.0))
        .await
        .expect("ingest");
    let lower = store
        .ingest_report(with(2, "K-1", 35.0))
        .await
        .expect("ingest");
    assert_eq!(lower.changes, 0, "a level is not a structure change");
    let swap = store
        .ingest_report(with(3, "K-2", 100.0))
        .await
        .expect("ingest");
    assert_eq!((first.changes > 0, swap.changes), (true, 1));
    let d = store.device(&key).await.expect("read").expect("device");
    assert_eq!(d.supplies, vec![toner("K-2", 100.0)]);
    assert_eq!(
        d.structure.expect("structure").supplies()["toner.black"]
            .serial
            .as_deref(),
        Some("K-2")
    );
    let history = store.history(&key, 10).await.expect("history");
    assert!(
        history.iter().any(|h| matches!(&h.change,
            Change::SupplyReplaced { slot, old, new }
                if slot == "toner.black" && old.serial.as_deref() == Some("K-1")
                    && new.serial.as_deref() == Some("K-2"))),
        "{history:?}"
    );
    let h = store
        .operating_history(&key, NOW - meters::DAY_MS, NOW + meters::DAY_MS)
        .await
        .expect("history");
    let levels: Vec<f64> = meters::replay(&h.points)
        .iter()
        .filter_map(|(_, v)| v.get("supply.toner.black.level_pct").copied())
        .collect();
    assert_eq!(levels, vec![40.0, 35.0, 100.0]);
}

fn trouble(rule: &str) -> NewTrouble {
    NewTrouble {
        rule_id: rule.into(),
        severity: "major".into(),
        title: format!("{rule} title"),
        action: "do it".into(),
        note: None,
        evidence_json: "[]".into(),
        occurrences: 1,
        last_event_at_ms: NOW,
        quiet_until_ms: NOW + 1000,
        fix_json: None,
    }
}

fn subscription(name: &str) -> fleetcare_store::notify::NewSubscription {
    fleetcare_store::notify::NewSubscription {
        name: name.into(),
        channel: "webhook".into(),
        target: "http://127.0.0.1:9/hook".into(),
        events: "trouble.opened".into(),
        filter: String::new(),
        min_severity: "info".into(),
        digest_minutes: 0,
        secret: "s".into(),
    }
}

/// Each change that notifies writes its event in its own transaction (store triggers), only
/// for tenants with a subscription; a cancelled job and a repeated pause write none.
async fn the_outbox_follows_every_change_that_notifies(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "OB-1").await;
    // No subscription yet: nothing is written.
    store
        .open_trouble(&key, &trouble("quiet"), NOW)
        .await
        .expect("open");
    assert_eq!(store.waiting_events(100).await.expect("events"), vec![]);
    assert!(
        store
            .add_subscription(t, &subscription("s"), "admin", NOW)
            .await
            .expect("add")
    );
    assert!(
        !store
            .add_subscription(t, &subscription("s"), "admin", NOW)
            .await
            .expect("again")
    );
    let opened = store
        .open_trouble(&key, &trouble("fuser-overheat"), NOW)
        .await
        .expect("open")
        .expect("id");
    store
        .open_trouble(&key, &trouble("supply-low:toner-k"), NOW)
        .await
        .expect("open");
    store
        .open_trouble(&key, &trouble("part-end-of-life:fuser"), NOW)
        .await
        .expect("open");
    assert!(
        store
            .resolve_trouble(t, opened, "op", NOW + 1)
            .await
            .expect("resolve")
    );
    assert!(
        !store
            .resolve_trouble(t, opened, "op", NOW + 2)
            .await
            .expect("again")
    );
    store
        .notify(
            &key,
            &NewNotification {
                key: "k".into(),
                kind: "compat_advice".into(),
                title: "advice".into(),
                body_json: "{}".into(),
                catalog_revision: None,
                replaces: true,
            },
            NOW + 3,
        )
        .await
        .expect("notify");
    let rollout = store
        .create_rollout(
            t,
            &NewRollout {
                name: "r".into(),
                spec_json: "{}".into(),
                thresholds_json: "{}".into(),
                waves: 1,
                state: "running".into(),
                created_by: "alice".into(),
            },
            NOW,
        )
        .await
        .expect("rollout");
    assert!(
        store
            .set_rollout_state(
                t,
                rollout,
                &["running"],
                "paused",
                Some("2 of 3 failed"),
                NOW + 4
            )
            .await
            .expect("pause")
    );
    assert!(
        !store
            .set_rollout_state(t, rollout, &["running"], "paused", None, NOW + 5)
            .await
            .expect("again")
    );
    let job = NewJob {
        origin: "operator".into(),
        state: "queued".into(),
        steps_json: "[]".into(),
        catalog_revision: None,
        created_by: "op".into(),
        expires_at_ms: NOW + 100_000,
    };
    let failed = store.create_job(&key, &job, NOW).await.expect("job");
    let mut tr = Transition::new(&["queued"], "failed");
    tr.reason = Some("hash_mismatch");
    assert!(
        store
            .transition_job(t, failed, &tr, NOW + 6)
            .await
            .expect("fail")
    );
    let cancelled = store.create_job(&key, &job, NOW).await.expect("job");
    let mut tr = Transition::new(&["queued"], "failed");
    tr.reason = Some("cancelled");
    assert!(
        store
            .transition_job(t, cancelled, &tr, NOW + 7)
            .await
            .expect("cancel")
    );
    let got: Vec<(String, Option<String>)> = store
        .waiting_events(100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect();
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "trouble.opened",
            "supply.low",
            "part.end_of_life",
            "trouble.resolved",
            "advice.created",
            "rollout.paused",
            "job.failed"
        ]
    );
    assert_eq!(got[5].1.as_deref(), Some("2 of 3 failed"));
    assert_eq!(got[6].1.as_deref(), Some("hash_mismatch"));

    // Silent past its deadline: offline once, with its event; a report brings it back.
    store.set_offline_after(t, Some(60)).await.expect("setting");
    let mut r = report(&key, 1, Trigger::Connect, vec![]);
    r.received_at_ms = NOW;
    store.ingest_report(r).await.expect("report");
    assert_eq!(
        store.mark_offline(NOW + 59_000).await.expect("sweep"),
        vec![]
    );
    let marked = store.mark_offline(NOW + 61_000).await.expect("sweep");
    assert_eq!(marked, vec![(t, "OB-1".to_owned())]);
    assert_eq!(
        store.mark_offline(NOW + 62_000).await.expect("sweep"),
        vec![],
        "once"
    );
    let mut r = report(&key, 2, Trigger::Periodic, vec![]);
    r.received_at_ms = NOW + 70_000;
    store.ingest_report(r).await.expect("report");
    let kinds: Vec<String> = store
        .waiting_events(100)
        .await
        .expect("events")
        .into_iter()
        .skip(7)
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["device.offline", "device.online"]);
    assert_eq!(
        store.mark_offline(NOW + 100_000).await.expect("sweep"),
        vec![],
        "it reported"
    );
    // Reports while online leave the deadline's bound (NOW + 130 s) where it is; a sweep past
    // the bound finds the later report and moves the bound to its deadline (NOW + 200 s)
    // instead of marking the device.
    let mut r = report(&key, 3, Trigger::Periodic, vec![]);
    r.received_at_ms = NOW + 140_000;
    store.ingest_report(r).await.expect("report");
    assert_eq!(
        store.mark_offline(NOW + 150_000).await.expect("sweep"),
        vec![],
        "it reported since the bound was set"
    );
    assert_eq!(
        store.mark_offline(NOW + 199_000).await.expect("sweep"),
        vec![],
        "the bound moved to the last report's deadline"
    );
    assert_eq!(
        store.mark_offline(NOW + 201_000).await.expect("sweep"),
        vec![(t, "OB-1".to_owned())],
        "silent past that deadline"
    );
    // A report brings it back; a shorter deadline set meanwhile is honoured at once.
    let mut r = report(&key, 4, Trigger::Periodic, vec![]);
    r.received_at_ms = NOW + 210_000;
    store.ingest_report(r).await.expect("report");
    store.set_offline_after(t, Some(10)).await.expect("setting");
    assert_eq!(
        store.mark_offline(NOW + 221_000).await.expect("sweep"),
        vec![(t, "OB-1".to_owned())],
        "the tenant's shorter deadline"
    );
    // So is a shorter report interval (no tenant setting: 3 × the interval).
    let mut r = report(&key, 5, Trigger::Periodic, vec![]);
    r.received_at_ms = NOW + 230_000;
    store.ingest_report(r).await.expect("report");
    store.set_offline_after(t, None).await.expect("setting");
    assert!(
        store
            .set_report_interval(&key, Some(20))
            .await
            .expect("interval")
    );
    assert_eq!(
        store.mark_offline(NOW + 289_000).await.expect("sweep"),
        vec![]
    );
    assert_eq!(
        store.mark_offline(NOW + 291_000).await.expect("sweep"),
        vec![(t, "OB-1".to_owned())],
        "3 × the new interval after the last report"
    );
}

/// A due delivery is claimed by one caller only; only that claim records the outcome; a
/// subscription that never succeeded is disabled when a delivery gives up.
async fn deliveries_are_claimed_once_and_recorded_by_the_claimer(store: Store) {
    use fleetcare_store::notify::{Outcome, SendResult};
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    assert!(
        store
            .add_subscription(t, &subscription("s"), "admin", NOW)
            .await
            .expect("add")
    );
    let sub = store
        .subscription(t, "s")
        .await
        .expect("sub")
        .expect("found");
    let ev = store
        .add_outbox_event(&fleetcare_store::notify::OutboxEvent {
            id: 0,
            tenant: t,
            kind: "test".into(),
            device_id: None,
            subject_id: None,
            severity: None,
            at_ms: NOW,
            detail: Some("s".into()),
        })
        .await
        .expect("event");
    let fan = vec![(ev, t, "{}".to_owned(), vec![sub.id])];
    store.fan_out(&fan, NOW).await.expect("fan out");
    store
        .fan_out(&fan, NOW)
        .await
        .expect("twice changes nothing");
    assert_eq!(store.waiting_events(10).await.expect("events"), vec![]);
    let due = store.due_deliveries(NOW, 10).await.expect("due");
    assert_eq!(due.len(), 1, "one delivery, however often fanned out");
    let mine = store
        .claim_deliveries(due.clone(), NOW + 35_000)
        .await
        .expect("claim");
    let theirs = store
        .claim_deliveries(due, NOW + 35_000)
        .await
        .expect("claim");
    assert_eq!((mine.len(), theirs.len()), (1, 0), "claimed once");
    assert_eq!(
        store.due_deliveries(NOW + 1000, 10).await.expect("due"),
        vec![],
        "leased"
    );
    let d = &mine[0];
    let result = |attempts: u64, outcome: Outcome| SendResult {
        delivery_id: d.id,
        subscription_id: sub.id,
        attempts,
        created_at_ms: d.created_at_ms,
        outcome,
        status: Some(500),
        error: Some("answered 500".into()),
        mailed: false,
    };
    // A stale claim records nothing.
    store
        .record_sends(&[result(0, Outcome::Delivered)], NOW + 1, &|_| {
            String::new()
        })
        .await
        .expect("record");
    let log = store.deliveries(t, sub.id, None, 10).await.expect("log");
    assert_eq!(log[0].state, "pending");
    store
        .record_sends(
            &[result(
                1,
                Outcome::Retry {
                    next_at_ms: NOW + 2000,
                },
            )],
            NOW + 1,
            &|_| String::new(),
        )
        .await
        .expect("record");
    let again = store
        .claim_deliveries(
            store.due_deliveries(NOW + 2000, 10).await.expect("due"),
            NOW + 40_000,
        )
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    let disabled = store
        .record_sends(&[result(2, Outcome::GaveUp)], NOW + 3, &|_| {
            "kept failing".into()
        })
        .await
        .expect("record");
    assert_eq!(disabled, vec![sub.id]);
    let sub = store
        .subscription(t, "s")
        .await
        .expect("sub")
        .expect("found");
    assert_eq!(
        (sub.state.as_str(), sub.state_reason.as_deref()),
        ("disabled", Some("kept failing"))
    );
    assert_eq!(
        store.deliveries(t, sub.id, None, 10).await.expect("log")[0].state,
        "failed"
    );
    assert!(
        store
            .redeliver(t, sub.id, d.id, NOW + 4)
            .await
            .expect("redeliver")
    );
    assert_eq!(
        store.due_deliveries(NOW + 5, 10).await.expect("due"),
        vec![],
        "parked while disabled"
    );
    assert!(
        store
            .set_subscription_state(t, sub.id, true, None, NOW + 6)
            .await
            .expect("enable")
    );
    assert_eq!(
        store.due_deliveries(NOW + 6, 10).await.expect("due").len(),
        1,
        "due once enabled"
    );
    assert!(store.remove_subscription(t, "s").await.expect("remove"));
    assert_eq!(
        store.due_deliveries(NOW + 6, 10).await.expect("due"),
        vec![],
        "removed with it"
    );
}

async fn ddi_devices_actions_gateways_and_digests(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let key = enrolled(&store, t, "ddi-1").await;
    assert_eq!(
        store.ddi_device(&key).await.expect("read"),
        None,
        "an agent's device"
    );
    store.ddi_register(&key, NOW).await.expect("register");
    store
        .ddi_register(&key, NOW + 1)
        .await
        .expect("again: nothing changes");
    let d = store
        .ddi_device(&key)
        .await
        .expect("read")
        .expect("a DDI device");
    assert_eq!(
        (d.seq, d.attributes.len(), d.report_requested),
        (0, 0, false)
    );

    // Attributes move only from the sequence number they were read at.
    let attrs: std::collections::BTreeMap<String, String> =
        [("model".to_owned(), "acme-printer-p500".to_owned())].into();
    assert!(
        store
            .ddi_set_attributes(&key, 0, &attrs)
            .await
            .expect("set")
    );
    assert!(
        !store
            .ddi_set_attributes(&key, 0, &attrs)
            .await
            .expect("stale"),
        "a stale write"
    );
    store.ddi_request_report(&key, NOW).await.expect("request");
    let d = store.ddi_device(&key).await.expect("read").expect("device");
    assert_eq!((d.seq, d.report_requested), (1, true));
    assert_eq!(d.attributes, attrs);
    assert!(
        store
            .ddi_set_attributes(&key, 1, &Default::default())
            .await
            .expect("set")
    );
    let d = store.ddi_device(&key).await.expect("read").expect("device");
    assert_eq!(
        (d.seq, d.report_requested, d.attributes.len()),
        (2, false, 0),
        "answered"
    );

    // Cancellations are shown for fetched, cancelled jobs until the device answers once.
    let job = NewJob {
        origin: "operator".into(),
        state: "queued".into(),
        steps_json: "[]".into(),
        catalog_revision: None,
        created_by: "admin".into(),
        expires_at_ms: NOW + 1000,
    };
    let fetched = store.create_job(&key, &job, NOW).await.expect("job");
    let unseen = store.create_job(&key, &job, NOW).await.expect("job");
    store
        .ddi_fetched(&key, fetched, NOW)
        .await
        .expect("fetched");
    store
        .ddi_fetched(&key, fetched, NOW + 5)
        .await
        .expect("again");
    assert_eq!(
        store
            .ddi_action(t, fetched)
            .await
            .expect("read")
            .and_then(|a| a.fetched_at_ms),
        Some(NOW),
        "the first fetch counts"
    );
    assert!(
        store.ddi_cancels(&key).await.expect("cancels").is_empty(),
        "nothing cancelled"
    );
    for id in [fetched, unseen] {
        let t = fleetcare_store::Transition {
            reason: Some("cancelled"),
            ..fleetcare_store::Transition::new(&["queued"], "failed")
        };
        assert!(
            store
                .transition_job(key.tenant, id, &t, NOW + 10)
                .await
                .expect("cancel")
        );
    }
    assert_eq!(
        store.ddi_cancels(&key).await.expect("cancels"),
        vec![fetched]
    );
    assert_eq!(
        store.newest_job_in(&key, "failed").await.expect("newest"),
        Some(unseen)
    );
    assert_eq!(
        store
            .newest_job_in(&key, "succeeded")
            .await
            .expect("newest"),
        None
    );
    assert!(
        store
            .ddi_cancel_answer(&key, fetched, "acknowledged", NOW + 20)
            .await
            .expect("answer")
    );
    assert!(
        !store
            .ddi_cancel_answer(&key, fetched, "rejected", NOW + 21)
            .await
            .expect("once")
    );
    assert_eq!(
        store
            .ddi_action(t, fetched)
            .await
            .expect("read")
            .and_then(|a| a.cancel_answer)
            .as_deref(),
        Some("acknowledged")
    );
    assert!(store.ddi_cancels(&key).await.expect("cancels").is_empty());
    assert_eq!(
        store.ddi_action(other, fetched).await.expect("read"),
        None,
        "tenants apart"
    );

    // Gateway tokens: per tenant, revoked together.
    store
        .add_gateway_token(t, "gw-hash-1", NOW)
        .await
        .expect("add");
    store
        .add_gateway_token(t, "gw-hash-2", NOW)
        .await
        .expect("add");
    assert_eq!(
        store.gateway_tenant("gw-hash-1").await.expect("read"),
        Some(t)
    );
    assert_eq!(store.gateway_tenant("unknown").await.expect("read"), None);
    assert_eq!(
        store
            .revoke_gateway_tokens(other, NOW)
            .await
            .expect("revoke"),
        0
    );
    assert_eq!(
        store.revoke_gateway_tokens(t, NOW).await.expect("revoke"),
        2
    );
    assert_eq!(store.gateway_tenant("gw-hash-2").await.expect("read"), None);

    // Digests: the first write counts.
    let sha = "a".repeat(64);
    assert_eq!(store.artifact_digests(&sha).await.expect("read"), None);
    store
        .put_artifact_digests(&sha, "s1", "m1")
        .await
        .expect("put");
    store
        .put_artifact_digests(&sha, "s2", "m2")
        .await
        .expect("put again");
    assert_eq!(
        store.artifact_digests(&sha).await.expect("read"),
        Some(("s1".to_owned(), "m1".to_owned()))
    );
}

async fn retention_settings_and_bounded_pruning(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let other = store.ensure_tenant("other", NOW).await.expect("tenant");
    let r = store.retention(t).await.expect("read");
    assert_eq!(
        (r["reports"], r["error_events"], r["history"]),
        (30, 180, 0)
    );
    store.set_retention(t, "reports", 7).await.expect("set");
    store
        .set_retention(t, "reports", 9)
        .await
        .expect("set again");
    assert!(store.set_retention(t, "telemetry", 1).await.is_err());
    assert_eq!(store.retention(t).await.expect("read")["reports"], 9);
    assert_eq!(store.retention(other).await.expect("read")["reports"], 30);
    let o = store.retention_overrides().await.expect("overrides");
    assert_eq!(o.len(), 1);

    // 150 reports (the day's first carries its operating values: it waits for its rollup),
    // 150 error events.
    let key = enrolled(&store, t, "prune-1").await;
    let bystander = enrolled(&store, other, "prune-1").await;
    for k in [&key, &bystander] {
        for seq in 1..=150 {
            // The same operating values each time: only the day's first carries them.
            let r = report(
                k,
                seq,
                Trigger::Periodic,
                vec![unit("controller", "C1", "5.2")],
            );
            store.ingest_report(r).await.expect("ingest");
        }
        let events: Vec<NewErrorEvent> = (1..=150)
            .map(|seq| NewErrorEvent {
                seq,
                at_ms: NOW + i64::try_from(seq).expect("small"),
                slot: "fuser".into(),
                code: "F-1".into(),
                severity: "info".into(),
                counters_json: None,
                detail: None,
                alert_json: None,
                dropped: false,
            })
            .collect();
        store
            .store_error_batch(k, 1, "periodic", &events, NOW)
            .await
            .expect("events");
    }
    let keys = store.devices_after(None, 10).await.expect("walk");
    assert_eq!(
        keys,
        vec![key.clone(), bystander.clone()],
        "tenant, then id"
    );
    assert_eq!(
        store.devices_after(Some(&key), 10).await.expect("walk"),
        vec![bystander.clone()]
    );
    let work = |before: i64| fleetcare_store::PruneWork {
        key: key.clone(),
        reports_before: Some(before),
        events_before: Some(before),
    };
    // Everything is older than the cutoff: at most 100 of each go per statement.
    let far = NOW + 1_000_000;
    assert_eq!(
        store
            .prune_devices(&[work(far)], 100, &Default::default())
            .await
            .expect("prune"),
        vec![(100, 100)]
    );
    assert_eq!(
        store
            .prune_devices(&[work(far)], 100, &Default::default())
            .await
            .expect("prune"),
        vec![(48, 50)],
        "the newest report and the one waiting for its rollup stay"
    );
    assert_eq!(
        store
            .prune_devices(&[work(far)], 100, &Default::default())
            .await
            .expect("prune"),
        vec![(0, 0)]
    );
    assert_eq!(store.stored_seqs(&key).await.expect("seqs"), vec![1, 150]);
    assert_eq!(
        store.stored_seqs(&bystander).await.expect("seqs").len(),
        150,
        "another device keeps its own"
    );
    // A kind with no cutoff is kept.
    let none = fleetcare_store::PruneWork {
        key: bystander.clone(),
        reports_before: None,
        events_before: None,
    };
    assert_eq!(
        store
            .prune_devices(&[none], 100, &Default::default())
            .await
            .expect("prune"),
        vec![(0, 0)]
    );
}

/// PostgreSQL drops a passed day's partition of reports and week's of error events, keeping
/// what must outlive them; the embedded store prunes the same rows one by one. Either way the
/// same rows remain, and retries are still recognized afterwards.
async fn old_partitions_go_and_keep_what_must_stay(store: Store) {
    const DAY: i64 = 86_400_000;
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let a = enrolled(&store, t, "part-a").await;
    let b = enrolled(&store, t, "part-b").await;
    // Written before NOW's partitions exist (the test's clock is months behind the real
    // one): PostgreSQL keeps them in the default partition until they are made.
    for seq in 1..=10 {
        store
            .ingest_report(report(
                &a,
                seq,
                Trigger::Periodic,
                vec![unit("controller", "C1", "5.2")],
            ))
            .await
            .expect("ingest");
    }
    for seq in 1..=5 {
        store
            .ingest_report(report(
                &b,
                seq,
                Trigger::Periodic,
                vec![unit("controller", "C2", "5.2")],
            ))
            .await
            .expect("ingest");
    }
    let event = |seq: u64, at_ms: i64| NewErrorEvent {
        seq,
        at_ms,
        slot: "fuser".into(),
        code: "F-1".into(),
        severity: "info".into(),
        counters_json: None,
        detail: None,
        alert_json: None,
        dropped: false,
    };
    // Twenty events, and one a wrong clock dated 100 days ahead.
    let mut events: Vec<NewErrorEvent> = (1..=20).map(|s| event(s, NOW + s as i64)).collect();
    events.push(event(21, NOW + 100 * DAY));
    store
        .store_error_batch(&a, 1, "periodic", &events, NOW)
        .await
        .expect("events");

    let made = store
        .maintain_partitions(NOW, &fleetcare_store::Horizons::default())
        .await
        .expect("make partitions");
    let today = fleetcare_store::partitions::partition_name("reports", NOW - NOW % DAY);
    if store.partitioned() {
        assert!(made.created.contains(&today), "{made:?}");
        assert_eq!(
            made.created
                .iter()
                .filter(|n| n.starts_with("reports_"))
                .count(),
            8
        );
        let parts = store.partitions().await.expect("partitions");
        assert!(
            parts
                .iter()
                .any(|p| p.name == today
                    && p.range == Some((NOW - NOW % DAY, NOW - NOW % DAY + DAY)))
        );
        assert!(
            parts
                .iter()
                .any(|p| p.name == "reports_default" && p.range.is_none())
        );
    } else {
        assert_eq!(made, fleetcare_store::PartitionWork::default());
        assert!(store.partitions().await.expect("partitions").is_empty());
    }

    // Forty days on, B reports again; everything of NOW's day is past 30 days' retention.
    let later = NOW + 40 * DAY;
    let mut r = report(
        &b,
        6,
        Trigger::Periodic,
        vec![unit("controller", "C2", "5.2")],
    );
    r.observed_at_ms = later;
    r.received_at_ms = later;
    store.ingest_report(r.clone()).await.expect("ingest");
    let horizons = fleetcare_store::Horizons {
        reports: Some(later - 30 * DAY),
        error_events: Some(later - 30 * DAY),
    };
    let work = store
        .maintain_partitions(later, &horizons)
        .await
        .expect("drop partitions");
    let pruned = store
        .prune_devices(
            &[a.clone(), b.clone()].map(|key| fleetcare_store::PruneWork {
                key,
                reports_before: Some(later - 30 * DAY),
                events_before: Some(later - 30 * DAY),
            }),
            100,
            &horizons,
        )
        .await
        .expect("prune");
    if store.partitioned() {
        // A's first (operating values awaiting their rollup) and newest stay, and B's first:
        // moved to the default partition; the rest went with the day.
        assert!(
            work.dropped.contains(&("reports", today.clone(), 12, 3)),
            "{work:?}"
        );
        let week = work
            .dropped
            .iter()
            .find(|d| d.0 == "error_events")
            .expect("the week's events dropped");
        assert_eq!((week.2, week.3), (20, 1), "the event dated ahead stays");
        assert_eq!(
            pruned,
            vec![(0, 0), (0, 0)],
            "nothing left for rows one by one"
        );
    } else {
        assert_eq!(work, fleetcare_store::PartitionWork::default());
        assert_eq!(pruned, vec![(8, 20), (4, 0)]);
    }
    assert_eq!(store.stored_seqs(&a).await.expect("seqs"), vec![1, 10]);
    assert_eq!(store.stored_seqs(&b).await.expect("seqs"), vec![1, 6]);
    let left = store.error_events(&a, 0, None, 100).await.expect("events");
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![21]);

    // Retries are still recognized: a report stored before, one kept in the default
    // partition, an event held, and events the watermark covers.
    assert!(store.ingest_report(r).await.expect("again").duplicate);
    assert!(
        store
            .ingest_report(report(
                &a,
                10,
                Trigger::Periodic,
                vec![unit("controller", "C1", "5.2")]
            ))
            .await
            .expect("again")
            .duplicate
    );
    let again = store
        .store_error_batch(&a, 1, "periodic", &events[19..], later)
        .await
        .expect("events again");
    assert_eq!((again.stored, again.acked_seq), (0, 21));
    assert_eq!(
        store
            .error_events(&a, 0, None, 100)
            .await
            .expect("events")
            .len(),
        1
    );
}

/// The audit log gives up only the lines an archive holds, oldest first, and an archive
/// interrupted before its deletions is finished later.
async fn only_archived_audit_lines_leave_the_log(store: Store) {
    let t = store.ensure_tenant("default", NOW).await.expect("tenant");
    let line = |action: &str| fleetcare_store::NewAudit {
        tenant: Some(t),
        actor: Some("ops".into()),
        role: Some("admin".into()),
        action: action.into(),
        method: "POST".into(),
        path: "/api/v1/x".into(),
        status: 200,
        outcome: "ok".into(),
        detail: None,
        source: None,
    };
    for i in 0..10 {
        store
            .append_audit(&line(&format!("old.{i}")), NOW + i)
            .await
            .expect("append");
    }
    store
        .append_audit(&line("new"), NOW + 1_000)
        .await
        .expect("append");
    // The oldest run before the date, page by page.
    let first = store.audit_to_archive(0, NOW + 500, 4).await.expect("page");
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].0, Some(t));
    let rest = store
        .audit_to_archive(first[3].1.id, NOW + 500, 100)
        .await
        .expect("page");
    assert_eq!(rest.len(), 6, "stops at the first line after the date");
    let through = rest[5].1.id;
    // Nothing archived: the log refuses to lose a line.
    assert_eq!(store.delete_archived_audit().await.expect("delete"), 0);
    let deleted = store
        .archive_audit(&fleetcare_store::AuditArchive {
            through_id: through,
            lines: 10,
            sha256: "ab".repeat(32),
            name: "audit-1.jsonl".into(),
            at_ms: NOW + 2_000,
        })
        .await
        .expect("archive");
    assert_eq!(deleted, 10);
    let left = store.audit(t, 0, 100).await.expect("audit");
    assert_eq!(
        left.iter().map(|l| l.action.as_str()).collect::<Vec<_>>(),
        vec!["new"]
    );
    assert_eq!(
        store.audit_archives().await.expect("archives")[0].through_id,
        through
    );
    assert!(
        store
            .audit_to_archive(0, NOW + 500, 10)
            .await
            .expect("page")
            .is_empty()
    );
    assert_eq!(store.delete_archived_audit().await.expect("again"), 0);
}
