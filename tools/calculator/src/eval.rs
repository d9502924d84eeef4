//! Evaluation of the expression tree: exact where possible, balls otherwise.
//!
//! Every operation checks sizes before it works: a numerator or denominator may
//! not pass `max_bits`, powers and factorials are estimated from their operands'
//! bit lengths first, and each step is charged to a work budget so that no input
//! can run for long. An irrational result is computed at a working precision
//! tied to the requested digits; when the result's error bound is too wide for
//! them, or a decision (a floor, a sign) cannot be made, the whole tree is
//! evaluated again with twice the bits, a few times at most.

use std::cmp::Ordering;

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

use crate::error::CalcError;
use crate::format;
use crate::parse::{AddOp, Constant, Expr, Func, MulOp};
use crate::rational::{Rational, gcd, log2_approx};
use crate::real::{self, Ball, Consts, ExpRange, Float};

/// Size limits of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most bits in any numerator or denominator, and the magnitude range
    /// `2^+-max_bits` of approximate values.
    pub(crate) max_bits: u64,
    /// Most characters in an expression.
    pub(crate) max_length: usize,
    /// Deepest nesting of parentheses, calls and exponents.
    pub(crate) max_depth: usize,
    /// Work budget, in estimated machine-word operations.
    pub(crate) max_work: u64,
    /// Largest `n` whose factorial fits in `max_bits`.
    pub(crate) max_factorial: u64,
}

impl Limits {
    pub(crate) fn new(max_bits: u64, max_length: usize, max_depth: usize) -> Self {
        let words = max_bits / 64 + 1;
        Limits {
            max_bits,
            max_length,
            max_depth,
            // Room for about sixteen binary gcds at full size, the costliest step.
            max_work: 16 * 64 * words * words + 1_000_000,
            max_factorial: largest_factorial(max_bits),
        }
    }
}

/// The largest `n` with `log2(n!) <= max_bits`.
fn largest_factorial(max_bits: u64) -> u64 {
    let mut total = 0.0f64;
    let mut n: u64 = 1;
    loop {
        let next = total + ((n + 1) as f64).log2();
        if next > max_bits as f64 {
            return n;
        }
        total = next;
        n += 1;
    }
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Exact(Rational),
    Approx(Ball),
}

/// The result of an evaluation, before it is put into words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exact(Rational),
    Approx(format::Approximation),
}

/// Working precision (bits) for `digits` significant decimal digits.
fn initial_precision(digits: u32) -> u64 {
    (f64::from(digits) * std::f64::consts::LOG2_10).ceil() as u64 + 16
}

/// How many times the precision may double after the first try.
const PRECISION_DOUBLINGS: u32 = 3;

