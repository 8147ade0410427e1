//! Profile types and app names, normalised as Grafana Pyroscope does, so that both the
//! legacy `app.cpu{…}` form and the `name:type:unit:period_type:period_unit` form find
//! the same series.
//!
//! Three tables meet here. A pprof upload's profile type id is built from the profile
//! itself ([`family`], [`type_id`]); a legacy stack upload (folded, lines, trie, tree)
//! gets its id from its app name's suffix and sample rate ([`legacy_type`], Grafana's
//! `convertMetadata`); and a legacy query `app.suffix` names the id a Go client's pprof
//! gets ([`SUFFIXES`]), also matching the ids legacy uploads and older Embers versions
//! stored for the same thing ([`aliases`]), all of the same units.

use embers_formats::ingest::SampleTypes;
use embers_profile::{ProfileMeta, ValueType};
use embers_store::{MatchOp, Matcher, Selector, PROFILE_TYPE, SERVICE_NAME};

/// A legacy suffix (`app.cpu`, `app.alloc_objects`) and the profile type id a query
/// with it means: the id Go's pprof profiles get in Grafana.
const SUFFIXES: &[(&str, &str)] = &[
    ("cpu", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
    ("wall", "wall:wall:nanoseconds:wall:nanoseconds"),
    ("itimer", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
    ("alloc_objects", "memory:alloc_objects:count:space:bytes"),
    ("alloc_space", "memory:alloc_space:bytes:space:bytes"),
    ("inuse_objects", "memory:inuse_objects:count:space:bytes"),
    ("inuse_space", "memory:inuse_space:bytes:space:bytes"),
    ("mutex_count", "mutex:contentions:count:contentions:count"),
    (
        "mutex_duration",
        "mutex:delay:nanoseconds:contentions:count",
    ),
    ("block_count", "block:contentions:count:contentions:count"),
    (
        "block_duration",
        "block:delay:nanoseconds:contentions:count",
    ),
    ("goroutines", "goroutines:goroutine:count:goroutine:count"),
];

/// Ids that hold the same data as a query's id, in the same units: what legacy stack
/// uploads get in Grafana (no period), and what Embers stored before it built ids as
/// Grafana does (goroutines under `goroutine`; no period written as the sample type).
/// A query for the first finds series stored under any of them.
pub fn aliases(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = parts(id) {
        if p[3].is_empty() && p[4].is_empty() {
            // Before: a profile without a period type repeated its sample type there.
            out.push(format!("{}:{}:{}:{}:{}", p[0], p[1], p[2], p[1], p[2]));
        } else {
            // Legacy stack uploads of the same type carry no period (Grafana).
            if matches!(p[0], "memory" | "mutex" | "block")
                && SUFFIXES.iter().any(|(_, s)| *s == id)
            {
                out.push(format!("{}:{}:{}::", p[0], p[1], p[2]));
            }
        }
    }
    match id {
        "goroutines:goroutine:count:goroutine:count" => {
            out.push("goroutine:goroutine:count:goroutine:count".into());
            out.push("goroutine:goroutines:count::".into());
        }
        // Legacy wall uploads with a sample rate get a `cpu` period (Grafana, tested).
        "wall:wall:nanoseconds:wall:nanoseconds" => {
            out.push("wall:wall:nanoseconds:cpu:nanoseconds".into());
        }
        _ => {}
    }
    out.retain(|a| a != id);
    out
}

/// Splits a legacy app name into the service name and the profile type id its suffix
/// names, for queries (`cpu` when there is no known suffix).
pub fn split_app_name(name: &str) -> (&str, &'static str) {
    if let Some((app, suffix)) = name.rsplit_once('.') {
        if let Some((_, id)) = SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            return (app, id);
        }
    }
    (name, SUFFIXES[0].1)
}

/// The legacy suffix for a profile type id, for listing apps the old way.
pub fn legacy_suffix(profile_type: &str) -> Option<&'static str> {
    SUFFIXES
        .iter()
        .find(|(_, id)| *id == profile_type || aliases(id).iter().any(|a| a == profile_type))
        .map(|(s, _)| *s)
}

