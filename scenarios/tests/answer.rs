//! `shg-scenario bench answer`, the round-trip reference of `bench flows`, driven by
//! ovs-ofctl in a network namespace (root and ovs-ofctl; SKIP otherwise): add-flows
//! completes (every barrier answered, the flows dropped), an echo is answered, and a request
//! the reference does not serve (dump-flows) gets an OFPT_ERROR, not silence.

use shg_scenario::netns::{prefix, skip_unless_root, wait_for_file_text, Netns, Proc, Scratch};
use std::process::Command;
use std::time::Duration;

#[test]
fn ovs_ofctl_add_flows_completes_against_the_reference() {
    if skip_unless_root("ovs_ofctl_add_flows_completes_against_the_reference") {
        return;
    }
    if Command::new("ovs-ofctl").arg("--version").output().is_err() {
        eprintln!("SKIP ovs_ofctl_add_flows_completes_against_the_reference: no ovs-ofctl");
        return;
    }
    let p = prefix();
    let ns = Netns::new(&format!("{p}ans")).unwrap();
    let dir = Scratch::new(&std::env::temp_dir(), &format!("shg-answer-{p}")).unwrap();
    let flows: String = (0..200)
        .map(|i| {
            format!(
                "priority={},ip,nw_dst=198.18.{}.{},actions=output:2\n",
                100 + i,
                i / 250,
                i % 250
            )
        })
        .collect();
    let file = dir.join("flows.txt");
    std::fs::write(&file, flows).unwrap();
    let log = dir.join("answer.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shg-scenario"));
    cmd.args(["bench", "answer", "127.0.0.1:6710"]);
    let mut answer = Proc::spawn_in(&ns, &cmd, &log).unwrap();
    assert!(
        wait_for_file_text(&log, "listening", Duration::from_secs(5)),
        "{}",
        answer.describe()
    );
    let target = "tcp:127.0.0.1:6710";
    let ofctl = |args: &[&str]| {
        let mut full = vec!["ovs-ofctl", "-O", "OpenFlow13", "--timeout=10"];
        full.extend_from_slice(args);
        ns.exec(&full).unwrap()
    };
    let out = ofctl(&["add-flows", target, &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "add-flows: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        answer.describe()
    );
    let out = ofctl(&["probe", target]);
    assert!(
        out.status.success(),
        "probe (echo): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ovs-ofctl prints the error it got (with OVS's name for bad_multipart) and exits 0.
    let out = ofctl(&["dump-flows", target]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OFPT_ERROR") && text.contains("OFPBRC_BAD_STAT"),
        "dump-flows: {text}"
    );
    assert!(answer.exited().is_none(), "{}", answer.describe());
    answer.stop();
}
