//! The profile model every Embers component shares.
//!
//! A [`Profile`] is a set of labelled stack samples over an interned [`SymbolTable`]; a
//! [`StackTree`] is the call tree built from them, with self and total values per node.
//! The tree algebra (merge, scale, diff, focus, sandwich, top-N, truncation, grouping by
//! function or line with [`Granularity`]) lives here so that the CLI, the store and the
//! query API compute the same answers.
//!
//! ```
//! use embers_profile::{Frame, Labels, Profile, ProfileMeta, SortBy};
//!
//! let mut profile = Profile::new(ProfileMeta::sampled_at(100));
//! let (main, foo, bar) = (Frame::named("main"), Frame::named("foo"), Frame::named("bar"));
//! profile.add_frames([&main, &foo], Labels::new(), 75);
//! profile.add_frames([&main, &bar], Labels::from_pairs([("thread", "worker")]), 25);
//!
//! let tree = profile.tree();
//! assert_eq!(tree.total(), 100);
//! let top = tree.top_functions(1, SortBy::SelfValue);
//! assert_eq!(top[0].frame.function, "foo");
//!
//! // Only the worker thread's samples:
//! let worker = profile.tree_where(|labels| labels.get("thread") == Some("worker"));
//! assert_eq!(worker.total(), 25);
//! ```

mod analysis;
mod cleanup;
mod diff;
mod frame;
mod granularity;
mod hash;
pub use hash::{FxHashMap, FxHasher};
mod labels;
mod profile;
mod tree;
mod truncate;

pub use analysis::{FunctionStat, Sandwich, SortBy};
pub use cleanup::{PathRules, RuleError};
pub use diff::{share_changes, DiffTree, ShareChange};
pub use frame::{Frame, FrameId, SymbolTable};
pub use granularity::Granularity;
pub use labels::{validate_name, LabelError, Labels, MAX_LABEL_LEN};
pub use profile::{Profile, ProfileMeta, Sample, ValueType};
pub use tree::{Children, NodeId, StackTree};
pub use truncate::{is_other, other_frame, Truncation, OTHER};
