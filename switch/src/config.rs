//! Switch configuration from command-line flags or a TOML file (same names), validated.
//!
//! Reading happens in three pure steps: flags → [`Raw`] and TOML text → [`Raw`] (syntax only,
//! each value remembering where it came from), then the two are merged (a flag overrides the
//! file's key; a repeatable flag given at least once replaces the file's whole list), then
//! [`validate`] turns the merged `Raw` into a frozen [`Config`], collecting every error with its
//! place (`port[2].number`, `--controller tcp:1.2.3.4`) rather than stopping at the first.
//! This module never opens sockets or interfaces; the only I/O is reading the `--config` file,
//! through a function the caller passes in.
//!
//! In a file, `port[N]` counts `[[port]]` tables from 1, as a reader counts them, and
//! `port[N].queue[M]` counts that port's `[[port.queue]]` tables from 1.
//!
//! # Egress QoS keys (TOML only; `shgctl switch set-queue` changes them at runtime)
//!
//! A `[[port]]` may set `rate = "20mbit"`: the port is shaped to that rate (put the uplink's
//! real line rate, a little below it, so the standing queue lives in the switch where it is
//! scheduled). Its egress queues are `[[port.queue]]` tables: `id` (the OpenFlow queue id
//! that `set_queue` names, 0 to 4294967294), `min_rate` (guaranteed; default none),
//! `max_rate` (ceiling; default the port's rate) and `priority` (0 to 7, 0 served first as in
//! tc HTB; default 7, the lowest). Rates are tc-style bit rates: `"500kbit"`, `"20mbit"`,
//! `"1gbit"` (a bare number is refused). A port with `rate` and no queue gets one queue, id 0,
//! with no guarantee. Frames without `set_queue`, or naming a queue the port lacks, go to the
//! lowest-priority queue. Whether guarantees fit the rate is checked by the scheduler
//! ([`crate::qos::sched::PortScheduler::new`]) and reported at the port's place.

use crate::ofproto::FailMode;
use crate::qos::{PortQosConfig, QueueConfig};
use serde::Deserialize;
use shg_flows::rate::{format_rate, parse_rate};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The default control socket path.
pub const DEFAULT_CTL: &str = "/run/shg-switch.ctl";
/// The IANA OpenFlow port, used when a target gives no port.
pub const OFP_TCP_PORT: u16 = 6653;
/// The highest number of a physical port (`OFPP_MAX`).
pub const OFPP_MAX: u32 = 0xffff_ff00;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// The usage text of `shg-switch --help`.
pub const USAGE: &str = "\
Usage: shg-switch [OPTIONS]

A userspace OpenFlow 1.3 switch. Options may also come from a TOML file (--config);
a flag overrides the file's key, a repeatable flag replaces the file's list.

Options:
  --config FILE.toml        read settings from FILE (keys as below, with _ for -)
  --datapath-id HEX         datapath id, up to 16 hex digits (default 1)
  --port [NUM=]IFNAME       a switch port on a kernel interface (repeatable); ports are
                            numbered 1, 2, ... in the order given unless NUM is set
  --local NAME              create TAP interface NAME as the LOCAL port
  --controller TARGET       connect to a controller: tcp:IP[:PORT] or tls:IP[:PORT] (repeatable)
  --listen TARGET           accept OpenFlow connections: ptcp:[PORT][:IP] or pssl:[PORT][:IP]
                            (repeatable; e.g. ptcp:6653:127.0.0.1 for ovs-ofctl)
  --fail-mode MODE          secure (default) or standalone (L2 learning without a controller)
  --ctl PATH                control socket for `shgctl switch` (default /run/shg-switch.ctl)
  --tls-key FILE            private key (PEM) for tls: and pssl:
  --tls-cert FILE           certificate (PEM) presented for tls: and pssl:
  --tls-ca FILE             CA certificate(s) (PEM) that peers' certificates must chain to
  --n-tables N              number of flow tables, 1 to 254 (default 64)
  --datapath-priority P     normal (default) or realtime: the datapath thread runs SCHED_FIFO
                            (priority 10) so shaped ports are served on time on a busy machine
  --kernel-fast-path on|off on (default) or off: decisions the kernel can repeat (one output
                            of an unchanged untagged frame, decided by in_port and headers up
                            to the IP ports) are handed to BPF programs at the ports' ingress
  --thread-copies on|off    on (default) or off: the datapath thread repeats its decisions for
                            later frames of the same flow key without the pipeline or the
                            switch core's lock (frames the kernel does not take)
  --log LEVEL               log filter (error, warn, info, debug, trace or a RUST_LOG directive)
  --check-config            validate the configuration, print it, and exit
  -h, --help                print this help

TOML file example:
  datapath_id = \"0000000000000001\"
  fail_mode = \"secure\"
  controllers = [\"tcp:127.0.0.1:6653\"]
  listen = [\"ptcp:6634:127.0.0.1\"]
  ctl = \"/run/shg-switch.ctl\"
  [[port]]
  name = \"veth1\"
  [[port]]
  name = \"veth2\"
  number = 7
  rate = \"20mbit\"           # egress shaped to 20 Mbit/s (TOML only)
  [[port.queue]]              # an egress queue of that port (set_queue:1)
  id = 1
  min_rate = \"6mbit\"        # guaranteed
  max_rate = \"20mbit\"       # ceiling (default: the port's rate)
  priority = 0                # 0 (served first) to 7 (default)
";

/// How an OpenFlow connection is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

/// A controller to connect to (`tcp:IP:PORT` / `tls:IP:PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerTarget {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl fmt::Display for ControllerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        write!(f, "{scheme}:{}", self.addr)
    }
}

