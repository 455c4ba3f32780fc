//! Ports as OpenFlow sees them: `ofp_port` descriptions, liveness, PORT_STATUS, and each
//! port's egress QoS (its [`PortScheduler`], if shaped).
//!
//! A port is live (for fast-failover groups and the LIVE state bit) when its link is up and
//! the controller has not set OFPPC_PORT_DOWN. Every add, delete and change of config or
//! link state is a PORT_STATUS to the connections whose async mask wants that reason.
//!
//! # Egress QoS
//!
//! A port with a scheduler (`Ofproto::qos`) is "shaped": every frame output to it is split
//! into wire-size frames ([`crate::datapath::segment::split_gso`]) when a rate of the port is
//! below 1 Gbit/s (`PortScheduler::splits_gso`), and enqueued on the queue
//! its `set_queue` chose (no set_queue, or an id the port lacks: the scheduler's default
//! queue, the lowest-priority one) by [`Ofproto::enqueue_shaped`]; the datapath then takes
//! what is due with [`Ofproto::dequeue_shaped`] and sleeps until
//! [`Ofproto::next_qos_wakeup`]. The port's tx_packets/tx_bytes count frames when they
//! leave the scheduler (execute does not count outputs to shaped ports); frames a scheduler
//! refuses or its AQM drops, and frames that cannot be split, count in tx_dropped. Queue statistics and
//! QUEUE_GET_CONFIG of a shaped port come from its scheduler. All of it is pure: `now` is an
//! argument.

use super::conn::AsyncKind;
use super::{Effect, Ofproto, PortState, QueueCounters};
use crate::datapath::segment::split_gso;
use crate::datapath::Output;
use crate::port::{Packet, PortInfo};
use crate::qos::sched::PortScheduler;
use crate::qos::PortQosConfig;
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
        self.entered(now);
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
    pub fn remove_port(&mut self, port_no: u32, now: u64) -> Vec<Effect> {
        self.entered(now);
        let mut fx = Vec::new();
        let Some(p) = self.ports.remove(&port_no) else {
            return fx;
        };
        self.mac_table.flush_port(port_no);
        self.qos.remove(&port_no);
        self.send_port_status(PortReason::Delete, p.desc(), &mut fx);
        fx
    }

    /// The link (carrier) of a port changed: PORT_STATUS MODIFY when it really changed. A
    /// link going down forgets the MACs learned on the port.
    pub fn set_port_link(&mut self, port_no: u32, up: bool, now: u64) -> Vec<Effect> {
        self.entered(now);
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

/// What [`Ofproto::enqueue_shaped`] did with a batch's outputs to shaped ports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QosEnqueue {
    /// Wire-size frames a scheduler took.
    pub enqueued: u64,
    /// Frames a scheduler refused (queue full): counted in the port's tx_dropped (and
    /// by reason in the scheduler's queue counters).
    pub dropped: u64,
    /// GSO frames that could not be split into wire-size frames: dropped, counted in the
    /// port's tx_dropped.
    pub split_errors: u64,
}

/// What [`Ofproto::dequeue_shaped`] took from the schedulers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QosDequeue {
    /// Frames due and appended (counted in the ports' tx_packets/tx_bytes).
    pub sent: u64,
    /// Frames the AQM dropped while choosing them (counted in the ports' tx_dropped).
    pub aqm_dropped: u64,
}

/// `rate` in tenths of a percent of `base` (OpenFlow's queue rate unit), at most 1000;
/// `None` when there is no base to compare with.
pub fn tenths_of_percent(rate: u64, base: u64) -> Option<u16> {
    if base == 0 {
        return None;
    }
    let v = (u128::from(rate) * 1000 + u128::from(base) / 2) / u128::from(base);
    u16::try_from(v.min(1000)).ok()
}

impl Ofproto {
    /// Sets (or replaces) the egress QoS of `port_no`: creates its scheduler, or reconfigures
    /// the one it has (queued frames stay where the scheduler keeps them). A shaped port
    /// without queues gets the default queue 0 ([`crate::config::normalize_qos`]); no rate
    /// and no queue removes the scheduler (the port is a plain FIFO again; frames still
    /// queued are dropped and counted in tx_dropped). Errors are the scheduler's refusals,
    /// or an unknown port; nothing changes then.
    pub fn set_port_qos(
        &mut self,
        port_no: u32,
        cfg: PortQosConfig,
        now: u64,
    ) -> Result<(), String> {
        self.entered(now);
        let Some(p) = self.ports.get_mut(&port_no) else {
            return Err(format!("port {port_no} does not exist"));
        };
        let cfg = crate::config::normalize_qos(cfg);
        if cfg.rate.is_none() && cfg.queues.is_empty() {
            if let Some(s) = self.qos.remove(&port_no) {
                let (packets, _) = s.backlog();
                let c = &mut p.counters;
                c.tx_dropped = c.tx_dropped.saturating_add(packets as u64);
            }
            return Ok(());
        }
        match self.qos.get_mut(&port_no) {
            Some(s) => s.reconfigure(cfg, now),
            None => {
                let s = PortScheduler::new(cfg, now)?;
                self.qos.insert(port_no, s);
                Ok(())
            }
        }
    }

