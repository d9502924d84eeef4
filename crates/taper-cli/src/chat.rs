//! `taper chat`: a conversation on one session, one turn per line of standard input.

use std::io::{IsTerminal as _, Write as _};

use clap::Args;
use futures_util::StreamExt as _;
use taper::Error;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::signal::unix::{SignalKind, signal};

use crate::agent::{AgentArgs, ModelArgs, Plan};
use crate::error::CliError;
use crate::output::Printer;

/// The example `taper chat --help` shows.
pub const EXAMPLE: &str = "Example:\n  taper chat --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf --tool python\n\nEach line is a turn of the same conversation; follow-ups reuse the KV cache.\nCtrl-C stops the answer being written (not the program); Ctrl-D (end of input)\nends the chat.";

/// Arguments of `taper chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Which model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How the agent runs.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Print one JSON object per event and line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a turn ended.
enum Turn {
    Answered,
    Cancelled,
    Failed,
}

/// Loads the model and answers each line of standard input in one session.
pub fn chat(args: ChatArgs) -> Result<(), CliError> {
    let plan = Plan::new(&args.model, &args.agent)?;
    let rt = crate::runtime()?;
    let tools = rt.block_on(plan.tools())?;
    let decoder = plan.load()?;
    let agent = plan.build_agent(&decoder, tools, &args.agent)?;
    rt.block_on(async {
        let mut session = agent.session().map_err(CliError::Agent)?;
        let mut printer = Printer::new(args.json);
        let interactive = std::io::stdin().is_terminal();
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        // One listener for the whole chat, so that no Ctrl-C is missed between turns.
        let mut interrupts = signal(SignalKind::interrupt()).map_err(CliError::Signal)?;
        let (mut turns, mut failed) = (0, 0);
        loop {
            if interactive {
                prompt();
            }
            let line = tokio::select! {
                line = lines.next_line() => line.map_err(CliError::Input)?,
                // Ctrl-C at the prompt ends the chat, as end of input does.
                Some(()) = interrupts.recv() => None,
            };
            let Some(line) = line else { break };
            let task = line.trim();
            if task.is_empty() {
                continue;
            }
            turns += 1;
            let mut events = session.stream(task);
            let outcome = loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    Some(()) = interrupts.recv() => {
                        events.cancel();
                        continue;
                    }
                };
                match event {
                    None => break Turn::Answered,
                    Some(Ok(event)) => printer.event(&event)?,
                    Some(Err(Error::Cancelled { .. })) => break Turn::Cancelled,
                    Some(Err(error)) => {
                        printer.finish_line()?;
                        crate::error::report(&CliError::Run(error));
                        break Turn::Failed;
                    }
                }
            };
            drop(events);
            match outcome {
                Turn::Answered => {}
                Turn::Cancelled => {
                    printer.finish_line()?;
                    // A note for the person at the terminal; standard output stays
                    // the answers alone.
                    let _ = writeln!(std::io::stderr(), "(cancelled)");
                }
                Turn::Failed => failed += 1,
            }
        }
        if failed > 0 {
            return Err(CliError::TurnsFailed { failed, turns });
        }
        Ok(())
    })
}

/// The prompt on standard error, for a person at a terminal.
fn prompt() {
    let mut err = std::io::stderr().lock();
    // A prompt that cannot be shown does not stop the chat.
    let _ = write!(err, "> ").and_then(|()| err.flush());
}
