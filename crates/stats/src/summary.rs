//! Summaries of a list of numbers.
//!
//! Every operation needs at least one number and says so with `invalid_params`.
//! `min`, `max` and `median` of an odd count return one of the inputs as given,
//! so integers stay exact; comparisons between two integers are exact too. The
//! mean is always a double; a mean that is not finite is `overflow`.

use std::cmp::Ordering;

use protocol::{ErrorCode, Number, RpcError};

/// Arithmetic mean, as a double.
pub fn mean(args: &[Number]) -> Result<Number, RpcError> {
    let n = non_empty(args, "mean")?.len() as f64;
    let mean = match ints(args) {
        // 2^63 times the argument limit stays far inside i128.
        Some(sum) => sum as f64 / n,
        // Dividing each term first keeps huge finite inputs from overflowing.
        None => args.iter().map(|a| a.as_f64() / n).sum(),
    };
    finite(mean)
}

/// The middle value; for an even count, the mean of the two middle ones.
pub fn median(args: &[Number]) -> Result<Number, RpcError> {
    let mut sorted = non_empty(args, "median")?.to_vec();
    sorted.sort_unstable_by(compare);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        return Ok(sorted[mid]);
    }
    midpoint(sorted[mid - 1], sorted[mid])
}

/// The smallest value.
pub fn min(args: &[Number]) -> Result<Number, RpcError> {
    let first = non_empty(args, "min")?[0];
    Ok(args.iter().copied().fold(
        first,
        |best, a| {
            if compare(&a, &best).is_lt() { a } else { best }
        },
    ))
}

/// The largest value.
pub fn max(args: &[Number]) -> Result<Number, RpcError> {
    let first = non_empty(args, "max")?[0];
    Ok(args.iter().copied().fold(
        first,
        |best, a| {
            if compare(&a, &best).is_gt() { a } else { best }
        },
    ))
}

fn non_empty<'a>(args: &'a [Number], op: &str) -> Result<&'a [Number], RpcError> {
    if args.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "stats.{op} needs at least one number"
        )));
    }
    Ok(args)
}

/// Exact between integers, IEEE-754 total order otherwise.
fn compare(a: &Number, b: &Number) -> Ordering {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x.cmp(y),
        _ => a.as_f64().total_cmp(&b.as_f64()),
    }
}

/// Mean of two numbers: an integer when both are and their sum is even.
fn midpoint(a: Number, b: Number) -> Result<Number, RpcError> {
    if let (Number::Int(x), Number::Int(y)) = (a, b) {
        let sum = i128::from(x) + i128::from(y);
        if sum % 2 == 0 {
            // Half the sum of two i64 lies between them, so it fits.
            return Ok(Number::Int((sum / 2) as i64));
        }
        return finite(sum as f64 / 2.0);
    }
    finite(a.as_f64() / 2.0 + b.as_f64() / 2.0)
}

/// The exact sum when every argument is an integer.
fn ints(args: &[Number]) -> Option<i128> {
    args.iter().try_fold(0i128, |sum, a| match a {
        Number::Int(i) => Some(sum + i128::from(*i)),
        Number::Float(_) => None,
    })
}

fn finite(f: f64) -> Result<Number, RpcError> {
    if !f.is_finite() {
        return Err(RpcError::new(
            ErrorCode::Overflow,
            "result is out of range of the number type",
        ));
    }
    Ok(Number::Float(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Number::{Float, Int};

    fn int(args: &[i64]) -> Vec<Number> {
        args.iter().map(|&i| Int(i)).collect()
    }

    #[test]
    fn empty_input_is_invalid_params_naming_the_operation() {
        for (op, f) in [("mean", mean as fn(&[Number]) -> _), ("median", median)] {
            let err = f(&[]).expect_err("empty");
            assert_eq!(err.code, ErrorCode::InvalidParams);
            assert!(err.message.contains(op), "{}", err.message);
        }
        assert_eq!(min(&[]).expect_err("empty").code, ErrorCode::InvalidParams);
        assert_eq!(max(&[]).expect_err("empty").code, ErrorCode::InvalidParams);
    }

    #[test]
    fn mean_is_a_double_and_exact_for_large_integers() {
        assert_eq!(mean(&int(&[1, 2, 3, 4])), Ok(Float(2.5)));
        assert_eq!(
            mean(&int(&[i64::MAX, i64::MAX])),
            Ok(Float(i64::MAX as f64))
        );
        assert_eq!(
            mean(&[Float(f64::MAX), Float(f64::MAX)]),
            Ok(Float(f64::MAX))
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&int(&[5, 1, 3])), Ok(Int(3)));
        assert_eq!(median(&int(&[4, 1, 3, 2])), Ok(Float(2.5)));
        assert_eq!(median(&int(&[1, 3])), Ok(Int(2)));
        assert_eq!(
            median(&int(&[i64::MAX, i64::MAX - 2])),
            Ok(Int(i64::MAX - 1))
        );
        assert_eq!(median(&[Float(0.5), Int(1), Float(2.5)]), Ok(Int(1)));
    }

    #[test]
    fn min_and_max_keep_integers_exact() {
        let args = [Int(i64::MAX), Int(i64::MAX - 1), Float(-0.5)];
        assert_eq!(min(&args), Ok(Float(-0.5)));
        assert_eq!(max(&args), Ok(Int(i64::MAX)));
        assert_eq!(min(&int(&[i64::MAX, i64::MAX - 1])), Ok(Int(i64::MAX - 1)));
    }

    #[test]
    fn service_names_its_methods() {
        let methods: Vec<String> = crate::service().methods().collect();
        assert_eq!(
            methods,
            ["stats.mean", "stats.median", "stats.min", "stats.max"]
        );
    }
}
