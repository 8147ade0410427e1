//! The query side's presentation, on a real Go program's CPU profile: trees grouped by
//! function by default and by line on request, flamebearer units as Grafana Pyroscope
//! answers them, `max-nodes`, and the Graphviz call graph (`format=dot`).
//!
//! The Go program (`tests/go_lines/main.go`, built here with Debian's golang) calls `work`
//! from two lines of `spin`, so its profile has one function at two lines. The expected
//! totals come from `go tool pprof -top`, not from our own decoder.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{
    enc, get, go_lines_profile, go_top, now, post, repo, run, run_both, GoTop, ServerHandle,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"golines\"}";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds{service_name=\"golines\"}";
/// Go's CPU profiler samples at 100 Hz: one sample is 10 ms.
const PERIOD_NS: u64 = 10_000_000;

/// Builds and runs the Go program; its pprof and what `go tool pprof` reads in it.
fn go_profile(dir: &Path) -> (Vec<u8>, GoTop) {
    let profile = go_lines_profile(dir, "cpu.pprof");
    let top = go_top(dir, &profile);
    (std::fs::read(&profile).unwrap(), top)
}

/// One flame graph node: name, depth, total, self.
#[derive(Debug)]
struct Node {
    name: String,
    level: usize,
    total: u64,
    self_value: u64,
}

fn nodes(render: &Value) -> Vec<Node> {
    let fb = &render["flamebearer"];
    let names: Vec<&str> = fb["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let mut out = Vec::new();
    for (level, row) in support::levels(fb).into_iter().enumerate() {
        for n in row.chunks(4) {
            out.push(Node {
                name: names[n[3] as usize].to_owned(),
                level,
                total: n[1],
                self_value: n[2],
            });
        }
    }
    out
}

struct Fixture {
    server: ServerHandle,
    total: u64,
    /// The CPU under `main.spin` (all of it, unless the profiler caught the runtime's
    /// own goroutines at work).
    spin: u64,
    /// `main.spin`'s own CPU (none, unless a sample fell between its two calls).
    spin_self: u64,
    /// Each function's cumulative CPU, as `go tool pprof` reads it.
    cum: BTreeMap<String, u64>,
    from: u64,
    until: u64,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (pprof, top) = go_profile(dir.path());
        let spin = top.cum["main.spin"];
        assert!(spin > 0 && top.cum["main.work"] > 0, "{:?}", top.cum);
        let server = ServerHandle::start(&dir.path().join("data"), &[]);
        let t = now() / 10 * 10 - 60;
        let (status, body) = post(
            &server.url(&format!(
                "/ingest?name=golines&from={t}&until={}&format=pprof",
                t + 10
            )),
            "application/octet-stream",
            &pprof,
        );
        assert_eq!(status, 200, "{body}");
        Fixture {
            server,
            total: top.total,
            spin,
            spin_self: top.flat["main.spin"],
            cum: top.cum,
            from: t - 60,
            until: now() + 60,
            dir,
        }
    }

    fn get(&self, path: &str, query: &str, extra: &str) -> String {
        let (status, body) = get(&self.server.url(&format!(
            "{path}?query={}&from={}&until={}{extra}",
            enc(query),
            self.from,
            self.until
        )));
        assert_eq!(status, 200, "{path} {extra}: {body}");
        body
    }

    fn render(&self, query: &str, extra: &str) -> Value {
        serde_json::from_str(&self.get("/render", query, extra)).unwrap()
    }
}

fn named<'a>(nodes: &'a [Node], prefix: &str) -> Vec<&'a Node> {
    nodes
        .iter()
        .filter(|n| n.name.starts_with(prefix))
        .collect()
}

