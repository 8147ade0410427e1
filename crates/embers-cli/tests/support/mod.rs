//! A real `embers server` for tests: started on a free port (read back from its log),
//! stopped or killed on demand, always killed in `Drop`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ServerHandle {
    child: Child,
    pub address: String,
    pub log: Arc<Mutex<String>>,
}

impl ServerHandle {
    /// Starts a server on `data_dir`, waiting until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerHandle {
        ServerHandle::start_at("127.0.0.1:0", data_dir, extra)
    }

    /// Starts a server listening on `listen` (to come back on the same port).
    pub fn start_at(listen: &str, data_dir: &Path, extra: &[&str]) -> ServerHandle {
        let mut child = Command::new(env!("CARGO_BIN_EXE_embers"))
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => ServerHandle {
                child,
                address,
                log,
            },
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "server exited with {status}:\n{}",
            self.log.lock().unwrap()
        );
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// GET, returning status and body.
pub fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// POST with a content type, returning status and body.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("content-type", content_type)
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// POST that may fail at the transport level: the status and body, or the I/O error kind.
pub fn try_post(
    url: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String), std::io::ErrorKind> {
    match agent()
        .post(url)
        .header("content-type", content_type)
        .send(body)
    {
        Ok(mut r) => Ok((r.status().as_u16(), r.body_mut().read_to_string().unwrap())),
        Err(ureq::Error::Io(e)) => Err(e.kind()),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Folded stacks (`a;b;c value`) of a query from `from` until an hour from now.
pub fn collapsed(
    server: &ServerHandle,
    query: &str,
    from: &str,
) -> std::collections::BTreeMap<String, u64> {
    let until = now() + 3600;
    let url = server.url(&format!(
        "/render?query={}&from={from}&until={until}&format=collapsed",
        enc(query)
    ));
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{body}");
    parse_collapsed(&body)
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl ServerHandle {
    /// SIGTERM without waiting: the server starts its graceful stop.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// The server's process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A KiB field of /proc/PID/status (`VmRSS`, `VmHWM`, …); `None` if the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// POSTs a `text/plain` body; returns the status, `Retry-After` (if any) and the body.
pub fn post_text(url: &str, body: &[u8]) -> (u16, Option<String>, String) {
    answer(
        agent()
            .post(url)
            .header("content-type", "text/plain")
            .send(body)
            .unwrap(),
    )
}

/// A Connect unary call in JSON to `path`: the status and the parsed body.
pub fn connect_json(
    server: &ServerHandle,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, text) = post(
        &server.url(path),
        "application/json",
        body.to_string().as_bytes(),
    );
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({status}): {e}: {text}"));
    (status, value)
}

/// Calls a Connect `QuerierService` method with a JSON body, expecting 200.
pub fn querier(server: &ServerHandle, method: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, value) = connect_json(
        server,
        &format!("/querier.v1.QuerierService/{method}"),
        &body,
    );
    assert_eq!(status, 200, "{method}: {value}");
    value
}

/// `go ARGS` in `dir` (Debian's golang, GOPATH mode), with its caches under `dir`: for the
/// tests that build `tests/go_lines/main.go` and read profiles with `go tool pprof`.
pub fn go_in(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("go");
    c.args(args)
        .current_dir(dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off");
    c
}

/// Runs a command that must succeed; its stdout and stderr.
pub fn run_both(cmd: &mut Command, what: &str) -> (String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (scripts/install-test-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; its stdout.
pub fn run(cmd: &mut Command, what: &str) -> String {
    run_both(cmd, what).0
}

/// Builds `tests/go_lines/main.go` in `dir` and runs it: the CPU profile it writes (Go's
/// runtime/pprof, 100 Hz) at `dir/file`.
pub fn go_lines_profile(dir: &Path, file: &str) -> PathBuf {
    let source = repo().join("crates/embers-cli/tests/go_lines/main.go");
    run(
        go_in(dir, &["build", "-o", "lines"]).arg(&source),
        "go build (golang-go)",
    );
    let profile = dir.join(file);
    run(
        Command::new(dir.join("lines")).arg(&profile),
        "the Go program",
    );
    profile
}

/// What `go tool pprof -top` reads in a CPU profile, in nanoseconds.
#[derive(Debug)]
pub struct GoTop {
    /// The profile's CPU total.
    pub total: u64,
    /// Each function's cumulative CPU.
    pub cum: std::collections::BTreeMap<String, u64>,
    /// Each function's own CPU.
    pub flat: std::collections::BTreeMap<String, u64>,
}

/// Reads `profile` with `go tool pprof -top` (every node, nanoseconds).
pub fn go_top(dir: &Path, profile: &Path) -> GoTop {
    let top = run(
        go_in(
            dir,
            &["tool", "pprof", "-top", "-unit=ns", "-nodefraction=0"],
        )
        .arg(profile),
        "go tool pprof",
    );
    // "Showing nodes accounting for 470000000ns, 100% of 470000000ns total"
    let total = top
        .lines()
        .find_map(|l| {
            let rest = l.split(" of ").nth(1)?;
            rest.strip_suffix("ns total")?.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no total in pprof -top:\n{top}"));
    assert!(total > 0, "{top}");
    // "         0     0%   100% 470000000ns   100%  main.spin"
    let ns = |v: &str| -> Option<u64> {
        match v {
            "0" => Some(0),
            v => v.strip_suffix("ns")?.parse().ok(),
        }
    };
    let (mut cum, mut flat) = (
        std::collections::BTreeMap::new(),
        std::collections::BTreeMap::new(),
    );
    for l in top.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(fl), Some(c), Some(name)) = (
            f.first().and_then(|v| ns(v)),
            f.get(3).and_then(|v| ns(v)),
            f.get(5),
        ) {
            cum.insert(name.to_string(), c);
            flat.insert(name.to_string(), fl);
        }
    }
    GoTop { total, cum, flat }
}

/// A Connect unary call in protobuf as connect-go sends it (the request gzipped when
/// `gzip`), answered 200 in `application/proto`: the decoded reply.
pub fn connect_proto<R: prost::Message + Default>(
    server: &ServerHandle,
    path: &str,
    request: &impl prost::Message,
    gzip: bool,
) -> R {
    use std::io::{Read, Write};
    let mut body = request.encode_to_vec();
    let mut req = agent()
        .post(server.url(path))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1");
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        body = gz.finish().unwrap();
        req = req
            .header("content-encoding", "gzip")
            .header("accept-encoding", "gzip");
    }
    let mut response = req.send(&body[..]).unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut bytes = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(headers.get("content-type").unwrap(), "application/proto");
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        bytes = out;
    }
    R::decode(&bytes[..]).unwrap()
}

/// A flamebearer's `levels` (the object holding `names` and `levels`) as integer rows.
pub fn levels(flamebearer: &serde_json::Value) -> Vec<Vec<u64>> {
    flamebearer["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        })
        .collect()
}

/// A response's status, `Retry-After` (if any) and body.
pub fn answer(mut r: ureq::http::Response<ureq::Body>) -> (u16, Option<String>, String) {
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        r.status().as_u16(),
        retry,
        r.body_mut().read_to_string().unwrap(),
    )
}

/// Folded stacks (`main;TAG_i 1` lines) of about `bytes` bytes, distinct per `tag`.
pub fn folded_body(tag: &str, bytes: usize) -> String {
    let mut body = String::new();
    let mut i = 0;
    while body.len() < bytes {
        body.push_str(&format!("main;{tag}_{i} 1\n"));
        i += 1;
    }
    body
}

/// `a;b;c value` lines (a `format=collapsed` answer) as a map.
pub fn parse_collapsed(body: &str) -> std::collections::BTreeMap<String, u64> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            (stack.to_owned(), v.parse().unwrap())
        })
        .collect()
}
