//! The control socket: serves `shgctl switch dump-flows|dump-ports|dump-groups|dump-meters|
//! dump-queues|trace|show` and the egress QoS commands `set-queue|del-queue|set-port-rate`.
//!
//! Protocol (one request per connection, over a Unix stream socket): the client sends one
//! line `COMMAND [ARGS]`; the server answers with a status line — `0` for success, `1` for an
//! error — then the text (for an error, `error: ...`), and closes. [`request`] is the client
//! side; a CLI exits with code 1 when the status is not 0. Commands are answered by
//! [`execute`], a pure function of the switch state and `now`; this module's I/O is the socket.
//! It never changes flows: it is a window, the OpenFlow connections are the controls. The one
//! exception is egress QoS (port rates and queues), which OpenFlow 1.3 cannot configure:
//! `set-queue`, `del-queue` and `set-port-rate` rebuild a port's QoS configuration and hand it
//! to its scheduler (`Ofproto::set_port_qos`); the scheduler's refusal is the error text.
//! After such a change [`serve_with`] wakes the datapath so a new next departure counts.
//! `show` also prints the datapath thread's counters (wake-ups, spin polls, frames per receive
//! batch, drops), read from the thread's atomics when the socket has a datapath to ask.
//!
//! `dump-queues` prints one line per queue, `key=value` pairs separated by spaces, always the
//! same keys in the same order (values `none` when not applicable; rates in bit/s, sojourn
//! percentiles in ms), for scripts:
//! `port=1 queue=1 port_rate=20000000 priority=0 min_rate=6000000 max_rate=none tx_packets=..
//! tx_bytes=.. drops_overflow=.. drops_aqm=.. ecn_marked=.. unknown_queue=.. backlog_packets=..
//! backlog_bytes=.. sojourn_p50_ms=0.120 sojourn_p99_ms=1.500`.

use crate::agent::{lock, Clock};
use crate::datapath::{DatapathHandle, DatapathStats};
use crate::ofproto::{FailMode, Ofproto};
use crate::qos::QueueConfig;
use shg_flows::action::{meter, port, OFPTT_ALL};
use shg_flows::mods::{GroupMod, GroupModCommand, MeterMod, MeterModCommand};
use shg_flows::rate::{format_rate, parse_rate};
use shg_flows::table::{DumpPosition, FlowFilter, DUMP_PAGE_LEN};
use shg_flows::text::flow::{format_flow_stats_line, FlowStatsLine};
use shg_flows::text::group::format_group;
use shg_flows::text::meter::format_meter;
use shg_flows::text::value::{format_mac, format_port};
use std::future::Future;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The help text for the control commands.
pub const COMMANDS: &str = "\
commands:
  show                      datapath, ports and their state, connections
  dump-flows [table=N]      flows, as ovs-ofctl dump-flows prints them
  dump-ports                port counters
  dump-groups               groups, as ovs-ofctl dump-groups prints them
  dump-meters               meters, as ovs-ofctl dump-meters prints them
  dump-queues [PORT]        egress queues: rates, counters, drops, backlog, sojourn p50/p99
  clear-queue-stats [PORT]  restart the sojourn-time percentiles (counters stay)
  trace FLOW                how a packet with fields FLOW (ovs-ofctl syntax, e.g.
                            in_port=1,dl_dst=00:00:00:00:00:02) goes through the tables
  set-queue PORT QUEUE_ID [min=RATE] [max=RATE|none] [priority=N]
                            create or change an egress queue (rates like 6mbit; priority
                            0, served first, to 7, the default)
  del-queue PORT QUEUE_ID   remove an egress queue
  set-port-rate PORT RATE|none
                            shape PORT to RATE (e.g. 20mbit), or stop shaping it
  help                      this text
PORT is a port number, a port name or LOCAL.
";

/// Answers one request line. `Err` holds the error message (without `error: `).
pub fn execute(of: &mut Ofproto, line: &str, now: u64) -> Result<String, String> {
    execute_with(of, line, now, None)
}

