//! Approximate real numbers with rigorous error bounds.
//!
//! An irrational value is a [`Ball`]: a binary floating-point midpoint and a radius
//! such that the true value lies in `[mid - rad, mid + rad]`. Every operation
//! rounds its midpoint to the working precision and widens the radius by at least
//! the error it makes, so the radius always bounds the real error. That lets the
//! calculator state how many digits it is sure of, notice when a comparison (a
//! floor, a sign test, a division) cannot be decided at the current precision, and
//! retry with more bits.
//!
//! The elementary functions work in fixed point (`BigInt` scaled by `2^w`) with a
//! few dozen guard bits; each states the bound on its error in units of `2^-w`.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

use crate::rational::Rational;

/// Mantissa bits kept in radii (rounded up).
const RAD_BITS: u64 = 30;

/// How to round a mantissa that has too many bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// To the nearest, ties away from zero.
    Nearest,
    /// Away from zero (for upper bounds of magnitudes).
    Up,
    /// Toward zero (for lower bounds of magnitudes).
    Down,
}

/// The number `man * 2^exp`, with trailing zero bits of `man` removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Float {
    man: BigInt,
    exp: i64,
}

impl Float {
    pub(crate) fn zero() -> Self {
        Float {
            man: BigInt::zero(),
            exp: 0,
        }
    }

    pub(crate) fn new(man: BigInt, exp: i64) -> Self {
        match man.trailing_zeros() {
            None => Self::zero(),
            Some(0) => Float { man, exp },
            Some(tz) => Float {
                man: man >> tz,
                exp: exp + tz as i64,
            },
        }
    }

    pub(crate) fn from_i64(v: i64) -> Self {
        Self::new(BigInt::from(v), 0)
    }

    /// `2^e`.
    pub(crate) fn pow2(e: i64) -> Self {
        Float {
            man: BigInt::one(),
            exp: e,
        }
    }

    /// `v * 2^-w` for a fixed-point value with `w` fractional bits.
    pub(crate) fn from_fixed(v: BigInt, w: u64) -> Self {
        Self::new(v, -(w as i64))
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.man.is_zero()
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.man.is_negative()
    }

    /// For a nonzero value, the `m` with `2^(m-1) <= |x| < 2^m`.
    pub(crate) fn mag(&self) -> i64 {
        self.exp + self.man.bits() as i64
    }

    pub(crate) fn neg(&self) -> Self {
        Float {
            man: -&self.man,
            exp: self.exp,
        }
    }

    pub(crate) fn abs(&self) -> Self {
        Float {
            man: self.man.abs(),
            exp: self.exp,
        }
    }

    /// The exact sum. Callers keep exponents within a few thousand bits of each
    /// other, which bounds the alignment shift.
    pub(crate) fn add(&self, other: &Self) -> Self {
        if self.is_zero() {
            return other.clone();
        }
        if other.is_zero() {
            return self.clone();
        }
        let e = self.exp.min(other.exp);
        let a = &self.man << ((self.exp - e) as u64);
        let b = &other.man << ((other.exp - e) as u64);
        Self::new(a + b, e)
    }

    /// The exact difference.
    pub(crate) fn sub(&self, other: &Self) -> Self {
        self.add(&other.neg())
    }

    /// The exact product.
    pub(crate) fn mul(&self, other: &Self) -> Self {
        Self::new(&self.man * &other.man, self.exp + other.exp)
    }

    /// `self / 2`.
    pub(crate) fn half(&self) -> Self {
        Float {
            man: self.man.clone(),
            exp: self.exp - 1,
        }
    }

    /// Compares values exactly.
    pub(crate) fn cmp_value(&self, other: &Self) -> Ordering {
        match (self.man.sign(), other.man.sign()) {
            (a, b) if a != b => return sign_rank(a).cmp(&sign_rank(b)),
            (Sign::NoSign, _) => return Ordering::Equal,
            _ => {}
        }
        // Same nonzero sign: compare magnitudes first.
        let by_mag = self.mag().cmp(&other.mag());
        let ord = if by_mag != Ordering::Equal {
            by_mag
        } else {
            let e = self.exp.min(other.exp);
            let a = self.man.magnitude() << ((self.exp - e) as u64);
            let b = other.man.magnitude() << ((other.exp - e) as u64);
            a.cmp(&b)
        };
        if self.is_negative() {
            ord.reverse()
        } else {
            ord
        }
    }

