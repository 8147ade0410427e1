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
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            (stack.to_owned(), v.parse().unwrap())
        })
        .collect()
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
    let mut r = agent()
        .post(url)
        .header("content-type", "text/plain")
        .send(body)
        .unwrap();
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

/// Calls a Connect `QuerierService` method with a JSON body, expecting 200.
pub fn querier(server: &ServerHandle, method: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, text) = post(
        &server.url(&format!("/querier.v1.QuerierService/{method}")),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{method}: {text}");
    serde_json::from_str(&text).unwrap()
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
