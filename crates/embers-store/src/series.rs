//! Series: one profile type of one labelled source (`service_name`, `region`, …), and the
//! catalog that names them with small ids and finds them by label (an inverted index).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use embers_profile::Labels;

use crate::selector::Matcher;
use crate::tree_codec::{put_str, read_str, TreeLimits};
use crate::varint::{put_uvarint, Corrupt, Reader};

/// Label holding the service (application) name.
pub const SERVICE_NAME: &str = "service_name";
/// Label holding the profile type's name (`process_cpu`, `memory`, …).
pub const NAME: &str = "__name__";
/// Virtual label: the whole profile type id, matchable like any label.
pub const PROFILE_TYPE: &str = "__profile_type__";

/// What a series is: a profile type id (`name:sample_type:sample_unit:period_type:period_unit`)
/// and its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// For example `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
    pub profile_type: String,
    /// Sorted labels, `service_name` and `__name__` among them.
    pub labels: Labels,
}

impl SeriesKey {
    /// The value of a label, the virtual `__profile_type__` included.
    pub fn label(&self, name: &str) -> Option<&str> {
        if name == PROFILE_TYPE {
            return Some(&self.profile_type);
        }
        self.labels.get(name)
    }

    /// Whether every matcher accepts this series.
    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| m.matches(self.label(&m.name)))
    }
}

/// A series' number in one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// One catalog entry: the key and the leaves between which it has data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    /// What the series is.
    pub key: SeriesKey,
    /// First and last 10 s leaf with data (inclusive).
    pub leaves: (i64, i64),
    /// The last known sampling period of its profiles (pprof `period`), 0 if none was.
    pub period: i64,
}

/// Every series of a store, by id, by key and by label.
#[derive(Debug, Default)]
pub struct Catalog {
    series: Vec<Option<SeriesInfo>>,
    by_key: HashMap<SeriesKey, SeriesId>,
    /// `(name, value)` → series, the inverted index behind `=` matchers.
    postings: HashMap<(String, String), BTreeSet<SeriesId>>,
    /// Series touched since the catalog was last persisted.
    dirty: BTreeSet<SeriesId>,
}

impl Catalog {
    /// The id of `key`, if known.
    pub fn id(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.by_key.get(key).copied()
    }

