//! Helpers for the benchmarks that time real processes (profiler overhead): CPU time of
//! reaped children, peak RSS of a live one, the release `embers` binary and the py-spy CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the release `embers` binary (the benchmark times what users run) and returns its path.
pub fn release_embers() -> PathBuf {
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
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("release/embers")
}

/// CPU seconds (user + system) of all waited-for children so far (/proc/self/stat fields
/// cutime and cstime, in clock ticks of 1/100 s on Linux). Take the difference around one
/// `wait` to get that child's CPU.
pub fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3, so cutime (16) and cstime (17) sit at 13 and 14.
    let ticks: f64 =
        fields[13].parse::<f64>().unwrap_or(0.0) + fields[14].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// The median (upper median for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The real py-spy binary (pyenv installs a shell shim; time the binary, not bash).
pub fn real_pyspy() -> Option<PathBuf> {
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

/// Watches a process's peak resident set (`VmHWM` in /proc/PID/status) until it exits or
/// the watch is stopped; the kernel keeps the peak, so polling only has to catch the last
/// value before exit.
#[derive(Debug)]
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak_kb = 0;
            while !flag.load(Ordering::Relaxed) {
                match vm_hwm_kb(pid) {
                    Some(kb) => peak_kb = peak_kb.max(kb),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak_kb
        });
        PeakRss { stop, thread }
    }

    /// Stops watching; the peak in KiB seen so far.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// `VmHWM` of a live process in KiB; `None` once it is gone (or a zombie without memory).
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM")
}

/// A KiB field of /proc/PID/status (`VmRSS`, `VmHWM`, …); `None` if the process is gone.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A real `embers server` on a free port with its own data directory, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Server {
    /// Starts `embers server` on `data_dir` and waits until it logs its listening address.
    pub fn start(embers: &Path, data_dir: &Path) -> Server {
        Server::start_with(embers, data_dir, &[])
    }

    /// [`Server::start`] with extra flags.
    pub fn start_with(embers: &Path, data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(embers)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("embers server starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let address = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("address=")
                    .nth(1)
                    .map(|a| a.split_whitespace().next().unwrap_or("").to_owned())
            })
            .expect("the server logs its address");
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            url: format!("http://{address}"),
        }
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// foo/bar cycles per run: `EMBERS_BENCH_CYCLES` or the benchmark's default.
pub fn cycles_from_env(default: u32) -> u32 {
    std::env::var("EMBERS_BENCH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// One run of `bench/workloads/fixed_work.py`: started and waiting for a profiler to
/// attach (`pid`), timed by the program itself.
#[derive(Debug)]
pub struct FixedWork {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    /// The target's pid, for `--pid`.
    pub pid: String,
}

impl FixedWork {
    /// Starts the workload: `cycles` foo/bar cycles over `threads` threads.
    pub fn start(cycles: u32, threads: u32) -> FixedWork {
        let mut child = Command::new("python3")
            .arg(root().join("bench/workloads/fixed_work.py"))
            .args(["--cycles", &cycles.to_string()])
            .args(["--threads", &threads.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("ready line").expect("utf-8");
        let pid = ready
            .strip_prefix("ready ")
            .expect("ready <pid>")
            .to_owned();
        FixedWork { child, lines, pid }
    }

    /// Waits for the work to end and reaps the target: the work's seconds. Reaping first
    /// means what [`children_cpu`] gains next belongs to the profiler alone.
    pub fn finish(mut self) -> f64 {
        let elapsed = self
            .lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("elapsed ")
                    .map(|s| s.parse::<f64>().expect("seconds"))
            })
            .expect("elapsed line");
        self.child.wait().expect("target ends");
        elapsed
    }
}

/// Waits for a profiler that ends with its target; its CPU seconds (call after
/// [`FixedWork::finish`]).
pub fn reap_profiler(profiler: &mut Child) -> f64 {
    let before = children_cpu();
    let status = profiler.wait().expect("profiler ends with its target");
    assert!(status.success(), "the profiler exited with {status}");
    children_cpu() - before
}
