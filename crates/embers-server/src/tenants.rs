//! The tenants' data: one full store per tenant, and the one way handlers reach it.
//!
//! A tenant is a wall: its own WAL, catalog, label index, dictionary, dedup IDs, series
//! limits, retention, ad-hoc profiles and `settings.v1` values. The default tenant
//! ([`TenantId::DEFAULT`]) keeps the data directory's root, so a data directory from
//! before tenants keeps working; every other tenant lives in `<data_dir>/tenants/<id>/`,
//! a store directory of its own (its own lock file, which also keeps the root store's
//! listings out of it). Tenant IDs follow Grafana's rules ([`TenantId::parse`]), which
//! make them safe directory names.
//!
//! [`Tenants`] opens every tenant directory it finds at start (so each WAL is replayed
//! and each store recovered before the first request), creates a tenant's store on its
//! first write, and never on a read: a read for a tenant without data gets one shared
//! empty store ([`EMPTY_DIR`]), so it answers empty and leaves nothing on disk. New tenants are
//! bounded by `max_tenants`. All stores share one block cache budget (`cache_bytes`):
//! a cache per tenant would hold `cache_bytes` × tenants, and a fixed split would starve
//! a busy tenant while idle ones hold memory they never read.
//!
//! Handlers take a [`Tenant`] (an axum extractor): the request's tenant, as
//! `crate::access` decided it, with its data and the server's shared state.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use embers_store::{AdHocProfiles, SharedCache, Store, StoreError};

use crate::error::ApiError;
use crate::metrics::Rejection;
use crate::querier::settings::Settings;
use crate::range::{DefaultFrom, QueryLimits, QueryRange};
use crate::tenant::TenantId;
use crate::{AppState, ServerConfig};

/// The directory under the data directory that holds the non-default tenants.
pub const TENANTS_DIR: &str = "tenants";

/// The directory of `tenant`'s store inside `data_dir`.
pub fn tenant_dir(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    if tenant.is_default() {
        data_dir.to_path_buf()
    } else {
        data_dir.join(TENANTS_DIR).join(tenant.as_str())
    }
}

