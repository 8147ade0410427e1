//! A chunk's metadata event: the classes (event types and the types of their fields)
//! that say how every other byte of the chunk is laid out. Each field gets a [`Ty`] (how
//! its value is encoded) and a [`Role`] (what the converter wants from it, by name), so
//! reading an event is a walk over a small vector, not string comparisons.

use std::collections::HashMap;

use super::reader::{bad, Reader};
use crate::FormatError;

/// Elements nest root → metadata → class → field → annotation: a few levels. Deeper
/// nesting is refused (a hostile file cannot recurse the parser off its stack).
const MAX_ELEMENT_DEPTH: usize = 16;

/// How one value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// boolean, byte: one raw byte.
    Byte,
    /// short and char (2), int (4), long (8): compressed or big-endian.
    Int(u8),
    /// float (4), double (8): raw big-endian.
    Float(u8),
    String,
    /// A key into the constant pool of the class with this index.
    Pool(usize),
    /// The class's fields, inline.
    Inline(usize),
}

/// What the converter reads a field for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Other,
    StackTrace,
    State,
    ContextId,
    SpanId,
    SpanName,
    TlabSize,
    AllocationSize,
    Weight,
    Duration,
    Samples,
    Size,
    Name,
    Value,
    Frames,
    Truncated,
    Method,
    LineNumber,
    Type,
    Package,
    StringValue,
}

fn role(name: &str) -> Role {
    match name {
        "stackTrace" => Role::StackTrace,
        "state" => Role::State,
        "contextId" => Role::ContextId,
        "spanId" => Role::SpanId,
        "spanName" => Role::SpanName,
        "tlabSize" => Role::TlabSize,
        "allocationSize" => Role::AllocationSize,
        "weight" => Role::Weight,
        "duration" => Role::Duration,
        "samples" => Role::Samples,
        "size" => Role::Size,
        "name" => Role::Name,
        "value" => Role::Value,
        "frames" => Role::Frames,
        "truncated" => Role::Truncated,
        "method" => Role::Method,
        "lineNumber" => Role::LineNumber,
        "type" => Role::Type,
        "package" => Role::Package,
        "string" => Role::StringValue,
        _ => Role::Other,
    }
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) role: Role,
    pub(super) ty: Ty,
    pub(super) array: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Class {
    pub(super) name: String,
    /// Fields in encoding order, those that always encode to nothing left out.
    pub(super) fields: Vec<Field>,
}

/// The classes of one chunk.
#[derive(Debug, Default)]
pub(super) struct Types {
    pub(super) classes: Vec<Class>,
    by_id: HashMap<i64, usize>,
}

impl Types {
    pub(super) fn index(&self, id: i64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }
}

/// An element of the metadata tree, as raw string indices.
struct Element {
    name: usize,
    attributes: Vec<(usize, usize)>,
    children: Vec<Element>,
}

fn element(r: &mut Reader<'_>, strings: usize, depth: usize) -> Result<Element, FormatError> {
    if depth > MAX_ELEMENT_DEPTH {
        return Err(bad("metadata elements nest too deep"));
    }
    let index = |r: &mut Reader<'_>| -> Result<usize, FormatError> {
        usize::try_from(r.i32()?)
            .ok()
            .filter(|&i| i < strings)
            .ok_or_else(|| bad("a metadata string index is out of range"))
    };
    let name = index(r)?;
    let n = r.count()?;
    let mut attributes = Vec::with_capacity(n);
    for _ in 0..n {
        attributes.push((index(r)?, index(r)?));
    }
    let n = r.count()?;
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(element(r, strings, depth + 1)?);
    }
    Ok(Element {
        name,
        attributes,
        children,
    })
}

/// A field before types are resolved: (name, type id, constant pool, array).
type RawField = (String, i64, bool, bool);

