//! Dashboard login: accounts with argon2id password hashes, a session cookie that is
//! `HttpOnly` and `SameSite=Strict` (and `Secure` over HTTPS), sessions that end on logout,
//! on expiry and when the account is disabled, cookie-borne changes refused from other
//! sites, and every login audited.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{fixture, send};
use serde_json::json;

#[tokio::test]
async fn accounts_log_in_with_secure_session_cookies() {
    let f = fixture().await;
    let app = &f.app;
    let bearer = format!("Bearer {}", f.admin);
    let admin = [("authorization", bearer.as_str())];

    // Accounts: a weak password is refused; the hash stored is argon2id, never the password.
    let a = send(
        app,
        "POST",
        "/api/v1/accounts",
        &admin,
        Some(json!({"name": "olga", "role": "operator", "password": "short"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let a = send(
        app,
        "POST",
        "/api/v1/accounts",
        &admin,
        Some(json!({"name": "olga", "role": "operator", "password": "a long enough passphrase"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = send(
        app,
        "POST",
        "/api/v1/accounts",
        &admin,
        Some(json!({"name": "olga", "role": "viewer", "password": "another long passphrase"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let stored = f
        .store
        .account(f.tenant, "olga")
        .await
        .expect("account")
        .expect("stored");
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "{}",
        stored.password_hash
    );
    assert!(!stored.password_hash.contains("passphrase"));

    // A wrong password: 401, audited, no cookie. A missing account answers the same.
    for (name, password) in [
        ("olga", "not her passphrase"),
        ("nobody", "a long enough passphrase"),
    ] {
        let a = send(
            app,
            "POST",
            "/api/v1/login",
            &[],
            Some(json!({"name": name, "password": password})),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert!(a.cookie.is_none());
        assert_eq!(a.body["error"], "wrong tenant, name or password");
    }
    let newest = f
        .store
        .newest_audit_line()
        .await
        .expect("audit")
        .expect("line");
    assert_eq!(
        (newest.action.as_str(), newest.outcome.as_str()),
        ("session.login", "denied")
    );

    // The right one: a session cookie, HttpOnly and SameSite=Strict (not Secure over plain HTTP).
    let a = send(
        app,
        "POST",
        "/api/v1/login",
        &[],
        Some(json!({"name": "olga", "password": "a long enough passphrase"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["role"], "operator");
    let set = a.cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let session = set.split(';').next().expect("pair").to_owned();
    let cookie = [("cookie", session.as_str())];

    // The cookie reads; a change needs the center's own origin; the role still decides.
    assert_eq!(
        send(app, "GET", "/api/v1/devices", &cookie, None)
            .await
            .status,
        StatusCode::OK
    );
    let labels = json!({"site": "berlin", "tags": []});
    common::enroll(&f, "DEV-1").await;
    let a = send(
        app,
        "PUT",
        "/api/v1/devices/DEV-1/labels",
        &cookie,
        Some(labels.clone()),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "no Origin: refused {}",
        a.body
    );
    let a = send(
        app,
        "PUT",
        "/api/v1/devices/DEV-1/labels",
        &[cookie[0], ("origin", "https://evil.example")],
        Some(labels.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "another site: refused");
    let own = [cookie[0], ("origin", "http://center:8470")];
    let a = send(
        app,
        "PUT",
        "/api/v1/devices/DEV-1/labels",
        &own,
        Some(labels),
    )
    .await;
    assert!(a.status.is_success(), "{} {}", a.status, a.body);
    let a = send(
        app,
        "POST",
        "/api/v1/tokens",
        &own,
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "an operator is no admin, by cookie or token"
    );

    // Logout ends it; a second login, then disabling the account, ends that one too.
    let a = send(app, "POST", "/api/v1/logout", &own, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.cookie.is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(
        send(app, "GET", "/api/v1/devices", &cookie, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let login = |when: &'static str| async move {
        let a = send(
            app,
            "POST",
            "/api/v1/login",
            &[],
            Some(json!({"name": "olga", "password": "a long enough passphrase"})),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{when}: {}", a.body);
        a.cookie
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned()
    };
    let second = login("again").await;
    let a = send(app, "POST", "/api/v1/accounts/olga/disable", &admin, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        send(app, "GET", "/api/v1/devices", &[("cookie", &second)], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let a = send(
        app,
        "POST",
        "/api/v1/login",
        &[],
        Some(json!({"name": "olga", "password": "a long enough passphrase"})),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "a disabled account cannot log in"
    );

    // Sessions expire after 12 hours.
    let a = send(
        app,
        "POST",
        "/api/v1/accounts",
        &admin,
        Some(json!({"name": "vera", "role": "viewer", "password": "vera's long passphrase"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        app,
        "POST",
        "/api/v1/login",
        &[],
        Some(json!({"name": "vera", "password": "vera's long passphrase", "tenant": "default"})),
    )
    .await;
    let vera = a
        .cookie
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    f.clock.advance(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(
        send(app, "GET", "/api/v1/devices", &[("cookie", &vera)], None)
            .await
            .status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(
        send(app, "GET", "/api/v1/devices", &[("cookie", &vera)], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Sessions are not tokens: the token list shows none of them.
    let a = send(app, "GET", "/api/v1/tokens", &admin, None).await;
    assert!(
        a.body["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .all(|t| t["name"] == "admin"),
        "{}",
        a.body
    );
}
