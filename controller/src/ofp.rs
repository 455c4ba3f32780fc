//! The offline OpenFlow tools of `shgctl`: `ofp-print` (hex in, ovs-ofctl style text out) and
//! `ofp-encode` (ovs-ofctl flow/group/meter syntax in, hex out).
//!
//! Everything here is a pure function over strings and byte buffers, plus [`run`], which takes
//! its arguments, stdin and two output streams so tests drive it without a process. It never
//! opens a connection; the decoding and printing live in `shg-flows`.

use shg_flows::mods::{FlowModCommand, GroupModCommand, MeterModCommand};
use shg_flows::text::{format_message, parse_flow, parse_group, parse_meter};
use shg_flows::wire::message::{decode, encode, frame_len, HeaderView, Message};
use shg_flows::Error;
use std::io::{Read, Write};

/// The usage text printed on bad usage (exit code 2).
pub const USAGE: &str = "\
usage: shgctl ofp-print HEX...
         Decode one or more concatenated OpenFlow 1.3 messages given as hex
         (spaces allowed, optional 0x prefix; '-' reads the hex from stdin)
         and print them as ovs-ofctl ofp-print does.
       shgctl ofp-encode [--command add|modify|modify-strict|delete|delete-strict] 'FLOW'
       shgctl ofp-encode --group 'GROUP'
       shgctl ofp-encode --meter 'METER'
         Print, as one line of lowercase hex, the OpenFlow 1.3 FLOW_MOD (or GROUP_MOD /
         METER_MOD ADD) with xid 1 for a flow, group or meter in ovs-ofctl syntax.
       shgctl switch [--ctl PATH] show|dump-flows [table=N]|dump-ports|dump-groups|dump-meters|trace FLOW
       shgctl switch [--ctl PATH] dump-queues [PORT] | clear-queue-stats [PORT]
       shgctl switch [--ctl PATH] set-queue PORT QUEUE_ID [min=RATE] [max=RATE|none] [priority=N]
       shgctl switch [--ctl PATH] del-queue PORT QUEUE_ID | set-port-rate PORT RATE|none
         Ask a running shg-switch over its control socket (default /run/shg-switch.ctl);
         trace FLOW explains the forwarding of a packet given in ovs-ofctl match syntax;
         the queue commands show and change a port's egress QoS (rates like 20mbit).
       shgctl help";

/// Parses hex text: any white space is ignored, each argument may start with `0x`.
/// Fails on a non-hex character or an odd number of digits.
pub fn parse_hex(parts: &[&str]) -> Result<Vec<u8>, String> {
    let mut digits = Vec::new();
    for part in parts {
        for word in part.split_whitespace() {
            let w = word
                .strip_prefix("0x")
                .or_else(|| word.strip_prefix("0X"))
                .unwrap_or(word);
            for c in w.chars() {
                let d = c
                    .to_digit(16)
                    .ok_or_else(|| format!("'{c}' is not a hex digit"))?;
                digits.push(u8::try_from(d).unwrap_or(0));
            }
        }
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Lowercase hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `bytes` into messages (by their header length) and decodes each. An error's
/// offset is relative to the start of `bytes`.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<(u32, Message)>, Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        let Some(len) = frame_len(rest) else {
            return Err(HeaderView::new_checked(rest)
                .err()
                .unwrap_or_else(|| Error::bad_len("broken OpenFlow header"))
                .shift(at));
        };
        let Some(msg) = rest.get(..len) else {
            return Err(Error::bad_len(format!(
                "message length {len} runs past the {} bytes given",
                rest.len()
            ))
            .at(at + 2));
        };
        out.push(decode(msg).map_err(|e| e.shift(at))?);
        at += len;
    }
    if out.is_empty() {
        return Err(Error::bad_len("no bytes given").at(0));
    }
    Ok(out)
}

