//! Per-tenant limits (issue 13): how many series a tenant may create, how long its data
//! is kept, and how many request bytes per second it may push.
//!
//! The TOML file sets defaults for every tenant in `[limits]` and overrides them per
//! tenant in `[tenants.<id>]`:
//!
//! ```toml
//! [limits]                        # every tenant
//! max_series = 100000
//! ingest_bytes_per_second = 4000000
//!
//! [tenants.team-a]                # only team-a; unset keys come from [limits]
//! max_series_per_service = 500
//! retention = "7d"
//! ingest_bytes_per_second = 200000
//! ingest_burst_bytes = 2000000
//! ```
//!
//! A key missing from `[limits]` falls back to the top-level key of the same name
//! (`max_series`, `max_series_per_service`, `retention`), so configurations written before
//! tenants existed keep their meaning: the top-level keys are every tenant's defaults.
//! The byte rate has no top-level key: 0 (the default) leaves ingest unlimited.
//!
//! [`ServerConfig::limits_for`] resolves one tenant's [`TenantLimits`]: the tenant
//! registry opens each tenant's store with its series limits and retention, and
//! [`rate::IngestRate`] enforces the byte rate in the ingest middleware
//! (`budget::ingest_budget`).

pub mod rate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::tenant::TenantId;
use crate::ServerConfig;

/// One table of limits, `[limits]` or `[tenants.<id>]`: every key optional, unknown keys
/// refused (a typo must not silently leave a tenant unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsTable {
    /// Most series in the tenant's store, over every service (429 past it).
    pub max_series: Option<usize>,
    /// Most series of one service in the tenant's store (429 past it).
    pub max_series_per_service: Option<usize>,
    /// Keep the tenant's data this long (`30d`, `12h`); `"0"` or `""` keeps everything
    /// (so a tenant can keep forever what the default deletes).
    #[serde(deserialize_with = "retention")]
    pub retention: Option<Option<Duration>>,
    /// Request body bytes (as sent, compressed) per second; 0 is unlimited.
    pub ingest_bytes_per_second: Option<u64>,
    /// Bytes a tenant idle for a while may push at once; unset: one second of the rate.
    pub ingest_burst_bytes: Option<u64>,
}

/// What one tenant may do, resolved from `[tenants.<id>]`, `[limits]` and the top-level
/// keys, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantLimits {
    /// Most series in the tenant's store.
    pub max_series: usize,
    /// Most series per service in the tenant's store.
    pub max_series_per_service: usize,
    /// How long the tenant's data is kept; `None` keeps everything.
    pub retention: Option<Duration>,
    /// Ingest request bytes per second; 0 is unlimited.
    pub ingest_bytes_per_second: u64,
    /// The token bucket's size: bytes that may arrive at once after a quiet spell.
    pub ingest_burst_bytes: u64,
    /// How the tenant's store names its series limits when it refuses a write (the
    /// tenant, and the table to raise them in).
    pub limit_names: embers_store::LimitNames,
}

/// Where a tenant's setting comes from, to name it in a refusal the operator can act on.
/// `None` asks about a tenant without a table of its own.
pub(crate) fn setting_source(
    config: &ServerConfig,
    tenant: Option<&TenantId>,
    key: &str,
) -> String {
    let set_in = |table: &LimitsTable| match key {
        "max_series" => table.max_series.is_some(),
        "max_series_per_service" => table.max_series_per_service.is_some(),
        "retention" => table.retention.is_some(),
        "ingest_bytes_per_second" => table.ingest_bytes_per_second.is_some(),
        "ingest_burst_bytes" => table.ingest_burst_bytes.is_some(),
        _ => false,
    };
    if let Some(tenant) = tenant.filter(|t| config.tenants.get(*t).is_some_and(set_in)) {
        format!("{key} in [tenants.{tenant}]")
    } else if set_in(&config.limits) {
        format!("{key} in [limits]")
    } else {
        key.to_owned()
    }
}

impl ServerConfig {
    /// The limits of `tenant`: its `[tenants.<id>]` keys, else `[limits]`, else the
    /// top-level keys.
    pub fn limits_for(&self, tenant: &TenantId) -> TenantLimits {
        let mut limits = self.resolve_limits(self.tenants.get(tenant));
        if !tenant.is_default() {
            let name = |key| setting_source(self, Some(tenant), key);
            limits.limit_names = embers_store::LimitNames::new(
                format!("tenant {:?}", tenant.as_str()),
                name("max_series"),
                name("max_series_per_service"),
            );
        }
        limits
    }

