//! `ofp_table_features` and every `ofp_table_feature_prop_*` (TABLE_FEATURES multipart).
//!
//! OXM ids are kept as raw 32-bit words (an experimenter OXM id is two words: header and
//! experimenter), which is lossless; instruction and action ids keep their type and any
//! bytes after the 4-byte header. Unknown property types are kept raw. Every length is
//! checked (`OFPBRC_BAD_LEN`), padding included.

use crate::error::{Error, Result};
use crate::wire::buf::{Reader, Writer};
use crate::wire::message::{expect_end, pad8, take_tlv};

/// Bytes of `ofp_table_features.name`.
pub const TABLE_NAME_LEN: usize = 32;
/// Bytes of `ofp_table_features` before its properties.
pub const TABLE_FEATURES_HEADER_LEN: usize = 64;

/// An instruction or action id in a table feature property: the type and whatever follows
/// the 4-byte (type, len) header (for experimenter ids, the experimenter id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureId {
    pub typ: u16,
    pub data: Vec<u8>,
}

impl FeatureId {
    /// A plain 4-byte id.
    pub fn new(typ: u16) -> FeatureId {
        FeatureId {
            typ,
            data: Vec::new(),
        }
    }
}

/// One `ofp_table_feature_prop_*`. `miss` selects the `_MISS` variant of the type
/// (what applies to the table-miss flow entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFeatureProp {
    /// OFPTFPT_INSTRUCTIONS(_MISS).
    Instructions { miss: bool, ids: Vec<FeatureId> },
    /// OFPTFPT_NEXT_TABLES(_MISS).
    NextTables { miss: bool, tables: Vec<u8> },
    /// OFPTFPT_WRITE_ACTIONS(_MISS).
    WriteActions { miss: bool, ids: Vec<FeatureId> },
    /// OFPTFPT_APPLY_ACTIONS(_MISS).
    ApplyActions { miss: bool, ids: Vec<FeatureId> },
    /// OFPTFPT_MATCH: raw OXM header words.
    Match(Vec<u32>),
    /// OFPTFPT_WILDCARDS: raw OXM header words.
    Wildcards(Vec<u32>),
    /// OFPTFPT_WRITE_SETFIELD(_MISS): raw OXM header words.
    WriteSetfield { miss: bool, oxm_ids: Vec<u32> },
    /// OFPTFPT_APPLY_SETFIELD(_MISS): raw OXM header words.
    ApplySetfield { miss: bool, oxm_ids: Vec<u32> },
    /// OFPTFPT_EXPERIMENTER(_MISS).
    Experimenter {
        miss: bool,
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// Any other property type: the body after the 4-byte header, without padding.
    Unknown { typ: u16, body: Vec<u8> },
}

/// One `ofp_table_features`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFeatures {
    pub table_id: u8,
    /// At most 31 bytes on the wire.
    pub name: String,
    pub metadata_match: u64,
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    pub properties: Vec<TableFeatureProp>,
}

fn decode_ids(r: &mut Reader<'_>) -> Result<Vec<FeatureId>> {
    let mut ids = Vec::new();
    while !r.is_empty() {
        let mut id = take_tlv(r, 2, 4, "table feature instruction/action id")?;
        let typ = id.u16("id type")?;
        id.skip(2, "id len")?;
        ids.push(FeatureId {
            typ,
            data: id.rest().to_vec(),
        });
    }
    Ok(ids)
}

fn decode_words(r: &mut Reader<'_>) -> Result<Vec<u32>> {
    if r.remaining() % 4 != 0 {
        return Err(Error::bad_len(format!(
            "OXM id list of {} bytes is not a multiple of 4",
            r.remaining()
        ))
        .at(r.offset()));
    }
    let mut v = Vec::with_capacity(r.remaining() / 4);
    while !r.is_empty() {
        v.push(r.u32("OXM id")?);
    }
    Ok(v)
}

impl TableFeatureProp {
    /// The `ofp_table_feature_prop_type` number.
    pub fn prop_type(&self) -> u16 {
        use TableFeatureProp as T;
        let m = |miss: &bool| u16::from(*miss);
        match self {
            T::Instructions { miss, .. } => m(miss),
            T::NextTables { miss, .. } => 2 + m(miss),
            T::WriteActions { miss, .. } => 4 + m(miss),
            T::ApplyActions { miss, .. } => 6 + m(miss),
            T::Match(_) => 8,
            T::Wildcards(_) => 10,
            T::WriteSetfield { miss, .. } => 12 + m(miss),
            T::ApplySetfield { miss, .. } => 14 + m(miss),
            T::Experimenter { miss, .. } => 0xfffe + m(miss),
            T::Unknown { typ, .. } => *typ,
        }
    }

