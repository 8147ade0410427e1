//! Puts from a decoded JFR upload (`/ingest?format=jfr`): one group per kind of event,
//! each under its own `__name__` (`process_cpu`, `wall`, `memory`, `mutex`, `block`)
//! with the recording's series labels (`jfr_event`) added to the upload's.

use embers_formats::jfr::JfrGroup;
use embers_formats::IngestBudget;
use embers_profile::Labels;
use embers_store::Put;

use crate::error::ApiError;

/// The puts of every group; `base` holds the upload's series labels (service name,
/// tags), `time` its start.
pub(super) fn puts(
    groups: Vec<JfrGroup>,
    base: &Labels,
    time: i64,
    budget: &IngestBudget,
) -> Result<Vec<Put>, ApiError> {
    let mut puts = Vec::new();
    for group in groups {
        let mut labels = base.clone();
        for (k, v) in group.labels.iter() {
            labels.set(k, v);
        }
        puts.extend(super::puts_from_trees(
            group.profiles,
            &labels,
            Some(group.family),
            time,
            budget,
        )?);
    }
    Ok(puts)
}
