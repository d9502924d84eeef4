//! Behaviour of the calculator through its public API: every operator, function,
//! constant and output form, every error kind, and the size limits.

use std::time::{Duration, Instant};

use taper_calculator::{CalcError, Calculator, CalculatorArgs, DESCRIPTION, Evaluation};

fn eval(expr: &str) -> Evaluation {
    Calculator::new()
        .evaluate(expr)
        .unwrap_or_else(|e| panic!("{expr:?} failed: {e}"))
}

/// What the model reads for `expr`.
fn show(expr: &str) -> String {
    eval(expr).to_string()
}

fn err(expr: &str) -> CalcError {
    match Calculator::new().evaluate(expr) {
        Ok(v) => panic!("{expr:?} gave {v}, expected an error"),
        Err(e) => e,
    }
}

/// The exact value as `p/q` (or an integer).
fn exact(expr: &str) -> String {
    eval(expr)
        .fraction()
        .unwrap_or_else(|| panic!("{expr:?} is not exact"))
}

/// An approximate value's digits, checking that it is marked approximate.
fn approx(expr: &str) -> String {
    let v = eval(expr);
    assert!(!v.is_exact(), "{expr:?} should be approximate, got {v}");
    assert!(v.to_string().starts_with("≈ "), "{v}");
    v.rounded()
}

#[test]
fn decimals_are_exact() {
    assert_eq!(show("0.1 + 0.2"), "= 3/10 (exactly 0.3)");
    assert_eq!(show("1 - 0.9"), "= 1/10 (exactly 0.1)");
    assert_eq!(show("19.99 * 3"), "= 5997/100 (exactly 59.97)");
    assert_eq!(
        show("(12.50 * 4 + 3.75) * 1.08"),
        "= 1161/20 (exactly 58.05)"
    );
    assert_eq!(exact("0.1 * 3 - 0.3"), "0");
    assert_eq!(exact(".5 + 5."), "11/2");
}

#[test]
fn operators_and_precedence() {
    assert_eq!(exact("2 + 3 * 4"), "14");
    assert_eq!(exact("(2 + 3) * 4"), "20");
    assert_eq!(exact("10 - 4 - 3"), "3");
    assert_eq!(exact("100 / 10 / 5"), "2");
    assert_eq!(exact("10 / 4"), "5/2");
    assert_eq!(exact("2 ^ 10"), "1024");
    assert_eq!(exact("2 ** 10"), "1024");
    assert_eq!(exact("2 ^ 3 ^ 2"), "512");
    assert_eq!(exact("-2 ^ 2"), "-4");
    assert_eq!(exact("(-2) ^ 2"), "4");
    assert_eq!(exact("2 ^ -2"), "1/4");
    assert_eq!(exact("--3"), "3");
    assert_eq!(exact("-(3 - 5)"), "2");
    assert_eq!(exact("+4"), "4");
    assert_eq!(exact("2 * -3"), "-6");
    assert_eq!(exact("3 × 4 ÷ 2 − 1"), "5");
}

#[test]
fn remainder_has_the_sign_of_the_divisor() {
    assert_eq!(exact("10 % 3"), "1");
    assert_eq!(exact("-7 % 3"), "2");
    assert_eq!(exact("7 % (-3)"), "-2");
    assert_eq!(exact("7.5 % 2"), "3/2");
    assert_eq!(exact("6 % 3"), "0");
    assert_eq!(approx("pi % 1"), "0.141592653589793");
}

#[test]
fn percentages() {
    assert_eq!(exact("15%"), "3/20");
    assert_eq!(exact("200 * 15%"), "30");
    assert_eq!(exact("200 + 15%"), "230");
    assert_eq!(exact("200 - 15%"), "170");
    assert_eq!(exact("80 - 25%"), "60");
    assert_eq!(exact("100 + 10% + 10%"), "121");
    assert_eq!(exact("15% + 200"), "4003/20");
    assert_eq!(exact("50 / 25%"), "200");
    assert_eq!(exact("200 + 2 * 15%"), "2003/10");
    assert_eq!(exact("1200 * (1 + 5%)^2"), "1323");
    assert_eq!(exact("5%%"), "1/2000");
}

