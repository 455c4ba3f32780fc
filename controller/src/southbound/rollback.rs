//! Undoing a partly applied transaction: the messages that put back what a set of changes
//! touched, computed from the snapshot read before them. Pure.
//!
//! A change's undo restores, for everything the change could have touched, the state in the
//! `before` snapshot: a flow added where none was is deleted (strict), a flow replaced,
//! modified or deleted is added back as it was (same cookie, timeouts, flags, instructions;
//! counters restart); groups and meters likewise. Deleting a group or meter also deletes the
//! flows that use it (OpenFlow 1.3), so their undo adds those flows back too. Undos are
//! returned in reverse order of the changes, with groups and meters restored before the flows
//! that refer to them.

use super::conn::Snapshot;
use shg_flows::action::{Action, Instruction, OFPTT_ALL};
use shg_flows::mods::{
    FlowMod, FlowModCommand, GroupMod, GroupModCommand, MeterMod, MeterModCommand,
};
use shg_flows::wire::message::Message;
use shg_flows::wire::multipart::FlowStats;

/// The messages that undo `applied` (in the order given to the switch), starting from `before`.
pub fn undo_all(applied: &[Message], before: &Snapshot) -> Vec<Message> {
    let mut tables_first: Vec<Message> = Vec::new();
    let mut flows: Vec<Message> = Vec::new();
    for change in applied.iter().rev() {
        for m in undo(change, before) {
            match m {
                Message::GroupMod(_) | Message::MeterMod(_) => tables_first.push(m),
                other => flows.push(other),
            }
        }
    }
    tables_first.extend(flows);
    dedup(tables_first)
}

/// The messages that undo one change.
pub fn undo(change: &Message, before: &Snapshot) -> Vec<Message> {
    match change {
        Message::FlowMod(fm) => undo_flow(fm, before),
        Message::GroupMod(gm) => undo_group(gm, before),
        Message::MeterMod(mm) => undo_meter(mm, before),
        _ => Vec::new(),
    }
}

/// A FLOW_MOD ADD that recreates `f` as it was.
pub fn readd(f: &FlowStats) -> Message {
    Message::FlowMod(FlowMod {
        cookie: f.cookie,
        table_id: f.table_id,
        command: FlowModCommand::Add,
        idle_timeout: f.idle_timeout,
        hard_timeout: f.hard_timeout,
        priority: f.priority,
        flags: f.flags,
        r#match: f.r#match,
        instructions: f.instructions.clone(),
        ..FlowMod::default()
    })
}

fn in_table(fm: &FlowMod, f: &FlowStats) -> bool {
    fm.table_id == OFPTT_ALL || fm.table_id == f.table_id
}

fn cookie_ok(fm: &FlowMod, f: &FlowStats) -> bool {
    f.cookie & fm.cookie_mask == fm.cookie & fm.cookie_mask
}

fn undo_flow(fm: &FlowMod, before: &Snapshot) -> Vec<Message> {
    let same = |f: &&FlowStats| {
        f.table_id == fm.table_id && f.priority == fm.priority && f.r#match == fm.r#match
    };
    match fm.command {
        FlowModCommand::Add => match before.flows.iter().find(same) {
            Some(old) => vec![readd(old)],
            None => vec![Message::FlowMod(FlowMod {
                table_id: fm.table_id,
                command: FlowModCommand::DeleteStrict,
                priority: fm.priority,
                r#match: fm.r#match,
                ..FlowMod::default()
            })],
        },
        FlowModCommand::ModifyStrict | FlowModCommand::DeleteStrict => before
            .flows
            .iter()
            .filter(|f| in_table(fm, f) && same(f) && cookie_ok(fm, f))
            .map(readd)
            .collect(),
        FlowModCommand::Modify | FlowModCommand::Delete => before
            .flows
            .iter()
            .filter(|f| in_table(fm, f) && f.r#match.is_subset_of(&fm.r#match) && cookie_ok(fm, f))
            .map(readd)
            .collect(),
        FlowModCommand::Unknown(_) => Vec::new(),
    }
}

fn uses_group(f: &FlowStats, group: u32) -> bool {
    f.instructions.iter().any(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a
            .iter()
            .any(|a| matches!(a, Action::Group(g) if *g == group || group == shg_flows::action::group::ALL)),
        _ => false,
    })
}

