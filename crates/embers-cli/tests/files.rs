//! `embers flamegraph`, `convert` and `diff` on real files, through the real binary.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The seed-000 profile as py-spy's `raw` output would give it, in canonical (sorted) order.
const FOOBAR: &str = "\
<module> (/usr/lib/python3.11/site-packages/app/foobar.py:40);bar (/usr/lib/python3.11/site-packages/app/foobar.py:26);work (/usr/lib/python3.11/site-packages/app/foobar.py:17) 250
<module> (/usr/lib/python3.11/site-packages/app/foobar.py:40);foo (/usr/lib/python3.11/site-packages/app/foobar.py:22);work (/usr/lib/python3.11/site-packages/app/foobar.py:17) 750
";

/// The same program after foo was cut to work(8000).
const FOOBAR_AFTER: &str = "\
<module> (/usr/lib/python3.11/site-packages/app/foobar.py:40);foo (/usr/lib/python3.11/site-packages/app/foobar.py:22);work (/usr/lib/python3.11/site-packages/app/foobar.py:17) 80
<module> (/usr/lib/python3.11/site-packages/app/foobar.py:40);bar (/usr/lib/python3.11/site-packages/app/foobar.py:26);work (/usr/lib/python3.11/site-packages/app/foobar.py:17) 250
";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).expect("write fixture");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn embers(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run embers")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "embers failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("output exists")
}

#[test]
fn folded_to_pprof_to_folded_is_identical() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let (pb, back, direct) = (
        dir.path("p.pb.gz"),
        dir.path("back.folded"),
        dir.path("d.folded"),
    );
    ok(&embers(&[
        &"convert",
        &input,
        &"--full-paths",
        &"-o",
        &direct,
    ]));
    ok(&embers(&[&"convert", &input, &"--full-paths", &"-o", &pb]));
    ok(&embers(&[&"convert", &pb, &"--full-paths", &"-o", &back]));
    assert_eq!(read(&back), read(&direct));
    assert_eq!(
        read(&direct),
        FOOBAR,
        "folded output is canonical: sorted, unchanged"
    );
}

#[test]
fn default_rules_strip_site_packages_and_function_drops_lines() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let out = ok(&embers(&[
        &"convert",
        &input,
        &"--function",
        &"--format",
        &"folded",
        &"-o",
        &"-",
    ]));
    assert!(
        out.contains("<module> (app/foobar.py);foo (app/foobar.py);work (app/foobar.py) 750"),
        "{out}"
    );
    let out = ok(&embers(&[
        &"convert",
        &input,
        &"--rewrite",
        &"^app/=",
        &"-o",
        &"-",
        &"--format",
        &"folded",
    ]));
    assert!(out.contains("foo (foobar.py:22)"), "{out}");
}

#[test]
fn flamegraph_writes_an_svg_with_the_functions() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let svg = dir.path("out.svg");
    ok(&embers(&[
        &"flamegraph",
        &input,
        &"-o",
        &svg,
        &"--title",
        &"seed 000",
    ]));
    let text = read(&svg);
    assert!(
        text.starts_with("<?xml") || text.starts_with("<svg"),
        "not an SVG"
    );
    assert!(text.contains("seed 000"));
    assert!(text.contains("foo (app/foobar.py:22)"));
}

#[test]
fn every_writable_format_is_written_from_the_extension() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    for name in [
        "a.svg",
        "a.folded",
        "a.pb.gz",
        "a.speedscope.json",
        "callgrind.out.1",
        "a.trace.json",
    ] {
        let out = dir.path(name);
        ok(&embers(&[&"convert", &input, &"-o", &out]));
        assert!(
            std::fs::metadata(&out).expect(name).len() > 0,
            "{name} is empty"
        );
    }
}

#[test]
fn max_nodes_keeps_the_total_in_other() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let out = ok(&embers(&[
        &"convert",
        &input,
        &"--max-nodes",
        &"2",
        &"-o",
        &"-",
        &"--format",
        &"folded",
    ]));
    let total: u64 = out
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 1000);
    assert!(out.contains(";other "), "{out}");
}

#[test]
fn diff_shows_foo_falling_and_bar_rising() {
    let dir = Dir::new();
    let before = dir.file("before.folded", FOOBAR.as_bytes());
    let after = dir.file("after.folded", FOOBAR_AFTER.as_bytes());
    let svg = dir.path("diff.svg");
    let table = ok(&embers(&[&"diff", &before, &after, &"-o", &svg]));
    let change = |name: &str| -> f64 {
        let row = table
            .lines()
            .find(|l| l.ends_with(&format!("  {name} (app/foobar.py)")));
        let row = row.unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
        let field = row.split_whitespace().nth(2).expect("change column");
        field.trim_end_matches("pp").parse().expect("a number")
    };
    // 75 % → 80/330 = 24.2 %; 25 % → 75.8 %.
    assert!((change("foo") - (-50.76)).abs() < 0.01, "{table}");
    assert!((change("bar") - 50.76).abs() < 0.01, "{table}");
    assert!(read(&svg).contains("foo (app/foobar.py:22)"));
}

#[test]
fn folded_line_without_count_is_a_clear_error() {
    let dir = Dir::new();
    let input = dir.file("bad.folded", b"main;foo 3\nmain;bar\n");
    let out = embers(&[&"convert", &input, &"-o", &dir.path("x.svg")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("no count"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !dir.path("x.svg").exists(),
        "no output is left behind on error"
    );
}

#[test]
fn truncated_pprof_is_a_clear_error() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let pb = dir.path("p.pb");
    ok(&embers(&[&"convert", &input, &"-o", &pb]));
    let bytes = std::fs::read(&pb).expect("pprof written");
    let cut = dir.file("cut.pb.gz", &bytes[..bytes.len() / 2]);
    let out = embers(&[&"convert", &cut, &"-o", &dir.path("x.folded")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pprof"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_output_extension_asks_for_a_format() {
    let dir = Dir::new();
    let input = dir.file("in.folded", FOOBAR.as_bytes());
    let out = embers(&[&"convert", &input, &"-o", &dir.path("x.unknown")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format"));
}
