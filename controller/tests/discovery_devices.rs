//! Discovery against real UPnP devices in network namespaces (issue 8, item 4).
//!
//! Topology, one per test (names `shg<pid><letter>…`, torn down by Drop guards, processes
//! stopped by PID): a bridge namespace `<p>br` with a Linux bridge (multicast snooping off);
//! the discovering namespace `<p>c` (198.18.0.1/24, NO multicast route and no default route:
//! the test asserts it) and device namespaces (.2 minidlna, .3 gmediarender, .4 miniupnpd,
//! .5 a second gmediarender started later, .6 a crafted-message sender, .7 a TCP witness),
//! each with `eth0` on the bridge and, as the devices need it, `239.0.0.0/8 dev eth0`.
//! Discovery runs as `shg-discover --watch --json` in `<p>c`; the test reads its JSON lines.
//!
//! - `discovery_real_devices`: ssdp:all finds the three root devices within 3 s, one entry
//!   each, descriptions parsed (friendly name, device type, manufacturer, model, services,
//!   embedded devices); a device started later appears within 2 s with no new M-SEARCH;
//!   its SIGTERM (byebye) removes it within 1 s; minidlna restarted (SIGTERM, then SIGKILL)
//!   keeps one entry per UDN; a NOTIFY whose LOCATION names another host is refused, counted
//!   and never fetched (a listener there sees no connection), while the same NOTIFY pointing
//!   at its sender is fetched (the check can fail); minidlna SIGKILLed is removed once its
//!   max-age (20 s) has passed, not before its last announcement's max-age.
//! - `discovery_steady_state`: `SHG_DISCOVERY_STEADY_SECS` (default 60) seconds with the three
//!   devices: nothing is dropped, nothing appears twice.
//! - `discovery_gateway_advertisement`: `gssdp-discover -i eth0 -n 3` in a device namespace
//!   finds the gateway's advertisement; its description is served at its LOCATION; SIGTERM
//!   makes it say byebye (`gssdp-discover -m unavailable` sees it).
//!
//! Needs root and minidlna, gmediarender (+ gstreamer1.0-plugins-base), miniupnpd,
//! gupnp-tools, python3 (tests/setup.sh installs them); SKIP with a message otherwise.
//! `SHG_KEEP_SCRATCH=1` keeps the logs.

#[path = "../../tests/common/netns.rs"]
mod netns;

