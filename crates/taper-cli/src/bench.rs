//! `taper bench`: how fast a model file runs on this machine: load time, prefill and
//! decode speed, the grammar's mask cost per token, and peak memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use taper::Tokenizer;
use taper_calculator::Calculator;
use taper_grammar::{Constraint, TokenEnv, TurnGrammar};
use taper_model::{CacheOptions, LoadOptions, LogitsFor, Model, SamplerConfig};
use taper_tool::ToolBox;

use crate::error::CliError;
use crate::progress;

/// The example `taper bench --help` shows.
pub const EXAMPLE: &str = "Example:\n  taper bench --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf --threads 2\n\nThe prompt is made of fixed pseudo-random token ids. Decoding runs under the agent's\nturn grammar (the calculator registered, thinking closed after 32 tokens), so the\nmask column is what a real step pays; decode speed includes it.";

/// Reasoning tokens per turn before the grammar closes the thinking, so that the
/// decoded tokens also cover the tool-call JSON.
const THINK_BUDGET: usize = 32;

/// Arguments of `taper bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model: a GGUF file, or a Hugging Face directory.
    #[arg(long, value_name = "FILE.gguf|DIR")]
    pub model: PathBuf,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// A directory where the weights repacked at load are kept, so that later
    /// runs load the same model in about a second (costs disk space about the
    /// model file's size; see `LoadOptions::weight_cache`).
    #[arg(long, value_name = "DIR")]
    pub weight_cache: Option<PathBuf>,
    /// Prompt tokens prefilled in one pass.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub prompt: u32,
    /// Tokens decoded one at a time after the prompt.
    #[arg(long = "gen", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub generate: u32,
    /// Worker threads [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What one benchmark run measured.
struct Measured {
    threads: usize,
    load: Duration,
    prefill: Duration,
    decode: Duration,
    /// Mask plus commit time of each decoded token.
    masks: Vec<Duration>,
    peak_rss: Option<u64>,
}

/// Loads the model, prefills, decodes under the turn grammar and prints the numbers.
pub fn bench(args: &BenchArgs) -> Result<(), CliError> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build_global()
            .map_err(|e| CliError::Bench(e.to_string()))?;
    }
    let inspect = |source| CliError::Inspect {
        path: args.model.clone(),
        source,
    };
    let tokenizer = match &args.tokenizer {
        Some(path) => Tokenizer::from_file(path),
        None if args.model.is_dir() => Tokenizer::from_file(args.model.join("tokenizer.json")),
        None => Tokenizer::from_gguf_file(&args.model),
    }
    .map_err(inspect)?;

    let bar = progress::bar(&format!("loading {}", args.model.display()));
    let mut options = LoadOptions::new();
    if let Some(dir) = &args.weight_cache {
        options = options.weight_cache(dir);
    }
    if let Some(bar) = &bar {
        let bar = bar.clone();
        options = options.progress(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
    }
    let start = Instant::now();
    let model = Model::load(&args.model, &options);
    let load = start.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let model = model.map_err(inspect)?;
    let measured = measure(&model, &tokenizer, args, load)?;
    let text = if args.json {
        report_json(&args.model, args, &measured)
    } else {
        report_table(&args.model, args, &measured)
    };
    println!("{text}");
    Ok(())
}

