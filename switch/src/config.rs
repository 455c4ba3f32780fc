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
//! In a file, `port[N]` counts `[[port]]` tables from 1, as a reader counts them.

use crate::ofproto::FailMode;
use serde::Deserialize;
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
    /// Log filter from `--log` (RUST_LOG applies when absent).
    pub log: Option<String>,
}

impl Config {
    /// A human summary (for `--check-config`).
    pub fn summary(&self) -> String {
        let mut s = format!("datapath_id: {:016x}\n", self.datapath_id);
        for p in &self.ports {
            s.push_str(&format!("port {}: {}\n", p.number, p.name));
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
        s.push_str(&format!("ctl: {}\n", self.ctl.display()));
        s
    }
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
    log: Option<String>,
    port: Option<Vec<FilePort>>,
}

/// One `[[port]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePort {
    name: String,
    number: Option<i64>,
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
        log: s("log", fc.log),
        ports: fc.port.map(|ports| {
            ports
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let at = format!("port[{}]", i + 1);
                    RawPort {
                        number_place: format!("{at}.number"),
                        name_place: format!("{at}.name"),
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
            log,
        })
    } else {
        Err(ConfigErrors(errors))
    }
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
                    name: "f1".into()
                },
                PortConfig {
                    number: 9,
                    name: "f2".into()
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
