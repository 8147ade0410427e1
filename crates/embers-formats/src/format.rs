//! The list of formats and how a file's name or bytes pick one.

use std::path::Path;

/// A profile format Embers reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Folded/collapsed stacks (`a;b;c 12`): FlameGraph, Pyflame, py-spy `raw`. Read/write.
    Folded,
    /// pprof protobuf, gzipped or not. Read/write.
    Pprof,
    /// speedscope JSON. Write.
    Speedscope,
    /// Callgrind, for KCacheGrind and `callgrind_annotate`. Write.
    Callgrind,
    /// Chrome trace event JSON (Perfetto, chrome://tracing). Write.
    ChromeTrace,
    /// Interactive SVG flame graph. Write.
    Svg,
    /// Graphviz DOT call graph, as `pprof -dot`. Write.
    Dot,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 7] = [
        Format::Folded,
        Format::Pprof,
        Format::Speedscope,
        Format::Callgrind,
        Format::ChromeTrace,
        Format::Svg,
        Format::Dot,
    ];

    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope",
            Format::Callgrind => "callgrind",
            Format::ChromeTrace => "chrome",
            Format::Svg => "svg",
            Format::Dot => "dot",
        }
    }

    /// The format called `name` (also accepts common aliases such as `collapsed`, `raw`).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "folded" | "collapsed" | "raw" | "txt" => Format::Folded,
            "pprof" | "pb" | "pb.gz" => Format::Pprof,
            "speedscope" => Format::Speedscope,
            "callgrind" | "kcachegrind" => Format::Callgrind,
            "chrome" | "trace" | "chrometrace" | "perfetto" => Format::ChromeTrace,
            "svg" | "flamegraph" => Format::Svg,
            "dot" | "graphviz" | "gv" => Format::Dot,
            _ => return None,
        })
    }

    /// The format a file name implies: `.svg`, `.folded`/`.collapsed`/`.txt`,
    /// `.pb.gz`/`.pb`/`.pprof`, `.speedscope.json`, `.callgrind`/`callgrind.out.*`,
    /// `.trace.json`, `.dot`/`.gv`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let ends = |suffix: &str| name.ends_with(suffix);
        Some(if ends(".svg") {
            Format::Svg
        } else if ends(".folded") || ends(".collapsed") || ends(".txt") {
            Format::Folded
        } else if ends(".pb.gz") || ends(".pb") || ends(".pprof") || ends(".prof") {
            Format::Pprof
        } else if ends(".speedscope.json") || ends(".speedscope") {
            Format::Speedscope
        } else if ends(".callgrind") || name.starts_with("callgrind.out") {
            Format::Callgrind
        } else if ends(".trace.json") {
            Format::ChromeTrace
        } else if ends(".dot") || ends(".gv") {
            Format::Dot
        } else {
            return None;
        })
    }

    /// Whether [`crate::read`] accepts this format.
    pub fn can_read(self) -> bool {
        matches!(self, Format::Folded | Format::Pprof)
    }

    /// Guesses the format of `bytes`: gzip, or a protobuf whose first field is pprof's
    /// `sample_type` (field 1, length-delimited: byte 0x0a), is pprof; else folded.
    pub fn sniff(bytes: &[u8]) -> Format {
        match bytes {
            [0x1f, 0x8b, ..] => Format::Pprof,
            [0x0a, len, ..] if *len < 0x80 && !bytes.is_ascii() => Format::Pprof,
            _ => Format::Folded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        let p = |s: &str| Format::from_path(Path::new(s));
        assert_eq!(p("out.svg"), Some(Format::Svg));
        assert_eq!(p("cpu.pb.gz"), Some(Format::Pprof));
        assert_eq!(p("x.speedscope.json"), Some(Format::Speedscope));
        assert_eq!(p("callgrind.out.1234"), Some(Format::Callgrind));
        assert_eq!(p("a.trace.json"), Some(Format::ChromeTrace));
        assert_eq!(p("calls.dot"), Some(Format::Dot));
        assert_eq!(p("stacks.txt"), Some(Format::Folded));
        assert_eq!(p("profile.json"), None);
    }

    #[test]
    fn sniffing() {
        assert_eq!(Format::sniff(&[0x1f, 0x8b, 8, 0]), Format::Pprof);
        assert_eq!(Format::sniff(b"a;b 1\n"), Format::Folded);
    }
}
