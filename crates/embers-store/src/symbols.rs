//! The dictionary's `symbols/` objects: names, the compacted form, and loading at start-up.
//!
//! A flush writes the entries it added as `symbols/<seq>-<frames end>-<paths end>.sym`
//! (a [`Segment`]); a collection writes every persisted entry still in use as one
//! `symbols/<seq>-full-<frames end>-<paths end>.sym`, which supersedes every object with
//! a sequence number up to its own, and only then deletes them, so a crash at any point
//! leaves a loadable dictionary. Names carry where the ids of an object end: if its bytes
//! are damaged, start-up still knows which ids it had given and never gives them again.
//! Format version 1 named segments `symbols/<seq>.sym`; they are read and migrated into
//! one compacted object on the first start-up.

use embers_profile::Frame;

use crate::dict::{read_u32, Dictionary, PathEntry, Segment, LOST};
use crate::envelope::{self, Kind};
use crate::error::StoreError;
use crate::storage::{Storage, StorageError};
use crate::tree_codec::{decode_frames, encode_frames, TreeLimits};
use crate::varint::{put_uvarint, Corrupt, Reader};

const PREFIX: &str = "symbols/";
/// Largest decompressed `symbols/` payload accepted.
const MAX_PAYLOAD: usize = 1 << 31;
/// Ids set aside after a damaged version 1 segment that no later object bounds: more
/// than any flush adds, so new ids never take one that blocks still use.
const RESERVE_AFTER_UNKNOWN_END: u32 = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    /// `symbols/<seq>.sym`, format version 1.
    V1,
    Segment,
    Full,
}

