//! The per-tenant ingest byte rate: one token bucket per tenant, filled at
//! `ingest_bytes_per_second` up to `ingest_burst_bytes`, charged with each ingest
//! request's body as sent (compressed).
//!
//! A request is admitted when its tenant's bucket holds its size, or the whole burst for a
//! body larger than the burst (so such a body is not refused forever); it then takes its
//! whole size, which may leave the bucket in debt that later requests wait out. Over time
//! a tenant gets exactly its rate, whatever the size of its pushes. A refusal says when
//! the missing bytes will have refilled (`Retry-After`).
//!
//! Tenants do not contend: the map of buckets is read-locked to find a bucket, and each
//! bucket has its own mutex, held for a few arithmetic operations. A bucket that has
//! refilled completely is the same as a new one, so buckets of idle tenants are dropped
//! when the map grows, keeping memory bounded by the tenants active recently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::body::Body;

use crate::error::ApiError;
use crate::limits::setting_source;
use crate::metrics::{lock, Rejection};
use crate::tenant::TenantId;
use crate::ServerConfig;

/// Buckets kept before the map is swept of full ones (then twice what survives).
const MIN_SWEEP: usize = 1024;

/// One tenant's rate, and the setting that gave it (named in refusals).
#[derive(Debug, Clone)]
struct Rate {
    per_second: u64,
    burst: u64,
    source: Arc<str>,
}

/// The per-tenant ingest byte rates, as configured, and their buckets.
#[derive(Debug)]
pub struct IngestRate {
    /// The rate of tenants without a table of their own; `None`: unlimited.
    default: Option<Rate>,
    /// Tenants with a `[tenants.<id>]` table.
    own: HashMap<TenantId, Option<Rate>>,
    buckets: RwLock<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<TenantId, Arc<Mutex<Bucket>>>,
    sweep_at: usize,
}

/// Bytes a tenant may still send now; negative while it pays off a large body.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    per_second: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: &Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst as f64,
            last: now,
            per_second: rate.per_second as f64,
            burst: rate.burst as f64,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
    }

    /// Takes `size` bytes if the bucket holds `min(size, burst)` (for a body of unknown
    /// size: at least one byte); otherwise the seconds until it will.
    fn take(&mut self, size: Option<u64>, now: Instant) -> Result<(), u64> {
        self.refill(now);
        let need = size.map_or(1.0, |n| (n as f64).min(self.burst).max(1.0));
        if self.tokens >= need {
            self.tokens -= size.unwrap_or(0) as f64;
            return Ok(());
        }
        let wait = ((need - self.tokens) / self.per_second).ceil();
        Err((wait as u64).max(1))
    }

    /// Charges bytes already received (a body without `Content-Length`).
    fn charge(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Charges a body of unknown length for each chunk as it is read.
#[derive(Debug)]
pub struct Meter(Arc<Mutex<Bucket>>);

impl Meter {
    /// The body, charging the tenant's bucket as it is read.
    pub fn wrap(self, body: Body) -> Body {
        use http_body_util::BodyExt;
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                lock(&self.0).charge(data.len(), Instant::now());
            }
            frame
        }))
    }
}

