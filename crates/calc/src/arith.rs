//! The arithmetic of calc.
//!
//! All-integer input is computed exactly in 64-bit signed integers: a result
//! that does not fit is `overflow`, never a wrapped or rounded number, and a
//! quotient that is not whole becomes a double (7 / 2 is 3.5). Once any
//! argument is a float, the whole call follows IEEE-754 doubles, and a result
//! that is not finite is `overflow`.

use protocol::{ErrorCode, Number, RpcError};

/// Sum of all arguments; 0 for none.
pub fn summ(args: &[Number]) -> Result<Number, RpcError> {
    match ints(args) {
        // 2^63 * the argument limit stays far inside i128.
        Some(ints) => narrow(ints.map(i128::from).sum()),
        None => finite(floats(args).sum()),
    }
}

/// The first argument minus every other one.
pub fn sub(args: &[Number]) -> Result<Number, RpcError> {
    let (first, rest) = split_first(args, "sub")?;
    match ints(args) {
        Some(_) => {
            let rest: i128 = ints(rest).into_iter().flatten().map(i128::from).sum();
            narrow(i128::from(first.to_i64_exact()) - rest)
        }
        None => finite(floats(rest).fold(first.as_f64(), |acc, x| acc - x)),
    }
}

/// Product of all arguments; 1 for none.
pub fn mult(args: &[Number]) -> Result<Number, RpcError> {
    let Some(ints) = ints(args) else {
        return finite(floats(args).product());
    };
    let ints: Vec<i64> = ints.collect();
    if ints.contains(&0) {
        return Ok(Number::Int(0));
    }
    let mut acc: i128 = 1;
    for x in ints {
        // |acc| <= 2^63 and |x| <= 2^63, so the product fits in i128. Every
        // factor has magnitude >= 1, so once |acc| passes 2^63 it never comes
        // back into range.
        acc *= i128::from(x);
        if acc.unsigned_abs() > 1u128 << 63 {
            return Err(overflow());
        }
    }
    narrow(acc)
}

/// The first argument divided by every other one, in order.
pub fn div(args: &[Number]) -> Result<Number, RpcError> {
    let (first, rest) = split_first(args, "div")?;
    if let Some(i) = rest.iter().position(|x| x.as_f64() == 0.0) {
        return Err(RpcError::new(
            ErrorCode::DivisionByZero,
            format!("argument {} is zero", i + 1),
        ));
    }
    match ints(args) {
        Some(_) => int_div(first.to_i64_exact(), rest),
        None => finite(floats(rest).fold(first.as_f64(), |acc, x| acc / x)),
    }
}

/// a0 / a1 / ... / an equals a0 / (a1 * ... * an): one exact division when
/// the product fits, so 12 / 2 / 3 stays the integer 2.
fn int_div(numerator: i64, divisors: &[Number]) -> Result<Number, RpcError> {
    let product = divisors.iter().try_fold(1i128, |acc, d| {
        acc.checked_mul(i128::from(d.to_i64_exact()))
    });
    let numerator_wide = i128::from(numerator);
    match product {
        Some(p) if numerator_wide % p == 0 => narrow(numerator_wide / p),
        Some(p) => finite(numerator as f64 / p as f64),
        None => finite(floats(divisors).fold(numerator as f64, |acc, x| acc / x)),
    }
}

fn split_first<'a>(args: &'a [Number], op: &str) -> Result<(Number, &'a [Number]), RpcError> {
    match args.split_first() {
        Some((first, rest)) => Ok((*first, rest)),
        None => Err(RpcError::invalid_params(format!(
            "{op} needs at least one argument"
        ))),
    }
}

/// The arguments as integers, or `None` when any of them is a float.
fn ints(args: &[Number]) -> Option<impl Iterator<Item = i64> + '_> {
    let all_int = args.iter().all(|a| matches!(a, Number::Int(_)));
    all_int.then(|| args.iter().map(|a| a.to_i64_exact()))
}

fn floats(args: &[Number]) -> impl Iterator<Item = f64> + '_ {
    args.iter().map(|a| a.as_f64())
}

