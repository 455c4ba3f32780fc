//! kill -9 at any instant loses no acknowledged change: a child process (this test binary,
//! re-run with SHG_STORE_CHILD set) saves records in a loop and prints each version once
//! `save` returned; the parent kills it with SIGKILL at varied instants and checks the store
//! holds a complete record at least as new as the last acknowledged one.

use shg_controller::store::{Record, Store};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn policy(v: u64) -> String {
    // Big enough that a torn write would be likely if writes were not atomic.
    format!(
        "# version {v}\n{}",
        "[services.x]\nmin_rate = \"1mbit\"\n".repeat(200)
    )
}

#[test]
fn store_child() {
    let Ok(dir) = std::env::var("SHG_STORE_CHILD") else {
        return; // only meaningful as the child of kill9_loses_no_acknowledged_change
    };
    let store = Store::open(std::path::Path::new(&dir)).unwrap();
    let mut v = store.load().unwrap().map_or(0, |r| r.version);
    loop {
        v += 1;
        store
            .save(&Record {
                version: v,
                generation_id: v,
                policy: policy(v),
            })
            .unwrap();
        println!("acked {v}");
    }
}

#[test]
fn kill9_loses_no_acknowledged_change() {
    let dir = std::env::temp_dir().join(format!("shg-store-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    for round in 0..8u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "store_child", "--nocapture", "--test-threads=1"])
            .env("SHG_STORE_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut last_acked = 0u64;
        // Wait for the first acknowledged save (process start-up takes longer than the
        // shortest window on a loaded machine), then let it run a varied while (a few ms to
        // ~70 ms) and SIGKILL it mid-write.
        let mut line = String::new();
        while last_acked == 0 {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "round {round}: the child exited before its first save"
            );
            if let Some(v) = line.trim().strip_prefix("acked ") {
                last_acked = v.parse().unwrap();
            }
        }
        let start = Instant::now();
        let run_for = Duration::from_millis(3 + round * 9);
        while start.elapsed() < run_for {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(v) = line.trim().strip_prefix("acked ") {
                last_acked = v.parse().unwrap();
            }
        }
        child.kill().unwrap(); // SIGKILL, by PID
                               // Acks already written to the pipe before the kill count too.
        let mut rest = String::new();
        while out.read_line(&mut rest).unwrap_or(0) > 0 {}
        for l in rest.lines() {
            if let Some(v) = l.trim().strip_prefix("acked ") {
                last_acked = last_acked.max(v.parse().unwrap());
            }
        }
        child.wait().unwrap();
        let rec = Store::open(&dir)
            .unwrap()
            .load()
            .unwrap_or_else(|e| panic!("round {round}: store damaged after kill -9: {e}"));
        let rec = rec.expect("something was saved");
        assert!(
            rec.version >= last_acked,
            "round {round}: acknowledged {last_acked}, store has {}",
            rec.version
        );
        assert_eq!(
            rec.policy,
            policy(rec.version),
            "round {round}: torn record"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
