//! Frames and the symbol table that interns them.

use crate::hash::FxHashMap;
use std::fmt;

/// One stack frame: a function, and where it lives when that is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Frame {
    /// Function (or method) name as the runtime reports it.
    pub function: String,
    /// Source file, after path clean-up rules have run.
    pub file: Option<String>,
    /// Line within `file`; `None` when aggregating by function.
    pub line: Option<u32>,
    /// Module, package or shared object, when the sampler knows it.
    pub module: Option<String>,
}

impl Frame {
    /// A frame that only has a name, as FlameGraph's folded lines usually give.
    pub fn named(function: impl Into<String>) -> Self {
        Frame {
            function: function.into(),
            ..Frame::default()
        }
    }

    /// A frame with a function name, file and optional line.
    pub fn at(function: impl Into<String>, file: impl Into<String>, line: Option<u32>) -> Self {
        Frame {
            function: function.into(),
            file: Some(file.into()),
            line,
            module: None,
        }
    }

    /// The same frame without its line number, for `--function` aggregation.
    pub fn without_line(&self) -> Frame {
        Frame {
            line: None,
            ..self.clone()
        }
    }

    /// Parses the label written by [`Frame`]'s `Display`: `name (file:line)`, `name (file)`
    /// or a bare `name`. This is also py-spy's `raw` frame format, so folded files written
    /// by py-spy and Pyflame read back into frames with files and lines.
    pub fn parse_label(label: &str) -> Frame {
        if let Some(body) = label.strip_suffix(')') {
            if let Some(open) = body.rfind(" (") {
                let (function, location) = (&body[..open], &body[open + 2..]);
                if !function.is_empty() && !location.is_empty() && !location.contains('(') {
                    if let Some((file, line)) = location.rsplit_once(':') {
                        if let Ok(line) = line.parse::<u32>() {
                            return Frame::at(function, file, Some(line));
                        }
                    }
                    if looks_like_path(location) {
                        return Frame::at(function, location, None);
                    }
                }
            }
        }
        Frame::named(label)
    }
}

/// A location without a line is only taken as a file when it looks like one, so that a
/// name such as `call (native)` stays a plain name.
fn looks_like_path(s: &str) -> bool {
    s.contains('/')
        || s.contains('\\')
        || s.rsplit_once('.').is_some_and(|(_, ext)| {
            !ext.is_empty() && ext.len() <= 4 && ext.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{} ({}:{})", self.function, file, line),
            (Some(file), None) => write!(f, "{} ({})", self.function, file),
            (None, _) => f.write_str(&self.function),
        }
    }
}

/// Index of a frame in a [`SymbolTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u32);

/// Interns frames so that stacks are vectors of small integers.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    frames: Vec<Frame>,
    index: FxHashMap<Frame, FrameId>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `frame`, adding it if it is new.
    pub fn intern(&mut self, frame: &Frame) -> FrameId {
        if let Some(&id) = self.index.get(frame) {
            return id;
        }
        self.intern_owned(frame.clone())
    }

    /// Like [`SymbolTable::intern`], without cloning when the frame is new.
    pub fn intern_owned(&mut self, frame: Frame) -> FrameId {
        if let Some(&id) = self.index.get(&frame) {
            return id;
        }
        let id = FrameId(u32::try_from(self.frames.len()).expect("more than 2^32 frames"));
        self.frames.push(frame.clone());
        self.index.insert(frame, id);
        id
    }

    /// The frame behind `id`. Panics on an id from another table.
    pub fn get(&self, id: FrameId) -> &Frame {
        &self.frames[id.0 as usize]
    }

    /// The id of `frame` if it is interned.
    pub fn lookup(&self, frame: &Frame) -> Option<FrameId> {
        self.index.get(frame).copied()
    }

    /// Number of distinct frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the table holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// All frames in id order.
    pub fn iter(&self) -> impl Iterator<Item = (FrameId, &Frame)> {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (FrameId(i as u32), f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trips() {
        for label in [
            "foo (app.py:12)",
            "foo",
            "bar (lib/x.rb)",
            "<module> (a b.py:1)",
        ] {
            assert_eq!(Frame::parse_label(label).to_string(), label);
        }
        let f = Frame::parse_label("work (/srv/app.py:3)");
        assert_eq!(f.function, "work");
        assert_eq!(f.file.as_deref(), Some("/srv/app.py"));
        assert_eq!(f.line, Some(3));
    }

    #[test]
    fn parenthesised_names_stay_names() {
        assert_eq!(
            Frame::parse_label("call (native)"),
            Frame::named("call (native)")
        );
        assert_eq!(Frame::parse_label("f (x) (y)"), Frame::named("f (x) (y)"));
    }

    #[test]
    fn interning_is_stable() {
        let mut t = SymbolTable::new();
        let a = t.intern(&Frame::named("a"));
        let b = t.intern(&Frame::named("b"));
        assert_eq!(t.intern(&Frame::named("a")), a);
        assert_ne!(a, b);
        assert_eq!(t.get(b).function, "b");
    }
}
