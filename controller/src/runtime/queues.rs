//! Egress queues through shg-switch's control socket: reading `dump-queues` back, the request line of each queue change, and the undo of applied queue changes. Pure.
//!
//! OpenFlow 1.3 cannot configure queues, so the planner's [`Change::PortRate`],
//! [`Change::SetQueue`] and [`Change::DeleteQueue`] go to the switch's control socket as
//! `set-port-rate`, `set-queue` and `del-queue` lines (answered by shg-switch's `ctl`
//! module), and what is there is read with `dump-queues`: one line per queue of `key=value`
//! words (`port=1 queue=1 port_rate=20000000 priority=0 min_rate=6000000 max_rate=none ...`).
//! A port without a scheduler prints its OpenFlow queues with `priority=none`: such a port is
//! unshaped and has no configured queues, so it is left out of what is observed.

use crate::api::stats::parse_queue_counters;
use crate::planner::pipeline::{PortQueues, QueueSetting};
use crate::planner::Change;
use shg_flows::action::port as ofport;
use shg_flows::rate::format_rate;
use std::collections::BTreeMap;

/// Parses `dump-queues` output into the planner's view, by port number (the lines are read
/// by the API's [`parse_queue_counters`]; a queue with `priority=none` belongs to an unshaped
/// port without configured queues and is left out).
pub fn parse_dump_queues(text: &str) -> Result<BTreeMap<u32, PortQueues>, String> {
    let mut out: BTreeMap<u32, PortQueues> = BTreeMap::new();
    for c in parse_queue_counters(text)? {
        let Some(priority) = c.priority else {
            continue; // unshaped port: no configured queues
        };
        let pq = out.entry(c.port).or_default();
        pq.rate = c.port_rate;
        pq.queues.push(QueueSetting {
            queue_id: c.queue,
            min_rate: c.min_rate.unwrap_or(0),
            max_rate: c.max_rate,
            priority,
        });
    }
    for pq in out.values_mut() {
        pq.queues.sort_by_key(|q| q.queue_id);
    }
    Ok(out)
}

/// Whether a change goes to the control socket rather than over OpenFlow.
pub fn is_queue_change(c: &Change) -> bool {
    matches!(
        c,
        Change::PortRate { .. } | Change::SetQueue { .. } | Change::DeleteQueue { .. }
    )
}

fn port_word(port: u32) -> String {
    if port == ofport::LOCAL {
        "LOCAL".into()
    } else {
        port.to_string()
    }
}

/// The control socket request line for a queue change (`None` for OpenFlow changes).
pub fn ctl_line(c: &Change) -> Option<String> {
    match c {
        Change::PortRate { port, rate } => Some(format!(
            "set-port-rate {} {}",
            port_word(*port),
            rate.map_or_else(|| "none".to_string(), format_rate)
        )),
        Change::SetQueue { port, queue: q } => Some(format!(
            "set-queue {} {} min={} max={} priority={}",
            port_word(*port),
            q.queue_id,
            if q.min_rate == 0 {
                "none".to_string()
            } else {
                format_rate(q.min_rate)
            },
            q.max_rate.map_or_else(|| "none".to_string(), format_rate),
            q.priority
        )),
        Change::DeleteQueue { port, queue_id } => {
            Some(format!("del-queue {} {queue_id}", port_word(*port)))
        }
        _ => None,
    }
}

