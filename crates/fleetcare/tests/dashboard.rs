//! The dashboard in a real browser: `fleetcare demo`, and Debian's Chromium driven through
//! chromedriver (WebDriver) at 1366×768. Logs in with the keyboard, finds a device, sees its
//! units, requests a report and sees it arrive (live, without reloading), pauses a rollout;
//! a viewer sees no action; every page has labels, enough contrast and no sideways
//! scrolling. Screenshots are kept in `target/dashboard-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{PATIENCE, fleetcare};
use fantoccini::{Client, ClientBuilder, Locator};
use fleetcare_testkit::eventually;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const WIDTH: u32 = 1440;
const HEIGHT: u32 = 900;
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

fn installed(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("write screenshot");
}

/// The text of the first element `css` selects, once `ok` holds for it.
async fn text_when(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    eventually(what, PATIENCE, || {
        let c = c.clone();
        let ok = &ok;
        async move {
            let t = c.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
            ok(&t).then_some(t)
        }
    })
    .await
}

/// The id of the element that has the keyboard's focus.
async fn focused(c: &Client) -> Option<String> {
    let el = c.active_element().await.expect("focus");
    el.attr("id").await.expect("id")
}

/// Keys to the element that has the focus.
async fn press(c: &Client, keys: &str) {
    let el = c.active_element().await.expect("focus");
    el.send_keys(keys).await.expect("keys");
}

async fn present(c: &Client, css: &str) -> bool {
    c.find_all(Locator::Css(css))
        .await
        .is_ok_and(|v| !v.is_empty())
}

/// Finds and clicks the element `at` names, again when a live update re-rendered it between
/// the two (a stale element).
async fn click(c: &Client, at: Locator<'_>, what: &str) {
    eventually(what, PATIENCE, || {
        let c = c.clone();
        async move { c.find(at).await.ok()?.click().await.ok() }
    })
    .await;
}

async fn wait_url(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    eventually(what, PATIENCE, || {
        let c = c.clone();
        let ok = &ok;
        async move {
            let u = c.current_url().await.ok()?.to_string();
            ok(&u).then_some(u)
        }
    })
    .await
}

/// Basic accessibility and layout checks, in the page: every form control is labelled, every
/// button and link names itself, every chart has a title, text contrast meets WCAG AA
/// (4.5:1, 3:1 for large text), the page has a language and one `h1`, and nothing makes the
/// page scroll sideways. The problems found.
const CHECKS: &str = r#"
const problems = [];
const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none' && r.right > 0 && r.bottom > 0; };
const name = (el) => (el.getAttribute('aria-label') || '').trim() || (el.getAttribute('aria-labelledby') ? 'labelledby' : '') ||
  (el.id && document.querySelector('label[for="' + el.id + '"]') ? 'label' : '') || (el.closest('label') ? 'label' : '');
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  if (!name(el)) problems.push('unlabelled ' + el.tagName + ' ' + (el.name || el.id));
}
for (const el of document.querySelectorAll('button, a[href]')) {
  if (visible(el) && !(el.textContent.trim() || el.getAttribute('aria-label'))) problems.push('nameless ' + el.tagName + ' ' + el.outerHTML.slice(0, 80));
}
for (const el of document.querySelectorAll('svg')) {
  if (!el.querySelector('title') && el.getAttribute('aria-hidden') !== 'true') problems.push('svg without a title');
}
if (!document.documentElement.lang) problems.push('no lang');
if (document.querySelectorAll('h1').length !== 1) problems.push(document.querySelectorAll('h1').length + ' h1');
const rgb = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
const background = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!n.textContent.trim() || !el || seen.has(el) || el.closest('svg, option, script, style') || !visible(el)) continue;
  seen.add(el);
  const s = getComputedStyle(el);
  const fg = rgb(s.color), bg = background(el);
  const l1 = lum(fg), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
  const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
  if (ratio < need) problems.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' + n.textContent.trim().slice(0, 40));
}
if (document.documentElement.scrollWidth > window.innerWidth) problems.push('scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
return problems;
"#;

/// The sizes every page is checked at: a laptop and a phone.
const SIZES: &[(u32, u32, &str)] = &[(1440, 900, ""), (390, 844, "-phone")];

async fn check_page(c: &Client, name: &str) {
    for &(w, h, suffix) in SIZES {
        c.set_window_size(w, h).await.expect("resize");
        let got = c.execute(CHECKS, vec![]).await.expect("checks run");
        let problems: Vec<String> = serde_json::from_value(got).expect("a list");
        assert!(problems.is_empty(), "{name} at {w}×{h}: {problems:#?}");
        shot(c, &format!("{name}{suffix}")).await;
    }
    c.set_window_size(WIDTH, HEIGHT).await.expect("resize");
}

/// Log in through the form.
async fn log_in(c: &Client, url: &str, name: &str, password: &str) {
    c.goto(&format!("{url}/ui/login"))
        .await
        .expect("login page");
    c.find(Locator::Css("#name"))
        .await
        .expect("name field")
        .send_keys(name)
        .await
        .expect("type");
    let p = c.find(Locator::Css("#password")).await.expect("password");
    p.send_keys(password).await.expect("type");
    p.send_keys(ENTER).await.expect("enter");
    wait_url(c, "the overview after logging in", |u| u.ends_with("/ui/")).await;
}

struct Demo {
    _child: tokio::process::Child,
    url: String,
    token: String,
    password: String,
}

async fn demo(dir: &Path) -> Demo {
    let mut child = fleetcare()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--devices",
            "8",
            "--for",
            "900",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut url, mut token, mut password) = (None, None, None);
    tokio::time::timeout(PATIENCE * 3, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            let line = line.trim();
            if let Some(u) = line.strip_prefix("center:") {
                url = Some(u.trim().to_owned());
            }
            if let Some(t) = line.strip_prefix("token:") {
                token = Some(t.trim().to_owned());
            }
            if line.starts_with("dashboard:") {
                password = line
                    .rsplit_once("password ")
                    .map(|(_, p)| p.trim_end_matches(')').to_owned());
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
    })
    .await
    .expect("the demo says where it is");
    // Keep reading, so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo {
        _child: child,
        url: url.expect("center URL"),
        token: token.expect("token"),
        password: password.expect("dashboard password"),
    }
}

