//! The validated policy: the gateway, its ports and its services, as admission and the planner read it.
//!
//! Values here are only built by [`crate::config`] after every check passed, so a `Policy` is
//! always well formed (unique names, queues, MACs and ports; rates parsed; reach targets that
//! name existing services). Whether its guarantees fit the link is a separate question, answered
//! by [`crate::admission`]. Pure data: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// A switch port as the policy names it: by OpenFlow number, or by interface name (resolved
/// against the switch's port descriptions when planning).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    Number(u32),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// How the controller meets the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchLink {
    /// Listen for the switch to connect (`ptcp:PORT[:IP]`).
    Listen(SocketAddr),
    /// Connect to the switch (`tcp:IP:PORT`).
    Connect(SocketAddr),
}

impl fmt::Display for SwitchLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchLink::Listen(a) => write!(f, "ptcp:{}:{}", a.port(), a.ip()),
            SwitchLink::Connect(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// What to do with flows, meters and groups on the switch that the planner did not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForeignPolicy {
    /// Leave them in place and list them in [`crate::planner::Plan::foreign`] (default).
    #[default]
    Report,
    /// Delete them (the planner owns the whole switch).
    Delete,
}

/// The WAN uplink: the port whose egress is shaped and scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub port: PortRef,
    /// Line rate towards the WAN, bits/s (the uplink port is shaped to it).
    pub up_rate: u64,
    /// Line rate from the WAN, bits/s.
    pub down_rate: u64,
}

/// The gateway: which switch, how to reach it, and its non-service ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub datapath_id: u64,
    pub switch: SwitchLink,
    pub uplink: Uplink,
    /// Home LAN ports (devices, not services).
    pub lan: Vec<PortRef>,
    /// Whether the LOCAL port (the gateway's own stack) takes part in forwarding.
    pub local: bool,
    /// Share of each line rate that guarantees may take, in thousandths (900 = 0.9).
    pub headroom_permille: u32,
    /// Share of the up line rate that interactive guarantees may take, in thousandths.
    pub interactive_share_permille: u32,
    pub foreign: ForeignPolicy,
}

/// Latency class of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Interactive,
    Streaming,
    Bulk,
    BestEffort,
}

impl Class {
    /// All classes, in the order the config accepts them.
    pub const ALL: [Class; 4] = [
        Class::Interactive,
        Class::Streaming,
        Class::Bulk,
        Class::BestEffort,
    ];

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Streaming => "streaming",
            Class::Bulk => "bulk",
            Class::BestEffort => "best-effort",
        }
    }

    /// The queue priority a service of this class gets when the config gives none.
    pub fn default_priority(self) -> u8 {
        match self {
            Class::Interactive => 0,
            Class::Streaming => 2,
            Class::Bulk => 4,
            Class::BestEffort => 6,
        }
    }
}

/// One thing a service may reach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// The uplink (`"wan"`).
    Wan,
    /// The home LAN ports (`"lan"`).
    Lan,
    /// The gateway's own stack on LOCAL (`"gateway"`).
    Gateway,
    /// Devices found by discovery: of a UPnP device type (`"device:MediaRenderer"`, any
    /// version), or one device by its UDN (`"device:uuid:..."`, kept with its `uuid:`).
    Device(String),
    /// Another service, by name; allowed in both directions.
    Service(String),
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reach::Wan => f.write_str("wan"),
            Reach::Lan => f.write_str("lan"),
            Reach::Gateway => f.write_str("gateway"),
            Reach::Device(t) => write!(f, "device:{t}"),
            Reach::Service(s) => f.write_str(s),
        }
    }
}

/// Values the home user set, within the ISP's bounds (checked by admission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserSettings {
    pub priority: Option<u8>,
    pub max_rate: Option<u64>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub port: PortRef,
    pub mac: [u8; 6],
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub class: Class,
    /// OpenFlow queue id on the uplink (also the base of its meter ids and its cookie owner).
    pub queue: u32,
    /// Guaranteed rate towards the WAN, bits/s (0: none).
    pub min_rate: u64,
    /// Cap towards the WAN, bits/s, as the ISP set it.
    pub max_rate: Option<u64>,
    /// Guaranteed rate from the WAN, bits/s (0: none).
    pub down_min_rate: u64,
    /// Cap from the WAN, bits/s.
    pub down_max_rate: Option<u64>,
    /// Latency target, microseconds.
    pub latency_us: Option<u64>,
    /// Queue priority as the ISP set it (0 is served first).
    pub priority: u8,
    /// Lowest and highest priority number the user may choose (inclusive).
    pub priority_bounds: (u8, u8),
    pub user: UserSettings,
    pub reach: Vec<Reach>,
}

impl Service {
    /// The priority in force: the user's choice, else the ISP's.
    pub fn effective_priority(&self) -> u8 {
        self.user.priority.unwrap_or(self.priority)
    }

    /// The upstream cap in force: the user's (lower) choice, else the ISP's.
    pub fn effective_max_rate(&self) -> Option<u64> {
        self.user.max_rate.or(self.max_rate)
    }

    /// True when this service lists `r` (device and service names compared exactly).
    pub fn reaches(&self, r: &Reach) -> bool {
        self.reach.contains(r)
    }
}

/// The whole validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub gateway: Gateway,
    /// By name (sorted: every iteration order derived from it is deterministic).
    pub services: BTreeMap<String, Service>,
}

impl Policy {
    /// Whether services `a` and `b` may talk: either one lists the other.
    pub fn services_allowed(&self, a: &str, b: &str) -> bool {
        let lists = |x: &str, y: &str| {
            self.services
                .get(x)
                .is_some_and(|s| s.reaches(&Reach::Service(y.to_string())))
        };
        a != b && (lists(a, b) || lists(b, a))
    }
}

/// Formats a MAC as `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Formats a fraction kept in thousandths (`900` → `"0.9"`, `1000` → `"1"`).
pub fn format_permille(p: u32) -> String {
    let whole = p / 1000;
    let frac = p % 1000;
    if frac == 0 {
        return whole.to_string();
    }
    let s = format!("{frac:03}");
    format!("{whole}.{}", s.trim_end_matches('0'))
}

/// `rate × permille / 1000`, rounded down, without overflow.
pub fn scale_permille(rate: u64, permille: u32) -> u64 {
    let v = u128::from(rate) * u128::from(permille) / 1000;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// `[api]`: where and how the daemon serves the northbound HTTPS API. A setting of the
/// daemon on this machine, not part of the policy: the API neither shows nor changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM), as written (relative paths: to the config file).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
    /// The CA whose client certificates are the ISP role (PEM).
    pub isp_ca: std::path::PathBuf,
    /// The bearer token store (`shgctl token create --store FILE`).
    pub tokens: std::path::PathBuf,
    /// An optional plain-HTTP listener serving only `/metrics`, on a loopback address.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[discovery]`: SSDP/UPnP discovery of home devices on LAN interfaces (a daemon setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// Interfaces to discover on (each needs an IPv4 address).
    pub interfaces: Vec<String>,
    /// Whether the gateway announces itself as a UPnP device.
    pub advertise: bool,
    /// Its friendly name when it does.
    pub friendly_name: String,
}

/// The daemon's own tables of the config file: everything there that is not the policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonSettings {
    pub api: Option<ApiSettings>,
    pub discovery: Option<DiscoverySettings>,
}
