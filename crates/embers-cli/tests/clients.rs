//! The unmodified published Pyroscope clients pushing to a real `embers server`:
//! `pyroscope-io` from PyPI (seed 003's rideshare, with static `region` and dynamic
//! `vehicle` tags) and `@pyroscope/nodejs` from npm. `.ci/run` installs both.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use support::{collapsed, enc, get, repo, ServerHandle};

/// The clients burn CPU: one such test at a time, so shares are not skewed.
static BUSY: Mutex<()> = Mutex::new(());

fn total(q: &str, server: &ServerHandle) -> u64 {
    collapsed(server, q, "now-1h").values().sum()
}

#[test]
fn pyroscope_io_rideshare_tags_split_cpu_by_search_radius() {
    let _busy = BUSY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let script = repo().join("examples/clients/pyroscope_rideshare.py");
    let regions = ["us-east-1", "us-west-1", "eu-west-1"];
    let children: Vec<_> = regions
        .iter()
        .map(|region| {
            Command::new("python3")
                .arg(&script)
                .args([&server.url(""), *region, "20"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "client failed: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    }
    // Dynamic tags: CPU per vehicle follows the search radius (bike 1, scooter 2, car 4).
    let per_vehicle: BTreeMap<&str, u64> = ["bike", "scooter", "car"]
        .into_iter()
        .map(|v| {
            (
                v,
                total(
                    &format!(r#"ride-sharing-app.cpu{{vehicle="{v}"}}"#),
                    &server,
                ),
            )
        })
        .collect();
    let sum: u64 = per_vehicle.values().sum();
    assert!(sum > 0, "no tagged samples arrived");
    let share = |v: &str| per_vehicle[v] as f64 / sum as f64 * 100.0;
    eprintln!(
        "vehicle shares: bike {:.1} %, scooter {:.1} %, car {:.1} %",
        share("bike"),
        share("scooter"),
        share("car")
    );
    // About 3,000 samples: the binomial spread of a share is under 1 point, so ±5 points
    // leaves room for the loop overhead that falls on every order alike.
    for (vehicle, expected) in [
        ("bike", 100.0 / 7.0),
        ("scooter", 200.0 / 7.0),
        ("car", 400.0 / 7.0),
    ] {
        assert!(
            (share(vehicle) - expected).abs() < 5.0,
            "{vehicle}: {:.1} % vs {expected:.1} %",
            share(vehicle)
        );
    }
    // Static tags: every region is there, regions partition the data, and inside one
    // region the vehicles split the same way.
    let all = total("ride-sharing-app.cpu", &server);
    let per_region: Vec<u64> = regions
        .iter()
        .map(|r| total(&format!(r#"ride-sharing-app.cpu{{region="{r}"}}"#), &server))
        .collect();
    assert_eq!(per_region.iter().sum::<u64>(), all);
    for (region, t) in regions.iter().zip(&per_region) {
        let share = *t as f64 / all as f64 * 100.0;
        assert!(share > 20.0, "{region}: only {share:.1} % of the CPU");
        let car = total(
            &format!(r#"ride-sharing-app.cpu{{region="{region}", vehicle="car"}}"#),
            &server,
        );
        let tagged = total(
            &format!(r#"ride-sharing-app.cpu{{region="{region}", vehicle=~"car|bike|scooter"}}"#),
            &server,
        );
        let car_share = car as f64 / tagged as f64 * 100.0;
        assert!(
            (car_share - 400.0 / 7.0).abs() < 8.0,
            "{region}: car {car_share:.1} %"
        );
    }
    let (_, values) = get(&server.url(&format!(
        "/label-values?label=vehicle&query={}",
        enc("ride-sharing-app.cpu")
    )));
    assert_eq!(values, r#"["bike","car","scooter"]"#);
}

#[test]
fn pyroscope_nodejs_pushes_appear_under_the_app_with_its_tags() {
    let _busy = BUSY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let out = Command::new("node")
        .current_dir(repo().join("e2e"))
        .args(["pyroscope-node-push.mjs", &server.url(""), "node-app", "10"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "node client failed: {out:?}");
    let (_, apps) = get(&server.url("/apps"));
    assert!(apps.contains(r#""name":"node-app""#), "{apps}");
    let (_, regions) = get(&server.url(&format!(
        "/label-values?label=region&query={}",
        enc("node-app.wall")
    )));
    assert_eq!(regions, r#"["eu-north-1"]"#);
    let stacks = collapsed(
        &server,
        r#"node-app.wall{region="eu-north-1", flavour="node"}"#,
        "now-1h",
    );
    let sum_of = |f: &str| {
        stacks
            .iter()
            .filter(|(s, _)| s.contains(f))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    let (heavy, light) = (sum_of("heavyWork"), sum_of("lightWork"));
    assert!(
        heavy + light > 0,
        "no samples of the busy functions: {stacks:?}"
    );
    let heavy_share = heavy as f64 / (heavy + light) as f64 * 100.0;
    eprintln!("node: heavyWork {heavy_share:.1} % of the busy time (true 75 %)");
    assert!(
        (heavy_share - 75.0).abs() < 6.0,
        "heavyWork {heavy_share:.1} %"
    );
    // The Grafana form finds the same data.
    let grafana = collapsed(
        &server,
        r#"wall:wall:nanoseconds:wall:nanoseconds{service_name="node-app"}"#,
        "now-1h",
    );
    assert_eq!(grafana.values().sum::<u64>(), stacks.values().sum::<u64>());
}
