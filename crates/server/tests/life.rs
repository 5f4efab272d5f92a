//! Operating life through the center: reports' counters and gauges kept as history, read back
//! as meters by hour and day, pruned into daily rollups; on both stores.

use axum::http::StatusCode;
use fleetcare_core::meters::{DAY_MS, HOUR_MS};
use serde_json::{Value, json};

mod common;

use common::{Fixture, call, enroll, fixtures, json_body};

fn report(id: &str, seq: u64, at: i64, op: Value) -> Value {
    json!({
        "device_id": id, "model": "acme-mfp-9000", "seq": seq, "trigger": "periodic",
        "observed_at_ms": at,
        "units": [{"slot": "engine", "kind": "engine", "model": "eng-1", "serial": "E1"}],
        "operating": op
    })
}

async fn post(f: &Fixture, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(token),
        json_body(&body),
    )
    .await
}

fn meter<'a>(series: &'a Value, name: &str) -> &'a Vec<Value> {
    series["meters"]
        .as_array()
        .expect("meters")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no meter {name} in {series}"))["points"]
        .as_array()
        .expect("points")
}

fn span(p: &Value) -> [f64; 4] {
    ["first", "last", "min", "max"].map(|k| p[k].as_f64().expect("number"))
}

#[tokio::test]
async fn meters_are_kept_read_back_by_hour_and_day_and_rolled_up() {
    for (store, f) in fixtures("meters_are_kept").await {
        let token = enroll(&f, "LIFE-1").await;
        let day0 = common::NOW.div_euclid(DAY_MS) * DAY_MS - 3 * DAY_MS;
        let reads = [
            (day0 + HOUR_MS, 100.0, 90.0),
            (day0 + HOUR_MS + 600_000, 120.0, 89.0),
            (day0 + 2 * HOUR_MS, 150.0, 88.0),
            (day0 + DAY_MS + HOUR_MS, 300.0, 80.0),
            (day0 + 2 * DAY_MS + HOUR_MS, 500.0, 71.5),
        ];
        for (i, (at, pages, toner)) in reads.iter().enumerate() {
            let (status, ack) = post(
                &f,
                &token,
                report(
                    "LIFE-1",
                    i as u64 + 1,
                    *at,
                    json!({"pages_total": pages, "toner.black": toner}),
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        // A counter beyond 2^53 is refused, and nothing of the report is kept.
        let (status, body) = post(
            &f,
            &token,
            report(
                "LIFE-1",
                9,
                day0 + 2 * DAY_MS + 2 * HOUR_MS,
                json!({"pages_total": 1e16}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{store}: {body}");
        assert!(body.to_string().contains("2^53"), "{store}: {body}");

        let since = fleetcare_core::clock::rfc3339(day0);
        let until = fleetcare_core::clock::rfc3339(day0 + 3 * DAY_MS);
        let uri = |every: &str| {
            format!("/api/v1/devices/LIFE-1/meters?since={since}&until={until}&every={every}")
        };
        let (status, hourly) = call(&f.app, "GET", &uri("hour"), Some(&f.admin), None).await;
        assert_eq!(status, StatusCode::OK, "{store}: {hourly}");
        let pages = meter(&hourly, "pages_total");
        assert_eq!(
            pages.len(),
            4,
            "{store}: one bucket per hour with reads: {hourly}"
        );
        assert_eq!(span(&pages[0]), [100.0, 120.0, 100.0, 120.0], "{store}");
        let (_, daily) = call(&f.app, "GET", &uri("day"), Some(&f.admin), None).await;
        let toner = meter(&daily, "toner.black");
        assert_eq!(toner.len(), 3, "{store}: {daily}");
        assert_eq!(span(&toner[0]), [90.0, 88.0, 88.0, 90.0], "{store}");
        let (_, only) = call(
            &f.app,
            "GET",
            &format!("{}&meter=toner.black", uri("day")),
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(
            only["meters"].as_array().map(Vec::len),
            Some(1),
            "{store}: {only}"
        );

        // Two days on, the first days' raw points are rolled up; the day series is the same.
        fleetcare_server::life::prune(&f.state, 1, 800).await;
        let (_, after) = call(&f.app, "GET", &uri("day"), Some(&f.admin), None).await;
        assert_eq!(
            after["meters"], daily["meters"],
            "{store}: rollups read as the raw days did"
        );
        let (_, hourly_after) = call(&f.app, "GET", &uri("hour"), Some(&f.admin), None).await;
        assert!(
            meter(&hourly_after, "pages_total").len() < pages.len(),
            "{store}: rolled-up days have no hours any more: {hourly_after}"
        );
        let (_, metrics) = call(&f.app, "GET", "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        assert!(
            text.lines()
                .any(|l| l.starts_with("fleetcare_operating_days_rolled_total ")
                    && !l.ends_with(" 0")),
            "{store}: {text}"
        );

        // Bad queries are refused with what is wrong.
        for (q, says) in [
            ("every=week", "hour or day"),
            (
                &format!("since={until}&until={since}") as &str,
                "not before",
            ),
            ("every=hour&since=2020-01-01T00:00:00Z", "at most"),
            ("since=yesterday", "RFC 3339"),
        ] {
            let (status, body) = call(
                &f.app,
                "GET",
                &format!("/api/v1/devices/LIFE-1/meters?{q}"),
                Some(&f.admin),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{store} {q}: {body}");
            assert!(body.to_string().contains(says), "{store} {q}: {body}");
        }
        let (status, _) = call(
            &f.app,
            "GET",
            "/api/v1/devices/NOPE/meters",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{store}");
        f.finish().await;
    }
}

#[tokio::test]
async fn supplies_are_shown_swapped_in_history_and_refused_when_wrong() {
    for (store, f) in fixtures("supplies_are_shown").await {
        let token = enroll(&f, "SUP-1").await;
        let with = |seq: u64, serial: &str, level: Value| {
            let mut r = report("SUP-1", seq, common::NOW, json!({"pages_total": 10 * seq}));
            r["supplies"] = json!([
                {"slot": "toner.black", "kind": "toner", "color": "black", "level_pct": level,
                 "part_number": "TN-328K", "serial": serial, "state": "ok"},
                {"slot": "drum", "kind": "drum", "level": 60, "max": 100, "state": "ok", "level_pct": 60}
            ]);
            r
        };
        let (status, ack) = post(&f, &token, with(1, "K-1", json!(40))).await;
        assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        let (status, ack) = post(&f, &token, with(2, "K-2", json!(100))).await;
        assert_eq!(
            (status, ack["changes"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{store}: {ack}"
        );
        let (_, d) = call(&f.app, "GET", "/api/v1/devices/SUP-1", Some(&f.admin), None).await;
        assert_eq!(d["supplies"][0]["serial"], "K-2", "{store}: {d}");
        assert_eq!(d["supplies"][1]["level"], 60, "{store}: {d}");
        let (_, h) = call(
            &f.app,
            "GET",
            "/api/v1/devices/SUP-1/history",
            Some(&f.admin),
            None,
        )
        .await;
        let swaps: Vec<&Value> = h["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| {
                e["change"]["kind"] == "supply_replaced" && e["change"]["slot"] == "toner.black"
            })
            .collect();
        assert_eq!(swaps.len(), 1, "{store}: {h}");
        // Wrong levels are refused, each said, and nothing is kept.
        for (bad, says) in [
            (json!(120), "is not from 0 to 100"),
            (json!(-1), "is not from 0 to 100"),
        ] {
            let (status, body) = post(&f, &token, with(3, "K-3", bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{store}: {body}");
            assert!(body.to_string().contains(says), "{store}: {body}");
        }
        let mut zero = with(3, "K-3", json!(50));
        zero["supplies"][1]["max"] = json!(0);
        let (status, body) = post(&f, &token, zero).await;
        assert!(
            status == StatusCode::BAD_REQUEST && body.to_string().contains("max: must be above 0"),
            "{store}: {body}"
        );
        let (_, d) = call(&f.app, "GET", "/api/v1/devices/SUP-1", Some(&f.admin), None).await;
        assert_eq!(
            (
                d["supplies"][0]["serial"].as_str(),
                d["last_report"]["seq"].as_u64()
            ),
            (Some("K-2"), Some(2)),
            "{store}: {d}"
        );
        f.finish().await;
    }
}

#[tokio::test]
async fn a_supply_forecast_comes_from_its_consumption() {
    for (store, f) in fixtures("a_supply_forecast").await {
        let token = enroll(&f, "FC-1").await;
        // A black toner used 3 points a day for six days (two readings a day), one odd read.
        for i in 0..12u64 {
            let at = common::NOW - 6 * DAY_MS + i as i64 * DAY_MS / 2;
            let level = if i == 5 { 20.0 } else { 60.0 - 1.5 * i as f64 };
            let mut r = report("FC-1", i + 1, at, json!({"pages_total": 100 * i}));
            r["supplies"] = json!([
                {"slot": "toner.black", "kind": "toner", "level_pct": level, "part_number": "TN-45K", "state": "ok"},
                {"slot": "staples", "kind": "staples", "state": "unknown"}
            ]);
            let (status, ack) = post(&f, &token, r).await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        let (status, s) = call(
            &f.app,
            "GET",
            "/api/v1/devices/FC-1/supplies",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{store}: {s}");
        let toner = &s["supplies"][0];
        assert_eq!(toner["supply"]["slot"], "toner.black", "{store}: {s}");
        let per_day = toner["per_day"].as_f64().expect("per day");
        let days_left = toner["days_left"].as_f64().expect("days left");
        assert!((per_day - 3.0).abs() < 0.1, "{store}: {s}");
        // 43.5 % left at 3 a day.
        assert!((days_left - 14.5).abs() < 0.5, "{store}: {s}");
        assert!(toner["empty_at"].is_string(), "{store}: {s}");
        assert!(
            s["supplies"][1].get("days_left").is_none(),
            "{store}: no levels, no forecast: {s}"
        );
        f.finish().await;
    }
}

#[tokio::test]
async fn a_supply_running_out_is_a_trouble_until_a_new_cartridge_is_in() {
    for (store, f) in fixtures("a_supply_running_out").await {
        let token = enroll(&f, "RUN-1").await;
        let send = |seq: u64, serial: &str, level: f64, state: &str| {
            let mut r = report(
                "RUN-1",
                seq,
                common::NOW + seq as i64,
                json!({"pages_total": seq}),
            );
            r["supplies"] = json!([{"slot": "toner.cyan", "kind": "toner", "color": "cyan",
                "level_pct": level, "state": state, "part_number": "TN-45C", "serial": serial}]);
            r
        };
        let troubles = || async {
            let (_, t) = call(
                &f.app,
                "GET",
                "/api/v1/troubles?device=RUN-1&state=all",
                Some(&f.admin),
                None,
            )
            .await;
            t["troubles"].as_array().cloned().unwrap_or_default()
        };
        let live = |all: &[Value]| -> Vec<(String, String)> {
            all.iter()
                .filter(|t| t["state"] != "resolved")
                .map(|t| {
                    (
                        t["rule_id"].as_str().unwrap_or_default().to_owned(),
                        t["severity"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        for (seq, serial, level, state) in [(1, "C-1", 40.0, "ok"), (2, "C-1", 39.0, "ok")] {
            let (status, ack) = post(&f, &token, send(seq, serial, level, state)).await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        assert!(troubles().await.is_empty(), "{store}");
        post(&f, &token, send(3, "C-1", 8.0, "low")).await;
        post(&f, &token, send(4, "C-1", 7.0, "low")).await;
        let t = troubles().await;
        assert_eq!(
            live(&t),
            [("supply-low:toner.cyan".to_owned(), "minor".to_owned())],
            "{store}: {t:?}"
        );
        assert!(
            t[0]["action"]
                .as_str()
                .is_some_and(|a| a.contains("Order part TN-45C")),
            "{store}: {t:?}"
        );
        post(&f, &token, send(5, "C-1", 0.0, "empty")).await;
        let t = troubles().await;
        assert_eq!(
            live(&t),
            [("supply-empty:toner.cyan".to_owned(), "major".to_owned())],
            "{store}: {t:?}"
        );
        // A major trouble keeps the device out of rollouts.
        let (_, about) = call(&f.app, "GET", "/device/v1/about", Some(&token), None).await;
        assert_eq!(about["rollout_eligible"], false, "{store}: {about}");
        // A new cartridge resolves it.
        post(&f, &token, send(6, "C-2", 100.0, "ok")).await;
        let t = troubles().await;
        assert!(live(&t).is_empty(), "{store}: {t:?}");
        assert_eq!(t.len(), 2, "{store}: {t:?}");
        f.finish().await;
    }
}

fn utc(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .expect("an instant")
        .as_millisecond()
}

#[tokio::test]
async fn a_month_is_read_for_billing_with_estimated_edges_and_a_controller_swap() {
    for (store, f) in fixtures("a_month_is_read").await {
        // MR-1 has no site (UTC edges); MR-2 is in Berlin; MR-3 never reported.
        let one = enroll(&f, "MR-1").await;
        let two = enroll(&f, "MR-2").await;
        enroll(&f, "MR-3").await;
        let (s, v) = call(
            &f.app,
            "PUT",
            "/api/v1/sites/berlin",
            Some(&f.admin),
            json_body(&json!({"timezone": "Europe/Berlin", "windows": []})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let (s, v) = call(
            &f.app,
            "PUT",
            "/api/v1/devices/MR-2/labels",
            Some(&f.admin),
            json_body(&json!({"site": "berlin", "tags": []})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let one_reads = [
            ("2026-07-31T12:00:00Z", 1000.0, 100.0),
            // Five minutes after the edge: the start is read, not estimated.
            ("2026-08-01T00:05:00Z", 1010.0, 101.0),
            ("2026-08-15T09:00:00Z", 1500.0, 150.0),
            // The controller was replaced: the total starts again.
            ("2026-08-20T09:00:00Z", 30.0, 160.0),
            ("2026-08-31T12:00:00Z", 80.0, 170.0),
            ("2026-09-01T12:00:00Z", 100.0, 180.0),
        ];
        for (i, (at, total, color)) in one_reads.iter().enumerate() {
            let (status, ack) = post(
                &f,
                &one,
                report(
                    "MR-1",
                    i as u64 + 1,
                    utc(at),
                    json!({"pages_total": total, "pages_color": color, "fuser_temp_c": 180}),
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        // Berlin's August starts at 22:00 UTC on 31 July (summer time).
        for (i, (at, total)) in [
            ("2026-07-31T21:55:00Z", 500.0),
            ("2026-08-31T10:00:00Z", 900.0),
            ("2026-09-01T10:00:00Z", 948.0),
        ]
        .iter()
        .enumerate()
        {
            let (status, ack) = post(
                &f,
                &two,
                report("MR-2", i as u64 + 1, utc(at), json!({"pages_total": total})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        let (s, page) = call(
            &f.app,
            "GET",
            "/api/v1/meter-reads?period=2026-08&limit=2",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {page}");
        assert_eq!(page["next"], "MR-2", "{store}: {page}");
        let (_, rest) = call(
            &f.app,
            "GET",
            "/api/v1/meter-reads?period=2026-08&after=MR-2",
            Some(&f.admin),
            None,
        )
        .await;
        assert!(rest.get("next").is_none(), "{store}: {rest}");
        let d1 = &page["devices"][0];
        assert_eq!(d1["since"], "2026-08-01T00:00:00.000Z", "{store}: {d1}");
        let meters = d1["meters"].as_array().expect("meters");
        assert_eq!(meters.len(), 2, "{store}: only billing meters: {d1}");
        let total = &meters[0];
        assert_eq!(total["meter"], "total", "{store}: {d1}");
        assert_eq!(total["start"]["value"], 1010.0, "{store}: {total}");
        assert_eq!(total["start"]["how"], "read", "{store}: {total}");
        assert_eq!(total["start"]["estimated"], false, "{store}: {total}");
        // Halfway between 80 (12:00 on the 31st) and 100 (12:00 on the 1st).
        assert_eq!(total["end"]["value"], 90.0, "{store}: {total}");
        assert_eq!(total["end"]["how"], "interpolated", "{store}: {total}");
        assert_eq!(total["end"]["estimated"], true, "{store}: {total}");
        // 1010 → 1500 on the old controller, 30 → 90 on the new one.
        assert_eq!(total["usage"], 550.0, "{store}: {total}");
        assert_eq!(total["reset"], true, "{store}: {total}");
        let color = &meters[1];
        assert_eq!(color["meter"], "color", "{store}: {d1}");
        assert_eq!(color["usage"], 74.0, "{store}: {color}");
        assert!(color.get("reset").is_none(), "{store}: {color}");

        let d2 = &page["devices"][1];
        assert_eq!(d2["site"], "berlin", "{store}: {d2}");
        assert_eq!(d2["since"], "2026-07-31T22:00:00.000Z", "{store}: {d2}");
        let t2 = &d2["meters"][0];
        assert_eq!(t2["start"]["value"], 500.0, "{store}: {t2}");
        assert_eq!(t2["start"]["how"], "read", "{store}: {t2}");
        // Berlin's September starts at 22:00 UTC: 12 of the 24 hours from 900 to 948.
        assert_eq!(t2["end"]["value"], 924.0, "{store}: {t2}");
        assert_eq!(t2["usage"], 424.0, "{store}: {t2}");

        let d3 = &rest["devices"][0];
        assert_eq!(d3["device_id"], "MR-3", "{store}: {rest}");
        assert_eq!(d3["meters"], json!([]), "{store}: {rest}");

        for bad in ["2026-13", "last-month", "2026-08&limit=0"] {
            let (s, v) = call(
                &f.app,
                "GET",
                &format!("/api/v1/meter-reads?period={bad}"),
                Some(&f.admin),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{store}: {bad}: {v}");
        }
    }
}

#[tokio::test]
async fn the_meter_read_schedule_asks_connected_devices_at_the_month_edge_once() {
    for (store, f) in fixtures("the_meter_read_schedule").await {
        let token = enroll(&f, "MRS-1").await;
        // MRS-2 is in Berlin, where October starts two hours before it does in UTC.
        let berlin = enroll(&f, "MRS-2").await;
        for (method, uri, body) in [
            (
                "PUT",
                "/api/v1/sites/berlin",
                json!({"timezone": "Europe/Berlin", "windows": []}),
            ),
            (
                "PUT",
                "/api/v1/devices/MRS-2/labels",
                json!({"site": "berlin", "tags": []}),
            ),
        ] {
            let (s, v) = call(&f.app, method, uri, Some(&f.admin), json_body(&body)).await;
            assert_eq!(s, StatusCode::OK, "{store}: {v}");
        }
        let fx = &f;
        let poll_as = |token: String| async move {
            let (s, v) = call(
                &fx.app,
                "GET",
                "/device/v1/poll?wait_s=0",
                Some(&token),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{store}: {v}");
            v.to_string()
        };
        let poll = || poll_as(token.clone());
        let poll_berlin = || poll_as(berlin.clone());
        poll().await;
        poll_berlin().await;
        let mut asked = std::collections::HashSet::new();
        // Mid-month: nothing is asked.
        fleetcare_server::life::reads::run_schedule(&f.state, &mut asked).await;
        assert!(!poll().await.contains("request_report"), "{store}");
        let go = |to: &str| {
            let now = fleetcare_core::clock::Clock::now_ms(&f.clock);
            f.clock.advance(std::time::Duration::from_millis(
                u64::try_from(utc(to) - now).expect("the edge is ahead"),
            ));
        };
        // Berlin's edge: only the Berlin device is asked.
        go("2026-09-30T22:03:00Z");
        poll().await;
        poll_berlin().await;
        fleetcare_server::life::reads::run_schedule(&f.state, &mut asked).await;
        assert!(poll_berlin().await.contains("request_report"), "{store}");
        assert!(!poll().await.contains("request_report"), "{store}");
        // UTC's edge: the device without a site.
        go("2026-10-01T00:02:00Z");
        poll().await;
        poll_berlin().await;
        fleetcare_server::life::reads::run_schedule(&f.state, &mut asked).await;
        assert!(poll().await.contains("request_report"), "{store}");
        assert!(!poll_berlin().await.contains("request_report"), "{store}");
        // Once per edge.
        fleetcare_server::life::reads::run_schedule(&f.state, &mut asked).await;
        assert!(!poll().await.contains("request_report"), "{store}");
        // Off: not asked, even at a new edge (as a center restarted would see it).
        let (s, v) = call(
            &f.app,
            "PUT",
            "/api/v1/meter-read-schedule",
            Some(&f.admin),
            json_body(&json!({"enabled": false})),
        )
        .await;
        assert_eq!(
            (s, &v),
            (StatusCode::OK, &json!({"enabled": false})),
            "{store}"
        );
        fleetcare_server::life::reads::run_schedule(&f.state, &mut Default::default()).await;
        assert!(!poll().await.contains("request_report"), "{store}");
    }
}

#[tokio::test]
async fn a_supply_trouble_says_how_many_days_are_left() {
    for (store, f) in fixtures("a_supply_trouble_says_days").await {
        let token = enroll(&f, "DAYS-1").await;
        // Four points a day for ten days: 50 % down to 10 %, low at the end.
        for i in 0..=10u64 {
            let level = 50.0 - 4.0 * i as f64;
            let mut r = report(
                "DAYS-1",
                i + 1,
                common::NOW - (10 - i as i64) * DAY_MS,
                json!({"pages_total": 1000 * i}),
            );
            r["supplies"] = json!([{"slot": "toner.black", "kind": "toner", "color": "black",
                "level_pct": level, "state": if level <= 10.0 { "low" } else { "ok" },
                "part_number": "TN-45K"}]);
            let (status, ack) = post(&f, &token, r).await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        let t = fleetcare_testkit::eventually(
            "the low toner is a trouble",
            std::time::Duration::from_secs(10),
            || async {
                let (_, t) = call(
                    &f.app,
                    "GET",
                    "/api/v1/troubles?device=DAYS-1",
                    Some(&f.admin),
                    None,
                )
                .await;
                t["troubles"].as_array()?.first().cloned()
            },
        )
        .await;
        assert!(
            t["title"]
                .as_str()
                .is_some_and(|s| s.contains("about 2.5 days left")),
            "{store}: {t}"
        );
        assert!(t.to_string().contains("TN-45K"), "{store}: {t}");
        assert!(
            t.get("resolves_at").is_none(),
            "{store}: only the device's reports resolve it: {t}"
        );
        let pages_since = || async {
            let (_, s) = call(
                &f.app,
                "GET",
                "/api/v1/devices/DAYS-1/supplies",
                Some(&f.admin),
                None,
            )
            .await;
            s["supplies"][0]["pages_since_installed"].clone()
        };
        assert_eq!(
            pages_since().await,
            json!(10_000.0),
            "{store}: since its first report"
        );
        // A new cartridge: its pages count from when its serial appeared.
        for (seq, pages, serial) in [(12, 10_500, "K-2"), (13, 11_200, "K-2")] {
            let mut r = report(
                "DAYS-1",
                seq,
                common::NOW + (seq as i64 - 11) * HOUR_MS,
                json!({"pages_total": pages}),
            );
            r["supplies"] = json!([{"slot": "toner.black", "kind": "toner", "color": "black",
                "level_pct": 100.0, "state": "ok", "part_number": "TN-45K", "serial": serial}]);
            let (status, ack) = post(&f, &token, r).await;
            assert_eq!(status, StatusCode::OK, "{store}: {ack}");
        }
        assert_eq!(pages_since().await, json!(700.0), "{store}");
    }
}
