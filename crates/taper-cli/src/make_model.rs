//! `taper make-model`: a random-weight model in the exact layout of the real ones,
//! for tests, demos and benchmarks.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use taper_model::{Architecture, ModelWriter, Preset, Quant};

use crate::error::CliError;

/// The example `taper make-model --help` shows.
pub const EXAMPLE: &str = "Example:\n  taper make-model --arch qwen3 --preset tiny --quant q4_k_m \\\n      --tokenizer fixtures/cache/r1_qwen3.tokenizer.json -o tiny.gguf\n\nThe weights are random, so the model writes noise; its layout, metadata and\ntokenizer are those of the real model, so everything else runs for real.";

/// The block family.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    /// Llama-3.1 (DeepSeek-R1-Distill-Llama-8B).
    Llama,
    /// Qwen3 (DeepSeek-R1-0528-Qwen3-8B).
    Qwen3,
}

/// The model size.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PresetArg {
    /// A few MB of weights: 2 blocks of width 256.
    Tiny,
    /// The real 8B shapes.
    #[value(name = "8b")]
    Full8B,
}

/// The output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One GGUF file, the tokenizer embedded.
    Gguf,
    /// A Hugging Face directory: config.json and safetensors.
    Safetensors,
}

/// Arguments of `taper make-model`.
#[derive(Debug, Args)]
pub struct MakeModelArgs {
    /// Block family.
    #[arg(long, value_enum)]
    pub arch: Arch,
    /// Model size.
    #[arg(long, value_enum, default_value = "tiny")]
    pub preset: PresetArg,
    /// Storage: f32, f16, bf16, q4_0, q8_0, q4_k, q5_k, q6_k or q4_k_m.
    #[arg(long, default_value = "q4_k_m", value_parser = parse_quant)]
    pub quant: Quant,
    /// The tokenizer.json to embed; the vocabulary then spans the real model's rows.
    #[arg(long, value_name = "FILE", required_unless_present = "vocab")]
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary rows of a model written without a tokenizer (for parity tests
    /// against reference implementations that take token ids).
    #[arg(long, value_name = "N", conflicts_with = "tokenizer", value_parser = clap::value_parser!(u32).range(1..))]
    pub vocab: Option<u32>,
    /// A Jinja chat template to embed as `tokenizer.chat_template`.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "gguf")]
    pub format: Format,
    /// Shard safetensors into files of at most this many MiB.
    #[arg(long, value_name = "MIB")]
    pub shard_mib: Option<u64>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (GGUF) or directory (safetensors).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

/// A quantization name.
fn parse_quant(text: &str) -> Result<Quant, String> {
    Quant::parse(text).ok_or_else(|| {
        format!("unknown quantization `{text}` (known: f32, f16, bf16, q4_0, q8_0, q4_k, q5_k, q6_k, q4_k_m)")
    })
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes the model, with a progress bar when standard error is a terminal.
pub fn make_model(args: &MakeModelArgs) -> Result<(), CliError> {
    let arch = match args.arch {
        Arch::Llama => Architecture::Llama,
        Arch::Qwen3 => Architecture::Qwen3,
    };
    let preset = match args.preset {
        PresetArg::Tiny => Preset::Tiny,
        PresetArg::Full8B => Preset::Full8B,
    };
    // With a tokenizer, the tiny preset's vocabulary spans the real model's embedding
    // rows, so the real tokenizer fits; the 8B preset has them already.
    let vocab = match (preset, arch, &args.tokenizer) {
        (_, _, None) => args.vocab.map(|v| v as usize),
        (Preset::Tiny, Architecture::Llama, Some(_)) => Some(128_256),
        (Preset::Tiny, Architecture::Qwen3, Some(_)) => Some(151_936),
        (Preset::Full8B, _, Some(_)) => None,
    };
    let config = preset.config(arch, vocab);
    let mut writer = ModelWriter::new(config)
        .quant(args.quant)
        .pooled_blocks(preset == Preset::Full8B)
        .seed(args.seed);
    if let Some(path) = &args.tokenizer {
        writer = writer.tokenizer_json(read(path)?);
    }
    if let Some(path) = &args.chat_template {
        writer = writer.chat_template(read(path)?);
    }
    let bar = crate::progress::bar(&format!("writing {}", args.output.display()));
    if let Some(bar) = &bar {
        let bar = bar.clone();
        writer = writer.progress(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
    }
    let written = match args.format {
        Format::Gguf => writer.write_gguf(&args.output),
        Format::Safetensors => {
            writer.write_safetensors(&args.output, args.shard_mib.map(|m| m << 20))
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    written.map_err(|source| CliError::Write {
        path: args.output.clone(),
        source,
    })?;
    // A note for the person at the terminal; the file is written either way.
    let _ = writeln!(std::io::stderr(), "wrote {}", args.output.display());
    Ok(())
}
