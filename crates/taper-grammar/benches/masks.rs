//! Mask cost per token on both real vocabularies, its share of a decode step of the
//! 8B-shaped Q4_K_M random model, grammar compile time and token environment build
//! time. Prints tables; run with `cargo bench -p taper-grammar`.
//!
//! Tokens come from seeded random logits under each grammar (the generation itself is
//! not timed, only `Constraint::mask` and `Constraint::commit`). Targets: mean <= 50 us
//! and p99 <= 1 ms per token; under 2% of a decode step; compile of the 10-tool turn
//! grammar <= 10 ms.
//!
//! The decode step is the model's forward pass for one token after a short prefill, on
//! the random Llama-8B-shaped Q4_K_M file that taper-model's decode benchmark uses
//! (`bench-cache/llama-8b-q4_k_m.gguf`, written there when missing: a few minutes and
//! 4.6 GiB). Loading it takes about 5 GiB of memory; `TAPER_BENCH_SKIP_DECODE=1` skips
//! this part.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::types::{Calc, Command, Event, Lookup, Node, Options, Rich, Search, Shape, Verdict};
use common::{RandomLogits, Rng, Timings, Vocab, eos_of, generate, thread_cpu_time, tokenizer};
use schemars::{JsonSchema as Derive, schema_for};
use taper_grammar::{JsonGrammar, JsonSchema, TokenEnv, TurnGrammar, TurnGrammarBuilder};
use taper_model::{
    Architecture, CacheOptions, LoadOptions, LogitsFor, Model, ModelWriter, Preset, Quant,
};

/// mimalloc, as the `taper` command line uses: grammar compiles are allocation-bound
/// (with the system allocator, glibc's, compile times about double).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs per grammar and the token cap per run.
const RUNS: u64 = 40;
const CAP: usize = 600;

/// Prompt tokens prefilled before the timed decode steps.
const PREFILL: usize = 32;
/// Decode steps timed (after one untimed step).
const DECODE_STEPS: usize = 8;
/// Set to skip loading the 8B-shaped model.
const SKIP_DECODE: &str = "TAPER_BENCH_SKIP_DECODE";

fn schema<T: Derive>() -> JsonSchema {
    match JsonSchema::new(schema_for!(T).to_value()) {
        Ok(s) => s,
        Err(e) => panic!("schema of {}: {e}", std::any::type_name::<T>()),
    }
}

/// The ten tools of grammar (c), the first named `search` plus `tag` (a new tag makes
/// a grammar the environment has not compiled yet).
fn ten_tools(env: &TokenEnv, tag: &str) -> TurnGrammarBuilder {
    TurnGrammar::builder(env)
        .tool(format!("search{tag}"), schema::<Search>())
        .tool("draw", schema::<Shape>())
        .tool("calc", schema::<Calc>())
        .tool("lookup", schema::<Lookup>())
        .tool("configure", schema::<Options>())
        .tool("rich", schema::<Rich>())
        .tool("command", schema::<Command>())
        .tool("tree", schema::<Node>())
        .tool("verdict", schema::<Verdict>())
        .tool("event", schema::<Event>())
}

/// Compiles timed per grammar.
const COMPILES: usize = 40;

/// The `q` quantile of sorted, non-empty `times` (the element at `q` of the way).
fn quantile(times: &[Duration], q: f64) -> Duration {
    times[((times.len() as f64 * q) as usize).min(times.len() - 1)]
}

/// The spread of a set of durations.
struct Spread {
    min: Duration,
    median: Duration,
    p90: Duration,
    max: Duration,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Spread {
        times.sort();
        Spread {
            min: quantile(&times, 0.0),
            median: quantile(&times, 0.5),
            p90: quantile(&times, 0.9),
            max: quantile(&times, 1.0),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "{:.2} / {:.2} / {:.2} / {:.2}",
            ms(self.min),
            ms(self.median),
            ms(self.p90),
            ms(self.max)
        )
    }
}

struct Row {
    vocab: Vocab,
    what: &'static str,
    timings: Timings,
    capped: usize,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn measure(
    env: &TokenEnv,
    mut constraint: impl FnMut() -> taper_grammar::Constraint,
    vocab: Vocab,
    what: &'static str,
) -> Row {
    let mut timings = Timings::default();
    let mut capped = 0;
    for seed in 0..RUNS {
        let mut rng = Rng::new(seed);
        // Reasoning and answers of about a hundred tokens; JSON that closes soon.
        let p_close = 0.05 + 0.2 * rng.unit();
        let mut source = RandomLogits::with_rates(env, seed, 0.01, p_close);
        let mut c = constraint();
        match generate(env, &mut c, &mut source, &mut rng, CAP, Some(&mut timings)) {
            Ok(run) if !run.finished => capped += 1,
            Ok(_) => {}
            Err(e) => panic!("{vocab:?} {what} seed {seed}: {e}"),
        }
    }
    Row {
        vocab,
        what,
        timings,
        capped,
    }
}

/// The 8B-shaped Q4_K_M random file shared with taper-model's decode benchmark.
fn decode_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-cache/llama-8b-q4_k_m.gguf")
}

