//! OpenFlow 1.3 wire format: bytes in, validated values out, and back.
//!
//! Untrusted bytes enter only through checked constructors built on [`buf::Reader`]; a
//! truncated or malformed message at any length is an [`crate::Error`] with its wire code,
//! never a panic.

pub mod action;
pub mod buf;
pub mod instruction;
pub mod message;
pub mod multipart;
pub mod oxm;
pub mod port;
pub mod table_features;
