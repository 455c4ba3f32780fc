//! The policy as a JSON document: the config file's shape with the same keys, to and from [`Policy`].
//!
//! The API never validates a policy by itself: a JSON document is rewritten as the TOML text
//! it stands for ([`to_toml`]) and goes through [`crate::config::parse`], so the API accepts
//! exactly what `check-config` accepts, with the same messages and the same key paths
//! (`services.iptv.min_rate`). That text is also what the store keeps. [`policy_doc`] goes the
//! other way; `parse(to_toml(policy_doc(p))) == p` for every valid policy (tested).
//! Pure: no I/O.

use crate::config::{self, ConfigError};
use crate::model::{format_mac, ForeignPolicy, Policy, PortRef, Service, SwitchLink};
use serde_json::{json, Map, Value};
use shg_flows::rate::format_rate;
use std::fmt::Write as _;

fn port(p: &PortRef) -> Value {
    match p {
        PortRef::Number(n) => json!(n),
        PortRef::Name(s) => json!(s),
    }
}

fn latency(us: u64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1_000 == 0 {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

fn permille(p: u32) -> f64 {
    f64::from(p) / 1000.0
}

/// The whole policy as the config file's keys.
pub fn policy_doc(p: &Policy) -> Value {
    let g = &p.gateway;
    let mut gw = Map::new();
    gw.insert(
        "datapath_id".into(),
        json!(format!("{:016x}", g.datapath_id)),
    );
    match g.switch {
        SwitchLink::Listen(_) => gw.insert("listen".into(), json!(g.switch.to_string())),
        SwitchLink::Connect(_) => gw.insert("connect".into(), json!(g.switch.to_string())),
    };
    gw.insert(
        "uplink".into(),
        json!({
            "port": port(&g.uplink.port),
            "up_rate": format_rate(g.uplink.up_rate),
            "down_rate": format_rate(g.uplink.down_rate),
        }),
    );
    gw.insert("lan".into(), g.lan.iter().map(port).collect());
    gw.insert("local".into(), json!(g.local));
    gw.insert("headroom".into(), json!(permille(g.headroom_permille)));
    gw.insert(
        "interactive_share".into(),
        json!(permille(g.interactive_share_permille)),
    );
    gw.insert(
        "foreign_flows".into(),
        json!(match g.foreign {
            ForeignPolicy::Report => "report",
            ForeignPolicy::Delete => "delete",
        }),
    );
    let services: Map<String, Value> = p
        .services
        .values()
        .map(|s| (s.name.clone(), service_doc(s)))
        .collect();
    json!({ "gateway": gw, "services": services })
}

/// One service as its `[services.NAME]` table.
pub fn service_doc(s: &Service) -> Value {
    let mut m = Map::new();
    m.insert("port".into(), port(&s.port));
    m.insert("mac".into(), json!(format_mac(&s.mac)));
    if !s.ipv4.is_empty() {
        m.insert(
            "ipv4".into(),
            s.ipv4.iter().map(|a| json!(a.to_string())).collect(),
        );
    }
    if !s.ipv6.is_empty() {
        m.insert(
            "ipv6".into(),
            s.ipv6.iter().map(|a| json!(a.to_string())).collect(),
        );
    }
    m.insert("class".into(), json!(s.class.name()));
    m.insert("queue".into(), json!(s.queue));
    let rate = |m: &mut Map<String, Value>, k: &str, v: Option<u64>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(format_rate(v)));
        }
    };
    rate(&mut m, "min_rate", Some(s.min_rate).filter(|&r| r > 0));
    rate(&mut m, "max_rate", s.max_rate);
    rate(
        &mut m,
        "down_min_rate",
        Some(s.down_min_rate).filter(|&r| r > 0),
    );
    rate(&mut m, "down_max_rate", s.down_max_rate);
    if let Some(l) = s.latency_us {
        m.insert("latency".into(), json!(latency(l)));
    }
    m.insert("priority".into(), json!(s.priority));
    m.insert(
        "priority_bounds".into(),
        json!([s.priority_bounds.0, s.priority_bounds.1]),
    );
    m.insert(
        "reach".into(),
        s.reach.iter().map(|r| json!(r.to_string())).collect(),
    );
    let mut user = Map::new();
    if let Some(p) = s.user.priority {
        user.insert("priority".into(), json!(p));
    }
    rate(&mut user, "max_rate", s.user.max_rate);
    if !user.is_empty() {
        m.insert("user".into(), Value::Object(user));
    }
    Value::Object(m)
}

/// A document that cannot be written as TOML (a `null`, a non-object at the top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub path: String,
    pub message: String,
}

