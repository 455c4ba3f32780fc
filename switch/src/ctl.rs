//! The control socket: serves `shgctl switch dump-flows|dump-ports|dump-groups|dump-meters|trace|show`.
//!
//! Protocol (one request per connection, over a Unix stream socket): the client sends one
//! line `COMMAND [ARGS]`; the server answers with a status line — `0` for success, `1` for an
//! error — then the text (for an error, `error: ...`), and closes. [`request`] is the client
//! side; a CLI exits with code 1 when the status is not 0. Commands are answered by
//! [`execute`], a pure function of the switch state and `now`; this module's I/O is the socket.
//! It never changes flows: it is a window, the OpenFlow connections are the controls.

use crate::agent::{lock, Clock};
use crate::ofproto::{FailMode, Ofproto};
use shg_flows::action::{meter, port, OFPTT_ALL};
use shg_flows::mods::{GroupMod, GroupModCommand, MeterMod, MeterModCommand};
use shg_flows::table::FlowFilter;
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
  trace FLOW                how a packet with fields FLOW (ovs-ofctl syntax, e.g.
                            in_port=1,dl_dst=00:00:00:00:00:02) goes through the tables
  help                      this text
";

/// Answers one request line. `Err` holds the error message (without `error: `).
pub fn execute(of: &mut Ofproto, line: &str, now: u64) -> Result<String, String> {
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
        "show" => no_args(cmd, args).map(|()| show(of)),
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
    let mut s = String::new();
    for (table_id, e) in of.tables.flow_stats(&filter) {
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

fn show(of: &Ofproto) -> String {
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
    }
    s
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
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &of, clock).await {
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

async fn answer(stream: UnixStream, of: &Mutex<Ofproto>, clock: Clock) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, rd.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let now = clock.now();
    let result = execute(&mut lock(of), &line, now);
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
    }
}