    /// Rounds the mantissa to at most `prec` bits.
    pub(crate) fn round(&self, prec: u64, mode: Round) -> Self {
        let bits = self.man.bits();
        if bits <= prec {
            return self.clone();
        }
        let shift = bits - prec;
        let mag = self.man.magnitude();
        let mut m: BigUint = mag >> shift;
        let bump = match mode {
            Round::Down => false,
            Round::Up => mag.trailing_zeros().unwrap_or(0) < shift,
            Round::Nearest => mag.bit(shift - 1),
        };
        if bump {
            m += 1u32;
        }
        Self::new(
            BigInt::from_biguint(self.man.sign(), m),
            self.exp + shift as i64,
        )
    }

    /// Rounds to nearest with `prec` bits; returns the value and a bound on the
    /// rounding error.
    pub(crate) fn round_nearest(&self, prec: u64) -> (Self, Self) {
        let bits = self.man.bits();
        if bits <= prec {
            return (self.clone(), Self::zero());
        }
        let shift = bits - prec;
        (
            self.round(prec, Round::Nearest),
            Self::pow2(self.exp + shift as i64 - 1),
        )
    }

    /// The exact value as a rational. The caller bounds the exponent.
    pub(crate) fn to_rational(&self) -> Rational {
        if self.exp >= 0 {
            Rational::from_int(&self.man << (self.exp as u64))
        } else {
            // An odd mantissa over a power of two is already in lowest terms.
            Rational::new(self.man.clone(), BigInt::one() << self.exp.unsigned_abs())
                .unwrap_or_else(Rational::zero)
        }
    }

    /// The largest integer `<= self`.
    pub(crate) fn floor(&self) -> BigInt {
        if self.exp >= 0 {
            &self.man << (self.exp as u64)
        } else {
            // Shifting a BigInt right rounds toward negative infinity.
            &self.man >> self.exp.unsigned_abs()
        }
    }

    /// `floor(self * 2^w)`: the value in fixed point with `w` fractional bits.
    pub(crate) fn to_fixed(&self, w: u64) -> BigInt {
        let e = self.exp + w as i64;
        if e >= 0 {
            &self.man << (e as u64)
        } else {
            &self.man >> e.unsigned_abs()
        }
    }

    /// An `f64` near this value (for heuristics only; saturates far outside range).
    pub(crate) fn to_f64_approx(&self) -> f64 {
        let bits = self.man.bits();
        let shift = bits.saturating_sub(60);
        let top = (self.man.magnitude() >> shift).to_f64().unwrap_or(0.0);
        let e = (self.exp + shift as i64).clamp(-3000, 3000) as i32;
        let v = top * 2f64.powi(e);
        if self.is_negative() { -v } else { v }
    }
}

fn sign_rank(s: Sign) -> i8 {
    match s {
        Sign::Minus => -1,
        Sign::NoSign => 0,
        Sign::Plus => 1,
    }
}

/// `|x|` rounded up to `RAD_BITS` bits.
fn up(x: &Float) -> Float {
    x.abs().round(RAD_BITS, Round::Up)
}

/// An upper bound of `a + b` for nonnegative `a`, `b`, with a short mantissa.
fn rad_add(a: &Float, b: &Float) -> Float {
    if a.is_zero() {
        return up(b);
    }
    if b.is_zero() {
        return up(a);
    }
    let (big, small) = if a.mag() >= b.mag() { (a, b) } else { (b, a) };
    if big.mag() - small.mag() > 2 * RAD_BITS as i64 {
        // `small` is below one unit of the rounded `big`: add that unit instead.
        let unit = Float::pow2(big.mag() - RAD_BITS as i64);
        return up(&up(big).add(&unit));
    }
    up(&big.add(small))
}

/// An upper bound of `a * b` for nonnegative `a`, `b`.
fn rad_mul(a: &Float, b: &Float) -> Float {
    up(&up(a).mul(&up(b)))
}

/// An upper bound of `a / b` for nonnegative `a` and positive `b`.
fn rad_div(a: &Float, b: &Float) -> Float {
    if a.is_zero() {
        return Float::zero();
    }
    let a = up(a);
    let b = b.abs().round(RAD_BITS, Round::Down);
    let s = RAD_BITS + 2 + b.man.bits();
    let q = (a.man.magnitude() << s) / b.man.magnitude() + 1u32;
    up(&Float::new(BigInt::from(q), a.exp - s as i64 - b.exp))
}

