//! Ingest: intern call paths, stage one WAL record per request, and group commit.
//!
//! A request's trees are staged apart from the head, under a ticket, and move into the
//! head (where queries see them) only once the WAL write holding its record is fsynced:
//! a write that cannot be made durable is never visible and never acknowledged. The first
//! waiter to take the WAL lock writes every record staged so far with one fsync; the
//! others find their ticket settled. When that write fails, every ticket of the batch is
//! refused, the segment is cut back to its durable length, and the next write tries again,
//! so the store heals by itself when the disk does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crate::dict;
use crate::error::StoreError;
use crate::head::{add_checked, merge_checked, Pairs};
use crate::record::{encode_record, Logged};
use crate::segment::leaf_of;
use crate::series::{SeriesKey, SERVICE_NAME};
use crate::store::{lock, unix_now, Ingested, Put, State, Store, WalWriter};
use crate::wal;

/// One request's trees and request IDs, waiting for its WAL record to be durable.
#[derive(Debug)]
struct Staged {
    puts: Vec<Logged>,
    ids: Vec<(String, i64)>,
    /// Why its record could not be made durable, once its batch failed; the entry stays
    /// until its writer picks the error up.
    refused: Option<String>,
}

/// Writes whose WAL records are not durable yet.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    /// Framed records not written yet.
    buf: Vec<u8>,
    /// The last ticket handed out.
    issued: u64,
    by_ticket: BTreeMap<u64, Staged>,
}

impl Staging {
    fn waiting(&self) -> impl Iterator<Item = (&u64, &Staged)> {
        self.by_ticket.iter().filter(|(_, s)| s.refused.is_none())
    }

    /// The paths the staged writes use, their spans' included.
    pub(crate) fn paths(&self) -> impl Iterator<Item = u32> + '_ {
        self.waiting().flat_map(|(_, s)| {
            s.puts.iter().flat_map(|(_, _, pairs, spans, _)| {
                let spans = spans.iter().flat_map(|(_, pairs)| pairs);
                pairs.iter().chain(spans).map(|p| p.0)
            })
        })
    }

    /// The ticket of a staged write naming one of `ids`.
    fn ticket_naming(&self, ids: &[String]) -> Option<u64> {
        self.waiting()
            .find(|(_, s)| s.ids.iter().any(|(id, _)| ids.contains(id)))
            .map(|(t, _)| *t)
    }
}

/// A put's pairs and its spans' pairs.
type Interned = (Pairs, Vec<(u64, Pairs)>);

/// A write answered without staging it: [`Store::admit`] found it repeats another.
enum Early {
    /// Its first write is durable.
    Duplicate,
    /// Its first write is staged under this ticket.
    Staged(u64),
}

impl Early {
    fn settle(self, store: &Store, ids: &[String]) -> Result<Ingested, StoreError> {
        match self {
            Early::Duplicate => {
                store.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                Ok(Ingested::Duplicate)
            }
            Early::Staged(first) => store.await_first_write(first, ids),
        }
    }
}

/// A batch taken for one WAL write.
struct Batch {
    bytes: Vec<u8>,
    /// Tickets up to this one are in it.
    upto: u64,
    /// The dictionary entries logged once it is durable.
    dict_end: (usize, usize),
}

/// A dictionary segment with no entries: records log theirs in the batch's first record.
pub(crate) fn no_entries() -> dict::Segment {
    dict::Segment {
        first_frame: 0,
        frames: Vec::new(),
        first_path: 0,
        paths: Vec::new(),
    }
}

/// Why a WAL write failure refuses writes: the reason [`StoreError::Unavailable`] carries.
fn wal_unavailable(e: &std::io::Error) -> String {
    format!("the write-ahead log cannot be written ({e})")
}

impl Store {
    /// Stores `puts` durably: when this returns `Ok`, they survive a crash. All or none of
    /// them are accepted.
    pub fn ingest(&self, puts: Vec<Put>) -> Result<(), StoreError> {
        self.ingest_once(&[], puts).map(|_| ())
    }

