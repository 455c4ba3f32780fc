//! Meter table: meter_mod semantics and token-bucket bands driven by `now`.
//!
//! [`MeterTable`] owns every meter of one switch: it applies OFPT_METER_MOD with the
//! OpenFlow 1.3 errors, meters packets ([`MeterTable::meter_packet`]) and answers the meter
//! stats, meter config and meter features replies as their [`crate::wire::multipart`]
//! structs. It never reads the clock: time is `now` (nanoseconds, caller's monotonic clock).
//!
//! # Decisions (sources: OpenFlow 1.3.5, "Meter Table" and "Meter Modification Messages";
//! Open vSwitch `ofp-meter.c`, `ofproto.c`, `dpif-netdev.c`)
//!
//! - Meter ids `1..=meter::MAX` and the virtual meters `SLOWPATH` and `CONTROLLER` can be
//!   added (as OVS: the switch uses `CONTROLLER` to rate-limit packet-ins). Id 0, `ALL` and
//!   any other id above `MAX` → `OFPMMFC_INVALID_METER` on ADD and MODIFY; on DELETE, `ALL`
//!   deletes every meter except the virtual ones (1.3 spec), id 0 and other reserved ids →
//!   `OFPMMFC_INVALID_METER`.
//! - DELETE of an unknown meter is not an error (1.3 spec: no action is taken; OVS agrees —
//!   the spec's UNKNOWN_METER is for MODIFY). Bands in a DELETE are ignored (OVS).
//! - Flags: bits other than KBPS|PKTPS|BURST|STATS, or not exactly one of KBPS and PKTPS →
//!   `OFPMMFC_BAD_FLAGS`. STATS is accepted; counters are always kept.
//! - Bands: more than the configured maximum → `OFPMMFC_OUT_OF_BANDS` (OVS); experimenter or
//!   unknown band types → `OFPMMFC_BAD_BAND`; rate 0 → `OFPMMFC_BAD_RATE`; with OFPMF_BURST a
//!   burst_size of 0, and without it a non-zero burst_size → `OFPMMFC_BAD_BURST` (the rules
//!   `ovs-ofctl add-meter` enforces); a dscp_remark `prec_level` other than 1 or 2 →
//!   `OFPMMFC_BAD_BAND_VALUE` (DSCP AF classes have three drop precedences, RFC 2597, so a
//!   packet can move up by at most two; 0 would remark nothing). A meter with no band is
//!   valid: it only counts (OVS accepts it).
//! - ADD of an existing id → `OFPMMFC_METER_EXISTS`; MODIFY of an unknown id →
//!   `OFPMMFC_UNKNOWN_METER`; more meters than configured (virtual meters not counted) →
//!   `OFPMMFC_OUT_OF_METERS`. MODIFY keeps flow_count, the meter's in-counters and creation
//!   time; bands, their buckets (full) and band counters start afresh.
//!
//! # Metering
//!
//! Each band has a token bucket.
//!
//! **What a kbps meter counts.** Exactly the `frame_bytes` the caller passes, which the
//! datapath takes as the length of the Ethernet frame as the switch holds it when the meter
//! instruction runs: from the first byte of the destination MAC to the last byte of the
//! payload, with every VLAN tag that is in the frame at that point (a tag the kernel moved to
//! metadata on receive has been put back, so a tagged frame counts its 4 tag bytes; a tag
//! pushed by an earlier table's apply-actions counts too), and without the preamble and SFD
//! (8 bytes), the FCS (4 bytes) and the inter-frame gap (12 bytes), which the switch never
//! sees. A full-size untagged frame (1500-byte IP packet) counts 1514 bytes = 12 112 bits,
//! although it occupies 1538 byte times on a wire. Short frames count as received (a veth
//! does not pad to 60 bytes). This is what Open vSwitch's userspace datapath counts
//! (`dp_packet_size`). The rate unit is 1000 bits per second (OpenFlow: "kilobits per
//! second"; OVS agrees); os-ken's switch tester measures in units of 1024 bits, so its
//! expected 1000 "kbps" is 2.4 % more than a 1000 kbps meter passes (inside its 10 %
//! tolerance). A GSO super-frame is metered as what is passed: one packet of its full
//! length; the datapath should meter the wire segments (`switch`'s `datapath::segment`)
//! where a pktps meter must see them. pktps meters count packets, whatever their size.
//!
//! A band's bucket fills at its rate up to its depth: `burst_size` (kilobits for kbps,
//! packets for pktps) with OFPMF_BURST; without it one second at the band's rate (as OVS's
//! userspace datapath), and for kbps never less than one 1522-byte frame. Buckets start full.
//!
//! Every packet entering the meter is measured against every band: it takes its cost from
//! each bucket holding enough tokens; a band whose bucket cannot pay "applies" to the packet
//! (the measured rate exceeds the band rate). Of the bands that apply, the one with the
//! highest rate acts (the first one listed on a tie): drop, or pass with the DSCP drop
//! precedence raised by `prec_level` (OpenFlow 1.3.5, meter bands: the DSCP remark band
//! "increases the drop precedence of the DSCP field"; see [`remark_dscp`] for the exact
//! mapping). If none applies the packet passes. Measured over time, a band passes its rate
//! plus its depth: with one band at rate R and an offered load L > R, R passes unmarked and
//! L - R is dropped or remarked (after the initial bucket of one second at R is spent).
//!
//! Tokens are integers in units of 10^-9 burst units (1 unit = 10^-6 bit for kbps, 10^-9
//! packet for pktps), so a refill is exactly `rate * elapsed_ns` and nothing is rounded
//! away. Arithmetic is in u128: `u32 rate * u64 ns` fits, and the bucket is capped at its
//! depth. A `now` earlier than the last one refills nothing.

