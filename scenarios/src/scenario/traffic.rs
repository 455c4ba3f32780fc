//! Traffic generators and probes: the built-in UDP agents (`shg-scenario agent ...`, run inside a namespace), and parsers of what ping and iperf3 print, all onto the run's timeline.
//!
//! - `agent udp-send`: constant bit rate UDP; each datagram carries a magic, a flow id, a
//!   sequence number and its send time (wall clock, ns: every namespace shares the kernel's
//!   clock, so one-way delay is exact). With `--count N` it sends N probe datagrams instead.
//! - `agent udp-recv`: counts what arrives in bins (`--bin-ms`, default 250): datagrams, payload
//!   bytes, sequence gaps (loss), one-way delay p50/p99/max; one JSON line per closed bin.
//!   Probe datagrams are logged one JSON line each (`probe`, `src`, `t`).
//! - ping is iputils `ping -D -O` (a timestamp on every reply and on every missed one).
//! - TCP is iperf3 `-C cubic -J`; the receiver's per-second intervals are its throughput.
//!
//! Times: wall clock seconds (`t_unix`) in the agents' output; [`Timeline`] maps them onto
//! seconds since the run's t=0. Parsers are pure and never panic on what the tools print.

use serde_json::{json, Value};
use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Media datagram magic, probe datagram magic.
const MAGIC_MEDIA: [u8; 4] = *b"SHGM";
const MAGIC_PROBE: [u8; 4] = *b"SHGP";
/// Header: magic, flow id (u32), seq (u64), send time ns (u64), big-endian.
pub const HEADER_LEN: usize = 24;