    /// Reads one property and the padding after it.
    fn decode(r: &mut Reader<'_>) -> Result<TableFeatureProp> {
        use TableFeatureProp as T;
        let mut p = take_tlv(r, 2, 4, "ofp_table_feature_prop")?;
        let len = p.remaining();
        let typ = p.u16("ofp_table_feature_prop.type")?;
        p.skip(2, "ofp_table_feature_prop.length")?;
        let miss = typ % 2 == 1;
        let prop = match typ {
            0 | 1 => T::Instructions {
                miss,
                ids: decode_ids(&mut p)?,
            },
            2 | 3 => T::NextTables {
                miss,
                tables: p.rest().to_vec(),
            },
            4 | 5 => T::WriteActions {
                miss,
                ids: decode_ids(&mut p)?,
            },
            6 | 7 => T::ApplyActions {
                miss,
                ids: decode_ids(&mut p)?,
            },
            8 => T::Match(decode_words(&mut p)?),
            10 => T::Wildcards(decode_words(&mut p)?),
            12 | 13 => T::WriteSetfield {
                miss,
                oxm_ids: decode_words(&mut p)?,
            },
            14 | 15 => T::ApplySetfield {
                miss,
                oxm_ids: decode_words(&mut p)?,
            },
            0xfffe | 0xffff => T::Experimenter {
                miss,
                experimenter: p.u32("ofp_table_feature_prop_experimenter.experimenter")?,
                exp_type: p.u32("ofp_table_feature_prop_experimenter.exp_type")?,
                data: p.rest().to_vec(),
            },
            _ => T::Unknown {
                typ,
                body: p.rest().to_vec(),
            },
        };
        expect_end(&p, "ofp_table_feature_prop")?;
        r.skip(pad8(len), "ofp_table_feature_prop padding")?;
        Ok(prop)
    }

    /// Writes the property and its padding to 8 bytes.
    fn encode(&self, w: &mut Writer) {
        use TableFeatureProp as T;
        let start = w.len();
        w.u16(self.prop_type());
        w.u16(0);
        let ids = |ids: &[FeatureId], w: &mut Writer| {
            for id in ids {
                w.u16(id.typ);
                w.u16(u16::try_from(4 + id.data.len()).unwrap_or(u16::MAX));
                w.bytes(&id.data);
            }
        };
        match self {
            T::Instructions { ids: v, .. }
            | T::WriteActions { ids: v, .. }
            | T::ApplyActions { ids: v, .. } => ids(v, w),
            T::NextTables { tables, .. } => w.bytes(tables),
            T::Match(v)
            | T::Wildcards(v)
            | T::WriteSetfield { oxm_ids: v, .. }
            | T::ApplySetfield { oxm_ids: v, .. } => v.iter().for_each(|x| w.u32(*x)),
            T::Experimenter {
                experimenter,
                exp_type,
                data,
                ..
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
            T::Unknown { body, .. } => w.bytes(body),
        }
        w.patch_len_since(start + 2, start);
        w.pad_to(start, 8);
    }
}

impl TableFeatures {
    /// Reads one `ofp_table_features` (its length field bounds its properties).
    pub fn decode(r: &mut Reader<'_>) -> Result<TableFeatures> {
        let mut t = take_tlv(r, 0, TABLE_FEATURES_HEADER_LEN, "ofp_table_features")?;
        t.skip(2, "ofp_table_features.length")?;
        let table_id = t.u8("ofp_table_features.table_id")?;
        t.skip(5, "ofp_table_features pad")?;
        let name = t.fixed_str(TABLE_NAME_LEN, "ofp_table_features.name")?;
        let metadata_match = t.u64("ofp_table_features.metadata_match")?;
        let metadata_write = t.u64("ofp_table_features.metadata_write")?;
        let config = t.u32("ofp_table_features.config")?;
        let max_entries = t.u32("ofp_table_features.max_entries")?;
        let mut properties = Vec::new();
        while !t.is_empty() {
            properties.push(TableFeatureProp::decode(&mut t)?);
        }
        Ok(TableFeatures {
            table_id,
            name,
            metadata_match,
            metadata_write,
            config,
            max_entries,
            properties,
        })
    }

    /// Reads `ofp_table_features` until `r` is empty.
    pub fn decode_all(r: &mut Reader<'_>) -> Result<Vec<TableFeatures>> {
        let mut v = Vec::new();
        while !r.is_empty() {
            v.push(TableFeatures::decode(r)?);
        }
        Ok(v)
    }

    /// Writes one `ofp_table_features`.
    pub fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(0);
        w.u8(self.table_id);
        w.zeros(5);
        w.fixed_str(&self.name, TABLE_NAME_LEN);
        w.u64(self.metadata_match);
        w.u64(self.metadata_write);
        w.u32(self.config);
        w.u32(self.max_entries);
        for p in &self.properties {
            p.encode(w);
        }
        w.patch_len_since(start, start);
    }
}
