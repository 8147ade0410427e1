//! Ingest: intern call paths, stage one WAL record per request, and group commit.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crate::error::StoreError;
use crate::record::encode_record;
use crate::segment::leaf_of;
use crate::series::{SeriesKey, SERVICE_NAME};
use crate::store::{lock, unix_now, Ingested, Put, State, Store, WalWriter};
use crate::wal;

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
        let ticket = {
            let mut st = lock(&self.state);
            if ids.iter().any(|id| st.seen.contains(id)) {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                // The first write may still be on its way to disk: wait for it.
                let staged = st.staged;
                drop(st);
                return self.commit(staged).map(|()| Ingested::Duplicate);
            }
            self.check_limits(&st, &puts)?;
            // Paths are interned under the state lock so that WAL records log new
            // dictionary entries in the order ids were given: replay gives the same ids.
            let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
            let before = dict.len();
            let mut logged = Vec::with_capacity(puts.len());
            for put in puts {
                let leaf = leaf_of(put.time);
                let pairs = dict.intern_tree(&put.tree);
                st.catalog.touch(&put.key, leaf);
                logged.push((put.key, put.time, pairs));
                self.stats.puts.fetch_add(1, Ordering::Relaxed);
            }
            let now = unix_now();
            for id in ids {
                st.seen.remember(id, now);
            }
            let record = encode_record(
                &dict.segment(before, dict.len()),
                &logged,
                ids.iter().map(|id| (id.as_str(), now)),
            );
            drop(dict);
            for (key, time, pairs) in logged {
                let leaf = leaf_of(time);
                let id = st.catalog.id(&key).expect("touched above");
                st.head.add(leaf, id, pairs);
            }
            wal::frame(&record, &mut st.wal_buf);
            st.staged += 1;
            st.staged
        };
        self.commit(ticket).map(|()| Ingested::Stored)
    }

    fn check_limits(&self, st: &State, puts: &[Put]) -> Result<(), StoreError> {
        let mut new_per_service: std::collections::HashMap<&str, BTreeSet<&SeriesKey>> =
            Default::default();
        for put in puts {
            if st.catalog.id(&put.key).is_none() {
                let service = put.key.labels.get(SERVICE_NAME).unwrap_or("");
                new_per_service.entry(service).or_default().insert(&put.key);
            }
        }
        let new_total: usize = new_per_service.values().map(BTreeSet::len).sum();
        if st.catalog.len() + new_total > self.config.max_series {
            return Err(StoreError::Limit(format!(
                "the store would have more than {} series (max_series); drop high-cardinality labels",
                self.config.max_series
            )));
        }
        for (service, new) in new_per_service {
            let have = st.catalog.count_for_service(service);
            if have + new.len() > self.config.max_series_per_service {
                return Err(StoreError::Limit(format!(
                    "service {service:?} would have more than {} series; drop high-cardinality labels",
                    self.config.max_series_per_service
                )));
            }
        }
        Ok(())
    }

    /// Group commit: the first caller to find its record unsynced writes and fsyncs every
    /// staged record; the others find theirs already synced.
    fn commit(&self, ticket: u64) -> Result<(), StoreError> {
        let mut w = lock(&self.wal);
        if w.failed {
            return Err(StoreError::Failed);
        }
        if w.synced >= ticket {
            return Ok(());
        }
        let (buf, upto) = {
            let mut st = lock(&self.state);
            (std::mem::take(&mut st.wal_buf), st.staged)
        };
        self.write_wal(&mut w, &buf, upto)
    }

    pub(crate) fn write_wal(
        &self,
        w: &mut WalWriter,
        buf: &[u8],
        upto: u64,
    ) -> Result<(), StoreError> {
        match w.segment.write_durably(buf) {
            Ok(()) => {
                w.synced = upto;
                self.stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .wal_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                w.failed = true;
                Err(StoreError::Wal(e))
            }
        }
    }
}
