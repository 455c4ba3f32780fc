//! The device inventory: SSDP announcements and fetched descriptions in, one entry per root
//! device (keyed by its UDN) and appeared / updated / gone events out.
//!
//! Owns: the entries, the embedded-UDN aliases, max-age expiry, and the decision which
//! description to fetch and from where. Pure (sans-IO): every input carries `now`, nothing
//! reads the clock, sleeps or touches a socket; fetching is returned as a [`Fetch`] for the
//! socket task to perform. Must never fetch from anywhere but the announcer's own address:
//! an announcement whose LOCATION names another host is refused and counted, not stored.
//!
//! Rules, from how the real devices behave:
//! - A device is created by an announcement of `upnp:rootdevice` (every root device sends
//!   one in each burst and answers `ssdp:all` with one), or by its description once fetched
//!   for an announcement of some other target (a search for a specific ST).
//! - Other UDNs announced with the same LOCATION are embedded devices (miniupnpd announces
//!   three UDNs): they refresh their root and never become entries of their own.
//! - The entry expires `max-age` after its latest announcement (the latest max-age wins:
//!   miniupnpd says 120 s in replies but 20 s in NOTIFYs, and NOTIFYs are what keep coming).
//! - byebye of the root's UDN (any target) removes the entry at once; byebye for a UDN we do
//!   not know is ignored (minidlna says byebye before its first alive).
//! - A new LOCATION or a new BOOTID.UPNP.ORG refetches the description; a failed fetch is
//!   retried on an announcement at least [`RETRY_AFTER`] later.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::counters::{Counters, Refusal};
use super::description::{Description, DeviceInfo};
use super::ssdp::{parse_http_url, Advert, HttpUrl, DEFAULT_MAX_AGE};

/// How long after a failed description fetch another is tried.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most entries kept (a flood of fake UDNs cannot grow memory without bound).
pub const MAX_DEVICES: usize = 1024;
/// Most unconfirmed (pending) UDNs kept.
pub const MAX_PENDING: usize = 256;

/// What kind of SSDP message an announcement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOTIFY ssdp:alive
    Alive,
    /// NOTIFY ssdp:update
    Update,
    /// NOTIFY ssdp:byebye
    ByeBye,
    /// Answer to our M-SEARCH.
    Response,
}

/// One announcement as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Interface it arrived on.
    pub interface: String,
    /// UDP source.
    pub source: SocketAddr,
    /// Which message.
    pub kind: Kind,
    /// NT/ST, USN, LOCATION, max-age, ...
    pub advert: Advert,
}

/// One root device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `uuid:...` of the root device.
    pub udn: String,
    /// The LAN address it announces from (and the only one its description is fetched from).
    pub address: IpAddr,
    /// The interface it was seen on.
    pub interface: String,
    /// Its LOCATION.
    pub location: String,
    /// Every NT/ST seen for it or its embedded devices.
    pub targets: BTreeSet<String>,
    /// UDNs of embedded devices (from announcements sharing its LOCATION, and its description).
    pub embedded_udns: BTreeSet<String>,
    /// SERVER header.
    pub server: Option<String>,
    /// BOOTID.UPNP.ORG.
    pub boot_id: Option<u32>,
    /// The max-age of the latest announcement (seconds).
    pub max_age: u32,
    /// When it appeared.
    pub first_seen: Instant,
    /// Latest announcement.
    pub last_seen: Instant,
    /// When it is dropped unless announced again.
    pub expires_at: Instant,
    /// The parsed description, once fetched.
    pub description: Option<DeviceInfo>,
    /// Why the latest description fetch failed, if it did.
    pub description_error: Option<String>,
    fetch_failed_at: Option<Instant>,
}

impl Device {
    /// The device type: the description's, else the first `urn:...:device:...` target seen.
    pub fn device_type(&self) -> &str {
        if let Some(d) = &self.description {
            if !d.device_type.is_empty() {
                return &d.device_type;
            }
        }
        self.targets
            .iter()
            .find(|t| t.contains(":device:"))
            .map_or("", String::as_str)
    }

    /// The friendly name from the description ("" until it is fetched).
    pub fn friendly_name(&self) -> &str {
        self.description
            .as_ref()
            .map_or("", |d| d.friendly_name.as_str())
    }

