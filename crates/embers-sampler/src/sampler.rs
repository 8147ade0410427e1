//! One running sampler: a backend thread that reads stacks and sends [`Event`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use embers_profile::Frame;

use crate::backend::{backend_for, Backend};
use crate::detect::{detect, Interpreter};
use crate::{Config, Error, Lang};

/// One thread's stack at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The process sampled (a child's pid with `subprocesses`).
    pub pid: u32,
    /// Thread name, or its id in hex when it has none.
    pub thread: String,
    /// Frames from the outermost call to the one running.
    pub frames: Vec<Frame>,
}

/// What a sampler reports.
#[derive(Debug)]
pub enum Event {
    /// Stacks read at one sampling instant.
    Traces(Vec<Trace>),
    /// This many reads failed (a torn stack, a thread that ended mid-read).
    Errors(u64),
    /// The sampler stopped: `Ok` when the target exited, or why it could not go on.
    Ended(Result<(), Error>),
}

/// A sampler attached to one process (and, optionally, its children), through one
/// [`Backend`].
#[derive(Debug)]
pub struct Sampler {
    events: Receiver<Event>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    interpreter: Interpreter,
}

impl Sampler {
    /// Attaches to `pid` with the backend for its interpreter, detected unless
    /// `config.lang` names it.
    pub fn attach(pid: u32, config: &Config) -> Result<Sampler, Error> {
        let interpreter = match config.lang {
            Lang::Auto => detect(pid)?,
            Lang::Python => Interpreter::Python,
            Lang::Ruby => Interpreter::Ruby,
        };
        Sampler::attach_with(backend_for(interpreter), pid, config)
    }

    /// Attaches to `pid` with `backend`.
    pub fn attach_with(backend: &dyn Backend, pid: u32, config: &Config) -> Result<Sampler, Error> {
        if !crate::detect::is_alive(pid) {
            return Err(Error::NoSuchProcess(pid));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let running = backend.start(pid, config, stop.clone())?;
        Ok(Sampler {
            events: running.events,
            stop,
            thread: Some(running.thread),
            interpreter: backend.interpreter(),
        })
    }

    /// The interpreter being sampled.
    pub fn interpreter(&self) -> Interpreter {
        self.interpreter
    }

    /// The next event, waiting at most `timeout`; `None` when nothing came in time.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            // The backend thread ended without a word: treat as the target's exit.
            Err(RecvTimeoutError::Disconnected) => Some(Event::Ended(Ok(()))),
        }
    }

    /// Asks the backend to stop; events already sent can still be received.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
        // Unblock a backend waiting to send, then wait for it to let go of the target.
        while self.events.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A frame from a backend's pieces; `line` 0 or `function_only` means no line.
pub(crate) fn frame(name: &str, file: Option<&str>, line: i64, function_only: bool) -> Frame {
    Frame {
        function: name.to_owned(),
        file: file.filter(|f| !f.is_empty()).map(str::to_owned),
        line: if function_only || line <= 0 {
            None
        } else {
            u32::try_from(line).ok()
        },
        module: None,
    }
}
