//! Mask cost per token on both real vocabularies, grammar compile time and token
//! environment build time. Prints a table; run with `cargo bench -p taper-grammar`.
//!
//! Tokens come from seeded random logits under each grammar (the generation itself is
//! not timed, only `Constraint::mask`, which computes the allowed set and writes
//! `-inf` into the logits). Targets: mean <= 50 us and p99 <= 1 ms per mask; compile
//! of the 10-tool turn grammar <= 10 ms.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/types.rs"]
mod types;

use std::time::{Duration, Instant};

use common::{RandomLogits, Rng, Vocab, eos_of, generate, tokenizer};
use schemars::{JsonSchema as Derive, schema_for};
use taper_grammar::{JsonGrammar, JsonSchema, TokenEnv, TurnGrammar, TurnGrammarBuilder};
use types::{Calc, Command, Event, Lookup, Node, Options, Rich, Search, Shape, Verdict};

/// Runs per grammar and the token cap per run.
const RUNS: u64 = 40;
const CAP: usize = 600;

fn schema<T: Derive>() -> JsonSchema {
    match JsonSchema::new(schema_for!(T).to_value()) {
        Ok(s) => s,
        Err(e) => panic!("schema of {}: {e}", std::any::type_name::<T>()),
    }
}

fn ten_tools(env: &TokenEnv) -> TurnGrammarBuilder {
    TurnGrammar::builder(env)
        .tool("search", schema::<Search>())
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

struct Row {
    vocab: Vocab,
    what: &'static str,
    times: Vec<Duration>,
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
    let mut times = Vec::new();
    let mut capped = 0;
    for seed in 0..RUNS {
        let mut rng = Rng::new(seed);
        let p_end = 0.02 + 0.2 * rng.unit();
        let mut source = RandomLogits::new(env, seed, p_end);
        let mut c = constraint();
        match generate(env, &mut c, &mut source, &mut rng, CAP, Some(&mut times)) {
            Ok(run) if !run.finished => capped += 1,
            Ok(_) => {}
            Err(e) => panic!("{vocab:?} {what} seed {seed}: {e}"),
        }
    }
    Row {
        vocab,
        what,
        times,
        capped,
    }
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

        let mut compiles = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let grammar = ten_tools(&env).build().expect("turn grammar");
            compiles.push(start.elapsed());
            drop(grammar);
        }
        compiles.sort();
        let either = ten_tools(&env).build().expect("turn grammar");
        rows.push(measure(
            &env,
            || either.constraint(),
            vocab,
            "(c) turn, 10 tools",
        ));
        let calls = ten_tools(&env)
            .require_tool_call(true)
            .build()
            .expect("turn grammar");
        rows.push(measure(
            &env,
            || calls.constraint(),
            vocab,
            "(c) turn, 10 tools, call required",
        ));
        builds.push((
            vocab,
            env_time,
            compiles[compiles.len() / 2],
            compiles[compiles.len() - 1],
        ));
    }

    println!();
    println!("mask time per token (Constraint::mask on the full logits)");
    println!("| vocab | grammar | masks | mean us | p50 us | p99 us | max us | runs at cap |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for row in &mut rows {
        row.times.sort();
        let n = row.times.len();
        let mean = row.times.iter().map(|&d| us(d)).sum::<f64>() / n as f64;
        let pct = |p: f64| us(row.times[((n as f64 * p) as usize).min(n - 1)]);
        println!(
            "| {:?} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} |",
            row.vocab,
            row.what,
            n,
            mean,
            pct(0.5),
            pct(0.99),
            us(row.times[n - 1]),
            row.capped,
            RUNS
        );
    }
    println!();
    println!("| vocab | token env build ms | compile (c) median ms | compile (c) max ms |");
    println!("|---|---:|---:|---:|");
    for (vocab, env_time, median, max) in builds {
        println!(
            "| {vocab:?} | {:.0} | {:.2} | {:.2} |",
            env_time.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
}
