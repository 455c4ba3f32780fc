//! Bounds-checked big-endian reading and writing: the only place that indexes raw wire bytes.
//!
//! [`Reader`] never panics: every read past the end is an `OFPBRC_BAD_LEN` [`Error`] carrying
//! the absolute byte offset. [`Writer`] appends to a `Vec<u8>` and can patch a length field
//! written earlier.

use crate::error::{Error, Result};

/// A cursor over untrusted bytes. `base` is the absolute offset of `buf[0]` in the message,
/// so errors from nested readers point at the right byte of the whole message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn short(&self, what: &str, need: usize) -> Error {
        Error::bad_len(format!(
            "{what}: need {need} bytes, {} left",
            self.remaining()
        ))
        .at(self.offset())
    }

    /// Takes `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.short(what, n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Skips `n` bytes (padding).
    pub fn skip(&mut self, n: usize, what: &str) -> Result<()> {
        self.bytes(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Looks at the next big-endian u16 without consuming it.
    pub fn peek_u16(&self, what: &str) -> Result<u16> {
        self.clone().u16(what)
    }

    /// Splits off a nested reader over the next `n` bytes (e.g. one TLV), advancing past them.
    pub fn sub(&mut self, n: usize, what: &str) -> Result<Reader<'a>> {
        let base = self.offset();
        let buf = self.bytes(n, what)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Everything left, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// A NUL-terminated string in a fixed `n`-byte field (port names, descriptions). As in
    /// the encoder and Open vSwitch, the last byte always counts as the terminator. Bytes that
    /// are not UTF-8 become U+FFFD, and the result is cut back (at a character boundary) to
    /// what fits the field, so decoding is canonical: encode then decode gives the same string.
    pub fn fixed_str(&mut self, n: usize, what: &str) -> Result<String> {
        let s = self.bytes(n, what)?;
        let s = s.get(..n.saturating_sub(1)).unwrap_or(s);
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        let mut out = String::from_utf8_lossy(s.get(..end).unwrap_or(s)).into_owned();
        truncate_at_char(&mut out, n.saturating_sub(1));
        Ok(out)
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Appends big-endian values to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    /// Pads with zeros to the next multiple of `align`, counted from `start`.
    pub fn pad_to(&mut self, start: usize, align: usize) {
        let len = self.buf.len() - start;
        let padded = len.div_ceil(align) * align;
        self.zeros(padded - len);
    }
    /// A NUL-padded fixed-size string field; longer strings are cut to `n - 1` bytes at a
    /// character boundary (and at the first NUL, which would end the string on the wire).
    pub fn fixed_str(&mut self, s: &str, n: usize) {
        let mut s = s.split('\0').next().unwrap_or("").to_string();
        truncate_at_char(&mut s, n.saturating_sub(1));
        self.bytes(s.as_bytes());
        self.zeros(n - s.len());
    }
    /// Overwrites a u16 written earlier at `at` (a length field).
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Writes the length of everything since `start` into the u16 at `at`.
    /// Lengths above 65535 are a caller bug (messages are bounded by the 16-bit header).
    pub fn patch_len_since(&mut self, at: usize, start: usize) {
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.patch_u16(at, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_an_error_with_offset() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        let e = r.u16("b").unwrap_err();
        assert_eq!(e.offset, Some(2));
        let mut r = Reader::new(&[0, 0, 0, 0, 9, 9]);
        r.skip(2, "x").unwrap();
        let mut s = r.sub(3, "tlv").unwrap();
        s.u16("y").unwrap();
        assert_eq!(s.u16("z").unwrap_err().offset, Some(4));
    }
}
