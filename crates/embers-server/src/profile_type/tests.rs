use super::*;
use embers_formats::ingest::{default_sample_types, SampleTypes};

fn meta(kind: &str, unit: &str, period: Option<(&str, &str)>) -> ProfileMeta {
    ProfileMeta {
        sample_type: ValueType::new(kind, unit),
        period_type: period.map(|(k, u)| ValueType::new(k, u)),
        ..Default::default()
    }
}

fn ids(metas: &[ProfileMeta], config: &SampleTypes) -> Vec<String> {
    let refs: Vec<&ProfileMeta> = metas.iter().collect();
    let name = family(&refs, config);
    metas.iter().map(|m| type_id(&name, m)).collect()
}

fn config(json: &str) -> SampleTypes {
    serde_json::from_str(json).unwrap()
}

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
    assert_eq!(
        legacy_suffix("memory:alloc_objects:count::"),
        Some("alloc_objects")
    );
}

/// Grafana's ids for what pyroscope-go sends (grafana/pyroscope
/// pkg/test/integration/ingest_pprof_test.go).
#[test]
fn go_profiles_get_grafanas_ids() {
    let defaults = default_sample_types();
    let cpu = [
        meta("samples", "count", Some(("cpu", "nanoseconds"))),
        meta("cpu", "nanoseconds", Some(("cpu", "nanoseconds"))),
    ];
    assert_eq!(
        ids(&cpu, &defaults),
        [
            "process_cpu:samples:count:cpu:nanoseconds",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        ]
    );
    let heap: Vec<ProfileMeta> = [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    .iter()
    .map(|k| {
        let unit = if k.ends_with("objects") {
            "count"
        } else {
            "bytes"
        };
        meta(k, unit, Some(("space", "bytes")))
    })
    .collect();
    let heap_config = config(
        r#"{"alloc_objects":{"units":"objects"},"alloc_space":{"units":"bytes"},"inuse_space":{"units":"bytes","aggregation":"average"},"inuse_objects":{"units":"objects","aggregation":"average"}}"#,
    );
    assert_eq!(
        ids(&heap, &heap_config),
        [
            "memory:alloc_objects:count:space:bytes",
            "memory:alloc_space:bytes:space:bytes",
            "memory:inuse_objects:count:space:bytes",
            "memory:inuse_space:bytes:space:bytes"
        ]
    );
    let contention = [
        meta("contentions", "count", Some(("contentions", "count"))),
        meta("delay", "nanoseconds", Some(("contentions", "count"))),
    ];
    let block = config(
        r#"{"contentions":{"display-name":"block_count","units":"lock_samples"},"delay":{"display-name":"block_duration","units":"lock_nanoseconds"}}"#,
    );
    let mutex = config(
        r#"{"contentions":{"display-name":"mutex_count","units":"lock_samples"},"delay":{"display-name":"mutex_duration","units":"lock_nanoseconds"}}"#,
    );
    assert_eq!(
        ids(&contention, &block),
        [
            "block:contentions:count:contentions:count",
            "block:delay:nanoseconds:contentions:count"
        ]
    );
    assert_eq!(
        ids(&contention, &mutex)[1],
        "mutex:delay:nanoseconds:contentions:count"
    );
    // Without a config, Grafana cannot tell block from mutex: mutex.
    assert_eq!(
        ids(&contention, &defaults)[0],
        "mutex:contentions:count:contentions:count"
    );
    let goroutine = [meta("goroutine", "count", Some(("goroutine", "count")))];
    let go_config = config(
        r#"{"goroutine":{"display-name":"goroutines","units":"goroutines","aggregation":"average"}}"#,
    );
    assert_eq!(
        ids(&goroutine, &go_config),
        ["goroutines:goroutine:count:goroutine:count"]
    );
    assert_eq!(ids(&goroutine, &defaults), ids(&goroutine, &go_config));
    // No period type: empty period fields.
    assert_eq!(
        ids(&[meta("alloc_objects", "count", None)], &defaults),
        ["memory:alloc_objects:count::"]
    );
    // A sample type `wall` wins; an unknown one names the family.
    let wall = [
        meta("samples", "count", None),
        meta("wall", "microseconds", None),
    ];
    assert_eq!(family(&wall.iter().collect::<Vec<_>>(), &defaults), "wall");
    let odd = [meta("widgets", "count", None)];
    assert_eq!(
        family(&odd.iter().collect::<Vec<_>>(), &defaults),
        "widgets"
    );
}

/// grafana/pyroscope pkg/ingester/pyroscope/ingest_adapter.go (`convertMetadata`).
#[test]
fn legacy_stack_uploads_get_grafanas_ids() {
    let t = |app: &str, rate| {
        let l = legacy_type(app, rate);
        (l.service, l.id, l.scale)
    };
    assert_eq!(
        t("app.cpu", 100),
        (
            "app".into(),
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            Some(1e7)
        )
    );
    assert_eq!(
        t("app", 0),
        ("app".into(), "process_cpu:samples:count::".into(), None)
    );
    assert_eq!(
        t("app.wall", 100).1,
        "wall:wall:nanoseconds:cpu:nanoseconds"
    );
    assert_eq!(t("my.app.alloc_objects", 100).0, "my.app");
    assert_eq!(t("a.alloc_space", 100).1, "memory:alloc_space:bytes::");
    assert_eq!(t("a.goroutines", 100).1, "goroutine:goroutines:count::");
    assert_eq!(t("a.lock_duration", 100).1, "block:delay:nanoseconds::");
    assert_eq!(t("a.exceptions", 100).1, "exceptions:samples:count::");
    assert_eq!(t("a.bytes", 0).1, "memory:samples:bytes::");
    // Unknown suffix: Grafana refuses; we keep the whole name as a CPU profile.
    assert_eq!(t("my.app", 100).0, "my.app");
}

#[test]
fn queries_find_every_id_of_the_same_data() {
    let matched = |query: &str, id: &str| {
        let sel: Selector = query.parse().unwrap();
        resolve(&sel)
            .iter()
            .filter(|m| m.name == PROFILE_TYPE)
            .all(|m| m.matches(Some(id)))
    };
    let goroutines = "goroutines:goroutine:count:goroutine:count";
    assert!(matched(goroutines, goroutines));
    assert!(matched(
        goroutines,
        "goroutine:goroutine:count:goroutine:count"
    ));
    assert!(matched("app.goroutines", "goroutine:goroutines:count::"));
    assert!(matched("app.alloc_objects", "memory:alloc_objects:count::"));
    assert!(matched(
        "app.alloc_objects",
        "memory:alloc_objects:count:space:bytes"
    ));
    assert!(!matched(
        "app.alloc_objects",
        "memory:alloc_space:bytes:space:bytes"
    ));
    assert!(matched("app.wall", "wall:wall:nanoseconds:cpu:nanoseconds"));
    assert!(matched("app.block_count", "block:contentions:count::"));
    assert!(matched(
        "memory:alloc_objects:count::",
        "memory:alloc_objects:count:alloc_objects:count"
    ));
    // CPU counts and nanoseconds are never summed together.
    assert!(!matched("app.cpu", "process_cpu:samples:count::"));
    assert!(!matched(
        "app.cpu",
        "process_cpu:samples:count:cpu:nanoseconds"
    ));
    // The pinned type is the query's own id, whether or not it has aliases.
    for query in ["app.goroutines", "app.cpu", "x:a:b::"] {
        let sel: Selector = query.parse().unwrap();
        let m = resolve(&sel);
        let expected = if query == "x:a:b::" {
            "x:a:b::"
        } else {
            split_app_name(query).1
        };
        assert_eq!(pinned(&m), Some(expected), "{query}");
    }
    let sel: Selector = r#"app.cpu{region="eu"}"#.parse().unwrap();
    assert_eq!(resolve(&sel).len(), 3);
}
