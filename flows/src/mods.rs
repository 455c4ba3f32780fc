//! The three "mod" messages as validated values: [`FlowMod`], [`GroupMod`], [`MeterMod`].
//!
//! They are shared by the wire codec (`wire`), the tables that apply them (`table`, `group`,
//! `meter`) and the ovs-ofctl text syntax (`text`), so they live apart from all three.

use crate::action::{Action, Instruction};
use crate::macros::wire_enum;
use crate::matches::Match;

wire_enum! {
    /// `ofp_flow_mod_command`.
    pub enum FlowModCommand: u8 { Add = 0, Modify = 1, ModifyStrict = 2, Delete = 3, DeleteStrict = 4 }
}

/// `ofp_flow_mod_flags` bits.
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
}

/// OFPT_FLOW_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

impl Default for FlowMod {
    /// An ADD into table 0 at priority 0x8000 (OFP_DEFAULT_PRIORITY), no buffer, any port/group.
    fn default() -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            buffer_id: crate::action::OFP_NO_BUFFER,
            out_port: crate::action::port::ANY,
            out_group: crate::action::group::ANY,
            flags: 0,
            r#match: Match::any(),
            instructions: Vec::new(),
        }
    }
}

wire_enum! {
    /// `ofp_group_mod_command`.
    pub enum GroupModCommand: u16 { Add = 0, Modify = 1, Delete = 2 }
}

wire_enum! {
    /// `ofp_group_type`.
    pub enum GroupType: u8 { All = 0, Select = 1, Indirect = 2, FastFailover = 3 }
}

/// `ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Relative weight (select groups only; 0 elsewhere).
    pub weight: u16,
    /// Port whose liveness enables this bucket (fast failover), or `port::ANY`.
    pub watch_port: u32,
    /// Group whose liveness enables this bucket (fast failover), or `group::ANY`.
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            weight: 0,
            watch_port: crate::action::port::ANY,
            watch_group: crate::action::group::ANY,
            actions: Vec::new(),
        }
    }
}

/// OFPT_GROUP_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

wire_enum! {
    /// `ofp_meter_mod_command`.
    pub enum MeterModCommand: u16 { Add = 0, Modify = 1, Delete = 2 }
}

/// `ofp_meter_flags` bits.
pub mod meter_flags {
    pub const KBPS: u16 = 1 << 0;
    pub const PKTPS: u16 = 1 << 1;
    pub const BURST: u16 = 1 << 2;
    pub const STATS: u16 = 1 << 3;
}

/// One meter band (`ofp_meter_band_*`). `rate` is kb/s or packets/s per the meter's flags;
/// `burst_size` is kilobits or packets, used only with OFPMF_BURST.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MeterBand {
    Drop {
        rate: u32,
        burst_size: u32,
    },
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    Experimenter {
        rate: u32,
        burst_size: u32,
        experimenter: u32,
        data: Vec<u8>,
    },
    Unknown {
        typ: u16,
        rate: u32,
        burst_size: u32,
        body: Vec<u8>,
    },
}

impl MeterBand {
    pub fn rate(&self) -> u32 {
        match self {
            MeterBand::Drop { rate, .. }
            | MeterBand::DscpRemark { rate, .. }
            | MeterBand::Experimenter { rate, .. }
            | MeterBand::Unknown { rate, .. } => *rate,
        }
    }
    pub fn burst_size(&self) -> u32 {
        match self {
            MeterBand::Drop { burst_size, .. }
            | MeterBand::DscpRemark { burst_size, .. }
            | MeterBand::Experimenter { burst_size, .. }
            | MeterBand::Unknown { burst_size, .. } => *burst_size,
        }
    }
}

/// OFPT_METER_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: MeterModCommand,
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}
