//! The web UI end to end: a real `embers server` loaded with known profiles, driven in
//! headless Chromium (Debian's, through playwright-core) by `e2e/ui.mjs`, which reports
//! what the page showed; screenshots of every view land in `test-artifacts/ui/`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

use serde_json::Value;
use support::{enc, now, post, repo, ServerHandle};

const FOO: &str = "main (app.py:30);foo (app.py:22)";
const BAR: &str = "main (app.py:30);bar (app.py:26)";

fn ingest(server: &ServerHandle, name: &str, at: u64, folded: &str) {
    let url = server.url(&format!(
        "/ingest?name={}&from={at}&until={}&sampleRate=100&format=folded",
        enc(name),
        at + 10
    ));
    let (status, body) = post(&url, "text/plain", folded.as_bytes());
    assert_eq!(status, 200, "{body}");
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn ui_views_show_the_known_profiles_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    // us-east-1 forty minutes ago: foo 75 %, 100 samples; eu-west-1 twenty minutes ago:
    // foo 25 %, 300 samples. Together foo 150 of 400 (37.5 %).
    let a = (now() - 2400) / 10 * 10;
    let b = a + 1200;
    ingest(
        &server,
        "shop.cpu{region=us-east-1}",
        a,
        &format!("{FOO} 75\n{BAR} 25\n"),
    );
    ingest(
        &server,
        "shop.cpu{region=eu-west-1}",
        b,
        &format!("{FOO} 75\n{BAR} 225\n"),
    );
    // One app with every kind of unit, 75 % in one function each.
    for (name, body) in [
        ("units.wall", "main;sleep 30\nmain;work 10\n"),
        (
            "units.alloc_space",
            "main;grow 3145728\nmain;keep 1048576\n",
        ),
        ("units.goroutines", "main;wait 30\nmain;serve 10\n"),
        ("units.mutex_count", "main;lock 3\nmain;unlock 1\n"),
        ("units.block_count", "main;lock 3000\nmain;unlock 1000\n"),
        // Lock time is nanoseconds as uploaded (Grafana scales only CPU and wall by the
        // sample rate).
        (
            "units.mutex_duration",
            "main;lock 300000000\nmain;unlock 100000000\n",
        ),
    ] {
        ingest(&server, name, b, body);
    }
    // One function at two lines (as a Python script's `spin` sampled at lines 7 and 8).
    ingest(
        &server,
        "lines.cpu",
        b,
        "main (app.py:3);spin (app.py:7) 30\nmain (app.py:3);spin (app.py:8) 20\n",
    );
    ingest(
        &server,
        "xss.cpu",
        b,
        "main;<img src=x onerror=alert(1)> 10\nmain 5\n",
    );

    let shots = repo().join("test-artifacts/ui");
    let out = Command::new("node")
        .arg(repo().join("e2e/ui.mjs"))
        .arg(server.url(""))
        .arg((a - 600).to_string())
        .arg((b + 600).to_string())
        .arg(&shots)
        .output()
        .expect("node runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "e2e/ui.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["errors"], serde_json::json!([]), "errors in the page");
    assert_eq!(r["dialogs"], serde_json::json!([]), "a dialog opened");

    // Single view: drawn, hover numbers, search share, zoom, table sort, sandwich.
    let s = &r["single"];
    assert!(s["painted"].as_u64().unwrap() > 10_000, "{}", s["painted"]);
    assert!(
        text(&s["status"]).starts_with("4.00 s in total"),
        "{}",
        s["status"]
    );
    // Nodes are functions: the line the samples came from is not part of the name.
    let tip = text(&s["tooltipFoo"]);
    assert!(tip.contains("foo") && !tip.contains("app.py"), "{tip}");
    assert!(tip.contains("1.50 s (37.50 %)"), "{tip}");
    assert_eq!(text(&s["matched"]), "Matched: 37.50 % (1.50 s)");
    assert_eq!(s["searchHighlight"], serde_json::json!([238, 0, 238]));
    assert_eq!(s["searchDimmed"], serde_json::json!([226, 226, 226]));
    let zoom = &s["zoom"];
    let canvas = zoom["canvas"].as_f64().unwrap();
    let before = zoom["before"].as_f64().unwrap();
    assert!((before / canvas - 0.375).abs() < 0.01, "{zoom}");
    assert!(
        (zoom["after"].as_f64().unwrap() - canvas).abs() < 1.0,
        "{zoom}"
    );
    assert_eq!(text(&zoom["url"]), "main;foo");
    assert!(text(&zoom["crumbs"]).contains("foo"), "{zoom}");
    assert!((s["zoomReset"].as_f64().unwrap() - before).abs() < 1.0);
    let first_cells = |rows: &Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| text(&r[0]).split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(first_cells(&s["rowsBySelf"]), ["bar", "foo", "main"]);
    assert_eq!(first_cells(&s["rowsByNameAsc"]), ["bar", "foo", "main"]);
    assert_eq!(first_cells(&s["rowsByTotal"]), ["main", "bar", "foo"]);
    assert_eq!(first_cells(&s["rowsFiltered"]), ["bar"]);
    assert_eq!(text(&s["rowsBySelf"][0][1]), "2.50 s (62.50 %)");
    let sandwich = &s["sandwich"];
    assert_eq!(text(&sandwich["url"]), "bar");
    assert_eq!(
        sandwich["callers"],
        serde_json::json!(["bar@0=2500000000", "main@1=2500000000"])
    );
    assert_eq!(sandwich["callees"], serde_json::json!(["bar@0=2500000000"]));
    assert_eq!(s["highlightBar"], serde_json::json!([238, 0, 238]));
    assert_eq!(text(&s["flame"]["url"]), "flame");
    assert!(s["flame"]["rootY"].as_f64() > s["flame"]["fooY"].as_f64());

    // Tag selection with autocomplete narrows the graph to eu-west-1.
    let t = &r["tags"];
    assert_eq!(t["names"], serde_json::json!(["region"]));
    assert_eq!(t["values"], serde_json::json!(["eu-west-1"]));
    assert_eq!(text(&t["url"]), r#"region="eu-west-1""#);
    assert!(text(&t["status"]).starts_with("3.00 s in total"), "{t}");
    assert!(text(&t["tooltipFoo"]).contains("750.0 ms (25.00 %)"), "{t}");

    // A link brings back search and zoom.
    assert_eq!(text(&r["link"]["matched"]), "Matched: 62.50 % (2.50 s)");
    assert!(text(&r["link"]["crumbs"]).contains("main"));
    assert_eq!(text(&r["link"]["searchValue"]), "ba");

    // Dragging 20 %..70 % of the timeline (a-600 .. b+600, 2,400 s) selects a-120 .. a+1080
    // (within a few pixels' worth of time), which holds the us-east-1 window only.
    let (from, until) = (
        r["drag"]["from"].as_u64().unwrap(),
        r["drag"]["until"].as_u64().unwrap(),
    );
    assert!(
        from.abs_diff(a - 120) <= 24 && until.abs_diff(a + 1080) <= 24,
        "{}",
        r["drag"]
    );
    assert!(
        text(&r["drag"]["status"]).starts_with("1.00 s in total"),
        "{}",
        r["drag"]
    );

    // Exports are the server's formats of the same query.
    let e = &r["exports"];
    assert!(text(&e["collapsed"]["head"]).starts_with("main;"), "{e}");
    assert!(
        text(&e["dot"]["head"]).starts_with("digraph \"process_cpu:cpu:nanoseconds"),
        "{e}"
    );
    assert_eq!(text(&e["dot"]["name"]), "shop.dot");
    assert!(
        text(&e["svg"]["head"]).contains("<?xml") || text(&e["svg"]["head"]).contains("<svg"),
        "{e}"
    );
    assert!(text(&e["speedscope"]["head"]).contains("speedscope"), "{e}");
    assert!(text(&e["json"]["head"]).starts_with('{'), "{e}");
    assert!(
        text(&e["pprof"]["head"]).starts_with("\u{1f}\u{8b}"),
        "pprof is gzipped: {e}"
    );
    assert!(text(&e["png"]["head"]).starts_with("\u{89}PNG"), "{e}");
    assert_eq!(text(&e["png"]["name"]), "shop.png");

    // Comparison: each side's own share of foo.
    assert!(
        text(&r["compare"]["left"]).contains("(75.00 %)"),
        "{}",
        r["compare"]
    );
    assert!(
        text(&r["compare"]["right"]).contains("(25.00 %)"),
        "{}",
        r["compare"]
    );

    // Diff: foo shrank (green), bar grew (red); the table leads with the growth.
    let d = &r["diff"];
    let tip = text(&d["tooltipFoo"]);
    assert!(
        tip.contains("750.0 ms (75.00 %)") && tip.contains("750.0 ms (25.00 %)"),
        "{tip}"
    );
    assert!(tip.contains("-66.7 %"), "{tip}");
    let [fr, fg, _] = rgb(&d["colourFoo"]);
    let [br, bg, _] = rgb(&d["colourBar"]);
    assert!(fg > fr, "foo should be green: {}", d["colourFoo"]);
    assert!(br > bg, "bar should be red: {}", d["colourBar"]);
    assert_eq!(first_cells(&d["rows"])[0], "bar");
    assert_eq!(text(&d["rows"][0][3]), "+50.00 pp");
    assert!(text(&d["legend"]).contains("grew"));

    // Tag explorer: region shares, and the jump to a diff of the two.
    assert_eq!(
        r["explore"]["rows"],
        serde_json::json!([["eu-west-1", "75.00 %"], ["us-east-1", "25.00 %"]])
    );
    let jump = &r["explore"]["jump"];
    assert_eq!(text(&jump["view"]), "diff");
    assert_eq!(text(&jump["q"]), r#"region="us-east-1""#);
    assert_eq!(text(&jump["rq"]), r#"region="eu-west-1""#);
    assert_eq!(first_cells(&jump["rows"])[0], "bar");

    // "By line": one spin node per line, back to one per function.
    let l = &r["byLine"];
    assert_eq!(l["functionNodes"], serde_json::json!(["spin=500000000"]));
    assert!(
        text(&l["functionTip"]).contains("500.0 ms (100.00 %)"),
        "{l}"
    );
    assert_eq!(text(&l["button"]), "By line");
    assert_eq!(text(&l["url"]), "line");
    assert_eq!(
        l["lineNodes"],
        serde_json::json!(["spin (app.py:7)=300000000", "spin (app.py:8)=200000000"])
    );
    assert!(text(&l["lineTip"]).contains("app.py:7"), "{l}");
    assert_eq!(text(&l["pressed"]), "true");
    assert_eq!(l["back"], l["functionNodes"]);

    // Seconds for wall (legacy samples at 100 Hz) and lock time, bytes, counts; counted
    // contentions as Pyroscope's ObjectsFormatter shows them (K from 1,000 on, the
    // scale chosen from the graph's total).
    let u = &r["units"];
    for (kind, status, tip) in [
        ("wall", "400.0 ms in total", "300.0 ms (75.00 %)"),
        ("alloc_space", "4.0 MiB in total", "3.0 MiB (75.00 %)"),
        ("goroutine", "40 objects in total", "30 objects (75.00 %)"),
        ("contentions", "4.00 in total", "3.00 (75.00 %)"),
        ("block_contentions", "4.00 K in total", "3.00 K (75.00 %)"),
        ("delay", "400.0 ms in total", "300.0 ms (75.00 %)"),
    ] {
        assert!(text(&u[kind]["status"]).starts_with(status), "{kind}: {u}");
        assert!(text(&u[kind]["tip"]).contains(tip), "{kind}: {u}");
    }

    // Untrusted names are text, not markup.
    let x = &r["xss"];
    assert_eq!(text(&x["cell"]), "<img src=x onerror=alert(1)>");
    assert!(text(&x["tooltip"]).contains("<img src=x onerror=alert(1)>"));
    assert_eq!(x["images"], 0);
    // A bad selector shows the server's reason.
    let bad = text(&r["badQuery"]);
    assert!(bad.starts_with("Query failed: 400"), "{bad}");
    assert!(
        r["badQueryConsole"].to_string().contains("400"),
        "{}",
        r["badQueryConsole"]
    );

    // An empty selection has no SVG to draw: a clear 422, not a server error.
    let empty = server.url(&format!(
        "/render?query=shop.cpu&from={}&until={}&format=svg",
        a + 100,
        a + 200
    ));
    let (status, body) = support::get(&empty);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("nothing to draw"), "{body}");

    for view in [
        "single",
        "single-zoomed",
        "single-sandwich",
        "single-tag",
        "compare",
        "diff",
        "explore",
        "xss",
        "by-line",
    ] {
        assert!(shots.join(format!("{view}.png")).exists(), "{view}.png");
    }
}

fn rgb(v: &Value) -> [u64; 3] {
    let a = v.as_array().unwrap();
    [0, 1, 2].map(|i| a[i].as_u64().unwrap())
}