/// [`execute`], with a snapshot of the datapath thread's counters for `show`.
pub fn execute_with(
    of: &mut Ofproto,
    line: &str,
    now: u64,
    dp: Option<&DatapathStats>,
) -> Result<String, String> {
    // Counters exact, and no decision handed to the kernel outlives a change made here.
    of.entered(now);
    let line = line.trim();
    let (cmd, args) = match line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (line, ""),
    };
    match cmd {
        "dump-flows" => dump_flows(of, args, now),
        "dump-ports" => no_args(cmd, args).map(|()| dump_ports(of, now)),
        "dump-groups" => no_args(cmd, args).map(|()| dump_groups(of)),
        "dump-meters" => no_args(cmd, args).and_then(|()| dump_meters(of)),
        "show" => no_args(cmd, args).map(|()| show(of, dp)),
        "dump-queues" => dump_queues(of, args, now),
        "clear-queue-stats" => clear_queue_stats(of, args),
        "set-queue" => set_queue(of, args, now),
        "del-queue" => del_queue(of, args, now),
        "set-port-rate" => set_port_rate(of, args, now),
        "trace" => {
            if args.is_empty() {
                return Err(
                    "trace needs a flow, e.g. trace in_port=1,dl_dst=00:00:00:00:00:02".into(),
                );
            }
            trace(of, args, now)
        }
        "help" => Ok(COMMANDS.to_string()),
        "" => Err(format!("empty request\n{COMMANDS}")),
        other => Err(format!("unknown command \"{other}\"\n{COMMANDS}")),
    }
}

fn no_args(cmd: &str, args: &str) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("{cmd} takes no arguments (got \"{args}\")"))
    }
}

fn dump_flows(of: &Ofproto, args: &str, now: u64) -> Result<String, String> {
    let filter = dump_flows_filter(of, args)?;
    let mut s = String::new();
    let mut after = None;
    while let Some(next) = dump_flows_page(of, &filter, after, now, &mut s) {
        after = Some(next);
    }
    Ok(s)
}

/// The selection `dump-flows ARGS` asks for.
fn dump_flows_filter(of: &Ofproto, args: &str) -> Result<FlowFilter, String> {
    let mut filter = FlowFilter::default();
    for a in args.split([',', ' ']).filter(|a| !a.is_empty()) {
        match a.split_once('=') {
            Some(("table", v)) => {
                let t: u8 = v
                    .parse()
                    .ok()
                    .filter(|t| *t != OFPTT_ALL)
                    .ok_or_else(|| format!("\"{v}\" is not a table number (0 to 254)"))?;
                if t >= of.tables.n_tables() {
                    return Err(format!(
                        "table {t} does not exist (this switch has {} tables)",
                        of.tables.n_tables()
                    ));
                }
                filter.table_id = t;
            }
            _ => {
                return Err(format!(
                    "dump-flows: unknown argument \"{a}\" (expected table=N)"
                ))
            }
        }
    }
    Ok(filter)
}

/// Appends the next page of `dump-flows` lines (the first when `after` is `None`) to `s`;
/// returns where the dump is when more may follow.
fn dump_flows_page(
    of: &Ofproto,
    filter: &FlowFilter,
    after: Option<DumpPosition>,
    now: u64,
    s: &mut String,
) -> Option<DumpPosition> {
    let page = of.tables.flow_stats_page(filter, after, DUMP_PAGE_LEN);
    for (pos, e) in page.entries {
        let table_id = pos.table_id;
        s.push(' ');
        s.push_str(&format_flow_stats_line(&FlowStatsLine {
            cookie: e.cookie,
            duration_ns: e.duration(now),
            table_id,
            packet_count: e.packet_count,
            byte_count: e.byte_count,
            idle_timeout: e.idle_timeout,
            hard_timeout: e.hard_timeout,
            flags: e.flags,
            priority: e.priority,
            r#match: &e.r#match,
            instructions: &e.instructions,
        }));
        s.push('\n');
    }
    page.next
}

