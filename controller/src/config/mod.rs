//! The controller's config file (TOML): parsing into closed raw tables, then one validation pass that reports every error with its path.
//!
//! [`parse`] is pure (text in, [`Policy`] or every [`ConfigError`] out); the binary reads the
//! file. Paths name TOML keys the way a reader writes them: `gateway.uplink.up_rate`,
//! `services.camera.min_rate`, and list items by 0-based index: `services.nas.reach[2]`.
//! A TOML syntax or type error (unknown key, a string where a number belongs) stops at the
//! first such error, because serde does; it is reported with its line. Everything after that
//! is collected. Whether the guarantees fit the link is [`crate::admission`]'s question.
//! Every key is documented in docs/config.md.

mod daemon;
mod raw;

pub use daemon::{daemon_settings, DEFAULT_FRIENDLY_NAME, FRIENDLY_NAME_MAX};

use crate::model::{
    format_mac, Class, ForeignPolicy, Gateway, Policy, PortRef, Reach, Service, SwitchLink, Uplink,
    UserSettings,
};
use raw::{RawConfig, RawGateway, RawPort, RawService};
use shg_flows::rate::{format_rate, parse_rate};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Highest physical OpenFlow port number (OFPP_MAX).
pub const PORT_MAX: u32 = 0xffff_ff00;
/// Longest interface name Linux accepts.
pub const IFNAME_MAX: usize = 15;
/// Highest service queue id (queue 0 is the uplink's default queue).
pub const QUEUE_MAX: u32 = 1023;
/// Lowest-served priority number (0 is served first).
pub const PRIORITY_MAX: u8 = 7;
/// Default share of a line rate that guarantees may take.
pub const DEFAULT_HEADROOM_PERMILLE: u32 = 900;
/// Default share of the up line rate that interactive guarantees may take.
pub const DEFAULT_INTERACTIVE_SHARE_PERMILLE: u32 = 500;
/// The IANA OpenFlow port.
pub const OFP_TCP_PORT: u16 = 6653;

/// One problem, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `services.camera.min_rate`, or `line 12` for a TOML syntax/type error.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Parses and validates a config file's text.
pub fn parse(text: &str) -> Result<Policy, Vec<ConfigError>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| vec![toml_error(text, &e)])?;
    validate(raw)
}

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError {
            path: "file".into(),
            message,
        };
    };
    let upto = text.get(..span.start).unwrap_or(text);
    let line_no = upto.matches('\n').count();
    let lines: Vec<&str> = text.lines().collect();
    // The table the error is in: the nearest `[header]` at or above the line.
    let header = lines
        .iter()
        .take(line_no.saturating_add(1))
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = lines
        .get(line_no)
        .map(|l| l.trim())
        .filter(|l| !l.starts_with('['))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_string());
    let path = match (header, key) {
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (None, Some(k)) => k,
        (Some(h), None) => h,
        (None, None) => "file".into(),
    };
    ConfigError {
        path,
        message: format!("{message} (line {})", line_no + 1),
    }
}

/// Collects errors while walking the raw config.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn validate(raw: RawConfig) -> Result<Policy, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let gateway = gateway(&raw.gateway, &mut errs);
    let names: BTreeSet<&str> = raw.services.keys().map(String::as_str).collect();
    let mut services = BTreeMap::new();
    for (name, rs) in &raw.services {
        if let Some(s) = service(name, rs, &names, &mut errs) {
            services.insert(name.clone(), s);
        }
    }
    uniqueness(&raw, &mut errs);
    daemon::check(&raw, &mut errs);
    match gateway {
        Some(gateway) if errs.0.is_empty() => Ok(Policy { gateway, services }),
        _ => Err(errs.0),
    }
}

