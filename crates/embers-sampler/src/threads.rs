//! Which of a process's threads are on a CPU, from `/proc/PID/task/TID/stat`: the state
//! the kernel reports, read before any stack is walked so idle threads cost one `pread`
//! instead of a walk of their stack through `process_vm_readv`.
//!
//! A stat file stays open while its thread lives: `/proc` regenerates the text on every
//! read from offset 0, so one `pread` per thread per sample is all a sample costs (py-spy
//! opens, reads and closes each file every time). The task directory is listed on every
//! sample, so a thread started since the last one is seen at once.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The thread states of one process, read again on every [`ThreadStates::running`].
#[derive(Debug)]
pub(crate) struct ThreadStates {
    task_dir: PathBuf,
    /// Open stat files by thread id, with the listing that last saw the thread.
    files: HashMap<u32, (File, u64)>,
    listing: u64,
    running: Vec<u32>,
    buf: [u8; 512],
}

impl ThreadStates {
    pub(crate) fn new(pid: u32) -> Self {
        ThreadStates {
            task_dir: PathBuf::from(format!("/proc/{pid}/task")),
            files: HashMap::new(),
            listing: 0,
            running: Vec::new(),
            buf: [0; 512],
        }
    }

    /// The ids of the threads in state `R` (running or runnable) now, the test py-spy
    /// applies for `active`. An error means the process is gone (or a zombie: every
    /// thread exited) or cannot be read.
    pub(crate) fn running(&mut self) -> io::Result<&[u32]> {
        self.listing += 1;
        self.running.clear();
        let mut alive = false;
        for entry in std::fs::read_dir(&self.task_dir)? {
            let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let file = match self.files.entry(tid) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let Ok(file) = File::open(self.task_dir.join(format!("{tid}/stat"))) else {
                        continue; // ended since the listing
                    };
                    e.insert((file, 0))
                }
            };
            file.1 = self.listing;
            let Ok(n) = file.0.read_at(&mut self.buf, 0) else {
                file.1 = 0; // ended since the listing: forget it below
                continue;
            };
            match state(&self.buf[..n]) {
                Some(b'R') => self.running.push(tid),
                Some(b'Z' | b'X') | None => continue,
                Some(_) => {}
            }
            alive = true;
        }
        let listing = self.listing;
        self.files.retain(|_, (_, seen)| *seen == listing);
        if alive {
            Ok(&self.running)
        } else {
            // Exited and not yet reaped: its memory is gone, tell the caller so.
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the process has exited",
            ))
        }
    }
}

/// The state letter of a stat line: the command name is in parentheses and may hold any
/// character, so the state is what follows the last `)`.
fn state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn state_follows_the_last_parenthesis() {
        assert_eq!(state(b"12 (a) b) R 1 2"), Some(b'R'));
        assert_eq!(state(b"12 (sleep) S 1 2"), Some(b'S'));
        assert_eq!(state(b"12 (cut"), None);
    }

    /// `gettid` without libc: `/proc/thread-self` links to `PID/task/TID`.
    fn own_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_str().unwrap().parse().unwrap()
    }

    #[test]
    fn a_spinning_thread_is_running_then_idle_once_parked_through_the_same_open_file() {
        let spin = Arc::new(AtomicBool::new(true));
        let spinning = spin.clone();
        let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
        let flip = std::thread::Builder::new()
            .spawn(move || {
                tid_tx.send(own_tid()).unwrap();
                while spinning.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                let _ = wake_rx.recv();
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();
        let mut states = ThreadStates::new(std::process::id());
        // A busy machine can deschedule the spinner for a while: poll (bounded) until
        // each answer is seen, never once.
        let seen = |states: &mut ThreadStates, want: bool| {
            (0..100_000).any(|_| {
                let running = states.running().unwrap().contains(&tid);
                if running != want {
                    std::thread::yield_now();
                }
                running == want
            })
        };
        assert!(
            seen(&mut states, true),
            "the spinning thread was never running"
        );
        spin.store(false, Ordering::Relaxed);
        // Parked on a channel: idle, read through the file opened while it spun.
        assert!(seen(&mut states, false), "a parked thread stayed running");
        assert!(states.files.contains_key(&tid));
        drop(wake_tx);
        flip.join().unwrap();
        states.running().unwrap();
        assert!(
            !states.files.contains_key(&tid),
            "an ended thread is forgotten"
        );
    }

    #[test]
    fn a_zombie_is_an_error_not_an_idle_process() {
        // Regression: an exited, unreaped target lists its main thread (state Z) and no
        // running one; taken for "idle", the sampler never noticed the exit.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let mut states = ThreadStates::new(pid);
        // `true` exits at once; until it has, it is alive (and may be running).
        let exited = (0..1_000_000).any(|_| {
            let gone = states.running().is_err();
            if !gone {
                std::thread::yield_now();
            }
            gone
        });
        assert!(exited, "the zombie was still taken for a live process");
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "not reaped yet"
        );
        child.wait().unwrap();
    }

    #[test]
    fn a_process_that_is_gone_is_an_error() {
        let mut states = ThreadStates::new(u32::MAX - 1);
        assert!(states.running().is_err());
    }
}
