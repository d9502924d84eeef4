//! `taper`: runs a local DeepSeek-R1 reasoning agent with tools from the command line,
//! chats with it, inspects model files and writes random-weight models.
//!
//! ```text
//! taper run --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf --tool calculator "What is 17 * 23?"
//! taper chat --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf
//! taper info --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf
//! taper bench --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf --threads 2
//! taper make-model --arch qwen3 --preset tiny --quant q4_k_m \
//!     --tokenizer fixtures/cache/r1_qwen3.tokenizer.json -o tiny.gguf
//! ```
//!
//! Errors print `error: <sentence>` and the chain of causes; the exit code is 1 for
//! runtime errors and 2 for usage errors.

mod agent;
mod bench;
mod chat;
mod error;
mod info;
mod make_model;
mod output;
mod progress;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::error::CliError;

/// mimalloc instead of the system allocator: compiling a grammar makes tens of
/// thousands of small allocations (the `masks` benchmark of taper-grammar: compile
/// time about halved), and decoding allocates nothing per token.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run a local DeepSeek-R1 reasoning agent with tools.
#[derive(Debug, Parser)]
#[command(
    name = "taper",
    version,
    after_help = "Examples:\n  taper run --model model.gguf --tool calculator \"What is 17 * 23?\"\n  taper chat --model model.gguf --tool python\n  taper info --model model.gguf\n  taper bench --model model.gguf --threads 2\n  taper make-model --arch qwen3 --preset tiny --quant q4_k_m \\\n      --tokenizer r1_qwen3.tokenizer.json -o tiny.gguf\n\nSet RUST_LOG (e.g. RUST_LOG=info) for the library's log on standard error."
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent on one task and stream its reasoning, tool calls and answer.
    #[command(after_help = run::EXAMPLE)]
    Run(run::RunArgs),
    /// Talk to an agent: each line of standard input is a turn of one conversation.
    #[command(after_help = chat::EXAMPLE)]
    Chat(chat::ChatArgs),
    /// Show a model file's architecture, quantization, size and memory needs.
    #[command(after_help = info::EXAMPLE)]
    Info(info::InfoArgs),
    /// Measure load time, prefill and decode speed, mask cost and peak memory.
    #[command(after_help = bench::EXAMPLE)]
    Bench(bench::BenchArgs),
    /// Write a random-weight model in the exact layout of the real ones.
    #[command(after_help = make_model::EXAMPLE)]
    MakeModel(make_model::MakeModelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::chat(args),
        Command::Info(args) => info::info(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::MakeModel(args) => make_model::make_model(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error::report(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// A multi-threaded tokio runtime for the subcommands that run agents.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}
