//! The authorization matrix, generated from the one table the code enforces: every role ×
//! every operator endpoint × its own tenant's thing / another tenant's thing, and callers
//! without a token. A denial is 401 or 403, changes nothing in the store and is in the audit
//! log; another tenant's device or rollout is "not found" to a role that may act on its own.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Fixture, NOW, call, enroll, fixture, json_body};
use fleetcare_server::access::authz::{self, ROLES, Role};
use serde_json::{Value, json};

/// A token of `role` in the fixture's tenant, made through the API.
async fn token(f: &Fixture, role: Role) -> String {
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        json_body(&json!({"name": format!("{}-person", role.as_str()), "role": role.as_str()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["token"].as_str().expect("token").to_owned()
}

async fn digest(f: &Fixture) -> String {
    f.store
        .content_digest()
        .await
        .expect("digest")
        .expect("the embedded store")
}

/// The newest audit line of the fixture's tenant.
async fn newest_audit(f: &Fixture) -> Value {
    let (s, v) = call(&f.app, "GET", "/api/v1/audit?limit=1", Some(&f.admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["entries"][0].clone()
}

/// The route with its parameters filled for a target: the own tenant's things, or another's.
fn fill(path: &str, own: bool, own_rollout: u64, other_rollout: u64) -> Option<String> {
    let device = if own { "MX-OWN" } else { "MX-OTHER" };
    let rollout = if own { own_rollout } else { other_rollout };
    let out = if path.starts_with("/api/v1/devices/{id}") {
        path.replace("{id}", device)
    } else if path.starts_with("/api/v1/rollouts/{id}") {
        path.replace("{id}", &rollout.to_string())
    } else if !own {
        // Only devices and rollouts have another tenant's counterpart here.
        return None;
    } else {
        path.replace("{id}", "424242")
            .replace("{sha256}", &"0".repeat(64))
            .replace("{name}", "site-a")
    };
    Some(out)
}

#[tokio::test]
async fn every_role_every_endpoint_own_and_other_tenant() {
    let f = fixture().await;
    enroll(&f, "MX-OWN").await;
    // Another tenant on the same center, with a device and a rollout of its own.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = fleetcare_server::bootstrap::run(&f.store, other_dir.path(), "other", NOW)
        .await
        .expect("second tenant");
    assert_ne!(other.tenant, f.tenant);
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(
            &json!({"enrollment_key": other.enrollment_key, "device_id": "MX-OTHER",
            "model": "acme-mfp-9000"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rollout = |token: String| {
        let app = f.app.clone();
        async move {
            let (s, v) = call(
                &app,
                "POST",
                "/api/v1/rollouts",
                Some(&token),
                json_body(&json!({"name": "r", "filter": "", "waves": "100%"})),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["id"].as_u64().expect("id")
        }
    };
    let other_rollout = rollout(other.admin_token.clone()).await;
    let own_rollout = rollout(f.admin.clone()).await;

    let mut tokens = Vec::new();
    for &role in ROLES {
        tokens.push((Some(role), token(&f, role).await));
    }
    let mut cells = 0;
    for rule in authz::TABLE {
        for own in [true, false] {
            let Some(uri) = fill(rule.path, own, own_rollout, other_rollout) else {
                continue;
            };
            let body = (rule.method != "GET")
                .then(|| json_body(&json!({})))
                .flatten();
            // Without a token: 401, nothing changed.
            let before = digest(&f).await;
            let (s, v) = call(&f.app, rule.method, &uri, None, body).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{} {uri} without a token: {v}",
                rule.method
            );
            assert_eq!(
                digest(&f).await,
                before,
                "{} {uri} without a token changed the store",
                rule.method
            );
            cells += 1;
            for (role, tok) in &tokens {
                let role = role.expect("a role");
                let body = (rule.method != "GET")
                    .then(|| json_body(&json!({})))
                    .flatten();
                let before = digest(&f).await;
                let (s, v) = call(&f.app, rule.method, &uri, Some(tok), body).await;
                let cell = format!("{} {uri} as {}", rule.method, role.as_str());
                cells += 1;
                if !rule.roles.contains(&role) {
                    assert_eq!(s, StatusCode::FORBIDDEN, "{cell}: {v}");
                    assert_eq!(
                        digest(&f).await,
                        before,
                        "{cell}: a denial changed the store"
                    );
                    let a = newest_audit(&f).await;
                    assert_eq!(a["outcome"], "denied", "{cell}: {a}");
                    assert_eq!(a["action"], rule.action, "{cell}: {a}");
                    assert_eq!(a["path"], uri, "{cell}: {a}");
                    assert_eq!(
                        a["actor"],
                        format!("{}-person", role.as_str()),
                        "{cell}: {a}"
                    );
                    continue;
                }
                assert_ne!(s, StatusCode::UNAUTHORIZED, "{cell}: {v}");
                assert_ne!(s, StatusCode::FORBIDDEN, "{cell}: {v}");
                if !own {
                    // Another tenant's thing does not exist for this caller.
                    assert!(
                        s == StatusCode::NOT_FOUND || s == StatusCode::BAD_REQUEST,
                        "{cell}: another tenant's thing answered {s}: {v}"
                    );
                    assert_eq!(
                        digest(&f).await,
                        before,
                        "{cell}: changed another tenant's thing"
                    );
                }
                if rule.method != "GET" {
                    let a = newest_audit(&f).await;
                    assert_eq!(a["action"], rule.action, "{cell}: {a}");
                    assert_eq!(a["status"], s.as_u16(), "{cell}: {a}");
                    let outcome = if s.is_success() { "ok" } else { "failed" };
                    assert_eq!(a["outcome"], outcome, "{cell}: {a}");
                }
            }
        }
    }
    assert!(cells > 400, "the matrix has {cells} cells");
    // Lists hold only the caller's own tenant.
    let (s, v) = call(&f.app, "GET", "/api/v1/devices", Some(&f.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["MX-OWN"], "{v}");
    let (_, v) = call(&f.app, "GET", "/api/v1/rollouts", Some(&f.admin), None).await;
    let ids: Vec<u64> = v["rollouts"]
        .as_array()
        .expect("rollouts")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![own_rollout], "{v}");
    // The other tenant's auditor does not read this tenant's audit log.
    let (_, v) = call(
        &f.app,
        "GET",
        "/api/v1/audit",
        Some(&other.admin_token),
        None,
    )
    .await;
    assert!(
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["path"] != "/api/v1/tokens"),
        "{v}"
    );
}

/// The table and the API's description name the same endpoints.
#[tokio::test]
async fn the_table_covers_every_operator_endpoint() {
    let f = fixture().await;
    let (s, doc) = call(&f.app, "GET", "/api/v1/openapi.json", Some(&f.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("methods").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = authz::TABLE
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    for (method, path) in authz::PUBLIC {
        let public = ((*method).to_owned(), (*path).to_owned());
        assert!(
            !table.contains(&public),
            "{method} {path} is public and has a rule"
        );
        assert!(
            documented.remove(&public),
            "the public {method} {path} is not documented"
        );
    }
    let missing: Vec<_> = documented.difference(&table).collect();
    assert!(missing.is_empty(), "endpoints without a rule: {missing:?}");
    let undocumented: Vec<_> = table.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "rules for no documented endpoint: {undocumented:?}"
    );
    let unique: BTreeSet<_> = authz::TABLE.iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(unique.len(), authz::TABLE.len(), "a route has two rules");
}

/// A token is shown once, stored hashed, and refused on the next request once revoked.
#[tokio::test]
async fn tokens_are_shown_once_and_revoked_at_once() {
    let f = fixture().await;
    let (s, created) = call(
        &f.app,
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        json_body(&json!({"name": "vera", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let tok = created["token"].as_str().expect("token").to_owned();
    let id = created["info"]["id"].as_str().expect("id").to_owned();
    let (s, me) = call(&f.app, "GET", "/api/v1/whoami", Some(&tok), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("vera"), Some("viewer"))
    );
    assert!(
        !me["may"]
            .as_array()
            .expect("may")
            .contains(&json!("rollout.pause"))
    );
    // The list never holds the secret.
    let (_, list) = call(&f.app, "GET", "/api/v1/tokens", Some(&f.admin), None).await;
    assert!(!list.to_string().contains(&tok), "{list}");
    assert!(list.to_string().contains(&id));
    // Bad input: refused, nothing made.
    let before = digest(&f).await;
    for bad in [
        json!({"name": "x", "role": "root"}),
        json!({"name": "", "role": "viewer"}),
        json!({"name": "x\u{7}", "role": "viewer"}),
        json!({"name": "x", "role": "viewer", "extra": 1}),
    ] {
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/v1/tokens",
            Some(&f.admin),
            json_body(&bad),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    assert_eq!(digest(&f).await, before);
    let (s, v) = call(
        &f.app,
        "POST",
        &format!("/api/v1/tokens/{id}/revoke"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string());
    let (s, _) = call(&f.app, "GET", "/api/v1/whoami", Some(&tok), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &f.app,
        "POST",
        &format!("/api/v1/tokens/{id}/revoke"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "revoked twice");
    // Both are in the audit log, with who did them.
    let (_, log) = call(&f.app, "GET", "/api/v1/audit?limit=3", Some(&f.admin), None).await;
    let e = &log["entries"];
    assert_eq!(e[0]["action"], "token.revoke");
    assert_eq!(e[0]["outcome"], "failed");
    assert_eq!(e[1]["action"], "token.revoke");
    assert_eq!(e[1]["outcome"], "ok");
    assert_eq!(e[1]["actor"], "admin");
}

/// The audit log cannot be changed or emptied, even by SQL: only lines an archive holds go.
#[tokio::test]
async fn the_audit_log_is_append_only() {
    let f = fixture().await;
    call(
        &f.app,
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        json_body(&json!({})),
    )
    .await;
    let path = f.dir.path().join(fleetcare_store::sqlite::DB_FILE);
    let c = rusqlite::Connection::open(&path).expect("open");
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .expect("count");
    assert!(n >= 1);
    for sql in [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
    ] {
        let e = c.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let after: i64 = c
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .expect("count");
    assert_eq!(after, n);
    // Lines an archive holds may go; the others still may not.
    let first: i64 = c
        .query_row("SELECT MIN(id) FROM audit_log", [], |r| r.get(0))
        .expect("first");
    c.execute(
        "INSERT INTO audit_archives (through_id, lines, sha256, name, at) \
         VALUES (?1, 1, 'x', 'a.jsonl', 0)",
        [first],
    )
    .expect("archive recorded");
    c.execute(
        "INSERT INTO audit_log (tenant_id, at, action, method, path, status, outcome) \
         VALUES (NULL, 1, 'later', 'GET', '/', 200, 'ok')",
        [],
    )
    .expect("appending is allowed");
    let e = c
        .execute("DELETE FROM audit_log", [])
        .expect_err("lines past the archive");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(
        c.execute("DELETE FROM audit_log WHERE id <= ?1", [first])
            .expect("the archived line goes"),
        1
    );
}
