//! hawkBit's DDI API on both stores, in-process: target and gateway tokens and every refusal
//! (audited), polls with ETag, `configData` as the structure report (and refused input that
//! changes nothing), actions made of jobs with SHA-1, MD5 and SHA-256 and a Range download,
//! feedback into job states, success only from the report that shows the version, failures
//! with their reasons, and a cancellation the device acknowledges. SWUpdate itself is the
//! judge in `crates/fleetcare/tests/ddi_swupdate.rs`.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{Fixture, call, enroll_as, fixtures, json_body};
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE, ReleaseManifest,
    Target, format_time,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const BASE: &str = "/default/controller/v1";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn ddi(
    f: &Fixture,
    method: &str,
    path: &str,
    auth: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "center:8470");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).expect("json"))
        }
        None => Body::empty(),
    };
    let resp = f
        .app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn target(token: &str) -> String {
    format!("TargetToken {token}")
}

async fn add_target(f: &Fixture, id: &str) -> String {
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/ddi/targets",
        Some(&f.admin),
        json_body(&json!({"device_id": id, "model": "acme-printer-p500"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenant"], "default");
    v["target_token"].as_str().expect("token").to_owned()
}

/// The attributes of a p500 whose controller runs `version`.
fn attributes(serial: &str, version: &str) -> Value {
    json!({
        "model": "acme-printer-p500",
        "unit.controller.kind": "controller",
        "unit.controller.model": "ctl-lite",
        "unit.controller.serial": serial,
        "unit.controller.hw_revision": "C",
        "unit.controller.software.ctl-lite-firmware": version,
        "unit.controller.software.ctl-lite-firmware.maker": "acme",
        "unit.fuser.model": "fus-2",
        "unit.fuser.serial": "F-1",
        "operating.pages_total": "1200",
        "board": "rev 1.0"
    })
}

async fn config(f: &Fixture, id: &str, token: &str, data: Value) -> Answer {
    // SWUpdate's own shape: an empty id, a time, a status, and the data.
    ddi(
        f,
        "PUT",
        &format!("{BASE}/{id}/configData"),
        Some(&target(token)),
        &[],
        Some(json!({"id": "", "time": "20261204T170000",
                    "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]},
                    "data": data})),
    )
    .await
}

async fn device(f: &Fixture, id: &str) -> Value {
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/devices/{id}"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn newest_audit(f: &Fixture) -> fleetcare_store::AuditRecord {
    f.store
        .newest_audit_line()
        .await
        .expect("audit")
        .expect("a line")
}

#[tokio::test]
async fn tokens_act_only_as_their_controller_and_every_refusal_is_audited() {
    for (store, f) in fixtures("ddi tokens").await {
        let token = add_target(&f, "t1").await;
        // The first poll asks for the attributes, and says how long to sleep.
        let a = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{store}");
        let v = a.json();
        assert_eq!(v["config"]["polling"]["sleep"], "00:05:00", "{store}: {v}");
        assert_eq!(
            v["_links"]["configData"]["href"],
            "http://center:8470/default/controller/v1/t1/configData",
            "{store}: {v}"
        );
        assert!(v["_links"].get("deploymentBase").is_none(), "{store}: {v}");
        let etag = a.headers[header::ETAG].to_str().expect("etag").to_owned();
        let again = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[("if-none-match", &etag)],
            None,
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{store}");

        // Refusals: each is audited, with no tenant, and changes nothing.
        let agent = enroll_as(&f, "agent-1", "acme-printer-p500").await;
        let cases: Vec<(String, Option<String>, StatusCode)> = vec![
            (format!("{BASE}/t1"), None, StatusCode::UNAUTHORIZED),
            (
                format!("{BASE}/t1"),
                Some("Bearer something".into()),
                StatusCode::UNAUTHORIZED,
            ),
            (
                format!("{BASE}/t1"),
                Some(target("fcd_not-a-token")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                format!("{BASE}/t2"),
                Some(target(&token)),
                StatusCode::FORBIDDEN,
            ),
            (
                "/another-tenant/controller/v1/t1".into(),
                Some(target(&token)),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("{BASE}/agent-1"),
                Some(target(&agent)),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("{BASE}/not%20an%20id"),
                Some(target(&token)),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (path, auth, want) in cases {
            let a = ddi(&f, "GET", &path, auth.as_deref(), &[], None).await;
            assert_eq!(a.status, want, "{store}: {path} with {auth:?}");
            let line = newest_audit(&f).await;
            assert_eq!(
                (line.action.as_str(), line.status, line.outcome.as_str()),
                ("ddi.request", want.as_u16(), "denied"),
                "{store}: {path}"
            );
            assert_eq!(line.path, path, "{store}");
        }
        assert!(
            f.store
                .ddi_device(&fleetcare_store::DeviceKey {
                    tenant: f.tenant,
                    device_id: fleetcare_core::DeviceId::parse("t2").expect("id"),
                })
                .await
                .expect("store")
                .is_none(),
            "{store}: a refused request made no device"
        );

        // A gateway token acts as any controllerId of its tenant; a new one becomes a device,
        // an agent's stays the agent's; revoked, it stops at once.
        let (s, g) = call(
            &f.app,
            "POST",
            "/api/v1/ddi/gateway-tokens",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {g}");
        let gw = format!(
            "GatewayToken {}",
            g["gateway_token"].as_str().expect("token")
        );
        assert!(
            g["gateway_token"]
                .as_str()
                .is_some_and(|t| t.starts_with("fcg_"))
        );
        let a = ddi(&f, "GET", &format!("{BASE}/gw-1"), Some(&gw), &[], None).await;
        assert_eq!(a.status, StatusCode::OK, "{store}");
        let (s, _) = call(
            &f.app,
            "GET",
            "/api/v1/ddi/targets/gw-1",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: the gateway's device exists");
        let a = ddi(&f, "GET", &format!("{BASE}/agent-1"), Some(&gw), &[], None).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{store}");
        let (s, r) = call(
            &f.app,
            "DELETE",
            "/api/v1/ddi/gateway-tokens",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(
            (s, r["revoked"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{store}"
        );
        let a = ddi(&f, "GET", &format!("{BASE}/gw-1"), Some(&gw), &[], None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{store}");
        assert_eq!(newest_audit(&f).await.action, "ddi.request", "{store}");
        // A viewer may look at a target, not make one.
        let (s, viewer) = call(
            &f.app,
            "POST",
            "/api/v1/tokens",
            Some(&f.admin),
            json_body(&json!({"name": "v", "role": "viewer"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{viewer}");
        let viewer = viewer["token"].as_str().expect("token");
        let (s, _) = call(
            &f.app,
            "POST",
            "/api/v1/ddi/targets",
            Some(viewer),
            json_body(&json!({"device_id": "t9", "model": "acme-printer-p500"})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{store}");
        f.finish().await;
    }
}

#[tokio::test]
async fn config_data_is_the_structure_report_and_bad_input_changes_nothing() {
    for (store, f) in fixtures("ddi configData").await {
        let token = add_target(&f, "t1").await;
        let a = config(&f, "t1", &token, attributes("CTL-1", "1.9.12")).await;
        assert_eq!(a.status, StatusCode::OK, "{store}: {:?}", a.json());
        let d = device(&f, "t1").await;
        let units = d["units"].as_array().expect("units");
        assert_eq!(units.len(), 2, "{store}: {d}");
        let ctl = units
            .iter()
            .find(|u| u["slot"] == "controller")
            .expect("controller");
        assert_eq!(ctl["software"][0]["version"], "1.9.12", "{store}: {d}");
        assert_eq!(ctl["software"][0]["maker"], "acme", "{store}: {d}");
        assert_eq!(d["last_report"]["trigger"], "connect", "{store}: {d}");
        let (_, t) = call(
            &f.app,
            "GET",
            "/api/v1/ddi/targets/t1",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(t["attributes"]["board"], "rev 1.0", "{store}: {t}");
        assert_eq!(t["reports"], 1, "{store}: {t}");
        // Answered: the next poll does not ask again.
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await;
        assert!(
            p.json()["_links"].get("configData").is_none(),
            "{store}: {:?}",
            p.json()
        );

        // Refused, and nothing changes: a unit without a serial, a bad mode, a value too
        // long, a non-number as operating info, a body over the limit.
        let bad = [
            json!({"data": {"unit.tray.model": "pf-250"}}),
            json!({"mode": "append", "data": {"a": "b"}}),
            json!({"data": {"a": "x".repeat(600)}}),
            json!({"data": {"operating.pages_total": "many"}}),
            json!({"data": {"unit.controller.colour": "red"}}),
        ];
        for b in bad {
            let a = ddi(
                &f,
                "PUT",
                &format!("{BASE}/t1/configData"),
                Some(&target(&token)),
                &[],
                Some(b.clone()),
            )
            .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{store}: {b}");
            assert!(
                a.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("configData")),
                "{store}: {:?}",
                a.json()
            );
        }
        let huge: serde_json::Map<String, Value> = (0..3000)
            .map(|i| (format!("k{i:05}"), Value::String("v".repeat(100))))
            .collect();
        let a = ddi(
            &f,
            "PUT",
            &format!("{BASE}/t1/configData"),
            Some(&target(&token)),
            &[],
            Some(json!({"data": huge})),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{store}");
        let (_, t) = call(
            &f.app,
            "GET",
            "/api/v1/ddi/targets/t1",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(t["reports"], 1, "{store}: {t}");
        assert_eq!(
            t["attributes"].as_object().map(|m| m.len()),
            Some(11),
            "{store}: {t}"
        );

        // Remove and replace as DDI defines them; attributes that name no unit are kept only.
        let a = ddi(
            &f,
            "PUT",
            &format!("{BASE}/t1/configData"),
            Some(&target(&token)),
            &[],
            Some(json!({"mode": "remove", "data": {"board": ""}})),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{store}");
        let a = ddi(
            &f,
            "PUT",
            &format!("{BASE}/t1/configData"),
            Some(&target(&token)),
            &[],
            Some(json!({"mode": "replace", "data": {"site-note": "third floor"}})),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{store}");
        let (_, t) = call(
            &f.app,
            "GET",
            "/api/v1/ddi/targets/t1",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(
            t["attributes"],
            json!({"site-note": "third floor"}),
            "{store}: {t}"
        );
        assert_eq!(t["reports"], 3, "{store}: {t}");
        let d = device(&f, "t1").await;
        assert_eq!(
            d["units"].as_array().map(Vec::len),
            Some(2),
            "{store}: the structure stays: {d}"
        );
        f.finish().await;
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn in_days(d: u64) -> String {
    format_time(SystemTime::now() + Duration::from_secs(d * 86_400))
}

/// Keys and a release of ctl-lite-firmware 2.0.0 with one artifact, published and uploaded.
async fn publish(f: &Fixture, bytes: &[u8]) {
    let root = KeyPair::from_seed(&[1; 32]);
    let release = KeyPair::from_seed(&[2; 32]);
    let list = KeyList {
        version: 1,
        expires: in_days(30),
        threshold: 1,
        keys: vec![release.public().clone()],
    };
    let env = Envelope::sign(KEYS_TYPE, &list.to_json(), &[&root]).to_json();
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/keys",
        Some(&f.admin),
        Some(Body::from(env)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = ReleaseManifest {
        product: "ctl-lite-firmware".into(),
        maker: "acme".into(),
        version: "2.0.0".into(),
        counter: 20,
        targets: vec![Target {
            unit_model: "ctl-lite".into(),
            hw_revisions: vec!["C".into()],
        }],
        artifacts: vec![Artifact {
            name: ArtifactName::new("ctl-lite-2.0.0.swu").expect("name"),
            size: bytes.len() as u64,
            sha256: sha(bytes),
        }],
        expires: in_days(30),
    };
    let env = Envelope::sign(RELEASE_TYPE, &m.to_json(), &[&release]).to_json();
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/releases",
        Some(&f.admin),
        Some(Body::from(env)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &f.app,
        "PUT",
        &format!("/api/v1/artifacts/{}", sha(bytes)),
        Some(&f.admin),
        Some(Body::from(bytes.to_vec())),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn job(f: &Fixture, device: &str) -> u64 {
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/jobs",
        Some(&f.admin),
        json_body(&json!({"device_id": device, "steps": [
            {"slot": "controller", "product": "ctl-lite-firmware", "version": "2.0.0", "action": "install"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["id"].as_u64().expect("id")
}

async fn job_view(f: &Fixture, id: u64) -> Value {
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/jobs/{id}"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn feedback(
    execution: &str,
    finished: &str,
    progress: Option<(u64, u64)>,
    details: &[&str],
) -> Value {
    let mut result = json!({"finished": finished});
    if let Some((cnt, of)) = progress {
        result["progress"] = json!({"cnt": cnt, "of": of});
    }
    json!({"id": 1, "time": "20261204T170000",
           "status": {"result": result, "execution": execution, "details": details}})
}

async fn send_feedback(
    f: &Fixture,
    token: &str,
    device: &str,
    job: u64,
    body: Value,
) -> StatusCode {
    ddi(
        f,
        "POST",
        &format!("{BASE}/{device}/deploymentBase/{job}/feedback"),
        Some(&target(token)),
        &[],
        Some(body),
    )
    .await
    .status
}

#[tokio::test]
async fn actions_are_jobs_and_success_waits_for_the_report_that_shows_it() {
    for (store, f) in fixtures("ddi actions").await {
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/v1/catalog",
            Some(&f.admin),
            Some(Body::from(
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../examples/catalog.toml"
                ))
                .expect("catalog"),
            )),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        publish(&f, &bytes).await;
        let token = add_target(&f, "t1").await;
        assert_eq!(
            config(&f, "t1", &token, attributes("CTL-1", "1.9.12"))
                .await
                .status,
            StatusCode::OK
        );

        // The job is the action: one chunk for the controller, with every hash.
        let id = job(&f, "t1").await;
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await
        .json();
        let href = p["_links"]["deploymentBase"]["href"]
            .as_str()
            .expect("deploymentBase")
            .to_owned();
        assert!(
            href.starts_with(&format!(
                "http://center:8470{BASE}/t1/deploymentBase/{id}?c="
            )),
            "{store}: {p}"
        );
        let path = href.trim_start_matches("http://center:8470");
        let d = ddi(&f, "GET", path, Some(&target(&token)), &[], None)
            .await
            .json();
        assert_eq!(d["id"], id.to_string(), "{store}: {d}");
        assert_eq!(
            (
                d["deployment"]["download"].as_str(),
                d["deployment"]["update"].as_str()
            ),
            (Some("forced"), Some("forced")),
            "{store}: {d}"
        );
        let chunk = &d["deployment"]["chunks"][0];
        assert_eq!(
            (
                chunk["part"].as_str(),
                chunk["name"].as_str(),
                chunk["version"].as_str()
            ),
            (Some("controller"), Some("ctl-lite-firmware"), Some("2.0.0")),
            "{store}: {d}"
        );
        let art = &chunk["artifacts"][0];
        assert_eq!(art["filename"], "ctl-lite-2.0.0.swu", "{store}: {d}");
        assert_eq!(art["size"], bytes.len(), "{store}");
        let sha1: String = <sha1::Sha1 as sha1::Digest>::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let md5: String = <md5::Md5 as md5::Digest>::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            art["hashes"],
            json!({"sha1": sha1, "md5": md5, "sha256": sha(&bytes)}),
            "{store}"
        );
        let dl = art["_links"]["download-http"]["href"]
            .as_str()
            .expect("download link");
        let dl = dl.trim_start_matches("http://center:8470");
        let part = ddi(
            &f,
            "GET",
            dl,
            Some(&target(&token)),
            &[("range", "bytes=100-199")],
            None,
        )
        .await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{store}");
        assert_eq!(part.body, bytes[100..200], "{store}");
        let md5sum = ddi(
            &f,
            "GET",
            &format!("{dl}.MD5SUM"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&md5sum.body),
            format!("{md5}  ctl-lite-2.0.0.swu\n"),
            "{store}"
        );
        // Another device may not fetch this device's action or its files.
        let other = add_target(&f, "t2").await;
        let a = ddi(
            &f,
            "GET",
            &path.replace("/t1/", "/t2/"),
            Some(&target(&other)),
            &[],
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{store}");
        let a = ddi(
            &f,
            "GET",
            &dl.replace("/t1/", "/t2/"),
            Some(&target(&other)),
            &[],
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{store}");

        // Feedback moves the job; a bad one is refused and moves nothing.
        assert_eq!(
            send_feedback(
                &f,
                &token,
                "t1",
                id,
                feedback(
                    "proceeding",
                    "none",
                    Some((0, 1)),
                    &["Installing Update Chunk Artifacts."]
                )
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(job_view(&f, id).await["state"], "downloading", "{store}");
        assert_eq!(
            send_feedback(&f, &token, "t1", id, feedback("closed", "none", None, &[])).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send_feedback(&f, &token, "t1", id, json!({"status": "done"})).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send_feedback(
                &f,
                &token,
                "t1",
                id,
                feedback(
                    "proceeding",
                    "none",
                    Some((1, 1)),
                    &["All Chunks Installed."]
                )
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(job_view(&f, id).await["state"], "installing", "{store}");
        // "Installed" is not success: the job awaits the report, and asks for it.
        assert_eq!(
            send_feedback(
                &f,
                &token,
                "t1",
                id,
                feedback("closed", "success", None, &["Update Installed."])
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(job_view(&f, id).await["state"], "health_check", "{store}");
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await
        .json();
        assert!(p["_links"].get("configData").is_some(), "{store}: {p}");
        assert!(
            p["_links"].get("deploymentBase").is_some(),
            "{store}: the action stays until settled: {p}"
        );
        assert_eq!(
            config(&f, "t1", &token, attributes("CTL-1", "2.0.0"))
                .await
                .status,
            StatusCode::OK
        );
        let j = job_view(&f, id).await;
        assert_eq!(j["state"], "succeeded", "{store}: {j}");
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t1"),
            Some(&target(&token)),
            &[],
            None,
        )
        .await
        .json();
        assert!(p["_links"].get("deploymentBase").is_none(), "{store}: {p}");
        let installed = p["_links"]["installedBase"]["href"]
            .as_str()
            .expect("installedBase")
            .trim_start_matches("http://center:8470")
            .to_owned();
        let ib = ddi(&f, "GET", &installed, Some(&target(&token)), &[], None).await;
        assert_eq!(
            ib.json()["deployment"]["chunks"][0]["version"],
            "2.0.0",
            "{store}"
        );

        // A device that says it installed but whose report shows the old version: failed.
        assert_eq!(
            config(&f, "t2", &other, attributes("CTL-2", "1.9.12"))
                .await
                .status,
            StatusCode::OK
        );
        let id2 = job(&f, "t2").await;
        assert_eq!(
            send_feedback(
                &f,
                &other,
                "t2",
                id2,
                feedback("closed", "success", None, &[])
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            config(&f, "t2", &other, attributes("CTL-2", "1.9.12"))
                .await
                .status,
            StatusCode::OK
        );
        let j = job_view(&f, id2).await;
        assert_eq!(
            (j["state"].as_str(), j["reason"].as_str()),
            (Some("failed"), Some("install")),
            "{store}: {j}"
        );
        assert!(
            j["detail"].as_str().is_some_and(|d| d.contains("1.9.12")),
            "{store}: {j}"
        );

        // A wrong-hardware failure keeps the client's words and the uniform reason.
        let id3 = job(&f, "t2").await;
        assert_eq!(
            send_feedback(
                &f,
                &other,
                "t2",
                id3,
                feedback(
                    "closed",
                    "failure",
                    None,
                    &[
                        "ERROR : SW not compatible with hardware",
                        "Image invalid or corrupted. Not installing ..."
                    ]
                )
            )
            .await,
            StatusCode::OK
        );
        let j = job_view(&f, id3).await;
        assert_eq!(
            (j["state"].as_str(), j["reason"].as_str()),
            (Some("failed"), Some("incompatible_hardware")),
            "{store}: {j}"
        );
        assert!(
            j["detail"]
                .as_str()
                .is_some_and(|d| d.contains("not compatible with hardware")),
            "{store}: {j}"
        );

        // Cancelled while downloading: the device is asked, acknowledges, and is asked no more.
        let id4 = job(&f, "t2").await;
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t2"),
            Some(&target(&other)),
            &[],
            None,
        )
        .await
        .json();
        let path = p["_links"]["deploymentBase"]["href"]
            .as_str()
            .expect("action")
            .trim_start_matches("http://center:8470")
            .to_owned();
        assert_eq!(
            ddi(&f, "GET", &path, Some(&target(&other)), &[], None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            send_feedback(
                &f,
                &other,
                "t2",
                id4,
                feedback("proceeding", "none", Some((0, 1)), &[])
            )
            .await,
            StatusCode::OK
        );
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/api/v1/jobs/{id4}/cancel"),
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{store}: a DDI device's downloading job can be cancelled: {v}"
        );
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t2"),
            Some(&target(&other)),
            &[],
            None,
        )
        .await
        .json();
        let cancel = p["_links"]["cancelAction"]["href"]
            .as_str()
            .expect("cancelAction")
            .trim_start_matches("http://center:8470")
            .to_owned();
        let c = ddi(&f, "GET", &cancel, Some(&target(&other)), &[], None)
            .await
            .json();
        assert_eq!(c["cancelAction"]["stopId"], id4.to_string(), "{store}: {c}");
        let a = ddi(
            &f,
            "POST",
            &format!("{cancel}/feedback"),
            Some(&target(&other)),
            &[],
            Some(feedback(
                "closed",
                "success",
                None,
                &["cancellation acknowledged."],
            )),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{store}");
        let j = job_view(&f, id4).await;
        assert_eq!(
            (j["state"].as_str(), j["reason"].as_str()),
            (Some("failed"), Some("cancelled")),
            "{store}: {j}"
        );
        assert!(
            j["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["state"] == "cancel_acknowledged")),
            "{store}: {j}"
        );
        let p = ddi(
            &f,
            "GET",
            &format!("{BASE}/t2"),
            Some(&target(&other)),
            &[],
            None,
        )
        .await
        .json();
        assert!(
            p["_links"].get("cancelAction").is_none()
                && p["_links"].get("deploymentBase").is_none(),
            "{store}: {p}"
        );
        f.finish().await;
    }
}
