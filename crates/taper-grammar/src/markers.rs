//! The R1 turn markers and how one tokenizer spells them.
//!
//! The marker strings are those of the DeepSeek-R1 chat templates (the Llama distill's
//! `tokenizer_config.json` template and the R1-0528 Qwen3 one): `</think>` closes the
//! reasoning, and a tool-call block reads
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`,
//! further calls joined by `\n`, closed by `<｜tool▁calls▁end｜>`.

use std::collections::HashMap;

/// `</think>`: ends the reasoning.
pub(crate) const THINK_END: &str = "</think>";
/// Opens the block of tool calls.
pub(crate) const TOOL_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
/// Closes the block of tool calls.
pub(crate) const TOOL_CALLS_END: &str = "<｜tool▁calls▁end｜>";
/// Opens one tool call.
pub(crate) const TOOL_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
/// Closes one tool call.
pub(crate) const TOOL_CALL_END: &str = "<｜tool▁call▁end｜>";
/// Separates the call type (`function`) from the tool name.
pub(crate) const TOOL_SEP: &str = "<｜tool▁sep｜>";
/// Text between the call type and the tool name, and around the arguments.
pub(crate) const CALL_TYPE: &str = "function";
/// Between the tool name and the arguments.
pub(crate) const ARGS_OPEN: &str = "\n```json\n";
/// After the arguments.
pub(crate) const ARGS_CLOSE: &str = "\n```";
/// Between two calls of one block.
pub(crate) const CALL_JOIN: &str = "\n";

/// How one marker is written with one tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A single (special) token.
    Token(u32),
    /// Ordinary text: the tokenizer has no token for it.
    Text(&'static str),
}

/// The markers of the turn format, resolved against one tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct Markers {
    pub(crate) think_end: Marker,
    pub(crate) calls_begin: Marker,
    pub(crate) calls_end: Marker,
    pub(crate) call_begin: Marker,
    pub(crate) call_end: Marker,
    pub(crate) sep: Marker,
}

impl Markers {
    /// Resolves each marker by its string among the tokenizer's added tokens.
    pub(crate) fn resolve(added: &HashMap<String, u32>) -> Self {
        let m = |s: &'static str| match added.get(s) {
            Some(&id) => Marker::Token(id),
            None => Marker::Text(s),
        };
        Markers {
            think_end: m(THINK_END),
            calls_begin: m(TOOL_CALLS_BEGIN),
            calls_end: m(TOOL_CALLS_END),
            call_begin: m(TOOL_CALL_BEGIN),
            call_end: m(TOOL_CALL_END),
            sep: m(TOOL_SEP),
        }
    }
}
