//! Actions and instructions as validated values, and the reserved port and group numbers.
//!
//! Wire encoding lives in `wire::action`/`wire::instruction`; ovs-ofctl text in `text`.
//! Unknown action and instruction types decode to `Unknown` values so a switch can answer
//! them with the right error while a decoder or printer still shows them.

use crate::field::Field;

/// Reserved OpenFlow port numbers (`ofp_port_no`).
pub mod port {
    /// Highest physical port number.
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// Reserved group numbers (`ofp_group`).
pub mod group {
    pub const MAX: u32 = 0xffff_ff00;
    pub const ALL: u32 = 0xffff_fffc;
    pub const ANY: u32 = 0xffff_ffff;
}

/// Reserved meter numbers (`ofp_meter`).
pub mod meter {
    pub const MAX: u32 = 0xffff_0000;
    pub const SLOWPATH: u32 = 0xffff_fffd;
    pub const CONTROLLER: u32 = 0xffff_fffe;
    pub const ALL: u32 = 0xffff_ffff;
}

/// `max_len` meaning "send the whole packet, do not buffer" (OFPCML_NO_BUFFER).
pub const OFPCML_NO_BUFFER: u16 = 0xffff;
/// Queue id meaning "all queues".
pub const OFPQ_ALL: u32 = 0xffff_ffff;
/// Table id meaning "all tables".
pub const OFPTT_ALL: u8 = 0xff;
/// Buffer id meaning "no buffer".
pub const OFP_NO_BUFFER: u32 = 0xffff_ffff;

/// One OpenFlow 1.3 action (`ofp_action_*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// OFPAT_OUTPUT: `max_len` is the bytes sent to the controller when `port` is CONTROLLER.
    Output {
        port: u32,
        max_len: u16,
    },
    CopyTtlOut,
    CopyTtlIn,
    SetMplsTtl(u8),
    DecMplsTtl,
    /// Push a VLAN tag with this ethertype (0x8100 or 0x88a8).
    PushVlan(u16),
    PopVlan,
    /// Push an MPLS shim with this ethertype (0x8847 or 0x8848).
    PushMpls(u16),
    /// Pop the MPLS shim; the frame gets this ethertype.
    PopMpls(u16),
    SetQueue(u32),
    Group(u32),
    SetNwTtl(u8),
    DecNwTtl,
    /// OFPAT_SET_FIELD: `value` has exactly the field's wire width.
    SetField {
        field: Field,
        value: Vec<u8>,
    },
    PushPbb(u16),
    PopPbb,
    /// OFPAT_EXPERIMENTER: body after the experimenter id, kept opaque.
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// A type this implementation does not know: the raw type and body after the 4-byte header.
    Unknown {
        typ: u16,
        body: Vec<u8>,
    },
}

/// One OpenFlow 1.3 instruction (`ofp_instruction_*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata { metadata: u64, mask: u64 },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
    Experimenter { experimenter: u32, data: Vec<u8> },
    Unknown { typ: u16, body: Vec<u8> },
}

impl Instruction {
    /// The instruction type number (`ofp_instruction_type`).
    pub fn type_code(&self) -> u16 {
        match self {
            Instruction::GotoTable(_) => 1,
            Instruction::WriteMetadata { .. } => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::ApplyActions(_) => 4,
            Instruction::ClearActions => 5,
            Instruction::Meter(_) => 6,
            Instruction::Experimenter { .. } => 0xffff,
            Instruction::Unknown { typ, .. } => *typ,
        }
    }
}

impl Action {
    /// The action type number (`ofp_action_type`).
    pub fn type_code(&self) -> u16 {
        match self {
            Action::Output { .. } => 0,
            Action::CopyTtlOut => 11,
            Action::CopyTtlIn => 12,
            Action::SetMplsTtl(_) => 15,
            Action::DecMplsTtl => 16,
            Action::PushVlan(_) => 17,
            Action::PopVlan => 18,
            Action::PushMpls(_) => 19,
            Action::PopMpls(_) => 20,
            Action::SetQueue(_) => 21,
            Action::Group(_) => 22,
            Action::SetNwTtl(_) => 23,
            Action::DecNwTtl => 24,
            Action::SetField { .. } => 25,
            Action::PushPbb(_) => 26,
            Action::PopPbb => 27,
            Action::Experimenter { .. } => 0xffff,
            Action::Unknown { typ, .. } => *typ,
        }
    }
}
