//! Contract tests of `querier.v1.QuerierService` and `settings.v1.SettingsService`: each
//! method called as Grafana's Go backend calls it (connect-go: `application/proto`,
//! gzip) and as Profiles Drilldown calls it (JSON, camelCase from connect-web and
//! snake_case from its hand-built requests), answered from known profiles ingested into
//! a real `embers server`.
//!
//! The data: two services, one profile every 10 s for 20 minutes. `api` has
//! `main;work;spin` = 1, 2, 3 samples cycling, `main;work` = 1 and `main;idle` = 2 per
//! profile (4, 5, 6 in all); `web` has `main;serve` = 4. At 100 Hz a sample is 10 ms.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

use embers_server::grafana_proto::google::v1 as pprof;
use embers_server::grafana_proto::querier::v1 as q;
use embers_server::grafana_proto::types::v1 as types;
use prost::Message;
use serde_json::{json, Value};
use support::{connect_json, connect_proto, enc, now, post, ServerHandle};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// One sample at 100 Hz, in nanoseconds.
const NS: i64 = 10_000_000;
const LEAVES: i64 = 120;
const API_TOTAL: i64 = 600;
const API_WORK: i64 = 360;
const WEB_TOTAL: i64 = 480;

/// A server holding the data above, and the first second of it (a multiple of 600).
fn server_with_data(dir: &std::path::Path) -> (ServerHandle, i64) {
    let server = ServerHandle::start(dir, &[]);
    let base = (now() as i64 - 3 * 3600) / 600 * 600;
    for i in 0..LEAVES {
        let t = base + 10 * i;
        let api = format!("main;work;spin {}\nmain;work 1\nmain;idle 2\n", 1 + i % 3);
        for (name, body) in [("api.cpu", api.as_str()), ("web.cpu", "main;serve 4\n")] {
            let url = server.url(&format!(
                "/ingest?name={}&from={t}&until={}&sampleRate=100",
                enc(name),
                t + 10
            ));
            let (status, text) = post(&url, "text/plain", body.as_bytes());
            assert_eq!(status, 200, "{text}");
        }
    }
    (server, base)
}