/// A lower bound of `a - b` for `a > b >= 0`, with a short mantissa.
fn sub_down(a: &Float, b: &Float) -> Float {
    if b.is_zero() {
        return a.round(RAD_BITS, Round::Down);
    }
    if a.mag() - b.mag() > 2 * RAD_BITS as i64 {
        let unit = Float::pow2(a.mag() - RAD_BITS as i64);
        return a.round(RAD_BITS, Round::Down).sub(&unit);
    }
    a.sub(b).round(RAD_BITS, Round::Down)
}

/// A real number known to lie in `[mid - rad, mid + rad]`.
#[derive(Clone, Debug)]
pub(crate) struct Ball {
    mid: Float,
    rad: Float,
}

impl Ball {
    /// An exactly known value.
    pub(crate) fn exact(x: Float) -> Self {
        Ball {
            mid: x,
            rad: Float::zero(),
        }
    }

    /// A ball with its midpoint rounded to `prec` bits (the rounding error is added
    /// to the radius), kept in a shape whose endpoints are cheap to form.
    pub(crate) fn new(mid: Float, rad: Float, prec: u64) -> Self {
        let (mut mid, err) = mid.round_nearest(prec);
        let mut rad = rad_add(&rad, &err);
        if !rad.is_zero() && !mid.is_zero() {
            let slack = 2 * prec as i64 + 64;
            if mid.mag() < rad.mag() - slack {
                // The midpoint is noise next to the radius: centre on zero.
                rad = rad_add(&rad, &mid.abs());
                mid = Float::zero();
            } else if rad.mag() < mid.mag() - slack {
                // A radius far below the precision: widen it (still a true bound).
                rad = Float::pow2(mid.mag() - slack);
            }
        }
        Ball { mid, rad }
    }

    /// The rational `q` to `prec` bits.
    pub(crate) fn from_rational(q: &Rational, prec: u64) -> Self {
        let num = q.num();
        let den = q.den();
        if num.is_zero() {
            return Self::exact(Float::zero());
        }
        if let Some(tz) = den.trailing_zeros()
            && den.bits() == tz + 1
            && num.bits() <= prec
        {
            // A dyadic rational that fits: exact.
            return Self::exact(Float::new(num.clone(), -(tz as i64)));
        }
        let s = (prec as i64 + 2 + den.bits() as i64 - num.bits() as i64).max(0) as u64;
        let quotient = (num << s) / den;
        let mid = Float::new(quotient, -(s as i64));
        // Truncating division: the error is below one unit of the quotient.
        Self::new(mid, Float::pow2(-(s as i64)), prec)
    }

    pub(crate) fn mid(&self) -> &Float {
        &self.mid
    }

    pub(crate) fn rad(&self) -> &Float {
        &self.rad
    }

    pub(crate) fn is_point(&self) -> bool {
        self.rad.is_zero()
    }

    /// The lower endpoint, exactly.
    pub(crate) fn lo(&self) -> Float {
        self.mid.sub(&self.rad)
    }

    /// The upper endpoint, exactly.
    pub(crate) fn hi(&self) -> Float {
        self.mid.add(&self.rad)
    }

    /// The sign if it is certain: -1, 0 (only for an exact zero) or 1.
    pub(crate) fn sign(&self) -> Option<i32> {
        if self.rad.is_zero() {
            return Some(sign_rank(self.mid.man.sign()) as i32);
        }
        if self.mid.abs().cmp_value(&self.rad) == Ordering::Greater {
            Some(if self.mid.is_negative() { -1 } else { 1 })
        } else {
            None
        }
    }

    /// The `m` with `max |x| < 2^m` over the ball (`i64::MIN` for an exact zero).
    pub(crate) fn mag_upper(&self) -> i64 {
        let m = rad_add(&self.mid.abs(), &self.rad);
        if m.is_zero() { i64::MIN } else { m.mag() }
    }

    /// The `m` with `min |x| >= 2^(m-1)` over the ball, when zero is not in it.
    pub(crate) fn mag_lower(&self) -> Option<i64> {
        if self.sign().is_none_or(|s| s == 0) {
            return None;
        }
        let m = sub_down(&self.mid.abs(), &self.rad);
        if m.is_zero() { None } else { Some(m.mag()) }
    }

    pub(crate) fn neg(&self) -> Self {
        Ball {
            mid: self.mid.neg(),
            rad: self.rad.clone(),
        }
    }

    pub(crate) fn abs(&self, prec: u64) -> Self {
        match self.sign() {
            Some(s) if s >= 0 => self.clone(),
            Some(_) => self.neg(),
            None => {
                // Zero is inside: the result is [0, max(|lo|, |hi|)].
                let top = rad_add(&self.mid.abs(), &self.rad);
                Self::new(top.half(), top.half(), prec)
            }
        }
    }

