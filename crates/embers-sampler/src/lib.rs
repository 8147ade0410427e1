//! Sampling the stacks of running Python and Ruby programs from outside the process.
//!
//! Python is read through the `py-spy` library and Ruby through `rbspy`; both read the
//! interpreter's memory with `process_vm_readv` and need the right to ptrace the target.
//! Their configuration types carry no stability promise, so they stay behind this crate's
//! [`Config`] and the [`Backend`] trait ([`PySpy`], [`Rbspy`]) that [`Sampler`] drives:
//! the rest of Embers only sees [`Trace`]s of `embers_profile::Frame`s.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use embers_sampler::{record, Config};
//!
//! let config = Config { duration: Some(std::time::Duration::from_secs(5)), ..Config::default() };
//! let stop = AtomicBool::new(false);
//! let recording = record(1234, &config, &stop, |_stats| {}).unwrap();
//! println!("{} samples", recording.profile.total());
//! ```

mod backend;
mod config;
mod detect;
mod error;
mod pacing;
mod python;
mod record;
mod ruby;
mod sampler;
mod threads;

pub use backend::{backend_for, Backend, Running};
pub use config::{Config, Lang};
pub use detect::{detect, is_alive, Interpreter};
pub use error::Error;
pub use python::PySpy;
pub use record::{record, EndReason, Recording, Stats};
pub use ruby::Rbspy;
pub use sampler::{Event, Sampler, Trace};
