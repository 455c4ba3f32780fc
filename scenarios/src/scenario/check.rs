//! Checking a scenario file: TOML text → [`Scenario`], or every error with its path.
//!
//! Each section and each array item is deserialized on its own (unknown keys refused), so one
//! bad item does not hide the errors of the others; then every rule is checked (rates,
//! durations, names and references, times inside the run, what each kind of traffic and
//! assertion needs). Paths count array items from 0: `traffic[2].rate`,
//! `phase[1].do[0].set.min_rate`. Pure: no I/O but [`check_file`]'s read.

use super::model::*;
use serde::de::DeserializeOwned;
use shg_flows::rate::parse_rate;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Longest scenario accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most services + devices (addresses 198.18.1.11.. and .101..; interface suffixes).
pub const MAX_HOSTS: usize = 60;
/// Names that are not host names.
pub const RESERVED: [&str; 8] = [
    "wan",
    "lan",
    "gateway",
    "device",
    "isp",
    "switch",
    "controller",
    "all",
];

const TOP_KEYS: [&str; 8] = [
    "description",
    "duration",
    "gateway",
    "service",
    "device",
    "traffic",
    "phase",
    "assert",
];

#[derive(Default)]
struct Errs(Vec<CheckError>);

impl Errs {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(CheckError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Reads and checks a scenario file; the name is the file's stem.
pub fn check_file(path: &Path) -> Result<Scenario, Vec<CheckError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![CheckError {
            path: path.display().to_string(),
            message: e.to_string(),
        }]
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    check_str(&name, &text)
}

/// Where serde's message points inside `base`: `unknown field `x`` / `missing field `x`` name
/// a key below it.
fn refine(base: &str, message: &str) -> String {
    for pat in ["unknown field `", "missing field `", "for key `"] {
        if let Some(rest) = message.split(pat).nth(1) {
            if let Some(key) = rest.split('`').next().filter(|k| !k.is_empty()) {
                return join(base, key);
            }
        }
    }
    base.to_string()
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

fn de<T: DeserializeOwned>(v: &toml::Value, path: &str, errs: &mut Errs) -> Option<T> {
    match v.clone().try_into::<T>() {
        Ok(t) => Some(t),
        Err(e) => {
            let msg = e.message().trim().to_string();
            errs.push(refine(path, &msg), msg);
            None
        }
    }
}

/// The items of an array-of-tables key, each with its path.
fn items<'a>(top: &'a toml::Table, key: &str, errs: &mut Errs) -> Vec<(String, &'a toml::Value)> {
    match top.get(key) {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{key}[{i}]"), v))
            .collect(),
        Some(_) => {
            errs.push(key, format!("must be an array of tables ([[{key}]])"));
            Vec::new()
        }
    }
}

/// (path, phase, its actions that deserialized, with their index).
type PhaseItem = (String, RawPhase, Vec<(usize, RawAction)>);

/// The raw file: every section and item that deserialized, and the errors of the rest.
struct Raw {
    description: Option<String>,
    duration: Option<String>,
    gateway: RawGateway,
    /// (path, name, policy).
    services: Vec<(String, String, PolicyFields)>,
    devices: Vec<(String, String)>,
    /// (path of `run`, device name, what was written).
    device_runs: Vec<(String, String, String)>,
    traffic: Vec<(String, RawTraffic)>,
    phases: Vec<PhaseItem>,
    asserts: Vec<(String, RawAssert)>,
}

fn name_of(v: &toml::Value, path: &str, errs: &mut Errs) -> Option<(String, toml::Table)> {
    let Some(t) = v.as_table() else {
        errs.push(path, "must be a table");
        return None;
    };
    let mut t = t.clone();
    match t.remove("name") {
        Some(toml::Value::String(s)) => Some((s, t)),
        Some(_) => {
            errs.push(join(path, "name"), "must be a string");
            None
        }
        None => {
            errs.push(join(path, "name"), "missing (every item needs a name)");
            None
        }
    }
}

fn parse_raw(text: &str, errs: &mut Errs) -> Option<Raw> {
    let top: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
            errs.push(
                line.map_or_else(|| "file".to_string(), |l| format!("line {l}")),
                format!("TOML syntax: {}", e.message().trim()),
            );
            return None;
        }
    };
    for k in top.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            errs.push(
                k.clone(),
                format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
            );
        }
    }
    let string = |k: &str, errs: &mut Errs| match top.get(k) {
        None => {
            errs.push(k, "missing");
            None
        }
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errs.push(k, "must be a string");
            None
        }
    };
    let description = string("description", errs);
    let duration = string("duration", errs);
    let gateway = match top.get("gateway") {
        Some(v) => de::<RawGateway>(v, "gateway", errs).unwrap_or_default(),
        None => {
            errs.push("gateway", "missing ([gateway] with up and down)");
            RawGateway::default()
        }
    };
    let mut services = Vec::new();
    for (path, v) in items(&top, "service", errs) {
        if let Some((name, rest)) = name_of(v, &path, errs) {
            if let Some(p) = de::<PolicyFields>(&toml::Value::Table(rest), &path, errs) {
                services.push((path, name, p));
            }
        }
    }
    let mut devices = Vec::new();
    let mut device_runs = Vec::new();
    for (path, v) in items(&top, "device", errs) {
        if let Some((name, rest)) = name_of(v, &path, errs) {
            for (k, val) in &rest {
                if k == "run" {
                    match val {
                        toml::Value::String(r) => {
                            device_runs.push((join(&path, k), name.clone(), r.clone()));
                        }
                        _ => errs.push(
                            join(&path, k),
                            "must be a string: \"minidlna\" or \"gmediarender\"",
                        ),
                    }
                } else {
                    errs.push(
                        join(&path, k),
                        "unknown key; a device has a name and optionally run",
                    );
                }
            }
            devices.push((path, name));
        }
    }
    let traffic = items(&top, "traffic", errs)
        .into_iter()
        .filter_map(|(p, v)| de::<RawTraffic>(v, &p, errs).map(|t| (p, t)))
        .collect();
    let mut phases = Vec::new();
    for (p, v) in items(&top, "phase", errs) {
        if let Some(ph) = de::<RawPhase>(v, &p, errs) {
            let acts = ph
                .actions
                .iter()
                .enumerate()
                .filter_map(|(j, a)| {
                    de::<RawAction>(a, &format!("{p}.do[{j}]"), errs).map(|a| (j, a))
                })
                .collect();
            phases.push((p, ph, acts));
        }
    }
    let asserts = items(&top, "assert", errs)
        .into_iter()
        .filter_map(|(p, v)| de::<RawAssert>(v, &p, errs).map(|t| (p, t)))
        .collect();
    Some(Raw {
        description,
        duration,
        gateway,
        services,
        devices,
        device_runs,
        traffic,
        phases,
        asserts,
    })
}