/// An address to accept OpenFlow connections on (`ptcp:PORT:IP` / `pssl:PORT:IP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenTarget {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl fmt::Display for ListenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "ptcp",
            Transport::Tls => "pssl",
        };
        match self.addr.ip() {
            IpAddr::V4(ip) => write!(f, "{scheme}:{}:{ip}", self.addr.port()),
            IpAddr::V6(ip) => write!(f, "{scheme}:{}:[{ip}]", self.addr.port()),
        }
    }
}

/// One switch port on a kernel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// OpenFlow port number (1..=OFPP_MAX).
    pub number: u32,
    /// Kernel interface name.
    pub name: String,
    /// Egress shaping and queues (`rate`, `[[port.queue]]`); `None`: plain FIFO output.
    pub qos: Option<PortQosConfig>,
}

/// Key, certificate and CA files for TLS connections (all three needed by tls: and pssl:).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// The validated, frozen switch configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub datapath_id: u64,
    pub ports: Vec<PortConfig>,
    /// TAP interface name of the LOCAL port.
    pub local: Option<String>,
    pub controllers: Vec<ControllerTarget>,
    pub listen: Vec<ListenTarget>,
    pub fail_mode: FailMode,
    pub ctl: PathBuf,
    pub tls: TlsFiles,
    pub n_tables: u8,
    /// `datapath_priority = "realtime"`: the datapath thread runs SCHED_FIFO (priority 10),
    /// so a shaped port's timer wake-ups are not delayed by other processes on the core.
    pub realtime: bool,
    /// `kernel_fast_path = "on"` (the default): start the datapath's kernel fast path
    /// (`datapath::offload`); `"off"`: every frame goes through the datapath thread.
    pub kernel_fast_path: bool,
    /// `thread_copies = "on"` (the default): the datapath thread keeps copies of repeatable
    /// decisions (`datapath::copies`); `"off"`: every frame it receives runs the pipeline.
    pub thread_copies: bool,
    /// Log filter from `--log` (RUST_LOG applies when absent).
    pub log: Option<String>,
}

impl Config {
    /// A human summary (for `--check-config`).
    pub fn summary(&self) -> String {
        let mut s = format!("datapath_id: {:016x}\n", self.datapath_id);
        for p in &self.ports {
            s.push_str(&format!("port {}: {}\n", p.number, p.name));
            if let Some(q) = &p.qos {
                s.push_str(&qos_summary(q));
            }
        }
        if let Some(l) = &self.local {
            s.push_str(&format!("port LOCAL: {l} (tap)\n"));
        }
        for c in &self.controllers {
            s.push_str(&format!("controller: {c}\n"));
        }
        for l in &self.listen {
            s.push_str(&format!("listen: {l}\n"));
        }
        let fm = match self.fail_mode {
            FailMode::Secure => "secure",
            FailMode::Standalone => "standalone",
        };
        s.push_str(&format!("fail_mode: {fm}\n"));
        s.push_str(&format!("n_tables: {}\n", self.n_tables));
        if self.realtime {
            s.push_str("datapath_priority: realtime\n");
        }
        if !self.kernel_fast_path {
            s.push_str("kernel_fast_path: off\n");
        }
        if !self.thread_copies {
            s.push_str("thread_copies: off\n");
        }
        s.push_str(&format!("ctl: {}\n", self.ctl.display()));
        s
    }
}

/// The `--check-config` lines of one port's QoS (indented under the port line).
pub fn qos_summary(q: &PortQosConfig) -> String {
    let mut s = match q.rate {
        Some(r) => format!("  rate: {}\n", format_rate(r)),
        None => "  rate: none (not shaped)\n".to_string(),
    };
    for c in &q.queues {
        let max = c
            .max_rate
            .map_or_else(|| "port rate".to_string(), format_rate);
        s.push_str(&format!(
            "  queue {}: priority {}, min {}, max {max}\n",
            c.id,
            c.priority,
            format_rate(c.min_rate)
        ));
    }
    s
}

/// One configuration error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag (`--port 0=veth1`) or file key (`port[2].number`) the error is about.
    pub place: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every error found in a configuration, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the switch.
    Run(Config),
    /// Validate, print the configuration, exit.
    CheckConfig(Config),
    /// Print [`USAGE`].
    Help,
}

/// A value with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<T> {
    pub place: String,
    pub value: T,
}

fn item<T>(place: impl Into<String>, value: T) -> Item<T> {
    Item {
        place: place.into(),
        value,
    }
}

/// A port as written, before numbering and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPort {
    /// Place of the whole entry (`--port 2=veth1`, `port[2]`).
    pub place: String,
    /// Place of the number (`--port 2=veth1`, `port[2].number`).
    pub number_place: String,
    /// Place of the name (`--port 2=veth1`, `port[2].name`).
    pub name_place: String,
    /// The requested number, if any (checked by [`validate`]).
    pub number: Option<i64>,
    pub name: String,
    /// `rate` as written (place `port[N].rate`).
    pub rate: Option<Item<String>>,
    /// `[[port.queue]]` tables as written.
    pub queues: Vec<RawQueue>,
}

/// One `[[port.queue]]` as written, before checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQueue {
    /// Place of the table (`port[1].queue[2]`); keys are `{place}.id` and so on.
    pub place: String,
    pub id: Option<i64>,
    pub min_rate: Option<String>,
    pub max_rate: Option<String>,
    pub priority: Option<i64>,
}

