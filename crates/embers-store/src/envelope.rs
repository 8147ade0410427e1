//! The frame around every object the store writes: magic, format version, compression,
//! payload, checksum. A reader knows from the first bytes what a file is and whether it
//! can read it, and a torn or bit-flipped object is detected instead of misread.
//!
//! ```text
//! magic     8 bytes, names the kind of object ("EMBERSB\0" blocks, "EMBERSC\0" catalogs
//!           and the flush marker, "EMBERSY\0" dictionary segments, "EMBERSP\0" span
//!           pairs, "EMBERSA\0" ad-hoc profiles)
//! version   u16 LE  FORMAT_VERSION of the writer
//! codec     u8      0 = payload stored as is, 1 = DEFLATE (raw, no zlib header)
//! reserved  u8      0
//! payload   …
//! crc32     u32 LE  CRC-32 (IEEE) of every byte before it
//! ```

use std::io::{Read, Write};

/// Version written by this build; bump it when a layout changes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest version this build still reads (version 1 blocks and catalogs have the
/// layout of version 2; version 1 `symbols/` segments are migrated on open).
pub const OLDEST_SUPPORTED: u16 = 1;

const HEADER: usize = 12;

/// Why an object could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not one of ours, or another kind of object.
    #[error("not an Embers {0} object (bad magic)")]
    Magic(&'static str),
    /// Written by a newer or a too old Embers.
    #[error("format version {found} is not supported (this build reads {OLDEST_SUPPORTED}..={FORMAT_VERSION})")]
    Version {
        /// The version in the file.
        found: u16,
    },
    /// Truncated or damaged.
    #[error("damaged object: {0}")]
    Damaged(&'static str),
}

/// Object kinds and their magic numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A block of trees (leaf runs and aggregates).
    Block,
    /// A series catalog.
    Catalog,
    /// A segment of the frame and call-path dictionary.
    Symbols,
    /// The span pairs of a flushed run of leaves (`spans.rs`).
    Spans,
    /// An uploaded ad-hoc profile file (`adhoc.rs`).
    AdHoc,
}

impl Kind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Kind::Block => b"EMBERSB\0",
            Kind::Catalog => b"EMBERSC\0",
            Kind::Symbols => b"EMBERSY\0",
            Kind::Spans => b"EMBERSP\0",
            Kind::AdHoc => b"EMBERSA\0",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Catalog => "catalog",
            Kind::Symbols => "symbols",
            Kind::Spans => "spans",
            Kind::AdHoc => "ad-hoc profile",
        }
    }
}

/// Wraps `payload`, compressing it when `compress` is set.
pub fn seal(kind: Kind, payload: &[u8], compress: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() / 2 + HEADER + 4);
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(u8::from(compress));
    out.push(0);
    if compress {
        let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
        enc.write_all(payload)
            .expect("writing to a Vec cannot fail");
        out = enc.finish().expect("writing to a Vec cannot fail");
    } else {
        out.extend_from_slice(payload);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks and unwraps an object written by [`seal`]; `max_payload` bounds decompression.
pub fn open(kind: Kind, bytes: &[u8], max_payload: usize) -> Result<Vec<u8>, EnvelopeError> {
    if bytes.len() < HEADER + 4 {
        return Err(if bytes.starts_with(kind.magic()) || bytes.len() < 8 {
            EnvelopeError::Damaged("shorter than its header")
        } else {
            EnvelopeError::Magic(kind.name())
        });
    }
    if &bytes[..8] != kind.magic() {
        return Err(EnvelopeError::Magic(kind.name()));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(OLDEST_SUPPORTED..=FORMAT_VERSION).contains(&version) {
        return Err(EnvelopeError::Version { found: version });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(EnvelopeError::Damaged("checksum mismatch"));
    }
    let payload = &body[HEADER..];
    match bytes[10] {
        0 => Ok(payload.to_vec()),
        1 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(payload)
                .take(max_payload as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| EnvelopeError::Damaged("bad DEFLATE stream"))?;
            if out.len() > max_payload {
                return Err(EnvelopeError::Damaged("payload larger than the limit"));
            }
            Ok(out)
        }
        _ => Err(EnvelopeError::Damaged("unknown codec")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_codecs() {
        for compress in [false, true] {
            let sealed = seal(Kind::Block, b"hello hello hello", compress);
            assert_eq!(
                open(Kind::Block, &sealed, 1 << 20).unwrap(),
                b"hello hello hello"
            );
        }
    }

    #[test]
    fn damage_is_detected() {
        let sealed = seal(Kind::Block, b"payload", true);
        assert_eq!(
            open(Kind::Catalog, &sealed, 1 << 20),
            Err(EnvelopeError::Magic("catalog"))
        );
        for cut in 0..sealed.len() {
            assert!(
                open(Kind::Block, &sealed[..cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(open(Kind::Block, &bad, 1 << 20).is_err(), "flip {i}");
        }
        let mut future = sealed.clone();
        future[8] = 9;
        assert!(matches!(
            open(Kind::Block, &future, 1 << 20),
            Err(EnvelopeError::Magic(_)
                | EnvelopeError::Version { .. }
                | EnvelopeError::Damaged(_))
        ));
    }

    #[test]
    fn decompression_is_bounded() {
        let sealed = seal(Kind::Block, &vec![0u8; 1 << 20], true);
        assert!(sealed.len() < 10_000);
        assert_eq!(
            open(Kind::Block, &sealed, 1000),
            Err(EnvelopeError::Damaged("payload larger than the limit"))
        );
    }
}