/// Reads the metadata event at the reader's position.
pub(super) fn read(r: &mut Reader<'_>) -> Result<Types, FormatError> {
    let (start, limit) = (r.pos(), r.pos() + r.remaining());
    let size = r.i32()?;
    let end = usize::try_from(size)
        .ok()
        .and_then(|s| start.checked_add(s))
        .filter(|&e| e <= limit && size > 0)
        .ok_or_else(|| bad("the metadata event's size is out of range"))?;
    if r.i64()? != 0 {
        return Err(bad(
            "the metadata offset does not point at the metadata event",
        ));
    }
    r.i64()?; // start time
    r.i64()?; // duration
    r.i64()?; // metadata id
    let n = r.count()?;
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        strings.push(r.inline_string()?.into_owned());
    }
    let root = element(r, strings.len(), 0)?;
    if r.pos() > end {
        return Err(bad("the metadata event runs past its size"));
    }
    let s = |i: usize| strings[i].as_str();
    let mut raw: Vec<(i64, String, Vec<RawField>)> = Vec::new();
    let mut stack: Vec<&Element> = vec![&root];
    while let Some(e) = stack.pop() {
        if s(e.name) != "class" {
            stack.extend(e.children.iter().rev());
            continue;
        }
        let attr = |e: &Element, key: &str| {
            e.attributes
                .iter()
                .find(|&&(k, _)| s(k) == key)
                .map(|&(_, v)| s(v))
        };
        let id = attr(e, "id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| bad("a metadata class has no numeric id"))?;
        let name = attr(e, "name").unwrap_or_default().to_owned();
        let mut fields = Vec::new();
        for f in e.children.iter().filter(|c| s(c.name) == "field") {
            let ty = attr(f, "class")
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| bad(format!("a field of class {name} has no type")))?;
            fields.push((
                attr(f, "name").unwrap_or_default().to_owned(),
                ty,
                attr(f, "constantPool") == Some("true"),
                attr(f, "dimension").is_some_and(|d| d != "0"),
            ));
        }
        raw.push((id, name, fields));
    }
    resolve(raw)
}

pub(super) fn primitive(name: &str) -> Option<Ty> {
    Some(match name {
        "boolean" | "byte" => Ty::Byte,
        "short" | "char" => Ty::Int(2),
        "int" => Ty::Int(4),
        "long" => Ty::Int(8),
        "float" => Ty::Float(4),
        "double" => Ty::Float(8),
        "java.lang.String" => Ty::String,
        _ => return None,
    })
}

/// Resolves field types to class indices and leaves out fields that encode to nothing
/// (inline classes with no such fields, recursively), so that every field left takes
/// at least one byte: reading costs at most a few steps per byte of input.
fn resolve(raw: Vec<(i64, String, Vec<RawField>)>) -> Result<Types, FormatError> {
    let mut by_id = HashMap::with_capacity(raw.len());
    for (i, (id, _, _)) in raw.iter().enumerate() {
        if by_id.insert(*id, i).is_some() {
            return Err(bad(format!("metadata declares class {id} twice")));
        }
    }
    let index = |id: i64| {
        by_id
            .get(&id)
            .copied()
            .ok_or_else(|| bad(format!("a field has unknown type {id}")))
    };
    // Which classes encode to at least one byte: primitives, and classes with a field
    // that is an array, a pool key, or inline and non-empty (propagated backwards).
    let mut nonempty: Vec<bool> = raw.iter().map(|(_, n, _)| primitive(n).is_some()).collect();
    let mut inlined_by: Vec<Vec<usize>> = vec![Vec::new(); raw.len()];
    let mut work = Vec::new();
    for (i, (_, name, fields)) in raw.iter().enumerate() {
        if primitive(name).is_some() {
            work.push(i);
            continue;
        }
        for &(_, ty, pool, array) in fields {
            let t = index(ty)?;
            if pool || array {
                if !nonempty[i] {
                    nonempty[i] = true;
                    work.push(i);
                }
            } else {
                inlined_by[t].push(i);
            }
        }
    }
    while let Some(t) = work.pop() {
        for &user in &inlined_by[t] {
            if !nonempty[user] {
                nonempty[user] = true;
                work.push(user);
            }
        }
    }
    let mut classes = Vec::with_capacity(raw.len());
    for (_, name, fields) in &raw {
        let mut out = Vec::with_capacity(fields.len());
        for (field, ty, pool, array) in fields {
            let t = index(*ty)?;
            let encoded = if *pool {
                Ty::Pool(t)
            } else if let Some(p) = primitive(&raw[t].1) {
                p
            } else {
                Ty::Inline(t)
            };
            if !*pool && !*array && !nonempty[t] {
                continue;
            }
            out.push(Field {
                role: role(field),
                ty: encoded,
                array: *array,
            });
        }
        classes.push(Class {
            name: name.clone(),
            fields: out,
        });
    }
    Ok(Types { classes, by_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dd-trace-java's profiler writes the metadata event last: it ends where the chunk
    /// ends, which an off-by-the-size-field bound refused.
    #[test]
    fn a_metadata_event_that_ends_the_chunk_is_read() {
        let body = [0, 0, 0, 0, 1, 3, 4, b'r', b'o', b'o', b't', 0, 0, 0];
        let mut bytes = vec![body.len() as u8 + 1];
        bytes.extend_from_slice(&body);
        let types = read(&mut Reader::new(&bytes, true)).unwrap();
        assert!(types.classes.is_empty());
        bytes[0] += 1;
        assert!(read(&mut Reader::new(&bytes, true)).is_err());
    }
}