/// The queue changes that put back `before` after `applied` (in the order they were
/// applied); returned in the order to apply them (reverse).
pub fn undo_queue_changes(applied: &[Change], before: &BTreeMap<u32, PortQueues>) -> Vec<Change> {
    let old = |port: u32, id: u32| {
        before
            .get(&port)
            .and_then(|pq| pq.queues.iter().find(|q| q.queue_id == id))
            .copied()
    };
    let mut out = Vec::new();
    for c in applied.iter().rev() {
        match c {
            Change::PortRate { port, .. } => out.push(Change::PortRate {
                port: *port,
                rate: before.get(port).and_then(|pq| pq.rate),
            }),
            Change::SetQueue { port, queue } => match old(*port, queue.queue_id) {
                Some(q) => out.push(Change::SetQueue {
                    port: *port,
                    queue: q,
                }),
                None => out.push(Change::DeleteQueue {
                    port: *port,
                    queue_id: queue.queue_id,
                }),
            },
            Change::DeleteQueue { port, queue_id } => {
                if let Some(q) = old(*port, *queue_id) {
                    out.push(Change::SetQueue {
                        port: *port,
                        queue: q,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
port=1 queue=2 port_rate=20000000 priority=3 min_rate=2000000 max_rate=none tx_packets=5 tx_bytes=300 drops_overflow=0 drops_aqm=0 ecn_marked=0 unknown_queue=0 backlog_packets=0 backlog_bytes=0 sojourn_p50_ms=0.120 sojourn_p99_ms=1.500
port=1 queue=0 port_rate=20000000 priority=7 min_rate=0 max_rate=8000000 tx_packets=0 tx_bytes=0 drops_overflow=0 drops_aqm=0 ecn_marked=0 unknown_queue=0 backlog_packets=0 backlog_bytes=0 sojourn_p50_ms=none sojourn_p99_ms=none
port=3 queue=0 port_rate=none priority=none min_rate=none max_rate=none tx_packets=9 tx_bytes=900 drops_overflow=0 drops_aqm=0 ecn_marked=0 unknown_queue=0 backlog_packets=0 backlog_bytes=0 sojourn_p50_ms=none sojourn_p99_ms=none
";

    #[test]
    fn dump_queues_parses_shaped_ports_only() {
        let q = parse_dump_queues(DUMP).unwrap();
        assert_eq!(q.len(), 1, "{q:?}");
        let p1 = &q[&1];
        assert_eq!(p1.rate, Some(20_000_000));
        assert_eq!(
            p1.queues,
            vec![
                QueueSetting {
                    queue_id: 0,
                    min_rate: 0,
                    max_rate: Some(8_000_000),
                    priority: 7
                },
                QueueSetting {
                    queue_id: 2,
                    min_rate: 2_000_000,
                    max_rate: None,
                    priority: 3
                },
            ]
        );
        assert!(parse_dump_queues("port=x queue=1 priority=1").is_err());
        assert!(parse_dump_queues("port=1 queue=1 priority=1 min_rate=0 max_rate=none").is_err());
        assert_eq!(parse_dump_queues("\n").unwrap().len(), 0);
    }

    #[test]
    fn ctl_lines_use_the_switch_syntax() {
        let q = QueueSetting {
            queue_id: 4,
            min_rate: 1_500_000,
            max_rate: None,
            priority: 2,
        };
        assert_eq!(
            ctl_line(&Change::SetQueue { port: 1, queue: q }).unwrap(),
            "set-queue 1 4 min=1500kbit max=none priority=2"
        );
        assert_eq!(
            ctl_line(&Change::PortRate {
                port: ofport::LOCAL,
                rate: Some(20_000_000)
            })
            .unwrap(),
            "set-port-rate LOCAL 20mbit"
        );
        assert_eq!(
            ctl_line(&Change::PortRate {
                port: 2,
                rate: None
            })
            .unwrap(),
            "set-port-rate 2 none"
        );
        assert_eq!(
            ctl_line(&Change::DeleteQueue {
                port: 1,
                queue_id: 9
            })
            .unwrap(),
            "del-queue 1 9"
        );
    }

    #[test]
    fn undo_puts_back_the_queues_before() {
        let before = parse_dump_queues(DUMP).unwrap();
        let q = |id, min, prio| QueueSetting {
            queue_id: id,
            min_rate: min,
            max_rate: None,
            priority: prio,
        };
        let applied = vec![
            Change::PortRate {
                port: 1,
                rate: Some(30_000_000),
            },
            Change::SetQueue {
                port: 1,
                queue: q(2, 1_000_000, 1),
            },
            Change::SetQueue {
                port: 1,
                queue: q(5, 0, 6),
            },
            Change::DeleteQueue {
                port: 1,
                queue_id: 0,
            },
            Change::PortRate {
                port: 4,
                rate: Some(1_000_000),
            },
        ];
        // Apply, then undo, on a model of the switch: the result is `before`.
        let mut sw = before.clone();
        let apply = |sw: &mut BTreeMap<u32, PortQueues>, c: &Change| match c {
            Change::PortRate { port, rate } => sw.entry(*port).or_default().rate = *rate,
            Change::SetQueue { port, queue } => {
                let pq = sw.entry(*port).or_default();
                pq.queues.retain(|x| x.queue_id != queue.queue_id);
                pq.queues.push(*queue);
                pq.queues.sort_by_key(|x| x.queue_id);
            }
            Change::DeleteQueue { port, queue_id } => {
                if let Some(pq) = sw.get_mut(port) {
                    pq.queues.retain(|x| x.queue_id != *queue_id);
                }
            }
            _ => {}
        };
        for c in &applied {
            apply(&mut sw, c);
        }
        assert_ne!(sw, before);
        for c in undo_queue_changes(&applied, &before) {
            apply(&mut sw, &c);
        }
        // Port 4 was unshaped: it is back to rate none with no queues.
        assert_eq!(sw.remove(&4), Some(PortQueues::default()));
        assert_eq!(sw, before);
    }
}
