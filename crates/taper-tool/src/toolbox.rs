//! The registry of tools an agent may call.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use taper_grammar::JsonSchema;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::{DynTool, RegisterError, ToolContext, ToolError, ToolOutput};

/// The longest tool name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// The tools an agent may call, in registration order.
///
/// Registration checks everything that can be checked before a run, so a run
/// never meets a tool it cannot call:
/// - the name follows the rule `^[A-Za-z][A-Za-z0-9_-]{0,63}$`: an ASCII letter,
///   then up to 63 ASCII letters, digits, `_` or `-` (the function-name rule of
///   common tool-calling APIs, which the R1 call format can carry);
/// - no other tool has the same name (names are case-sensitive);
/// - the grammar can enforce the argument schema
///   ([`taper_grammar::JsonSchema::new`]); where it cannot, the error names the
///   keyword and its path.
///
/// [`call`](ToolBox::call) runs a tool on the model's JSON arguments with a time
/// limit and a cancellation token; every failure is a [`ToolError`] the model
/// can read. Calls must run inside a tokio runtime; each runs in its own task,
/// so a panicking tool becomes [`ToolError::Failed`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use serde_json::{Value, json};
/// use taper_tool::{CancellationToken, DynamicTool, RegisterError, ToolBox, ToolError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = |name: &str| {
///     DynamicTool::new(name, "Echoes its arguments.", json!({"type": "object"}), |args, _ctx| async move {
///         Ok::<Value, ToolError>(args)
///     })
/// };
/// let mut tools = ToolBox::new();
/// tools.register(echo("echo"))?.register(echo("echo_2"))?;
/// assert!(matches!(tools.register(echo("echo")), Err(RegisterError::DuplicateName { .. })));
/// assert!(matches!(tools.register(echo("2echo")), Err(RegisterError::InvalidName { .. })));
///
/// let names: Vec<&str> = tools.tools().iter().map(|tool| tool.name()).collect();
/// assert_eq!(names, ["echo", "echo_2"]);
///
/// let output = tools
///     .call("echo", json!({"x": 1}), Duration::from_secs(1), CancellationToken::new())
///     .await?;
/// assert_eq!(output.text(), r#"{"x":1}"#);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolBox {
    tools: Vec<RegisteredTool>,
    index: HashMap<String, usize>,
}