fn ok_json(server: &ServerHandle, path: &str, body: &Value) -> Value {
    let (status, v) = connect_json(server, path, body);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn querier(method: &str) -> String {
    format!("/querier.v1.QuerierService/{method}")
}

fn range(base: i64) -> (i64, i64) {
    (base * 1000, (base + 10 * LEAVES) * 1000)
}

/// The sum of self values in Pyroscope tree bytes, checking their structure.
fn tree_total(bytes: &[u8]) -> u64 {
    fn uvarint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let (mut at, mut total, mut pending) = (0, 0, 1u64);
    while pending > 0 {
        pending -= 1;
        let len = uvarint(bytes, &mut at) as usize;
        at += len;
        total += uvarint(bytes, &mut at);
        pending += uvarint(bytes, &mut at);
    }
    assert_eq!(at, bytes.len(), "trailing bytes");
    total
}

#[test]
fn catalog_methods_answer_in_both_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server_with_data(dir.path());
    let (start, end) = range(base);

    // ProfileTypes: Grafana's backend (proto) and its health check.
    let types: q::ProfileTypesResponse = connect_proto(
        &server,
        &querier("ProfileTypes"),
        &q::ProfileTypesRequest { start, end },
        false,
    );
    assert_eq!(types.profile_types.len(), 1);
    assert_eq!(types.profile_types[0].id, CPU);
    assert_eq!(types.profile_types[0].sample_unit, "nanoseconds");
    let v = ok_json(
        &server,
        &querier("ProfileTypes"),
        // Fields from newer clients are ignored, as connect-go's protojson does.
        &json!({"start": start.to_string(), "end": end, "fieldFromTheFuture": {"x": 1}}),
    );
    assert_eq!(v["profileTypes"][0]["ID"], CPU);

    // LabelNames / LabelValues, one service selected.
    let names: types::LabelNamesResponse = connect_proto(
        &server,
        &querier("LabelNames"),
        &types::LabelNamesRequest {
            matchers: vec![r#"{service_name="api"}"#.into()],
            start,
            end,
        },
        true,
    );
    assert!(
        names.names.contains(&"service_name".to_owned()),
        "{names:?}"
    );
    let v = ok_json(
        &server,
        &querier("LabelValues"),
        &json!({"name": "service_name", "matchers": [], "start": start, "end": end.to_string()}),
    );
    assert_eq!(v["names"], json!(["api", "web"]));
    let v = ok_json(
        &server,
        &querier("LabelValues"),
        &json!({"name": "service_name", "matchers": ["{service_name=\"web\"}"], "start": start, "end": end}),
    );
    assert_eq!(v["names"], json!(["web"]));

    // Series as Drilldown lists services: both spellings of label_names.
    // Drilldown's ServicesApiClient sends `matchers: []` and `labelNames`.
    for (key, matchers) in [("labelNames", json!([])), ("label_names", json!(["{}"]))] {
        let v = ok_json(
            &server,
            &querier("Series"),
            &json!({"start": start, "end": end, key: ["service_name", "__profile_type__"], "matchers": matchers}),
        );
        let sets = v["labelsSet"].as_array().unwrap();
        assert_eq!(sets.len(), 2, "{key}: {v}");
        assert_eq!(
            sets[0]["labels"],
            json!([{"name": "__profile_type__", "value": CPU}, {"name": "service_name", "value": "api"}])
        );
    }

    // GetProfileStats: Drilldown's onboarding check, an empty JSON body.
    let v = ok_json(&server, &querier("GetProfileStats"), &json!({}));
    assert_eq!(v["dataIngested"], true);
    assert_eq!(v["oldestProfileTime"], (base * 1000).to_string());
    assert_eq!(
        v["newestProfileTime"],
        ((base + 10 * (LEAVES - 1)) * 1000).to_string()
    );

    // AnalyzeQuery: one series of the api service, one profile per leaf.
    let v = ok_json(
        &server,
        &querier("AnalyzeQuery"),
        &json!({"query": format!("{CPU}{{service_name=\"api\"}}"), "start": start, "end": end}),
    );
    assert_eq!(v["queryScopes"][0]["seriesCount"], "1", "{v}");
    assert_eq!(
        v["queryScopes"][0]["profileCount"],
        LEAVES.to_string(),
        "{v}"
    );
    assert_eq!(v["queryImpact"]["totalQueriedSeries"], "1");

    // Connect errors: a bad selector, an unknown method.
    let (status, v) = connect_json(
        &server,
        &querier("LabelNames"),
        &json!({"matchers": ["{service_name="], "start": start, "end": end}),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    let (status, v) = connect_json(&server, &querier("NoSuchMethod"), &json!({}));
    assert_eq!(
        (status, v["code"].as_str()),
        (501, Some("unimplemented")),
        "{v}"
    );
}

#[test]
fn merges_honour_selections_and_call_site_focus() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server_with_data(dir.path());
    let (start, end) = range(base);
    let api = r#"{service_name="api"}"#;

    // SelectMergeStacktraces: Grafana's backend (proto, gzip both ways) ...
    let req = q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: api.into(),
        start,
        end,
        max_nodes: Some(16_384),
        ..Default::default()
    };
    let r: q::SelectMergeStacktracesResponse =
        connect_proto(&server, &querier("SelectMergeStacktraces"), &req, true);
    let fg = r.flamegraph.unwrap();
    assert_eq!(fg.total, API_TOTAL * NS);
    assert_eq!(fg.names[0], "total");
    // ... and Drilldown (JSON, both spellings): one service of two.
    for body in [
        json!({"profile_typeID": CPU, "label_selector": api, "start": start.to_string(), "end": end.to_string(), "max_nodes": "16384"}),
        json!({"profileTypeID": CPU, "labelSelector": api, "start": start, "end": end, "maxNodes": 16384}),
    ] {
        let v = ok_json(&server, &querier("SelectMergeStacktraces"), &body);
        assert_eq!(
            v["flamegraph"]["total"],
            (API_TOTAL * NS).to_string(),
            "{body}"
        );
    }
    // Call-site focus: only stacks starting main;work, both spellings.
    for body in [
        json!({"profile_typeID": CPU, "label_selector": api, "start": start, "end": end,
               "stack_trace_selector": {"call_site": [{"name": "main"}, {"name": "work"}]}}),
        json!({"profileTypeID": CPU, "labelSelector": api, "start": start, "end": end,
               "stackTraceSelector": {"callSite": [{"name": "main"}, {"name": "work"}]}}),
    ] {
        let v = ok_json(&server, &querier("SelectMergeStacktraces"), &body);
        assert_eq!(
            v["flamegraph"]["total"],
            (API_WORK * NS).to_string(),
            "{body}"
        );
        let names: Vec<&str> = v["flamegraph"]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"spin") && !names.contains(&"idle"),
            "{names:?}"
        );
    }
    // format TREE: Pyroscope tree bytes (base64 in JSON), enum by name and number.
    let mut tree_req = req.clone();
    tree_req.format = q::ProfileFormat::Tree as i32;
    let r: q::SelectMergeStacktracesResponse = connect_proto(
        &server,
        &querier("SelectMergeStacktraces"),
        &tree_req,
        false,
    );
    assert!(r.flamegraph.is_none());
    assert_eq!(tree_total(&r.tree), (API_TOTAL * NS) as u64);
    for format in [json!("PROFILE_FORMAT_TREE"), json!(2)] {
        let v = ok_json(
            &server,
            &querier("SelectMergeStacktraces"),
            &json!({"profileTypeID": CPU, "labelSelector": "{}", "start": start, "end": end, "format": format}),
        );
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["tree"].as_str().unwrap())
            .unwrap();
        assert_eq!(tree_total(&bytes), ((API_TOTAL + WEB_TOTAL) * NS) as u64);
    }
    // Drilldown's newer formats (not in Grafana Pyroscope's proto) read as unspecified, as
    // protojson reads unknown enum names: a flame graph, so Drilldown falls back.
    let v = ok_json(
        &server,
        &querier("SelectMergeStacktraces"),
        &json!({"profileTypeID": CPU, "labelSelector": api, "start": start, "end": end, "format": "PROFILE_FORMAT_FUNCTIONS"}),
    );
    assert_eq!(
        v["flamegraph"]["total"],
        (API_TOTAL * NS).to_string(),
        "{v}"
    );
    // Selectors Embers cannot honour are refused, not ignored.
    let (status, v) = connect_json(
        &server,
        &querier("SelectMergeStacktraces"),
        &json!({"profileTypeID": CPU, "labelSelector": api, "start": start, "end": end,
                "profileIdSelector": ["7c9e6679-7425-40de-944b-e07fc1f90ae7"]}),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (501, Some("unimplemented")),
        "{v}"
    );

    // Diff: api left, web right, each side's selection honoured.
    let diff: q::DiffResponse = connect_proto(
        &server,
        &querier("Diff"),
        &q::DiffRequest {
            left: Some(req.clone()),
            right: Some(q::SelectMergeStacktracesRequest {
                label_selector: r#"{service_name="web"}"#.into(),
                ..req.clone()
            }),
        },
        false,
    );
    let d = diff.flamegraph.unwrap();
    assert_eq!(
        (d.left_ticks, d.right_ticks),
        (API_TOTAL * NS, WEB_TOTAL * NS)
    );
    let v = ok_json(
        &server,
        &querier("Diff"),
        &json!({
            "left": {"profile_typeID": CPU, "label_selector": api, "start": start, "end": end,
                     "stack_trace_selector": {"call_site": [{"name": "main"}, {"name": "work"}]}},
            "right": {"profileTypeID": CPU, "labelSelector": "{service_name=\"web\"}", "start": start, "end": end},
        }),
    );
    assert_eq!(v["flamegraph"]["leftTicks"], (API_WORK * NS).to_string());
    assert_eq!(v["flamegraph"]["rightTicks"], (WEB_TOTAL * NS).to_string());
}

