//! Ad-hoc profile files (`adhocprofiles.v1` uploads, the UI's Upload view): one file a
//! person chose, in whatever format it came, read into one call tree per profile type.
//!
//! The format is decided by content, never by the file name (a name is only a label the
//! uploader typed): gzip is inflated first, then `FLR\0` is JFR, a JSON object is
//! speedscope, bytes that are not text in the first 100 are pprof (as Grafana Pyroscope
//! sniffs them), and any other text is folded stacks. Everything spends one
//! [`IngestBudget`], as an ingest request does.

use embers_profile::{ProfileMeta, StackTree, ValueType};

use super::{body, check_sample_labels, jfr, speedscope, stacks, Spend};
use crate::ingest::IngestBudget;
use crate::pprof::LabelledTrees;
use crate::FormatError;

/// The format an ad-hoc file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// pprof protobuf (gzipped or not).
    Pprof,
    /// A JDK Flight Recorder recording.
    Jfr,
    /// speedscope JSON (sampled and evented profiles).
    Speedscope,
    /// Folded stacks (`a;b;c 12`).
    Folded,
}

impl FileFormat {
    /// The format's name in messages and listings.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Pprof => "pprof",
            FileFormat::Jfr => "jfr",
            FileFormat::Speedscope => "speedscope",
            FileFormat::Folded => "folded",
        }
    }

    /// Picks the format of `bytes` (already inflated).
    pub fn sniff(bytes: &[u8]) -> FileFormat {
        if bytes.starts_with(b"FLR\0") {
            return FileFormat::Jfr;
        }
        let head = &bytes[..bytes.len().min(100)];
        if head.iter().any(|&b| b < 0x09 || (0x0e..0x20).contains(&b)) {
            return FileFormat::Pprof;
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => FileFormat::Speedscope,
            _ => FileFormat::Folded,
        }
    }
}

/// One profile type of a file, its samples merged into one tree.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdHocProfile {
    /// The type's name as Grafana Pyroscope lists it: the pprof sample type (`cpu`,
    /// `alloc_space`), a speedscope profile's name, or the file's name for folded stacks.
    pub name: String,
    /// What the values measure.
    pub meta: ProfileMeta,
    /// Every sample, whatever its labels.
    pub tree: StackTree,
}

/// A decoded ad-hoc file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdHocFile {
    /// How it was read.
    pub format: FileFormat,
    /// Its profile types, in file order, names unique.
    pub profiles: Vec<AdHocProfile>,
}

/// Reads an uploaded file named `name` within `budget`: at least one profile, or an error
/// saying why not.
pub fn decode_file(
    name: &str,
    bytes: &[u8],
    budget: &IngestBudget,
) -> Result<AdHocFile, FormatError> {
    let spend = &mut Spend::new(budget);
    let bytes = body("file", bytes, spend)?;
    let format = FileFormat::sniff(&bytes);
    let mut profiles = match format {
        FileFormat::Pprof => {
            let decoded = crate::pprof::decode_trees_in(&bytes, spend, true)?;
            check_sample_labels(&decoded, spend)?;
            decoded.into_iter().map(|t| merged(t, None)).collect()
        }
        FileFormat::Jfr => jfr::decode(&bytes, "", Some(1e7), spend)?
            .into_iter()
            .flat_map(|g| {
                let family = g.family;
                g.profiles.into_iter().map(move |t| merged(t, Some(family)))
            })
            .collect(),
        FileFormat::Speedscope => speedscope::decode(&bytes, name, spend)?,
        FileFormat::Folded => vec![AdHocProfile {
            name: name.to_owned(),
            meta: ProfileMeta {
                sample_type: ValueType::samples(),
                ..ProfileMeta::default()
            },
            tree: stacks::folded(&bytes, spend)?,
        }],
    };
    unique_names(&mut profiles);
    let no_stacks = matches!(format, FileFormat::Folded | FileFormat::Speedscope)
        && profiles.iter().all(|p| p.tree.total() == 0);
    if profiles.is_empty() || no_stacks {
        return Err(FormatError::malformed(
            format.name(),
            "the file holds no profile (no sample type with samples)",
        ));
    }
    Ok(AdHocFile { format, profiles })
}

/// One sample type's trees (by sample labels) as one tree; JFR types are named
/// `family/sample type` when the family adds something (`memory/alloc_in_new_tlab_bytes`).
fn merged(typed: LabelledTrees, family: Option<&str>) -> AdHocProfile {
    let mut tree = StackTree::new();
    for (_, t) in &typed.trees {
        tree.merge(t);
    }
    let kind = typed.meta.sample_type.kind.clone();
    let name = match family {
        Some(f) if f != kind => format!("{f}/{kind}"),
        _ => kind,
    };
    AdHocProfile {
        name,
        meta: typed.meta,
        tree,
    }
}

/// Makes names unique (`cpu`, `cpu (2)`), so a name picks one profile.
fn unique_names(profiles: &mut [AdHocProfile]) {
    let mut seen = std::collections::HashSet::new();
    for p in profiles.iter_mut() {
        let base = p.name.clone();
        let mut n = 1;
        while !seen.insert(p.name.clone()) {
            n += 1;
            p.name = format!("{base} ({n})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(FileFormat::sniff(b"FLR\0\0\x02"), FileFormat::Jfr);
        assert_eq!(
            FileFormat::sniff(b"\x0a\x04\x08\x01\x10\x02"),
            FileFormat::Pprof
        );
        assert_eq!(
            FileFormat::sniff(b"  {\"shared\":{}}"),
            FileFormat::Speedscope
        );
        assert_eq!(FileFormat::sniff(b"main;work 3\n"), FileFormat::Folded);
    }

    #[test]
    fn folded_files_are_named_after_the_file() {
        let f = decode_file("x.txt", b"main;a 3\nmain;b 1\n", &IngestBudget::default()).unwrap();
        assert_eq!(f.format, FileFormat::Folded);
        assert_eq!(f.profiles[0].name, "x.txt");
        assert_eq!(f.profiles[0].tree.total(), 4);
    }

    #[test]
    fn gzip_bombs_stop_at_the_budget() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let budget = IngestBudget {
            max_decoded_bytes: 1 << 16,
            ..IngestBudget::default()
        };
        let err = decode_file("b", &gz.finish().unwrap(), &budget).unwrap_err();
        assert!(err.to_string().contains("max_decoded_bytes"), "{err}");
    }

    /// A real OpenJDK 17 recording (gzipped, as uploaded): one profile per event type, with
    /// the totals of the golden conversion the JFR tests bless.
    #[test]
    fn jfr_recordings_give_one_profile_per_type() {
        let gz = include_bytes!("../../tests/data/jdk17-labels.jfr.gz");
        let golden = include_str!("../../tests/data/jdk17-labels.folded");
        let f = decode_file("rec.jfr", gz, &IngestBudget::default()).unwrap();
        assert_eq!(f.format, FileFormat::Jfr);
        let mut want = std::collections::BTreeMap::<String, u64>::new();
        for line in golden.lines() {
            let mut cols = line.split(' ');
            let (family, kind) = (cols.next().unwrap(), cols.next().unwrap());
            let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let name = if family == kind {
                kind.to_owned()
            } else {
                format!("{family}/{kind}")
            };
            *want.entry(name).or_default() += value;
        }
        let got: std::collections::BTreeMap<String, u64> = f
            .profiles
            .iter()
            .map(|p| (p.name.clone(), p.tree.total()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_files_are_refused() {
        let err = decode_file("e", b"\n", &IngestBudget::default()).unwrap_err();
        assert!(err.to_string().contains("no profile"), "{err}");
    }
}
