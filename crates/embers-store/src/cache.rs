//! A small cache of opened block objects. Objects never change once written, so a cached
//! copy is never stale; the budget bounds memory by payload bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::block::BlockReader;

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Arc<BlockReader>, u64, usize)>,
    bytes: usize,
    tick: u64,
}

/// Least-recently-used blocks, up to a byte budget.
#[derive(Debug)]
pub struct BlockCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl BlockCache {
    /// A cache holding up to `budget` bytes of payload (0 disables it).
    pub fn new(budget: usize) -> Self {
        BlockCache {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached block under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<BlockReader>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.get_mut(key).map(|(block, used, _)| {
            *used = tick;
            Arc::clone(block)
        })
    }

    /// Caches `block` (of `size` bytes) under `key`, evicting the least recently used.
    pub fn insert(&self, key: &str, block: Arc<BlockReader>, size: usize) {
        if size > self.budget / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((_, _, old)) = inner.entries.insert(key.to_owned(), (block, tick, size)) {
            inner.bytes -= old;
        }
        inner.bytes += size;
        while inner.bytes > self.budget {
            let Some(victim) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.1)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, _, size)) = inner.entries.remove(&victim) {
                inner.bytes -= size;
            }
        }
    }

    /// Drops `key` (its object was deleted).
    pub fn remove(&self, key: &str) {
        let mut inner = self.lock();
        if let Some((_, _, size)) = inner.entries.remove(key) {
            inner.bytes -= size;
        }
    }
}