/// `go tool pprof -top`'s "N% of T total" line, T in seconds.
fn pprof_total_seconds(profile: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merge.pb");
    std::fs::write(&path, profile).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .expect("go (Debian's golang-go) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("total") && l.contains("% of "))
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    let total = line
        .split("% of ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let (number, scale) = if let Some(ms) = total.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (total.strip_suffix('s').unwrap(), 1.0)
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn select_merge_profile_is_a_pprof_go_tool_pprof_reads_with_the_same_totals() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server_with_data(dir.path());
    let (start, end) = range(base);
    let req = q::SelectMergeProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: r#"{service_name="api"}"#.into(),
        start,
        end,
        ..Default::default()
    };
    let profile: pprof::Profile =
        connect_proto(&server, &querier("SelectMergeProfile"), &req, false);
    let sum: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(sum, API_TOTAL * NS);
    let seconds = pprof_total_seconds(&profile.encode_to_vec());
    assert!((seconds - 6.0).abs() < 1e-9, "{seconds}");

    // Focused on main;work, as Drilldown's function details ask (its PprofApiClient
    // mixes the spellings: `stackTraceSelector` holding `call_site`).
    let v = ok_json(
        &server,
        &querier("SelectMergeProfile"),
        &json!({"profile_typeID": CPU, "label_selector": "{service_name=\"api\"}", "start": start, "end": end,
                "stackTraceSelector": {"call_site": [{"name": "main"}, {"name": "work"}]}, "maxNodes": 16384}),
    );
    let sum: i64 = v["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][0].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(sum, API_WORK * NS);
    let focused: pprof::Profile = connect_proto(
        &server,
        &querier("SelectMergeProfile"),
        &q::SelectMergeProfileRequest {
            stack_trace_selector: Some(types::StackTraceSelector {
                call_site: ["main", "work"]
                    .map(|name| types::Location { name: name.into() })
                    .to_vec(),
                go_pgo: None,
            }),
            ..req
        },
        true,
    );
    let seconds = pprof_total_seconds(&focused.encode_to_vec());
    assert!((seconds - 3.6).abs() < 1e-9, "{seconds}");
}

/// (timestamp ms, value) of a `types.v1.Series` in JSON.
fn points(series: &Value) -> Vec<(i64, f64)> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["timestamp"].as_str().unwrap().parse().unwrap(),
                p["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn select_series_has_a_point_every_step_on_dense_data() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server_with_data(dir.path());
    let (start, end) = range(base);
    let ns = NS as f64;

    // Step 15 (Grafana's minimum), Grafana's backend: proto.
    let req = q::SelectSeriesRequest {
        profile_type_id: CPU.into(),
        label_selector: r#"{service_name="api"}"#.into(),
        start,
        end,
        step: 15.0,
        ..Default::default()
    };
    let r: q::SelectSeriesResponse = connect_proto(&server, &querier("SelectSeries"), &req, true);
    assert_eq!(r.series.len(), 1);
    let p = &r.series[0].points;
    assert_eq!(p.len() as i64, 10 * LEAVES / 15);
    assert_eq!(p[0].timestamp, base * 1000);
    assert!(p
        .windows(2)
        .all(|w| w[1].timestamp - w[0].timestamp == 15_000));
    assert!(p.iter().all(|x| x.timestamp % 15_000 == 0));
    assert_eq!(
        p.iter().map(|x| x.value).sum::<f64>(),
        API_TOTAL as f64 * ns
    );

    // Step 60, JSON (both spellings): six leaves a point, 4 + 5 + 6 twice = 30 samples.
    for body in [
        json!({"profile_typeID": CPU, "label_selector": "{service_name=\"api\"}", "start": start, "end": end, "step": 60}),
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"api\"}", "start": start.to_string(), "end": end.to_string(), "step": 60.0}),
    ] {
        let v = ok_json(&server, &querier("SelectSeries"), &body);
        let p = points(&v["series"][0]);
        assert_eq!(p.len() as i64, 10 * LEAVES / 60, "{v}");
        assert!(p.windows(2).all(|w| w[1].0 - w[0].0 == 60_000));
        assert!(
            p.iter().all(|&(t, v)| t % 60_000 == 0 && v == 30.0 * ns),
            "{p:?}"
        );
    }
    // Average: 30 samples over six profiles = 5 each; the enum by name and by number.
    for aggregation in [json!("TIME_SERIES_AGGREGATION_TYPE_AVERAGE"), json!(1)] {
        let v = ok_json(
            &server,
            &querier("SelectSeries"),
            &json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"api\"}", "start": start, "end": end,
                    "step": 60, "aggregation": aggregation}),
        );
        let p = points(&v["series"][0]);
        assert_eq!(p.len() as i64, 10 * LEAVES / 60);
        assert!(p.iter().all(|&(_, v)| v == 5.0 * ns), "{p:?}");
    }
    // Focused on the call site main;work: spin 1 + 2 + 3 twice and work 1 six times = 18
    // samples a minute; averaged over the six profiles, 3.
    for (aggregation, want) in [
        (json!(0), 18.0),
        (json!("TIME_SERIES_AGGREGATION_TYPE_AVERAGE"), 3.0),
    ] {
        let v = ok_json(
            &server,
            &querier("SelectSeries"),
            &json!({"profile_typeID": CPU, "label_selector": "{service_name=\"api\"}", "start": start, "end": end,
                    "step": 60, "aggregation": aggregation,
                    "stackTraceSelector": {"callSite": [{"name": "main"}, {"name": "work"}]}}),
        );
        let p = points(&v["series"][0]);
        assert_eq!(p.len() as i64, 10 * LEAVES / 60, "{v}");
        assert!(p.iter().all(|&(_, v)| v == want * ns), "{p:?}");
    }

    // group_by service_name: two series; limit 1 keeps the larger (api).
    let v = ok_json(
        &server,
        &querier("SelectSeries"),
        &json!({"profileTypeID": CPU, "labelSelector": "{}", "start": start, "end": end, "step": 60,
                "group_by": ["service_name"]}),
    );
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}");
    assert_eq!(
        series[1]["labels"],
        json!([{"name": "service_name", "value": "web"}])
    );
    assert!(points(&series[1]).iter().all(|&(_, v)| v == 24.0 * ns));
    let v = ok_json(
        &server,
        &querier("SelectSeries"),
        &json!({"profileTypeID": CPU, "labelSelector": "{}", "start": start, "end": end, "step": 60,
                "groupBy": ["service_name"], "limit": "1"}),
    );
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0]["labels"],
        json!([{"name": "service_name", "value": "api"}])
    );

    // SelectHeatmap: per minute, six profiles of 4, 5 or 6 samples in 20 bands.
    let v = ok_json(
        &server,
        &querier("SelectHeatmap"),
        &json!({"profile_typeID": CPU, "label_selector": "{service_name=\"api\"}", "start": start, "end": end,
                "step": 60, "query_type": "HEATMAP_QUERY_TYPE_INDIVIDUAL"}),
    );
    let slots = v["series"][0]["slots"].as_array().unwrap();
    assert_eq!(slots.len() as i64, 10 * LEAVES / 60, "{v}");
    for slot in slots {
        let counts: Vec<i64> = slot["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap())
            .collect();
        assert_eq!(counts.len(), 20);
        assert_eq!(counts.iter().sum::<i64>(), 6);
        // 4 and 6 samples are the lowest and highest bands; 5 is in the middle.
        assert_eq!((counts[0], counts[10], counts[19]), (2, 2, 2), "{counts:?}");
        assert_eq!(slot["yMin"][0].as_f64(), Some(4.0 * ns));
    }
}