fn rate(v: &str, path: &str, errs: &mut Errs) -> Option<u64> {
    match parse_rate(v) {
        Ok(0) => {
            errs.push(path, format!("{v:?} must be > 0"));
            None
        }
        Ok(r) => Some(r),
        Err(e) => {
            errs.push(path, e.to_string());
            None
        }
    }
}

fn dur(v: &str, path: &str, errs: &mut Errs) -> Option<Duration> {
    match parse_duration(v) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(path, e);
            None
        }
    }
}

fn valid_name(n: &str) -> Result<(), String> {
    let ok_chars = n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if n.is_empty() || n.len() > 24 || !ok_chars || !n.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(format!("{n:?}: 1-24 of a-z 0-9 -, starting with a letter"));
    }
    if RESERVED.contains(&n) {
        return Err(format!("{n:?} is reserved"));
    }
    Ok(())
}

const CLASSES: [&str; 4] = ["interactive", "streaming", "bulk", "best-effort"];

/// Checks policy keys (of a service, or of a `policy` action's `set` when `partial`).
fn check_policy(
    p: &PolicyFields,
    path: &str,
    partial: bool,
    me: &str,
    services: &BTreeSet<String>,
    errs: &mut Errs,
) {
    match &p.class {
        Some(c) if !CLASSES.contains(&c.as_str()) => errs.push(
            join(path, "class"),
            format!("{c:?}: expected one of {}", CLASSES.join(", ")),
        ),
        None if !partial => errs.push(
            join(path, "class"),
            format!("missing; one of {}", CLASSES.join(", ")),
        ),
        _ => {}
    }
    if let Some(q) = p.queue {
        if partial {
            errs.push(join(path, "queue"), "a service's queue cannot change");
        } else if !(1..=1023).contains(&q) {
            errs.push(join(path, "queue"), format!("{q}: must be 1..=1023"));
        }
    }
    for (k, v) in [
        ("min_rate", &p.min_rate),
        ("max_rate", &p.max_rate),
        ("down_min_rate", &p.down_min_rate),
        ("down_max_rate", &p.down_max_rate),
    ] {
        if let Some(v) = v {
            rate(v, &join(path, k), errs);
        }
    }
    if let Some(l) = &p.latency {
        if let Some(d) = dur(l, &join(path, "latency"), errs) {
            if d.is_zero() {
                errs.push(join(path, "latency"), "must be > 0");
            }
        }
    }
    if let Some(pr) = p.priority.filter(|&x| x > 7) {
        errs.push(join(path, "priority"), format!("{pr}: must be 0..=7"));
    }
    if let Some([lo, hi]) = p.priority_bounds {
        if lo > hi || hi > 7 {
            errs.push(
                join(path, "priority_bounds"),
                format!("[{lo}, {hi}]: must be [low, high] within 0..=7"),
            );
        }
    }
    if let Some(reach) = &p.reach {
        for (i, r) in reach.iter().enumerate() {
            let ok = matches!(r.as_str(), "wan" | "lan" | "gateway")
                || r.strip_prefix("device:").is_some_and(|t| !t.is_empty())
                || (services.contains(r) && r != me);
            if !ok {
                errs.push(
                    format!("{}[{i}]", join(path, "reach")),
                    format!(
                        "{r:?}: expected wan, lan, gateway, device:TYPE or another service's name"
                    ),
                );
            }
        }
    }
    if let Some(u) = &p.user {
        let up = join(path, "user");
        if let Some(pr) = u.priority.filter(|&x| x > 7) {
            errs.push(join(&up, "priority"), format!("{pr}: must be 0..=7"));
        }
        if let Some(v) = &u.max_rate {
            rate(v, &join(&up, "max_rate"), errs);
        }
    }
}

