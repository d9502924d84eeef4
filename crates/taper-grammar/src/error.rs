//! Typed errors of every fallible operation in this crate.

use thiserror::Error;

/// Building a [`TokenEnv`](crate::TokenEnv) from a tokenizer failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TokenEnvError {
    /// The tokenizer knows a token id the model has no embedding row for.
    #[error("the tokenizer has token id {id}, beyond the model's {vocab_size} embedding rows")]
    TokenBeyondVocab {
        /// The offending token id.
        id: u32,
        /// The model's vocabulary size (embedding rows).
        vocab_size: usize,
    },
    /// The EOS id is not a token of the tokenizer inside the model's vocabulary.
    #[error("EOS id {eos} is not a token of the tokenizer within {vocab_size} embedding rows")]
    BadEos {
        /// The EOS id given.
        eos: u32,
        /// The model's vocabulary size (embedding rows).
        vocab_size: usize,
    },
    /// The tokenizer's token strings cannot be mapped to bytes.
    #[error("unsupported tokenizer: {0}")]
    UnsupportedTokenizer(String),
    /// The constraint engine refused the vocabulary.
    #[error("the constraint engine rejected the vocabulary: {0}")]
    Engine(String),
}

/// A JSON schema that cannot be turned into a constraint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema is not a valid draft 2020-12 schema (wrong shape or value type).
    #[error("malformed schema at `{path}`: {reason}")]
    Malformed {
        /// JSON pointer (RFC 6901) of the offending schema location, `""` for the root.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The schema uses a keyword the engine cannot enforce.
    #[error("unsupported keyword `{keyword}` at `{path}`: {reason}")]
    Unsupported {
        /// The keyword, e.g. `uniqueItems`.
        keyword: String,
        /// JSON pointer (RFC 6901) of the schema object holding the keyword.
        path: String,
        /// Why it cannot be enforced.
        reason: String,
    },
    /// The engine refused the schema (an unresolvable `$ref`, an invalid `pattern`, an
    /// unsatisfiable schema, or a schema over the engine's size limits).
    #[error("the schema cannot be compiled: {reason}")]
    Compile {
        /// The engine's explanation.
        reason: String,
    },
}

/// A grammar could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GrammarError {
    /// Tool calls are required but no tool is registered.
    #[error("tool calls are required but no tools are registered")]
    EmptyToolSet,
    /// Tool calls are required but tools are not allowed.
    #[error("tool calls are required but tools are not allowed")]
    RequiredButNotAllowed,
    /// Two tools have the same name.
    #[error("duplicate tool name `{0}`")]
    DuplicateToolName(String),
    /// A tool name the call format cannot carry.
    #[error("invalid tool name `{name}`: {reason}")]
    InvalidToolName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine failed to compile the grammar.
    #[error("the grammar cannot be compiled: {0}")]
    Compile(String),
}

/// A step of a [`Constraint`](crate::Constraint) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConstraintError {
    /// The token is not allowed by the grammar here (the caller did not follow the mask).
    /// The constraint is unchanged and can go on.
    #[error("token {token} is not allowed by the grammar here")]
    TokenRejected {
        /// The rejected token.
        token: u32,
    },
    /// The token id is outside the model's vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The logits slice does not have one entry per vocabulary token.
    #[error("logits have {got} entries, the vocabulary has {expected}")]
    LogitsLength {
        /// Entries given.
        got: usize,
        /// Vocabulary size.
        expected: usize,
    },
    /// The grammar is finished: nothing more can be generated.
    #[error("the grammar is finished")]
    Finished,
    /// Rollback of more tokens than were committed.
    #[error("cannot roll back {requested} tokens, only {available} are committed")]
    Rollback {
        /// Tokens asked for.
        requested: usize,
        /// Tokens committed.
        available: usize,
    },
    /// The engine failed (internal error or a grammar too complex at this point); the
    /// constraint cannot go on.
    #[error("constraint engine error: {0}")]
    Engine(String),
}

/// A token sequence is not a finished turn of the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The turn does not end with EOS (it is not finished).
    #[error("the turn is not finished (no end-of-sentence token at its end)")]
    Unfinished,
    /// A token id outside the vocabulary.
    #[error("token {0} is outside the vocabulary")]
    TokenOutOfRange(u32),
    /// The tokens do not follow the turn format.
    #[error("not a turn of this grammar: {0}")]
    Malformed(String),
    /// A call names a tool that is not registered.
    #[error("call of unknown tool `{0}`")]
    UnknownTool(String),
    /// Arguments or a JSON answer that do not parse as JSON.
    #[error("invalid JSON in {context}: {reason}")]
    InvalidJson {
        /// `arguments of NAME` or `answer`.
        context: String,
        /// The JSON parser's message.
        reason: String,
    },
}
