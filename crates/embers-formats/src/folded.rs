//! Folded ("collapsed") stacks: one line per stack, frames root first joined by `;`, a
//! space, and a count. This is what FlameGraph's `stackcollapse-*`, Pyflame and py-spy's
//! `raw` output write. Frames rendered as `name (file:line)` read back with their file
//! and line.

use std::collections::HashMap;
use std::io::Write;

use embers_profile::{Frame, FrameId, Labels, Profile, ProfileMeta, StackTree};

use crate::{FormatError, ReadLimits};

const NAME: &str = "folded";

/// Parses folded stacks. Blank lines and `#` comments are skipped; identical stacks add up.
pub fn parse(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, FormatError> {
    if bytes.len() > limits.max_decoded_bytes {
        return Err(FormatError::TooLarge {
            format: NAME,
            what: "bytes",
            limit: limits.max_decoded_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        FormatError::malformed(NAME, format!("not UTF-8 text (byte {})", e.valid_up_to()))
    })?;
    let mut profile = Profile::new(ProfileMeta::default());
    let mut stack: Vec<FrameId> = Vec::new();
    // Labels repeat on almost every line: look them up by their text (borrowed from the
    // input) before parsing and interning them as frames.
    let mut by_label: HashMap<&str, FrameId> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |message: String| FormatError::Malformed {
            format: NAME,
            message,
            line: Some(i + 1),
        };
        let (frames, count) = line
            .rsplit_once(' ')
            .ok_or_else(|| at("expected `frame;frame;... COUNT`, found no count".into()))?;
        let count: u64 = count.parse().map_err(|_| {
            at(format!(
                "the count {count:?} is not a whole number of samples"
            ))
        })?;
        let frames = frames.trim_end();
        if frames
            .rsplit_once(' ')
            .is_some_and(|(_, c)| c.parse::<u64>().is_ok())
        {
            return Err(at(
                "two counts: this is differential input; give each side as its own file".into(),
            ));
        }
        if frames.is_empty() {
            return Err(at("a count with no stack".into()));
        }
        stack.clear();
        for label in frames.split(';') {
            let id = *by_label
                .entry(label)
                .or_insert_with(|| profile.symbols.intern_owned(Frame::parse_label(label)));
            stack.push(id);
        }
        if stack.len() > limits.max_stack_depth {
            return Err(FormatError::TooLarge {
                format: NAME,
                what: "frames in one stack",
                limit: limits.max_stack_depth,
            });
        }
        if profile.samples().len() >= limits.max_samples {
            return Err(FormatError::TooLarge {
                format: NAME,
                what: "distinct stacks",
                limit: limits.max_samples,
            });
        }
        profile.add(stack.clone(), Labels::new(), count);
    }
    Ok(profile)
}

/// Writes one line per distinct stack, sorted, labels dropped (folded has no labels).
pub fn write(profile: &Profile, out: &mut dyn Write) -> Result<(), FormatError> {
    write_tree(&profile.tree(), out)
}

/// Writes the stacks of a tree as sorted folded lines.
pub fn write_tree(tree: &StackTree, out: &mut dyn Write) -> Result<(), FormatError> {
    for line in lines(tree) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The folded lines of a tree, sorted, without trailing newlines.
pub fn lines(tree: &StackTree) -> Vec<String> {
    let symbols = tree.symbols();
    let mut lines = Vec::new();
    tree.for_each_stack(|stack, value| {
        if stack.is_empty() {
            return;
        }
        let mut line = String::new();
        for (i, &id) in stack.iter().enumerate() {
            if i > 0 {
                line.push(';');
            }
            // `;` separates frames and a newline ends the record: keep both out of names.
            let frame = symbols.get(id).to_string();
            line.push_str(&frame.replace([';', '\n', '\r'], "_"));
        }
        line.push(' ');
        line.push_str(&value.to_string());
        lines.push(line);
    });
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Profile, FormatError> {
        parse(s.as_bytes(), &ReadLimits::default())
    }

    #[test]
    fn reads_py_spy_raw_frames() {
        let p = parse_str(
            "<module> (app.py:10);foo (app.py:5) 3\n<module> (app.py:10);foo (app.py:5) 2\n",
        )
        .unwrap();
        assert_eq!(p.total(), 5);
        assert_eq!(p.samples().len(), 1);
        let leaf = p.symbols.get(*p.samples()[0].stack.last().unwrap());
        assert_eq!((leaf.function.as_str(), leaf.line), ("foo", Some(5)));
    }

    #[test]
    fn names_may_contain_spaces() {
        let p = parse_str("main;operator new(unsigned long) 7").unwrap();
        let mut out = Vec::new();
        write(&p, &mut out).unwrap();
        assert_eq!(out, b"main;operator new(unsigned long) 7\n");
    }

    #[test]
    fn missing_count_names_the_line() {
        let err = parse_str("a;b 1\n\na;b;c\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("no count"), "{err}");
        let err = parse_str("a;b x").unwrap_err().to_string();
        assert!(err.contains("not a whole number"), "{err}");
    }

    #[test]
    fn depth_limit() {
        let deep = ["f"; 10].join(";") + " 1";
        let limits = ReadLimits {
            max_stack_depth: 5,
            ..ReadLimits::default()
        };
        assert!(matches!(
            parse(deep.as_bytes(), &limits),
            Err(FormatError::TooLarge { .. })
        ));
    }
}
