//! The one way untrusted ingest bytes become profiles: [`decode_legacy`] for Pyroscope's
//! `/ingest` and [`decode_push`] for Connect `PusherService/Push`. Each request gets one
//! [`IngestBudget`], decided by the server at the edge; every decoder the request reaches
//! (gzip, multipart, pprof, folded, `lines`, trie, tree, the Push message) spends from
//! it, so bounds hold for the request as a whole, not per part. Going over a bound is
//! [`FormatError::OverBudget`], naming the bound and its value; anything else wrong is
//! [`FormatError::Malformed`].
//!
//! ```
//! use embers_formats::ingest::{decode_legacy, IngestBudget, Legacy, LegacyUpload};
//!
//! let upload = LegacyUpload {
//!     body: b"main;work 3\nmain;idle 1\n",
//!     format: "folded",
//!     ..LegacyUpload::default()
//! };
//! let Legacy::Stacks(tree) = decode_legacy(&upload, &IngestBudget::default()).unwrap() else {
//!     unreachable!("folded decodes to stacks");
//! };
//! assert_eq!(tree.total(), 4);
//!
//! let deep = ["f"; 5000].join(";");
//! let upload = LegacyUpload { body: deep.as_bytes(), format: "lines", ..LegacyUpload::default() };
//! let err = decode_legacy(&upload, &IngestBudget::default()).unwrap_err();
//! assert!(err.to_string().contains("max_stack_depth"), "{err}");
//! ```

pub mod adhoc;
mod budget;
pub mod form;
mod jfr;
pub mod multipart;
mod push;
pub(crate) mod scan;
mod speedscope;
mod stacks;

pub(crate) use budget::Spend;
pub use budget::{Bound, IngestBudget};
pub use form::{default_sample_types, PprofForm, SampleTypeConfig, SampleTypes};

use embers_profile::StackTree;

use crate::pprof::LabelledTrees;
use crate::FormatError;

/// A legacy `/ingest` upload as it arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct LegacyUpload<'a> {
    /// The request body as sent (gzip or not).
    pub body: &'a [u8],
    /// The `Content-Type` header ("" when absent).
    pub content_type: &'a str,
    /// The `format` query parameter ("" when absent: folded, unless the content type
    /// says otherwise).
    pub format: &'a str,
    /// Multiplies the values of stack formats (folded, lines, trie, tree): legacy CPU
    /// profiles count samples and the server stores nanoseconds. Scaled values count
    /// against [`IngestBudget::max_total_value`].
    pub scale: Option<f64>,
}

/// What a legacy upload decoded to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Legacy {
    /// One call tree (folded, lines, trie, tree), values scaled.
    Stacks(StackTree),
    /// A raw pprof upload: each sample type, by sample labels.
    Pprof(Vec<LabelledTrees>),
    /// A multipart pprof upload (`pyroscope-go`): the profile, with cumulative types
    /// turned into deltas when a `prev_profile` came with it, and the sample types'
    /// configuration.
    PprofForm(PprofForm),
    /// A JFR upload (`format=jfr`): one group per kind of event, each with its
    /// `__name__` family and series labels.
    Jfr(Vec<crate::jfr::JfrGroup>),
}

/// A Connect Push request as it arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushUpload<'a> {
    /// The request body as sent (gzip or not).
    pub body: &'a [u8],
    /// The `Content-Type` header: `application/proto` (the default) or
    /// `application/json`.
    pub content_type: &'a str,
}

/// A decoded Push request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Pushed {
    /// Its series, in order.
    pub series: Vec<PushedSeries>,
    /// The request IDs its samples carry (a retried push repeats them).
    pub ids: Vec<String>,
}

/// One series of a Push: its labels (checked) and one decoded profile per sample.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushedSeries {
    /// Series labels as sent, `__name__` included.
    pub labels: Vec<(String, String)>,
    /// Each sample's pprof: every sample type, by sample labels.
    pub profiles: Vec<Vec<LabelledTrees>>,
}

impl IngestBudget {
    /// Checks one series label: Prometheus' name syntax and
    /// [`IngestBudget::max_label_length`].
    pub fn check_label(&self, name: &str, value: &str) -> Result<(), FormatError> {
        Spend::new(self).label(name, value)
    }
}

/// The body, gunzipped within the budget (plain bytes are spent as they are).
pub(crate) fn body<'b>(
    format: &'static str,
    bytes: &'b [u8],
    spend: &mut Spend<'_>,
) -> Result<std::borrow::Cow<'b, [u8]>, FormatError> {
    spend.at_most(format, Bound::BodyBytes, bytes.len())?;
    let out = spend.gunzip(format, bytes)?;
    if matches!(out, std::borrow::Cow::Borrowed(_)) {
        spend.spend(format, Bound::DecodedBytes, bytes.len())?;
    }
    Ok(out)
}

/// Checks the sample labels of decoded pprof trees.
fn check_sample_labels(decoded: &[LabelledTrees], spend: &Spend<'_>) -> Result<(), FormatError> {
    for typed in decoded {
        for (labels, _) in &typed.trees {
            spend.at_most("pprof", Bound::Labels, labels.len())?;
            for (k, v) in labels.iter() {
                spend.label(k, v)?;
            }
        }
    }
    Ok(())
}

