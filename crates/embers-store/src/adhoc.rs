//! Ad-hoc profiles: files people upload to look at once (`adhocprofiles.v1`, the UI's
//! Upload view), kept apart from the time series.
//!
//! Each upload is one object `adhoc/<ULID>-<object bytes>-<name>` through the same
//! [`Storage`] as the store's data, so a directory or an object store keeps them alike.
//! The ULID (48-bit milliseconds, 80 random bits, Crockford base32) makes keys sort by
//! upload time and gives Grafana Pyroscope's ID shape `<ULID>-<name>`; the object's size
//! in the key lets eviction count bytes from a listing, without reading objects. The
//! store's recovery leaves `adhoc/` alone (it is not one of its prefixes).
//!
//! Uploads are bounded in count and bytes ([`AdHocLimits`]); an upload that would go
//! over drops the oldest first. The object is the file as uploaded, in an envelope
//! (magic `EMBERSA\0`, version, CRC; `docs/storage-format.md`), after the name and time.

use std::sync::{Arc, Mutex};

use crate::envelope::{self, Kind};
use crate::storage::{Storage, StorageError};
use crate::store::lock;

const PREFIX: &str = "adhoc/";
const ULID_LEN: usize = 26;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Bounds on the uploads kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdHocLimits {
    /// Most uploads kept; the oldest go first.
    pub max_profiles: usize,
    /// Most bytes kept over every upload (objects as stored); the oldest go first.
    pub max_bytes: u64,
}

impl Default for AdHocLimits {
    fn default() -> Self {
        AdHocLimits {
            max_profiles: 100,
            max_bytes: 256 << 20,
        }
    }
}

impl AdHocLimits {
    /// Limits of `max_profiles` uploads and `max_bytes` bytes.
    pub fn new(max_profiles: usize, max_bytes: u64) -> Self {
        AdHocLimits {
            max_profiles,
            max_bytes,
        }
    }
}

/// Why an ad-hoc operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdHocError {
    /// The ID is not one this store hands out.
    #[error("id {0:?} is invalid: an ad-hoc profile id is `<ULID>-<name>` of [a-zA-Z0-9._-]")]
    InvalidId(String),
    /// No upload with that ID (never uploaded, or dropped to stay within the limits).
    #[error("no ad-hoc profile {0:?} (never uploaded, or dropped as the oldest)")]
    NotFound(String),
    /// One file is larger than everything the limits allow.
    #[error("the file takes {size} bytes stored, over adhoc.max_bytes ({limit})")]
    TooLarge {
        /// The object's size.
        size: u64,
        /// [`AdHocLimits::max_bytes`].
        limit: u64,
    },
    /// The object is damaged.
    #[error("ad-hoc profile {id:?} is damaged: {why}")]
    Damaged {
        /// Its ID.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An upload's listing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdHocEntry {
    /// `<ULID>-<name>`.
    pub id: String,
    /// The name, with characters outside `[a-zA-Z0-9._-]` replaced by `_`.
    pub name: String,
    /// Upload time, Unix milliseconds.
    pub uploaded_at_ms: i64,
}

/// An upload: its entry and the file's bytes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdHocUpload {
    /// Its listing entry.
    pub entry: AdHocEntry,
    /// The file as uploaded.
    pub data: Vec<u8>,
}

/// The uploaded profiles of one store.
#[derive(Debug)]
pub struct AdHocProfiles {
    storage: Arc<dyn Storage>,
    limits: AdHocLimits,
    /// Serializes uploads, so eviction sees every object another upload wrote.
    writing: Mutex<()>,
}

/// A key parsed: (ULID, object bytes, name).
fn parse_key(key: &str) -> Option<(&str, u64, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let ulid = rest.get(..ULID_LEN)?;
    let rest = rest.get(ULID_LEN..)?.strip_prefix('-')?;
    let (size, name) = rest.split_once('-')?;
    ulid_millis(ulid)?;
    Some((ulid, size.parse().ok()?, name))
}

