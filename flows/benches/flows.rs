//! Criterion benchmarks of the pure data-plane and codec paths (not tests; numbers go to
//! docs/benchmarks.md): classifier lookups with 1k/10k/100k rules of mixed masks, flow-key
//! extraction (ours vs etherparse's slicing, the reason for a hand-written extractor),
//! whole-pipeline lookups with 10k flows through the megaflow cache and without it, and
//! OpenFlow encode/decode throughput.
//!
//! Run: `cargo bench -p shg-flows --bench flows` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shg_flows::action::{Action, Instruction};
use shg_flows::classifier::Classifier;
use shg_flows::field::{Field, FlowKey};
use shg_flows::key;
use shg_flows::matches::Match;
use shg_flows::mods::FlowMod;
use shg_flows::wire::message::{self, Message};
use std::hint::black_box;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A rule set of mixed masks like a gateway's: per-port anti-spoofing (in_port + eth_src),
/// per-service classification (ipv4 prefixes of varying length, proto, ports) and a catch-all.
fn rules(n: usize, rng: &mut Rng) -> Vec<(Match, u16)> {
    let mut out = Vec::with_capacity(n + 1);
    for i in 0..n {
        let mut m = Match::any();
        m.set_u64(Field::EthType, 0x0800);
        let kind = rng.below(6);
        let dst = [
            198,
            18,
            u8::try_from(rng.below(256)).unwrap_or(0),
            u8::try_from(rng.below(256)).unwrap_or(0),
        ];
        match kind {
            0 => {
                m.set_u64(Field::InPort, 1 + rng.below(16));
                m.set(
                    Field::EthSrc,
                    &[
                        2,
                        0,
                        0,
                        0,
                        u8::try_from(i >> 8 & 0xff).unwrap_or(0),
                        u8::try_from(i & 0xff).unwrap_or(0),
                    ],
                );
            }
            1 => {
                let plen = 16 + rng.below(17);
                let mask = (u32::MAX << (32 - plen)).to_be_bytes();
                m.set_masked(Field::Ipv4Dst, &dst, &mask);
            }
            2 => {
                m.set(Field::Ipv4Dst, &dst);
                m.set_u64(Field::IpProto, 6);
                m.set_u64(Field::TcpDst, rng.below(65536));
            }
            3 => {
                m.set_u64(Field::IpProto, 17);
                m.set_u64(Field::UdpDst, rng.below(65536));
            }
            4 => {
                m.set_u64(Field::InPort, 1 + rng.below(16));
                m.set(Field::Ipv4Src, &dst);
            }
            _ => {
                m.set_u64(Field::IpDscp, rng.below(64));
                m.set_u64(Field::InPort, 1 + rng.below(16));
            }
        }
        out.push((m, u16::try_from(100 + rng.below(1000)).unwrap_or(100)));
    }
    // The low-priority rule the bulk of the traffic hits.
    let mut any_ip = Match::any();
    any_ip.set_u64(Field::EthType, 0x0800);
    out.push((any_ip, 1));
    out
}

fn keys(n: usize, rng: &mut Rng) -> Vec<FlowKey> {
    (0..n)
        .map(|_| {
            let mut k = FlowKey::default();
            k.set_u64(Field::InPort, 1 + rng.below(16));
            k.set_u64(Field::EthType, 0x0800);
            k.set_u64(Field::IpProto, 6);
            k.set(Field::Ipv4Src, &[198, 19, 0, 1]);
            k.set(
                Field::Ipv4Dst,
                &[198, 18, u8::try_from(rng.below(256)).unwrap_or(0), 7],
            );
            k.set_u64(Field::TcpDst, 443);
            k.set_u64(Field::TcpSrc, 40000 + rng.below(1000));
            k
        })
        .collect()
}

