//! A coding agent: the model writes Python, runs it in taper's sandbox (no network,
//! no writes outside a scratch directory, CPU and memory limits), reads what it
//! printed, and answers from that. The sandbox keeps its variables between calls,
//! so the model can build data in one call and analyse it in the next.
//!
//! ```sh
//! cargo run --release -p taper-examples --example coding_agent -- MODEL.gguf
//! ```

use std::process::ExitCode;

use taper::{Agent, Event};
use taper_examples::{ExampleArgs, exit};
use taper_python::PythonTool;

use futures_util::StreamExt as _;

const TASK: &str = "Generate the first 30 Fibonacci numbers in Python, keep the even ones, \
                    and tell me how many there are and what their sum is.";

#[tokio::main]
async fn main() -> ExitCode {
    exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = ExampleArgs::parse("coding_agent")?;
    // Checks that the sandbox can be built on this machine before the model loads.
    let python = PythonTool::new().await?.persistent();
    let decoder = args.load().await?;
    let agent = args.apply(Agent::builder(&decoder).tool(python)).build()?;

    // Stream the run: the code the model writes and what it printed, as they happen.
    let mut events = agent.stream(args.task_or(TASK));
    while let Some(event) = events.next().await {
        match event? {
            Event::ToolCallStarted { arguments, .. } => {
                let code = arguments["code"].as_str().unwrap_or_default();
                println!("--- python ---\n{code}");
            }
            Event::ToolResult { call, .. } => {
                println!("--- output ---\n{}", call.model_text());
            }
            Event::Done(answer) => {
                println!("answer: {}", answer.text.trim());
                println!("({} steps)", answer.steps.len());
            }
            _ => {}
        }
    }
    Ok(())
}
