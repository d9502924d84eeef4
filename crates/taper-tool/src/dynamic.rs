//! Tools defined at run time: a name, a description, a JSON schema and a closure.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde_json::Value;

use crate::{DynTool, ToolContext, ToolError, ToolOutput};

type Handler = dyn Fn(Value, ToolContext) -> Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send>>
    + Send
    + Sync;

/// A tool defined at run time, for applications that load tool definitions
/// (from a file, a plugin, a remote service) rather than compile them in.
///
/// The handler gets the arguments as JSON. When the model writes them, the
/// grammar makes them match the schema; a handler called otherwise (through
/// [`ToolBox::call`](crate::ToolBox::call) by the application) checks what it
/// relies on and answers [`ToolError::InvalidArguments`]. The JSON it returns is
/// rendered for the model as [`ToolOutput::from_value`] says.
///
/// ```
/// use std::time::Duration;
///
/// use serde_json::{Value, json};
/// use taper_tool::{CancellationToken, DynamicTool, ToolBox, ToolError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shout = DynamicTool::new(
///     "shout",
///     "Upper-cases a text.",
///     json!({
///         "type": "object",
///         "properties": { "text": { "type": "string", "description": "The text." } },
///         "required": ["text"],
///         "additionalProperties": false
///     }),
///     |args: Value, _ctx| async move {
///         let text = args["text"]
///             .as_str()
///             .ok_or_else(|| ToolError::invalid_arguments("`text` must be a string"))?;
///         Ok(Value::String(text.to_uppercase()))
///     },
/// );
/// let mut tools = ToolBox::new();
/// tools.register(shout)?;
/// let output = tools
///     .call("shout", json!({"text": "hi"}), Duration::from_secs(1), CancellationToken::new())
///     .await?;
/// assert_eq!(output.text(), "HI");
/// # Ok(())
/// # }
/// ```
pub struct DynamicTool {
    name: String,
    description: String,
    schema: Value,
    handler: Box<Handler>,
}

impl DynamicTool {
    /// A tool called `name`, described to the model by `description`, whose
    /// arguments follow the JSON schema `schema` (draft 2020-12; checked when the
    /// tool is registered), run by `handler`.
    pub fn new<F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        schema: Value,
        handler: F,
    ) -> Self
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        DynamicTool {
            name: name.into(),
            description: description.into(),
            schema,
            handler: Box::new(move |args, ctx| Box::pin(handler(args, ctx))),
        }
    }
}

impl fmt::Debug for DynamicTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl DynTool for DynamicTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn schema(&self) -> Value {
        self.schema.clone()
    }

    async fn call_json(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        (self.handler)(args, ctx).await.map(ToolOutput::from_value)
    }
}
