//! A chunk's constant pools, kept only for what stacks and thread states need: symbols
//! and strings, packages, classes, methods, stack traces, thread states. Every kept entry
//! is spent from the request's budget ([`Bound::Locations`], frames from
//! [`Bound::StackFrames`], a stack deeper than [`Bound::StackDepth`] is refused).

use std::collections::HashMap;

use super::metadata::{primitive, Role, Ty, Types};
use super::reader::{bad, JStr, Reader, NAME};
use super::values::{fields, plain, scalar, skip, Scalar};
use crate::ingest::{Bound, Spend};
use crate::FormatError;

/// A method: its class and name (keys into the class and symbol pools).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Method {
    pub(super) class: i64,
    pub(super) name: i64,
}

/// A stack trace: its frames as `(method key, line)`, leaf first, in [`Pools::frames`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Stack {
    pub(super) start: usize,
    pub(super) end: usize,
}

#[derive(Debug, Default)]
pub(super) struct Pools {
    /// `jdk.types.Symbol` and `java.lang.String` entries, by (is a symbol, key).
    strings: HashMap<(bool, i64), String>,
    /// Symbols whose text is a key into the `java.lang.String` pool.
    symbol_refs: HashMap<i64, i64>,
    pub(super) classes: HashMap<i64, i64>,
    pub(super) methods: HashMap<i64, Method>,
    pub(super) stacks: HashMap<i64, Stack>,
    pub(super) frames: Vec<(i64, i32)>,
    states: HashMap<i64, String>,
}

/// What a pool of this class keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Symbol,
    String,
    Class,
    Method,
    StackTrace,
    ThreadState,
    Skipped,
}

fn kind(name: &str) -> Kind {
    match name {
        "jdk.types.Symbol" => Kind::Symbol,
        "java.lang.String" => Kind::String,
        "java.lang.Class" => Kind::Class,
        "jdk.types.Method" => Kind::Method,
        "jdk.types.StackTrace" => Kind::StackTrace,
        "jdk.types.ThreadState" => Kind::ThreadState,
        _ => Kind::Skipped,
    }
}

impl Pools {
    /// The text of a symbol (`symbol`) or a `java.lang.String` pool entry.
    pub(super) fn text(&self, symbol: bool, key: i64) -> Option<&str> {
        if let Some(s) = self.strings.get(&(symbol, key)) {
            return Some(s);
        }
        let referred = symbol.then(|| self.symbol_refs.get(&key)).flatten()?;
        self.strings.get(&(false, *referred)).map(String::as_str)
    }

    /// The name of a thread state (`STATE_RUNNABLE`, `STATE_SLEEPING`, …).
    pub(super) fn state(&self, key: i64) -> Option<&str> {
        self.states.get(&key).map(String::as_str)
    }

    /// An inline string, or the pool entry it refers to.
    pub(super) fn resolve(&self, s: &JStr<'_>) -> Option<String> {
        match s {
            JStr::Null => None,
            JStr::Inline(s) => Some(s.clone().into_owned()),
            JStr::Pool(k) => self.text(false, *k).map(str::to_owned),
        }
    }