mod discovery {
    use super::netns::{
        prefix, run, skip_unless_root, wait_for_file_text, wait_until, Netns, Proc, Scratch, Veth,
    };
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const DLNA: &str = "uuid:4d696e69-444c-164e-9d41-00000000d1a1";
    const IGD: &str = "uuid:0f1271fd-0fa1-4eb3-91bc-00000000a002";
    const IGD_WAN: &str = "uuid:0f1271fd-0fa1-4eb3-91bc-00000000a003";
    const REND: &str = "uuid:5c7a1f63-0000-4000-8000-00000000e003";
    const REND2: &str = "uuid:5c7a1f63-0000-4000-8000-00000000e005";
    const GATEWAY: &str = "uuid:8f1c0e2a-5b7d-4c3e-9a10-00000000c001";
    /// minidlna's notify_interval in these tests: max-age = 2*5+10 = 20 s (measured).
    const DLNA_NOTIFY: u64 = 5;
    const DLNA_MAX_AGE: u64 = 20;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/discovery")
    }

    fn have(prog: &str) -> bool {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(prog).exists())
            || run("which", &[prog]).is_ok()
    }

    fn skip(test: &str, progs: &[&str]) -> bool {
        if skip_unless_root(test) {
            return true;
        }
        let missing: Vec<&&str> = progs.iter().filter(|p| !have(p)).collect();
        if !missing.is_empty() {
            eprintln!("SKIP {test}: {missing:?} not installed (run tests/setup.sh)");
            return true;
        }
        false
    }

    /// Bridge + discovering namespace; device namespaces added with [`Lan::node`].
    struct Lan {
        p: String,
        scratch: Scratch,
        // Veths before namespaces: dropped first.
        veths: Vec<Veth>,
        nodes: BTreeMap<String, Netns>,
        ctl: Netns,
        br: Netns,
    }

    impl Lan {
        fn new(test: &str) -> io::Result<Lan> {
            let p = prefix();
            let scratch = Scratch::new(
                &Path::new(env!("CARGO_TARGET_TMPDIR")).join("discovery"),
                &format!("{test}-{p}"),
            )?;
            let br = Netns::new(&format!("{p}br"))?;
            br.exec_ok(&[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])?;
            br.link_up("br0")?;
            let ctl = Netns::new(&format!("{p}c"))?;
            let mut lan = Lan {
                p,
                scratch,
                veths: Vec::new(),
                nodes: BTreeMap::new(),
                ctl,
                br,
            };
            let v = lan.attach(true, "c", "198.18.0.1/24")?;
            lan.veths.push(v);
            Ok(lan)
        }

        fn attach(&self, is_ctl: bool, tag: &str, cidr: &str) -> io::Result<Veth> {
            let ns = if is_ctl { &self.ctl } else { &self.nodes[tag] };
            let peer = format!("{}v{tag}", self.p);
            let v = Veth::new("eth0", ns, &peer, &self.br)?;
            self.br
                .exec_ok(&["ip", "link", "set", &peer, "master", "br0"])?;
            ns.add_addr("eth0", cidr)?;
            Ok(v)
        }

        /// A device namespace `<p><tag>` at 198.18.0.`host`, with the multicast route
        /// devices need.
        fn node(&mut self, tag: &str, host: u8) -> io::Result<()> {
            let ns = Netns::new(&format!("{}{tag}", self.p))?;
            self.nodes.insert(tag.to_string(), ns);
            let v = self.attach(false, tag, &format!("198.18.0.{host}/24"))?;
            self.veths.push(v);
            self.nodes[tag].exec_ok(&["ip", "route", "add", "239.0.0.0/8", "dev", "eth0"])?;
            Ok(())
        }

        fn ns(&self, tag: &str) -> &Netns {
            &self.nodes[tag]
        }

        fn dir(&self, name: &str) -> io::Result<PathBuf> {
            let d = self.scratch.join(name);
            std::fs::create_dir_all(&d)?;
            Ok(d)
        }
    }

    fn minidlna(lan: &Lan, tag: &str, log: &str) -> io::Result<Proc> {
        let dir = lan.dir(&format!("minidlna-{tag}"))?;
        for sub in ["media", "db", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let conf = std::fs::read_to_string(fixtures().join("devices/minidlna.conf"))?
            .replace("@DIR@", &dir.to_string_lossy())
            .replace("@UUID@", DLNA.trim_start_matches("uuid:"))
            .replace("@NOTIFY@", &DLNA_NOTIFY.to_string());
        let conf_path = dir.join("minidlna.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("minidlnad");
        cmd.arg("-f")
            .arg(&conf_path)
            .arg("-P")
            .arg(dir.join("minidlna.pid"))
            .arg("-S");
        let p = Proc::spawn_in(lan.ns(tag), &cmd, &lan.scratch.join(log))?;
        if !wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            lan.ns(tag).tcp_listening(8200)
        }) {
            return Err(io::Error::other(format!(
                "minidlna did not listen: {}",
                p.describe()
            )));
        }
        Ok(p)
    }

    fn miniupnpd(lan: &Lan, tag: &str) -> io::Result<(Proc, Veth)> {
        let ns = lan.ns(tag);
        let wan = Veth::new("wan0", ns, "wan1", ns)?;
        ns.add_addr("wan0", "198.19.0.1/24")?;
        let dir = lan.dir("miniupnpd")?;
        let conf = std::fs::read_to_string(fixtures().join("devices/miniupnpd.conf"))?
            .replace("@UUID@", IGD.trim_start_matches("uuid:"));
        let conf_path = dir.join("miniupnpd.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("miniupnpd");
        cmd.arg("-f")
            .arg(&conf_path)
            .arg("-d")
            .arg("-P")
            .arg(dir.join("miniupnpd.pid"));
        let p = Proc::spawn_in(ns, &cmd, &lan.scratch.join("miniupnpd.log"))?;
        if !wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            ns.tcp_listening(5000)
        }) {
            return Err(io::Error::other(format!(
                "miniupnpd did not listen: {}",
                p.describe()
            )));
        }
        Ok((p, wan))
    }

    fn gmediarender(lan: &Lan, tag: &str, udn: &str, name: &str) -> io::Result<Proc> {
        let dir = lan.dir(&format!("gmediarender-{tag}"))?;
        let mut cmd = Command::new("gmediarender");
        cmd.args(["-I", "eth0", "-p", "49494", "-u"])
            .arg(udn.trim_start_matches("uuid:"))
            .args(["-f", name])
            .env("GST_REGISTRY", dir.join("gst-registry.bin"))
            .env("HOME", &dir);
        let p = Proc::spawn_in(
            lan.ns(tag),
            &cmd,
            &lan.scratch.join(&format!("gmediarender-{tag}.log")),
        )?;
        if !wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            lan.ns(tag).tcp_listening(49494)
        }) {
            return Err(io::Error::other(format!(
                "gmediarender did not listen: {}",
                p.describe()
            )));
        }
        Ok(p)
    }

    /// gmediarender installs its SIGTERM handler (the one that says byebye) only when it
    /// prints this; a SIGTERM earlier kills it silently (seen).
    fn wait_renderer_ready(p: &Proc) {
        assert!(
            wait_for_file_text(p.log(), "Ready for rendering", Duration::from_secs(10)),
            "gmediarender not ready: {}",
            p.describe()
        );
    }

    /// `shg-discover --watch --json` in the discovering namespace.
    fn discover(lan: &Lan, extra: &[&str]) -> io::Result<Watch> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shg-discover"));
        cmd.args(["--interface", "eth0", "--watch", "--json", "--log", "info"])
            .args(extra)
            .env("NO_COLOR", "1");
        let log = lan.scratch.join("shg-discover.log");
        let proc = Proc::spawn_in(&lan.ctl, &cmd, &log)?;
        let w = Watch {
            proc,
            started: Instant::now(),
        };
        if !wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            w.lines().iter().any(|l| l.starts_with("{\"ready\":true"))
        }) {
            return Err(io::Error::other(format!(
                "shg-discover not ready: {}",
                w.proc.describe()
            )));
        }
        Ok(w)
    }

    struct Watch {
        proc: Proc,
        started: Instant,
    }

    /// One event line, reduced to what the tests check.
    #[derive(Debug, Clone)]
    struct Ev {
        event: String,
        reason: String,
        udn: String,
        line: String,
    }

    impl Watch {
        fn lines(&self) -> Vec<String> {
            self.proc
                .log_text()
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(str::to_string)
                .collect()
        }

        fn events(&self) -> Vec<Ev> {
            self.lines()
                .into_iter()
                .filter(|l| l.contains("\"event\":"))
                .map(|l| Ev {
                    event: string_field(&l, "event").unwrap_or_default(),
                    reason: string_field(&l, "reason").unwrap_or_default(),
                    udn: string_field(&l, "udn").unwrap_or_default(),
                    line: l,
                })
                .collect()
        }

        /// The UDNs present after replaying appeared/gone events.
        fn present(&self) -> BTreeMap<String, usize> {
            let mut m = BTreeMap::new();
            for e in self.events() {
                match e.event.as_str() {
                    "appeared" => *m.entry(e.udn).or_insert(0) += 1,
                    "gone" => {
                        if let Some(n) = m.get_mut(&e.udn) {
                            *n -= 1;
                            if *n == 0 {
                                m.remove(&e.udn);
                            }
                        }
                    }
                    _ => {}
                }
            }
            m
        }

        fn counter(&self, name: &str) -> u64 {
            self.lines()
                .iter()
                .rev()
                .find(|l| l.contains("\"counters\":"))
                .and_then(|l| number_field(l, name))
                .unwrap_or(0)
        }

        /// The newest full device object for `udn` (from its latest event).
        fn latest(&self, udn: &str) -> Option<String> {
            self.events()
                .into_iter()
                .rev()
                .find(|e| e.udn == udn)
                .map(|e| e.line)
        }

        fn wait(
            &self,
            what: &str,
            timeout: Duration,
            mut cond: impl FnMut(&Watch) -> bool,
        ) -> Duration {
            let t = Instant::now();
            assert!(
                wait_until(timeout, Duration::from_millis(20), || cond(self)),
                "{what}: not within {timeout:?}\n{}",
                self.proc.describe()
            );
            t.elapsed()
        }

        fn count(&self, event: &str, reason: &str, udn: &str) -> usize {
            self.events()
                .iter()
                .filter(|e| {
                    e.event == event && (reason.is_empty() || e.reason == reason) && e.udn == udn
                })
                .count()
        }
    }

    fn string_field(line: &str, key: &str) -> Option<String> {
        let pat = format!("\"{key}\":\"");
        let start = line.find(&pat)? + pat.len();
        let rest = &line[start..];
        Some(rest[..rest.find('"')?].to_string())
    }

    fn number_field(line: &str, key: &str) -> Option<u64> {
        let pat = format!("\"{key}\":");
        let start = line.find(&pat)? + pat.len();
        let rest = &line[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    }

    fn described(w: &Watch, udn: &str) -> bool {
        w.latest(udn)
            .is_some_and(|l| l.contains("\"described\":true"))
    }

    fn assert_no_multicast_route(ns: &Netns) {
        let routes = ns
            .exec_ok(&["ip", "-4", "route", "show", "table", "all"])
            .unwrap();
        for bad in ["239.", "224.", "default", "multicast"] {
            assert!(
                !routes.lines().any(|l| l.starts_with(bad)),
                "discovering namespace has a {bad} route:\n{routes}"
            );
        }
        let get = ns.exec(&["ip", "route", "get", "239.255.255.250"]).unwrap();
        assert!(
            !get.status.success(),
            "239.255.255.250 is routable in the discovering namespace: {}",
            String::from_utf8_lossy(&get.stdout)
        );
    }

    /// A TCP listener in `ns` that appends a line to its log for every connection.
    fn tcp_witness(lan: &Lan, tag: &str, port: u16) -> io::Result<Proc> {
        let script = format!(
            "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen(8)\nprint('listening',flush=True)\nwhile True:\n  c,a=s.accept()\n  print('CONNECTION from',a,flush=True)\n  c.close()\n"
        );
        let mut cmd = Command::new("python3");
        cmd.args(["-u", "-c", &script]);
        let p = Proc::spawn_in(
            lan.ns(tag),
            &cmd,
            &lan.scratch.join(&format!("witness-{tag}.log")),
        )?;
        if !wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            lan.ns(tag).tcp_listening(port)
        }) {
            return Err(io::Error::other(format!(
                "witness did not listen: {}",
                p.describe()
            )));
        }
        Ok(p)
    }

    /// Sends one NOTIFY ssdp:alive from `tag` to the SSDP group.
    fn send_notify(lan: &Lan, tag: &str, udn: &str, location: &str) {
        let msg = format!(
            "NOTIFY * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nCACHE-CONTROL: max-age=60\\r\\nLOCATION: {location}\\r\\nNT: upnp:rootdevice\\r\\nNTS: ssdp:alive\\r\\nUSN: {udn}::upnp:rootdevice\\r\\nSERVER: crafted/1 UPnP/1.0 test/1\\r\\n\\r\\n"
        );
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'{msg}',('239.255.255.250',1900))\n"
        );
        lan.ns(tag).exec_ok(&["python3", "-c", &script]).unwrap();
    }

    #[test]
    fn discovery_real_devices() {
        if skip(
            "discovery_real_devices",
            &["minidlnad", "miniupnpd", "gmediarender", "python3"],
        ) {
            return;
        }
        let mut lan = Lan::new("real").unwrap();
        for (tag, host) in [("d", 2), ("r", 3), ("g", 4), ("s", 5), ("x", 6), ("y", 7)] {
            lan.node(tag, host).unwrap();
        }
        assert_no_multicast_route(&lan.ctl);
        let mut dlna = minidlna(&lan, "d", "minidlna-1.log").unwrap();
        let _rend = gmediarender(&lan, "r", REND, "shg-test-renderer").unwrap();
        let (_igd, _wan) = miniupnpd(&lan, "g").unwrap();

        // 1. ssdp:all finds the three root devices within 3 s, one entry each, described.
        let w = discover(&lan, &[]).unwrap();
        let found = w.wait(
            "three root devices described",
            Duration::from_secs(3),
            |w| [DLNA, IGD, REND].iter().all(|u| described(w, u)),
        );
        eprintln!("measured: three devices found and described {found:?} after ready");
        let present = w.present();
        assert_eq!(
            present.keys().map(String::as_str).collect::<Vec<_>>(),
            [IGD, DLNA, REND],
            "exactly the three root devices (embedded UDNs folded in): {present:?}"
        );
        assert!(present.values().all(|n| *n == 1), "{present:?}");
        let d = w.latest(DLNA).unwrap();
        for want in [
            "\"device_type\":\"urn:schemas-upnp-org:device:MediaServer:1\"",
            "\"friendly_name\":\"shg-test-dlna\"",
            "\"manufacturer\":\"Justin Maggard\"",
            "\"model_name\":\"Windows Media Connect compatible (MiniDLNA)\"",
            "urn:schemas-upnp-org:service:ContentDirectory:1",
            "\"address\":\"198.18.0.2\"",
        ] {
            assert!(d.contains(want), "minidlna: {want} missing in {d}");
        }
        let g = w.latest(IGD).unwrap();
        for want in [
            "\"device_type\":\"urn:schemas-upnp-org:device:InternetGatewayDevice:2\"",
            "\"friendly_name\":\"shg-test-igd\"",
            "\"manufacturer\":\"Debian\"",
            "urn:schemas-upnp-org:service:WANIPConnection:2",
            &format!("{{\"udn\":\"{IGD_WAN}\",\"device_type\":\"urn:schemas-upnp-org:device:WANDevice:2\""),
        ] {
            assert!(g.contains(want), "miniupnpd: {want} missing in {g}");
        }
        let r = w.latest(REND).unwrap();
        for want in [
            "\"device_type\":\"urn:schemas-upnp-org:device:MediaRenderer:1\"",
            "\"friendly_name\":\"shg-test-renderer\"",
            "\"model_name\":\"gmediarender\"",
            "urn:schemas-upnp-org:service:AVTransport:1",
        ] {
            assert!(r.contains(want), "gmediarender: {want} missing in {r}");
        }

        // 2. A device started later appears within 2 s, without a new M-SEARCH.
        std::thread::sleep(Duration::from_millis(600)); // let the repeated search go out
        let searches = w.counter("searches_sent");
        assert!(searches >= 1);
        let t = Instant::now();
        let mut rend2 = gmediarender(&lan, "s", REND2, "shg-test-renderer-2").unwrap();
        let launched = t.elapsed();
        w.wait("late device appears", Duration::from_secs(2), |w| {
            w.count("appeared", "", REND2) == 1
        });
        let appeared = t.elapsed();
        eprintln!("measured: late gmediarender appeared {appeared:?} after launch ({launched:?} to listen)");
        assert!(
            appeared <= Duration::from_secs(2),
            "appeared {appeared:?} after launch"
        );
        assert_eq!(
            w.counter("searches_sent"),
            searches,
            "no new M-SEARCH was sent"
        );
        w.wait("late device described", Duration::from_secs(2), |w| {
            described(w, REND2)
        });

        // 3. SIGTERM (byebye) removes it within 1 s.
        wait_renderer_ready(&rend2);
        let t = Instant::now();
        run("kill", &["-TERM", &rend2.pid().to_string()]).unwrap();
        w.wait("byebye removes it", Duration::from_secs(1), |w| {
            w.count("gone", "byebye", REND2) == 1
        });
        eprintln!(
            "measured: gmediarender SIGTERM -> gone(byebye) {:?}",
            t.elapsed()
        );
        rend2.stop();

        // 4. Restarts keep one entry per UDN (minidlna says byebye on SIGTERM, and byebye
        //    then alive on start).
        dlna.stop();
        w.wait("minidlna byebye", Duration::from_secs(1), |w| {
            w.count("gone", "byebye", DLNA) >= 1
        });
        let mut dlna = minidlna(&lan, "d", "minidlna-2.log").unwrap();
        w.wait("minidlna back", Duration::from_secs(2), |w| {
            w.present().get(DLNA) == Some(&1)
        });
        run("kill", &["-KILL", &dlna.pid().to_string()]).unwrap();
        dlna.stop();
        let mut dlna = minidlna(&lan, "d", "minidlna-3.log").unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let present = w.present();
        assert_eq!(
            present.get(DLNA),
            Some(&1),
            "one entry for minidlna after restarts: {present:?}"
        );
        assert_eq!(present.len(), 3, "{present:?}");

        // 5. A LOCATION naming another host is refused, counted, never fetched.
        let witness_y = tcp_witness(&lan, "y", 8080).unwrap();
        let witness_x = tcp_witness(&lan, "x", 8080).unwrap();
        let before = w.counter("refused_location_not_source");
        send_notify(
            &lan,
            "x",
            "uuid:00000000-0000-4000-8000-00000000bad1",
            "http://198.18.0.7:8080/rootDesc.xml",
        );
        w.wait("refusal counted", Duration::from_secs(2), |w| {
            w.counter("refused_location_not_source") == before + 1
        });
        // Control: the same NOTIFY pointing at its sender is fetched (so the witness works).
        send_notify(
            &lan,
            "x",
            "uuid:00000000-0000-4000-8000-00000000bad2",
            "http://198.18.0.6:8080/rootDesc.xml",
        );
        assert!(
            wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                witness_x.log_text().contains("CONNECTION")
            }),
            "control fetch never reached the sender: {}",
            witness_x.describe()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !witness_y.log_text().contains("CONNECTION"),
            "discovery connected to a LOCATION that was not the sender's: {}",
            witness_y.describe()
        );
        assert_eq!(
            w.count("appeared", "", "uuid:00000000-0000-4000-8000-00000000bad1"),
            0
        );

        // 6. SIGKILL: no byebye; gone once max-age has passed since its last NOTIFY.
        let expired_before = w.count("gone", "expired", DLNA);
        let t = Instant::now();
        run("kill", &["-KILL", &dlna.pid().to_string()]).unwrap();
        let gone = w.wait(
            "SIGKILLed minidlna expires",
            Duration::from_secs(DLNA_MAX_AGE + 2),
            |w| w.count("gone", "expired", DLNA) > expired_before,
        );
        eprintln!("measured: minidlna SIGKILL -> gone(expired) {:?} (max-age {DLNA_MAX_AGE} s, NOTIFY every {DLNA_NOTIFY} s)", t.elapsed());
        assert!(
            gone >= Duration::from_secs(DLNA_MAX_AGE - DLNA_NOTIFY - 1),
            "gone after {gone:?}: before its max-age could have passed"
        );
        dlna.stop();
        assert_eq!(w.count("gone", "byebye", REND), 0);
        let present = w.present();
        assert!(!present.contains_key(DLNA), "{present:?}");
        assert!(
            present.contains_key(IGD) && present.contains_key(REND),
            "{present:?}"
        );
        eprintln!("elapsed since discovery start: {:?}", w.started.elapsed());
    }

    #[test]
    fn discovery_steady_state() {
        if skip(
            "discovery_steady_state",
            &["minidlnad", "miniupnpd", "gmediarender"],
        ) {
            return;
        }
        let secs: u64 = std::env::var("SHG_DISCOVERY_STEADY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        let mut lan = Lan::new("steady").unwrap();
        for (tag, host) in [("d", 2), ("r", 3), ("g", 4)] {
            lan.node(tag, host).unwrap();
        }
        assert_no_multicast_route(&lan.ctl);
        let _dlna = minidlna(&lan, "d", "minidlna.log").unwrap();
        let _rend = gmediarender(&lan, "r", REND, "shg-test-renderer").unwrap();
        let (_igd, _wan) = miniupnpd(&lan, "g").unwrap();
        let w = discover(&lan, &[]).unwrap();
        w.wait("three devices", Duration::from_secs(3), |w| {
            [DLNA, IGD, REND].iter().all(|u| described(w, u))
        });
        std::thread::sleep(Duration::from_secs(secs));
        let gone: Vec<Ev> = w
            .events()
            .into_iter()
            .filter(|e| e.event == "gone")
            .collect();
        assert!(gone.is_empty(), "dropped during steady state: {gone:?}");
        for u in [DLNA, IGD, REND] {
            assert_eq!(w.count("appeared", "", u), 1, "{u} appeared more than once");
        }
        assert_eq!(w.present().len(), 3);
        assert_eq!(w.counter("refused_ssdp_malformed"), 0);
        eprintln!(
            "steady {secs} s: {} datagrams, {} updates, refusals: own {}",
            w.counter("datagrams_received"),
            w.counter("updated"),
            w.counter("refused_own_advertisement")
        );
    }

    #[test]
    fn discovery_gateway_advertisement() {
        if skip(
            "discovery_gateway_advertisement",
            &["gssdp-discover", "python3"],
        ) {
            return;
        }
        let mut lan = Lan::new("adv").unwrap();
        lan.node("d", 2).unwrap();
        assert_no_multicast_route(&lan.ctl);
        let mut w = discover(
            &lan,
            &[
                "--advertise",
                "shg test gateway",
                "--udn",
                GATEWAY,
                "--no-search",
            ],
        )
        .unwrap();
        let ready = w
            .lines()
            .into_iter()
            .find(|l| l.starts_with("{\"ready\""))
            .unwrap();
        let location = string_field(&ready, "location").expect("a LOCATION when advertising");
        assert!(location.starts_with("http://198.18.0.1:"), "{location}");

        let out = lan
            .ns("d")
            .exec(&[
                "timeout",
                "10",
                "gssdp-discover",
                "-i",
                "eth0",
                "-n",
                "3",
                "-t",
                "ssdp:all",
            ])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("USN:      {GATEWAY}::upnp:rootdevice"))
                || text.contains(&format!("USN:      {GATEWAY}")),
            "gssdp-discover did not find the gateway:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&location), "{text}");

        // Its description is served at that LOCATION.
        let script = format!("import urllib.request;print(urllib.request.urlopen('{location}',timeout=5).read().decode())");
        let body = lan.ns("d").exec_ok(&["python3", "-c", &script]).unwrap();
        assert!(
            body.contains("<friendlyName>shg test gateway</friendlyName>"),
            "{body}"
        );
        assert!(body.contains(&format!("<UDN>{GATEWAY}</UDN>")), "{body}");

        // SIGTERM: byebye, seen by gssdp-discover -m unavailable.
        let mut cmd = Command::new("gssdp-discover");
        cmd.args(["-i", "eth0", "-n", "4", "-m", "unavailable", "-t", GATEWAY]);
        let mut gone = Proc::spawn_in(
            lan.ns("d"),
            &cmd,
            &lan.scratch.join("gssdp-unavailable.log"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        w.proc.stop();
        assert!(
            wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
                gone.log_text().contains("resource unavailable")
            }),
            "no byebye seen: {}",
            gone.describe()
        );
        gone.stop();
    }
}
