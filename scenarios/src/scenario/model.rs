//! The scenario file format: typed TOML as written (`Raw*`, unknown keys refused) and the checked model the runner uses.
//!
//! A scenario file describes one run: the gateway's line (`[gateway]`), the services on the
//! gateway with their policy (`[[service]]`, compiled into the controller's config), home LAN
//! devices (`[[device]]`), the traffic started in them (`[[traffic]]`), timed phases with
//! actions (`[[phase]]`) and assertions (`[[assert]]`), documented item by item below;
//! [`crate::scenario::check`] turns the raw form into [`Scenario`], reporting every error with
//! its path. Rates are tc's bit units (`"20mbit"`, parsed by `shg_flows::rate`), durations a
//! number with `ms`, `s` or `m` (`"1.5s"`).

use serde::Deserialize;
use std::time::Duration;

/// One problem in a scenario file: where (`traffic[2].rate`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// `[gateway]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Line rate towards the WAN: the switch's uplink is shaped to it (by the controller).
    pub up: Option<String>,
    /// Line rate from the WAN: the ISP router shapes its side of the uplink to it (tc HTB).
    pub down: Option<String>,
    /// The ISP's downstream FIFO, as time at the down rate (default 100ms).
    pub isp_buffer: Option<String>,
    /// Passed to the controller's `[gateway]` when set.
    pub headroom: Option<f64>,
    pub interactive_share: Option<f64>,
}

/// A service's policy keys (the controller's `[services.NAME]`, minus its identity, which the
/// runner assigns). Also the `set` of a `policy` action, where every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFields {
    pub class: Option<String>,
    pub queue: Option<u32>,
    pub min_rate: Option<String>,
    pub max_rate: Option<String>,
    pub down_min_rate: Option<String>,
    pub down_max_rate: Option<String>,
    pub latency: Option<String>,
    pub priority: Option<u8>,
    pub priority_bounds: Option<[u8; 2]>,
    pub reach: Option<Vec<String>>,
    pub user: Option<UserFields>,
}

/// `[services.NAME.user]`: the home user's choices.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFields {
    pub priority: Option<u8>,
    pub max_rate: Option<String>,
}

/// Keys a `policy` action may `unset`.
pub const UNSETTABLE: [&str; 8] = [
    "min_rate",
    "max_rate",
    "down_min_rate",
    "down_max_rate",
    "latency",
    "priority",
    "user.priority",
    "user.max_rate",
];

/// `[[traffic]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    pub name: String,
    /// `udp` (constant bit rate, measured by the receiver), `tcp` (iperf3, cubic) or `ping`.
    pub kind: String,
    pub from: String,
    pub to: String,
    pub rate: Option<String>,
    pub size: Option<u32>,
    pub hz: Option<u32>,
    pub start: Option<String>,
    pub stop: Option<String>,
}

/// `[[phase]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    pub name: String,
    pub at: String,
    /// Each action is deserialized on its own (errors per item): see [`RawAction`].
    #[serde(default, rename = "do")]
    pub actions: Vec<toml::Value>,
}

/// An action at the start of a phase.
#[allow(clippy::large_enum_variant, reason = "a handful per scenario")]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawAction {
    /// Changes one service's policy and pushes the whole policy to the controller.
    Policy {
        service: String,
        #[serde(default)]
        set: PolicyFields,
        #[serde(default)]
        unset: Vec<String>,
    },
    /// SIGKILL to the controller.
    KillController,
    /// SIGTERM to the controller (it exits leaving the flows in place).
    StopController,
    /// Starts the controller again (it reconnects and resyncs).
    StartController,
    /// SIGTERM (by PID) to the UPnP software a device runs (`run`): it says byebye.
    StopDevice { device: String },
}

