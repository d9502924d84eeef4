//! Exact rational numbers in lowest terms, on `num-bigint` integers.
//!
//! A small type of our own rather than `num-rational`: it reduces with a gcd that
//! has fast paths for the common cases (an integer operand, a machine-word
//! operand), where the binary gcd of `num-integer` would walk every bit of a large
//! numerator.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// A rational number `num / den` with `den > 0` and `gcd(num, den) = 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rational {
    num: BigInt,
    den: BigInt,
}

impl Rational {
    /// Zero.
    pub(crate) fn zero() -> Self {
        Self::from_int(BigInt::zero())
    }

    /// One.
    pub(crate) fn one() -> Self {
        Self::from_int(BigInt::one())
    }

    /// The integer `n`.
    pub(crate) fn from_int(n: BigInt) -> Self {
        Rational {
            num: n,
            den: BigInt::one(),
        }
    }

    /// A small integer.
    pub(crate) fn from_i64(n: i64) -> Self {
        Self::from_int(BigInt::from(n))
    }

    /// `num / den` in lowest terms, or `None` when `den` is zero.
    pub(crate) fn new(num: BigInt, den: BigInt) -> Option<Self> {
        if den.is_zero() {
            return None;
        }
        let (num, den) = if den.is_negative() {
            (-num, -den)
        } else {
            (num, den)
        };
        let g = gcd(&num, &den);
        if g.is_one() {
            Some(Rational { num, den })
        } else {
            Some(Rational {
                num: num / &g,
                den: den / g,
            })
        }
    }

    /// The numerator (carries the sign).
    pub(crate) fn num(&self) -> &BigInt {
        &self.num
    }

    /// The denominator (always positive).
    pub(crate) fn den(&self) -> &BigInt {
        &self.den
    }

    /// Whether this is zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.num.is_zero()
    }

    /// Whether this is an integer.
    pub(crate) fn is_integer(&self) -> bool {
        self.den.is_one()
    }

    /// Whether this is below zero.
    pub(crate) fn is_negative(&self) -> bool {
        self.num.is_negative()
    }

    /// The larger bit length of numerator and denominator.
    pub(crate) fn bits(&self) -> u64 {
        self.num.bits().max(self.den.bits())
    }

    /// `-self`.
    pub(crate) fn neg(&self) -> Self {
        Rational {
            num: -&self.num,
            den: self.den.clone(),
        }
    }

    /// `|self|`.
    pub(crate) fn abs(&self) -> Self {
        Rational {
            num: self.num.abs(),
            den: self.den.clone(),
        }
    }

    /// `self + other`.
    pub(crate) fn add(&self, other: &Self) -> Self {
        if self.is_integer() && other.is_integer() {
            return Self::from_int(&self.num + &other.num);
        }
        // Henrici's addition: reduce by the gcd of the denominators first, so the
        // final gcd runs on small numbers.
        let g = gcd(&self.den, &other.den);
        if g.is_one() {
            return Rational {
                num: &self.num * &other.den + &other.num * &self.den,
                den: &self.den * &other.den,
            };
        }
        let d1 = &self.den / &g;
        let d2 = &other.den / &g;
        let t = &self.num * &d2 + &other.num * &d1;
        let g2 = gcd(&t, &g);
        if g2.is_one() {
            Rational {
                num: t,
                den: d1 * &other.den,
            }
        } else {
            Rational {
                num: t / &g2,
                den: d1 * (&other.den / g2),
            }
        }
    }

    /// `self - other`.
    pub(crate) fn sub(&self, other: &Self) -> Self {
        self.add(&other.neg())
    }

    /// `self * other`.
    pub(crate) fn mul(&self, other: &Self) -> Self {
        if self.is_integer() && other.is_integer() {
            return Self::from_int(&self.num * &other.num);
        }
        let g1 = gcd(&self.num, &other.den);
        let g2 = gcd(&other.num, &self.den);
        Rational {
            num: (&self.num / &g1) * (&other.num / &g2),
            den: (&self.den / g2) * (&other.den / g1),
        }
    }

    /// `1 / self`, or `None` for zero.
    pub(crate) fn recip(&self) -> Option<Self> {
        if self.is_zero() {
            return None;
        }
        let (num, den) = if self.num.is_negative() {
            (-&self.den, -&self.num)
        } else {
            (self.den.clone(), self.num.clone())
        };
        Some(Rational { num, den })
    }

    /// `self / other`, or `None` when `other` is zero.
    pub(crate) fn div(&self, other: &Self) -> Option<Self> {
        other.recip().map(|r| self.mul(&r))
    }

    /// The largest integer `<= self`.
    pub(crate) fn floor(&self) -> BigInt {
        self.num.div_floor(&self.den)
    }

    /// The smallest integer `>= self`.
    pub(crate) fn ceil(&self) -> BigInt {
        -((-&self.num).div_floor(&self.den))
    }

    /// `self ^ exponent` for a machine-sized exponent (the caller bounds the size).
    pub(crate) fn pow(&self, exponent: u32) -> Self {
        // Powers of coprime numbers stay coprime: no reduction needed.
        Rational {
            num: self.num.pow(exponent),
            den: self.den.pow(exponent),
        }
    }

    /// `10^exponent` for an exponent of either sign (the caller bounds the size).
    pub(crate) fn pow10(exponent: i32) -> Self {
        let p = BigInt::from(10u32).pow(exponent.unsigned_abs());
        if exponent >= 0 {
            Self::from_int(p)
        } else {
            Rational {
                num: BigInt::one(),
                den: p,
            }
        }
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rational {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.den == other.den {
            return self.num.cmp(&other.num);
        }
        (&self.num * &other.den).cmp(&(&other.num * &self.den))
    }
}

