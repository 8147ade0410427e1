//! `embers record` overhead (issue "Foundation", Measure): the target's slowdown at 100 Hz
//! against the same work unprofiled, and embers' CPU time against `py-spy record` on the
//! same target, in the same run, rounds interleaved.
//!
//! Needs the py-spy CLI (`pip install py-spy==0.4.3`, the version embers links).
//! Run: `cargo bench -p embers-bench --bench record_overhead`

use std::path::Path;
use std::process::{Command, Stdio};

use embers_bench::process::{
    cycles_from_env, median, real_pyspy, reap_profiler, release_embers, FixedWork,
};

const ROUNDS: usize = 5;

/// foo/bar cycles per run: 4,500 take about 10 s here, long enough that the profilers'
/// CPU (a few hundred ms, counted in 10 ms ticks) is measured to about ±3 %.
const CYCLES: u32 = 4500;

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
    let target = FixedWork::start(cycles_from_env(CYCLES), 1);
    let pid = target.pid.clone();
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
    let elapsed = target.finish();
    let profiler_cpu = prof.as_mut().map_or(0.0, reap_profiler);

    Run {
        target_seconds: elapsed,
        profiler_cpu,
    }
}

fn main() {
    let embers = release_embers();
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
