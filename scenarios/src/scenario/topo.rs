//! A scenario's network: the naming and addressing plan (pure) and the namespaces, veths, addresses, routes and the ISP's downstream shaper that realise it.
//!
//! ```text
//!  service/device ns  <p>-NAME: <p>hN ──veth── <p>sN ┐
//!                                                       ├ ns <p>-gw: shg-switch (+ controller)
//!                                 uplink: <p>s0 (port 1)┘       │
//!                                                               veth
//!  ns <p>-isp (router): <p>u0 198.18.1.254, tc HTB `down` + bfifo `isp_buffer` on its egress
//!                       <p>r0 198.18.2.254 ──veth── <p>w0 198.18.2.1 in ns <p>-wan (servers)
//! ```
//!
//! Services are 198.18.1.11.. (MAC 02:00:00:00:01:NN), devices 198.18.1.101.. (02:00:00:00:02:NN),
//! all on one L2 segment through the switch with the ISP router; the router forwards (routed,
//! so the WAN server's TCP is not held back by TCP Small Queues at the shaper). The up line is
//! the switch's shaped uplink port. Owns: exactly the namespaces and veths it names (Drop
//! guards); never touches the default namespace.

use super::model::Scenario;
use crate::netns::{run, wait_until, Netns, Veth};
use std::io;
use std::time::Duration;

/// The WAN server's address.
pub const WAN_IP: &str = "198.18.2.1";
/// The ISP router on the gateway's segment, and its MAC.
pub const ROUTER_IP: &str = "198.18.1.254";
pub const ROUTER_MAC: &str = "02:00:00:00:fe:01";
const ROUTER_WAN_IP: &str = "198.18.2.254";

/// A service or device host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub name: String,
    pub service: bool,
    /// Namespace name.
    pub ns: String,
    /// Its interface (in its namespace) and the switch's end (in the gateway namespace).
    pub host_if: String,
    pub switch_if: String,
    /// OpenFlow port number of `switch_if`.
    pub port: u32,
    pub mac: String,
    pub ipv4: String,
}

/// Names and addresses of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub prefix: String,
    pub gw_ns: String,
    pub isp_ns: String,
    pub wan_ns: String,
    /// The switch's uplink (port 1) and the router's end of it.
    pub uplink_if: String,
    pub router_if: String,
    pub router_wan_if: String,
    pub wan_if: String,
    pub hosts: Vec<HostPlan>,
    /// The controller's own interface on the LAN, for SSDP discovery: only when a device runs
    /// UPnP software.
    pub discovery: Option<DiscoveryPort>,
}

/// A veth from the gateway's own stack into the switch's LAN: `ctl_if` (in the gateway
/// namespace, [`CTL_LAN_IP`], where the controller searches and listens) and `switch_if`, a
/// LAN port of the switch (OpenFlow port `port`). The switch is in userspace: its ports have
/// no address, so the controller needs an interface of its own on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryPort {
    pub ctl_if: String,
    pub switch_if: String,
    pub port: u32,
}

/// The controller's address on the LAN (its discovery interface).
pub const CTL_LAN_IP: &str = "198.18.1.1";

impl Plan {
    /// The plan for `s` with name prefix `p` (at most 11 characters: interface names stay
    /// within 15).
    pub fn new(p: &str, s: &Scenario) -> Plan {
        let mut hosts = Vec::new();
        let all = s
            .services
            .iter()
            .map(|x| (x.name.clone(), true))
            .chain(s.devices.iter().map(|d| (d.clone(), false)));
        let (mut ns_i, mut nd_i) = (0u32, 0u32);
        for (n, (name, service)) in all.enumerate() {
            let k = n + 1;
            let (mac, ipv4) = if service {
                ns_i += 1;
                (
                    format!("02:00:00:00:01:{ns_i:02x}"),
                    format!("198.18.1.{}", 10 + ns_i),
                )
            } else {
                nd_i += 1;
                (
                    format!("02:00:00:00:02:{nd_i:02x}"),
                    format!("198.18.1.{}", 100 + nd_i),
                )
            };
            hosts.push(HostPlan {
                ns: format!("{p}-{name}"),
                name,
                service,
                host_if: format!("{p}h{k}"),
                switch_if: format!("{p}s{k}"),
                port: u32::try_from(k + 1).unwrap_or(u32::MAX),
                mac,
                ipv4,
            });
        }
        let discovery = (!s.device_software.is_empty()).then(|| DiscoveryPort {
            ctl_if: format!("{p}d0"),
            switch_if: format!("{p}d1"),
            port: u32::try_from(hosts.len() + 2).unwrap_or(u32::MAX),
        });
        Plan {
            discovery,
            prefix: p.to_string(),
            gw_ns: format!("{p}-gw"),
            isp_ns: format!("{p}-isp"),
            wan_ns: format!("{p}-wan"),
            uplink_if: format!("{p}s0"),
            router_if: format!("{p}u0"),
            router_wan_if: format!("{p}r0"),
            wan_if: format!("{p}w0"),
            hosts,
        }
    }

