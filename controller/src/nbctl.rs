//! `shgctl`'s API commands: a small HTTPS client of the controller's northbound API, tables for people, `--json` for scripts; and the local token store (`shgctl token ...`).
//!
//! Exit codes: 0 done; 1 the server refused or answered an error (the reason is printed);
//! 2 bad usage; 3 the server cannot be reached (TCP or TLS). [`run`] takes its arguments and
//! two output streams, so tests drive it without a process. The HTTP/1.1 client is just what
//! these commands need (one request per connection, Content-Length bodies, event streams).

use crate::api::control::Role;
use crate::api::http::percent_encode;
use crate::api::tls::client_config;
use crate::api::tokens::TokenStore;
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The commands routed here from `shgctl`.
pub const COMMANDS: &[&str] = &[
    "whoami",
    "policy",
    "services",
    "service",
    "priorities",
    "priority",
    "devices",
    "status",
    "congestion",
    "trace",
    "events",
    "metrics",
    "token",
];

/// Usage of the API commands.
pub const USAGE: &str = "\
usage: shgctl COMMAND [ARGS] [API OPTIONS]
  whoami                                 the role the API gives these credentials
  policy get                             the whole policy (JSON, as the config file's keys)
  policy put FILE [--dry-run] [--if-match VERSION]
                                         replace the whole policy (FILE .toml or .json; isp)
  services                               services with their classes, rates and priorities
  service get NAME
  service put NAME FILE.json [--dry-run] create or replace one service (isp)
  service delete NAME [--dry-run]        (isp)
  priorities                             priorities in force and the ISP's bounds
  priority set NAME PRIORITY|isp [--max-rate RATE|isp] [--dry-run]
                                         the home user's choice, within the ISP's bounds (user)
  devices                                discovered devices
  status                                 per service: guarantee vs achieved, drops, delay, grade
  congestion                             what is congested, by whom, since when
  trace SERVICE DESTINATION              DESTINATION: wan, lan, gateway or a service
  events [--count N]                     follow the event stream
  metrics                                Prometheus text (isp, monitor)
  token create --role user|monitor [--label TEXT] --store FILE
  token list --store FILE | token revoke ID --store FILE
                                         the token store on this machine (the token is shown once)
API options: --server https://HOST:PORT (env SHG_API, default https://127.0.0.1:8443)
  --ca FILE (env SHG_API_CA: the CA of the server's certificate)
  --cert FILE --key FILE (the ISP's client certificate) | --token TOKEN (env SHG_TOKEN)
  | --token-file FILE; --server-name NAME (default: the host); --json; --timeout SECONDS
exit codes: 0 ok, 1 refused or error, 2 usage, 3 cannot connect";

/// Where the connection is going.
#[derive(Debug, Clone, Default)]
struct Opts {
    server: String,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    token: Option<String>,
    server_name: Option<String>,
    json: bool,
    timeout: Duration,
    dry_run: bool,
    if_match: Option<String>,
    count: Option<u64>,
    max_rate: Option<String>,
    role: Option<String>,
    label: Option<String>,
    store: Option<PathBuf>,
}

/// A failure with its exit code.
#[derive(Debug)]
struct Fail(i32, String);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

/// Runs `shgctl COMMAND ...` for an API command; returns the exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out) {
        Ok(()) => 0,
        Err(Fail(code, msg)) => {
            let _ = writeln!(err, "shgctl: {msg}");
            if code == 2 {
                let _ = writeln!(err, "{USAGE}");
            }
            code
        }
    }
}

fn parse_opts(args: &[String]) -> Result<(Vec<String>, Opts), Fail> {
    let mut o = Opts {
        server: std::env::var("SHG_API").unwrap_or_else(|_| "https://127.0.0.1:8443".into()),
        ca: std::env::var_os("SHG_API_CA").map(PathBuf::from),
        token: std::env::var("SHG_TOKEN").ok().filter(|t| !t.is_empty()),
        timeout: Duration::from_secs(30),
        ..Opts::default()
    };
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--server" => o.server = val(a)?,
            "--ca" => o.ca = Some(val(a)?.into()),
            "--cert" => o.cert = Some(val(a)?.into()),
            "--key" => o.key = Some(val(a)?.into()),
            "--token" => o.token = Some(val(a)?),
            "--token-file" => {
                let p = val(a)?;
                let t = std::fs::read_to_string(&p).map_err(|e| Fail(1, format!("{p}: {e}")))?;
                o.token = Some(t.trim().to_string());
            }
            "--server-name" => o.server_name = Some(val(a)?),
            "--json" => o.json = true,
            "--dry-run" => o.dry_run = true,
            "--if-match" => o.if_match = Some(val(a)?),
            "--count" => {
                let v = val(a)?;
                o.count = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--count {v:?}: not a number")))?,
                );
            }
            "--timeout" => {
                let v = val(a)?;
                let s: u64 = v
                    .parse()
                    .map_err(|_| usage(format!("--timeout {v:?}: not a number")))?;
                o.timeout = Duration::from_secs(s.max(1));
            }
            "--max-rate" => o.max_rate = Some(val(a)?),
            "--role" => o.role = Some(val(a)?),
            "--label" => o.label = Some(val(a)?),
            "--store" => o.store = Some(val(a)?.into()),
            s if s.starts_with("--") => return Err(usage(format!("unknown option {s}"))),
            _ => pos.push(a.clone()),
        }
    }
    Ok((pos, o))
}

