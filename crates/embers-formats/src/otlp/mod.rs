//! OTLP profiles (`opentelemetry.proto.collector.profiles.v1development`), the
//! OpenTelemetry profiling signal, as sent by the OpenTelemetry eBPF profiler, the
//! Collector and pyroscope-java's OTLP exporter.
//!
//! The schema is opentelemetry-proto **v1.10.0** (vendored under
//! `proto/opentelemetry/`, the release Grafana Pyroscope's Go module and the Python
//! `opentelemetry-proto` 1.45 package speak; v1.11.0 has the same wire format).
//! `proto.rs` is generated from it by `cargo run -p xtask -- protogen`, with proto3 JSON
//! impls from `pbjson` (bytes in base64, as Grafana's `protojson` reads them; link IDs
//! in OTLP/JSON's hex too).
//!
//! [`decode_export`] turns one `ExportProfilesServiceRequest` into series the way
//! Grafana Pyroscope's `pkg/ingester/otlp` does: one series group per service and
//! profile, `service.name` → `service_name`, resource then scope string attributes →
//! labels, each profile's sample type → its profile type, sample attributes and links →
//! sample labels. Counts are checked on the wire first, every index into the dictionary
//! is checked, and everything spends the request's [`IngestBudget`].
//!
//! ```
//! use embers_formats::otlp::{decode_export, Encoding, OtlpUpload};
//! use embers_formats::IngestBudget;
//!
//! let upload = OtlpUpload { body: b"{}", encoding: Encoding::Json };
//! let err = decode_export(&upload, &IngestBudget::default()).unwrap_err();
//! assert!(err.to_string().contains("dictionary"), "{err}");
//! ```

mod convert;
#[rustfmt::skip]
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub
)]
pub mod proto;
mod scan;
#[cfg(test)]
mod tests;

use embers_profile::Labels;
use prost::Message;

use crate::ingest::{Bound, IngestBudget, Spend};
use crate::pprof::LabelledTrees;
use crate::FormatError;

pub use proto::opentelemetry::proto::collector::profiles::v1development::{
    ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};

const NAME: &str = "otlp";

/// How the request message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`, `application/protobuf`, gRPC).
    #[default]
    Protobuf,
    /// Proto3 JSON (`application/json`), bytes fields in base64 as Grafana reads them.
    Json,
}

/// An OTLP export as it arrived (the gRPC frame already taken off).
#[derive(Debug, Clone, Copy, Default)]
pub struct OtlpUpload<'a> {
    /// The message, gzip or not (a gzip body is inflated within the budget).
    pub body: &'a [u8],
    /// Its encoding.
    pub encoding: Encoding,
}

/// One series group of an export: what one service's samples of one profile became.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OtlpSeries {
    /// Series labels: `service_name` and the resource and scope attributes.
    pub labels: Labels,
    /// The profile family (`__name__`): `process_cpu`, `off_cpu`, … as Grafana names it.
    pub name: String,
    /// The profile's sample type, split by sample labels, with the profile's time.
    pub profile: LabelledTrees,
}

/// A decoded export.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OtlpExport {
    /// Its series groups, in request order.
    pub series: Vec<OtlpSeries>,
    /// Profiles left out (well-formed, but nothing Embers can store), for the reply's
    /// `partial_success`.
    pub rejected_profiles: i64,
    /// Why they were left out, one line each (empty when none was).
    pub rejections: Vec<String>,
}

impl OtlpExport {
    /// The reply to send: `partial_success` set only when something was left out, as the
    /// OTLP specification asks.
    pub fn response(&self) -> ExportProfilesServiceResponse {
        ExportProfilesServiceResponse {
            partial_success: (self.rejected_profiles > 0).then(|| ExportProfilesPartialSuccess {
                rejected_profiles: self.rejected_profiles,
                error_message: self.rejections.join("; "),
            }),
        }
    }
}

/// Decodes an `ExportProfilesServiceRequest` within `budget` into series groups.
pub fn decode_export(
    upload: &OtlpUpload<'_>,
    budget: &IngestBudget,
) -> Result<OtlpExport, FormatError> {
    let spend = &mut Spend::new(budget);
    let body = crate::ingest::body(NAME, upload.body, spend)?;
    let request = match upload.encoding {
        Encoding::Protobuf => {
            scan::request(&body, spend)?;
            ExportProfilesServiceRequest::decode(&body[..]).map_err(|e| {
                FormatError::malformed(NAME, format!("truncated or corrupt protobuf: {e}"))
            })?
        }
        Encoding::Json => {
            // Every sample, location, attribute and table entry is an object: counting
            // braces bounds what serde allocates before it runs (a brace inside a string
            // only makes the count larger).
            spend.spend(
                NAME,
                Bound::Samples,
                memchr::memchr_iter(b'{', &body).count(),
            )?;
            let mut request: ExportProfilesServiceRequest = serde_json::from_slice(&body)
                .map_err(|e| FormatError::malformed(NAME, format!("JSON: {e}")))?;
            scan::tables(&request, spend)?;
            hex_link_ids(&mut request);
            request
        }
    };
    convert::export(&request, spend)
}

/// OTLP/JSON writes trace and span IDs in hex, Grafana's `protojson` reads `bytes` as
/// base64: accept both. A 32-digit hex trace ID read as base64 is 24 bytes (a 16-digit
/// span ID 12), which no base64 ID has; encoding those bytes again gives the digits back.
fn hex_link_ids(request: &mut ExportProfilesServiceRequest) {
    use base64::Engine;
    let Some(d) = &mut request.dictionary else {
        return;
    };
    let unhex = |id: &mut Vec<u8>, base64_len: usize| {
        if id.len() != base64_len {
            return;
        }
        let digits = base64::engine::general_purpose::STANDARD.encode(&*id);
        let bytes: Option<Vec<u8>> = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
            .collect();
        if let Some(bytes) = bytes {
            *id = bytes;
        }
    };
    for link in &mut d.link_table {
        unhex(&mut link.trace_id, 24);
        unhex(&mut link.span_id, 12);
    }
}
