//! Decimal renderings: exact decimals, repeating decimals, values rounded to a
//! number of significant digits, and short forms for messages.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, Zero};

use crate::rational::{Rational, log2_approx};
use crate::real::Ball;

/// An approximate result in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Approximation {
    /// The value correctly rounded to `digits` significant digits.
    Digits { text: String, digits: u32 },
    /// Zero is within the error bound: `|value| < 10^below`.
    NearZero { below: i64 },
    /// Not even one digit is certain: a midpoint and the error bound.
    Uncertain { text: String, bound: String },
}

/// A decimal in scientific form: `±d.ddd × 10^exp10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sci {
    negative: bool,
    /// The significant digits, first nonzero, trailing zeros removed.
    digits: String,
    exp10: i64,
}

fn pow10(k: u64) -> BigUint {
    BigUint::from(10u32).pow(u32::try_from(k).unwrap_or(u32::MAX))
}

/// Compares `num / den` with `10^k`.
fn cmp_pow10(num: &BigUint, den: &BigUint, k: i64) -> Ordering {
    if k >= 0 {
        num.cmp(&(den * pow10(k as u64)))
    } else {
        (num * pow10(k.unsigned_abs())).cmp(den)
    }
}

/// `floor(log10(num / den))` for positive `num`, `den`.
pub(crate) fn floor_log10(num: &BigUint, den: &BigUint) -> i64 {
    let estimate = (log2_approx(num) - log2_approx(den)) * std::f64::consts::LOG10_2;
    let mut k = estimate.floor() as i64;
    while cmp_pow10(num, den, k) == Ordering::Less {
        k -= 1;
    }
    while cmp_pow10(num, den, k + 1) != Ordering::Less {
        k += 1;
    }
    k
}

/// `q` rounded to `n` significant digits, halves away from zero; `None` for zero.
pub(crate) fn round_sig(q: &Rational, n: u32) -> Option<Sci> {
    if q.is_zero() {
        return None;
    }
    let num = q.num().magnitude();
    let den = q.den().magnitude();
    let mut k = floor_log10(num, den);
    let shift = i64::from(n) - 1 - k;
    let (a, b) = if shift >= 0 {
        (num * pow10(shift as u64), den.clone())
    } else {
        (num.clone(), den * pow10(shift.unsigned_abs()))
    };
    let mut m = (a * 2u32 + &b) / (b * 2u32);
    if m == pow10(u64::from(n)) {
        m = pow10(u64::from(n) - 1);
        k += 1;
    }
    let text = m.to_string();
    let digits = text.trim_end_matches('0');
    Some(Sci {
        negative: q.is_negative(),
        digits: if digits.is_empty() { "0" } else { digits }.to_string(),
        exp10: k,
    })
}

/// Plain notation for exponents in `-7 < k < plain_below`, else `d.ddde±k`.
pub(crate) fn render(s: &Sci, plain_below: i64) -> String {
    let d = &s.digits;
    let len = d.len() as i64;
    let k = s.exp10;
    let body = if k > -7 && k < plain_below.max(1) {
        if k >= 0 {
            let int_len = (k + 1) as usize;
            if d.len() > int_len {
                format!("{}.{}", &d[..int_len], &d[int_len..])
            } else {
                format!("{d}{}", "0".repeat(int_len - d.len()))
            }
        } else {
            format!("0.{}{d}", "0".repeat((-k - 1) as usize))
        }
    } else if len > 1 {
        format!("{}.{}e{k}", &d[..1], &d[1..])
    } else {
        format!("{d}e{k}")
    };
    if s.negative { format!("-{body}") } else { body }
}

/// `q` rounded to `n` significant digits, as text.
pub(crate) fn rounded(q: &Rational, n: u32) -> String {
    match round_sig(q, n) {
        Some(s) => render(&s, i64::from(n)),
        None => "0".to_string(),
    }
}

