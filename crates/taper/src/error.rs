//! `taper::Error`: everything an agent run, a session or loading a model can end with.

use crate::run::Partial;

/// What went wrong. Errors that cut a run short carry everything it produced
/// (a [`Partial`]): nothing the model wrote or a tool returned is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or running the model failed (a corrupt file, a wrong tokenizer, an
    /// out-of-range token, non-finite logits, ...).
    #[error(transparent)]
    Model(#[from] taper_model::Error),
    /// The tokenizer is not one of an R1 distill: it lacks a marker the chat format
    /// needs as a single token.
    #[error("the tokenizer is not an R1 tokenizer: {0}")]
    Tokenizer(String),
    /// A tool cannot be registered (bad name, duplicate, schema the grammar cannot
    /// enforce).
    #[error(transparent)]
    Register(#[from] taper_tool::RegisterError),
    /// A grammar could not be built (e.g. the answer type's schema cannot be enforced).
    #[error(transparent)]
    Grammar(#[from] taper_grammar::GrammarError),
    /// The answer type's JSON schema cannot be enforced.
    #[error(transparent)]
    Schema(#[from] taper_grammar::SchemaError),
    /// An option of the builder is out of range.
    #[error("invalid option: {0}")]
    Config(String),
    /// The conversation no longer fits the context: the run stopped here.
    #[error(
        "the context is full: {needed} tokens needed, {limit} available (step {})",
        partial.steps.len() + 1
    )]
    ContextFull {
        /// Tokens the context holds.
        limit: usize,
        /// Tokens it would have needed.
        needed: usize,
        /// Everything the run produced before it stopped.
        partial: Box<Partial>,
    },
    /// The run was cancelled.
    #[error("the run was cancelled (step {})", partial.steps.len() + 1)]
    Cancelled {
        /// Everything the run produced before it stopped.
        partial: Box<Partial>,
    },
    /// The grammar and the decoder disagree: a bug, reported rather than hidden.
    #[error("constraint failure: {source}")]
    Constraint {
        /// What the constraint reported.
        source: taper_grammar::ConstraintError,
        /// Everything the run produced before it stopped.
        partial: Box<Partial>,
    },
    /// The finished turn did not parse: a bug, reported rather than hidden.
    #[error("the turn did not parse: {source}")]
    Parse {
        /// What the parser reported.
        source: taper_grammar::ParseError,
        /// Everything the run produced before it stopped.
        partial: Box<Partial>,
    },
    /// The answer is valid for the schema of the requested type, but the type's
    /// `Deserialize` refused it.
    #[error("the answer does not deserialize into the requested type: {message}")]
    Deserialize {
        /// serde's message.
        message: String,
        /// The run, with the answer as JSON.
        partial: Box<Partial>,
    },
    /// The model's worker thread is gone.
    #[error("the model worker has stopped")]
    WorkerStopped,
    /// The model panicked in a forward pass (a bug in a backend); the session's cache
    /// is rolled back to before that pass.
    #[error("the model panicked: {0}")]
    ModelPanicked(String),
}

impl Error {
    /// Everything the run produced before the error, for errors that cut a run short.
    pub fn partial(&self) -> Option<&Partial> {
        match self {
            Error::ContextFull { partial, .. }
            | Error::Cancelled { partial }
            | Error::Constraint { partial, .. }
            | Error::Parse { partial, .. }
            | Error::Deserialize { partial, .. } => Some(partial),
            _ => None,
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
