//! The errors of an evaluation, worded so that a model can fix its input.

/// Why an expression could not be evaluated.
///
/// Positions count characters (not bytes) from 0 in the expression as given.
/// The `Display` text is what a model reads: it names the problem, where it is,
/// and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalcError {
    /// The input is not a well-formed expression.
    #[error("syntax error at position {position} ({}): {message}", found_text(.found))]
    Syntax {
        /// Where the problem is.
        position: usize,
        /// The character found there; `None` at the end of the input.
        found: Option<char>,
        /// What was expected, and a hint.
        message: String,
    },
    /// A division (or a remainder) by zero.
    #[error("division by zero at position {position}")]
    DivisionByZero {
        /// The operator or function that divided.
        position: usize,
    },
    /// A function was given an argument outside its domain.
    #[error("domain error in {function} at position {position}: {message}")]
    Domain {
        /// The function or operator.
        function: String,
        /// Where it is called.
        position: usize,
        /// What is wrong with the argument.
        message: String,
    },
    /// A name that is neither a function nor a constant.
    #[error("unknown {} '{}' at position {position}{}", name_kind(.is_function), shorten(.name), name_hint(.name, .suggestion, .is_function))]
    UnknownName {
        /// The name as written.
        name: String,
        /// Where it starts.
        position: usize,
        /// Whether it was called like a function, `name(...)`.
        is_function: bool,
        /// The nearest known name, if one is close.
        suggestion: Option<String>,
    },
    /// A function was called with too few or too many arguments.
    #[error("{function} at position {position} takes {expected}, but {found} {} given; use {usage}", were(.found))]
    ArgumentCount {
        /// The function.
        function: String,
        /// Where it is called.
        position: usize,
        /// How many it takes, in words ("1 argument", "at least 2 arguments").
        expected: String,
        /// How many it was given.
        found: usize,
        /// The call's shape, e.g. `log(base, x)`, with a hint where one helps.
        usage: String,
    },
    /// A number, a result or the work needed is over the calculator's limits.
    #[error("too large at position {position}: {message}")]
    TooLarge {
        /// The number or operation.
        position: usize,
        /// What would be too large, and the limit.
        message: String,
    },
    /// The expression is longer than the limit.
    #[error("the expression has {length} characters; the limit is {limit}")]
    InputTooLong {
        /// The length in characters.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// Parentheses, calls or operators are nested deeper than the limit.
    #[error(
        "the expression is nested too deeply at position {position} (the limit is {limit} levels); simplify it or split it into steps"
    )]
    TooDeep {
        /// Where the limit was passed.
        position: usize,
        /// The limit.
        limit: usize,
    },
    /// A comparison that the highest working precision could not decide: the
    /// value is too close to a boundary (an integer for `floor`, zero for a sign),
    /// and may be exactly on it.
    #[error("cannot decide at position {position}: {message}")]
    Undecidable {
        /// The operation that needed the decision.
        position: usize,
        /// What could not be decided.
        message: String,
    },
}

fn found_text(found: &Option<char>) -> String {
    match found {
        Some(c) => format!("'{c}'"),
        None => "end of input".to_string(),
    }
}

/// A name as written, shortened with an ellipsis past 30 characters.
fn shorten(name: &str) -> String {
    let count = name.chars().count();
    if count <= 30 {
        return name.to_string();
    }
    let head: String = name.chars().take(12).collect();
    let tail: String = name.chars().skip(count - 12).collect();
    format!("{head}...{tail}")
}

fn name_kind(is_function: &bool) -> &'static str {
    if *is_function { "function" } else { "name" }
}

fn were(found: &usize) -> &'static str {
    if *found == 1 { "was" } else { "were" }
}

fn name_hint(name: &str, suggestion: &Option<String>, is_function: &bool) -> String {
    let lower = name.to_lowercase();
    match (lower.as_str(), suggestion) {
        ("of", _) => "; write '15% * 200' for 15% of 200".to_string(),
        ("mod", _) => "; write 'a % b' for the remainder".to_string(),
        ("x", _) => "; write * for multiplication (2 * 3), and numbers instead of variables"
            .to_string(),
        (_, Some(s)) => format!("; did you mean '{s}'?"),
        _ if *is_function => {
            "; the functions are sqrt, cbrt, abs, floor, ceil, round, min, max, gcd, lcm, \
             factorial, binomial, ln, log10, log2, log, exp, sin, cos, tan, asin, acos, atan"
                .to_string()
        }
        _ => "; the only names are pi and e (there are no variables or units: write the number itself)"
            .to_string(),
    }
}
