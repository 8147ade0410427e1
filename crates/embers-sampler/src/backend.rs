//! The one interface every sampler backend implements: start reading a process's stacks
//! on a thread of its own and report [`Event`]s over a bounded channel. [`Sampler`]
//! (and through it the recording loop and the agent) sees only this trait, so a new way
//! of reading stacks (a native sampler) plugs in without touching them.
//!
//! [`Sampler`]: crate::Sampler

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::detect::Interpreter;
use crate::sampler::Event;
use crate::{Config, Error};

/// A way of sampling the stacks of a running process.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The interpreter this backend reads.
    fn interpreter(&self) -> Interpreter;

    /// Starts sampling `pid` with `config`. Returns once the backend knows whether it
    /// could attach (or, for backends that only learn it later, with the error to come
    /// as [`Event::Ended`]). The thread ends when `stop` is set, when the target exits
    /// (after sending [`Event::Ended`]), or when the receiver is dropped.
    fn start(&self, pid: u32, config: &Config, stop: Arc<AtomicBool>) -> Result<Running, Error>;
}

/// A started backend: the events it sends and the thread sending them.
#[derive(Debug)]
pub struct Running {
    /// Events in the order they happened; bounded, so a slow consumer slows the backend
    /// instead of growing memory.
    pub events: Receiver<Event>,
    /// The backend's thread; joining it waits until the target is let go.
    pub thread: JoinHandle<()>,
}

/// The backend that reads `interpreter`.
pub fn backend_for(interpreter: Interpreter) -> &'static dyn Backend {
    match interpreter {
        Interpreter::Python => &crate::python::PySpy,
        Interpreter::Ruby => &crate::ruby::Rbspy,
    }
}