use crate::action::meter;
use crate::error::{Error, MeterModFailedCode as M, Result};
use crate::group::split_duration;
use crate::mods::{meter_flags, MeterBand, MeterMod, MeterModCommand};
use crate::wire::multipart::{MeterBandStats, MeterConfig, MeterFeatures, MeterStats};
use std::collections::BTreeMap;

/// `ofp_meter_band_type` bitmap bit for OFPMBT_DROP (type 1).
pub const BAND_TYPE_DROP_BIT: u32 = 1 << 1;
/// `ofp_meter_band_type` bitmap bit for OFPMBT_DSCP_REMARK (type 2).
pub const BAND_TYPE_DSCP_REMARK_BIT: u32 = 1 << 2;

/// Token units per kilobit (kbps) or per packet (pktps).
const UNITS_PER_BURST_UNIT: u128 = 1_000_000_000;
/// Token units per bit (kbps meters).
const UNITS_PER_BIT: u128 = 1_000_000;
/// Smallest default kbps bucket: one 1522-byte (VLAN-tagged, full-size) frame, in bits.
const MIN_DEFAULT_KBPS_DEPTH_BITS: u128 = 1522 * 8;
/// Without OFPMF_BURST, buckets hold this long at the band rate.
const DEFAULT_BURST_NS: u128 = 1_000_000_000;

const KNOWN_FLAGS: u16 =
    meter_flags::KBPS | meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS;

/// Limits a switch advertises in its meter features and enforces on meter_mod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterTableConfig {
    /// Maximum meters (not counting the virtual SLOWPATH and CONTROLLER meters).
    pub max_meters: u32,
    /// Maximum bands per meter.
    pub max_bands: u8,
}

impl Default for MeterTableConfig {
    /// 1024 meters of up to 8 bands.
    fn default() -> Self {
        MeterTableConfig {
            max_meters: 1024,
            max_bands: 8,
        }
    }
}

