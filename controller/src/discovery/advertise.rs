//! The gateway as a UPnP root device: what it answers to an M-SEARCH, the NOTIFYs it sends,
//! and its description document.
//!
//! Owns: the gateway's UDN, device type, names, max-age and boot id, and the text of every
//! message it sends. Pure: the socket task decides when and where to send; this decides what.
//! Must never answer a search for a target it does not have (a quiet device is a good one).

use std::net::SocketAddr;
use std::time::Duration;

use super::description::xml_escape;
use super::ssdp::{format_notify, format_response, Announce, Nts, Search, Usn};

/// The gateway's device type (a vendor type: it offers no standard UPnP service).
pub const GATEWAY_DEVICE_TYPE: &str = "urn:shg-project:device:HomeGateway:1";
/// Path of the description on the gateway's description server.
pub const DESCRIPTION_PATH: &str = "/shg/description.xml";

/// The gateway's advertised identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertiser {
    /// `uuid:...`
    pub udn: String,
    /// Device type (default [`GATEWAY_DEVICE_TYPE`]).
    pub device_type: String,
    /// Human name.
    pub friendly_name: String,
    /// manufacturer
    pub manufacturer: String,
    /// modelName
    pub model_name: String,
    /// modelNumber
    pub model_number: String,
    /// max-age announced (seconds); NOTIFYs go out every third of it.
    pub max_age: u32,
    /// BOOTID.UPNP.ORG: must grow on every start (the caller passes e.g. seconds since 1970).
    pub boot_id: u32,
    /// CONFIGID.UPNP.ORG
    pub config_id: u32,
    /// SERVER header.
    pub server: String,
}