#[test]
fn scientific_notation() {
    assert_eq!(exact("1.5e3"), "1500");
    assert_eq!(exact("2E-4"), "1/5000");
    assert_eq!(exact("1e+2"), "100");
    assert_eq!(exact("1.5e3 + 2E-4"), "7500001/5000");
    assert_eq!(exact("0e999999999999999999999"), "0");
}

#[test]
fn roots() {
    assert_eq!(exact("sqrt(16)"), "4");
    assert_eq!(exact("sqrt(16/9)"), "4/3");
    assert_eq!(exact("sqrt(0.25)"), "1/2");
    assert_eq!(exact("sqrt(0)"), "0");
    assert_eq!(approx("sqrt(2)"), "1.4142135623731");
    assert_eq!(exact("cbrt(27)"), "3");
    assert_eq!(exact("cbrt(-8/125)"), "-2/5");
    assert_eq!(approx("cbrt(2)"), "1.25992104989487");
    assert_eq!(approx("cbrt(-2)"), "-1.25992104989487");
}

#[test]
fn powers_stay_exact_when_they_can() {
    assert_eq!(exact("(2/3)^3"), "8/27");
    assert_eq!(exact("4^0.5"), "2");
    assert_eq!(exact("8^(2/3)"), "4");
    assert_eq!(exact("(-8)^(1/3)"), "-2");
    assert_eq!(exact("(16/81)^(-3/4)"), "27/8");
    assert_eq!(exact("0^0"), "1");
    assert_eq!(exact("0^5"), "0");
    assert_eq!(exact("(-1)^(10^30)"), "1");
    assert_eq!(exact("(-1)^(10^30 + 1)"), "-1");
    assert_eq!(exact("1^(10^100)"), "1");
    assert_eq!(approx("2^0.5"), "1.4142135623731");
    assert_eq!(approx("2^pi"), "8.82497782707629");
    assert_eq!(approx("1.5^2.5"), "2.75567596063108");
    assert_eq!(approx("pi^2"), "9.86960440108936");
    assert_eq!(approx("(-2)^(1/3)"), "-1.25992104989487");
}

#[test]
fn rounding_functions() {
    assert_eq!(exact("abs(-3/4)"), "3/4");
    assert_eq!(exact("floor(-3.5)"), "-4");
    assert_eq!(exact("ceil(3.2)"), "4");
    assert_eq!(exact("ceil(-3.2)"), "-3");
    assert_eq!(exact("round(2.5)"), "3");
    assert_eq!(exact("round(-2.5)"), "-3");
    assert_eq!(exact("round(2.4)"), "2");
    assert_eq!(exact("round(3.14159, 2)"), "157/50");
    assert_eq!(exact("round(2.675, 2)"), "67/25");
    assert_eq!(exact("round(1234.5, -2)"), "1200");
    assert_eq!(exact("floor(pi)"), "3");
    assert_eq!(exact("ceil(-pi)"), "-3");
    assert_eq!(exact("round(pi, 3)"), "1571/500");
    assert_eq!(exact("round(e, 3)"), "1359/500");
    assert_eq!(approx("abs(-pi)"), "3.14159265358979");
}

#[test]
fn min_max_gcd_lcm() {
    assert_eq!(exact("min(3, 1/2, 7)"), "1/2");
    assert_eq!(exact("max(3, 1/2, 7, -1)"), "7");
    assert_eq!(exact("min(2)"), "2");
    assert_eq!(exact("max(4, pi)"), "4");
    assert_eq!(approx("max(2, pi)"), "3.14159265358979");
    assert_eq!(approx("min(pi, 22/7)"), "3.14159265358979");
    assert_eq!(exact("gcd(12, 18)"), "6");
    assert_eq!(exact("gcd(12, 18, 27)"), "3");
    assert_eq!(exact("gcd(-4, 6)"), "2");
    assert_eq!(exact("gcd(0, 5)"), "5");
    assert_eq!(exact("lcm(4, 6)"), "12");
    assert_eq!(exact("lcm(2, 3, 4)"), "12");
    assert_eq!(exact("lcm(0, 5)"), "0");
}