/// A datagram's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub probe: bool,
    pub id: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf` (which must hold them).
    pub fn write(&self, buf: &mut [u8]) -> bool {
        let Some(h) = buf.get_mut(..HEADER_LEN) else {
            return false;
        };
        h[..4].copy_from_slice(if self.probe {
            &MAGIC_PROBE
        } else {
            &MAGIC_MEDIA
        });
        h[4..8].copy_from_slice(&self.id.to_be_bytes());
        h[8..16].copy_from_slice(&self.seq.to_be_bytes());
        h[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        true
    }

    /// Reads a header; None for anything else (short, other magic).
    pub fn read(buf: &[u8]) -> Option<Header> {
        let h = buf.get(..HEADER_LEN)?;
        let probe = match h.get(..4)? {
            m if m == MAGIC_MEDIA => false,
            m if m == MAGIC_PROBE => true,
            _ => return None,
        };
        let u32_at = |i: usize| {
            h.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
        };
        let u64_at = |i: usize| {
            h.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        Some(Header {
            probe,
            id: u32_at(4)?,
            seq: u64_at(8)?,
            sent_ns: u64_at(16)?,
        })
    }
}

/// Wall clock, ns since 1970.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One closed receive bin.
#[derive(Debug, Clone, PartialEq)]
pub struct RecvBin {
    /// Bin start, unix seconds, and its length.
    pub t_unix: f64,
    pub len_s: f64,
    pub pkts: u64,
    pub bytes: u64,
    pub lost: u64,
    pub owd_p50_ms: Option<f64>,
    pub owd_p99_ms: Option<f64>,
    pub owd_max_ms: Option<f64>,
}

impl RecvBin {
    pub fn to_json(&self) -> Value {
        json!({"t": self.t_unix, "len": self.len_s, "pkts": self.pkts, "bytes": self.bytes,
               "lost": self.lost, "owd_p50": self.owd_p50_ms, "owd_p99": self.owd_p99_ms,
               "owd_max": self.owd_max_ms})
    }

    /// Parses one line of `udp-recv` output (None for probe lines and garbage).
    pub fn from_json_line(line: &str) -> Option<RecvBin> {
        let v: Value = serde_json::from_str(line).ok()?;
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(RecvBin {
            t_unix: f("t")?,
            len_s: f("len")?,
            pkts: u("pkts")?,
            bytes: u("bytes")?,
            lost: u("lost")?,
            owd_p50_ms: f("owd_p50"),
            owd_p99_ms: f("owd_p99"),
            owd_max_ms: f("owd_max"),
        })
    }
}

/// The receiver's accumulator: datagrams in, closed bins out. Pure.
#[derive(Debug, Clone)]
pub struct BinAcc {
    bin_ns: u64,
    cur_start: Option<u64>,
    pkts: u64,
    bytes: u64,
    lost: u64,
    owd: Vec<f64>,
    next_seq: Option<u64>,
    /// Distinct datagrams received, over the whole run.
    pub received: u64,
}

impl BinAcc {
    pub fn new(bin: Duration) -> BinAcc {
        BinAcc {
            bin_ns: u64::try_from(bin.as_nanos())
                .unwrap_or(250_000_000)
                .max(1_000_000),
            cur_start: None,
            pkts: 0,
            bytes: 0,
            lost: 0,
            owd: Vec::new(),
            next_seq: None,
            received: 0,
        }
    }

    fn close(&mut self) -> Option<RecvBin> {
        let start = self.cur_start.take()?;
        self.owd.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss, reason = "ns timestamps as float seconds")]
        let bin = RecvBin {
            t_unix: start as f64 / 1e9,
            len_s: self.bin_ns as f64 / 1e9,
            pkts: self.pkts,
            bytes: self.bytes,
            lost: self.lost,
            owd_p50_ms: crate::stats::percentile_sorted(&self.owd, 50.0),
            owd_p99_ms: crate::stats::percentile_sorted(&self.owd, 99.0),
            owd_max_ms: self.owd.last().copied(),
        };
        self.pkts = 0;
        self.bytes = 0;
        self.lost = 0;
        self.owd.clear();
        Some(bin)
    }

    /// Closes the bin if `now` is past it (and the empty bins since are not reported).
    pub fn tick(&mut self, now_ns: u64) -> Option<RecvBin> {
        let start = self.cur_start?;
        if now_ns >= start.saturating_add(self.bin_ns) {
            self.close()
        } else {
            None
        }
    }

    /// One datagram of `len` payload bytes arrived at `now_ns`; returns a bin it closed.
    pub fn feed(&mut self, now_ns: u64, h: &Header, len: usize) -> Option<RecvBin> {
        let closed = self.tick(now_ns);
        if self.cur_start.is_none() {
            self.cur_start = Some(now_ns - now_ns % self.bin_ns);
        }
        match self.next_seq {
            Some(n) if h.seq < n => {
                // Late (reordered) or duplicate: undo one loss counted in this bin if any.
                self.lost = self.lost.saturating_sub(1);
            }
            Some(n) => {
                self.lost = self.lost.saturating_add(h.seq - n);
                self.next_seq = Some(h.seq + 1);
            }
            None => {
                self.lost = self.lost.saturating_add(h.seq);
                self.next_seq = Some(h.seq + 1);
            }
        }
        self.pkts += 1;
        self.received += 1;
        self.bytes = self.bytes.saturating_add(u64::try_from(len).unwrap_or(0));
        #[allow(clippy::cast_precision_loss, reason = "delays in ns fit f64")]
        let owd_ms = now_ns.saturating_sub(h.sent_ns) as f64 / 1e6;
        self.owd.push(owd_ms);
        closed
    }

    /// Closes what is open (end of run).
    pub fn finish(&mut self) -> Option<RecvBin> {
        self.close()
    }
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn need<T: std::str::FromStr>(args: &[String], flag: &str) -> io::Result<T> {
    arg(args, flag)
        .ok_or_else(|| io::Error::other(format!("{flag} missing")))?
        .parse()
        .map_err(|_| io::Error::other(format!("{flag}: bad value")))
}

/// `shg-scenario agent udp-send --dst IP:PORT --id N [--bind IP] (--rate BPS --size N --secs S
/// | --count N) --out FILE`: the sender. Writes `{"sent": N, "errors": E}` to FILE at the end.
pub fn agent_udp_send(args: &[String]) -> io::Result<()> {
    let dst: SocketAddr = need(args, "--dst")?;
    let id: u32 = need(args, "--id")?;
    let bind = arg(args, "--bind").unwrap_or("0.0.0.0");
    let sock = UdpSocket::bind((bind, 0))?;
    let out = arg(args, "--out").map(str::to_string);
    let (probe, count, size, interval, secs) = match arg(args, "--count") {
        Some(c) => {
            let c: u64 = c
                .parse()
                .map_err(|_| io::Error::other("--count: bad value"))?;
            (true, Some(c), 64usize, Duration::from_millis(10), None)
        }
        None => {
            let rate: f64 = need(args, "--rate")?;
            let size: usize = need(args, "--size")?;
            let secs: f64 = need(args, "--secs")?;
            if rate <= 0.0 || size < HEADER_LEN || !(0.0..=3600.0).contains(&secs) {
                return Err(io::Error::other("bad --rate/--size/--secs"));
            }
            #[allow(clippy::cast_precision_loss, reason = "datagram sizes")]
            let iv = Duration::from_secs_f64(size as f64 * 8.0 / rate);
            (false, None, size, iv, Some(Duration::from_secs_f64(secs)))
        }
    };
    let mut buf = vec![0u8; size];
    let t0 = Instant::now();
    let mut next = t0;
    let (mut seq, mut errors) = (0u64, 0u64);
    loop {
        if count.is_some_and(|c| seq >= c) || secs.is_some_and(|s| t0.elapsed() >= s) {
            break;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_millis(50) {
            next = now; // far behind (descheduled): do not burst to catch up
        }
        let h = Header {
            probe,
            id,
            seq,
            sent_ns: now_ns(),
        };
        h.write(&mut buf);
        if sock.send_to(&buf, dst).is_err() {
            errors += 1;
        }
        seq += 1;
        next += interval;
    }
    if let Some(out) = out {
        std::fs::write(
            out,
            json!({"sent": seq, "errors": errors}).to_string() + "\n",
        )?;
    }
    Ok(())
}

/// `shg-scenario agent udp-recv --port P --out FILE [--bin-ms MS]`: the receiver; runs until
/// it is stopped (SIGTERM), every closed bin already written.
pub fn agent_udp_recv(args: &[String]) -> io::Result<()> {
    let port: u16 = need(args, "--port")?;
    let out = arg(args, "--out").ok_or_else(|| io::Error::other("--out missing"))?;
    let bin_ms: u64 = arg(args, "--bin-ms")
        .map_or(Ok(250), str::parse)
        .map_err(|_| io::Error::other("--bin-ms: bad value"))?;
    let sock = UdpSocket::bind(("0.0.0.0", port))?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut f = std::fs::File::create(out)?;
    let mut acc = BinAcc::new(Duration::from_millis(bin_ms));
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, src)) => {
                let now = now_ns();
                let Some(h) = buf.get(..n).and_then(Header::read) else {
                    continue;
                };
                if h.probe {
                    #[allow(clippy::cast_precision_loss, reason = "ns as float seconds")]
                    let line = json!({"probe": h.id, "seq": h.seq, "src": src.ip().to_string(), "t": now as f64 / 1e9});
                    writeln!(f, "{line}")?;
                    continue;
                }
                if let Some(b) = acc.feed(now, &h, n) {
                    writeln!(f, "{}", b.to_json())?;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(b) = acc.tick(now_ns()) {
                    writeln!(f, "{}", b.to_json())?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The receiver's probe lines: (probe id, source address) of each datagram.
pub fn probe_hits(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = u32::try_from(v.get("probe")?.as_u64()?).ok()?;
            Some((id, v.get("src")?.as_str()?.to_string()))
        })
        .collect()
}

/// The sender's summary: datagrams sent.
pub fn parse_sent(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text.trim())
        .ok()?
        .get("sent")?
        .as_u64()
}

/// One ping event: a reply (with RTT) or a request that got none (`-O`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingEvent {
    pub t_unix: f64,
    pub seq: u32,
    pub rtt_ms: Option<f64>,
}

