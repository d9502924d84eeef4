//! Mask cost per token on both real vocabularies, grammar compile time and token
//! environment build time. Prints a table; run with `cargo bench -p taper-grammar`.
//!
//! Tokens come from seeded random logits under each grammar (the generation itself is
//! not timed, only `Constraint::mask`, which computes the allowed set and writes
//! `-inf` into the logits). Targets: mean <= 50 us and p99 <= 1 ms per mask; compile
//! of the 10-tool turn grammar <= 10 ms.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::types::{Calc, Command, Event, Lookup, Node, Options, Rich, Search, Shape, Verdict};
use common::{RandomLogits, Rng, Timings, Vocab, eos_of, generate, tokenizer};
use schemars::{JsonSchema as Derive, schema_for};
use taper_grammar::{JsonGrammar, JsonSchema, TokenEnv, TurnGrammar, TurnGrammarBuilder};

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

        let compile = |builder: &dyn Fn() -> TurnGrammarBuilder| {
            let mut times: Vec<Duration> = (0..20)
                .map(|_| {
                    let b = builder();
                    let start = Instant::now();
                    let grammar = b.build().expect("turn grammar");
                    let took = start.elapsed();
                    drop(grammar);
                    took
                })
                .collect();
            times.sort();
            (times[times.len() / 2], times[times.len() - 1])
        };
        let (ten_median, ten_max) = compile(&|| ten_tools(&env));
        let two_tools = || {
            TurnGrammar::builder(&env)
                .tool("calc", schema::<Calc>())
                .tool("search", schema::<Search>())
        };
        let (two_median, two_max) = compile(&two_tools);
        let two = two_tools().build().expect("turn grammar");
        rows.push(measure(
            &env,
            || two.constraint(),
            vocab,
            "turn, 2 small tools",
        ));
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
        builds.push((vocab, env_time, ten_median, ten_max, two_median, two_max));
    }

    println!();
    println!(
        "grammar time per sampled token: mask() (writes -inf into the logits) + commit() \
         (feeds the token, commits forced tokens, computes the next allowed set); \
         thread CPU time, and the wall-clock mean beside it"
    );
    println!(
        "| vocab | grammar | tokens | mean us | p50 us | p99 us | max us | wall mean us | mask() wall mean us | runs at cap |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let t = &row.timings;
        let mut cpu = t.cpu.clone();
        cpu.sort();
        let n = cpu.len();
        let mean = |v: &[Duration]| v.iter().map(|&d| us(d)).sum::<f64>() / n as f64;
        let wall: Vec<Duration> = t.mask.iter().zip(&t.commit).map(|(a, b)| *a + *b).collect();
        let pct = |p: f64| us(cpu[((n as f64 * p) as usize).min(n - 1)]);
        println!(
            "| {:?} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} |",
            row.vocab,
            row.what,
            n,
            mean(&cpu),
            pct(0.5),
            pct(0.99),
            us(cpu[n - 1]),
            mean(&wall),
            mean(&t.mask),
            row.capped,
            RUNS
        );
    }
    println!();
    println!(
        "| vocab | token env build ms | compile (c) 10 tools, median / max ms | compile, 2 small tools, median / max ms |"
    );
    println!("|---|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (vocab, env_time, ten_median, ten_max, two_median, two_max) in builds {
        println!(
            "| {vocab:?} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
            ms(env_time),
            ms(ten_median),
            ms(ten_max),
            ms(two_median),
            ms(two_max)
        );
    }
}
