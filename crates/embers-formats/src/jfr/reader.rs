//! The primitives of JFR's byte stream: big-endian fixed-width numbers, the "compressed"
//! integers (LEB128 without zigzag; the ninth byte carries eight bits) and the five
//! string encodings. Every read checks the bytes left, so a truncated or lying input
//! ends in an error, never a panic or an allocation its bytes do not pay for.

use std::borrow::Cow;

use crate::FormatError;

pub(super) const NAME: &str = "jfr";

pub(super) fn bad(message: impl Into<String>) -> FormatError {
    FormatError::malformed(NAME, message)
}

/// A string as JFR encodes it: inline, or a key into the chunk's `java.lang.String` pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JStr<'a> {
    Null,
    Inline(Cow<'a, str>),
    Pool(i64),
}

/// A cursor over one chunk's bytes.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Integers (short, int, long, char) are LEB128-compressed (chunk feature bit 0).
    compressed: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], compressed: bool) -> Self {
        Reader {
            buf,
            pos: 0,
            compressed,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Moves to `pos`, which must lie within the bytes.
    pub(super) fn seek(&mut self, pos: usize) -> Result<(), FormatError> {
        if pos > self.buf.len() {
            return Err(bad(format!(
                "offset {pos} is past the end of the chunk ({} bytes)",
                self.buf.len()
            )));
        }
        self.pos = pos;
        Ok(())
    }

    fn truncated(&self) -> FormatError {
        bad(format!("truncated at byte {}", self.pos))
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.truncated());
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, FormatError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(b)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(super) fn be_u16(&mut self) -> Result<u16, FormatError> {
        self.be().map(u16::from_be_bytes)
    }

    pub(super) fn be_u32(&mut self) -> Result<u32, FormatError> {
        self.be().map(u32::from_be_bytes)
    }

    pub(super) fn be_i64(&mut self) -> Result<i64, FormatError> {
        self.be().map(i64::from_be_bytes)
    }

    /// A compressed integer: seven bits a byte, least significant first; the ninth byte
    /// gives its whole eight bits.
    pub(super) fn varint(&mut self) -> Result<u64, FormatError> {
        let mut out = 0u64;
        for i in 0..8 {
            let b = self.u8()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        Ok(out | u64::from(self.u8()?) << 56)
    }

    /// An integer of `width` bytes (2 for short and char, 4 for int, 8 for long).
    pub(super) fn int(&mut self, width: u8) -> Result<i64, FormatError> {
        if self.compressed {
            let v = self.varint()?;
            // Narrow types keep their own width, as the JVM wrote them.
            return Ok(match width {
                2 => i64::from(v as i16),
                4 => i64::from(v as i32),
                _ => v as i64,
            });
        }
        Ok(match width {
            2 => i64::from(self.be_u16()? as i16),
            4 => i64::from(self.be_u32()? as i32),
            _ => self.be_i64()?,
        })
    }

    /// An `int` (counts, indices).
    pub(super) fn i32(&mut self) -> Result<i64, FormatError> {
        self.int(4)
    }

    /// A `long`.
    pub(super) fn i64(&mut self) -> Result<i64, FormatError> {
        self.int(8)
    }

    /// A count of items that each take at least one byte: refused if more than the bytes
    /// left, so no loop or allocation runs past what the input pays for.
    pub(super) fn count(&mut self) -> Result<usize, FormatError> {
        let n = self.i32()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| {
                bad(format!(
                    "count {n} at byte {} is more than the {} bytes left",
                    self.pos,
                    self.remaining()
                ))
            })
    }

    /// A string in any of JFR's encodings.
    pub(super) fn string(&mut self) -> Result<JStr<'a>, FormatError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(JStr::Null),
            1 => Ok(JStr::Inline(Cow::Borrowed(""))),
            2 => Ok(JStr::Pool(self.i64()?)),
            3 => {
                let n = self.count()?;
                Ok(JStr::Inline(String::from_utf8_lossy(self.bytes(n)?)))
            }
            4 => {
                let n = self.count()?;
                let mut s = String::with_capacity(n);
                for _ in 0..n {
                    let c = self.int(2)? as u16;
                    s.push(char::from_u32(u32::from(c)).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                Ok(JStr::Inline(Cow::Owned(s)))
            }
            5 => {
                let n = self.count()?;
                let bytes = self.bytes(n)?;
                Ok(JStr::Inline(Cow::Owned(
                    bytes.iter().map(|&b| char::from(b)).collect(),
                )))
            }
            other => Err(bad(format!("unknown string encoding {other} at byte {at}"))),
        }
    }

    /// A string that must be inline (metadata strings).
    pub(super) fn inline_string(&mut self) -> Result<Cow<'a, str>, FormatError> {
        match self.string()? {
            JStr::Null => Ok(Cow::Borrowed("")),
            JStr::Inline(s) => Ok(s),
            JStr::Pool(_) => Err(bad("a metadata string refers to the constant pool")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_integers_take_eight_bits_in_the_ninth_byte() {
        let mut r = Reader::new(&[0x85, 0xb0, 0x03], true);
        assert_eq!(r.i64().unwrap(), 55301);
        let mut all = vec![0xff; 8];
        all.push(0xff);
        assert_eq!(Reader::new(&all, true).i64().unwrap(), -1);
        assert!(Reader::new(&[0x80, 0x80], true).i64().is_err());
    }

    #[test]
    fn counts_past_the_bytes_left_are_refused() {
        let mut r = Reader::new(&[0x7f, 1, 2], true);
        assert!(r.count().unwrap_err().to_string().contains("more than"));
        let mut r = Reader::new(&[3, 0xff, 0xff, 0x7f], true);
        assert!(r.string().is_err());
    }

    #[test]
    fn strings_in_every_encoding() {
        let bytes = [0, 1, 2, 7, 3, 2, b'h', b'i', 4, 1, 0x41, 5, 1, 0xe9];
        let mut r = Reader::new(&bytes, true);
        assert_eq!(r.string().unwrap(), JStr::Null);
        assert_eq!(r.string().unwrap(), JStr::Inline("".into()));
        assert_eq!(r.string().unwrap(), JStr::Pool(7));
        assert_eq!(r.string().unwrap(), JStr::Inline("hi".into()));
        assert_eq!(r.string().unwrap(), JStr::Inline("A".into()));
        assert_eq!(r.string().unwrap(), JStr::Inline("é".into()));
    }
}
