//! Parsers for what the traffic tools print: `iperf3 -J` (TCP and UDP) and `ping`.
//!
//! Pure functions from text to numbers. A tool that failed (iperf3's `"error"` key, no `end`
//! section, no ping replies) is an `Err` with the tool's own words, never a panic or a zero.

use serde_json::Value;

/// A TCP test's result (receiver side: what actually arrived).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpResult {
    /// Received goodput in Gbit/s (`end.sum_received.bits_per_second`).
    pub gbps: f64,
    /// Sender retransmits, when iperf3 reports them.
    pub retransmits: Option<u64>,
}

/// A UDP test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpResult {
    /// Datagrams the client sent.
    pub sent: u64,
    /// Datagrams the server received (its count minus its lost count).
    pub received: u64,
    /// Sent per second (sender's duration).
    pub tx_pps: f64,
    /// Received per second (receiver's duration).
    pub rx_pps: f64,
    /// Loss as the server reports it, percent.
    pub loss_pct: f64,
}

fn parse_end(json: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| {
        let head: String = json.chars().take(200).collect();
        format!("iperf3 output is not JSON ({e}): {head:?}")
    })?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {err}"));
    }
    v.get("end")
        .filter(|e| e.as_object().is_some_and(|o| !o.is_empty()))
        .cloned()
        .ok_or_else(|| "iperf3 output has no `end` section".to_string())
}

fn num(v: &Value, path: &[&str]) -> Result<f64, String> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .ok_or_else(|| format!("iperf3 output lacks end.{}", path.join(".")))?;
    }
    cur.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("iperf3 end.{} is not a number", path.join(".")))
}

fn count(v: &Value, path: &[&str]) -> Result<u64, String> {
    let x = num(v, path)?;
    if x < 0.0 {
        return Err(format!("iperf3 end.{} is negative", path.join(".")));
    }
    // A JSON integer well below 2^53: exact as f64.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative packet counts from JSON, far below 2^53"
    )]
    Ok(x.round() as u64)
}

/// Parses `iperf3 -c ... -J` output of a TCP test (any number of streams).
pub fn parse_iperf_tcp(json: &str) -> Result<TcpResult, String> {
    let end = parse_end(json)?;
    let bps = num(&end, &["sum_received", "bits_per_second"])?;
    let retransmits = count(&end, &["sum_sent", "retransmits"]).ok();
    Ok(TcpResult {
        gbps: bps / 1e9,
        retransmits,
    })
}

/// Parses `iperf3 -c ... -u -J` output.
pub fn parse_iperf_udp(json: &str) -> Result<UdpResult, String> {
    let end = parse_end(json)?;
    let sent = count(&end, &["sum_sent", "packets"])?;
    let tx_secs = num(&end, &["sum_sent", "seconds"])?;
    let expected = count(&end, &["sum_received", "packets"])?;
    let lost = count(&end, &["sum_received", "lost_packets"])?;
    let rx_secs = num(&end, &["sum_received", "seconds"])?;
    let loss_pct = num(&end, &["sum_received", "lost_percent"])?;
    if tx_secs <= 0.0 || rx_secs <= 0.0 {
        return Err("iperf3 UDP test lasted 0 s".to_string());
    }
    let received = expected.saturating_sub(lost);
    #[allow(
        clippy::cast_precision_loss,
        reason = "packet counts below 2^53 are exact in f64"
    )]
    let (tx_pps, rx_pps) = (sent as f64 / tx_secs, received as f64 / rx_secs);
    Ok(UdpResult {
        sent,
        received,
        tx_pps,
        rx_pps,
        loss_pct,
    })
}

/// A ping run: every reply's RTT in ms, and how many were sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PingResult {
    pub sent: u32,
    pub rtts_ms: Vec<f64>,
}

impl PingResult {
    /// Median RTT, ms.
    pub fn median_ms(&self) -> Option<f64> {
        crate::stats::median(&self.rtts_ms)
    }

    /// Mean RTT, ms.
    pub fn avg_ms(&self) -> Option<f64> {
        if self.rtts_ms.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss, reason = "at most thousands of replies")]
        let n = self.rtts_ms.len() as f64;
        Some(self.rtts_ms.iter().sum::<f64>() / n)
    }
}