fn time_in_run(
    v: &str,
    path: &str,
    duration: Option<Duration>,
    errs: &mut Errs,
) -> Option<Duration> {
    let d = dur(v, path, errs)?;
    if let Some(total) = duration {
        if d > total {
            errs.push(
                path,
                format!("{v:?} is after the end of the run ({total:?})"),
            );
            return None;
        }
    }
    Some(d)
}

/// Checks scenario text; `name` is what `run` and the report call it.
pub fn check_str(name: &str, text: &str) -> Result<Scenario, Vec<CheckError>> {
    let mut errs = Errs::default();
    let Some(raw) = parse_raw(text, &mut errs) else {
        return Err(errs.0);
    };
    let s = validate(name, raw, &mut errs);
    match s {
        Some(s) if errs.0.is_empty() => Ok(s),
        _ => Err(errs.0),
    }
}

#[allow(clippy::too_many_lines, reason = "one rule after the other")]
fn validate(name: &str, raw: Raw, errs: &mut Errs) -> Option<Scenario> {
    let description = raw.description.clone().unwrap_or_default();
    if raw.description.is_some() && description.trim().is_empty() {
        errs.push("description", "must not be empty");
    }
    let duration = raw
        .duration
        .as_deref()
        .and_then(|d| dur(d, "duration", errs));
    if let Some(d) = duration {
        if d < Duration::from_secs(1) || d > MAX_DURATION {
            errs.push("duration", format!("{d:?}: must be 1s..=10m"));
        }
    }
    // Gateway.
    let g = &raw.gateway;
    let up = match &g.up {
        Some(v) => rate(v, "gateway.up", errs),
        None => {
            errs.push("gateway.up", "missing (the up line rate, e.g. \"20mbit\")");
            None
        }
    };
    let down = match &g.down {
        Some(v) => rate(v, "gateway.down", errs),
        None => {
            errs.push(
                "gateway.down",
                "missing (the down line rate, e.g. \"100mbit\")",
            );
            None
        }
    };
    let isp_buffer = match &g.isp_buffer {
        Some(v) => dur(v, "gateway.isp_buffer", errs),
        None => Some(Duration::from_millis(100)),
    };
    if let Some(b) =
        isp_buffer.filter(|b| *b < Duration::from_millis(1) || *b > Duration::from_secs(2))
    {
        errs.push("gateway.isp_buffer", format!("{b:?}: must be 1ms..=2s"));
    }
    for (k, v) in [
        ("headroom", g.headroom),
        ("interactive_share", g.interactive_share),
    ] {
        if let Some(x) = v.filter(|x| !(*x > 0.0 && *x <= 1.0)) {
            errs.push(format!("gateway.{k}"), format!("{x}: must be in (0, 1]"));
        }
    }

    // Hosts.
    let mut hosts: BTreeMap<String, String> = BTreeMap::new(); // name -> path
    let service_names: BTreeSet<String> = raw.services.iter().map(|s| s.1.clone()).collect();
    for (path, n) in raw
        .services
        .iter()
        .map(|(p, n, _)| (p, n))
        .chain(raw.devices.iter().map(|(p, n)| (p, n)))
    {
        if let Err(e) = valid_name(n) {
            errs.push(join(path, "name"), e);
        } else if let Some(first) = hosts.get(n) {
            errs.push(
                join(path, "name"),
                format!("{n:?} is already used by {first}"),
            );
        } else {
            hosts.insert(n.clone(), path.clone());
        }
    }
    let mut device_software = Vec::new();
    for (path, name, r) in &raw.device_runs {
        match DeviceSoftware::parse(r) {
            Some(sw) => device_software.push((name.clone(), sw)),
            None => errs.push(
                path.clone(),
                format!("{r:?}: expected \"minidlna\" or \"gmediarender\""),
            ),
        }
    }
    for sw in [DeviceSoftware::Minidlna, DeviceSoftware::Gmediarender] {
        if device_software.iter().filter(|(_, s)| *s == sw).count() > 1 {
            if let Some((p, _, _)) = raw
                .device_runs
                .iter()
                .filter(|(_, _, r)| r == sw.as_str())
                .nth(1)
            {
                errs.push(
                    p.clone(),
                    format!(
                        "at most one device runs {} (each has a fixed UDN)",
                        sw.as_str()
                    ),
                );
            }
        }
    }
    if raw.services.len() + raw.devices.len() > MAX_HOSTS {
        errs.push(
            "service",
            format!("at most {MAX_HOSTS} services and devices"),
        );
    }
    let mut services = Vec::new();
    let explicit: BTreeSet<u32> = raw.services.iter().filter_map(|s| s.2.queue).collect();
    let mut seen_q: BTreeMap<u32, String> = BTreeMap::new();
    let mut next_q = 1;
    for (path, n, p) in &raw.services {
        check_policy(p, path, false, n, &service_names, errs);
        let q = match p.queue {
            Some(q) => q,
            None => {
                while explicit.contains(&next_q) || seen_q.contains_key(&next_q) {
                    next_q += 1;
                }
                next_q
            }
        };
        if let Some(first) = seen_q.get(&q) {
            errs.push(
                join(path, "queue"),
                format!("{q} is already {first}'s queue"),
            );
        }
        seen_q.insert(q, n.clone());
        services.push(Service {
            name: n.clone(),
            queue: q,
            policy: p.clone(),
        });
    }
    let is_host = |h: &str| h == "wan" || hosts.contains_key(h);

    // Traffic.
    let mut traffic = Vec::new();
    let mut tnames: BTreeMap<String, String> = BTreeMap::new();
    for (path, t) in &raw.traffic {
        if let Err(e) = valid_name(&t.name) {
            errs.push(join(path, "name"), e);
        } else if let Some(first) = tnames.get(&t.name) {
            errs.push(
                join(path, "name"),
                format!("{:?} is already used by {first}", t.name),
            );
        } else {
            tnames.insert(t.name.clone(), path.clone());
        }
        for (k, h) in [("from", &t.from), ("to", &t.to)] {
            if !is_host(h) {
                errs.push(
                    join(path, k),
                    format!("{h:?}: not a service, device or wan"),
                );
            }
        }
        if t.from == t.to {
            errs.push(join(path, "to"), "must differ from `from`");
        }
        let not_for = |k: &str, present: bool, errs: &mut Errs| {
            if present {
                errs.push(join(path, k), format!("not used by {} traffic", t.kind));
            }
        };
        let kind = match t.kind.as_str() {
            "udp" => {
                not_for("hz", t.hz.is_some(), errs);
                let r = match &t.rate {
                    Some(r) => rate(r, &join(path, "rate"), errs),
                    None => {
                        errs.push(join(path, "rate"), "missing (udp sends at a constant rate)");
                        None
                    }
                };
                let size = t.size.unwrap_or(1200);
                if !(32..=1472).contains(&size) {
                    errs.push(
                        join(path, "size"),
                        format!("{size}: must be 32..=1472 bytes"),
                    );
                }
                r.map(|rate_bps| TrafficKind::Udp { rate_bps, size })
            }
            "tcp" => {
                not_for("hz", t.hz.is_some(), errs);
                not_for("size", t.size.is_some(), errs);
                let r = t.rate.as_ref().map(|r| rate(r, &join(path, "rate"), errs));
                if t.from != "wan" && t.to != "wan" && (t.from.is_empty() || t.to.is_empty()) {
                    errs.push(path.clone(), "needs from and to");
                }
                match r {
                    Some(None) => None,
                    Some(Some(b)) => Some(TrafficKind::Tcp { rate_bps: Some(b) }),
                    None => Some(TrafficKind::Tcp { rate_bps: None }),
                }
            }
            "ping" => {
                not_for("rate", t.rate.is_some(), errs);
                not_for("size", t.size.is_some(), errs);
                let hz = t.hz.unwrap_or(10);
                if !(1..=100).contains(&hz) {
                    errs.push(join(path, "hz"), format!("{hz}: must be 1..=100"));
                }
                Some(TrafficKind::Ping { hz })
            }
            k => {
                errs.push(
                    join(path, "kind"),
                    format!("{k:?}: expected udp, tcp or ping"),
                );
                None
            }
        };
        let start = match &t.start {
            Some(v) => time_in_run(v, &join(path, "start"), duration, errs),
            None => Some(Duration::ZERO),
        };
        let stop = match &t.stop {
            Some(v) => time_in_run(v, &join(path, "stop"), duration, errs),
            None => duration,
        };
        if let (Some(a), Some(b)) = (start, stop) {
            if b < a + Duration::from_secs(1) {
                errs.push(join(path, "stop"), "must be at least 1s after start");
            }
        }
        if let (Some(kind), Some(start), Some(stop)) = (kind, start, stop) {
            traffic.push(Traffic {
                name: t.name.clone(),
                kind,
                from: t.from.clone(),
                to: t.to.clone(),
                start,
                stop,
            });
        }
    }

    // Phases.
    let mut phases = Vec::new();
    let mut pnames: BTreeMap<String, String> = BTreeMap::new();
    let mut last_at: Option<Duration> = None;
    for (path, p, acts) in &raw.phases {
        if let Err(e) = valid_name(&p.name) {
            errs.push(join(path, "name"), e);
        } else if let Some(first) = pnames.get(&p.name) {
            errs.push(
                join(path, "name"),
                format!("{:?} is already used by {first}", p.name),
            );
        } else {
            pnames.insert(p.name.clone(), path.clone());
        }
        let at = time_in_run(&p.at, &join(path, "at"), duration, errs);
        if let (Some(a), Some(l)) = (at, last_at) {
            if a <= l {
                errs.push(
                    join(path, "at"),
                    "phases must be in time order, each after the last",
                );
            }
        }
        if at.is_some() {
            last_at = at;
        }
        let mut actions = Vec::new();
        for (j, a) in acts {
            let ap = format!("{path}.do[{j}]");
            actions.push(match a {
                RawAction::Policy {
                    service,
                    set,
                    unset,
                } => {
                    if !service_names.contains(service) {
                        errs.push(join(&ap, "service"), format!("{service:?}: not a service"));
                    }
                    check_policy(set, &join(&ap, "set"), true, service, &service_names, errs);
                    for (k, u) in unset.iter().enumerate() {
                        if !UNSETTABLE.contains(&u.as_str()) {
                            errs.push(
                                format!("{ap}.unset[{k}]"),
                                format!("{u:?}: expected one of {}", UNSETTABLE.join(", ")),
                            );
                        }
                    }
                    if *set == PolicyFields::default() && unset.is_empty() {
                        errs.push(ap.clone(), "changes nothing (give set or unset)");
                    }
                    Action::Policy {
                        service: service.clone(),
                        set: set.clone(),
                        unset: unset.clone(),
                    }
                }
                RawAction::KillController => Action::KillController,
                RawAction::StopController => Action::StopController,
                RawAction::StartController => Action::StartController,
                RawAction::StopDevice { device } => {
                    if !device_software.iter().any(|(n, _)| n == device) {
                        errs.push(
                            join(&ap, "device"),
                            format!("{device:?}: not a device with `run`"),
                        );
                    }
                    Action::StopDevice {
                        device: device.clone(),
                    }
                }
            });
        }
        if let Some(at) = at {
            phases.push(Phase {
                name: p.name.clone(),
                at,
                actions,
            });
        }
    }

    // Assertions.
    let traffic_kind = |n: &str| traffic.iter().find(|t| t.name == n).map(|t| t.kind);
    let known_traffic = |n: &str| tnames.contains_key(n);
    let mut asserts = Vec::new();
    let settle = |v: &Option<String>, path: &str, errs: &mut Errs, default_ms: u64| match v {
        Some(v) => dur(v, &join(path, "settle"), errs),
        None => Some(Duration::from_millis(default_ms)),
    };
    let phase_ref = |ph: &Option<String>, path: &str, errs: &mut Errs| {
        if let Some(ph) = ph {
            if !pnames.contains_key(ph) {
                errs.push(join(path, "phase"), format!("{ph:?}: no such phase"));
            }
        }
    };
    for (path, a) in &raw.asserts {
        let checked = match a {
            RawAssert::Throughput {
                traffic: tr,
                service,
                direction,
                phase,
                min,
                max,
                settle: st,
            } => {
                phase_ref(phase, path, errs);
                let subject = match (tr, service) {
                    (Some(t), None) => {
                        if !known_traffic(t) {
                            errs.push(join(path, "traffic"), format!("{t:?}: no such traffic"));
                        } else if matches!(traffic_kind(t), Some(TrafficKind::Ping { .. })) {
                            errs.push(join(path, "traffic"), format!("{t:?} is a ping"));
                        }
                        if direction.is_some() {
                            errs.push(join(path, "direction"), "only with service");
                        }
                        Some(Subject::Traffic(t.clone()))
                    }
                    (None, Some(s)) => {
                        if !hosts.contains_key(s) {
                            errs.push(
                                join(path, "service"),
                                format!("{s:?}: not a service or device"),
                            );
                        }
                        match direction.as_deref() {
                            Some("up") => Some(Subject::Service(s.clone(), Direction::Up)),
                            Some("down") => Some(Subject::Service(s.clone(), Direction::Down)),
                            Some(d) => {
                                errs.push(
                                    join(path, "direction"),
                                    format!("{d:?}: expected up or down"),
                                );
                                None
                            }
                            None => {
                                errs.push(join(path, "direction"), "missing (up or down)");
                                None
                            }
                        }
                    }
                    _ => {
                        errs.push(path.clone(), "give exactly one of traffic or service");
                        None
                    }
                };
                let min_bps = min.as_ref().and_then(|v| rate(v, &join(path, "min"), errs));
                let max_bps = max.as_ref().and_then(|v| rate(v, &join(path, "max"), errs));
                if min.is_none() && max.is_none() {
                    errs.push(path.clone(), "give min, max or both");
                }
                if let (Some(a), Some(b)) = (min_bps, max_bps) {
                    if a > b {
                        errs.push(join(path, "max"), "must be >= min");
                    }
                }
                let settle = settle(st, path, errs, 2000);
                subject
                    .zip(settle)
                    .map(|(subject, settle)| Assert::Throughput {
                        subject,
                        phase: phase.clone(),
                        min_bps,
                        max_bps,
                        settle,
                    })
            }
            RawAssert::Rtt {
                traffic: tr,
                phase,
                p50_max,
                p99_max,
                loss_max,
                settle: st,
            } => {
                phase_ref(phase, path, errs);
                match traffic_kind(tr) {
                    Some(TrafficKind::Ping { .. }) => {}
                    Some(_) => errs.push(join(path, "traffic"), format!("{tr:?} is not a ping")),
                    None if known_traffic(tr) => {}
                    None => errs.push(join(path, "traffic"), format!("{tr:?}: no such traffic")),
                }
                let p50 = p50_max
                    .as_ref()
                    .and_then(|v| dur(v, &join(path, "p50_max"), errs));
                let p99 = p99_max
                    .as_ref()
                    .and_then(|v| dur(v, &join(path, "p99_max"), errs));
                if p50_max.is_none() && p99_max.is_none() && loss_max.is_none() {
                    errs.push(path.clone(), "give p50_max, p99_max or loss_max");
                }
                if let Some(l) = loss_max.filter(|l| !(0.0..=100.0).contains(l)) {
                    errs.push(join(path, "loss_max"), format!("{l}: a percentage 0..=100"));
                }
                settle(st, path, errs, 2000).map(|settle| Assert::Rtt {
                    traffic: tr.clone(),
                    phase: phase.clone(),
                    p50_max: p50,
                    p99_max: p99,
                    loss_max_pct: *loss_max,
                    settle,
                })
            }
            RawAssert::Loss {
                traffic: tr,
                phase,
                max,
                settle: st,
            } => {
                phase_ref(phase, path, errs);
                match traffic_kind(tr) {
                    Some(TrafficKind::Udp { .. } | TrafficKind::Ping { .. }) => {}
                    Some(TrafficKind::Tcp { .. }) => errs.push(
                        join(path, "traffic"),
                        format!("{tr:?} is tcp (loss is measured for udp and ping)"),
                    ),
                    None if known_traffic(tr) => {}
                    None => errs.push(join(path, "traffic"), format!("{tr:?}: no such traffic")),
                }
                if !(0.0..=100.0).contains(max) {
                    errs.push(join(path, "max"), format!("{max}: a percentage 0..=100"));
                }
                settle(st, path, errs, 1000).map(|settle| Assert::Loss {
                    traffic: tr.clone(),
                    phase: phase.clone(),
                    max_pct: *max,
                    settle,
                })
            }
            RawAssert::Reach {
                at,
                from,
                to,
                allowed,
                spoof,
            } => {
                let at = time_in_run(at, &join(path, "at"), duration, errs);
                if !is_host(from) || from == "wan" {
                    errs.push(
                        join(path, "from"),
                        format!("{from:?}: not a service or device"),
                    );
                }
                if !is_host(to) {
                    errs.push(
                        join(path, "to"),
                        format!("{to:?}: not a service, device or wan"),
                    );
                }
                if from == to {
                    errs.push(join(path, "to"), "must differ from `from`");
                }
                let spoof = match spoof.as_deref() {
                    None => Some(None),
                    Some("ip") => Some(Some(Spoof::Ip)),
                    Some("mac") => Some(Some(Spoof::Mac)),
                    Some(s) => {
                        errs.push(join(path, "spoof"), format!("{s:?}: expected ip or mac"));
                        None
                    }
                };
                at.zip(spoof).map(|(at, spoof)| Assert::Reach {
                    at,
                    from: from.clone(),
                    to: to.clone(),
                    allowed: *allowed,
                    spoof,
                })
            }
            RawAssert::Admission {
                phase,
                accepted,
                contains,
            } => {
                match raw.phases.iter().find(|(_, p, _)| &p.name == phase) {
                    None => errs.push(join(path, "phase"), format!("{phase:?}: no such phase")),
                    Some((_, _, acts)) => {
                        let n = acts
                            .iter()
                            .map(|(_, a)| a)
                            .filter(|a| matches!(a, RawAction::Policy { .. }))
                            .count();
                        if n != 1 {
                            errs.push(
                                join(path, "phase"),
                                format!("phase {phase:?} has {n} policy actions; the verdict needs exactly one"),
                            );
                        }
                    }
                }
                if contains.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    errs.push(join(path, "contains"), "must not be empty");
                }
                Some(Assert::Admission {
                    phase: phase.clone(),
                    accepted: *accepted,
                    contains: contains.clone(),
                })
            }
            RawAssert::Grade { service, min } => {
                let has_ping = traffic
                    .iter()
                    .any(|t| &t.from == service && matches!(t.kind, TrafficKind::Ping { .. }));
                if !hosts.contains_key(service) {
                    errs.push(
                        join(path, "service"),
                        format!("{service:?}: not a service or device"),
                    );
                } else if !has_ping {
                    errs.push(
                        join(path, "service"),
                        format!("{service:?} sends no ping: a grade needs its RTT"),
                    );
                }
                match Grade::parse(min) {
                    Some(g) => Some(Assert::Grade {
                        service: service.clone(),
                        min: g,
                    }),
                    None => {
                        errs.push(
                            join(path, "min"),
                            format!("{min:?}: expected A+, A, B, C, D or F"),
                        );
                        None
                    }
                }
            }
            RawAssert::Discovered { device, within } => {
                if !device_software.iter().any(|(n, _)| n == device) {
                    errs.push(
                        join(path, "device"),
                        format!("{device:?}: not a device with `run`"),
                    );
                }
                let w = dur(within, &join(path, "within"), errs);
                if let Some(x) =
                    w.filter(|x| *x < Duration::from_millis(100) || *x > Duration::from_secs(60))
                {
                    errs.push(join(path, "within"), format!("{x:?}: must be 100ms..=60s"));
                }
                w.map(|within| Assert::Discovered {
                    device: device.clone(),
                    within,
                })
            }
        };
        if let Some(c) = checked {
            asserts.push(c);
        }
    }

    Some(Scenario {
        name: name.to_string(),
        description,
        duration: duration?,
        gateway: Gateway {
            up_bps: up?,
            down_bps: down?,
            isp_buffer: isp_buffer?,
            headroom: g.headroom,
            interactive_share: g.interactive_share,
        },
        services,
        devices: raw.devices.into_iter().map(|(_, n)| n).collect(),
        device_software,
        traffic,
        phases,
        asserts,
    })
}