    /// Whether this device or one embedded in it has `device_type` (compared without the
    /// version when `device_type` has none: `MediaRenderer` or `urn:...:MediaRenderer`).
    pub fn has_device_type(&self, device_type: &str) -> bool {
        let types: Vec<&str> = match &self.description {
            Some(d) => d.device_types(),
            None => self
                .targets
                .iter()
                .filter(|t| t.contains(":device:"))
                .map(String::as_str)
                .collect(),
        };
        types.iter().any(|t| type_matches(t, device_type))
    }
}

/// `urn:schemas-upnp-org:device:MediaRenderer:1` matches `MediaRenderer`,
/// `urn:schemas-upnp-org:device:MediaRenderer` and itself; a versioned pattern matches the
/// same or a higher version (UPnP devices are backwards compatible).
pub fn type_matches(actual: &str, pattern: &str) -> bool {
    if actual == pattern {
        return true;
    }
    let (a_base, a_ver) = split_version(actual);
    let (p_base, p_ver) = split_version(pattern);
    let base_ok = if p_base.contains(':') {
        a_base == p_base
    } else {
        a_base.rsplit(':').next() == Some(p_base)
    };
    base_ok
        && match (a_ver, p_ver) {
            (_, None) => true,
            (Some(a), Some(p)) => a >= p,
            (None, Some(_)) => false,
        }
}

fn split_version(t: &str) -> (&str, Option<u32>) {
    match t.rsplit_once(':') {
        Some((base, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            (base, v.parse().ok())
        }
        _ => (t, None),
    }
}

/// Why a device changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateReason {
    /// Its description was fetched (first time or changed).
    Description,
    /// It announced another LOCATION.
    Location,
    /// It announced another BOOTID.UPNP.ORG (it rebooted).
    Reboot,
    /// It announced from another address or interface.
    Address,
}

/// Why a device left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// It said ssdp:byebye.
    ByeBye,
    /// Its max-age passed without an announcement.
    Expired,
}

/// An inventory change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A root device is new.
    Appeared(Device),
    /// A root device changed.
    Updated(Device, UpdateReason),
    /// A root device left (the value is its last state).
    Gone(Device, GoneReason),
}

impl Event {
    /// The device concerned.
    pub fn device(&self) -> &Device {
        match self {
            Event::Appeared(d) | Event::Updated(d, _) | Event::Gone(d, _) => d,
        }
    }
}

/// A description to fetch: GET `url.path` from `url.addr` (always the announcer's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// LOCATION as announced (the key the result comes back with).
    pub location: String,
    /// Where to connect and what to ask.
    pub url: HttpUrl,
}

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Inventory changes, in order.
    pub events: Vec<Event>,
    /// Descriptions to fetch.
    pub fetches: Vec<Fetch>,
}

#[derive(Debug, Clone)]
struct Pending {
    announcement: Announcement,
    expires_at: Instant,
}

/// The inventory.
#[derive(Debug, Default)]
pub struct Inventory {
    devices: BTreeMap<String, Device>,
    /// embedded UDN -> root UDN
    aliases: BTreeMap<String, String>,
    /// UDNs announced without `upnp:rootdevice` whose description is awaited.
    pending: BTreeMap<String, Pending>,
    /// LOCATIONs with a fetch in flight.
    fetching: BTreeSet<String>,
    /// UDNs to ignore (the gateway's own advertisement).
    own: BTreeSet<String>,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// Ignore announcements for this UDN (the gateway's own).
    pub fn ignore_udn(&mut self, udn: &str) {
        self.own.insert(udn.to_string());
    }

    /// The root devices, ordered by UDN.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// Number of root devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is known.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The root device with this UDN, or the root embedding it.
    pub fn get(&self, udn: &str) -> Option<&Device> {
        self.devices
            .get(udn)
            .or_else(|| self.aliases.get(udn).and_then(|r| self.devices.get(r)))
    }

    /// Root devices that are, or embed, a device of this type (see [`type_matches`]).
    pub fn by_device_type<'a>(&'a self, device_type: &'a str) -> impl Iterator<Item = &'a Device> {
        self.devices
            .values()
            .filter(move |d| d.has_device_type(device_type))
    }