impl ToolBox {
    /// An empty tool box.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool: any [`Tool`](crate::Tool), a [`DynamicTool`](crate::DynamicTool),
    /// or another [`DynTool`].
    ///
    /// # Errors
    ///
    /// [`RegisterError`] when the name breaks the rule or is taken, or when the
    /// argument schema cannot be enforced; the tool box is then unchanged.
    pub fn register<T: DynTool + 'static>(&mut self, tool: T) -> Result<&mut Self, RegisterError> {
        let name = tool.name().to_owned();
        check_name(&name).map_err(|reason| RegisterError::InvalidName {
            name: name.clone(),
            reason,
        })?;
        if self.index.contains_key(&name) {
            return Err(RegisterError::DuplicateName { name });
        }
        let schema = JsonSchema::new(tool.schema()).map_err(|source| {
            RegisterError::UnenforceableSchema {
                name: name.clone(),
                source,
            }
        })?;
        debug!(tool = %name, "tool registered");
        self.index.insert(name, self.tools.len());
        self.tools.push(RegisteredTool {
            tool: Arc::new(tool),
            schema,
        });
        Ok(self)
    }

    /// The tools, in registration order.
    pub fn tools(&self) -> &[RegisteredTool] {
        &self.tools
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredTool> {
        self.index.get(name).map(|&i| &self.tools[i])
    }

    /// How many tools are registered.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Calls the tool `name` with the model's JSON arguments.
    ///
    /// The arguments are deserialized into the tool's arguments type (a failure is
    /// [`ToolError::InvalidArguments`] with serde's message), the tool runs in its
    /// own task, and its output is rendered for the model. Past `timeout` the call
    /// ends with [`ToolError::Timeout`]; when `cancel` is cancelled, with
    /// [`ToolError::Cancelled`]. Either way the tool's future is dropped before
    /// this returns, and the token in its [`ToolContext`] is cancelled so work it
    /// handed elsewhere can stop. Dropping the returned future stops the call too.
    pub async fn call(
        &self,
        name: &str,
        args: Value,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<ToolOutput, ToolError> {
        let span = info_span!("tool_call", tool = %name, timeout_s = timeout.as_secs_f64());
        async move {
            let Some(entry) = self.get(name) else {
                warn!("call of an unknown tool");
                return Err(ToolError::UnknownTool {
                    name: name.to_owned(),
                });
            };
            if cancel.is_cancelled() {
                return Err(ToolError::Cancelled);
            }
            let started = Instant::now();
            let call_token = cancel.child_token();
            let _stop_tool_work = call_token.clone().drop_guard();
            let tool = Arc::clone(&entry.tool);
            let ctx = ToolContext::new(call_token);
            let mut task = AbortOnDrop(tokio::spawn(
                async move { tool.call_json(args, ctx).await }.in_current_span(),
            ));
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(ToolError::Cancelled),
                joined = tokio::time::timeout(timeout, &mut task.0) => match joined {
                    Ok(Ok(result)) => result,
                    Ok(Err(join)) => Err(join_failure(join)),
                    Err(_) => Err(ToolError::Timeout { limit: timeout }),
                },
            };
            task.stop().await;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            match &result {
                Ok(output) => debug!(
                    elapsed_ms,
                    output_chars = output.text().len(),
                    "tool call finished"
                ),
                Err(error) => debug!(elapsed_ms, %error, "tool call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }
}

/// Checks a tool name against the rule documented on [`ToolBox`].
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut bytes = name.bytes();
    match bytes.next() {
        None => return Err("the name is empty"),
        Some(first) if !first.is_ascii_alphabetic() => {
            return Err("the name must start with an ASCII letter");
        }
        Some(_) => {}
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err("only ASCII letters, digits, `_` and `-` are allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the name is longer than 64 characters");
    }
    Ok(())
}

/// A task that ended without a result: it panicked (or the runtime is shutting
/// down).
fn join_failure(join: JoinError) -> ToolError {
    if !join.is_panic() {
        return ToolError::Cancelled;
    }
    let panic = join.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    warn!(%message, "tool panicked");
    ToolError::failed(format!("the tool crashed (panic: {message})"))
}

/// A spawned tool call, aborted when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Aborts the task if it still runs and waits until its future is dropped.
    async fn stop(mut self) {
        if !self.0.is_finished() {
            self.0.abort();
            let _ = (&mut self.0).await;
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tool in a [`ToolBox`], with its checked argument schema.
#[derive(Clone)]
pub struct RegisteredTool {
    tool: Arc<dyn DynTool>,
    schema: JsonSchema,
}

impl RegisteredTool {
    /// The name the model calls it by.
    pub fn name(&self) -> &str {
        self.tool.name()
    }

    /// What it does, for the model.
    pub fn description(&self) -> &str {
        self.tool.description()
    }

    /// The JSON schema of its arguments, checked for the grammar.
    pub fn schema(&self) -> &JsonSchema {
        &self.schema
    }

    /// The JSON schema of its arguments as a JSON value.
    pub fn schema_value(&self) -> &Value {
        self.schema.as_value()
    }
}

impl fmt::Debug for RegisteredTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredTool")
            .field("name", &self.name())
            .field("schema", &self.schema_value())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn name_rule() {
        for good in [
            "a",
            "calculator",
            "run_python",
            "get-weather",
            "A1",
            &"x".repeat(64),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_x",
            "-x",
            "has space",
            "dot.ted",
            "ünï",
            "new\nline",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