    /// The entry for `id`.
    pub fn get(&self, id: SeriesId) -> Option<&SeriesInfo> {
        self.series.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Number of live series.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Number of series with this `service_name`, for the per-service limit.
    pub fn count_for_service(&self, service: &str) -> usize {
        self.postings
            .get(&(SERVICE_NAME.to_owned(), service.to_owned()))
            .map_or(0, BTreeSet::len)
    }

    /// The id of `key`, registering it if new, and records data at `leaf` sampled every
    /// `period` (0: unknown, which keeps the period already known).
    pub fn touch(&mut self, key: &SeriesKey, leaf: i64, period: i64) -> SeriesId {
        let id = match self.by_key.get(key) {
            Some(&id) => id,
            None => {
                let id =
                    SeriesId(u32::try_from(self.series.len()).expect("fewer than 2^32 series"));
                self.insert(
                    id,
                    SeriesInfo {
                        key: key.clone(),
                        leaves: (leaf, leaf),
                        period,
                    },
                );
                id
            }
        };
        let info = self.series[id.0 as usize]
            .as_mut()
            .expect("registered above");
        info.leaves = (info.leaves.0.min(leaf), info.leaves.1.max(leaf));
        if period != 0 {
            info.period = period;
        }
        self.dirty.insert(id);
        id
    }

    fn insert(&mut self, id: SeriesId, info: SeriesInfo) {
        let slot = id.0 as usize;
        if self.series.len() <= slot {
            self.series.resize(slot + 1, None);
        }
        for (name, value) in info.key.labels.iter() {
            self.postings
                .entry((name.to_owned(), value.to_owned()))
                .or_default()
                .insert(id);
        }
        self.postings
            .entry((PROFILE_TYPE.to_owned(), info.key.profile_type.clone()))
            .or_default()
            .insert(id);
        self.by_key.insert(info.key.clone(), id);
        self.series[slot] = Some(info);
    }

    /// Merges a persisted entry: a new series, or a wider leaf range for a known one.
    /// Entries load oldest first, so a known period in a later one replaces the earlier.
    pub fn load(&mut self, id: SeriesId, info: SeriesInfo) {
        match self.get(id) {
            Some(known) if known.key == info.key => {
                let leaves = (
                    known.leaves.0.min(info.leaves.0),
                    known.leaves.1.max(info.leaves.1),
                );
                let known = self.series[id.0 as usize].as_mut().expect("present");
                known.leaves = leaves;
                if info.period != 0 {
                    known.period = info.period;
                }
            }
            _ => self.insert(id, info),
        }
    }

    /// Series that every matcher accepts and that have data in leaves `[first, end)`.
    /// `=` matchers go through the inverted index; the others filter what is left.
    pub fn select(&self, matchers: &[Matcher], first: i64, end: i64) -> Vec<SeriesId> {
        let mut candidates: Option<BTreeSet<SeriesId>> = None;
        for m in matchers
            .iter()
            .filter(|m| matches!(m.op, crate::selector::MatchOp::Eq) && !m.value.is_empty())
        {
            let ids = self.postings.get(&(m.name.clone(), m.value.clone()));
            let ids = ids.cloned().unwrap_or_default();
            candidates = Some(match candidates {
                None => ids,
                Some(c) => c.intersection(&ids).copied().collect(),
            });
        }
        let in_range = |info: &SeriesInfo| info.leaves.0 < end && info.leaves.1 >= first;
        let keep = |id: &SeriesId| {
            self.get(*id)
                .is_some_and(|info| in_range(info) && info.key.matches(matchers))
        };
        match candidates {
            Some(c) => c.into_iter().filter(keep).collect(),
            None => (0..self.series.len() as u32)
                .map(SeriesId)
                .filter(keep)
                .collect(),
        }
    }

    /// Label names used by the selected series, sorted.
    pub fn label_names(&self, ids: &[SeriesId]) -> Vec<String> {
        let mut names = BTreeSet::new();
        for info in ids.iter().filter_map(|&id| self.get(id)) {
            names.extend(info.key.labels.iter().map(|(k, _)| k.to_owned()));
        }
        names.into_iter().collect()
    }

    /// Values of `name` among the selected series, sorted.
    pub fn label_values(&self, ids: &[SeriesId], name: &str) -> Vec<String> {
        let mut values = BTreeSet::new();
        for info in ids.iter().filter_map(|&id| self.get(id)) {
            if let Some(v) = info.key.label(name) {
                values.insert(v.to_owned());
            }
        }
        values.into_iter().collect()
    }

    /// Forgets series whose data all lies before `first_kept` (retention).
    pub fn expire(&mut self, first_kept: i64) -> usize {
        let old: Vec<SeriesId> = self
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| s.leaves.1 < first_kept)
                    .map(|_| SeriesId(i as u32))
            })
            .collect();
        for &id in &old {
            let info = self.series[id.0 as usize].take().expect("listed above");
            self.by_key.remove(&info.key);
            for ids in self.postings.values_mut() {
                ids.remove(&id);
            }
            self.dirty.remove(&id);
        }
        self.postings.retain(|_, ids| !ids.is_empty());
        old.len()
    }

    /// Never gives ids below `next` to new series: blocks still hold data under ids
    /// whose catalog entry was lost, which must not be attributed to a new series.
    pub fn reserve_ids(&mut self, next: u32) {
        if self.series.len() < next as usize {
            self.series.resize(next as usize, None);
        }
    }

    /// Takes the ids touched since the last call, to persist them.
    pub fn take_dirty(&mut self) -> BTreeSet<SeriesId> {
        std::mem::take(&mut self.dirty)
    }

    /// Every live entry, for rewriting the whole catalog.
    pub fn all(&self) -> BTreeMap<SeriesId, &SeriesInfo> {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (SeriesId(i as u32), s)))
            .collect()
    }
}

/// Encodes catalog entries (the payload of a `series/…` object): n entries (id, key,
/// first and last leaf), then, if any entry knows its sampling period, the periods
/// section: m pairs (entry index, period, zigzag). The section trails the entries so that
/// catalogs written before it (and readers that stop after the entries) stay as they were.
pub fn encode_entries<'a>(
    entries: impl ExactSizeIterator<Item = (SeriesId, &'a SeriesInfo)>,
    out: &mut Vec<u8>,
) {
    put_uvarint(out, entries.len() as u64);
    let mut periods = Vec::new();
    for (index, (id, info)) in entries.enumerate() {
        put_uvarint(out, u64::from(id.0));
        encode_key(&info.key, out);
        put_uvarint(out, zigzag(info.leaves.0));
        put_uvarint(out, zigzag(info.leaves.1));
        if info.period != 0 {
            periods.push((index, info.period));
        }
    }
    encode_periods(&periods, out);
}

/// Appends a periods section, (index, period) pairs, when there is any.
pub(crate) fn encode_periods(periods: &[(usize, i64)], out: &mut Vec<u8>) {
    if periods.is_empty() {
        return;
    }
    put_uvarint(out, periods.len() as u64);
    for &(index, period) in periods {
        put_uvarint(out, index as u64);
        put_uvarint(out, zigzag(period));
    }
}

/// Reads a periods section written by [`encode_periods`] for `n` items, if one is left.
pub(crate) fn decode_periods(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, Corrupt> {
    let mut periods = vec![0; n];
    if r.remaining() == 0 {
        return Ok(periods);
    }
    let count = r.len(n, "more periods than entries")?;
    for _ in 0..count {
        let index = r.len(n.saturating_sub(1), "period index out of range")?;
        periods[index] = unzigzag(r.uvarint()?);
    }
    Ok(periods)
}

/// Decodes entries written by [`encode_entries`].
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<(SeriesId, SeriesInfo)>, Corrupt> {
    let mut r = Reader::new(bytes);
    let n = r.len(bytes.len(), "too many entries")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("series id out of range"))?;
        let key = decode_key(&mut r)?;
        let first = unzigzag(r.uvarint()?);
        let last = unzigzag(r.uvarint()?);
        out.push((
            SeriesId(id),
            SeriesInfo {
                key,
                leaves: (first, last),
                period: 0,
            },
        ));
    }
    for (entry, period) in out.iter_mut().zip(decode_periods(&mut r, n)?) {
        entry.1.period = period;
    }
    Ok(out)
}

