//! OpenFlow errors: every error that can cross the wire carries its OFPT_ERROR (type, code).
//!
//! Decoders, validators and tables all fail with [`Error`]; an agent answers it as-is with an
//! OFPT_ERROR whose type and code come from [`ErrorCode::wire`]. The human text and the byte
//! offset are for logs and CLIs; they never go on the wire.

use crate::macros::wire_enum;
use std::borrow::Cow;
use std::fmt;

wire_enum! {
    /// `ofp_error_type`.
    pub enum ErrorType: u16 {
        HelloFailed = 0,
        BadRequest = 1,
        BadAction = 2,
        BadInstruction = 3,
        BadMatch = 4,
        FlowModFailed = 5,
        GroupModFailed = 6,
        PortModFailed = 7,
        TableModFailed = 8,
        QueueOpFailed = 9,
        SwitchConfigFailed = 10,
        RoleRequestFailed = 11,
        MeterModFailed = 12,
        TableFeaturesFailed = 13,
        Experimenter = 0xffff,
    }
}

wire_enum! {
    /// `ofp_hello_failed_code`.
    pub enum HelloFailedCode: u16 { Incompatible = 0, Eperm = 1 }
}

wire_enum! {
    /// `ofp_bad_request_code`.
    pub enum BadRequestCode: u16 {
        BadVersion = 0, BadType = 1, BadMultipart = 2, BadExperimenter = 3, BadExpType = 4,
        Eperm = 5, BadLen = 6, BufferEmpty = 7, BufferUnknown = 8, BadTableId = 9,
        IsSlave = 10, BadPort = 11, BadPacket = 12, MultipartBufferOverflow = 13,
    }
}

wire_enum! {
    /// `ofp_bad_action_code`.
    pub enum BadActionCode: u16 {
        BadType = 0, BadLen = 1, BadExperimenter = 2, BadExpType = 3, BadOutPort = 4,
        BadArgument = 5, Eperm = 6, TooMany = 7, BadQueue = 8, BadOutGroup = 9,
        MatchInconsistent = 10, UnsupportedOrder = 11, BadTag = 12, BadSetType = 13,
        BadSetLen = 14, BadSetArgument = 15,
    }
}

wire_enum! {
    /// `ofp_bad_instruction_code`.
    pub enum BadInstructionCode: u16 {
        UnknownInst = 0, UnsupInst = 1, BadTableId = 2, UnsupMetadata = 3,
        UnsupMetadataMask = 4, BadExperimenter = 5, BadExpType = 6, BadLen = 7, Eperm = 8,
    }
}

wire_enum! {
    /// `ofp_bad_match_code`.
    pub enum BadMatchCode: u16 {
        BadType = 0, BadLen = 1, BadTag = 2, BadDlAddrMask = 3, BadNwAddrMask = 4,
        BadWildcards = 5, BadField = 6, BadValue = 7, BadMask = 8, BadPrereq = 9,
        DupField = 10, Eperm = 11,
    }
}

wire_enum! {
    /// `ofp_flow_mod_failed_code`.
    pub enum FlowModFailedCode: u16 {
        Unknown0 = 0, TableFull = 1, BadTableId = 2, Overlap = 3, Eperm = 4,
        BadTimeout = 5, BadCommand = 6, BadFlags = 7,
    }
}

wire_enum! {
    /// `ofp_group_mod_failed_code`.
    pub enum GroupModFailedCode: u16 {
        GroupExists = 0, InvalidGroup = 1, WeightUnsupported = 2, OutOfGroups = 3,
        OutOfBuckets = 4, ChainingUnsupported = 5, WatchUnsupported = 6, Loop = 7,
        UnknownGroup = 8, ChainedGroup = 9, BadType = 10, BadCommand = 11, BadBucket = 12,
        BadWatch = 13, Eperm = 14,
    }
}

wire_enum! {
    /// `ofp_port_mod_failed_code`.
    pub enum PortModFailedCode: u16 { BadPort = 0, BadHwAddr = 1, BadConfig = 2, BadAdvertise = 3, Eperm = 4 }
}

wire_enum! {
    /// `ofp_table_mod_failed_code`.
    pub enum TableModFailedCode: u16 { BadTable = 0, BadConfig = 1, Eperm = 2 }
}

wire_enum! {
    /// `ofp_queue_op_failed_code`.
    pub enum QueueOpFailedCode: u16 { BadPort = 0, BadQueue = 1, Eperm = 2 }
}

