//! The errors of the `taper` command, their exit codes, and how they are printed.

use std::error::Error as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Everything a subcommand can fail with after its arguments parsed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `run` or `chat` without `--model`, and the built-in model is missing.
    #[error(
        "a model path is needed: pass --model with a GGUF file or a Hugging Face model directory (the built-in model, {}, is missing)", embedded.display()
    )]
    NoModel {
        /// Where the built-in model was looked for.
        embedded: PathBuf,
    },
    /// `--tool` named a tool the built-in model was not trained for.
    #[error(
        "the built-in model only knows the calculator, not `{name}`; pass --model to use other tools"
    )]
    NanoTool {
        /// The name given.
        name: String,
    },
    /// `--tool` named a tool the command does not have.
    #[error("unknown tool `{name}`; the known tools are {known}")]
    UnknownTool {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The model (or its tokenizer) could not be loaded.
    #[error("cannot load the model at {}", path.display())]
    Load {
        /// The model path given.
        path: PathBuf,
        /// Why.
        source: taper::Error,
    },
    /// The model file's header could not be read.
    #[error("cannot read the model at {}", path.display())]
    Inspect {
        /// The model path given.
        path: PathBuf,
        /// Why.
        source: taper_model::Error,
    },
    /// A file the command needs could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The model could not be written.
    #[error("cannot write the model to {}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// Why.
        source: taper_model::Error,
    },
    /// The context asked for (or the weights alone) cannot be served by this model
    /// on this machine.
    #[error("{reason}; memory per context:\n\n{table}")]
    ContextTooLarge {
        /// Why, in one sentence.
        reason: String,
        /// The memory table of `taper info`.
        table: String,
    },
    /// The Python sandbox could not be built on this machine.
    #[error("cannot start the python tool")]
    Python(#[source] taper_python::Error),
    /// The agent's options or tools were refused.
    #[error("cannot build the agent")]
    Agent(#[source] taper::Error),
    /// A run stopped with an error before its answer.
    #[error("the run stopped before its answer")]
    Run(#[source] taper::Error),
    /// Some turns of a chat failed (each was reported as it failed).
    #[error("{failed} of {turns} chat turns failed")]
    TurnsFailed {
        /// Turns that ended with an error.
        failed: usize,
        /// Turns asked.
        turns: usize,
    },
    /// Writing to standard output failed.
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
    /// Reading standard input failed.
    #[error("cannot read standard input")]
    Input(#[source] std::io::Error),
    /// Ctrl-C cannot be caught.
    #[error("cannot listen for Ctrl-C")]
    Signal(#[source] std::io::Error),
    /// A benchmark step failed after the model loaded.
    #[error("the benchmark failed: {0}")]
    Bench(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoModel { .. } | CliError::UnknownTool { .. } | CliError::NanoTool { .. } => {
                2
            }
            _ => 1,
        }
    }
}

/// Prints `error: <message>` and one `  caused by: <message>` line per source,
/// skipping a cause whose text its parent's already includes.
pub fn report(error: &CliError) {
    let mut out = std::io::stderr().lock();
    let mut last = error.to_string();
    // Nothing better to do when standard error itself cannot be written.
    let _ = writeln!(out, "error: {last}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !last.contains(&text) {
            let _ = writeln!(out, "  caused by: {text}");
        }
        last = text;
        source = cause.source();
    }
}
