//! pprof: round trips, a golden file from format version 1, and hostile input.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::Write;

use common::{foobar, sorted_samples, write};
use embers_formats::pprof::{self, proto};
use embers_formats::{read, read_with_limits, Format, FormatError, ReadLimits};
use embers_profile::{Frame, Labels, Profile, ProfileMeta, ValueType};
use prost::Message;

fn labelled_foobar() -> Profile {
    let mut p = Profile::new(ProfileMeta {
        time_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 10_000_000_000,
        ..ProfileMeta::sampled_at(100)
    });
    let module = Frame::at("<module>", "app.py", Some(40));
    let foo = Frame::at("foo", "app.py", Some(22));
    let bar = Frame {
        module: Some("libbar.so".into()),
        ..Frame::at("bar", "app.py", Some(26))
    };
    let work = Frame::at("work", "app.py", Some(17));
    let main = Labels::from_pairs([("thread", "MainThread"), ("pid", "42")]);
    let worker = Labels::from_pairs([("thread", "worker-1"), ("pid", "42")]);
    p.add_frames([&module, &foo, &work], main.clone(), 60);
    p.add_frames([&module, &foo, &work], worker, 15);
    p.add_frames([&module, &bar, &work], main, 25);
    p
}

#[test]
fn profile_round_trips_with_labels_modules_and_metadata() {
    let original = labelled_foobar();
    let back = read(&write(&original, Format::Pprof), None).unwrap();
    assert_eq!(sorted_samples(&back), sorted_samples(&original));
    assert_eq!(back.meta, original.meta);
}

#[test]
fn encoding_is_deterministic() {
    assert_eq!(
        write(&labelled_foobar(), Format::Pprof),
        write(&labelled_foobar(), Format::Pprof)
    );
}

/// Format compatibility: a file written by format version 1 of our encoder must keep
/// reading the same. Regenerate only on a deliberate format change (see the file's test).
#[test]
fn golden_v1_file_reads_the_same() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1-foobar.pb.gz");
    if std::env::var_os("EMBERS_REGENERATE_GOLDEN").is_some() {
        std::fs::write(path, write(&labelled_foobar(), Format::Pprof)).unwrap();
    }
    let bytes = std::fs::read(path).expect("golden file");
    let p = read(&bytes, None).unwrap();
    assert_eq!(p.total(), 100);
    assert_eq!(sorted_samples(&p), sorted_samples(&labelled_foobar()));
    assert_eq!(p.meta.period, 10_000_000);
    assert_eq!(p.meta.sample_type, ValueType::samples());
}

fn proto_with(edit: impl FnOnce(&mut proto::Profile)) -> Vec<u8> {
    let mut p = pprof::encode_proto(&foobar());
    edit(&mut p);
    p.encode_to_vec()
}

#[test]
fn several_sample_types_give_several_profiles() {
    let bytes = proto_with(|p| {
        let (cpu, ns) = (p.string_table.len() as i64, p.string_table.len() as i64 + 1);
        p.string_table
            .extend(["cpu".to_owned(), "nanoseconds".to_owned()]);
        p.sample_type.push(proto::ValueType {
            r#type: cpu,
            unit: ns,
        });
        for s in &mut p.sample {
            let v = s.value[0];
            s.value.push(v * 10_000_000);
        }
    });
    let all = pprof::decode_all(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].total(), 100);
    assert_eq!(all[1].total(), 1_000_000_000);
    // No default named: the last type, as go tool pprof does.
    let default = read(&bytes, Some(Format::Pprof)).unwrap();
    assert_eq!(
        default.meta.sample_type,
        ValueType::new("cpu", "nanoseconds")
    );
}

#[test]
fn inlined_lines_expand_into_frames() {
    let bytes = proto_with(|p| {
        // Make `work` appear inlined into `foo`'s location: lines innermost first.
        let work_fn = p.location.iter().find(|l| {
            let f = &p.function[(l.line[0].function_id - 1) as usize];
            p.string_table[f.name as usize] == "work"
        });
        let work_line = work_fn.unwrap().line[0];
        let foo = p
            .location
            .iter_mut()
            .find(|l| l.line[0].line == 22)
            .unwrap();
        foo.line.insert(0, work_line);
    });
    let prof = read(&bytes, Some(Format::Pprof)).unwrap();
    let deepest = prof.samples().iter().map(|s| s.stack.len()).max().unwrap();
    assert_eq!(deepest, 4, "<module>;foo;work(inlined);work");
}

#[test]
fn every_truncation_is_an_error_or_a_smaller_profile_never_a_panic() {
    let raw = pprof::encode_proto(&labelled_foobar()).encode_to_vec();
    for cut in 0..raw.len() {
        let _ = read(&raw[..cut], Some(Format::Pprof));
    }
    let gz = write(&labelled_foobar(), Format::Pprof);
    for cut in [2, 10, gz.len() / 2, gz.len() - 1] {
        let err = read(&gz[..cut], Some(Format::Pprof)).unwrap_err();
        assert!(
            matches!(err, FormatError::Malformed { .. }),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn a_gzip_bomb_is_refused_not_inflated() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() < 1 << 20,
        "64 MiB of zeros compress to {} bytes",
        bomb.len()
    );
    let limits = ReadLimits {
        max_decoded_bytes: 8 << 20,
        ..ReadLimits::default()
    };
    let err = read_with_limits(&bomb, Some(Format::Pprof), &limits).unwrap_err();
    assert!(matches!(err, FormatError::TooLarge { .. }), "{err}");
}

#[test]
fn out_of_range_indices_and_negative_values_are_named() {
    let bad_string = proto_with(|p| p.function[0].name = 9_999);
    let err = read(&bad_string, Some(Format::Pprof))
        .unwrap_err()
        .to_string();
    assert!(err.contains("string index 9999"), "{err}");

    let bad_location = proto_with(|p| p.sample[0].location_id[0] = 777);
    let err = read(&bad_location, Some(Format::Pprof))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown location 777"), "{err}");

    let negative = proto_with(|p| p.sample[0].value[0] = -5);
    let err = read(&negative, Some(Format::Pprof))
        .unwrap_err()
        .to_string();
    assert!(err.contains("negative value -5"), "{err}");

    let short = proto_with(|p| p.sample[0].value.clear());
    let err = read(&short, Some(Format::Pprof)).unwrap_err().to_string();
    assert!(err.contains("0 values for 1 sample types"), "{err}");
}