/// Settings as written (flags or file), each remembering its place; unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw {
    pub datapath_id: Option<Item<String>>,
    pub ports: Option<Vec<RawPort>>,
    pub local: Option<Item<String>>,
    pub controllers: Option<Vec<Item<String>>>,
    pub listen: Option<Vec<Item<String>>>,
    pub fail_mode: Option<Item<String>>,
    pub ctl: Option<Item<String>>,
    pub tls_key: Option<Item<String>>,
    pub tls_cert: Option<Item<String>>,
    pub tls_ca: Option<Item<String>>,
    pub n_tables: Option<Item<String>>,
    pub datapath_priority: Option<Item<String>>,
    pub kernel_fast_path: Option<Item<String>>,
    pub thread_copies: Option<Item<String>>,
    pub log: Option<Item<String>>,
}

impl Raw {
    /// `self` (flags) over `file`: a value set in `self` wins; lists are replaced whole.
    pub fn over(self, file: Raw) -> Raw {
        Raw {
            datapath_id: self.datapath_id.or(file.datapath_id),
            ports: self.ports.or(file.ports),
            local: self.local.or(file.local),
            controllers: self.controllers.or(file.controllers),
            listen: self.listen.or(file.listen),
            fail_mode: self.fail_mode.or(file.fail_mode),
            ctl: self.ctl.or(file.ctl),
            tls_key: self.tls_key.or(file.tls_key),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_ca: self.tls_ca.or(file.tls_ca),
            n_tables: self.n_tables.or(file.n_tables),
            datapath_priority: self.datapath_priority.or(file.datapath_priority),
            kernel_fast_path: self.kernel_fast_path.or(file.kernel_fast_path),
            thread_copies: self.thread_copies.or(file.thread_copies),
            log: self.log.or(file.log),
        }
    }
}

/// What the flags say: settings, the `--config` file if any, and the mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub raw: Raw,
    pub config_file: Option<PathBuf>,
    pub help: bool,
    pub check_config: bool,
}

/// Parses the arguments after the program name. Accepts `--flag VALUE` and `--flag=VALUE`.
/// Collects every error (unknown flag, missing value, malformed `--port`).
pub fn parse_flags<I, S>(args: I) -> Result<Flags, ConfigErrors>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut flags = Flags::default();
    let mut errors = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            flags.help = true;
            continue;
        }
        if arg == "--check-config" {
            flags.check_config = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        const WITH_VALUE: &[&str] = &[
            "--config",
            "--datapath-id",
            "--port",
            "--local",
            "--controller",
            "--listen",
            "--fail-mode",
            "--ctl",
            "--tls-key",
            "--tls-cert",
            "--tls-ca",
            "--n-tables",
            "--datapath-priority",
            "--kernel-fast-path",
            "--thread-copies",
            "--log",
        ];
        if !WITH_VALUE.contains(&name.as_str()) {
            errors.push(ConfigError {
                place: arg.clone(),
                message: "unknown option (see --help)".into(),
            });
            continue;
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => {
                errors.push(ConfigError {
                    place: name.clone(),
                    message: "needs a value".into(),
                });
                continue;
            }
        };
        let place = format!("{name} {value}");
        let r = &mut flags.raw;
        match name.as_str() {
            "--config" => flags.config_file = Some(PathBuf::from(value)),
            "--datapath-id" => r.datapath_id = Some(item(place, value)),
            "--local" => r.local = Some(item(place, value)),
            "--fail-mode" => r.fail_mode = Some(item(place, value)),
            "--ctl" => r.ctl = Some(item(place, value)),
            "--tls-key" => r.tls_key = Some(item(place, value)),
            "--tls-cert" => r.tls_cert = Some(item(place, value)),
            "--tls-ca" => r.tls_ca = Some(item(place, value)),
            "--n-tables" => r.n_tables = Some(item(place, value)),
            "--datapath-priority" => r.datapath_priority = Some(item(place, value)),
            "--kernel-fast-path" => r.kernel_fast_path = Some(item(place, value)),
            "--thread-copies" => r.thread_copies = Some(item(place, value)),
            "--log" => r.log = Some(item(place, value)),
            "--controller" => r
                .controllers
                .get_or_insert_with(Vec::new)
                .push(item(place, value)),
            "--listen" => r
                .listen
                .get_or_insert_with(Vec::new)
                .push(item(place, value)),
            "--port" => match parse_port_flag(&value) {
                Ok((number, name)) => r.ports.get_or_insert_with(Vec::new).push(RawPort {
                    place: place.clone(),
                    number_place: place.clone(),
                    name_place: place,
                    number,
                    name,
                    rate: None,
                    queues: Vec::new(),
                }),
                Err(message) => errors.push(ConfigError { place, message }),
            },
            _ => unreachable!("every name of WITH_VALUE has an arm"),
        }
    }
    if errors.is_empty() {
        Ok(flags)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `[NUM=]IFNAME` → (number, name).
fn parse_port_flag(s: &str) -> Result<(Option<i64>, String), String> {
    match s.split_once('=') {
        Some((num, name)) => {
            let n: i64 = num
                .parse()
                .map_err(|_| format!("\"{num}\" is not a port number (expected [NUM=]IFNAME)"))?;
            Ok((Some(n), name.to_string()))
        }
        None => Ok((None, s.to_string())),
    }
}

/// The TOML file's shape. Closed: an unknown key is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    datapath_id: Option<String>,
    fail_mode: Option<String>,
    controllers: Option<Vec<String>>,
    listen: Option<Vec<String>>,
    ctl: Option<String>,
    local: Option<String>,
    tls_key: Option<String>,
    tls_cert: Option<String>,
    tls_ca: Option<String>,
    n_tables: Option<i64>,
    datapath_priority: Option<String>,
    kernel_fast_path: Option<String>,
    thread_copies: Option<String>,
    log: Option<String>,
    port: Option<Vec<FilePort>>,
}