#[test]
fn factorial_and_binomial() {
    assert_eq!(exact("factorial(0)"), "1");
    assert_eq!(exact("factorial(20)"), "2432902008176640000");
    assert_eq!(
        eval("factorial(1000)").integer().map(|s| s.len()),
        Some(2568)
    );
    assert_eq!(exact("binomial(10, 3)"), "120");
    assert_eq!(exact("binomial(52, 5)"), "2598960");
    assert_eq!(exact("binomial(5, 7)"), "0");
    assert_eq!(exact("binomial(5, -1)"), "0");
    assert_eq!(
        exact("binomial(10^30, 2)"),
        "499999999999999999999999999999500000000000000000000000000000"
    );
}

#[test]
fn logarithms_and_exponentials() {
    assert_eq!(approx("ln(2)"), "0.693147180559945");
    assert_eq!(approx("ln(10)"), "2.30258509299405");
    assert_eq!(exact("ln(1)"), "0");
    assert_eq!(exact("log10(1000)"), "3");
    assert_eq!(exact("log10(0.001)"), "-3");
    assert_eq!(approx("log10(2)"), "0.301029995663981");
    assert_eq!(exact("log2(8)"), "3");
    assert_eq!(approx("log2(3)"), "1.58496250072116");
    assert_eq!(exact("log(2, 1024)"), "10");
    assert_eq!(exact("log(8, 4)"), "2/3");
    assert_eq!(exact("log(4, 2)"), "1/2");
    assert_eq!(exact("log(1/2, 8)"), "-3");
    assert_eq!(exact("log(3, 81)"), "4");
    assert_eq!(exact("log(7, 1)"), "0");
    assert_eq!(exact("exp(0)"), "1");
    assert_eq!(approx("exp(1)"), "2.71828182845905");
    assert_eq!(approx("exp(10)"), "22026.4657948067");
    assert_eq!(approx("exp(-100)"), "3.72007597602084e-44");
    assert_eq!(approx("e^pi"), "23.1406926327793");
    assert_eq!(approx("ln(1 + 1e-30)"), "1e-30");
    assert_eq!(approx("exp(ln(5))"), "5");
}

#[test]
fn trigonometry() {
    assert_eq!(exact("sin(0)"), "0");
    assert_eq!(exact("cos(0)"), "1");
    assert_eq!(exact("tan(0)"), "0");
    assert_eq!(exact("asin(0)"), "0");
    assert_eq!(exact("acos(1)"), "0");
    assert_eq!(exact("atan(0)"), "0");
    assert_eq!(approx("sin(1)"), "0.841470984807897");
    assert_eq!(approx("cos(1)"), "0.54030230586814");
    assert_eq!(approx("tan(1)"), "1.5574077246549");
    assert_eq!(approx("asin(0.3)"), "0.304692654015398");
    assert_eq!(approx("acos(0.3)"), "1.2661036727795");
    assert_eq!(approx("asin(1)"), "1.5707963267949");
    assert_eq!(approx("acos(-1)"), "3.14159265358979");
    assert_eq!(approx("atan(1/3)"), "0.321750554396642");
    assert_eq!(approx("atan(-50)"), "-1.55079899282175");
    assert_eq!(approx("atan(1) * 4"), "3.14159265358979");
    assert_eq!(approx("sin(355/113)"), "-2.66764189062419e-7");
    assert_eq!(approx("sin(10^100)"), "-0.372376123661277");
    assert_eq!(approx("tan(10^4000)"), "-0.557481857453009");
    // A wide ball far from zero: atan's slope there is tiny.
    assert_eq!(approx("atan(pi * 1e100)"), "1.5707963267949");
    assert_eq!(approx("atan(2^16000 - atan(1))"), "1.5707963267949");
}

#[test]
fn constants_and_names() {
    assert_eq!(approx("pi"), "3.14159265358979");
    assert_eq!(approx("π"), "3.14159265358979");
    assert_eq!(approx("PI"), "3.14159265358979");
    assert_eq!(approx("e"), "2.71828182845905");
    assert_eq!(approx("2 * pi * 3"), "18.8495559215388");
    assert_eq!(exact("SQRT(4)"), "2");
    assert_eq!(exact("0 * pi"), "0");
}

