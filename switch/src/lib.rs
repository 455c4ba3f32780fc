//! shg-switch: the userspace OpenFlow 1.3 switch (ports, datapath, OpenFlow agent).
//!
//! Built on `shg-flows` for everything that decides; this crate only moves packets and bytes.
//! The agent and datapath arrive with the switch issue; the crate exists so the workspace
//! layout is fixed from the start.
