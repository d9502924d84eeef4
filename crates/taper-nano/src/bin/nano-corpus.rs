//! Writes the training corpus of the nano model: one JSON object per line with the
//! prompts and completions of both turns of a solved problem (see
//! `taper_nano::transcript`), plus the full system prompt.

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
    for problem in generate(args.seed, split, args.n) {
        let t = renderer.transcript(&problem);
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