/// Evaluates `expr`, raising the precision until `digits` digits are certain.
pub(crate) fn evaluate(expr: &Expr, limits: &Limits, digits: u32) -> Result<Outcome, CalcError> {
    let mut work_left = limits.max_work;
    // Constants computed for one attempt serve the next ones too.
    let mut consts = Consts::default();
    let p0 = initial_precision(digits);
    let mut attempt = 0;
    loop {
        let last = attempt == PRECISION_DOUBLINGS;
        let mut evaluator = Evaluator {
            prec: p0 << attempt,
            limits,
            work_left: &mut work_left,
            consts: &mut consts,
        };
        match evaluator.eval(expr) {
            Ok(Value::Exact(q)) => return Ok(Outcome::Exact(q)),
            Ok(Value::Approx(ball)) => {
                if let Some(text) = format::round_ball(&ball, digits) {
                    return Ok(Outcome::Approx(format::Approximation::Digits {
                        text,
                        digits,
                    }));
                }
                if last {
                    return Ok(Outcome::Approx(format::best_effort(&ball, digits)));
                }
            }
            Err(CalcError::Undecidable { .. }) if !last => {}
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

struct Evaluator<'a> {
    prec: u64,
    limits: &'a Limits,
    work_left: &'a mut u64,
    consts: &'a mut Consts,
}

/// The cost of a product of numbers of `bits` bits, in word operations.
fn mul_cost(bits: u64) -> u64 {
    let words = bits / 64 + 1;
    words * words
}

/// The cost of a binary gcd of numbers of `bits` bits (`bits * words`).
fn gcd_cost(bits: u64) -> u64 {
    64 * mul_cost(bits)
}

/// The cost of a step on `v`: a gcd for fractions, a product otherwise.
fn value_cost(v: &Value, prec: u64) -> u64 {
    match v {
        Value::Exact(q) if q.is_integer() => mul_cost(q.bits()),
        Value::Exact(q) => gcd_cost(q.bits()),
        Value::Approx(_) => mul_cost(prec),
    }
}

fn too_large(position: usize, message: String) -> CalcError {
    CalcError::TooLarge { position, message }
}

fn domain(function: &str, position: usize, message: String) -> CalcError {
    CalcError::Domain {
        function: function.to_string(),
        position,
        message,
    }
}

/// A short decimal rendering of a value for messages.
fn show(v: &Value) -> String {
    match v {
        Value::Exact(q) => format::short(q),
        Value::Approx(b) => format!("about {}", format::short(&b.mid().to_rational())),
    }
}

impl Evaluator<'_> {
    fn charge(&mut self, units: u64, position: usize) -> Result<(), CalcError> {
        if units > *self.work_left {
            *self.work_left = 0;
            return Err(too_large(
                position,
                "the computation needs too much work; use smaller numbers or fewer digits"
                    .to_string(),
            ));
        }
        *self.work_left -= units;
        Ok(())
    }

    /// Charges for a step on two values.
    fn charge_pair(&mut self, a: &Value, b: &Value, position: usize) -> Result<(), CalcError> {
        let cost = value_cost(a, self.prec).max(value_cost(b, self.prec));
        self.charge(cost, position)
    }

    /// Charges for an elementary function evaluated at up to two points: a
    /// series of about `prec / 4` terms on numbers of `prec + extra` bits, where
    /// `extra` is what the argument's size adds (see [`Self::extra_bits`]).
    fn charge_function(&mut self, extra: u64, position: usize) -> Result<(), CalcError> {
        let terms = (self.prec + 64) / 4 + 32;
        let words = (self.prec + 64 + extra.min(self.limits.max_bits)) / 64 + 1;
        self.charge(2 * terms * words * words, position)
    }

    /// The bit limit in words, e.g. "16384 bits (about 4932 decimal digits)".
    fn bit_limit_text(&self) -> String {
        let bits = self.limits.max_bits;
        let digits = (bits as f64 * std::f64::consts::LOG10_2) as u64;
        format!("{bits} bits (about {digits} decimal digits)")
    }

    fn exact(&self, q: Rational, position: usize) -> Result<Value, CalcError> {
        if q.bits() > self.limits.max_bits {
            return Err(too_large(
                position,
                format!(
                    "a result here has {} bits in its numerator or denominator; the limit is {}",
                    q.bits(),
                    self.bit_limit_text()
                ),
            ));
        }
        Ok(Value::Exact(q))
    }

    fn approx(&self, b: Ball, position: usize) -> Result<Value, CalcError> {
        self.check_ball(b, position).map(Value::Approx)
    }

    /// `b` if its magnitude is within `2^+-max_bits`. A ball around zero that is
    /// narrower than `2^-max_bits` is widened to that, which keeps exponents small.
    fn check_ball(&self, b: Ball, position: usize) -> Result<Ball, CalcError> {
        let limit = self.limits.max_bits as i64 + 1;
        if !b.is_point() && b.mag_lower().is_none() && b.mag_upper() < -limit {
            return Ok(Ball::new(Float::zero(), Float::pow2(-limit), self.prec));
        }
        if b.mag_upper() > limit {
            return Err(too_large(
                position,
                format!(
                    "a result here is above 2^{}, the limit for approximate values",
                    self.limits.max_bits
                ),
            ));
        }
        if b.mag_lower().is_some_and(|m| m < -limit) {
            return Err(too_large(
                position,
                format!(
                    "a result here is below 2^-{}, the limit for approximate values",
                    self.limits.max_bits
                ),
            ));
        }
        Ok(b)
    }

    fn ball(&self, v: &Value) -> Ball {
        match v {
            Value::Exact(q) => Ball::from_rational(q, self.prec),
            Value::Approx(b) => b.clone(),
        }
    }

    /// The ball of a function's argument: an exact argument keeps `prec` bits
    /// after the point too, so that sin(10^100) sees every digit it needs.
    fn argument(&self, v: &Value) -> Ball {
        match v {
            Value::Exact(q) => {
                let int_bits = q.num().bits().saturating_sub(q.den().bits());
                Ball::from_rational(q, self.prec + int_bits.min(self.limits.max_bits))
            }
            Value::Approx(b) => b.clone(),
        }
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, CalcError> {
        match expr {
            Expr::Number(q) => Ok(Value::Exact(q.clone())),
            Expr::Const(Constant::Pi, pos) => {
                self.charge_function(0, *pos)?;
                Ok(Value::Approx(self.pi_ball()))
            }
            Expr::Const(Constant::E, pos) => self.exp(Value::Exact(Rational::one()), *pos),
            Expr::Neg(inner) => Ok(match self.eval(inner)? {
                Value::Exact(q) => Value::Exact(q.neg()),
                Value::Approx(b) => Value::Approx(b.neg()),
            }),
            Expr::Percent { inner, count, pos } => {
                let v = self.eval(inner)?;
                let hundredths = self.hundredths(*count, *pos)?;
                self.mul(v, hundredths, *pos)
            }
            Expr::Sum { first, rest } => {
                let mut acc = self.eval(first)?;
                for (op, pos, term) in rest {
                    acc = match term {
                        // a + b% is a increased by b percent: a * (1 + b/100).
                        Expr::Percent { .. } => {
                            let share = self.eval(term)?;
                            let change = self.mul(acc.clone(), share, *pos)?;
                            match op {
                                AddOp::Add => self.add(acc, change, *pos)?,
                                AddOp::Sub => self.sub(acc, change, *pos)?,
                            }
                        }
                        _ => {
                            let v = self.eval(term)?;
                            match op {
                                AddOp::Add => self.add(acc, v, *pos)?,
                                AddOp::Sub => self.sub(acc, v, *pos)?,
                            }
                        }
                    };
                }
                Ok(acc)
            }
            Expr::Product { first, rest } => {
                let mut acc = self.eval(first)?;
                for (op, pos, factor) in rest {
                    let v = self.eval(factor)?;
                    acc = match op {
                        MulOp::Mul => self.mul(acc, v, *pos)?,
                        MulOp::Div => self.div(acc, v, *pos)?,
                        MulOp::Rem => self.rem(acc, v, *pos)?,
                    };
                }
                Ok(acc)
            }
            Expr::Power {
                base,
                pos,
                exponent,
            } => {
                let b = self.eval(base)?;
                let e = self.eval(exponent)?;
                self.pow(b, e, *pos)
            }
            Expr::Call { func, pos, args } => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval(arg)?);
                }
                self.call(*func, *pos, values)
            }
        }
    }

    /// `100^-count` (the value of `count` percent signs).
    fn hundredths(&self, count: u32, position: usize) -> Result<Value, CalcError> {
        let digits = u64::from(count) * 2;
        if digits * 10 / 3 > self.limits.max_bits {
            return Err(too_large(position, "too many '%' signs".to_string()));
        }
        Ok(Value::Exact(Rational::pow10(-(digits as i32))))
    }

    fn pi_ball(&mut self) -> Ball {
        let w = self.prec + 8;
        let v = self.consts.pi(w);
        Ball::new(
            Float::from_fixed(v, w),
            Float::new(BigInt::from(2), -(w as i64)),
            self.prec,
        )
    }

    fn add(&mut self, a: Value, b: Value, pos: usize) -> Result<Value, CalcError> {
        self.charge_pair(&a, &b, pos)?;
        match (a, b) {
            (Value::Exact(x), Value::Exact(y)) => self.exact(x.add(&y), pos),
            (a, b) => {
                let sum = self.ball(&a).add(&self.ball(&b), self.prec);
                self.approx(sum, pos)
            }
        }
    }

    fn sub(&mut self, a: Value, b: Value, pos: usize) -> Result<Value, CalcError> {
        let negated = match b {
            Value::Exact(q) => Value::Exact(q.neg()),
            Value::Approx(ball) => Value::Approx(ball.neg()),
        };
        self.add(a, negated, pos)
    }

    fn mul(&mut self, a: Value, b: Value, pos: usize) -> Result<Value, CalcError> {
        self.charge_pair(&a, &b, pos)?;
        match (a, b) {
            (Value::Exact(x), Value::Exact(y)) => self.exact(x.mul(&y), pos),
            (Value::Exact(z), _) | (_, Value::Exact(z)) if z.is_zero() => {
                Ok(Value::Exact(Rational::zero()))
            }
            (a, b) => {
                let product = self.ball(&a).mul(&self.ball(&b), self.prec);
                self.approx(product, pos)
            }
        }
    }

    fn div(&mut self, a: Value, b: Value, pos: usize) -> Result<Value, CalcError> {
        self.charge_pair(&a, &b, pos)?;
        match (a, b) {
            (_, Value::Exact(y)) if y.is_zero() => Err(CalcError::DivisionByZero { position: pos }),
            (Value::Exact(x), Value::Exact(y)) => {
                let q = x
                    .div(&y)
                    .ok_or(CalcError::DivisionByZero { position: pos })?;
                self.exact(q, pos)
            }
            (a, b) => {
                let divisor = self.ball(&b);
                match self.ball(&a).div(&divisor, self.prec) {
                    Some(q) => match a {
                        Value::Exact(x) if x.is_zero() => Ok(Value::Exact(Rational::zero())),
                        _ => self.approx(q, pos),
                    },
                    None => Err(self.near_zero("the divisor", &divisor, pos)),
                }
            }
        }
    }

    /// An undecidable-sign error for `what` (a ball that contains zero).
    fn near_zero(&self, what: &str, b: &Ball, pos: usize) -> CalcError {
        CalcError::Undecidable {
            position: pos,
            message: format!(
                "{what} is zero to within {} (it may be exactly zero)",
                format::bound_text(b)
            ),
        }
    }

    /// The remainder `a - b * floor(a / b)` (it has the sign of `b`).
    fn rem(&mut self, a: Value, b: Value, pos: usize) -> Result<Value, CalcError> {
        self.charge_pair(&a, &b, pos)?;
        if let (Value::Exact(x), Value::Exact(y)) = (&a, &b) {
            let q = x
                .div(y)
                .ok_or(CalcError::DivisionByZero { position: pos })?;
            let whole = Rational::from_int(q.floor());
            return self.exact(x.sub(&y.mul(&whole)), pos);
        }
        let quotient = self.div(a.clone(), b.clone(), pos)?;
        let whole = self.floor(&quotient, false, "the quotient in '%'", pos)?;
        let product = self.mul(b, whole, pos)?;
        self.sub(a, product, pos)
    }

    /// `floor(v)`, or `ceil(v)` when `ceil` is set; `what` names `v` in errors.
    fn floor(&self, v: &Value, ceil: bool, what: &str, pos: usize) -> Result<Value, CalcError> {
        let round = |x: &Float| if ceil { -x.neg().floor() } else { x.floor() };
        match v {
            Value::Exact(q) => Ok(Value::Exact(Rational::from_int(if ceil {
                q.ceil()
            } else {
                q.floor()
            }))),
            Value::Approx(b) => {
                let lo = round(&b.lo());
                let hi = round(&b.hi());
                if lo == hi {
                    return Ok(Value::Exact(Rational::from_int(lo)));
                }
                // The integer boundary inside the ball.
                let boundary = format::short_int(if ceil { &lo } else { &hi });
                Err(CalcError::Undecidable {
                    position: pos,
                    message: format!(
                        "{what} equals the integer {boundary} to within {} (it may be exactly {boundary})",
                        format::bound_text(b)
                    ),
                })
            }
        }
    }

    fn pow(&mut self, base: Value, exponent: Value, pos: usize) -> Result<Value, CalcError> {
        self.charge_pair(&base, &exponent, pos)?;
        match &exponent {
            Value::Exact(n) if n.is_integer() => self.pow_int(base, n.num(), pos),
            Value::Exact(q) => {
                if let Value::Exact(b) = &base {
                    return self.pow_fraction(b, q, pos);
                }
                let q = q.clone();
                self.pow_real(base, exponent, Some(&q), pos)
            }
            Value::Approx(_) => self.pow_real(base, exponent, None, pos),
        }
    }

    fn pow_int(&mut self, base: Value, n: &BigInt, pos: usize) -> Result<Value, CalcError> {
        if n.is_zero() {
            return Ok(Value::Exact(Rational::one()));
        }
        match base {
            Value::Exact(b) => {
                if b.is_zero() {
                    return if n.is_positive() {
                        Ok(Value::Exact(b))
                    } else {
                        Err(CalcError::DivisionByZero { position: pos })
                    };
                }
                if b.abs() == Rational::one() {
                    let odd = n.is_odd();
                    return Ok(Value::Exact(if b.is_negative() && odd {
                        b
                    } else {
                        Rational::one()
                    }));
                }
                // |b| != 1: the numerator or denominator has at least 2 bits, and
                // x^n has at least (bits(x) - 1) n + 1 bits.
                let lower = |x: &BigInt| -> f64 {
                    let bits = x.bits() as f64;
                    if bits >= 2.0 {
                        (bits - 1.0) * n.abs().to_f64().unwrap_or(f64::INFINITY) + 1.0
                    } else {
                        0.0
                    }
                };
                let estimate = lower(b.num()).max(lower(b.den()));
                if estimate > self.limits.max_bits as f64 {
                    return Err(too_large(
                        pos,
                        format!(
                            "{}^{} would have at least {} bits; the limit is {}",
                            format::short(&b),
                            format::short_int(n),
                            format::short_float(estimate),
                            self.bit_limit_text()
                        ),
                    ));
                }
                // The check above bounds |n| by max_bits.
                let e = n.abs().to_u32().ok_or_else(|| {
                    too_large(
                        pos,
                        format!("the exponent {} is too large", format::short_int(n)),
                    )
                })?;
                self.charge(2 * mul_cost(estimate as u64), pos)?;
                let p = b.pow(e);
                let p = if n.is_negative() {
                    p.recip()
                        .ok_or(CalcError::DivisionByZero { position: pos })?
                } else {
                    p
                };
                self.exact(p, pos)
            }
            Value::Approx(x) => {
                let e = n.abs().to_u32().ok_or_else(|| {
                    too_large(
                        pos,
                        format!("the exponent {} is too large", format::short_int(n)),
                    )
                })?;
                let mut result = Ball::exact(Float::from_i64(1));
                let mut square = x;
                let mut rest = e;
                while rest > 0 {
                    self.charge(2 * mul_cost(self.prec), pos)?;
                    if rest & 1 == 1 {
                        result = self.check_ball(result.mul(&square, self.prec), pos)?;
                    }
                    rest >>= 1;
                    if rest > 0 {
                        square = self.check_ball(square.mul(&square, self.prec), pos)?;
                    }
                }
                if n.is_negative() {
                    self.div(Value::Exact(Rational::one()), Value::Approx(result), pos)
                } else {
                    Ok(Value::Approx(result))
                }
            }
        }
    }

    /// `b^(p/q)` for exact `b` and a non-integer exact exponent.
    fn pow_fraction(&mut self, b: &Rational, e: &Rational, pos: usize) -> Result<Value, CalcError> {
        if b.is_zero() {
            return if e.is_negative() {
                Err(CalcError::DivisionByZero { position: pos })
            } else {
                Ok(Value::Exact(Rational::zero()))
            };
        }
        if b.is_negative() && e.den().is_even() {
            return Err(domain(
                "^",
                pos,
                format!(
                    "a negative number to the power {} (a fraction with an even denominator) is not a real number",
                    format::short(e)
                ),
            ));
        }
        // An odd root of a negative number: (-b)^(p/q) = (-1)^p b^(p/q).
        let negate = b.is_negative() && e.num().is_odd();
        let magnitude = b.abs();
        let root = e
            .den()
            .to_u32()
            .and_then(|q| self.exact_root(&magnitude, q, pos).transpose())
            .transpose()?;
        let result = match root {
            Some(t) => self.pow_int(Value::Exact(t), e.num(), pos)?,
            None => self.pow_real(
                Value::Exact(magnitude),
                Value::Exact(e.clone()),
                Some(e),
                pos,
            )?,
        };
        Ok(if negate { negate_value(result) } else { result })
    }

    /// The exact `q`-th root of a nonnegative rational, if there is one.
    fn exact_root(
        &mut self,
        x: &Rational,
        q: u32,
        pos: usize,
    ) -> Result<Option<Rational>, CalcError> {
        let bits = x.bits();
        if u64::from(q) > bits {
            // 2^q > x: only 0 and 1 are q-th powers below it.
            return Ok((x.is_zero() || *x == Rational::one()).then(|| x.clone()));
        }
        // Newton's method: a few dozen products and divisions at this size.
        self.charge(32 * mul_cost(bits), pos)?;
        let root_of = |n: &BigInt| -> Option<BigInt> {
            let r = n.nth_root(q);
            (r.pow(q) == *n).then_some(r)
        };
        Ok(match (root_of(x.num()), root_of(x.den())) {
            (Some(n), Some(d)) => Rational::new(n, d),
            _ => None,
        })
    }

    /// `base^exponent` through `exp(exponent * ln(base))`. `exact_exponent` is the
    /// exponent when it is an exact fraction (then a negative base is allowed for
    /// odd denominators).
    fn pow_real(
        &mut self,
        base: Value,
        exponent: Value,
        exact_exponent: Option<&Rational>,
        pos: usize,
    ) -> Result<Value, CalcError> {
        let base_ball = self.argument(&base);
        match base_ball.sign() {
            Some(0) => {
                let e = self.ball(&exponent);
                return match e.sign() {
                    Some(s) if s > 0 => Ok(Value::Exact(Rational::zero())),
                    Some(_) => Err(CalcError::DivisionByZero { position: pos }),
                    None => Err(self.near_zero("the exponent of 0", &e, pos)),
                };
            }
            Some(s) if s < 0 => {
                return match exact_exponent {
                    Some(q) if q.den().is_odd() => {
                        let odd = q.num().is_odd();
                        let magnitude = negate_value(base);
                        let r = self.pow_real(magnitude, exponent, exact_exponent, pos)?;
                        Ok(if odd { negate_value(r) } else { r })
                    }
                    _ => Err(domain(
                        "^",
                        pos,
                        format!(
                            "a negative base ({}) needs an integer exponent, or a fraction with an odd denominator",
                            show(&base)
                        ),
                    )),
                };
            }
            Some(_) => {}
            None => return Err(self.near_zero("the base of '^'", &base_ball, pos)),
        }
        let log = self.ln_ball(&base_ball, pos)?;
        let product = log.mul(&self.ball(&exponent), self.prec);
        let product = self.approx(product, pos)?;
        self.exp(product, pos)
    }

    fn call(&mut self, func: Func, pos: usize, args: Vec<Value>) -> Result<Value, CalcError> {
        let name = func.name();
        // The parser has checked the number of arguments; the defaults below are
        // never used.
        let mut args = args.into_iter();
        let first = args.next().unwrap_or(Value::Exact(Rational::zero()));
        let second = args.next();
        match func {
            Func::Sqrt => self.sqrt(first, pos),
            Func::Cbrt => self.cbrt(first, pos),
            Func::Abs => Ok(match first {
                Value::Exact(q) => Value::Exact(q.abs()),
                Value::Approx(b) => Value::Approx(b.abs(self.prec)),
            }),
            Func::Floor => self.floor(&first, false, "the argument of floor", pos),
            Func::Ceil => self.floor(&first, true, "the argument of ceil", pos),
            Func::Round => self.round(first, second, pos),
            Func::Min | Func::Max => {
                let rest: Vec<Value> = second.into_iter().chain(args).collect();
                self.extremum(first, rest, func == Func::Max, pos)
            }
            Func::Gcd | Func::Lcm => {
                let all: Vec<Value> = std::iter::once(first).chain(second).chain(args).collect();
                self.gcd_lcm(func, all, pos)
            }
            Func::Factorial => self.factorial(first, pos),
            Func::Binomial => self.binomial(first, second, pos),
            Func::Ln => self.ln(first, pos),
            Func::Log10 => self.log(Value::Exact(Rational::from_i64(10)), first, name, pos),
            Func::Log2 => self.log(Value::Exact(Rational::from_i64(2)), first, name, pos),
            Func::Log => {
                let x = second.unwrap_or(Value::Exact(Rational::one()));
                self.log(first, x, name, pos)
            }
            Func::Exp => self.exp(first, pos),
            Func::Sin | Func::Cos | Func::Tan => self.trig(func, first, pos),
            Func::Asin | Func::Acos => self.inverse_sine(func, first, pos),
            Func::Atan => match first {
                Value::Exact(q) if q.is_zero() => Ok(Value::Exact(q)),
                x => {
                    let ball = self.argument(&x);
                    self.charge_function(self.extra_bits(&ball), pos)?;
                    let r = self.atan_ball(&ball, self.prec);
                    self.approx(r, pos)
                }
            },
        }
    }

    /// The bits an argument's magnitude adds to an elementary function's working
    /// width (large arguments of sin and cos, tiny ones of atan, ln near 1).
    fn extra_bits(&self, x: &Ball) -> u64 {
        let m = x.mag_upper();
        if m == i64::MIN { 0 } else { m.unsigned_abs() }
    }

    /// Applies a monotone function to a ball through its endpoints.
    fn monotone(
        &mut self,
        x: &Ball,
        mut f: impl FnMut(&mut Self, &Float) -> Result<Ball, CalcError>,
    ) -> Result<Ball, CalcError> {
        if x.is_point() {
            return f(self, x.mid());
        }
        let lo = f(self, &x.lo())?;
        let hi = f(self, &x.hi())?;
        Ok(lo.hull(&hi, self.prec))
    }

    fn sqrt(&mut self, x: Value, pos: usize) -> Result<Value, CalcError> {
        if let Value::Exact(q) = &x {
            if q.is_negative() {
                return Err(domain(
                    "sqrt",
                    pos,
                    format!(
                        "the square root of a negative number ({}) is not real",
                        show(&x)
                    ),
                ));
            }
            if let Some(r) = self.exact_root(q, 2, pos)? {
                return Ok(Value::Exact(r));
            }
        }
        let ball = self.argument(&x);
        match ball.sign() {
            Some(s) if s < 0 => Err(domain(
                "sqrt",
                pos,
                format!(
                    "the square root of a negative number ({}) is not real",
                    show(&x)
                ),
            )),
            None => Err(self.near_zero("the argument of sqrt", &ball, pos)),
            Some(_) => {
                self.charge_function(self.extra_bits(&ball), pos)?;
                let prec = self.prec;
                let r = self.monotone(&ball, |_, p| Ok(real::sqrt_point(p, prec)))?;
                self.approx(r, pos)
            }
        }
    }

    fn cbrt(&mut self, x: Value, pos: usize) -> Result<Value, CalcError> {
        if let Value::Exact(q) = &x
            && let Some(r) = self.exact_root(&q.abs(), 3, pos)?
        {
            return Ok(Value::Exact(if q.is_negative() { r.neg() } else { r }));
        }
        let ball = self.argument(&x);
        self.charge_function(self.extra_bits(&ball), pos)?;
        let prec = self.prec;
        let r = self.monotone(&ball, |_, p| Ok(real::cbrt_point(p, prec)))?;
        self.approx(r, pos)
    }

    fn round(&mut self, x: Value, digits: Option<Value>, pos: usize) -> Result<Value, CalcError> {
        let places: i32 = match digits {
            None => 0,
            Some(Value::Exact(q)) if q.is_integer() => {
                let limit = (self.limits.max_bits / 4) as i64;
                match q.num().to_i64() {
                    Some(n) if n.abs() <= limit => n as i32,
                    _ => {
                        return Err(too_large(
                            pos,
                            format!(
                                "round's number of digits must be between -{limit} and {limit}"
                            ),
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(domain(
                    "round",
                    pos,
                    format!(
                        "the number of digits must be a whole number, not {}",
                        show(&other)
                    ),
                ));
            }
        };
        let scale = Rational::pow10(places);
        let unscale = Rational::pow10(-places);
        match x {
            Value::Exact(q) => {
                let r = round_half_away(&q.mul(&scale));
                self.exact(Rational::from_int(r).mul(&unscale), pos)
            }
            Value::Approx(b) => {
                let scaled = b.mul(&Ball::from_rational(&scale, self.prec), self.prec);
                let lo = round_half_away(&scaled.lo().to_rational());
                let hi = round_half_away(&scaled.hi().to_rational());
                if lo == hi {
                    self.exact(Rational::from_int(lo).mul(&unscale), pos)
                } else {
                    Err(CalcError::Undecidable {
                        position: pos,
                        message: "the argument of round is too close to a halfway point to decide which way it rounds".to_string(),
                    })
                }
            }
        }
    }

    fn extremum(
        &mut self,
        first: Value,
        rest: Vec<Value>,
        max: bool,
        pos: usize,
    ) -> Result<Value, CalcError> {
        let mut best = first;
        for v in rest {
            self.charge_pair(&best, &v, pos)?;
            let better = |ord: Ordering| {
                if max {
                    ord == Ordering::Less
                } else {
                    ord == Ordering::Greater
                }
            };
            best = match (&best, &v) {
                (Value::Exact(a), Value::Exact(b)) => {
                    if better(a.cmp(b)) {
                        v
                    } else {
                        best
                    }
                }
                _ => {
                    let (a, b) = (self.ball(&best), self.ball(&v));
                    // Decided when the balls do not overlap.
                    if a.hi().cmp_value(&b.lo()) == Ordering::Less {
                        if max { v } else { best }
                    } else if b.hi().cmp_value(&a.lo()) == Ordering::Less {
                        if max { best } else { v }
                    } else {
                        // Overlapping: the extremum lies between the two bounds.
                        let pick = |x: Float, y: Float, want_max: bool| {
                            let ord = x.cmp_value(&y);
                            if (ord == Ordering::Less) == want_max {
                                y
                            } else {
                                x
                            }
                        };
                        let lo = pick(a.lo(), b.lo(), max);
                        let hi = pick(a.hi(), b.hi(), max);
                        let mid = lo.add(&hi).half();
                        let rad = hi.sub(&lo).half();
                        Value::Approx(Ball::new(mid, rad, self.prec))
                    }
                }
            };
        }
        Ok(best)
    }

    /// The exact integer in `v`, or a domain error naming `function`.
    fn integer(
        &self,
        v: &Value,
        function: &str,
        pos: usize,
        what: &str,
    ) -> Result<BigInt, CalcError> {
        match v {
            Value::Exact(q) if q.is_integer() => Ok(q.num().clone()),
            _ => Err(domain(function, pos, format!("{what}; got {}", show(v)))),
        }
    }

    fn gcd_lcm(&mut self, func: Func, values: Vec<Value>, pos: usize) -> Result<Value, CalcError> {
        let name = func.name();
        let mut acc: Option<BigInt> = None;
        for v in &values {
            let n = self.integer(v, name, pos, &format!("{name} needs exact integers"))?;
            acc = Some(match acc {
                None => n.abs(),
                Some(a) => {
                    self.charge(gcd_cost(a.bits().max(n.bits())), pos)?;
                    let g = gcd(&a, &n);
                    match func {
                        Func::Gcd => g,
                        _ if g.is_zero() => BigInt::zero(),
                        _ => (a / g * n).abs(),
                    }
                }
            });
            if let Some(a) = &acc {
                self.exact(Rational::from_int(a.clone()), pos)?;
            }
        }
        Ok(Value::Exact(Rational::from_int(acc.unwrap_or_default())))
    }

    fn factorial(&mut self, x: Value, pos: usize) -> Result<Value, CalcError> {
        let what = "factorial needs a whole number >= 0";
        let n = self.integer(&x, "factorial", pos, what)?;
        if n.is_negative() {
            return Err(domain(
                "factorial",
                pos,
                format!("{what}; got {}", format::short_int(&n)),
            ));
        }
        let limit = self.limits.max_factorial;
        let n = match n.to_u64() {
            Some(v) if v <= limit => v,
            _ => {
                return Err(too_large(
                    pos,
                    format!(
                        "factorial({}) is over the limit of {}; the largest allowed argument is {limit}",
                        format::short_int(&n),
                        self.bit_limit_text()
                    ),
                ));
            }
        };
        let words = self.limits.max_bits / 64 + 1;
        self.charge(n * words + 2 * mul_cost(self.limits.max_bits), pos)?;
        self.exact(Rational::from_int(product(1, n)), pos)
    }

    fn binomial(&mut self, n: Value, k: Option<Value>, pos: usize) -> Result<Value, CalcError> {
        let k = k.unwrap_or(Value::Exact(Rational::zero()));
        let n = self.integer(
            &n,
            "binomial",
            pos,
            "binomial(n, k) needs whole numbers n >= 0 and k",
        )?;
        let k = self.integer(
            &k,
            "binomial",
            pos,
            "binomial(n, k) needs whole numbers n >= 0 and k",
        )?;
        if n.is_negative() {
            return Err(domain(
                "binomial",
                pos,
                format!("binomial(n, k) needs n >= 0; got {}", format::short_int(&n)),
            ));
        }
        if k.is_negative() || k > n {
            return Ok(Value::Exact(Rational::zero()));
        }
        let other = &n - &k;
        let m = if other < k { other } else { k };
        if m.is_zero() {
            return Ok(Value::Exact(Rational::one()));
        }
        // C(n, m) >= (n/m)^m: its bit length is at least m log2(n/m).
        let m_f = m.to_f64().unwrap_or(f64::INFINITY);
        let n_f = log2_approx(n.magnitude());
        let lower = m_f * (n_f - m_f.log2());
        let too_big = || {
            too_large(
                pos,
                format!(
                    "binomial({}, {}) is over the limit of {}",
                    format::short_int(&n),
                    format::short_int(&m),
                    self.bit_limit_text()
                ),
            )
        };
        if lower > self.limits.max_bits as f64 || m_f > self.limits.max_bits as f64 {
            return Err(too_big());
        }
        let m = m.to_u64().ok_or_else(too_big)?;
        let words = (self.limits.max_bits + n.bits()) / 64 + 1;
        self.charge(m * words * 4, pos)?;
        let mut r = BigInt::one();
        let base = &n - BigInt::from(m);
        for i in 1..=m {
            r = r * (&base + BigInt::from(i)) / BigInt::from(i);
        }
        self.exact(Rational::from_int(r), pos)
    }

    /// `ln` of a ball whose sign has been checked to be positive.
    fn ln_ball(&mut self, x: &Ball, pos: usize) -> Result<Ball, CalcError> {
        self.charge_function(self.extra_bits(x), pos)?;
        let prec = self.prec;
        self.monotone(x, |s, p| Ok(real::ln_point(p, prec, s.consts)))
    }

    fn ln(&mut self, x: Value, pos: usize) -> Result<Value, CalcError> {
        let ball = self.positive_argument(&x, "ln", pos)?;
        if matches!(&x, Value::Exact(q) if *q == Rational::one()) {
            return Ok(Value::Exact(Rational::zero()));
        }
        let r = self.ln_ball(&ball, pos)?;
        self.approx(r, pos)
    }

    /// The ball of `x` after checking that `x > 0`, for logarithms.
    fn positive_argument(&self, x: &Value, function: &str, pos: usize) -> Result<Ball, CalcError> {
        let ball = self.argument(x);
        match ball.sign() {
            Some(1) => Ok(ball),
            Some(0) => Err(domain(
                function,
                pos,
                "the logarithm of 0 is undefined (it tends to minus infinity)".to_string(),
            )),
            Some(_) => Err(domain(
                function,
                pos,
                format!(
                    "the logarithm of a negative number ({}) is not real",
                    show(x)
                ),
            )),
            None => Err(self.near_zero(&format!("the argument of {function}"), &ball, pos)),
        }
    }

    fn log(
        &mut self,
        base: Value,
        x: Value,
        function: &str,
        pos: usize,
    ) -> Result<Value, CalcError> {
        let base_ball = self.argument(&base);
        let base_ok = base_ball.sign() == Some(1)
            && !matches!(&base, Value::Exact(b) if *b == Rational::one());
        if !base_ok && base_ball.sign().is_some() {
            return Err(domain(
                function,
                pos,
                format!("the base must be positive and not 1; got {}", show(&base)),
            ));
        }
        let x_ball = self.positive_argument(&x, function, pos)?;
        if matches!(&x, Value::Exact(q) if *q == Rational::one()) {
            return Ok(Value::Exact(Rational::zero()));
        }
        if base_ball.sign() != Some(1) {
            return Err(self.near_zero("the base of log", &base_ball, pos));
        }
        let num = self.ln_ball(&x_ball, pos)?;
        let den = self.ln_ball(&base_ball, pos)?;
        let Some(quotient) = num.div(&den, self.prec) else {
            return Err(CalcError::Undecidable {
                position: pos,
                message: "the base of log is 1 to within the working precision".to_string(),
            });
        };
        if let (Value::Exact(b), Value::Exact(v)) = (&base, &x)
            && let Some(q) = self.exact_log(b, v, &quotient, pos)?
        {
            return Ok(Value::Exact(q));
        }
        self.approx(quotient, pos)
    }

    /// `log_b(x)` when it is rational: then `b = t^q` and `x = t^p` for some
    /// rational `t`, and `p/q` is a convergent of the approximation inside its ball.
    fn exact_log(
        &mut self,
        b: &Rational,
        x: &Rational,
        approx: &Ball,
        pos: usize,
    ) -> Result<Option<Rational>, CalcError> {
        let max_den = b.bits().min(4096);
        let mid = approx.mid().to_rational();
        let rad = approx.rad().to_rational();
        let (mut h0, mut h1) = (BigInt::zero(), BigInt::one());
        let (mut k0, mut k1) = (BigInt::one(), BigInt::zero());
        let mut rest = mid.clone();
        loop {
            let a = rest.floor();
            let h = &a * &h1 + &h0;
            let k = &a * &k1 + &k0;
            if k.bits() > 64 || k.to_u64().is_none_or(|k| k > max_den) {
                return Ok(None);
            }
            let candidate = Rational::new(h.clone(), k.clone()).unwrap_or_else(Rational::zero);
            if candidate.sub(&mid).abs() <= rad
                && let Some(q) = k.to_u32()
                && let Some(t) = self.exact_root(b, q, pos)?
                && self.is_power(&t, &h, x, pos)?
            {
                return Ok(Some(candidate));
            }
            let frac = rest.sub(&Rational::from_int(a));
            match frac.recip() {
                Some(r) => rest = r,
                None => return Ok(None),
            }
            (h0, h1) = (h1, h);
            (k0, k1) = (k1, k);
        }
    }

    /// Whether `t^p == x`, without building a power far larger than `x`.
    fn is_power(
        &mut self,
        t: &Rational,
        p: &BigInt,
        x: &Rational,
        pos: usize,
    ) -> Result<bool, CalcError> {
        let Some(e) = p.abs().to_u64() else {
            return Ok(false);
        };
        if e.saturating_mul(t.bits().saturating_sub(1)) > x.bits() + 1 {
            return Ok(false);
        }
        self.charge(2 * mul_cost(x.bits()), pos)?;
        let power = t.pow(e as u32);
        let power = if p.is_negative() {
            match power.recip() {
                Some(r) => r,
                None => return Ok(false),
            }
        } else {
            power
        };
        Ok(power == *x)
    }

    fn exp(&mut self, x: Value, pos: usize) -> Result<Value, CalcError> {
        if matches!(&x, Value::Exact(q) if q.is_zero()) {
            return Ok(Value::Exact(Rational::one()));
        }
        let ball = self.argument(&x);
        self.charge_function(self.extra_bits(&ball), pos)?;
        let prec = self.prec;
        let max_bits = self.limits.max_bits;
        let r = self.monotone(&ball, |s, p| {
            real::exp_point(p, prec, max_bits, s.consts).map_err(|range| {
                let side = match range {
                    ExpRange::Overflow => "above 2^",
                    ExpRange::Underflow => "below 2^-",
                };
                too_large(
                    pos,
                    format!(
                        "exp of {} is {side}{max_bits}, the limit for approximate values",
                        show(&x)
                    ),
                )
            })
        })?;
        self.approx(r, pos)
    }

    fn trig(&mut self, func: Func, x: Value, pos: usize) -> Result<Value, CalcError> {
        if let Value::Exact(q) = &x
            && q.is_zero()
        {
            return Ok(Value::Exact(if func == Func::Cos {
                Rational::one()
            } else {
                Rational::zero()
            }));
        }
        let ball = self.argument(&x);
        if func != Func::Tan && ball.rad().mag() > 2 {
            // The argument is uncertain by more than a period: all that is known
            // is that the result lies in [-1, 1].
            return self.approx(Ball::new(Float::zero(), Float::from_i64(1), self.prec), pos);
        }
        let extra = self.extra_bits(&ball);
        self.charge_function(0, pos)?;
        // Reducing by pi/2 needs pi to the argument's size plus the precision.
        let wr = self.prec + 64 + extra.min(self.limits.max_bits);
        self.charge(wr * wr / 128, pos)?;
        let (s, c) = real::sin_cos_point(ball.mid(), self.prec, self.consts);
        // sin and cos are 1-Lipschitz: widen by the input radius.
        let (s, c) = (
            s.widen(ball.rad(), self.prec),
            c.widen(ball.rad(), self.prec),
        );
        match func {
            Func::Sin => self.approx(s, pos),
            Func::Cos => self.approx(c, pos),
            _ => match s.div(&c, self.prec) {
                Some(t) => self.approx(t, pos),
                None => Err(CalcError::Undecidable {
                    position: pos,
                    message: format!(
                        "tan is undefined where cos is 0, and cos of this argument is 0 to within {}",
                        format::bound_text(&c)
                    ),
                }),
            },
        }
    }

    fn inverse_sine(&mut self, func: Func, x: Value, pos: usize) -> Result<Value, CalcError> {
        let name = func.name();
        let one = Rational::one();
        if let Value::Exact(q) = &x {
            if q.abs() > one {
                return Err(domain(
                    name,
                    pos,
                    format!("{name} is defined for -1 <= x <= 1; got {}", show(&x)),
                ));
            }
            if (func == Func::Asin && q.is_zero()) || (func == Func::Acos && *q == one) {
                return Ok(Value::Exact(Rational::zero()));
            }
        }
        let ball = self.argument(&x);
        let minus_one = Float::from_i64(-1);
        let plus_one = Float::from_i64(1);
        let (lo, hi) = (ball.lo(), ball.hi());
        if lo.cmp_value(&plus_one) == Ordering::Greater
            || hi.cmp_value(&minus_one) == Ordering::Less
        {
            return Err(domain(
                name,
                pos,
                format!("{name} is defined for -1 <= x <= 1; got {}", show(&x)),
            ));
        }
        if lo.cmp_value(&minus_one) == Ordering::Less
            || hi.cmp_value(&plus_one) == Ordering::Greater
        {
            return Err(CalcError::Undecidable {
                position: pos,
                message: format!(
                    "the argument of {name} is within {} of -1 or 1, the ends of its domain",
                    format::bound_text(&ball)
                ),
            });
        }
        self.charge_function(self.extra_bits(&ball), pos)?;
        self.charge_function(self.extra_bits(&ball), pos)?;
        let r = if func == Func::Asin {
            self.monotone(&ball, |s, p| s.asin_point(p))?
        } else {
            self.monotone(&ball, |s, p| s.acos_point(p))?
        };
        self.approx(r, pos)
    }

    /// `asin(x) = 2 atan(x / (1 + sqrt(1 - x^2)))` for `|x| <= 1`.
    fn asin_point(&mut self, x: &Float) -> Result<Ball, CalcError> {
        let p = self.prec + 16;
        let one = Float::from_i64(1);
        let root = real::sqrt_point(&one.sub(&x.mul(x)), p);
        let den = Ball::exact(one).add(&root, p);
        let arg = Ball::exact(x.clone())
            .div(&den, p)
            .ok_or_else(|| undecidable_internal("asin"))?;
        Ok(self.atan_ball(&arg, p).mul_pow2(1))
    }

    /// `acos(x) = 2 atan(sqrt((1 - x) / (1 + x)))` for `-1 < x <= 1`; `acos(-1) = pi`.
    fn acos_point(&mut self, x: &Float) -> Result<Ball, CalcError> {
        let p = self.prec + 16;
        let one = Float::from_i64(1);
        let den = one.add(x);
        if den.is_zero() {
            return Ok(self.pi_ball());
        }
        let ratio = Ball::exact(one.sub(x))
            .div(&Ball::exact(den), p)
            .ok_or_else(|| undecidable_internal("acos"))?;
        let root = self.monotone(&ratio, |_, t| Ok(real::sqrt_point(&t.abs(), p)))?;
        Ok(self.atan_ball(&root, p).mul_pow2(1))
    }

    /// `atan` of a ball: one evaluation at the midpoint, widened by the radius
    /// times the largest slope on the ball, `1 / (1 + min x^2)`, which is at most
    /// `4^(1 - m)` when `|x| >= 2^(m-1)`.
    fn atan_ball(&mut self, x: &Ball, prec: u64) -> Ball {
        let slope_exp = match x.mag_lower() {
            Some(m) if m > 1 => 2 * (1 - m),
            _ => 0,
        };
        let widening = Ball::exact(x.rad().clone()).mul_pow2(slope_exp);
        real::atan_point(x.mid(), prec, self.consts).widen(widening.mid(), prec)
    }
}

/// An error for a state the domain checks rule out (kept as an error, not a panic).
fn undecidable_internal(function: &str) -> CalcError {
    CalcError::Undecidable {
        position: 0,
        message: format!("{function} could not bound its intermediate values"),
    }
}

fn negate_value(v: Value) -> Value {
    match v {
        Value::Exact(q) => Value::Exact(q.neg()),
        Value::Approx(b) => Value::Approx(b.neg()),
    }
}

/// Rounds to the nearest integer, halves away from zero.
fn round_half_away(q: &Rational) -> BigInt {
    let half = Rational::new(BigInt::one(), BigInt::from(2)).unwrap_or_else(Rational::zero);
    let r = q.abs().add(&half).floor();
    if q.is_negative() { -r } else { r }
}

/// The product of the integers `lo..=hi`, by binary splitting.
fn product(lo: u64, hi: u64) -> BigInt {
    if lo > hi {
        return BigInt::one();
    }
    if hi - lo < 16 {
        return (lo..=hi).fold(BigInt::one(), |acc, k| acc * k);
    }
    let mid = lo + (hi - lo) / 2;
    product(lo, mid) * product(mid + 1, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_factorial_matches_the_bit_limit() {
        let n = largest_factorial(16_384);
        assert!(product(1, n).bits() <= 16_384);
        assert!(product(1, n + 1).bits() > 16_384);
    }

    #[test]
    fn product_is_the_factorial() {
        assert_eq!(product(1, 20), BigInt::from(2_432_902_008_176_640_000u64));
        assert_eq!(product(1, 0), BigInt::one());
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let q = |n: i64, d: i64| Rational::new(BigInt::from(n), BigInt::from(d)).expect("nonzero");
        assert_eq!(round_half_away(&q(5, 2)), BigInt::from(3));
        assert_eq!(round_half_away(&q(-5, 2)), BigInt::from(-3));
        assert_eq!(round_half_away(&q(7, 3)), BigInt::from(2));
    }
}