    pub(crate) fn add(&self, other: &Self, prec: u64) -> Self {
        let rad = rad_add(&self.rad, &other.rad);
        if self.mid.is_zero() || other.mid.is_zero() {
            let mid = if self.mid.is_zero() {
                &other.mid
            } else {
                &self.mid
            };
            return Self::new(mid.clone(), rad, prec);
        }
        let (big, small) = if self.mid.mag() >= other.mid.mag() {
            (&self.mid, &other.mid)
        } else {
            (&other.mid, &self.mid)
        };
        if big.mag() - small.mag() > prec as i64 + 4 {
            // The smaller midpoint is below the precision of the larger one.
            return Self::new(big.clone(), rad_add(&rad, &up(small)), prec);
        }
        Self::new(big.add(small), rad, prec)
    }

    pub(crate) fn mul(&self, other: &Self, prec: u64) -> Self {
        let mid = self.mid.mul(&other.mid);
        let rad = rad_add(
            &rad_add(
                &rad_mul(&self.mid, &other.rad),
                &rad_mul(&other.mid, &self.rad),
            ),
            &rad_mul(&self.rad, &other.rad),
        );
        Self::new(mid, rad, prec)
    }

    /// `self / other`, or `None` when zero lies in `other`.
    pub(crate) fn div(&self, other: &Self, prec: u64) -> Option<Self> {
        if other.sign().is_none_or(|s| s == 0) {
            return None;
        }
        let (q, q_err) = if self.mid.is_zero() {
            (Float::zero(), Float::zero())
        } else {
            let a = &self.mid;
            let b = &other.mid;
            let s = (prec as i64 + 2 + b.man.bits() as i64 - a.man.bits() as i64).max(0) as u64;
            let quotient = (&a.man << s) / &b.man;
            let e = a.exp - s as i64 - b.exp;
            (Float::new(quotient, e), Float::pow2(e))
        };
        let denominator = sub_down(&other.mid.abs(), &other.rad);
        let numerator = rad_add(&self.rad, &rad_mul(&rad_add(&q, &q_err), &other.rad));
        let rad = rad_add(&rad_div(&numerator, &denominator), &q_err);
        Some(Self::new(q, rad, prec))
    }

    /// The smallest ball (at `prec` bits) holding both balls.
    pub(crate) fn hull(&self, other: &Self, prec: u64) -> Self {
        let (alo, ahi, blo, bhi) = (self.lo(), self.hi(), other.lo(), other.hi());
        let lo = if alo.cmp_value(&blo) == Ordering::Less {
            alo
        } else {
            blo
        };
        let hi = if ahi.cmp_value(&bhi) == Ordering::Greater {
            ahi
        } else {
            bhi
        };
        let mid = lo.add(&hi).half();
        let rad = up(&hi.sub(&lo).half());
        Self::new(mid, rad, prec)
    }

    /// The ball with its radius grown by `extra`.
    pub(crate) fn widen(&self, extra: &Float, prec: u64) -> Self {
        Self::new(self.mid.clone(), rad_add(&self.rad, extra), prec)
    }

    /// `self * 2^k`, exactly.
    pub(crate) fn mul_pow2(&self, k: i64) -> Self {
        Ball {
            mid: Float::new(self.mid.man.clone(), self.mid.exp + k),
            rad: Float::new(self.rad.man.clone(), self.rad.exp + k),
        }
    }
}

/// Cached constants in fixed point for one evaluation.
#[derive(Default)]
pub(crate) struct Consts {
    pi: Option<(u64, BigInt)>,
    ln2: Option<(u64, BigInt)>,
}

impl Consts {
    /// `pi * 2^w` within 2 units.
    pub(crate) fn pi(&mut self, w: u64) -> BigInt {
        cached(&mut self.pi, w, |w| {
            // Machin: pi = 16 atan(1/5) - 4 atan(1/239). The sums err by about
            // 8w + 22 units at the working width; the guard bits absorb that.
            let g = bits_of(8 * w + 22) + 1;
            let wg = w + g;
            let v = atan_inv(5, wg) * 16u32 - atan_inv(239, wg) * 4u32;
            v >> g
        })
    }

    /// `ln(2) * 2^w` within 2 units.
    pub(crate) fn ln2(&mut self, w: u64) -> BigInt {
        cached(&mut self.ln2, w, |w| {
            // ln 2 = 2 atanh(1/3); the sum errs by about 1.4w + 3 units.
            let g = bits_of(2 * w + 4) + 1;
            let wg = w + g;
            (atanh_inv(3, wg) * 2u32) >> g
        })
    }
}

