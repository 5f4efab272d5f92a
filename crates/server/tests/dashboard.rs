//! The dashboard's pages over the router: the login form, redirects, security headers, roles
//! (a viewer gets no action and no audit log), the device search, bad input, and the live
//! stream's change notices. The browser tests are in `crates/fleetcare/tests/dashboard.rs`.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Fixture, call, enroll, fixture, json_body, send};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// An HTML answer: status, headers, body text.
struct Page {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    csp: Option<String>,
    body: String,
}

async fn page(
    f: &Fixture,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Page {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "center:8470");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    if form.is_some() {
        req = req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "http://center:8470");
    }
    let body = form
        .map(|f| Body::from(f.to_owned()))
        .unwrap_or_else(Body::empty);
    let resp = f
        .app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let h = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, location, cookie, csp) = (
        resp.status(),
        h(header::LOCATION),
        h(header::SET_COOKIE),
        h(header::CONTENT_SECURITY_POLICY),
    );
    let bytes = axum::body::to_bytes(resp.into_body(), 4 * 1024 * 1024)
        .await
        .expect("body");
    Page {
        status,
        location,
        cookie,
        csp,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn account(f: &Fixture, name: &str, role: &str) {
    let bearer = format!("Bearer {}", f.admin);
    let a = send(
        &f.app,
        "POST",
        "/api/v1/accounts",
        &[("authorization", bearer.as_str())],
        Some(
            json!({"name": name, "role": role, "password": format!("{name} has a long password")}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// Log in through the form; the session cookie (`name=value`).
async fn log_in(f: &Fixture, name: &str) -> String {
    let form = format!("name={name}&password={name}+has+a+long+password&next=%2Fui%2Fdevices");
    let p = page(f, "POST", "/ui/login", None, Some(&form)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/ui/devices"));
    let cookie = p.cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().expect("name=value").to_owned()
}

fn report(id: &str, model: &str, version: &str) -> Value {
    json!({
        "device_id": id, "model": model, "seq": 1, "trigger": "connect",
        "observed_at_ms": common::NOW,
        "units": [
            {"slot": "controller", "kind": "controller", "model": "ctl-x2", "serial": format!("C-{id}"), "hw_revision": "B",
             "software": [{"product": "ctl-firmware", "maker": "acme", "version": version}]},
            {"slot": "fuser", "kind": "fuser", "model": "fus-7", "serial": format!("F-{id}")}
        ],
        "operating": {"pages_total": 4321},
        "supplies": [{"slot": "toner.black", "kind": "toner", "level_pct": 12.5, "state": "ok",
                      "part_number": "TN-45K", "serial": format!("K-{id}")}]
    })
}

async fn reported(f: &Fixture, id: &str, model: &str, version: &str) {
    let token = enroll(f, id).await;
    let (status, ack) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report(id, model, version)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
}

#[tokio::test]
async fn pages_need_a_session_and_the_login_form_gives_one() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;

    let p = page(&f, "GET", "/ui/devices?q=x", None, None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.location.as_deref(),
        Some("/ui/login?next=/ui/devices%3Fq%3Dx")
    );
    let p = page(&f, "GET", "/", None, None).await;
    assert_eq!(p.location.as_deref(), Some("/ui/"));
    let p = page(&f, "GET", "/ui/login?next=/ui/devices", None, None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains(r#"<label for="password">"#),
        "labelled fields"
    );
    assert!(p.body.contains(r#"value="/ui/devices""#));

    // A wrong password: the form again, with the problem; audited; no cookie.
    let p = page(
        &f,
        "POST",
        "/ui/login",
        None,
        Some("name=ada&password=wrong+password+here"),
    )
    .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(
        p.body.contains("Wrong organization, name or password."),
        "{}",
        p.body
    );
    assert!(p.cookie.is_none());
    let line = f
        .store
        .newest_audit_line()
        .await
        .expect("audit")
        .expect("a line");
    assert_eq!(
        (
            line.action.as_str(),
            line.outcome.as_str(),
            line.path.as_str()
        ),
        ("session.login", "denied", "/ui/login")
    );
    // From another site: refused, no session.
    let mut req = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header(header::HOST, "center:8470")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    req = req.header("sec-fetch-site", "cross-site");
    let resp = f
        .app
        .clone()
        .oneshot(
            req.body(Body::from("name=ada&password=ada+has+a+long+password"))
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    // A form that is not one: a clear answer.
    let p = page(&f, "POST", "/ui/login", None, Some("name=ada&extra=1")).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    // A next that leads elsewhere is ignored.
    let p = page(
        &f,
        "POST",
        "/ui/login",
        None,
        Some("name=ada&password=ada+has+a+long+password&next=https%3A%2F%2Fevil.example%2F"),
    )
    .await;
    assert_eq!(p.location.as_deref(), Some("/ui/"));

    let cookie = log_in(&f, "ada").await;
    for uri in [
        "/ui/",
        "/ui/devices",
        "/ui/catalog",
        "/ui/troubles",
        "/ui/rollouts",
        "/ui/audit",
        "/ui/notify",
    ] {
        let p = page(&f, "GET", uri, Some(&cookie), None).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.body);
        let csp = p.csp.expect("a policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!p.body.contains("<script>"), "{uri}: no inline script");
        assert!(!p.body.contains(" style="), "{uri}: no inline style");
        assert!(
            p.body.contains("/ui/assets/htmx-2.0.11.min.js"),
            "{uri}: the vendored htmx"
        );
    }
    let asset = page(&f, "GET", "/ui/assets/htmx-2.0.11.min.js", None, None).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(asset.body.len() > 40_000);
    assert_eq!(
        page(&f, "GET", "/ui/assets/..%2Fsecret", None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Logging out ends the session at once.
    let mut req = Request::builder()
        .method("POST")
        .uri("/ui/logout")
        .header(header::HOST, "center:8470")
        .header(header::ORIGIN, "http://center:8470")
        .header(header::COOKIE, &cookie);
    req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let resp = f
        .app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let p = page(&f, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "the session is over");
}

#[tokio::test]
async fn a_viewer_sees_no_action_and_no_audit_log() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    account(&f, "vic", "viewer").await;
    reported(&f, "DEV-1", "acme-mfp-9000", "5.2.1").await;
    let admin = log_in(&f, "ada").await;
    let viewer = log_in(&f, "vic").await;

    let a = page(&f, "GET", "/ui/devices/DEV-1", Some(&admin), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body
            .contains(r#"hx-post="/api/v1/devices/DEV-1/request-report""#)
    );
    assert!(
        a.body.contains("C-DEV-1") && a.body.contains("ctl-firmware 5.2.1"),
        "units and software"
    );
    assert!(a.body.contains("Audit log"));
    assert!(
        a.body.contains(r#"<table id="meters">"#)
            && a.body
                .contains("pages_total per day, last 30 days: from 4321 to 4321"),
        "the meters with their chart: {}",
        a.body
    );
    assert!(
        a.body.contains(r#"<table id="supplies">"#)
            && a.body.contains("TN-45K")
            && a.body.contains(r#"<span class="badge ok">ok</span>"#),
        "the supplies: {}",
        a.body
    );
    let v = page(&f, "GET", "/ui/devices/DEV-1", Some(&viewer), None).await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.body.contains("C-DEV-1"));
    assert!(!v.body.contains("hx-post"), "no action for a viewer");
    assert!(!v.body.contains("Audit log"));
    let p = page(&f, "GET", "/ui/audit", Some(&viewer), None).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("may not read the audit log"));
    // What the button would post is indeed refused to the viewer.
    let v = send(
        &f.app,
        "POST",
        "/api/v1/devices/DEV-1/request-report",
        &[
            ("cookie", viewer.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        None,
    )
    .await;
    assert_eq!(v.status, StatusCode::FORBIDDEN);

    // Another tenant's device, or none: not found, in words.
    let p = page(&f, "GET", "/ui/devices/NOPE-1", Some(&admin), None).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("Not found"));
    let p = page(&f, "GET", "/ui/troubles/99", Some(&admin), None).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_device_search_combines_its_fields_and_refuses_bad_input() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    reported(&f, "ACME-1", "acme-mfp-9000", "5.2.1").await;
    reported(&f, "ACME-2", "acme-mfp-9000", "5.3.0").await;
    reported(&f, "BOLT-1", "bolt-copier-c30", "5.3.0").await;
    let c = log_in(&f, "ada").await;
    let found = |body: &str| -> Vec<String> {
        ["ACME-1", "ACME-2", "BOLT-1"]
            .into_iter()
            .filter(|id| body.contains(&format!(r#"href="/ui/devices/{id}""#)))
            .map(str::to_owned)
            .collect()
    };
    for (query, expect) in [
        ("", vec!["ACME-1", "ACME-2", "BOLT-1"]),
        ("?model=acme-mfp-9000", vec!["ACME-1", "ACME-2"]),
        ("?q=bolt", vec!["BOLT-1"]),
        ("?version=5.3.0", vec!["ACME-2", "BOLT-1"]),
        ("?version=ctl-firmware+5.2.1", vec!["ACME-1"]),
        ("?version=other-product+5.2.1", vec![]),
        (
            "?filter=software.ctl-firmware+%3E%3D+%225.3%22&model=acme-mfp-9000",
            vec!["ACME-2"],
        ),
        ("?trouble=any", vec![]),
        ("?finding=device_unit", vec![]),
        ("?online=no", vec!["ACME-1", "ACME-2", "BOLT-1"]),
        ("?online=yes", vec![]),
        ("?after=ACME-1", vec!["ACME-2", "BOLT-1"]),
        ("?model=acme-mfp-9000&after=ACME-2", vec![]),
    ] {
        let p = page(&f, "GET", &format!("/ui/devices{query}"), Some(&c), None).await;
        assert_eq!(p.status, StatusCode::OK, "{query}: {}", p.body);
        assert_eq!(found(&p.body), expect, "{query}");
    }
    // A filter that is not one: said, and nothing found.
    let p = page(&f, "GET", "/ui/devices?filter=model+%3D", Some(&c), None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains(r#"id="search-problem""#) && p.body.contains("The rollout filter"),
        "{}",
        p.body
    );
    assert!(found(&p.body).is_empty());
    // An unknown parameter, or a model that would break out of its quotes: refused or literal.
    let p = page(&f, "GET", "/ui/devices?sort=id", Some(&c), None).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let p = page(
        &f,
        "GET",
        "/ui/devices?model=x%22+or+id+~+%22*",
        Some(&c),
        None,
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        found(&p.body).is_empty(),
        "the model is a value, never filter text"
    );
}

#[tokio::test]
async fn the_live_stream_names_what_changed() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    let c = log_in(&f, "ada").await;
    let resp = f
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/ui/events")
                .header(header::HOST, "center:8470")
                .header(header::COOKIE, &c)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut stream = resp.into_body().into_data_stream();
    // Without a session there is no stream.
    let (status, _) = call(&f.app, "GET", "/ui/events", None, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    reported(&f, "DEV-7", "acme-mfp-9000", "5.2.1").await;
    let mut seen = String::new();
    let got = tokio::time::timeout(
        Duration::from_secs(10) * fleetcare_testkit::patience_factor(),
        async {
            while let Some(Ok(chunk)) = stream.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("event: device-DEV-7") && seen.contains("event: fleet") {
                    return true;
                }
            }
            false
        },
    )
    .await;
    assert_eq!(
        got,
        Ok(true),
        "the device's and the fleet's events: {seen:?}"
    );
    // Another tenant's changes are not this stream's.
    let other = f
        .store
        .ensure_tenant("other", common::NOW)
        .await
        .expect("tenant");
    f.state.events.device(other, "SECRET-1");
    f.state.events.device(f.tenant, "DEV-8");
    let got = tokio::time::timeout(
        Duration::from_secs(10) * fleetcare_testkit::patience_factor(),
        async {
            while let Some(Ok(chunk)) = stream.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("device-DEV-8") {
                    break;
                }
            }
            seen.clone()
        },
    )
    .await
    .expect("the next notice");
    assert!(!got.contains("SECRET-1"), "{got}");
}

#[tokio::test]
async fn a_provider_looks_into_a_customer() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    let bearer = format!("Bearer {}", f.admin);
    let made = send(
        &f.app,
        "POST",
        "/api/v1/customers",
        &[("authorization", bearer.as_str())],
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let key = made.body["enrollment_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&json!({"enrollment_key": key, "device_id": "ACME-9", "model": "acme-mfp-9000"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["device_token"].as_str().expect("token").to_owned();
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report("ACME-9", "acme-mfp-9000", "5.2.1")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let session = log_in(&f, "ada").await;

    // Its own fleet holds no such device; the header offers the customer.
    let p = page(&f, "GET", "/ui/devices", Some(&session), None).await;
    assert!(!p.body.contains("ACME-9"));
    assert!(
        p.body
            .contains(r#"<label for="scope">Organization</label>"#)
            && p.body.contains("<option>acme</option>")
    );
    // Not a customer of this provider: refused.
    let p = page(
        &f,
        "POST",
        "/ui/scope",
        Some(&session),
        Some("customer=globex"),
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let p = page(
        &f,
        "POST",
        "/ui/scope",
        Some(&session),
        Some("customer=acme"),
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let scope = p.cookie.expect("the scope cookie");
    assert!(
        scope.contains("HttpOnly") && scope.contains("SameSite=Strict"),
        "{scope}"
    );
    let cookies = format!(
        "{session}; {}",
        scope.split(';').next().expect("name=value")
    );

    let p = page(&f, "GET", "/ui/devices", Some(&cookies), None).await;
    assert!(
        p.body.contains(r#"href="/ui/devices/ACME-9""#),
        "the customer's device"
    );
    assert!(p.body.contains("ada (provider)"));
    let p = page(&f, "GET", "/ui/devices/ACME-9", Some(&cookies), None).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body
            .contains(r#"hx-headers='{"Fleetcare-Tenant": "acme"}'"#),
        "the page's actions act within the customer"
    );
    // What a button posts, with the session and that header, acts within the customer: the
    // device is found (and is not connected).
    let a = send(
        &f.app,
        "POST",
        "/api/v1/devices/ACME-9/request-report",
        &[
            ("cookie", session.as_str()),
            ("sec-fetch-site", "same-origin"),
            ("fleetcare-tenant", "acme"),
        ],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    // A scope cookie naming no customer of this provider is ignored.
    let forged = format!("{session}; fleetcare_scope=globex");
    let p = page(&f, "GET", "/ui/devices", Some(&forged), None).await;
    assert!(!p.body.contains("ACME-9") && !p.body.contains("(provider)"));
}

/// The reporting interval the device page shows: the center's when it set one, else the
/// agent's own as its last two periodic reports show it.
#[tokio::test]
async fn the_device_page_says_how_often_the_agent_reports() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    let token = enroll(&f, "INT-1").await;
    let admin = log_in(&f, "ada").await;
    for (seq, at) in [(1, 0), (2, 300_000), (3, 600_000)] {
        let mut r = report("INT-1", "acme-mfp-9000", "5.2.1");
        r["seq"] = json!(seq);
        r["trigger"] = json!(if seq == 1 { "connect" } else { "periodic" });
        r["observed_at_ms"] = json!(common::NOW + at);
        let (s, ack) = call(
            &f.app,
            "POST",
            "/device/v1/reports",
            Some(&token),
            json_body(&r),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{ack}");
        if seq == 2 {
            let body = device_body(&f, &admin).await;
            assert!(
                body.contains("(two periodic reports show it)"),
                "one periodic report does not show an interval: {body}"
            );
        }
    }
    let body = device_body(&f, &admin).await;
    assert!(
        body.contains("every 5 minutes (between its last two periodic reports)"),
        "{body}"
    );
}

async fn device_body(f: &Fixture, cookie: &str) -> String {
    let p = page(f, "GET", "/ui/devices/INT-1", Some(cookie), None).await;
    assert_eq!(p.status, StatusCode::OK);
    p.body
}

#[tokio::test]
async fn the_running_out_page_lists_low_supplies_and_exports_a_months_meter_reads() {
    let f = fixture().await;
    account(&f, "ada", "admin").await;
    let admin = log_in(&f, "ada").await;
    let token = enroll(&f, "OUT-1").await;
    let mut r = report("OUT-1", "acme-mfp-9000", "5.2.1");
    r["supplies"][0]["level_pct"] = json!(4.0);
    r["supplies"][0]["state"] = json!("low");
    let (s, ack) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&r),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ack}");
    let body = fleetcare_testkit::eventually(
        "the low toner is listed",
        std::time::Duration::from_secs(10),
        || async {
            let p = page(&f, "GET", "/ui/supplies", Some(&admin), None).await;
            (p.status == StatusCode::OK && p.body.contains("OUT-1")).then_some(p.body)
        },
    )
    .await;
    assert!(body.contains("TN-45K") && body.contains("4 %"), "{body}");
    assert!(body.contains("/ui/meter-reads.csv"), "{body}");
    // The month the report fell in, as CSV: one row for its total.
    let (y, m) = fleetcare_core::meters::civil_month(common::NOW);
    let csv = page(
        &f,
        "GET",
        &format!("/ui/meter-reads.csv?period={y:04}-{m:02}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], fleetcare_wire::life::READ_CSV_HEADER);
    assert!(
        lines[1].starts_with("OUT-1,acme-mfp-9000,,total,") && lines[1].contains(",4321,"),
        "{}",
        csv.body
    );
    let bad = page(
        &f,
        "GET",
        "/ui/meter-reads.csv?period=13",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}
