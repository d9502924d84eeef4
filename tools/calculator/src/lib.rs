//! Exact arithmetic for agents: a calculator tool on arbitrary-precision rationals.
//!
//! A model asks for `(12.50 * 4 + 3.75) * 1.08` and reads back
//! `= 1161/20 (exactly 58.05)`: arithmetic on exact fractions, so `0.1 + 0.2` is
//! exactly `0.3`. Irrational results (`sqrt(2)`, `sin(1)`, `2^0.5`) are computed
//! with a proven error bound and given to a stated number of significant digits,
//! marked as approximate. Every input, however large or malformed, ends quickly
//! with a value or a [`CalcError`] that says what to change.
//!
//! ```
//! use taper_calculator::Calculator;
//!
//! let calc = Calculator::new();
//! let sum = calc.evaluate("0.1 + 0.2")?;
//! assert!(sum.is_exact());
//! assert_eq!(sum.to_string(), "= 3/10 (exactly 0.3)");
//!
//! let root = calc.evaluate("sqrt(2)")?;
//! assert!(!root.is_exact());
//! assert_eq!(root.rounded(), "1.4142135623731");
//!
//! let err = calc.evaluate("sqrt(-4)").unwrap_err();
//! assert!(err.to_string().starts_with("domain error in sqrt at position 0"));
//! # Ok::<(), taper_calculator::CalcError>(())
//! ```
//!
//! Percentages: `15%` is `0.15` and `200 * 15%` is `30`; after `+` or `-`, a
//! percentage changes the left side by that share, so `200 + 15%` is `230` and
//! `80 - 25%` is `60` (as on a desk calculator). `a % b` between two operands is
//! the remainder, with the sign of `b`.

mod error;
mod eval;
mod format;
mod parse;
mod rational;
mod real;
mod tool;

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

pub use error::CalcError;

use eval::{Limits, Outcome};
use format::Approximation;
use rational::Rational;

/// The tool description a model reads: what the calculator does, its syntax, and
/// examples of calls with their answers.
pub const DESCRIPTION: &str = "\
Exact calculator. Evaluates one arithmetic expression with exact fractions \
(0.1 + 0.2 is exactly 0.3) and answers with the fraction and its decimal; \
irrational results (square roots, logarithms, trigonometry) come to 15 \
significant digits, marked approximate. Use it for every computation instead \
of doing arithmetic in your head.
Syntax: numbers like 42, 3.75, .5, 1.5e3, 2E-4; + - * / and ^ (or **) with \
parentheses; -2^2 = -4 and 2^3^2 = 2^9. 15% is 0.15, and after + or - a \
percentage changes the left side by that share: 200 + 15% = 230, 80 - 25% = 60. \
a % b between two numbers is the remainder. Functions: sqrt, cbrt, abs, floor, \
ceil, round(x), round(x, digits), min, max, gcd, lcm (any number of \
arguments), factorial(n), binomial(n, k), ln, log10, log2, log(base, x), exp, \
sin, cos, tan, asin, acos, atan (radians). Constants: pi, e. Write every \
multiplication (2*pi, not 2pi); no variables, units, currency symbols or \
thousands separators.
Examples:
(12.50 * 4 + 3.75) * 1.08 -> = 1161/20 (exactly 58.05)
1200 * (1 + 5%)^2 -> = 1323
7 / 3 -> = 7/3 (≈ 2.33333333333333, the repeating decimal 2.(3))
sqrt(2) * 10 -> ≈ 14.142135623731 (approximate, rounded to 15 significant digits)";

/// The arguments of a calculator call, as the model writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorArgs {
    /// One arithmetic expression, e.g. "(12.50 * 4 + 3.75) * 1.08",
    /// "1200 * (1 + 5%)^2", "200 - 15%", "sqrt(2)", "binomial(10, 3)",
    /// "log(2, 1024)". Numbers: 42, 3.75, 1.5e3. Operators: + - * / ^ and
    /// parentheses; 15% is 0.15, a + b% increases a by b percent, a % b is the
    /// remainder. Functions: sqrt cbrt abs floor ceil round(x) round(x, digits)
    /// min max gcd lcm factorial binomial(n, k) ln log10 log2 log(base, x) exp sin
    /// cos tan asin acos atan (radians); constants pi and e. Write 2*pi, not 2pi;
    /// no variables, units, currency symbols or thousands separators.
    pub expression: String,
}

