//! A JSON scanner for venue messages: walks a message in place and hands out borrowed
//! slices of it, so that decoding a message allocates nothing.
//!
//! - **What it returns.** A [`Value`] is a kind and the raw bytes of the value: a string's
//!   contents between its quotes (escapes left as they are: the fields a decoder reads,
//!   prices, ids, symbols, never contain any), a number's token exactly as written (so
//!   `0.10000000` keeps its trailing zeros, which Kraken's checksum needs), an object's or
//!   array's text brackets included, to walk with [`Value::object`] or [`Value::array`].
//! - **Strictness.** Structure is checked where it is walked: brackets, strings, commas
//!   and colons of every container a decoder iterates, and the bracket nesting of the ones
//!   it skips. A malformed message is an [`Error`], never a panic and never an endless
//!   loop: every step moves forward, and nesting is bounded ([`MAX_DEPTH`]).
//! - **Cost.** Skipping a value is one pass over its bytes; reading a field of an object
//!   walks the object's fields before it. Messages are small; decoders read each object
//!   once, field by field, in a single `for` over [`Value::object`].

use thiserror::Error;

/// Deepest nesting a skipped value may have.
pub const MAX_DEPTH: usize = 64;

/// Why a message is not the JSON the decoder expected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The text ended inside a value.
    #[error("unexpected end of JSON")]
    Eof,
    /// A byte that cannot start or continue a value here, at this offset.
    #[error("unexpected byte at offset {0}")]
    Unexpected(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// What a [`Value`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string; the raw bytes are its contents without the quotes.
    Str,
    /// A number; the raw bytes are its token.
    Num,
    /// An object, braces included.
    Obj,
    /// An array, brackets included.
    Arr,
    /// `true`.
    True,
    /// `false`.
    False,
    /// `null`.
    Null,
}

/// One JSON value, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    /// What it is.
    pub kind: Kind,
    /// Its bytes (see [`Kind`] for what they cover).
    pub raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// The string's raw contents, or `None` when it is not a string.
    pub fn str(&self) -> Option<&'a [u8]> {
        (self.kind == Kind::Str).then_some(self.raw)
    }

    /// The text of a number or a string (venues quote numbers either way).
    pub fn text(&self) -> Option<&'a [u8]> {
        matches!(self.kind, Kind::Str | Kind::Num).then_some(self.raw)
    }

    /// A non-negative integer number (or a string holding one).
    pub fn u64(&self) -> Option<u64> {
        let text = self.text()?;
        if text.is_empty() || text.len() > 20 {
            return None;
        }
        let mut v: u64 = 0;
        for &c in text {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        Some(v)
    }

    /// `true` or `false`.
    pub fn bool(&self) -> Option<bool> {
        match self.kind {
            Kind::True => Some(true),
            Kind::False => Some(false),
            _ => None,
        }
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.kind == Kind::Null
    }

    /// The fields of an object; `None` when it is not one.
    pub fn object(&self) -> Option<Object<'a>> {
        (self.kind == Kind::Obj).then_some(Object {
            b: self.raw,
            i: 1,
            first: true,
            done: false,
        })
    }

    /// The elements of an array; `None` when it is not one.
    pub fn array(&self) -> Option<Array<'a>> {
        (self.kind == Kind::Arr).then_some(Array {
            b: self.raw,
            i: 1,
            first: true,
            done: false,
        })
    }
}

/// Parses a whole message: one value, with only whitespace around it.
///
/// An object or array message is not scanned here: its brackets are checked at both
/// ends and its inside as it is walked (one pass fewer than skipping it first).
pub fn parse(b: &[u8]) -> Result<Value<'_>, Error> {
    let start = skip_ws(b, 0);
    let mut end = b.len();
    while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    match (
        b.get(start),
        end.checked_sub(1).and_then(|last| b.get(last)),
    ) {
        (Some(b'{'), Some(b'}')) if end - start >= 2 => {
            return Ok(Value {
                kind: Kind::Obj,
                raw: &b[start..end],
            })
        }
        (Some(b'['), Some(b']')) if end - start >= 2 => {
            return Ok(Value {
                kind: Kind::Arr,
                raw: &b[start..end],
            })
        }
        _ => {}
    }
    let (value, after) = value_at(b, start)?;
    let after = skip_ws(b, after);
    if after != b.len() {
        return Err(Error::Unexpected(after));
    }
    Ok(value)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The value starting at `i` (no leading whitespace) and the offset just after it.
