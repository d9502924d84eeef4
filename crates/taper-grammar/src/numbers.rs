//! Keeping generated JSON numbers inside what `f64` holds.
//!
//! JSON and JSON Schema put no limit on numbers, and the engine's number lexeme has
//! none either: a sampler can write `1e6699262317286411385`, which no JSON reader
//! without arbitrary precision takes. The constraint refuses tokens that would give a
//! number more than [`MAX_INT_DIGITS`] digits before its point or more than
//! [`MAX_EXP_DIGITS`] exponent digits, so every number is below 1e200 in magnitude.

/// Most digits before the decimal point.
pub(crate) const MAX_INT_DIGITS: usize = 100;
/// Most exponent digits.
pub(crate) const MAX_EXP_DIGITS: usize = 2;

/// Where a scan of JSON text stands: in a string, in a number, or elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonScan {
    in_string: bool,
    escape: bool,
    number: Option<Number>,
}

#[derive(Debug, Clone, Copy)]
struct Number {
    part: Part,
    int_digits: usize,
    exp_digits: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Int,
    Frac,
    Exp,
}

impl JsonScan {
    /// The state after `bytes` (well-formed JSON text, or a prefix of it).
    pub(crate) fn over(bytes: &[u8]) -> Self {
        let mut scan = JsonScan::default();
        for &b in bytes {
            scan.feed(b);
        }
        scan
    }

    /// Whether the next token could change a number: inside one, or outside strings
    /// (where a token may start one).
    pub(crate) fn in_string(&self) -> bool {
        self.in_string
    }

    /// Whether the scan is inside a number.
    pub(crate) fn in_number(&self) -> bool {
        self.number.is_some()
    }

    /// Whether `bytes` can follow without a number going past the limits.
    pub(crate) fn accepts(mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    /// Feeds one byte; false when a number goes past the limits.
    fn feed(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return true;
        }
        if let Some(n) = &mut self.number {
            match (n.part, b) {
                (Part::Int, b'0'..=b'9') => {
                    n.int_digits += 1;
                    return n.int_digits <= MAX_INT_DIGITS;
                }
                (Part::Frac, b'0'..=b'9') => return true,
                (Part::Exp, b'0'..=b'9') => {
                    n.exp_digits += 1;
                    return n.exp_digits <= MAX_EXP_DIGITS;
                }
                (Part::Int, b'.') => {
                    n.part = Part::Frac;
                    return true;
                }
                (Part::Int | Part::Frac, b'e' | b'E') => {
                    n.part = Part::Exp;
                    return true;
                }
                (Part::Exp, b'+' | b'-') if n.exp_digits == 0 => return true,
                _ => self.number = None,
            }
        }
        match b {
            b'"' => self.in_string = true,
            b'-' | b'0'..=b'9' => {
                self.number = Some(Number {
                    part: Part::Int,
                    int_digits: usize::from(b != b'-'),
                    exp_digits: 0,
                });
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_tracked_outside_strings() {
        let scan = JsonScan::over(br#"{"a": "1e999\"", "b": 12"#);
        assert!(scan.in_number());
        assert!(!scan.in_string());
        assert!(scan.accepts(b"34e-12, "));
        assert!(!scan.accepts(b"e123"));
        let scan = JsonScan::over(br#"{"a": "#);
        assert!(!scan.in_number());
        assert!(scan.accepts(b"-0.5e+99"));
        assert!(!scan.accepts(b"1E100"));
        assert!(JsonScan::over(br#"["x"#).in_string());
        let long = "9".repeat(MAX_INT_DIGITS);
        let scan = JsonScan::over(long.as_bytes());
        assert!(scan.accepts(b".123456"));
        assert!(!scan.accepts(b"9"));
        assert!(JsonScan::default().accepts(br#"true, "5e999""#));
    }
}