/// Prefills `args.prompt` tokens, then decodes `args.generate` tokens under the turn
/// grammar, timing the forward passes and the masks apart.
fn measure(
    model: &Model,
    tokenizer: &Tokenizer,
    args: &BenchArgs,
    load: Duration,
) -> Result<Measured, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Bench(e.to_string());
    let rows = model.config().vocab_size;
    tokenizer
        .check_model_vocab(rows)
        .map_err(|e| CliError::Inspect {
            path: args.model.clone(),
            source: e,
        })?;
    let eos = tokenizer
        .eos_id()
        .ok_or_else(|| CliError::Bench("the tokenizer has no end-of-sentence token".into()))?;
    let env = TokenEnv::new(tokenizer.hf(), rows, eos).map_err(|e| failed(&e))?;
    let mut tools = ToolBox::new();
    tools.register(Calculator::new()).map_err(|e| failed(&e))?;
    let mut builder = TurnGrammar::builder(&env).thinking_budget(THINK_BUDGET);
    for tool in tools.tools() {
        builder = builder.tool(tool.name(), tool.schema().clone());
    }
    let grammar = builder.build().map_err(|e| failed(&e))?;

    let (prompt, generate) = (args.prompt as usize, args.generate as usize);
    // Fixed pseudo-random ids (Knuth's multiplicative hash), the same in every run.
    let tokens: Vec<u32> = (0..prompt as u64)
        .map(|i| ((i * 2_654_435_761) % rows as u64) as u32)
        .collect();
    let mut cache = model
        .new_cache(CacheOptions::new().context(prompt + generate + 1))
        .map_err(|e| failed(&e))?;
    let mut sampler = SamplerConfig::greedy().build().map_err(|e| failed(&e))?;

    let start = Instant::now();
    let mut logits = model
        .forward(&tokens, &mut cache, LogitsFor::Last)
        .map_err(|e| failed(&e))?
        .into_vec();
    let prefill = start.elapsed();

    let mut constraint: Constraint = grammar.constraint();
    let mut masks = Vec::with_capacity(generate);
    let start = Instant::now();
    for _ in 0..generate {
        let t = Instant::now();
        constraint.mask(&mut logits).map_err(|e| failed(&e))?;
        let masked = t.elapsed();
        let next = sampler.sample(&logits).map_err(|e| failed(&e))?;
        let t = Instant::now();
        let commit = constraint.commit(next).map_err(|e| failed(&e))?;
        masks.push(masked + t.elapsed());
        if commit.finished {
            constraint = grammar.constraint();
        }
        logits = model
            .forward(&[next], &mut cache, LogitsFor::Last)
            .map_err(|e| failed(&e))?
            .into_vec();
    }
    let decode = start.elapsed();
    Ok(Measured {
        threads: rayon::current_num_threads(),
        load,
        prefill,
        decode,
        masks,
        peak_rss: taper_model::peak_rss(),
    })
}

/// Mean, median, 99th percentile and maximum of `d`, in microseconds.
fn stats(d: &[Duration]) -> [f64; 4] {
    let mut us: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    let mean = us.iter().sum::<f64>() / us.len() as f64;
    [mean, at(0.5), at(0.99), at(1.0)]
}

fn report_table(path: &Path, args: &BenchArgs, m: &Measured) -> String {
    let [mean, p50, p99, max] = stats(&m.masks);
    let step_us = m.decode.as_secs_f64() * 1e6 / m.masks.len() as f64;
    let rss = m
        .peak_rss
        .map_or("unknown".to_string(), |b| format!("{:.2} GiB", gib(b)));
    format!(
        "{} with {} thread(s)\n\n\
         | measure | value |\n\
         |---|---|\n\
         | load | {:.2} s |\n\
         | prefill {} tokens | {:.2} tokens/s |\n\
         | decode {} tokens | {:.2} tokens/s |\n\
         | grammar mask + commit per token | mean {mean:.0} us, p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us |\n\
         | mask share of a decode step | {:.2}% |\n\
         | peak RSS | {rss} |",
        path.display(),
        m.threads,
        m.load.as_secs_f64(),
        args.prompt,
        args.prompt as f64 / m.prefill.as_secs_f64(),
        args.generate,
        args.generate as f64 / m.decode.as_secs_f64(),
        100.0 * mean / step_us,
    )
}

fn report_json(path: &Path, args: &BenchArgs, m: &Measured) -> String {
    let [mean, p50, p99, max] = stats(&m.masks);
    json!({
        "model": path.display().to_string(),
        "threads": m.threads,
        "load_s": m.load.as_secs_f64(),
        "prompt_tokens": args.prompt,
        "prefill_tokens_per_s": args.prompt as f64 / m.prefill.as_secs_f64(),
        "decode_tokens": args.generate,
        "decode_tokens_per_s": args.generate as f64 / m.decode.as_secs_f64(),
        "mask_us": { "mean": mean, "p50": p50, "p99": p99, "max": max },
        "peak_rss_bytes": m.peak_rss,
    })
    .to_string()
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}