    /// The QoS of `port_no`, when it is shaped.
    pub fn port_qos(&self, port_no: u32) -> Option<&PortQosConfig> {
        self.qos.get(&port_no).map(PortScheduler::config)
    }

    /// Takes every output to a shaped port out of `outputs` (the others stay, in order),
    /// splits it into wire-size frames if the port's rates call for it and enqueues them at `now` on the queue its set_queue
    /// chose. Port tx_packets/tx_bytes are not counted here but when frames leave
    /// ([`Ofproto::dequeue_shaped`]); refusals count in tx_dropped.
    pub fn enqueue_shaped(&mut self, outputs: &mut Vec<Output>, now: u64) -> QosEnqueue {
        let mut r = QosEnqueue::default();
        if self.qos.is_empty() {
            return r;
        }
        let mut parts: Vec<Packet> = Vec::new();
        let (qos, ports) = (&mut self.qos, &mut self.ports);
        outputs.retain_mut(|o| {
            let Output::Port { port, queue, pkt } = o else {
                return true;
            };
            let Some(sched) = qos.get_mut(port) else {
                return true;
            };
            let pkt = std::mem::take(pkt);
            let mut dropped = 0u64;
            parts.clear();
            let split = if sched.splits_gso() {
                split_gso(pkt, &mut parts)
            } else {
                parts.push(pkt);
                Ok(1)
            };
            match split {
                Ok(_) => {
                    for part in parts.drain(..) {
                        match sched.enqueue(part, *queue, now) {
                            Ok(()) => r.enqueued += 1,
                            Err((p, _reason)) => {
                                dropped += 1;
                                p.recycle();
                            }
                        }
                    }
                    r.dropped += dropped;
                }
                Err(e) => {
                    tracing::debug!(port = *port, error = ?e, "GSO frame to a shaped port could not be split: dropped");
                    r.split_errors += 1;
                    dropped = 1;
                }
            }
            if dropped > 0 {
                if let Some(ps) = ports.get_mut(port) {
                    ps.counters.tx_dropped = ps.counters.tx_dropped.saturating_add(dropped);
                }
            }
            false
        });
        r
    }

    /// Appends to `out` the frames due at `now` from every shaped port (at most `max` per
    /// port), as `Output::Port` (queue `None`), and counts them in the port's tx_packets and
    /// tx_bytes; frames the AQM dropped meanwhile count in its tx_dropped.
    pub fn dequeue_shaped(&mut self, now: u64, max: usize, out: &mut Vec<Output>) -> QosDequeue {
        let mut r = QosDequeue::default();
        let mut due: Vec<Packet> = Vec::new();
        for (&port, sched) in &mut self.qos {
            due.clear();
            let (before, _) = sched.backlog();
            if before == 0 {
                continue;
            }
            let n = sched.dequeue(now, &mut due, max);
            let (after, _) = sched.backlog();
            // Dequeue only sends or (CoDel) drops: whatever left the backlog unsent was dropped.
            let aqm = before.saturating_sub(after).saturating_sub(n) as u64;
            r.sent += n as u64;
            r.aqm_dropped += aqm;
            let bytes: usize = due.iter().map(|p| p.data.len()).sum();
            if let Some(ps) = self.ports.get_mut(&port) {
                let c = &mut ps.counters;
                c.tx_packets = c.tx_packets.saturating_add(n as u64);
                c.tx_bytes = c.tx_bytes.saturating_add(bytes as u64);
                c.tx_dropped = c.tx_dropped.saturating_add(aqm);
            }
            out.extend(due.drain(..).map(|pkt| Output::Port {
                port,
                queue: None,
                pkt,
            }));
        }
        r
    }

    /// The earliest time a shaped port has a frame due (absolute ns; at or before now means
    /// "now"); `None` when every scheduler is empty.
    pub fn next_qos_wakeup(&self) -> Option<u64> {
        self.qos
            .values()
            .filter_map(PortScheduler::next_wakeup)
            .min()
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
    fn tenths_of_percent_rounds_and_caps() {
        assert_eq!(tenths_of_percent(6_000_000, 20_000_000), Some(300));
        assert_eq!(tenths_of_percent(20_000_000, 20_000_000), Some(1000));
        assert_eq!(tenths_of_percent(40_000_000, 20_000_000), Some(1000));
        assert_eq!(tenths_of_percent(1, 3_000), Some(0));
        assert_eq!(tenths_of_percent(2, 3_000), Some(1));
        assert_eq!(tenths_of_percent(5, 0), None);
    }

    #[test]
    fn speeds() {
        assert_eq!(speed_feature(0), 0);
        assert_eq!(speed_feature(1_000_000), features::F_1GB_FD);
        assert_eq!(speed_feature(123), features::OTHER);
    }
}