    /// Reads one checkpoint event's pools (the reader is past the event's type id).
    pub(super) fn checkpoint(
        &mut self,
        r: &mut Reader<'_>,
        types: &Types,
        spend: &mut Spend<'_>,
    ) -> Result<(), FormatError> {
        r.i64()?; // start time
        r.i64()?; // duration
        r.i64()?; // delta to the previous checkpoint
        r.u8()?; // checkpoint kind (flush, chunk header, statics, thread)
        let pools = r.count()?;
        for _ in 0..pools {
            let id = r.i64()?;
            let class = types
                .index(id)
                .ok_or_else(|| bad(format!("a constant pool of unknown type {id}")))?;
            let kind = kind(&types.classes[class].name);
            let n = r.count()?;
            if kind != Kind::Skipped {
                spend.spend(NAME, Bound::Locations, n)?;
            }
            for _ in 0..n {
                let key = r.i64()?;
                self.entry(r, types, class, kind, key, spend)?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        r: &mut Reader<'_>,
        types: &Types,
        class: usize,
        kind: Kind,
        key: i64,
        spend: &mut Spend<'_>,
    ) -> Result<(), FormatError> {
        let c = &types.classes[class];
        match kind {
            Kind::Skipped => match primitive(&c.name) {
                Some(ty) => scalar(r, ty).map(drop),
                None => skip(r, types, Ty::Inline(class), false, 0),
            },
            Kind::String => {
                let s = r.string()?;
                if let JStr::Inline(s) = s {
                    spend.at_most(NAME, Bound::FrameLength, s.len())?;
                    self.strings.insert((false, key), s.into_owned());
                }
                Ok(())
            }
            Kind::Symbol => fields(r, types, c, |r, f| {
                if f.role != Role::StringValue {
                    return Ok(false);
                }
                match plain(r, f)? {
                    Some(Scalar::Str(JStr::Inline(s))) => {
                        spend.at_most(NAME, Bound::FrameLength, s.len())?;
                        self.strings.insert((true, key), s.into_owned());
                    }
                    Some(Scalar::Str(JStr::Pool(k))) => {
                        self.symbol_refs.insert(key, k);
                    }
                    Some(_) => {}
                    None => return Ok(false),
                }
                Ok(true)
            }),
            Kind::ThreadState => fields(r, types, c, |r, f| {
                if f.role != Role::Name {
                    return Ok(false);
                }
                let Some(Scalar::Str(s)) = plain(r, f)? else {
                    return Ok(false);
                };
                if let Some(s) = self.resolve(&s) {
                    self.states.insert(key, s);
                }
                Ok(true)
            }),
            Kind::Class => {
                let mut name = None;
                fields(r, types, c, |r, f| {
                    if f.role != Role::Name {
                        return Ok(false);
                    }
                    Ok(plain(r, f)?.map(|v| name = Some(v.int())).is_some())
                })?;
                if let Some(name) = name {
                    self.classes.insert(key, name);
                }
                Ok(())
            }
            Kind::Method => {
                let mut m = Method::default();
                fields(r, types, c, |r, f| {
                    let slot = match f.role {
                        Role::Type => &mut m.class,
                        Role::Name => &mut m.name,
                        _ => return Ok(false),
                    };
                    Ok(plain(r, f)?.map(|v| *slot = v.int()).is_some())
                })?;
                self.methods.insert(key, m);
                Ok(())
            }
            Kind::StackTrace => self.stack(r, types, c, key, spend),
        }
    }

    fn stack(
        &mut self,
        r: &mut Reader<'_>,
        types: &Types,
        c: &super::metadata::Class,
        key: i64,
        spend: &mut Spend<'_>,
    ) -> Result<(), FormatError> {
        let start = self.frames.len();
        let frames = &mut self.frames;
        fields(r, types, c, |r, f| {
            let (Role::Frames, true, Ty::Inline(frame)) = (f.role, f.array, f.ty) else {
                return Ok(false);
            };
            let n = r.count()?;
            spend.at_most(NAME, Bound::StackDepth, n)?;
            spend.spend(NAME, Bound::StackFrames, n)?;
            frames.reserve(n);
            for _ in 0..n {
                let (mut method, mut line) = (0, 0);
                fields(r, types, &types.classes[frame], |r, f| {
                    let value = match f.role {
                        Role::Method | Role::LineNumber => plain(r, f)?,
                        _ => return Ok(false),
                    };
                    let Some(v) = value else { return Ok(false) };
                    if f.role == Role::Method {
                        method = v.int();
                    } else {
                        line = i32::try_from(v.int()).unwrap_or(0);
                    }
                    Ok(true)
                })?;
                frames.push((method, line));
            }
            Ok(true)
        })?;
        let end = self.frames.len();
        self.stacks.insert(key, Stack { start, end });
        Ok(())
    }
}