/// `dump-flows` for the socket: page by page, the lock let go between pages (and handed to
/// the datapath thread when it waits for it), so a large table does not hold frames up.
fn dump_flows_paged(
    of: &Mutex<Ofproto>,
    dp: Option<&DatapathHandle>,
    args: &str,
    clock: Clock,
) -> Result<String, String> {
    let filter = {
        let mut g = lock(of);
        // Counts of the decisions the kernel repeats, credited first (as `execute` does).
        g.entered(clock.now());
        dump_flows_filter(&g, args)?
    };
    let mut s = String::new();
    let mut after = None;
    loop {
        let next = dump_flows_page(&lock(of), &filter, after, clock.now(), &mut s);
        let Some(next) = next else { break };
        after = Some(next);
        if let Some(dp) = dp {
            crate::agent::wait_for_handover(|| dp.waiting_for_lock());
        }
    }
    Ok(s)
}

fn port_name(p: u32) -> String {
    if p == port::LOCAL {
        "LOCAL".into()
    } else {
        format_port(p)
    }
}

fn dump_ports(of: &Ofproto, now: u64) -> String {
    let mut s = format!("{} ports\n", of.ports.len());
    for (&no, p) in &of.ports {
        let c = &p.counters;
        let d = now.saturating_sub(p.created);
        s.push_str(&format!(
            "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}\n           tx pkts={}, bytes={}, drop={}, errs={}\n           duration={}.{:03}s\n",
            port_name(no),
            c.rx_packets,
            c.rx_bytes,
            c.rx_dropped,
            c.rx_errors,
            c.tx_packets,
            c.tx_bytes,
            c.tx_dropped,
            c.tx_errors,
            d / 1_000_000_000,
            (d % 1_000_000_000) / 1_000_000,
        ));
    }
    s
}

fn dump_groups(of: &Ofproto) -> String {
    let mut s = String::new();
    for g in of.groups.group_desc() {
        s.push(' ');
        s.push_str(&format_group(&GroupMod {
            command: GroupModCommand::Add,
            group_type: g.group_type,
            group_id: g.group_id,
            buckets: g.buckets,
        }));
        s.push('\n');
    }
    s
}

fn dump_meters(of: &Ofproto) -> Result<String, String> {
    let configs = of
        .meters
        .meter_config(meter::ALL)
        .map_err(|e| format!("meters: {e}"))?;
    let mut s = String::new();
    for m in configs {
        s.push_str(&format_meter(&MeterMod {
            command: MeterModCommand::Add,
            flags: m.flags,
            meter_id: m.meter_id,
            bands: m.bands,
        }));
        s.push('\n');
    }
    Ok(s)
}

fn show(of: &Ofproto, dp: Option<&DatapathStats>) -> String {
    let fm = match of.config.fail_mode {
        FailMode::Secure => "secure",
        FailMode::Standalone => "standalone",
    };
    let mut s = format!(
        "datapath_id: {:016x}\nn_tables: {}\nfail_mode: {fm}\ncontroller connected: {}\nOpenFlow connections: {}\nflows: {}, groups: {}, meters: {}\n",
        of.config.datapath_id,
        of.tables.n_tables(),
        if of.controller_connected() { "yes" } else { "no" },
        of.conns.len(),
        of.tables.len(),
        of.groups.len(),
        of.meters.len(),
    );
    let c = of.tables.cache_stats();
    s.push_str(&format!(
        "megaflow cache: {} entries, {} masks, hits {}, misses {}, emptied {} (flow changes) + {} (full)\n",
        c.entries, c.masks, c.hits, c.misses, c.invalidations, c.overflows
    ));
    if let Some(d) = dp {
        s.push_str(&show_datapath(d));
    }
    for (&no, p) in &of.ports {
        s.push_str(&format!(
            " {}({}): addr:{}\n     link {}{}\n",
            port_name(no),
            p.info.name,
            format_mac(&p.info.hw_addr),
            if p.link_up { "up" } else { "down" },
            if p.config & 1 != 0 {
                ", admin down (PORT_DOWN)"
            } else {
                ""
            },
        ));
        if p.info.curr_speed_kbps != 0 {
            s.push_str(&format!(
                "     speed: {} Mbps now\n",
                p.info.curr_speed_kbps / 1000
            ));
        }
        if let Some(q) = of.port_qos(no) {
            let ids: Vec<String> = q.queues.iter().map(|c| c.id.to_string()).collect();
            s.push_str(&format!(
                "     egress: {}, queues {} (see dump-queues)\n",
                q.rate.map_or_else(
                    || "not shaped".to_string(),
                    |r| format!("shaped to {}", format_rate(r))
                ),
                ids.join(",")
            ));
        }
    }
    s
}