#[test]
fn a_function_at_two_lines_is_one_node_unless_asked_by_line() {
    let f = Fixture::start();

    // By function (the default): one spin, holding all the CPU, named as Grafana names it.
    let r = f.render(CPU, "");
    assert_eq!(r["flamebearer"]["numTicks"], f.total);
    assert_eq!(r["metadata"]["aggregation"], "function");
    let n = nodes(&r);
    let spin = named(&n, "main.spin");
    assert_eq!(spin.len(), 1, "{n:?}");
    assert_eq!(spin[0].name, "main.spin");
    assert_eq!((spin[0].total, spin[0].self_value), (f.spin, f.spin_self));
    assert_eq!(named(&n, "main.work").len(), 1, "{n:?}");
    assert_eq!(named(&n, "main.main").len(), 1, "{n:?}");

    // By line: spin at lines 26 and 27, which together hold all the CPU.
    let r = f.render(CPU, "&aggregation=line");
    assert_eq!(r["metadata"]["aggregation"], "line");
    assert_eq!(r["flamebearer"]["numTicks"], f.total);
    let n = nodes(&r);
    let spin = named(&n, "main.spin ");
    let lines: Vec<&str> = spin
        .iter()
        .map(|s| s.name.rsplit_once(':').unwrap().1)
        .collect();
    assert_eq!(spin.len(), 2, "{n:?}");
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["26)", "27)"], "{n:?}");
    assert!(spin.iter().all(|s| s.name.contains("go_lines/main.go:")));
    assert!(spin.iter().all(|s| s.level == spin[0].level));
    assert_eq!(spin.iter().map(|s| s.total).sum::<u64>(), f.spin);
    assert!(spin.iter().all(|s| s.total > 0));

    // The diff and the exports group the same way.
    let diff = |extra: &str| -> Value {
        let url = f.server.url(&format!(
            "/render-diff?leftQuery={q}&rightQuery={q}&from={}&until={}{extra}",
            f.from,
            f.until,
            q = enc(CPU)
        ));
        let (status, body) = get(&url);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let count_spin = |d: &Value| {
        let names = d["flamebearer"]["names"].as_array().unwrap().clone();
        names
            .iter()
            .filter(|n| n.as_str().unwrap().starts_with("main.spin"))
            .count()
    };
    let d = diff("");
    assert_eq!(d["leftTicks"], f.total);
    assert_eq!(count_spin(&d), 1);
    assert_eq!(count_spin(&diff("&aggregation=line")), 2);
    let folded = f.get("/render", CPU, "&format=collapsed");
    assert!(
        folded.lines().all(|l| !l.contains(".go:")),
        "no lines by default:\n{folded}"
    );
    let stacks: u64 = folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(stacks, f.total);
    let folded = f.get("/render", CPU, "&format=collapsed&aggregation=line");
    assert!(folded.contains("main.go:26)"), "{folded}");

    // Grafana's data source (Connect SelectMergeStacktraces) gets function nodes too.
    let select = serde_json::json!({
        "profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "labelSelector": "{service_name=\"golines\"}",
        "start": (f.from * 1000).to_string(),
        "end": (f.until * 1000).to_string(),
    });
    let (status, body) = post(
        &f.server
            .url("/querier.v1.QuerierService/SelectMergeStacktraces"),
        "application/json",
        select.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let merged: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(merged["flamegraph"]["total"], f.total.to_string());
    let names = merged["flamegraph"]["names"].as_array().unwrap();
    assert!(names.contains(&Value::from("main.spin")), "{names:?}");
    assert!(
        names.iter().all(|n| !n.as_str().unwrap().contains(".go:")),
        "{names:?}"
    );

    // `embers query` asks for either grouping and writes a call graph like any format.
    let dot = f.dir.path().join("q.dot");
    let query = |extra: &[&str]| {
        let (_, said) = run_both(
            Command::new(env!("CARGO_BIN_EXE_embers"))
                .args(["query", CPU, "--server", &f.server.url("")])
                .args([
                    "--from",
                    &f.from.to_string(),
                    "--until",
                    &f.until.to_string(),
                ])
                .args(extra)
                .arg("-o")
                .arg(&dot),
            "embers query",
        );
        // The CLI reads the total in seconds, not in billions of "samples".
        let total = embers_profile::ValueType::new("cpu", "nanoseconds").format_value(f.total);
        assert!(
            said.contains(&format!("embers: {total} in total")),
            "{said}"
        );
        parse_dot(&std::fs::read_to_string(&dot).unwrap())
    };
    let spins = |d: &Dot| {
        d.nodes
            .values()
            .filter(|n| n.0.starts_with("main.spin"))
            .count()
    };
    assert_eq!(spins(&query(&[])), 1);
    assert_eq!(spins(&query(&["--by-line"])), 2);

    // An unknown grouping is refused with the accepted names.
    let (status, body) = get(&f
        .server
        .url(&format!("/render?query={}&aggregation=file", enc(CPU))));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("function") && body.contains("line"), "{body}");
}

#[test]
fn flamebearer_units_and_max_nodes_follow_grafana_pyroscope() {
    let f = Fixture::start();
    // CPU nanoseconds: "samples" at 1e9 per second, so numTicks / sampleRate = seconds.
    for query in [CPU, "golines.cpu"] {
        let r = f.render(query, "");
        assert_eq!(r["metadata"]["units"], "samples", "{query}");
        assert_eq!(r["metadata"]["sampleRate"], 1_000_000_000u64, "{query}");
        assert_eq!(r["flamebearer"]["numTicks"], f.total, "{query}");
        // Grafana names the sample type there, not the query.
        assert_eq!(r["metadata"]["name"], "cpu", "{query}");
    }
    // The sample counts Go sends beside them: objects, one per 10 ms sample.
    let r = f.render(SAMPLES, "");
    assert_eq!(r["metadata"]["units"], "objects");
    assert_eq!(r["metadata"]["sampleRate"], 100);
    assert_eq!(r["metadata"]["name"], "samples");
    assert_eq!(
        r["flamebearer"]["numTicks"].as_u64().unwrap() * PERIOD_NS,
        f.total
    );
    let url = f.server.url(&format!(
        "/render-diff?leftQuery={q}&rightQuery={q}&from={}&until={}",
        f.from,
        f.until,
        q = enc(CPU)
    ));
    let d: Value = serde_json::from_str(&get(&format!("{url}&max-nodes=3")).1).unwrap();
    assert_eq!(
        (&d["metadata"]["units"], &d["metadata"]["sampleRate"]),
        (&Value::from("samples"), &Value::from(1_000_000_000u64))
    );
    assert_eq!(d["metadata"]["name"], "cpu");
    assert_eq!(
        d["metadata"]["maxNodes"], 3,
        "render-diff reads max-nodes too"
    );
    // The timeline counts the same ticks.
    let timeline: u64 = f.render(CPU, "")["timeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(timeline, f.total);

    // max-nodes (Pyroscope's frontends) is honoured, maxNodes (Grafana's) wins over it.
    let full = nodes(&f.render(CPU, "&aggregation=line")).len();
    assert!(
        full > 4,
        "the tree should be larger than the budget: {full}"
    );
    let r = f.render(CPU, "&aggregation=line&max-nodes=2");
    assert_eq!(r["metadata"]["maxNodes"], 2);
    let n = nodes(&r);
    let real: Vec<&Node> = n.iter().filter(|n| n.name != "other").collect();
    assert_eq!(real.len(), 3, "root and two nodes: {n:?}");
    assert_eq!(r["flamebearer"]["numTicks"], f.total, "weight is kept");
    let r = f.render(CPU, "&aggregation=line&max-nodes=2&maxNodes=3");
    assert_eq!(r["metadata"]["maxNodes"], 3);
    // The SVG export says seconds too, and its hover text counts nanoseconds.
    let svg = f.get("/render", CPU, "&format=svg");
    let seconds = embers_profile::ValueType::new("cpu", "nanoseconds").format_value(f.total);
    assert!(svg.contains(&format!("{seconds} · ")), "{seconds}");
    assert!(
        svg.contains(" nanoseconds, 100%)"),
        "hover text in nanoseconds"
    );

    // Pyroscope's own component reads the Go program's CPU in seconds.
    let r = pyroscope_flamegraph(
        &f.server.url(&format!(
            "/render?query={}&from={}&until={}",
            enc(CPU),
            f.from,
            f.until
        )),
        "main.spin",
        "go-cpu.png",
    );
    let tip = r["tooltip"]["table"].as_str().unwrap();
    // Pyroscope rounds shares to 0.01 % and prints them as JavaScript numbers.
    let share = (1e4 * (f.spin as f64 / f.total as f64)).round() / 100.0;
    assert!(tip.contains(&format!("Share of CPU:\t{share}%")), "{tip}");
    // Its duration formatter: two decimals, "second" only for exactly one.
    let plural = if f.spin == 1_000_000_000 { "" } else { "s" };
    let seconds = format!("CPU Time:\t{:.2} second{plural}", f.spin as f64 / 1e9);
    assert!(tip.contains(&seconds), "{tip} (expected {seconds})");
}

/// Debian's Graphviz reads the call graph without a complaint and draws `name` in it.
fn graphviz_lays_out(text: &str, name: &str) {
    use std::io::Write;
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dot runs (graphviz: scripts/install-test-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "dot: {stderr}\n{text}"
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains(&format!(">{name}</text>")), "{svg}");
}

/// A parsed DOT call graph: nodes by id with (name, self, total), edges with weights.
struct Dot {
    nodes: BTreeMap<String, (String, u64, u64)>,
    edges: Vec<(String, String, u64, bool)>,
    legend: String,
}

/// The value of `key="..."` in a DOT attribute list (our writer escapes `"` as `\"`).
fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}=\""))? + key.len() + 3;
    let rest = &line[start..];
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&rest[..i]),
            _ => escaped = false,
        }
    }
    None
}

