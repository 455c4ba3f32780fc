//! Bounded-time mutational fuzzing of discovery's parsers and inventory (the way
//! flows/tests/fuzz.rs fuzzes the OpenFlow codec).
//!
//! Seeds are the real captured datagrams, descriptions and HTTP heads in
//! tests/fixtures/discovery, mutated by bit flips, byte overwrites, insertions, deletions,
//! truncations, splices, header-line duplication and random bytes. Invariants: nothing
//! panics; whatever is refused is refused with its reason (oversize only above the limits);
//! the inventory stays within its bounds and resolves every UDN it holds.
//! Each target runs `SHG_FUZZ_SECS` seconds (default 3); `SHG_FUZZ_SEED` reproduces a run.

mod discovery {
    use std::net::SocketAddr;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use shg_controller::discovery::counters::{Counters, Refusal};
    use shg_controller::discovery::description;
    use shg_controller::discovery::http;
    use shg_controller::discovery::inventory::{self, Announcement, Inventory, Kind};
    use shg_controller::discovery::ssdp::{self, Message, Nts};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                usize::try_from(self.next() % n as u64).unwrap_or(0)
            }
        }
        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }

    fn budget() -> Duration {
        let secs = std::env::var("SHG_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3u64);
        Duration::from_secs(secs)
    }

    fn seed() -> u64 {
        std::env::var("SHG_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()) << 20)
                    | 1
            })
    }

    fn fixtures(sub: &str, ext: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/discovery")
            .join(sub);
        let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(ext))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        v.sort();
        assert!(!v.is_empty(), "no {ext} seeds in {}", dir.display());
        v
    }

    const TOKENS: [&[u8]; 12] = [
        b"\r\n",
        b"\r\n\r\n",
        b":",
        b"::",
        b"uuid:",
        b"max-age=",
        b"LOCATION: http://198.18.0.2:1/",
        b"NTS: ssdp:byebye\r\n",
        b"<!DOCTYPE x [<!ENTITY a \"b\">]>",
        b"&a;",
        b"<device>",
        b"</device>",
    ];

    fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let n = 1 + rng.below(4);
        for _ in 0..n {
            let len = input.len();
            match rng.below(10) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    input[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    input[i] = rng.byte();
                }
                2 => {
                    let i = rng.below(len + 1);
                    let t = TOKENS[rng.below(TOKENS.len())];
                    input.splice(i..i, t.iter().copied());
                }
                3 if len > 0 => {
                    let i = rng.below(len);
                    let j = (i + 1 + rng.below(16)).min(len);
                    input.drain(i..j);
                }
                4 => input.truncate(rng.below(len + 1)),
                5 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let cut = rng.below(other.len() + 1);
                    let at = rng.below(len + 1);
                    input.truncate(at);
                    input.extend_from_slice(&other[cut..]);
                }
                6 if len > 0 => {
                    // Duplicate a line (repeated headers, nested elements).
                    let i = rng.below(len);
                    let j = (i + rng.below(64)).min(len);
                    let piece = input[i..j].to_vec();
                    input.splice(j..j, piece);
                }
                7 => {
                    let i = rng.below(len + 1);
                    let k = rng.below(8);
                    for _ in 0..k {
                        input.insert(i, rng.byte());
                    }
                }
                8 if len > 0 => {
                    // Digits: lengths, ports, max-age, boot ids.
                    let i = rng.below(len);
                    input[i] = b'0' + u8::try_from(rng.below(10)).unwrap_or(0);
                }
                _ => {}
            }
        }
    }

    /// Runs `body` on mutated seeds (and pure random bytes) until the budget is spent.
    fn fuzz(name: &str, seeds: &[Vec<u8>], mut body: impl FnMut(&[u8])) {
        let s = seed();
        eprintln!("{name}: SHG_FUZZ_SEED={s}");
        let mut rng = Rng(s);
        let deadline = Instant::now() + budget();
        let mut runs = 0u64;
        for seed in seeds {
            body(seed);
        }
        while Instant::now() < deadline {
            let mut input = if rng.below(16) == 0 {
                (0..rng.below(600)).map(|_| rng.byte()).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut input, seeds);
            }
            let r = catch_unwind(AssertUnwindSafe(|| body(&input)));
            if r.is_err() {
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                panic!("{name}: panicked on input (seed {s}, run {runs}): {hex}");
            }
            runs += 1;
        }
        eprintln!("{name}: {runs} runs");
        assert!(runs > 0);
    }

    #[test]
    fn fuzz_ssdp_parser() {
        let seeds = fixtures("ssdp", ".ssdp");
        fuzz("ssdp", &seeds, |data| match ssdp::parse(data) {
            Ok(Message::Notify(n)) => {
                assert!(data.len() <= ssdp::MAX_SSDP_LEN);
                assert!(n.advert.usn.udn.starts_with("uuid:"));
                assert!(n.nts == Nts::ByeBye || n.advert.location.is_some());
                if let Some(l) = &n.advert.location {
                    let _ = ssdp::parse_http_url(l);
                }
            }
            Ok(_) => assert!(data.len() <= ssdp::MAX_SSDP_LEN),
            Err(e) => {
                let r = e.refusal();
                assert!(r == Refusal::SsdpMalformed || r == Refusal::SsdpOversize);
                assert_eq!(r == Refusal::SsdpOversize, data.len() > ssdp::MAX_SSDP_LEN);
            }
        });
    }

    #[test]
    fn fuzz_ssdp_oversize() {
        // Large inputs built from real datagrams: refused as oversize above 8 KiB, never a panic.
        let seeds: Vec<Vec<u8>> = fixtures("ssdp", ".ssdp")
            .into_iter()
            .map(|s| s.repeat(1 + ssdp::MAX_SSDP_LEN / s.len()))
            .collect();
        fuzz("ssdp-oversize", &seeds, |data| {
            if data.len() > ssdp::MAX_SSDP_LEN {
                assert_eq!(
                    ssdp::parse(data).unwrap_err().refusal(),
                    Refusal::SsdpOversize
                );
            } else {
                let _ = ssdp::parse(data);
            }
        });
    }

    #[test]
    fn fuzz_description_xml() {
        let mut seeds = fixtures("description", ".xml");
        seeds.push(
            b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><root><device><UDN>&c;</UDN></device></root>".to_vec(),
        );
        fuzz("description", &seeds, |data| {
            match description::parse(data) {
                Ok(d) => {
                    assert!(data.len() <= description::MAX_DESCRIPTION_LEN);
                    assert!(!d.device.udn.is_empty());
                    for dev in d.device.all() {
                        assert!(dev.friendly_name.chars().count() <= description::MAX_FIELD_LEN);
                    }
                    // Anything with a DTD never parses.
                    let text = String::from_utf8_lossy(data).to_ascii_uppercase();
                    assert!(!text.contains("<!DOCTYPE") && !text.contains("<!ENTITY"));
                }
                Err(e) => {
                    let _ = e.refusal();
                }
            }
        });
    }

    #[test]
    fn fuzz_http_response_framing() {
        let heads = fixtures("description", "-headers.txt");
        let bodies = fixtures("description", ".xml");
        let mut seeds: Vec<Vec<u8>> = heads
            .iter()
            .zip(bodies.iter())
            .map(|(h, b)| [h.as_slice(), b.as_slice()].concat())
            .collect();
        seeds.push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n".to_vec());
        fuzz("http", &seeds, |data| {
            for eof in [false, true] {
                match http::parse_response(data, eof, 4096) {
                    Ok(http::Progress::Done(body)) => assert!(body.len() <= 4096),
                    Ok(http::Progress::Need) => assert!(!eof, "need more after EOF"),
                    Err(e) => {
                        let _ = e.refusal();
                    }
                }
            }
            let _ = http::parse_request_head(data);
        });
    }

    /// Mutated datagrams from a few sources fed to one inventory with a moving clock, with
    /// fetch results (real or mutated descriptions, or failures) fed back.
    #[test]
    fn fuzz_inventory_sequences() {
        let seeds = fixtures("ssdp", ".ssdp");
        let descs = fixtures("description", ".xml");
        let t0 = Instant::now();
        let mut inv = Inventory::new();
        let mut c = Counters::default();
        let mut clock = 0u64;
        let mut rng = Rng(seed() ^ 0x5555);
        let sources: [SocketAddr; 4] = [
            "198.18.0.2:1900".parse().unwrap(),
            "198.18.0.3:40000".parse().unwrap(),
            "198.18.0.4:1900".parse().unwrap(),
            "198.18.0.9:1900".parse().unwrap(),
        ];
        fuzz("inventory", &seeds, |data| {
            clock += rng.below(3000) as u64;
            let now = t0 + Duration::from_millis(clock);
            let _ = inv.expire(now, &mut c);
            let advert_kind = match ssdp::parse(data) {
                Ok(Message::Notify(n)) => Some((
                    match n.nts {
                        Nts::Alive => Kind::Alive,
                        Nts::ByeBye => Kind::ByeBye,
                        Nts::Update => Kind::Update,
                    },
                    n.advert,
                )),
                Ok(Message::Response(r)) => Some((Kind::Response, r.advert)),
                _ => None,
            };
            let Some((kind, advert)) = advert_kind else {
                return;
            };
            let a = Announcement {
                interface: "eth0".into(),
                source: sources[rng.below(sources.len())],
                kind,
                advert,
            };
            let out = inv.announce(a, now, &mut c);
            for f in out.fetches {
                assert!(
                    sources.iter().any(|s| s.ip() == f.url.addr.ip()),
                    "fetch from a non-announcer {:?}",
                    f.url
                );
                let result = match rng.below(3) {
                    0 => Err((Refusal::DescriptionTimeout, "t".to_string())),
                    _ => {
                        let mut d = descs[rng.below(descs.len())].clone();
                        if rng.below(2) == 0 {
                            mutate(&mut rng, &mut d, &descs);
                        }
                        description::parse(&d).map_err(|e| (e.refusal(), e.to_string()))
                    }
                };
                let _ = inv.described(&f.location, result, now, &mut c);
            }
            assert!(inv.len() <= inventory::MAX_DEVICES);
            for d in inv.devices() {
                assert_eq!(inv.get(&d.udn).map(|x| &x.udn), Some(&d.udn));
                for e in &d.embedded_udns {
                    assert!(inv.get(e).is_some(), "alias {e} of {} dangles", d.udn);
                }
                assert!(d.expires_at > now, "expired entry kept");
            }
        });
    }
}
