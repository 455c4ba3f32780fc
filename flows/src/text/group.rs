//! Group text: `ovs-ofctl add-group` syntax into [`GroupMod`] values, and group mods printed
//! as `ovs-ofctl ofp-print` prints an OF1.3 OFPT_GROUP_MOD.
//!
//! Syntax: `group_id=N,type=all|select|indirect|ff|fast_failover,bucket=...,bucket=...`,
//! each bucket being `weight:W,watch_port:P,watch_group:G,actions=A...` (the `actions=`
//! keyword is optional). Bucket actions are not checked against any match, as in ovs-ofctl.

use super::action::{format_actions, parse_action, parse_actions_at, PacketState};
use super::split_kv;
use super::value::{format_port, parse_port, parse_uint, parse_uint_max};
use crate::action::{group, port};
use crate::error::{Error, GroupModFailedCode, Result};
use crate::mods::{Bucket, GroupMod, GroupModCommand, GroupType};

fn gerr(code: GroupModFailedCode, detail: String, off: usize) -> Error {
    Error::group_mod(code, detail).at(off)
}

/// Parses an `ovs-ofctl add-group`/`mod-group`/`del-groups` string.
///
/// A delete with an empty string deletes all groups (`group_id=ALL`). Adds and modifies
/// need `type=`; a select group's buckets weigh 1 unless `weight:` says otherwise; a fast
/// failover bucket needs `watch_port` or `watch_group`. For printed group mods to parse
/// back, a delete may also carry `type=` and buckets.
pub fn parse_group(s: &str, command: GroupModCommand) -> Result<GroupMod> {
    let is_delete = command == GroupModCommand::Delete;
    let mut gm = GroupMod {
        command,
        group_type: GroupType::All,
        group_id: group::ANY,
        buckets: Vec::new(),
    };
    if is_delete && s.trim().is_empty() {
        gm.group_id = group::ALL;
        return Ok(gm);
    }
    let (head, buckets) = match s.find("bucket=") {
        Some(i) => (&s[..i], Some(i)),
        None => (s, None),
    };
    let mut had_type = false;
    for kv in split_kv(head, 0) {
        match kv.key {
            "group_id" => {
                gm.group_id = if kv.value == "all" {
                    group::ALL
                } else {
                    parse_uint_max(kv.value, u64::from(group::MAX))
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| {
                            gerr(
                                GroupModFailedCode::InvalidGroup,
                                format!("invalid group id {}", kv.value),
                                kv.val_off,
                            )
                        })?
                };
            }
            "type" => {
                gm.group_type = match kv.value {
                    "all" => GroupType::All,
                    "select" => GroupType::Select,
                    "indirect" => GroupType::Indirect,
                    "ff" | "fast_failover" => GroupType::FastFailover,
                    v => {
                        return Err(gerr(
                            GroupModFailedCode::BadType,
                            format!("invalid group type {v}"),
                            kv.val_off,
                        ))
                    }
                };
                had_type = true;
            }
            k => {
                return Err(gerr(
                    GroupModFailedCode::BadCommand,
                    format!("unknown keyword {k}"),
                    kv.key_off,
                ))
            }
        }
    }
    if gm.group_id == group::ANY {
        return Err(gerr(
            GroupModFailedCode::InvalidGroup,
            "must specify a group_id".into(),
            0,
        ));
    }
    if !is_delete && !had_type {
        return Err(gerr(
            GroupModFailedCode::BadType,
            "must specify a type".into(),
            0,
        ));
    }
    if let Some(start) = buckets {
        let text = &s[start..];
        let mut starts: Vec<usize> = text.match_indices("bucket=").map(|(i, _)| i).collect();
        starts.push(text.len());
        for w in starts.windows(2) {
            let (a, b) = (w[0] + "bucket=".len(), w[1]);
            gm.buckets
                .push(parse_bucket(&text[a..b], start + a, gm.group_type)?);
        }
    }
    Ok(gm)
}

