//! The northbound API end to end over TLS against the fake control plane (real config parser,
//! admission and planner on shg-flows' tables): roles × endpoints, bad input, versions,
//! dry runs, priorities within bounds, services, events, rate limits, status, congestion,
//! trace, metrics.

mod api_support;

use api_support::*;
use serde_json::{json, Value};
use shg_controller::api::control::DeviceView;
use shg_controller::api::ratelimit::Limits;
use shg_controller::api::routes::ROUTES;
use std::io::{BufRead, BufReader, Write};

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    let p = pattern.replace("{name}", "iptv");
    if p == "/v1/trace" {
        "/v1/trace?service=iptv&destination=wan".into()
    } else {
        p
    }
}

/// What the state looks like (to check that a refused request changed nothing).
fn snapshot(s: &TestServer) -> (u64, String, Vec<String>) {
    let st = shg_controller::api::ControlPlane::policy(&s.fake);
    let sw = s.fake.switch();
    let flows: Vec<String> = sw
        .observe(0)
        .flows
        .iter()
        .map(|f| {
            format!(
                "{} {} {:?} {:?} {:x}",
                f.table_id, f.priority, f.r#match, f.instructions, f.cookie
            )
        })
        .collect();
    (st.version, st.text, flows)
}

#[test]
fn api_every_route_checks_the_role() {
    let s = TestServer::start();
    let bad_token = Who::Token(format!("shg_00000000_{}", "0".repeat(64)));
    for r in ROUTES {
        let path = concrete(r.pattern);
        // Writes carry an empty object: an allowed role gets past the role check to 400.
        let (path, body) = match r.method {
            "PUT" => (format!("{path}?dry_run=true"), Some("{}")),
            "DELETE" => (format!("{path}?dry_run=true"), None),
            _ => (path, None),
        };
        for (name, who, role) in [
            ("nobody", Who::Nobody, None),
            ("bad token", bad_token.clone(), None),
            ("rogue cert", Who::Rogue, None),
            ("isp", Who::Isp, Some("isp")),
            ("user", s.user(), Some("user")),
            ("monitor", s.monitor(), Some("monitor")),
        ] {
            let resp = s.req(&who, r.method, &path, body);
            let expect_ok =
                r.roles.is_empty() || role.is_some_and(|x| r.roles.iter().any(|y| y.name() == x));
            let what = format!("{} {} as {name}", r.method, path);
            if expect_ok {
                assert!(
                    resp.status < 300 || (r.method != "GET" && resp.status == 400),
                    "{what}: {} {}",
                    resp.status,
                    resp.text()
                );
            } else if role.is_none() {
                assert_eq!(resp.status, 401, "{what}: {}", resp.text());
                assert!(resp.header("www-authenticate").is_some(), "{what}");
                assert_eq!(resp.json()["error"], "unauthenticated");
            } else {
                assert_eq!(resp.status, 403, "{what}: {}", resp.text());
                assert_eq!(resp.json()["error"], "forbidden");
            }
        }
    }
    let (_, who) = s.json(&Who::Isp, "GET", "/v1/whoami", None);
    assert_eq!(who["role"], "isp");
    let (_, who) = s.json(&s.monitor(), "GET", "/v1/whoami", None);
    assert_eq!(who["role"], "monitor");
    let r = s.req(&Who::Rogue, "GET", "/v1/status", None);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("client certificate not accepted"),
        "{}",
        r.text()
    );
    assert_eq!(s.req(&s.user(), "GET", "/v1/nothing", None).status, 404);
    let r = s.req(&s.user(), "POST", "/v1/status", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn api_bad_input_is_refused_and_changes_nothing() {
    let s = TestServer::start();
    let before = snapshot(&s);
    let (_, doc) = s.json(&Who::Isp, "GET", "/v1/policy", None);

    // Malformed JSON: 400 with the position.
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/policy", Some("{\"gateway\": {,}"));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"], "bad_json");
    assert_eq!(v["line"], 1);
    assert!(v["column"].as_u64().unwrap() > 0);
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some("{\"services\": {\"iptv\": {\"priority\": 3}"),
    );
    assert_eq!((st, v["error"].as_str()), (400, Some("bad_json")), "{v}");

    // Unknown field: 400 naming it.
    let mut d = doc.clone();
    d["services"]["nas"]["colour"] = json!("red");
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/policy", Some(&d.to_string()));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "services.nas.colour");
    assert!(
        v["message"].as_str().unwrap().contains("unknown field"),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"prio": 3}}}"#),
    );
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("services.iptv.prio")),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {}, "extra": 1}"#),
    );
    assert_eq!((st, v["field"].as_str()), (400, Some("extra")), "{v}");

    // Invalid value: 400 naming the key, with the config parser's message.
    let mut d = doc.clone();
    d["services"]["nas"]["min_rate"] = json!("0mbit");
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/policy", Some(&d.to_string()));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"], "invalid_policy");
    assert_eq!(v["field"], "services.nas.min_rate");
    assert!(
        v["message"].as_str().unwrap().contains("must be > 0"),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"priority": "high"}}}"#),
    );
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("services.iptv.priority")),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"max_rate": "6mbps"}}}"#),
    );
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("services.iptv.max_rate")),
        "{v}"
    );
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/services/new", Some("[1]"));
    assert_eq!(st, 400, "{v}");

    // Empty body, wrong media type, bad query, bad If-Match.
    assert_eq!(s.req(&Who::Isp, "PUT", "/v1/policy", Some("")).status, 400);
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(
        s.req(
            &Who::Isp,
            "PUT",
            "/v1/policy?dry_run=maybe",
            Some(&doc.to_string())
        )
        .status,
        400
    );
    assert_eq!(
        s.req(
            &Who::Isp,
            "PUT",
            "/v1/policy?dryrun=true",
            Some(&doc.to_string())
        )
        .status,
        400
    );
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("If-Match", "yesterday")],
        Some(doc.to_string().as_bytes()),
    );
    assert_eq!(r.status, 400);

    // Body over the limit: 413 before the body is read.
    let big = vec![b' '; 70 * 1024];
    let r = s.req_h(&Who::Isp, "PUT", "/v1/policy", &[], Some(&big));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "body_too_large");
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("Content-Length", "100000000")],
        Some(b"{"),
    );
    assert_eq!(r.status, 413);

    // Chunked bodies are not accepted.
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("Transfer-Encoding", "chunked")],
        None,
    );
    assert_eq!(r.status, 501);

    assert_eq!(snapshot(&s), before, "a refused request changed something");
}

