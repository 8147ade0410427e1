//! `embers demo` headless: the rideshare example against the embedded server, checked
//! through the query API (seed 003's story: three regions, car > scooter > bike, and
//! us-west-1's mutex_lock heavier in its high phases than in its low ones).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{enc, get, now};

const PHASE: u64 = 30;

struct Demo(Child);

impl Demo {
    /// SIGTERM, as a user's Ctrl-C would: the demo stops what it started and exits 0.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "embers demo exited with {status}");
    }
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Folded stacks of a query over `[from, until)`, by line (frames with their files).
fn stacks(base: &str, query: &str, from: u64, until: u64) -> BTreeMap<String, f64> {
    let (status, body) = get(&format!(
        "{base}/render?query={}&from={from}&until={until}&format=collapsed&aggregation=line",
        enc(query)
    ));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(s, v)| (s.to_owned(), v.parse().unwrap()))
        .collect()
}

fn labels(base: &str, label: &str) -> Vec<String> {
    let (status, body) = get(&format!(
        "{base}/label-values?label={label}&query={}",
        enc("ride-sharing-app.cpu")
    ));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn demo_shows_regions_vehicles_and_the_slow_region() {
    let started = now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "150"])
        .args(["--phase-seconds", &PHASE.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let mut lines = BufReader::new(stdout).lines();
    let services: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("services ").map(str::to_owned))
        .expect("the demo prints its services")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let ui = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("ui ").map(str::to_owned))
        .expect("the demo prints its UI address");
    std::thread::spawn(move || lines.for_each(drop));
    let base = ui.split("/?").next().unwrap().to_owned();
    assert!(
        get(&ui).1.contains("<title>Embers</title>"),
        "the UI is served"
    );

    // 40 s of the demo, then the three regions and the three vehicles.
    let deadline = Instant::now() + Duration::from_secs(140);
    while now() < started + 40 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut regions = labels(&base, "region");
    while regions.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        regions = labels(&base, "region");
    }
    assert_eq!(regions, ["eu-west-1", "us-east-1", "us-west-1"]);
    assert_eq!(labels(&base, "vehicle"), ["bike", "car", "scooter"]);
    let cpu = |vehicle: &str| -> f64 {
        let q = format!("ride-sharing-app.cpu{{vehicle=\"{vehicle}\"}}");
        stacks(&base, &q, started - 60, now() + 60).values().sum()
    };
    let (bike, scooter, car) = (cpu("bike"), cpu("scooter"), cpu("car"));
    eprintln!(
        "CPU seconds: bike {:.1}, scooter {:.1}, car {:.1}",
        bike / 1e9,
        scooter / 1e9,
        car / 1e9
    );
    // Radius 1 : 2 : 4, and a car order also checks driver availability.
    assert!(scooter > 1.5 * bike, "scooter {scooter} bike {bike}");
    assert!(car > 1.5 * scooter, "car {car} scooter {scooter}");

    // us-west-1's mutex_lock, in 10 s leaves that hold only one phase. A client window
    // starts anywhere in its leaf, so leaf t holds time from [t, t + 20): with 30 s phases
    // the leaves at 0 and 10 s into a phase are pure. Wait until both kinds have arrived.
    let share = |t: u64| -> Option<f64> {
        let s = stacks(
            &base,
            "ride-sharing-app.cpu{region=\"us-west-1\"}",
            t,
            t + 10,
        );
        let total: f64 = s.values().sum();
        let mutex: f64 = s
            .iter()
            .filter(|(k, _)| k.contains("mutex_lock"))
            .map(|(_, v)| v)
            .sum();
        (total > 0.0).then(|| mutex / total)
    };
    let (mut high, mut low) = (Vec::new(), Vec::new());
    let mut next = started.div_ceil(10) * 10;
    while (high.is_empty() || low.is_empty()) && Instant::now() < deadline {
        // A leaf is complete once its last window (starting before t + 10) was pushed.
        while now() < next + 25 {
            std::thread::sleep(Duration::from_millis(500));
        }
        if next % PHASE < 20 {
            if let Some(s) = share(next) {
                if (next / PHASE) % 2 == 0 {
                    high.push(s)
                } else {
                    low.push(s)
                }
            }
        }
        next += 10;
    }
    eprintln!("mutex_lock share in us-west-1: high phases {high:.2?}, low phases {low:.2?}");
    assert!(
        !high.is_empty() && !low.is_empty(),
        "no pure leaves of both phases"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&high) > mean(&low) + 0.15, "high {high:?} low {low:?}");

    // Screenshots of every view over this data, for the README (docs/images/ holds the
    // committed copies).
    let shots = support::repo().join("test-artifacts/ui-demo");
    let out = Command::new("node")
        .arg(support::repo().join("e2e/screenshots.mjs"))
        .arg(&base)
        .arg(started.to_string())
        .arg((now() + 5).to_string())
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopped, the demo leaves nothing running: no service pushing to `base`, no load
    // generator driving the services.
    demo.stop();
    let left = || -> Vec<String> {
        let mut all = processes_with(&base);
        all.extend(services.iter().flat_map(|s| processes_with(s)));
        all
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(left(), Vec::<String>::new(), "left running");
}

/// The Ruby flavour of one region, profiled from outside by `embers agent` (rbspy).
#[test]
fn ruby_rideshare_profiled_by_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::ServerHandle::start(dir.path(), &[]);
    let rideshare = support::repo().join("examples/rideshare");
    let mut ruby = Command::new("ruby")
        .arg(rideshare.join("server.rb"))
        .args(["--region", "eu-west-1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ruby runs (scripts/install-test-deps.sh installs it)");
    let mut lines = BufReader::new(ruby.stdout.take().unwrap()).lines();
    let port = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("listening ")
        .unwrap()
        .to_owned();
    let ruby = Demo(ruby);
    let load = Demo(
        Command::new("python3")
            .arg(rideshare.join("load.py"))
            .args(["--interval", "0"]) // back to back: 20 s of CPU sooner
            .arg(format!("http://127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent = Demo(
        Command::new(env!("CARGO_BIN_EXE_embers"))
            .args([
                "agent",
                "--server",
                &server.url(""),
                "--app",
                "ride-sharing-app",
            ])
            .args([
                "--tag",
                "region=eu-west-1",
                "--pid",
                &ruby.0.id().to_string(),
            ])
            .spawn()
            .unwrap(),
    );
    // Until 20 s of the service's CPU have arrived (two or three windows).
    let from = now() - 60;
    let deadline = Instant::now() + Duration::from_secs(120);
    let query = "ride-sharing-app.cpu{region=\"eu-west-1\"}";
    let mut s = stacks(&server.url(""), query, from, now() + 60);
    while s.values().sum::<f64>() < 20e9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        s = stacks(&server.url(""), query, from, now() + 60);
    }
    let cpu = |f: &str| -> f64 {
        s.iter()
            .filter(|(k, _)| k.contains(f))
            .map(|(_, v)| v)
            .sum()
    };
    let (bike, scooter, car) = (cpu("order_bike"), cpu("order_scooter"), cpu("order_car"));
    eprintln!(
        "Ruby, CPU seconds: bike {:.1}, scooter {:.1}, car {:.1}",
        bike / 1e9,
        scooter / 1e9,
        car / 1e9
    );
    assert!(
        bike > 0.0 && scooter > 1.5 * bike && car > 1.5 * scooter,
        "{s:?}"
    );
    assert!(
        s.keys().any(|k| k.contains("server.rb")),
        "Ruby frames carry their file: {s:?}"
    );
    drop((agent, load, ruby));
}