/// The datapath thread's counters, for `show`.
fn show_datapath(d: &DatapathStats) -> String {
    let per_batch = if d.rx_batches == 0 {
        "-".to_string()
    } else {
        // Display only: exact below 2^53 frames.
        #[allow(clippy::cast_precision_loss, reason = "a display ratio")]
        let r = d.rx_packets as f64 / d.rx_batches as f64;
        format!("{r:.1}")
    };
    format!(
        "datapath thread: wakeups {} (shaper timer {}), spin polls {}\n\
         \x20    rx frames {} in {} batches ({per_batch} per batch), rx errors {}\n\
         \x20    forwarded by the thread's copies of decisions {}\n\
         \x20    tx frames {}, tx dropped {}, to no such port {}\n\
         \x20    packet-ins {}, events lost {}, ports disabled {}\n\
         \x20    shaped: enqueued {}, dropped {}, GSO split errors {}\n",
        d.wakeups,
        d.qos_timer_wakeups,
        d.spin_polls,
        d.rx_packets,
        d.rx_batches,
        d.rx_errors,
        d.copied,
        d.tx_packets,
        d.tx_dropped,
        d.no_such_port,
        d.packet_ins,
        d.events_lost,
        d.ports_disabled,
        d.qos_enqueued,
        d.qos_drops,
        d.gso_split_errors,
    )
}

/// Commands that change the switch (egress QoS): the datapath is woken after them.
pub fn is_change(line: &str) -> bool {
    matches!(
        line.split_whitespace().next(),
        Some("set-queue" | "del-queue" | "set-port-rate")
    )
}

/// A port by number, name, or `LOCAL`.
fn find_port(of: &Ofproto, arg: &str) -> Result<u32, String> {
    if arg == "LOCAL" && of.ports.contains_key(&port::LOCAL) {
        return Ok(port::LOCAL);
    }
    if let Ok(n) = arg.parse::<u32>() {
        return if of.ports.contains_key(&n) {
            Ok(n)
        } else {
            Err(format!("port {n} does not exist"))
        };
    }
    of.ports
        .iter()
        .find(|(_, p)| p.info.name == arg)
        .map(|(n, _)| *n)
        .ok_or_else(|| format!("no port is named \"{arg}\" (give a port number or name)"))
}

fn opt_rate(r: Option<u64>) -> String {
    r.map_or_else(|| "none".to_string(), |r| r.to_string())
}

fn ms(ns: Option<u64>) -> String {
    ns.map_or_else(
        || "none".to_string(),
        |ns| format!("{}.{:03}", ns / 1_000_000, (ns % 1_000_000) / 1_000),
    )
}

fn clear_queue_stats(of: &mut Ofproto, args: &str) -> Result<String, String> {
    let only = match args.split_whitespace().collect::<Vec<_>>()[..] {
        [] => None,
        [p] => Some(find_port(of, p)?),
        _ => {
            return Err(format!(
                "clear-queue-stats takes at most one PORT (got \"{args}\")"
            ))
        }
    };
    let mut n = 0;
    for (no, sched) in of.qos.iter_mut() {
        if only.is_none_or(|o| o == *no) {
            sched.clear_sojourn();
            n += 1;
        }
    }
    Ok(format!(
        "sojourn percentiles restarted on {n} shaped port(s)\n"
    ))
}