async fn api(
    http: &reqwest::Client,
    d: &Demo,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = http
        .request(method.parse().expect("method"), format!("{}{path}", d.url))
        .bearer_auth(&d.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("API answers");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

/// chromedriver on a free loopback port, and a headless Chromium session.
async fn browser(
    chromium: &Path,
    chromedriver: &Path,
    profile: &Path,
) -> (tokio::process::Child, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        // The browser's own time zone, which the pages show times in (UTC on hover).
        .env("TZ", "Asia/Tokyo")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let http = reqwest::Client::new();
    let status = format!("http://127.0.0.1:{port}/status");
    eventually("chromedriver ready", PATIENCE, || async {
        let v: Value = http.get(&status).send().await.ok()?.json().await.ok()?;
        (v["value"]["ready"] == true).then_some(())
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                format!("--window-size={WIDTH},{HEIGHT}"),
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (driver, client)
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (installed("chromium"), installed("chromedriver"))
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser tests: chromium and chromedriver are missing (scripts/test installs them)"
        );
        eprintln!(
            "SKIPPED the_dashboard_in_a_real_browser: chromium and chromedriver are not installed (scripts/test installs them)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = demo(&dir.path().join("demo")).await;
    let http = reqwest::Client::new();

    // A viewer, and a rollout whose second wave waits for approval (so it stays running).
    api(
        &http,
        &d,
        "POST",
        "/api/v1/accounts",
        Some(json!({"name": "vera", "role": "viewer", "password": "vera-password-1"})),
    )
    .await;
    let fleet = eventually("the demo fleet reported", PATIENCE, || async {
        let v = api(&http, &d, "GET", "/api/v1/devices", None).await;
        let devices = v["devices"].as_array()?.clone();
        (devices.len() >= 8 && devices.iter().all(common::online_and_reported)).then_some(devices)
    })
    .await;
    let rollout = api(
        &http,
        &d,
        "POST",
        "/api/v1/rollouts",
        Some(
            json!({"name": "dashboard test", "waves": "1,100%", "gates": {"advance": "approval"}}),
        ),
    )
    .await;
    let rollout_id = rollout["id"].as_u64().expect("rollout id");
    assert_eq!(rollout["state"], "running", "{rollout}");

    let (_driver, c) = browser(&chromium, &chromedriver, &dir.path().join("chromium")).await;
    let url = &d.url;

    // A page without a session leads to the login form, and back after it.
    c.goto(&format!("{url}/ui/devices")).await.expect("goto");
    wait_url(&c, "the login form", |u| {
        u.contains("/ui/login?next=/ui/devices")
    })
    .await;
    check_page(&c, "01-login").await;
    // Keyboard only: the name field has focus; Tab to the password; Enter submits.
    assert_eq!(
        focused(&c).await.as_deref(),
        Some("name"),
        "the name field has the focus"
    );
    press(&c, "admin").await;
    press(&c, TAB).await;
    assert_eq!(
        focused(&c).await.as_deref(),
        Some("password"),
        "Tab moves to the password"
    );
    press(&c, &d.password).await;
    press(&c, ENTER).await;
    wait_url(&c, "the devices page after logging in", |u| {
        u.ends_with("/ui/devices")
    })
    .await;

    // The overview.
    c.goto(&format!("{url}/ui/")).await.expect("goto");
    let total = text_when(&c, "#devices-total", "the device count", |t| !t.is_empty()).await;
    assert_eq!(total, fleet.len().to_string());
    text_when(&c, "#devices-online", "devices online", |t| t == total).await;
    let source = c.source().await.expect("source");
    assert!(
        source.contains("dashboard test"),
        "the active rollout is listed"
    );
    assert!(source.contains("Error events per hour"), "the error chart");
    check_page(&c, "02-overview").await;
    // The first Tab reaches the skip link, and it leads to the content.
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys(TAB)
        .await
        .expect("tab");
    let first = c.active_element().await.expect("focus");
    assert_eq!(first.text().await.expect("text"), "Skip to content");
    press(&c, ENTER).await;
    assert_eq!(
        focused(&c).await.as_deref(),
        Some("main"),
        "the skip link moves the focus to the content"
    );

    // Find a device by a part of its id.
    let device = fleet[3]["device_id"].as_str().expect("id").to_owned();
    c.goto(&format!("{url}/ui/devices")).await.expect("goto");
    check_page(&c, "03-devices").await;
    let q = c.find(Locator::Css("#q")).await.expect("search field");
    q.send_keys(&device[device.len() - 4..])
        .await
        .expect("type");
    q.send_keys(ENTER).await.expect("enter");
    wait_url(&c, "the search's page", |u| u.contains("q=")).await;
    let count = text_when(&c, "#found-count", "the search's answer", |t| {
        t.contains("match")
    })
    .await;
    assert!(!count.starts_with("0 "), "{count}");
    click(&c, Locator::LinkText(&device), "the device in the results").await;
    wait_url(&c, "the device page", |u| {
        u.ends_with(&format!("/ui/devices/{device}"))
    })
    .await;

    // Its units, as the API knows them.
    let shown = api(&http, &d, "GET", &format!("/api/v1/devices/{device}"), None).await;
    let units = text_when(&c, "#units", "the units table", |t| t.contains("Slot")).await;
    for u in shown["units"].as_array().expect("units") {
        for field in ["slot", "kind", "model", "serial"] {
            let v = u[field].as_str().expect("text");
            assert!(
                units.contains(v),
                "the units table shows {field} {v}: {units}"
            );
        }
    }
    check_page(&c, "04-device").await;

    // Request a report: it arrives and the page shows it without being reloaded.
    c.execute(
        "document.body.dataset.marker = 'not reloaded'; return 1;",
        vec![],
    )
    .await
    .expect("mark the page");
    let before = text_when(&c, "#last-report", "the last report", |t| !t.is_empty()).await;
    // Shown in the browser's time (Tokyo, UTC+9 all year), the center's UTC on hover.
    let shown = c
        .execute(
            "const t = document.querySelector('#last-report time'); \
             return t ? [t.textContent, t.title, t.dateTime] : null;",
            vec![],
        )
        .await
        .expect("the time");
    let parts: Vec<String> = serde_json::from_value(shown).expect("a local time");
    let utc: jiff::Timestamp = parts[2].parse().expect("an ISO time");
    assert_eq!(
        parts[1],
        utc.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        "{parts:?}"
    );
    let tokyo = utc
        .checked_add(jiff::SignedDuration::from_hours(9))
        .expect("in range")
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(parts[0], tokyo, "{parts:?}");
    assert!(parts[1].ends_with(" UTC"), "{parts:?}");
    assert!(!before.contains("(request)"), "{before}");
    let clicked = std::time::Instant::now();
    c.find(Locator::Css("#request-report"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
    text_when(&c, "#status", "the request's answer", |t| {
        t.contains("Report requested")
    })
    .await;
    let after = text_when(
        &c,
        "#last-report",
        "the requested report on the page",
        |t| t.contains("(request)"),
    )
    .await;
    // A figure for BENCHMARKS.md ("Functional latencies"), not a contract of this test.
    println!(
        "request-report clicked → the report on the page in {:?}",
        clicked.elapsed()
    );
    assert_ne!(before, after);
    let marker = c
        .execute("return document.body.dataset.marker || '';", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker, "not reloaded",
        "the page updated itself (server-sent events)"
    );
    let shown = api(&http, &d, "GET", &format!("/api/v1/devices/{device}"), None).await;
    assert_eq!(shown["last_report"]["trigger"], "request");
    shot(&c, "05-device-after-report").await;

    // Take a unit out of service from its row (the reason is asked for), see the device
    // report it so, and put it back.
    let slot = shown["units"]
        .as_array()
        .and_then(|u| u.last())
        .and_then(|u| u["slot"].as_str())
        .expect("a unit")
        .to_owned();
    let row = format!("//table[@id='units']//tr[td[1]='{slot}']");
    click(
        &c,
        Locator::XPath(&format!("{row}//summary")),
        "the row's take-out control",
    )
    .await;
    let reason = format!("{row}//input[@name='reason']");
    c.find(Locator::XPath(&reason))
        .await
        .expect("the reason field")
        .send_keys("feed rollers worn")
        .await
        .expect("type");
    // A report arriving while the form is open does not wipe what was typed: the live
    // refresh is held until the form is sent.
    api(
        &http,
        &d,
        "POST",
        &format!("/api/v1/devices/{device}/request-report"),
        None,
    )
    .await;
    eventually("a live refresh held", PATIENCE, || {
        let c = c.clone();
        async move {
            let n = c.execute("return held.length;", vec![]).await.ok()?;
            (n.as_u64()? > 0).then_some(())
        }
    })
    .await;
    let kept = c
        .find(Locator::XPath(&reason))
        .await
        .expect("the reason field, still there")
        .prop("value")
        .await
        .expect("its value");
    assert_eq!(kept.as_deref(), Some("feed rollers worn"));
    c.find(Locator::XPath(&format!("{row}//form//button")))
        .await
        .expect("the take-out button")
        .click()
        .await
        .expect("click");
    text_when(&c, "#status", "the take-out's answer", |t| {
        t.contains("taken out of service")
    })
    .await;
    let out = text_when(&c, "#units", "the unit out of service on the page", |t| {
        t.contains("feed rollers worn")
    })
    .await;
    assert!(out.contains("by admin"), "{out}");
    let shown = eventually(
        "the device reports the unit out of service",
        PATIENCE,
        || async {
            let v = api(&http, &d, "GET", &format!("/api/v1/devices/{device}"), None).await;
            v["units"]
                .as_array()
                .is_some_and(|u| {
                    u.iter()
                        .any(|u| u["slot"] == slot.as_str() && u["in_service"] == false)
                })
                .then_some(v)
        },
    )
    .await;
    assert_eq!(shown["device_id"], device);
    shot(&c, "05b-unit-out-of-service").await;
    click(
        &c,
        Locator::XPath(&format!(
            "{row}//button[normalize-space()='Put back in service']"
        )),
        "the put-back button",
    )
    .await;
    text_when(&c, "#status", "the put-back's answer", |t| {
        t.contains("put back in service")
    })
    .await;
    text_when(&c, "#units", "the unit back in service on the page", |t| {
        !t.contains("feed rollers worn")
    })
    .await;

    // Pause the rollout.
    c.goto(&format!("{url}/ui/rollouts/{rollout_id}"))
        .await
        .expect("goto");
    text_when(&c, "#rollout-state", "the rollout's state", |t| {
        t == "running"
    })
    .await;
    check_page(&c, "06-rollout").await;
    let clicked = std::time::Instant::now();
    c.find(Locator::Css("#pause"))
        .await
        .expect("pause button")
        .click()
        .await
        .expect("click");
    text_when(
        &c,
        "#rollout-state",
        "the paused rollout on the page",
        |t| t == "paused",
    )
    .await;
    println!(
        "pause clicked → paused on the page in {:?}",
        clicked.elapsed()
    );
    assert!(
        present(&c, "#resume").await,
        "a paused rollout can be resumed"
    );
    assert!(!present(&c, "#pause").await);
    let r = api(
        &http,
        &d,
        "GET",
        &format!("/api/v1/rollouts/{rollout_id}"),
        None,
    )
    .await;
    assert_eq!(r["state"], "paused");
    shot(&c, "07-rollout-paused").await;

    // A session that ends under a live page: its next refresh leads to the login form, which
    // comes back to this page.
    c.goto(&format!("{url}/ui/devices/{device}"))
        .await
        .expect("goto");
    text_when(&c, "#units", "the device page", |t| t.contains("Slot")).await;
    c.delete_all_cookies().await.expect("cookies");
    api(
        &http,
        &d,
        "POST",
        &format!("/api/v1/devices/{device}/request-report"),
        None,
    )
    .await;
    wait_url(&c, "the login form after the session ended", |u| {
        u.contains(&format!("/ui/login?next=%2Fui%2Fdevices%2F{device}"))
    })
    .await;
    log_in(&c, url, "admin", &d.password).await;

    // The other pages.
    for (path, name) in [
        ("/ui/rollouts", "08-rollouts"),
        ("/ui/troubles?state=all", "09-troubles"),
        ("/ui/catalog", "10-catalog"),
        ("/ui/notify", "11-notify"),
        ("/ui/audit", "12-audit"),
    ] {
        c.goto(&format!("{url}{path}")).await.expect("goto");
        check_page(&c, name).await;
    }
    let audit = c.source().await.expect("source");
    assert!(
        audit.contains("rollout.pause"),
        "the pause is in the audit log"
    );
    let troubles = api(&http, &d, "GET", "/api/v1/troubles?state=all", None).await;
    if let Some(t) = troubles["troubles"].as_array().and_then(|t| t.first()) {
        c.goto(&format!("{url}/ui/troubles/{}", t["id"]))
            .await
            .expect("goto");
        text_when(&c, "#trouble-state", "the trouble", |s| !s.is_empty()).await;
        check_page(&c, "12-trouble").await;
    }

    // Log out; a viewer sees no action it may not take.
    c.find(Locator::Css("header form button"))
        .await
        .expect("log out")
        .click()
        .await
        .expect("click");
    wait_url(&c, "the login form after logging out", |u| {
        u.contains("/ui/login")
    })
    .await;
    log_in(&c, url, "vera", "vera-password-1").await;
    let nav = c
        .find(Locator::Css("header nav"))
        .await
        .expect("nav")
        .text()
        .await
        .expect("text");
    assert!(
        !nav.contains("Audit"),
        "a viewer is not shown the audit log: {nav}"
    );
    c.goto(&format!("{url}/ui/devices/{device}"))
        .await
        .expect("goto");
    text_when(&c, "#units", "the viewer's units table", |t| {
        t.contains("Slot")
    })
    .await;
    assert!(
        !present(&c, "button[hx-post]").await,
        "no action on the device page"
    );
    c.goto(&format!("{url}/ui/rollouts/{rollout_id}"))
        .await
        .expect("goto");
    text_when(&c, "#rollout-state", "the viewer's rollout", |t| {
        t == "paused"
    })
    .await;
    assert!(
        !present(&c, "button[hx-post]").await,
        "no action on the rollout page"
    );
    check_page(&c, "13-viewer-rollout").await;
    // And what would have been refused is refused.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(arguments[0], {method: 'POST'}).then(r => done(r.status), () => done(0));",
            vec![json!(format!("/api/v1/rollouts/{rollout_id}/resume"))],
        )
        .await
        .expect("fetch");
    assert_eq!(status, 403, "a viewer's resume is refused");
    c.goto(&format!("{url}/ui/audit")).await.expect("goto");
    let page = c.source().await.expect("source");
    assert!(
        page.contains("Not allowed"),
        "the audit page refuses a viewer"
    );

    c.close().await.expect("close the browser");
}
