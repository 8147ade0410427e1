//! The ingest budget: how much one request may cost, decided once at the edge and
//! spent by every decoder the request passes through.

use std::borrow::Cow;
use std::io::Read;

use crate::FormatError;

/// Bounds on one ingest request, whatever its format. Every bound is per request: the
/// parts of a multipart upload and the samples of a Push share one budget, so a request
/// cannot multiply a per-part bound by its number of parts.
///
/// The defaults accept every real profile we have seen (Go, Java, Python and Ruby
/// clients, large heap profiles) with a wide margin, while keeping one hostile request
/// under a few hundred MiB of server memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IngestBudget {
    /// Request body as sent (compressed), in bytes.
    pub max_body_bytes: usize,
    /// Bytes after decompression, summed over the body and every gzipped part or sample.
    pub max_decoded_bytes: usize,
    /// Samples: pprof samples, Push samples, folded and `lines` lines, trie and tree
    /// nodes. A protobuf's counts are checked before it is decoded, so a body of many
    /// tiny samples is refused before it costs memory.
    pub max_samples: usize,
    /// Entries of each pprof symbol table (locations, functions, mappings, strings),
    /// summed over the request.
    pub max_locations: usize,
    /// Distinct call paths (call-tree nodes) over every tree of the request: what the
    /// store's path dictionary grows by. Each distinct stack ends at its own node, so
    /// this also bounds distinct stacks.
    pub max_nodes: usize,
    /// Frames summed over every sample's stack before shared prefixes merge: the
    /// decoder's working memory (4 bytes a frame) and time.
    pub max_stack_frames: usize,
    /// Frames in one stack. The store refuses paths deeper than 65,536 frames.
    pub max_stack_depth: usize,
    /// Bytes in one frame name (function, file or module).
    pub max_frame_length: usize,
    /// Labels on one series.
    pub max_labels_per_series: usize,
    /// Bytes in one label name or value.
    pub max_label_length: usize,
    /// Request IDs in one Push (the store keeps each for hours to drop retried pushes).
    pub max_request_ids: usize,
    /// Bytes in one request ID.
    pub max_request_id_length: usize,
    /// Sum of every value of the request (after legacy CPU samples are scaled to
    /// nanoseconds). Values that overflow are always refused; this bound keeps the sums
    /// the store and the UI compute far from wrapping (2^53 is also the largest integer
    /// a browser represents exactly).
    pub max_total_value: u64,
    /// Distinct tracing spans (`span_id` sample labels) in one request: each keeps its
    /// own samples in the store beside its series.
    pub max_spans: usize,
}

impl Default for IngestBudget {
    fn default() -> Self {
        IngestBudget {
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            max_samples: 1 << 19,
            max_locations: 1 << 19,
            max_nodes: 1 << 20,
            max_stack_frames: 1 << 24,
            max_stack_depth: 4096,
            max_frame_length: 64 << 10,
            max_labels_per_series: 64,
            max_label_length: 1024,
            max_request_ids: 1024,
            max_request_id_length: 128,
            max_total_value: 1 << 53,
            max_spans: 10_000,
        }
    }
}

impl IngestBudget {
    /// A budget bounding only what [`crate::ReadLimits`] bounds (local files the user
    /// chose to read), everything else unbounded.
    pub(crate) fn from_read_limits(limits: &crate::ReadLimits) -> Self {
        IngestBudget {
            max_body_bytes: usize::MAX,
            max_decoded_bytes: limits.max_decoded_bytes,
            max_samples: limits.max_samples,
            max_locations: usize::MAX,
            max_nodes: usize::MAX,
            max_stack_frames: usize::MAX,
            max_stack_depth: limits.max_stack_depth,
            max_frame_length: usize::MAX,
            max_labels_per_series: usize::MAX,
            max_label_length: usize::MAX,
            max_request_ids: usize::MAX,
            max_request_id_length: usize::MAX,
            max_total_value: u64::MAX,
            max_spans: usize::MAX,
        }
    }
}