fn uses_meter(f: &FlowStats, meter: u32) -> bool {
    f.instructions.iter().any(|i| {
        matches!(i, Instruction::Meter(m) if *m == meter || meter == shg_flows::action::meter::ALL)
    })
}

fn undo_group(gm: &GroupMod, before: &Snapshot) -> Vec<Message> {
    let old = before.groups.iter().find(|g| g.group_id == gm.group_id);
    let restore = |command| {
        old.map(|g| {
            Message::GroupMod(GroupMod {
                command,
                group_type: g.group_type,
                group_id: g.group_id,
                buckets: g.buckets.clone(),
            })
        })
    };
    match gm.command {
        GroupModCommand::Add => match old {
            Some(_) => Vec::new(), // the add was refused (GROUP_EXISTS): nothing changed
            None => vec![Message::GroupMod(GroupMod {
                command: GroupModCommand::Delete,
                group_type: gm.group_type,
                group_id: gm.group_id,
                buckets: Vec::new(),
            })],
        },
        GroupModCommand::Modify => restore(GroupModCommand::Modify).into_iter().collect(),
        GroupModCommand::Delete => {
            let mut out: Vec<Message> = if gm.group_id == shg_flows::action::group::ALL {
                before
                    .groups
                    .iter()
                    .map(|g| {
                        Message::GroupMod(GroupMod {
                            command: GroupModCommand::Add,
                            group_type: g.group_type,
                            group_id: g.group_id,
                            buckets: g.buckets.clone(),
                        })
                    })
                    .collect()
            } else {
                restore(GroupModCommand::Add).into_iter().collect()
            };
            out.extend(
                before
                    .flows
                    .iter()
                    .filter(|f| uses_group(f, gm.group_id))
                    .map(readd),
            );
            out
        }
        GroupModCommand::Unknown(_) => Vec::new(),
    }
}

fn undo_meter(mm: &MeterMod, before: &Snapshot) -> Vec<Message> {
    let old = before.meters.iter().find(|m| m.meter_id == mm.meter_id);
    let restore = |command| {
        old.map(|m| {
            Message::MeterMod(MeterMod {
                command,
                flags: m.flags,
                meter_id: m.meter_id,
                bands: m.bands.clone(),
            })
        })
    };
    match mm.command {
        MeterModCommand::Add => match old {
            Some(_) => Vec::new(),
            None => vec![Message::MeterMod(MeterMod {
                command: MeterModCommand::Delete,
                flags: 0,
                meter_id: mm.meter_id,
                bands: Vec::new(),
            })],
        },
        MeterModCommand::Modify => restore(MeterModCommand::Modify).into_iter().collect(),
        MeterModCommand::Delete => {
            let mut out: Vec<Message> = if mm.meter_id == shg_flows::action::meter::ALL {
                before
                    .meters
                    .iter()
                    .map(|m| {
                        Message::MeterMod(MeterMod {
                            command: MeterModCommand::Add,
                            flags: m.flags,
                            meter_id: m.meter_id,
                            bands: m.bands.clone(),
                        })
                    })
                    .collect()
            } else {
                restore(MeterModCommand::Add).into_iter().collect()
            };
            out.extend(
                before
                    .flows
                    .iter()
                    .filter(|f| uses_meter(f, mm.meter_id))
                    .map(readd),
            );
            out
        }
        MeterModCommand::Unknown(_) => Vec::new(),
    }
}