/// Default significant digits of approximate results.
const DEFAULT_DIGITS: u32 = 15;
/// Default limit on the bits of a numerator or denominator.
const DEFAULT_MAX_BITS: u64 = 16_384;
/// Default limit on the characters of an expression.
const DEFAULT_MAX_LENGTH: usize = 1_000;
/// Default limit on nesting depth.
const DEFAULT_MAX_DEPTH: usize = 100;
/// Repeating decimals are spelled out up to this many digits after the point.
const MAX_REPETEND_DIGITS: usize = 60;
/// Integers, fractions and decimals longer than this are shown rounded.
const MAX_SHOWN_DIGITS: u64 = 100;

/// An exact calculator. Cheap to clone; evaluation takes `&self`.
///
/// ```
/// use taper_calculator::Calculator;
///
/// let calc = Calculator::builder().significant_digits(30).build();
/// assert_eq!(calc.evaluate("pi")?.rounded(), "3.14159265358979323846264338328");
/// assert_eq!(calc.evaluate("2^100")?.integer().as_deref(), Some("1267650600228229401496703205376"));
/// # Ok::<(), taper_calculator::CalcError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calculator {
    digits: u32,
    limits: Limits,
}

impl Default for Calculator {
    fn default() -> Self {
        Self::new()
    }
}

impl Calculator {
    /// A calculator with the default settings: 15 significant digits for
    /// approximate results, numerators and denominators of at most 16,384 bits
    /// (about 4,900 decimal digits), expressions of at most 1,000 characters and
    /// 100 levels of nesting.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to change the settings.
    pub fn builder() -> CalculatorBuilder {
        CalculatorBuilder {
            digits: DEFAULT_DIGITS,
            max_bits: DEFAULT_MAX_BITS,
            max_length: DEFAULT_MAX_LENGTH,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Evaluates one expression.
    ///
    /// # Errors
    ///
    /// A [`CalcError`] when the expression is malformed, divides by zero, leaves a
    /// function's domain, names something unknown, passes a size limit, or needs
    /// a comparison that cannot be decided (see the variants).
    pub fn evaluate(&self, expression: &str) -> Result<Evaluation, CalcError> {
        let length = expression.chars().count();
        if length > self.limits.max_length {
            return Err(CalcError::InputTooLong {
                length,
                limit: self.limits.max_length,
            });
        }
        let tree = parse::parse(expression, self.limits.max_bits, self.limits.max_depth)?;
        let outcome = eval::evaluate(&tree, &self.limits, self.digits)?;
        Ok(Evaluation {
            outcome,
            digits: self.digits,
        })
    }
}

/// Settings for a [`Calculator`]. Values out of range are clamped to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalculatorBuilder {
    digits: u32,
    max_bits: u64,
    max_length: usize,
    max_depth: usize,
}

impl CalculatorBuilder {
    /// Significant digits of approximate and rounded results (1 to 100; default
    /// 15).
    pub fn significant_digits(mut self, digits: u32) -> Self {
        self.digits = digits.clamp(1, 100);
        self
    }

    /// The most bits in any numerator or denominator, which also bounds
    /// exponents, factorials and the magnitude `2^±max_bits` of approximate values
    /// (64 to 262,144; default 16,384, about 4,900 decimal digits). The work an
    /// evaluation may do grows with the square of this.
    pub fn max_bits(mut self, bits: u64) -> Self {
        self.max_bits = bits.clamp(64, 262_144);
        self
    }

    /// The most characters in an expression (1 to 100,000; default 1,000).
    pub fn max_length(mut self, chars: usize) -> Self {
        self.max_length = chars.clamp(1, 100_000);
        self
    }

    /// The deepest nesting of parentheses, calls and exponents (1 to 200; default
    /// 100). It bounds recursion, so deep input cannot exhaust the stack.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.clamp(1, 200);
        self
    }

    /// The calculator.
    pub fn build(self) -> Calculator {
        Calculator {
            digits: self.digits,
            limits: Limits::new(self.max_bits, self.max_length, self.max_depth),
        }
    }
}

/// The value of an expression: exact (a fraction, perhaps an integer) or an
/// approximation to a number of significant digits.
///
/// Its `Display` is the answer for a model, e.g. `= 3/10 (exactly 0.3)`,
/// `= 1/3 (≈ 0.333333333333333, the repeating decimal 0.(3))` or
/// `≈ 1.4142135623731 (approximate, rounded to 15 significant digits)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    outcome: Outcome,
    digits: u32,
}

