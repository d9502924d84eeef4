//! Property tests: exact results against an independent rational reference,
//! results against f64 where f64 is exact or close, correct rounding of
//! approximations, and no panic or long run on any input at all.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use taper_calculator::{CalcError, Calculator};

/// A random arithmetic expression.
#[derive(Clone, Debug)]
enum Tree {
    /// `num / 2^shift`.
    Leaf(i64, u32),
    Add(Box<Tree>, Box<Tree>),
    Sub(Box<Tree>, Box<Tree>),
    Mul(Box<Tree>, Box<Tree>),
    Div(Box<Tree>, Box<Tree>),
    Pow(Box<Tree>, u32),
    Neg(Box<Tree>),
}

fn tree(with_division: bool) -> impl Strategy<Value = Tree> {
    let leaf = (-40i64..=40, 0u32..=3).prop_map(|(n, s)| Tree::Leaf(n, s));
    leaf.prop_recursive(4, 24, 2, move |inner| {
        let binary = (
            inner.clone(),
            inner.clone(),
            0u8..if with_division { 4 } else { 3 },
        )
            .prop_map(|(a, b, op)| {
                let (a, b) = (Box::new(a), Box::new(b));
                match op {
                    0 => Tree::Add(a, b),
                    1 => Tree::Sub(a, b),
                    2 => Tree::Mul(a, b),
                    _ => Tree::Div(a, b),
                }
            });
        prop_oneof![
            4 => binary,
            1 => (inner.clone(), 0u32..=3).prop_map(|(a, e)| Tree::Pow(Box::new(a), e)),
            1 => inner.prop_map(|a| Tree::Neg(Box::new(a))),
        ]
    })
}

/// The expression as text; leaves are written as exact decimals.
fn text(t: &Tree) -> String {
    match t {
        Tree::Leaf(n, s) => {
            let value = *n as f64 / f64::from(1u32 << s);
            if *n < 0 {
                format!("({value})")
            } else {
                format!("{value}")
            }
        }
        Tree::Add(a, b) => format!("({} + {})", text(a), text(b)),
        Tree::Sub(a, b) => format!("({} - {})", text(a), text(b)),
        Tree::Mul(a, b) => format!("{} * {}", text(a), text(b)),
        Tree::Div(a, b) => format!("({}) / ({})", text(a), text(b)),
        Tree::Pow(a, e) => format!("({})^{e}", text(a)),
        Tree::Neg(a) => format!("-({})", text(a)),
    }
}

/// A reference rational in `i128`, in lowest terms with a positive denominator.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Ratio {
    fn new(num: i128, den: i128) -> Option<Ratio> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let sign = if den < 0 { -1 } else { 1 };
        Some(Ratio {
            num: sign * num / g,
            den: sign * den / g,
        })
    }

    fn text(&self) -> String {
        if self.den == 1 {
            self.num.to_string()
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }
}

/// Why the reference could not give a value.
#[derive(Debug, PartialEq)]
enum RefError {
    Overflow,
    DivisionByZero,
}

fn reference(t: &Tree) -> Result<Ratio, RefError> {
    use RefError::Overflow;
    let both = |a: &Tree, b: &Tree| Ok::<_, RefError>((reference(a)?, reference(b)?));
    match t {
        Tree::Leaf(n, s) => Ratio::new(i128::from(*n), 1i128 << s).ok_or(Overflow),
        Tree::Add(a, b) | Tree::Sub(a, b) => {
            let (x, y) = both(a, b)?;
            let y_num = if matches!(t, Tree::Sub(..)) {
                -y.num
            } else {
                y.num
            };
            let num = x
                .num
                .checked_mul(y.den)
                .and_then(|l| y_num.checked_mul(x.den).and_then(|r| l.checked_add(r)));
            let den = x.den.checked_mul(y.den);
            num.zip(den)
                .and_then(|(n, d)| Ratio::new(n, d))
                .ok_or(Overflow)
        }
        Tree::Mul(a, b) => {
            let (x, y) = both(a, b)?;
            x.num
                .checked_mul(y.num)
                .zip(x.den.checked_mul(y.den))
                .and_then(|(n, d)| Ratio::new(n, d))
                .ok_or(Overflow)
        }
        Tree::Div(a, b) => {
            let (x, y) = both(a, b)?;
            if y.num == 0 {
                return Err(RefError::DivisionByZero);
            }
            x.num
                .checked_mul(y.den)
                .zip(x.den.checked_mul(y.num))
                .and_then(|(n, d)| Ratio::new(n, d))
                .ok_or(Overflow)
        }
        Tree::Pow(a, e) => {
            let x = reference(a)?;
            x.num
                .checked_pow(*e)
                .zip(x.den.checked_pow(*e))
                .and_then(|(n, d)| Ratio::new(n, d))
                .ok_or(Overflow)
        }
        Tree::Neg(a) => {
            let x = reference(a)?;
            Ok(Ratio {
                num: -x.num,
                den: x.den,
            })
        }
    }
}