fn dump_queues(of: &Ofproto, args: &str, _now: u64) -> Result<String, String> {
    let only = match args.split_whitespace().collect::<Vec<_>>()[..] {
        [] => None,
        [p] => Some(find_port(of, p)?),
        _ => {
            return Err(format!(
                "dump-queues takes at most one PORT (got \"{args}\")"
            ))
        }
    };
    let mut s = String::new();
    for (&no, p) in &of.ports {
        if only.is_some_and(|o| o != no) {
            continue;
        }
        let port = port_name(no);
        if let Some(sched) = of.qos.get(&no) {
            let port_rate = opt_rate(sched.config().rate);
            let mut stats = sched.stats();
            stats.sort_by_key(|q| q.id);
            for q in stats {
                s.push_str(&format!(
                    "port={port} queue={} port_rate={port_rate} priority={} min_rate={} max_rate={} tx_packets={} tx_bytes={} drops_overflow={} drops_aqm={} ecn_marked={} unknown_queue={} backlog_packets={} backlog_bytes={} sojourn_p50_ms={} sojourn_p99_ms={}\n",
                    q.id,
                    q.priority,
                    q.min_rate,
                    opt_rate(q.max_rate),
                    q.tx_packets,
                    q.tx_bytes,
                    q.drops_overflow,
                    q.drops_aqm,
                    q.ecn_marked,
                    q.unknown_queue,
                    q.backlog_packets,
                    q.backlog_bytes,
                    ms(q.sojourn.quantile(0.5)),
                    ms(q.sojourn.quantile(0.99)),
                ));
            }
        } else {
            for (&id, c) in &p.queues {
                s.push_str(&format!(
                    "port={port} queue={id} port_rate=none priority=none min_rate=none max_rate=none tx_packets={} tx_bytes={} drops_overflow=0 drops_aqm=0 ecn_marked=0 unknown_queue=0 backlog_packets=0 backlog_bytes=0 sojourn_p50_ms=none sojourn_p99_ms=none\n",
                    c.tx_packets, c.tx_bytes,
                ));
            }
        }
    }
    Ok(s)
}

/// `port N (name):` and the QoS now in force, after a change.
fn qos_report(of: &Ofproto, no: u32) -> String {
    let name = of.ports.get(&no).map_or("", |p| p.info.name.as_str());
    match of.qos.get(&no) {
        None => format!("port {} ({name}): not shaped, no queues\n", port_name(no)),
        Some(sched) => format!(
            "port {} ({name}):\n{}  default queue: {}\n",
            port_name(no),
            crate::config::qos_summary(sched.config()),
            sched.default_queue()
        ),
    }
}

fn parse_queue_id(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .ok()
        .filter(|q| *q <= crate::config::MAX_QUEUE_ID)
        .ok_or_else(|| {
            format!(
                "\"{v}\" is not a queue id (0 to {})",
                crate::config::MAX_QUEUE_ID
            )
        })
}

