//! Request IDs already accepted, so that a client's retry of a write whose reply it never
//! got is acknowledged without storing the data twice.
//!
//! An ID is remembered for [`crate::Config::dedup_window`] after it was accepted. Each
//! WAL record carries the IDs of its write; when the WAL is rotated, the IDs still
//! remembered are written as the first record of the new segment, so they outlive the
//! flush that drops the records they came with.
//!
//! At most [`crate::Config::max_request_ids`] IDs are remembered: past it the oldest are
//! forgotten first, so a flood of IDs cannot grow memory, or the ID record that opens each
//! WAL segment, without bound. A forgotten ID only costs deduplication of a late retry.

use std::collections::{HashMap, VecDeque};

use crate::varint::{put_uvarint, Reader};

/// Accepted IDs with the Unix second each was accepted at.
#[derive(Debug)]
pub(crate) struct Seen {
    at: HashMap<String, i64>,
    /// In the order remembered; an entry whose time no longer matches `at` is stale.
    order: VecDeque<(i64, String)>,
    cap: usize,
}

impl Seen {
    /// Remembers at most `cap` IDs.
    pub(crate) fn new(cap: usize) -> Seen {
        Seen {
            at: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.at.contains_key(id)
    }

    /// Remembers `id` as accepted at `at` (again: the later time counts). Returns how many
    /// IDs were forgotten to stay under the cap.
    pub(crate) fn remember(&mut self, id: &str, at: i64) -> usize {
        if self.at.insert(id.to_owned(), at) != Some(at) {
            self.order.push_back((at, id.to_owned()));
        }
        let mut forgotten = 0;
        while self.at.len() > self.cap {
            match self.order.pop_front() {
                Some((at, id)) if self.at.get(&id) == Some(&at) => {
                    self.at.remove(&id);
                    forgotten += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        forgotten
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
        let mut seen = Seen::new(10);
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

    /// Regression: request IDs of any count were kept for 6 h.
    #[test]
    fn a_flood_of_ids_forgets_the_oldest_first() {
        let mut seen = Seen::new(3);
        let mut forgotten = 0;
        for i in 0..100 {
            forgotten += seen.remember(&format!("id-{i}"), i);
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(forgotten, 97);
        assert!(seen.contains("id-99") && seen.contains("id-97"));
        assert!(!seen.contains("id-96"));
        // Remembering again refreshes: the refreshed ID is not the oldest any more.
        seen.remember("id-97", 200);
        seen.remember("new", 201);
        assert!(seen.contains("id-97") && !seen.contains("id-98"));
        assert!(seen.order.len() <= 5, "stale entries do not pile up");
    }

    #[test]
    fn round_trips() {
        let mut seen = Seen::new(10);
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
