//! Writes the training corpus of the nano model: one JSON object per line with the
//! prompts and completions of both turns of a solved problem (see
//! `taper_nano::transcript`), plus the full system prompt. Every `--chat-every`-th
//! problem is the second turn of a chat, after the problem before it, so the model
//! also learns to answer with an earlier turn in its context.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use taper_nano::transcript::Renderer;
use taper_nano::{Split, generate};

/// Writes training transcripts as JSON lines.
#[derive(Parser)]
struct Args {
    /// Output file (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Number of problems.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Every how many problems one is the second turn of a chat (0: none).
    #[arg(long, default_value_t = 8)]
    chat_every: usize,
    /// Write the held-out split instead of the training one.
    #[arg(long)]
    held_out: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let split = if args.held_out {
        Split::HeldOut
    } else {
        Split::Train
    };
    let renderer = Renderer::new()?;
    let file = std::fs::File::create(&args.out)?;
    let mut out = BufWriter::new(file);
    let problems = generate(args.seed, split, args.n);
    for (i, problem) in problems.iter().enumerate() {
        let t = match i.checked_sub(1) {
            Some(previous) if args.chat_every > 0 && i % args.chat_every == args.chat_every - 1 => {
                renderer
                    .conversation(&problems[previous..=i])
                    .pop()
                    .expect("a conversation of two problems has two transcripts")
            }
            _ => renderer.transcript(problem),
        };
        let line = serde_json::json!({
            "template": problem.template,
            "system": renderer.system(),
            "prompt1": t.prompt1,
            "completion1": t.completion1,
            "prompt2": t.prompt2,
            "completion2": t.completion2,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
