//! `shg-discover`: discovery on its own, for people and tests.
//!
//! ```text
//! shg-discover --interface IF [--interface IF2] [--timeout S] [--watch] [--json]
//!              [--st ST]... [--mx N] [--no-search] [--search-interval S]
//!              [--advertise NAME [--udn uuid:...] [--http-port P] [--max-age S]]
//!              [--log LEVEL]
//! ```
//! Without `--watch`: searches, waits `--timeout` seconds (default 3) and prints the inventory
//! (a table, or one JSON document with `--json`). With `--watch`: prints each event as it
//! happens (JSON lines with `--json`: a `ready` line first, then `event` lines, and a
//! `counters` line whenever a counter changed) until SIGINT/SIGTERM or `--timeout`; when
//! advertising it says byebye on the way out.
//!
//! Owns argument parsing and printing; everything else is [`super::Discovery`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use super::advertise::{uuid_from_seed, Advertiser};
use super::counters::Counters;
use super::inventory::{Device, Event, GoneReason, UpdateReason};
use super::socket::{Config, Discovery, InterfaceInfo};

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// --interface (repeatable, at least one)
    pub interfaces: Vec<String>,
    /// --timeout seconds
    pub timeout: Option<f64>,
    /// --watch
    pub watch: bool,
    /// --json
    pub json: bool,
    /// --st (repeatable; default ssdp:all)
    pub targets: Vec<String>,
    /// --mx
    pub mx: u32,
    /// --no-search
    pub no_search: bool,
    /// --search-interval seconds
    pub search_interval: Option<f64>,
    /// --advertise NAME
    pub advertise: Option<String>,
    /// --udn
    pub udn: Option<String>,
    /// --http-port
    pub http_port: u16,
    /// --max-age (of our advertisement)
    pub max_age: u32,
    /// --log
    pub log: String,
}

/// The usage text.
pub const USAGE: &str = "usage: shg-discover --interface IF [--interface IF2] [--timeout S] [--watch] [--json]
                    [--st ST]... [--mx N] [--no-search] [--search-interval S]
                    [--advertise NAME [--udn uuid:...] [--http-port P] [--max-age S]] [--log LEVEL]";

fn secs(flag: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{flag}: {v:?} is not a number of seconds (0..86400)"
        )),
    }
}

/// Parses the arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        interfaces: Vec::new(),
        timeout: None,
        watch: false,
        json: false,
        targets: Vec::new(),
        mx: 2,
        no_search: false,
        search_interval: None,
        advertise: None,
        udn: None,
        http_port: 0,
        max_age: 120,
        log: "warn".to_string(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--interface" | "-i" => a.interfaces.push(value()?),
            "--timeout" | "-t" => a.timeout = Some(secs(flag, &value()?)?),
            "--watch" | "-w" => a.watch = true,
            "--json" => a.json = true,
            "--st" => a.targets.push(value()?),
            "--mx" => {
                let v = value()?;
                a.mx = v
                    .parse()
                    .ok()
                    .filter(|m| (1..=5).contains(m))
                    .ok_or_else(|| format!("--mx: {v:?} is not 1..5"))?;
            }
            "--no-search" => a.no_search = true,
            "--search-interval" => a.search_interval = Some(secs(flag, &value()?)?.max(1.0)),
            "--advertise" => a.advertise = Some(value()?),
            "--udn" => {
                let v = value()?;
                if !v.starts_with("uuid:") || v.len() < 6 || v.chars().any(char::is_whitespace) {
                    return Err(format!("--udn: {v:?} is not uuid:..."));
                }
                a.udn = Some(v);
            }
            "--http-port" => {
                let v = value()?;
                a.http_port = v.parse().map_err(|_| format!("--http-port: {v:?}"))?;
            }
            "--max-age" => {
                let v = value()?;
                a.max_age = v
                    .parse()
                    .ok()
                    .filter(|m| (1..=86_400).contains(m))
                    .ok_or_else(|| format!("--max-age: {v:?} is not 1..86400"))?;
            }
            "--log" => a.log = value()?,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.interfaces.is_empty() {
        return Err("at least one --interface is needed".to_string());
    }
    if a.targets.is_empty() {
        a.targets.push("ssdp:all".to_string());
    }
    Ok(a)
}

