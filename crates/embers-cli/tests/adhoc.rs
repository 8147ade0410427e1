//! Ad-hoc profiles (`adhocprofiles.v1.AdHocProfileService`) end to end against the real
//! `embers server`: a CPU profile written by a real Go program (Debian's golang, the
//! program of `tests/go_lines/`) and a folded file, uploaded, read back, listed and
//! diffed over Connect in both encodings, with totals checked against `go tool pprof`;
//! limits evict the oldest; uploads survive a restart; and the UI's Upload view in
//! headless Chromium (`e2e/upload.mjs`) draws and diffs them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use prost::Message;
use serde_json::{json, Value};
use support::{go_lines_profile, go_top, repo, ServerHandle};

const SERVICE: &str = "/adhocprofiles.v1.AdHocProfileService";

/// The folded file: Go's names, so it shares functions with the Go profile.
const FOLDED: &str = "runtime.main;main.main;main.spin;main.work 30\n\
                      runtime.main;main.main;main.other 10\n";

// The messages as the upstream schema numbers them (written here, not taken from the
// server's generated code, so a wrong field number there fails this test).
#[derive(Clone, PartialEq, prost::Message)]
struct UploadRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    profile: String,
    #[prost(int64, optional, tag = "3")]
    max_nodes: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetRequest {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, optional, tag = "2")]
    profile_type: Option<String>,
    #[prost(int64, optional, tag = "3")]
    max_nodes: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetResponse {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(int64, tag = "3")]
    uploaded_at: i64,
    #[prost(string, tag = "4")]
    profile_type: String,
    #[prost(string, repeated, tag = "5")]
    profile_types: Vec<String>,
    #[prost(string, tag = "6")]
    flamebearer_profile: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct ListResponse {
    #[prost(message, repeated, tag = "1")]
    profiles: Vec<ProfileMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProfileMetadata {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(int64, tag = "3")]
    uploaded_at: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DiffRequest {
    #[prost(string, tag = "1")]
    left_id: String,
    #[prost(string, tag = "2")]
    right_id: String,
    #[prost(string, optional, tag = "3")]
    profile_type: Option<String>,
    #[prost(int64, optional, tag = "4")]
    max_nodes: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DiffResponse {
    #[prost(string, repeated, tag = "1")]
    profile_types: Vec<String>,
    #[prost(string, tag = "2")]
    flamebearer_profile: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Connect call in JSON: status and parsed body.
fn call_json(server: &ServerHandle, method: &str, body: Value) -> (u16, Value) {
    support::connect_json(server, &format!("{SERVICE}/{method}"), &body)
}

/// A Connect call in protobuf, answered 200.
fn call_proto<Resp: Message + Default>(
    server: &ServerHandle,
    method: &str,
    req: &impl Message,
) -> Resp {
    support::connect_proto(server, &format!("{SERVICE}/{method}"), req, false)
}

/// A CPU profile written by Go's runtime/pprof, with the CPU total and `main.work`'s
/// cumulative time as `go tool pprof -top` reads them (nanoseconds).
struct GoProfile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    total: u64,
    work: u64,
    /// `main.work`'s own time (flat).
    work_self: u64,
}

fn go_profile(dir: &Path) -> GoProfile {
    let path = go_lines_profile(dir, "cpu.pb.gz");
    let top = go_top(dir, &path);
    let (work, work_self) = (top.cum["main.work"], top.flat["main.work"]);
    assert!(work > 0, "{top:?}");
    GoProfile {
        bytes: std::fs::read(&path).unwrap(),
        path,
        total: top.total,
        work,
        work_self,
    }
}

/// The flamebearer JSON string of an answer, parsed.
fn flamebearer(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("flamebearer JSON: {e}: {s}"))
}

/// Sum of the totals of nodes named `name` (single flame graphs, no recursion).
fn function_total(fb: &Value, name: &str) -> u64 {
    let names: Vec<&str> = fb["flamebearer"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let mut sum = 0;
    for row in support::levels(&fb["flamebearer"]) {
        for node in row.chunks(4) {
            if names[node[3] as usize] == name {
                sum += node[1];
            }
        }
    }
    sum
}

#[test]
fn upload_get_list_diff_over_connect_in_json_and_proto() {
    let dir = tempfile::tempdir().unwrap();
    let go = go_profile(dir.path());
    let server = ServerHandle::start(&dir.path().join("data"), &[]);

    // Upload the Go profile (gzipped, as Go writes it) in JSON.
    let (status, up) = call_json(
        &server,
        "Upload",
        json!({"name": "cpu.pb.gz", "profile": b64(&go.bytes)}),
    );
    assert_eq!(status, 200, "{up}");
    let go_id = up["id"].as_str().unwrap().to_owned();
    assert!(go_id.ends_with("-cpu.pb.gz"), "{go_id}");
    assert_eq!(up["name"], "cpu.pb.gz");
    assert_eq!(up["profileTypes"], json!(["samples", "cpu"]));
    assert_eq!(up["profileType"], "samples");
    assert!(up["uploadedAt"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    let samples = flamebearer(up["flamebearerProfile"].as_str().unwrap());
    assert_eq!(samples["metadata"]["units"], "objects");
    // 100 Hz: one sample per 10 ms of CPU.
    assert_eq!(
        samples["flamebearer"]["numTicks"].as_u64().unwrap(),
        go.total / 10_000_000
    );

    // Get the CPU type in protobuf: exact nanoseconds, Grafana's units.
    let cpu: GetResponse = call_proto(
        &server,
        "Get",
        &GetRequest {
            id: go_id.clone(),
            profile_type: Some("cpu".into()),
            max_nodes: None,
        },
    );
    assert_eq!(
        (cpu.id.as_str(), cpu.profile_type.as_str()),
        (go_id.as_str(), "cpu")
    );
    assert_eq!(cpu.profile_types, ["samples", "cpu"]);
    let fb = flamebearer(&cpu.flamebearer_profile);
    assert_eq!(fb["version"], 1);
    assert_eq!(fb["metadata"]["format"], "single");
    assert_eq!(fb["metadata"]["units"], "samples");
    assert_eq!(fb["metadata"]["sampleRate"], 1_000_000_000u64);
    assert_eq!(fb["flamebearer"]["numTicks"].as_u64().unwrap(), go.total);
    // One node per function: main.work called from two lines is one node.
    assert_eq!(function_total(&fb, "main.work"), go.work);
    let names = fb["flamebearer"]["names"].as_array().unwrap();
    assert_eq!(names.iter().filter(|n| *n == "main.work").count(), 1);

    // JSON with the proto field name `profile_type` picks the same type.
    let (status, snake) = call_json(&server, "Get", json!({"id": go_id, "profile_type": "cpu"}));
    assert_eq!(status, 200, "{snake}");
    assert_eq!(snake["profileType"], "cpu");
    assert_eq!(
        snake["uploadedAt"].as_str().unwrap(),
        cpu.uploaded_at.to_string()
    );

    // Upload the folded file in protobuf.
    let folded: GetResponse = call_proto(
        &server,
        "Upload",
        &UploadRequest {
            name: "stacks.txt".into(),
            profile: b64(FOLDED.as_bytes()),
            max_nodes: None,
        },
    );
    assert_eq!(folded.profile_types, ["stacks.txt"]);
    let ffb = flamebearer(&folded.flamebearer_profile);
    assert_eq!(ffb["flamebearer"]["numTicks"], 40);
    assert_eq!(function_total(&ffb, "main.work"), 30);
    assert_eq!(ffb["metadata"]["units"], "samples");
    assert_eq!(ffb["metadata"]["sampleRate"], 100);

    // List, newest first, in both encodings.
    let (status, list) = call_json(&server, "List", json!({}));
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [folded.id.as_str(), go_id.as_str()]);
    let plist: ListResponse = call_proto(&server, "List", &ListRequest {});
    assert_eq!(
        plist
            .profiles
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(plist.profiles[1].name, "cpu.pb.gz");
    // A gzipped request body (Connect's `Content-Encoding: gzip`) and max_nodes as a string.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        json!({"id": go_id, "profileType": "cpu", "maxNodes": "3"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut r = support::agent()
        .post(&server.url(&format!("{SERVICE}/Get")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .send(&gz.finish().unwrap()[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let small: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let small = flamebearer(small["flamebearerProfile"].as_str().unwrap());
    // Functions below the root, `other` (truncated weight) aside.
    let functions = |fb: &Value| -> usize {
        let names = fb["flamebearer"]["names"].as_array().unwrap();
        fb["flamebearer"]["levels"].as_array().unwrap()[1..]
            .iter()
            .flat_map(|l| {
                l.as_array()
                    .unwrap()
                    .chunks(4)
                    .map(|n| n[3].as_u64().unwrap())
            })
            .filter(|&i| names[i as usize] != "other")
            .count()
    };
    assert!(functions(&fb) > 3, "{fb}");
    assert!(functions(&small) <= 3, "max_nodes 3: {small}");
    assert_eq!(small["flamebearer"]["numTicks"].as_u64().unwrap(), go.total);
    assert!(plist.profiles[0].uploaded_at >= plist.profiles[1].uploaded_at);

    // Diff the Go profile's CPU against the folded file.
    let diff: DiffResponse = call_proto(
        &server,
        "Diff",
        &DiffRequest {
            left_id: go_id.clone(),
            right_id: folded.id.clone(),
            profile_type: Some("cpu".into()),
            max_nodes: None,
        },
    );
    let d = flamebearer(&diff.flamebearer_profile);
    assert_eq!(d["metadata"]["format"], "double");
    assert_eq!(d["leftTicks"].as_u64().unwrap(), go.total);
    assert_eq!(d["rightTicks"], 40);
    // A diff node is [ldx, ltotal, lself, rdx, rtotal, rself, name].
    let names = d["flamebearer"]["names"].as_array().unwrap();
    let work = names.iter().position(|n| n == "main.work").unwrap() as u64;
    let (mut lt, mut rt) = (0, 0);
    for row in support::levels(&d["flamebearer"]) {
        for n in row.chunks(7).filter(|n| n[6] == work) {
            lt += n[1];
            rt += n[4];
        }
    }
    assert_eq!((lt, rt), (go.work, 30));
    // The same in JSON with the proto field names.
    let (status, jd) = call_json(
        &server,
        "Diff",
        json!({"left_id": go_id, "right_id": folded.id, "profile_type": "cpu"}),
    );
    assert_eq!(status, 200, "{jd}");
    assert_eq!(
        flamebearer(jd["flamebearerProfile"].as_str().unwrap())["rightTicks"],
        40
    );

    // Errors in Connect's shape.
    let (status, e) = call_json(&server, "Get", json!({"id": "../../etc/passwd"}));
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_argument")),
        "{e}"
    );
    let (status, e) = call_json(
        &server,
        "Get",
        json!({"id": "01M8QH6BK69VRJ8WGBEEXK239E-gone.txt"}),
    );
    assert_eq!(
        (status, e["code"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    let (status, e) = call_json(&server, "Upload", json!({"name": "x", "profile": "%%%"}));
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_argument")),
        "{e}"
    );
    let junk = b64(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    let (status, e) = call_json(
        &server,
        "Upload",
        json!({"name": "bad.pb", "profile": junk}),
    );
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_argument")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("pprof"), "{e}");
    let (status, e) = call_json(&server, "Nope", json!({}));
    assert_eq!(
        (status, e["code"].as_str()),
        (404, Some("unimplemented")),
        "{e}"
    );
    // Nothing refused was kept.
    let (_, list) = call_json(&server, "List", json!({}));
    assert_eq!(list["profiles"].as_array().unwrap().len(), 2);
}

#[test]
fn the_oldest_uploads_go_first_and_uploads_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("embers.toml");
    std::fs::write(
        &config,
        "max_body_bytes = 4096\n[adhoc]\nmax_profiles = 2\nmax_bytes = 1048576\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let config_arg = config.to_str().unwrap();
    let mut server = ServerHandle::start(&data, &["--config", config_arg]);
    let upload = |server: &ServerHandle, name: &str, body: &str| {
        let (status, v) = call_json(
            server,
            "Upload",
            json!({"name": name, "profile": b64(body.as_bytes())}),
        );
        assert_eq!(status, 200, "{v}");
        v["id"].as_str().unwrap().to_owned()
    };
    let first = upload(&server, "one.txt", "a;b 1\n");
    let second = upload(&server, "two.txt", "a;c 2\n");
    let third = upload(&server, "three.txt", "a;d 3\n");
    let list = |server: &ServerHandle| -> Vec<String> {
        let (_, v) = call_json(server, "List", json!({}));
        v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(&server), [third.clone(), second.clone()]);
    let (status, _) = call_json(&server, "Get", json!({"id": first}));
    assert_eq!(status, 404);

    // Over max_body_bytes: 413 naming the setting, nothing kept or dropped.
    let big = "a;b 1\n".repeat(1000);
    let (status, e) = call_json(
        &server,
        "Upload",
        json!({"name": "big", "profile": b64(big.as_bytes())}),
    );
    assert_eq!(status, 413, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("max_body_bytes"),
        "{e}"
    );
    assert_eq!(list(&server).len(), 2);

    server.stop();
    let server = ServerHandle::start(&data, &["--config", config_arg]);
    assert_eq!(list(&server), [third.clone(), second.clone()]);
    let (status, v) = call_json(&server, "Get", json!({"id": second}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        flamebearer(v["flamebearerProfile"].as_str().unwrap())["flamebearer"]["numTicks"],
        2
    );
}

#[test]
fn speedscope_files_are_read_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": "main"}, {"name": "work"}, {"name": "idle"}]},
        "profiles": [
            {"type": "sampled", "name": "cpu", "unit": "none", "startValue": 0, "endValue": 4,
             "samples": [[0, 1], [0, 2], [0, 1]], "weights": [2, 1, 1]},
            {"type": "evented", "name": "wall", "unit": "milliseconds", "startValue": 0, "endValue": 5,
             "events": [{"type": "O", "at": 0, "frame": 0}, {"type": "O", "at": 1, "frame": 1},
                        {"type": "C", "at": 5, "frame": 1}, {"type": "C", "at": 5, "frame": 0}]}
        ]
    });
    // No file name hint: the content decides.
    let (status, up) = call_json(
        &server,
        "Upload",
        json!({"name": "profile", "profile": b64(doc.to_string().as_bytes())}),
    );
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["profileTypes"], json!(["cpu", "wall"]));
    let fb = flamebearer(up["flamebearerProfile"].as_str().unwrap());
    assert_eq!(fb["flamebearer"]["numTicks"], 4);
    assert_eq!(function_total(&fb, "work"), 3);
    let (_, wall) = call_json(
        &server,
        "Get",
        json!({"id": up["id"], "profileType": "wall"}),
    );
    let fb = flamebearer(wall["flamebearerProfile"].as_str().unwrap());
    assert_eq!(fb["flamebearer"]["numTicks"], 5_000_000);
    assert_eq!(function_total(&fb, "work"), 4_000_000);
}

#[test]
fn upload_view_draws_and_diffs_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let go = go_profile(dir.path());
    let folded = dir.path().join("stacks.txt");
    std::fs::write(&folded, FOLDED).unwrap();
    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let shots = repo().join("test-artifacts/upload");
    let out = Command::new("node")
        .arg(repo().join("e2e/upload.mjs"))
        .arg(server.url(""))
        .arg(&go.path)
        .arg(&folded)
        .arg(&shots)
        .output()
        .expect("node runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "e2e/upload.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["errors"], json!([]), "errors in the page");

    // The Go profile, CPU type picked: main.work's share as go tool pprof computes it.
    let p = &r["pprof"];
    assert_eq!(p["types"], json!(["samples", "cpu"]));
    assert_eq!(p["numTicks"].as_u64().unwrap(), go.total);
    assert!(p["painted"].as_u64().unwrap() > 1_000, "{}", p["painted"]);
    let share = |v: u64| format!("({:.2} %)", v as f64 * 100.0 / go.total as f64);
    let tip = p["tooltip"].as_str().unwrap();
    assert!(tip.starts_with("main.work\n"), "{tip}");
    let (total_line, self_line) = tip.split_once("\nself").unwrap();
    assert!(
        total_line.contains(&share(go.work)),
        "{tip:?} lacks total {}",
        share(go.work)
    );
    assert!(
        self_line.contains(&share(go.work_self)),
        "{tip:?} lacks self {}",
        share(go.work_self)
    );

    // The folded file: 30 of 40 samples in main.work.
    let f = &r["folded"];
    assert_eq!(f["numTicks"], 40);
    assert!(
        f["tooltip"].as_str().unwrap().contains("(75.00 %)"),
        "{}",
        f["tooltip"]
    );

    // The diff of the two: both sides' totals, main.work on both.
    let d = &r["diff"];
    assert_eq!(d["leftTicks"].as_u64().unwrap(), go.total);
    assert_eq!(d["rightTicks"], 40);
    assert_eq!(d["work"], json!([go.work, 30]));
    assert!(d["legend"].as_bool().unwrap());
    assert!(d["painted"].as_u64().unwrap() > 1_000, "{}", d["painted"]);
}