/// One `[[port]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePort {
    name: String,
    number: Option<i64>,
    rate: Option<String>,
    queue: Option<Vec<FileQueue>>,
}

/// One `[[port.queue]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQueue {
    id: Option<i64>,
    min_rate: Option<String>,
    max_rate: Option<String>,
    priority: Option<i64>,
}

/// Parses TOML text (named `file` in errors) into a [`Raw`]. Syntax and type errors (including
/// an unknown key) come back with the file name and line.
pub fn parse_toml(file: &str, text: &str) -> Result<Raw, ConfigErrors> {
    let fc: FileConfig = toml::from_str(text).map_err(|e| {
        let place = match e.span() {
            Some(span) => {
                let line = text
                    .get(..span.start)
                    .map_or(0, |before| before.matches('\n').count())
                    + 1;
                format!("{file}:{line}")
            }
            None => file.to_string(),
        };
        ConfigErrors(vec![ConfigError {
            place,
            message: e.message().trim().to_string(),
        }])
    })?;
    let s = |key: &str, v: Option<String>| v.map(|v| item(key, v));
    let list = |key: &str, v: Option<Vec<String>>| {
        v.map(|l| {
            l.into_iter()
                .enumerate()
                .map(|(i, v)| item(format!("{key}[{}]", i + 1), v))
                .collect()
        })
    };
    Ok(Raw {
        datapath_id: s("datapath_id", fc.datapath_id),
        fail_mode: s("fail_mode", fc.fail_mode),
        controllers: list("controllers", fc.controllers),
        listen: list("listen", fc.listen),
        ctl: s("ctl", fc.ctl),
        local: s("local", fc.local),
        tls_key: s("tls_key", fc.tls_key),
        tls_cert: s("tls_cert", fc.tls_cert),
        tls_ca: s("tls_ca", fc.tls_ca),
        n_tables: fc.n_tables.map(|n| item("n_tables", n.to_string())),
        datapath_priority: s("datapath_priority", fc.datapath_priority),
        kernel_fast_path: s("kernel_fast_path", fc.kernel_fast_path),
        thread_copies: s("thread_copies", fc.thread_copies),
        log: s("log", fc.log),
        ports: fc.port.map(|ports| {
            ports
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let at = format!("port[{}]", i + 1);
                    let queues = p
                        .queue
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                        .map(|(j, q)| RawQueue {
                            place: format!("{at}.queue[{}]", j + 1),
                            id: q.id,
                            min_rate: q.min_rate,
                            max_rate: q.max_rate,
                            priority: q.priority,
                        })
                        .collect();
                    RawPort {
                        number_place: format!("{at}.number"),
                        name_place: format!("{at}.name"),
                        rate: p.rate.map(|r| item(format!("{at}.rate"), r)),
                        queues,
                        place: at,
                        number: p.number,
                        name: p.name,
                    }
                })
                .collect()
        }),
    })
}