/// The non-default tenants with a directory under `data_dir`, sorted by ID. Entries
/// whose names are not valid tenant IDs are skipped with a warning (no request can name
/// them, so they are not ours).
pub fn tenant_dirs(data_dir: &Path) -> std::io::Result<Vec<(TenantId, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(data_dir.join(TENANTS_DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        match name.to_str().map(TenantId::parse) {
            Some(Ok(id)) if !id.is_default() => found.push((id, entry.path())),
            _ => {
                tracing::warn!(path = %entry.path().display(), "not a tenant directory (not a valid tenant ID); ignored")
            }
        }
    }
    found.sort();
    Ok(found)
}

/// One tenant's data.
#[derive(Debug)]
pub struct TenantData {
    /// The tenant's store.
    pub(crate) store: Arc<Store>,
    /// Its uploaded ad-hoc profiles (kept in its store's objects).
    pub(crate) adhoc: Arc<AdHocProfiles>,
    /// Its `settings.v1` values (`settings.json` in its directory).
    pub(crate) settings: Arc<Settings>,
    /// The query bounds with the tenant's retention.
    pub(crate) query_limits: QueryLimits,
}

/// Every open tenant's data; see the module documentation.
#[derive(Debug)]
pub struct Tenants {
    config: ServerConfig,
    cache: SharedCache,
    open: RwLock<BTreeMap<TenantId, Arc<TenantData>>>,
    /// Held while a tenant's store is created, so two first writes create it once.
    creating: Mutex<()>,
    /// What a read for a tenant without data sees: an empty store.
    empty: Arc<TenantData>,
    /// The empty store's directory ([`EMPTY_DIR`], removed on drop).
    empty_dir: PathBuf,
}

/// The directory of the empty store that reads of tenants without data are answered
/// from, inside the data directory (always writable, unlike a read-only root file
/// system's `/tmp`). It has its own lock file, so no store's listing enters it, and its
/// name is no tenant directory. Nothing is ever written to it but its empty WAL.
pub const EMPTY_DIR: &str = ".empty-tenant";

impl Tenants {
    /// Opens the default tenant's store at the data directory's root and every tenant's
    /// store under `tenants/`, recovering each.
    pub fn open(config: &ServerConfig) -> anyhow::Result<Tenants> {
        raise_open_files_limit(config);
        let cache = SharedCache::new(config.cache_bytes);
        let default = TenantId::default_tenant();
        // The default tenant first: its store takes the data directory's lock, so a
        // second server on the same directory stops before touching anything else.
        let root = open_tenant(config, &cache, &default)
            .with_context(|| format!("opening {}", config.data_dir.display()))?;
        let empty_dir = config.data_dir.join(EMPTY_DIR);
        let empty_store = Store::open_dir(
            &empty_dir,
            store_config(config, &cache, &config.limits_for(&default)),
        )
        .with_context(|| format!("opening the empty store in {}", empty_dir.display()))?;
        let empty = Arc::new(TenantData::new(config, empty_store, &empty_dir, &default)?);
        let tenants = Tenants {
            config: config.clone(),
            cache,
            open: RwLock::new(BTreeMap::from([(default, Arc::new(root))])),
            creating: Mutex::default(),
            empty,
            empty_dir,
        };
        let found = tenant_dirs(&config.data_dir)
            .with_context(|| format!("listing {}", config.data_dir.join(TENANTS_DIR).display()))?;
        for (id, dir) in found {
            let data = open_tenant(config, &tenants.cache, &id)
                .with_context(|| format!("opening tenant {id}'s data in {}", dir.display()))?;
            tenants.write_map().insert(id, Arc::new(data));
        }
        Ok(tenants)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TenantId, Arc<TenantData>>> {
        self.open.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<TenantId, Arc<TenantData>>> {
        self.open.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// `tenant`'s data if it has any.
    pub fn get(&self, tenant: &TenantId) -> Option<Arc<TenantData>> {
        self.read_map().get(tenant).cloned()
    }

    /// What a read for `tenant` sees: its data, or an empty store when it has none.
    pub fn read(&self, tenant: &TenantId) -> Arc<TenantData> {
        self.get(tenant).unwrap_or_else(|| Arc::clone(&self.empty))
    }

    /// `tenant`'s data for a write, its store created on its first write: 429 past
    /// `max_tenants`. Blocking (it may create a directory and open a store).
    pub fn write(&self, tenant: &TenantId) -> Result<Arc<TenantData>, ApiError> {
        if let Some(data) = self.get(tenant) {
            return Ok(data);
        }
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(data) = self.get(tenant) {
            return Ok(data);
        }
        let others = self.read_map().keys().filter(|t| !t.is_default()).count();
        if others >= self.config.max_tenants {
            return Err(ApiError::too_many(format!(
                "tenant {tenant} has no data yet and the server already holds max_tenants = {} tenants",
                self.config.max_tenants
            ))
            .because(Rejection::StoreLimit));
        }
        let data = open_tenant(&self.config, &self.cache, tenant).map_err(|e| {
            tracing::error!(tenant = %tenant, error = format!("{e:#}"), "creating a tenant's store failed");
            match e.downcast_ref::<StoreError>() {
                Some(StoreError::Storage(_)) | Some(StoreError::Wal(_)) => {
                    ApiError::unavailable(format!("the store of tenant {tenant} cannot be created now"))
                }
                _ => ApiError::internal(format_args!("creating the store of tenant {tenant}: {e:#}")),
            }
        })?;
        tracing::info!(tenant = %tenant, "new tenant: store created");
        let data = Arc::new(data);
        self.write_map().insert(tenant.clone(), Arc::clone(&data));
        Ok(data)
    }

    /// Every open tenant and its data, sorted by ID.
    pub fn all(&self) -> Vec<(TenantId, Arc<TenantData>)> {
        self.read_map()
            .iter()
            .map(|(id, data)| (id.clone(), Arc::clone(data)))
            .collect()
    }

    /// How often the maintenance loop flushes.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.config.flush_interval_seconds.max(1))
    }

    /// Flushes and compacts every tenant's store; a failure in one does not stop the others.
    pub fn maintain(&self, now: i64) {
        for (id, data) in self.all() {
            if let Err(e) = data.store.flush() {
                tracing::error!(tenant = %id, error = %e, "flush failed; the WAL keeps the data, retrying");
            }
            if let Err(e) = data.store.compact(now) {
                tracing::error!(tenant = %id, error = %e, "compaction failed; queries read finer blocks meanwhile");
            }
        }
    }

    /// Flushes every tenant's store before exit; the first error, after trying all.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut result = Ok(());
        for (id, data) in self.all() {
            if let Err(e) = data.store.close() {
                tracing::error!(tenant = %id, error = %e, "closing a tenant's store failed; its WAL keeps the data");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Bytes the shared block cache holds.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }
}

impl Drop for Tenants {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.empty_dir);
    }
}

/// Each open store holds two file descriptors (its lock and its WAL segment) and each
/// connection one, so `max_tenants` tenants need more than the common soft limit of
/// 1,024. Raises the soft limit to the hard one (as Go's runtime does for every
/// program), and warns when even that is short of what the settings allow.
fn raise_open_files_limit(config: &ServerConfig) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if limit.current < limit.maximum || (limit.maximum.is_none() && limit.current.is_some()) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::debug!(error = %e, "could not raise the open files limit"),
        }
    }
    let needed = 2 * (config.max_tenants as u64 + 1) + config.max_connections as u64 + 64;
    if let Some(soft) = soft.filter(|&soft| soft < needed) {
        tracing::warn!(
            open_files_limit = soft,
            needed,
            "the open files limit (ulimit -n) is below what max_tenants and max_connections may use (2 per tenant, 1 per connection); raise it or lower them"
        );
    }
}