fn parse_dot(text: &str) -> Dot {
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("digraph \""), "{text}");
    assert_eq!(text.lines().last(), Some("}"), "{text}");
    let mut dot = Dot {
        nodes: BTreeMap::new(),
        edges: Vec::new(),
        legend: String::new(),
    };
    for line in lines {
        if line.starts_with("subgraph cluster_L") {
            dot.legend = attr(line, "label").unwrap().to_owned();
        } else if let Some((id, rest)) = line.split_once(" [").filter(|(id, _)| id.starts_with('N'))
        {
            let rest = format!(" {rest}");
            let tooltip = attr(&rest, "tooltip").unwrap();
            if let Some((from, to)) = id.split_once(" -> ") {
                let weight = tooltip
                    .strip_suffix(" nanoseconds")
                    .unwrap()
                    .parse()
                    .unwrap();
                let dotted = rest.contains("style=\"dotted\"");
                dot.edges
                    .push((from.to_owned(), to.to_owned(), weight, dotted));
            } else {
                // "main.spin (self 0, total 470000000 nanoseconds)"
                let (name, values) = tooltip.rsplit_once(" (self ").unwrap();
                let (s, t) = values.split_once(", total ").unwrap();
                let t = t.strip_suffix(" nanoseconds)").unwrap();
                dot.nodes.insert(
                    id.to_owned(),
                    (name.to_owned(), s.parse().unwrap(), t.parse().unwrap()),
                );
            }
        }
    }
    dot
}