/// The DSCP a `dscp_remark` band with `prec_level` gives a packet marked `dscp` (6 bits).
///
/// OpenFlow 1.3 says only that the band increases the drop precedence by `prec_level`; DSCP
/// drop precedences exist for the Assured Forwarding classes (RFC 2597): AFxy = `0bxxxyy0`
/// with class x in 1..=4 and drop precedence y in 1..=3. Their precedence is raised by
/// `prec_level` and saturates at 3 (AF11 + 1 = AF12, AF21 (18) + 1 = AF22 (20), AF12 + 2 =
/// AF13). Every other code point (best effort, class selectors, EF, odd or unassigned
/// values) has no drop precedence and is returned unchanged. The reference switch
/// (ofsoftswitch13) agrees on AF code points below the ceiling (so on the os-ken tester's
/// 18 -> 20) and differs twice: where the sum would pass 3 it leaves the packet unchanged
/// (this saturates, so the packet still gets a higher precedence), and it looks only at the
/// low three DSCP bits, so it also "raises" non-AF code points such as 2 or 42.
pub fn remark_dscp(dscp: u8, prec_level: u8) -> u8 {
    let dscp = dscp & 0x3f;
    let class = dscp >> 3;
    let dp = (dscp >> 1) & 3;
    if !(1..=4).contains(&class) || dscp & 1 != 0 || dp == 0 {
        return dscp;
    }
    let new_dp = dp.saturating_add(prec_level).min(3);
    (dscp & !0x06) | (new_dp << 1)
}

/// What a meter does to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterVerdict {
    /// Forward unchanged.
    Pass,
    /// Discard.
    Drop,
    /// Forward with the DSCP drop precedence raised by `prec_level`.
    DscpRemark { prec_level: u8 },
}

/// What a successful meter_mod changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterModEffect {
    /// Meters removed, ascending: the caller deletes every flow that uses them
    /// (flow-removed reason OFPRR_METER_DELETE).
    pub deleted: Vec<u32>,
}

#[derive(Debug, Clone)]
struct BandState {
    band: MeterBand,
    tokens: u128,
    depth: u128,
    /// Packets and bytes the band acted on (dropped or remarked).
    stats: MeterBandStats,
}

/// One meter: configuration, token buckets and counters.
#[derive(Debug, Clone)]
pub struct MeterEntry {
    flags: u16,
    bands: Vec<BandState>,
    last: u64,
    created: u64,
    flow_count: u32,
    packets_in: u64,
    bytes_in: u64,
}

impl MeterEntry {
    /// The meter's flags.
    pub fn flags(&self) -> u16 {
        self.flags
    }
    /// Flows whose instructions use this meter.
    pub fn flow_count(&self) -> u32 {
        self.flow_count
    }
    /// Packets and bytes that entered the meter.
    pub fn in_counts(&self) -> (u64, u64) {
        (self.packets_in, self.bytes_in)
    }
    /// The configured bands.
    pub fn bands(&self) -> impl Iterator<Item = &MeterBand> + '_ {
        self.bands.iter().map(|b| &b.band)
    }
    /// Per band, what it acted on.
    pub fn band_stats(&self) -> Vec<MeterBandStats> {
        self.bands.iter().map(|b| b.stats).collect()
    }
}

fn is_virtual(id: u32) -> bool {
    id == meter::SLOWPATH || id == meter::CONTROLLER
}

/// Bucket depth in token units for a validated band.
fn depth(flags: u16, band: &MeterBand) -> u128 {
    let rate = u128::from(band.rate());
    if flags & meter_flags::BURST != 0 {
        return u128::from(band.burst_size()) * UNITS_PER_BURST_UNIT;
    }
    let one_second = rate * DEFAULT_BURST_NS;
    if flags & meter_flags::KBPS != 0 {
        one_second.max(MIN_DEFAULT_KBPS_DEPTH_BITS * UNITS_PER_BIT)
    } else {
        one_second
    }
}