/// Appends a series key: profile type, then label count and pairs.
pub fn encode_key(key: &SeriesKey, out: &mut Vec<u8>) {
    put_str(out, &key.profile_type);
    put_uvarint(out, key.labels.len() as u64);
    for (name, value) in key.labels.iter() {
        put_str(out, name);
        put_str(out, value);
    }
}

/// Reads a key written by [`encode_key`].
pub fn decode_key(r: &mut Reader<'_>) -> Result<SeriesKey, Corrupt> {
    let limits = TreeLimits::default();
    let profile_type = read_str(r, &limits)?;
    let n = r.len(1024, "too many labels")?;
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        pairs.push((read_str(r, &limits)?, read_str(r, &limits)?));
    }
    Ok(SeriesKey {
        profile_type,
        labels: Labels::from_pairs(pairs),
    })
}

/// Maps signed to unsigned so small magnitudes stay short.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::MatchOp;

    fn key(service: &str, region: &str) -> SeriesKey {
        SeriesKey {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: Labels::from_pairs([
                (SERVICE_NAME, service),
                ("region", region),
                (NAME, "process_cpu"),
            ]),
        }
    }

    #[test]
    fn select_by_index_and_filters() {
        let mut c = Catalog::default();
        let a = c.touch(&key("ride", "us-east-1"), 10, 0);
        let b = c.touch(&key("ride", "eu-west-1"), 12, 0);
        let other = c.touch(&key("shop", "us-east-1"), 10, 0);
        assert_eq!(c.touch(&key("ride", "us-east-1"), 20, 0), a);
        let eq = |n: &str, v: &str| Matcher::new(n, MatchOp::Eq, v).unwrap();
        assert_eq!(c.select(&[eq(SERVICE_NAME, "ride")], 0, 100), vec![a, b]);
        assert_eq!(
            c.select(
                &[eq(SERVICE_NAME, "ride"), eq("region", "eu-west-1")],
                0,
                100
            ),
            vec![b]
        );
        let re = Matcher::new("region", MatchOp::Re, "us-.*").unwrap();
        assert_eq!(c.select(&[re], 0, 100), vec![a, other]);
        // Time: `b` only has data at leaf 12, `a` from 10 to 20.
        assert_eq!(c.select(&[eq(SERVICE_NAME, "ride")], 13, 100), vec![a]);
        assert_eq!(
            c.select(
                &[eq(
                    PROFILE_TYPE,
                    "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
                )],
                0,
                100
            )
            .len(),
            3
        );
        assert_eq!(
            c.label_values(&[a, b, other], "region"),
            vec!["eu-west-1", "us-east-1"]
        );
        assert_eq!(c.label_names(&[a]), vec![NAME, "region", SERVICE_NAME]);
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let mut c = Catalog::default();
        c.touch(&key("ride", "us-east-1"), -5, 0);
        c.touch(&key("ride", "eu-west-1"), 7, 10_000_000);
        let mut bytes = Vec::new();
        encode_entries(c.all().into_iter(), &mut bytes);
        let mut back = Catalog::default();
        for (id, info) in decode_entries(&bytes).unwrap() {
            back.load(id, info);
        }
        assert_eq!(back.all(), c.all());
        let periods: Vec<i64> = back.all().values().map(|info| info.period).collect();
        assert_eq!(periods, vec![0, 10_000_000]);
        // Entries written before periods were kept (the same bytes without the trailing
        // section) read as unknown, and loading them does not forget a known period.
        let bare: Vec<(SeriesId, SeriesInfo)> = c
            .all()
            .into_iter()
            .map(|(id, info)| {
                (
                    id,
                    SeriesInfo {
                        period: 0,
                        ..info.clone()
                    },
                )
            })
            .collect();
        let mut old = Vec::new();
        encode_entries(bare.iter().map(|(id, info)| (*id, info)), &mut old);
        assert!(bytes.starts_with(&old) && old.len() < bytes.len());
        for (id, info) in decode_entries(&old).unwrap() {
            assert_eq!(info.period, 0);
            back.load(id, info);
        }
        assert_eq!(back.all(), c.all());
        assert_eq!(back.expire(0), 1);
        assert_eq!(back.len(), 1);
        assert!(back
            .select(
                &[Matcher::new("region", MatchOp::Eq, "us-east-1").unwrap()],
                -100,
                100
            )
            .is_empty());
        // Any cut fails but the two ends of a layout: nothing, and the entries alone.
        for cut in 0..bytes.len() {
            assert!(decode_entries(&bytes[..cut]).is_err() || cut == 0 || cut == old.len());
        }
    }
}