/// `[[assert]]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawAssert {
    Throughput {
        traffic: Option<String>,
        service: Option<String>,
        direction: Option<String>,
        phase: Option<String>,
        min: Option<String>,
        max: Option<String>,
        settle: Option<String>,
    },
    Rtt {
        traffic: String,
        phase: Option<String>,
        p50_max: Option<String>,
        p99_max: Option<String>,
        loss_max: Option<f64>,
        settle: Option<String>,
    },
    Loss {
        traffic: String,
        phase: Option<String>,
        max: f64,
        settle: Option<String>,
    },
    Reach {
        at: String,
        from: String,
        to: String,
        allowed: bool,
        spoof: Option<String>,
    },
    Admission {
        phase: String,
        accepted: bool,
        contains: Option<String>,
    },
    Grade {
        service: String,
        min: String,
    },
    Discovered {
        device: String,
        within: String,
    },
}

// ---- the checked model ----

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub duration: Duration,
    pub gateway: Gateway,
    pub services: Vec<Service>,
    pub devices: Vec<String>,
    /// Devices that run real UPnP software (`run = ...`), in file order.
    pub device_software: Vec<(String, DeviceSoftware)>,
    pub traffic: Vec<Traffic>,
    pub phases: Vec<Phase>,
    pub asserts: Vec<Assert>,
}

/// The line and the controller's gateway knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub up_bps: u64,
    pub down_bps: u64,
    pub isp_buffer: Duration,
    pub headroom: Option<f64>,
    pub interactive_share: Option<f64>,
}

/// A service: its name, its queue id (given or assigned in file order) and its policy keys
/// as written (checked; written back verbatim into the controller's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub queue: u32,
    pub policy: PolicyFields,
}

/// UPnP software a LAN device runs (`[[device]] run = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSoftware {
    /// minidlnad: a DLNA MediaServer:1 (HTTP on 8200).
    Minidlna,
    /// gmediarender: a UPnP MediaRenderer:1 (HTTP on 49494).
    Gmediarender,
}

impl DeviceSoftware {
    pub fn parse(s: &str) -> Option<DeviceSoftware> {
        match s {
            "minidlna" => Some(DeviceSoftware::Minidlna),
            "gmediarender" => Some(DeviceSoftware::Gmediarender),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceSoftware::Minidlna => "minidlna",
            DeviceSoftware::Gmediarender => "gmediarender",
        }
    }

    /// The TCP port it serves its description on (ready once it listens).
    pub fn http_port(self) -> u16 {
        match self {
            DeviceSoftware::Minidlna => 8200,
            DeviceSoftware::Gmediarender => 49494,
        }
    }
}

/// What a traffic item runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficKind {
    /// Built-in constant-bit-rate UDP: `rate` bit/s of `size`-byte payloads; the receiver
    /// measures throughput, loss and one-way delay.
    Udp { rate_bps: u64, size: u32 },
    /// iperf3 TCP (cubic), greedy or limited to `rate_bps`; throughput at the receiver.
    Tcp { rate_bps: Option<u64> },
    /// ICMP echo at `hz`, every reply timestamped.
    Ping { hz: u32 },
}

/// A checked traffic item. `from`/`to` are host names (`wan` is the WAN server).
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub name: String,
    pub kind: TrafficKind,
    pub from: String,
    pub to: String,
    pub start: Duration,
    pub stop: Duration,
}

/// A checked phase: it runs from `at` to the next phase's `at` (or the end).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub at: Duration,
    pub actions: Vec<Action>,
}

/// A checked action.
#[allow(clippy::large_enum_variant, reason = "a handful per scenario")]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Policy {
        service: String,
        set: PolicyFields,
        unset: Vec<String>,
    },
    KillController,
    StopController,
    StartController,
    StopDevice {
        device: String,
    },
}

/// Which way a service's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the service.
    Up,
    /// Received by the service.
    Down,
}

/// What a throughput assertion measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Traffic(String),
    Service(String, Direction),
}

/// Spoofed identity of a reachability probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoof {
    /// Another source IPv4 address (the switch must drop it).
    Ip,
    /// Another source MAC address.
    Mac,
}

/// Bufferbloat grades, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grade {
    APlus,
    A,
    B,
    C,
    D,
    F,
}