/// Parses one line of `ping -D -O -n` output: `[1732790000.123456] 64 bytes from ...:
/// icmp_seq=1 ttl=63 time=0.083 ms` or `[...] no answer yet for icmp_seq=5`.
pub fn parse_ping_line(line: &str) -> Option<PingEvent> {
    let rest = line.trim().strip_prefix('[')?;
    let (ts, rest) = rest.split_once(']')?;
    let t_unix: f64 = ts.parse().ok().filter(|t: &f64| t.is_finite())?;
    let seq = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    if rest.contains("no answer yet") {
        return Some(PingEvent {
            t_unix,
            seq,
            rtt_ms: None,
        });
    }
    let rtt = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("time="))
        .and_then(|v| v.trim_end_matches("ms").parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)?;
    Some(PingEvent {
        t_unix,
        seq,
        rtt_ms: Some(rtt),
    })
}

/// Every event of a ping log, one per sequence number (a late reply replaces its miss).
pub fn parse_ping_log(text: &str) -> Vec<PingEvent> {
    let mut by_seq: std::collections::BTreeMap<u32, PingEvent> = std::collections::BTreeMap::new();
    for e in text.lines().filter_map(parse_ping_line) {
        match by_seq.get(&e.seq) {
            Some(old) if old.rtt_ms.is_some() => {}
            _ => {
                by_seq.insert(e.seq, e);
            }
        }
    }
    by_seq.into_values().collect()
}