fn validate(mm: &MeterMod, max_bands: u8) -> Result<()> {
    let id = mm.meter_id;
    if id == 0 || (id > meter::MAX && !is_virtual(id)) {
        return Err(Error::meter_mod(
            M::InvalidMeter,
            format!("meter id {id:#x} is not usable"),
        ));
    }
    let f = mm.flags;
    if f & !KNOWN_FLAGS != 0 {
        return Err(Error::meter_mod(
            M::BadFlags,
            format!("unknown meter flags {f:#x}"),
        ));
    }
    let kbps = f & meter_flags::KBPS != 0;
    let pktps = f & meter_flags::PKTPS != 0;
    if kbps == pktps {
        return Err(Error::meter_mod(
            M::BadFlags,
            "a meter needs exactly one of kbps and pktps",
        ));
    }
    if mm.bands.len() > usize::from(max_bands) {
        return Err(Error::meter_mod(
            M::OutOfBands,
            format!("{} bands (maximum {max_bands})", mm.bands.len()),
        ));
    }
    let burst = f & meter_flags::BURST != 0;
    for (i, band) in mm.bands.iter().enumerate() {
        match band {
            MeterBand::Drop { .. } | MeterBand::DscpRemark { .. } => {}
            MeterBand::Experimenter { experimenter, .. } => {
                return Err(Error::meter_mod(
                    M::BadBand,
                    format!("band {i}: experimenter band {experimenter:#x} unsupported"),
                ))
            }
            MeterBand::Unknown { typ, .. } => {
                return Err(Error::meter_mod(
                    M::BadBand,
                    format!("band {i}: unknown band type {typ}"),
                ))
            }
        }
        if band.rate() == 0 {
            return Err(Error::meter_mod(M::BadRate, format!("band {i}: rate 0")));
        }
        match (burst, band.burst_size()) {
            (true, 0) => {
                return Err(Error::meter_mod(
                    M::BadBurst,
                    format!("band {i}: burst flag set but burst_size is 0"),
                ))
            }
            (false, b) if b != 0 => {
                return Err(Error::meter_mod(
                    M::BadBurst,
                    format!("band {i}: burst_size {b} without the burst flag"),
                ))
            }
            _ => {}
        }
        if let MeterBand::DscpRemark { prec_level, .. } = band {
            if !(1..=2).contains(prec_level) {
                return Err(Error::meter_mod(
                    M::BadBandValue,
                    format!("band {i}: prec_level {prec_level} (must be 1 or 2)"),
                ));
            }
        }
    }
    Ok(())
}

/// The OpenFlow meter table of one switch.
#[derive(Debug, Clone, Default)]
pub struct MeterTable {
    config: MeterTableConfig,
    meters: BTreeMap<u32, MeterEntry>,
}

impl MeterTable {
    /// An empty table with the default limits.
    pub fn new() -> MeterTable {
        MeterTable::default()
    }

    /// An empty table with these limits.
    pub fn with_config(config: MeterTableConfig) -> MeterTable {
        MeterTable {
            config,
            meters: BTreeMap::new(),
        }
    }

    /// Number of meters (virtual ones included).
    pub fn len(&self) -> usize {
        self.meters.len()
    }

    /// True when there is no meter.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// True when `meter_id` exists.
    pub fn contains(&self, meter_id: u32) -> bool {
        self.meters.contains_key(&meter_id)
    }

    /// One meter.
    pub fn get(&self, meter_id: u32) -> Option<&MeterEntry> {
        self.meters.get(&meter_id)
    }