/// A service's policy after a `policy` action: `set` keys replace, `unset` keys are removed.
pub fn patch(base: &PolicyFields, set: &PolicyFields, unset: &[String]) -> PolicyFields {
    let mut p = base.clone();
    macro_rules! take {
        ($($f:ident),*) => {$( if set.$f.is_some() { p.$f = set.$f.clone(); } )*};
    }
    take!(
        class,
        min_rate,
        max_rate,
        down_min_rate,
        down_max_rate,
        latency,
        priority,
        priority_bounds,
        reach
    );
    if let Some(u) = &set.user {
        let mut pu = p.user.clone().unwrap_or_default();
        if u.priority.is_some() {
            pu.priority = u.priority;
        }
        if u.max_rate.is_some() {
            pu.max_rate = u.max_rate.clone();
        }
        p.user = Some(pu);
    }
    for k in unset {
        match k.as_str() {
            "min_rate" => p.min_rate = None,
            "max_rate" => p.max_rate = None,
            "down_min_rate" => p.down_min_rate = None,
            "down_max_rate" => p.down_max_rate = None,
            "latency" => p.latency = None,
            "priority" => p.priority = None,
            "user.priority" => {
                if let Some(u) = p.user.as_mut() {
                    u.priority = None;
                }
            }
            "user.max_rate" => {
                if let Some(u) = p.user.as_mut() {
                    u.max_rate = None;
                }
            }
            _ => {}
        }
    }
    if p.user.as_ref().is_some_and(|u| *u == UserFields::default()) {
        p.user = None;
    }
    p
}
