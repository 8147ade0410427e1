//! Property tests: codec round trips and the laws of the tree algebra, on random profiles.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::sorted_samples;
use embers_formats::{read, read_with_limits, write, Format, ReadLimits, WriteOptions};
use embers_profile::{DiffTree, Frame, Labels, Profile, ProfileMeta, StackTree};
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    (0..12usize, 0..4usize, prop::option::of(1..200u32)).prop_map(|(f, file, line)| {
        Frame::at(format!("fn_{f}"), format!("pkg/mod_{file}.py"), line)
    })
}

fn profile() -> impl Strategy<Value = Profile> {
    let sample = (
        prop::collection::vec(frame(), 1..8),
        prop::option::of(0..3usize),
        1..1000u64,
    );
    prop::collection::vec(sample, 0..40).prop_map(|samples| {
        let mut p = Profile::new(ProfileMeta::sampled_at(100));
        for (frames, thread, value) in samples {
            let labels = match thread {
                Some(t) => Labels::from_pairs([("thread", format!("t{t}"))]),
                None => Labels::new(),
            };
            p.add_frames(&frames, labels, value);
        }
        p
    })
}

fn folded(p: &Profile) -> String {
    let mut out = Vec::new();
    write(p, Format::Folded, &WriteOptions::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn tree(p: &Profile) -> StackTree {
    p.tree()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pprof_round_trips(p in profile()) {
        let mut bytes = Vec::new();
        write(&p, Format::Pprof, &WriteOptions::default(), &mut bytes).unwrap();
        let back = read(&bytes, None).unwrap();
        prop_assert_eq!(sorted_samples(&back), sorted_samples(&p));
    }

    #[test]
    fn folded_to_pprof_to_folded_is_identical(p in profile()) {
        let text = folded(&p);
        let once = read(text.as_bytes(), Some(Format::Folded)).unwrap();
        let mut pb = Vec::new();
        write(&once, Format::Pprof, &WriteOptions::default(), &mut pb).unwrap();
        prop_assert_eq!(folded(&read(&pb, Some(Format::Pprof)).unwrap()), text);
    }

    #[test]
    fn merge_is_associative_and_commutative(a in profile(), b in profile(), c in profile()) {
        let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
        let mut ab_c = ta.clone();
        ab_c.merge(&tb);
        ab_c.merge(&tc);
        let mut bc = tb.clone();
        bc.merge(&tc);
        let mut a_bc = ta.clone();
        a_bc.merge(&bc);
        prop_assert_eq!(ab_c.to_sorted_stacks(), a_bc.to_sorted_stacks());
        let mut ba = tb.clone();
        ba.merge(&ta);
        let mut ab = ta.clone();
        ab.merge(&tb);
        prop_assert_eq!(ab.to_sorted_stacks(), ba.to_sorted_stacks());
        prop_assert_eq!(ab.total(), ta.total() + tb.total());
    }

    #[test]
    fn diff_with_itself_or_a_multiple_is_unchanged(p in profile(), k in 1..5u32) {
        let t = tree(&p);
        prop_assert!(DiffTree::new(&t, &t).is_unchanged());
        prop_assert!(DiffTree::new(&t, &t.scaled(f64::from(k))).is_unchanged());
    }

    #[test]
    fn truncation_keeps_the_total_and_the_budget(p in profile(), n in 1..30usize) {
        let t = tree(&p);
        let (cut, report) = t.truncated(n);
        prop_assert_eq!(cut.total(), t.total());
        let others = cut.to_sorted_stacks().iter()
            .filter(|(f, _)| f.last().is_some_and(embers_profile::is_other)).count();
        prop_assert!(cut.node_count() <= n + others);
        prop_assert_eq!(report.dropped_nodes, t.node_count().saturating_sub(n));
    }

    #[test]
    fn scaling_by_one_is_identity(p in profile()) {
        let t = tree(&p);
        prop_assert_eq!(t.scaled(1.0).to_sorted_stacks(), t.to_sorted_stacks());
    }

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = ReadLimits { max_decoded_bytes: 1 << 20, ..ReadLimits::default() };
        let _ = read_with_limits(&bytes, Some(Format::Pprof), &limits);
        let _ = read_with_limits(&bytes, Some(Format::Folded), &limits);
    }
}