/// The exponents of 2 and 5 in `den` and whether nothing else divides it.
fn twos_and_fives(den: &BigUint) -> (u64, u64, bool) {
    let twos = den.trailing_zeros().unwrap_or(0);
    let mut rest: BigUint = den >> twos;
    let mut fives = 0u64;
    let chunk = BigUint::from(5u32.pow(13));
    loop {
        let (q, r) = rest.div_rem(&chunk);
        if !r.is_zero() {
            break;
        }
        rest = q;
        fives += 13;
    }
    let five = BigUint::from(5u32);
    loop {
        let (q, r) = rest.div_rem(&five);
        if !r.is_zero() {
            break;
        }
        rest = q;
        fives += 1;
    }
    (twos, fives, rest.is_one())
}

/// The exact decimal expansion of `q`, when it terminates.
pub(crate) fn exact_decimal(q: &Rational) -> Option<String> {
    if q.is_integer() {
        return Some(q.num().to_string());
    }
    let den = q.den().magnitude();
    let (twos, fives, terminates) = twos_and_fives(den);
    if !terminates {
        return None;
    }
    let places = twos.max(fives);
    let scaled = q.num().magnitude() * pow10(places) / den;
    let text = format!(
        "{:0>width$}",
        scaled.to_string(),
        width = places as usize + 1
    );
    let split = text.len() - places as usize;
    let sign = if q.is_negative() { "-" } else { "" };
    Some(format!("{sign}{}.{}", &text[..split], &text[split..]))
}

/// The repeating decimal of `q` with its repetend in parentheses, e.g.
/// `0.1(6)`, when it does not terminate and the digits before and in the
/// repetend number at most `max_digits`.
pub(crate) fn repeating_decimal(q: &Rational, max_digits: usize) -> Option<String> {
    if q.is_integer() {
        return None;
    }
    let den = q.den().magnitude();
    let (twos, fives, terminates) = twos_and_fives(den);
    let pre = twos.max(fives) as usize;
    if terminates || pre >= max_digits {
        return None;
    }
    let (int_part, mut r) = q.num().magnitude().div_rem(den);
    let mut text = String::new();
    let ten = BigUint::from(10u32);
    let next_digit = |r: &mut BigUint, text: &mut String| {
        let (d, rest) = (&*r * &ten).div_rem(den);
        text.push_str(&d.to_string());
        *r = rest;
    };
    for _ in 0..pre {
        next_digit(&mut r, &mut text);
    }
    let start = r.clone();
    let mut repetend = String::new();
    loop {
        next_digit(&mut r, &mut repetend);
        if r == start {
            break;
        }
        if pre + repetend.len() >= max_digits {
            return None;
        }
    }
    let sign = if q.is_negative() { "-" } else { "" };
    Some(format!("{sign}{int_part}.{text}({repetend})"))
}

/// The number of decimal digits of a nonzero integer.
pub(crate) fn decimal_digits(n: &BigInt) -> u64 {
    if n.is_zero() {
        return 1;
    }
    floor_log10(n.magnitude(), &BigUint::one()) as u64 + 1
}

/// The ball rounded to `n` significant digits, if both ends round alike.
pub(crate) fn round_ball(ball: &Ball, n: u32) -> Option<String> {
    if ball.is_point() {
        return Some(rounded(&ball.mid().to_rational(), n));
    }
    if ball.sign().is_none_or(|s| s == 0) {
        return None;
    }
    let lo = round_sig(&ball.lo().to_rational(), n);
    let hi = round_sig(&ball.hi().to_rational(), n);
    match (lo, hi) {
        (Some(a), Some(b)) if a == b => Some(render(&a, i64::from(n))),
        _ => None,
    }
}

/// The most that can be said of a ball whose `n` digits are not all certain.
pub(crate) fn best_effort(ball: &Ball, n: u32) -> Approximation {
    if ball.sign().is_none_or(|s| s == 0) {
        let top = ball.mid().abs().add(ball.rad()).to_rational();
        let below = match round_sig(&top, 1) {
            Some(s) => s.exp10 + 1,
            None => 0,
        };
        // A wide ball says nothing about the value being small.
        if below <= -i64::from(n) {
            return Approximation::NearZero { below };
        }
    } else {
        for d in (1..n).rev() {
            if let Some(text) = round_ball(ball, d) {
                return Approximation::Digits { text, digits: d };
            }
        }
    }
    Approximation::Uncertain {
        text: rounded(&ball.mid().to_rational(), 2),
        bound: bound_text(ball),
    }
}

