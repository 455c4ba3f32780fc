//! Meter text: `ovs-ofctl add-meter` syntax into [`MeterMod`] values, and meter mods printed
//! as `ovs-ofctl ofp-print` prints an OF1.3 OFPT_METER_MOD.
//!
//! Syntax: `meter=N,kbps|pktps,[burst,][stats,]bands=type=drop,rate=R[,burst_size=B]
//! [,type=dscp_remark,rate=R,prec_level=P]...`. Items may be separated by commas or white
//! space, so the printed form (`meter=1 kbps bands=\ntype=drop rate=1000`) parses back.

use super::split_kv;
use super::value::parse_uint_max;
use crate::action::meter;
use crate::error::{Error, MeterModFailedCode, Result};
use crate::mods::MeterMod;
use crate::mods::{meter_flags, MeterBand, MeterModCommand};

fn merr(code: MeterModFailedCode, detail: String, off: usize) -> Error {
    Error::meter_mod(code, detail).at(off)
}

/// Parses an `ovs-ofctl add-meter`/`mod-meter`/`del-meters` string.
///
/// Adds and modifies need `kbps` or `pktps` and at least a `bands=` keyword; deletes need
/// only `meter=` (`all` deletes every meter) but accept the rest so printed deletes parse.
pub fn parse_meter(s: &str, command: MeterModCommand) -> Result<MeterMod> {
    let needs_bands = command != MeterModCommand::Delete;
    let mut mm = MeterMod {
        command,
        flags: 0,
        meter_id: 0,
        bands: Vec::new(),
    };
    let (head, bands) = match s.find("band") {
        Some(i) => match s[i..].find('=') {
            Some(eq) => (&s[..i], Some(i + eq + 1)),
            None => {
                return Err(merr(
                    MeterModFailedCode::BadBand,
                    "must specify bands".into(),
                    i,
                ))
            }
        },
        None => (s, None),
    };
    if needs_bands && bands.is_none() {
        return Err(merr(
            MeterModFailedCode::BadBand,
            "must specify bands".into(),
            s.len(),
        ));
    }
    for kv in split_kv(head, 0) {
        match kv.key {
            "kbps" => mm.flags |= meter_flags::KBPS,
            "pktps" => mm.flags |= meter_flags::PKTPS,
            "burst" => mm.flags |= meter_flags::BURST,
            "stats" => mm.flags |= meter_flags::STATS,
            "meter" => {
                mm.meter_id = match kv.value {
                    "all" => meter::ALL,
                    "controller" => meter::CONTROLLER,
                    "slowpath" => meter::SLOWPATH,
                    v => parse_uint_max(v, u64::from(meter::MAX))
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v != 0)
                        .ok_or_else(|| {
                            merr(
                                MeterModFailedCode::InvalidMeter,
                                format!("invalid value for meter: {v}"),
                                kv.val_off,
                            )
                        })?,
                };
            }
            k if kv.value.is_empty() && k != "meter" => {
                return Err(merr(
                    MeterModFailedCode::BadFlags,
                    format!("unknown keyword {k}"),
                    kv.key_off,
                ))
            }
            k => {
                return Err(merr(
                    MeterModFailedCode::BadCommand,
                    format!("unknown keyword {k}"),
                    kv.key_off,
                ))
            }
        }
    }
    if mm.meter_id == 0 {
        return Err(merr(
            MeterModFailedCode::InvalidMeter,
            "must specify 'meter'".into(),
            0,
        ));
    }
    if needs_bands && mm.flags & (meter_flags::KBPS | meter_flags::PKTPS) == 0 {
        return Err(merr(
            MeterModFailedCode::BadFlags,
            "meter must specify either 'kbps' or 'pktps'".into(),
            0,
        ));
    }
    if mm.flags & meter_flags::KBPS != 0 && mm.flags & meter_flags::PKTPS != 0 {
        return Err(merr(
            MeterModFailedCode::BadFlags,
            "meter cannot be both 'kbps' and 'pktps'".into(),
            0,
        ));
    }
    if let Some(start) = bands {
        // (type, rate, burst_size, prec_level, offset of `type`)
        let mut cur: Option<(u16, Option<u32>, u32, u8, usize)> = None;
        let finish =
            |c: (u16, Option<u32>, u32, u8, usize), out: &mut Vec<MeterBand>| -> Result<()> {
                let (typ, rate, burst_size, prec_level, off) = c;
                let rate = rate.ok_or_else(|| {
                    merr(
                        MeterModFailedCode::BadRate,
                        "band must specify a rate".into(),
                        off,
                    )
                })?;
                out.push(if typ == 1 {
                    MeterBand::Drop { rate, burst_size }
                } else {
                    MeterBand::DscpRemark {
                        rate,
                        burst_size,
                        prec_level,
                    }
                });
                Ok(())
            };
        for kv in split_kv(&s[start..], start) {
            let u32v = |code| {
                parse_uint_max(kv.value, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        merr(
                            code,
                            format!("{}: invalid value {}", kv.key, kv.value),
                            kv.val_off,
                        )
                    })
            };
            if kv.key == "type" {
                let typ = match kv.value {
                    "drop" => 1,
                    "dscp_remark" => 2,
                    v => {
                        return Err(merr(
                            MeterModFailedCode::BadBand,
                            format!("field type unknown value {v}"),
                            kv.val_off,
                        ))
                    }
                };
                if let Some(c) = cur.take() {
                    finish(c, &mut mm.bands)?;
                }
                cur = Some((typ, None, 0, 0, kv.key_off));
                continue;
            }
            let Some(c) = cur.as_mut() else {
                return Err(merr(
                    MeterModFailedCode::BadBand,
                    "band must start with the 'type' keyword".into(),
                    kv.key_off,
                ));
            };
            match kv.key {
                "rate" => c.1 = Some(u32v(MeterModFailedCode::BadRate)?),
                "burst_size" => c.2 = u32v(MeterModFailedCode::BadBurst)?,
                "prec_level" => {
                    c.3 = parse_uint_max(kv.value, 0xff)
                        .and_then(|v| u8::try_from(v).ok())
                        .ok_or_else(|| {
                            merr(
                                MeterModFailedCode::BadBandValue,
                                format!("prec_level: invalid value {}", kv.value),
                                kv.val_off,
                            )
                        })?;
                }
                k => {
                    return Err(merr(
                        MeterModFailedCode::BadBand,
                        format!("unknown keyword {k}"),
                        kv.key_off,
                    ))
                }
            }
        }
        if let Some(c) = cur.take() {
            finish(c, &mut mm.bands)?;
        }
    }
    Ok(mm)
}

