//! `ofp_port` (port descriptions, as in PORT_STATUS and the PORT_DESC reply) and its bits.
//!
//! Owns only the 64-byte port layout; messages that carry ports live in `message` and
//! `multipart`. Decoding never panics: a short buffer is `OFPBRC_BAD_LEN`.

use crate::error::Result;
use crate::wire::buf::{Reader, Writer};

/// Bytes in one `ofp_port`.
pub const PORT_LEN: usize = 64;
/// Bytes of a port name field (NUL-padded).
pub const PORT_NAME_LEN: usize = 16;

/// `ofp_port_config` bits.
pub mod config {
    pub const PORT_DOWN: u32 = 1 << 0;
    pub const NO_RECV: u32 = 1 << 2;
    pub const NO_FWD: u32 = 1 << 5;
    pub const NO_PACKET_IN: u32 = 1 << 6;
}

/// `ofp_port_state` bits.
pub mod state {
    pub const LINK_DOWN: u32 = 1 << 0;
    pub const BLOCKED: u32 = 1 << 1;
    pub const LIVE: u32 = 1 << 2;
}

/// `ofp_port_features` bits.
pub mod features {
    pub const F_10MB_HD: u32 = 1 << 0;
    pub const F_10MB_FD: u32 = 1 << 1;
    pub const F_100MB_HD: u32 = 1 << 2;
    pub const F_100MB_FD: u32 = 1 << 3;
    pub const F_1GB_HD: u32 = 1 << 4;
    pub const F_1GB_FD: u32 = 1 << 5;
    pub const F_10GB_FD: u32 = 1 << 6;
    pub const F_40GB_FD: u32 = 1 << 7;
    pub const F_100GB_FD: u32 = 1 << 8;
    pub const F_1TB_FD: u32 = 1 << 9;
    pub const OTHER: u32 = 1 << 10;
    pub const COPPER: u32 = 1 << 11;
    pub const FIBER: u32 = 1 << 12;
    pub const AUTONEG: u32 = 1 << 13;
    pub const PAUSE: u32 = 1 << 14;
    pub const PAUSE_ASYM: u32 = 1 << 15;
}

/// One `ofp_port`. `name` is at most 15 bytes on the wire (NUL-terminated in 16);
/// speeds are in kb/s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    pub name: String,
    pub config: u32,
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    pub curr_speed: u32,
    pub max_speed: u32,
}

impl Port {
    /// Reads one 64-byte `ofp_port`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Port> {
        let port_no = r.u32("ofp_port.port_no")?;
        r.skip(4, "ofp_port pad")?;
        let hw_addr = r.array::<6>("ofp_port.hw_addr")?;
        r.skip(2, "ofp_port pad")?;
        let name = r.fixed_str(PORT_NAME_LEN, "ofp_port.name")?;
        Ok(Port {
            port_no,
            hw_addr,
            name,
            config: r.u32("ofp_port.config")?,
            state: r.u32("ofp_port.state")?,
            curr: r.u32("ofp_port.curr")?,
            advertised: r.u32("ofp_port.advertised")?,
            supported: r.u32("ofp_port.supported")?,
            peer: r.u32("ofp_port.peer")?,
            curr_speed: r.u32("ofp_port.curr_speed")?,
            max_speed: r.u32("ofp_port.max_speed")?,
        })
    }

    /// Writes one 64-byte `ofp_port` (a name longer than 15 bytes is cut).
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.port_no);
        w.zeros(4);
        w.bytes(&self.hw_addr);
        w.zeros(2);
        w.fixed_str(&self.name, PORT_NAME_LEN);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            w.u32(v);
        }
    }
}