fn value_at(b: &[u8], i: usize) -> Result<(Value<'_>, usize), Error> {
    let Some(&c) = b.get(i) else {
        return Err(Error::Eof);
    };
    match c {
        b'"' => {
            let end = string_end(b, i + 1)?;
            Ok((
                Value {
                    kind: Kind::Str,
                    raw: &b[i + 1..end],
                },
                end + 1,
            ))
        }
        b'{' | b'[' => {
            let end = container_end(b, i)?;
            let kind = if c == b'{' { Kind::Obj } else { Kind::Arr };
            Ok((
                Value {
                    kind,
                    raw: &b[i..end],
                },
                end,
            ))
        }
        b'-' | b'0'..=b'9' => {
            let mut end = i + 1;
            while end < b.len() && matches!(b[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                end += 1;
            }
            Ok((
                Value {
                    kind: Kind::Num,
                    raw: &b[i..end],
                },
                end,
            ))
        }
        b't' => literal(b, i, b"true", Kind::True),
        b'f' => literal(b, i, b"false", Kind::False),
        b'n' => literal(b, i, b"null", Kind::Null),
        _ => Err(Error::Unexpected(i)),
    }
}

fn literal<'a>(
    b: &'a [u8],
    i: usize,
    word: &[u8],
    kind: Kind,
) -> Result<(Value<'a>, usize), Error> {
    let end = i + word.len();
    match b.get(i..end) {
        Some(w) if w == word => Ok((Value { kind, raw: w }, end)),
        Some(_) => Err(Error::Unexpected(i)),
        None => Err(Error::Eof),
    }
}

/// Offset of the closing quote of a string whose contents start at `i`.
fn string_end(b: &[u8], mut i: usize) -> Result<usize, Error> {
    loop {
        let rest = b.get(i..).ok_or(Error::Eof)?;
        let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err(Error::Eof);
        };
        i += at;
        if b[i] == b'"' {
            return Ok(i);
        }
        // A backslash escapes the next byte (for `\uXXXX` the rest are plain hex digits).
        i += 2;
    }
}

/// Offset just after the bracket closing the container opened at `i`.
fn container_end(b: &[u8], i: usize) -> Result<usize, Error> {
    // One bit per open container: set for an object, clear for an array.
    let mut objects: u64 = 0;
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => j = string_end(b, j + 1)?,
            c @ (b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                let bit = 1u64 << depth;
                objects = if c == b'{' {
                    objects | bit
                } else {
                    objects & !bit
                };
                depth += 1;
            }
            c @ (b'}' | b']') => {
                if depth == 0 || ((objects >> (depth - 1)) & 1 == 1) != (c == b'}') {
                    return Err(Error::Unexpected(j));
                }
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(Error::Eof)
}

/// The fields of an object, in order: `(key, value)`; an error ends the walk.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    b: &'a [u8],
    i: usize,
    first: bool,
    done: bool,
}