impl Advertiser {
    /// An advertiser with the project's defaults.
    pub fn new(udn: &str, friendly_name: &str, boot_id: u32) -> Advertiser {
        Advertiser {
            udn: udn.to_string(),
            device_type: GATEWAY_DEVICE_TYPE.to_string(),
            friendly_name: friendly_name.to_string(),
            manufacturer: "shg project".to_string(),
            model_name: "shg home gateway".to_string(),
            model_number: env!("CARGO_PKG_VERSION").to_string(),
            max_age: 120,
            boot_id,
            config_id: 1,
            server: format!("Linux UPnP/1.1 shg/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// How often the alive burst is repeated.
    pub fn notify_interval(&self) -> Duration {
        Duration::from_secs(u64::from((self.max_age / 3).max(1)))
    }

    /// The LOCATION for a description server listening at `addr`.
    pub fn location(&self, addr: SocketAddr) -> String {
        format!("http://{addr}{DESCRIPTION_PATH}")
    }

    /// (NT/ST, USN) for each thing the gateway is: root device, its UDN, its device type.
    pub fn targets(&self) -> Vec<(String, Usn)> {
        let usn = |kind: Option<&str>| Usn {
            udn: self.udn.clone(),
            kind: kind.map(str::to_string),
        };
        vec![
            ("upnp:rootdevice".to_string(), usn(Some("upnp:rootdevice"))),
            (self.udn.clone(), usn(None)),
            (self.device_type.clone(), usn(Some(&self.device_type))),
        ]
    }

    fn announce_each(
        &self,
        location: &str,
        mut f: impl FnMut(&Announce<'_>) -> String,
    ) -> Vec<String> {
        self.targets()
            .iter()
            .map(|(t, usn)| {
                f(&Announce {
                    target: t,
                    usn,
                    location,
                    max_age: self.max_age,
                    server: &self.server,
                    boot_id: self.boot_id,
                    config_id: self.config_id,
                })
            })
            .collect()
    }

    /// One NOTIFY per target.
    pub fn notifies(&self, nts: Nts, location: &str) -> Vec<String> {
        self.announce_each(location, |a| format_notify(nts, a))
    }

    /// The responses to `search` (none when it asks for something else).
    pub fn answer(&self, search: &Search, location: &str) -> Vec<String> {
        if !search.man.contains("ssdp:discover") {
            return Vec::new();
        }
        let st = search.st.as_str();
        let wanted: Vec<(String, Usn)> = self
            .targets()
            .into_iter()
            .filter(|(t, _)| {
                st == "ssdp:all"
                    || st == t
                    || (t == &self.device_type
                        && super::inventory::type_matches(&self.device_type, st)
                        && st.contains(':'))
            })
            .collect();
        wanted
            .iter()
            .map(|(t, usn)| {
                // A search for an older version of our type is answered with that ST.
                let target = if t == &self.device_type && st != "ssdp:all" {
                    st
                } else {
                    t
                };
                format_response(
                    &Announce {
                        target,
                        usn,
                        location,
                        max_age: self.max_age,
                        server: &self.server,
                        boot_id: self.boot_id,
                        config_id: self.config_id,
                    },
                    "",
                )
            })
            .collect()
    }

    /// The description document served at [`DESCRIPTION_PATH`].
    pub fn description_xml(&self) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"{}\">\n<specVersion><major>1</major><minor>1</minor></specVersion>\n<device>\n<deviceType>{}</deviceType>\n<friendlyName>{}</friendlyName>\n<manufacturer>{}</manufacturer>\n<modelName>{}</modelName>\n<modelNumber>{}</modelNumber>\n<UDN>{}</UDN>\n</device>\n</root>\n",
            self.config_id,
            xml_escape(&self.device_type),
            xml_escape(&self.friendly_name),
            xml_escape(&self.manufacturer),
            xml_escape(&self.model_name),
            xml_escape(&self.model_number),
            xml_escape(&self.udn),
        )
    }
}

/// A stable `uuid:` made from a seed (FNV-1a, formatted as an RFC 4122 version-5-style UUID),
/// so the gateway keeps its UDN across restarts without storing it.
pub fn uuid_from_seed(seed: &str) -> String {
    let fnv = |salt: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv(0).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ssdp::{parse, Message};

    fn search(st: &str) -> Search {
        Search {
            st: st.into(),
            mx: 3,
            man: "\"ssdp:discover\"".into(),
        }
    }

    #[test]
    fn answers_only_what_it_is() {
        let a = Advertiser::new(&uuid_from_seed("x"), "gw <1>", 5);
        let loc = "http://198.18.0.1:4000/shg/description.xml";
        assert_eq!(a.answer(&search("ssdp:all"), loc).len(), 3);
        assert_eq!(a.answer(&search("upnp:rootdevice"), loc).len(), 1);
        assert_eq!(a.answer(&search(&a.udn), loc).len(), 1);
        assert_eq!(a.answer(&search(GATEWAY_DEVICE_TYPE), loc).len(), 1);
        assert_eq!(
            a.answer(&search("urn:schemas-upnp-org:device:MediaServer:1"), loc)
                .len(),
            0
        );
        let mut no_man = search("ssdp:all");
        no_man.man.clear();
        assert!(a.answer(&no_man, loc).is_empty());
        for r in a.answer(&search("ssdp:all"), loc) {
            let Ok(Message::Response(r)) = parse(r.as_bytes()) else {
                panic!("{r}")
            };
            assert_eq!(r.advert.usn.udn, a.udn);
            assert_eq!(r.advert.location.as_deref(), Some(loc));
        }
        let d = crate::discovery::description::parse(a.description_xml().as_bytes()).unwrap();
        assert_eq!(d.device.friendly_name, "gw <1>");
        assert_eq!(d.device.udn, a.udn);
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let u = uuid_from_seed("gateway-1");
        assert_eq!(u, uuid_from_seed("gateway-1"));
        assert_ne!(u, uuid_from_seed("gateway-2"));
        assert_eq!(u.len(), 5 + 36);
        assert_eq!(&u[5 + 14..5 + 15], "5");
    }
}
