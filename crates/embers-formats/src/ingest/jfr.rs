//! The `format=jfr` arm of the legacy `/ingest`: pyroscope-java's multipart upload (a
//! `jfr` part and an optional `labels` part, each gzipped or not) or a raw recording.

use super::{multipart, Bound, Spend};
use crate::jfr::{self, JfrGroup, JfrOptions};
use crate::FormatError;

const NAME: &str = "jfr";

/// Decodes a JFR upload. `body` is the request body (already gunzipped when it was
/// gzip); `scale` is the server's nanoseconds per CPU sample (1e9 / `sampleRate`), the
/// period of CPU and wall samples.
pub(super) fn decode(
    body: &[u8],
    content_type: &str,
    scale: Option<f64>,
    spend: &mut Spend<'_>,
) -> Result<Vec<JfrGroup>, FormatError> {
    // Whole nanoseconds, as Grafana's integer 1e9 / sampleRate.
    let period = scale.map_or(0, |s| s.floor() as i64);
    let options = JfrOptions::with_period(period);
    let Some(boundary) = multipart::boundary(content_type) else {
        return jfr::decode_in(body, None, &options, spend);
    };
    let parts = multipart::parts(body, boundary)?;
    let part = |name: &str| {
        parts
            .iter()
            .find(|(n, bytes)| n == name && !bytes.is_empty())
            .map(|(_, bytes)| *bytes)
    };
    let recording = part("jfr").ok_or_else(|| {
        let sent: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        FormatError::malformed(
            "multipart",
            format!(
                "no `jfr` part: a JFR upload sends the recording as a part named `jfr` \
                 (parts sent: {sent:?})"
            ),
        )
    })?;
    let recording = spend.gunzip(NAME, recording)?;
    if matches!(recording, std::borrow::Cow::Borrowed(_)) {
        spend.at_most(NAME, Bound::DecodedBytes, recording.len())?;
    }
    let labels = part("labels")
        .map(|bytes| spend.gunzip("jfr labels", bytes))
        .transpose()?;
    jfr::decode_in(&recording, labels.as_deref(), &options, spend)
}