/// Checks every setting of `raw` and builds the [`Config`], or returns all errors.
pub fn validate(raw: &Raw) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |place: &str, message: String| {
        errors.push(ConfigError {
            place: place.to_string(),
            message,
        })
    };

    let datapath_id = match &raw.datapath_id {
        None => 1,
        Some(it) => parse_datapath_id(&it.value).unwrap_or_else(|m| {
            err(&it.place, m);
            0
        }),
    };

    let mut ports: Vec<PortConfig> = Vec::new();
    for (i, p) in raw.ports.iter().flatten().enumerate() {
        let number = match p.number {
            None => u32::try_from(i + 1).ok(),
            Some(n) => match u32::try_from(n) {
                Ok(n) if (1..=OFPP_MAX).contains(&n) => Some(n),
                _ => {
                    err(
                        &p.number_place,
                        format!("{n} is not a valid port number (1 to {OFPP_MAX})"),
                    );
                    None
                }
            },
        };
        if let Err(m) = check_ifname(&p.name) {
            err(&p.name_place, m);
        }
        if let Some(prev) = raw
            .ports
            .iter()
            .flatten()
            .take(i)
            .find(|q| q.name == p.name)
        {
            err(
                &p.name_place,
                format!("interface \"{}\" is already {}", p.name, prev.place),
            );
        }
        let qos = validate_qos(p, &mut err);
        if let Some(number) = number {
            if let Some(prev) = ports.iter().find(|q| q.number == number) {
                err(
                    &p.number_place,
                    format!(
                        "port number {number} is already taken by \"{}\" (give NUM= to choose)",
                        prev.name
                    ),
                );
            } else {
                ports.push(PortConfig {
                    number,
                    name: p.name.clone(),
                    qos,
                });
            }
        }
    }

    let local = raw.local.as_ref().map(|it| {
        if let Err(m) = check_ifname(&it.value) {
            err(&it.place, m);
        }
        if let Some(p) = raw.ports.iter().flatten().find(|p| p.name == it.value) {
            err(
                &it.place,
                format!(
                    "\"{}\" is also {}; the LOCAL port needs its own TAP interface",
                    it.value, p.place
                ),
            );
        }
        it.value.clone()
    });

    let mut controllers = Vec::new();
    for it in raw.controllers.iter().flatten() {
        match parse_controller(&it.value) {
            Ok(t) => controllers.push(t),
            Err(m) => err(&it.place, m),
        }
    }
    let mut listen = Vec::new();
    for it in raw.listen.iter().flatten() {
        match parse_listen(&it.value) {
            Ok(t) => {
                if listen.contains(&t) {
                    err(&it.place, format!("{t} is given twice"));
                } else {
                    listen.push(t);
                }
            }
            Err(m) => err(&it.place, m),
        }
    }

    let fail_mode = match &raw.fail_mode {
        None => FailMode::Secure,
        Some(it) => match it.value.as_str() {
            "secure" => FailMode::Secure,
            "standalone" => FailMode::Standalone,
            other => {
                err(
                    &it.place,
                    format!("\"{other}\" is not a fail mode (secure or standalone)"),
                );
                FailMode::Secure
            }
        },
    };

    let ctl = match &raw.ctl {
        None => PathBuf::from(DEFAULT_CTL),
        Some(it) => {
            if it.value.is_empty() {
                err(&it.place, "the control socket path is empty".into());
            }
            PathBuf::from(&it.value)
        }
    };

    let path = |it: &Option<Item<String>>| it.as_ref().map(|i| PathBuf::from(&i.value));
    let tls = TlsFiles {
        key: path(&raw.tls_key),
        cert: path(&raw.tls_cert),
        ca: path(&raw.tls_ca),
    };
    let tls_users: Vec<&str> = raw
        .controllers
        .iter()
        .flatten()
        .filter(|c| c.value.starts_with("tls:"))
        .chain(
            raw.listen
                .iter()
                .flatten()
                .filter(|l| l.value.starts_with("pssl:")),
        )
        .map(|i| i.place.as_str())
        .collect();
    if let Some(first) = tls_users.first() {
        let missing: Vec<&str> = [
            ("tls_key (--tls-key)", &tls.key),
            ("tls_cert (--tls-cert)", &tls.cert),
            ("tls_ca (--tls-ca)", &tls.ca),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            err(
                first,
                format!(
                    "TLS needs a key, certificate and CA; missing {}",
                    missing.join(", ")
                ),
            );
        }
    }

    let n_tables = match &raw.n_tables {
        None => 64,
        Some(it) => match it.value.parse::<u8>() {
            // Table 255 would be OFPTT_ALL on the wire.
            Ok(n) if (1..=254).contains(&n) => n,
            _ => {
                err(
                    &it.place,
                    format!("\"{}\" is not a table count (1 to 254)", it.value),
                );
                64
            }
        },
    };

    // A setting with two spellings, each meaning a bool.
    let mut either =
        |it: &Option<Item<String>>, choices: [(&str, bool); 2], what: &str, default| {
            let Some(it) = it else { return default };
            match choices.iter().find(|(word, _)| *word == it.value) {
                Some(&(_, v)) => v,
                None => {
                    let [(a, _), (b, _)] = choices;
                    err(
                        &it.place,
                        format!("\"{}\" is not a {what} ({a} or {b})", it.value),
                    );
                    default
                }
            }
        };
    let realtime = either(
        &raw.datapath_priority,
        [("normal", false), ("realtime", true)],
        "datapath priority",
        false,
    );
    let kernel_fast_path = either(
        &raw.kernel_fast_path,
        [("on", true), ("off", false)],
        "kernel fast path setting",
        true,
    );
    let thread_copies = either(
        &raw.thread_copies,
        [("on", true), ("off", false)],
        "thread copies setting",
        true,
    );

    let log = raw.log.as_ref().map(|it| {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&it.value) {
            err(
                &it.place,
                format!("\"{}\" is not a log filter: {e}", it.value),
            );
        }
        it.value.clone()
    });

    if errors.is_empty() {
        Ok(Config {
            datapath_id,
            ports,
            local,
            controllers,
            listen,
            fail_mode,
            ctl,
            tls,
            n_tables,
            realtime,
            kernel_fast_path,
            thread_copies,
            log,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The lowest queue priority (the default of a `[[port.queue]]` without `priority`).
pub const LOWEST_PRIORITY: u8 = 7;
/// The highest queue id (`OFPQ_ALL` = 0xffffffff is not a queue).
pub const MAX_QUEUE_ID: u32 = 0xffff_fffe;

/// A rate key: a tc-style rate; `positive` refuses zero.
fn check_rate(text: &str, positive: bool) -> Result<u64, String> {
    let r = parse_rate(text).map_err(|e| e.to_string())?;
    if positive && r == 0 {
        return Err(format!("{text:?}: a rate of zero carries nothing"));
    }
    Ok(r)
}

/// The port's QoS (`rate`, `[[port.queue]]`), or `None` when it sets neither. Errors go to
/// `err` with their key's place; the scheduler's own checks (guarantees within the rate,
/// ceilings, ...) are reported at the port's place.
fn validate_qos(p: &RawPort, err: &mut dyn FnMut(&str, String)) -> Option<PortQosConfig> {
    if p.rate.is_none() && p.queues.is_empty() {
        return None;
    }
    let mut ok = true;
    let rate = match &p.rate {
        None => None,
        Some(it) => match check_rate(&it.value, true) {
            Ok(r) => Some(r),
            Err(m) => {
                err(&it.place, m);
                ok = false;
                None
            }
        },
    };
    let mut queues: Vec<QueueConfig> = Vec::new();
    for (j, q) in p.queues.iter().enumerate() {
        let at = &q.place;
        let id = match q.id {
            None => {
                err(at, "a queue needs an id (0 to 4294967294)".into());
                None
            }
            Some(id) => match u32::try_from(id) {
                Ok(id) if id <= MAX_QUEUE_ID => Some(id),
                _ => {
                    err(
                        &format!("{at}.id"),
                        format!("{id} is not a queue id (0 to {MAX_QUEUE_ID})"),
                    );
                    None
                }
            },
        };
        let mut rate_key = |key: &str, v: &Option<String>| -> Result<Option<u64>, ()> {
            match v {
                None => Ok(None),
                Some(t) => check_rate(t, key == "max_rate").map(Some).map_err(|m| {
                    err(&format!("{at}.{key}"), m);
                }),
            }
        };
        let min_rate = rate_key("min_rate", &q.min_rate);
        let max_rate = rate_key("max_rate", &q.max_rate);
        let priority = match q.priority {
            None => Some(LOWEST_PRIORITY),
            Some(n) => match u8::try_from(n) {
                Ok(n) if n <= LOWEST_PRIORITY => Some(n),
                _ => {
                    err(
                        &format!("{at}.priority"),
                        format!("{n} is not a priority (0, the highest, to {LOWEST_PRIORITY})"),
                    );
                    None
                }
            },
        };
        let earlier = p.queues.iter().take(j).find(|e| e.id == q.id);
        if let (Some(id), Some(prev)) = (id, earlier) {
            err(
                &format!("{at}.id"),
                format!("queue {id} is already {}", prev.place),
            );
            ok = false;
            continue;
        }
        match (id, min_rate, max_rate, priority) {
            (Some(id), Ok(min_rate), Ok(max_rate), Some(priority)) => {
                if let (Some(min), Some(max)) = (min_rate, max_rate) {
                    if min > max {
                        err(
                            &format!("{at}.min_rate"),
                            format!(
                                "the guarantee {} is above the ceiling max_rate {}",
                                format_rate(min),
                                format_rate(max)
                            ),
                        );
                        ok = false;
                    }
                }
                queues.push(QueueConfig {
                    id,
                    min_rate: min_rate.unwrap_or(0),
                    max_rate,
                    priority,
                })
            }
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let cfg = normalize_qos(PortQosConfig { rate, queues });
    match crate::qos::sched::PortScheduler::new(cfg.clone(), 0) {
        Ok(_) => Some(cfg),
        Err(m) => {
            err(&p.place, m);
            None
        }
    }
}

/// A shaped port without queues gets one: id 0, no guarantee, the lowest priority.
pub fn normalize_qos(mut cfg: PortQosConfig) -> PortQosConfig {
    if cfg.rate.is_some() && cfg.queues.is_empty() {
        cfg.queues.push(QueueConfig {
            id: 0,
            min_rate: 0,
            max_rate: None,
            priority: LOWEST_PRIORITY,
        });
    }
    cfg
}

/// Flags (and the file they name, read by `read`) → what to do. All errors, with places.
pub fn parse_command<I, S>(
    args: I,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, ConfigErrors>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let flags = parse_flags(args)?;
    if flags.help {
        return Ok(Command::Help);
    }
    let file = match &flags.config_file {
        None => Raw::default(),
        Some(path) => {
            let name = path.display().to_string();
            let text = read(path).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    place: format!("--config {name}"),
                    message: format!("cannot read: {e}"),
                }])
            })?;
            parse_toml(&name, &text)?
        }
    };
    let config = validate(&flags.raw.over(file))?;
    Ok(if flags.check_config {
        Command::CheckConfig(config)
    } else {
        Command::Run(config)
    })
}

