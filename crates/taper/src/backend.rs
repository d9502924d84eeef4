//! The boundary between the agent and a language model: what a [`Decoder`](crate::Decoder)
//! runs, implemented by the local transformer and by test doubles.

use std::sync::Arc;

use taper_model::{CacheOptions, KvCache, LogitsFor, Model};

use crate::error::Result;

/// A language model the agent can decode with: one vocabulary, and sequences that
/// each keep their own cache.
///
/// The local transformer implements it ([`Decoder::load`](crate::Decoder::load));
/// implement it to drive the agent with a scripted model in tests.
pub trait Backend: Send + Sync + 'static {
    /// Logits per position: the model's embedding rows.
    fn vocab_size(&self) -> usize;

    /// A new, empty sequence holding up to `context` tokens (`None`: the model's
    /// default).
    fn new_sequence(&self, context: Option<usize>) -> Result<Box<dyn Sequence>>;

    /// The longest context the model supports, if it says.
    fn max_context(&self) -> Option<usize> {
        None
    }
}

/// One sequence of a [`Backend`]: a conversation's cache.
pub trait Sequence: Send {
    /// Tokens the cache holds.
    fn len(&self) -> usize;

    /// Whether the cache holds no tokens.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens the cache can hold.
    fn capacity(&self) -> usize;

    /// Forgets every token from position `len` on.
    fn truncate(&mut self, len: usize);

    /// Appends `tokens` (at least one) and returns the logits after the last of them.
    /// On error the cache is left as it was.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;
}

/// The local transformer as a [`Backend`].
pub(crate) struct ModelBackend {
    pub(crate) model: Arc<Model>,
    pub(crate) kv: CacheOptions,
}

impl Backend for ModelBackend {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn new_sequence(&self, context: Option<usize>) -> Result<Box<dyn Sequence>> {
        let mut opts = self.kv;
        if let Some(context) = context {
            opts = opts.context(context);
        }
        let cache = self.model.new_cache(opts)?;
        Ok(Box::new(ModelSequence {
            model: Arc::clone(&self.model),
            cache,
        }))
    }

    fn max_context(&self) -> Option<usize> {
        Some(self.model.config().max_context)
    }
}

struct ModelSequence {
    model: Arc<Model>,
    cache: KvCache,
}

impl Sequence for ModelSequence {
    fn len(&self) -> usize {
        self.cache.len()
    }

    fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self
            .model
            .forward(tokens, &mut self.cache, LogitsFor::Last)?;
        Ok(logits.into_vec())
    }
}
