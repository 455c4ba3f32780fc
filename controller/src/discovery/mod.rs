//! Home-device discovery: SSDP/UPnP devices on the LAN interfaces become an inventory of root
//! devices (one entry per UDN) with appeared / updated / gone events; the gateway can also
//! advertise itself as a UPnP device.
//!
//! Layout, pure first: [`ssdp`] parses and formats SSDP datagrams; [`description`] reads a
//! device description XML (DTDs refused, sizes bounded); [`inventory`] turns announcements and
//! descriptions into entries and events, expiring them on `now`; [`advertise`] says what the
//! gateway answers and announces; [`counters`] names every refusal. [`http`] is the minimal
//! HTTP/1.1 for descriptions; [`cli`] is `shg-discover`; [`socket`] is the only part with sockets and timers: the tokio
//! task behind [`Discovery::spawn`].
//!
//! Never: fetch a description from anywhere but the announcing device's own address, rely on a
//! multicast route, panic on what the network sends, or decide policy (the inventory is read
//! by policy code: [`Inventory::devices`], [`Inventory::by_device_type`], [`Inventory::get`]).

pub mod advertise;
pub mod cli;
pub mod counters;
pub mod description;
pub mod http;
pub mod inventory;
pub mod socket;
pub mod ssdp;

pub use advertise::Advertiser;
pub use counters::{Counters, Refusal};
pub use description::{DeviceInfo, ServiceInfo};
pub use inventory::{Device, Event, GoneReason, Inventory, UpdateReason};
pub use socket::{Config, Discovery, DiscoveryError, InterfaceInfo};