    /// The earliest instant at which [`Inventory::expire`] has something to do.
    pub fn next_expiry(&self) -> Option<Instant> {
        let d = self.devices.values().map(|d| d.expires_at);
        let p = self.pending.values().map(|p| p.expires_at);
        d.chain(p).min()
    }

    /// Drops every device and pending UDN whose max-age has passed.
    pub fn expire(&mut self, now: Instant, counters: &mut Counters) -> Vec<Event> {
        self.pending.retain(|_, p| p.expires_at > now);
        let gone: Vec<String> = self
            .devices
            .values()
            .filter(|d| d.expires_at <= now)
            .map(|d| d.udn.clone())
            .collect();
        let mut events = Vec::new();
        for udn in gone {
            if let Some(d) = self.remove(&udn) {
                counters.gone_expired += 1;
                events.push(Event::Gone(d, GoneReason::Expired));
            }
        }
        events
    }

    fn remove(&mut self, udn: &str) -> Option<Device> {
        let d = self.devices.remove(udn)?;
        self.aliases.retain(|_, root| root != udn);
        Some(d)
    }

    /// Records `udn` as embedded in `root` unless another root already holds it (the first
    /// claim wins, so an alias never points away from the device listing it). True when
    /// `udn` is now `root`'s.
    fn claim(&mut self, udn: &str, root: &str) -> bool {
        if udn == root {
            return false;
        }
        let held = self
            .aliases
            .entry(udn.to_string())
            .or_insert_with(|| root.to_string());
        held == root
    }

    fn resolve(&self, udn: &str) -> Option<String> {
        if self.devices.contains_key(udn) {
            Some(udn.to_string())
        } else {
            self.aliases.get(udn).cloned()
        }
    }

    /// Takes one SSDP announcement.
    pub fn announce(&mut self, a: Announcement, now: Instant, counters: &mut Counters) -> Output {
        let out = self.announce_inner(a, now, counters);
        let updates = out
            .events
            .iter()
            .filter(|e| matches!(e, Event::Updated(..)))
            .count();
        counters.updated += u64::try_from(updates).unwrap_or(u64::MAX);
        out
    }

    fn announce_inner(&mut self, a: Announcement, now: Instant, counters: &mut Counters) -> Output {
        let mut out = Output::default();
        let udn = a.advert.usn.udn.clone();
        if self.own.contains(&udn) {
            counters.refuse(Refusal::OwnAdvertisement);
            return out;
        }
        if a.kind == Kind::ByeBye {
            self.pending.remove(&udn);
            // Only the root's own UDN removes it; embedded devices' byebyes come with it.
            if self
                .devices
                .get(&udn)
                .is_some_and(|d| d.address != a.source.ip())
            {
                counters.refuse(Refusal::ByeByeNotSource);
            } else if let Some(d) = self.remove(&udn) {
                counters.gone_byebye += 1;
                out.events.push(Event::Gone(d, GoneReason::ByeBye));
            }
            return out;
        }
        let Some(location) = a.advert.location.clone() else {
            counters.refuse(Refusal::LocationInvalid);
            return out;
        };
        let Some(url) = parse_http_url(&location) else {
            counters.refuse(Refusal::LocationInvalid);
            return out;
        };
        if url.addr.ip() != a.source.ip() {
            counters.refuse(Refusal::LocationNotSource);
            return out;
        }
        let max_age = a.advert.max_age.unwrap_or(DEFAULT_MAX_AGE).max(1);
        let expires_at = now + Duration::from_secs(u64::from(max_age));

        if let Some(root) = self.resolve(&udn) {
            self.refresh(&root, &a, &location, &url, now, expires_at, &mut out);
            return out;
        }
        if a.advert.target == "upnp:rootdevice" {
            if self.devices.len() >= MAX_DEVICES {
                return out;
            }
            let mut d = Device {
                udn: udn.clone(),
                address: a.source.ip(),
                interface: a.interface.clone(),
                location: location.clone(),
                targets: BTreeSet::from([a.advert.target.clone()]),
                embedded_udns: BTreeSet::new(),
                server: a.advert.server.clone(),
                boot_id: a.advert.boot_id,
                max_age,
                first_seen: now,
                last_seen: now,
                expires_at,
                description: None,
                description_error: None,
                fetch_failed_at: None,
            };
            // UDNs already seen at this LOCATION from this address are embedded devices.
            let same: Vec<String> = self
                .pending
                .iter()
                .filter(|(_, p)| {
                    p.announcement.advert.location.as_deref() == Some(location.as_str())
                        && p.announcement.source.ip() == d.address
                })
                .map(|(u, _)| u.clone())
                .collect();
            for u in same {
                if let Some(p) = self.pending.remove(&u) {
                    d.targets.insert(p.announcement.advert.target);
                }
                if u != udn && self.claim(&u, &udn) {
                    d.embedded_udns.insert(u);
                }
            }
            self.devices.insert(udn.clone(), d.clone());
            counters.appeared += 1;
            out.events.push(Event::Appeared(d));
            self.want_fetch(&location, &url, &mut out);
            return out;
        }
        // Another UDN at a known root's LOCATION (from the same address): embedded.
        let root = self
            .devices
            .values()
            .find(|d| d.location == location && d.address == a.source.ip())
            .map(|d| d.udn.clone());
        if let Some(root) = root {
            if self.claim(&udn, &root) {
                if let Some(d) = self.devices.get_mut(&root) {
                    d.embedded_udns.insert(udn);
                }
            }
            self.refresh(&root, &a, &location, &url, now, expires_at, &mut out);
            return out;
        }
        if self.pending.len() < MAX_PENDING || self.pending.contains_key(&udn) {
            self.pending.insert(
                udn,
                Pending {
                    announcement: a,
                    expires_at,
                },
            );
            self.want_fetch(&location, &url, &mut out);
        }
        out
    }