#[test]
fn many_digits_on_request() {
    let calc = Calculator::builder().significant_digits(50).build();
    let digits = |expr: &str| {
        let v = calc
            .evaluate(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(v.significant_digits(), 50);
        v.rounded()
    };
    // References computed independently at 80 digits.
    for (expr, expected) in [
        ("pi", "3.1415926535897932384626433832795028841971693993751"),
        ("e", "2.7182818284590452353602874713526624977572470937"),
        (
            "sqrt(2)",
            "1.4142135623730950488016887242096980785696718753769",
        ),
        (
            "ln(2)",
            "0.69314718055994530941723212145817656807550013436026",
        ),
        (
            "sin(1)",
            "0.84147098480789650665250232163029899962256306079837",
        ),
        (
            "cos(1)",
            "0.54030230586813971740093660744297660373231042061792",
        ),
        (
            "tan(1)",
            "1.5574077246549022305069748074583601730872507723815",
        ),
        (
            "acos(0.3)",
            "1.2661036727794991112593187304122222751440246679808",
        ),
        (
            "cbrt(2)",
            "1.2599210498948731647672106072782283505702514647015",
        ),
        (
            "log10(2)",
            "0.30102999566398119521373889472449302676818988146211",
        ),
        (
            "exp(-100)",
            "3.7200759760208359629596958038631183373588922923768e-44",
        ),
        (
            "sin(355/113)",
            "-2.6676418906241914840637452887346888682210542662127e-7",
        ),
        (
            "sin(10^100)",
            "-0.37237612366127668826208669555316429571966788356743",
        ),
        ("ln(1 + 1e-30)", "9.999999999999999999999999999995e-31"),
    ] {
        assert_eq!(digits(expr), expected, "{expr}");
    }
    let few = Calculator::builder().significant_digits(3).build();
    assert_eq!(
        few.evaluate("pi").map(|v| v.to_string()),
        Ok("≈ 3.14 (approximate, rounded to 3 significant digits)".to_string())
    );
}

#[test]
fn output_forms() {
    assert_eq!(show("42"), "= 42");
    assert_eq!(show("-7 * 6"), "= -42");
    assert_eq!(show("3/4"), "= 3/4 (exactly 0.75)");
    assert_eq!(show("-1/8"), "= -1/8 (exactly -0.125)");
    assert_eq!(
        show("1/3"),
        "= 1/3 (≈ 0.333333333333333, the repeating decimal 0.(3))"
    );
    assert_eq!(
        show("1/6"),
        "= 1/6 (≈ 0.166666666666667, the repeating decimal 0.1(6))"
    );
    assert_eq!(
        show("22/7"),
        "= 22/7 (≈ 3.14285714285714, the repeating decimal 3.(142857))"
    );
    assert_eq!(
        show("1/97"),
        "= 1/97 (≈ 0.0103092783505155, a repeating decimal)"
    );
    assert_eq!(
        show("2^1000"),
        "≈ 1.07150860718627e301 (an exact integer with 302 digits, shown to 15 significant digits)"
    );
    assert_eq!(
        show("2^-1000"),
        "≈ 9.33263618503219e-302 (an exact fraction with a 1-digit numerator and a 302-digit denominator, shown to 15 significant digits)"
    );
    assert_eq!(
        show("sqrt(2)"),
        "≈ 1.4142135623731 (approximate, rounded to 15 significant digits)"
    );
    assert_eq!(
        show("sin(pi)"),
        "≈ 0 (approximate: the value is within 1e-158 of 0 and may be exactly 0)"
    );
    assert!(show("10^20 / 3").contains("≈ 3.33333333333333e19"));
    assert!(show("1e-9 / 7").contains("the repeating decimal 0.000000000(142857)"));
}

#[test]
fn accessors() {
    let v = eval("0.1 + 0.2");
    assert!(v.is_exact());
    assert_eq!(v.integer(), None);
    assert_eq!(v.fraction().as_deref(), Some("3/10"));
    assert_eq!(v.exact_decimal().as_deref(), Some("0.3"));
    assert_eq!(v.repeating_decimal(), None);
    assert_eq!(v.rounded(), "0.3");
    assert_eq!(v.significant_digits(), 15);

    let v = eval("2^100");
    assert_eq!(
        v.integer().as_deref(),
        Some("1267650600228229401496703205376")
    );
    assert_eq!(v.rounded(), "1.26765060022823e30");

    let v = eval("5/6");
    assert_eq!(v.exact_decimal(), None);
    assert_eq!(v.repeating_decimal().as_deref(), Some("0.8(3)"));
    assert_eq!(v.rounded(), "0.833333333333333");

    let v = eval("sqrt(3)");
    assert!(!v.is_exact());
    assert_eq!(v.fraction(), None);
    assert_eq!(v.integer(), None);
    assert_eq!(v.exact_decimal(), None);
    assert_eq!(v.rounded(), "1.73205080756888");
    assert_eq!(v.significant_digits(), 15);

    let v = eval("sin(pi)");
    assert_eq!(v.rounded(), "0");
    assert_eq!(v.significant_digits(), 0);
}

#[test]
fn syntax_errors_have_positions() {
    let cases: &[(&str, usize, Option<char>, &str)] = &[
        ("2 + * 3", 4, Some('*'), "expected a number"),
        ("(1 + 2", 6, None, "close the '(' at position 0"),
        ("1 + 2)", 5, Some(')'), "unmatched"),
        ("2(3 + 4)", 1, Some('('), "implicit multiplication"),
        ("2pi", 1, Some('p'), "missing operator"),
        ("5!", 1, Some('!'), "factorial(n)"),
        ("$12.50 * 3", 0, Some('$'), "currency"),
        ("1,000 + 1", 1, Some(','), "thousands separators"),
        ("x = 3", 2, Some('='), "without '='"),
        (
            "sqrt 4",
            5,
            Some('4'),
            "expected '(' after the function name 'sqrt'",
        ),
        ("", 0, None, "empty"),
        ("   ", 0, None, "empty"),
        ("12.5 * 4 +", 10, None, "ends here"),
        ("max(1,)", 6, Some(')'), "expected a number"),
        ("sqrt(2", 6, None, "close the '(' at position 4"),
        ("[1 + 2]", 0, Some('['), "parentheses"),
        ("π π", 2, Some('π'), "missing operator"),
        ("2 x 3", 2, Some('x'), "write * for multiplication"),
    ];
    for &(input, position, found, fragment) in cases {
        match Calculator::new().evaluate(input) {
            Err(
                e @ CalcError::Syntax {
                    position: p,
                    found: f,
                    ..
                },
            ) => {
                assert_eq!((p, f), (position, found), "{input:?}: {e}");
                assert!(e.to_string().contains(fragment), "{input:?}: {e}");
                assert!(
                    e.to_string()
                        .starts_with(&format!("syntax error at position {position} (")),
                    "{e}"
                );
            }
            other => panic!("{input:?}: expected a syntax error, got {other:?}"),
        }
    }
    assert_eq!(
        err("2 + * 3").to_string(),
        "syntax error at position 4 ('*'): expected a number, a name or '('"
    );
    assert_eq!(
        err("(1 + 2").to_string(),
        "syntax error at position 6 (end of input): expected ')' to close the '(' at position 0"
    );
}

#[test]
fn division_by_zero() {
    for (input, position) in [
        ("1/0", 1),
        ("5 % 0", 2),
        ("1 / (2 - 2)", 2),
        ("0^-1", 1),
        ("2 + 3 / (0.1 * 10 - 1)", 6),
    ] {
        assert_eq!(
            err(input),
            CalcError::DivisionByZero { position },
            "{input}"
        );
    }
    assert_eq!(err("1/0").to_string(), "division by zero at position 1");
}

#[test]
fn domain_errors() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("sqrt(-4)", "sqrt", 0, "negative number (-4)"),
        ("1 + sqrt(-0.5)", "sqrt", 4, "not real"),
        ("ln(0)", "ln", 0, "logarithm of 0"),
        ("ln(-1)", "ln", 0, "negative number"),
        ("log10(0)", "log10", 0, "logarithm of 0"),
        ("log(1, 5)", "log", 0, "base must be positive and not 1"),
        ("log(-2, 5)", "log", 0, "base must be positive"),
        ("asin(2)", "asin", 0, "-1 <= x <= 1"),
        ("acos(-1.5)", "acos", 0, "-1 <= x <= 1"),
        ("asin(pi)", "asin", 0, "-1 <= x <= 1"),
        ("factorial(-1)", "factorial", 0, "whole number >= 0"),
        ("factorial(2.5)", "factorial", 0, "got 2.5"),
        ("factorial(pi)", "factorial", 0, "whole number"),
        ("gcd(1.5, 3)", "gcd", 0, "exact integers"),
        ("binomial(-5, 2)", "binomial", 0, "n >= 0"),
        ("(-4)^0.5", "^", 4, "even denominator"),
        ("(-2)^pi", "^", 4, "negative base"),
        ("round(2.5, 0.5)", "round", 0, "whole number"),
    ];
    for &(input, function, position, fragment) in cases {
        match err(input) {
            CalcError::Domain {
                function: f,
                position: p,
                message,
            } => {
                assert_eq!((f.as_str(), p), (function, position), "{input}");
                assert!(message.contains(fragment), "{input}: {message}");
            }
            other => panic!("{input}: expected a domain error, got {other:?}"),
        }
    }
    assert_eq!(
        err("sqrt(-4)").to_string(),
        "domain error in sqrt at position 0: the square root of a negative number (-4) is not real"
    );
}

