//! The pprof form of the legacy `/ingest` (what `pyroscope-go` sends): a `profile` file
//! part, an optional `sample_type_config` (JSON) and, from old clients, a `prev_profile`
//! to subtract from cumulative sample types.
//!
//! Grafana Pyroscope reads only `display-name` from the config (it decides the profile
//! family: Go's block and mutex profiles have the same sample types and only the display
//! name tells them apart) and refuses `prev_profile`; original Pyroscope subtracted the
//! previous profile from `cumulative` types. We keep both: the config travels with the
//! decoded profile to the server, and a `prev_profile` turns cumulative types into
//! deltas instead of failing the upload.

use std::collections::{BTreeMap, HashMap};

use embers_profile::{Frame, Labels, StackTree};

use crate::pprof::LabelledTrees;
use crate::FormatError;

/// How one pprof sample type is to be read, as `pyroscope-go` describes it in the
/// `sample_type_config` part (`upstream.SampleType`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SampleTypeConfig {
    /// Units as the client names them (`objects`, `bytes`, `lock_samples`, …).
    pub units: String,
    /// `average` for gauges (in-use memory, goroutines), else empty (`sum`).
    pub aggregation: String,
    /// The name the profile family is decided by (`block_count`, `mutex_duration`,
    /// `goroutines`); empty: the sample type's own name.
    #[serde(rename = "display-name")]
    pub display_name: String,
    /// Values are samples of a rate (CPU).
    pub sampled: bool,
    /// Values accumulate since the process started; a `prev_profile` is subtracted.
    pub cumulative: bool,
}

/// Sample type name → its configuration.
pub type SampleTypes = BTreeMap<String, SampleTypeConfig>;

/// Grafana's default configuration, used when an upload sends none (a sent config
/// replaces it whole) [grafana/pyroscope pkg/og/storage/tree/pprof.go].
pub fn default_sample_types() -> SampleTypes {
    // (sample type, units, aggregation, display name, sampled, cumulative)
    const DEFAULTS: [(&str, &str, &str, &str, bool, bool); 8] = [
        ("samples", "samples", "", "cpu", true, false),
        ("inuse_objects", "objects", "average", "", false, false),
        ("alloc_objects", "objects", "", "", false, true),
        ("inuse_space", "bytes", "average", "", false, false),
        ("alloc_space", "bytes", "", "", false, true),
        (
            "goroutine",
            "goroutines",
            "average",
            "goroutines",
            false,
            false,
        ),
        (
            "contentions",
            "lock_samples",
            "",
            "mutex_count",
            false,
            true,
        ),
        (
            "delay",
            "lock_nanoseconds",
            "",
            "mutex_duration",
            false,
            true,
        ),
    ];
    DEFAULTS
        .iter()
        .map(
            |&(kind, units, aggregation, display, sampled, cumulative)| {
                let config = SampleTypeConfig {
                    units: units.to_owned(),
                    aggregation: aggregation.to_owned(),
                    display_name: display.to_owned(),
                    sampled,
                    cumulative,
                };
                (kind.to_owned(), config)
            },
        )
        .collect()
}

/// A decoded pprof form upload.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PprofForm {
    /// The profile's sample types, by sample labels (cumulative types already turned
    /// into deltas when a `prev_profile` came with it).
    pub profiles: Vec<LabelledTrees>,
    /// The sample types' configuration: the one sent, else [`default_sample_types`].
    pub sample_types: SampleTypes,
    /// Whether the upload sent its own `sample_type_config`.
    pub configured: bool,
}

/// Parses the `sample_type_config` part.
pub(crate) fn sample_types(json: &[u8]) -> Result<SampleTypes, FormatError> {
    serde_json::from_slice(json).map_err(|e| {
        FormatError::malformed(
            "sample_type_config",
            format!("expected {{\"sample type\": {{\"display-name\": …}}}}: {e}"),
        )
    })
}

