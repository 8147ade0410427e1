//! Walking the values of one class: the converter sees the fields it has a [`Role`] for
//! and everything else is skipped by type. Inline classes nest at most
//! [`MAX_INLINE_DEPTH`] deep (a class may contain itself in a hostile file).

use super::metadata::{Class, Field, Role, Ty, Types};
use super::reader::{bad, JStr, Reader};
use crate::FormatError;

const MAX_INLINE_DEPTH: usize = 16;

/// One scalar value a visitor asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    /// Integers, booleans, bytes and constant pool keys.
    Int(i64),
    Float(f64),
    Str(JStr<'a>),
}

impl Scalar<'_> {
    pub(super) fn int(&self) -> i64 {
        match self {
            Scalar::Int(v) => *v,
            Scalar::Float(f) => *f as i64,
            Scalar::Str(_) => 0,
        }
    }
}

/// Skips one value of `ty` (an array when `array`).
pub(super) fn skip(
    r: &mut Reader<'_>,
    types: &Types,
    ty: Ty,
    array: bool,
    depth: usize,
) -> Result<(), FormatError> {
    let n = if array { r.count()? } else { 1 };
    for _ in 0..n {
        match ty {
            Ty::Inline(c) => {
                if depth >= MAX_INLINE_DEPTH {
                    return Err(bad("inline values nest too deep"));
                }
                for f in &types.classes[c].fields {
                    skip(r, types, f.ty, f.array, depth + 1)?;
                }
            }
            other => {
                scalar(r, other)?;
            }
        }
    }
    Ok(())
}

/// Reads one non-array value that is not an inline class.
pub(super) fn scalar<'a>(r: &mut Reader<'a>, ty: Ty) -> Result<Scalar<'a>, FormatError> {
    Ok(match ty {
        Ty::Byte => Scalar::Int(i64::from(r.u8()?)),
        Ty::Int(w) => Scalar::Int(r.int(w)?),
        Ty::Float(4) => Scalar::Float(f64::from(f32::from_bits(r.be_u32()?))),
        Ty::Float(_) => Scalar::Float(f64::from_bits(r.be_i64()? as u64)),
        Ty::String => Scalar::Str(r.string()?),
        Ty::Pool(_) => Scalar::Int(r.i64()?),
        Ty::Inline(_) => return Err(bad("an inline value where a scalar was expected")),
    })
}

/// Visits the fields of one value of `class`: `visit` gets each field with a role
/// (other than [`Role::Other`]) and returns whether it consumed the value; what it did
/// not consume is skipped.
pub(super) fn fields<'a>(
    r: &mut Reader<'a>,
    types: &Types,
    class: &Class,
    mut visit: impl FnMut(&mut Reader<'a>, &Field) -> Result<bool, FormatError>,
) -> Result<(), FormatError> {
    for f in &class.fields {
        if f.role != Role::Other && visit(r, f)? {
            continue;
        }
        skip(r, types, f.ty, f.array, 0)?;
    }
    Ok(())
}

/// The scalar value of a field the visitor wants, if it is a plain scalar (not an
/// array or inline class): `None` leaves it to be skipped.
pub(super) fn plain<'a>(r: &mut Reader<'a>, f: &Field) -> Result<Option<Scalar<'a>>, FormatError> {
    if f.array || matches!(f.ty, Ty::Inline(_)) {
        return Ok(None);
    }
    scalar(r, f.ty).map(Some)
}
