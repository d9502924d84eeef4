//! Property tests: sampling from seeded random logits under each turn grammar, every
//! finished turn parses, its tool arguments validate against the tool's schema (with
//! the independent `jsonschema` crate) and deserialize into the tool's Rust type, JSON
//! answers validate against the answer schema, and the thinking budget holds. Runs
//! that hit the token cap are counted separately; they must be rare.
//!
//! The logits source is the only thing a model-driven variant of this test changes
//! (see `common::property::run_scenario`). `TAPER_PROPERTY_SEEDS=N` runs N times the
//! seeds per scenario, for a longer search.

mod common;

use common::property::{SCENARIOS, Tally, run_scenario, scenario};
use common::{LogitsSource, RandomLogits, Rng, Vocab, env};

/// Tokens per run before it counts as capped.
const CAP: usize = 1500;

fn random_source(vocab: Vocab) -> impl FnMut(u64) -> Box<dyn LogitsSource> {
    let env = env(vocab);
    move |seed| {
        // Each run favours ending with its own probability, from often to rarely.
        let p_end = 0.03 + 0.3 * Rng::new(seed ^ 0xABCD).unit();
        Box::new(RandomLogits::new(&env, seed, p_end))
    }
}

fn check(vocab: Vocab, name: &'static str, seeds: u64) -> Tally {
    let scale: u64 = std::env::var("TAPER_PROPERTY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let seeds = seeds * scale;
    let env = env(vocab);
    let s = scenario(&env, name);
    let mut source = random_source(vocab);
    let tally = run_scenario(&env, &s, 0..seeds, CAP, &mut source);
    println!("{vocab:?} / {name}: {tally:?}");
    assert!(
        tally.capped * 10 <= tally.runs,
        "{name}: {} of {} runs hit the cap of {CAP} tokens",
        tally.capped,
        tally.runs
    );
    if s.calls_allowed && !s.answer_allowed {
        assert_eq!(tally.calls, tally.finished);
    }
    if !s.calls_allowed {
        assert_eq!(tally.calls, 0);
    }
    tally
}

macro_rules! scenario_tests {
    ($($test:ident: $vocab:expr, $name:expr, $seeds:expr;)*) => {$(
        #[test]
        fn $test() {
            check($vocab, $name, $seeds);
        }
    )*};
}

scenario_tests! {
    qwen3_tools: Vocab::Qwen3, SCENARIOS[0], 24;
    qwen3_no_tools: Vocab::Qwen3, SCENARIOS[1], 12;
    qwen3_tool_required: Vocab::Qwen3, SCENARIOS[2], 24;
    qwen3_single_call: Vocab::Qwen3, SCENARIOS[3], 16;
    qwen3_json_answer: Vocab::Qwen3, SCENARIOS[4], 16;
    qwen3_json_answer_no_tools: Vocab::Qwen3, SCENARIOS[5], 16;
    qwen3_small_budget: Vocab::Qwen3, SCENARIOS[6], 16;
    llama_tools: Vocab::Llama, SCENARIOS[0], 8;
    llama_tool_required: Vocab::Llama, SCENARIOS[2], 16;
    llama_single_call: Vocab::Llama, SCENARIOS[3], 8;
    llama_json_answer_no_tools: Vocab::Llama, SCENARIOS[5], 8;
    llama_small_budget: Vocab::Llama, SCENARIOS[6], 8;
}