/// A constant at `w` bits from the cache, computing it at `w` if the cache is
/// narrower. Shifting a value with error 2 units right keeps the error within 2.
fn cached(slot: &mut Option<(u64, BigInt)>, w: u64, make: impl Fn(u64) -> BigInt) -> BigInt {
    if let Some((cw, v)) = slot
        && *cw >= w
    {
        return &*v >> (*cw - w);
    }
    let v = make(w);
    *slot = Some((w, v.clone()));
    v
}

/// `atan(1/n) * 2^w`, erring by at most about 2.1 units per term.
fn atan_inv(n: u32, w: u64) -> BigInt {
    inverse_series(n, w, true)
}

/// `atanh(1/n) * 2^w`, erring by at most about 2.1 units per term.
fn atanh_inv(n: u32, w: u64) -> BigInt {
    inverse_series(n, w, false)
}

fn inverse_series(n: u32, w: u64, alternating: bool) -> BigInt {
    let n2 = BigInt::from(n) * n;
    let mut power: BigInt = (BigInt::one() << w) / n;
    let mut sum = BigInt::zero();
    let mut k: u32 = 0;
    while !power.is_zero() {
        let term = &power / (2 * k + 1);
        if alternating && k % 2 == 1 {
            sum -= term;
        } else {
            sum += term;
        }
        power /= &n2;
        k += 1;
    }
    sum
}

/// The number of bits of `v`.
pub(crate) fn bits_of(v: u64) -> u64 {
    u64::from(u64::BITS - v.leading_zeros())
}

/// A radius of `units * 2^-w`.
fn units(count: u64, w: u64) -> Float {
    Float::new(BigInt::from(count), -(w as i64))
}

/// Why `exp` could not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpRange {
    /// The result is above `2^max_bits`.
    Overflow,
    /// The result is below `2^-max_bits`.
    Underflow,
}

/// `exp(x)` at precision `prec`, for a result within `2^+-max_bits`.
pub(crate) fn exp_point(
    x: &Float,
    prec: u64,
    max_bits: u64,
    consts: &mut Consts,
) -> Result<Ball, ExpRange> {
    if x.is_zero() {
        return Ok(Ball::exact(Float::from_i64(1)));
    }
    let range_err = if x.is_negative() {
        ExpRange::Underflow
    } else {
        ExpRange::Overflow
    };
    if x.mag() > 40 {
        return Err(range_err);
    }
    let n_f = (x.to_f64_approx() * std::f64::consts::LOG2_E).round();
    if n_f.abs() > max_bits as f64 + 2.0 {
        return Err(range_err);
    }
    let n = n_f as i64;
    // x = n ln2 + r with |r| <= ln2/2 (a little more if n_f is off by one), then
    // exp(r) = exp(r / 2^k)^(2^k) with a short Taylor series.
    let k = 8u64.max((prec as f64).sqrt() as u64 / 2);
    let w = prec + k + 2 * bits_of(prec + 64) + 16;
    let nb = bits_of(n.unsigned_abs());
    let w2 = w + nb + 4;
    // |x*2^w2 - X| < 1 and |n (ln2 2^w2 - L)| <= 2|n|: r errs by < 2^(-w-2).
    let big_x = x.to_fixed(w2);
    let r = (big_x - consts.ln2(w2) * n) >> (w2 - w);
    // y = r / 2^k errs by < 2 units of 2^-w.
    let y = r >> k;
    let one = BigInt::one() << w;
    let mut term = one.clone();
    let mut sum = one;
    let mut i: u64 = 1;
    while i <= w {
        term = ((&term * &y) >> w) / i;
        if term.is_zero() {
            break;
        }
        sum += &term;
        i += 1;
    }
    // The sum errs by < 2T + 6 units, relatively (sum > 0.8) < 2.5T + 8; each
    // squaring doubles the relative error and adds < 1.25 units.
    for _ in 0..k {
        sum = (&sum * &sum) >> w;
    }
    let mid = Float::new(sum, n - w as i64);
    let rel = units(3 * i + 11, w - k);
    let rad = rad_mul(&mid, &rel);
    Ok(Ball::new(mid, rad, prec))
}

