//! Discovery counters: one named counter per refusal reason and per kind of traffic, plus a
//! rate limiter for the warnings bad input causes.
//!
//! Owns only numbers. Must never log by itself or read the clock (`now` is an argument).

use std::time::{Duration, Instant};

/// Why a datagram, an announcement or a description was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// SSDP datagram over 8 KiB.
    SsdpOversize,
    /// SSDP datagram that does not parse (start line, headers, USN).
    SsdpMalformed,
    /// LOCATION is not `http://IP[:PORT]/...` (another scheme, a host name, userinfo).
    LocationInvalid,
    /// LOCATION names another address than the datagram's source: never fetched (no SSRF).
    LocationNotSource,
    /// A byebye for a known device from another address than the device's.
    ByeByeNotSource,
    /// A message carrying the gateway's own UDN (our own advertisement looped back).
    OwnAdvertisement,
    /// Description over 256 KiB.
    DescriptionOversize,
    /// Description with a DTD or entity declarations (entity-expansion bombs).
    DescriptionEntity,
    /// Description that is not well-formed XML, or has too many nodes or too deep nesting.
    DescriptionMalformed,
    /// Description without a root `<device>`, or whose UDN does not match the announcer's.
    DescriptionNotUpnp,
    /// HTTP failure: connect error, non-200 status, bad framing.
    DescriptionHttp,
    /// HTTP fetch did not finish within its timeout.
    DescriptionTimeout,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 12] = [
        Refusal::SsdpOversize,
        Refusal::SsdpMalformed,
        Refusal::LocationInvalid,
        Refusal::LocationNotSource,
        Refusal::ByeByeNotSource,
        Refusal::OwnAdvertisement,
        Refusal::DescriptionOversize,
        Refusal::DescriptionEntity,
        Refusal::DescriptionMalformed,
        Refusal::DescriptionNotUpnp,
        Refusal::DescriptionHttp,
        Refusal::DescriptionTimeout,
    ];

    /// The counter's name (snake case, as exported).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::SsdpOversize => "ssdp_oversize",
            Refusal::SsdpMalformed => "ssdp_malformed",
            Refusal::LocationInvalid => "location_invalid",
            Refusal::LocationNotSource => "location_not_source",
            Refusal::ByeByeNotSource => "byebye_not_source",
            Refusal::OwnAdvertisement => "own_advertisement",
            Refusal::DescriptionOversize => "description_oversize",
            Refusal::DescriptionEntity => "description_entity",
            Refusal::DescriptionMalformed => "description_malformed",
            Refusal::DescriptionNotUpnp => "description_not_upnp",
            Refusal::DescriptionHttp => "description_http",
            Refusal::DescriptionTimeout => "description_timeout",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// All discovery counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// SSDP datagrams received (all sockets, before parsing).
    pub datagrams_received: u64,
    /// M-SEARCH requests sent.
    pub searches_sent: u64,
    /// NOTIFY sent by the gateway's advertisement.
    pub notifies_sent: u64,
    /// Search responses sent by the gateway's advertisement.
    pub responses_sent: u64,
    /// Descriptions fetched and parsed.
    pub descriptions_fetched: u64,
    /// Devices that appeared.
    pub appeared: u64,
    /// Device updates (description, location, boot id).
    pub updated: u64,
    /// Devices gone by byebye.
    pub gone_byebye: u64,
    /// Devices gone because their max-age passed.
    pub gone_expired: u64,
    refused: [u64; Refusal::ALL.len()],
}

impl Counters {
    /// Adds one refusal.
    pub fn refuse(&mut self, r: Refusal) {
        let slot = &mut self.refused[r.index()];
        *slot = slot.saturating_add(1);
    }

    /// How many times `r` happened.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r.index()]
    }

    /// Sum of all refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Every counter as (name, value), refusals as `refused_<reason>`.
    pub fn entries(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("datagrams_received".to_string(), self.datagrams_received),
            ("searches_sent".to_string(), self.searches_sent),
            ("notifies_sent".to_string(), self.notifies_sent),
            ("responses_sent".to_string(), self.responses_sent),
            (
                "descriptions_fetched".to_string(),
                self.descriptions_fetched,
            ),
            ("appeared".to_string(), self.appeared),
            ("updated".to_string(), self.updated),
            ("gone_byebye".to_string(), self.gone_byebye),
            ("gone_expired".to_string(), self.gone_expired),
        ];
        for r in Refusal::ALL {
            v.push((format!("refused_{}", r.name()), self.refused(r)));
        }
        v
    }
}

/// At most one warning per reason per interval; the rest are counted and reported with the
/// next warning that passes.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    last: [Option<Instant>; Refusal::ALL.len()],
    suppressed: [u64; Refusal::ALL.len()],
}

impl WarnLimiter {
    /// One warning per `interval` per reason.
    pub fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: [None; Refusal::ALL.len()],
            suppressed: [0; Refusal::ALL.len()],
        }
    }

    /// Some(number suppressed since the last one) when a warning for `r` may be logged now.
    pub fn allow(&mut self, r: Refusal, now: Instant) -> Option<u64> {
        let i = r.index();
        match self.last[i] {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed[i] = self.suppressed[i].saturating_add(1);
                None
            }
            _ => {
                self.last[i] = Some(now);
                Some(std::mem::take(&mut self.suppressed[i]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_named_and_counted() {
        let mut c = Counters::default();
        c.refuse(Refusal::LocationNotSource);
        c.refuse(Refusal::LocationNotSource);
        assert_eq!(c.refused(Refusal::LocationNotSource), 2);
        assert_eq!(c.refused_total(), 2);
        let names: Vec<_> = c.entries().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"refused_location_not_source".to_string()));
        assert_eq!(names.len(), 9 + Refusal::ALL.len());
    }

    #[test]
    fn limiter_suppresses_within_interval() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(l.allow(Refusal::SsdpMalformed, t0), Some(0));
        assert_eq!(
            l.allow(Refusal::SsdpMalformed, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(l.allow(Refusal::SsdpOversize, t0), Some(0));
        assert_eq!(
            l.allow(Refusal::SsdpMalformed, t0 + Duration::from_secs(11)),
            Some(1)
        );
    }
}
