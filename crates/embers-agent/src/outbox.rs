//! Windows waiting to be sent, oldest first, at most `capacity` of them: when full, the
//! oldest is dropped and counted (never silently). With a spool directory each window is
//! also a file `<seq>-<id>.push` (the `PushRequest` bytes), written before it is queued
//! and removed once the server took it, so an agent restart sends what it had left.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::push::Outgoing;

/// A queued window and its spool file, if any.
#[derive(Debug)]
pub struct Queued {
    /// The window.
    pub outgoing: Outgoing,
    spool: Option<PathBuf>,
}

/// The bounded queue of unsent windows.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Queued>,
    capacity: usize,
    spool_dir: Option<PathBuf>,
    next_seq: u64,
    /// Windows dropped because the queue was full.
    pub dropped: u64,
}

impl Outbox {
    /// An outbox of `capacity` windows; with `spool_dir`, loads the windows a previous run
    /// left there (oldest first).
    pub fn open(capacity: usize, spool_dir: Option<PathBuf>) -> std::io::Result<Outbox> {
        let mut outbox = Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            spool_dir: spool_dir.clone(),
            next_seq: 0,
            dropped: 0,
        };
        if let Some(dir) = spool_dir {
            std::fs::create_dir_all(&dir)?;
            let mut files: Vec<(u64, String, PathBuf)> = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if let Some((seq, id)) = parse_spool_name(name) {
                    files.push((seq, id.to_owned(), path.clone()));
                } else if name.ends_with(".tmp") {
                    // A write the previous run did not finish: never acknowledged to anyone.
                    let _ = std::fs::remove_file(&path);
                }
            }
            files.sort();
            for (seq, id, path) in files {
                let body = std::fs::read(&path)?;
                outbox.next_seq = outbox.next_seq.max(seq + 1);
                outbox.queue.push_back(Queued {
                    outgoing: Outgoing {
                        id,
                        body,
                        samples: 0,
                    },
                    spool: Some(path),
                });
            }
            if !outbox.queue.is_empty() {
                tracing::info!(
                    windows = outbox.queue.len(),
                    dir = %dir.display(),
                    "found unsent windows in the spool; sending them first"
                );
            }
            outbox.trim();
        }
        Ok(outbox)
    }

    /// Queues `outgoing` (spooling it first), dropping the oldest if full.
    pub fn push(&mut self, outgoing: Outgoing) -> std::io::Result<()> {
        let spool = match &self.spool_dir {
            Some(dir) => Some(spool_write(dir, self.next_seq, &outgoing)?),
            None => None,
        };
        self.next_seq += 1;
        self.queue.push_back(Queued { outgoing, spool });
        self.trim();
        Ok(())
    }

    fn trim(&mut self) {
        while self.queue.len() > self.capacity {
            if let Some(old) = self.queue.pop_front() {
                self.dropped += 1;
                tracing::warn!(
                    window = %old.outgoing.id,
                    queued = self.capacity,
                    dropped_total = self.dropped,
                    "queue of unsent windows is full: dropped the oldest"
                );
                remove_spooled(&old);
            }
        }
    }

    /// The oldest unsent window.
    pub fn front(&self) -> Option<&Outgoing> {
        self.queue.front().map(|q| &q.outgoing)
    }

    /// Removes the oldest window (sent, or refused for good) if it is `id`.
    pub fn done(&mut self, id: &str) {
        if self.queue.front().is_some_and(|q| q.outgoing.id == id) {
            if let Some(q) = self.queue.pop_front() {
                remove_spooled(&q);
            }
        }
    }

    /// Windows waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

fn remove_spooled(q: &Queued) {
    if let Some(path) = &q.spool {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a spooled window");
        }
    }
}

fn parse_spool_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".push")?;
    let (seq, id) = stem.split_once('-')?;
    Some((seq.parse().ok()?, id))
}

/// Writes the window to `<seq>-<id>.push` through a temporary file, so a crash leaves
/// either the whole window or none of it.
fn spool_write(dir: &Path, seq: u64, outgoing: &Outgoing) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{seq:020}-{}.push", outgoing.id));
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&outgoing.body)?;
    file.sync_data()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(id: &str) -> Outgoing {
        Outgoing {
            id: id.into(),
            body: id.as_bytes().to_vec(),
            samples: 1,
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let mut o = Outbox::open(2, None).unwrap();
        for id in ["a", "b", "c"] {
            o.push(window(id)).unwrap();
        }
        assert_eq!(o.dropped, 1);
        assert_eq!(o.front().unwrap().id, "b");
        o.done("c"); // not the oldest: nothing happens
        assert_eq!(o.len(), 2);
        o.done("b");
        assert_eq!(o.front().unwrap().id, "c");
    }

    #[test]
    fn spooled_windows_outlive_the_agent_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(10, Some(dir.path().into())).unwrap();
        for id in ["w-1", "w-2", "w-3"] {
            o.push(window(id)).unwrap();
        }
        o.done("w-1");
        drop(o);
        std::fs::write(dir.path().join("junk.tmp"), b"torn").unwrap();
        let mut o = Outbox::open(10, Some(dir.path().into())).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.front().unwrap().id, "w-2");
        assert_eq!(o.front().unwrap().body, b"w-2");
        o.push(window("w-4")).unwrap();
        o.done("w-2");
        o.done("w-3");
        assert_eq!(o.front().unwrap().id, "w-4");
        assert!(!dir.path().join("junk.tmp").exists());
    }
}