/// A power of ten above the ball's radius, as text (`1e-30`).
pub(crate) fn bound_text(ball: &Ball) -> String {
    let rad = ball.rad().to_rational();
    match round_sig(&rad, 1) {
        Some(s) => format!("1e{}", s.exp10 + 1),
        None => "0".to_string(),
    }
}

/// A short rendering of a value for messages.
pub(crate) fn short(q: &Rational) -> String {
    if q.bits() <= 64 {
        if let Some(d) = exact_decimal(q)
            && d.len() <= 20
        {
            return d;
        }
        return format!("{}/{}", q.num(), q.den());
    }
    rounded(q, 6)
}

/// A short rendering of an integer for messages.
pub(crate) fn short_int(n: &BigInt) -> String {
    short(&Rational::from_int(n.clone()))
}

/// A short rendering of a large count.
pub(crate) fn short_float(x: f64) -> String {
    if x < 1e9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> Rational {
        Rational::new(BigInt::from(n), BigInt::from(d)).expect("nonzero denominator in test")
    }

    #[test]
    fn rounding_to_significant_digits() {
        assert_eq!(rounded(&q(1, 3), 15), "0.333333333333333");
        assert_eq!(rounded(&q(2, 3), 15), "0.666666666666667");
        assert_eq!(rounded(&q(-2, 3), 3), "-0.667");
        assert_eq!(rounded(&q(999_999, 1), 3), "1e6");
        assert_eq!(rounded(&q(123_456, 1), 15), "123456");
        assert_eq!(rounded(&q(1, 1_000_000_000), 15), "1e-9");
        assert_eq!(rounded(&q(1, 7_000), 4), "0.0001429");
        assert_eq!(
            rounded(&Rational::pow10(30).mul(&q(1, 7)), 15),
            "1.42857142857143e29"
        );
        assert_eq!(rounded(&Rational::zero(), 15), "0");
    }

    #[test]
    fn floor_log10_is_exact_at_powers_of_ten() {
        let one = BigUint::one();
        assert_eq!(floor_log10(&BigUint::from(1000u32), &one), 3);
        assert_eq!(floor_log10(&BigUint::from(999u32), &one), 2);
        assert_eq!(floor_log10(&one, &BigUint::from(1000u32)), -3);
        assert_eq!(floor_log10(&one, &BigUint::from(1001u32)), -4);
        assert_eq!(decimal_digits(&BigInt::from(10).pow(50)), 51);
    }

    #[test]
    fn exact_and_repeating_decimals() {
        assert_eq!(exact_decimal(&q(3, 10)).as_deref(), Some("0.3"));
        assert_eq!(exact_decimal(&q(-1, 8)).as_deref(), Some("-0.125"));
        assert_eq!(exact_decimal(&q(75, 2)).as_deref(), Some("37.5"));
        assert_eq!(exact_decimal(&q(1, 3)), None);
        assert_eq!(repeating_decimal(&q(1, 3), 60).as_deref(), Some("0.(3)"));
        assert_eq!(repeating_decimal(&q(1, 6), 60).as_deref(), Some("0.1(6)"));
        assert_eq!(
            repeating_decimal(&q(-22, 7), 60).as_deref(),
            Some("-3.(142857)")
        );
        assert_eq!(repeating_decimal(&q(1, 97), 60), None);
        assert_eq!(
            repeating_decimal(&q(1, 97), 100).map(|s| s.len()),
            Some(100)
        );
        assert_eq!(repeating_decimal(&q(1, 4), 60), None);
    }

    #[test]
    fn short_forms() {
        assert_eq!(short(&q(1, 2)), "0.5");
        assert_eq!(short(&q(1, 3)), "1/3");
        assert_eq!(short(&Rational::pow10(40)), "1e40");
        assert_eq!(short_float(1234.4), "1234");
        assert_eq!(short_float(1.234e10), "1.23e10");
    }
}