/// Drops exact repeats (a flow restored by two undos), keeping the first.
fn dedup(msgs: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(msgs.len());
    for m in msgs {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shg_flows::field::Field;
    use shg_flows::matches::Match;
    use shg_flows::table::{FlowFilter, FlowTables};
    use shg_flows::wire::multipart::GroupDesc;

    fn flow(table: u8, prio: u16, port: u64, out: u32) -> FlowMod {
        let mut m = Match::any();
        m.set_u64(Field::InPort, port);
        FlowMod {
            table_id: table,
            priority: prio,
            cookie: 0x5e,
            r#match: m,
            instructions: vec![Instruction::ApplyActions(vec![Action::Output {
                port: out,
                max_len: 0,
            }])],
            ..FlowMod::default()
        }
    }

    fn dump(t: &FlowTables) -> Vec<FlowStats> {
        t.flow_stats(&FlowFilter::default())
            .into_iter()
            .map(|(table_id, e)| e.to_stats(table_id, 0))
            .collect()
    }

    fn apply(t: &mut FlowTables, msgs: &[Message]) {
        for m in msgs {
            if let Message::FlowMod(fm) = m {
                t.apply_flow_mod(fm, 0).expect("valid flow mod");
            }
        }
    }

    #[test]
    fn undo_restores_the_flow_tables() {
        let mut t = FlowTables::new(4);
        apply(
            &mut t,
            &[
                Message::FlowMod(flow(0, 10, 1, 2)),
                Message::FlowMod(flow(0, 10, 2, 1)),
                Message::FlowMod(flow(1, 5, 3, 1)),
            ],
        );
        let before = Snapshot {
            flows: dump(&t),
            ..Snapshot::default()
        };
        let mut replaced = flow(0, 10, 1, 3);
        replaced.cookie = 0x77;
        let mut del = flow(0, 10, 2, 0);
        del.command = FlowModCommand::DeleteStrict;
        let mut wide_delete = FlowMod {
            table_id: 1,
            command: FlowModCommand::Delete,
            ..FlowMod::default()
        };
        wide_delete.r#match = Match::any();
        let changes = vec![
            Message::FlowMod(replaced),
            Message::FlowMod(flow(0, 20, 9, 1)),
            Message::FlowMod(del),
            Message::FlowMod(wide_delete),
        ];
        apply(&mut t, &changes);
        assert_ne!(dump(&t), before.flows);
        apply(&mut t, &undo_all(&changes, &before));
        let after = dump(&t);
        let strip = |v: &[FlowStats]| {
            v.iter()
                .map(|f| {
                    (
                        f.table_id,
                        f.priority,
                        f.r#match,
                        f.cookie,
                        f.instructions.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&after), strip(&before.flows));
    }

    #[test]
    fn group_delete_undo_brings_back_its_flows() {
        let mut uses = flow(0, 10, 1, 2);
        uses.instructions = vec![Instruction::ApplyActions(vec![Action::Group(7)])];
        let before = Snapshot {
            flows: vec![FlowStats {
                table_id: 0,
                priority: 10,
                cookie: 0x5e,
                r#match: uses.r#match,
                instructions: uses.instructions.clone(),
                duration_sec: 0,
                duration_nsec: 0,
                idle_timeout: 0,
                hard_timeout: 0,
                flags: 0,
                packet_count: 0,
                byte_count: 0,
            }],
            groups: vec![GroupDesc {
                group_type: shg_flows::mods::GroupType::All,
                group_id: 7,
                buckets: Vec::new(),
            }],
            ..Snapshot::default()
        };
        let del = Message::GroupMod(GroupMod {
            command: GroupModCommand::Delete,
            group_type: shg_flows::mods::GroupType::All,
            group_id: 7,
            buckets: Vec::new(),
        });
        let u = undo_all(&[del], &before);
        assert!(
            matches!(&u[0], Message::GroupMod(g) if g.command == GroupModCommand::Add && g.group_id == 7)
        );
        assert!(
            matches!(&u[1], Message::FlowMod(f) if f.command == FlowModCommand::Add && f.priority == 10)
        );
        assert_eq!(u.len(), 2);
    }
}
