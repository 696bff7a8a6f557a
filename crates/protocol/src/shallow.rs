//! Reading one call's top-level members without reading its arguments.
//!
//! A router needs `method` and the ids, never `data` or `params`, which can be
//! megabytes of numbers. [`parse_routing`] walks the top-level object and steps
//! over every other value by finding its end with `memchr` (bytes of strings
//! and brackets only), so its cost barely grows with the arguments. It does not
//! check that the skipped values are valid JSON: the service that reads them
//! does. Anything unusual at the top level (not an object, a syntax error, an
//! unexpected end) is handed to the full parser, so errors read exactly as
//! [`parse_body`] words them.
//!
//! For a valid body, the members read are those the full parser reads: the
//! bracket count that finds a value's end is exact outside strings, and strings
//! are skipped honouring escapes.
//!
//! [`parse_body`]: crate::parse_body

use serde_json::value::RawValue;

use crate::envelope::{self, Body, Wire};
use crate::error::RpcError;
use crate::limits::Limits;

/// Parses a single call for routing: its `params` are left unread (`None`).
///
/// Batches and bodies that are not a well-formed object at the top level take
/// the full path of [`crate::parse_body`], whose result is returned as is.
pub fn parse_routing<'a>(body: &'a [u8], limits: &Limits) -> Result<Body<'a>, RpcError> {
    limits.check_body_len(body.len())?;
    match scan(body) {
        Some(Ok(wire)) => Ok(Body::Single(envelope::parse_wire(wire))),
        Some(Err(duplicate)) => Ok(Body::Single(Err(duplicate))),
        None => envelope::parse_body(body, limits),
    }
}