fn set_queue(of: &mut Ofproto, args: &str, now: u64) -> Result<String, String> {
    const USAGE: &str = "set-queue PORT QUEUE_ID [min=RATE] [max=RATE|none] [priority=N]";
    let words: Vec<&str> = args.split_whitespace().collect();
    let [p, q, opts @ ..] = &words[..] else {
        return Err(format!("usage: {USAGE}"));
    };
    let no = find_port(of, p)?;
    let id = parse_queue_id(q)?;
    let mut cfg = of.port_qos(no).cloned().unwrap_or_default();
    let mut qc = cfg
        .queues
        .iter()
        .find(|c| c.id == id)
        .copied()
        .unwrap_or(QueueConfig {
            id,
            min_rate: 0,
            max_rate: None,
            priority: crate::config::LOWEST_PRIORITY,
        });
    for o in opts {
        let rate = |v: &str| parse_rate(v).map_err(|e| format!("{o}: {e}"));
        match o.split_once('=') {
            Some(("min", "none")) => qc.min_rate = 0,
            Some(("min", v)) => qc.min_rate = rate(v)?,
            Some(("max", "none")) => qc.max_rate = None,
            Some(("max", v)) => {
                let r = rate(v)?;
                if r == 0 {
                    return Err(format!("{o}: a ceiling of zero carries nothing"));
                }
                qc.max_rate = Some(r);
            }
            Some(("priority", v)) => {
                qc.priority = v
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n <= crate::config::LOWEST_PRIORITY)
                    .ok_or_else(|| {
                        format!("{o}: \"{v}\" is not a priority (0, the highest, to 7)")
                    })?;
            }
            _ => return Err(format!("unknown argument \"{o}\" (usage: {USAGE})")),
        }
    }
    if let Some(max) = qc.max_rate {
        if qc.min_rate > max {
            return Err(format!(
                "queue {id}: the guarantee {} is above the ceiling {}",
                format_rate(qc.min_rate),
                format_rate(max)
            ));
        }
    }
    match cfg.queues.iter_mut().find(|c| c.id == id) {
        Some(c) => *c = qc,
        None => cfg.queues.push(qc),
    }
    of.set_port_qos(no, cfg, now)
        .map_err(|e| format!("port {}: {e}", port_name(no)))?;
    Ok(qos_report(of, no))
}

fn del_queue(of: &mut Ofproto, args: &str, now: u64) -> Result<String, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let [p, q] = &words[..] else {
        return Err("usage: del-queue PORT QUEUE_ID".into());
    };
    let no = find_port(of, p)?;
    let id = parse_queue_id(q)?;
    let Some(mut cfg) = of.port_qos(no).cloned() else {
        return Err(format!("port {} has no queues (not shaped)", port_name(no)));
    };
    let before = cfg.queues.len();
    cfg.queues.retain(|c| c.id != id);
    if cfg.queues.len() == before {
        return Err(format!("port {} has no queue {id}", port_name(no)));
    }
    of.set_port_qos(no, cfg, now)
        .map_err(|e| format!("port {}: {e}", port_name(no)))?;
    Ok(qos_report(of, no))
}

fn set_port_rate(of: &mut Ofproto, args: &str, now: u64) -> Result<String, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let [p, r] = &words[..] else {
        return Err("usage: set-port-rate PORT RATE|none".into());
    };
    let no = find_port(of, p)?;
    let mut cfg = of.port_qos(no).cloned().unwrap_or_default();
    if *r == "none" {
        cfg.rate = None;
        // Queues that neither guarantee nor cap anything mean nothing unshaped: the port
        // becomes a plain FIFO again.
        if cfg
            .queues
            .iter()
            .all(|q| q.min_rate == 0 && q.max_rate.is_none())
        {
            cfg.queues.clear();
        }
    } else {
        let rate = parse_rate(r).map_err(|e| e.to_string())?;
        if rate == 0 {
            return Err(format!("{r:?}: a rate of zero carries nothing"));
        }
        cfg.rate = Some(rate);
    }
    of.set_port_qos(no, cfg, now)
        .map_err(|e| format!("port {}: {e}", port_name(no)))?;
    Ok(qos_report(of, no))
}

fn trace(of: &mut Ofproto, flow: &str, now: u64) -> Result<String, String> {
    crate::datapath::trace::trace(of, flow, now).map_err(|e| e.to_string())
}

/// Binds the control socket at `path`, removing a stale socket file left by a previous run.
/// Fails when another process answers on it (a switch is already running there).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let ctx =
        |e: io::Error| io::Error::new(e.kind(), format!("control socket {}: {e}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(ctx(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ctx(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving it (is a switch already running?)",
            )));
        }
        std::fs::remove_file(path).map_err(ctx)?;
        info!(path = %path.display(), "removed a stale control socket");
    }
    UnixListener::bind(path).map_err(ctx)
}

