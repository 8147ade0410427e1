//! A small tmpfs to fill up, for disk-full tests (shared by the store's and the CLI's
//! tests through `#[path]`). Mounting needs root (CI runs as root); where it is refused,
//! [`Tmpfs::mount`] says so and the test returns.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`-o size=`, such as `8m`), or says why not.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => skip(&format!(
                "cannot mount a tmpfs for a disk-full test (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => skip(&format!("cannot run mount for a disk-full test: {e}")),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with a file; delete it to free the space.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = File::create(&path).expect("creating the filler");
        let chunk = vec![0xAA; 64 << 10];
        while matches!(f.write(&chunk), Ok(n) if n > 0) {}
        while matches!(f.write(&chunk[..1]), Ok(1)) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Skips a disk-full test where mounting is refused, except in CI (`CI` set), which runs
/// as root: there a refused mount is a failure, not a silent pass.
fn skip(why: &str) -> Option<Tmpfs> {
    assert!(std::env::var_os("CI").is_none(), "in CI: {why}");
    eprintln!("SKIPPED: {why}");
    None
}
