//! The write-ahead log: what was acknowledged but is not in a block object yet.
//!
//! Segments are files `wal/<seq>.wal` in the data directory (always local disk, even when
//! block objects go to an object store). A segment holds framed records:
//! ```text
//! header   "EMBERSW\0", u16 LE format version
//! record   u32 LE payload length, u32 LE CRC-32 of the payload, payload
//! ```
//! Records are appended and fsynced in groups (one fsync for every ingest that arrived
//! while the previous fsync ran), so throughput does not pay one fsync per request.
//! A crash can tear only the tail of the last segment; replay stops at the first record
//! whose length or checksum does not hold.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::envelope::FORMAT_VERSION;

const MAGIC: &[u8; 8] = b"EMBERSW\0";
/// Largest record accepted on replay (a bound against a damaged length).
const MAX_RECORD: usize = 1 << 30;

/// The open segment that records are appended to.
#[derive(Debug)]
pub struct Segment {
    file: File,
    /// Its sequence number.
    pub seq: u64,
}

/// Path of segment `seq`.
fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Sequence numbers of the segments in `dir`, sorted.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name.strip_suffix(".wal").and_then(|s| s.parse().ok()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Segment {
    /// Creates segment `seq` (which must not exist) and makes its name durable.
    pub fn create(dir: &Path, seq: u64) -> io::Result<Segment> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path(dir, seq))?;
        file.write_all(MAGIC)?;
        file.write_all(&FORMAT_VERSION.to_le_bytes())?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(Segment { file, seq })
    }

    /// Writes framed records and makes them durable.
    pub fn write_durably(&mut self, framed: &[u8]) -> io::Result<()> {
        if framed.is_empty() {
            return Ok(());
        }
        self.file.write_all(framed)?;
        self.file.sync_data()
    }
}

/// Appends one framed record for `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("WAL record under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Intact records, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes after the last intact record (a torn tail, or damage).
    pub dropped_bytes: usize,
}

/// Reads the records of segment `seq`.
pub fn read(dir: &Path, seq: u64) -> io::Result<Replay> {
    let mut bytes = Vec::new();
    File::open(path(dir, seq))?.read_to_end(&mut bytes)?;
    let mut replay = Replay::default();
    let header = MAGIC.len() + 2;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        replay.dropped_bytes = bytes.len();
        return Ok(replay);
    }
    let mut at = header;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + 8;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        replay.records.push(payload.to_vec());
        at = start + len;
    }
    replay.dropped_bytes = bytes.len() - at;
    Ok(replay)
}

/// Removes segment `seq`.
pub fn remove(dir: &Path, seq: u64) -> io::Result<()> {
    match std::fs::remove_file(path(dir, seq)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 7).unwrap();
        let mut buf = Vec::new();
        frame(b"one", &mut buf);
        frame(b"two", &mut buf);
        seg.write_durably(&buf).unwrap();
        let mut torn = Vec::new();
        frame(b"three", &mut torn);
        seg.write_durably(&torn[..torn.len() - 2]).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![7]);
        let replay = read(dir.path(), 7).unwrap();
        assert_eq!(replay.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(replay.dropped_bytes, torn.len() - 2);
        assert!(
            Segment::create(dir.path(), 7).is_err(),
            "never reopens a segment"
        );
        remove(dir.path(), 7).unwrap();
        remove(dir.path(), 7).unwrap();
        assert!(segments(dir.path()).unwrap().is_empty());
    }
}