/// `ln(x)` at precision `prec` for `x > 0`.
pub(crate) fn ln_point(x: &Float, prec: u64, consts: &mut Consts) -> Ball {
    let one = Float::from_i64(1);
    let d = x.sub(&one);
    if d.is_zero() {
        return Ball::exact(Float::zero());
    }
    // Near 1 the result is small: add bits so its relative precision holds.
    let extra = (-d.mag()).max(0) as u64;
    let base = prec + extra;
    let w = base + 16 + 2 * bits_of(base);
    // x = m 2^e with m in [0.7, 1.4).
    let mut e = x.mag();
    let mut m = Float::new(x.man.clone(), x.exp - e).to_fixed(w);
    let unit = BigInt::one() << w;
    if &m * 10u32 < &unit * 7u32 {
        m <<= 1u32;
        e -= 1;
    }
    // ln m = 2 atanh(z), z = (m - 1)/(m + 1), |z| < 0.18; z errs by < 2 units.
    // The series runs on |z| so that truncation moves every term toward zero.
    let z = ((&m - &unit) << w) / (&m + &unit);
    let negative = z.is_negative();
    let z = z.abs();
    let z2 = (&z * &z) >> w;
    let mut sum = z.clone();
    let mut t = z;
    let mut i: u64 = 1;
    while i <= w {
        t = (&t * &z2) >> w;
        if t.is_zero() {
            break;
        }
        sum += &t / (2 * i + 1);
        i += 1;
    }
    let mut v = if negative {
        -(sum << 1u32)
    } else {
        sum << 1u32
    };
    if e != 0 {
        let eb = bits_of(e.unsigned_abs()) + 2;
        v += (consts.ln2(w + eb) * e) >> eb;
    }
    // 2 (2 + 4T + 1) for the series, 3 for the ln 2 term.
    let rad = units(8 * i + 10, w);
    Ball::new(Float::from_fixed(v, w), rad, prec)
}

/// `atan(x)` at precision `prec`.
pub(crate) fn atan_point(x: &Float, prec: u64, consts: &mut Consts) -> Ball {
    if x.is_zero() {
        return Ball::exact(Float::zero());
    }
    const MAX_HALVINGS: u64 = 8;
    let a = x.abs();
    let extra = (-a.mag()).max(0) as u64;
    let base = prec + extra;
    let w = base + 24 + MAX_HALVINGS + 2 * bits_of(base);
    let one = BigInt::one() << w;
    let fixed = a.to_fixed(w);
    let invert = fixed > one;
    // t = min(a, 1/a) errs by < 2 units.
    let mut t = if invert {
        (BigInt::one() << (2 * w)) / &fixed
    } else {
        fixed
    };
    // atan(t) = 2 atan(t / (1 + sqrt(1 + t^2))): halve until t < 2^-8 (at most 8
    // times for t <= 1); each step adds < 3 units.
    let threshold = BigInt::one() << (w - 8);
    let mut halvings: u64 = 0;
    while t > threshold && halvings < MAX_HALVINGS {
        let t2 = (&t * &t) >> w;
        let s = ((&one + t2) << w).sqrt();
        t = (&t << w) / (&one + s);
        halvings += 1;
    }
    let t2 = (&t * &t) >> w;
    let mut sum = t.clone();
    let mut p = t;
    let mut i: u64 = 1;
    while i <= w {
        p = (&p * &t2) >> w;
        if p.is_zero() {
            break;
        }
        let term = &p / (2 * i + 1);
        if i % 2 == 1 {
            sum -= term;
        } else {
            sum += term;
        }
        i += 1;
    }
    let mut v = sum << halvings;
    let mut err = (3 * halvings + 2 * i + 3) << halvings;
    if invert {
        v = consts.pi(w - 1) - v;
        err += 2;
    }
    if x.is_negative() {
        v = -v;
    }
    Ball::new(Float::from_fixed(v, w), units(err, w), prec)
}