    /// A host by name (services and devices).
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// A host's IPv4 address; `wan` is the WAN server.
    pub fn ip_of(&self, name: &str) -> Option<&str> {
        if name == "wan" {
            return Some(WAN_IP);
        }
        self.host(name).map(|h| h.ipv4.as_str())
    }

    /// A spare address on the hosts' segment for spoofing probes (not assigned to anyone).
    pub fn spoof_ip(&self) -> &'static str {
        "198.18.1.250"
    }
}

/// The tc commands (after `tc`) that make `dev` a `down_bps` line with a FIFO of `buffer`.
pub fn isp_shaper(dev: &str, down_bps: u64, buffer: Duration) -> Vec<Vec<String>> {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bytes of a buffer of at most 2 s at a u64 rate, clamped"
    )]
    let bytes = ((down_bps as f64 / 8.0 * buffer.as_secs_f64()) as u64).clamp(3000, 1 << 30);
    [
        format!("qdisc add dev {dev} root handle 1: htb default 10 r2q 100"),
        format!(
            "class add dev {dev} parent 1: classid 1:10 htb rate {down_bps}bit ceil {down_bps}bit"
        ),
        format!("qdisc add dev {dev} parent 1:10 handle 10: bfifo limit {bytes}"),
    ]
    .iter()
    .map(|l| l.split_whitespace().map(str::to_string).collect())
    .collect()
}

/// The live network. Field order = drop order: veths, then host namespaces, then the rest.
#[derive(Debug)]
pub struct Topo {
    _veths: Vec<Veth>,
    hosts: Vec<Netns>,
    pub wan: Netns,
    pub isp: Netns,
    pub gw: Netns,
    pub plan: Plan,
}

impl Topo {
    /// Creates everything in `plan`; on error, what was created is removed (guards).
    pub fn build(plan: Plan, s: &Scenario) -> io::Result<Topo> {
        let gw = Netns::new(&plan.gw_ns)?;
        let isp = Netns::new(&plan.isp_ns)?;
        let wan = Netns::new(&plan.wan_ns)?;
        let mut veths = vec![
            Veth::new(&plan.uplink_if, &gw, &plan.router_if, &isp)?,
            Veth::new(&plan.router_wan_if, &isp, &plan.wan_if, &wan)?,
        ];
        let mut hosts = Vec::new();
        for h in &plan.hosts {
            let ns = Netns::new(&h.ns)?;
            veths.push(Veth::new(&h.host_if, &ns, &h.switch_if, &gw)?);
            hosts.push(ns);
        }
        if let Some(d) = &plan.discovery {
            veths.push(Veth::new(&d.ctl_if, &gw, &d.switch_if, &gw)?);
        }
        let topo = Topo {
            _veths: veths,
            hosts,
            wan,
            isp,
            gw,
            plan,
        };
        topo.configure(s)?;
        Ok(topo)
    }

