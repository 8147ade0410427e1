//! The write-ahead log: what was acknowledged but is not in a block object yet.
//!
//! Segments are files `wal/<seq>.wal` in the data directory (always local disk, even when
//! block objects go to an object store). A segment holds framed records:
//! ```text
//! header   "EMBERSW\0", u16 LE WAL version (2)
//! record   "\xEBWAL" sync marker, u32 LE payload length,
//!          u32 LE CRC-32 of (length bytes ++ payload), payload
//! ```
//! Records are appended and fsynced in groups (one fsync for every ingest that arrived
//! while the previous fsync ran), so throughput does not pay one fsync per request.
//!
//! The sync marker lets replay lose only what is damaged: where a record does not hold
//! (bad marker, length or checksum), replay scans forward to the next marker that starts an
//! intact record and goes on from there, reporting the bytes it skipped ([`Lost`]).
//! Segments of version 1 (no marker) are still read the old way: up to the first record
//! that does not hold.
//!
//! A failed write never leaves its bytes behind: [`Segment::write_durably`] truncates the
//! segment back to its last durable length before it returns the error (and, if even that
//! fails, before the next write), so a refused record cannot come back on replay.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EMBERSW\0";
/// Version of the framing this build writes.
pub const WAL_VERSION: u16 = 2;
/// The first framing (length, checksum, payload; no sync marker); still read.
const LEGACY_VERSION: u16 = 1;
const HEADER: usize = MAGIC.len() + 2;
/// Starts every version-2 record; what replay scans for after damage.
const SYNC: &[u8; 4] = b"\xEBWAL";
/// Marker, length, checksum.
const RECORD_HEADER: usize = 12;
/// Largest record accepted on replay (a bound against a damaged length).
const MAX_RECORD: usize = 1 << 30;

/// The open segment that records are appended to.
#[derive(Debug)]
pub struct Segment {
    file: File,
    /// Its sequence number.
    pub seq: u64,
    /// Bytes known durable: everything past it is from a failed write.
    durable: u64,
    /// A write failed and truncating its bytes away failed too: do that before writing.
    dirty: bool,
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
    /// Creates segment `seq` (which must not hold records) and makes its name durable.
    /// A file left by an earlier attempt that failed before any record (a full disk while
    /// writing the header) is replaced, so a retry is not stuck on "already exists".
    pub fn create(dir: &Path, seq: u64) -> io::Result<Segment> {
        let at = path(dir, seq);
        let file = match OpenOptions::new().write(true).create_new(true).open(&at) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if std::fs::metadata(&at)?.len() > HEADER as u64 {
                    return Err(e);
                }
                std::fs::remove_file(&at)?;
                OpenOptions::new().write(true).create_new(true).open(&at)?
            }
            other => other?,
        };
        let mut segment = Segment {
            file,
            seq,
            durable: 0,
            dirty: false,
        };
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&WAL_VERSION.to_le_bytes());
        let made = segment
            .write_durably(&header)
            .and_then(|()| File::open(dir)?.sync_all());
        match made {
            Ok(()) => Ok(segment),
            Err(e) => {
                drop(segment);
                let _ = std::fs::remove_file(&at);
                Err(e)
            }
        }
    }

    /// Writes framed records and makes them durable. On failure the segment is cut back
    /// to what was durable before, so nothing of this write can be replayed later.
    pub fn write_durably(&mut self, framed: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.truncate_to_durable()?;
        }
        if framed.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all(framed)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.durable += framed.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.dirty = true;
                // Best effort now; if it fails, the next write retries it first.
                let _ = self.truncate_to_durable();
                Err(e)
            }
        }
    }

    fn truncate_to_durable(&mut self) -> io::Result<()> {
        self.file.set_len(self.durable)?;
        self.file.sync_data()?;
        self.file.seek(SeekFrom::Start(self.durable))?;
        self.dirty = false;
        Ok(())
    }
}