impl Args {
    /// The discovery configuration these arguments ask for (`boot_id` for the advertisement).
    pub fn config(&self, boot_id: u32) -> Config {
        let mut c = Config::new(self.interfaces.clone());
        c.search_targets = if self.no_search {
            Vec::new()
        } else {
            self.targets.clone()
        };
        c.mx = self.mx;
        c.search_interval = self.search_interval.map(Duration::from_secs_f64);
        c.http_port = self.http_port;
        c.advertise = self.advertise.as_ref().map(|name| {
            let udn = self.udn.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                uuid_from_seed(&format!("shg-gateway:{}:{name}", host.trim()))
            });
            let mut a = Advertiser::new(&udn, name, boot_id);
            a.max_age = self.max_age;
            a
        });
        c
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.into_iter().map(json_str).collect();
    format!("[{}]", v.join(","))
}

/// One device as a JSON object.
pub fn device_json(d: &Device, now: Instant) -> String {
    let desc = d.description.as_ref();
    let field = |f: fn(&super::description::DeviceInfo) -> &str| json_str(desc.map_or("", f));
    let embedded: Vec<String> = desc
        .map(|x| {
            x.all()
                .iter()
                .skip(1)
                .map(|e| {
                    format!(
                        "{{\"udn\":{},\"device_type\":{},\"friendly_name\":{}}}",
                        json_str(&e.udn),
                        json_str(&e.device_type),
                        json_str(&e.friendly_name)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let services = desc.map(|x| x.service_types()).unwrap_or_default();
    format!(
        "{{\"udn\":{},\"device_type\":{},\"friendly_name\":{},\"manufacturer\":{},\"model_name\":{},\"model_number\":{},\"address\":{},\"interface\":{},\"location\":{},\"max_age\":{},\"expires_in_ms\":{},\"boot_id\":{},\"server\":{},\"described\":{},\"description_error\":{},\"targets\":{},\"embedded_udns\":{},\"services\":{},\"embedded_devices\":[{}]}}",
        json_str(&d.udn),
        json_str(d.device_type()),
        json_str(d.friendly_name()),
        field(|x| &x.manufacturer),
        field(|x| &x.model_name),
        field(|x| &x.model_number),
        json_str(&d.address.to_string()),
        json_str(&d.interface),
        json_str(&d.location),
        d.max_age,
        d.expires_at.saturating_duration_since(now).as_millis(),
        d.boot_id.map_or("null".to_string(), |b| b.to_string()),
        d.server.as_deref().map_or("null".to_string(), json_str),
        desc.is_some(),
        d.description_error.as_deref().map_or("null".to_string(), json_str),
        json_list(d.targets.iter().map(String::as_str)),
        json_list(d.embedded_udns.iter().map(String::as_str)),
        json_list(services),
        embedded.join(",")
    )
}

fn counters_json(c: &Counters) -> String {
    let v: Vec<String> = c
        .entries()
        .iter()
        .map(|(n, v)| format!("{}:{v}", json_str(n)))
        .collect();
    format!("{{{}}}", v.join(","))
}

fn event_json(e: &Event, t_ms: u128, now: Instant) -> String {
    let (kind, reason) = match e {
        Event::Appeared(_) => ("appeared", String::new()),
        Event::Updated(_, r) => (
            "updated",
            match r {
                UpdateReason::Description => "description",
                UpdateReason::Location => "location",
                UpdateReason::Reboot => "reboot",
                UpdateReason::Address => "address",
            }
            .to_string(),
        ),
        Event::Gone(_, r) => (
            "gone",
            match r {
                GoneReason::ByeBye => "byebye",
                GoneReason::Expired => "expired",
            }
            .to_string(),
        ),
    };
    format!(
        "{{\"t_ms\":{t_ms},\"event\":{},\"reason\":{},\"device\":{}}}",
        json_str(kind),
        json_str(&reason),
        device_json(e.device(), now)
    )
}

fn event_text(e: &Event) -> String {
    let d = e.device();
    let what = match e {
        Event::Appeared(_) => "appeared".to_string(),
        Event::Updated(_, r) => format!("updated ({r:?})"),
        Event::Gone(_, r) => format!("gone ({r:?})"),
    };
    format!(
        "{what}: {} {} {:?} at {} on {}",
        d.udn,
        d.device_type(),
        d.friendly_name(),
        d.address,
        d.interface
    )
}

fn table(devices: &[Device]) -> String {
    let mut s = String::new();
    for d in devices {
        let _ = writeln!(
            s,
            "{}  {}  {:?}  {}  {}",
            d.udn,
            d.device_type(),
            d.friendly_name(),
            d.address,
            d.location
        );
        if let Some(desc) = &d.description {
            let _ = writeln!(
                s,
                "    {} {} {}; services: {}",
                desc.manufacturer,
                desc.model_name,
                desc.model_number,
                desc.service_types().join(" ")
            );
            for e in desc.all().iter().skip(1) {
                let _ = writeln!(s, "    embedded {} {}", e.udn, e.device_type);
            }
        } else if let Some(err) = &d.description_error {
            let _ = writeln!(s, "    description: {err}");
        }
    }
    s
}

fn interfaces_json(ifs: &[InterfaceInfo]) -> String {
    let v: Vec<String> = ifs
        .iter()
        .map(|i| {
            format!(
                "{{\"name\":{},\"addr\":{},\"location\":{}}}",
                json_str(&i.name),
                json_str(&i.addr.to_string()),
                i.location.as_deref().map_or("null".to_string(), json_str)
            )
        })
        .collect();
    format!("[{}]", v.join(","))
}

/// Runs the command; returns the exit code (0 ok, 1 failure, 2 usage).
pub fn run(args: &[String]) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("shg-discover: {e}");
            }
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shg-discover: tokio runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run_async(a))
}

async fn run_async(a: Args) -> i32 {
    let boot_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u32::try_from(d.as_secs() & 0x7fff_ffff).unwrap_or(1));
    let (disc, mut events) = match Discovery::spawn(a.config(boot_id)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("shg-discover: {e}");
            return 1;
        }
    };
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    if !a.watch {
        let wait = Duration::from_secs_f64(a.timeout.unwrap_or(3.0));
        tokio::time::sleep(wait).await;
        let now = Instant::now();
        let devices = disc.devices();
        let text = if a.json {
            let v: Vec<String> = devices.iter().map(|d| device_json(d, now)).collect();
            format!(
                "{{\"interfaces\":{},\"devices\":[{}],\"counters\":{}}}\n",
                interfaces_json(disc.interfaces()),
                v.join(","),
                counters_json(&disc.counters())
            )
        } else {
            table(&devices)
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        disc.shutdown().await;
        return 0;
    }
    if a.json {
        let _ = writeln!(
            out,
            "{{\"ready\":true,\"interfaces\":{}}}",
            interfaces_json(disc.interfaces())
        );
    } else {
        for i in disc.interfaces() {
            let _ = writeln!(out, "listening on {} ({})", i.name, i.addr);
        }
    }
    let _ = out.flush();
    let deadline = a
        .timeout
        .map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shg-discover: SIGTERM handler: {e}");
            return 1;
        }
    };
    let mut last_counters = Counters::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => {
                    let line = if a.json {
                        event_json(&e, start.elapsed().as_millis(), Instant::now())
                    } else {
                        event_text(&e)
                    };
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("shg-discover: missed {n} events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                if a.json {
                    let c = disc.counters();
                    if c != last_counters {
                        let _ = writeln!(out, "{{\"t_ms\":{},\"counters\":{}}}", start.elapsed().as_millis(), counters_json(&c));
                        let _ = out.flush();
                        last_counters = c;
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            () = until_deadline => break,
        }
    }
    disc.shutdown().await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&v("--interface eth0 -i eth1 --watch --json --timeout 2.5")).unwrap();
        assert_eq!(a.interfaces, ["eth0", "eth1"]);
        assert!(a.watch && a.json);
        assert_eq!(a.timeout, Some(2.5));
        assert_eq!(a.targets, ["ssdp:all"]);
        assert!(parse_args(&v("--watch")).is_err());
        assert!(parse_args(&v("-i eth0 --mx 9")).is_err());
        assert!(parse_args(&v("-i eth0 --timeout -1")).is_err());
        assert!(parse_args(&v("-i eth0 --udn nope")).is_err());
        assert!(parse_args(&v("-i eth0 --bogus")).is_err());
        assert!(parse_args(&v("-i")).is_err());
        let c = parse_args(&v("-i eth0 --advertise gw --udn uuid:1 --no-search"))
            .unwrap()
            .config(7);
        assert!(c.search_targets.is_empty());
        let adv = c.advertise.unwrap();
        assert_eq!((adv.udn.as_str(), adv.boot_id), ("uuid:1", 7));
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