/// Writes the file the way taper-model's decode benchmark does (same preset, mix and
/// seed), unless it is there.
fn ensure_decode_model(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    eprintln!("writing {} (4.6 GiB, a few minutes)...", path.display());
    let tmp = path.with_extension("partial");
    ModelWriter::new(Preset::Full8B.config(Architecture::Llama, None))
        .quant(Quant::Q4KM)
        .seed(8)
        .pooled_blocks(true)
        .write_gguf(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// One decode step of the 8B-shaped model: the median and mean forward time of one
/// token, and the threads it ran on.
struct DecodeStep {
    median: Duration,
    mean: Duration,
    threads: String,
}

fn measure_decode() -> Result<DecodeStep, String> {
    if std::env::var_os(SKIP_DECODE).is_some_and(|v| !v.is_empty() && v != "0") {
        return Err(format!("skipped ({SKIP_DECODE} is set)"));
    }
    let path = decode_model_path();
    ensure_decode_model(&path)?;
    eprintln!("loading {}...", path.display());
    let model = Model::load(&path, &LoadOptions::new())
        .map_err(|e| format!("loading {}: {e}", path.display()))?;
    let vocab = model.config().vocab_size as u64;
    let prompt: Vec<u32> = (0..PREFILL as u64)
        .map(|i| ((i * 2_654_435_761) % vocab) as u32)
        .collect();
    let mut cache = model
        .new_cache(CacheOptions::new().context(PREFILL + DECODE_STEPS + 1))
        .map_err(|e| e.to_string())?;
    let greedy = |logits: &[f32]| {
        let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        logits.iter().position(|&l| l == best).unwrap_or(0) as u32
    };
    let step = |token: u32, cache: &mut taper_model::KvCache| {
        model
            .forward(&[token], cache, LogitsFor::Last)
            .map(|l| greedy(l.last()))
            .map_err(|e| e.to_string())
    };
    let logits = model
        .forward(&prompt, &mut cache, LogitsFor::Last)
        .map_err(|e| e.to_string())?;
    let mut next = step(greedy(logits.last()), &mut cache)?;
    let mut times = Vec::with_capacity(DECODE_STEPS);
    for _ in 0..DECODE_STEPS {
        let start = Instant::now();
        next = step(next, &mut cache)?;
        times.push(start.elapsed());
    }
    times.sort();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism().map_or_else(|_| "?".into(), |n| n.to_string())
    });
    Ok(DecodeStep {
        median: times[times.len() / 2],
        mean: times.iter().sum::<Duration>() / times.len() as u32,
        threads,
    })
}