wire_enum! {
    /// `ofp_switch_config_failed_code`.
    pub enum SwitchConfigFailedCode: u16 { BadFlags = 0, BadLen = 1, Eperm = 2 }
}

wire_enum! {
    /// `ofp_role_request_failed_code`.
    pub enum RoleRequestFailedCode: u16 { Stale = 0, Unsup = 1, BadRole = 2 }
}

wire_enum! {
    /// `ofp_meter_mod_failed_code`.
    pub enum MeterModFailedCode: u16 {
        Unknown0 = 0, MeterExists = 1, InvalidMeter = 2, UnknownMeter = 3, BadCommand = 4,
        BadFlags = 5, BadRate = 6, BadBurst = 7, BadBand = 8, BadBandValue = 9,
        OutOfMeters = 10, OutOfBands = 11,
    }
}

wire_enum! {
    /// `ofp_table_features_failed_code`.
    pub enum TableFeaturesFailedCode: u16 {
        BadTable = 0, BadMetadata = 1, BadType = 2, BadLen = 3, BadArgument = 4, Eperm = 5,
    }
}

/// An OFPT_ERROR (type, code) pair, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    HelloFailed(HelloFailedCode),
    BadRequest(BadRequestCode),
    BadAction(BadActionCode),
    BadInstruction(BadInstructionCode),
    BadMatch(BadMatchCode),
    FlowModFailed(FlowModFailedCode),
    GroupModFailed(GroupModFailedCode),
    PortModFailed(PortModFailedCode),
    TableModFailed(TableModFailedCode),
    QueueOpFailed(QueueOpFailedCode),
    SwitchConfigFailed(SwitchConfigFailedCode),
    RoleRequestFailed(RoleRequestFailedCode),
    MeterModFailed(MeterModFailedCode),
    TableFeaturesFailed(TableFeaturesFailedCode),
    /// OFPET_EXPERIMENTER: an error defined by an experimenter (e.g. the ONF extension codes
    /// Open vSwitch answers where OF1.3 has no standard code). Sent with the experimenter id.
    Experimenter {
        exp_type: u16,
        experimenter: u32,
    },
    /// Any other pair.
    Other {
        etype: u16,
        code: u16,
    },
}

impl ErrorCode {
    /// The (type, code) that goes in an OFPT_ERROR.
    pub fn wire(self) -> (u16, u16) {
        use ErrorCode::*;
        match self {
            HelloFailed(c) => (0, c.into()),
            BadRequest(c) => (1, c.into()),
            BadAction(c) => (2, c.into()),
            BadInstruction(c) => (3, c.into()),
            BadMatch(c) => (4, c.into()),
            FlowModFailed(c) => (5, c.into()),
            GroupModFailed(c) => (6, c.into()),
            PortModFailed(c) => (7, c.into()),
            TableModFailed(c) => (8, c.into()),
            QueueOpFailed(c) => (9, c.into()),
            SwitchConfigFailed(c) => (10, c.into()),
            RoleRequestFailed(c) => (11, c.into()),
            MeterModFailed(c) => (12, c.into()),
            TableFeaturesFailed(c) => (13, c.into()),
            Experimenter { exp_type, .. } => (0xffff, exp_type),
            Other { etype, code } => (etype, code),
        }
    }

    /// Types a (type, code) pair read off the wire. Total: unknown pairs become `Other`
    /// (an experimenter error also needs its experimenter id: see `Experimenter`).
    pub fn from_wire(etype: u16, code: u16) -> ErrorCode {
        use ErrorCode::*;
        let c = code;
        match etype {
            0 => HelloFailed(c.into()),
            1 => BadRequest(c.into()),
            2 => BadAction(c.into()),
            3 => BadInstruction(c.into()),
            4 => BadMatch(c.into()),
            5 => FlowModFailed(c.into()),
            6 => GroupModFailed(c.into()),
            7 => PortModFailed(c.into()),
            8 => TableModFailed(c.into()),
            9 => QueueOpFailed(c.into()),
            10 => SwitchConfigFailed(c.into()),
            11 => RoleRequestFailed(c.into()),
            12 => MeterModFailed(c.into()),
            13 => TableFeaturesFailed(c.into()),
            _ => Other { etype, code },
        }
    }

