//! pprof (`perftools.profiles.Profile`), gzipped or plain.
//!
//! The schema is `proto/profile.proto`; `proto.rs` is generated from it by
//! `cargo run -p xtask -- protogen` and checked by CI.

mod decode;
mod encode;
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs, missing_debug_implementations)]
pub mod proto;

pub use decode::{decode, decode_all, decode_proto, decode_trees, LabelledTrees};
pub(crate) use decode::{decode_trees_in, group_tree};
pub use encode::{encode, encode_proto};
