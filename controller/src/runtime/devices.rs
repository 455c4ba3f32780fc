//! Discovered devices in the daemon, pure: the inventory as the planner sees it ([`KnownDevice`]), inventory events as API events, and the debounce that turns a burst of events into one re-plan.
//!
//! The planner only cares about a device's UDN, its device types (root and embedded) and its
//! IPv4 address, so a re-plan is due only when that list changes — not when a device merely
//! re-announces itself or its description is fetched again.

use crate::api::control::ApiEvent;
use crate::discovery::{Device, Event};
use crate::planner::KnownDevice;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Quiet time after the last inventory event before re-planning.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a re-plan waits behind a stream of events.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// The planner's view of one device: its device types (the description's tree, root first,
/// or the `urn:...:device:...` targets it announced before its description is read) and its
/// IPv4 address. A device seen only over IPv6 is left out (the pipeline matches IPv4).
pub fn known_device(d: &Device) -> Option<KnownDevice> {
    let IpAddr::V4(ipv4) = d.address else {
        return None;
    };
    let mut device_types: Vec<String> = match &d.description {
        Some(desc) => desc
            .device_types()
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    if device_types.is_empty() {
        device_types = d
            .targets
            .iter()
            .filter(|t| t.contains(":device:"))
            .cloned()
            .collect();
    }
    Some(KnownDevice {
        udn: d.udn.clone(),
        device_types,
        ipv4,
    })
}

/// The planner's view of the inventory, sorted (so equal inventories compare equal).
pub fn known_devices(devices: &[Device]) -> Vec<KnownDevice> {
    let mut v: Vec<KnownDevice> = devices.iter().filter_map(known_device).collect();
    v.sort();
    v.dedup();
    v
}

/// The API's `device` event for an inventory event.
pub fn api_event(e: &Event) -> ApiEvent {
    let (change, d) = match e {
        Event::Appeared(d) => ("appeared", d),
        Event::Updated(d, _) => ("updated", d),
        Event::Gone(d, _) => ("gone", d),
    };
    ApiEvent::Device {
        change: change.to_string(),
        udn: d.udn.clone(),
        friendly_name: d.friendly_name().to_string(),
        device_type: d.device_type().to_string(),
        address: d.address.to_string(),
    }
}

/// When to look at the inventory again after events: [`DEBOUNCE`] after the last one, but
/// no later than [`DEBOUNCE_MAX`] after the first one not yet handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    /// An event arrived at `now`.
    pub fn event(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending events are due (None: nothing pending).
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + DEBOUNCE).min(first + DEBOUNCE_MAX))
    }

    /// The pending events were handled.
    pub fn clear(&mut self) {
        *self = Debounce::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_waits_for_quiet_but_not_forever() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.due(), None);
        d.event(t0);
        assert_eq!(d.due(), Some(t0 + DEBOUNCE));
        d.event(t0 + Duration::from_millis(150));
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(350)));
        for ms in (300..2000).step_by(100) {
            d.event(t0 + Duration::from_millis(ms));
        }
        assert_eq!(d.due(), Some(t0 + DEBOUNCE_MAX));
        d.clear();
        assert_eq!(d.due(), None);
    }
}