/// What a legacy stack upload (folded, lines, trie, tree) is stored as.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyType {
    /// The service name: the app name without its type suffix.
    pub service: String,
    /// The profile type id.
    pub id: String,
    /// What the values are multiplied by: the period in nanoseconds, for CPU and wall
    /// profiles with a sample rate.
    pub scale: Option<f64>,
}

/// Grafana's reading of a legacy stack upload's app name (`pkg/ingester/pyroscope`,
/// `convertMetadata`): the last `.suffix` is the type and is stripped (none: `cpu`);
/// CPU and wall counts become nanoseconds when `sample_rate` is not 0. A suffix Grafana
/// does not know (`my.app`) keeps the whole name as a CPU profile's service name, where
/// Grafana refuses the upload.
pub fn legacy_type(app: &str, sample_rate: u32) -> LegacyType {
    let (service, suffix) = app.rsplit_once('.').unwrap_or((app, "cpu"));
    let (name, kind, unit) = match suffix {
        "cpu" | "itimer" => ("process_cpu", "samples", "count"),
        "wall" | "seconds" | "nanoseconds" | "microseconds" | "milliseconds" => {
            ("wall", "samples", "count")
        }
        "inuse_objects"
        | "alloc_objects"
        | "alloc_in_new_tlab_objects"
        | "alloc_outside_tlab_objects" => ("memory", suffix, "count"),
        "inuse_space" | "alloc_space" | "alloc_in_new_tlab_bytes" | "alloc_outside_tlab_bytes" => {
            ("memory", suffix, "bytes")
        }
        "live" => ("memory", "live", "count"),
        "bytes" => ("memory", "samples", "bytes"),
        "goroutines" => ("goroutine", "goroutines", "count"),
        "mutex_count" => ("mutex", "contentions", "count"),
        "mutex_duration" => ("mutex", "delay", "nanoseconds"),
        "block_count" | "lock_count" => ("block", "contentions", "count"),
        "block_duration" | "lock_duration" => ("block", "delay", "nanoseconds"),
        "exceptions" => ("exceptions", "samples", "count"),
        _ => return legacy_type_of(app, "process_cpu", "samples", "count", sample_rate),
    };
    legacy_type_of(service, name, kind, unit, sample_rate)
}

fn legacy_type_of(service: &str, name: &str, kind: &str, unit: &str, rate: u32) -> LegacyType {
    let sampled = rate != 0 && (name == "process_cpu" || name == "wall");
    let (id, scale) = if sampled {
        let period = 1_000_000_000 / i64::from(rate);
        let kind = if name == "wall" { "wall" } else { "cpu" };
        (
            format!("{name}:{kind}:nanoseconds:cpu:nanoseconds"),
            Some(period as f64),
        )
    } else {
        (format!("{name}:{kind}:{unit}::"), None)
    };
    LegacyType {
        service: service.to_owned(),
        id,
        scale,
    }
}

/// The `__name__` of a pprof profile's series, as Grafana decides it
/// (`RawProfile.metricName`): a sample type `wall` makes it `wall`; otherwise the first
/// sample type whose name (its configured display name, if any) says `cpu`,
/// `alloc_`/`inuse_`/`space`/`objects`, `mutex_`, `block_` or `goroutines`; else the
/// last sample type's name. Go's block and mutex profiles differ only by display name.
pub fn family(metas: &[&ProfileMeta], sample_types: &SampleTypes) -> String {
    if metas.iter().any(|m| m.sample_type.kind == "wall") {
        return "wall".into();
    }
    let mut last = "";
    for meta in metas {
        let kind = meta.sample_type.kind.as_str();
        let st = sample_types
            .get(kind)
            .map(|c| c.display_name.as_str())
            .filter(|d| !d.is_empty())
            .unwrap_or(kind);
        last = st;
        if st.contains("cpu") {
            return "process_cpu".into();
        }
        if st.contains("alloc_") || st.contains("inuse_") || st == "space" || st == "objects" {
            return "memory".into();
        }
        for family in ["mutex", "block"] {
            if st.contains(&format!("{family}_")) {
                return family.into();
            }
        }
        if st.contains("goroutines") {
            return "goroutines".into();
        }
    }
    if last.is_empty() {
        "unknown".into()
    } else {
        last.to_owned()
    }
}