    /// Applies an OFPT_METER_MOD at time `now`. On error nothing changed.
    pub fn apply_meter_mod(&mut self, mm: &MeterMod, now: u64) -> Result<MeterModEffect> {
        let id = mm.meter_id;
        match mm.command {
            MeterModCommand::Delete => {
                if id == meter::ALL {
                    let deleted: Vec<u32> = self
                        .meters
                        .keys()
                        .copied()
                        .filter(|&m| !is_virtual(m))
                        .collect();
                    self.meters.retain(|&m, _| is_virtual(m));
                    return Ok(MeterModEffect { deleted });
                }
                if id == 0 || (id > meter::MAX && !is_virtual(id)) {
                    return Err(Error::meter_mod(
                        M::InvalidMeter,
                        format!("cannot delete meter id {id:#x}"),
                    ));
                }
                let deleted = self.meters.remove(&id).map(|_| id).into_iter().collect();
                Ok(MeterModEffect { deleted })
            }
            MeterModCommand::Add | MeterModCommand::Modify => {
                validate(mm, self.config.max_bands)?;
                let exists = self.meters.contains_key(&id);
                if mm.command == MeterModCommand::Add {
                    if exists {
                        return Err(Error::meter_mod(
                            M::MeterExists,
                            format!("meter {id} already exists"),
                        ));
                    }
                    let regular = self.meters.keys().filter(|&&m| !is_virtual(m)).count();
                    let max = usize::try_from(self.config.max_meters).unwrap_or(usize::MAX);
                    if !is_virtual(id) && regular >= max {
                        return Err(Error::meter_mod(
                            M::OutOfMeters,
                            format!("already {regular} meters (maximum {max})"),
                        ));
                    }
                } else if !exists {
                    return Err(Error::meter_mod(
                        M::UnknownMeter,
                        format!("meter {id} does not exist"),
                    ));
                }
                let bands = mm
                    .bands
                    .iter()
                    .map(|b| {
                        let d = depth(mm.flags, b);
                        BandState {
                            band: b.clone(),
                            tokens: d,
                            depth: d,
                            stats: MeterBandStats::default(),
                        }
                    })
                    .collect();
                match self.meters.get_mut(&id) {
                    Some(m) => {
                        m.flags = mm.flags;
                        m.bands = bands;
                        m.last = now;
                    }
                    None => {
                        self.meters.insert(
                            id,
                            MeterEntry {
                                flags: mm.flags,
                                bands,
                                last: now,
                                created: now,
                                flow_count: 0,
                                packets_in: 0,
                                bytes_in: 0,
                            },
                        );
                    }
                }
                Ok(MeterModEffect::default())
            }
            MeterModCommand::Unknown(c) => Err(Error::meter_mod(
                M::BadCommand,
                format!("unknown meter_mod command {c}"),
            )),
        }
    }

    /// Meters one packet whose Ethernet frame (without FCS) is `frame_bytes` long, at `now`.
    /// A missing meter passes the packet (as OVS's datapath does).
    pub fn meter_packet(&mut self, meter_id: u32, frame_bytes: u32, now: u64) -> MeterVerdict {
        let Some(m) = self.meters.get_mut(&meter_id) else {
            return MeterVerdict::Pass;
        };
        let elapsed = u128::from(now.saturating_sub(m.last));
        m.last = m.last.max(now);
        m.packets_in = m.packets_in.saturating_add(1);
        m.bytes_in = m.bytes_in.saturating_add(u64::from(frame_bytes));
        let cost = if m.flags & meter_flags::PKTPS != 0 {
            UNITS_PER_BURST_UNIT
        } else {
            u128::from(frame_bytes) * 8 * UNITS_PER_BIT
        };
        let mut acting: Option<usize> = None;
        for i in 0..m.bands.len() {
            let Some(b) = m.bands.get_mut(i) else { break };
            let rate = b.band.rate();
            b.tokens = b
                .tokens
                .saturating_add(u128::from(rate) * elapsed)
                .min(b.depth);
            if b.tokens >= cost {
                b.tokens -= cost;
                continue;
            }
            let better = match acting.and_then(|a| m.bands.get(a)) {
                Some(cur) => rate > cur.band.rate(),
                None => true,
            };
            if better {
                acting = Some(i);
            }
        }
        let Some(b) = acting.and_then(|i| m.bands.get_mut(i)) else {
            return MeterVerdict::Pass;
        };
        b.stats.packet_band_count = b.stats.packet_band_count.saturating_add(1);
        b.stats.byte_band_count = b
            .stats
            .byte_band_count
            .saturating_add(u64::from(frame_bytes));
        match b.band {
            MeterBand::DscpRemark { prec_level, .. } => MeterVerdict::DscpRemark { prec_level },
            _ => MeterVerdict::Drop,
        }
    }

    /// A flow that uses `meter_id` was added. A missing meter is `OFPMMFC_INVALID_METER`
    /// (what OVS answers for a flow_mod naming one).
    pub fn add_flow_ref(&mut self, meter_id: u32) -> Result<()> {
        match self.meters.get_mut(&meter_id) {
            Some(m) => {
                m.flow_count = m.flow_count.saturating_add(1);
                Ok(())
            }
            None => Err(Error::meter_mod(
                M::InvalidMeter,
                format!("meter {meter_id} does not exist"),
            )),
        }
    }