    fn want_fetch(&mut self, location: &str, url: &HttpUrl, out: &mut Output) {
        if self.fetching.insert(location.to_string()) {
            out.fetches.push(Fetch {
                location: location.to_string(),
                url: url.clone(),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh(
        &mut self,
        root: &str,
        a: &Announcement,
        location: &str,
        url: &HttpUrl,
        now: Instant,
        expires_at: Instant,
        out: &mut Output,
    ) {
        let Some(d) = self.devices.get_mut(root) else {
            return;
        };
        d.last_seen = now;
        d.expires_at = expires_at;
        d.max_age = a.advert.max_age.unwrap_or(DEFAULT_MAX_AGE).max(1);
        d.targets.insert(a.advert.target.clone());
        if a.advert.server.is_some() {
            d.server.clone_from(&a.advert.server);
        }
        let own_udn = a.advert.usn.udn == d.udn;
        let mut reasons = Vec::new();
        if own_udn && d.location != location {
            d.location = location.to_string();
            reasons.push(UpdateReason::Location);
        }
        if own_udn && a.advert.boot_id.is_some() && a.advert.boot_id != d.boot_id {
            if d.boot_id.is_some() {
                reasons.push(UpdateReason::Reboot);
            }
            d.boot_id = a.advert.boot_id;
        }
        if own_udn && (d.address != a.source.ip() || d.interface != a.interface) {
            d.address = a.source.ip();
            d.interface.clone_from(&a.interface);
            reasons.push(UpdateReason::Address);
        }
        let retry = d.description.is_none()
            && d.fetch_failed_at
                .is_some_and(|t| now.saturating_duration_since(t) >= RETRY_AFTER);
        let refetch = !reasons.is_empty() || retry;
        let snapshot = d.clone();
        for r in reasons {
            out.events.push(Event::Updated(snapshot.clone(), r));
        }
        if refetch {
            let loc = snapshot.location.clone();
            if loc == location {
                self.want_fetch(&loc, url, out);
            } else if let Some(u) = parse_http_url(&loc) {
                self.want_fetch(&loc, &u, out);
            }
        }
    }

    /// Takes the result of a [`Fetch`]: the parsed description, or the refusal that ended it
    /// (already classified; `detail` is for people).
    pub fn described(
        &mut self,
        location: &str,
        result: Result<Description, (Refusal, String)>,
        now: Instant,
        counters: &mut Counters,
    ) -> Output {
        let mut out = Output::default();
        self.fetching.remove(location);
        let desc = match result {
            Ok(d) => d,
            Err((reason, detail)) => {
                counters.refuse(reason);
                for d in self.devices.values_mut().filter(|d| d.location == location) {
                    d.description_error = Some(detail.clone());
                    d.fetch_failed_at = Some(now);
                }
                return out;
            }
        };
        let root = desc.device;
        if self.own.contains(&root.udn) {
            counters.refuse(Refusal::OwnAdvertisement);
            return out;
        }
        let embedded: Vec<String> = root
            .all()
            .iter()
            .skip(1)
            .map(|d| d.udn.clone())
            .filter(|u| !u.is_empty() && *u != root.udn)
            .collect();
        let holders: Vec<String> = self
            .devices
            .values()
            .filter(|d| d.location == location)
            .map(|d| d.udn.clone())
            .collect();
        if !holders.is_empty() {
            for h in holders {
                if h != root.udn {
                    // Announced as root UDN h, described as another: keep what was announced.
                    counters.refuse(Refusal::DescriptionNotUpnp);
                    if let Some(d) = self.devices.get_mut(&h) {
                        d.description_error = Some(format!(
                            "description's UDN {} is not the announced {h}",
                            root.udn
                        ));
                        d.fetch_failed_at = Some(now);
                    }
                    continue;
                }
                let mut claimed = Vec::new();
                for u in &embedded {
                    self.pending.remove(u);
                    if self.claim(u, &h) {
                        claimed.push(u.clone());
                    }
                }
                if let Some(d) = self.devices.get_mut(&h) {
                    d.embedded_udns.extend(claimed);
                    d.description_error = None;
                    d.fetch_failed_at = None;
                    if d.description.as_ref() != Some(&root) {
                        d.description = Some(root.clone());
                        counters.descriptions_fetched += 1;
                        counters.updated += 1;
                        out.events
                            .push(Event::Updated(d.clone(), UpdateReason::Description));
                    }
                }
            }
            return out;
        }
        // No device yet: pending announcements for this LOCATION whose UDN the description
        // names (as root or embedded) make the device now.
        let tree: BTreeSet<&str> = root.all().iter().map(|d| d.udn.as_str()).collect();
        let matching: Vec<String> = self
            .pending
            .iter()
            .filter(|(u, p)| {
                p.announcement.advert.location.as_deref() == Some(location)
                    && tree.contains(u.as_str())
            })
            .map(|(u, _)| u.clone())
            .collect();
        let Some(latest) = matching
            .iter()
            .filter_map(|u| self.pending.get(u))
            .max_by_key(|p| p.expires_at)
            .cloned()
        else {
            counters.refuse(Refusal::DescriptionNotUpnp);
            return out;
        };
        if self.devices.len() >= MAX_DEVICES || self.devices.contains_key(&root.udn) {
            return out;
        }
        let mut targets = BTreeSet::new();
        for u in &matching {
            if let Some(p) = self.pending.remove(u) {
                targets.insert(p.announcement.advert.target);
            }
        }
        let embedded: Vec<String> = embedded
            .into_iter()
            .filter(|u| self.claim(u, &root.udn))
            .collect();
        let a = &latest.announcement;
        let d = Device {
            udn: root.udn.clone(),
            address: a.source.ip(),
            interface: a.interface.clone(),
            location: location.to_string(),
            targets,
            embedded_udns: embedded.into_iter().collect(),
            server: a.advert.server.clone(),
            boot_id: a.advert.boot_id,
            max_age: a.advert.max_age.unwrap_or(DEFAULT_MAX_AGE).max(1),
            first_seen: now,
            last_seen: now,
            expires_at: latest.expires_at,
            description: Some(root),
            description_error: None,
            fetch_failed_at: None,
        };
        self.devices.insert(d.udn.clone(), d.clone());
        counters.appeared += 1;
        counters.descriptions_fetched += 1;
        out.events.push(Event::Appeared(d));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_matching() {
        let t = "urn:schemas-upnp-org:device:MediaRenderer:1";
        assert!(type_matches(t, "MediaRenderer"));
        assert!(type_matches(t, "urn:schemas-upnp-org:device:MediaRenderer"));
        assert!(type_matches(t, t));
        assert!(!type_matches(
            t,
            "urn:schemas-upnp-org:device:MediaRenderer:2"
        ));
        assert!(type_matches(
            "urn:schemas-upnp-org:device:MediaRenderer:3",
            t
        ));
        assert!(!type_matches(t, "MediaServer"));
        assert!(!type_matches(t, "Renderer"));
    }
}