fn run_inner(args: &[String], out: &mut dyn Write) -> Result<(), Fail> {
    let (pos, o) = parse_opts(args)?;
    let p: Vec<&str> = pos.iter().map(String::as_str).collect();
    let dry = if o.dry_run { "?dry_run=true" } else { "" };
    match p.as_slice() {
        ["whoami"] => {
            let v = call_json(&o, out, "GET", "/v1/whoami", None)?;
            show(out, &o, &v, |v| {
                format!("role {} {}\n", s(&v["role"]), s(&v["id"]))
            })
        }
        ["policy", "get"] => {
            let v = call_json(&o, out, "GET", "/v1/policy", None)?;
            w(out, &format!("{}\n", pretty(&v)))
        }
        ["policy", "put", file] => {
            let text =
                std::fs::read_to_string(file).map_err(|e| Fail(1, format!("{file}: {e}")))?;
            let ct = if file.ends_with(".json") {
                "application/json"
            } else {
                "application/toml"
            };
            let v = call_json(
                &o,
                out,
                "PUT",
                &format!("/v1/policy{dry}"),
                Some((ct, text.into_bytes())),
            )?;
            show(out, &o, &v, outcome_text)
        }
        ["services"] | ["services", "list"] => {
            let v = call_json(&o, out, "GET", "/v1/services", None)?;
            show(out, &o, &v, services_table)
        }
        ["service", "get", name] => {
            let v = call_json(
                &o,
                out,
                "GET",
                &format!("/v1/services/{}", percent_encode(name)),
                None,
            )?;
            w(out, &format!("{}\n", pretty(&v)))
        }
        ["service", "put", name, file] => {
            let text = std::fs::read(file).map_err(|e| Fail(1, format!("{file}: {e}")))?;
            let path = format!("/v1/services/{}{dry}", percent_encode(name));
            let v = call_json(&o, out, "PUT", &path, Some(("application/json", text)))?;
            show(out, &o, &v, outcome_text)
        }
        ["service", "delete", name] => {
            let path = format!("/v1/services/{}{dry}", percent_encode(name));
            let v = call_json(&o, out, "DELETE", &path, None)?;
            show(out, &o, &v, outcome_text)
        }
        ["priorities"] | ["priorities", "get"] => {
            let v = call_json(&o, out, "GET", "/v1/priorities", None)?;
            show(out, &o, &v, priorities_table)
        }
        ["priority", "set", name, prio] => {
            let mut change = serde_json::Map::new();
            match *prio {
                "isp" => {
                    change.insert("priority".into(), Value::Null);
                }
                p => {
                    let n: u64 = p
                        .parse()
                        .map_err(|_| usage(format!("priority {p:?}: a number 0..=7 or isp")))?;
                    change.insert("priority".into(), json!(n));
                }
            }
            if let Some(r) = &o.max_rate {
                let v = if r == "isp" { Value::Null } else { json!(r) };
                change.insert("max_rate".into(), v);
            }
            let body = json!({"services": {(*name).to_string(): change}});
            let v = call_json(
                &o,
                out,
                "PUT",
                &format!("/v1/priorities{dry}"),
                Some(("application/json", body.to_string().into_bytes())),
            )?;
            show(out, &o, &v, outcome_text)
        }
        ["devices"] => {
            let v = call_json(&o, out, "GET", "/v1/devices", None)?;
            show(out, &o, &v, devices_table)
        }
        ["status"] => {
            let v = call_json(&o, out, "GET", "/v1/status", None)?;
            show(out, &o, &v, status_table)
        }
        ["congestion"] => {
            let v = call_json(&o, out, "GET", "/v1/congestion", None)?;
            show(out, &o, &v, congestion_text)
        }
        ["trace", service, dest] => {
            let path = format!(
                "/v1/trace?service={}&destination={}",
                percent_encode(service),
                percent_encode(dest)
            );
            let v = call_json(&o, out, "GET", &path, None)?;
            show(out, &o, &v, trace_text)
        }
        ["events"] => follow_events(&o, out),
        ["metrics"] => {
            let (status, _, body) = call(&o, "GET", "/metrics", None)?;
            check_status(status, &body, &o, out)?;
            out.write_all(&body).map_err(|e| Fail(1, e.to_string()))
        }
        ["token", rest @ ..] => token(rest, &o, out),
        [] => Err(usage("missing command")),
        other => Err(usage(format!(
            "unknown command or arguments: {}",
            other.join(" ")
        ))),
    }
}