fn gateway(g: &RawGateway, errs: &mut Errors) -> Option<Gateway> {
    let n = errs.0.len();
    let dpid = datapath_id(&g.datapath_id, errs);
    let switch = match (&g.listen, &g.connect) {
        (Some(l), None) => target(l, "ptcp", "gateway.listen", errs).map(SwitchLink::Listen),
        (None, Some(c)) => target(c, "tcp", "gateway.connect", errs).map(SwitchLink::Connect),
        _ => {
            errs.push(
                "gateway",
                "set exactly one of listen (the switch connects to the controller) or connect",
            );
            None
        }
    };
    let uplink_port = port(&g.uplink.port, "gateway.uplink.port", errs);
    let up = line_rate(&g.uplink.up_rate, "gateway.uplink.up_rate", errs);
    let down = line_rate(&g.uplink.down_rate, "gateway.uplink.down_rate", errs);
    let lan: Vec<Option<PortRef>> = g
        .lan
        .iter()
        .enumerate()
        .map(|(i, p)| port(p, &format!("gateway.lan[{i}]"), errs))
        .collect();
    let headroom = fraction(
        g.headroom,
        DEFAULT_HEADROOM_PERMILLE,
        "gateway.headroom",
        errs,
    );
    let share = fraction(
        g.interactive_share,
        DEFAULT_INTERACTIVE_SHARE_PERMILLE,
        "gateway.interactive_share",
        errs,
    );
    let foreign = match g.foreign_flows.as_deref() {
        None | Some("report") => ForeignPolicy::Report,
        Some("delete") => ForeignPolicy::Delete,
        Some(other) => {
            errs.push(
                "gateway.foreign_flows",
                format!("{other:?} is not a choice: expected \"report\" or \"delete\""),
            );
            ForeignPolicy::Report
        }
    };
    if errs.0.len() != n {
        return None;
    }
    Some(Gateway {
        datapath_id: dpid?,
        switch: switch?,
        uplink: Uplink {
            port: uplink_port?,
            up_rate: up?,
            down_rate: down?,
        },
        lan: lan.into_iter().collect::<Option<Vec<_>>>()?,
        local: g.local.unwrap_or(true),
        headroom_permille: headroom,
        interactive_share_permille: share,
        foreign,
    })
}

fn datapath_id(s: &str, errs: &mut Errors) -> Option<u64> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    let ok = !hex.is_empty() && hex.len() <= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    match ok.then(|| u64::from_str_radix(hex, 16).ok()).flatten() {
        Some(v) => Some(v),
        None => {
            errs.push(
                "gateway.datapath_id",
                format!("{s:?} is not a datapath id: expected 1 to 16 hex digits"),
            );
            None
        }
    }
}

/// `ptcp:PORT[:IP]` (IP defaults to 0.0.0.0) or `tcp:IP:PORT`.
fn target(s: &str, scheme: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    let parsed = s
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|rest| {
            if scheme == "ptcp" {
                let (port, ip) = match rest.split_once(':') {
                    Some((p, ip)) => (p, ip.trim_start_matches('[').trim_end_matches(']')),
                    None => (rest, "0.0.0.0"),
                };
                let port = if port.is_empty() {
                    OFP_TCP_PORT
                } else {
                    port.parse().ok()?
                };
                Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, port))
            } else {
                rest.parse::<SocketAddr>().ok().or_else(|| {
                    rest.parse::<IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, OFP_TCP_PORT))
                })
            }
        });
    if parsed.is_none() {
        let form = if scheme == "ptcp" {
            "ptcp:PORT[:IP], e.g. \"ptcp:6653\""
        } else {
            "tcp:IP[:PORT], e.g. \"tcp:127.0.0.1:6653\""
        };
        errs.push(path, format!("{s:?} is not a target: expected {form}"));
    }
    parsed
}

fn port(p: &RawPort, path: &str, errs: &mut Errors) -> Option<PortRef> {
    match p {
        RawPort::Number(n) => match u32::try_from(*n) {
            Ok(v) if (1..=PORT_MAX).contains(&v) => Some(PortRef::Number(v)),
            _ => {
                errs.push(
                    path,
                    format!("{n} is not a port number: expected 1..={PORT_MAX}"),
                );
                None
            }
        },
        RawPort::Name(s) => {
            let ok = !s.is_empty()
                && s.len() <= IFNAME_MAX
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
            if ok {
                Some(PortRef::Name(s.clone()))
            } else {
                errs.push(
                    path,
                    format!(
                        "{s:?} is not an interface name: 1 to {IFNAME_MAX} printable characters, no '/' or ':'"
                    ),
                );
                None
            }
        }
    }
}

fn rate(s: &str, path: &str, errs: &mut Errors) -> Option<u64> {
    match parse_rate(s) {
        Ok(v) => Some(v),
        Err(e) => {
            errs.push(path, e.0);
            None
        }
    }
}

