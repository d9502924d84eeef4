//! Grammar constraints for R1 turns: JSON-schema tool calls and answers as token masks,
//! on llguidance.
//!
//! - [`TokenEnv`]: one per tokenizer (build once, share; `Send + Sync`).
//! - [`JsonSchema`]: a schema checked for what can be enforced; anything else is a
//!   [`SchemaError`] naming the keyword and its path.
//! - [`TurnGrammar`] (built with [`TurnGrammar::builder`]): an R1 assistant turn —
//!   reasoning, then tool calls or the final answer, then EOS; [`JsonGrammar`]: one JSON
//!   value.
//! - [`Constraint`]: one generation: [`mask`](Constraint::mask) the logits,
//!   [`commit`](Constraint::commit) the sampled token (a [`Commit`] lists the tokens
//!   the grammar forced next, to prefill in one chunk), [`rollback`](Constraint::rollback).
//! - [`TurnGrammar::parse`]: the finished turn as a typed [`Turn`].
//!
//! The engine stays behind these types.

mod constraint;
mod env;
mod error;
mod grammar;
mod markers;
mod numbers;
mod parse;
mod schema;

pub use constraint::{Commit, Constraint};
pub use env::{CACHED_GRAMMARS, TokenEnv};
pub use error::{ConstraintError, GrammarError, ParseError, SchemaError, TokenEnvError};
pub use grammar::{AnswerFormat, JsonGrammar, TurnGrammar, TurnGrammarBuilder};
pub use parse::{Answer, ToolCall, Turn, TurnOutcome};
pub use schema::JsonSchema;
