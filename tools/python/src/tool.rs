//! The sandbox as a [`Tool`] the model can call.

use taper_tool::{Tool, ToolContext, ToolError, async_trait};
use tokio::sync::Mutex;

use crate::{DESCRIPTION, Error, PythonArgs, Sandbox, Session};

/// The tool `python`: runs the model's code in a [`Sandbox`]; the model reads
/// the [`Execution`](crate::Execution)'s `Display` text (output, value, how the
/// run ended).
///
/// By default each call runs in a fresh interpreter and working directory;
/// [`persistent`](PythonTool::persistent) keeps one [`Session`] for the tool's
/// lifetime, so variables and files survive between calls (calls then run one
/// at a time). A call that is cancelled or times out kills its interpreter; in
/// a persistent session the next call's text says the variables are gone.
///
/// ```
/// use std::time::Duration;
///
/// use serde_json::json;
/// use taper_python::PythonTool;
/// use taper_tool::{CancellationToken, ToolBox};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut tools = ToolBox::new();
/// tools.register(PythonTool::new().await?)?;
/// let limit = Duration::from_secs(30);
/// let run = tools
///     .call("python", json!({"code": "print(6 * 7)"}), limit, CancellationToken::new())
///     .await?;
/// assert_eq!(run.text(), "[stdout]\n42\n[status] the code finished");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PythonTool {
    sandbox: Sandbox,
    session: Option<Mutex<Persistent>>,
}

/// The persistent session, opened at the first call.
#[derive(Debug, Default)]
struct Persistent {
    session: Option<Session>,
    /// A run was stopped part-way (its future dropped), which kills the
    /// interpreter: the next run must say the state is gone.
    interrupted: bool,
}

impl PythonTool {
    /// A one-shot tool on a sandbox with the default settings.
    ///
    /// # Errors
    ///
    /// What [`SandboxBuilder::build`](crate::SandboxBuilder::build) fails with:
    /// [`Error::InterpreterNotFound`] when there is no `python3`, or a missing
    /// protection.
    pub async fn new() -> Result<Self, Error> {
        Ok(Self::with_sandbox(Sandbox::builder().build().await?))
    }

    /// A one-shot tool on a configured sandbox.
    pub fn with_sandbox(sandbox: Sandbox) -> Self {
        PythonTool {
            sandbox,
            session: None,
        }
    }

    /// Keeps one persistent session for all calls of this tool.
    pub fn persistent(mut self) -> Self {
        self.session = Some(Mutex::new(Persistent::default()));
        self
    }

    /// The sandbox the code runs in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}

#[async_trait]
impl Tool for PythonTool {
    type Args = PythonArgs;
    type Output = String;

    fn name(&self) -> &str {
        "python"
    }

    fn description(&self) -> &str {
        DESCRIPTION
    }

    async fn call(&self, args: PythonArgs, _ctx: ToolContext) -> Result<String, ToolError> {
        let run = match &self.session {
            None => self.sandbox.run(&args.code).await,
            Some(persistent) => {
                let mut persistent = persistent.lock().await;
                let state = &mut *persistent;
                let session = match &mut state.session {
                    Some(session) => session,
                    None => state
                        .session
                        .insert(self.sandbox.session().map_err(failure)?),
                };
                let interrupted = std::mem::replace(&mut state.interrupted, true);
                let run = session.run(&args.code).await;
                state.interrupted = false;
                run.map(|mut execution| {
                    execution.state_lost |= interrupted;
                    execution
                })
            }
        };
        run.map(|execution| execution.to_string()).map_err(failure)
    }
}

/// A failure of the sandbox itself, as the model reads it.
fn failure(error: Error) -> ToolError {
    match error {
        Error::CodeTooLarge { .. } => ToolError::invalid_arguments(error),
        other => ToolError::failed(other),
    }
}
