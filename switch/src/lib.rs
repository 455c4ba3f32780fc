//! shg-switch: a userspace OpenFlow 1.3 switch.
//!
//! Where a packet goes: a [`port`] backend receives a batch of frames → the [`datapath`] loop
//! extracts each frame's key (`shg_flows::key`), runs the flow tables, and [`datapath::execute`]
//! applies the actions (rewrites, groups, meters, queues) → frames leave through ports, or go to
//! the controller as PACKET_IN.
//!
//! Where OpenFlow goes: the [`agent`] (tokio) owns controller connections and listeners and
//! feeds every message to [`ofproto::Ofproto`], the sans-IO switch core: a pure state machine of
//! (state, message, now) → effects (replies, frames to transmit, closes). The [`ctl`] socket
//! serves `shgctl switch ...`. [`config`] reads flags and TOML.
//!
//! Only `port` backends use `unsafe` (raw sockets, ioctls), each block with a `// SAFETY:` line.

pub mod agent;
pub mod config;
pub mod ctl;
pub mod datapath;
pub mod ofproto;
pub mod port;
pub mod qos;