/// `ofp-print`: every message of `bytes`, formatted, one after the other.
pub fn print_messages(bytes: &[u8]) -> Result<String, Error> {
    let msgs = decode_all(bytes)?;
    Ok(msgs
        .iter()
        .map(|(xid, m)| format_message(*xid, m))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// What `ofp-encode` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeKind {
    Flow(FlowModCommand),
    Group,
    Meter,
}

/// `ofp-encode`: the message (xid 1) for `text`.
pub fn encode_text(kind: EncodeKind, text: &str) -> Result<Vec<u8>, Error> {
    let m = match kind {
        EncodeKind::Flow(cmd) => Message::FlowMod(parse_flow(text, cmd)?),
        EncodeKind::Group => Message::GroupMod(parse_group(text, GroupModCommand::Add)?),
        EncodeKind::Meter => Message::MeterMod(parse_meter(text, MeterModCommand::Add)?),
    };
    Ok(encode(1, &m))
}

/// A parse error shown against its input: the message with its column, the input, and a
/// caret under the offending byte.
pub fn caret_message(input: &str, err: &Error) -> String {
    let mut s = format!("error: {} ({})", err.detail, err.code.name());
    if let Some(off) = err.offset {
        let off = off.min(input.len());
        // Columns count characters, from 1.
        let col = input.char_indices().take_while(|(i, _)| *i < off).count();
        s.push_str(&format!(
            " at column {}\n  {input}\n  {}^",
            col + 1,
            " ".repeat(col)
        ));
    }
    s
}

fn command_from(s: &str) -> Option<FlowModCommand> {
    Some(match s {
        "add" => FlowModCommand::Add,
        "modify" | "mod" => FlowModCommand::Modify,
        "modify-strict" | "modify_strict" => FlowModCommand::ModifyStrict,
        "delete" | "del" => FlowModCommand::Delete,
        "delete-strict" | "delete_strict" => FlowModCommand::DeleteStrict,
        _ => return None,
    })
}

fn usage_error(err: &mut dyn Write, why: &str) -> i32 {
    let _ = writeln!(err, "shgctl: {why}\n{USAGE}");
    2
}

/// Runs `shgctl` with `args` (without the program name). Returns the exit code: 0 on
/// success, 1 when input fails to decode or parse, 2 on bad usage.
pub fn run(args: &[String], stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        return usage_error(err, "missing command");
    };
    match cmd.as_str() {
        "help" | "-h" | "--help" => {
            let _ = writeln!(out, "{USAGE}\n{}", crate::nbctl::USAGE);
            0
        }
        "ofp-print" => ofp_print(rest, stdin, out, err),
        "ofp-encode" => ofp_encode(rest, out, err),
        "switch" => crate::switch_ctl::run(rest, out, err),
        c if crate::nbctl::COMMANDS.contains(&c) => crate::nbctl::run(args, out, err),
        other => usage_error(err, &format!("unknown command '{other}'")),
    }
}

fn ofp_print(
    args: &[String],
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    if args.is_empty() {
        return usage_error(err, "ofp-print needs HEX");
    }
    let mut text = String::new();
    let parts: Vec<&str> = if args.len() == 1 && args[0] == "-" {
        if let Err(e) = stdin.read_to_string(&mut text) {
            let _ = writeln!(err, "shgctl: reading stdin: {e}");
            return 1;
        }
        vec![text.as_str()]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let bytes = match parse_hex(&parts) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(err, "shgctl: bad hex: {e}");
            return 1;
        }
    };
    match print_messages(&bytes) {
        Ok(s) => {
            let _ = writeln!(out, "{s}");
            0
        }
        Err(e) => {
            let _ = writeln!(err, "shgctl: decode error: {e}");
            1
        }
    }
}