impl Dot {
    fn id(&self, name: &str) -> &str {
        let found: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, (n, _, _))| n == name)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found.len(), 1, "one node named {name}: {:?}", self.nodes);
        found[0]
    }
}

#[test]
fn dot_call_graph_has_function_nodes_weighted_edges_and_drops_small_nodes() {
    let f = Fixture::start();
    let text = f.get("/render", CPU, "&format=dot");
    let dot = parse_dot(&text);
    graphviz_lays_out(&text, "main.spin");
    // Function nodes: main.spin once, with all the CPU below it and none of its own.
    let spin = dot.id("main.spin");
    let work = dot.id("main.work");
    let main = dot.id("main.main");
    assert_eq!(dot.nodes[spin].1, f.spin_self);
    assert_eq!(dot.nodes[spin].2, f.spin);
    assert_eq!(dot.nodes[work].2, f.cum["main.work"]);
    // Self values add up to the total (every frame is shown: fewer than 80 of them).
    assert_eq!(dot.nodes.values().map(|n| n.1).sum::<u64>(), f.total);
    assert!(dot.legend.contains("Dropped 0 nodes"), "{}", dot.legend);
    let edge = |from: &str, to: &str| {
        dot.edges
            .iter()
            .find(|e| e.0 == from && e.1 == to)
            .unwrap_or_else(|| panic!("no edge {from} -> {to}:\n{text}"))
    };
    assert_eq!(edge(main, spin).2, f.spin);
    assert_eq!(edge(spin, work).2, f.cum["main.work"]);
    assert!(!edge(spin, work).3, "a direct call is solid");

    // By line: two spin nodes, one per calling line.
    let by_line = parse_dot(&f.get("/render", CPU, "&format=dot&aggregation=line"));
    let spins: Vec<u64> = by_line
        .nodes
        .values()
        .filter(|n| n.0.starts_with("main.spin "))
        .map(|n| n.2)
        .collect();
    assert_eq!(spins.len(), 2, "{:?}", by_line.nodes);
    assert_eq!(spins.iter().sum::<u64>(), f.spin);

    // max-nodes keeps the heaviest frames; paths through dropped ones become dotted edges.
    let small_text = f.get("/render", CPU, "&format=dot&max-nodes=2");
    graphviz_lays_out(&small_text, "main.work");
    let small = parse_dot(&small_text);
    assert_eq!(small.nodes.len(), 2, "{:?}", small.nodes);
    // The two kept are the heaviest functions by total, with go tool pprof's totals.
    let lightest_kept = small.nodes.values().map(|n| n.2).min().unwrap();
    for (name, _, total) in small.nodes.values() {
        assert_eq!(Some(total), f.cum.get(name), "{name}: {:?}", f.cum);
    }
    let kept: Vec<&String> = small.nodes.values().map(|n| &n.0).collect();
    assert!(
        f.cum
            .iter()
            .filter(|(name, _)| !kept.contains(name))
            .all(|(_, &c)| c <= lightest_kept),
        "{kept:?} {:?}",
        f.cum
    );
    assert!(
        !small.legend.contains("Dropped 0 nodes"),
        "{}",
        small.legend
    );
    let between: Vec<_> = small.edges.iter().filter(|e| e.0 != e.1).collect();
    assert!(
        between.iter().all(|e| e.2 > 0 && e.2 <= lightest_kept),
        "{between:?}"
    );
}