fn main() {
    let mut rows = Vec::new();
    let mut builds = Vec::new();
    for vocab in [Vocab::Llama, Vocab::Qwen3] {
        let tok = tokenizer(vocab);
        let eos = eos_of(&tok);
        let start = Instant::now();
        let env = match TokenEnv::new(&tok, vocab.rows(), eos) {
            Ok(env) => env,
            Err(e) => panic!("{vocab:?}: {e}"),
        };
        let env_time = start.elapsed();

        let one = JsonGrammar::new(&env, &schema::<Search>()).expect("one-field grammar");
        rows.push(measure(
            &env,
            || one.constraint(),
            vocab,
            "(a) one-field schema",
        ));
        let rich = JsonGrammar::new(&env, &schema::<Rich>()).expect("rich grammar");
        rows.push(measure(
            &env,
            || rich.constraint(),
            vocab,
            "(b) rich schemars schema",
        ));

        // Each compile gets a new tag: compiled, not taken from the cache. Thread CPU
        // time, as for the masks: a compile the host preempts is not slower code.
        let compile = |builder: &dyn Fn(&str) -> TurnGrammarBuilder| {
            let (cpu, wall): (Vec<Duration>, Vec<Duration>) = (0..COMPILES)
                .map(|i| {
                    let b = builder(&format!("_{i}"));
                    let (cpu0, wall0) = (thread_cpu_time(), Instant::now());
                    let grammar = b.build().expect("turn grammar");
                    let took = (thread_cpu_time() - cpu0, wall0.elapsed());
                    drop(grammar);
                    took
                })
                .unzip();
            (Spread::of(cpu), Spread::of(wall).median)
        };
        let ten_compile = compile(&|tag| ten_tools(&env, tag));
        let two_tools = |tag: &str| {
            TurnGrammar::builder(&env)
                .tool("calc", schema::<Calc>())
                .tool(format!("search{tag}"), schema::<Search>())
        };
        let two_compile = compile(&two_tools);
        // The same grammar again: a clone from the environment's cache.
        let ten_cached = compile(&|_| ten_tools(&env, ""));
        let two = two_tools("").build().expect("turn grammar");
        rows.push(measure(
            &env,
            || two.constraint(),
            vocab,
            "turn, 2 small tools",
        ));
        let either = ten_tools(&env, "").build().expect("turn grammar");
        rows.push(measure(
            &env,
            || either.constraint(),
            vocab,
            "(c) turn, 10 tools",
        ));
        let calls = ten_tools(&env, "")
            .require_tool_call(true)
            .build()
            .expect("turn grammar");
        rows.push(measure(
            &env,
            || calls.constraint(),
            vocab,
            "(c) turn, 10 tools, call required",
        ));
        builds.push((vocab, env_time, ten_compile, ten_cached, two_compile));
    }
    let decode = measure_decode();

    println!();
    println!(
        "grammar time per sampled token: mask() (writes -inf into the logits) + commit() \
         (feeds the token, commits forced tokens, computes the next allowed set); \
         thread CPU time, and the wall-clock mean beside it; the last column is the \
         wall-clock mean as a share of one decode step (below)"
    );
    println!(
        "| vocab | grammar | tokens | mean us | p50 us | p99 us | max us | wall mean us | mask() wall mean us | runs at cap | / decode step % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst: Option<(f64, &Row)> = None;
    for row in &rows {
        let t = &row.timings;
        let mut cpu = t.cpu.clone();
        cpu.sort();
        let n = cpu.len();
        let mean = |v: &[Duration]| v.iter().map(|&d| us(d)).sum::<f64>() / n as f64;
        let wall: Vec<Duration> = t.mask.iter().zip(&t.commit).map(|(a, b)| *a + *b).collect();
        let wall_mean = mean(&wall);
        if worst.is_none_or(|(w, _)| wall_mean > w) {
            worst = Some((wall_mean, row));
        }
        let share = match &decode {
            Ok(step) => format!("{:.2}", 100.0 * wall_mean / us(step.median)),
            Err(_) => "-".into(),
        };
        let pct = |q: f64| us(quantile(&cpu, q));
        println!(
            "| {:?} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} | {share} |",
            row.vocab,
            row.what,
            n,
            mean(&cpu),
            pct(0.5),
            pct(0.99),
            us(cpu[n - 1]),
            wall_mean,
            mean(&t.mask),
            row.capped,
            RUNS
        );
    }
    println!();
    match (&decode, worst) {
        (Ok(step), Some((wall_mean, row))) => {
            println!(
                "decode step: one token's forward pass on the random Llama-8B-shaped Q4_K_M \
                 model after a {PREFILL}-token prefill, {DECODE_STEPS} steps, {} threads: \
                 median {:.1} ms, mean {:.1} ms",
                step.threads,
                step.median.as_secs_f64() * 1e3,
                step.mean.as_secs_f64() * 1e3
            );
            println!(
                "mask+commit / decode step = {:.2} % (the largest wall mean above, {:?} {}: \
                 {wall_mean:.1} us, over the median step)",
                100.0 * wall_mean / us(step.median),
                row.vocab,
                row.what
            );
        }
        (Err(why), _) => println!("decode step: {why}"),
        (Ok(_), None) => println!("decode step measured, but no grammar rows"),
    }
    println!();
    println!(
        "grammar compile times over {COMPILES} compiles: thread CPU time min / median / p90 / \
         max ms, and the wall-clock median"
    );
    println!(
        "| vocab | token env build ms | compile (c) 10 tools | wall median | (c) again, from the cache | wall median | compile, 2 small tools | wall median |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (vocab, env_time, (ten, ten_wall), (cached, cached_wall), (two, two_wall)) in builds {
        println!(
            "| {vocab:?} | {:.0} | {ten} | {:.2} | {cached} | {:.2} | {two} | {:.2} |",
            ms(env_time),
            ms(ten_wall),
            ms(cached_wall),
            ms(two_wall),
        );
    }
}