/// The profile type id of one sample type of a profile in family `name`; the period
/// fields are empty when the profile has no period type (Grafana's
/// `CreateProfileLabels`).
pub fn type_id(name: &str, meta: &ProfileMeta) -> String {
    let (pt, pu) = meta
        .period_type
        .as_ref()
        .map_or(("", ""), |p| (p.kind.as_str(), p.unit.as_str()));
    format!(
        "{name}:{}:{}:{pt}:{pu}",
        meta.sample_type.kind, meta.sample_type.unit
    )
}

/// Backslash-escapes everything but the characters profile type ids are made of.
fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The matcher for a profile type id: equality, or a regular expression over the id and
/// its [`aliases`] (the id first).
fn type_matcher(id: &str) -> Matcher {
    let aliases = aliases(id);
    if aliases.is_empty() {
        return Matcher::new(PROFILE_TYPE, MatchOp::Eq, id).expect("not a regex");
    }
    let alternatives: Vec<String> = std::iter::once(id.to_owned())
        .chain(aliases)
        .map(|a| escape(&a))
        .collect();
    Matcher::new(PROFILE_TYPE, MatchOp::Re, alternatives.join("|")).expect("escaped ids")
}

/// The one profile type a query's matchers pin, if any: an `=` on `__profile_type__`, or
/// the matcher [`resolve`] built for an id and its aliases.
pub fn pinned(matchers: &[Matcher]) -> Option<&str> {
    matchers.iter().find_map(|m| {
        if m.name != PROFILE_TYPE {
            return None;
        }
        match m.op {
            MatchOp::Eq => Some(m.value.as_str()),
            MatchOp::Re => {
                // Ids are built of characters `escape` leaves alone.
                let first = m.value.split('|').next()?;
                (!first.contains('\\') && type_matcher(first).value == m.value).then_some(first)
            }
            _ => None,
        }
    })
}

/// Turns a query selector into store matchers: a profile type id becomes a
/// `__profile_type__` matcher, a legacy `app.cpu` a `service_name` and a type matcher.
pub fn resolve(selector: &Selector) -> Vec<Matcher> {
    let mut matchers = selector.matchers.clone();
    if let Some(name) = &selector.name {
        if name.matches(':').count() == 4 {
            matchers.push(type_matcher(name));
        } else {
            let (app, id) = split_app_name(name);
            matchers.push(Matcher::new(SERVICE_NAME, MatchOp::Eq, app).expect("not a regex"));
            matchers.push(type_matcher(id));
        }
    }
    matchers
}

/// What a query's pprof export says it measures: the sample and period types of its
/// profile type id (no period type when the id has none) and `period`, the merged
/// series' sampling period (`Store::period`: 0, "unknown" to pprof readers, when no
/// profile said it, rather than a guess by type as Grafana's `SetProfileMetadata` makes).
pub fn export_meta(profile_type: Option<&str>, period: i64) -> ProfileMeta {
    match profile_type.and_then(parts) {
        Some(p) => ProfileMeta {
            sample_type: ValueType::new(p[1], p[2]),
            period_type: (!p[3].is_empty() || !p[4].is_empty()).then(|| ValueType::new(p[3], p[4])),
            period,
            ..ProfileMeta::default()
        },
        None => ProfileMeta::default(),
    }
}

/// A profile type id's parts: name, sample type, sample unit, period type, period unit.
pub fn parts(id: &str) -> Option<[&str; 5]> {
    let v: Vec<&str> = id.split(':').collect();
    v.try_into().ok()
}

#[cfg(test)]
mod tests;