#[test]
fn api_versions_etag_if_match_and_idempotent_put() {
    let s = TestServer::start();
    let r = s.req(&Who::Isp, "GET", "/v1/policy", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let doc = r.json();

    // The same policy again: accepted, unchanged, same version, no switch change.
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/policy", Some(&doc.to_string()));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["version"].as_u64(), v["changed"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(v["plan"]["changes"].as_array().unwrap().is_empty(), "{v}");

    let mut d = doc.clone();
    d["services"]["nas"]["max_rate"] = json!("12mbit");
    let body = d.to_string();
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("If-Match", "\"v1\"")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"v2\""));
    let v = r.json();
    assert_eq!(v["changed"], true);
    assert_eq!(v["applied"], true);
    assert!(
        v["plan"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("meter=6")),
        "{v}"
    );

    // A stale If-Match: 412, nothing changes.
    let before = snapshot(&s);
    let mut d2 = doc.clone();
    d2["services"]["nas"]["max_rate"] = json!("5mbit");
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("If-Match", "\"v1\"")],
        Some(d2.to_string().as_bytes()),
    );
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["current_version"], 2);
    assert_eq!(snapshot(&s), before);
    let r = s.req_h(
        &s.user(),
        "PUT",
        "/v1/priorities",
        &[("If-Match", "v1")],
        Some(br#"{"services": {"iptv": {"priority": 4}}}"#),
    );
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(snapshot(&s), before);

    // The TOML form of the config file is accepted as well.
    let r = s.req_h(
        &Who::Isp,
        "PUT",
        "/v1/policy",
        &[("Content-Type", "application/toml")],
        Some(GATEWAY.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 3);
    let (_, back) = s.json(&Who::Isp, "GET", "/v1/policy", None);
    assert_eq!(back, doc);
}

#[test]
fn api_dry_run_plans_and_changes_nothing() {
    let s = TestServer::start();
    let before = snapshot(&s);
    let (_, doc) = s.json(&Who::Isp, "GET", "/v1/policy", None);
    let mut d = doc.clone();
    d["services"]["nas"]["reach"] = json!(["lan", "wan"]);
    let (st, v) = s.json(
        &Who::Isp,
        "PUT",
        "/v1/policy?dry_run=true",
        Some(&d.to_string()),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["applied"], false);
    assert_eq!(v["version"], 1);
    assert_eq!(v["admission"]["admitted"], true);
    assert_eq!(v["plan"]["services"], json!(["~nas"]));
    let changes = v["plan"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    // Reaching the WAN changes flows only (ovs-ofctl flow_mod syntax), no meter or queue.
    assert!(
        changes
            .iter()
            .all(|c| ["ADD ", "MOD_STRICT ", "DEL_STRICT "]
                .iter()
                .any(|p| c.as_str().unwrap().starts_with(p))),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.as_str().unwrap().contains("output:1")),
        "{changes:?}"
    );
    assert_eq!(snapshot(&s), before);

    // A refused dry run: 200 with the verdict naming the resource and the holders.
    let mut d = doc.clone();
    d["services"]["nas"]["min_rate"] = json!("15mbit");
    let (st, v) = s.json(
        &Who::Isp,
        "PUT",
        "/v1/policy?dry_run=true",
        Some(&d.to_string()),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["admission"]["admitted"], false);
    let reasons = v["admission"]["reasons"].to_string();
    assert!(
        reasons.contains("uplink up") && reasons.contains("held by nas 15mbit"),
        "{reasons}"
    );
    // The same without dry_run: 422, nothing changes.
    let (st, v) = s.json(&Who::Isp, "PUT", "/v1/policy", Some(&d.to_string()));
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"], "admission_refused");
    assert!(
        v["admission"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("short by"),
        "{v}"
    );
    assert_eq!(snapshot(&s), before);

    // Dry runs of service and priority edits change nothing either.
    let (st, v) = s.json(
        &Who::Isp,
        "DELETE",
        "/v1/services/videocall?dry_run=true",
        None,
    );
    assert_eq!(
        (st, v["plan"]["services"].clone()),
        (200, json!(["-videocall"])),
        "{v}"
    );
    // Deleting a service another one reaches is the config parser's error.
    let (st, v) = s.json(&Who::Isp, "DELETE", "/v1/services/nas?dry_run=true", None);
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("services.iptv.reach[3]")),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities?dry_run=true",
        Some(r#"{"services": {"iptv": {"priority": 2}}}"#),
    );
    assert_eq!((st, v["dry_run"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(snapshot(&s), before);
}

#[test]
fn api_user_priorities_within_the_isp_bounds() {
    let s = TestServer::start();
    let (_, p) = s.json(&s.user(), "GET", "/v1/priorities", None);
    assert_eq!(p["services"]["iptv"]["priority"], 3);
    assert_eq!(p["services"]["iptv"]["bounds"], json!([2, 4]));
    assert_eq!(p["services"]["iptv"]["isp_priority"], 2);

    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"priority": 4}}}"#),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], 2);
    assert!(
        v["plan"]["changes"]
            .to_string()
            .contains("QUEUE port=1 id=2"),
        "{v}"
    );
    let st = shg_controller::api::ControlPlane::policy(&s.fake);
    assert_eq!(st.policy.services["iptv"].user.priority, Some(4));
    assert!(st.text.contains("priority = 4"), "{}", st.text);

    let before = snapshot(&s);
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"priority": 1}}}"#),
    );
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"], "outside_bounds");
    assert_eq!(v["field"], "services.iptv.priority");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("outside the ISP's bounds 2..=4"),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"max_rate": "9mbit"}}}"#),
    );
    assert_eq!(st, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("above the ISP's cap 8mbit"),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"videocall": {"max_rate": "1mbit"}}}"#),
    );
    assert_eq!(st, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("below the ISP's guarantee"),
        "{v}"
    );
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"nothere": {"priority": 1}}}"#),
    );
    assert_eq!(st, 404, "{v}");
    // The ISP does not use this endpoint (it owns the bounds), a monitor cannot write.
    assert_eq!(
        s.req(
            &Who::Isp,
            "PUT",
            "/v1/priorities",
            Some(r#"{"services": {}}"#)
        )
        .status,
        403
    );
    assert_eq!(
        s.req(
            &s.monitor(),
            "PUT",
            "/v1/priorities",
            Some(r#"{"services": {}}"#)
        )
        .status,
        403
    );
    assert_eq!(snapshot(&s), before);

    // null returns to the ISP's value.
    let (st, v) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"priority": null, "max_rate": null}}}"#),
    );
    assert_eq!(st, 200, "{v}");
    let st = shg_controller::api::ControlPlane::policy(&s.fake);
    assert_eq!(st.policy.services["iptv"].user, Default::default());
    assert_eq!(st.policy.services["iptv"].effective_priority(), 2);
}