#[test]
fn settings_are_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = |m: &str| format!("/settings.v1.SettingsService/{m}");
    let mut server = ServerHandle::start(dir.path(), &[]);
    assert_eq!(ok_json(&server, &path("Get"), &json!({})), json!({}));
    let value = r#"{"maxNodes":16384,"enableFlameGraphDotComExport":false}"#;
    let v = ok_json(
        &server,
        &path("Set"),
        &json!({"setting": {"name": "pluginSettings", "value": value, "modifiedAt": "1700000000000"}}),
    );
    assert_eq!(v["setting"]["modifiedAt"], "1700000000000");
    // An older write loses.
    let (status, _) = connect_json(
        &server,
        &path("Set"),
        &json!({"setting": {"name": "pluginSettings", "value": "{}", "modifiedAt": 1}}),
    );
    assert_eq!(status, 400);
    server.stop();
    let server = ServerHandle::start(dir.path(), &[]);
    let v = ok_json(&server, &path("Get"), &json!({}));
    assert_eq!(
        v["settings"],
        json!([{"name": "pluginSettings", "value": value, "modifiedAt": "1700000000000"}])
    );
    ok_json(&server, &path("Delete"), &json!({"name": "pluginSettings"}));
    assert_eq!(ok_json(&server, &path("Get"), &json!({})), json!({}));
}