    /// A flow that used `meter_id` was removed. Unknown meters are ignored.
    pub fn remove_flow_ref(&mut self, meter_id: u32) {
        if let Some(m) = self.meters.get_mut(&meter_id) {
            m.flow_count = m.flow_count.saturating_sub(1);
        }
    }

    fn select(&self, meter_id: u32) -> Result<Vec<(u32, &MeterEntry)>> {
        if meter_id == meter::ALL {
            return Ok(self.meters.iter().map(|(&id, m)| (id, m)).collect());
        }
        match self.meters.get(&meter_id) {
            Some(m) => Ok(vec![(meter_id, m)]),
            None => Err(Error::meter_mod(
                M::UnknownMeter,
                format!("meter {meter_id} does not exist"),
            )),
        }
    }

    /// Meter stats for `meter_id` or every meter (`meter::ALL`), ascending by id. An unknown
    /// id is `OFPMMFC_UNKNOWN_METER` (as OVS answers).
    pub fn meter_stats(&self, meter_id: u32, now: u64) -> Result<Vec<MeterStats>> {
        Ok(self
            .select(meter_id)?
            .into_iter()
            .map(|(id, m)| {
                let (duration_sec, duration_nsec) = split_duration(m.created, now);
                MeterStats {
                    meter_id: id,
                    flow_count: m.flow_count,
                    packet_in_count: m.packets_in,
                    byte_in_count: m.bytes_in,
                    duration_sec,
                    duration_nsec,
                    band_stats: m.band_stats(),
                }
            })
            .collect())
    }

    /// Meter configs for `meter_id` or every meter (`meter::ALL`), ascending by id.
    pub fn meter_config(&self, meter_id: u32) -> Result<Vec<MeterConfig>> {
        Ok(self
            .select(meter_id)?
            .into_iter()
            .map(|(id, m)| MeterConfig {
                meter_id: id,
                flags: m.flags,
                bands: m.bands().cloned().collect(),
            })
            .collect())
    }

    /// Meter features of this table.
    pub fn features(&self) -> MeterFeatures {
        MeterFeatures {
            max_meter: self.config.max_meters,
            band_types: BAND_TYPE_DROP_BIT | BAND_TYPE_DSCP_REMARK_BIT,
            capabilities: u32::from(KNOWN_FLAGS),
            max_bands: self.config.max_bands,
            max_color: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths() {
        let kb = meter_flags::KBPS;
        let drop = |rate, burst_size| MeterBand::Drop { rate, burst_size };
        // 1000 kbps for one second = 1000 kilobits.
        assert_eq!(depth(kb, &drop(1000, 0)), 1000 * UNITS_PER_BURST_UNIT);
        // Tiny rates still hold one full-size frame.
        assert_eq!(depth(kb, &drop(1, 0)), 1522 * 8 * UNITS_PER_BIT);
        assert_eq!(
            depth(kb | meter_flags::BURST, &drop(1000, 7)),
            7 * UNITS_PER_BURST_UNIT
        );
        assert_eq!(
            depth(meter_flags::PKTPS, &drop(10, 0)),
            10 * UNITS_PER_BURST_UNIT
        );
        // No overflow at the extremes.
        let d = depth(kb, &drop(u32::MAX, 0));
        assert_eq!(d, u128::from(u32::MAX) * UNITS_PER_BURST_UNIT);
    }

    #[test]
    fn extreme_time_and_rate_do_not_overflow() {
        let mut t = MeterTable::new();
        let mm = MeterMod {
            command: MeterModCommand::Add,
            flags: meter_flags::KBPS,
            meter_id: 1,
            bands: vec![MeterBand::Drop {
                rate: u32::MAX,
                burst_size: 0,
            }],
        };
        t.apply_meter_mod(&mm, 0).unwrap();
        assert_eq!(t.meter_packet(1, u32::MAX, u64::MAX), MeterVerdict::Pass);
        // Time going backwards refills nothing and does not panic.
        assert_eq!(t.meter_packet(1, 64, 5), MeterVerdict::Pass);
        assert_eq!(t.get(1).unwrap().in_counts(), (2, u64::from(u32::MAX) + 64));
    }
}