    /// The limits of a tenant whose own table is `own` (`None`: no table of its own),
    /// named as the store's own.
    pub(crate) fn resolve_limits(&self, own: Option<&LimitsTable>) -> TenantLimits {
        let defaults = &self.limits;
        macro_rules! pick {
            ($key:ident) => {
                own.and_then(|t| t.$key).or(defaults.$key)
            };
        }
        let rate = pick!(ingest_bytes_per_second).unwrap_or(0);
        TenantLimits {
            max_series: pick!(max_series).unwrap_or(self.max_series),
            max_series_per_service: pick!(max_series_per_service)
                .unwrap_or(self.max_series_per_service),
            // The top-level key was checked when the configuration was read.
            retention: pick!(retention).unwrap_or_else(|| self.retention().ok().flatten()),
            ingest_bytes_per_second: rate,
            ingest_burst_bytes: pick!(ingest_burst_bytes).unwrap_or(rate),
            limit_names: embers_store::LimitNames::default(),
        }
    }
}

/// `retention = "7d"`: parsed when the file is read, so a bad duration stops the start.
fn retention<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "" | "0" => Ok(Some(None)),
        s => crate::params::parse_duration(s)
            .map(|secs| Some(Some(Duration::from_secs(secs.max(0) as u64))))
            .map_err(|e| serde::de::Error::custom(format!("retention: {e}"))),
    }
}

/// `[tenants.<id>]`: each ID checked with Grafana's rules ([`TenantId::parse`]).
pub(crate) fn tenant_tables<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<TenantId, LimitsTable>, D::Error> {
    BTreeMap::<String, LimitsTable>::deserialize(d)?
        .into_iter()
        .map(|(id, table)| {
            TenantId::parse(&id)
                .map(|id| (id, table))
                .map_err(|e| serde::de::Error::custom(format!("[tenants.{id}]: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn without_tables_every_tenant_gets_the_top_level_keys() {
        let c = ServerConfig::from_toml("max_series = 7\nretention = \"2d\"\n").unwrap();
        let l = c.limits_for(&tenant("anyone"));
        assert_eq!(l.max_series, 7);
        assert_eq!(l.max_series_per_service, 10_000);
        assert_eq!(l.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!((l.ingest_bytes_per_second, l.ingest_burst_bytes), (0, 0));
        assert_eq!(
            c.limits_for(&TenantId::default_tenant()),
            c.resolve_limits(None)
        );
        assert_eq!(l.max_series, c.resolve_limits(None).max_series);
    }

    #[test]
    fn tenant_tables_override_limits_which_override_top_level_keys() {
        let c = ServerConfig::from_toml(
            "max_series = 7\nmax_series_per_service = 5\nretention = \"30d\"\n\
             [limits]\nmax_series = 100\ningest_bytes_per_second = 1000\n\
             [tenants.small]\nmax_series = 3\nretention = \"1h\"\ningest_burst_bytes = 50\n\
             [tenants.keeper]\nretention = \"0\"\ningest_bytes_per_second = 0\n",
        )
        .unwrap();
        let small = c.limits_for(&tenant("small"));
        assert_eq!(small.max_series, 3);
        assert_eq!(small.max_series_per_service, 5);
        assert_eq!(small.retention, Some(Duration::from_secs(3600)));
        assert_eq!(small.ingest_bytes_per_second, 1000);
        assert_eq!(small.ingest_burst_bytes, 50);
        let other = c.limits_for(&tenant("other"));
        assert_eq!(other.max_series, 100);
        assert_eq!(other.retention, Some(Duration::from_secs(30 * 86_400)));
        // The burst defaults to one second of the rate.
        assert_eq!(other.ingest_burst_bytes, 1000);
        let keeper = c.limits_for(&tenant("keeper"));
        assert_eq!(keeper.retention, None);
        assert_eq!(keeper.ingest_bytes_per_second, 0);
        assert_eq!(
            small.limit_names,
            embers_store::LimitNames::new(
                "tenant \"small\"".into(),
                "max_series in [tenants.small]".into(),
                "max_series_per_service".into()
            )
        );
        assert_eq!(
            c.limits_for(&TenantId::default_tenant()).limit_names,
            embers_store::LimitNames::default()
        );
        assert_eq!(
            setting_source(&c, Some(&tenant("small")), "max_series"),
            "max_series in [tenants.small]"
        );
        assert_eq!(
            setting_source(&c, Some(&tenant("other")), "max_series"),
            "max_series in [limits]"
        );
        assert_eq!(
            setting_source(&c, Some(&tenant("other")), "max_series_per_service"),
            "max_series_per_service"
        );
    }

    #[test]
    fn typos_bad_tenant_ids_and_bad_durations_are_refused() {
        for bad in [
            "[limits]\nmax_serie = 3\n",
            "[tenants.a]\ningest_bytes_per_sec = 3\n",
            "[tenants.\"a/b\"]\nmax_series = 3\n",
            "[tenants.\"..\"]\nmax_series = 3\n",
            "[tenants.a]\nretention = \"soon\"\n",
            "[limits]\nretention = \"7x\"\n",
            "[limits]\ningest_bytes_per_second = -1\n",
        ] {
            assert!(ServerConfig::from_toml(bad).is_err(), "accepted {bad:?}");
        }
        let e = ServerConfig::from_toml("[tenants.\"a b\"]\nmax_series = 3\n").unwrap_err();
        assert!(e.contains("[tenants.a b]"), "{e}");
    }
}