/// Appends one framed record for `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("WAL record under 4 GiB");
    out.extend_from_slice(SYNC);
    out.extend_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Bytes of a segment that replay could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Offset in the segment file of the first byte skipped.
    pub offset: usize,
    /// How many bytes were skipped.
    pub bytes: usize,
    /// How many records they held, at least (sync markers seen; one if none).
    pub records: usize,
    /// Nothing intact follows: the end of a write a crash tore, normal after a crash.
    /// Otherwise intact records follow, so this is damage, and data was lost.
    pub tail: bool,
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Intact records, in order.
    pub records: Vec<Vec<u8>>,
    /// What could not be read, in order.
    pub lost: Vec<Lost>,
}

impl Replay {
    /// Says loudly what replaying segment `seq` lost: a torn tail is expected after a
    /// crash (the write was never acknowledged), damage before intact records is data
    /// loss (acknowledged records are gone).
    pub fn log_losses(&self, seq: u64) {
        for lost in &self.lost {
            if lost.tail {
                tracing::warn!(
                    segment = seq,
                    offset = lost.offset,
                    bytes = lost.bytes,
                    "ignored a torn tail of a WAL segment (a write cut short by a crash; it was never acknowledged)"
                );
            } else {
                tracing::error!(
                    segment = seq,
                    offset = lost.offset,
                    bytes = lost.bytes,
                    records = lost.records,
                    "DATA LOSS: damaged WAL records in the middle of a segment were skipped; replay went on with the next intact record"
                );
            }
        }
    }
}

/// Reads the records of segment `seq`.
pub fn read(dir: &Path, seq: u64) -> io::Result<Replay> {
    let mut bytes = Vec::new();
    File::open(path(dir, seq))?.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        let mut replay = Replay::default();
        if !bytes.is_empty() {
            replay.lost.push(Lost {
                offset: 0,
                bytes: bytes.len(),
                records: 0,
                tail: true,
            });
        }
        return Ok(replay);
    }
    match u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]) {
        WAL_VERSION => Ok(read_framed(&bytes)),
        LEGACY_VERSION => Ok(read_legacy(&bytes)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("WAL segment {seq} has version {other}, this build reads 1 and 2"),
        )),
    }
}

/// The payload of an intact version-2 record at `at`, and where the next one starts.
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at + RECORD_HEADER)?;
    if &head[..4] != SYNC {
        return None;
    }
    let len_bytes: [u8; 4] = head[4..8].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let start = at + RECORD_HEADER;
    if len > MAX_RECORD || bytes.len() - start < len {
        return None;
    }
    let payload = &bytes[start..start + len];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    (hasher.finalize() == crc).then_some((payload, start + len))
}

fn find_sync(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(SYNC.len())
        .position(|w| w == SYNC)
        .map(|p| from + p)
}

fn read_framed(bytes: &[u8]) -> Replay {
    let mut replay = Replay::default();
    let mut at = HEADER;
    let mut damaged_from = None;
    let lost = |from: usize, to: usize, tail: bool| Lost {
        offset: from,
        bytes: to - from,
        records: bytes[from..to]
            .windows(SYNC.len())
            .filter(|w| w == SYNC)
            .count()
            .max(1),
        tail,
    };
    while at < bytes.len() {
        match record_at(bytes, at) {
            Some((payload, next)) => {
                if let Some(from) = damaged_from.take() {
                    replay.lost.push(lost(from, at, false));
                }
                replay.records.push(payload.to_vec());
                at = next;
            }
            None => {
                damaged_from.get_or_insert(at);
                at = find_sync(bytes, at + 1).unwrap_or(bytes.len());
            }
        }
    }
    if let Some(from) = damaged_from {
        replay.lost.push(lost(from, bytes.len(), true));
    }
    replay
}

/// Version 1: length, checksum, payload; replay stops at the first record that does not
/// hold, since without a marker there is no telling where the next one starts.
fn read_legacy(bytes: &[u8]) -> Replay {
    let mut replay = Replay::default();
    let mut at = HEADER;
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
    if at < bytes.len() {
        replay.lost.push(Lost {
            offset: at,
            bytes: bytes.len() - at,
            records: 1,
            tail: true,
        });
    }
    replay
}