fn is_bare(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn key(k: &str) -> String {
    if is_bare(k) {
        k.to_string()
    } else {
        string(k)
    }
}

fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn inline(v: &Value, path: &str) -> Result<String, DocError> {
    Ok(match v {
        Value::Null => {
            return Err(DocError {
                path: path.to_string(),
                message: "null is not a value here: leave the key out".into(),
            })
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                let s = format!("{f:?}");
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
        }
        Value::String(s) => string(s),
        Value::Array(items) => {
            let parts: Result<Vec<String>, DocError> = items
                .iter()
                .enumerate()
                .map(|(i, x)| inline(x, &format!("{path}[{i}]")))
                .collect();
            format!("[{}]", parts?.join(", "))
        }
        Value::Object(m) => {
            let parts: Result<Vec<String>, DocError> = m
                .iter()
                .map(|(k, x)| Ok(format!("{} = {}", key(k), inline(x, &join(path, k))?)))
                .collect();
            format!("{{ {} }}", parts?.join(", "))
        }
    })
}

fn table(
    m: &Map<String, Value>,
    path: &str,
    header: &str,
    out: &mut String,
) -> Result<(), DocError> {
    if !header.is_empty() {
        let _ = writeln!(out, "[{header}]");
    }
    for (k, v) in m.iter().filter(|(_, v)| !v.is_object()) {
        let _ = writeln!(out, "{} = {}", key(k), inline(v, &join(path, k))?);
    }
    for (k, v) in m {
        if let Value::Object(sub) = v {
            let h = if header.is_empty() {
                key(k)
            } else {
                format!("{header}.{}", key(k))
            };
            table(sub, &join(path, k), &h, out)?;
        }
    }
    Ok(())
}

/// The TOML text a JSON document stands for: one `[table]` header per object, each key on its
/// own line (so a config error's key path is exact).
pub fn to_toml(doc: &Value) -> Result<String, DocError> {
    let Value::Object(m) = doc else {
        return Err(DocError {
            path: String::new(),
            message: "the policy must be a JSON object with gateway and services".into(),
        });
    };
    let mut out = String::from("# written by the shg-controller API\n");
    table(m, "", "", &mut out)?;
    Ok(out)
}

/// A config error without the line number of the generated TOML (meaningless to a JSON client).
fn strip_line(mut e: ConfigError) -> ConfigError {
    if let Some(i) = e.message.rfind(" (line ") {
        if e.message.ends_with(')') {
            e.message.truncate(i);
        }
    }
    e
}

/// Validates a JSON policy document: the policy and the TOML text to store, or every error
/// with its key path.
pub fn parse_doc(doc: &Value) -> Result<(Policy, String), Vec<ConfigError>> {
    let text = to_toml(doc).map_err(|e| {
        vec![ConfigError {
            path: e.path,
            message: e.message,
        }]
    })?;
    let policy =
        config::parse(&text).map_err(|es| es.into_iter().map(strip_line).collect::<Vec<_>>())?;
    Ok((policy, text))
}

/// The TOML text of a valid policy (what the store keeps after an API change).
pub fn policy_text(p: &Policy) -> String {
    // A policy's own document is always representable (no nulls, an object at the top).
    to_toml(&policy_doc(p)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = include_str!("../../../tests/fixtures/controller/gateway.toml");

    #[test]
    fn round_trips_the_example() {
        let p = config::parse(GATEWAY).unwrap();
        let doc = policy_doc(&p);
        let (back, text) = parse_doc(&doc).unwrap();
        assert_eq!(back, p, "{text}");
        assert_eq!(doc["services"]["iptv"]["user"]["priority"], json!(3));
        assert_eq!(doc["gateway"]["headroom"], json!(0.9));
    }

    #[test]
    fn errors_name_the_key() {
        let p = config::parse(GATEWAY).unwrap();
        let mut doc = policy_doc(&p);
        doc["services"]["nas"]["min_rate"] = json!("0mbit");
        let errs = parse_doc(&doc).unwrap_err();
        assert_eq!(errs[0].path, "services.nas.min_rate", "{errs:?}");
        let mut doc = policy_doc(&p);
        doc["services"]["nas"]["colour"] = json!("red");
        let errs = parse_doc(&doc).unwrap_err();
        assert_eq!(errs[0].path, "services.nas.colour", "{errs:?}");
        assert!(errs[0].message.contains("unknown field"), "{errs:?}");
        assert!(!errs[0].message.contains("line"), "{errs:?}");
        let mut doc = policy_doc(&p);
        doc["services"]["nas"]["queue"] = json!("three");
        let errs = parse_doc(&doc).unwrap_err();
        assert_eq!(errs[0].path, "services.nas.queue", "{errs:?}");
        let mut doc = policy_doc(&p);
        doc["gateway"]["lan"] = json!([2, null]);
        let errs = parse_doc(&doc).unwrap_err();
        assert_eq!(errs[0].path, "gateway.lan[1]", "{errs:?}");
    }

    #[test]
    fn quotes_strange_keys_and_strings() {
        let doc = json!({"a b": {"k\"": "x\ny\u{1}", "n": 1.5, "i": -3}});
        let t = to_toml(&doc).unwrap();
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(v["a b"]["k\""].as_str(), Some("x\ny\u{1}"));
        assert_eq!(v["a b"]["n"].as_float(), Some(1.5));
        assert_eq!(v["a b"]["i"].as_integer(), Some(-3));
    }
}