impl<'a> Object<'a> {
    fn step(&mut self) -> Result<Option<(&'a [u8], Value<'a>)>, Error> {
        let b = self.b;
        let mut i = skip_ws(b, self.i);
        match b.get(i) {
            None => return Err(Error::Eof),
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => i = skip_ws(b, i + 1),
            Some(_) if self.first => {}
            Some(_) => return Err(Error::Unexpected(i)),
        }
        self.first = false;
        if b.get(i) != Some(&b'"') {
            return Err(if i >= b.len() {
                Error::Eof
            } else {
                Error::Unexpected(i)
            });
        }
        let key_end = string_end(b, i + 1)?;
        let key = &b[i + 1..key_end];
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return Err(Error::Unexpected(i));
        }
        i = skip_ws(b, i + 1);
        let (value, end) = value_at(b, i)?;
        self.i = end;
        Ok(Some((key, value)))
    }

    /// The value of the first field named `key`, walking the object from its start.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value<'a>>, Error> {
        let mut fields = Object {
            b: self.b,
            i: 1,
            first: true,
            done: false,
        };
        while let Some((k, v)) = fields.step()? {
            if k == key {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for Object<'a> {
    type Item = Result<(&'a [u8], Value<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(field)) => Some(Ok(field)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The elements of an array, in order; an error ends the walk.
#[derive(Debug, Clone)]
pub struct Array<'a> {
    b: &'a [u8],
    i: usize,
    first: bool,
    done: bool,
}

impl<'a> Array<'a> {
    fn step(&mut self) -> Result<Option<Value<'a>>, Error> {
        let b = self.b;
        let mut i = skip_ws(b, self.i);
        match b.get(i) {
            None => return Err(Error::Eof),
            Some(b']') => return Ok(None),
            Some(b',') if !self.first => i = skip_ws(b, i + 1),
            Some(_) if self.first => {}
            Some(_) => return Err(Error::Unexpected(i)),
        }
        self.first = false;
        let (value, end) = value_at(b, i)?;
        self.i = end;
        Ok(Some(value))
    }
}

impl<'a> Iterator for Array<'a> {
    type Item = Result<Value<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(v)) => Some(Ok(v)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_objects_and_arrays_in_place() {
        let text = br#" {"a":"x\"y","b":[1, 2.50 ,{"c":null}],"B":true,"n":-0.10} "#;
        let v = parse(text).unwrap();
        let fields: Vec<(&[u8], Kind)> = v
            .object()
            .unwrap()
            .map(|f| f.map(|(k, v)| (k, v.kind)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            fields,
            [
                (&b"a"[..], Kind::Str),
                (b"b", Kind::Arr),
                (b"B", Kind::True),
                (b"n", Kind::Num)
            ]
        );
        let obj = v.object().unwrap();
        assert_eq!(obj.get(b"a").unwrap().unwrap().raw, br#"x\"y"#);
        assert_eq!(obj.get(b"n").unwrap().unwrap().raw, b"-0.10");
        let arr: Vec<&[u8]> = obj
            .get(b"b")
            .unwrap()
            .unwrap()
            .array()
            .unwrap()
            .map(|e| e.unwrap().raw)
            .collect();
        assert_eq!(arr, [&b"1"[..], b"2.50", br#"{"c":null}"#]);
        assert_eq!(obj.get(b"zz").unwrap(), None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: [&[u8]; 14] = [
            b"",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"[1,,2]",
            b"[1 2]",
            b"{\"a\":[1,2}",
            b"\"abc",
            b"\"ab\\",
            b"tru",
            b"{} x",
            b"{\"a\":[}",
        ];
        for case in cases {
            let walked = parse(case).and_then(|v| {
                if let Some(fields) = v.object() {
                    for f in fields {
                        let (_, v) = f?;
                        if let Some(elements) = v.array() {
                            for e in elements {
                                e?;
                            }
                        }
                    }
                }
                if let Some(elements) = v.array() {
                    for e in elements {
                        e?;
                    }
                }
                Ok(())
            });
            assert!(
                walked.is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(case)
            );
        }
        let deep = vec![b'['; MAX_DEPTH + 2];
        assert_eq!(
            parse(&deep).and_then(|v| v.array().unwrap().next().unwrap().map(|_| ())),
            Err(Error::TooDeep)
        );
    }

    #[test]
    fn reads_integers_exactly() {
        let v = parse(br#"{"id":18125794168470749634,"s":"42","neg":-1,"f":1.5}"#).unwrap();
        let o = v.object().unwrap();
        assert_eq!(
            o.get(b"id").unwrap().unwrap().u64(),
            Some(18_125_794_168_470_749_634)
        );
        assert_eq!(o.get(b"s").unwrap().unwrap().u64(), Some(42));
        assert_eq!(o.get(b"neg").unwrap().unwrap().u64(), None);
        assert_eq!(o.get(b"f").unwrap().unwrap().u64(), None);
    }
}
