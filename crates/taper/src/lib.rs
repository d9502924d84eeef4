//! A local DeepSeek-R1 reasoning agent for Rust programs: the model thinks, calls
//! your tools through a grammar that makes every call valid, reads their results
//! and answers.
//!
//! - [`Decoder`]: a loaded model (GGUF or Hugging Face safetensors) with its
//!   tokenizer and [`ChatFormat`]; one per model, shared by every agent and session.
//! - [`Agent`] (built with [`Agent::builder`]): tools, system prompt and options;
//!   [`run`](Agent::run), [`run_typed`](Agent::run_typed) and
//!   [`stream`](Agent::stream) a task.
//! - [`Session`]: a conversation whose follow-ups reuse the KV cache.
//! - [`Answer`], [`Step`], [`Usage`], [`Event`]: what a run produces; [`enum@Error`]:
//!   how it can fail, with everything produced so far.
//! - Tools: [`Tool`] (typed arguments derived with schemars), [`DynamicTool`],
//!   [`ToolBox`], [`ToolError`], re-exported from `taper-tool`.
//!
//! # Example
//!
//! A typed tool, registered and run by an agent. The hidden lines write a tiny
//! random-weight model with the real tokenizer, so the answer is noise; the loop,
//! the grammar and the tool are real, and with a real model only the path changes:
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use taper::{Agent, Decoder, Tool, ToolContext, ToolError, async_trait};
//!
//! /// Looks up the population of a city.
//! struct Population;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct City {
//!     /// The city's English name.
//!     name: String,
//! }
//!
//! #[async_trait]
//! impl Tool for Population {
//!     type Args = City;
//!     type Output = u64;
//!
//!     fn name(&self) -> &str {
//!         "population"
//!     }
//!
//!     fn description(&self) -> &str {
//!         "The population of a city."
//!     }
//!
//!     async fn call(&self, city: City, _ctx: ToolContext) -> Result<u64, ToolError> {
//!         match city.name.as_str() {
//!             "Paris" => Ok(2_102_650),
//!             other => Err(ToolError::failed(format!("no data for {other}"))),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf");
//! # let tokenizer = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache/r1_qwen3.tokenizer.json");
//! # let config = taper_model::Preset::Tiny.config(taper_model::Architecture::Qwen3, Some(151_936));
//! # taper_model::ModelWriter::new(config).tokenizer_json(std::fs::read_to_string(tokenizer)?).write_gguf(&path)?;
//! let decoder = Decoder::load(&path)?;
//! let agent = Agent::builder(&decoder)
//!     .tool(Population)
//!     .thinking_budget(16)
//!     .max_answer_tokens(16)
//!     .build()?;
//! let answer = agent.run("How many people live in Paris?").await?;
//! for step in &answer.steps {
//!     for call in &step.calls {
//!         println!("{}({}) -> {}", call.name, call.arguments, call.model_text());
//!     }
//! }
//! println!("{}", answer.text);
//! # Ok(())
//! # }
//! ```

mod agent;
mod backend;
mod decoder;
mod error;
mod format;
mod run;
mod session;
mod stream;

pub use agent::{Agent, AgentBuilder, ToolChoice};
pub use backend::{Backend, Sequence};
pub use decoder::{Decoder, DecoderBuilder};
pub use error::{Error, Result};
pub use format::{AssistantMessage, ChatFormat, Message, RenderedCall, ToolInfo};
pub use run::{Answer, CallRecord, Event, Partial, Step, Usage};
pub use session::Session;
pub use stream::EventStream;

pub use taper_model::{KvDtype, SamplerConfig, Tokenizer};
pub use taper_tool::{
    CancellationToken, DynTool, DynamicTool, RegisterError, Tool, ToolBox, ToolContext, ToolError,
    ToolOutput, async_trait,
};
