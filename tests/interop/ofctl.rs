//! (b) ovs-ofctl -O OpenFlow13 as a client of the switch's passive listener: every command the
//! issue names, with its output checked.

use std::time::Duration;

use crate::netns::wait_until;
use crate::topo::{Star, Target};

/// Runs `ovs-ofctl -O OpenFlow13 --no-names CMD tcp:127.0.0.1:PORT ARGS` inside the switch
/// namespace; Ok(stdout) on exit 0, else Err with the command and its stderr.
pub(crate) fn ofctl(topo: &Star, port: u16, cmd: &str, args: &[&str]) -> Result<String, String> {
    ofctl_opts(topo, port, &[], cmd, args)
}

/// [`ofctl`] with extra options before the command (e.g. `--strict`).
pub(crate) fn ofctl_opts(
    topo: &Star,
    port: u16,
    opts: &[&str],
    cmd: &str,
    args: &[&str],
) -> Result<String, String> {
    let target = format!("tcp:127.0.0.1:{port}");
    let mut full = vec!["ovs-ofctl", "-O", "OpenFlow13", "--no-names", "-t", "10"];
    full.extend_from_slice(opts);
    full.push(cmd);
    full.push(&target);
    full.extend_from_slice(args);
    let out = topo
        .sw
        .exec(&full)
        .map_err(|e| format!("{}: {e}", full.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{}` failed ({}):\n{}{}",
            full.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdout
        ))
    }
}

/// Flow lines of `dump-flows` without the volatile fields (cookie=0 omitted, duration, counters,
/// idle_age), e.g. `table=1, priority=10,ip,nw_dst=198.18.0.3 actions=drop`.
pub(crate) fn flows(topo: &Star, port: u16, args: &[&str]) -> Result<Vec<String>, String> {
    let out = ofctl(topo, port, "dump-flows", args)?;
    Ok(out
        .lines()
        .filter(|l| l.contains("actions="))
        .map(|l| {
            l.trim()
                .split(", ")
                .filter(|f| {
                    ![
                        "duration=",
                        "n_packets=",
                        "n_bytes=",
                        "idle_age=",
                        "hard_age=",
                    ]
                    .iter()
                    .any(|p| f.starts_with(p))
                        && *f != "cookie=0x0"
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect())
}

/// Reads `field=N` from a text fragment.
pub(crate) fn counter(text: &str, field: &str) -> Option<u64> {
    let i = text.find(&format!("{field}="))?;
    let rest = &text[i + field.len() + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The `dump-flows` line containing `needle`, with counters.
fn raw_flow(topo: &Star, port: u16, needle: &str) -> Result<String, String> {
    let out = ofctl(topo, port, "dump-flows", &[])?;
    out.lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .ok_or_else(|| format!("no flow with {needle:?} in dump-flows:\n{out}"))
}

/// The `dump-ports` block for one port (two lines: rx and tx).
fn port_stats(topo: &Star, port: u16, ofport: u32) -> Result<String, String> {
    let out = ofctl(topo, port, "dump-ports", &[&ofport.to_string()])?;
    let start = out
        .find(&format!("port  {ofport}:"))
        .or_else(|| out.find(&format!("port {ofport}:")))
        .ok_or_else(|| format!("port {ofport} missing from dump-ports:\n{out}"))?;
    Ok(out[start..].lines().take(2).collect::<Vec<_>>().join("\n"))
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

fn expect_flows(topo: &Star, port: u16, want: &[&str], step: &str) -> Result<(), String> {
    let mut got = flows(topo, port, &[])?;
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    ensure!(
        got == want,
        "after {step}: dump-flows\n  got  {got:#?}\n  want {want:#?}"
    );
    Ok(())
}

/// The checked ovs-ofctl session.
pub(crate) fn scenario(topo: &Star, port: u16, target: Target) -> Result<(), String> {
    // show: datapath id and the three named ports.
    let show = ofctl(topo, port, "show", &[])?;
    ensure!(
        show.contains("dpid:0000000000000001"),
        "show lacks dpid 1:\n{show}"
    );
    for (i, name) in topo.sw_ports.iter().enumerate() {
        let want = format!(" {}({name}): addr:", i + 1);
        ensure!(show.contains(&want), "show lacks {want:?}:\n{show}");
    }

    // Empty table at start (fail-mode secure, no controller).
    expect_flows(topo, port, &[], "start")?;

    // add-flow, then add-flows from a file (several tables, goto_table, cookie, drop).
    ofctl(
        topo,
        port,
        "add-flow",
        &["table=0,priority=100,in_port=1,actions=output:2"],
    )?;
    expect_flows(
        topo,
        port,
        &["table=0, priority=100,in_port=1 actions=output:2"],
        "add-flow",
    )?;
    let file = topo.scratch.join("flows.txt");
    std::fs::write(
        &file,
        "# forwarding between h1 and h2, h3 to table 1\n\
         table=0,priority=100,in_port=2,actions=output:1\n\
         table=0,priority=100,in_port=3,actions=goto_table:1\n\
         table=1,cookie=0x5,priority=10,ip,nw_dst=198.18.0.3,actions=drop\n\
         table=1,priority=20,arp,arp_tpa=198.18.0.1,actions=output:1\n",
    )
    .map_err(|e| e.to_string())?;
    ofctl(
        topo,
        port,
        "add-flows",
        &[file.to_str().unwrap_or_default()],
    )?;
    let table0 = [
        "table=0, priority=100,in_port=1 actions=output:2",
        "table=0, priority=100,in_port=2 actions=output:1",
        "table=0, priority=100,in_port=3 actions=goto_table:1",
    ];
    let table1 = [
        "cookie=0x5, table=1, priority=10,ip,nw_dst=198.18.0.3 actions=drop",
        "table=1, priority=20,arp,arp_tpa=198.18.0.1 actions=output:1",
    ];
    let all: Vec<&str> = table0.iter().chain(table1.iter()).copied().collect();
    expect_flows(topo, port, &all, "add-flows")?;
    // dump-flows with a match selects.
    let t1 = flows(topo, port, &["table=1"])?;
    ensure!(t1.len() == 2, "dump-flows table=1 gave {t1:#?}");

    // Traffic: h1 <-> h2 through the two table-0 flows; counters must move.
    let before = port_stats(topo, port, 1)?;
    let pinged = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        topo.hosts[0].ping(&Star::ip(2), 1)
    });
    ensure!(
        pinged,
        "h1 could not ping h2 through flows in_port=1->2, in_port=2->1"
    );
    ensure!(
        topo.hosts[0].ping(&Star::ip(2), 3),
        "second ping h1 -> h2 failed"
    );
    // Statistics may lag the datapath (OVS revalidates every ~0.5 s): poll briefly.
    let mut last = String::new();
    let counted = wait_until(Duration::from_secs(3), Duration::from_millis(200), || {
        let Ok(f1) = raw_flow(topo, port, "in_port=1 ") else {
            return false;
        };
        let Ok(p1) = port_stats(topo, port, 1) else {
            return false;
        };
        let Ok(p2) = port_stats(topo, port, 2) else {
            return false;
        };
        last = format!("{f1}\n{p1}\n{p2}");
        counter(&f1, "n_packets").unwrap_or(0) >= 4
            && counter(&f1, "n_bytes").unwrap_or(0) >= 4 * 98
            && counter(&p1, "rx pkts").unwrap_or(0) >= counter(&before, "rx pkts").unwrap_or(0) + 4
            && counter(&p2, "tx pkts").unwrap_or(0) >= 4
    });
    ensure!(
        counted,
        "after 4+ pings h1 -> h2, expected flow in_port=1 n_packets>=4, n_bytes>=392, port 1 rx +4, \
         port 2 tx>=4; port 1 before:\n{before}\nnow:\n{last}"
    );

    // mod-flows --strict changes only the exactly matching flow.
    ofctl_opts(
        topo,
        port,
        &["--strict"],
        "mod-flows",
        &["table=0,priority=100,in_port=3,actions=output:2"],
    )?;
    ofctl_opts(
        topo,
        port,
        &["--strict"],
        "mod-flows",
        &["table=0,priority=99,in_port=2,actions=output:3"],
    )?;
    let table0_mod = [
        "table=0, priority=100,in_port=1 actions=output:2",
        "table=0, priority=100,in_port=2 actions=output:1",
        "table=0, priority=100,in_port=3 actions=output:2",
    ];
    let all: Vec<&str> = table0_mod.iter().chain(table1.iter()).copied().collect();
    expect_flows(topo, port, &all, "mod-flows --strict")?;
    // The modified flow kept its counters? (OF1.3: mod without RESET_COUNTS keeps them.)
    let f1 = raw_flow(topo, port, "in_port=1 ")?;
    ensure!(
        counter(&f1, "n_packets").unwrap_or(0) >= 4,
        "counters lost: {f1}"
    );

    // del-flows: a non-strict match, then a strict one.
    ofctl(topo, port, "del-flows", &["table=1"])?;
    expect_flows(topo, port, &table0_mod, "del-flows table=1")?;
    ofctl_opts(
        topo,
        port,
        &["--strict"],
        "del-flows",
        &["table=0,priority=100,in_port=3"],
    )?;
    expect_flows(topo, port, &table0_mod[..2], "del-flows --strict")?;

    // Meters.
    ofctl(
        topo,
        port,
        "add-meter",
        &["meter=1,kbps,band=type=drop,rate=1000"],
    )?;
    let meters = ofctl(topo, port, "dump-meters", &[])?;
    ensure!(
        meters.contains("meter=1 kbps bands=\ntype=drop rate=1000"),
        "dump-meters lacks meter 1:\n{meters}"
    );
    // dscp_remark bands: shg implements them; OVS userspace answers OFPMMFC_BAD_BAND.
    if target == Target::Shg {
        let m2 =
            "meter=2,pktps,burst,stats,band=type=dscp_remark,rate=100,burst_size=10,prec_level=1";
        ofctl(topo, port, "add-meter", &[m2])?;
        let meters = ofctl(topo, port, "dump-meters", &[])?;
        ensure!(
            meters.contains(
                "meter=2 pktps burst stats bands=\ntype=dscp_remark rate=100 burst_size=10 prec_level=1"
            ),
            "dump-meters lacks meter 2:\n{meters}"
        );
    }

    // Groups.
    ofctl(
        topo,
        port,
        "add-group",
        &["group_id=1,type=all,bucket=output:2,bucket=output:3"],
    )?;
    ofctl(
        topo,
        port,
        "add-group",
        &["group_id=2,type=indirect,bucket=output:1"],
    )?;
    let groups = ofctl(topo, port, "dump-groups", &[])?;
    ensure!(
        groups.contains("group_id=1,type=all,bucket=actions=output:2,bucket=actions=output:3"),
        "dump-groups lacks group 1:\n{groups}"
    );
    ensure!(
        groups.contains("group_id=2,type=indirect,bucket=actions=output:1"),
        "dump-groups lacks group 2:\n{groups}"
    );

    // A flow using both.
    ofctl(
        topo,
        port,
        "add-flow",
        &["table=0,priority=90,in_port=3,actions=meter:1,group:1"],
    )?;
    let f = flows(topo, port, &["in_port=3"])?;
    ensure!(
        f == ["table=0, priority=90,in_port=3 actions=meter:1,group:1"],
        "meter/group flow: {f:#?}"
    );

    // dump-tables: table 0 has 3 active flows, table 1 none; lookups counted.
    let tables = ofctl(topo, port, "dump-tables", &[])?;
    let t0 = tables
        .split("table ")
        .find(|b| b.starts_with("0:"))
        .ok_or_else(|| format!("dump-tables lacks table 0:\n{tables}"))?;
    ensure!(
        counter(t0, "active") == Some(3),
        "table 0 active != 3:\n{tables}"
    );
    ensure!(
        counter(t0, "lookup").unwrap_or(0) >= 4,
        "table 0 lookups too low:\n{tables}"
    );

    // del-flows with no match empties every table.
    ofctl(topo, port, "del-flows", &[])?;
    expect_flows(topo, port, &[], "del-flows (all)")?;
    Ok(())
}

/// An unchecked session touching every request type (for the capture test).
pub(crate) fn exercise(topo: &Star, port: u16) {
    let steps: [(&str, &[&str]); 12] = [
        ("show", &[]),
        ("add-flow", &["table=0,priority=100,in_port=1,ip,nw_dst=198.18.0.2,actions=set_field:198.18.0.9->ip_dst,output:2"]),
        ("add-flow", &["table=0,priority=10,actions=goto_table:1"]),
        ("add-meter", &["meter=1,kbps,band=type=drop,rate=1000"]),
        ("add-group", &["group_id=1,type=select,bucket=weight:5,output:2,bucket=weight:5,output:3"]),
        ("add-flow", &["table=1,priority=5,arp,actions=meter:1,group:1"]),
        ("dump-flows", &[]),
        ("dump-meters", &[]),
        ("dump-groups", &[]),
        ("dump-ports", &[]),
        ("dump-tables", &[]),
        ("del-flows", &[]),
    ];
    for (cmd, args) in steps {
        let _ = ofctl(topo, port, cmd, args);
    }
    let _ = ofctl(topo, port, "dump-group-stats", &[]);
    let _ = ofctl(topo, port, "dump-aggregate", &[]);
    let _ = ofctl(topo, port, "dump-table-features", &[]);
    let _ = ofctl(topo, port, "dump-ports-desc", &[]);
}
