//! The codec against a second independent implementation: messages encoded by os-ken (the
//! maintained Ryu fork, Python) must decode here, re-encode to the very same bytes, and print
//! exactly as Open vSwitch's `ovs-ofctl ofp-print` prints those bytes. Skips with a message when
//! the os-ken venv (tests/setup.sh) or ovs-ofctl is missing.

use shg_flows::text::format_message;
use shg_flows::wire::message::{decode, encode};
use std::path::PathBuf;
use std::process::Command;

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("SHG_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/shg/venv")))?;
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

fn ovs_print(hex: &str) -> Option<String> {
    let out = Command::new("ovs-ofctl")
        .args(["ofp-print", hex])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[test]
fn osken_encoded_messages_decode_reencode_and_print_like_ovs() {
    let Some(py) = venv_python() else {
        eprintln!("skipping: os-ken venv not found (run tests/setup.sh)");
        return;
    };
    let have_ovs = Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_ovs {
        eprintln!("skipping the ovs-ofctl comparison: ovs-ofctl not installed");
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/osken_encode.py"
    );
    let out = Command::new(&py)
        .arg(script)
        .output()
        .expect("run os-ken encoder");
    assert!(
        out.status.success(),
        "os-ken encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut n = 0;
    for line in text.lines() {
        let (label, hex) = line.split_once(' ').expect("label hex");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let (xid, msg) =
            decode(&bytes).unwrap_or_else(|e| panic!("{label}: os-ken bytes do not decode: {e}"));
        let again = encode(xid, &msg);
        assert_eq!(
            again,
            bytes,
            "{label}: re-encoding differs from os-ken's bytes\n ours {}\n os-ken {hex}",
            again.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        if have_ovs {
            let ovs = ovs_print(hex)
                .unwrap_or_else(|| panic!("{label}: ovs-ofctl cannot print os-ken's bytes"));
            assert_eq!(
                format_message(xid, &msg),
                ovs,
                "{label}: printed differently from ovs-ofctl"
            );
        }
        n += 1;
    }
    assert!(
        n >= 25,
        "expected the whole os-ken corpus, got {n} messages"
    );
    println!("{n} os-ken messages decoded, re-encoded byte for byte, printed as ovs-ofctl does");
}