/// A bound of [`IngestBudget`], named in errors so a user knows which setting to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// [`IngestBudget::max_body_bytes`].
    BodyBytes,
    /// [`IngestBudget::max_decoded_bytes`].
    DecodedBytes,
    /// [`IngestBudget::max_samples`].
    Samples,
    /// [`IngestBudget::max_locations`].
    Locations,
    /// [`IngestBudget::max_nodes`].
    Nodes,
    /// [`IngestBudget::max_stack_frames`].
    StackFrames,
    /// [`IngestBudget::max_stack_depth`].
    StackDepth,
    /// [`IngestBudget::max_frame_length`].
    FrameLength,
    /// [`IngestBudget::max_labels_per_series`].
    Labels,
    /// [`IngestBudget::max_label_length`].
    LabelLength,
    /// [`IngestBudget::max_request_ids`].
    RequestIds,
    /// [`IngestBudget::max_request_id_length`].
    RequestIdLength,
    /// [`IngestBudget::max_total_value`].
    TotalValue,
}

impl Bound {
    /// The setting's name (the field of [`IngestBudget`]).
    pub fn setting(self) -> &'static str {
        match self {
            Bound::BodyBytes => "max_body_bytes",
            Bound::DecodedBytes => "max_decoded_bytes",
            Bound::Samples => "max_samples",
            Bound::Locations => "max_locations",
            Bound::Nodes => "max_nodes",
            Bound::StackFrames => "max_stack_frames",
            Bound::StackDepth => "max_stack_depth",
            Bound::FrameLength => "max_frame_length",
            Bound::Labels => "max_labels_per_series",
            Bound::LabelLength => "max_label_length",
            Bound::RequestIds => "max_request_ids",
            Bound::RequestIdLength => "max_request_id_length",
            Bound::TotalValue => "max_total_value",
        }
    }

    /// What the bound counts, in words.
    pub fn what(self) -> &'static str {
        match self {
            Bound::BodyBytes => "bytes in the request body",
            Bound::DecodedBytes => "bytes after decompression",
            Bound::Samples => "samples",
            Bound::Locations => "entries in a pprof symbol table",
            Bound::Nodes => "distinct call paths",
            Bound::StackFrames => "stack frames in all",
            Bound::StackDepth => "frames in one stack",
            Bound::FrameLength => "bytes in one frame name",
            Bound::Labels => "labels on one series",
            Bound::LabelLength => "bytes in a label name or value",
            Bound::RequestIds => "request IDs",
            Bound::RequestIdLength => "bytes in a request ID",
            Bound::TotalValue => "sum of all values",
        }
    }

    fn limit(self, b: &IngestBudget) -> u64 {
        let n = match self {
            Bound::BodyBytes => b.max_body_bytes,
            Bound::DecodedBytes => b.max_decoded_bytes,
            Bound::Samples => b.max_samples,
            Bound::Locations => b.max_locations,
            Bound::Nodes => b.max_nodes,
            Bound::StackFrames => b.max_stack_frames,
            Bound::StackDepth => b.max_stack_depth,
            Bound::FrameLength => b.max_frame_length,
            Bound::Labels => b.max_labels_per_series,
            Bound::LabelLength => b.max_label_length,
            Bound::RequestIds => b.max_request_ids,
            Bound::RequestIdLength => b.max_request_id_length,
            Bound::TotalValue => return b.max_total_value,
        };
        n as u64
    }
}

/// What one request has spent of its budget so far. One `Spend` lives for one request
/// and is passed down to every decoder the request reaches.
#[derive(Debug)]
pub(crate) struct Spend<'a> {
    pub(crate) budget: &'a IngestBudget,
    decoded: usize,
    samples: usize,
    locations: usize,
    nodes: usize,
    frames: usize,
    total: u64,
}

impl<'a> Spend<'a> {
    pub(crate) fn new(budget: &'a IngestBudget) -> Self {
        Spend {
            budget,
            decoded: 0,
            samples: 0,
            locations: 0,
            nodes: 0,
            frames: 0,
            total: 0,
        }
    }

    /// The error for going over `bound`.
    pub(crate) fn over(&self, format: &'static str, bound: Bound) -> FormatError {
        FormatError::OverBudget {
            format,
            bound,
            limit: bound.limit(self.budget),
        }
    }