#[test]
fn unknown_names_suggest_a_fix() {
    let cases: &[(&str, &str, usize, bool, Option<&str>)] = &[
        ("sqr(2)", "sqr", 0, true, Some("sqrt")),
        ("1 + sine(1)", "sine", 4, true, Some("sin")),
        ("arcsin(0.5)", "arcsin", 0, true, Some("asin")),
        ("2 * Pie", "Pie", 4, false, Some("pi")),
        ("x + 1", "x", 0, false, None),
        ("fact(5)", "fact", 0, true, None),
    ];
    for &(input, name, position, is_function, suggestion) in cases {
        match err(input) {
            CalcError::UnknownName {
                name: n,
                position: p,
                is_function: f,
                suggestion: s,
            } => {
                assert_eq!(
                    (n.as_str(), p, f, s.as_deref()),
                    (name, position, is_function, suggestion),
                    "{input}"
                );
            }
            other => panic!("{input}: expected an unknown name, got {other:?}"),
        }
    }
    assert_eq!(
        err("sqr(2)").to_string(),
        "unknown function 'sqr' at position 0; did you mean 'sqrt'?"
    );
    assert!(
        err("x + 1")
            .to_string()
            .contains("numbers instead of variables")
    );
    assert!(
        err("2 x 3")
            .to_string()
            .contains("write * for multiplication")
    );
    assert!(err("5 * km").to_string().contains("no variables or units"));
    assert!(err("fact(5)").to_string().contains("factorial"));
    assert!(err("15% of 200").to_string().contains("15% * 200"));
    let long_name = format!("{}z", "y".repeat(800));
    assert_eq!(
        err(&long_name).to_string(),
        "unknown name 'yyyyyyyyyyyy...yyyyyyyyyyyz' at position 0; the only names are pi and e (there are no variables or units: write the number itself)"
    );
}