/// Opens (or creates) `id`'s store in its directory.
fn open_tenant(
    config: &ServerConfig,
    cache: &SharedCache,
    id: &TenantId,
) -> anyhow::Result<TenantData> {
    let dir = tenant_dir(&config.data_dir, id);
    let store = Store::open_dir(&dir, store_config(config, cache, &config.limits_for(id)))?;
    TenantData::new(config, store, &dir, id)
}

fn store_config(
    config: &ServerConfig,
    cache: &SharedCache,
    limits: &crate::limits::TenantLimits,
) -> embers_store::Config {
    embers_store::Config {
        retention: limits.retention,
        flush_interval: Duration::from_secs(config.flush_interval_seconds.max(1)),
        max_series_per_service: limits.max_series_per_service,
        max_series: limits.max_series,
        limit_names: limits.limit_names.clone(),
        cache_bytes: config.cache_bytes,
        shared_cache: Some(cache.clone()),
        ..embers_store::Config::default()
    }
}

impl TenantData {
    fn new(
        config: &ServerConfig,
        store: Store,
        dir: &Path,
        id: &TenantId,
    ) -> anyhow::Result<TenantData> {
        let limits = config.limits_for(id);
        let mut query_limits = config.query_limits().map_err(anyhow::Error::msg)?;
        query_limits.retention = limits.retention.map(|d| d.as_secs() as i64);
        Ok(TenantData {
            adhoc: Arc::new(store.adhoc(config.adhoc.limits())),
            store: Arc::new(store),
            settings: Arc::new(Settings::open(dir)),
            query_limits,
        })
    }
}

/// The request's tenant: the extractor every handler that touches data takes. It
/// derefs to the server's shared [`AppState`]; `data` is the tenant's (for a read of a
/// tenant without data, an empty store), and `Tenant::writable` creates it for a write.
#[derive(Debug, Clone)]
pub struct Tenant {
    app: AppState,
    /// Who the request is for.
    pub(crate) id: TenantId,
    /// The tenant's data.
    pub(crate) data: Arc<TenantData>,
}