fn parse_bucket(s: &str, base: usize, ty: GroupType) -> Result<Bucket> {
    let mut b = Bucket {
        weight: u16::from(ty == GroupType::Select),
        ..Bucket::default()
    };
    let mut actions = Vec::new();
    let mut st = PacketState::unchecked();
    let mut any_action = false;
    for kv in split_kv(s, base) {
        match kv.key.to_ascii_lowercase().as_str() {
            "weight" => {
                b.weight = parse_uint_max(kv.value, 0xffff)
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(|| {
                        gerr(
                            GroupModFailedCode::BadBucket,
                            format!("weight: invalid value {}", kv.value),
                            kv.val_off,
                        )
                    })?;
            }
            "watch_port" => {
                b.watch_port = parse_port(kv.value)
                    .filter(|p| *p < port::MAX || *p == port::ANY || *p == port::CONTROLLER)
                    .ok_or_else(|| {
                        gerr(
                            GroupModFailedCode::BadWatch,
                            format!("{}: invalid watch_port", kv.value),
                            kv.val_off,
                        )
                    })?;
            }
            "watch_group" => {
                b.watch_group = parse_uint(kv.value)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|g| *g <= group::MAX || *g == group::ANY)
                    .ok_or_else(|| {
                        gerr(
                            GroupModFailedCode::BadWatch,
                            format!("invalid watch_group id {}", kv.value),
                            kv.val_off,
                        )
                    })?;
            }
            "action" | "actions" => {
                any_action = true;
                actions.extend(parse_actions_at(kv.value, kv.val_off, &mut st)?);
            }
            "drop" => any_action = true,
            _ => {
                any_action = true;
                parse_action(&kv, &mut st, &mut actions)?;
            }
        }
    }
    if !any_action {
        return Err(gerr(
            GroupModFailedCode::BadBucket,
            "bucket must specify actions".into(),
            base,
        ));
    }
    if ty == GroupType::FastFailover && b.watch_port == port::ANY && b.watch_group == group::ANY {
        return Err(gerr(
            GroupModFailedCode::BadWatch,
            "fast failover bucket requires watch_port or watch_group".into(),
            base,
        ));
    }
    b.actions = actions;
    Ok(b)
}

/// Formats a group as ovs-ofctl prints it: `group_id=1,type=select,bucket=weight:2,actions=output:1`.
pub fn format_group(gm: &GroupMod) -> String {
    let ty = match gm.group_type {
        GroupType::All => "all",
        GroupType::Select => "select",
        GroupType::Indirect => "indirect",
        GroupType::FastFailover => "ff",
        GroupType::Unknown(_) => "unknown",
    };
    let mut s = format!("group_id={},type={ty}", gm.group_id);
    let default_weight = u16::from(gm.group_type == GroupType::Select);
    for b in &gm.buckets {
        s.push_str(",bucket=");
        if b.weight != default_weight {
            s.push_str(&format!("weight:{},", b.weight));
        }
        if b.watch_port != port::ANY {
            s.push_str(&format!("watch_port:{},", format_port(b.watch_port)));
        }
        if b.watch_group != group::ANY {
            s.push_str(&format!("watch_group:{},", b.watch_group));
        }
        s.push_str("actions=");
        s.push_str(&format_actions(&b.actions));
    }
    s
}

/// Formats a group mod as `ovs-ofctl ofp-print` prints an OF1.3 OFPT_GROUP_MOD on the line
/// after its header: `ADD group_id=1,type=all,bucket=actions=output:1`.
pub fn format_group_mod(gm: &GroupMod) -> String {
    let cmd = match gm.command {
        GroupModCommand::Add => "ADD".to_string(),
        GroupModCommand::Modify => "MOD".into(),
        GroupModCommand::Delete => "DEL".into(),
        GroupModCommand::Unknown(c) => format!("cmd:{c}"),
    };
    format!("{cmd} {}", format_group(gm))
}
