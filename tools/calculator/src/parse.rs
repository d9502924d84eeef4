//! Tokens, the expression tree and the parser.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! sum     := product (('+' | '-') product)*
//! product := unary (('*' | '/' | '%') unary)*
//! unary   := ('-' | '+')* power
//! power   := postfix ('^' unary)?            right-associative: 2^3^2 = 2^9
//! postfix := primary '%'*                    a percentage
//! primary := number | constant | function '(' sum (',' sum)* ')' | '(' sum ')'
//! ```
//!
//! `%` directly followed by a number, a name or `(` is the remainder operator;
//! otherwise it marks a percentage. Sums and products are kept flat so that long
//! chains do not deepen the tree; everything that does nest (parentheses, calls,
//! exponents) counts against the depth limit, which bounds recursion here and in
//! the evaluator.

use num_bigint::BigInt;
use num_traits::Zero;

use crate::error::CalcError;
use crate::rational::Rational;

/// A constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Constant {
    Pi,
    E,
}

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Sqrt,
    Cbrt,
    Abs,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
    Gcd,
    Lcm,
    Factorial,
    Binomial,
    Ln,
    Log10,
    Log2,
    Log,
    Exp,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
}

/// Name, function, fewest and most arguments (`None`: any number), usage.
const FUNCTIONS: &[(&str, Func, usize, Option<usize>, &str)] = &[
    ("sqrt", Func::Sqrt, 1, Some(1), "sqrt(x)"),
    ("cbrt", Func::Cbrt, 1, Some(1), "cbrt(x)"),
    ("abs", Func::Abs, 1, Some(1), "abs(x)"),
    ("floor", Func::Floor, 1, Some(1), "floor(x)"),
    ("ceil", Func::Ceil, 1, Some(1), "ceil(x)"),
    (
        "round",
        Func::Round,
        1,
        Some(2),
        "round(x) or round(x, digits), e.g. round(3.14159, 2)",
    ),
    ("min", Func::Min, 1, None, "min(a, b, ...)"),
    ("max", Func::Max, 1, None, "max(a, b, ...)"),
    ("gcd", Func::Gcd, 2, None, "gcd(a, b, ...)"),
    ("lcm", Func::Lcm, 2, None, "lcm(a, b, ...)"),
    ("factorial", Func::Factorial, 1, Some(1), "factorial(n)"),
    ("binomial", Func::Binomial, 2, Some(2), "binomial(n, k)"),
    ("ln", Func::Ln, 1, Some(1), "ln(x)"),
    ("log10", Func::Log10, 1, Some(1), "log10(x)"),
    ("log2", Func::Log2, 1, Some(1), "log2(x)"),
    (
        "log",
        Func::Log,
        2,
        Some(2),
        "log(base, x); for one argument use ln(x) (natural) or log10(x)",
    ),
    ("exp", Func::Exp, 1, Some(1), "exp(x)"),
    ("sin", Func::Sin, 1, Some(1), "sin(x) with x in radians"),
    ("cos", Func::Cos, 1, Some(1), "cos(x) with x in radians"),
    ("tan", Func::Tan, 1, Some(1), "tan(x) with x in radians"),
    ("asin", Func::Asin, 1, Some(1), "asin(x)"),
    ("acos", Func::Acos, 1, Some(1), "acos(x)"),
    ("atan", Func::Atan, 1, Some(1), "atan(x)"),
];

const CONSTANTS: &[(&str, Constant)] = &[("pi", Constant::Pi), ("e", Constant::E)];

impl Func {
    /// The name as the user writes it.
    pub(crate) fn name(self) -> &'static str {
        FUNCTIONS
            .iter()
            .find(|entry| entry.1 == self)
            .map_or("?", |entry| entry.0)
    }
}

/// A sum's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddOp {
    Add,
    Sub,
}

/// A product's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MulOp {
    Mul,
    Div,
    Rem,
}