/// A pprof of CPU nanoseconds: `main;in_span` for 30 ms tagged with span `SPAN`, and
/// `main;outside` for 70 ms untagged (as pyroscope-otel tags a root span's samples).
fn span_pprof(time_nanos: i64) -> Vec<u8> {
    let strings: Vec<String> = [
        "",
        "cpu",
        "nanoseconds",
        "main",
        "in_span",
        "outside",
        "span_id",
        SPAN,
    ]
    .map(String::from)
    .to_vec();
    let function = |id: u64, name: i64| pprof::Function {
        id,
        name,
        ..Default::default()
    };
    let location = |id: u64| pprof::Location {
        id,
        line: vec![pprof::Line {
            function_id: id,
            ..Default::default()
        }],
        ..Default::default()
    };
    let cpu = pprof::ValueType { r#type: 1, unit: 2 };
    pprof::Profile {
        sample_type: vec![cpu],
        period_type: Some(cpu),
        period: 10_000_000,
        time_nanos,
        duration_nanos: 10_000_000_000,
        sample: vec![
            pprof::Sample {
                location_id: vec![2, 1],
                value: vec![30_000_000],
                label: vec![pprof::Label {
                    key: 6,
                    str: 7,
                    ..Default::default()
                }],
            },
            pprof::Sample {
                location_id: vec![3, 1],
                value: vec![70_000_000],
                label: Vec::new(),
            },
        ],
        location: vec![location(1), location(2), location(3)],
        function: vec![function(1, 3), function(2, 4), function(3, 5)],
        string_table: strings,
        ..Default::default()
    }
    .encode_to_vec()
}

const SPAN: &str = "00000000000000a1";

#[test]
fn span_selector_narrows_select_merge_stacktraces_to_the_span() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let t = (now() as i64 - 3600) / 10 * 10;
    let url = server.url(&format!(
        "/ingest?name=spanapp&from={t}&until={}&format=pprof",
        t + 10
    ));
    let (status, text) = post(
        &url,
        "application/octet-stream",
        &span_pprof(t * 1_000_000_000),
    );
    assert_eq!(status, 200, "{text}");
    let (start, end) = (t * 1000, (t + 10) * 1000);
    let select = |extra: Value| {
        let mut body = json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"spanapp\"}", "start": start, "end": end});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ok_json(&server, &querier("SelectMergeStacktraces"), &body)
    };
    assert_eq!(select(json!({}))["flamegraph"]["total"], "100000000");
    let v = select(json!({"spanSelector": [SPAN]}));
    assert_eq!(v["flamegraph"]["total"], "30000000", "{v}");
    assert!(
        !v["flamegraph"]["names"].to_string().contains("outside"),
        "{v}"
    );
    // Another span: nothing (a zero total is left out, as protojson does).
    let v = select(json!({"span_selector": ["00000000000000b2"]}));
    assert!(v["flamegraph"]["total"].is_null(), "{v}");
    // With a call site the span's samples are narrowed further.
    let v = select(
        json!({"spanSelector": [SPAN], "stackTraceSelector": {"callSite": [{"name": "main"}, {"name": "outside"}]}}),
    );
    assert!(v["flamegraph"]["total"].is_null(), "{v}");
}