/// `(sin(x), cos(x))` at precision `prec`.
pub(crate) fn sin_cos_point(x: &Float, prec: u64, consts: &mut Consts) -> (Ball, Ball) {
    if x.is_zero() {
        return (Ball::exact(Float::zero()), Ball::exact(Float::from_i64(1)));
    }
    let w = prec + 24 + 2 * bits_of(prec);
    let m = x.mag().max(0) as u64;
    // Reduce by multiples of pi/2 with enough bits that k * (pi/2) errs by
    // < 2^(-w-3).
    let wr = w + m + 4;
    let big_x = x.to_fixed(wr);
    let half_pi = consts.pi(wr - 1);
    let k = (&big_x * 2u32 + &half_pi).div_floor(&(&half_pi * 2u32));
    let r = (big_x - &k * &half_pi) >> (wr - w);
    let r2 = (&r * &r) >> w;
    let one = BigInt::one() << w;
    let mut sin = r.clone();
    let mut term = r;
    let mut i: u64 = 1;
    while i <= w {
        term = -((&term * &r2) >> w) / ((2 * i) * (2 * i + 1));
        if term.is_zero() {
            break;
        }
        sin += &term;
        i += 1;
    }
    let mut cos = one.clone();
    let mut term = one;
    let mut j: u64 = 1;
    while j <= w {
        term = -((&term * &r2) >> w) / ((2 * j - 1) * (2 * j));
        if term.is_zero() {
            break;
        }
        cos += &term;
        j += 1;
    }
    let rad = units(2 * i.max(j) + 5, w);
    let quadrant = k.mod_floor(&BigInt::from(4)).to_u8().unwrap_or(0);
    let (s, c) = match quadrant {
        0 => (sin, cos),
        1 => (cos, -sin),
        2 => (-sin, -cos),
        _ => (-cos, sin),
    };
    (
        Ball::new(Float::from_fixed(s, w), rad.clone(), prec),
        Ball::new(Float::from_fixed(c, w), rad, prec),
    )
}

/// `sqrt(x)` at precision `prec` for `x >= 0`.
pub(crate) fn sqrt_point(x: &Float, prec: u64) -> Ball {
    root_point(x, prec, 2)
}

/// `cbrt(x)` at precision `prec`.
pub(crate) fn cbrt_point(x: &Float, prec: u64) -> Ball {
    root_point(x, prec, 3)
}