/// The expression tree. `pos` fields are character positions for errors.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Number(Rational),
    Const(Constant, usize),
    Neg(Box<Expr>),
    /// `inner` divided by 100 `count` times; `pos` is the first `%`.
    Percent {
        inner: Box<Expr>,
        count: u32,
        pos: usize,
    },
    Sum {
        first: Box<Expr>,
        rest: Vec<(AddOp, usize, Expr)>,
    },
    Product {
        first: Box<Expr>,
        rest: Vec<(MulOp, usize, Expr)>,
    },
    Power {
        base: Box<Expr>,
        pos: usize,
        exponent: Box<Expr>,
    },
    Call {
        func: Func,
        pos: usize,
        args: Vec<Expr>,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Number(Rational),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
    first: Option<char>,
}

/// Parses `input` into a tree, within the size limits.
pub(crate) fn parse(input: &str, max_bits: u64, max_depth: usize) -> Result<Expr, CalcError> {
    let chars: Vec<char> = input.chars().collect();
    let tokens = lex(&chars, max_bits)?;
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        depth: 0,
        max_depth,
    };
    if parser.peek().tok == Tok::End {
        return Err(CalcError::Syntax {
            position: 0,
            found: None,
            message: "the expression is empty; write e.g. 2 + 3 * 4".to_string(),
        });
    }
    let expr = parser.sum()?;
    let next = parser.peek();
    if next.tok != Tok::End {
        return Err(parser.unexpected(next, None));
    }
    Ok(expr)
}

fn lex(chars: &[char], max_bits: u64) -> Result<Vec<Token>, CalcError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = match c {
            '+' => Some(Tok::Plus),
            '-' | '\u{2212}' => Some(Tok::Minus),
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                Some(Tok::Caret)
            }
            '*' | '\u{00d7}' => Some(Tok::Star),
            '/' | '\u{00f7}' => Some(Tok::Slash),
            '%' => Some(Tok::Percent),
            '^' => Some(Tok::Caret),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '\u{03c0}' => Some(Tok::Ident("pi".to_string())),
            _ => None,
        };
        if let Some(tok) = simple {
            i += 1;
            tokens.push(Token {
                tok,
                pos: start,
                first: Some(c),
            });
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (value, end) = lex_number(chars, i, max_bits)?;
            tokens.push(Token {
                tok: Tok::Number(value),
                pos: start,
                first: Some(c),
            });
            i = end;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                pos: start,
                first: Some(c),
            });
            continue;
        }
        return Err(CalcError::Syntax {
            position: i,
            found: Some(c),
            message: bad_char_hint(c).to_string(),
        });
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: chars.len(),
        first: None,
    });
    Ok(tokens)
}

fn bad_char_hint(c: char) -> &'static str {
    match c {
        '!' => "use factorial(n) instead of n!",
        '=' => "give only the expression, without '='",
        '$' | '\u{20ac}' | '\u{00a3}' | '\u{00a5}' => "leave out currency symbols",
        '[' | ']' | '{' | '}' => "use parentheses ( ) for grouping",
        '.' => "a decimal point must be followed by digits, as in 0.5",
        '\u{221a}' => "write sqrt(x) for a square root",
        _ => "this character is not part of the calculator's syntax",
    }
}

/// Lexes a decimal number with an optional fraction and exponent, starting at
/// `start`; returns its exact value and the index after it.
fn lex_number(chars: &[char], start: usize, max_bits: u64) -> Result<(Rational, usize), CalcError> {
    let mut i = start;
    let mut digits = String::new();
    while i < chars.len() && chars[i].is_ascii_digit() {
        digits.push(chars[i]);
        i += 1;
    }
    let mut frac_len: i64 = 0;
    if i < chars.len() && chars[i] == '.' {
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            digits.push(chars[i]);
            frac_len += 1;
            i += 1;
        }
    }
    let mut exponent: Option<i64> = Some(0);
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let mut j = i + 1;
        let negative = match chars.get(j) {
            Some('-') | Some('\u{2212}') => {
                j += 1;
                true
            }
            Some('+') => {
                j += 1;
                false
            }
            _ => false,
        };
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            let mut exp_digits = String::new();
            while j < chars.len() && chars[j].is_ascii_digit() {
                exp_digits.push(chars[j]);
                j += 1;
            }
            // An exponent that does not fit in i64 is far beyond any limit.
            exponent = exp_digits
                .parse::<i64>()
                .ok()
                .map(|e| if negative { -e } else { e });
            i = j;
        }
    }
    let mantissa: BigInt = digits.parse().unwrap_or_default();
    if mantissa.is_zero() {
        return Ok((Rational::zero(), i));
    }
    let too_large = || CalcError::TooLarge {
        position: start,
        message: format!(
            "the number {} is beyond the limit of {max_bits} bits (about {} decimal digits) for a numerator or denominator",
            abbreviate(&chars[start..i]),
            (max_bits as f64 * std::f64::consts::LOG10_2) as u64
        ),
    };
    let scale = exponent
        .and_then(|e| e.checked_sub(frac_len))
        .ok_or_else(too_large)?;
    // 10^k needs more than 3.3k bits: reject before computing it.
    if scale.unsigned_abs() > max_bits / 3 + 1 {
        return Err(too_large());
    }
    let power = Rational::pow10(scale as i32);
    let value = Rational::from_int(mantissa).mul(&power);
    if value.bits() > max_bits {
        return Err(too_large());
    }
    Ok((value, i))
}