    /// [`Store::ingest`] for a write its client names with `ids` (say, one per profile
    /// window): if a write naming any of them was accepted within the dedup window, this
    /// one is a retry, and returns [`Ingested::Duplicate`] once that write is durable.
    pub fn ingest_once(&self, ids: &[String], puts: Vec<Put>) -> Result<Ingested, StoreError> {
        if puts.is_empty() {
            return Ok(Ingested::Stored);
        }
        if let Some(bad) = puts.iter().find(|p| p.time < 0) {
            return Err(StoreError::Invalid(format!(
                "time {} is before 1970",
                bad.time
            )));
        }
        // Refuse what would be refused anyway before interning: a tenant at its limits
        // must not grow the dictionary.
        if let Some(early) = self.admit(&lock(&self.state), ids, &puts)? {
            return early.settle(self, ids);
        }
        // Paths are interned outside the state lock: staging, settling and the other
        // writers' checks do not wait for it. Ids are logged by value (the batch's first
        // record logs every entry given since the last durable one), so the order in
        // which writers intern does not matter to replay.
        let (interned, generation) = self.intern_puts(&puts);
        let ticket = {
            let mut st = lock(&self.state);
            if let Some(early) = self.admit(&st, ids, &puts)? {
                drop(st);
                return early.settle(self, ids);
            }
            // A sweep since may have dropped entries these pairs name: intern again, now
            // under the state lock, which a sweep takes (and staged writes are marked).
            let logged = if generation == self.dict_read().generation() {
                interned
            } else {
                self.intern_puts(&puts).0
            };
            let logged: Vec<Logged> = puts
                .into_iter()
                .zip(logged)
                .map(|(put, (pairs, spans))| (put.key, put.time, pairs, spans, put.period))
                .collect();
            check_spans(&logged)?;
            check_values(&st, &logged)?;
            let now = unix_now();
            let ids: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), now)).collect();
            let record = encode_record(
                &no_entries(),
                &logged,
                ids.iter().map(|(id, at)| (id.as_str(), *at)),
            );
            let staging = &mut st.staging;
            wal::frame(&record, &mut staging.buf);
            staging.issued += 1;
            staging.by_ticket.insert(
                staging.issued,
                Staged {
                    puts: logged,
                    ids,
                    refused: None,
                },
            );
            staging.issued
        };
        self.commit(ticket).map(|()| Ingested::Stored)
    }

    /// Whether `puts` may be staged now: `Some` when they are a duplicate (settled or
    /// still staged) of a write naming one of `ids`, an error past a series limit.
    fn admit(&self, st: &State, ids: &[String], puts: &[Put]) -> Result<Option<Early>, StoreError> {
        if ids.iter().any(|id| st.seen.contains(id)) {
            return Ok(Some(Early::Duplicate));
        }
        if let Some(first) = st.staging.ticket_naming(ids) {
            return Ok(Some(Early::Staged(first)));
        }
        self.check_limits(st, puts)?;
        Ok(None)
    }

    /// Each put's pairs and its spans' pairs, and the dictionary generation they are valid
    /// in. Under a shared lock when every entry is known, else under the write lock.
    fn intern_puts(&self, puts: &[Put]) -> (Vec<Interned>, u64) {
        {
            let dict = self.dict_read();
            let resolved: Option<Vec<Interned>> = puts
                .iter()
                .map(|put| {
                    let pairs = dict.resolve_tree(&put.tree)?;
                    let spans = put
                        .spans
                        .iter()
                        .map(|(span, tree)| Some((*span, dict.resolve_tree(tree)?)))
                        .collect::<Option<_>>()?;
                    Some((pairs, spans))
                })
                .collect();
            if let Some(resolved) = resolved {
                return (resolved, dict.generation());
            }
        }
        let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
        let interned = puts
            .iter()
            .map(|put| {
                let pairs = dict.intern_tree(&put.tree);
                let spans = put
                    .spans
                    .iter()
                    .map(|(span, tree)| (*span, dict.intern_tree(tree)))
                    .collect();
                (pairs, spans)
            })
            .collect();
        (interned, dict.generation())
    }

    fn dict_read(&self) -> std::sync::RwLockReadGuard<'_, dict::Dictionary> {
        self.dict.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A retry arrived while the write it repeats is still staged: wait for that write,
    /// and acknowledge the retry only if it became durable.
    fn await_first_write(&self, first: u64, ids: &[String]) -> Result<Ingested, StoreError> {
        {
            let mut w = lock(&self.wal);
            if w.settled < first {
                // Its outcome is read below, from what was remembered.
                let _ = self.write_staged(&mut w);
            }
        }
        if ids.iter().any(|id| lock(&self.state).seen.contains(id)) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            Ok(Ingested::Duplicate)
        } else {
            Err(StoreError::Unavailable(
                "an earlier write with this request ID could not be stored; retry".into(),
            ))
        }
    }

    fn check_limits(&self, st: &State, puts: &[Put]) -> Result<(), StoreError> {
        // New series of writes still staged count too: they join the catalog once durable.
        let staged = st
            .staging
            .waiting()
            .flat_map(|(_, s)| s.puts.iter().map(|p| &p.0));
        let mut new_per_service: HashMap<&str, BTreeSet<&SeriesKey>> = HashMap::new();
        for key in puts.iter().map(|p| &p.key).chain(staged) {
            if st.catalog.id(key).is_none() {
                let service = key.labels.get(SERVICE_NAME).unwrap_or("");
                new_per_service.entry(service).or_default().insert(key);
            }
        }
        let names = &self.config.limit_names;
        let owner = names
            .owner
            .as_deref()
            .map_or(String::new(), |o| format!("{o}: "));
        let mut new_total = 0;
        for (service, new) in new_per_service {
            let have = st.catalog.count_for_service(service);
            if have + new.len() > self.config.max_series_per_service {
                return Err(StoreError::Limit(format!(
                    "{owner}service {service:?} would have more than {} series ({}); drop high-cardinality labels or raise the limit",
                    self.config.max_series_per_service, names.max_series_per_service
                )));
            }
            new_total += new.len();
        }
        if st.catalog.len() + new_total > self.config.max_series {
            let whose = names.owner.as_deref().unwrap_or("the store");
            return Err(StoreError::Limit(format!(
                "{whose} would have more than {} series ({}); drop high-cardinality labels or raise the limit",
                self.config.max_series, names.max_series
            )));
        }
        Ok(())
    }

    /// Group commit: the first caller to find its ticket unsettled writes and fsyncs every
    /// staged record; the others find theirs settled, durable or refused.
    fn commit(&self, ticket: u64) -> Result<(), StoreError> {
        let mut w = lock(&self.wal);
        if w.settled < ticket {
            // Its outcome, for this ticket too, is read below.
            let _ = self.write_staged(&mut w);
        }
        drop(w);
        let mut st = lock(&self.state);
        match st.staging.by_ticket.remove(&ticket) {
            None => Ok(()),
            Some(Staged {
                refused: Some(reason),
                ..
            }) => Err(StoreError::Unavailable(reason)),
            Some(waiting) => {
                // Unreachable: a settled ticket is gone or refused. Keep it staged.
                st.staging.by_ticket.insert(ticket, waiting);
                Err(StoreError::Unavailable(
                    "the write was not settled; retry".into(),
                ))
            }
        }
    }

    /// Writes everything staged with one fsync, without holding the state lock meanwhile
    /// (so ingest keeps staging the next batch).
    fn write_staged(&self, w: &mut WalWriter) -> Result<(), StoreError> {
        let batch = self.take_batch(w, &mut lock(&self.state));
        let written = w.segment.write_durably(&batch.bytes);
        self.settle(w, &mut lock(&self.state), &batch, written)
    }

    /// [`Store::write_staged`] holding the state lock throughout, for a flush: the head
    /// it then takes holds exactly the records written so far.
    pub(crate) fn write_staged_locked(
        &self,
        w: &mut WalWriter,
        st: &mut State,
    ) -> Result<(), StoreError> {
        let batch = self.take_batch(w, st);
        let written = if w.error.is_some() {
            // The last write failed: probe first, so health clears when the disk does,
            // also with no traffic (clients back off while it is unhealthy), and not just
            // because a small record fit in the slack of the segment's last block.
            wal::probe(&self.wal_dir).and_then(|()| w.segment.write_durably(&batch.bytes))
        } else {
            w.segment.write_durably(&batch.bytes)
        };
        self.settle(w, st, &batch, written)
    }

    /// The staged records, behind one that logs the dictionary entries no durable record
    /// has logged yet (those of this batch, and of refused ones that later records use).
    fn take_batch(&self, w: &WalWriter, st: &mut State) -> Batch {
        let (entries, dict_end) = {
            let dict = self.dict.read().unwrap_or_else(PoisonError::into_inner);
            (dict.segment(w.dict_logged, dict.len()), dict.len())
        };
        let mut bytes = Vec::new();
        if !entries.is_empty() {
            // Twice: later records use these ids, so losing them to one damaged record
            // would lose those records too; replay skips the copy it already has.
            let record = encode_record(&entries, &[], [].into_iter());
            wal::frame(&record, &mut bytes);
            wal::frame(&record, &mut bytes);
        }
        let staged = std::mem::take(&mut st.staging.buf);
        if bytes.is_empty() {
            bytes = staged;
        } else {
            bytes.extend_from_slice(&staged);
        }
        Batch {
            bytes,
            upto: st.staging.issued,
            dict_end,
        }
    }

    /// Moves the batch's writes into the head (durable) or refuses them (failed).
    fn settle(
        &self,
        w: &mut WalWriter,
        st: &mut State,
        batch: &Batch,
        written: std::io::Result<()>,
    ) -> Result<(), StoreError> {
        w.settled = batch.upto;
        let tickets: Vec<u64> = st
            .staging
            .waiting()
            .map(|(t, _)| *t)
            .take_while(|t| *t <= batch.upto)
            .collect();
        match written {
            Ok(()) => {
                if !batch.bytes.is_empty() {
                    self.stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .wal_bytes
                        .fetch_add(batch.bytes.len() as u64, Ordering::Relaxed);
                }
                w.dict_logged = batch.dict_end;
                w.error = None;
                lock(&self.health).wal = None;
                for ticket in tickets {
                    let Some(staged) = st.staging.by_ticket.remove(&ticket) else {
                        continue;
                    };
                    for (key, time, pairs, spans, period) in staged.puts {
                        let leaf = leaf_of(time);
                        let id = st.catalog.touch(&key, leaf, period);
                        st.head.add(leaf, id, pairs);
                        st.head.spans.add(leaf, id, spans);
                        self.stats.puts.fetch_add(1, Ordering::Relaxed);
                    }
                    for (id, at) in staged.ids {
                        let forgotten = st.seen.remember(&id, at);
                        self.stats
                            .forgotten_request_ids
                            .fetch_add(forgotten as u64, Ordering::Relaxed);
                    }
                }
                Ok(())
            }
            Err(e) => {
                let reason = wal_unavailable(&e);
                tracing::error!(error = %e, refused = tickets.len(), "WAL write failed; its writes are refused and the next write retries");
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                w.error = Some(reason.clone());
                lock(&self.health).wal = Some(reason.clone());
                for ticket in tickets {
                    if let Some(staged) = st.staging.by_ticket.get_mut(&ticket) {
                        staged.puts = Vec::new();
                        staged.ids = Vec::new();
                        staged.refused = Some(reason.clone());
                    }
                }
                Err(StoreError::Unavailable(reason))
            }
        }
    }
}