/// The same tree in f64: the value, whether every step was exact (dyadic values
/// with fewer than 53 significant bits are), and the largest magnitude on the way.
fn in_f64(t: &Tree) -> (f64, bool, f64) {
    let fits = |v: f64| v.abs() < 2f64.powi(40) && (v * 2f64.powi(12)).fract() == 0.0;
    let (v, exact, largest) = match t {
        Tree::Leaf(n, s) => (*n as f64 / f64::from(1u32 << s), true, 0.0),
        Tree::Add(a, b) | Tree::Sub(a, b) | Tree::Mul(a, b) | Tree::Div(a, b) => {
            let ((x, ex, mx), (y, ey, my)) = (in_f64(a), in_f64(b));
            let v = match t {
                Tree::Add(..) => x + y,
                Tree::Sub(..) => x - y,
                Tree::Mul(..) => x * y,
                _ => x / y,
            };
            (v, ex && ey && !matches!(t, Tree::Div(..)), mx.max(my))
        }
        Tree::Pow(a, e) => {
            let (x, ex, mx) = in_f64(a);
            (x.powi(*e as i32), ex, mx)
        }
        Tree::Neg(a) => {
            let (x, ex, mx) = in_f64(a);
            (-x, ex, mx)
        }
    };
    (v, exact && fits(v), largest.max(v.abs()))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// Exact arithmetic agrees with an independent i128 rational reference.
    #[test]
    fn exact_results_match_a_rational_reference(t in tree(true)) {
        let expr = text(&t);
        let result = Calculator::new().evaluate(&expr);
        match reference(&t) {
            Ok(expected) => {
                let v = result.map_err(|e| TestCaseError::fail(format!("{expr}: {e}")))?;
                prop_assert!(v.is_exact());
                prop_assert_eq!(v.fraction(), Some(expected.text()), "{}", expr);
            }
            Err(RefError::DivisionByZero) => {
                prop_assert!(
                    matches!(result, Err(CalcError::DivisionByZero { .. })),
                    "{}: {:?}", expr, result
                );
            }
            Err(RefError::Overflow) => {}
        }
    }

    /// With + - * and small integer powers of dyadic numbers, f64 is exact when
    /// no step leaves its 53 bits; there the calculator must agree exactly, and
    /// elsewhere to within f64's own error.
    #[test]
    fn dyadic_arithmetic_matches_f64(t in tree(false)) {
        let expr = text(&t);
        let v = Calculator::new()
            .evaluate(&expr)
            .map_err(|e| TestCaseError::fail(format!("{expr}: {e}")))?;
        let (f, f_exact, largest) = in_f64(&t);
        let rounded: f64 = v.rounded().parse().map_err(|_| TestCaseError::fail("unparsable"))?;
        if f_exact {
            let (num, den) = match v.fraction().as_deref().map(|s| s.split_once('/')) {
                Some(Some((n, d))) => (n.parse::<f64>(), d.parse::<f64>()),
                _ => (v.fraction().unwrap_or_default().parse::<f64>(), Ok(1.0)),
            };
            let exact_value = num.ok().zip(den.ok()).map(|(n, d)| n / d);
            prop_assert_eq!(exact_value, Some(f), "{}", expr);
        }
        // f64 itself errs by about 1e-16 of the largest intermediate magnitude.
        prop_assert!(
            (rounded - f).abs() <= 1e-13 * largest.max(1.0),
            "{}: {} vs {}", expr, rounded, f
        );
    }
}