/// The text of `chars`, shortened with an ellipsis past 30 characters.
fn abbreviate(chars: &[char]) -> String {
    if chars.len() <= 30 {
        chars.iter().collect()
    } else {
        format!(
            "{}...{} ({} characters)",
            chars[..12].iter().collect::<String>(),
            chars[chars.len() - 12..].iter().collect::<String>(),
            chars.len()
        )
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    depth: usize,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a Token {
        let tokens: &'a [Token] = self.tokens;
        // `lex` always ends the list with `End`, and `advance` never passes it.
        &tokens[self.at.min(tokens.len() - 1)]
    }

    fn peek_at(&self, offset: usize) -> &'a Token {
        let tokens: &'a [Token] = self.tokens;
        &tokens[(self.at + offset).min(tokens.len() - 1)]
    }

    fn advance(&mut self) -> &'a Token {
        let token = self.peek();
        if token.tok != Tok::End {
            self.at += 1;
        }
        token
    }

    fn enter(&mut self, pos: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(CalcError::TooDeep {
                position: pos,
                limit: self.max_depth,
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// An error for a token that cannot come here. `open` is the position of an
    /// unclosed `(` when a `)` is what the caller expects.
    fn unexpected(&self, token: &Token, open: Option<usize>) -> CalcError {
        let message = match (&token.tok, open) {
            (Tok::End, Some(p)) => format!("expected ')' to close the '(' at position {p}"),
            (Tok::End, None) => "the expression ends too early".to_string(),
            (Tok::Ident(name), _) if name == "x" || name == "X" => {
                "missing operator before this: write * for multiplication (2 * 3, not 2 x 3)"
                    .to_string()
            }
            (Tok::Number(_) | Tok::Ident(_) | Tok::LParen, _) => {
                "missing operator before this (implicit multiplication is not supported: write 2*(3+4), not 2(3+4))".to_string()
            }
            (Tok::RParen, None) => "unmatched ')'".to_string(),
            (Tok::Comma, None) => {
                "',' only separates function arguments; write numbers without thousands separators (1000, not 1,000)".to_string()
            }
            (_, Some(p)) => format!("expected ')' to close the '(' at position {p}"),
            _ => "unexpected here".to_string(),
        };
        CalcError::Syntax {
            position: token.pos,
            found: token.first,
            message,
        }
    }

    fn sum(&mut self) -> Result<Expr, CalcError> {
        let first = self.product()?;
        let mut rest = Vec::new();
        loop {
            let token = self.peek();
            let op = match token.tok {
                Tok::Plus => AddOp::Add,
                Tok::Minus => AddOp::Sub,
                _ => break,
            };
            self.advance();
            rest.push((op, token.pos, self.product()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Sum {
                first: Box::new(first),
                rest,
            }
        })
    }

    fn product(&mut self) -> Result<Expr, CalcError> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let token = self.peek();
            let op = match token.tok {
                Tok::Star => MulOp::Mul,
                Tok::Slash => MulOp::Div,
                Tok::Percent => MulOp::Rem,
                _ => break,
            };
            self.advance();
            rest.push((op, token.pos, self.unary()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Product {
                first: Box::new(first),
                rest,
            }
        })
    }

    fn unary(&mut self) -> Result<Expr, CalcError> {
        let mut negative = false;
        loop {
            match self.peek().tok {
                Tok::Minus => negative = !negative,
                Tok::Plus => {}
                _ => break,
            }
            self.advance();
        }
        let power = self.power()?;
        Ok(if negative {
            Expr::Neg(Box::new(power))
        } else {
            power
        })
    }

    fn power(&mut self) -> Result<Expr, CalcError> {
        let base = self.postfix()?;
        let token = self.peek();
        if token.tok != Tok::Caret {
            return Ok(base);
        }
        self.advance();
        self.enter(token.pos)?;
        let exponent = self.unary()?;
        self.leave();
        Ok(Expr::Power {
            base: Box::new(base),
            pos: token.pos,
            exponent: Box::new(exponent),
        })
    }

    fn postfix(&mut self) -> Result<Expr, CalcError> {
        let inner = self.primary()?;
        let pos = self.peek().pos;
        let mut count: u32 = 0;
        while self.peek().tok == Tok::Percent
            && !matches!(
                self.peek_at(1).tok,
                Tok::Number(_) | Tok::Ident(_) | Tok::LParen
            )
        {
            self.advance();
            count += 1;
        }
        Ok(if count == 0 {
            inner
        } else {
            Expr::Percent {
                inner: Box::new(inner),
                count,
                pos,
            }
        })
    }

    fn primary(&mut self) -> Result<Expr, CalcError> {
        let token = self.advance();
        match &token.tok {
            Tok::Number(value) => Ok(Expr::Number(value.clone())),
            Tok::LParen => {
                self.enter(token.pos)?;
                let inner = self.sum()?;
                let close = self.peek();
                if close.tok != Tok::RParen {
                    return Err(self.unexpected(close, Some(token.pos)));
                }
                self.advance();
                self.leave();
                Ok(inner)
            }
            Tok::Ident(name) => self.name(name, token.pos),
            Tok::End => Err(CalcError::Syntax {
                position: token.pos,
                found: None,
                message: "expected a number, a name or '(' but the expression ends here"
                    .to_string(),
            }),
            _ => Err(CalcError::Syntax {
                position: token.pos,
                found: token.first,
                message: "expected a number, a name or '('".to_string(),
            }),
        }
    }

    fn name(&mut self, name: &str, pos: usize) -> Result<Expr, CalcError> {
        let lower = name.to_lowercase();
        let called = self.peek().tok == Tok::LParen;
        let function = FUNCTIONS.iter().find(|entry| entry.0 == lower);
        let constant = CONSTANTS.iter().find(|entry| entry.0 == lower);
        match (function, constant, called) {
            (Some(&(fname, func, min, max, usage)), _, true) => {
                let open = self.advance();
                self.enter(open.pos)?;
                let args = self.arguments(open.pos)?;
                self.leave();
                let fits = args.len() >= min && max.is_none_or(|m| args.len() <= m);
                if !fits {
                    return Err(CalcError::ArgumentCount {
                        function: fname.to_string(),
                        position: pos,
                        expected: arity_text(min, max),
                        found: args.len(),
                        usage: usage.to_string(),
                    });
                }
                Ok(Expr::Call { func, pos, args })
            }
            (Some(&(fname, ..)), _, false) => {
                let next = self.peek();
                Err(CalcError::Syntax {
                    position: next.pos,
                    found: next.first,
                    message: format!(
                        "expected '(' after the function name '{fname}', as in {fname}(2)"
                    ),
                })
            }
            (None, Some(&(_, c)), false) => Ok(Expr::Const(c, pos)),
            (None, Some(_), true) => Err(self.unexpected(self.peek(), None)),
            (None, None, _) => Err(CalcError::UnknownName {
                name: name.to_string(),
                position: pos,
                is_function: called,
                suggestion: suggest(&lower, called),
            }),
        }
    }

    fn arguments(&mut self, open: usize) -> Result<Vec<Expr>, CalcError> {
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.advance();
            return Ok(args);
        }
        loop {
            args.push(self.sum()?);
            let token = self.peek();
            match token.tok {
                Tok::Comma => {
                    self.advance();
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(args);
                }
                _ => return Err(self.unexpected(token, Some(open))),
            }
        }
    }
}

fn arity_text(min: usize, max: Option<usize>) -> String {
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    match max {
        Some(m) if m == min => format!("{min} {}", plural(min)),
        Some(m) => format!("{min} or {m} arguments"),
        None => format!("at least {min} {}", plural(min)),
    }
}

/// The known name nearest to `name` (at most 2 edits, and at most one edit per
/// three characters), among functions only when it was called.
fn suggest(name: &str, called: bool) -> Option<String> {
    let functions = FUNCTIONS.iter().map(|entry| entry.0);
    let constants = CONSTANTS.iter().map(|entry| entry.0);
    let candidates: Vec<&str> = if called {
        functions.collect()
    } else {
        constants.chain(functions).collect()
    };
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= 2 && d * 3 <= name.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax_at(input: &str) -> (usize, Option<char>) {
        match parse(input, 4096, 50) {
            Err(CalcError::Syntax {
                position, found, ..
            }) => (position, found),
            other => panic!("expected a syntax error for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn numbers_lex_exactly() {
        let one_tenth = Rational::new(BigInt::from(1), BigInt::from(10)).expect("10 is nonzero");
        for (text, expected) in [
            ("0.1", one_tenth.clone()),
            (".1", one_tenth.clone()),
            ("1e-1", one_tenth),
            ("1.5e3", Rational::from_i64(1500)),
            ("2E+2", Rational::from_i64(200)),
            ("5.", Rational::from_i64(5)),
            ("0e99999999999999999999", Rational::zero()),
        ] {
            match parse(text, 4096, 50) {
                Ok(Expr::Number(v)) => assert_eq!(v, expected, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_point_at_the_offending_character() {
        assert_eq!(syntax_at("2 + * 3"), (4, Some('*')));
        assert_eq!(syntax_at("(1 + 2"), (6, None));
        assert_eq!(syntax_at("1 + 2)"), (5, Some(')')));
        assert_eq!(syntax_at("2(3)"), (1, Some('(')));
        assert_eq!(syntax_at("5!"), (1, Some('!')));
        assert_eq!(syntax_at("1,000 + 1"), (1, Some(',')));
        assert_eq!(syntax_at("sqrt 4"), (5, Some('4')));
        assert_eq!(syntax_at(""), (0, None));
        assert_eq!(syntax_at("π π"), (2, Some('π')));
        assert_eq!(syntax_at("max(1,)"), (6, Some(')')));
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        match parse("sqr(2)", 4096, 50) {
            Err(CalcError::UnknownName {
                suggestion,
                is_function,
                position,
                ..
            }) => {
                assert_eq!(suggestion.as_deref(), Some("sqrt"));
                assert!(is_function);
                assert_eq!(position, 0);
            }
            other => panic!("{other:?}"),
        }
        match parse("2 * Pie", 4096, 50) {
            Err(CalcError::UnknownName {
                suggestion,
                position,
                ..
            }) => {
                assert_eq!(suggestion.as_deref(), Some("pi"));
                assert_eq!(position, 4);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(suggest("x", false), None);
        assert_eq!(suggest("arcsin", true).as_deref(), Some("asin"));
    }

    #[test]
    fn percent_and_remainder_are_told_apart() {
        assert!(matches!(
            parse("15%", 4096, 50),
            Ok(Expr::Percent { count: 1, .. })
        ));
        assert!(matches!(
            parse("10 % 3", 4096, 50),
            Ok(Expr::Product { .. })
        ));
        assert!(matches!(
            parse("200 * 15%", 4096, 50),
            Ok(Expr::Product { .. })
        ));
    }

    #[test]
    fn nesting_is_limited() {
        let deep = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert!(matches!(
            parse(&deep, 4096, 50),
            Err(CalcError::TooDeep { limit: 50, .. })
        ));
        let ok = format!("{}1{}", "(".repeat(50), ")".repeat(50));
        assert!(parse(&ok, 4096, 50).is_ok());
        let long_sum = vec!["1"; 2000].join("+");
        assert!(matches!(parse(&long_sum, 4096, 50), Ok(Expr::Sum { .. })));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("sqrt", "sqrt"), 0);
    }
}
