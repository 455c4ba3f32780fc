//! shg-scenario: network scenarios and benchmarks in namespaces, with reports.
//!
//! Drives the shg binaries, Open vSwitch, the Linux bridge and the traffic tools (iperf3, ping,
//! ovs-ofctl) as a user would; never depends on switch or controller internals. It holds the
//! benchmarks ([`bench::datapath`], [`bench::flows`], [`bench::qos`]) and the declarative
//! scenario runner ([`scenario`]: `shg-scenario run|check|list`).
//!
//! Pure parts (tested without root): [`parse`] (iperf3 JSON, ping), [`stats`] (medians,
//! ratios), [`flowgen`] (flow files), [`procfs`] parsers, and the report rendering. Everything
//! that touches the kernel goes through the guards of [`netns`] (shared with the interop tests):
//! processes stopped by PID, namespaces deleted on Drop, and [`interrupt`] turns Ctrl-C into an
//! ordinary error so that those Drops run.

pub mod bench;
pub mod flowgen;
pub mod interrupt;
#[path = "../../tests/common/netns.rs"]
pub mod netns;
#[path = "../../tests/common/ovs.rs"]
pub mod ovs;
pub mod parse;
pub mod procfs;
pub mod scenario;
pub mod stats;