fn pprof(bytes: &[u8], spend: &mut Spend<'_>) -> Result<Vec<LabelledTrees>, FormatError> {
    let decoded = crate::pprof::decode_trees_in(bytes, spend, true)?;
    check_sample_labels(&decoded, spend)?;
    Ok(decoded)
}

/// The pprof form: `profile`, optional `sample_type_config` and `prev_profile` (file
/// parts only, as Grafana reads forms).
fn pprof_form(
    body: &[u8],
    boundary: &str,
    spend: &mut Spend<'_>,
) -> Result<PprofForm, FormatError> {
    let parts = multipart::file_parts(body, boundary)?;
    let part = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, b)| *b);
    let (sample_types, configured) = match part("sample_type_config") {
        Some(json) => (form::sample_types(json)?, true),
        None => (default_sample_types(), false),
    };
    // No profile is an empty upload, as Grafana takes it (200, nothing stored).
    let mut profiles = match part("profile") {
        Some(profile) => pprof(profile, spend)?,
        None => Vec::new(),
    };
    if let Some(prev) = part("prev_profile").filter(|_| !profiles.is_empty()) {
        let prev = pprof(prev, spend)?;
        form::subtract_previous(&mut profiles, &prev, &sample_types);
    }
    Ok(PprofForm {
        profiles,
        sample_types,
        configured,
    })
}

/// Decodes a legacy `/ingest` upload within `budget`.
pub fn decode_legacy(
    upload: &LegacyUpload<'_>,
    budget: &IngestBudget,
) -> Result<Legacy, FormatError> {
    let spend = &mut Spend::new(budget);
    let (format, content_type) = (upload.format, upload.content_type);
    let body = body("ingest", upload.body, spend)?;
    let is_multipart = content_type
        .get(..19)
        .is_some_and(|c| c.eq_ignore_ascii_case("multipart/form-data"));
    if format == "jfr" {
        return jfr::decode(&body, content_type, upload.scale, spend).map(Legacy::Jfr);
    }
    if format == "pprof" || is_multipart {
        let Some(boundary) = multipart::boundary(content_type) else {
            return pprof(&body, spend).map(Legacy::Pprof);
        };
        return pprof_form(&body, boundary, spend).map(Legacy::PprofForm);
    }
    let tree = match format {
        "trie" => stacks::trie(&body, spend)?,
        "tree" => stacks::tree(&body, spend)?,
        "lines" => stacks::lines(&body, spend)?,
        "speedscope" => {
            return Err(FormatError::Unsupported {
                format: "speedscope",
                operation: "ingested (send pprof, jfr, folded, lines, trie or tree)",
            })
        }
        // Pyroscope's clients name the node-list formats by content type alone; any
        // other body is folded stacks, as Pyroscope reads it.
        _ if content_type == "binary/octet-stream+trie" => stacks::trie(&body, spend)?,
        _ if content_type == "binary/octet-stream+tree" => stacks::tree(&body, spend)?,
        _ => stacks::folded(&body, spend)?,
    };
    Ok(Legacy::Stacks(match upload.scale {
        None => tree,
        Some(factor) => scaled(tree, factor, spend)?,
    }))
}

/// `tree` with every value multiplied by `factor`, refused if the scaled sum could go
/// over the budget (rounding adds at most one per node).
fn scaled(tree: StackTree, factor: f64, spend: &Spend<'_>) -> Result<StackTree, FormatError> {
    let bound = spend.budget.max_total_value as f64;
    if !(factor.is_finite() && factor > 0.0)
        || tree.total() as f64 * factor + tree.node_count() as f64 > bound
    {
        return Err(spend.over("ingest", Bound::TotalValue));
    }
    Ok(tree.scaled(factor))
}

/// Decodes a Connect Push request within `budget`: the message, its labels and request
/// IDs, and every sample's pprof, all spending one budget.
pub fn decode_push(upload: &PushUpload<'_>, budget: &IngestBudget) -> Result<Pushed, FormatError> {
    const NAME: &str = "push";
    let spend = &mut Spend::new(budget);
    let body = body(NAME, upload.body, spend)?;
    let content_type = match upload.content_type {
        "" => "application/proto",
        c => c,
    };
    let request = push::request(&body, content_type, spend)?;
    let mut out = Pushed::default();
    for series in request.series {
        spend.at_most(NAME, Bound::Labels, series.labels.len())?;
        let mut labels = Vec::with_capacity(series.labels.len());
        for l in series.labels {
            spend.label(&l.name, &l.value)?;
            labels.push((l.name, l.value));
        }
        let mut profiles = Vec::with_capacity(series.samples.len());
        for sample in series.samples {
            if !sample.id.is_empty() {
                spend.at_most(NAME, Bound::RequestIdLength, sample.id.len())?;
                spend.at_most(NAME, Bound::RequestIds, out.ids.len() + 1)?;
                out.ids.push(sample.id);
            }
            profiles.push(pprof(&sample.raw_profile, spend)?);
        }
        out.series.push(PushedSeries { labels, profiles });
    }
    Ok(out)
}