/// Whether the WAL directory takes writes again after a failure: writes and fsyncs
/// 64 KiB to a scratch file (not a segment), then removes it. A few bytes would fit in
/// the slack of a file's last block on a full disk and say nothing.
pub fn probe(dir: &Path) -> io::Result<()> {
    let at = dir.join("probe.tmp");
    let written = File::create(&at).and_then(|mut f| {
        f.write_all(&[0; 64 << 10])?;
        f.sync_data()
    });
    let removed = std::fs::remove_file(&at);
    written.and(removed)
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

    fn records(names: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for name in names {
            frame(name, &mut buf);
        }
        buf
    }

    #[test]
    fn records_survive_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 7).unwrap();
        seg.write_durably(&records(&[b"one", b"two"])).unwrap();
        let torn = records(&[b"three"]);
        seg.write_durably(&torn[..torn.len() - 2]).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![7]);
        let replay = read(dir.path(), 7).unwrap();
        assert_eq!(replay.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(replay.lost.len(), 1);
        assert_eq!(replay.lost[0].bytes, torn.len() - 2);
        assert!(replay.lost[0].tail);
        assert!(
            Segment::create(dir.path(), 7).is_err(),
            "never reopens a segment"
        );
        remove(dir.path(), 7).unwrap();
        remove(dir.path(), 7).unwrap();
        assert!(segments(dir.path()).unwrap().is_empty());
    }

    /// Regression: one flipped byte in the middle of a segment dropped every later record.
    #[test]
    fn a_damaged_record_in_the_middle_loses_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        let names: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("record {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        seg.write_durably(&records(&refs)).unwrap();
        drop(seg);
        let file = path(dir.path(), 1);
        let mut bytes = std::fs::read(&file).unwrap();
        let one = RECORD_HEADER + names[0].len();
        // For each part of record 7 (marker, length, checksum, payload), flip one byte.
        for offset_in_record in [1, 5, 9, RECORD_HEADER + 2] {
            let mut damaged = bytes.clone();
            damaged[HEADER + 7 * one + offset_in_record] ^= 0x40;
            std::fs::write(&file, &damaged).unwrap();
            let replay = read(dir.path(), 1).unwrap();
            let mut expected = names.clone();
            expected.remove(7);
            assert_eq!(replay.records, expected, "flipped byte {offset_in_record}");
            assert_eq!(
                replay.lost,
                vec![Lost {
                    offset: HEADER + 7 * one,
                    bytes: one,
                    records: 1,
                    tail: false
                }]
            );
        }
        // Damage spanning two records loses both, and says so.
        bytes[HEADER + 3 * one + 6] ^= 1;
        bytes[HEADER + 4 * one + 6] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let replay = read(dir.path(), 1).unwrap();
        assert_eq!(replay.records.len(), 18);
        assert_eq!(replay.lost.len(), 1);
        assert_eq!(replay.lost[0].records, 2);
        assert!(!replay.lost[0].tail);
    }

    #[test]
    fn version_1_segments_are_read_the_old_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&LEGACY_VERSION.to_le_bytes());
        for payload in [&b"old one"[..], b"old two"] {
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        bytes.extend_from_slice(b"torn");
        std::fs::write(path(dir.path(), 3), &bytes).unwrap();
        let replay = read(dir.path(), 3).unwrap();
        assert_eq!(
            replay.records,
            vec![b"old one".to_vec(), b"old two".to_vec()]
        );
        assert_eq!(replay.lost.len(), 1);
        assert!(replay.lost[0].tail);

        bytes[MAGIC.len()] = 9;
        std::fs::write(path(dir.path(), 3), &bytes).unwrap();
        assert!(
            read(dir.path(), 3).is_err(),
            "an unknown version is not skipped"
        );
    }

    #[test]
    fn a_segment_left_by_a_failed_create_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path(), 4), &MAGIC[..3]).unwrap();
        let mut seg = Segment::create(dir.path(), 4).unwrap();
        seg.write_durably(&records(&[b"x"])).unwrap();
        assert_eq!(read(dir.path(), 4).unwrap().records, vec![b"x".to_vec()]);
    }
}
