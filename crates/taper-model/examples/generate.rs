//! Streams a completion from a model: the decoder on its own, without grammar or
//! tools.
//!
//! ```text
//! cargo run --release -p taper-model --example generate -- MODEL.gguf "What is 2+2?" \
//!     [--tokenizer tokenizer.json] [--tokens 64] [--seed 1]
//! ```
//!
//! The prompt is wrapped in the DeepSeek-R1 chat markers, as the real models expect.

use std::io::Write;
use std::time::Instant;

use taper_model::{BOS, CacheOptions, LoadOptions, LogitsFor, Model, SamplerConfig, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut positional, mut tokenizer, mut n, mut seed) = (Vec::new(), None, 64usize, 0u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tokenizer" => tokenizer = it.next().cloned(),
            "--tokens" => n = it.next().ok_or("--tokens needs a value")?.parse()?,
            "--seed" => seed = it.next().ok_or("--seed needs a value")?.parse()?,
            _ => positional.push(a.clone()),
        }
    }
    let [model_path, question] = &positional[..] else {
        return Err(
            "usage: generate MODEL QUESTION [--tokenizer FILE] [--tokens N] [--seed S]".into(),
        );
    };
    let start = Instant::now();
    let model = Model::load(model_path, &LoadOptions::new())?;
    let tok = match tokenizer {
        Some(t) => Tokenizer::from_file(t)?,
        None => Tokenizer::from_gguf_file(model_path)?,
    };
    tok.check_model_vocab(model.config().vocab_size)?;
    eprintln!(
        "loaded {:?} ({:.1}M parameters) in {:.2} s",
        model.config().architecture,
        model.config().parameter_count() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    let prompt = tok.encode(&format!(
        "{BOS}<｜User｜>{question}<｜Assistant｜><think>\n"
    ))?;
    let mut cache = model.new_cache(CacheOptions::new().context(prompt.len() + n))?;
    let mut sampler = SamplerConfig::default().seed(seed).build()?;
    let mut logits = model.forward(&prompt, &mut cache, LogitsFor::Last)?;
    let mut stream = tok.decode_stream();
    let mut out = std::io::stdout().lock();
    writeln!(out, "<think>")?;
    let t = Instant::now();
    let mut produced = 0;
    for _ in 0..n {
        let next = sampler.sample(logits.last())?;
        produced += 1;
        if Some(next) == tok.eos_id() {
            break;
        }
        write!(out, "{}", stream.step(next)?)?;
        out.flush()?;
        logits = model.forward(&[next], &mut cache, LogitsFor::Last)?;
    }
    writeln!(out, "{}", stream.finish())?;
    eprintln!(
        "{produced} tokens at {:.1} tokens/s",
        produced as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