/// Parses `ping -n` output (iputils): `time=0.081 ms` per reply, `N packets transmitted`.
pub fn parse_ping(text: &str) -> Result<PingResult, String> {
    let mut rtts_ms = Vec::new();
    let mut sent = None;
    for line in text.lines() {
        if let Some(pos) = line.find("time=") {
            let rest = &line[pos + 5..];
            let v = rest.split_whitespace().next().unwrap_or("");
            if let Ok(ms) = v.parse::<f64>() {
                rtts_ms.push(ms);
            }
        }
        if let Some(pos) = line.find(" packets transmitted") {
            sent = line[..pos].trim().parse::<u32>().ok();
        }
    }
    let Some(sent) = sent else {
        let head: String = text.chars().take(200).collect();
        return Err(format!("no ping summary in {head:?}"));
    };
    if rtts_ms.is_empty() {
        return Err(format!("ping: 0 of {sent} replies"));
    }
    Ok(PingResult { sent, rtts_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = r#"{"start":{"version":"iperf 3.12"},"intervals":[],"end":{
        "sum_sent":{"seconds":10.0,"bytes":1,"bits_per_second":12.5e9,"retransmits":7,"sender":true},
        "sum_received":{"seconds":10.0,"bytes":1,"bits_per_second":12.25e9,"sender":true},
        "cpu_utilization_percent":{"host_total":97.5}}}"#;

    const UDP: &str = r#"{"end":{
        "sum_sent":{"seconds":1.000013,"bytes":4654440,"packets":258580,"lost_packets":0,"lost_percent":0},
        "sum_received":{"seconds":1.000058,"bytes":4553280,"packets":258576,"lost_packets":5616,"lost_percent":2.171861706241782},
        "sum":{"packets":258580}}}"#;

    #[test]
    fn tcp_goodput_is_the_receivers() {
        let r = parse_iperf_tcp(TCP).unwrap();
        assert!((r.gbps - 12.25).abs() < 1e-9, "{r:?}");
        assert_eq!(r.retransmits, Some(7));
    }

    #[test]
    fn udp_received_is_count_minus_lost() {
        let r = parse_iperf_udp(UDP).unwrap();
        assert_eq!(r.sent, 258_580);
        assert_eq!(r.received, 258_576 - 5616);
        assert!((r.rx_pps - 252_960.0 / 1.000058).abs() < 1e-6);
        assert!((r.tx_pps - 258_580.0 / 1.000013).abs() < 1e-6);
        assert!((r.loss_pct - 2.1718).abs() < 1e-3);
    }

    #[test]
    fn iperf_errors_are_errors() {
        let e = parse_iperf_tcp(r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#)
            .unwrap_err();
        assert!(e.contains("Connection refused"), "{e}");
        assert!(parse_iperf_tcp(r#"{"start":{},"end":{}}"#).is_err());
        assert!(parse_iperf_udp("iperf3: error - the server is busy").is_err());
        // A TCP result is not a UDP result.
        assert!(parse_iperf_udp(TCP).is_err());
    }

    #[test]
    fn ping_rtts_median_avg() {
        let text = "PING 198.18.1.2 (198.18.1.2) 56(84) bytes of data.\n\
            64 bytes from 198.18.1.2: icmp_seq=1 ttl=64 time=0.081 ms\n\
            64 bytes from 198.18.1.2: icmp_seq=2 ttl=64 time=0.039 ms\n\
            64 bytes from 198.18.1.2: icmp_seq=3 ttl=64 time=0.045 ms\n\n\
            --- 198.18.1.2 ping statistics ---\n\
            4 packets transmitted, 3 received, 25% packet loss, time 407ms\n\
            rtt min/avg/max/mdev = 0.039/0.055/0.081/0.019 ms\n";
        let p = parse_ping(text).unwrap();
        assert_eq!(p.sent, 4);
        assert_eq!(p.rtts_ms, vec![0.081, 0.039, 0.045]);
        assert_eq!(p.median_ms(), Some(0.045));
        assert!((p.avg_ms().unwrap() - 0.055).abs() < 1e-9);
        let none =
            "--- x ping statistics ---\n3 packets transmitted, 0 received, 100% packet loss\n";
        assert!(parse_ping(none).unwrap_err().contains("0 of 3"));
        assert!(parse_ping("connect: Network is unreachable").is_err());
    }
}