#[derive(Debug, Clone)]
struct Named {
    key: String,
    seq: u64,
    form: Form,
    /// Frame and path ids after the object's entries (unknown for version 1 names).
    ends: Option<(u32, u32)>,
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

fn parse(key: &str) -> Option<Named> {
    let name = key.strip_prefix(PREFIX)?.strip_suffix(".sym")?;
    let parts: Vec<&str> = name.split('-').collect();
    let (seq, form, ends) = match parts.as_slice() {
        [seq] => (seq, Form::V1, None),
        [seq, f, p] => (seq, Form::Segment, Some((number(f)?, number(p)?))),
        [seq, "full", f, p] => (seq, Form::Full, Some((number(f)?, number(p)?))),
        _ => return None,
    };
    Some(Named {
        key: key.to_owned(),
        seq: number(seq)?,
        form,
        ends,
    })
}

/// The key of the segment flush `seq` writes.
pub(crate) fn segment_key(seq: u64, segment: &Segment) -> String {
    let (frames, paths) = segment.ends();
    format!("{PREFIX}{seq:020}-{frames:010}-{paths:010}.sym")
}

fn full_key(seq: u64, (frames, paths): (u32, u32)) -> String {
    format!("{PREFIX}{seq:020}-full-{frames:010}-{paths:010}.sym")
}

/// A compacted object's payload and the ids after its entries.
pub(crate) struct Full {
    ends: (u32, u32),
    payload: Vec<u8>,
}

/// Encodes the persisted entries of `dict`:
/// frames end, paths end, frames (n, frame layout), n × frame id delta, then
/// n paths × (id delta, parent, frame). Deltas start from 0 and ids ascend.
pub(crate) fn encode_full(dict: &Dictionary) -> Full {
    let (frames, paths) = dict.persisted_entries();
    let (fe, pe) = dict.persisted();
    let mut out = Vec::new();
    put_uvarint(&mut out, fe as u64);
    put_uvarint(&mut out, pe as u64);
    encode_frames(frames.iter().map(|&(_, f)| f), &mut out);
    let mut previous = 0;
    for &(id, _) in &frames {
        put_uvarint(&mut out, u64::from(id - previous));
        previous = id;
    }
    put_uvarint(&mut out, paths.len() as u64);
    previous = 0;
    for &(id, parent, frame) in &paths {
        put_uvarint(&mut out, u64::from(id - previous));
        put_uvarint(&mut out, u64::from(parent));
        put_uvarint(&mut out, u64::from(frame));
        previous = id;
    }
    Full {
        ends: (fe as u32, pe as u32),
        payload: out,
    }
}

type Sparse = ((u32, u32), Vec<(u32, Frame)>, Vec<PathEntry>);

fn decode_full(bytes: &[u8]) -> Result<Sparse, Corrupt> {
    let mut r = Reader::new(bytes);
    let ends = (
        read_u32(&mut r, "frame id out of range")?,
        read_u32(&mut r, "path id out of range")?,
    );
    let frames = decode_frames(&mut r, &TreeLimits::default())?;
    let mut id = 0u32;
    let mut with_ids = Vec::with_capacity(frames.len());
    for frame in frames {
        id = id
            .checked_add(read_u32(&mut r, "frame id out of range")?)
            .filter(|&id| id < ends.0)
            .ok_or_else(|| r.corrupt("frame id out of range"))?;
        with_ids.push((id, frame));
    }
    let n = r.len(bytes.len(), "too many paths")?;
    let mut paths = Vec::with_capacity(n);
    id = 0;
    for _ in 0..n {
        id = id
            .checked_add(read_u32(&mut r, "path id out of range")?)
            .filter(|&id| id < ends.1)
            .ok_or_else(|| r.corrupt("path id out of range"))?;
        let parent = read_u32(&mut r, "parent out of range")?;
        paths.push((id, parent, read_u32(&mut r, "frame out of range")?));
    }
    if r.remaining() > 0 {
        return Err(r.corrupt("bytes after the last path"));
    }
    Ok((ends, with_ids, paths))
}

/// Why an object could not be read: damage (quarantined) or storage failing (an error).
enum ReadError {
    Damaged(String),
    Storage(StorageError),
}

fn read<T>(
    storage: &dyn Storage,
    key: &str,
    decode: impl FnOnce(&[u8]) -> Result<T, Corrupt>,
) -> Result<Option<T>, ReadError> {
    let bytes = match storage.get(key) {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(ReadError::Storage(e)),
    };
    let payload = envelope::open(Kind::Symbols, &bytes, MAX_PAYLOAD)
        .map_err(|e| ReadError::Damaged(e.to_string()))?;
    decode(&payload)
        .map(Some)
        .map_err(|e| ReadError::Damaged(e.to_string()))
}

/// Sets a damaged object aside through `isolate` (the store's quarantine) and says
/// loudly what that means here: the paths it held resolve as [`LOST`] from now on.
fn quarantine(isolate: Isolate<'_>, key: &str, why: &str) -> Result<(), StoreError> {
    tracing::error!(
        key,
        error = why,
        "damaged dictionary object: serving without it; the call paths it held show as {LOST}"
    );
    isolate(key, why)?;
    Ok(())
}

/// Moves a damaged object to quarantine (`Quarantine::isolate` at start-up).
pub(crate) type Isolate<'a> = &'a dyn Fn(&str, &str) -> Result<bool, StorageError>;

/// Loads the dictionary from `symbols/`, surviving damage: a damaged object is
/// quarantined and its ids are never given again; an id it held resolves as [`LOST`].
/// Version 1 segments are migrated into one compacted object. Fails only when the
/// storage itself fails.
pub(crate) fn load(storage: &dyn Storage, isolate: Isolate<'_>) -> Result<Dictionary, StoreError> {
    let mut named = Vec::new();
    for key in storage.list(PREFIX)? {
        match parse(&key) {
            Some(n) => named.push(n),
            None => tracing::warn!(key, "unknown object under symbols/: left in place, ignored"),
        }
    }
    named.sort_by_key(|n| (n.seq, n.form));
    let mut dict = Dictionary::default();
    let mut damaged = 0;
    let mut base = None;
    for full in named.iter().rev().filter(|n| n.form == Form::Full) {
        match read(storage, &full.key, decode_full) {
            Ok(Some((ends, frames, paths))) => {
                dict.insert_sparse(frames, paths);
                dict.reserve(ends);
                base = Some(full.seq);
                break;
            }
            Ok(None) => {}
            Err(ReadError::Storage(e)) => return Err(e.into()),
            Err(ReadError::Damaged(why)) => {
                quarantine(isolate, &full.key, &why)?;
                damaged += 1;
                dict.reserve(full.ends.unwrap_or_default());
            }
        }
    }
    let superseded = |n: &Named| base.is_some_and(|b| n.seq <= b);
    let mut migrate = false;
    let mut unknown_end = false;
    for n in named
        .iter()
        .filter(|n| n.form != Form::Full && !superseded(n))
    {
        migrate |= n.form == Form::V1;
        match read(storage, &n.key, Segment::decode) {
            Ok(Some(segment)) => {
                let (_, known) = dict.len();
                if segment.first_path > known {
                    tracing::error!(
                        key = n.key,
                        lost_paths = segment.first_path - known,
                        "dictionary entries before this object are missing; their paths show as {LOST}"
                    );
                }
                dict.insert(segment);
                unknown_end = false;
            }
            Ok(None) => {}
            Err(ReadError::Storage(e)) => return Err(e.into()),
            Err(ReadError::Damaged(why)) => {
                quarantine(isolate, &n.key, &why)?;
                damaged += 1;
                match n.ends {
                    Some(ends) => dict.reserve(ends),
                    None => unknown_end = true,
                }
            }
        }
    }
    if unknown_end {
        let (frames, paths) = dict.len();
        let reserve = |n: usize| (n as u32).saturating_add(RESERVE_AFTER_UNKNOWN_END);
        dict.reserve((reserve(frames), reserve(paths)));
    }
    dict.loaded(damaged);
    if migrate {
        tracing::info!("migrating the format version 1 dictionary into one version 2 object");
        replace_with_full(storage, encode_full(&dict))?;
    } else {
        let is_base = |n: &Named| n.form == Form::Full && Some(n.seq) == base;
        for n in named.iter().filter(|n| superseded(n) && !is_base(n)) {
            storage.delete(&n.key)?;
        }
    }
    Ok(dict)
}

/// Reads every `symbols/` object whole without changing anything (for `embers fsck`):
/// `report` gets each key with what is wrong with it, if anything. Returns the path id
/// after the last entry any intact object names: blocks must use only ids below it.
pub(crate) fn check(
    storage: &dyn Storage,
    report: &mut dyn FnMut(&str, Result<(), String>),
) -> Result<usize, StoreError> {
    let mut paths_end = 1;
    for key in storage.list(PREFIX)? {
        let Some(named) = parse(&key) else {
            report(
                &key,
                Err("not a dictionary object name this version writes".into()),
            );
            continue;
        };
        let end = match named.form {
            Form::Full => {
                read(storage, &key, decode_full).map(|o| o.map(|(ends, _, _)| ends.1 as usize))
            }
            Form::V1 | Form::Segment => {
                read(storage, &key, Segment::decode).map(|o| o.map(|segment| segment.ends().1))
            }
        };
        match end {
            Ok(Some(end)) => {
                paths_end = paths_end.max(end);
                report(&key, Ok(()));
            }
            Ok(None) => {}
            Err(ReadError::Storage(e)) => return Err(e.into()),
            Err(ReadError::Damaged(why)) => report(&key, Err(why)),
        }
    }
    Ok(paths_end)
}

/// Writes `full` as the object superseding every `symbols/` object there is, then
/// deletes them. The caller holds the flush lock, so the objects listed are exactly
/// those holding the persisted entries `full` was built from. Returns the bytes written
/// (0 when there was nothing to replace).
pub(crate) fn replace_with_full(storage: &dyn Storage, full: Full) -> Result<usize, StoreError> {
    let old: Vec<Named> = storage
        .list(PREFIX)?
        .iter()
        .filter_map(|k| parse(k))
        .collect();
    let Some(seq) = old.iter().map(|n| n.seq).max() else {
        return Ok(0);
    };
    let key = full_key(seq, full.ends);
    let bytes = envelope::seal(Kind::Symbols, &full.payload, true);
    storage.put(&key, &bytes)?;
    for n in old.iter().filter(|n| n.key != key) {
        storage.delete(&n.key)?;
    }
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::Quarantine;
    use crate::storage::MemoryStorage;
    use crate::store::Stats;
    use embers_profile::StackTree;

    #[test]
    fn names_parse_and_carry_their_ends() {
        let n = parse("symbols/00000000000000000007-0000000003-0000000009.sym").unwrap();
        assert_eq!((n.seq, n.form, n.ends), (7, Form::Segment, Some((3, 9))));
        let n = parse("symbols/00000000000000000007-full-0000000003-0000000009.sym").unwrap();
        assert_eq!((n.form, n.ends), (Form::Full, Some((3, 9))));
        assert_eq!(
            parse("symbols/00000000000000000001.sym").unwrap().form,
            Form::V1
        );
        for bad in [
            "symbols/x.sym",
            "symbols/1-+2-3.sym",
            "symbols/1-half-2-3.sym",
            "l0/1.sym",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn compacted_object_round_trips_sparse_ids() {
        let mut d = Dictionary::default();
        let mut t = StackTree::new();
        t.add_frames([&Frame::named("main"), &Frame::at("f", "f.rs", Some(3))], 9);
        let pairs = d.intern_tree(&t);
        d.mark_persisted(&d.segment((0, 0), d.len()));
        let storage = MemoryStorage::default();
        storage
            .put(
                "symbols/00000000000000000004.sym",
                &envelope::seal(Kind::Symbols, &d.segment((0, 0), d.len()).encode(), true),
            )
            .unwrap();
        // Loading a version 1 segment migrates it into one compacted object.
        let loaded = load(&storage, &|_, reason| {
            panic!("nothing is damaged: {reason}")
        })
        .unwrap();
        let keys = storage.list(PREFIX).unwrap();
        assert_eq!(keys, vec![full_key(4, (2, 3))]);
        let mut back = StackTree::new();
        let map: embers_profile::FxHashMap<u32, u64> = pairs.iter().copied().collect();
        loaded.add_to_tree(&map, &mut back);
        assert_eq!(back.to_sorted_stacks(), t.to_sorted_stacks());
        assert_eq!(loaded.len(), d.len());
        let (ends, frames, paths) = decode_full(&encode_full(&loaded).payload).unwrap();
        assert_eq!((ends, frames.len(), paths.len()), ((2, 3), 2, 2));
        let payload = encode_full(&loaded).payload;
        for cut in 0..payload.len() {
            assert!(decode_full(&payload[..cut]).is_err());
        }
        // Flipped bits decode to an error or to some entries, never a panic.
        for i in 0..payload.len() {
            for bit in 0..8 {
                let mut bad = payload.clone();
                bad[i] ^= 1 << bit;
                let _ = decode_full(&bad);
            }
        }
    }

    #[test]
    fn a_damaged_version_1_segment_without_a_successor_sets_ids_aside() {
        let mut d = Dictionary::default();
        let mut t = StackTree::new();
        t.add_frames([&Frame::named("main"), &Frame::named("a")], 1);
        d.intern_tree(&t);
        let first = d.segment((0, 0), d.len());
        d.mark_persisted(&first);
        t.add_frames([&Frame::named("main"), &Frame::named("b")], 1);
        d.intern_tree(&t);
        let second = d.segment(d.persisted(), d.len());
        let seal = |s: &Segment| envelope::seal(Kind::Symbols, &s.encode(), true);
        let mut damaged = seal(&second);
        let mid = damaged.len() / 2;
        damaged[mid] ^= 1;
        for (second_is_last, reserved) in [(true, true), (false, false)] {
            let storage = MemoryStorage::default();
            storage
                .put("symbols/00000000000000000001.sym", &seal(&first))
                .unwrap();
            storage
                .put("symbols/00000000000000000002.sym", &damaged)
                .unwrap();
            if !second_is_last {
                let third = Segment {
                    first_frame: 3,
                    frames: vec![Frame::named("c")],
                    first_path: 4,
                    paths: vec![(1, 3)],
                };
                storage
                    .put("symbols/00000000000000000003.sym", &seal(&third))
                    .unwrap();
            }
            let quarantine = Quarantine::load(&storage).unwrap();
            let stats = Stats::default();
            let loaded = load(&storage, &|key, reason| {
                quarantine.isolate(&storage, &stats, key, reason, false)
            })
            .unwrap();
            assert_eq!(loaded.damaged_objects(), 1);
            assert_eq!(loaded.len().1 > 1 << 24, reserved, "{:?}", loaded.len());
            assert!(loaded.len().1 >= 4);
            let moved = quarantine.all();
            assert_eq!(moved.len(), 1);
            assert_eq!(moved[0].key, "symbols/00000000000000000002.sym");
            assert!(storage.get(&moved[0].moved_to).is_ok());
            assert!(storage.get("symbols/00000000000000000002.sym").is_err());
        }
    }
}
