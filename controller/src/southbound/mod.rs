//! Southbound: the controller's OpenFlow 1.3 side. [`conn`] speaks the protocol (handshake,
//! requests, multipart, barrier-bounded transactions); [`rollback`] computes the undo of a
//! partly applied transaction from the snapshot read before it.

pub mod conn;
pub mod rollback;
