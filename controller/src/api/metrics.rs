//! Prometheus text exposition (format 0.0.4) of what the control plane reports: ports, queues, meters, services, discovery, and the API's own counters. Pure.

use super::control::Sample;
use super::stats::StatusReport;
use std::fmt::Write as _;

/// The content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The API's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiCounters {
    /// Answers by status code.
    pub responses: std::collections::BTreeMap<u16, u64>,
    /// Requests refused by the rate limiter.
    pub rate_limited: u64,
    /// TLS handshakes that failed.
    pub tls_failures: u64,
    /// Connections refused because too many were open.
    pub connections_refused: u64,
    /// Open event streams.
    pub event_streams: u64,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn val(&mut self, name: &str, labels: &[(&str, String)], v: impl std::fmt::Display) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

/// Renders everything.
pub fn render(
    sample: Option<&Sample>,
    status: &StatusReport,
    discovery: &[(String, u64)],
    devices: usize,
    api: &ApiCounters,
) -> String {
    let mut o = Out(String::new());
    o.family(
        "shg_switch_connected",
        "gauge",
        "1 when the switch is connected",
    );
    o.val("shg_switch_connected", &[], u8::from(status.connected));
    o.family(
        "shg_policy_version",
        "gauge",
        "version of the policy in force",
    );
    o.val("shg_policy_version", &[], status.policy_version);

    if let Some(s) = sample {
        type PortField = (
            &'static str,
            fn(&super::control::PortCounters) -> u64,
            &'static str,
        );
        let port_fields: [PortField; 6] = [
            (
                "shg_port_rx_packets_total",
                |p| p.rx_packets,
                "packets received",
            ),
            (
                "shg_port_tx_packets_total",
                |p| p.tx_packets,
                "packets sent",
            ),
            ("shg_port_rx_bytes_total", |p| p.rx_bytes, "bytes received"),
            ("shg_port_tx_bytes_total", |p| p.tx_bytes, "bytes sent"),
            (
                "shg_port_rx_dropped_total",
                |p| p.rx_dropped,
                "packets dropped on receive",
            ),
            (
                "shg_port_tx_dropped_total",
                |p| p.tx_dropped,
                "packets dropped on send",
            ),
        ];
        for (name, f, help) in port_fields {
            o.family(name, "counter", help);
            for p in &s.ports {
                o.val(
                    name,
                    &[("port", p.port.to_string()), ("name", p.name.clone())],
                    f(p),
                );
            }
        }
        type QueueField = (
            &'static str,
            &'static str,
            fn(&super::control::QueueCounters) -> u64,
            &'static str,
        );
        let queue_fields: [QueueField; 7] = [
            (
                "shg_queue_tx_packets_total",
                "counter",
                |q| q.tx_packets,
                "packets sent by the queue",
            ),
            (
                "shg_queue_tx_bytes_total",
                "counter",
                |q| q.tx_bytes,
                "bytes sent by the queue",
            ),
            (
                "shg_queue_drops_overflow_total",
                "counter",
                |q| q.drops_overflow,
                "packets dropped because the queue was full",
            ),
            (
                "shg_queue_drops_aqm_total",
                "counter",
                |q| q.drops_aqm,
                "packets dropped by the AQM",
            ),
            (
                "shg_queue_ecn_marked_total",
                "counter",
                |q| q.ecn_marked,
                "packets ECN-marked by the AQM",
            ),
            (
                "shg_queue_backlog_packets",
                "gauge",
                |q| q.backlog_packets,
                "packets waiting",
            ),
            (
                "shg_queue_backlog_bytes",
                "gauge",
                |q| q.backlog_bytes,
                "bytes waiting",
            ),
        ];
        for (name, kind, f, help) in queue_fields {
            o.family(name, kind, help);
            for q in &s.queues {
                o.val(
                    name,
                    &[("port", q.port.to_string()), ("queue", q.queue.to_string())],
                    f(q),
                );
            }
        }
        o.family(
            "shg_queue_sojourn_seconds",
            "gauge",
            "queue delay percentiles",
        );
        for q in &s.queues {
            for (quant, v) in [("0.5", q.sojourn_p50_ms), ("0.99", q.sojourn_p99_ms)] {
                if let Some(ms) = v {
                    o.val(
                        "shg_queue_sojourn_seconds",
                        &[
                            ("port", q.port.to_string()),
                            ("queue", q.queue.to_string()),
                            ("quantile", quant.to_string()),
                        ],
                        ms / 1000.0,
                    );
                }
            }
        }
        type MeterField = (
            &'static str,
            fn(&super::control::MeterCounters) -> u64,
            &'static str,
        );
        let meter_fields: [MeterField; 3] = [
            (
                "shg_meter_packets_total",
                |m| m.packets_in,
                "packets through the meter",
            ),
            (
                "shg_meter_bytes_total",
                |m| m.bytes_in,
                "bytes through the meter",
            ),
            (
                "shg_meter_band_packets_total",
                |m| m.band_packets,
                "packets the meter's bands dropped or remarked",
            ),
        ];
        for (name, f, help) in meter_fields {
            o.family(name, "counter", help);
            for m in &s.meters {
                o.val(name, &[("meter", m.meter_id.to_string())], f(m));
            }
        }
    }

    o.family("shg_uplink_rate_bits", "gauge", "shaped uplink rate, bit/s");
    o.val("shg_uplink_rate_bits", &[], status.uplink.rate_bps);
    o.family(
        "shg_uplink_achieved_bits",
        "gauge",
        "uplink rate achieved over the last interval, bit/s",
    );
    o.val("shg_uplink_achieved_bits", &[], status.uplink.achieved_bps);
    type SvcField = (
        &'static str,
        fn(&super::stats::ServiceStatus) -> u64,
        &'static str,
    );
    let svc_fields: [SvcField; 4] = [
        (
            "shg_service_guarantee_bits",
            |s| s.guarantee_bps,
            "guaranteed rate towards the WAN, bit/s",
        ),
        (
            "shg_service_achieved_bits",
            |s| s.achieved_bps,
            "rate achieved over the last interval, bit/s",
        ),
        (
            "shg_service_priority",
            |s| u64::from(s.priority),
            "queue priority in force (0 first)",
        ),
        (
            "shg_service_drops_total",
            |s| s.drops_total,
            "packets dropped in the service's queue",
        ),
    ];
    for (name, f, help) in svc_fields {
        o.family(
            name,
            if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            },
            help,
        );
        for s in &status.services {
            o.val(name, &[("service", s.name.clone())], f(s));
        }
    }
    o.family("shg_service_grade", "gauge", "grade 0 (A) to 4 (F)");
    for s in &status.services {
        let g = ["A", "B", "C", "D", "F"]
            .iter()
            .position(|x| *x == s.grade)
            .unwrap_or(4);
        o.val("shg_service_grade", &[("service", s.name.clone())], g);
    }

    o.family("shg_discovery_devices", "gauge", "devices in the inventory");
    o.val("shg_discovery_devices", &[], devices);
    o.family(
        "shg_discovery_events_total",
        "counter",
        "discovery counters by name",
    );
    for (k, v) in discovery {
        o.val("shg_discovery_events_total", &[("counter", k.clone())], v);
    }

    o.family(
        "shg_api_responses_total",
        "counter",
        "API answers by status code",
    );
    for (code, n) in &api.responses {
        o.val("shg_api_responses_total", &[("code", code.to_string())], n);
    }
    o.family(
        "shg_api_rate_limited_total",
        "counter",
        "requests refused by the rate limiter",
    );
    o.val("shg_api_rate_limited_total", &[], api.rate_limited);
    o.family(
        "shg_api_tls_failures_total",
        "counter",
        "failed TLS handshakes",
    );
    o.val("shg_api_tls_failures_total", &[], api.tls_failures);
    o.family(
        "shg_api_connections_refused_total",
        "counter",
        "connections refused (too many open)",
    );
    o.val(
        "shg_api_connections_refused_total",
        &[],
        api.connections_refused,
    );
    o.family("shg_api_event_streams", "gauge", "open event streams");
    o.val("shg_api_event_streams", &[], api.event_streams);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_is_well_formed() {
        let status = super::super::stats::StatusReport {
            measured: false,
            interval_ms: 0,
            connected: true,
            policy_version: 3,
            uplink: super::super::stats::LinkStatus {
                resource: "uplink up",
                port: Some(1),
                rate_bps: 20_000_000,
                achieved_bps: 0,
                utilisation: 0.0,
            },
            services: Vec::new(),
        };
        let s = Sample {
            queues: vec![super::super::control::QueueCounters {
                port: 1,
                queue: 2,
                sojourn_p99_ms: Some(1.5),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(
            Some(&s),
            &status,
            &[("appeared".into(), 2)],
            1,
            &ApiCounters::default(),
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("shg_"), "{line}");
        }
        assert!(text.contains("shg_policy_version 3\n"));
        assert!(text.contains(
            "shg_queue_sojourn_seconds{port=\"1\",queue=\"2\",quantile=\"0.99\"} 0.0015\n"
        ));
        assert!(text.contains("shg_discovery_events_total{counter=\"appeared\"} 2\n"));
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