/// Refuses a put whose spans are not part of its tree: together, the spans of a put hold
/// at most its tree's value on each call path (the tree has every sample; spans say which
/// belong to which span). The dictionary's collection relies on it: span objects use
/// only paths their leaf's run also uses.
fn check_spans(puts: &[Logged]) -> Result<(), StoreError> {
    for (_, _, pairs, spans, _) in puts {
        if spans.is_empty() {
            continue;
        }
        let mut left: Vec<u64> = pairs.iter().map(|p| p.1).collect();
        for (span, span_pairs) in spans {
            for (path, value) in span_pairs {
                let at = pairs.binary_search_by_key(path, |p| p.0);
                let room = at.ok().map(|i| &mut left[i]);
                match room {
                    Some(room) if *room >= *value => *room -= value,
                    _ => {
                        return Err(StoreError::Invalid(format!(
                            "span {span:016x} has samples its put's tree does not have"
                        )))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Refuses a write whose values, added to what the head and the staged writes hold for
/// the same series, leaf and call path, would pass `u64::MAX`: the head never wraps.
fn check_values(st: &State, puts: &[Logged]) -> Result<(), StoreError> {
    let overflow = || StoreError::Invalid("values overflow: a sum of samples passes 2^64".into());
    let mut sums: HashMap<(&SeriesKey, i64), Pairs> = HashMap::new();
    for (key, time, pairs, _, _) in puts {
        match sums.entry((key, leaf_of(*time))) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                merge_checked(e.get_mut(), pairs).map_err(|_| overflow())?;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(pairs.clone());
            }
        }
    }
    for ((key, leaf), sum) in sums.iter_mut() {
        if let Some(held) = st.catalog.id(key).and_then(|id| st.head.get(*leaf, id)) {
            add_checked(sum, held).map_err(|_| overflow())?;
        }
    }
    // One pass over the staged writes (values are unsigned, so the order of the additions
    // does not change whether the total passes 2^64).
    for (_, staged) in st.staging.waiting() {
        for (key, time, pairs, _, _) in &staged.puts {
            if let Some(sum) = sums.get_mut(&(key, leaf_of(*time))) {
                add_checked(sum, pairs).map_err(|_| overflow())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use embers_profile::{Frame, Labels, StackTree};

    use super::*;
    use crate::{Config, MemoryStorage};

    fn put(service: &str, frame: &str, value: u64) -> Put {
        let mut tree = StackTree::new();
        tree.add_frames([&Frame::named("main"), &Frame::named(frame)], value);
        Put {
            key: SeriesKey {
                profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                labels: Labels::from_pairs([("service_name", service)]),
            },
            time: 1_700_000_000,
            tree,
            ..Default::default()
        }
    }

    /// Regression: the group-commit test passed with one fsync per write. Here the writers
    /// stage while the test holds the WAL lock (as an fsync in progress would), so one
    /// write must carry all of them.
    #[test]
    fn writes_staged_during_a_sync_share_the_next_fsync() {
        let wal = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(
                Arc::new(MemoryStorage::default()),
                wal.path().into(),
                Config::default(),
            )
            .unwrap(),
        );
        let writers = 16;
        let held = lock(&store.wal);
        let threads: Vec<_> = (0..writers)
            .map(|i| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.ingest(vec![put("app", &format!("f{i}"), 1)]))
            })
            .collect();
        while lock(&store.state).staging.by_ticket.len() < writers {
            std::thread::yield_now();
        }
        assert_eq!(
            store.head_pairs(),
            0,
            "nothing is visible before it is durable"
        );
        drop(held);
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(store.stats.wal_syncs.load(Ordering::Relaxed), 1);
        assert_eq!(store.head_pairs(), writers);
    }

    #[test]
    fn limit_refusals_name_the_owner_and_its_settings() {
        let wal = tempfile::tempdir().unwrap();
        let config = Config {
            max_series: 1,
            max_series_per_service: 1,
            limit_names: crate::LimitNames::new(
                "tenant \"small\"".into(),
                "max_series in [tenants.small]".into(),
                "max_series_per_service in [limits]".into(),
            ),
            ..Config::default()
        };
        let storage = Arc::new(MemoryStorage::default());
        let store = Store::open(storage, wal.path().into(), config).unwrap();
        store.ingest(vec![put("a", "f", 1)]).unwrap();
        let mut other_type = put("a", "f", 1);
        other_type.key.profile_type = "memory:alloc_space:bytes:space:bytes".into();
        let err = store.ingest(vec![other_type]).unwrap_err().to_string();
        assert!(
            err.contains("tenant \"small\": service \"a\" would have more than 1 series (max_series_per_service in [limits])"),
            "{err}"
        );
        let err = store
            .ingest(vec![put("b", "f", 1)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "tenant \"small\" would have more than 1 series (max_series in [tenants.small])"
            ),
            "{err}"
        );
    }

    #[test]
    fn series_limits_count_the_whole_store_and_writes_still_staged() {
        let wal = tempfile::tempdir().unwrap();
        let config = Config {
            max_series: 3,
            ..Config::default()
        };
        let storage = Arc::new(MemoryStorage::default());
        let store = Arc::new(Store::open(storage, wal.path().into(), config).unwrap());
        store
            .ingest(vec![put("a", "f", 1), put("b", "f", 1)])
            .unwrap();
        // One more series is staged (the test holds the WAL lock, as an fsync would).
        let held = lock(&store.wal);
        let writer = Arc::clone(&store);
        let staged = std::thread::spawn(move || writer.ingest(vec![put("c", "f", 1)]));
        while lock(&store.state).staging.by_ticket.is_empty() {
            std::thread::yield_now();
        }
        let err = store.ingest(vec![put("d", "f", 1)]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Limit(m) if m.starts_with("the store would have more than 3 series (max_series)")),
            "{err}"
        );
        drop(held);
        staged.join().unwrap().unwrap();
        assert_eq!(store.counts().0, 3);
        store.ingest(vec![put("a", "g", 1)]).unwrap();
    }

    #[test]
    fn values_that_would_overflow_are_refused_before_staging() {
        let wal = tempfile::tempdir().unwrap();
        let store = Store::open(
            Arc::new(MemoryStorage::default()),
            wal.path().into(),
            Config::default(),
        )
        .unwrap();
        let big = u64::MAX / 2 + 1;
        store.ingest(vec![put("app", "f", big)]).unwrap();
        let err = store.ingest(vec![put("app", "f", big)]).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(m) if m.contains("overflow")));
        // Within one request too.
        let err = store
            .ingest(vec![put("app", "g", big), put("app", "g", big)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)));
        // Another path of the same tree is fine.
        store.ingest(vec![put("app", "g", big)]).unwrap();
        assert_eq!(store.stats.puts.load(Ordering::Relaxed), 2);
        assert_eq!(store.head_pairs(), 2);
    }
}