fn meter_id_text(id: u32) -> String {
    match id {
        meter::SLOWPATH => "slowpath".into(),
        meter::CONTROLLER => "controller".into(),
        meter::ALL => "all".into(),
        i if i <= meter::MAX => i.to_string(),
        _ => "unknown".into(),
    }
}

/// Formats a meter as ovs-ofctl prints its configuration, without the final newline:
/// `meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100`.
pub fn format_meter(mm: &MeterMod) -> String {
    let mut s = format!("meter={} ", meter_id_text(mm.meter_id));
    for (bit, name) in [
        (meter_flags::KBPS, "kbps "),
        (meter_flags::PKTPS, "pktps "),
        (meter_flags::BURST, "burst "),
        (meter_flags::STATS, "stats "),
    ] {
        if mm.flags & bit != 0 {
            s.push_str(name);
        }
    }
    let rest = mm.flags & !0x0f;
    if rest != 0 {
        s.push_str(&format!("flags:0x{rest:x} "));
    }
    s.push_str("bands=");
    for b in &mm.bands {
        s.push_str("\ntype=");
        match b {
            MeterBand::Drop { .. } => s.push_str("drop"),
            MeterBand::DscpRemark { .. } => s.push_str("dscp_remark"),
            MeterBand::Experimenter { .. } => s.push_str("65535"),
            MeterBand::Unknown { typ, .. } => s.push_str(&typ.to_string()),
        }
        s.push_str(&format!(" rate={}", b.rate()));
        if mm.flags & meter_flags::BURST != 0 {
            s.push_str(&format!(" burst_size={}", b.burst_size()));
        }
        if let MeterBand::DscpRemark { prec_level, .. } = b {
            s.push_str(&format!(" prec_level={prec_level}"));
        }
    }
    s
}

/// Formats a meter mod as `ovs-ofctl ofp-print` prints an OF1.3 OFPT_METER_MOD after the
/// header (without the final newline): `ADD meter=1 kbps bands=\ntype=drop rate=1000`.
/// As in OVS, a delete shows no flags and no bands.
pub fn format_meter_mod(mm: &MeterMod) -> String {
    let cmd = match mm.command {
        MeterModCommand::Add => "ADD".to_string(),
        MeterModCommand::Modify => "MOD".into(),
        MeterModCommand::Delete => "DEL".into(),
        MeterModCommand::Unknown(c) => format!("cmd:{c}"),
    };
    if mm.command == MeterModCommand::Delete {
        let shown = MeterMod {
            flags: 0,
            bands: Vec::new(),
            ..mm.clone()
        };
        return format!("{cmd} {}", format_meter(&shown));
    }
    format!("{cmd} {}", format_meter(mm))
}