#[test]
fn api_services_are_created_replaced_and_deleted_by_the_isp() {
    let s = TestServer::start();
    let svc = json!({"port": 13, "mac": "02:00:00:00:01:09", "ipv4": ["198.18.1.19"], "class": "bulk",
                     "queue": 9, "min_rate": "1mbit", "reach": ["wan"]});
    assert_eq!(
        s.req(
            &s.user(),
            "PUT",
            "/v1/services/gamebox",
            Some(&svc.to_string())
        )
        .status,
        403
    );
    let (st, v) = s.json(
        &Who::Isp,
        "PUT",
        "/v1/services/gamebox",
        Some(&svc.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["plan"]["services"], json!(["+gamebox"]));
    let (st, v) = s.json(&s.user(), "GET", "/v1/services/gamebox", None);
    assert_eq!(st, 200);
    assert_eq!(
        (v["queue"].as_u64(), v["effective_priority"].as_u64()),
        (Some(9), Some(4))
    );
    let (_, list) = s.json(&s.monitor(), "GET", "/v1/services", None);
    assert_eq!(list["services"].as_array().unwrap().len(), 4);

    // Replacing keeps the user's choices unless the body says otherwise.
    let (_, iptv) = s.json(&Who::Isp, "GET", "/v1/services/iptv", None);
    let mut body = iptv.clone();
    let m = body.as_object_mut().unwrap();
    for k in ["name", "effective_priority", "effective_max_rate", "user"] {
        m.remove(k);
    }
    m.insert("max_rate".into(), json!("7mbit"));
    let (st, v) = s.json(
        &Who::Isp,
        "PUT",
        "/v1/services/iptv",
        Some(&body.to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let p = shg_controller::api::ControlPlane::policy(&s.fake).policy;
    assert_eq!(p.services["iptv"].max_rate, Some(7_000_000));
    assert_eq!(p.services["iptv"].user.priority, Some(3));

    // A clash with another service is the config parser's error, naming the key.
    let mut clash = svc.clone();
    clash["queue"] = json!(3);
    let (st, v) = s.json(
        &Who::Isp,
        "PUT",
        "/v1/services/other",
        Some(&clash.to_string()),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "services.other.port", "{v}");
    assert!(
        v["errors"]
            .to_string()
            .contains("queue 3 is already used by services.nas"),
        "{v}"
    );

    let (st, v) = s.json(&Who::Isp, "DELETE", "/v1/services/gamebox", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        s.req(&s.user(), "GET", "/v1/services/gamebox", None).status,
        404
    );
    assert_eq!(
        s.req(&Who::Isp, "DELETE", "/v1/services/gamebox", None)
            .status,
        404
    );
}

#[test]
fn api_event_stream_sees_a_policy_change() {
    let s = TestServer::start();
    let mut conn = connect(s.addr, &s.monitor());
    write!(
        conn,
        "GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        s.monitor
    )
    .unwrap();
    conn.flush().unwrap();
    let mut rd = BufReader::new(conn);
    let head = read_resp(&mut rd);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut next_event = || {
        let (mut ev, mut data) = (String::new(), String::new());
        loop {
            let mut l = String::new();
            rd.read_line(&mut l).unwrap();
            let l = l.trim_end();
            if let Some(x) = l.strip_prefix("event: ") {
                ev = x.into();
            } else if let Some(x) = l.strip_prefix("data: ") {
                data = x.into();
            } else if l.is_empty() && !ev.is_empty() {
                return (ev, serde_json::from_str::<Value>(&data).unwrap());
            }
        }
    };
    let (ev, data) = next_event();
    assert_eq!((ev.as_str(), data["version"].as_u64()), ("hello", Some(1)));
    let (st, _) = s.json(
        &s.user(),
        "PUT",
        "/v1/priorities",
        Some(r#"{"services": {"iptv": {"priority": 4}}}"#),
    );
    assert_eq!(st, 200);
    let (ev, data) = next_event();
    assert_eq!(ev, "policy");
    assert_eq!(data["type"], "policy");
    assert_eq!(data["version"], 2);
    assert_eq!(data["services"], json!(["~iptv"]));
    assert!(
        data["origin"]
            .as_str()
            .unwrap()
            .starts_with("user PUT /v1/priorities"),
        "{data}"
    );
    s.fake.set_devices(vec![DeviceView {
        udn: "uuid:tv".into(),
        friendly_name: "Living room TV".into(),
        device_type: "urn:schemas-upnp-org:device:MediaRenderer:1".into(),
        address: "198.18.0.50".into(),
        interface: "lan1".into(),
        manufacturer: String::new(),
        model_name: String::new(),
        last_seen_s: 1,
        expires_in_s: 1700,
    }]);
    let (ev, data) = next_event();
    assert_eq!(
        (ev.as_str(), data["udn"].as_str()),
        ("device", Some("uuid:tv"))
    );
    let (_, d) = s.json(&s.user(), "GET", "/v1/devices", None);
    assert_eq!(d["devices"][0]["friendly_name"], "Living room TV");
}

#[test]
fn api_floods_are_rate_limited_per_client() {
    let mut c = test_config();
    c.limits = Limits {
        burst: 5,
        per_second: 1,
        max_clients: 100,
    };
    let s = TestServer::start_with(c);
    let codes: Vec<u16> = (0..12)
        .map(|_| s.req(&s.user(), "GET", "/v1/status", None).status)
        .collect();
    assert!(codes.iter().take(5).all(|&c| c == 200), "{codes:?}");
    assert!(
        codes.iter().filter(|&&c| c == 429).count() >= 6,
        "{codes:?}"
    );
    let r = s.req(&s.user(), "GET", "/v1/status", None);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Other clients go on.
    assert_eq!(
        s.req(&Who::Token(s.user2.clone()), "GET", "/v1/status", None)
            .status,
        200
    );
    assert_eq!(s.req(&Who::Isp, "GET", "/v1/status", None).status, 200);
    let m = s.req(&Who::Isp, "GET", "/metrics", None).text();
    assert!(
        m.contains("shg_api_rate_limited_total 7") || m.contains("shg_api_rate_limited_total 8"),
        "{m}"
    );
}

#[test]
fn api_status_congestion_and_grades_from_samples() {
    let s = TestServer::start();
    let (_, st) = s.json(&s.user(), "GET", "/v1/status", None);
    assert_eq!(st["measured"], false);
    let (a, b) = congested_samples();
    s.fake.feed(a);
    s.fake.feed(b);
    let st = wait_for(10, || {
        let (_, v) = s.json(&s.user(), "GET", "/v1/status", None);
        (v["measured"] == true).then_some(v)
    });
    assert_eq!(st["uplink"]["achieved_bps"], 19_000_000);
    let svc = |n: &str| {
        st["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    let call = svc("videocall");
    assert_eq!(call["achieved_bps"], 3_000_000);
    assert_eq!(call["guarantee_bps"], 6_000_000);
    assert_eq!(call["drops"], 40);
    assert_eq!(call["delay_p99_ms"], 45.0);
    assert_eq!(call["demand"], true);
    assert_eq!(call["grade"], "F");
    assert_eq!(svc("nas")["achieved_bps"], 16_000_000);
    assert_eq!(svc("nas")["grade"], "A");
    assert_eq!(svc("iptv")["grade"], "A");

    let (_, c) = s.json(&s.monitor(), "GET", "/v1/congestion", None);
    assert_eq!(c["congested"], true, "{c}");
    let r = &c["resources"][0];
    assert_eq!(r["resource"], "uplink up");
    assert_eq!(r["since_ms"], 1_700_000_001_000u64);
    assert_eq!(r["by"][0]["service"], "nas");
    assert_eq!(r["by"][0]["excess_bps"], 15_000_000);
    assert_eq!(r["hurts"][0]["service"], "videocall");
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("mostly used by nas"),
        "{r}"
    );

    let m = s.req(&s.monitor(), "GET", "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    for needle in [
        "shg_service_guarantee_bits{service=\"videocall\"} 6000000",
        "shg_service_achieved_bits{service=\"nas\"} 16000000",
        "shg_queue_tx_bytes_total{port=\"1\",queue=\"3\"} 2000000",
        "shg_queue_sojourn_seconds{port=\"1\",queue=\"1\",quantile=\"0.99\"} 0.045",
        "shg_service_grade{service=\"videocall\"} 4",
        "shg_switch_connected 1",
        "# TYPE shg_queue_drops_overflow_total counter",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert_eq!(s.req(&s.user(), "GET", "/metrics", None).status, 403);
}

#[test]
fn api_trace_explains_the_installed_pipeline() {
    let s = TestServer::start();
    let (st, t) = s.json(
        &s.user(),
        "GET",
        "/v1/trace?service=iptv&destination=wan",
        None,
    );
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["verdict"], "forwarded", "{t}");
    assert_eq!(t["queue"], 2);
    assert_eq!(t["meters"], json!([4]), "iptv's cap meter is 2 × queue");
    assert!(
        t["outputs"].as_array().unwrap().contains(&json!("uplink")),
        "{t}"
    );
    let rules: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 3, "{t}");
    assert!(
        rules[0].starts_with("spoof_allow") && rules[1].starts_with("meter_up"),
        "{rules:?}"
    );

    let (_, t) = s.json(
        &s.user(),
        "GET",
        "/v1/trace?service=nas&destination=wan",
        None,
    );
    assert_eq!(t["verdict"], "dropped", "{t}");
    let (_, t) = s.json(
        &s.user(),
        "GET",
        "/v1/trace?service=videocall&destination=iptv",
        None,
    );
    assert_eq!(t["verdict"], "dropped", "{t}");
    assert!(t["reason"].as_str().unwrap().contains("deny"), "{t}");
    let (_, t) = s.json(
        &s.user(),
        "GET",
        "/v1/trace?service=iptv&destination=nas",
        None,
    );
    assert_eq!(t["verdict"], "forwarded", "{t}");
    assert_eq!(t["outputs"], json!(["nas"]));

    assert_eq!(
        s.req(
            &s.user(),
            "GET",
            "/v1/trace?service=nope&destination=wan",
            None
        )
        .status,
        404
    );
    assert_eq!(
        s.req(
            &s.user(),
            "GET",
            "/v1/trace?service=iptv&destination=mars",
            None
        )
        .status,
        400
    );
    assert_eq!(
        s.req(&s.user(), "GET", "/v1/trace?service=iptv", None)
            .status,
        400
    );
}

#[test]
fn api_plain_metrics_listener_is_loopback_only() {
    use shg_controller::api::control::Role;
    use shg_controller::api::tokens::TokenStore;
    let fake = shg_controller::api::fake::FakeControlPlane::new(GATEWAY, ports()).unwrap();
    let api = shg_controller::api::Api::new(
        std::sync::Arc::new(fake),
        TokenStore::in_memory(),
        None,
        test_config(),
    );
    let _ = Role::Monitor;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let e = shg_controller::api::serve_plain_metrics(api.clone(), l, async {}).await;
        assert!(e.is_err());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let srv = tokio::spawn(shg_controller::api::serve_plain_metrics(api, l, async {
            let _ = rx.await;
        }));
        let text = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("shg_policy_version 1"), "{text}");
        let _ = tx.send(());
        srv.await.unwrap().unwrap();
    });
}

#[test]
fn api_tls_1_2_and_1_3_only() {
    let s = TestServer::start();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &s.addr.to_string(),
                "-servername",
                "localhost",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = run(&["-tls1_2"]);
    assert!(ok && out.contains("TLSv1.2"), "{out}");
    let (ok, out) = run(&["-tls1_3"]);
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    // The client is allowed TLS 1.1 (security level 0); the server refuses it.
    let (ok, out) = run(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "TLS 1.1 was accepted: {out}");
}
