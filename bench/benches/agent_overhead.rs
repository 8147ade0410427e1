//! `embers agent` overhead (issue "Agent", Measure): a 20-thread Python target's slowdown at
//! 100 Hz against the same work unprofiled, the agent's CPU against `py-spy record` on the
//! same target in the same run, and the agent's peak RSS (py-spy's alongside). The agent
//! pushes its 10 s windows to a real `embers server`, so encoding and upload are counted.
//! Both reading strategies are measured, each against py-spy using the same one: the
//! agent's default (non-blocking) and `--lock-process` (the target paused per sample).
//!
//! Needs the py-spy CLI (`pip install py-spy==0.4.3`, the version embers links).
//! Run: `cargo bench -p embers-bench --bench agent_overhead` (`EMBERS_BENCH_ROUNDS=1` for a
//! quick look).

use std::path::Path;
use std::process::{Command, Stdio};

use embers_bench::process::{
    cycles_from_env, median, real_pyspy, reap_profiler, release_embers, FixedWork, PeakRss, Server,
};

/// Rounds per run; `EMBERS_BENCH_ROUNDS` lowers it while iterating (report full runs).
const ROUNDS: usize = 5;
const THREADS: u32 = 20;

/// foo/bar cycles per run, split over the threads: 3,000 take about 10 s here.
const CYCLES: u32 = 3000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Profiler {
    None,
    /// `embers agent` as shipped (non-blocking reads: the target is never paused).
    Agent,
    /// `py-spy record --nonblocking`: the same reading strategy.
    PySpy,
    /// `embers agent --lock-process`: pauses the target for each sample.
    AgentLocking,
    /// `py-spy record` as shipped (pauses the target for each sample).
    PySpyLocking,
}

struct Run {
    target_seconds: f64,
    profiler_cpu: f64,
    profiler_peak_rss_kb: u64,
}

fn run(profiler: Profiler, embers: &Path, pyspy: &Path, server: &Server, out: &Path) -> Run {
    let target = FixedWork::start(cycles_from_env(CYCLES), THREADS);
    let pid = target.pid.clone();
    let mut prof = match profiler {
        Profiler::None => None,
        Profiler::Agent | Profiler::AgentLocking => Some(
            Command::new(embers)
                .args(["agent", "--server", &server.url, "--app", "bench"])
                .args(["--tag", "region=bench", "--pid", &pid, "--rate", "100"])
                .args((profiler == Profiler::AgentLocking).then_some("--lock-process"))
                .stderr(Stdio::null())
                .spawn()
                .expect("embers runs"),
        ),
        Profiler::PySpy | Profiler::PySpyLocking => Some(
            Command::new(pyspy)
                .args([
                    "record", "--pid", &pid, "--rate", "100", "--format", "raw", "--output",
                ])
                .arg(out.join("pyspy.txt"))
                .args((profiler == Profiler::PySpy).then_some("--nonblocking"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("py-spy runs"),
        ),
    };
    let rss = prof.as_ref().map(|p| PeakRss::watch(p.id()));
    let elapsed = target.finish();
    let profiler_cpu = prof.as_mut().map_or(0.0, reap_profiler);
    Run {
        target_seconds: elapsed,
        profiler_cpu,
        profiler_peak_rss_kb: rss.map_or(0, PeakRss::finish),
    }
}

fn main() {
    let embers = release_embers();
    let Some(pyspy) = real_pyspy() else {
        eprintln!("py-spy is not installed: pip install py-spy==0.4.3");
        std::process::exit(1);
    };
    let rounds = std::env::var("EMBERS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&embers, &dir.path().join("data"));

    let mut results: Vec<(Profiler, Vec<Run>)> = vec![
        (Profiler::None, vec![]),
        (Profiler::Agent, vec![]),
        (Profiler::PySpy, vec![]),
        (Profiler::AgentLocking, vec![]),
        (Profiler::PySpyLocking, vec![]),
    ];
    for round in 0..rounds {
        for (profiler, runs) in &mut results {
            let r = run(*profiler, &embers, &pyspy, &server, dir.path());
            eprintln!(
                "round {round} {profiler:?}: target {:.3}s, profiler cpu {:.2}s, peak rss {} KiB",
                r.target_seconds, r.profiler_cpu, r.profiler_peak_rss_kb
            );
            runs.push(r);
        }
    }
    let summary = |p: Profiler| {
        let runs = &results.iter().find(|(q, _)| *q == p).expect("profiler").1;
        (
            median(runs.iter().map(|r| r.target_seconds).collect()),
            median(runs.iter().map(|r| r.profiler_cpu).collect()),
            median(runs.iter().map(|r| r.profiler_peak_rss_kb as f64).collect()) / 1024.0,
        )
    };
    let (base, _, _) = summary(Profiler::None);
    println!("{THREADS}-thread target, work unprofiled: {base:.3}s (median of {rounds})");
    for (agent, pyspy, mode) in [
        (Profiler::Agent, Profiler::PySpy, "non-blocking"),
        (Profiler::AgentLocking, Profiler::PySpyLocking, "locking"),
    ] {
        let (with_agent, agent_cpu, agent_rss) = summary(agent);
        let (with_pyspy, pyspy_cpu, pyspy_rss) = summary(pyspy);
        println!(
            "{mode}: embers agent: {with_agent:.3}s, slowdown {:+.2}%; agent CPU \
             {agent_cpu:.2}s ({:.1}% of a core), peak RSS {agent_rss:.1} MiB",
            (with_agent / base - 1.0) * 100.0,
            agent_cpu / with_agent * 100.0
        );
        println!(
            "{mode}: py-spy record: {with_pyspy:.3}s, slowdown {:+.2}%; py-spy CPU \
             {pyspy_cpu:.2}s, peak RSS {pyspy_rss:.1} MiB",
            (with_pyspy / base - 1.0) * 100.0
        );
        println!(
            "{mode}: agent CPU / py-spy CPU: {:.2}",
            agent_cpu / pyspy_cpu
        );
    }
}