#[test]
fn argument_counts() {
    match err("log(100)") {
        CalcError::ArgumentCount {
            function,
            position,
            found,
            ..
        } => assert_eq!((function.as_str(), position, found), ("log", 0, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err("log(100)").to_string(),
        "log at position 0 takes 2 arguments, but 1 was given; use log(base, x); for one argument use ln(x) (natural) or log10(x)"
    );
    assert!(
        err("2 + sqrt(1, 2)")
            .to_string()
            .starts_with("sqrt at position 4 takes 1 argument, but 2 were given")
    );
    assert!(err("max()").to_string().contains("at least 1 argument"));
    assert!(err("gcd(4)").to_string().contains("at least 2 arguments"));
    assert!(
        err("round(1, 2, 3)")
            .to_string()
            .contains("1 or 2 arguments")
    );
    assert!(err("binomial(5)").to_string().contains("binomial(n, k)"));
}

/// Runs `expr` and checks that it fails as too large, quickly.
fn too_large_fast(calc: &Calculator, expr: &str) -> String {
    let start = Instant::now();
    let result = calc.evaluate(expr);
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_millis(100),
        "{expr} took {elapsed:?}"
    );
    match result {
        Err(e @ CalcError::TooLarge { .. }) => e.to_string(),
        other => panic!("{expr}: expected too large, got {other:?}"),
    }
}

#[test]
fn huge_computations_are_refused_quickly() {
    let calc = Calculator::new();
    let message = too_large_fast(&calc, "9^9^9^9");
    assert_eq!(
        message,
        "too large at position 3: 9^387420489 would have at least 1.16e9 bits; the limit is 16384 bits (about 4932 decimal digits)"
    );
    assert!(too_large_fast(&calc, "factorial(10^9)").contains("largest allowed argument is 1754"));
    assert!(too_large_fast(&calc, "10^10^10").contains("10^10000000000"));
    too_large_fast(&calc, "2^16384");
    too_large_fast(&calc, "factorial(1755)");
    too_large_fast(&calc, "binomial(100000, 50000)");
    too_large_fast(&calc, "1e99999999999999999999999");
    too_large_fast(&calc, "1e-5000");
    too_large_fast(&calc, "exp(100000)");
    too_large_fast(&calc, "exp(-100000)");
    too_large_fast(&calc, "pi^100000");
    too_large_fast(&calc, "lcm(2^9000, 3^6000)");
    too_large_fast(&calc, "(2^9000 + 1) * (2^9000 + 3)");
    // Messages stay short however large the numbers.
    let long = format!("{}e5000", "9".repeat(200));
    assert!(too_large_fast(&calc, &long).len() < 200);
    assert!(too_large_fast(&calc, "pi^(10^4000)").len() < 200);
    assert!(err("factorial(-(10^4000))").to_string().len() < 200);
    // Just inside the limits.
    assert!(calc.evaluate("2^16383").is_ok());
    assert!(calc.evaluate("factorial(1754)").is_ok());
}

#[test]
fn limits_are_configurable() {
    let small = Calculator::builder().max_bits(256).build();
    assert!(small.evaluate("2^255").is_ok());
    assert!(matches!(
        small.evaluate("2^256"),
        Err(CalcError::TooLarge { .. })
    ));
    assert!(
        small
            .evaluate("factorial(57)")
            .is_ok_and(|v| v.integer().is_some())
    );
    assert!(
        matches!(small.evaluate("factorial(60)"), Err(CalcError::TooLarge { message, .. }) if message.contains("largest allowed argument is 57"))
    );

    assert!(matches!(
        small.evaluate(&format!("1 + 5{}", "%".repeat(40))),
        Err(CalcError::TooLarge { position: 5, .. })
    ));

    let short = Calculator::builder().max_length(10).build();
    assert_eq!(
        short.evaluate("1 + 2 + 3 + 4"),
        Err(CalcError::InputTooLong {
            length: 13,
            limit: 10
        })
    );
    assert!(short.evaluate("1 + 2 + 3").is_ok());

    let shallow = Calculator::builder().max_depth(3).build();
    assert!(shallow.evaluate("((1))").is_ok());
    assert_eq!(
        shallow.evaluate("sqrt((((1))))"),
        Err(CalcError::TooDeep {
            position: 7,
            limit: 3
        })
    );
}

#[test]
fn deep_nesting_cannot_overflow_the_stack() {
    let calc = Calculator::new();
    let nested = |open: &str, n: usize| format!("{}1{}", open.repeat(n), ")".repeat(n));
    assert!(matches!(
        calc.evaluate(&nested("(", 101)),
        Err(CalcError::TooDeep { limit: 100, .. })
    ));
    assert!(matches!(
        calc.evaluate(&nested("sqrt(", 150)),
        Err(CalcError::TooDeep { limit: 100, .. })
    ));
    assert!(matches!(
        calc.evaluate(&format!("{}2", "2^".repeat(400))),
        Err(CalcError::TooDeep { .. })
    ));
    // Long flat chains are not nesting.
    let sum = vec!["1"; 400].join("+");
    assert_eq!(
        calc.evaluate(&sum).map(|v| v.to_string()),
        Ok("= 400".to_string())
    );
    let minus = format!("{}5", "-".repeat(900));
    assert_eq!(
        calc.evaluate(&minus).map(|v| v.to_string()),
        Ok("= 5".to_string())
    );
    // The deepest allowed input runs in a thread with a small stack.
    let deepest = [
        nested("(", 100),
        nested("sqrt(", 99),
        nested("-(", 100),
        nested("max(1,", 100),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            deepest
                .iter()
                .map(|input| Calculator::new().evaluate(input).is_ok())
                .collect::<Vec<_>>()
        })
        .expect("spawning a thread");
    assert_eq!(handle.join().ok(), Some(vec![true; 4]));
}

