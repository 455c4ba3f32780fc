//! `shg-scenario bench forward`, the I/O reference of `bench datapath`, in network namespaces
//! (root; SKIP otherwise): it forwards both ways between its two ports (ping across it, small
//! and 8000-byte), also with `--kernel` (the kernel fast path takes over after the first frame
//! of each header), and a port that does not exist is refused with its name.

use shg_scenario::netns::{prefix, skip_unless_root, Netns, Proc, Scratch, Veth};
use std::process::Command;
use std::time::Duration;

#[test]
fn forwards_both_ways_between_its_two_ports() {
    if skip_unless_root("forwards_both_ways_between_its_two_ports") {
        return;
    }
    forwards_both_ways(&[]);
}

#[test]
fn forwards_both_ways_with_the_kernel_fast_path() {
    if skip_unless_root("forwards_both_ways_with_the_kernel_fast_path") {
        return;
    }
    forwards_both_ways(&["--kernel"]);
}

fn forwards_both_ways(extra: &[&str]) {
    let p = prefix();
    let sw = Netns::new(&format!("{p}sw")).unwrap();
    let h1 = Netns::new(&format!("{p}h1")).unwrap();
    let h2 = Netns::new(&format!("{p}h2")).unwrap();
    let _v1 = Veth::new(&format!("{p}a"), &h1, &format!("{p}s1"), &sw).unwrap();
    let _v2 = Veth::new(&format!("{p}b"), &h2, &format!("{p}s2"), &sw).unwrap();
    h1.add_addr(&format!("{p}a"), "198.18.61.1/24").unwrap();
    h2.add_addr(&format!("{p}b"), "198.18.61.2/24").unwrap();

    // Nothing forwards yet: the two hosts are on separate links.
    assert!(
        !h1.ping("198.18.61.2", 1),
        "h1 reached h2 without the forwarder"
    );

    let dir = Scratch::new(
        &std::env::temp_dir(),
        &format!(
            "shg-forward-{p}{}",
            if extra.is_empty() { "" } else { "-kernel" }
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shg-scenario"));
    cmd.args(["bench", "forward", &format!("{p}s1"), &format!("{p}s2")])
        .args(extra);
    let mut fwd = Proc::spawn_in(&sw, &cmd, &dir.join("forward.log")).unwrap();
    assert!(
        h1.ping_until("198.18.61.2", Duration::from_secs(5)),
        "no ping through the forwarder: {}",
        fwd.describe()
    );
    assert!(h2.ping("198.18.61.1", 2), "h2 -> h1: {}", fwd.describe());
    // A large ICMP message: fragments of a full MTU each way.
    let big = h1
        .exec(&[
            "ping",
            "-n",
            "-c",
            "2",
            "-W",
            "2",
            "-s",
            "8000",
            "198.18.61.2",
        ])
        .unwrap();
    assert!(big.status.success(), "8000-byte ping: {}", fwd.describe());
    assert!(fwd.exited().is_none(), "forwarder died: {}", fwd.describe());
    fwd.stop();
}

#[test]
fn a_missing_port_is_refused_by_name() {
    if skip_unless_root("a_missing_port_is_refused_by_name") {
        return;
    }
    let p = prefix();
    let sw = Netns::new(&format!("{p}sw")).unwrap();
    let out = sw
        .exec(&[
            env!("CARGO_BIN_EXE_shg-scenario"),
            "bench",
            "forward",
            &format!("{p}x1"),
            &format!("{p}x2"),
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{p}x1")), "{err}");
}