fn root_point(x: &Float, prec: u64, n: u32) -> Ball {
    if x.is_zero() {
        return Ball::exact(Float::zero());
    }
    let want = u64::from(n) * (prec + 2);
    let mut s = want.saturating_sub(x.man.bits());
    let rem = (x.exp - s as i64).rem_euclid(i64::from(n)) as u64;
    s += rem;
    let scaled: BigUint = x.man.magnitude() << s;
    let root = BigInt::from(scaled.nth_root(n));
    let e = (x.exp - s as i64) / i64::from(n);
    let root = if x.is_negative() { -root } else { root };
    // The integer root truncates: the error is below one unit.
    Ball::new(Float::new(root, e), Float::pow2(e), prec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(v: f64) -> Float {
        let (m, e) = frexp(v);
        Float::new(BigInt::from(m), e)
    }

    fn frexp(v: f64) -> (i64, i64) {
        let bits = v.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i64;
        let man = (bits & ((1 << 52) - 1)) as i64 | (1 << 52);
        let man = if v < 0.0 { -man } else { man };
        (man, exp - 1075)
    }

    fn approx(b: &Ball) -> f64 {
        b.mid().to_f64_approx()
    }

    fn contains(b: &Ball, expected: f64, tolerance: f64) -> bool {
        let lo = b.lo().to_f64_approx();
        let hi = b.hi().to_f64_approx();
        lo - tolerance <= expected && expected <= hi + tolerance
    }

    #[test]
    fn ball_arithmetic_tracks_its_error() {
        let third = Ball::from_rational(
            &Rational::new(BigInt::from(1), BigInt::from(3)).expect("3 is nonzero"),
            64,
        );
        assert!(!third.is_point());
        let one = third.add(&third, 64).add(&third, 64);
        assert!(contains(&one, 1.0, 0.0));
        let nine = Ball::exact(Float::from_i64(9));
        let q = nine.div(&third, 64).expect("1/3 is not near zero");
        assert!((approx(&q) - 27.0).abs() < 1e-12);
        let zero = third.add(&third.neg(), 64);
        assert_eq!(zero.sign(), None);
        assert!(nine.div(&zero, 64).is_none());
        assert_eq!(Ball::exact(Float::from_i64(-2)).sign(), Some(-1));
    }

    #[test]
    fn elementary_functions_match_f64() {
        let mut c = Consts::default();
        let p = 80;
        for v in [-7.25, -1.0, -0.3, 1e-9, 0.5, 1.0, 2.0, 10.0, 123.456] {
            let e = exp_point(&f(v), p, 4096, &mut c).expect("in range");
            assert!((approx(&e) / v.exp() - 1.0).abs() < 1e-14, "exp {v}");
            assert!(contains(&e, v.exp(), v.exp() * 1e-15));
            let (s, co) = sin_cos_point(&f(v), p, &mut c);
            assert!((approx(&s) - v.sin()).abs() < 1e-14, "sin {v}");
            assert!((approx(&co) - v.cos()).abs() < 1e-14, "cos {v}");
            let a = atan_point(&f(v), p, &mut c);
            assert!((approx(&a) - v.atan()).abs() < 1e-14, "atan {v}");
            let cb = cbrt_point(&f(v), p);
            assert!((approx(&cb) - v.cbrt()).abs() < 1e-14, "cbrt {v}");
            if v > 0.0 {
                let l = ln_point(&f(v), p, &mut c);
                assert!((approx(&l) - v.ln()).abs() < 1e-14, "ln {v}");
                let s = sqrt_point(&f(v), p);
                assert!((approx(&s) - v.sqrt()).abs() < 1e-14, "sqrt {v}");
            }
        }
        assert_eq!(
            exp_point(&f(1e6), p, 4096, &mut c).err(),
            Some(ExpRange::Overflow)
        );
        assert_eq!(
            exp_point(&f(-1e6), p, 4096, &mut c).err(),
            Some(ExpRange::Underflow)
        );
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Whether `x` lies in the ball.
    fn holds(b: &Ball, x: &Rational) -> bool {
        b.lo().to_rational() <= *x && *x <= b.hi().to_rational()
    }

    proptest! {
        #![proptest_config(config())]

        /// A ball at low precision contains the value at high precision, and is
        /// not wider than its precision promises.
        #[test]
        fn function_balls_hold_the_true_value(
            mantissa in -1000.0f64..1000.0,
            scale in -40i32..8,
            which in 0usize..7,
        ) {
            let v = mantissa * 2f64.powi(scale);
            let x = f(v);
            let eval = |p: u64| -> Option<Ball> {
                let mut c = Consts::default();
                match which {
                    0 => exp_point(&x, p, 4096, &mut c).ok(),
                    1 => (v > 0.0).then(|| ln_point(&x, p, &mut c)),
                    2 => Some(atan_point(&x, p, &mut c)),
                    3 => Some(sin_cos_point(&x, p, &mut c).0),
                    4 => Some(sin_cos_point(&x, p, &mut c).1),
                    5 => (v >= 0.0).then(|| sqrt_point(&x, p)),
                    _ => Some(cbrt_point(&x, p)),
                }
            };
            if let (Some(low), Some(high)) = (eval(40), eval(400)) {
                let truth = high.mid().to_rational();
                prop_assert!(holds(&low, &truth), "{} {}: {:?}", which, v, low);
                if !low.mid().is_zero() && !low.rad().is_zero() {
                    prop_assert!(low.rad().mag() < low.mid().mag() - 30, "{} {}: {:?}", which, v, low);
                }
            }
        }

        /// Sums, products and quotients of rounded rationals hold the exact result.
        #[test]
        fn arithmetic_balls_hold_the_exact_result(
            a in (-1_000_000i64..1_000_000, 1i64..10_000),
            b in (-1_000_000i64..1_000_000, 1i64..10_000),
            op in 0usize..3,
        ) {
            let q = |(n, d): (i64, i64)| {
                Rational::new(BigInt::from(n), BigInt::from(d)).unwrap_or_else(Rational::zero)
            };
            let (x, y) = (q(a), q(b));
            let (bx, by) = (Ball::from_rational(&x, 40), Ball::from_rational(&y, 40));
            prop_assert!(holds(&bx, &x));
            let (ball, exact) = match op {
                0 => (Some(bx.add(&by, 40)), Some(x.add(&y))),
                1 => (Some(bx.mul(&by, 40)), Some(x.mul(&y))),
                _ => (bx.div(&by, 40), x.div(&y)),
            };
            if let (Some(ball), Some(exact)) = (ball, exact) {
                prop_assert!(holds(&ball, &exact), "{:?} {:?} {}: {:?}", x, y, op, ball);
            }
        }
    }

    #[test]
    fn constants_are_correct_to_many_digits() {
        let mut c = Consts::default();
        // pi and ln 2 to 200 bits, against their first 60 decimals.
        let pi = Float::from_fixed(c.pi(200), 200).to_rational();
        let ln2 = Float::from_fixed(c.ln2(200), 200).to_rational();
        let pi_ref = "3141592653589793238462643383279502884197169399375105820974944";
        let ln2_ref = "0693147180559945309417232121458176568075500134360255254120680";
        for (value, reference) in [(pi, pi_ref), (ln2, ln2_ref)] {
            let scaled = value.mul(&Rational::pow10(60)).floor().to_string();
            let scaled = format!("{scaled:0>61}");
            assert_eq!(&scaled[..59], &reference[..59]);
        }
    }
}
