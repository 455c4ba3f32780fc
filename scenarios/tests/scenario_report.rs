//! Reports from synthetic samples (no root): throughput, loss and RTT over phase windows, the
//! assertions' verdicts (passing and failing ones), bufferbloat grades at their boundaries, and
//! the Markdown, JSON and SVG outputs.

use shg_scenario::scenario::check::check_str;
use shg_scenario::scenario::model::Grade;
use shg_scenario::scenario::policy::Verdict;
use shg_scenario::scenario::report::*;

const SCN: &str = r#"
description = "synthetic"
duration = "10s"
[gateway]
up = "20mbit"
down = "100mbit"
[[service]]
name = "call"
class = "interactive"
min_rate = "2mbit"
reach = ["wan"]
[[service]]
name = "backup"
class = "bulk"
reach = ["wan"]
[[traffic]]
name = "media"
kind = "udp"
from = "call"
to = "wan"
rate = "1mbit"
[[traffic]]
name = "bulk"
kind = "tcp"
from = "backup"
to = "wan"
start = "2s"
[[traffic]]
name = "p"
kind = "ping"
from = "call"
to = "wan"
hz = 50
[[phase]]
name = "idle"
at = "0s"
[[phase]]
name = "load"
at = "4s"
do = [{ action = "policy", service = "call", set = { min_rate = "30mbit" } }]
[[assert]]
kind = "throughput"
traffic = "media"
phase = "load"
min = "990kbit"
max = "1010kbit"
[[assert]]
kind = "throughput"
service = "backup"
direction = "up"
phase = "load"
min = "11mbit"
[[assert]]
kind = "loss"
traffic = "media"
phase = "load"
max = 1.0
[[assert]]
kind = "loss"
traffic = "media"
phase = "idle"
max = 1.0
settle = "0s"
[[assert]]
kind = "rtt"
traffic = "p"
phase = "load"
p99_max = "15ms"
loss_max = 0.0
[[assert]]
kind = "rtt"
traffic = "p"
phase = "idle"
p50_max = "0.1ms"
settle = "0s"
[[assert]]
kind = "reach"
at = "1s"
from = "call"
to = "backup"
allowed = false
[[assert]]
kind = "admission"
phase = "load"
accepted = false
contains = "short by"
[[assert]]
kind = "grade"
service = "call"
min = "A"
"#;

fn data(loaded_rtt: f64) -> RunData {
    let s = check_str("synthetic", SCN).unwrap();
    // media: 1 Mbit/s in 250 ms bins; 2 of 26 lost in one bin of the idle phase.
    let media = Series {
        name: "media".into(),
        bins: (0..40)
            .map(|i| {
                let t0 = f64::from(i) * 0.25;
                Bin {
                    t0,
                    t1: t0 + 0.25,
                    bytes: 31_250,
                    pkts: 26,
                    lost: u64::from(i == 4) * 2,
                    owd_p99_ms: Some(0.2),
                }
            })
            .collect(),
        sent: Some(1042),
        received: Some(1040),
        ..Series::default()
    };
    // bulk: 12 Mbit/s from 2 s, 1 s intervals.
    let bulk = Series {
        name: "bulk".into(),
        bins: (2..10)
            .map(|i| Bin {
                t0: f64::from(i),
                t1: f64::from(i) + 1.0,
                bytes: 1_500_000,
                pkts: 0,
                lost: 0,
                owd_p99_ms: None,
            })
            .collect(),
        ..Series::default()
    };
    // ping: 0.2 ms until the bulk has run 2 s (t=4), then `loaded_rtt`; one lost at t=1.
    let p = Series {
        name: "p".into(),
        pings: (0..500)
            .map(|i| {
                let t = f64::from(i) * 0.02;
                let rtt = if t < 4.0 { 0.2 } else { loaded_rtt };
                PingSample {
                    t,
                    rtt_ms: (i != 50).then_some(rtt),
                }
            })
            .collect(),
        idle_rtts: vec![0.1; 100],
        ..Series::default()
    };
    RunData {
        scenario: s,
        command: "shg-scenario run synthetic".into(),
        date: "2026-11-28 12:00 UTC".into(),
        machine: "test".into(),
        prefix: "shg1a".into(),
        addresses: vec![("call".into(), "198.18.1.11".into()), ("wan".into(), "198.18.2.1".into())],
        series: vec![media, bulk, p],
        line: vec![(1.0, 1e6, 1e6), (2.0, 13e6, 1e6)],
        events: vec![Event { t: 4.0, what: "phase load begins".into() }],
        verdicts: vec![(
            "load".into(),
            "call".into(),
            Verdict::Rejected("uplink up: guarantees 30mbit > 18mbit (20mbit × 0.9): short by 12mbit; held by call 30mbit".into()),
        )],
        reach: vec![ReachResult {
            at: 1.0,
            from: "call".into(),
            to: "backup".into(),
            spoof: None,
            sent: 20,
            received: 0,
            error: None,
        }],
        discovered: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        wall_s: 20.0,
    }
}

