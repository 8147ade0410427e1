//! The continuous agent behind `embers agent`.
//!
//! Samplers ([`embers_sampler::Sampler`]) read stacks about 100 times a second;
//! [`window::Windows`] cuts what they read into windows aligned to the upload period
//! (10 s), one per target process; [`push`] encodes each window as a pprof inside a
//! Pyroscope `PushRequest` (so any Pyroscope-compatible server takes it) whose sample ID
//! names the window, which makes retries idempotent on servers that deduplicate;
//! [`outbox::Outbox`] holds unsent windows in order, bounded, optionally spooled to disk;
//! [`upload`] sends them with backoff and jitter, over HTTP or HTTPS with the client of
//! [`http`] (also `embers query`'s). [`run::run`] ties it together.

pub mod config;
pub mod http;
pub mod outbox;
pub mod push;
pub mod run;
pub mod targets;
pub mod upload;
pub mod window;

pub use config::{AgentConfig, Auth};
pub use run::{run, Summary, Targets};
