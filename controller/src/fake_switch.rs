//! A fake switch for controller tests: applies a [`Plan`] to shg-flows' tables and reports [`Observed`] back.
//!
//! It holds the real `FlowTables`, `MeterTable` and `GroupTable` of shg-flows plus a queue map,
//! and is as strict as a switch where ordering matters: a flow naming a meter that does not
//! exist is refused (OFPMMFC_UNKNOWN_METER), and deleting a meter removes the flows that use
//! it (OF1.3 §5.7). A change that fails stops the plan there. No I/O, no clock.

use crate::planner::pipeline::PortQueues;
use crate::planner::{Change, Observed, Plan};
use shg_flows::action::Instruction;
use shg_flows::error::{Error, MeterModFailedCode};
use shg_flows::group::GroupTable;
use shg_flows::meter::MeterTable;
use shg_flows::mods::MeterModCommand;
use shg_flows::table::{FlowFilter, FlowTables};
use shg_flows::wire::multipart::MeterConfig;
use std::collections::BTreeMap;

/// The fake switch's whole state.
#[derive(Debug, Clone)]
pub struct FakeSwitch {
    pub tables: FlowTables,
    pub meters: MeterTable,
    pub groups: GroupTable,
    pub queues: BTreeMap<u32, PortQueues>,
    /// Port name → number, reported as [`Observed::ports`].
    pub ports: BTreeMap<String, u32>,
}

impl FakeSwitch {
    /// An empty switch with `n_tables` tables and these named ports.
    pub fn new(n_tables: u8, ports: BTreeMap<String, u32>) -> FakeSwitch {
        FakeSwitch {
            tables: FlowTables::new(n_tables),
            meters: MeterTable::new(),
            groups: GroupTable::new(),
            queues: BTreeMap::new(),
            ports,
        }
    }

    /// Applies every change in order; stops at the first the switch refuses.
    pub fn apply(&mut self, plan: &Plan, now: u64) -> Result<(), (usize, Error)> {
        for (i, c) in plan.changes.iter().enumerate() {
            self.apply_change(c, now).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Applies one change.
    pub fn apply_change(&mut self, c: &Change, now: u64) -> Result<(), Error> {
        match c {
            Change::PortRate { port, rate } => {
                self.queues.entry(*port).or_default().rate = *rate;
            }
            Change::SetQueue { port, queue } => {
                let pq = self.queues.entry(*port).or_default();
                match pq.queues.iter_mut().find(|q| q.queue_id == queue.queue_id) {
                    Some(q) => *q = *queue,
                    None => {
                        pq.queues.push(*queue);
                        pq.queues.sort_by_key(|q| q.queue_id);
                    }
                }
            }
            Change::DeleteQueue { port, queue_id } => {
                if let Some(pq) = self.queues.get_mut(port) {
                    pq.queues.retain(|q| q.queue_id != *queue_id);
                }
            }
            Change::Meter(mm) => {
                self.meters.apply_meter_mod(mm, now)?;
                if mm.command == MeterModCommand::Delete {
                    self.tables.remove_flows_using_meter(mm.meter_id);
                }
            }
            Change::Group(gm) => {
                self.groups.apply_group_mod(gm, now)?;
            }
            Change::Flow(fm) => {
                for i in &fm.instructions {
                    if let Instruction::Meter(m) = i {
                        if !self.meters.contains(*m) {
                            return Err(Error::meter_mod(
                                MeterModFailedCode::UnknownMeter,
                                format!("flow names meter {m}, which does not exist"),
                            ));
                        }
                    }
                }
                self.tables.apply_flow_mod(fm, now)?;
            }
        }
        Ok(())
    }

    /// What a controller reading the switch back would see.
    pub fn observe(&self, now: u64) -> Observed {
        let flows = self
            .tables
            .flow_stats(&FlowFilter::default())
            .into_iter()
            .map(|(table_id, e)| e.to_stats(table_id, now))
            .collect();
        Observed {
            ports: self.ports.clone(),
            flows,
            groups: self.groups.group_desc(),
            meters: self.meter_configs(),
            queues: self.queues.clone(),
            devices: Vec::new(),
        }
    }

    fn meter_configs(&self) -> Vec<MeterConfig> {
        self.meters
            .meter_config(shg_flows::action::meter::ALL)
            .unwrap_or_default()
    }
}
