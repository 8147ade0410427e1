//! A small cache of opened block objects. Objects never change once written, so a cached
//! copy is never stale; the budget bounds memory by payload bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// One budget of decoded blocks shared by several stores: a server with many tenants
/// opens a store per tenant, and a cache per store would hold `budget` × tenants bytes.
/// Shared, the busiest tenants' blocks stay and idle ones' age out, under one bound.
#[derive(Debug, Clone)]
pub struct SharedCache(Arc<BlockCache>);

impl SharedCache {
    /// A cache of up to `budget` bytes of decoded blocks (0 disables it).
    pub fn new(budget: usize) -> SharedCache {
        SharedCache(Arc::new(BlockCache::new(budget)))
    }

    /// Bytes held now, over every store using it.
    pub fn bytes(&self) -> usize {
        self.0.lock().bytes
    }
}

/// A store's view of a cache, its own or a [`SharedCache`]: keys are object keys, which
/// are the same in every store (`l0/…`), so each store gets its own key prefix.
#[derive(Debug)]
pub(crate) struct StoreCache {
    cache: Arc<BlockCache>,
    prefix: String,
}

impl StoreCache {
    /// The cache a store opened with `shared` (or its own of `budget` bytes) uses.
    pub(crate) fn new(shared: Option<&SharedCache>, budget: usize) -> StoreCache {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        StoreCache {
            cache: shared.map_or_else(|| Arc::new(BlockCache::new(budget)), |s| Arc::clone(&s.0)),
            prefix: format!("{}/", NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<BlockReader>> {
        self.cache.get(&self.key(key))
    }

    pub(crate) fn insert(&self, key: &str, block: Arc<BlockReader>, size: usize) {
        self.cache.insert(&self.key(key), block, size);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.cache.remove(&self.key(key));
    }
}