impl Deref for Tenant {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Tenant, ApiError> {
        // `access::check` runs before every handler and always decides the tenant; a
        // request without one is a wiring bug, never a reason to fall back to a tenant.
        let id = parts
            .extensions
            .get::<TenantId>()
            .cloned()
            .ok_or_else(|| ApiError::internal("no tenant was decided for this request"))?;
        Ok(Tenant {
            data: app.tenants.read(&id),
            app: app.clone(),
            id,
        })
    }
}

impl Tenant {
    /// The same request's tenant with its store created if need be (see
    /// [`Tenants::write`]); off the async workers.
    pub(crate) async fn writable(&self) -> Result<Tenant, ApiError> {
        let tenants = Arc::clone(&self.app.tenants);
        let id = self.id.clone();
        let data = match tenants.get(&id) {
            Some(data) => data,
            None => tokio::task::spawn_blocking(move || tenants.write(&id))
                .await
                .map_err(ApiError::internal)??,
        };
        Ok(Tenant {
            data,
            ..self.clone()
        })
    }

    /// The tenant's store.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.data.store
    }

    /// A request's time range, bounded by the server's [`QueryLimits`] and the tenant's
    /// retention and oldest data.
    pub(crate) fn range(
        &self,
        from: Option<&str>,
        until: Option<&str>,
        default: DefaultFrom,
    ) -> Result<QueryRange, ApiError> {
        QueryRange::parse(from, until, default, &self.data.query_limits, || {
            self.data.store.oldest_data()
        })
    }

    /// A Connect request's `start`/`end` (ms), bounded likewise.
    pub(crate) fn range_ms(&self, start: i64, end: i64) -> Result<QueryRange, ApiError> {
        QueryRange::from_millis(start, end, &self.data.query_limits, || {
            self.data.store.oldest_data()
        })
    }

    /// Runs a read of the tenant's store in a query slot, off the async workers.
    pub(crate) async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.data.store);
        self.app.queries.run(move || f(&store)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_tenants: usize) -> ServerConfig {
        ServerConfig {
            data_dir: dir.to_path_buf(),
            max_tenants,
            ..ServerConfig::default()
        }
    }

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn reads_create_nothing_writes_create_once_and_reopening_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = Arc::new(Tenants::open(&config(dir.path(), 2)).unwrap());
        let a = id("team-a");
        assert!(tenants.get(&a).is_none());
        assert_eq!(tenants.read(&a).store.counts(), (0, 0, 0));
        assert!(!dir.path().join(TENANTS_DIR).exists());

        // Concurrent first writes open one store.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (tenants, a) = (Arc::clone(&tenants), a.clone());
                std::thread::spawn(move || tenants.write(&a).unwrap())
            })
            .collect();
        let stores: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(stores.iter().all(|s| Arc::ptr_eq(s, &stores[0])));
        assert!(dir.path().join("tenants/team-a/embers.lock").exists());

        tenants.write(&id("team-b")).unwrap();
        let refused = tenants.write(&id("team-c")).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(
            refused.message.contains("max_tenants = 2"),
            "{}",
            refused.message
        );
        assert!(!dir.path().join("tenants/team-c").exists());
        // The default tenant never counts and always has its store.
        assert!(tenants.get(&TenantId::default_tenant()).is_some());
        tenants.close().unwrap();
        drop(stores);
        drop(tenants);

        // A directory that is no tenant ID is left alone.
        std::fs::create_dir_all(dir.path().join("tenants/not a tenant")).unwrap();
        let found: Vec<String> = tenant_dirs(dir.path())
            .unwrap()
            .into_iter()
            .map(|(t, _)| t.to_string())
            .collect();
        assert_eq!(found, ["team-a", "team-b"]);
        let reopened = Tenants::open(&config(dir.path(), 2)).unwrap();
        let open: Vec<String> = reopened
            .all()
            .into_iter()
            .map(|(t, _)| t.to_string())
            .collect();
        assert_eq!(open, ["anonymous", "team-a", "team-b"]);
    }
}
