//! Bounded-time mutational fuzzing of the decoder, the flow-text parser and classifier
//! operation sequences (target bodies in `shg_flows::fuzz`).
//!
//! Each target runs for `SHG_FUZZ_SECS` seconds (default 3; CI sets 15) from seeds of valid
//! input, mutated by bit flips, byte and length-field overwrites, insertions, deletions,
//! truncations and splices. `SHG_FUZZ_SEED` makes a run reproducible; the seed is printed.
//! A broken invariant panics with the input in hex.

use shg_flows::fuzz;
use shg_flows::mods::{FlowModCommand, GroupModCommand, MeterModCommand};
use shg_flows::text;
use shg_flows::wire::message::{self, HelloElement, Message};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

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

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let n = 1 + rng.below(4);
    for _ in 0..n {
        match rng.below(9) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.byte();
            }
            2 if input.len() >= 2 => {
                // Length-like 16-bit overwrite with interesting values.
                let i = rng.below(input.len() - 1);
                let vals = [0u16, 1, 4, 7, 8, 9, 15, 16, 0xff, 0x100, 0x7fff, 0xffff];
                let len = u16::try_from(input.len()).unwrap_or(u16::MAX);
                let v = if rng.below(3) == 0 {
                    len.wrapping_add(u16::from(rng.byte() % 3)).wrapping_sub(1)
                } else {
                    vals[rng.below(vals.len())]
                };
                input[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            3 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.byte());
            }
            4 if !input.is_empty() => {
                let i = rng.below(input.len());
                let j = (i + 1 + rng.below(8)).min(input.len());
                input.drain(i..j);
            }
            5 => {
                let cut = rng.below(input.len() + 1);
                input.truncate(cut);
            }
            6 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            7 if input.len() >= 4 => {
                // Keep an OpenFlow header consistent with the new length now and then.
                let len = u16::try_from(input.len()).unwrap_or(u16::MAX);
                input[2..4].copy_from_slice(&len.to_be_bytes());
            }
            _ => {
                let i = rng.below(input.len() + 1);
                let k = 1 + rng.below(4);
                for _ in 0..k {
                    input.insert(i, rng.byte());
                }
            }
        }
    }
}

fn run(name: &str, seeds: Vec<Vec<u8>>, target: fn(&[u8])) {
    assert!(!seeds.is_empty());
    // Every seed must pass as it is.
    for s in &seeds {
        target(s);
    }
    let seed = seed();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + budget();
    let mut execs = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut input, &seeds);
            let r = catch_unwind(AssertUnwindSafe(|| target(&input)));
            if let Err(e) = r {
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("fuzz target {name} failed (SHG_FUZZ_SEED={seed}) on input {hex}: {msg:?}");
            }
            execs += 1;
        }
    }
    println!("fuzz {name}: {execs} inputs, seed {seed}, no failure");
    assert!(execs > 0);
}

const FLOWS: &[&str] = &[
    "priority=100,tcp,in_port=1,nw_src=198.18.0.0/16,tp_dst=443,actions=meter:2,set_queue:1,output:2",
    "table=1,ipv6,ipv6_src=2001:db8::/32,actions=set_field:2001:db8::1->ipv6_dst,goto_table:2",
    "arp,arp_spa=198.18.0.1,arp_op=1,actions=output:controller",
    "dl_vlan=10,dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00,actions=pop_vlan,output:3",
    "vlan_tci=0,actions=push_vlan:0x8100,set_field:4106->vlan_vid,output:4",
    "icmp6,icmp_type=135,nd_target=2001:db8::7,actions=clear_actions,write_actions(output:1)",
    "udp,udp_dst=53,metadata=0x5/0xff,actions=group:7,write_metadata:0x1/0xf,goto_table:3",
    "mpls,mpls_label=100,actions=pop_mpls:0x0800,dec_ttl,output:in_port",
    "cookie=0x10,idle_timeout=30,hard_timeout=60,send_flow_rem,ip,nw_tos=0x10,actions=mod_nw_tos:32,normal",
    "priority=0,actions=drop",
];

#[test]
fn fuzz_decode_message() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for (i, f) in FLOWS.iter().enumerate() {
        let fm = text::parse_flow(f, FlowModCommand::Add).expect("seed flow parses");
        seeds.push(message::encode(
            u32::try_from(i).unwrap_or(0),
            &Message::FlowMod(fm),
        ));
    }
    let gm = text::parse_group(
        "group_id=1,type=select,bucket=weight:2,actions=output:1,bucket=weight:1,actions=output:2",
        GroupModCommand::Add,
    )
    .expect("group");
    seeds.push(message::encode(9, &Message::GroupMod(gm)));
    let mm = text::parse_meter(
        "meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100",
        MeterModCommand::Add,
    )
    .expect("meter");
    seeds.push(message::encode(9, &Message::MeterMod(mm)));
    seeds.push(message::encode(
        1,
        &Message::Hello {
            version: 4,
            elements: vec![HelloElement::versions(&[1, 4])],
        },
    ));
    seeds.push(message::encode(2, &Message::EchoRequest(b"ping".to_vec())));
    seeds.push(message::encode(3, &Message::BarrierRequest));
    seeds.push(message::encode(4, &Message::FeaturesRequest));
    run("decode_message", seeds, fuzz::decode_message);
}

#[test]
fn fuzz_parse_flow_text() {
    let seeds = FLOWS.iter().map(|f| f.as_bytes().to_vec()).collect();
    run("parse_flow_text", seeds, fuzz::parse_flow_text);
}

#[test]
fn fuzz_classifier_ops() {
    let mut rng = Rng(7);
    let seeds = (0..16)
        .map(|_| (0..200).map(|_| rng.byte()).collect())
        .collect();
    run("classifier_ops", seeds, fuzz::classifier_ops);
}