/// The milliseconds of a ULID, if it is one.
fn ulid_millis(ulid: &str) -> Option<i64> {
    if ulid.len() != ULID_LEN || ulid.as_bytes()[0] > b'7' {
        return None;
    }
    let mut v: u128 = 0;
    for c in ulid.bytes() {
        let d = CROCKFORD.iter().position(|&x| x == c)?;
        v = (v << 5) | d as u128;
    }
    i64::try_from(v >> 80).ok()
}

fn ulid(millis: i64) -> String {
    let random = (u128::from(fastrand::u64(..)) << 16) | u128::from(fastrand::u16(..));
    let v = (u128::from(millis.max(0) as u64 & ((1 << 48) - 1)) << 80) | random;
    (0..ULID_LEN)
        .rev()
        .map(|i| CROCKFORD[((v >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// `name` with every character outside `[a-zA-Z0-9._-]` replaced by `_`, as Grafana
/// Pyroscope names uploads (never empty).
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "profile".to_owned()
    } else {
        cleaned
    }
}

fn entry(ulid: &str, name: &str) -> AdHocEntry {
    AdHocEntry {
        id: format!("{ulid}-{name}"),
        name: name.to_owned(),
        uploaded_at_ms: ulid_millis(ulid).unwrap_or(0),
    }
}

impl AdHocProfiles {
    /// The uploads kept in `storage`, within `limits`.
    pub fn new(storage: Arc<dyn Storage>, limits: AdHocLimits) -> Self {
        AdHocProfiles {
            storage,
            limits,
            writing: Mutex::new(()),
        }
    }

    /// Keys of every upload, oldest first.
    fn keys(&self) -> Result<Vec<String>, AdHocError> {
        let mut keys: Vec<String> = self
            .storage
            .list(PREFIX)?
            .into_iter()
            .filter(|k| parse_key(k).is_some())
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Keeps `data` as an upload named `name` at `now_ms`, dropping the oldest uploads
    /// as needed to stay within the limits.
    pub fn put(&self, name: &str, now_ms: i64, data: &[u8]) -> Result<AdHocEntry, AdHocError> {
        let name = clean_name(name);
        let mut payload = Vec::with_capacity(data.len() + name.len() + 12);
        payload.extend_from_slice(&(name.len() as u32).to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(&now_ms.to_le_bytes());
        payload.extend_from_slice(data);
        let object = envelope::seal(Kind::AdHoc, &payload, false);
        let size = object.len() as u64;
        if size > self.limits.max_bytes {
            return Err(AdHocError::TooLarge {
                size,
                limit: self.limits.max_bytes,
            });
        }
        let _writing = lock(&self.writing);
        let id = ulid(now_ms);
        let key = format!("{PREFIX}{id}-{size}-{name}");
        let keys = self.keys()?;
        let mut count = keys.len() + 1;
        let mut bytes = size
            + keys
                .iter()
                .filter_map(|k| parse_key(k))
                .map(|k| k.1)
                .sum::<u64>();
        for old in &keys {
            if count <= self.limits.max_profiles.max(1) && bytes <= self.limits.max_bytes {
                break;
            }
            self.storage.delete(old)?;
            count -= 1;
            bytes -= parse_key(old).map_or(0, |k| k.1);
            tracing::info!(key = %old, "ad-hoc profile dropped: the oldest, over the upload limits");
        }
        self.storage.put(&key, &object)?;
        Ok(entry(&id, &name))
    }

    /// Every upload, newest first (Grafana Pyroscope's order).
    pub fn list(&self) -> Result<Vec<AdHocEntry>, AdHocError> {
        Ok(self
            .keys()?
            .iter()
            .rev()
            .filter_map(|k| parse_key(k).map(|(ulid, _, name)| entry(ulid, name)))
            .collect())
    }

    /// The upload `id` (`<ULID>-<name>`).
    pub fn get(&self, id: &str) -> Result<AdHocUpload, AdHocError> {
        let invalid = || AdHocError::InvalidId(id.to_owned());
        let valid = id.len() > ULID_LEN + 1
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(invalid());
        }
        let (ulid, name) = (&id[..ULID_LEN], &id[ULID_LEN + 1..]);
        ulid_millis(ulid).ok_or_else(invalid)?;
        let key = self
            .storage
            .list(&format!("{PREFIX}{ulid}-"))?
            .into_iter()
            .find(|k| parse_key(k).is_some_and(|(u, _, n)| u == ulid && n == name))
            .ok_or_else(|| AdHocError::NotFound(id.to_owned()))?;
        let object = match self.storage.get(&key) {
            Err(StorageError::NotFound(_)) => return Err(AdHocError::NotFound(id.to_owned())),
            other => other?,
        };
        let damaged = |why: String| AdHocError::Damaged {
            id: id.to_owned(),
            why,
        };
        let payload = envelope::open(Kind::AdHoc, &object, object.len())
            .map_err(|e| damaged(e.to_string()))?;
        let short = || damaged("shorter than its header".into());
        let name_len = payload
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(short)?;
        let time = payload
            .get(4 + name_len..12 + name_len)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(short)?;
        Ok(AdHocUpload {
            entry: AdHocEntry {
                uploaded_at_ms: time,
                ..entry(ulid, name)
            },
            data: payload[12 + name_len..].to_vec(),
        })
    }
}

impl crate::Store {
    /// The store's ad-hoc uploads, in its storage under `adhoc/`, within `limits`.
    pub fn adhoc(&self, limits: AdHocLimits) -> AdHocProfiles {
        AdHocProfiles::new(Arc::clone(&self.storage), limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStorage;

    fn profiles(limits: AdHocLimits) -> AdHocProfiles {
        AdHocProfiles::new(Arc::new(MemoryStorage::default()), limits)
    }

    #[test]
    fn ulids_keep_their_time_and_sort_by_it() {
        let (a, b) = (ulid(1_700_000_000_000), ulid(1_700_000_000_001));
        assert_eq!(ulid_millis(&a), Some(1_700_000_000_000));
        assert!(a < b);
    }

    #[test]
    fn round_trip_and_newest_first() {
        let p = profiles(AdHocLimits::default());
        let a = p.put("cpu.pb.gz", 1_000, b"first").unwrap();
        let b = p.put("my file!.txt", 2_000, b"second").unwrap();
        assert_eq!(b.name, "my_file_.txt");
        assert_eq!(p.list().unwrap(), vec![b.clone(), a.clone()]);
        let got = p.get(&a.id).unwrap();
        assert_eq!((got.data.as_slice(), got.entry), (&b"first"[..], a));
    }

    #[test]
    fn the_oldest_go_first_by_count_and_by_bytes() {
        let p = profiles(AdHocLimits::new(2, u64::MAX));
        let ids: Vec<_> = (0..3).map(|i| p.put("f", i, b"x").unwrap().id).collect();
        assert_eq!(p.list().unwrap().len(), 2);
        assert!(matches!(p.get(&ids[0]), Err(AdHocError::NotFound(_))));
        let q = profiles(AdHocLimits::new(100, 300));
        let first = q.put("f", 1, &[0; 100]).unwrap();
        let second = q.put("f", 2, &[0; 100]).unwrap();
        q.put("f", 3, &[0; 100]).unwrap();
        assert!(matches!(q.get(&first.id), Err(AdHocError::NotFound(_))));
        q.get(&second.id).unwrap();
        assert!(matches!(
            q.put("f", 4, &[0; 400]),
            Err(AdHocError::TooLarge { .. })
        ));
    }

    #[test]
    fn ids_are_checked_before_any_storage_access() {
        let p = profiles(AdHocLimits::default());
        for bad in ["", "../../etc/passwd", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x/y"] {
            assert!(matches!(p.get(bad), Err(AdHocError::InvalidId(_))), "{bad}");
        }
    }
}
