//! `embers record` overhead (issue "Foundation", Measure): the target's slowdown at 100 Hz
//! against the same work unprofiled, and embers' CPU time against `py-spy record` on the
//! same target, in the same run, rounds interleaved.
//!
//! Needs the py-spy CLI (`pip install py-spy==0.4.3`, the version embers links).
//! Run: `cargo bench -p embers-bench --bench record_overhead`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROUNDS: usize = 5;

/// foo/bar cycles per run: 4,500 take about 10 s here, long enough that the profilers'
/// CPU (a few hundred ms, counted in 10 ms ticks) is measured to about ±3 %.
fn cycles() -> u32 {
    std::env::var("EMBERS_BENCH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4500)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// CPU seconds (user + system) of all waited-for children so far (/proc/self/stat fields
/// cutime and cstime, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3, so cutime (16) and cstime (17) sit at 13 and 14.
    let ticks: f64 =
        fields[13].parse::<f64>().unwrap_or(0.0) + fields[14].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Profiler {
    None,
    Embers,
    PySpy,
}

struct Run {
    target_seconds: f64,
    profiler_cpu: f64,
}

fn run(profiler: Profiler, embers: &Path, pyspy: &Path, out_dir: &Path) -> Run {
    let script = root().join("bench/workloads/fixed_work.py");
    let mut target = Command::new("python3")
        .arg(&script)
        .args(["--cycles", &cycles().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(target.stdout.take().expect("stdout")).lines();
    let ready = lines.next().expect("ready line").expect("utf-8");
    let pid = ready
        .strip_prefix("ready ")
        .expect("ready <pid>")
        .to_owned();
    let mut prof = match profiler {
        Profiler::None => None,
        Profiler::Embers => Some(
            Command::new(embers)
                .args(["record", "--pid", &pid, "--rate", "100", "-o"])
                .arg(out_dir.join("embers.folded"))
                .stderr(Stdio::null())
                .spawn()
                .expect("embers runs"),
        ),
        Profiler::PySpy => Some(
            Command::new(pyspy)
                .args([
                    "record", "--pid", &pid, "--rate", "100", "--format", "raw", "--output",
                ])
                .arg(out_dir.join("pyspy.txt"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("py-spy runs"),
        ),
    };
    let elapsed = lines
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("elapsed ")
                .map(|s| s.parse::<f64>().expect("seconds"))
        })
        .expect("elapsed line");
    target.wait().expect("target ends");
    // Reap the target first: the counter then holds its CPU, and what it gains next is the
    // profiler's alone.
    let after_target = children_cpu();
    if let Some(p) = prof.as_mut() {
        p.wait().expect("profiler ends with its target");
    }
    let profiler_cpu = children_cpu() - after_target;

    Run {
        target_seconds: elapsed,
        profiler_cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn real_pyspy() -> Option<PathBuf> {
    // pyenv installs a shell shim; time the real binary, not bash.
    let out = Command::new("pyenv")
        .args(["which", "py-spy"])
        .output()
        .ok();
    let from_pyenv = out
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let path = from_pyenv.or_else(|| {
        let o = Command::new("sh")
            .args(["-c", "command -v py-spy"])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    })?;
    Some(PathBuf::from(path))
}

fn main() {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "embers-cli",
            "--bin",
            "embers",
        ])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the release embers binary failed"
    );
    let embers = root().join("target/release/embers");
    let Some(pyspy) = real_pyspy() else {
        eprintln!("py-spy is not installed: pip install py-spy==0.4.3");
        std::process::exit(1);
    };
    let dir = std::env::temp_dir().join(format!("embers-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut results: Vec<(Profiler, Vec<Run>)> = vec![
        (Profiler::None, vec![]),
        (Profiler::Embers, vec![]),
        (Profiler::PySpy, vec![]),
    ];
    for round in 0..ROUNDS {
        for (profiler, runs) in &mut results {
            runs.push(run(*profiler, &embers, &pyspy, &dir));
            let r = runs.last().expect("a run");
            eprintln!(
                "round {round} {profiler:?}: target {:.3}s, profiler cpu {:.2}s",
                r.target_seconds, r.profiler_cpu
            );
        }
    }
    let summary = |p: Profiler| {
        let runs = &results.iter().find(|(q, _)| *q == p).expect("profiler").1;
        (
            median(runs.iter().map(|r| r.target_seconds).collect()),
            median(runs.iter().map(|r| r.profiler_cpu).collect()),
        )
    };
    let (base, _) = summary(Profiler::None);
    let (with_embers, embers_cpu) = summary(Profiler::Embers);
    let (with_pyspy, pyspy_cpu) = summary(Profiler::PySpy);
    println!("target work unprofiled: {base:.3}s (median of {ROUNDS})");
    println!(
        "under embers record: {with_embers:.3}s, slowdown {:+.2}%; embers CPU {embers_cpu:.2}s",
        (with_embers / base - 1.0) * 100.0
    );
    println!(
        "under py-spy record: {with_pyspy:.3}s, slowdown {:+.2}%; py-spy CPU {pyspy_cpu:.2}s",
        (with_pyspy / base - 1.0) * 100.0
    );
    println!("embers CPU / py-spy CPU: {:.2}", embers_cpu / pyspy_cpu);
    let _ = std::fs::remove_dir_all(&dir);
}