    /// Refuses `n` above `bound`'s limit (for bounds on one item: depth, lengths).
    pub(crate) fn at_most(
        &self,
        format: &'static str,
        bound: Bound,
        n: usize,
    ) -> Result<(), FormatError> {
        if n as u64 > bound.limit(self.budget) {
            return Err(self.over(format, bound));
        }
        Ok(())
    }

    /// Spends `n` of a bound counted over the whole request.
    pub(crate) fn spend(
        &mut self,
        format: &'static str,
        bound: Bound,
        n: usize,
    ) -> Result<(), FormatError> {
        let counter = match bound {
            Bound::DecodedBytes => &mut self.decoded,
            Bound::Samples => &mut self.samples,
            Bound::Locations => &mut self.locations,
            Bound::Nodes => &mut self.nodes,
            Bound::StackFrames => &mut self.frames,
            other => return self.at_most(format, other, n),
        };
        let spent = counter.saturating_add(n);
        *counter = spent;
        self.at_most(format, bound, spent)
    }

    /// Nodes still allowed (for builders that stop at a node count).
    pub(crate) fn nodes_left(&self) -> usize {
        self.budget.max_nodes.saturating_sub(self.nodes)
    }

    /// Adds one value to the request's total, refusing overflow and the bound.
    pub(crate) fn value(&mut self, format: &'static str, v: u64) -> Result<(), FormatError> {
        match self.total.checked_add(v) {
            Some(t) if t <= self.budget.max_total_value => {
                self.total = t;
                Ok(())
            }
            _ => Err(self.over(format, Bound::TotalValue)),
        }
    }

    /// `bytes`, gunzipped if they are gzip. Inflated bytes are spent from
    /// [`IngestBudget::max_decoded_bytes`] (plain bytes were spent with the body that
    /// holds them); inflation stops at what is left, so a bomb costs no more than that.
    pub(crate) fn gunzip<'b>(
        &mut self,
        format: &'static str,
        bytes: &'b [u8],
    ) -> Result<Cow<'b, [u8]>, FormatError> {
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            return Ok(bytes.into());
        }
        let left = self.budget.max_decoded_bytes.saturating_sub(self.decoded);
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(left as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| FormatError::malformed(format, format!("corrupt gzip: {e}")))?;
        self.spend(format, Bound::DecodedBytes, out.len())?;
        Ok(out.into())
    }

    /// Checks one label: its name's syntax, its length.
    pub(crate) fn label(&self, name: &str, value: &str) -> Result<(), FormatError> {
        self.at_most("labels", Bound::LabelLength, name.len().max(value.len()))?;
        embers_profile::validate_name(name)
            .map_err(|e| FormatError::malformed("labels", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_summed_over_the_request() {
        let budget = IngestBudget {
            max_samples: 10,
            ..IngestBudget::default()
        };
        let mut spend = Spend::new(&budget);
        spend.spend("t", Bound::Samples, 6).unwrap();
        let err = spend.spend("t", Bound::Samples, 5).unwrap_err();
        assert!(
            err.to_string()
                .contains("samples above 10 (setting max_samples)"),
            "{err}"
        );
    }

    #[test]
    fn values_never_wrap() {
        let budget = IngestBudget {
            max_total_value: u64::MAX,
            ..IngestBudget::default()
        };
        let mut spend = Spend::new(&budget);
        spend.value("t", u64::MAX - 1).unwrap();
        assert!(spend.value("t", 2).is_err());
        let default = IngestBudget::default();
        let mut spend = Spend::new(&default);
        assert!(spend.value("t", (1 << 53) + 1).is_err());
    }

    #[test]
    fn gzip_bombs_stop_at_what_is_left() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        let budget = IngestBudget {
            max_decoded_bytes: 3 << 19,
            ..IngestBudget::default()
        };
        let mut spend = Spend::new(&budget);
        assert_eq!(spend.gunzip("t", &bomb).unwrap().len(), 1 << 20);
        // The second copy would pass a per-part bound; the request's sum refuses it.
        let err = spend.gunzip("t", &bomb).unwrap_err();
        assert!(matches!(
            err,
            FormatError::OverBudget {
                bound: Bound::DecodedBytes,
                ..
            }
        ));
    }
}
