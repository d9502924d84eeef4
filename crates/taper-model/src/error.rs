//! The one error type of taper-model.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
///
/// Every variant names what was wrong (the file, the key, the tensor, the token) so
/// that the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The GGUF file is truncated or malformed.
    #[error("malformed GGUF at byte {offset}: {reason}")]
    Gguf {
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The architecture is not one taper supports.
    #[error("unsupported architecture `{0}` (supported: llama, qwen3)")]
    UnknownArchitecture(String),
    /// A required metadata or config key is missing.
    #[error("missing key `{0}`")]
    MissingKey(String),
    /// A metadata or config key has a value of the wrong type or range.
    #[error("invalid value for `{key}`: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A tensor has a storage type taper cannot load.
    #[error("tensor `{tensor}` has unsupported type {kind}")]
    UnsupportedTensorType {
        /// The tensor name.
        tensor: String,
        /// The type, as the file names it.
        kind: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// The file has a tensor the architecture does not use.
    #[error("unexpected tensor `{0}` (not part of this architecture)")]
    UnexpectedTensor(String),
    /// A tensor has the wrong shape.
    #[error("tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A `config.json` or safetensors index could not be read.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The tokenizer has more tokens than the model has embedding rows.
    #[error("tokenizer has {tokenizer} tokens but the model has only {model} embedding rows")]
    VocabMismatch {
        /// Tokens in the tokenizer.
        tokenizer: usize,
        /// Rows of the model's embedding.
        model: usize,
    },
    /// Feeding these tokens would run past the KV cache.
    #[error("context overflow: {requested} tokens do not fit in a context of {capacity}")]
    ContextOverflow {
        /// Tokens the cache would hold after this call.
        requested: usize,
        /// The cache's capacity.
        capacity: usize,
    },
    /// A token id is not a row of the embedding.
    #[error("token id {token} is out of range for a vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// Rows of the embedding.
        vocab: usize,
    },
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits at chunk position {position}")]
    NonFiniteLogits {
        /// Row of the chunk whose logits are not finite.
        position: usize,
    },
    /// The requested KV cache does not fit in memory.
    #[error(
        "a context of {context} tokens needs {needed_mib} MiB of KV cache but only {available_mib} MiB of memory is available"
    )]
    OutOfMemory {
        /// The context length asked for.
        context: usize,
        /// Memory the cache needs.
        needed_mib: u64,
        /// Memory available.
        available_mib: u64,
    },
    /// A sampling option is out of range.
    #[error("invalid sampling option: {0}")]
    Sampling(String),
    /// An error inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with taper-model's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidKey {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
