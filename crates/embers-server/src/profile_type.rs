//! Profile types and app names, normalised as Grafana Pyroscope does, so that both the
//! legacy `app.cpu{…}` form and the `name:type:unit:period_type:period_unit` form find
//! the same series.

use embers_profile::ProfileMeta;
use embers_store::{MatchOp, Matcher, Selector, PROFILE_TYPE, SERVICE_NAME};

/// A legacy suffix (`app.cpu`, `app.alloc_objects`) and its profile type id.
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
    ("goroutines", "goroutine:goroutine:count:goroutine:count"),
];

/// Splits a legacy app name into the service name and the profile type id its suffix
/// names (`cpu` when there is no known suffix).
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
        .find(|(_, id)| *id == profile_type)
        .map(|(s, _)| *s)
}

/// The `__name__` of a pprof profile's series, from its sample types: Go and Node send
/// `samples/count` next to `cpu/nanoseconds` or `wall/…`, and all of them belong to the
/// same profile type family.
pub fn family(metas: &[&ProfileMeta]) -> String {
    let kinds: Vec<&str> = metas.iter().map(|m| m.sample_type.kind.as_str()).collect();
    let has = |k: &str| kinds.contains(&k);
    if has("cpu") {
        "process_cpu".into()
    } else if has("wall") {
        "wall".into()
    } else if kinds
        .iter()
        .any(|k| k.starts_with("alloc_") || k.starts_with("inuse_"))
    {
        "memory".into()
    } else if has("contentions") || has("delay") {
        "mutex".into()
    } else if has("goroutine") || has("goroutines") {
        "goroutine".into()
    } else {
        kinds
            .first()
            .map_or_else(|| "unknown".into(), |k| (*k).to_owned())
    }
}

/// The profile type id of one sample type of a profile in family `name`.
pub fn type_id(name: &str, meta: &ProfileMeta) -> String {
    let (pt, pu) = meta.period_type.as_ref().map_or(
        (
            meta.sample_type.kind.as_str(),
            meta.sample_type.unit.as_str(),
        ),
        |p| (p.kind.as_str(), p.unit.as_str()),
    );
    format!(
        "{name}:{}:{}:{pt}:{pu}",
        meta.sample_type.kind, meta.sample_type.unit
    )
}

/// Turns a query selector into store matchers: a profile type id becomes a
/// `__profile_type__` matcher, a legacy `app.cpu` a `service_name` and a type matcher.
pub fn resolve(selector: &Selector) -> Vec<Matcher> {
    let mut matchers = selector.matchers.clone();
    if let Some(name) = &selector.name {
        if name.matches(':').count() == 4 {
            matchers
                .push(Matcher::new(PROFILE_TYPE, MatchOp::Eq, name.clone()).expect("not a regex"));
        } else {
            let (app, id) = split_app_name(name);
            matchers.push(Matcher::new(SERVICE_NAME, MatchOp::Eq, app).expect("not a regex"));
            matchers.push(Matcher::new(PROFILE_TYPE, MatchOp::Eq, id).expect("not a regex"));
        }
    }
    matchers
}

/// A profile type id's parts: name, sample type, sample unit, period type, period unit.
pub fn parts(id: &str) -> Option<[&str; 5]> {
    let v: Vec<&str> = id.split(':').collect();
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::ValueType;

    #[test]
    fn legacy_names() {
        assert_eq!(
            split_app_name("ride-sharing-app.cpu"),
            (
                "ride-sharing-app",
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            )
        );
        assert_eq!(split_app_name("my.app.alloc_objects").0, "my.app");
        assert_eq!(split_app_name("my.app").0, "my.app");
        assert_eq!(
            legacy_suffix("process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
            Some("cpu")
        );
    }

    #[test]
    fn families_and_ids() {
        let cpu = ProfileMeta {
            sample_type: ValueType::new("cpu", "nanoseconds"),
            period_type: Some(ValueType::new("cpu", "nanoseconds")),
            ..Default::default()
        };
        let samples = ProfileMeta {
            sample_type: ValueType::new("samples", "count"),
            period_type: Some(ValueType::new("cpu", "nanoseconds")),
            ..Default::default()
        };
        assert_eq!(family(&[&samples, &cpu]), "process_cpu");
        assert_eq!(
            type_id("process_cpu", &samples),
            "process_cpu:samples:count:cpu:nanoseconds"
        );
        let sel: Selector = r#"app.cpu{region="eu"}"#.parse().unwrap();
        let m = resolve(&sel);
        assert_eq!(m.len(), 3);
        let sel: Selector = r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}"#
            .parse()
            .unwrap();
        assert_eq!(
            resolve(&sel)[1].value,
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        );
    }
}
