//! Helpers shared by the integration tests of this crate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use embers_formats::{read, Format};
use embers_profile::{Frame, Labels, Profile};

/// The seed-000 profile: `<module>` calls foo (75 %) and bar (25 %), both calling work.
pub const FOOBAR: &str = "\
<module> (app.py:40);bar (app.py:26);work (app.py:17) 25
<module> (app.py:40);foo (app.py:22);work (app.py:17) 75
";

pub fn foobar() -> Profile {
    read(FOOBAR.as_bytes(), Some(Format::Folded)).expect("fixture parses")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one of the Node scripts in `e2e/`; fails loudly when its packages are missing.
pub fn node(script: &str, args: &[&str]) -> std::process::Output {
    let e2e = workspace_root().join("e2e");
    assert!(
        e2e.join("node_modules").is_dir(),
        "e2e/node_modules is missing: run `npm ci --prefix e2e` (scripts/install-test-deps.sh does)"
    );
    std::process::Command::new("node")
        .arg(e2e.join(script))
        .args(args)
        .output()
        .expect("node runs")
}

pub fn write(profile: &Profile, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    embers_formats::write(profile, format, &Default::default(), &mut out).expect("writes");
    out
}

/// The samples of `p` as (frames, labels, value), sorted: a canonical form to compare.
pub fn sorted_samples(p: &Profile) -> Vec<(Vec<Frame>, Labels, u64)> {
    let mut v: Vec<_> = p
        .samples()
        .iter()
        .map(|s| {
            (
                p.frames(&s.stack).cloned().collect(),
                s.labels.clone(),
                s.value,
            )
        })
        .collect();
    v.sort();
    v
}
