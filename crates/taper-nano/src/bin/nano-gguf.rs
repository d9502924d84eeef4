//! Converts the trained model (a Hugging Face directory: config.json, safetensors,
//! tokenizer.json) to the committed GGUF, with its tokenizer and the R1 Llama chat
//! template embedded.

use std::path::PathBuf;

use clap::Parser;
use taper_model::{ModelWriter, Quant};

/// Writes the nano model as GGUF.
#[derive(Parser)]
struct Args {
    /// The trained model directory.
    #[arg(long)]
    hf_dir: PathBuf,
    /// The chat template to embed.
    #[arg(long, default_value = "fixtures/chat-templates/distill_llama_8b.jinja")]
    chat_template: PathBuf,
    /// Storage type: f32, f16, q8_0, ...
    #[arg(long, default_value = "q8_0")]
    quant: String,
    /// Output file.
    #[arg(long, default_value = taper_nano::MODEL_PATH)]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let quant =
        Quant::parse(&args.quant).ok_or_else(|| format!("unknown quant `{}`", args.quant))?;
    let template = std::fs::read_to_string(&args.chat_template)?;
    ModelWriter::from_hf_dir(&args.hf_dir)?
        .name("taper-nano")
        .chat_template(template)
        .quant(quant)
        .write_gguf(&args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
