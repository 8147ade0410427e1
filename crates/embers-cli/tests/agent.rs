//! `embers agent` against a real `embers server` and real Python targets: shares and tags
//! of pushed windows, a server outage with nothing lost or doubled, the target's exit,
//! and forked workers. The targets burn CPU: one test at a time.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{collapsed, get, repo, ServerHandle};

static BUSY: Mutex<()> = Mutex::new(());

fn busy() -> std::sync::MutexGuard<'static, ()> {
    BUSY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a Python script and waits for its `ready <pid>` line.
fn python(script: &std::path::Path, args: &[&str]) -> Proc {
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "{line:?}");
    Proc(child)
}

/// A running agent and its log.
struct Agent {
    proc: Proc,
    log: Arc<Mutex<String>>,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_embers"))
            .arg("agent")
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Agent {
            proc: Proc(child),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) for the agent to exit by itself.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.proc.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.wait(Duration::from_secs(30))
    }

    /// The sample count of the "agent stopped" line.
    fn samples(&self) -> u64 {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("agent stopped"))
            .unwrap_or_else(|| panic!("no summary in:\n{log}"));
        line.split("samples=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn foobar() -> std::path::PathBuf {
    repo().join("examples/foobar/foobar.py")
}

/// Waits until `check` holds, polling, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The queue length of the last status line in an agent's log.
fn queued(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            l.split("queue=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn total(server: &ServerHandle, query: &str) -> u64 {
    collapsed(server, query, "now-1h").values().sum()
}

/// One sample is one sampling period of CPU: 10 ms at 100 Hz, in nanoseconds.
const SAMPLE_NS: u64 = 10_000_000;

#[test]
fn seed_000_shares_and_region_tag_arrive_and_the_agent_exits_with_its_target() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let mut target = python(&foobar(), &["--seconds", "30"]);
    let pid = target.0.id().to_string();
    let mut agent = Agent::start(&[
        "--server",
        &server.url(""),
        "--app",
        "foobar",
        "--tag",
        "region=us-east-1",
        "--pid",
        &pid,
    ]);
    target.0.wait().unwrap();
    // The agent ends by itself once its only target is gone (the limit only guards
    // against a hang), having noticed the exit, then sent the last window.
    let status = agent.wait(Duration::from_secs(60));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    let log = agent.log();
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"))
    };
    assert!(at("target exited") < at("agent stopped"), "{log}");
    assert!(!log.contains("lost"), "{log}");

    let stacks = collapsed(&server, r#"foobar.cpu{region="us-east-1"}"#, "now-1h");
    let all: u64 = stacks.values().sum();
    let under = |name: &str| -> u64 {
        stacks
            .iter()
            // Stacks are grouped by function: frames are bare function names.
            .filter(|(s, _)| s.split(';').any(|f| f == name))
            .map(|(_, v)| v)
            .sum()
    };
    let foo = under("foo") as f64 / all as f64;
    eprintln!("foo {:.1} % of {} samples", foo * 100.0, all / SAMPLE_NS);
    // ~3,000 samples: a share's standard error is 0.8 points; ±3 is a 3.8σ check.
    assert!((foo - 0.75).abs() <= 0.03, "foo {:.1} %", foo * 100.0);
    assert_eq!(
        all,
        agent.samples() * SAMPLE_NS,
        "every sample arrives once"
    );
    assert_eq!(total(&server, r#"foobar.cpu{region="eu-west-1"}"#), 0);
    // The Grafana form finds the same data.
    assert_eq!(
        total(
            &server,
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="foobar"}"#
        ),
        all
    );
}

#[test]
fn windows_from_a_server_outage_arrive_once_after_restart() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = ServerHandle::start_at(&listen, dir.path(), &[]);
    let target = python(&foobar(), &[]);
    let pid = target.0.id().to_string();
    let mut agent = Agent::start(&[
        "--server",
        &server.url(""),
        "--app",
        "outage",
        "--pid",
        &pid,
        "--upload-interval",
        "2",
        "--log-every",
        "1",
    ]);
    wait_until(Duration::from_secs(30), "the first windows", || {
        total(&server, "outage.cpu") > 0
    });
    server.kill();
    let down = support::now();
    // The outage lasts until the agent has queued windows cut while the server was
    // down: it noticed, and kept them (a status line each second says how many).
    wait_until(
        Duration::from_secs(90),
        "windows queued during the outage",
        || {
            let log = agent.log();
            log.contains("cannot push") && queued(&log) >= 6
        },
    );
    let server = ServerHandle::start_at(&listen, dir.path(), &[]);
    let up = support::now();
    wait_until(Duration::from_secs(60), "the agent to reconnect", || {
        agent.log().contains("server reachable again")
    });
    let status = agent.terminate();
    assert!(status.success(), "agent failed:\n{}", agent.log());
    drop(target);
    // Windows cut during the outage are there now...
    let url = server.url(&format!(
        "/render?query=outage.cpu&from={}&until={}&format=collapsed",
        down + 2,
        up - 2
    ));
    let (code, body) = get(&url);
    assert_eq!(code, 200);
    let during: u64 = body
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(during > 10 * SAMPLE_NS, "outage windows missing: {body:?}");
    // ...and every sample is stored exactly once (retries of a window a dying server
    // may already have stored are deduplicated by the window's ID).
    assert_eq!(
        total(&server, "outage.cpu"),
        agent.samples() * SAMPLE_NS,
        "{}",
        agent.log()
    );
}

#[test]
fn forked_workers_are_each_tagged_with_their_pid() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let script = dir.path().join("pool.py");
    std::fs::write(
        &script,
        "import multiprocessing, os, sys, time\n\
         def spin(_):\n    end = time.time() + 60\n    while time.time() < end:\n        sum(range(1000))\n\
         if __name__ == '__main__':\n    multiprocessing.set_start_method('fork')\n\
         \x20   with multiprocessing.Pool(2) as pool:\n\
         \x20       result = pool.map_async(spin, range(2))\n\
         \x20       print('ready', os.getpid(), flush=True)\n\
         \x20       result.wait()\n",
    )
    .unwrap();
    let target = python(&script, &[]);
    let pid = target.0.id().to_string();
    let mut agent = Agent::start(&[
        "--server",
        &server.url(""),
        "--app",
        "pool",
        "--pid",
        &pid,
        "--subprocesses",
        "--upload-interval",
        "2",
    ]);
    let workers = || -> Vec<String> {
        let (_, body) = get(&server.url("/label-values?label=pid&query=pool.cpu"));
        serde_json::from_str(&body).unwrap_or_default()
    };
    wait_until(Duration::from_secs(40), "both workers' samples", || {
        workers().iter().filter(|p| **p != pid).count() >= 2
    });
    let status = agent.terminate();
    assert!(status.success(), "agent failed:\n{}", agent.log());
    for worker in workers().iter().filter(|p| **p != pid) {
        let stacks = collapsed(&server, &format!(r#"pool.cpu{{pid="{worker}"}}"#), "now-1h");
        assert!(
            stacks.keys().any(|s| s.split(';').any(|f| f == "spin")),
            "worker {worker}: {stacks:?}"
        );
    }
}
