//! `taper run`: one task, streamed.

use clap::Args;
use futures_util::StreamExt as _;

use crate::agent::{AgentArgs, ModelArgs, Plan};
use crate::error::CliError;
use crate::output::Printer;

/// The example `taper run --help` shows.
pub const EXAMPLE: &str = "Example:\n  taper run --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf --tool calculator \\\n      --think-budget 512 \"What is 17 * 23 + 4?\"\n\nWith --json, each event is one JSON object per line: thinking, answer, tool_call,\ntool_result, step, usage and finally done.";

/// Arguments of `taper run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How the agent runs.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Print one JSON object per event and line instead of text.
    #[arg(long)]
    pub json: bool,
    /// The task.
    pub task: String,
}

/// Loads the model, builds the agent and streams the task's run to standard output.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    let plan = Plan::new(&args.model, &args.agent)?;
    let rt = crate::runtime()?;
    let tools = rt.block_on(plan.tools())?;
    let decoder = plan.load()?;
    let agent = plan.build_agent(&decoder, tools, &args.agent)?;
    rt.block_on(async {
        let mut printer = Printer::new(args.json);
        let mut events = agent.stream(args.task);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => printer.event(&event)?,
                Err(error) => {
                    printer.finish_line()?;
                    return Err(CliError::Run(error));
                }
            }
        }
        Ok(())
    })
}