/// A rate that must be positive when given.
fn positive_rate(s: &str, path: &str, errs: &mut Errors) -> Option<u64> {
    let v = rate(s, path, errs)?;
    if v == 0 {
        errs.push(path, format!("{s:?} must be > 0"));
        return None;
    }
    Some(v)
}

fn line_rate(s: &str, path: &str, errs: &mut Errors) -> Option<u64> {
    positive_rate(s, path, errs)
}

fn fraction(v: Option<f64>, default: u32, path: &str, errs: &mut Errors) -> u32 {
    let Some(f) = v else {
        return default;
    };
    if !(f > 0.0 && f <= 1.0) {
        errs.push(path, format!("{f} must be > 0 and <= 1"));
        return default;
    }
    // In range (0, 1], so the rounded product is within 0..=1000.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let permille = (f * 1000.0).round() as u32;
    if permille == 0 {
        errs.push(path, format!("{f} is below 0.001"));
        return default;
    }
    permille
}

fn service_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !matches!(name, "wan" | "lan" | "gateway" | "device")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn small(v: i64, max: u8, path: &str, errs: &mut Errors) -> Option<u8> {
    match u8::try_from(v) {
        Ok(p) if p <= max => Some(p),
        _ => {
            errs.push(path, format!("{v} is out of range: expected 0..={max}"));
            None
        }
    }
}

/// `"20ms"`, `"500us"`, `"1s"` → microseconds.
fn latency(s: &str, path: &str, errs: &mut Errors) -> Option<u64> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000_000)
    } else {
        (t, 0)
    };
    let v = num
        .parse::<u64>()
        .ok()
        .filter(|_| scale != 0)
        .and_then(|n| n.checked_mul(scale));
    match v {
        Some(0) => {
            errs.push(path, format!("{s:?} must be > 0"));
            None
        }
        Some(v) => Some(v),
        None => {
            errs.push(
                path,
                format!("{s:?} is not a duration: expected a whole number and us, ms or s, like \"20ms\""),
            );
            None
        }
    }
}

