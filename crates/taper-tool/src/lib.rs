//! What a tool author depends on: the [`Tool`] trait, [`ToolError`], argument
//! schemas derived from Rust types, and the [`ToolBox`] registry.
//!
//! - [`Tool`]: a tool with typed arguments (`#[derive(Deserialize, JsonSchema)]`,
//!   doc comments becoming the descriptions the model reads) and a typed output.
//! - [`DynamicTool`]: a tool defined at run time by a JSON schema and a closure.
//! - [`DynTool`]: the object-safe form of both, as JSON in and [`ToolOutput`] out.
//! - [`ToolBox`]: the registry; bad names and schemas the grammar cannot enforce
//!   are [`RegisterError`]s at registration, and [`ToolBox::call`] runs a tool with a
//!   time limit and cancellation, each failure a [`ToolError`] the model can read.

mod dynamic;
mod error;
mod tool;
mod toolbox;

pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

pub use dynamic::DynamicTool;
pub use error::{RegisterError, ToolError};
pub use tool::{DynTool, Tool, ToolContext, ToolOutput};
pub use toolbox::{MAX_NAME_LEN, RegisteredTool, ToolBox};