impl Grade {
    /// From the RTT added under load, ms: A+ < 5, A < 30, B < 60, C < 200, D < 400, else F.
    pub fn from_added_ms(ms: f64) -> Grade {
        if ms < 5.0 {
            Grade::APlus
        } else if ms < 30.0 {
            Grade::A
        } else if ms < 60.0 {
            Grade::B
        } else if ms < 200.0 {
            Grade::C
        } else if ms < 400.0 {
            Grade::D
        } else {
            Grade::F
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grade::APlus => "A+",
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        }
    }

    pub fn parse(s: &str) -> Option<Grade> {
        [
            Grade::APlus,
            Grade::A,
            Grade::B,
            Grade::C,
            Grade::D,
            Grade::F,
        ]
        .into_iter()
        .find(|g| g.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// A checked assertion. `phase: None` is the whole run.
#[derive(Debug, Clone, PartialEq)]
pub enum Assert {
    Throughput {
        subject: Subject,
        phase: Option<String>,
        min_bps: Option<u64>,
        max_bps: Option<u64>,
        settle: Duration,
    },
    Rtt {
        traffic: String,
        phase: Option<String>,
        p50_max: Option<Duration>,
        p99_max: Option<Duration>,
        loss_max_pct: Option<f64>,
        settle: Duration,
    },
    Loss {
        traffic: String,
        phase: Option<String>,
        max_pct: f64,
        settle: Duration,
    },
    Reach {
        at: Duration,
        from: String,
        to: String,
        allowed: bool,
        spoof: Option<Spoof>,
    },
    Admission {
        phase: String,
        accepted: bool,
        contains: Option<String>,
    },
    Grade {
        service: String,
        min: Grade,
    },
    /// The device (running UPnP software) is in the controller's inventory (`GET /v1/devices`,
    /// by its address) within `within` of its software's launch.
    Discovered {
        device: String,
        within: Duration,
    },
}

impl Scenario {
    /// The window [start, end) of phase `name` (None: the whole run).
    pub fn window(&self, phase: Option<&str>) -> Option<(Duration, Duration)> {
        let Some(name) = phase else {
            return Some((Duration::ZERO, self.duration));
        };
        let i = self.phases.iter().position(|p| p.name == name)?;
        let start = self.phases.get(i)?.at;
        let end = self.phases.get(i + 1).map_or(self.duration, |p| p.at);
        Some((start, end))
    }

    /// The UPnP software device `name` runs, if any.
    pub fn software_of(&self, name: &str) -> Option<DeviceSoftware> {
        self.device_software
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    /// Whether `name` is a service.
    pub fn is_service(&self, name: &str) -> bool {
        self.services.iter().any(|s| s.name == name)
    }
}

/// Parses `"1.5s"`, `"250ms"`, `"2m"` (a non-negative number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "" => {
            return Err(format!(
                "{t:?} has no unit: write ms, s or m (e.g. \"{num}s\")"
            ))
        }
        u => return Err(format!("{t:?}: unknown unit {u:?}; expected ms, s or m")),
    };
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{t:?} is not a duration (e.g. \"1.5s\")"))?;
    let secs = x * scale;
    if !secs.is_finite() || secs > 86_400.0 {
        return Err(format!("{t:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `20000000` → `"20.00 Mbit/s"`.
pub fn fmt_mbps(bps: f64) -> String {
    format!("{:.2} Mbit/s", bps / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("1h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn grade_boundaries() {
        let cases = [
            (0.0, "A+"),
            (4.999, "A+"),
            (5.0, "A"),
            (29.9, "A"),
            (30.0, "B"),
            (59.99, "B"),
            (60.0, "C"),
            (199.9, "C"),
            (200.0, "D"),
            (399.9, "D"),
            (400.0, "F"),
            (5000.0, "F"),
        ];
        for (ms, g) in cases {
            assert_eq!(Grade::from_added_ms(ms).as_str(), g, "{ms} ms");
        }
        assert!(Grade::APlus < Grade::A && Grade::D < Grade::F);
        assert_eq!(Grade::parse("a+"), Some(Grade::APlus));
        assert_eq!(Grade::parse("E"), None);
    }
}
