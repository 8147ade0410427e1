//! JFR decode throughput (issue 11, Measure): a real OpenJDK recording decoded into
//! trees, next to two floors in the same run: the bare walk over every chunk and every
//! size-prefixed event without understanding them (the least any JFR reader does), and
//! `jfr::scan`, which reads metadata, constant pools and every event field by field and
//! converts nothing (the least a reader that understands events does).
//!
//! The recording is made at start: `crates/embers-cli/tests/java/Work.java` (`cpu 10`:
//! two methods spinning) under the JDK's flight recorder with execution samples every
//! millisecond and the allocation events on, so samples, not only the ~100 KB of
//! metadata every JDK chunk carries, are read. Needs `javac` and `java` (the test
//! dependencies). The recording is also decoded as ten chunks back to back (ten
//! pyroscope-java uploads' worth).
//!
//! Run: `cargo bench -p embers-bench --bench jfr`

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use embers_bench::{mb_per_s, median_time};
use embers_formats::jfr::{decode, scan, JfrOptions};
use embers_formats::IngestBudget;

const SETTINGS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration version="2.0" label="embers-bench">
  <event name="jdk.ExecutionSample"><setting name="enabled">true</setting><setting name="period">1 ms</setting></event>
  <event name="jdk.ObjectAllocationInNewTLAB"><setting name="enabled">true</setting><setting name="stackTrace">true</setting></event>
  <event name="jdk.ObjectAllocationOutsideTLAB"><setting name="enabled">true</setting><setting name="stackTrace">true</setting></event>
</configuration>
"#;

fn record(dir: &Path) -> Vec<u8> {
    let java = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/embers-cli/tests/java");
    let ok = Command::new("javac")
        .arg("-d")
        .arg(dir)
        .arg(java.join("Work.java"))
        .status()
        .expect("javac runs (scripts/install-test-deps.sh)")
        .success();
    assert!(ok, "javac failed");
    std::fs::write(dir.join("bench.jfc"), SETTINGS).expect("settings written");
    let out = dir.join("bench.jfr");
    let ok = Command::new("java")
        .arg(format!(
            "-XX:StartFlightRecording=filename={},settings={}",
            out.display(),
            dir.join("bench.jfc").display()
        ))
        .arg("-cp")
        .arg(dir)
        .args(["Work", "cpu", "10"])
        .status()
        .expect("java runs")
        .success();
    assert!(ok, "java failed");
    std::fs::read(out).expect("recording written")
}

/// The floor: every chunk header and every event's size and type, nothing else.
fn walk(bytes: &[u8]) -> usize {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0;
        for i in 0..9 {
            let byte = b[*at];
            *at += 1;
            if i == 8 {
                return v | u64::from(byte) << 56;
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let (mut chunk, mut events) = (0, 0);
    while chunk < bytes.len() {
        let size = u64::from_be_bytes(bytes[chunk + 8..chunk + 16].try_into().expect("8 bytes"));
        let end = chunk + usize::try_from(size).expect("fits");
        let mut at = chunk + 68;
        while at < end {
            let start = at;
            let size = varint(bytes, &mut at);
            black_box(varint(bytes, &mut at));
            at = start + usize::try_from(size).expect("fits");
            events += 1;
        }
        chunk = end;
    }
    events
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let one = record(dir.path());
    let ten = one.repeat(10);
    let budget = IngestBudget::default();
    let options = JfrOptions::default();
    for (name, bytes) in [("one recording", &one), ("ten chunks", &ten)] {
        let events = walk(bytes);
        let floor = median_time(9, || {
            black_box(walk(bytes));
        });
        let read = median_time(9, || {
            black_box(scan(bytes, &budget).expect("scans"));
        });
        let mut profiles = 0;
        let time = median_time(9, || {
            let groups = decode(bytes, None, &options, &budget).expect("decodes");
            profiles = groups.len();
            black_box(groups);
        });
        println!(
            "jfr {name}: {:.2} MB, {events} events; event walk {:.0} MB/s; \
             field-by-field read {:.0} MB/s; decode→trees {:.0} MB/s ({:.2}x the read, \
             {profiles} profiles)",
            bytes.len() as f64 / 1e6,
            mb_per_s(bytes.len(), floor),
            mb_per_s(bytes.len(), read),
            mb_per_s(bytes.len(), time),
            time.as_secs_f64() / read.as_secs_f64(),
        );
    }
}
