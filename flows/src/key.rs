//! One-pass flow-key extraction from an Ethernet frame.