    /// OVS-style symbolic name, e.g. `OFPBMC_BAD_PREREQ`.
    pub fn name(self) -> String {
        fn snake(s: &str) -> String {
            let mut out = String::new();
            for (i, ch) in s.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
        use ErrorCode::*;
        let (prefix, var) = match self {
            HelloFailed(c) => ("OFPHFC_", format!("{c:?}")),
            BadRequest(c) => ("OFPBRC_", format!("{c:?}")),
            BadAction(c) => ("OFPBAC_", format!("{c:?}")),
            BadInstruction(c) => ("OFPBIC_", format!("{c:?}")),
            BadMatch(c) => ("OFPBMC_", format!("{c:?}")),
            FlowModFailed(c) => ("OFPFMFC_", format!("{c:?}")),
            GroupModFailed(c) => ("OFPGMFC_", format!("{c:?}")),
            PortModFailed(c) => ("OFPPMFC_", format!("{c:?}")),
            TableModFailed(c) => ("OFPTMFC_", format!("{c:?}")),
            QueueOpFailed(c) => ("OFPQOFC_", format!("{c:?}")),
            SwitchConfigFailed(c) => ("OFPSCFC_", format!("{c:?}")),
            RoleRequestFailed(c) => ("OFPRRFC_", format!("{c:?}")),
            MeterModFailed(c) => ("OFPMMFC_", format!("{c:?}")),
            TableFeaturesFailed(c) => ("OFPTFFC_", format!("{c:?}")),
            Experimenter {
                exp_type,
                experimenter,
            } => return format!("OFPET_EXPERIMENTER(0x{experimenter:08x},{exp_type})"),
            Other { etype, code } => return format!("OFPET({etype},{code})"),
        };
        if var.starts_with("Unknown(") {
            let (t, c) = self.wire();
            return format!("OFPET({t},{c})");
        }
        format!("{prefix}{}", snake(&var))
    }
}

/// Every failure in this crate: the wire code to answer with, where it happened, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What to answer on the wire.
    pub code: ErrorCode,
    /// Byte offset into the message being decoded, or into the text being parsed, when known.
    pub offset: Option<usize>,
    /// Human explanation, for logs and CLIs.
    pub detail: Cow<'static, str>,
}

impl Error {
    /// An error with a code and an explanation.
    pub fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error {
            code,
            offset: None,
            detail: detail.into(),
        }
    }

    /// Attaches (or keeps the innermost) location.
    pub fn at(mut self, offset: usize) -> Error {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// Shifts a location found inside a sub-buffer to the enclosing buffer.
    pub fn shift(mut self, by: usize) -> Error {
        if let Some(o) = self.offset.as_mut() {
            *o += by;
        }
        self
    }

    pub fn bad_request(code: BadRequestCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::BadRequest(code), detail)
    }
    pub fn bad_action(code: BadActionCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::BadAction(code), detail)
    }
    pub fn bad_instruction(
        code: BadInstructionCode,
        detail: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error::new(ErrorCode::BadInstruction(code), detail)
    }
    pub fn bad_match(code: BadMatchCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::BadMatch(code), detail)
    }
    pub fn flow_mod(code: FlowModFailedCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::FlowModFailed(code), detail)
    }
    pub fn group_mod(code: GroupModFailedCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::GroupModFailed(code), detail)
    }
    pub fn meter_mod(code: MeterModFailedCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorCode::MeterModFailed(code), detail)
    }
    /// A message (or part) shorter than its header says, or than its type needs.
    pub fn bad_len(detail: impl Into<Cow<'static, str>>) -> Error {
        Error::bad_request(BadRequestCode::BadLen, detail)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.detail)?;
        if let Some(o) = self.offset {
            write!(f, " at byte {o}")?;
        }
        write!(f, " ({})", self.code.name())
    }
}

impl std::error::Error for Error {}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wire_pairs() {
        let e = ErrorCode::BadMatch(BadMatchCode::BadPrereq);
        assert_eq!(e.wire(), (4, 9));
        assert_eq!(e.name(), "OFPBMC_BAD_PREREQ");
        assert_eq!(ErrorCode::from_wire(4, 9), e);
        assert_eq!(
            ErrorCode::from_wire(77, 3),
            ErrorCode::Other { etype: 77, code: 3 }
        );
        assert_eq!(ErrorCode::from_wire(1, 99).name(), "OFPET(1,99)");
        let err = Error::bad_len("flow_mod shorter than 56 bytes").at(8);
        assert_eq!(
            err.to_string(),
            "flow_mod shorter than 56 bytes at byte 8 (OFPBRC_BAD_LEN)"
        );
    }
}
