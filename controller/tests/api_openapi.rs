//! docs/openapi.json against the running server: every documented operation is a route with the
//! same roles (and every route is documented), answers as documented (status code, content
//! type, the schema's required fields and types), and its documented errors happen.

mod api_support;

use api_support::*;
use serde_json::{json, Value};
use shg_controller::api::routes::{OPENAPI, ROUTES};
use std::collections::BTreeSet;

fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => s,
    }
}

/// Checks `v` against the subset of JSON Schema the document uses; errors name the path.
fn validate(doc: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = resolve(doc, schema);
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        let ok = alts.iter().any(|a| {
            let mut e = Vec::new();
            validate(doc, a, v, path, &mut e);
            e.is_empty()
        });
        if !ok {
            errs.push(format!("{path}: matches no alternative: {v}"));
        }
        return;
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            errs.push(format!("{path}: expected {types:?}, got {v}"));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!("{path}: {v} not in {e:?}"));
        }
    }
    if let Value::Object(m) = v {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = r.as_str().unwrap();
            if !m.contains_key(k) {
                errs.push(format!("{path}: required field {k} missing"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in m {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(doc, ps, x, &format!("{path}.{k}"), errs),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errs.push(format!("{path}: undocumented field {k}"))
                    }
                    Some(ap @ Value::Object(_)) => {
                        validate(doc, ap, x, &format!("{path}.{k}"), errs)
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(is)) = (v, s.get("items")) {
        for (i, x) in items.iter().enumerate() {
            validate(doc, is, x, &format!("{path}[{i}]"), errs);
        }
    }
}

fn check_response(doc: &Value, op: &Value, what: &str, r: &Resp) {
    let code = r.status.to_string();
    let documented = &op["responses"][&code];
    assert!(
        documented.is_object(),
        "{what}: answered {code}, which is not documented: {}",
        r.text()
    );
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        return;
    };
    let ct = r.header("content-type").unwrap_or("");
    let (media, spec) = content
        .iter()
        .find(|(m, _)| ct.starts_with(m.as_str()))
        .unwrap_or_else(|| panic!("{what}: content type {ct:?} is not documented for {code}"));
    if media == "application/json" {
        let mut errs = Vec::new();
        validate(doc, &spec["schema"], &r.json(), "$", &mut errs);
        assert!(errs.is_empty(), "{what} ({code}): {errs:#?}\n{}", r.text());
    }
}

fn role_who(s: &TestServer, role: &str) -> Who {
    match role {
        "isp" => Who::Isp,
        "user" => s.user(),
        "monitor" => s.monitor(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn api_the_document_matches_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let roles: BTreeSet<String> = op["x-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no x-roles"))
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            assert!(op["operationId"].is_string(), "{method} {path}");
            documented.insert((method.to_uppercase(), path.clone(), roles));
        }
    }
    let routes: BTreeSet<(String, String, BTreeSet<String>)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.pattern.to_string(),
                r.roles.iter().map(|x| x.name().to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(documented, routes, "docs/openapi.json and ROUTES differ");

    // The validator itself can fail.
    let schema = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    let mut errs = Vec::new();
    validate(
        &doc,
        &schema("Status"),
        &json!({"measured": true}),
        "$",
        &mut errs,
    );
    assert!(
        errs.iter().any(|e| e.contains("required field uplink")),
        "{errs:?}"
    );
    let mut errs = Vec::new();
    validate(
        &doc,
        &schema("Whoami"),
        &json!({"role": "admin", "id": 3}),
        "$",
        &mut errs,
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    let mut errs = Vec::new();
    validate(
        &doc,
        &schema("ServiceDoc"),
        &json!({"port": 1, "mac": "m", "class": "bulk", "queue": 1, "x": 1}),
        "$",
        &mut errs,
    );
    assert!(
        errs.iter().any(|e| e.contains("undocumented field x")),
        "{errs:?}"
    );
}

#[test]
fn api_every_documented_operation_answers_as_documented() {
    let s = TestServer::start();
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let served = s.req(&Who::Nobody, "GET", "/v1/openapi.json", None);
    assert_eq!(serde_json::from_slice::<Value>(&served.body).unwrap(), doc);
    let (_, policy) = s.json(&Who::Isp, "GET", "/v1/policy", None);
    let gamebox = json!({"port": 13, "mac": "02:00:00:00:01:09", "ipv4": ["198.18.1.19"],
                         "class": "bulk", "queue": 9, "min_rate": "1mbit", "reach": ["wan"]});
    // Order: reads, then writes that create before the delete that removes.
    let order = [
        "webPage",
        "webScript",
        "webStyle",
        "openapi",
        "whoami",
        "getPolicy",
        "listServices",
        "getService",
        "getPriorities",
        "getDevices",
        "getStatus",
        "getCongestion",
        "trace",
        "events",
        "metrics",
        "putPolicy",
        "putService",
        "putPriorities",
        "deleteService",
    ];
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.to_uppercase(), op.clone()));
        }
    }
    assert_eq!(ops.len(), order.len(), "every operation is exercised");
    ops.sort_by_key(|(_, _, op)| {
        order
            .iter()
            .position(|o| op["operationId"] == *o)
            .expect("operation in order")
    });
    for (path, method, op) in &ops {
        let id = op["operationId"].as_str().unwrap();
        let name = if id == "putService" || id == "deleteService" {
            "gamebox"
        } else {
            "iptv"
        };
        let mut url = path.replace("{name}", name);
        let query: Vec<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| {
                format!(
                    "{}={}",
                    p["name"].as_str().unwrap(),
                    p["example"].as_str().unwrap()
                )
            })
            .collect();
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let body = match id {
            "putPolicy" => Some(policy.to_string()),
            "putService" => Some(gamebox.to_string()),
            "putPriorities" => Some(json!({"services": {"iptv": {"priority": 4}}}).to_string()),
            _ => None,
        };
        assert_eq!(
            op.get("requestBody").is_some(),
            body.is_some(),
            "{id}: request body"
        );
        let roles: Vec<&str> = op["x-roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let who = roles.first().map_or(Who::Nobody, |r| role_who(&s, r));
        let what = format!("{id} ({method} {url})");
        let r = s.req(&who, method, &url, body.as_deref());
        assert!(
            (200..300).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.text()
        );
        check_response(&doc, op, &what, &r);
        if id == "putService" {
            assert_eq!(r.status, 201, "{what}");
        }
        if roles.is_empty() {
            continue;
        }
        // Documented refusals happen: no credential 401, another role 403.
        let r = s.req(&Who::Nobody, method, &url, body.as_deref());
        assert_eq!(r.status, 401, "{what} without credentials");
        check_response(&doc, op, &what, &r);
        if let Some(other) = ["isp", "user", "monitor"]
            .into_iter()
            .find(|x| !roles.contains(x))
        {
            let r = s.req(&role_who(&s, other), method, &url, body.as_deref());
            assert_eq!(r.status, 403, "{what} as {other}");
            check_response(&doc, op, &what, &r);
        }
    }

    // Documented errors, provoked.
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let big = "x".repeat(70 * 1024);
    type Case<'a> = (
        Value,
        Who,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<String>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            op("/v1/policy", "put"),
            Who::Isp,
            "PUT",
            "/v1/policy",
            vec![],
            Some("{".into()),
            400,
        ),
        (
            op("/v1/policy", "put"),
            Who::Isp,
            "PUT",
            "/v1/policy",
            vec![("If-Match", "\"v999\"")],
            Some(policy.to_string()),
            412,
        ),
        (
            op("/v1/policy", "put"),
            Who::Isp,
            "PUT",
            "/v1/policy",
            vec![],
            Some(big),
            413,
        ),
        (
            op("/v1/policy", "put"),
            Who::Isp,
            "PUT",
            "/v1/policy",
            vec![("Content-Type", "text/plain")],
            Some("x".into()),
            415,
        ),
        (
            op("/v1/policy", "put"),
            Who::Isp,
            "PUT",
            "/v1/policy",
            vec![],
            Some({
                let mut p = policy.clone();
                p["services"]["nas"]["min_rate"] = json!("15mbit");
                p.to_string()
            }),
            422,
        ),
        (
            op("/v1/services/{name}", "get"),
            s.user(),
            "GET",
            "/v1/services/nope",
            vec![],
            None,
            404,
        ),
        (
            op("/v1/services/{name}", "delete"),
            Who::Isp,
            "DELETE",
            "/v1/services/nope",
            vec![],
            None,
            404,
        ),
        (
            op("/v1/priorities", "put"),
            s.user(),
            "PUT",
            "/v1/priorities",
            vec![],
            Some(r#"{"services":{"iptv":{"priority":0}}}"#.into()),
            403,
        ),
        (
            op("/v1/priorities", "put"),
            s.user(),
            "PUT",
            "/v1/priorities",
            vec![],
            Some(r#"{"services":{"zz":{"priority":0}}}"#.into()),
            404,
        ),
        (
            op("/v1/trace", "get"),
            s.user(),
            "GET",
            "/v1/trace?service=iptv",
            vec![],
            None,
            400,
        ),
        (
            op("/v1/trace", "get"),
            s.user(),
            "GET",
            "/v1/trace?service=zz&destination=wan",
            vec![],
            None,
            404,
        ),
    ];
    for (o, who, method, url, headers, body, code) in cases {
        let what = format!("{method} {url} expecting {code}");
        let r = s.req_h(
            &who,
            method,
            url,
            &headers,
            body.as_deref().map(str::as_bytes),
        );
        assert_eq!(r.status, code, "{what}: {}", r.text());
        check_response(&doc, &o, &what, &r);
    }
}
