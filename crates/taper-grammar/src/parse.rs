//! The typed reading of a finished turn.

use serde_json::Value;

use crate::env::TokenEnv;
use crate::error::ParseError;
use crate::grammar::{Mode, TurnSpec};
use crate::markers::{ARGS_CLOSE, ARGS_OPEN, CALL_JOIN, CALL_TYPE, Marker};

/// A finished assistant turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The reasoning, as written between `<think>\n` (in the prompt) and `</think>`.
    pub thinking: String,
    /// What the turn ended with.
    pub outcome: TurnOutcome,
}

/// What a turn ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    /// One or more tool calls, in order.
    ToolCalls(Vec<ToolCall>),
    /// The final answer.
    Answer(Answer),
}

/// One tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// A registered tool's name.
    pub name: String,
    /// The arguments, valid for the tool's schema.
    pub arguments: Value,
}

/// The final answer of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Free text (leading blanks after `</think>` removed).
    Text(String),
    /// A JSON value valid for the answer schema.
    Json(Value),
}

/// One unit of the turn: a byte of text or an added (special) token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Byte(u8),
    Special(u32),
}

/// A pattern of symbols: a marker, or text.
fn pattern(marker: &Marker) -> Vec<Sym> {
    match marker {
        Marker::Token(id) => vec![Sym::Special(*id)],
        Marker::Text(text) => text_pattern(text),
    }
}

fn text_pattern(text: &str) -> Vec<Sym> {
    text.bytes().map(Sym::Byte).collect()
}

/// A cursor over the symbols of a turn.
struct Reader {
    syms: Vec<Sym>,
    pos: usize,
}

impl Reader {
    fn rest(&self) -> &[Sym] {
        self.syms.get(self.pos..).unwrap_or_default()
    }

    fn eat(&mut self, pat: &[Sym]) -> bool {
        if self.rest().starts_with(pat) {
            self.pos += pat.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, pat: &[Sym], what: &str) -> Result<(), ParseError> {
        if self.eat(pat) {
            Ok(())
        } else {
            Err(ParseError::Malformed(format!("expected {what}")))
        }
    }

    /// Text up to the next occurrence of `pat`, which is consumed too.
    fn text_until(&mut self, pat: &[Sym], what: &str) -> Result<String, ParseError> {
        let rest = self.rest();
        let at = rest
            .windows(pat.len().max(1))
            .position(|w| w == pat)
            .ok_or_else(|| ParseError::Malformed(format!("missing {what}")))?;
        let text = text_of(&rest[..at])?;
        self.pos += at + pat.len();
        Ok(text)
    }

    /// Skips spaces and newlines.
    fn skip_blanks(&mut self) {
        while matches!(self.rest().first(), Some(Sym::Byte(b' ' | b'\n'))) {
            self.pos += 1;
        }
    }
}

/// The UTF-8 text of symbols that must all be bytes.
fn text_of(syms: &[Sym]) -> Result<String, ParseError> {
    let bytes = syms
        .iter()
        .map(|s| match s {
            Sym::Byte(b) => Ok(*b),
            Sym::Special(id) => Err(ParseError::Malformed(format!(
                "unexpected special token {id} in text"
            ))),
        })
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| ParseError::Malformed("text is not UTF-8".into()))
}

pub(crate) fn parse_turn(
    env: &TokenEnv,
    spec: &TurnSpec,
    tokens: &[u32],
) -> Result<Turn, ParseError> {
    let (&last, body) = tokens.split_last().ok_or(ParseError::Unfinished)?;
    if last != spec.eos {
        return Err(ParseError::Unfinished);
    }
    let trie = env.trie();
    let mut syms = Vec::with_capacity(body.len() * 4);
    for &t in body {
        if t as usize >= env.vocab_size() {
            return Err(ParseError::TokenOutOfRange(t));
        }
        if trie.is_special_token(t) {
            syms.push(Sym::Special(t));
        } else {
            syms.extend(trie.token(t).iter().map(|&b| Sym::Byte(b)));
        }
    }
    let m = &spec.markers;
    let mut r = Reader { syms, pos: 0 };
    let thinking = r.text_until(&pattern(&m.think_end), "`</think>`")?;
    r.skip_blanks();
    let calls_begin = pattern(&m.calls_begin);
    let outcome = if spec.mode != Mode::AnswerOnly && r.eat(&calls_begin) {
        TurnOutcome::ToolCalls(parse_calls(&mut r, spec)?)
    } else if spec.mode == Mode::CallsOnly {
        return Err(ParseError::Malformed("expected tool calls".into()));
    } else {
        let text = text_of(r.rest())?;
        if spec.json_answer {
            let value = read_json(&text, "answer")?;
            TurnOutcome::Answer(Answer::Json(value))
        } else {
            TurnOutcome::Answer(Answer::Text(text))
        }
    };
    Ok(Turn { thinking, outcome })
}

/// Reads JSON; `-0` (which JSON readers take as the float `-0.0`) is read as `0`, the
/// same number, so that it deserializes into integer types.
fn read_json(text: &str, context: &str) -> Result<Value, ParseError> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| ParseError::InvalidJson {
        context: context.to_owned(),
        reason: e.to_string(),
    })?;
    zero_negative_zeros(&mut value);
    Ok(value)
}

fn zero_negative_zeros(value: &mut Value) {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => {
            *value = Value::from(0);
        }
        Value::Array(items) => items.iter_mut().for_each(zero_negative_zeros),
        Value::Object(map) => map.values_mut().for_each(zero_negative_zeros),
        _ => {}
    }
}

fn parse_calls(r: &mut Reader, spec: &TurnSpec) -> Result<Vec<ToolCall>, ParseError> {
    let m = &spec.markers;
    let head: Vec<Sym> = [
        pattern(&m.call_begin),
        text_pattern(CALL_TYPE),
        pattern(&m.sep),
    ]
    .concat();
    let args_open = text_pattern(ARGS_OPEN);
    let args_close: Vec<Sym> = [text_pattern(ARGS_CLOSE), pattern(&m.call_end)].concat();
    let join = text_pattern(CALL_JOIN);
    let calls_end = pattern(&m.calls_end);
    let mut calls = Vec::new();
    loop {
        r.expect(&head, "a tool call")?;
        let name = r.text_until(&args_open, "the arguments")?;
        if !spec.tools.contains(&name) {
            return Err(ParseError::UnknownTool(name));
        }
        let args = r.text_until(&args_close, "the end of the call")?;
        let arguments = read_json(&args, &format!("arguments of {name}"))?;
        calls.push(ToolCall { name, arguments });
        if r.eat(&calls_end) {
            break;
        }
        if !spec.parallel {
            return Err(ParseError::Malformed(
                "expected the end of the calls (one call per turn)".into(),
            ));
        }
        r.expect(&join, "a newline between calls or the end of the calls")?;
    }
    if !r.rest().is_empty() {
        return Err(ParseError::Malformed("text after the tool calls".into()));
    }
    Ok(calls)
}
