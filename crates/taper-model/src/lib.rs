//! The local decoder: Llama-3.1 and Qwen3 transformer blocks on candle, GGUF and safetensors weights, tokenizer, KV cache and sampler.
//!
//! ```no_run
//! use taper_model::{CacheOptions, LoadOptions, LogitsFor, Model, SamplerConfig, Tokenizer};
//! # fn main() -> taper_model::Result<()> {
//! let model = Model::load("model.gguf", &LoadOptions::new())?;
//! let tokenizer = Tokenizer::from_gguf_file("model.gguf")?;
//! let mut cache = model.new_cache(CacheOptions::new().context(4096))?;
//! let mut sampler = SamplerConfig::default().seed(42).build()?;
//! let prompt = tokenizer.encode("<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n")?;
//! let mut logits = model.forward(&prompt, &mut cache, LogitsFor::Last)?;
//! for _ in 0..16 {
//!     let next = sampler.sample(logits.last())?;
//!     logits = model.forward(&[next], &mut cache, LogitsFor::Last)?;
//! }
//! cache.truncate(prompt.len()); // roll back to the prompt
//! # Ok(()) }
//! ```

mod attention;
mod config;
mod error;
pub mod gguf;
mod kernels;
mod model;
mod sampler;
mod tokenizer;
mod weight_cache;
mod weights;
mod writer;

pub use config::{Architecture, ModelConfig, RopeScaling};
pub use error::{Error, Result};
pub use kernels::KERNELS_ENV;
pub use model::{
    CacheOptions, KvCache, KvDtype, LoadOptions, Logits, LogitsFor, Model, ProgressFn,
    available_memory, peak_rss,
};
pub use sampler::{Sampler, SamplerConfig};
pub use tokenizer::{BOS, DecodeStream, EOS, GgufVocab, Marker, Tokenizer};
pub use weights::{PlannedTensor, QuantMatrix, TensorRole, Weight, tensor_plan};
pub use writer::{ModelWriter, Preset, Quant};