impl IngestRate {
    /// The rates `config` sets (`[limits]` and `[tenants.<id>]`).
    pub fn new(config: &ServerConfig) -> IngestRate {
        let rate = |tenant: Option<&TenantId>| {
            let limits = config.resolve_limits(tenant.and_then(|t| config.tenants.get(t)));
            (limits.ingest_bytes_per_second > 0).then(|| Rate {
                per_second: limits.ingest_bytes_per_second,
                burst: limits.ingest_burst_bytes.max(1),
                source: setting_source(config, tenant, "ingest_bytes_per_second").into(),
            })
        };
        IngestRate {
            default: rate(None),
            own: config
                .tenants
                .keys()
                .map(|t| (t.clone(), rate(Some(t))))
                .collect(),
            buckets: RwLock::new(Buckets {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// Admits a request of `length` bytes (`None`: no `Content-Length`) from `tenant`,
    /// or answers 429 with the seconds until its bucket holds enough. A body of unknown
    /// length is charged as it is read, through the returned [`Meter`].
    pub fn admit(
        &self,
        tenant: &TenantId,
        length: Option<usize>,
    ) -> Result<Option<Meter>, ApiError> {
        self.admit_at(tenant, length, Instant::now())
    }

    fn admit_at(
        &self,
        tenant: &TenantId,
        length: Option<usize>,
        now: Instant,
    ) -> Result<Option<Meter>, ApiError> {
        let Some(rate) = self.own.get(tenant).unwrap_or(&self.default) else {
            return Ok(None);
        };
        let bucket = self.bucket(tenant, rate, now);
        let taken = lock(&bucket).take(length.map(|n| n as u64), now);
        match taken {
            Ok(()) => Ok(length.is_none().then_some(Meter(bucket))),
            Err(secs) => {
                let mut e = ApiError::too_many(format!(
                    "tenant {:?} is over its ingest rate of {} bytes/s with bursts of \
                     {} bytes ({}); retry in {secs} s",
                    tenant.as_str(),
                    rate.per_second,
                    rate.burst,
                    rate.source
                ))
                .because(Rejection::IngestRate);
                e.retry_after = Some(secs);
                Err(e)
            }
        }
    }

    fn bucket(&self, tenant: &TenantId, rate: &Rate, now: Instant) -> Arc<Mutex<Bucket>> {
        let read = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = read.map.get(tenant) {
            return Arc::clone(bucket);
        }
        drop(read);
        let mut write = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        if write.map.len() >= write.sweep_at {
            // A bucket still in use (a body being read charges it) stays, full or not.
            write
                .map
                .retain(|_, b| Arc::strong_count(b) > 1 || !lock(b).is_full(now));
            write.sweep_at = (write.map.len() * 2).max(MIN_SWEEP);
        }
        let bucket = write
            .map
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(rate, now))));
        Arc::clone(bucket)
    }

    /// Buckets kept now (tenants limited and active recently).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.buckets.read().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(toml: &str) -> ServerConfig {
        ServerConfig::from_toml(toml).unwrap()
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_tenant_over_its_rate_waits_for_the_deficit_while_others_go_on() {
        let rates = IngestRate::new(&config(
            "[limits]\ningest_bytes_per_second = 1000000\n\
             [tenants.small]\ningest_bytes_per_second = 100\ningest_burst_bytes = 300\n",
        ));
        let (small, big) = (tenant("small"), tenant("big"));
        let t0 = Instant::now();
        rates.admit_at(&small, Some(200), t0).unwrap();
        rates.admit_at(&small, Some(100), t0).unwrap();
        let refused = rates.admit_at(&small, Some(250), t0).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        // 250 bytes missing at 100 bytes/s: 3 s, rounded up.
        assert_eq!(refused.retry_after, Some(3));
        assert_eq!(refused.rejection, Some(Rejection::IngestRate));
        assert!(
            refused.message.contains(
                "100 bytes/s with bursts of 300 bytes (ingest_bytes_per_second in [tenants.small])"
            ),
            "{}",
            refused.message
        );
        for _ in 0..10 {
            rates.admit_at(&big, Some(50_000), t0).unwrap();
        }
        let later = t0 + Duration::from_millis(2_400);
        assert_eq!(
            rates
                .admit_at(&small, Some(250), later)
                .unwrap_err()
                .retry_after,
            Some(1)
        );
        rates
            .admit_at(&small, Some(250), t0 + Duration::from_secs(3))
            .unwrap();
    }

    #[test]
    fn a_body_larger_than_the_burst_goes_through_once_and_is_paid_off() {
        let rates = IngestRate::new(&config("[limits]\ningest_bytes_per_second = 10\n"));
        let t = tenant("anonymous");
        let t0 = Instant::now();
        // Burst = one second of the rate; a full bucket admits a 95-byte body...
        rates.admit_at(&t, Some(95), t0).unwrap();
        // ...and the 85 bytes of debt plus 10 needed take 9.5 s to refill: 10 s.
        let refused = rates.admit_at(&t, Some(10), t0).unwrap_err();
        assert_eq!(refused.retry_after, Some(10));
        assert!(refused.message.contains("[limits]"), "{}", refused.message);
        rates
            .admit_at(&t, Some(10), t0 + Duration::from_secs(10))
            .unwrap();
    }

    #[test]
    fn bodies_without_length_are_charged_as_read_and_unlimited_tenants_pass() {
        let rates = IngestRate::new(&config(
            "[limits]\ningest_bytes_per_second = 10\n[tenants.free]\ningest_bytes_per_second = 0\n",
        ));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(rates
                .admit_at(&tenant("free"), Some(1 << 20), t0)
                .unwrap()
                .is_none());
        }
        assert_eq!(rates.buckets(), 0);
        let meter = rates.admit_at(&tenant("x"), None, t0).unwrap().unwrap();
        lock(&meter.0).charge(1_000, t0);
        let refused = rates.admit_at(&tenant("x"), None, t0).unwrap_err();
        // 990 bytes of debt plus one: 99.1 s.
        assert_eq!(refused.retry_after, Some(100));
    }

    #[test]
    fn idle_tenants_buckets_are_dropped_when_the_map_grows() {
        let rates = IngestRate::new(&config("[limits]\ningest_bytes_per_second = 1000\n"));
        let t0 = Instant::now();
        rates.admit_at(&tenant("busy"), Some(1000), t0).unwrap();
        // A chunked body still being read: its bucket must not be swept.
        let reading = rates
            .admit_at(&tenant("reading"), None, t0)
            .unwrap()
            .unwrap();
        for i in 2..MIN_SWEEP {
            rates
                .admit_at(&tenant(&format!("t{i}")), Some(10), t0)
                .unwrap();
        }
        assert_eq!(rates.buckets(), MIN_SWEEP);
        // Half a second later the small buckets have refilled, the busy one has not; the
        // next new tenant sweeps the full ones not in use.
        let t1 = t0 + Duration::from_millis(500);
        rates.admit_at(&tenant("new"), Some(10), t1).unwrap();
        assert_eq!(rates.buckets(), 3);
        // The body's bytes, read after the sweep, still count against its tenant.
        lock(&reading.0).charge(5_000, t1);
        let refused = rates
            .admit_at(&tenant("reading"), Some(10), t1)
            .unwrap_err();
        assert_eq!(refused.retry_after, Some(5));
        // The busy tenant's debt survived the sweep: a fresh bucket would admit this.
        let refused = rates.admit_at(&tenant("busy"), Some(1000), t1).unwrap_err();
        assert_eq!(refused.retry_after, Some(1));
    }
}