fn ofp_encode(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut kind = None;
    let mut text = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--command" => {
                let Some(c) = it.next() else {
                    return usage_error(err, "--command needs a value");
                };
                let Some(c) = command_from(c) else {
                    return usage_error(err, &format!("unknown flow_mod command '{c}'"));
                };
                if kind.is_some() {
                    return usage_error(err, "give at most one of --command, --group, --meter");
                }
                kind = Some(EncodeKind::Flow(c));
            }
            "--group" | "--meter" => {
                if kind.is_some() {
                    return usage_error(err, "give at most one of --command, --group, --meter");
                }
                kind = Some(if a == "--group" {
                    EncodeKind::Group
                } else {
                    EncodeKind::Meter
                });
            }
            s if s.starts_with("--") => {
                return usage_error(err, &format!("unknown option '{s}'"));
            }
            s => {
                if text.is_some() {
                    return usage_error(err, "ofp-encode takes exactly one argument (quote it)");
                }
                text = Some(s);
            }
        }
    }
    let Some(text) = text else {
        return usage_error(err, "ofp-encode needs a flow, group or meter");
    };
    let kind = kind.unwrap_or(EncodeKind::Flow(FlowModCommand::Add));
    match encode_text(kind, text) {
        Ok(bytes) => {
            let _ = writeln!(out, "{}", to_hex(&bytes));
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{}", caret_message(text, &e));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(args: &[&str], stdin: &str) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(&args, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex(&["0x0102", "03 04"]).unwrap(), vec![1, 2, 3, 4]);
        assert!(parse_hex(&["012"]).is_err());
        assert!(parse_hex(&["zz"]).is_err());
        assert_eq!(to_hex(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn prints_two_concatenated_messages() {
        let (code, out, _) = run_str(&["ofp-print", "0400000800000005", "04140008 00000006"], "");
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "OFPT_HELLO (OF1.3) (xid=0x5):\n version bitmap: 0x01, 0x02, 0x03, 0x04\n\
             OFPT_BARRIER_REQUEST (OF1.3) (xid=0x6):\n"
        );
        let (code, out, _) = run_str(&["ofp-print", "-"], "0x04 15 0008 00000007\n");
        assert_eq!(
            (code, out.as_str()),
            (0, "OFPT_BARRIER_REPLY (OF1.3) (xid=0x7):\n")
        );
    }

    #[test]
    fn decode_errors_name_offset_and_code() {
        // Second message claims 16 bytes but only 8 are there.
        let (code, _, err) = run_str(&["ofp-print", "0400000800000001 0414001000000002"], "");
        assert_eq!(code, 1);
        assert!(err.contains("at byte 10"), "{err}");
        assert!(err.contains("OFPBRC_BAD_LEN"), "{err}");
        // A FLOW_MOD with a bad version.
        let (code, _, err) = run_str(&["ofp-print", "0314000800000001"], "");
        assert_eq!(code, 1);
        assert!(
            err.contains("OFPBRC_BAD_VERSION") && err.contains("at byte 0"),
            "{err}"
        );
        let (code, _, err) = run_str(&["ofp-print", "04"], "");
        assert_eq!(code, 1);
        assert!(err.contains("OFPBRC_BAD_LEN"), "{err}");
    }

    #[test]
    fn encode_and_print_round_trip() {
        let (code, out, _) = run_str(&["ofp-encode", "priority=5,ip,actions=output:1"], "");
        assert_eq!(code, 0);
        let hex = out.trim();
        assert!(hex.starts_with("040e") && hex.chars().all(|c| c.is_ascii_hexdigit()));
        let (code, out, _) = run_str(&["ofp-print", hex], "");
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "OFPT_FLOW_MOD (OF1.3) (xid=0x1): ADD priority=5,ip actions=output:1\n"
        );
        let (_, out, _) = run_str(&["ofp-encode", "--command", "delete-strict", "ip"], "");
        let (_, out, _) = run_str(&["ofp-print", out.trim()], "");
        assert!(out.contains("): DEL_STRICT table:255 ip "), "{out}");
    }

    #[test]
    fn parse_errors_show_a_caret() {
        let (code, _, err) = run_str(&["ofp-encode", "ip,tp_dst=80,actions=drop"], "");
        assert_eq!(code, 1);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains("column"),
            "{err}"
        );
        assert_eq!(lines[1], "  ip,tp_dst=80,actions=drop");
        let caret = lines[2].find('^').unwrap();
        assert!(caret >= 2 && caret < lines[1].len());
    }

    #[test]
    fn bad_usage_exits_2() {
        assert_eq!(run_str(&[], "").0, 2);
        assert_eq!(run_str(&["frobnicate"], "").0, 2);
        assert_eq!(run_str(&["ofp-print"], "").0, 2);
        assert_eq!(run_str(&["ofp-encode"], "").0, 2);
        assert_eq!(run_str(&["ofp-encode", "--command", "zap", "ip"], "").0, 2);
        assert_eq!(run_str(&["ofp-encode", "--group", "--meter", "x"], "").0, 2);
        assert_eq!(run_str(&["ofp-encode", "a", "b"], "").0, 2);
        let (code, _, err) = run_str(&["ofp-encode", "--bogus", "ip"], "");
        assert_eq!(code, 2);
        assert!(err.contains("usage: shgctl"));
    }
}