/// Runs `e2e/pyroscope-flamegraph.mjs`: the published `@pyroscope/models` schema on a
/// `/render` answer, then the published `@pyroscope/flamegraph` component drawing it in
/// Chromium, hovered on `function`; returns what it reported.
fn pyroscope_flamegraph(render_url: &str, function: &str, shot: &str) -> Value {
    let dir = repo().join("test-artifacts/render");
    std::fs::create_dir_all(&dir).unwrap();
    let out = run(
        Command::new("node")
            .arg(repo().join("e2e/pyroscope-flamegraph.mjs"))
            .arg(render_url)
            .arg(function)
            .arg(dir.join(shot)),
        "node e2e/pyroscope-flamegraph.mjs",
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["schema"], "valid", "{r}");
    assert_eq!(
        r["errors"],
        serde_json::json!([]),
        "errors in the page: {r}"
    );
    assert_eq!(r["tooltip"]["title"], function, "{r}");
    r
}

#[test]
fn pyroscope_flamegraph_component_reads_seconds_bytes_and_counts_right() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let t = now() / 10 * 10 - 60;
    for (name, rate, body) in [
        // 100 Hz samples: foo 0.75 s of 1 s.
        ("known.cpu", "&sampleRate=100", "main;foo 75\nmain;bar 25\n"),
        (
            "known.alloc_space",
            "",
            "main;grow 3145728\nmain;keep 1048576\n",
        ),
        ("known.goroutines", "", "main;wait 30\nmain;serve 10\n"),
    ] {
        let (status, text) = post(
            &server.url(&format!(
                "/ingest?name={name}&from={t}&until={}&format=folded{rate}",
                t + 10
            )),
            "text/plain",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
    }
    let url = |q: &str| {
        server.url(&format!(
            "/render?query={}&from={}&until={}",
            enc(q),
            t - 60,
            now() + 60
        ))
    };
    let r = pyroscope_flamegraph(&url("known.cpu"), "foo", "cpu.png");
    assert_eq!(r["parsedUnits"], "samples");
    let tip = r["tooltip"]["table"].as_str().unwrap();
    assert!(tip.contains("Share of CPU:\t75%"), "{tip}");
    assert!(tip.contains("CPU Time:\t0.75 seconds"), "{tip}");

    let r = pyroscope_flamegraph(&url("known.alloc_space"), "grow", "bytes.png");
    assert_eq!(r["parsedUnits"], "bytes");
    let tip = r["tooltip"]["table"].as_str().unwrap();
    assert!(tip.contains("% of RAM:\t75%"), "{tip}");
    assert!(tip.contains("RAM:\t3.00 MB"), "{tip}");

    let r = pyroscope_flamegraph(&url("known.goroutines"), "wait", "goroutines.png");
    assert_eq!(r["parsedUnits"], "objects");
    let tip = r["tooltip"]["table"].as_str().unwrap();
    assert!(tip.contains("Objects in RAM:\t30.00"), "{tip}");
    assert!(tip.contains(":\t75%"), "{tip}");
}
