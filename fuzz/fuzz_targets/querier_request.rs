//! Every request of the Connect query APIs (`querier.v1`, `settings.v1`) decodes from
//! protobuf or proto3 JSON (the generated prost and pbjson code the server runs on
//! untrusted bodies) or fails cleanly, and re-encodes stably.
//! The first byte picks the message (low bits) and the encoding (high bit: JSON).
#![no_main]

use embers_server::grafana_proto::querier::v1 as q;
use embers_server::grafana_proto::settings::v1 as s;
use embers_server::grafana_proto::types::v1 as t;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde::de::DeserializeOwned;

fn check<T: Message + Default + DeserializeOwned>(json: bool, body: &[u8]) {
    let decoded = if json {
        serde_json::from_slice::<T>(body).ok()
    } else {
        T::decode(body).ok()
    };
    // Whatever decoded re-encodes to bytes that decode to the same bytes again. (Printing
    // requests back as JSON is not checked: the server never does, and pbjson cannot print
    // every proto3 value, e.g. a NaN double or an enum number outside the enum.)
    if let Some(message) = decoded {
        let bytes = message.encode_to_vec();
        let again = T::decode(&bytes[..]).expect("what we encode decodes");
        assert_eq!(again.encode_to_vec(), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let json = pick & 0x80 != 0;
    match pick & 0x0f {
        0 => check::<q::ProfileTypesRequest>(json, body),
        1 => check::<t::LabelNamesRequest>(json, body),
        2 => check::<t::LabelValuesRequest>(json, body),
        3 => check::<q::SeriesRequest>(json, body),
        4 => check::<q::SelectMergeStacktracesRequest>(json, body),
        5 => check::<q::SelectMergeProfileRequest>(json, body),
        6 => check::<q::SelectMergeSpanProfileRequest>(json, body),
        7 => check::<q::SelectSeriesRequest>(json, body),
        8 => check::<q::SelectHeatmapRequest>(json, body),
        9 => check::<q::DiffRequest>(json, body),
        10 => check::<q::AnalyzeQueryRequest>(json, body),
        11 => check::<t::GetProfileStatsRequest>(json, body),
        12 => check::<s::SetSettingsRequest>(json, body),
        _ => check::<s::DeleteSettingsRequest>(json, body),
    }
});
