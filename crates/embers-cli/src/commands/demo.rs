//! `embers demo`: seed 003's rideshare example in one command: an embedded server, three
//! regions of the rideshare service with their load, and the UI's address.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use embers_server::{Server, ServerConfig};

use crate::record::stop_on_signal;

/// The example's programs, carried in the binary so the demo runs from anywhere.
const SERVER_PY: &str = include_str!("../../../../examples/rideshare/server.py");
const LOAD_PY: &str = include_str!("../../../../examples/rideshare/load.py");

const REGIONS: [&str; 3] = ["us-east-1", "us-west-1", "eu-west-1"];
const APP: &str = "ride-sharing-app";

/// Arguments of `embers demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the embedded server and its UI.
    #[arg(long, default_value = "127.0.0.1:4040")]
    pub listen: String,
    /// Keep the demo's data here (default: a temporary directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Seconds per high or low CPU phase of us-west-1's mutex_lock.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub phase_seconds: u64,
    /// Profile the services with `embers agent` (region tags only) even when the
    /// `pyroscope-io` client is installed (which adds the dynamic `vehicle` tag).
    #[arg(long)]
    pub agent: bool,
}

/// Children killed when the demo ends, however it ends.
#[derive(Debug, Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn python_version() -> anyhow::Result<String> {
    let out = Command::new("python3").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        _ => bail!(
            "embers demo runs the rideshare example in Python, and python3 was not found: \
             install it (Debian/Ubuntu: `sudo apt install python3`; macOS: `brew install \
             python`) and run the demo again"
        ),
    }
}

fn has_pyroscope_client() -> bool {
    Command::new("python3")
        .args(["-c", "import pyroscope"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts one region's service and returns it with its port (read from "listening PORT").
fn start_service(
    dir: &Path,
    region: &str,
    pyroscope: Option<&str>,
    phase: u64,
) -> anyhow::Result<(Child, u16)> {
    // Run from the scripts' parent with a relative path: frames then read
    // `rideshare/server.py`, not a temporary directory.
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir.parent().unwrap_or(dir))
        .arg("rideshare/server.py")
        .args(["--region", region, "--phase-seconds", &phase.to_string()])
        // Should the demo be killed outright, its services go with it.
        .arg("--exit-with-parent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(url) = pyroscope {
        cmd.args(["--pyroscope", url]);
    }
    let mut child = cmd.spawn().context("starting the rideshare service")?;
    let stdout = child.stdout.take().context("service stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("listening ").and_then(|p| p.parse().ok()));
    let Some(port) = port else {
        let _ = child.kill();
        bail!("the {region} service did not start (see its error above)");
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, port))
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let python = python_version()?;
    let stop = stop_on_signal()?;
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("data"));
    let scripts = temp.path().join("rideshare");
    std::fs::create_dir_all(&scripts)?;
    std::fs::write(scripts.join("server.py"), SERVER_PY)?;
    std::fs::write(scripts.join("load.py"), LOAD_PY)?;

    let config = ServerConfig {
        listen: args
            .listen
            .parse()
            .with_context(|| format!("--listen {:?} is not an address", args.listen))?,
        data_dir,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let server = runtime.block_on(Server::start(config))?;
    let address = server.address();
    let url = format!("http://{address}");
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run_until(async move {
        let _ = stopped.await;
    }));

    let instrumented = !args.agent && has_pyroscope_client();
    let mut children = Children::default();
    let mut bases = Vec::new();
    for region in REGIONS {
        let (child, port) = start_service(
            &scripts,
            region,
            instrumented.then_some(url.as_str()),
            args.phase_seconds,
        )?;
        let pid = child.id();
        children.0.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
        if !instrumented {
            let exe = std::env::current_exe().context("finding the embers binary")?;
            let agent = Command::new(exe)
                .args(["agent", "--server", &url, "--app", APP])
                .args(["--tag", &format!("region={region}")])
                .args(["--pid", &pid.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .context("starting embers agent")?;
            children.0.push(agent);
        }
    }
    let load = Command::new("python3")
        .current_dir(temp.path())
        .arg("rideshare/load.py")
        .arg("--exit-with-parent")
        .args(&bases)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the load generator")?;
    children.0.push(load);

    println!(
        "Embers demo: seed 003's rideshare app in {} regions ({python})",
        REGIONS.len()
    );
    if instrumented {
        println!(
            "  profiled by the pyroscope-io client: tags region (static) and vehicle (dynamic)"
        );
    } else {
        println!(
            "  profiled by `embers agent --pid`: tag region (pip install pyroscope-io adds \
             the dynamic vehicle tag)"
        );
    }
    println!("services {}", bases.join(" "));
    println!("  the first profiles arrive within 10-20 s; then open:");
    println!("ui {url}/?app={APP}&view=explore&groupBy=region&from=now-5m");
    println!("  Ctrl-C stops everything the demo started.");

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        if let Some((i, status)) = children
            .0
            .iter_mut()
            .enumerate()
            .find_map(|(i, c)| c.try_wait().ok().flatten().map(|s| (i, s)))
        {
            bail!("a demo process (#{i}) exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(children);
    let _ = stop_server.send(());
    runtime.block_on(serving).context("the server task")??;
    println!("Embers demo stopped.");
    Ok(())
}