fn service(
    name: &str,
    rs: &RawService,
    names: &BTreeSet<&str>,
    errs: &mut Errors,
) -> Option<Service> {
    let n = errs.0.len();
    let at = |key: &str| format!("services.{name}.{key}");
    if !service_name_ok(name) {
        errs.push(
            format!("services.{name}"),
            "a service name is 1 to 32 of a-z, 0-9, '-', '_', starts with a letter, and is not wan, lan, gateway or device",
        );
    }
    let port = port(&rs.port, &at("port"), errs);
    let mac = match parse_mac(&rs.mac) {
        Some(m) if m[0] & 1 != 0 || m == [0; 6] => {
            errs.push(at("mac"), format!("{:?} is not a unicast address", rs.mac));
            None
        }
        Some(m) => Some(m),
        None => {
            errs.push(
                at("mac"),
                format!(
                    "{:?} is not a MAC address: expected six hex pairs like \"02:00:00:00:00:01\"",
                    rs.mac
                ),
            );
            None
        }
    };
    let mut ipv4 = Vec::new();
    for (i, a) in rs.ipv4.iter().enumerate() {
        match a.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => errs.push(
                format!("services.{name}.ipv4[{i}]"),
                format!("{a} is not a unicast address"),
            ),
            Ok(ip) => ipv4.push(ip),
            Err(_) => errs.push(
                format!("services.{name}.ipv4[{i}]"),
                format!("{a:?} is not an IPv4 address"),
            ),
        }
    }
    let mut ipv6 = Vec::new();
    for (i, a) in rs.ipv6.iter().enumerate() {
        match a.parse::<Ipv6Addr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => errs.push(
                format!("services.{name}.ipv6[{i}]"),
                format!("{a} is not a unicast address"),
            ),
            Ok(ip) => ipv6.push(ip),
            Err(_) => errs.push(
                format!("services.{name}.ipv6[{i}]"),
                format!("{a:?} is not an IPv6 address"),
            ),
        }
    }
    if rs.ipv4.is_empty() && rs.ipv6.is_empty() {
        errs.push(
            format!("services.{name}"),
            "needs at least one address in ipv4 or ipv6 (its identity for anti-spoofing)",
        );
    }
    let class = Class::ALL.into_iter().find(|c| c.name() == rs.class);
    if class.is_none() {
        errs.push(
            at("class"),
            format!(
                "{:?} is not a class: expected interactive, streaming, bulk or best-effort",
                rs.class
            ),
        );
    }
    let queue = match u32::try_from(rs.queue) {
        Ok(q) if (1..=QUEUE_MAX).contains(&q) => Some(q),
        _ => {
            errs.push(
                at("queue"),
                format!("{} is out of range: expected 1..={QUEUE_MAX} (queue 0 is the uplink's default queue)", rs.queue),
            );
            None
        }
    };
    let opt_rate = |key: &str, v: &Option<String>, errs: &mut Errors| match v {
        Some(s) => positive_rate(s, &at(key), errs).map(Some),
        None => Some(None),
    };
    let min_rate = opt_rate("min_rate", &rs.min_rate, errs);
    let max_rate = opt_rate("max_rate", &rs.max_rate, errs);
    let down_min_rate = opt_rate("down_min_rate", &rs.down_min_rate, errs);
    let down_max_rate = opt_rate("down_max_rate", &rs.down_max_rate, errs);
    let latency_us = match &rs.latency {
        Some(s) => latency(s, &at("latency"), errs).map(Some),
        None => Some(None),
    };
    let priority = match rs.priority {
        Some(p) => small(p, PRIORITY_MAX, &at("priority"), errs),
        None => class.map(Class::default_priority),
    };
    let bounds = match (&rs.priority_bounds, priority) {
        (None, p) => p.map(|p| (p, p)),
        (Some(b), p) => match b.as_slice() {
            [lo, hi] => {
                let lo = small(
                    *lo,
                    PRIORITY_MAX,
                    &format!("{}[0]", at("priority_bounds")),
                    errs,
                );
                let hi = small(
                    *hi,
                    PRIORITY_MAX,
                    &format!("{}[1]", at("priority_bounds")),
                    errs,
                );
                match (lo, hi, p) {
                    (Some(lo), Some(hi), Some(p)) if lo <= p && p <= hi => Some((lo, hi)),
                    (Some(lo), Some(hi), Some(p)) => {
                        errs.push(
                            at("priority_bounds"),
                            format!("[{lo}, {hi}] must satisfy low <= priority ({p}) <= high"),
                        );
                        None
                    }
                    _ => None,
                }
            }
            _ => {
                errs.push(at("priority_bounds"), "expected [low, high]");
                None
            }
        },
    };
    let mut user = UserSettings::default();
    if let Some(u) = &rs.user {
        if let Some(p) = u.priority {
            user.priority = small(p, PRIORITY_MAX, &at("user.priority"), errs);
        }
        if let Some(m) = &u.max_rate {
            user.max_rate = positive_rate(m, &at("user.max_rate"), errs);
        }
    }
    let mut reach = Vec::new();
    for (i, r) in rs.reach.iter().enumerate() {
        let path = format!("services.{name}.reach[{i}]");
        let item = match r.as_str() {
            "wan" => Some(Reach::Wan),
            "lan" => Some(Reach::Lan),
            "gateway" => Some(Reach::Gateway),
            other => match other.strip_prefix("device:") {
                Some(t) => match device_selector(t) {
                    Ok(()) => Some(Reach::Device(t.to_string())),
                    Err(why) => {
                        errs.push(&path, format!("{r:?}: {why}"));
                        None
                    }
                },
                None if other == name => {
                    errs.push(&path, "a service always reaches itself; remove this entry");
                    None
                }
                None if names.contains(other) => Some(Reach::Service(other.to_string())),
                None => {
                    errs.push(&path, format!("unknown service {r:?}"));
                    None
                }
            },
        };
        if let Some(item) = item {
            if reach.contains(&item) {
                errs.push(&path, format!("{r:?} is listed twice"));
            } else {
                reach.push(item);
            }
        }
    }
    if errs.0.len() != n {
        return None;
    }
    Some(Service {
        name: name.to_string(),
        port: port?,
        mac: mac?,
        ipv4,
        ipv6,
        class: class?,
        queue: queue?,
        min_rate: min_rate?.unwrap_or(0),
        max_rate: max_rate?,
        down_min_rate: down_min_rate?.unwrap_or(0),
        down_max_rate: down_max_rate?,
        latency_us: latency_us?,
        priority: priority?,
        priority_bounds: bounds?,
        user,
        reach,
    })
}

/// Longest UDN accepted after `device:uuid:`.
pub const UDN_MAX: usize = 128;