fn w(out: &mut dyn Write, s: &str) -> Result<(), Fail> {
    out.write_all(s.as_bytes())
        .map_err(|e| Fail(1, e.to_string()))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn show(
    out: &mut dyn Write,
    o: &Opts,
    v: &Value,
    f: impl Fn(&Value) -> String,
) -> Result<(), Fail> {
    if o.json {
        w(out, &format!("{}\n", pretty(v)))
    } else {
        w(out, &f(v))
    }
}

/// A JSON value as table text (`-` for null).
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rate(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| s(v), shg_flows::rate::format_rate)
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(wd) = width.get_mut(i) {
                *wd = (*wd).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut l: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l.push('\n');
        l
    };
    let mut t = line(head.iter().map(|h| (*h).to_string()).collect());
    for r in rows {
        t.push_str(&line(r.clone()));
    }
    t
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v[k].as_array().map_or(&[], Vec::as_slice)
}

fn services_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(v, "services")
        .iter()
        .map(|x| {
            vec![
                s(&x["name"]),
                s(&x["class"]),
                s(&x["queue"]),
                s(&x["effective_priority"]),
                s(&x["priority_bounds"]),
                s(&x["min_rate"]),
                s(&x["effective_max_rate"]),
                s(&x["port"]),
                s(&x["reach"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "CLASS", "QUEUE", "PRIO", "BOUNDS", "MIN", "MAX", "PORT", "REACH",
        ],
        &rows,
    )
}

fn priorities_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["services"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(n, x)| {
                    vec![
                        n.clone(),
                        s(&x["priority"]),
                        s(&x["bounds"]),
                        s(&x["isp_priority"]),
                        s(&x["user_priority"]),
                        s(&x["class"]),
                        s(&x["max_rate"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["NAME", "PRIO", "BOUNDS", "ISP", "USER", "CLASS", "MAX"],
        &rows,
    )
}

fn devices_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(v, "devices")
        .iter()
        .map(|d| {
            vec![
                s(&d["friendly_name"]),
                s(&d["device_type"]),
                s(&d["address"]),
                s(&d["interface"]),
                format!("{}s ago", s(&d["last_seen_s"])),
                s(&d["udn"]),
            ]
        })
        .collect();
    table(&["NAME", "TYPE", "ADDRESS", "IF", "SEEN", "UDN"], &rows)
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |f| format!("{f:.1}ms"))
}

fn status_table(v: &Value) -> String {
    let u = &v["uplink"];
    let mut t = format!(
        "uplink: {} of {} ({:.0} %), switch {}, policy version {}{}\n",
        rate(&u["achieved_bps"]),
        rate(&u["rate_bps"]),
        u["utilisation"].as_f64().unwrap_or(0.0) * 100.0,
        if v["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "NOT connected"
        },
        s(&v["policy_version"]),
        if v["measured"].as_bool() == Some(true) {
            ""
        } else {
            " (not measured yet)"
        }
    );
    let rows: Vec<Vec<String>> = arr(v, "services")
        .iter()
        .map(|x| {
            vec![
                s(&x["name"]),
                s(&x["grade"]),
                rate(&x["achieved_bps"]),
                rate(&x["guarantee_bps"]),
                rate(&x["cap_bps"]),
                s(&x["drops"]),
                ms(&x["delay_p50_ms"]),
                ms(&x["delay_p99_ms"]),
                ms(&x["latency_target_ms"]),
                s(&x["priority"]),
            ]
        })
        .collect();
    t.push_str(&table(
        &[
            "SERVICE",
            "GRADE",
            "RATE",
            "GUARANTEE",
            "CAP",
            "DROPS",
            "P50",
            "P99",
            "TARGET",
            "PRIO",
        ],
        &rows,
    ));
    t
}

fn congestion_text(v: &Value) -> String {
    let mut t = String::new();
    for r in arr(v, "resources") {
        t.push_str(&format!("{}: {}\n", s(&r["resource"]), s(&r["summary"])));
        if r["congested"].as_bool() == Some(true) {
            t.push_str(&format!(
                "  for {:.0} s\n",
                r["duration_s"].as_f64().unwrap_or(0.0)
            ));
            for h in arr(r, "by") {
                t.push_str(&format!(
                    "  held by {}: {} (guarantee {}, {} above)\n",
                    s(&h["service"]),
                    rate(&h["achieved_bps"]),
                    rate(&h["guarantee_bps"]),
                    rate(&h["excess_bps"])
                ));
            }
            for h in arr(r, "hurts") {
                t.push_str(&format!(
                    "  hurts {}: {}\n",
                    s(&h["service"]),
                    s(&h["reason"])
                ));
            }
        }
    }
    t
}

fn trace_text(v: &Value) -> String {
    let mut t = format!(
        "{} -> {}: {}\n",
        s(&v["service"]),
        s(&v["destination"]),
        s(&v["packet"])
    );
    for st in arr(v, "steps") {
        t.push_str(&format!(
            "  table {} priority {} {}: {} -> {}\n",
            s(&st["table"]),
            s(&st["priority"]),
            s(&st["rule"]),
            s(&st["match"]),
            s(&st["instructions"])
        ));
    }
    t.push_str(&format!(
        "meters: {}  queue: {}  outputs: {}\nverdict: {} ({})\n",
        s(&v["meters"]),
        s(&v["queue"]),
        s(&v["outputs"]),
        s(&v["verdict"]),
        s(&v["reason"])
    ));
    t
}

fn outcome_text(v: &Value) -> String {
    let admitted = v["admission"]["admitted"].as_bool() == Some(true);
    let mut t = if v["dry_run"].as_bool() == Some(true) {
        format!(
            "dry run: {} (version stays {})\n",
            if admitted {
                "would be accepted"
            } else {
                "would be REFUSED"
            },
            s(&v["version"])
        )
    } else {
        format!(
            "accepted: version {}{}{}\n",
            s(&v["version"]),
            if v["changed"].as_bool() == Some(true) {
                ""
            } else {
                " (unchanged)"
            },
            if v["applied"].as_bool() == Some(true) {
                ""
            } else {
                " (not applied yet: switch not connected)"
            }
        )
    };
    for r in arr(&v["admission"], "reasons") {
        t.push_str(&format!("  {}\n", s(r)));
    }
    let plan = &v["plan"];
    if !plan["summary"].is_null() && !s(&plan["summary"]).is_empty() {
        t.push_str(&format!("plan: {}\n", s(&plan["summary"])));
    }
    if v["dry_run"].as_bool() == Some(true) {
        for c in arr(plan, "changes") {
            t.push_str(&format!("  {}\n", s(c)));
        }
    }
    t
}

fn token(rest: &[&str], o: &Opts, out: &mut dyn Write) -> Result<(), Fail> {
    let store_path = o
        .store
        .clone()
        .ok_or_else(|| usage("token commands need --store FILE (the controller's token file)"))?;
    let mut store = TokenStore::open(&store_path).map_err(|e| Fail(1, e.to_string()))?;
    match rest {
        ["create"] => {
            let role = match o.role.as_deref() {
                Some(r) => Role::parse(r)
                    .filter(|r| *r != Role::Isp)
                    .ok_or_else(|| usage(format!("--role {r:?}: user or monitor")))?,
                None => return Err(usage("token create needs --role user|monitor")),
            };
            let (tok, e) = store
                .create(role, o.label.as_deref().unwrap_or(""))
                .map_err(|e| Fail(1, e.to_string()))?;
            if o.json {
                w(
                    out,
                    &format!(
                        "{}\n",
                        pretty(&json!({"token": tok, "id": e.id, "role": role.name()}))
                    ),
                )
            } else {
                w(
                    out,
                    &format!(
                        "{tok}\n# id {} role {}: shown once, only its hash is stored\n",
                        e.id,
                        role.name()
                    ),
                )
            }
        }
        ["list"] => {
            let rows: Vec<Vec<String>> = store
                .entries()
                .iter()
                .map(|e| vec![e.id.clone(), e.role.name().into(), e.label.clone()])
                .collect();
            if o.json {
                let v: Vec<Value> = store
                    .entries()
                    .iter()
                    .map(|e| json!({"id": e.id, "role": e.role.name(), "label": e.label}))
                    .collect();
                w(out, &format!("{}\n", pretty(&json!({"tokens": v}))))
            } else {
                w(out, &table(&["ID", "ROLE", "LABEL"], &rows))
            }
        }
        ["revoke", id] => match store.revoke(id).map_err(|e| Fail(1, e.to_string()))? {
            true => w(out, &format!("revoked {id}\n")),
            false => Err(Fail(1, format!("no token with id {id}"))),
        },
        _ => Err(usage("token create|list|revoke")),
    }
}

/// `https://HOST:PORT` → (host, port).
fn split_server(url: &str) -> Result<(String, u16), Fail> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| usage(format!("--server {url:?}: expected https://HOST:PORT")))?
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse()
                .map_err(|_| usage(format!("--server {url:?}: bad port")))?;
            (h, port)
        }
        _ => (rest, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(usage(format!("--server {url:?}: no host")));
    }
    Ok((host.to_string(), port))
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(o: &Opts) -> Result<Tls, Fail> {
    let (host, port) = split_server(&o.server)?;
    let ca =
        o.ca.as_deref()
            .ok_or_else(|| usage("--ca FILE (or SHG_API_CA) is needed to check the server"))?;
    let pair = match (&o.cert, &o.key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => return Err(usage("--cert and --key go together")),
    };
    let config: Arc<rustls::ClientConfig> =
        client_config(ca, pair).map_err(|e| Fail(1, e.to_string()))?;
    let name = o.server_name.clone().unwrap_or_else(|| host.clone());
    let sn = ServerName::try_from(name.clone())
        .map_err(|_| usage(format!("{name:?} is not a server name")))?;
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Fail(3, format!("{host}:{port}: {e}")))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    let mut tcp = tcp.ok_or_else(|| {
        Fail(
            3,
            format!(
                "cannot connect to {}: {}",
                o.server,
                last.unwrap_or_default()
            ),
        )
    })?;
    let _ = tcp.set_read_timeout(Some(o.timeout));
    let _ = tcp.set_write_timeout(Some(o.timeout));
    let mut conn =
        rustls::ClientConnection::new(config, sn).map_err(|e| Fail(3, format!("TLS: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| Fail(3, format!("TLS handshake with {}: {e}", o.server)))?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn send(
    o: &Opts,
    s: &mut Tls,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    accept: &str,
) -> Result<(), Fail> {
    let (host, port) = split_server(&o.server)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {accept}\r\nConnection: close\r\n");
    if let Some(t) = &o.token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(v) = &o.if_match {
        let v = v.trim_matches('"').trim_start_matches('v');
        req.push_str(&format!("If-Match: \"v{v}\"\r\n"));
    }
    let body = match body {
        Some((ct, b)) => {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
            b
        }
        None => Vec::new(),
    };
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut all = req.into_bytes();
    all.extend_from_slice(&body);
    s.write_all(&all)
        .and_then(|()| s.flush())
        .map_err(|e| Fail(3, format!("sending to {}: {e}", o.server)))
}

fn read_head(r: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// An answer: status, headers (names lowercased), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One request.
fn call(o: &Opts, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Result<Answer, Fail> {
    let mut s = connect(o)?;
    send(o, &mut s, method, path, body, "application/json")?;
    let mut r = BufReader::new(s);
    let (status, headers) =
        read_head(&mut r).map_err(|e| Fail(1, format!("reading the answer: {e}")))?;
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    let res = match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)
        }
        None => r.read_to_end(&mut body).map(|_| ()),
    };
    res.map_err(|e| Fail(1, format!("reading the answer: {e}")))?;
    Ok((status, headers, body))
}

fn check_status(status: u16, body: &[u8], o: &Opts, out: &mut dyn Write) -> Result<(), Fail> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if o.json {
        let _ = writeln!(out, "{}", pretty(&v));
    }
    let mut msg = format!(
        "{status} {}: {}",
        v["error"]
            .as_str()
            .unwrap_or(crate::api::http::reason(status)),
        v["message"].as_str().unwrap_or("")
    );
    for r in arr(&v["admission"], "reasons") {
        msg.push_str(&format!("\n  {}", s(r)));
    }
    for e in arr(&v, "errors").iter().skip(1) {
        msg.push_str(&format!("\n  {}: {}", s(&e["field"]), s(&e["message"])));
    }
    Err(Fail(1, msg))
}

fn call_json(
    o: &Opts,
    out: &mut dyn Write,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Value, Fail> {
    let (status, _, b) = call(o, method, path, body)?;
    check_status(status, &b, o, out)?;
    serde_json::from_slice(&b).map_err(|e| Fail(1, format!("the server's answer is not JSON: {e}")))
}

fn follow_events(o: &Opts, out: &mut dyn Write) -> Result<(), Fail> {
    let mut s = connect(o)?;
    // Events may be rare: no read timeout beyond --timeout if given explicitly.
    send(o, &mut s, "GET", "/v1/events", None, "text/event-stream")?;
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r).map_err(|e| Fail(1, format!("reading the answer: {e}")))?;
    if status != 200 {
        let mut body = Vec::new();
        let _ = r.read_to_end(&mut body);
        return check_status(status, &body, o, out);
    }
    let (mut event, mut data) = (String::new(), String::new());
    let mut seen = 0u64;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(Fail(1, "no event before the timeout".into()))
            }
            Err(e) => return Err(Fail(1, format!("event stream: {e}"))),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = v.to_string();
        } else if line.is_empty() && !event.is_empty() {
            let text = if o.json {
                format!("{data}\n")
            } else {
                format!("{event} {data}\n")
            };
            w(out, &text)?;
            let _ = out.flush();
            if event != "hello" {
                seen += 1;
                if o.count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
            event.clear();
            data.clear();
        }
    }
}