fn narrow(wide: i128) -> Result<Number, RpcError> {
    i64::try_from(wide).map(Number::Int).map_err(|_| overflow())
}

fn finite(f: f64) -> Result<Number, RpcError> {
    match f.is_finite() {
        true => Ok(Number::Float(f)),
        false => Err(overflow()),
    }
}

fn overflow() -> RpcError {
    RpcError::new(
        ErrorCode::Overflow,
        "result is out of range of the number type",
    )
}

/// Integer view of an argument already known to be an integer.
trait ExactInt {
    fn to_i64_exact(self) -> i64;
}

impl ExactInt for Number {
    fn to_i64_exact(self) -> i64 {
        match self {
            Number::Int(i) => i,
            // Callers check `ints()` first; a float here would be a bug, and
            // truncation keeps it from being a panic.
            Number::Float(f) => f as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Number::{Float, Int};
    use proptest::prelude::*;

    fn int(args: &[i64]) -> Vec<Number> {
        args.iter().copied().map(Int).collect()
    }

    fn code(r: Result<Number, RpcError>) -> ErrorCode {
        r.expect_err("an error").code
    }

    #[test]
    fn seed_request() {
        assert_eq!(summ(&int(&[1, 5, -8, 156, -24])), Ok(Int(130)));
    }

    #[test]
    fn empty_argument_lists() {
        assert_eq!(summ(&[]), Ok(Int(0)));
        assert_eq!(mult(&[]), Ok(Int(1)));
        assert_eq!(code(sub(&[])), ErrorCode::InvalidParams);
        assert_eq!(code(div(&[])), ErrorCode::InvalidParams);
        assert_eq!(sub(&int(&[5])), Ok(Int(5)));
        assert_eq!(div(&int(&[5])), Ok(Int(5)));
    }

    #[test]
    fn integer_division_is_exact_when_whole() {
        assert_eq!(div(&int(&[6, 3])), Ok(Int(2)));
        assert_eq!(div(&int(&[7, 2])), Ok(Float(3.5)));
        assert_eq!(div(&int(&[12, 2, 3])), Ok(Int(2)));
        assert_eq!(div(&int(&[-7, 2])), Ok(Float(-3.5)));
    }

    #[test]
    fn division_by_zero_names_the_argument() {
        let err = div(&int(&[1, 2, 0])).expect_err("zero");
        assert_eq!(err.code, ErrorCode::DivisionByZero);
        assert_eq!(err.message, "argument 2 is zero");
        assert_eq!(
            code(div(&[Float(1.0), Float(-0.0)])),
            ErrorCode::DivisionByZero
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(code(summ(&int(&[i64::MAX, 1]))), ErrorCode::Overflow);
        assert_eq!(summ(&int(&[i64::MAX, 1, -1])), Ok(Int(i64::MAX)));
        assert_eq!(code(sub(&int(&[i64::MIN, 1]))), ErrorCode::Overflow);
        assert_eq!(code(mult(&int(&[i64::MAX, 2]))), ErrorCode::Overflow);
        assert_eq!(mult(&int(&[i64::MIN, -1, -1])), Ok(Int(i64::MIN)));
        assert_eq!(code(div(&int(&[i64::MIN, -1]))), ErrorCode::Overflow);
        assert_eq!(
            code(mult(&[Float(1e300), Float(1e300)])),
            ErrorCode::Overflow
        );
    }

    #[test]
    fn floats_follow_ieee() {
        assert_eq!(summ(&[Float(0.1), Float(0.2)]), Ok(Float(0.1 + 0.2)));
        assert_eq!(summ(&[Int(1), Float(0.5)]), Ok(Float(1.5)));
        assert_eq!(div(&[Float(1.0), Int(3)]), Ok(Float(1.0 / 3.0)));
    }

    #[test]
    fn a_quotient_that_is_not_whole_stays_a_double_even_when_it_rounds_whole() {
        // 393852864883883872 / -161 is not whole, but its nearest double is.
        let r = div(&int(&[393852864883883872, -23, 7])).expect("fits");
        assert!(
            matches!(r, Float(f) if (f + 2446291086235303.5).abs() <= 1.0),
            "{r:?}"
        );
    }

    #[test]
    fn zero_product_short_circuits_huge_factors() {
        assert_eq!(mult(&int(&[i64::MAX, i64::MAX, 0])), Ok(Int(0)));
    }

    fn reference_mult(args: &[i64]) -> Option<i64> {
        if args.contains(&0) {
            return Some(0);
        }
        let wide = args
            .iter()
            .try_fold(1i128, |acc, &x| acc.checked_mul(i128::from(x)))?;
        i64::try_from(wide).ok()
    }

    proptest! {
        #[test]
        fn integer_sum_is_exact(args in prop::collection::vec(any::<i64>(), 0..50)) {
            let wide: i128 = args.iter().map(|&x| i128::from(x)).sum();
            match i64::try_from(wide) {
                Ok(expected) => prop_assert_eq!(summ(&int(&args)), Ok(Int(expected))),
                Err(_) => prop_assert_eq!(code(summ(&int(&args))), ErrorCode::Overflow),
            }
        }

        #[test]
        fn integer_sub_is_exact(args in prop::collection::vec(any::<i64>(), 1..50)) {
            let wide = args[1..].iter().fold(i128::from(args[0]), |a, &x| a - i128::from(x));
            match i64::try_from(wide) {
                Ok(expected) => prop_assert_eq!(sub(&int(&args)), Ok(Int(expected))),
                Err(_) => prop_assert_eq!(code(sub(&int(&args))), ErrorCode::Overflow),
            }
        }

        #[test]
        fn integer_mult_is_exact(args in prop::collection::vec(
            prop_oneof![any::<i64>(), -1000i64..1000], 0..6)) {
            match reference_mult(&args) {
                Some(expected) => prop_assert_eq!(mult(&int(&args)), Ok(Int(expected))),
                None => prop_assert_eq!(code(mult(&int(&args))), ErrorCode::Overflow),
            }
        }

        #[test]
        fn integer_div_is_whole_exactly_when_divisible(
            a in any::<i64>(), divisors in prop::collection::vec(
                prop_oneof![any::<i64>(), -100i64..100].prop_filter("non-zero", |d| *d != 0), 1..4)) {
            let mut args = vec![a];
            args.extend(&divisors);
            match div(&int(&args)) {
                Ok(Int(q)) => {
                    let p = divisors.iter().try_fold(1i128, |acc, &d| acc.checked_mul(i128::from(d)));
                    prop_assert_eq!(Some(i128::from(q) * p.expect("fits when whole")), Some(i128::from(a)));
                }
                Ok(Float(f)) => {
                    let expected = divisors.iter().fold(a as f64, |acc, &d| acc / d as f64);
                    // A double answer means the exact quotient is not whole; the
                    // double itself may still print whole once rounded.
                    let p = divisors.iter().try_fold(1i128, |acc, &d| acc.checked_mul(i128::from(d)));
                    prop_assert!(p.is_none_or(|p| i128::from(a) % p != 0));
                    prop_assert!((f - expected).abs() <= expected.abs() * 1e-12 + f64::MIN_POSITIVE);
                }
                Err(e) => prop_assert_eq!(e.code, ErrorCode::Overflow),
            }
        }

        #[test]
        fn float_ops_match_ieee(args in prop::collection::vec(-1e6f64..1e6, 1..20)) {
            let nums: Vec<Number> = args.iter().copied().map(Float).collect();
            let sum = args.iter().sum::<f64>();
            prop_assert_eq!(summ(&nums), Ok(Float(sum)));
            let diff = args[1..].iter().fold(args[0], |a, x| a - x);
            prop_assert_eq!(sub(&nums), Ok(Float(diff)));
            let prod = args.iter().product::<f64>();
            prop_assert_eq!(mult(&nums), Ok(Float(prod)));
        }
    }
}