    fn configure(&self, s: &Scenario) -> io::Result<()> {
        let p = &self.plan;
        run(
            "ip",
            &[
                "-n",
                self.isp.name(),
                "link",
                "set",
                &p.router_if,
                "address",
                ROUTER_MAC,
            ],
        )?;
        self.isp
            .add_addr(&p.router_if, &format!("{ROUTER_IP}/24"))?;
        self.isp
            .add_addr(&p.router_wan_if, &format!("{ROUTER_WAN_IP}/24"))?;
        self.isp
            .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for args in isp_shaper(&p.router_if, s.gateway.down_bps, s.gateway.isp_buffer) {
            let mut full = vec!["tc"];
            full.extend(args.iter().map(String::as_str));
            self.isp.exec_ok(&full)?;
        }
        self.wan.add_addr(&p.wan_if, &format!("{WAN_IP}/24"))?;
        self.wan
            .exec_ok(&["ip", "route", "add", "198.18.1.0/24", "via", ROUTER_WAN_IP])?;
        for (h, ns) in p.hosts.iter().zip(&self.hosts) {
            run(
                "ip",
                &[
                    "-n",
                    ns.name(),
                    "link",
                    "set",
                    &h.host_if,
                    "address",
                    &h.mac,
                ],
            )?;
            ns.add_addr(&h.host_if, &format!("{}/24", h.ipv4))?;
            ns.exec_ok(&["ip", "route", "add", "198.18.2.0/24", "via", ROUTER_IP])?;
        }
        if let Some(d) = &p.discovery {
            self.gw.add_addr(&d.ctl_if, &format!("{CTL_LAN_IP}/24"))?;
        }
        // A new veth's carrier comes up after the kernel's link watch: wait for every end.
        let up = |ns: &Netns, ifn: &str| {
            run("ip", &["-n", ns.name(), "-o", "link", "show", ifn])
                .is_ok_and(|s| s.contains("state UP"))
        };
        let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            up(&self.gw, &p.uplink_if)
                && up(&self.isp, &p.router_wan_if)
                && p.hosts
                    .iter()
                    .zip(&self.hosts)
                    .all(|(h, ns)| up(ns, &h.host_if) && up(&self.gw, &h.switch_if))
                && p.discovery
                    .as_ref()
                    .is_none_or(|d| up(&self.gw, &d.ctl_if) && up(&self.gw, &d.switch_if))
        });
        if ok {
            Ok(())
        } else {
            Err(io::Error::other("veths did not come up within 5 s"))
        }
    }

    /// A host's namespace; `wan` is the WAN server's.
    pub fn ns(&self, name: &str) -> Option<&Netns> {
        if name == "wan" {
            return Some(&self.wan);
        }
        let i = self.plan.hosts.iter().position(|h| h.name == name)?;
        self.hosts.get(i)
    }

    /// (rx, tx) bytes of the router's gateway-side interface: the up and down line.
    pub fn line_bytes(&self) -> io::Result<(u64, u64)> {
        let out = self.isp.exec_ok(&[
            "cat",
            &format!("/sys/class/net/{}/statistics/rx_bytes", self.plan.router_if),
            &format!("/sys/class/net/{}/statistics/tx_bytes", self.plan.router_if),
        ])?;
        let mut it = out.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(rx)), Some(Ok(tx))) => Ok((rx, tx)),
            _ => Err(io::Error::other(format!("line counters: {out:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::check::check_str;

    #[test]
    fn plan_names_and_addresses() {
        let s = check_str(
            "t",
            "description = \"x\"\nduration = \"5s\"\n[gateway]\nup = \"20mbit\"\ndown = \"100mbit\"\n\
             [[service]]\nname = \"call\"\nclass = \"interactive\"\n\
             [[service]]\nname = \"tv\"\nclass = \"streaming\"\n[[device]]\nname = \"laptop\"\n",
        )
        .unwrap();
        let p = Plan::new("shg1234567a", &s);
        assert_eq!(p.hosts.len(), 3);
        let call = p.host("call").unwrap();
        assert_eq!((call.port, call.ipv4.as_str()), (2, "198.18.1.11"));
        assert_eq!(call.mac, "02:00:00:00:01:01");
        let laptop = p.host("laptop").unwrap();
        assert_eq!((laptop.port, laptop.ipv4.as_str()), (4, "198.18.1.101"));
        assert_eq!(laptop.mac, "02:00:00:00:02:01");
        assert_eq!(p.ip_of("wan"), Some(WAN_IP));
        for n in [&p.uplink_if, &p.router_if, &p.router_wan_if, &p.wan_if]
            .into_iter()
            .chain(p.hosts.iter().flat_map(|h| [&h.host_if, &h.switch_if]))
        {
            assert!(n.len() <= 15, "{n}");
        }
        for ip in p
            .hosts
            .iter()
            .map(|h| h.ipv4.as_str())
            .chain([WAN_IP, ROUTER_IP, p.spoof_ip()])
        {
            assert!(crate::netns::in_test_range(ip), "{ip}");
        }
        let tc = isp_shaper("x", 100_000_000, Duration::from_millis(100));
        assert!(tc[2].join(" ").ends_with("bfifo limit 1250000"), "{tc:?}");
        assert!(tc[1]
            .join(" ")
            .contains("rate 100000000bit ceil 100000000bit"));
    }
}