/// Checks what follows `device:` in a reach entry: a UPnP device type name (`MediaRenderer`,
/// matched in any version) or one device's UDN (`uuid:...`).
fn device_selector(t: &str) -> Result<(), &'static str> {
    if let Some(id) = t.strip_prefix("uuid:") {
        let ok = !id.is_empty()
            && id.len() <= UDN_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        return if ok {
            Ok(())
        } else {
            Err("a device UDN is \"uuid:\" and 1 to 128 letters, digits, '-', '_' or '.', like \"device:uuid:4d696e69-444c-164e-9d41-b827eb5f11d6\"")
        };
    }
    if t.contains(':') {
        return Err("give the device type's name alone, like \"device:MediaRenderer\" (it matches every version), or one device as \"device:uuid:...\"");
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a device type is letters and digits, like \"device:MediaRenderer\"");
    }
    Ok(())
}

/// Ports, queues, MACs and addresses used twice (each reported at its second use).
fn uniqueness(raw: &RawConfig, errs: &mut Errors) {
    let key = |p: &RawPort| match p {
        RawPort::Number(n) => format!("port {n}"),
        RawPort::Name(s) => format!("port {s:?}"),
    };
    let mut ports: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |k: String, path: String, errs: &mut Errors| {
        if let Some(first) = ports.get(&k) {
            errs.push(&path, format!("{k} is already used by {first}"));
        } else {
            ports.insert(k, path);
        }
    };
    claim(
        key(&raw.gateway.uplink.port),
        "gateway.uplink.port".into(),
        errs,
    );
    for (i, p) in raw.gateway.lan.iter().enumerate() {
        claim(key(p), format!("gateway.lan[{i}]"), errs);
    }
    for (name, s) in &raw.services {
        claim(key(&s.port), format!("services.{name}.port"), errs);
    }
    let mut queues: BTreeMap<i64, &str> = BTreeMap::new();
    let mut macs: BTreeMap<String, &str> = BTreeMap::new();
    let mut addrs: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (name, s) in &raw.services {
        if let Some(first) = queues.get(&s.queue) {
            errs.push(
                format!("services.{name}.queue"),
                format!("queue {} is already used by services.{first}", s.queue),
            );
        } else {
            queues.insert(s.queue, name);
        }
        if let Some(m) = parse_mac(&s.mac) {
            let m = format_mac(&m);
            if let Some(first) = macs.get(&m) {
                errs.push(
                    format!("services.{name}.mac"),
                    format!("{m} is already used by services.{first}"),
                );
            } else {
                macs.insert(m, name);
            }
        }
        let v4 = s.ipv4.iter().map(|a| ("ipv4", a.parse::<IpAddr>().ok()));
        let v6 = s.ipv6.iter().map(|a| ("ipv6", a.parse::<IpAddr>().ok()));
        let mut idx: BTreeMap<&str, usize> = BTreeMap::new();
        for (fam, a) in v4.chain(v6) {
            let i = idx.entry(fam).or_insert(0);
            let here = *i;
            *i += 1;
            let Some(a) = a else { continue };
            match addrs.get(&a) {
                Some(first) => errs.push(
                    format!("services.{name}.{fam}[{here}]"),
                    format!("{a} is already used by services.{first}"),
                ),
                None => {
                    addrs.insert(a, name);
                }
            }
        }
    }
}

/// A short human summary of a valid policy (what `check-config` prints).
pub fn summary(p: &Policy) -> String {
    let g = &p.gateway;
    let mut out = format!(
        "gateway: datapath {:016x}, switch {}, uplink port {} ({} up / {} down), {} LAN port(s), LOCAL {}, headroom {}\n",
        g.datapath_id,
        g.switch,
        g.uplink.port,
        format_rate(g.uplink.up_rate),
        format_rate(g.uplink.down_rate),
        g.lan.len(),
        if g.local { "on" } else { "off" },
        crate::model::format_permille(g.headroom_permille),
    );
    for s in p.services.values() {
        let max = s
            .effective_max_rate()
            .map_or_else(|| "-".to_string(), format_rate);
        let reach: Vec<String> = s.reach.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "service {}: port {}, {}, queue {}, priority {}, min {} max {}, reach [{}]\n",
            s.name,
            s.port,
            s.class.name(),
            s.queue,
            s.effective_priority(),
            format_rate(s.min_rate),
            max,
            reach.join(", "),
        ));
    }
    out
}