/// A function, its f64 counterpart, the argument range and the tolerance
/// (`|calc - f64| <= tol * max(1, |f64|)`).
type Case = (&'static str, fn(f64) -> f64, f64, f64, f64);

const FUNCTIONS: &[Case] = &[
    ("sqrt", f64::sqrt, 0.0, 1e6, 1e-14),
    ("cbrt", f64::cbrt, -1e6, 1e6, 1e-14),
    ("exp", f64::exp, -40.0, 40.0, 1e-13),
    ("ln", f64::ln, 1e-9, 1e9, 1e-13),
    ("log10", f64::log10, 1e-9, 1e9, 1e-13),
    ("sin", f64::sin, -100.0, 100.0, 1e-12),
    ("cos", f64::cos, -100.0, 100.0, 1e-12),
    ("tan", f64::tan, -1.5, 1.5, 1e-12),
    ("atan", f64::atan, -1e3, 1e3, 1e-13),
    ("asin", f64::asin, -1.0, 1.0, 1e-13),
    ("acos", f64::acos, -1.0, 1.0, 1e-13),
];

proptest! {
    #![proptest_config(config(200))]

    /// Elementary functions agree with the platform's f64 functions.
    #[test]
    fn functions_match_f64(index in 0..FUNCTIONS.len(), unit in 0.0f64..=1.0) {
        let (name, f, lo, hi, tol) = FUNCTIONS[index];
        // The argument as a short decimal that both sides read the same way.
        let x: f64 = format!("{:.9e}", lo + (hi - lo) * unit).parse().unwrap_or(lo);
        let x = if name == "ln" || name == "log10" { x.max(lo) } else { x };
        let expr = format!("{name}({x:e})");
        let expected = f(x);
        match Calculator::new().evaluate(&expr) {
            Ok(v) => {
                let got: f64 = v.rounded().parse().map_err(|_| TestCaseError::fail("unparsable"))?;
                prop_assert!(
                    (got - expected).abs() <= tol * expected.abs().max(1.0),
                    "{}: {} vs {}", expr, got, expected
                );
            }
            // Every argument in range must evaluate.
            Err(e) => prop_assert!(false, "{}: {}", expr, e),
        }
    }

    /// Approximations are correctly rounded: the 15-digit answer is the
    /// 30-digit answer rounded to 15 digits.
    #[test]
    fn approximations_are_correctly_rounded(index in 0..FUNCTIONS.len(), unit in 0.0f64..=1.0) {
        let (name, _, lo, hi, _) = FUNCTIONS[index];
        let x = format!("{:.6e}", lo + (hi - lo) * unit);
        let expr = format!("{name}({x})");
        let short = Calculator::new().evaluate(&expr);
        let long = Calculator::builder().significant_digits(30).build().evaluate(&expr);
        if let (Ok(short), Ok(long)) = (short, long)
            && !short.is_exact()
        {
            let (s, t) = (decimal(&short.rounded()), decimal(&long.rounded()));
            // |s - t| <= half a unit in s's 15th digit, plus t's own rounding.
            let unit15 = magnitude(&s) - 14;
            let unit30 = magnitude(&t) - 29;
            let base = unit30.min(s.1);
            let scale = |d: &(i128, i32)| d.0 * 10i128.pow((d.1 - base) as u32);
            let diff = (scale(&s) - scale(&t)).abs();
            let half15 = 5 * 10i128.pow((unit15 - 1 - base) as u32);
            let half30 = 5 * 10i128.pow((unit30 - 1 - base).max(0) as u32);
            prop_assert!(diff <= half15 + half30, "{}: {} vs {}", expr, short.rounded(), long.rounded());
        }
    }
}

/// `s` as `(mantissa, exponent)` with value `mantissa * 10^exponent`.
fn decimal(s: &str) -> (i128, i32) {
    let (body, exp) = match s.split_once('e') {
        Some((b, e)) => (b, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = format!("{int}{frac}");
    (digits.parse().unwrap_or(0), exp - frac.len() as i32)
}

/// `floor(log10(|value|))` of a decimal from [`decimal`].
fn magnitude(d: &(i128, i32)) -> i32 {
    d.0.unsigned_abs().checked_ilog10().unwrap_or(0) as i32 + d.1
}

/// Evaluates `input` and checks the safety properties: no panic (a panic fails
/// the property), a bounded run time, and sensible positions.
fn check_safe(input: &str) -> Result<(), TestCaseError> {
    const BOUND: Duration = Duration::from_millis(200);
    let calc = Calculator::new();
    let timed = || {
        let start = Instant::now();
        let result = calc.evaluate(input);
        (result, start.elapsed())
    };
    let (result, mut elapsed) = timed();
    if elapsed >= BOUND {
        // Measure once more: a thread preempted on a busy machine is not a slow
        // input, but a slow input is slow both times.
        elapsed = elapsed.min(timed().1);
    }
    prop_assert!(elapsed < BOUND, "{:?} took {:?}", input, elapsed);
    match result {
        Ok(v) => prop_assert!(!v.to_string().is_empty()),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            // Short enough to hand back to a model whatever the input.
            prop_assert!(message.chars().count() < 400, "{}", message);
            if let CalcError::Syntax { position, .. } = e {
                prop_assert!(position <= input.chars().count());
            }
        }
    }
    Ok(())
}

/// Awkward operands: huge, tiny, long, nested.
const OPERANDS: &[&str] = &[
    "0",
    "1",
    "2",
    "9",
    "-1",
    "0.5",
    ".5",
    "1/3",
    "99999999999999999999",
    "1e999999",
    "1e-999999",
    "1e308",
    "1e-300",
    "123456789.987654321",
    "9^9^9",
    "10^10^10",
    "2^16000",
    "factorial(1754)",
    "e",
    "pi",
    "π",
];

const CALLS: &[&str] = &[
    "sqrt(",
    "cbrt(",
    "abs(",
    "floor(",
    "ceil(",
    "round(",
    "min(",
    "max(",
    "gcd(",
    "lcm(",
    "factorial(",
    "binomial(",
    "ln(",
    "log10(",
    "log2(",
    "log(",
    "exp(",
    "sin(",
    "cos(",
    "tan(",
    "asin(",
    "acos(",
    "atan(",
];

const SYMBOLS: &[&str] = &[
    "(", ")", "((((((((", "))))", "^", "^^", "**", "*", "/", "%", "%%", "+", "-", "--", ",", ".",
    "2^", "E", "x", "!", "=", "$", "√", " ", "\t", "\u{0}", "①", "×", "÷", "−",
];

fn token() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        proptest::sample::select(OPERANDS),
        proptest::sample::select(CALLS),
        proptest::sample::select(SYMBOLS),
    ]
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn any_string_is_safe(input in ".{0,200}") {
        check_safe(&input)?;
    }

    #[test]
    fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_safe(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn token_soup_is_safe(tokens in proptest::collection::vec(token(), 0..80)) {
        check_safe(&tokens.concat())?;
    }

    /// Well-formed calls on large and awkward arguments.
    #[test]
    fn calls_on_awkward_arguments_are_safe(
        f in proptest::sample::select(CALLS),
        a in proptest::sample::select(OPERANDS),
        b in proptest::sample::select(OPERANDS),
        op in proptest::sample::select(&["+", "-", "*", "/", "^", "%"][..]),
    ) {
        check_safe(&format!("{f}{a}){op}{b}"))?;
        check_safe(&format!("{f}{a}, {b})"))?;
        check_safe(&format!("{f}{f}{a}){op}{b})"))?;
    }
}
