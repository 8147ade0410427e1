//! Request IDs already accepted, so that a client's retry of a write whose reply it never
//! got is acknowledged without storing the data twice.
//!
//! An ID is remembered for [`crate::Config::dedup_window`] after it was accepted. Each
//! WAL record carries the IDs of its write; when the WAL is rotated, the IDs still
//! remembered are written as the first record of the new segment, so they outlive the
//! flush that drops the records they came with.

use std::collections::{HashMap, VecDeque};

use crate::varint::{put_uvarint, Reader};

/// Accepted IDs with the Unix second each was accepted at.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    at: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Seen {
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.at.contains_key(id)
    }

    /// Remembers `id` as accepted at `at` (again: the later time counts).
    pub(crate) fn remember(&mut self, id: &str, at: i64) {
        if self.at.insert(id.to_owned(), at) != Some(at) {
            self.order.push_back((at, id.to_owned()));
        }
    }

    /// Forgets IDs accepted before `cutoff`.
    pub(crate) fn forget_before(&mut self, cutoff: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((at, id)) = self.order.pop_front() {
                if self.at.get(&id) == Some(&at) {
                    self.at.remove(&id);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    /// Each remembered ID once, with its latest time.
    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = (&str, i64)> {
        self.at.iter().map(|(id, at)| (id.as_str(), *at))
    }
}

/// Appends `ids` (count, then each: length, bytes, Unix second).
pub(crate) fn encode<'a>(ids: impl ExactSizeIterator<Item = (&'a str, i64)>, out: &mut Vec<u8>) {
    put_uvarint(out, ids.len() as u64);
    for (id, at) in ids {
        put_uvarint(out, id.len() as u64);
        out.extend_from_slice(id.as_bytes());
        put_uvarint(out, u64::try_from(at).unwrap_or(0));
    }
}

pub(crate) fn decode(
    r: &mut Reader<'_>,
    max: usize,
) -> Result<Vec<(String, i64)>, crate::varint::Corrupt> {
    let n = r.len(max, "too many request IDs")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.len(max, "request ID longer than the record")?;
        let id = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| r.corrupt("request ID is not UTF-8"))?
            .to_owned();
        let at = i64::try_from(r.uvarint()?).map_err(|_| r.corrupt("time out of range"))?;
        out.push((id, at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_only_what_is_older_than_the_cutoff() {
        let mut seen = Seen::default();
        seen.remember("a", 10);
        seen.remember("b", 20);
        seen.remember("a", 30);
        seen.forget_before(15);
        assert!(seen.contains("a"), "remembered again at 30");
        assert!(seen.contains("b"));
        seen.forget_before(25);
        assert!(seen.contains("a"));
        assert!(!seen.contains("b"));
        seen.forget_before(31);
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn round_trips() {
        let mut seen = Seen::default();
        seen.remember("window-1", 1_700_000_000);
        seen.remember("w2", 1_700_000_010);
        let mut out = Vec::new();
        encode(seen.entries(), &mut out);
        let mut r = Reader::new(&out);
        let mut back = decode(&mut r, out.len()).unwrap();
        back.sort();
        assert_eq!(
            back,
            vec![
                ("w2".to_owned(), 1_700_000_010),
                ("window-1".to_owned(), 1_700_000_000)
            ]
        );
    }
}