#[test]
fn undecidable_comparisons_are_reported() {
    match err("floor(sqrt(2)^2)") {
        CalcError::Undecidable { position, message } => {
            assert_eq!(position, 0);
            assert!(message.contains("may be exactly 2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(err("tan(pi/2)"), CalcError::Undecidable { .. }));
    assert!(matches!(
        err("1/(pi - pi)"),
        CalcError::Undecidable { position: 1, .. }
    ));
    assert!(matches!(
        err("sqrt(sin(pi))"),
        CalcError::Undecidable { .. }
    ));
    // Decidable with more precision: the calculator retries and succeeds.
    assert_eq!(
        approx("sqrt(2) * 1e20 - 141421356237309504880"),
        "0.168872420969808"
    );
    assert_eq!(exact("floor((1 + 1e-60) * pi / pi * 3)"), "3");
}

#[test]
fn description_examples_are_true() {
    let calc = Calculator::new();
    let examples: Vec<&str> = DESCRIPTION
        .lines()
        .skip_while(|l| !l.starts_with("Examples:"))
        .skip(1)
        .collect();
    assert_eq!(examples.len(), 4);
    for line in examples {
        let (input, output) = line
            .split_once(" -> ")
            .unwrap_or_else(|| panic!("example without ' -> ': {line}"));
        assert_eq!(
            calc.evaluate(input).map(|v| v.to_string()),
            Ok(output.to_string()),
            "{input}"
        );
    }
}

#[test]
fn arguments_deserialize_and_have_a_schema() {
    let args: CalculatorArgs =
        serde_json::from_str(r#"{"expression": "200 + 15%"}"#).expect("valid arguments");
    assert_eq!(args.expression, "200 + 15%");
    assert_eq!(
        Calculator::new()
            .evaluate(&args.expression)
            .map(|v| v.to_string()),
        Ok("= 230".to_string())
    );
    assert!(serde_json::from_str::<CalculatorArgs>(r#"{"expr": "1"}"#).is_err());

    let schema = serde_json::to_value(schemars::schema_for!(CalculatorArgs)).expect("schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], serde_json::json!(["expression"]));
    assert_eq!(schema["additionalProperties"], false);
    assert!(
        serde_json::from_str::<CalculatorArgs>(r#"{"expression": "1", "units": "m"}"#).is_err()
    );
    let expression = &schema["properties"]["expression"];
    assert_eq!(expression["type"], "string");
    let description = expression["description"].as_str().unwrap_or_default();
    for fragment in ["200 - 15%", "log(base, x)", "remainder", "2*pi"] {
        assert!(description.contains(fragment), "{fragment}: {description}");
    }
}

#[test]
fn evaluation_is_fast_for_everyday_expressions() {
    // A loose sanity bound (debug builds included), not a benchmark.
    let calc = Calculator::new();
    let start = Instant::now();
    for _ in 0..100 {
        calc.evaluate("(1250 * 12 - 15%) / 3 + 2^10")
            .expect("valid expression");
    }
    assert!(start.elapsed() < Duration::from_secs(2));
}
