//! Writes a random-weight model in the exact layout of the real ones.
//!
//! ```text
//! taper-make-model --arch qwen3 --preset 8b --quant q4_k_m \
//!     --tokenizer fixtures/cache/r1_qwen3.tokenizer.json -o qwen3-8b-q4_k_m.gguf
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use taper_model::{Architecture, ModelWriter, Preset, Quant};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Arch {
    Llama,
    Qwen3,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PresetArg {
    Tiny,
    #[value(name = "8b")]
    Full8B,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Gguf,
    Safetensors,
}

/// Write a random-weight Llama-3.1 or Qwen3 model (GGUF, or safetensors + config.json).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example:\n  taper-make-model --arch qwen3 --preset tiny --quant q8_0 \\\n      --tokenizer fixtures/cache/r1_qwen3.tokenizer.json -o tiny.gguf"
)]
struct Args {
    /// Block family.
    #[arg(long, value_enum)]
    arch: Arch,
    /// Model size: `tiny` (tests) or the real `8b` shapes.
    #[arg(long, value_enum, default_value = "tiny")]
    preset: PresetArg,
    /// Storage: f32, f16, bf16, q4_0, q8_0, q4_k, q5_k, q6_k or q4_k_m.
    #[arg(long, default_value = "f32")]
    quant: String,
    /// A tokenizer.json to embed; the vocabulary then spans the real model's rows.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A Jinja chat template to embed as `tokenizer.chat_template`.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Vocabulary rows (default: the preset's).
    #[arg(long)]
    vocab: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "gguf")]
    format: Format,
    /// Shard safetensors into files of at most this many MiB.
    #[arg(long)]
    shard_mib: Option<u64>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (GGUF) or directory (safetensors).
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let arch = match args.arch {
        Arch::Llama => Architecture::Llama,
        Arch::Qwen3 => Architecture::Qwen3,
    };
    let preset = match args.preset {
        PresetArg::Tiny => Preset::Tiny,
        PresetArg::Full8B => Preset::Full8B,
    };
    let quant = Quant::parse(&args.quant)
        .ok_or_else(|| format!("unknown quantization `{}`", args.quant))?;
    let tokenizer = match &args.tokenizer {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let vocab = args.vocab.or(match (&tokenizer, preset, arch) {
        (Some(_), Preset::Tiny, Architecture::Llama) => Some(128_256),
        (Some(_), Preset::Tiny, Architecture::Qwen3) => Some(151_936),
        _ => None,
    });
    let config = preset.config(arch, vocab);
    let bar = ProgressBar::new(config.parameter_count());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {percent}% {human_pos}/{human_len} params, eta {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(format!("writing {}", args.output.display()));
    let progress_bar = bar.clone();
    let mut writer = ModelWriter::new(config)
        .quant(quant)
        .pooled_blocks(preset == Preset::Full8B)
        .seed(args.seed)
        .progress(move |done, total| {
            progress_bar.set_length(total);
            progress_bar.set_position(done);
        });
    if let Some(t) = tokenizer {
        writer = writer.tokenizer_json(t);
    }
    if let Some(p) = &args.chat_template {
        writer = writer.chat_template(
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        );
    }
    match args.format {
        Format::Gguf => writer.write_gguf(&args.output)?,
        Format::Safetensors => {
            writer.write_safetensors(&args.output, args.shard_mib.map(|m| m << 20))?
        }
    }
    bar.finish_with_message(format!("wrote {}", args.output.display()));
    Ok(())
}