/// Serves requests until `shutdown` resolves, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    of: Arc<Mutex<Ofproto>>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, of, clock, None, shutdown).await;
}

/// [`serve`] for a switch with a datapath thread: `show` prints its counters, and it is woken
/// after every successful QoS change ([`is_change`]).
pub async fn serve_with(
    listener: UnixListener,
    of: Arc<Mutex<Ofproto>>,
    clock: Clock,
    dp: Option<Arc<DatapathHandle>>,
    shutdown: impl Future<Output = ()>,
) {
    let path: Option<PathBuf> = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let of = of.clone();
                    let dp = dp.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &of, clock, dp.as_deref()).await {
                            warn!("control socket request failed: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

async fn answer(
    stream: UnixStream,
    of: &Mutex<Ofproto>,
    clock: Clock,
    dp: Option<&DatapathHandle>,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, rd.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let now = clock.now();
    let stats = dp.map(DatapathHandle::stats);
    let result = match line.trim().split_once(char::is_whitespace) {
        Some(("dump-flows", args)) => dump_flows_paged(of, dp, args.trim(), clock),
        None if line.trim() == "dump-flows" => dump_flows_paged(of, dp, "", clock),
        _ => execute_with(&mut lock(of), &line, now, stats.as_ref()),
    };
    if result.is_ok() && is_change(&line) {
        if let Some(dp) = dp {
            dp.wake();
        }
    }
    let reply = match result {
        Ok(text) => format!("0\n{text}"),
        Err(e) => format!("1\nerror: {e}\n"),
    };
    wr.write_all(reply.as_bytes()).await?;
    wr.shutdown().await
}

/// The client side: sends `line` to the control socket at `path` and returns (success, text).
/// Blocking; for CLIs. A CLI prints the text and exits 1 unless success.
pub fn request(path: &Path, line: &str) -> io::Result<(bool, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = line.trim_end_matches('\n').to_string();
    req.push('\n');
    s.write_all(req.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut rd = io::BufReader::new(s);
    let mut status = String::new();
    rd.read_line(&mut status)?;
    let mut text = String::new();
    rd.read_to_string(&mut text)?;
    match status.trim_end() {
        "0" => Ok((true, text)),
        "1" => Ok((false, text)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected control socket status line \"{other}\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofproto::OfprotoConfig;
    use shg_flows::mods::FlowModCommand;
    use shg_flows::text::flow::parse_flow;

    fn of_with_flow() -> Ofproto {
        let mut of = Ofproto::new(OfprotoConfig::default());
        let fm = parse_flow(
            "table=1,priority=100,tcp,tp_dst=80,actions=output:2",
            FlowModCommand::Add,
        )
        .unwrap();
        of.tables.apply_flow_mod(&fm, 0).unwrap();
        of
    }

    #[test]
    fn dump_flows_prints_ovs_lines() {
        let mut of = of_with_flow();
        let out = execute(&mut of, "dump-flows", 1_500_000_000).unwrap();
        assert_eq!(
            out,
            " cookie=0x0, duration=1.500s, table=1, n_packets=0, n_bytes=0, priority=100,tcp,tp_dst=80 actions=output:2\n"
        );
        assert_eq!(execute(&mut of, "dump-flows table=0", 0).unwrap(), "");
        assert!(execute(&mut of, "dump-flows table=1", 0)
            .unwrap()
            .contains("table=1"));
    }

    #[test]
    fn dump_flows_pages_give_every_flow_once_in_order() {
        let mut of = Ofproto::new(OfprotoConfig::default());
        let n = 2 * DUMP_PAGE_LEN + 1;
        for i in 0..n {
            let fm = parse_flow(
                &format!(
                    "priority={},ip,nw_dst=198.18.{}.{},actions=output:2",
                    i % 7,
                    i / 256,
                    i % 256
                ),
                FlowModCommand::Add,
            )
            .unwrap();
            of.tables.apply_flow_mod(&fm, 0).unwrap();
        }
        let whole = execute(&mut of, "dump-flows", 0).unwrap();
        let lines: Vec<&str> = whole.lines().collect();
        assert_eq!(lines.len(), n);
        let prios: Vec<u16> = lines
            .iter()
            .map(|l| {
                let p = l.split("priority=").nth(1).unwrap();
                p.split(',').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(prios.windows(2).all(|w| w[0] >= w[1]), "not by priority");
        let mut uniq = lines.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), n);
        // The socket's paged dump (lock let go between pages) prints the same.
        let of = Mutex::new(of);
        let paged = dump_flows_paged(&of, None, "", Clock::process()).unwrap();
        // (The durations differ: the socket reads the process clock.)
        let no_duration = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| {
                    let (head, rest) = l.split_once(" duration=").unwrap();
                    format!("{head}{}", rest.split_once(',').unwrap().1)
                })
                .collect()
        };
        assert!(
            no_duration(&paged) == no_duration(&whole),
            "paged dump differs"
        );
        assert!(dump_flows_paged(&of, None, "table=x", Clock::process()).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let mut of = of_with_flow();
        assert_eq!(
            execute(&mut of, "dump-flows table=x", 0),
            Err("\"x\" is not a table number (0 to 254)".into())
        );
        assert!(execute(&mut of, "dump-flows table=200", 0)
            .unwrap_err()
            .starts_with("table 200 does not exist"));
        assert!(execute(&mut of, "frobnicate", 0)
            .unwrap_err()
            .starts_with("unknown command \"frobnicate\""));
        assert!(execute(&mut of, "dump-ports now", 0).is_err());
        assert!(execute(&mut of, "trace", 0).is_err());
    }

    #[test]
    fn trace_delegates_and_reports_syntax_errors() {
        let mut of = of_with_flow();
        let out = execute(&mut of, "trace in_port=1,tcp,tp_dst=80", 0).unwrap();
        assert!(!out.is_empty());
        assert!(execute(&mut of, "trace in_port=1,bogus_field=3", 0).is_err());
    }

    #[test]
    fn show_and_empty_tables() {
        let mut of = Ofproto::new(OfprotoConfig::default());
        let s = execute(&mut of, "show", 0).unwrap();
        assert!(s.starts_with("datapath_id: 0000000000000001\n"), "{s}");
        assert!(s.contains("controller connected: no"), "{s}");
        assert_eq!(execute(&mut of, "dump-groups", 0).unwrap(), "");
        assert_eq!(execute(&mut of, "dump-meters", 0).unwrap(), "");
        assert_eq!(execute(&mut of, "dump-ports", 0).unwrap(), "0 ports\n");
        assert!(!s.contains("datapath thread"), "{s}");
    }

    #[test]
    fn show_prints_the_datapath_counters_given() {
        let mut of = Ofproto::new(OfprotoConfig::default());
        let d = DatapathStats {
            wakeups: 7,
            spin_polls: 30,
            rx_batches: 4,
            rx_packets: 10,
            tx_packets: 9,
            tx_dropped: 1,
            copied: 6,
            ..DatapathStats::default()
        };
        let s = execute_with(&mut of, "show", 0, Some(&d)).unwrap();
        assert!(
            s.contains("datapath thread: wakeups 7 (shaper timer 0), spin polls 30\n"),
            "{s}"
        );
        assert!(
            s.contains("     rx frames 10 in 4 batches (2.5 per batch), rx errors 0\n"),
            "{s}"
        );
        assert!(
            s.contains("     forwarded by the thread's copies of decisions 6\n"),
            "{s}"
        );
        assert!(
            s.contains("     tx frames 9, tx dropped 1, to no such port 0\n"),
            "{s}"
        );
        let none = execute_with(&mut of, "show", 0, Some(&DatapathStats::default())).unwrap();
        assert!(none.contains("(- per batch)"), "{none}");
    }
}