/// Test start (unix s, when printed) and (start s, end s, bytes) intervals since it.
pub type Intervals = (Option<f64>, Vec<(f64, f64, u64)>);

/// The receiver's intervals of an `iperf3 -J` run: test start (unix s, when printed) and
/// (start s, end s, bytes) since it.
pub fn iperf_intervals(json_text: &str) -> Result<Intervals, String> {
    let v: Value = serde_json::from_str(json_text).map_err(|e| {
        let head: String = json_text.chars().take(160).collect();
        format!("iperf3 output is not JSON ({e}): {head:?}")
    })?;
    let start = v
        .pointer("/start/timestamp/timesecs")
        .and_then(Value::as_f64);
    let mut out = Vec::new();
    if let Some(iv) = v.get("intervals").and_then(Value::as_array) {
        for i in iv {
            let s = i.get("sum");
            let f = |k: &str| s.and_then(|s| s.get(k)).and_then(Value::as_f64);
            if let (Some(a), Some(b), Some(bytes)) = (f("start"), f("end"), f("bytes")) {
                if b > a && bytes >= 0.0 {
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "byte counts from JSON, non-negative"
                    )]
                    out.push((a, b, bytes as u64));
                }
            }
        }
    }
    if out.is_empty() {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(format!("iperf3: {e}"));
        }
        return Err("iperf3 reported no intervals".into());
    }
    Ok((start, out))
}

/// Unix seconds of a log record's timestamp (`2026-11-28T12:10:26.396053Z ...`, UTC).
pub fn log_time_unix(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || !(0.0..61.0).contains(&ss)
    {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    #[allow(
        clippy::cast_precision_loss,
        reason = "seconds since 1970 fit f64 exactly"
    )]
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Maps wall-clock seconds onto the run's timeline (seconds since t=0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    pub t0_unix: f64,
}

