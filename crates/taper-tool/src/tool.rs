//! The `Tool` trait, its object-safe form `DynTool`, and what a call gets and gives.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ToolError;

/// A tool the model can call, with typed arguments and output.
///
/// The JSON schema of [`Args`](Tool::Args) is derived with schemars: doc comments
/// on its fields become the descriptions the model reads. Arguments are
/// deserialized from the model's JSON before [`call`](Tool::call) runs, so `call`
/// sees only well-formed values; what is left to check are semantic errors
/// ([`ToolError::InvalidArguments`]).
///
/// The output the model reads is the serialized [`Output`](Tool::Output): a JSON
/// string as is, anything else as compact JSON (see [`ToolOutput::from_value`]);
/// [`render`](Tool::render) replaces that text.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use schemars::JsonSchema;
/// use serde::Deserialize;
/// use serde_json::json;
/// use taper_tool::{CancellationToken, Tool, ToolBox, ToolContext, ToolError, async_trait};
///
/// /// Adds two integers.
/// struct Add;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct AddArgs {
///     /// The first summand.
///     a: i64,
///     /// The second summand.
///     b: i64,
/// }
///
/// #[async_trait]
/// impl Tool for Add {
///     type Args = AddArgs;
///     type Output = i64;
///
///     fn name(&self) -> &str {
///         "add"
///     }
///
///     fn description(&self) -> &str {
///         "Adds two integers."
///     }
///
///     async fn call(&self, args: AddArgs, _ctx: ToolContext) -> Result<i64, ToolError> {
///         args.a
///             .checked_add(args.b)
///             .ok_or_else(|| ToolError::failed("the sum overflows a 64-bit integer"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut tools = ToolBox::new();
/// tools.register(Add)?;
/// let limit = Duration::from_secs(5);
/// let sum = tools.call("add", json!({"a": 2, "b": 40}), limit, CancellationToken::new()).await?;
/// assert_eq!(sum.text(), "42");
/// let error = tools
///     .call("add", json!({"a": 2}), limit, CancellationToken::new())
///     .await
///     .unwrap_err();
/// assert_eq!(error.to_model_text(), "error: invalid arguments: missing field `b`");
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Tool: Send + Sync {
    /// The arguments, deserialized from the model's JSON.
    type Args: JsonSchema + DeserializeOwned + Send;
    /// What a successful call returns.
    type Output: Serialize + Send;

    /// The name the model calls the tool by (see [`ToolBox`](crate::ToolBox) for
    /// the rule).
    fn name(&self) -> &str;

    /// What the tool does and how to call it, for the model.
    fn description(&self) -> &str;

    /// Runs the tool. `ctx` says when the call is cancelled; a call that is
    /// cancelled or times out is also dropped at its next `.await`.
    async fn call(&self, args: Self::Args, ctx: ToolContext) -> Result<Self::Output, ToolError>;

    /// The text the model reads for `output`, when the tool has its own (such as
    /// a `Display` form). `None`, the default, renders the serialized output.
    fn render(&self, output: &Self::Output) -> Option<String> {
        let _ = output;
        None
    }
}

/// A tool with its types erased: what a [`ToolBox`](crate::ToolBox) holds.
///
/// Every [`Tool`] is a `DynTool`; [`DynamicTool`](crate::DynamicTool) is one
/// defined at run time. Implement it directly only for tools whose schema is not
/// a Rust type and that need more than a closure.
#[async_trait]
pub trait DynTool: Send + Sync {
    /// The name the model calls the tool by.
    fn name(&self) -> &str;

    /// What the tool does and how to call it, for the model.
    fn description(&self) -> &str;

    /// The JSON schema (draft 2020-12) of the arguments.
    fn schema(&self) -> Value;

    /// Runs the tool on JSON arguments.
    async fn call_json(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError>;
}

#[async_trait]
impl<T: Tool> DynTool for T {
    fn name(&self) -> &str {
        Tool::name(self)
    }

    fn description(&self) -> &str {
        Tool::description(self)
    }

    fn schema(&self) -> Value {
        schemars::schema_for!(T::Args).to_value()
    }

    async fn call_json(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        let args: T::Args = serde_json::from_value(args).map_err(ToolError::invalid_arguments)?;
        let output = self.call(args, ctx).await?;
        let value = serde_json::to_value(&output)
            .map_err(|e| ToolError::failed(format!("the output cannot be serialized: {e}")))?;
        Ok(match self.render(&output) {
            Some(text) => ToolOutput::with_text(text, value),
            None => ToolOutput::from_value(value),
        })
    }
}

/// What a running call can consult: whether it has been cancelled.
///
/// Cancellation is cooperative for work a tool hands to other tasks or
/// processes; the call's own future is dropped anyway.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    cancel: CancellationToken,
}

impl ToolContext {
    /// A context cancelled through `cancel`.
    pub fn new(cancel: CancellationToken) -> Self {
        ToolContext { cancel }
    }

    /// The call's cancellation token, e.g. to hand to spawned work.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the call has been cancelled (or has timed out).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the call is cancelled (or has timed out).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// The result of a successful call: the text the model reads, and the output as
/// JSON for the application.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    text: String,
    value: Value,
}

impl ToolOutput {
    /// An output whose text is `value` rendered: a JSON string as is, anything
    /// else as compact JSON.
    ///
    /// ```
    /// use serde_json::json;
    /// use taper_tool::ToolOutput;
    ///
    /// assert_eq!(ToolOutput::from_value(json!("= 3/10")).text(), "= 3/10");
    /// assert_eq!(ToolOutput::from_value(json!({"n": [1, 2]})).text(), r#"{"n":[1,2]}"#);
    /// ```
    pub fn from_value(value: Value) -> Self {
        let text = match &value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        ToolOutput { text, value }
    }

    /// An output with its own text for the model.
    pub fn with_text(text: impl Into<String>, value: Value) -> Self {
        ToolOutput {
            text: text.into(),
            value,
        }
    }

    /// The text the model reads.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The output as JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The text the model reads, taken.
    pub fn into_text(self) -> String {
        self.text
    }
}
