//! `shgctl switch ...`: the client side of shg-switch's control socket.
//!
//! The protocol is one request line; the answer is a status line (`0` success, `1` failure)
//! followed by text. It is repeated here rather than imported so the controller never depends
//! on the switch crate (the two only share `shg-flows`).

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::Duration;

/// Where shg-switch puts its control socket unless told otherwise (`--ctl`).
pub const DEFAULT_CTL: &str = "/run/shg-switch.ctl";

/// The commands the switch answers (checked here so a typo fails before connecting).
pub const COMMANDS: &[&str] = &[
    "show",
    "dump-flows",
    "dump-ports",
    "dump-groups",
    "dump-meters",
    "dump-queues",
    "clear-queue-stats",
    "trace",
    "set-queue",
    "del-queue",
    "set-port-rate",
    "help",
];

/// One line per command, for `shgctl switch` without a command (the switch's `help` has the
/// details).
pub const USAGE: &str = "\
usage: shgctl switch [--ctl PATH] COMMAND [ARGS...]
  show | dump-flows [table=N] | dump-ports | dump-groups | dump-meters
  dump-queues [PORT]                 egress queues, one key=value line per queue
  clear-queue-stats [PORT]           restart the sojourn-time percentiles
  trace FLOW
  set-queue PORT QUEUE_ID [min=RATE] [max=RATE|none] [priority=N]
  del-queue PORT QUEUE_ID
  set-port-rate PORT RATE|none       (RATE like 20mbit; PORT a number or a name)
  help
";

/// Sends one request line and returns (success, text).
pub fn request(path: &Path, line: &str) -> io::Result<(bool, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{}\n", line.trim_end_matches('\n')).as_bytes())?;
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

/// `shgctl switch [--ctl PATH] COMMAND [ARGS...]`. Returns the exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut path = DEFAULT_CTL.to_string();
    let mut rest = args;
    if let Some((first, tail)) = rest.split_first() {
        if let Some(p) = first.strip_prefix("--ctl=") {
            path = p.to_string();
            rest = tail;
        } else if first == "--ctl" {
            let Some((p, tail)) = tail.split_first() else {
                let _ = writeln!(err, "shgctl switch: --ctl needs a PATH");
                return 2;
            };
            path = p.clone();
            rest = tail;
        }
    }
    let Some(cmd) = rest.first() else {
        let _ = writeln!(
            err,
            "shgctl switch: missing command (one of {})\n{USAGE}",
            COMMANDS.join(", ")
        );
        return 2;
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        let _ = writeln!(
            err,
            "shgctl switch: unknown command '{cmd}' (one of {})",
            COMMANDS.join(", ")
        );
        return 2;
    }
    match request(Path::new(&path), &rest.join(" ")) {
        Ok((ok, text)) => {
            if ok {
                let _ = write!(out, "{text}");
                0
            } else {
                let _ = write!(err, "{text}");
                1
            }
        }
        Err(e) => {
            let _ = writeln!(err, "shgctl switch: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_and_unreachable_socket() {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        assert_eq!(run(&[], &mut o, &mut e), 2);
        assert_eq!(run(&["bogus".into()], &mut o, &mut e), 2);
        assert_eq!(run(&["--ctl".into()], &mut o, &mut e), 2);
        e.clear();
        assert_eq!(run(&["--ctl".into(), "/x".into()], &mut o, &mut e), 2);
        let text = String::from_utf8_lossy(&e);
        for c in ["dump-queues", "set-queue", "del-queue", "set-port-rate"] {
            assert!(COMMANDS.contains(&c), "{c}");
            assert!(text.contains(c), "usage lacks {c}: {text}");
        }
        e.clear();
        let code = run(
            &["--ctl".into(), "/nonexistent/shg.ctl".into(), "show".into()],
            &mut o,
            &mut e,
        );
        assert_eq!(code, 1);
        assert!(String::from_utf8_lossy(&e).contains("/nonexistent/shg.ctl"));
    }

    #[test]
    fn talks_the_status_line_protocol() {
        let dir = std::env::temp_dir().join(format!("shgctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("ctl");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            for answer in ["0\nflows here\n", "1\nerror: no such table\n"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut line = String::new();
                io::BufReader::new(&s).read_line(&mut line).unwrap();
                assert!(line.starts_with("dump-flows"));
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let p = sock.to_string_lossy().to_string();
        assert_eq!(run(&args(&["--ctl", &p, "dump-flows"]), &mut o, &mut e), 0);
        assert_eq!(String::from_utf8_lossy(&o), "flows here\n");
        assert_eq!(
            run(
                &args(&[&format!("--ctl={p}"), "dump-flows", "table=9"]),
                &mut o,
                &mut e
            ),
            1
        );
        assert!(String::from_utf8_lossy(&e).contains("no such table"));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
