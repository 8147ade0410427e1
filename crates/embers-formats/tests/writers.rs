//! Each writer's output, checked by the real consumer where one exists: callgrind_annotate,
//! speedscope's own JSON schema, and Chromium for the SVG.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{foobar, node, workspace_root, write};
use embers_formats::{Format, WriteOptions};
use embers_profile::{Frame, Labels, Profile, ProfileMeta};

#[test]
fn callgrind_annotate_reports_inclusive_costs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callgrind.out.foobar");
    std::fs::write(&path, write(&foobar(), Format::Callgrind)).unwrap();
    let out = std::process::Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(&path)
        .output()
        .expect("callgrind_annotate is installed (Debian package valgrind)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let cost = |function: &str| -> u64 {
        let row = text
            .lines()
            .find(|l| l.trim_end().ends_with(&format!("app.py:{function}")))
            .unwrap_or_else(|| panic!("no row for {function} in\n{text}"));
        row.split_whitespace()
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    assert!(text.contains("100 (100.0%)  PROGRAM TOTALS"), "{text}");
    assert_eq!(cost("foo"), 75);
    assert_eq!(cost("bar"), 25);
    assert_eq!(cost("work"), 100);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("arning"));
}

#[test]
fn speedscope_validates_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.speedscope.json");
    let mut profile = foobar();
    profile.meta = ProfileMeta::sampled_at(100);
    std::fs::write(&path, write(&profile, Format::Speedscope)).unwrap();
    let out = node("validate-speedscope.mjs", &[path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let p = &doc["profiles"][0];
    assert_eq!(p["endValue"], 100);
    assert_eq!(
        p["samples"].as_array().unwrap().len(),
        p["weights"].as_array().unwrap().len()
    );
    let frames = doc["shared"]["frames"].as_array().unwrap();
    assert!(frames
        .iter()
        .any(|f| f["name"] == "foo" && f["file"] == "app.py" && f["line"] == 22));
}

#[test]
fn chrome_trace_nests_children_inside_parents() {
    let mut profile = foobar();
    profile.meta = ProfileMeta::sampled_at(100);
    let doc: serde_json::Value =
        serde_json::from_slice(&write(&profile, Format::ChromeTrace)).unwrap();
    let events: Vec<&serde_json::Value> = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    let span = |name: &str| {
        let e = events.iter().find(|e| e["name"] == name).unwrap();
        (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap())
    };
    // 100 samples at 100 Hz: one second, in microseconds.
    assert_eq!(span("<module>"), (0.0, 1_000_000.0));
    let (foo_ts, foo_dur) = span("foo");
    let (bar_ts, bar_dur) = span("bar");
    assert_eq!((foo_dur, bar_dur), (750_000.0, 250_000.0));
    assert!(foo_ts >= 0.0 && foo_ts + foo_dur <= 1_000_000.0);
    assert!(
        bar_ts >= foo_ts + foo_dur || bar_ts + bar_dur <= foo_ts,
        "siblings overlap"
    );
}

#[test]
fn svg_search_in_chromium_highlights_foo() {
    let artifacts = workspace_root().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let svg = artifacts.join("foobar.svg");
    let options = WriteOptions {
        title: Some("seed 000".into()),
        ..WriteOptions::default()
    };
    let mut bytes = Vec::new();
    embers_formats::write(&foobar(), Format::Svg, &options, &mut bytes).unwrap();
    std::fs::write(&svg, bytes).unwrap();
    let shot = artifacts.join("svg-search.png");
    let out = node(
        "svg-search.mjs",
        &[svg.to_str().unwrap(), "^foo ", shot.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["matched"], "Matched: 75.0%");
    assert_eq!(
        result["highlighted"],
        serde_json::json!(["foo (app.py:22)"])
    );
    assert_eq!(result["title"], "seed 000");
    assert!(shot.exists());
}

#[test]
fn hostile_function_names_are_escaped_in_svg() {
    let mut profile = Profile::new(ProfileMeta::sampled_at(100));
    let evil = Frame::named("<img src=x onerror=alert(1)>");
    profile.add_frames([&Frame::named("main"), &evil], Labels::new(), 10);
    let svg = String::from_utf8(write(&profile, Format::Svg)).unwrap();
    assert!(!svg.contains("<img"), "raw markup in the SVG");
    assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn icicle_and_diff_svgs_are_drawn() {
    let options = WriteOptions {
        icicle: true,
        ..WriteOptions::default()
    };
    let mut icicle = Vec::new();
    embers_formats::write(&foobar(), Format::Svg, &options, &mut icicle).unwrap();
    assert_ne!(
        icicle,
        write(&foobar(), Format::Svg),
        "icicle differs from flame layout"
    );

    let after = embers_formats::read(
        b"<module> (app.py:40);bar (app.py:26);work (app.py:17) 25\n\
          <module> (app.py:40);foo (app.py:22);work (app.py:17) 8\n",
        Some(Format::Folded),
    )
    .unwrap();
    let mut diff = Vec::new();
    embers_formats::write_diff_svg(&foobar(), &after, &WriteOptions::default(), &mut diff).unwrap();
    let diff = String::from_utf8(diff).unwrap();
    assert!(diff.contains("Differential flame graph"));
    // Differential flame graphs colour by the change in *self* time (FlameGraph's and
    // inferno's semantics): the `work` leaf under foo shrank (blue), under bar it grew
    // (red); foo and bar themselves have no self time and stay neutral.
    let fill_of = |title_start: &str| {
        let at = diff.find(&format!("<title>{title_start}")).unwrap();
        let rest = &diff[at..];
        let fill = rest.find("fill=\"rgb(").unwrap();
        let rgb = &rest[fill + 10..fill + 10 + rest[fill + 10..].find(')').unwrap()];
        rgb.split(',')
            .map(|c| c.trim().parse::<u8>().unwrap())
            .collect::<Vec<_>>()
    };
    let under_foo = fill_of("work (app.py:17) (8 samples");
    let under_bar = fill_of("work (app.py:17) (25 samples");
    assert!(
        under_foo[2] > under_foo[0],
        "work under foo should be blue: {under_foo:?}"
    );
    assert!(
        under_bar[0] > under_bar[2],
        "work under bar should be red: {under_bar:?}"
    );
}

#[test]
fn empty_profiles_cannot_be_drawn() {
    let err = embers_formats::write(
        &Profile::default(),
        Format::Svg,
        &WriteOptions::default(),
        &mut Vec::new(),
    );
    assert!(err.unwrap_err().to_string().contains("no samples"));
}