#[test]
fn windows_throughput_loss_rtt() {
    let d = data(12.0);
    // Bins prorated: media is 1 Mbit/s over any window.
    let m = d.traffic_bps("media", 6.0, 10.0).unwrap();
    assert!((m - 1e6).abs() < 1.0, "{m}");
    let m = d.traffic_bps("media", 0.1, 0.35).unwrap();
    assert!((m - 1e6).abs() < 1.0, "{m}");
    assert!(
        (d.service_bps(
            "backup",
            shg_scenario::scenario::model::Direction::Up,
            6.0,
            10.0
        )
        .unwrap()
            - 12e6)
            .abs()
            < 1.0
    );
    assert_eq!(
        d.service_bps(
            "backup",
            shg_scenario::scenario::model::Direction::Down,
            0.0,
            10.0
        ),
        None
    );
    // Loss: 2 of 26+2 in the idle phase's 16 bins.
    let l = d.loss_pct("media", 0.0, 4.0).unwrap();
    assert!((l - 2.0 * 100.0 / (16.0 * 26.0 + 2.0)).abs() < 1e-9, "{l}");
    assert_eq!(d.loss_pct("media", 6.0, 10.0), Some(0.0));
    // Ping loss: one of 200 in [0, 4).
    assert!((d.loss_pct("p", 0.0, 4.0).unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(d.rtts("p", 6.0, 10.0).len(), 200);
    assert_eq!(d.load_windows(), vec![(4.0, 10.0)]);
}

#[test]
fn assertions_pass_and_fail_as_measured() {
    let d = data(12.0);
    let j = d.judge();
    assert_eq!(j.len(), 9);
    let pass: Vec<bool> = j.iter().map(|x| x.pass).collect();
    // media rate, backup rate, load loss, idle loss (0.48 % ≤ 1), rtt load (12 ≤ 15, no loss),
    // rtt idle p50 0.2 > 0.1 (fails), reach denied, admission rejected "short by", grade A.
    assert_eq!(
        pass,
        vec![true, true, true, true, true, false, true, true, true],
        "{j:#?}"
    );
    assert!(
        j[5].measured.starts_with("p50 0.20 / p99 0.20 ms"),
        "{}",
        j[5].measured
    );
    assert!(j[7].measured.contains("short by 12mbit"));
    assert!(!d.passed());
    // The same run with 40 ms under load: the RTT bound and the grade fail.
    let j = data(40.0).judge();
    assert!(!j[4].pass && !j[8].pass, "{j:#?}");
    assert!(
        j[8].measured.starts_with("B (added 39.90 ms)"),
        "{}",
        j[8].measured
    );
    // A run error fails the run even when every assertion holds.
    let mut d = data(12.0);
    d.scenario.asserts.truncate(5);
    assert!(d.passed());
    d.errors.push("shg-switch exited".into());
    assert!(!d.passed());
}

#[test]
fn discovered_is_judged_against_its_bound() {
    use shg_scenario::scenario::model::Assert;
    use std::time::Duration;
    let mut d = data(12.0);
    d.scenario.asserts = ["tv", "box", "pc", "nas"]
        .iter()
        .map(|n| Assert::Discovered {
            device: (*n).into(),
            within: Duration::from_secs(2),
        })
        .collect();
    let r = |n: &str, after: Option<f64>, err: Option<&str>| DiscoveredResult {
        device: n.into(),
        after_s: after,
        types: vec!["urn:schemas-upnp-org:device:MediaRenderer:1".into()],
        error: err.map(Into::into),
    };
    d.discovered = vec![
        r("tv", Some(0.48), None),
        r("box", Some(2.5), None),
        r(
            "pc",
            None,
            Some("not in the controller's inventory 30 s after launch"),
        ),
    ];
    let j = d.judge();
    let pass: Vec<bool> = j.iter().map(|x| x.pass).collect();
    assert_eq!(pass, vec![true, false, false, false], "{j:#?}");
    assert!(
        j[0].measured.starts_with("after 0.48 s (urn:"),
        "{}",
        j[0].measured
    );
    assert!(j[2].measured.contains("30 s after launch"));
    assert_eq!(j[3].measured, "not run");
    let json = d.json().to_string();
    assert!(
        json.contains("\"discovered\"") && json.contains("\"after_s\":0.48"),
        "{json}"
    );
}

#[test]
fn grades_at_their_boundaries() {
    // idle median 0.1 ms; added = loaded − 0.1 (exact boundaries: model.rs's unit test).
    for (loaded, want) in [
        (5.0, Grade::APlus),
        (5.2, Grade::A),
        (30.2, Grade::B),
        (60.2, Grade::C),
        (200.2, Grade::D),
        (400.2, Grade::F),
    ] {
        let g = data(loaded).grades();
        assert_eq!(g.len(), 1, "one row per service with a ping");
        assert_eq!(g[0].service, "call");
        assert_eq!(g[0].grade, Some(want), "loaded {loaded}: {g:?}");
        assert!((g[0].idle_ms.unwrap() - 0.1).abs() < 1e-12);
    }
}

#[test]
fn markdown_json_and_svg() {
    let d = data(12.0);
    let md = d.markdown();
    assert!(md.starts_with("# Scenario synthetic: FAIL"), "{md}");
    assert!(
        md.contains("| ❌ | p RTT p50 ≤ 0.1 ms over phase idle |"),
        "{md}"
    );
    assert!(
        md.contains("| ✅ | call → backup is blocked at 1.0 s | 0 of 20 datagrams arrived |"),
        "{md}"
    );
    assert!(
        md.contains("| call | p | 0.100 | 12.000 | 12.00 | 11.90 | **A** |"),
        "{md}"
    );
    assert!(md.contains("![throughput](throughput.svg)"));
    assert!(
        md.contains("media: 1040 of 1042 datagrams (0.19 % lost)"),
        "{md}"
    );
    let j = d.json();
    assert_eq!(j["passed"], false);
    assert_eq!(j["grades"][0]["grade"], "A");
    assert_eq!(j["assertions"].as_array().unwrap().len(), 9);
    assert_eq!(j["verdicts"][0]["verdict"], "rejected");
    assert_eq!(j["traffic"][2]["pings"].as_array().unwrap().len(), 500);
    let thr = j["throughput"].as_array().unwrap();
    assert_eq!(thr.len(), 2, "call up, backup up");
    assert_eq!(thr[0]["points"].as_array().unwrap().len(), 10);

    for (svg, n_series) in [(d.svg_throughput(), 2), (d.svg_rtt(), 1)] {
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("class=\"phase\"").count(),
            2,
            "one marker per phase"
        );
        assert_eq!(svg.matches("class=\"series\"").count(), n_series);
        assert!(svg.contains(">load</text>"));
        // Every polyline point is inside the 960×420 canvas.
        for pl in svg.split("points=\"").skip(1) {
            let pts = pl.split('"').next().unwrap();
            for xy in pts.split_whitespace() {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (0.0..=960.0).contains(&x) && (0.0..=420.0).contains(&y),
                    "{xy}"
                );
            }
        }
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }
    // Names with markup are escaped.
    let svg = svg_plot(
        "a<b & c",
        "ms",
        &[("x<y".into(), vec![(0.0, 1.0)])],
        &[],
        10.0,
        None,
        true,
    );
    assert!(svg.contains("a&lt;b &amp; c") && svg.contains("x&lt;y"));
    assert!(svg_plot("t", "y", &[], &[], 0.0, None, true).contains("no data"));
}

#[test]
fn nice_steps() {
    assert_eq!(nice_step(100.0, 10.0), 10.0);
    assert_eq!(nice_step(50.0, 10.0), 5.0);
    assert_eq!(nice_step(13.0, 6.0), 5.0);
    assert_eq!(nice_step(0.0, 6.0), 1.0);
    assert_eq!(nice_step(f64::NAN, 6.0), 1.0);
    assert_eq!(fmt_rate(2_500_000), "2.5 Mbit/s");
    assert_eq!(fmt_rate(500_000), "500 kbit/s");
}
