//! shg-flows: OpenFlow 1.3 as data — wire codec, match/action model, flow tables, groups,
//! meters and the ovs-ofctl text syntax.
//!
//! This crate never does I/O, never spawns threads and never reads the clock: time is an
//! argument (`now`, nanoseconds on a caller-chosen monotonic clock). The switch and the
//! controller both build on it; everything that decides here is a pure function of
//! (state, input, now) and is tested without sockets.
//!
//! Map:
//! - [`error`]: every failure, with its OFPT_ERROR (type, code).
//! - [`field`], [`mod@matches`]: OXM fields, the fixed-layout [`field::FlowKey`] and [`matches::Match`].
//! - [`action`], [`mods`]: actions, instructions, flow/group/meter mods as values.
//! - [`wire`]: bytes <-> values for every OF1.3 message.
//! - [`key`]: one-pass flow-key extraction from an Ethernet frame.
//! - [`classifier`], [`table`]: tuple-space classifier and multi-table flow_mod semantics;
//!   [`cache`]: the megaflow cache in front of the tables' lookup.
//! - [`group`], [`meter`]: group and meter tables (token buckets take `now`).
//! - [`text`]: ovs-ofctl compatible flow, group and meter syntax (parse and print).

mod macros;

pub mod action;
pub mod cache;
pub mod classifier;
pub mod error;
pub mod field;
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod key;
pub mod matches;
pub mod meter;
pub mod mods;
pub mod rate;
pub mod table;
pub mod text;
pub mod validate;
pub mod wire;

pub use error::{Error, ErrorCode, Result};