/// `(m, e)` with `|x| ~= m * 2^e` and `m` in `[0.5, 1)` (or `(0, 0)` for zero).
fn leading_f64(x: &BigUint) -> (f64, i64) {
    let bits = x.bits();
    if bits == 0 {
        return (0.0, 0);
    }
    let shift = bits.saturating_sub(60);
    let top = (x >> shift).to_u64().unwrap_or(u64::MAX) as f64;
    let top_bits = bits - shift;
    (top / 2f64.powi(top_bits as i32), bits as i64)
}

/// `log2(x)` for a positive integer, accurate to about 1e-15 (for estimates only).
pub(crate) fn log2_approx(x: &BigUint) -> f64 {
    let (m, e) = leading_f64(x);
    if m == 0.0 {
        return f64::NEG_INFINITY;
    }
    m.log2() + e as f64
}

/// The greatest common divisor of `|a|` and `|b|` (`gcd(0, 0) = 0`).
pub(crate) fn gcd(a: &BigInt, b: &BigInt) -> BigInt {
    BigInt::from(gcd_unsigned(a.magnitude(), b.magnitude()))
}

fn gcd_unsigned(x: &BigUint, y: &BigUint) -> BigUint {
    let (mut a, mut b) = if x >= y {
        (x.clone(), y.clone())
    } else {
        (y.clone(), x.clone())
    };
    loop {
        if b.is_zero() {
            return a;
        }
        if let Some(small) = b.to_u64() {
            let rem = (&a % small).to_u64().unwrap_or(0);
            return BigUint::from(gcd_u64(small, rem));
        }
        if a.bits() > b.bits() + 32 {
            // One division removes the size difference in a single step.
            let r = &a % &b;
            a = b;
            b = r;
            continue;
        }
        return a.gcd(&b);
    }
}

fn gcd_u64(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let r = a % b;
        a = b;
        b = r;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> Rational {
        Rational::new(BigInt::from(n), BigInt::from(d)).expect("nonzero denominator in test")
    }

    #[test]
    fn new_reduces_and_normalizes_sign() {
        let r = q(6, -4);
        assert_eq!(r.num(), &BigInt::from(-3));
        assert_eq!(r.den(), &BigInt::from(2));
        assert!(Rational::new(BigInt::one(), BigInt::zero()).is_none());
    }

    #[test]
    fn arithmetic_is_exact_and_reduced() {
        assert_eq!(q(1, 6).add(&q(1, 3)), q(1, 2));
        assert_eq!(q(1, 10).add(&q(2, 10)), q(3, 10));
        assert_eq!(q(3, 4).sub(&q(3, 4)), Rational::zero());
        assert_eq!(q(2, 3).mul(&q(9, 4)), q(3, 2));
        assert_eq!(q(2, 3).div(&q(-4, 9)), Some(q(-3, 2)));
        assert_eq!(q(2, 3).div(&Rational::zero()), None);
        assert_eq!(q(-7, 2).floor(), BigInt::from(-4));
        assert_eq!(q(-7, 2).ceil(), BigInt::from(-3));
        assert_eq!(q(-2, 3).pow(3), q(-8, 27));
        assert!(q(1, 3) < q(1, 2));
        assert_eq!(Rational::pow10(-2), q(1, 100));
    }

    #[test]
    fn gcd_fast_paths_agree_with_the_binary_gcd() {
        let big = BigInt::from(3u32).pow(400) * BigInt::from(1_000_003u32);
        let other = BigInt::from(3u32).pow(250) * BigInt::from(7u32);
        assert_eq!(gcd(&big, &other), BigInt::from(3u32).pow(250));
        assert_eq!(gcd(&big, &BigInt::from(9u32)), BigInt::from(9u32));
        assert_eq!(gcd(&big, &BigInt::one()), BigInt::one());
        assert_eq!(gcd(&BigInt::zero(), &BigInt::from(-12)), BigInt::from(12));
        assert_eq!(gcd(&big, &other), big.gcd(&other));
    }

    #[test]
    fn log2_approx_is_close() {
        assert!((log2_approx(&BigUint::from(1024u32)) - 10.0).abs() < 1e-12);
        assert!((log2_approx(&BigUint::from(3u32)) - 3f64.log2()).abs() < 1e-12);
    }
}