impl Timeline {
    pub fn at(&self, t_unix: f64) -> f64 {
        t_unix - self.t0_unix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_garbage() {
        let h = Header {
            probe: true,
            id: 7,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut b = [0u8; 30];
        assert!(h.write(&mut b));
        assert_eq!(Header::read(&b), Some(h));
        assert_eq!(Header::read(&b[..23]), None);
        b[0] = b'X';
        assert_eq!(Header::read(&b), None);
        assert!(!h.write(&mut [0u8; 10]));
    }

    #[test]
    fn bins_count_loss_and_delay() {
        let mut acc = BinAcc::new(Duration::from_millis(250));
        let t0 = 1_000_000_000_000u64; // a bin boundary
        let h = |seq, sent| Header {
            probe: false,
            id: 1,
            seq,
            sent_ns: sent,
        };
        assert!(acc.feed(t0, &h(0, t0 - 2_000_000), 100).is_none());
        assert!(acc.feed(t0 + 1_000, &h(1, t0 - 1_000_000), 100).is_none());
        // seq 2, 3 lost
        assert!(acc.feed(t0 + 2_000, &h(4, t0), 100).is_none());
        // next bin closes the first
        let b = acc
            .feed(t0 + 300_000_000, &h(5, t0 + 299_000_000), 100)
            .unwrap();
        assert_eq!((b.pkts, b.bytes, b.lost), (3, 300, 2));
        assert!((b.t_unix - 1000.0).abs() < 1e-9);
        assert!((b.owd_p50_ms.unwrap() - 1.001).abs() < 1e-9); // of 2, 1.001, 0.002 ms
        assert!((b.owd_max_ms.unwrap() - 2.0).abs() < 1e-9);
        // late seq 3 in the second bin undoes one loss of that bin only (none there)
        acc.feed(t0 + 300_000_100, &h(3, t0), 100);
        let b2 = acc.tick(t0 + 600_000_000).unwrap();
        assert_eq!((b2.pkts, b2.lost), (2, 0));
        assert!(acc.tick(t0 + 900_000_000).is_none());
        assert_eq!(acc.received, 5);
        let line = b.to_json().to_string();
        assert_eq!(RecvBin::from_json_line(&line), Some(b));
        assert_eq!(RecvBin::from_json_line("{\"probe\":1}"), None);
    }

    #[test]
    fn ping_lines() {
        let log = "PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.\n\
            [1732790000.100000] 64 bytes from 198.18.2.1: icmp_seq=1 ttl=63 time=0.083 ms\n\
            [1732790000.200000] no answer yet for icmp_seq=2\n\
            [1732790000.250000] 64 bytes from 198.18.2.1: icmp_seq=2 ttl=63 time=120 ms\n\
            [1732790000.400000] no answer yet for icmp_seq=3\n\
            [garbage] 64 bytes icmp_seq=x\n\
            --- 198.18.2.1 ping statistics ---\n";
        let ev = parse_ping_log(log);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].rtt_ms, Some(0.083));
        assert_eq!(ev[1].rtt_ms, Some(120.0));
        assert_eq!(ev[2].rtt_ms, None);
        assert!((ev[2].t_unix - 1_732_790_000.4).abs() < 1e-6);
    }

    #[test]
    fn log_timestamps() {
        assert_eq!(log_time_unix("1970-01-01T00:00:01.5Z  INFO x"), Some(1.5));
        // date -u -d 2026-11-28T12:10:26 +%s
        assert_eq!(
            log_time_unix("2026-11-28T12:10:26.000000Z  INFO shg_controller: sync"),
            Some(1_795_867_826.0)
        );
        assert_eq!(log_time_unix("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(log_time_unix("uplink up: guarantees"), None);
        assert_eq!(log_time_unix("2026-13-01T00:00:00Z x"), None);
    }

    #[test]
    fn iperf_json_intervals() {
        let j = r#"{"start":{"timestamp":{"timesecs":1732790000}},
            "intervals":[{"sum":{"start":0,"end":1.0,"bytes":1250000}},
                         {"sum":{"start":1.0,"end":2.0,"bytes":2500000}}],"end":{}}"#;
        let (s, iv) = iperf_intervals(j).unwrap();
        assert_eq!(s, Some(1_732_790_000.0));
        assert_eq!(iv, vec![(0.0, 1.0, 1_250_000), (1.0, 2.0, 2_500_000)]);
        assert!(
            iperf_intervals(r#"{"intervals":[],"error":"unable to connect"}"#)
                .unwrap_err()
                .contains("unable to connect")
        );
        assert!(iperf_intervals("nope").is_err());
        assert_eq!(
            probe_hits("{\"probe\":3,\"seq\":0,\"src\":\"198.18.1.11\",\"t\":1.0}\n{\"t\":1}\n"),
            vec![(3, "198.18.1.11".to_string())]
        );
        assert_eq!(parse_sent("{\"sent\": 42, \"errors\": 0}\n"), Some(42));
    }
}
