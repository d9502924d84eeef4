//! Typed errors: what a tool call can end with, and why a tool cannot be registered.

use std::fmt;
use std::time::Duration;

use taper_grammar::SchemaError;

/// Why a tool call produced no output.
///
/// Every variant reaches the model as a tool output it can react to:
/// [`to_model_text`](ToolError::to_model_text) is `error: ` followed by the
/// `Display` text, e.g. `error: invalid arguments: missing field `expression``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments do not fit the tool: they do not deserialize into its
    /// arguments type, or the tool found them semantically wrong.
    #[error("invalid arguments: {message}")]
    InvalidArguments {
        /// What is wrong, worded for the model (serde's message for a
        /// deserialization error).
        message: String,
    },
    /// The tool ran and failed.
    #[error("{message}")]
    Failed {
        /// What went wrong, worded for the model.
        message: String,
    },
    /// The call did not finish within its time limit and was stopped.
    #[error("the tool timed out after {}", seconds(*limit))]
    Timeout {
        /// The time limit of the call.
        limit: Duration,
    },
    /// The call was cancelled before it finished.
    #[error("the call was cancelled")]
    Cancelled,
    /// No tool of this name is registered.
    #[error("unknown tool `{name}`")]
    UnknownTool {
        /// The name that was called.
        name: String,
    },
}

impl ToolError {
    /// Invalid arguments, with a message for the model.
    pub fn invalid_arguments(message: impl fmt::Display) -> Self {
        ToolError::InvalidArguments {
            message: message.to_string(),
        }
    }

    /// A failure, with a message for the model.
    pub fn failed(message: impl fmt::Display) -> Self {
        ToolError::Failed {
            message: message.to_string(),
        }
    }

    /// The error as the tool output the model reads: `error: ` and the
    /// `Display` text.
    ///
    /// ```
    /// use taper_tool::ToolError;
    ///
    /// let error = ToolError::failed("division by zero at position 4");
    /// assert_eq!(error.to_model_text(), "error: division by zero at position 4");
    /// ```
    pub fn to_model_text(&self) -> String {
        format!("error: {self}")
    }
}

/// A duration as seconds, e.g. `2 s`, `0.25 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// Why a tool could not be registered in a [`ToolBox`](crate::ToolBox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name breaks the naming rule (see [`ToolBox`](crate::ToolBox)).
    #[error("invalid tool name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// A tool of this name is already registered.
    #[error("a tool named `{name}` is already registered")]
    DuplicateName {
        /// The name given twice.
        name: String,
    },
    /// The tool's argument schema uses something the grammar cannot enforce.
    #[error("the argument schema of tool `{name}` cannot be enforced: {source}")]
    UnenforceableSchema {
        /// The tool's name.
        name: String,
        /// What the grammar refused, naming the keyword and its path where it can.
        source: SchemaError,
    },
}