fn classifier(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier_lookup");
    for n in [1_000usize, 10_000, 100_000] {
        let mut rng = Rng(0x5eed_0000 + n as u64);
        let mut cls = Classifier::new();
        for (i, (m, p)) in rules(n, &mut rng).into_iter().enumerate() {
            cls.insert(m, p, i);
        }
        let ks = keys(1024, &mut rng);
        g.throughput(Throughput::Elements(ks.len() as u64));
        g.bench_with_input(BenchmarkId::new("rules", n), &ks, |b, ks| {
            b.iter(|| {
                let mut hits = 0usize;
                for k in ks {
                    let (r, mask) = cls.lookup_with_mask(black_box(k));
                    hits += usize::from(r.is_some()) + usize::from(mask.0[0]);
                }
                hits
            })
        });
    }
    g.finish();
}

/// `FlowTables::lookup` (counters, trace, actions) over 10k flows in table 0, with the
/// megaflow cache (the keys repeat, as packets of the same flows do) and without.
fn pipeline(c: &mut Criterion) {
    use shg_flows::table::FlowTables;
    let mut g = c.benchmark_group("pipeline_lookup_10k");
    for (name, capacity) in [
        ("cached", shg_flows::cache::DEFAULT_CAPACITY),
        ("uncached", 0),
    ] {
        let mut rng = Rng(0x5eed_1000);
        let mut t = FlowTables::new(2);
        t.set_cache_capacity(capacity);
        for (m, p) in rules(10_000, &mut rng) {
            let fm = FlowMod {
                r#match: m,
                priority: p,
                instructions: vec![Instruction::ApplyActions(vec![Action::Output {
                    port: 2,
                    max_len: 0,
                }])],
                ..FlowMod::default()
            };
            // Rules the generator made invalid for a flow_mod (prerequisites) are skipped.
            let _ = t.apply_flow_mod(&fm, 0);
        }
        let ks = keys(1024, &mut rng);
        g.throughput(Throughput::Elements(ks.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                for k in &ks {
                    n += t.lookup(black_box(k), 64, 1).actions.len();
                }
                n
            })
        });
    }
    g.finish();
}

fn tcp_frame() -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(10).unwrap_or_default())
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 443, 1, 65535);
    let payload = [0u8; 1400];
    let mut v = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut v, &payload).unwrap_or_default();
    v
}

fn extraction(c: &mut Criterion) {
    let frame = tcp_frame();
    let mut g = c.benchmark_group("key_extraction");
    g.throughput(Throughput::Elements(1));
    g.bench_function("shg_key_extract", |b| {
        let mut k = FlowKey::default();
        b.iter(|| key::extract(black_box(&frame), 3, &mut k).l4)
    });
    g.bench_function("etherparse_sliced_packet", |b| {
        b.iter(|| {
            etherparse::SlicedPacket::from_ethernet(black_box(&frame))
                .map(|p| p.transport.is_some())
                .unwrap_or(false)
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut m = Match::any();
    m.set_u64(Field::InPort, 3)
        .set_u64(Field::EthType, 0x0800)
        .set_u64(Field::IpProto, 6)
        .set_masked(Field::Ipv4Dst, &[198, 18, 0, 0], &[255, 255, 0, 0])
        .set_u64(Field::TcpDst, 443);
    let fm = FlowMod {
        priority: 100,
        table_id: 1,
        r#match: m,
        instructions: vec![
            Instruction::Meter(2),
            Instruction::ApplyActions(vec![
                Action::SetQueue(1),
                Action::SetField {
                    field: Field::IpDscp,
                    value: vec![46],
                },
                Action::Output {
                    port: 2,
                    max_len: 0,
                },
            ]),
            Instruction::GotoTable(2),
        ],
        ..FlowMod::default()
    };
    let msg = Message::FlowMod(fm);
    let bytes = message::encode(7, &msg);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("flow_mod_encode", |b| {
        b.iter(|| message::encode(7, black_box(&msg)).len())
    });
    g.bench_function("flow_mod_decode", |b| {
        b.iter(|| message::decode(black_box(&bytes)).is_ok())
    });
    g.finish();
}

criterion_group!(benches, classifier, pipeline, extraction, codec);
criterion_main!(benches);