impl Evaluation {
    /// Whether the value is exact (a rational number).
    pub fn is_exact(&self) -> bool {
        matches!(self.outcome, Outcome::Exact(_))
    }

    /// The exact value in full when it is an integer, e.g. `"-42"`.
    pub fn integer(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exact(q) if q.is_integer() => Some(q.num().to_string()),
            _ => None,
        }
    }

    /// The exact value in lowest terms, e.g. `"3/10"` (`"42"` for an integer).
    pub fn fraction(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exact(q) if q.is_integer() => Some(q.num().to_string()),
            Outcome::Exact(q) => Some(format!("{}/{}", q.num(), q.den())),
            Outcome::Approx(_) => None,
        }
    }

    /// The exact value as a terminating decimal in full, e.g. `"0.3"`, when it is
    /// one.
    pub fn exact_decimal(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exact(q) => format::exact_decimal(q),
            Outcome::Approx(_) => None,
        }
    }

    /// The exact value as a repeating decimal with its repetend in parentheses,
    /// e.g. `"0.1(6)"` for 1/6, when it repeats with at most 60 digits after the
    /// point.
    pub fn repeating_decimal(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exact(q) => format::repeating_decimal(q, MAX_REPETEND_DIGITS),
            Outcome::Approx(_) => None,
        }
    }

    /// The value as a decimal rounded to [`significant_digits`](Self::significant_digits)
    /// digits, trailing zeros dropped, in plain or `1.5e-9` notation.
    pub fn rounded(&self) -> String {
        match &self.outcome {
            Outcome::Exact(q) => format::rounded(q, self.digits),
            Outcome::Approx(Approximation::Digits { text, .. }) => text.clone(),
            Outcome::Approx(Approximation::NearZero { .. }) => "0".to_string(),
            Outcome::Approx(Approximation::Uncertain { text, .. }) => text.clone(),
        }
    }

    /// The significant digits [`rounded`](Self::rounded) is correct to: the
    /// requested number, fewer for an approximation whose error bound is wider,
    /// and 0 when not even the first digit is certain.
    pub fn significant_digits(&self) -> u32 {
        match &self.outcome {
            Outcome::Exact(_) => self.digits,
            Outcome::Approx(Approximation::Digits { digits, .. }) => *digits,
            Outcome::Approx(_) => 0,
        }
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Exact(q) => write_exact(f, q, self.digits),
            Outcome::Approx(Approximation::Digits { text, digits }) => {
                write!(
                    f,
                    "≈ {text} (approximate, rounded to {digits} significant digits)"
                )
            }
            Outcome::Approx(Approximation::NearZero { below }) => write!(
                f,
                "≈ 0 (approximate: the value is within 1e{below} of 0 and may be exactly 0)"
            ),
            Outcome::Approx(Approximation::Uncertain { text, bound }) => write!(
                f,
                "≈ {text} (approximate, with an error of up to {bound}: not even the first digit is certain)"
            ),
        }
    }
}

fn write_exact(f: &mut fmt::Formatter<'_>, q: &Rational, digits: u32) -> fmt::Result {
    let rounded = format::rounded(q, digits);
    let num_digits = format::decimal_digits(q.num());
    if q.is_integer() {
        if num_digits <= MAX_SHOWN_DIGITS {
            return write!(f, "= {}", q.num());
        }
        return write!(
            f,
            "≈ {rounded} (an exact integer with {num_digits} digits, shown to {digits} significant digits)"
        );
    }
    let den_digits = format::decimal_digits(q.den());
    if num_digits + den_digits > MAX_SHOWN_DIGITS {
        return write!(
            f,
            "≈ {rounded} (an exact fraction with a {num_digits}-digit numerator and a {den_digits}-digit denominator, shown to {digits} significant digits)"
        );
    }
    write!(f, "= {}/{} ", q.num(), q.den())?;
    if let Some(decimal) = format::exact_decimal(q) {
        if decimal.len() as u64 <= MAX_SHOWN_DIGITS {
            return write!(f, "(exactly {decimal})");
        }
        return write!(f, "(≈ {rounded} as a decimal)");
    }
    match format::repeating_decimal(q, MAX_REPETEND_DIGITS) {
        Some(repeating) => write!(f, "(≈ {rounded}, the repeating decimal {repeating})"),
        None => write!(f, "(≈ {rounded}, a repeating decimal)"),
    }
}
