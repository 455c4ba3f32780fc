//! Ports as OpenFlow sees them: `ofp_port` descriptions, liveness, and PORT_STATUS.
//!
//! A port is live (for fast-failover groups and the LIVE state bit) when its link is up and
//! the controller has not set OFPPC_PORT_DOWN. Every add, delete and change of config or
//! link state is a PORT_STATUS to the connections whose async mask wants that reason.

use super::conn::AsyncKind;
use super::{Effect, Ofproto, PortState, QueueCounters};
use crate::port::PortInfo;
use shg_flows::wire::message::{Message, PortReason};
use shg_flows::wire::port::{config, features, state, Port};
use std::collections::BTreeMap;

/// The `ofp_port_config` bits OF1.3 defines (others are ignored in PORT_MOD, as OVS).
pub(crate) const CONFIG_BITS: u32 =
    config::PORT_DOWN | config::NO_RECV | config::NO_FWD | config::NO_PACKET_IN;

/// The `ofp_port_features` speed bit for a speed in kbit/s (`OTHER` for a non-standard
/// speed, nothing when unknown).
fn speed_feature(kbps: u32) -> u32 {
    match kbps {
        0 => 0,
        10_000 => features::F_10MB_FD,
        100_000 => features::F_100MB_FD,
        1_000_000 => features::F_1GB_FD,
        10_000_000 => features::F_10GB_FD,
        40_000_000 => features::F_40GB_FD,
        100_000_000 => features::F_100GB_FD,
        1_000_000_000 => features::F_1TB_FD,
        _ => features::OTHER,
    }
}

impl PortState {
    /// Whether the port can carry traffic: link up and not administratively down.
    pub fn live(&self) -> bool {
        self.link_up && self.config & config::PORT_DOWN == 0
    }

    /// The `ofp_port` description (PORT_DESC, PORT_STATUS).
    pub fn desc(&self) -> Port {
        let mut st = 0;
        if !self.link_up {
            st |= state::LINK_DOWN;
        }
        if self.live() {
            st |= state::LIVE;
        }
        let curr = speed_feature(self.info.curr_speed_kbps);
        let curr = if curr == 0 {
            0
        } else {
            curr | features::COPPER
        };
        let supported = speed_feature(self.info.max_speed_kbps.max(self.info.curr_speed_kbps));
        let supported = if supported == 0 {
            0
        } else {
            supported | features::COPPER
        };
        Port {
            port_no: self.port_no,
            hw_addr: self.info.hw_addr,
            name: self.info.name.clone(),
            config: self.config,
            state: st,
            curr,
            advertised: 0,
            supported,
            peer: 0,
            curr_speed: self.info.curr_speed_kbps,
            max_speed: self.info.max_speed_kbps,
        }
    }
}

impl Ofproto {
    /// Adds a port (queue 0 exists from the start) and announces it (PORT_STATUS ADD). A port
    /// number already in use is replaced and announced as MODIFY.
    pub fn add_port(
        &mut self,
        port_no: u32,
        info: PortInfo,
        link_up: bool,
        now: u64,
    ) -> Vec<Effect> {
        let mut queues = BTreeMap::new();
        queues.insert(
            0,
            QueueCounters {
                created: now,
                ..QueueCounters::default()
            },
        );
        let old = self.ports.insert(
            port_no,
            PortState {
                port_no,
                info,
                config: 0,
                link_up,
                counters: super::PortCounters::default(),
                queues,
                created: now,
            },
        );
        let reason = if old.is_some() {
            PortReason::Modify
        } else {
            PortReason::Add
        };
        let mut fx = Vec::new();
        self.port_status(port_no, reason, now, &mut fx);
        fx
    }

    /// Removes a port, forgets MACs learned on it and announces it (PORT_STATUS DELETE).
    pub fn remove_port(&mut self, port_no: u32, _now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(p) = self.ports.remove(&port_no) else {
            return fx;
        };
        self.mac_table.flush_port(port_no);
        self.queue_rates.retain(|(p, _), _| *p != port_no);
        self.send_port_status(PortReason::Delete, p.desc(), &mut fx);
        fx
    }

    /// The link (carrier) of a port changed: PORT_STATUS MODIFY when it really changed. A
    /// link going down forgets the MACs learned on the port.
    pub fn set_port_link(&mut self, port_no: u32, up: bool, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(p) = self.ports.get_mut(&port_no) else {
            return fx;
        };
        if p.link_up == up {
            return fx;
        }
        p.link_up = up;
        if !up {
            self.mac_table.flush_port(port_no);
        }
        self.port_status(port_no, PortReason::Modify, now, &mut fx);
        fx
    }

    /// Whether `port_no` is a live port (fast-failover watch): it exists, its link is up and
    /// OFPPC_PORT_DOWN is not set.
    pub fn port_live(&self, port_no: u32) -> bool {
        self.ports.get(&port_no).is_some_and(PortState::live)
    }

    /// The description of one port.
    pub fn port_desc(&self, port_no: u32) -> Option<Port> {
        self.ports.get(&port_no).map(PortState::desc)
    }

    /// PORT_STATUS with the current description of `port_no`.
    pub(crate) fn port_status(
        &mut self,
        port_no: u32,
        reason: PortReason,
        _now: u64,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(desc) = self.port_desc(port_no) {
            self.send_port_status(reason, desc, fx);
        }
    }

    fn send_port_status(&self, reason: PortReason, port: Port, fx: &mut Vec<Effect>) {
        let bit = 1u32 << (u8::from(reason) & 31);
        let msg = Message::PortStatus { reason, port };
        self.broadcast(&msg, |c| c.async_mask(AsyncKind::PortStatus) & bit != 0, fx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(link_up: bool, config: u32) -> PortState {
        PortState {
            port_no: 3,
            info: PortInfo {
                name: "veth3".into(),
                hw_addr: [2, 0, 0, 0, 0, 3],
                curr_speed_kbps: 10_000_000,
                max_speed_kbps: 0,
                ifindex: None,
            },
            config,
            link_up,
            counters: Default::default(),
            queues: BTreeMap::new(),
            created: 0,
        }
    }

    #[test]
    fn liveness_and_state_bits() {
        let p = st(true, 0);
        assert!(p.live());
        let d = p.desc();
        assert_eq!(d.state, state::LIVE);
        assert_eq!(d.curr, features::F_10GB_FD | features::COPPER);
        assert_eq!(d.curr_speed, 10_000_000);
        assert_eq!(d.name, "veth3");

        let down = st(false, 0);
        assert!(!down.live());
        assert_eq!(down.desc().state, state::LINK_DOWN);

        let admin_down = st(true, config::PORT_DOWN);
        assert!(!admin_down.live());
        assert_eq!(admin_down.desc().state, 0);
        assert_eq!(admin_down.desc().config, config::PORT_DOWN);
    }

    #[test]
    fn speeds() {
        assert_eq!(speed_feature(0), 0);
        assert_eq!(speed_feature(1_000_000), features::F_1GB_FD);
        assert_eq!(speed_feature(123), features::OTHER);
    }
}
