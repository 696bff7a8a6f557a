//! Numeric arguments, read exactly.
//!
//! JSON does not say how wide a number is. We keep integers exact: an integer
//! literal is an `i64` or an error, never a silently rounded float. Anything
//! written with a fraction or an exponent is an IEEE-754 double.

use crate::error::{ErrorCode, RpcError};
use crate::limits::Limits;
use serde_json::value::RawValue;

/// One numeric argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer literal that fits in 64 signed bits.
    Int(i64),
    /// A literal with a fraction or an exponent.
    Float(f64),
}

impl Number {
    /// The value as a double (rounding large integers, as IEEE-754 does).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl serde::Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Number::Int(i) => s.serialize_i64(i),
            Number::Float(f) => s.serialize_f64(f),
        }
    }
}

/// Reads the argument list of a call.
///
/// `params` may be an array of numbers (`[1, 2]`) or an object holding one
/// (`{"args": [1, 2]}`); absent params mean no arguments. Each argument must
/// be a JSON number; the error names the index of the first one that is not.
pub fn parse_numbers(params: Option<&RawValue>, limits: &Limits) -> Result<Vec<Number>, RpcError> {
    let Some(params) = params else {
        return Ok(Vec::new());
    };
    let list = args_array(params)?;
    let raw: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|_| RpcError::invalid_params("args must be an array"))?;
    if raw.len() > limits.max_args {
        return Err(RpcError::new(
            ErrorCode::PayloadTooLarge,
            format!("{} arguments, the limit is {}", raw.len(), limits.max_args),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, arg)| parse_number(i, arg.get()))
        .collect()
}

/// Finds the argument array: `params` itself, or its `args` member.
fn args_array(params: &RawValue) -> Result<&RawValue, RpcError> {
    #[derive(serde::Deserialize)]
    struct Args<'a> {
        #[serde(borrow)]
        args: Option<&'a RawValue>,
    }

    match params.get().as_bytes().first() {
        Some(b'[') => Ok(params),
        Some(b'{') => {
            let obj: Args<'_> = serde_json::from_str(params.get())
                .map_err(|_| RpcError::invalid_params("params must hold an args array"))?;
            obj.args
                .ok_or_else(|| RpcError::invalid_params("args is missing"))
        }
        _ => Err(RpcError::invalid_params(
            "params must be an array of numbers or an object with args",
        )),
    }
}

/// Reads one argument from its raw JSON text.
fn parse_number(index: usize, text: &str) -> Result<Number, RpcError> {
    let is_number = matches!(text.as_bytes().first(), Some(b'-' | b'0'..=b'9'));
    if !is_number {
        return Err(RpcError::invalid_params(format!(
            "argument {index} is not a number"
        )));
    }
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return parse_float(index, text);
    }
    text.parse::<i64>().map(Number::Int).map_err(|_| {
        RpcError::new(
            ErrorCode::Overflow,
            format!("argument {index} does not fit in a signed 64-bit integer"),
        )
    })
}

fn parse_float(index: usize, text: &str) -> Result<Number, RpcError> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Number::Float(f)),
        _ => Err(RpcError::new(
            ErrorCode::Overflow,
            format!("argument {index} is out of the range of a double"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(params: &str) -> Result<Vec<Number>, RpcError> {
        let raw: &RawValue = serde_json::from_str(params).expect("json");
        parse_numbers(Some(raw), &Limits::default())
    }

    #[test]
    fn array_and_object_forms_agree() {
        let expected = vec![Number::Int(1), Number::Float(2.5), Number::Int(-3)];
        assert_eq!(numbers("[1, 2.5, -3]").expect("valid"), expected);
        assert_eq!(
            numbers(r#"{"args": [1, 2.5, -3]}"#).expect("valid"),
            expected
        );
    }

    #[test]
    fn non_numbers_name_their_index() {
        let err = numbers(r#"[1, "2", 3]"#).expect_err("string");
        assert_eq!(err.code, ErrorCode::InvalidParams);
        assert!(err.message.contains("argument 1"), "{}", err.message);
        for bad in ["[null]", "[true]", "[[1]]", "[{}]"] {
            assert_eq!(numbers(bad).expect_err(bad).code, ErrorCode::InvalidParams);
        }
    }

    #[test]
    fn integers_stay_exact_or_overflow() {
        assert_eq!(
            numbers("[9223372036854775807, -9223372036854775808]").expect("fits"),
            vec![Number::Int(i64::MAX), Number::Int(i64::MIN)]
        );
        let err = numbers("[1, 9223372036854775808]").expect_err("too big");
        assert_eq!(err.code, ErrorCode::Overflow);
        assert!(err.message.contains("argument 1"));
    }

    #[test]
    fn floats_out_of_range_overflow() {
        assert_eq!(
            numbers("[1e308]").expect("fits"),
            vec![Number::Float(1e308)]
        );
        let code = numbers("[1e400]").map(|_| ()).expect_err("inf").code;
        assert!(matches!(
            code,
            ErrorCode::Overflow | ErrorCode::InvalidParams
        ));
    }

    #[test]
    fn shapes_other_than_array_or_args_are_invalid_params() {
        for bad in ["5", r#""x""#, r#"{"argz": []}"#, r#"{"args": 5}"#] {
            assert_eq!(
                numbers(bad).expect_err(bad).code,
                ErrorCode::InvalidParams,
                "{bad}"
            );
        }
        assert_eq!(
            parse_numbers(None, &Limits::default()).expect("empty"),
            vec![]
        );
    }

    #[test]
    fn too_many_args_are_refused() {
        let limits = Limits {
            max_args: 2,
            ..Limits::default()
        };
        let raw: &RawValue = serde_json::from_str("[1,2,3]").expect("json");
        let err = parse_numbers(Some(raw), &limits).expect_err("limit");
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    }
}