/// Subtracts `prev` from every cumulative sample type of `current`, per label set and
/// stack, as original Pyroscope did: a stack whose value did not grow (or shrank, after
/// a restart) contributes nothing. The delta trees are never larger than the trees the
/// budget already paid for.
pub(crate) fn subtract_previous(
    current: &mut [LabelledTrees],
    prev: &[LabelledTrees],
    sample_types: &SampleTypes,
) {
    for typed in current.iter_mut() {
        let cumulative = sample_types
            .get(&typed.meta.sample_type.kind)
            .is_some_and(|c| c.cumulative);
        if !cumulative {
            continue;
        }
        let Some(before) = prev
            .iter()
            .find(|p| p.meta.sample_type == typed.meta.sample_type)
        else {
            continue;
        };
        // By label set through a map: a hostile upload may carry many of them. Keys are
        // the client's strings, so std's randomly keyed SipHash, not Fx.
        let old: HashMap<&Labels, &StackTree> = before.trees.iter().map(|(l, t)| (l, t)).collect();
        for (labels, tree) in &mut typed.trees {
            if let Some(old) = old.get(&*labels) {
                *tree = delta(tree, old);
            }
        }
        typed.trees.retain(|(_, t)| t.total() > 0);
    }
}

/// `tree − old` per stack, negative differences dropped.
fn delta(tree: &StackTree, old: &StackTree) -> StackTree {
    let mut before: HashMap<Vec<&Frame>, u64> = HashMap::new();
    old.for_each_stack(|stack, v| {
        let key: Vec<&Frame> = stack.iter().map(|&f| old.symbols().get(f)).collect();
        before.insert(key, v);
    });
    let mut out = StackTree::new();
    tree.for_each_stack(|stack, v| {
        let frames: Vec<&Frame> = stack.iter().map(|&f| tree.symbols().get(f)).collect();
        let was = before.get(&frames).copied().unwrap_or(0);
        out.add_frames(frames.iter().copied(), v.saturating_sub(was));
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::{ProfileMeta, ValueType};

    fn typed(kind: &str, stacks: &[(&str, u64)]) -> LabelledTrees {
        let mut tree = StackTree::new();
        for (s, v) in stacks {
            let frames: Vec<Frame> = s.split(';').map(Frame::named).collect();
            tree.add_frames(&frames, *v);
        }
        LabelledTrees {
            meta: ProfileMeta {
                sample_type: ValueType::new(kind, "count"),
                ..ProfileMeta::default()
            },
            trees: vec![(Labels::new(), tree)],
        }
    }

    #[test]
    fn cumulative_types_become_deltas_per_stack() {
        let mut current = vec![
            typed(
                "alloc_objects",
                &[("main;a", 10), ("main;b", 3), ("main;c", 1)],
            ),
            typed("inuse_objects", &[("main;a", 7)]),
        ];
        let prev = vec![
            typed("alloc_objects", &[("main;a", 4), ("main;b", 5)]),
            typed("inuse_objects", &[("main;a", 6)]),
        ];
        subtract_previous(&mut current, &prev, &default_sample_types());
        let stacks = current[0].trees[0].1.to_sorted_stacks();
        let named: Vec<(String, u64)> = stacks
            .iter()
            .map(|(f, v)| {
                let names: Vec<&str> = f.iter().map(|f| f.function.as_str()).collect();
                (names.join(";"), *v)
            })
            .collect();
        assert_eq!(
            named,
            vec![("main;a".to_string(), 6), ("main;c".to_string(), 1)]
        );
        assert_eq!(current[1].trees[0].1.total(), 7, "inuse is not cumulative");
    }

    #[test]
    fn the_config_parses_as_pyroscope_go_sends_it() {
        let json = br#"{"contentions":{"display-name":"block_count","units":"lock_samples"},"delay":{"display-name":"block_duration","units":"lock_nanoseconds","cumulative":false}}"#;
        let config = sample_types(json).unwrap();
        assert_eq!(config["contentions"].display_name, "block_count");
        assert!(!config["delay"].cumulative);
        assert!(sample_types(b"[1]").is_err());
    }
}