/// Up to 16 hex digits, optionally with `0x`.
pub fn parse_datapath_id(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "\"{s}\" is not a datapath id (1 to 16 hex digits, e.g. 0000000000000001)"
        ));
    }
    u64::from_str_radix(digits, 16).map_err(|e| format!("\"{s}\": {e}"))
}

/// A Linux interface name: 1 to 15 bytes, no '/', ':' or whitespace.
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the interface name is empty".into());
    }
    if s.len() > IFNAME_MAX {
        return Err(format!(
            "interface name \"{s}\" is longer than {IFNAME_MAX} bytes"
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "\"{s}\" is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// `IP` or `[IPv6]`, without brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse().ok()
}

/// `tcp:IP[:PORT]` or `tls:IP[:PORT]` (IPv6 in brackets); the port defaults to 6653.
pub fn parse_controller(s: &str) -> Result<ControllerTarget, String> {
    let (transport, rest) = match s.split_once(':') {
        Some(("tcp", r)) => (Transport::Tcp, r),
        Some(("tls" | "ssl", r)) => (Transport::Tls, r),
        _ => {
            return Err(format!(
                "\"{s}\" is not a controller target (tcp:IP:PORT or tls:IP:PORT)"
            ))
        }
    };
    let addr = if let Ok(a) = rest.parse::<SocketAddr>() {
        a
    } else if let Some(ip) = parse_ip(rest) {
        SocketAddr::new(ip, OFP_TCP_PORT)
    } else {
        return Err(format!(
            "\"{rest}\" is not IP[:PORT] (a name is not accepted; IPv6 goes in brackets)"
        ));
    };
    if addr.port() == 0 {
        return Err(format!("\"{s}\": port 0 cannot be connected to"));
    }
    Ok(ControllerTarget { transport, addr })
}

/// `ptcp:[PORT][:IP]` or `pssl:[PORT][:IP]`; the port defaults to 6653 (0 picks a free one),
/// the IP to 0.0.0.0.
pub fn parse_listen(s: &str) -> Result<ListenTarget, String> {
    let (transport, rest) = match s.split_once(':') {
        Some(("ptcp", r)) => (Transport::Tcp, r),
        Some(("pssl", r)) => (Transport::Tls, r),
        _ => {
            return Err(format!(
                "\"{s}\" is not a listen target (ptcp:PORT[:IP] or pssl:PORT[:IP])"
            ))
        }
    };
    let (port_s, ip_s) = match rest.split_once(':') {
        Some((p, ip)) => (p, Some(ip)),
        None => (rest, None),
    };
    let port = if port_s.is_empty() {
        OFP_TCP_PORT
    } else {
        port_s
            .parse::<u16>()
            .map_err(|_| format!("\"{port_s}\" is not a TCP port (0 to 65535)"))?
    };
    let ip = match ip_s {
        None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(ip) => parse_ip(ip).ok_or_else(|| format!("\"{ip}\" is not an IP address"))?,
    };
    Ok(ListenTarget {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Result<Command, ConfigErrors> {
        parse_command(args.iter().copied(), &|_| Ok(String::new()))
    }

    fn run(args: &[&str]) -> Config {
        match cmd(args) {
            Ok(Command::Run(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn errs(args: &[&str]) -> Vec<String> {
        match cmd(args) {
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
            Ok(c) => panic!("expected errors, got {c:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]);
        assert_eq!(c.datapath_id, 1);
        assert_eq!(c.n_tables, 64);
        assert_eq!(c.fail_mode, FailMode::Secure);
        assert_eq!(c.ctl, PathBuf::from(DEFAULT_CTL));
        assert!(c.ports.is_empty() && c.controllers.is_empty() && c.listen.is_empty());
        assert!(c.kernel_fast_path && c.thread_copies);
    }

    #[test]
    fn fast_paths_turn_off_and_bad_values_are_named() {
        let c = run(&["--kernel-fast-path", "off", "--thread-copies=off"]);
        assert!(!c.kernel_fast_path && !c.thread_copies);
        assert!(c.summary().contains("thread_copies: off\n"));
        assert_eq!(
            errs(&["--thread-copies", "maybe"]),
            vec!["--thread-copies maybe: \"maybe\" is not a thread copies setting (on or off)"]
        );
    }

    #[test]
    fn ports_numbered_in_order_unless_given() {
        let c = run(&["--port", "veth1", "--port=7=veth2", "--port", "veth3"]);
        let got: Vec<(u32, &str)> = c
            .ports
            .iter()
            .map(|p| (p.number, p.name.as_str()))
            .collect();
        assert_eq!(got, vec![(1, "veth1"), (7, "veth2"), (3, "veth3")]);
    }

    #[test]
    fn duplicate_port_number_and_name_rejected() {
        let e = errs(&["--port", "a", "--port", "1=b", "--port", "a"]);
        assert_eq!(
            e,
            vec![
                "--port 1=b: port number 1 is already taken by \"a\" (give NUM= to choose)",
                "--port a: interface \"a\" is already --port a",
            ]
        );
    }

    #[test]
    fn all_errors_reported() {
        let e = errs(&[
            "--datapath-id",
            "xyz",
            "--fail-mode",
            "open",
            "--controller",
            "udp:1.2.3.4:1",
            "--listen",
            "ptcp:99999",
            "--port",
            "0=veth1",
            "--n-tables",
            "0",
        ]);
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(e[0].starts_with("--datapath-id xyz: \"xyz\" is not a datapath id"));
        assert_eq!(
            e[1],
            "--port 0=veth1: 0 is not a valid port number (1 to 4294967040)"
        );
        assert!(e
            .iter()
            .any(|l| l.starts_with("--controller udp:1.2.3.4:1: ")));
        assert!(e
            .iter()
            .any(|l| l.starts_with("--listen ptcp:99999: \"99999\" is not a TCP port")));
        assert!(e.iter().any(|l| l.starts_with("--fail-mode open: ")));
        assert!(e.iter().any(|l| l.starts_with("--n-tables 0: ")));
    }

    #[test]
    fn unknown_flag_and_missing_value() {
        let e = errs(&["--bogus", "--port"]);
        assert_eq!(
            e,
            vec![
                "--bogus: unknown option (see --help)",
                "--port: needs a value"
            ]
        );
    }

    #[test]
    fn targets() {
        let c = parse_controller("tcp:127.0.0.1:6633").unwrap();
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.addr, "127.0.0.1:6633".parse().unwrap());
        let c = parse_controller("tls:[2001:db8::1]").unwrap();
        assert_eq!(c.transport, Transport::Tls);
        assert_eq!(c.addr, "[2001:db8::1]:6653".parse().unwrap());
        assert!(parse_controller("tcp:localhost:6653").is_err());
        assert!(parse_controller("tcp:1.2.3.4:0").is_err());
        let l = parse_listen("ptcp:6634:127.0.0.1").unwrap();
        assert_eq!(l.addr, "127.0.0.1:6634".parse().unwrap());
        assert_eq!(l.to_string(), "ptcp:6634:127.0.0.1");
        let l = parse_listen("pssl:").unwrap();
        assert_eq!(
            (l.transport, l.addr),
            (Transport::Tls, "0.0.0.0:6653".parse().unwrap())
        );
        let l = parse_listen("ptcp:0:[::1]").unwrap();
        assert_eq!(l.addr, "[::1]:0".parse().unwrap());
        assert!(parse_listen("ptcp:1:nowhere").is_err());
        assert!(parse_listen("tcp:1").is_err());
    }

    #[test]
    fn datapath_ids() {
        assert_eq!(parse_datapath_id("0000000000000001"), Ok(1));
        assert_eq!(parse_datapath_id("0xff"), Ok(255));
        assert!(parse_datapath_id("00000000000000001").is_err());
        assert!(parse_datapath_id("").is_err());
        assert!(parse_datapath_id("12g").is_err());
    }

    #[test]
    fn tls_needs_files() {
        let e = errs(&["--controller", "tls:1.2.3.4:6653", "--tls-ca", "ca.pem"]);
        assert_eq!(
            e,
            vec!["--controller tls:1.2.3.4:6653: TLS needs a key, certificate and CA; missing tls_key (--tls-key), tls_cert (--tls-cert)"]
        );
    }

    #[test]
    fn flags_override_file() {
        let file =
            "datapath_id = \"a\"\nfail_mode = \"standalone\"\ncontrollers = [\"tcp:1.1.1.1:1\"]\n\
                    [[port]]\nname = \"f1\"\n[[port]]\nname = \"f2\"\nnumber = 9\n";
        let read = |_: &Path| Ok(file.to_string());
        let c = match parse_command(
            [
                "--config",
                "x.toml",
                "--datapath-id",
                "b",
                "--controller",
                "tcp:2.2.2.2:2",
            ],
            &read,
        ) {
            Ok(Command::Run(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.datapath_id, 0xb);
        assert_eq!(c.fail_mode, FailMode::Standalone);
        assert_eq!(c.controllers.len(), 1);
        assert_eq!(c.controllers[0].addr, "2.2.2.2:2".parse().unwrap());
        assert_eq!(
            c.ports,
            vec![
                PortConfig {
                    number: 1,
                    name: "f1".into(),
                    qos: None,
                },
                PortConfig {
                    number: 9,
                    name: "f2".into(),
                    qos: None,
                }
            ]
        );
    }

    #[test]
    fn file_errors_name_their_key_and_line() {
        let e = parse_toml("s.toml", "datapath_id = \"1\"\nbogus = 3\n").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.0[0].place == "s.toml:2", "{e}");
        assert!(e.0[0].message.contains("unknown field `bogus`"), "{e}");
        let raw = parse_toml(
            "s.toml",
            "[[port]]\nname=\"a\"\n[[port]]\nname=\"b\"\nnumber=0\n",
        )
        .unwrap();
        let e = validate(&raw).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port[2].number: 0 is not a valid port number (1 to 4294967040)"
        );
    }

    fn qos_of(toml: &str) -> Result<Vec<Option<PortQosConfig>>, Vec<String>> {
        let raw = parse_toml("q.toml", toml).map_err(|e| vec![e.to_string()])?;
        validate(&raw)
            .map(|c| c.ports.into_iter().map(|p| p.qos).collect())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn qos_keys_parse_with_defaults() {
        let got = qos_of(
            "[[port]]\nname=\"a\"\nrate=\"20mbit\"\n\
             [[port.queue]]\nid=1\nmin_rate=\"6mbit\"\npriority=0\n\
             [[port.queue]]\nid=2\nmax_rate=\"1.5mbit\"\n\
             [[port]]\nname=\"b\"\nrate=\"1gbit\"\n[[port]]\nname=\"c\"\n",
        )
        .unwrap();
        assert_eq!(
            got[0],
            Some(PortQosConfig {
                rate: Some(20_000_000),
                queues: vec![
                    QueueConfig {
                        id: 1,
                        min_rate: 6_000_000,
                        max_rate: None,
                        priority: 0
                    },
                    QueueConfig {
                        id: 2,
                        min_rate: 0,
                        max_rate: Some(1_500_000),
                        priority: LOWEST_PRIORITY
                    },
                ]
            })
        );
        // A shaped port without queues gets the default queue 0.
        assert_eq!(
            got[1],
            Some(PortQosConfig {
                rate: Some(1_000_000_000),
                queues: vec![QueueConfig {
                    id: 0,
                    min_rate: 0,
                    max_rate: None,
                    priority: LOWEST_PRIORITY
                }]
            })
        );
        assert_eq!(got[2], None);
    }

    #[test]
    fn qos_errors_name_their_key() {
        let e = qos_of(
            "[[port]]\nname=\"a\"\nrate=\"fast\"\n\
             [[port.queue]]\nid=-1\nmin_rate=\"1\"\npriority=9\n\
             [[port.queue]]\nmax_rate=\"2kbps\"\n\
             [[port]]\nname=\"b\"\n[[port.queue]]\nid=4\n[[port.queue]]\nid=4\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 7, "{e:#?}");
        assert!(
            e[0].starts_with("port[1].rate: \"fast\" is not a rate"),
            "{e:#?}"
        );
        assert!(e[1].starts_with("port[1].queue[1].id: -1 is not a queue id"));
        assert!(e[2].starts_with("port[1].queue[1].min_rate: \"1\" has no unit"));
        assert!(e[3].starts_with("port[1].queue[1].priority: 9 is not a priority"));
        assert_eq!(
            e[4],
            "port[1].queue[2]: a queue needs an id (0 to 4294967294)"
        );
        assert!(e[5].starts_with("port[1].queue[2].max_rate: \"2kbps\": unknown unit"));
        assert_eq!(
            e[6],
            "port[2].queue[2].id: queue 4 is already port[2].queue[1]"
        );
    }

    #[test]
    fn qos_scheduler_refusals_are_reported_at_the_port() {
        // Guarantees above the port's rate cannot be kept: the scheduler says so.
        let e = qos_of(
            "[[port]]\nname=\"a\"\nrate=\"1mbit\"\n[[port.queue]]\nid=1\nmin_rate=\"2mbit\"\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with("port[1]: "), "{e:#?}");
    }

    #[test]
    fn unreadable_file() {
        let e = parse_command(["--config", "/nonexistent.toml"], &|p: &Path| {
            std::fs::read_to_string(p)
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--config /nonexistent.toml: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn help_and_check() {
        assert_eq!(cmd(&["--help", "--bogus-after"]).ok(), None);
        assert_eq!(cmd(&["-h"]), Ok(Command::Help));
        assert!(matches!(
            cmd(&["--check-config"]),
            Ok(Command::CheckConfig(_))
        ));
    }
}
