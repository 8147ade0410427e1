//! Chunks and the events in them. A recording is one or more self-contained chunks, one
//! after the other; each starts with a 68-byte header that gives its size, where its
//! metadata event is and whether its integers are compressed. Events are size-prefixed,
//! so they can be walked without understanding them.

use super::reader::{bad, Reader};
use crate::FormatError;

const MAGIC: &[u8; 4] = b"FLR\0";
const HEADER_BYTES: usize = 68;

/// Event type ids with a fixed meaning.
pub(super) const METADATA: i64 = 0;
pub(super) const CHECKPOINT: i64 = 1;

/// One chunk: its bytes (header included) and what its header says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) metadata_offset: usize,
    pub(super) ticks_per_second: i64,
    pub(super) compressed: bool,
}

impl<'a> Chunk<'a> {
    pub(super) fn reader(&self) -> Reader<'a> {
        Reader::new(self.bytes, self.compressed)
    }

    /// The events of the chunk, in order: `(type id, reader at its first field)`; the
    /// reader covers exactly the event's bytes.
    pub(super) fn events(&self) -> Events<'a> {
        Events {
            chunk: *self,
            at: HEADER_BYTES,
        }
    }
}

/// Splits a recording into its chunks.
pub(super) fn chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, FormatError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut r = Reader::new(&bytes[at..], false);
        if r.bytes(4).ok() != Some(&MAGIC[..]) {
            return Err(bad(if at == 0 {
                "not a JFR recording (no FLR magic)".to_owned()
            } else {
                format!("chunk at byte {at} has no FLR magic")
            }));
        }
        let (major, minor) = (r.be_u16()?, r.be_u16()?);
        if major != 2 {
            return Err(bad(format!(
                "JFR version {major}.{minor} is not supported (JDK 11 and later and async-profiler write 2.x)"
            )));
        }
        let size = r.be_i64()?;
        let _constant_pool_offset = r.be_i64()?;
        let metadata_offset = r.be_i64()?;
        let _start_nanos = r.be_i64()?;
        let _duration_nanos = r.be_i64()?;
        let _start_ticks = r.be_i64()?;
        let ticks_per_second = r.be_i64()?;
        let _features = r.be_u32()?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s >= HEADER_BYTES && s <= bytes.len() - at)
            .ok_or_else(|| {
                bad(format!(
                    "chunk at byte {at} says it has {size} bytes; {} are left (truncated recording?)",
                    bytes.len() - at
                ))
            })?;
        let metadata_offset = usize::try_from(metadata_offset)
            .ok()
            .filter(|&m| m >= HEADER_BYTES && m < size)
            .ok_or_else(|| bad(format!("chunk at byte {at}: metadata offset out of range")))?;
        out.push(Chunk {
            bytes: &bytes[at..at + size],
            metadata_offset,
            ticks_per_second,
            // Feature bit 0 says integers are compressed. The JDK has set it since
            // JDK 11; Grafana's jfr-parser and async-profiler's own reader read
            // compressed integers whatever it says, so we do too.
            compressed: true,
        });
        at += size;
    }
    if out.is_empty() {
        return Err(bad("empty recording"));
    }
    Ok(out)
}

/// Iterator over a chunk's events; see [`Chunk::events`].
#[derive(Debug)]
pub(super) struct Events<'a> {
    chunk: Chunk<'a>,
    at: usize,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(i64, Reader<'a>), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.chunk.bytes.len() {
            return None;
        }
        let start = self.at;
        let mut header = self.chunk.reader();
        let event = header.seek(start).and_then(|()| {
            let size = header.i32()?;
            let end = usize::try_from(size)
                .ok()
                .filter(|&s| s > 0)
                .and_then(|s| start.checked_add(s))
                .filter(|&e| e <= self.chunk.bytes.len())
                .ok_or_else(|| {
                    bad(format!(
                        "event at byte {start} has size {size} past the chunk"
                    ))
                })?;
            let ty = header.i64()?;
            if header.pos() > end {
                return Err(bad(format!(
                    "event at byte {start} is shorter than its header"
                )));
            }
            let mut body = Reader::new(&self.chunk.bytes[..end], self.chunk.compressed);
            body.seek(header.pos())?;
            Ok((end, ty, body))
        });
        match event {
            Ok((end, ty, body)) => {
                self.at = end;
                Some(Ok((ty, body)))
            }
            Err(e) => {
                self.at = self.chunk.bytes.len();
                Some(Err(e))
            }
        }
    }
}