/// The members of a top-level object, or `None` to let the full parser answer.
fn scan(body: &[u8]) -> Option<Result<Wire<'_>, envelope::Rejected<'_>>> {
    let mut s = Scanner { body, pos: 0 };
    s.skip_ws();
    s.eat(b'{')?;
    let mut wire = Wire::default();
    s.skip_ws();
    if s.eat(b'}').is_none() {
        loop {
            if let Err(rejected) = s.member(&mut wire)? {
                return Some(Err(rejected));
            }
            s.skip_ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    // Arguments were only marked present, to refuse a repeat: they stay unread.
    wire.forget_args();
    (s.pos == body.len()).then_some(Ok(wire))
}

struct Scanner<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.body.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Steps over `want` if it comes next.
    fn eat(&mut self, want: u8) -> Option<()> {
        (*self.body.get(self.pos)? == want).then(|| self.pos += 1)
    }

    fn skip_ws(&mut self) {
        while matches!(self.body.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Reads `"key": value` into `wire`; a repeated known key is refused as
    /// the full parser refuses it.
    fn member(&mut self, wire: &mut Wire<'a>) -> Option<Result<(), envelope::Rejected<'a>>> {
        self.skip_ws();
        let key = self.string()?;
        self.skip_ws();
        self.eat(b':')?;
        self.skip_ws();
        let name = key_name(key)?;
        let Some(slot) = wire.slot(&name) else {
            self.skip_value()?;
            return Some(Ok(()));
        };
        if slot.is_some() {
            return Some(Err(envelope::duplicate(&name)));
        }
        let start = self.pos;
        match name.as_ref() {
            // Arguments are stepped over, not read: the service reads them.
            "data" | "params" => {
                self.skip_value()?;
                *slot = Some(RawValue::NULL);
            }
            _ => {
                self.skip_value()?;
                let text = std::str::from_utf8(&self.body[start..self.pos]).ok()?;
                *slot = Some(serde_json::from_str(text).ok()?);
            }
        }
        Some(Ok(()))
    }

    /// Steps over a string, its quotes included, and returns its raw bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.eat(b'"')?;
        loop {
            // A backslash as the last byte steps past the end: `get` makes
            // that an unexpected end rather than a panic.
            let at = memchr::memchr2(b'"', b'\\', self.body.get(self.pos..)?)?;
            self.pos += at + 1;
            match self.body[self.pos - 1] {
                b'"' => return Some(&self.body[start..self.pos]),
                _ => self.pos += 1,
            }
        }
    }

    /// Steps over one value without checking what is inside it.
    fn skip_value(&mut self) -> Option<()> {
        match *self.body.get(self.pos)? {
            b'"' => self.string().map(drop),
            b'[' => self.skip_container(b'[', b']'),
            b'{' => self.skip_container(b'{', b'}'),
            _ => {
                let rest = &self.body[self.pos..];
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                self.pos += len;
                (len > 0).then_some(())
            }
        }
    }

    /// Steps over a container by counting its own brackets outside strings:
    /// in valid JSON the other kind of bracket is balanced within it.
    fn skip_container(&mut self, open: u8, close: u8) -> Option<()> {
        let mut depth = 0usize;
        loop {
            let at = memchr::memchr3(b'"', open, close, &self.body[self.pos..])?;
            self.pos += at;
            match self.body[self.pos] {
                b'"' => {
                    self.string()?;
                }
                b if b == open => {
                    depth += 1;
                    self.pos += 1;
                }
                _ => {
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
        }
    }
}

/// A key as text: borrowed unless it holds escapes.
fn key_name(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let text = std::str::from_utf8(raw).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    envelope::raw_str(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Flavor, Item};
    use crate::error::ErrorCode;

    fn single(body: &str) -> Item<'_> {
        match parse_routing(body.as_bytes(), &Limits::default()).expect("parses") {
            Body::Single(item) => item,
            Body::Batch(_) => panic!("not a batch"),
        }
    }

    fn full(body: &str) -> Item<'_> {
        match envelope::parse_body(body.as_bytes(), &Limits::default()).expect("parses") {
            Body::Single(item) => item,
            Body::Batch(_) => panic!("not a batch"),
        }
    }

    #[test]
    fn a_body_ending_inside_an_escape_is_a_parse_error_not_a_panic() {
        // Found by the `router` fuzz target: the escaped byte was skipped
        // past the end of the body, and the next search sliced out of range.
        for body in [
            r#"{"a\"#,
            r#"{"method":"calc.summ","data":"\"#,
            r#"{"method":"calc.summ","data":{"x":"\"#,
        ] {
            let err = parse_routing(body.as_bytes(), &Limits::default()).expect_err(body);
            assert_eq!(err.code, ErrorCode::ParseError, "{body}");
        }
    }

    #[test]
    fn members_after_the_arguments_are_read() {
        let body = r#" {"method":"calc.summ","data":{"args":[1,[2],"]\"}",{"a":"}"}]},
            "requestId":"5545abec-aab1-4efa-80ef-b3491cb4b6c5"} "#;
        let env = single(body).expect("valid");
        assert_eq!(env.method, "calc.summ");
        let id = env.request_id.expect("id");
        assert_eq!(id.as_str(), "5545abec-aab1-4efa-80ef-b3491cb4b6c5");
        assert!(env.flavor.is_native());
    }

    #[test]
    fn jsonrpc_ids_and_escaped_keys_match_the_full_parser() {
        for body in [
            r#"{"jsonrpc":"2.0","params":[1,2],"method":"calc.mult","id":7}"#,
            r#"{"jsonrpc":"2.0","method":"calc.mult"}"#,
            r#"{"jsonrpc":"1.0","method":"m","id":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":{}}"#,
            r#"{"meth\u006fd":"calc.summ","other":[{"x":null}],"data":null}"#,
            r#"{"method":5}"#,
            r#"{}"#,
        ] {
            let (shallow, full) = (single(body), full(body));
            assert_eq!(
                format!("{:?}", flavor(&shallow)),
                format!("{:?}", flavor(&full))
            );
            assert_eq!(
                shallow.as_ref().map(|e| e.method.clone()).ok(),
                full.as_ref().map(|e| e.method.clone()).ok(),
                "{body}"
            );
            assert_eq!(
                shallow.as_ref().err().map(|r| r.error.code),
                full.as_ref().err().map(|r| r.error.code),
                "{body}"
            );
        }
    }

    fn flavor<'a>(item: &Item<'a>) -> Flavor<'a> {
        match item {
            Ok(env) => env.flavor,
            Err(rejected) => rejected.flavor,
        }
    }

    #[test]
    fn a_repeated_member_is_refused_like_the_full_parser_does() {
        let body = r#"{"method":"calc.summ","method":"stats.mean"}"#;
        let rejected = single(body).expect_err("duplicate");
        assert_eq!(rejected.error.code, ErrorCode::InvalidRequest);
        assert_eq!(
            full(body).expect_err("duplicate").error.code,
            rejected.error.code
        );
    }

    #[test]
    fn top_level_errors_are_worded_by_the_full_parser() {
        for body in [
            "",
            "{",
            r#"{"method":"a""#,
            r#"{"method":"a"} x"#,
            r#"{"method":"a","data":[1,2"#,
            r#"{"method" "a"}"#,
            "[]",
            "5",
        ] {
            let shallow = parse_routing(body.as_bytes(), &Limits::default()).map(|_| ());
            let full = envelope::parse_body(body.as_bytes(), &Limits::default()).map(|_| ());
            assert_eq!(shallow.err(), full.err(), "{body:?}");
        }
    }

    #[test]
    fn arguments_are_not_read() {
        // Invalid inside `data`: the service that reads the arguments refuses it.
        let env = single(r#"{"method":"calc.summ","data":[1,,2 x]}"#).expect("routable");
        assert_eq!(env.service(), "calc");
        assert!(env.params.is_none());
    }
}
