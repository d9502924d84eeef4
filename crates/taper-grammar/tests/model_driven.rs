//! Model-driven property tests: a tiny random-weight model of each architecture, its
//! GGUF file carrying the real R1 tokenizer, decodes under each turn grammar with the
//! seeded sampler, many seeds each. Every finished turn must parse, its tool arguments
//! must validate against the tool's schema (with the independent `jsonschema` crate)
//! and deserialize into the tool's Rust type, and a JSON answer must validate against
//! its schema; the tokens fed to the model must be exactly the constraint's tokens.
//!
//! The loop is the decoder's: prefill the prompt, then forward -> mask -> sample ->
//! commit, feeding the sampled token and the tokens the grammar forced after it as one
//! chunk. A random model almost never writes EOS or closes JSON by itself, so every run
//! has a thinking budget, a text answer is ended with EOS after [`ANSWER_TOKENS`]
//! tokens, and after the reasoning a step is now and then nudged: a bonus to the tokens
//! that finish (EOS, the special token that opens tool calls) or to those that only
//! close JSON (`"`, `}`, `]`), more often the longer the run. The grammar's mask applies
//! after the nudge and the model's logits choose everything else.
//! `TAPER_PROPERTY_SEEDS=N` runs N times the seeds.
//!
//! This test has its own `main` (see there): the model runs on one compute thread per
//! vocabulary, both vocabularies at once.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use common::property::{Scenario, Tally, check_turn, scenario_with_budget, tools};
use common::{Rng, Vocab};
use taper_grammar::{Constraint, JsonSchema, TokenEnv, TurnGrammar};
use taper_model::{
    Architecture, CacheOptions, KvCache, LoadOptions, LogitsFor, Model, ModelWriter, Preset, Quant,
    SamplerConfig, Tokenizer,
};

/// Reasoning tokens before `</think>` is forced.
const THINKING_BUDGET: usize = 8;
/// Text-answer tokens after which EOS is committed as soon as the grammar allows it.
const ANSWER_TOKENS: usize = 12;
/// Tokens per run (sampled and forced) before it counts as capped. Where the call
/// markers are text (Llama), each call forces about 60 tokens.
const CAP: usize = 1500;
/// The bonus given to finishing or closing tokens when a step is nudged: it outweighs
/// the spread of the model's logits.
const BONUS: f32 = 40.0;
/// After the reasoning, the chance that a step is nudged to close JSON grows by one
/// over this many tokens, so every run ends well before the cap.
const CLOSE_RAMP: f32 = 200.0;

/// The rendered prompt: system prompt, user turn and the assistant opening.
const PROMPT: &str = "<｜begin▁of▁sentence｜>You may call these tools: search, draw, calc, \
    lookup, configure, rich, command, tree, event.<｜User｜>Draw a small tree and tell me \
    how many leaves it has.<｜Assistant｜><think>\n";

/// A loaded tiny model, the token environment of its own tokenizer, and the prompt.
struct Tiny {
    vocab: Vocab,
    model: Model,
    env: TokenEnv,
    prompt: Vec<u32>,
    nudge: Nudge,
}

/// The tokens a nudge favours.
struct Nudge {
    /// EOS, and the special token that opens tool calls where there is one.
    finishers: Vec<u32>,
    /// Text tokens made only of `"`, `}` and `]`: wherever the grammar allows one, it
    /// ends a string, an array or an object; and the token that ends the tool-call
    /// block rather than opening another call, so that a run of parallel calls ends
    /// too.
    closers: Vec<u32>,
}

impl Nudge {
    fn new(tokenizer: &Tokenizer, env: &TokenEnv) -> Self {
        let mut finishers = vec![env.eos()];
        finishers.extend(tokenizer.single_token("<｜tool▁calls▁begin｜>"));
        let mut closers: Vec<u32> = (0..env.vocab_size() as u32)
            .filter(|&t| {
                let bytes = env.decode(&[t]);
                !env.is_special(t) && !bytes.is_empty() && bytes.iter().all(|b| b"\"}]".contains(b))
            })
            .collect();
        let end = "<｜tool▁calls▁end｜>";
        match tokenizer.single_token(end) {
            Some(id) => closers.push(id),
            // A text marker: its first token that differs from the next call's marker
            // is where the block ends instead of going on.
            None => {
                let end = tokenizer.encode(end).expect("the marker encodes");
                let next = tokenizer
                    .encode("<｜tool▁call▁begin｜>")
                    .expect("the marker encodes");
                let shared = end.iter().zip(&next).take_while(|(a, b)| a == b).count();
                closers.extend(end.get(shared));
            }
        }
        Nudge { finishers, closers }
    }

    fn boost(logits: &mut [f32], tokens: &[u32]) {
        for &t in tokens {
            logits[t as usize] += BONUS;
        }
    }
}

/// Writes the tiny model of `vocab`'s architecture with the real tokenizer (Q4_K_M, as
/// the distills are usually run), loads it, and builds the token environment from the
/// tokenizer read back from the file.
fn write_and_load(vocab: Vocab) -> Tiny {
    let (arch, seed) = match vocab {
        Vocab::Llama => (Architecture::Llama, 31),
        Vocab::Qwen3 => (Architecture::Qwen3, 37),
    };
    let json = std::fs::read_to_string(common::fixture_path(vocab.file()))
        .expect("tokenizer fixture: run scripts/fetch-fixtures.sh");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tiny.gguf");
    ModelWriter::new(Preset::Tiny.config(arch, Some(vocab.rows())))
        .quant(Quant::Q4KM)
        .pooled_blocks(true)
        .seed(seed)
        .tokenizer_json(json)
        .write_gguf(&path)
        .expect("the tiny model is written");
    // Loading reads every tensor into memory: the file can go with the directory.
    let model = Model::load(&path, &LoadOptions::new()).expect("the tiny model loads");
    let tokenizer = Tokenizer::from_gguf_file(&path).expect("the file carries a tokenizer");
    let eos = tokenizer
        .single_token("<｜end▁of▁sentence｜>")
        .expect("the R1 tokenizers have <｜end▁of▁sentence｜>");
    let env = TokenEnv::new(tokenizer.hf(), model.config().vocab_size, eos)
        .expect("the token environment builds");
    let prompt = tokenizer.encode(PROMPT).expect("the prompt encodes");
    let nudge = Nudge::new(&tokenizer, &env);
    Tiny {
        vocab,
        model,
        env,
        prompt,
        nudge,
    }
}

/// One decoding session over a tiny model: the KV cache holds the prompt, prefilled
/// once, and each run starts from it.
struct Session<'a> {
    tiny: &'a Tiny,
    cache: KvCache,
    prompt_logits: Vec<f32>,
}

/// One generation.
struct Run {
    /// Every token committed to the constraint.
    tokens: Vec<u32>,
    finished: bool,
    /// Tokens fed to the model after the prompt (everything but the last chunk of a
    /// finished turn, which ends with EOS and is never fed).
    fed: usize,
    sampled: usize,
    forced: usize,
}

impl<'a> Session<'a> {
    fn new(tiny: &'a Tiny) -> Self {
        let mut cache = tiny
            .model
            .new_cache(CacheOptions::new().context(tiny.prompt.len() + CAP + 64))
            .expect("the cache fits");
        let prompt_logits = tiny
            .model
            .forward(&tiny.prompt, &mut cache, LogitsFor::Last)
            .expect("the prompt prefills")
            .into_vec();
        Session {
            tiny,
            cache,
            prompt_logits,
        }
    }

    fn forward(&mut self, chunk: &[u32]) -> Vec<f32> {
        self.tiny
            .model
            .forward(chunk, &mut self.cache, LogitsFor::Last)
            .expect("the model runs")
            .into_vec()
    }

    /// Decodes one turn under `constraint` with the sampler seeded by `seed`.
    fn run(&mut self, constraint: &mut Constraint, seed: u64) -> Run {
        let env = &self.tiny.env;
        let eos = env.eos();
        self.cache.truncate(self.tiny.prompt.len());
        // The default temperature, without top-p: a random model's nucleus is most of
        // the vocabulary, and finding it sorts every logit at each step.
        let mut sampler = SamplerConfig::default()
            .top_p(1.0)
            .seed(seed)
            .build()
            .expect("the sampler options are valid");
        // Per run: how often a step after the reasoning is nudged to finish or close.
        let mut nudge = Rng::new(seed ^ 0x0DD5);
        let p_finish = 0.02 + 0.1 * nudge.unit();
        let p_close = 0.02 + 0.2 * nudge.unit();

        let mut transcript: Vec<u32> = Vec::new();
        let mut chunk = constraint.fast_forward().expect("the start is valid");
        let (mut sampled, mut forced) = (0, chunk.len());
        let mut logits = self.prompt_logits.clone();
        let mut answer_from = None;
        loop {
            if !chunk.is_empty() {
                logits = self.forward(&chunk);
                transcript.append(&mut chunk);
            }
            if transcript.len() >= CAP {
                break;
            }
            if constraint.thinking_done() && answer_from.is_none() {
                answer_from = Some(transcript.len());
            }
            let answering = answer_from.map(|from| transcript.len() - from);
            let token = if answering.is_some_and(|n| n >= ANSWER_TOKENS)
                && constraint.is_allowed(eos).expect("a token in range")
            {
                eos
            } else {
                if let Some(n) = answering {
                    // Right after the reasoning: half the runs favour opening tool
                    // calls (where they are allowed and a single token).
                    let p = if n == 0 { 0.5 } else { p_finish };
                    if nudge.unit() < p {
                        Nudge::boost(&mut logits, &self.tiny.nudge.finishers);
                    }
                    if nudge.unit() < p_close + n as f32 / CLOSE_RAMP {
                        Nudge::boost(&mut logits, &self.tiny.nudge.closers);
                    }
                }
                constraint.mask(&mut logits).expect("the logits fit");
                sampler.sample(&logits).expect("a token is allowed")
            };
            let commit = constraint
                .commit(token)
                .expect("the sampled token is allowed");
            sampled += 1;
            forced += commit.forced.len();
            chunk.push(token);
            chunk.extend(commit.forced);
            if commit.finished {
                break;
            }
        }
        let fed = transcript.len();
        transcript.append(&mut chunk);
        assert_eq!(
            transcript,
            constraint.tokens(),
            "the tokens fed and the constraint's tokens differ"
        );
        assert_eq!(
            self.cache.len(),
            self.tiny.prompt.len() + fed,
            "the cache holds the prompt and every token fed"
        );
        Run {
            tokens: transcript,
            finished: constraint.is_finished(),
            fed,
            sampled,
            forced,
        }
    }
}

fn seed_scale() -> u64 {
    std::env::var("TAPER_PROPERTY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Runs `seeds` generations under the scenario and checks every turn; a capped run
/// fails the test.
fn check_scenario(tiny: &Tiny, s: &Scenario, seeds: u64) -> Tally {
    let vocab = tiny.vocab;
    let env = &tiny.env;
    let start = std::time::Instant::now();
    let mut session = Session::new(tiny);
    let mut tally = Tally::default();
    for seed in 0..seeds * seed_scale() {
        let mut c = s.grammar.constraint();
        let run = session.run(&mut c, seed);
        let text = || String::from_utf8_lossy(&env.decode(&run.tokens)).into_owned();
        tally.runs += 1;
        tally.tokens += run.tokens.len();
        tally.forced += run.forced;
        assert!(
            run.finished,
            "{vocab:?} / {}: seed {seed} hit the cap of {CAP} tokens ({} sampled, {} fed): {}",
            s.name,
            run.sampled,
            run.fed,
            text()
        );
        tally.finished += 1;
        match check_turn(env, s, &run.tokens) {
            Ok(true) => tally.calls += 1,
            Ok(false) => tally.answers += 1,
            Err(e) => panic!("{vocab:?} / {}: seed {seed}: {e}\nturn: {}", s.name, text()),
        }
    }
    println!(
        "{vocab:?} / {}: {tally:?} in {:.1} s",
        s.name,
        start.elapsed().as_secs_f64()
    );
    if !s.answer_allowed {
        assert_eq!(
            tally.calls, tally.runs,
            "{}: every turn calls tools",
            s.name
        );
    }
    if !s.calls_allowed {
        assert_eq!(tally.calls, 0, "{}: no turn calls tools", s.name);
    }
    tally
}

fn check(tiny: &Tiny, name: &'static str, seeds: u64) {
    let s = scenario_with_budget(&tiny.env, name, Some(THINKING_BUDGET));
    check_scenario(tiny, &s, seeds);
}

/// Each tool alone, its call required: every schema is exercised on every run.
fn check_each_tool(tiny: &Tiny, seeds: u64) {
    let env = &tiny.env;
    for tool in tools() {
        let schema = JsonSchema::new(tool.schema.clone()).expect("tool schema compiles");
        let grammar = TurnGrammar::builder(env)
            .tool(tool.name, schema)
            .require_tool_call(true)
            .thinking_budget(THINKING_BUDGET)
            .build()
            .expect("turn grammar builds");
        let s = Scenario {
            name: tool.name,
            grammar,
            tools: vec![tool],
            calls_allowed: true,
            answer_allowed: false,
            parallel: true,
            json_answer: false,
            budget: Some(THINKING_BUDGET),
        };
        check_scenario(tiny, &s, seeds);
    }
}

/// The same seed gives the same turn: the model, the sampler and the constraint are
/// deterministic, and a run leaves nothing behind that changes the next.
fn check_reproducible(tiny: &Tiny) {
    let s = scenario_with_budget(&tiny.env, "tool required", Some(THINKING_BUDGET));
    let mut session = Session::new(tiny);
    let first = session.run(&mut s.grammar.constraint(), 7).tokens;
    let other = session.run(&mut s.grammar.constraint(), 8).tokens;
    let again = session.run(&mut s.grammar.constraint(), 7).tokens;
    assert_eq!(first, again, "seed 7 twice");
    assert_ne!(first, other, "seeds 7 and 8 give different turns");
}

/// One check: its name (as a filter matches it) and what it runs.
struct Check {
    name: String,
    run: Box<dyn Fn(&Tiny) + Send>,
}

/// The checks of one vocabulary.
fn checks(vocab: Vocab) -> Vec<Check> {
    let prefix = match vocab {
        Vocab::Llama => "llama",
        Vocab::Qwen3 => "qwen3",
    };
    let scenarios: [(&str, &'static str, u64); 6] = [
        ("tools", "tools", 8),
        ("no_tools", "no tools", 4),
        ("tool_required", "tool required", 8),
        ("single_call", "single call", 6),
        ("json_answer", "json answer", 6),
        ("json_answer_no_tools", "json answer, no tools", 4),
    ];
    let mut list: Vec<Check> = scenarios
        .into_iter()
        .map(|(test, scenario, seeds)| Check {
            name: format!("{prefix}_{test}"),
            run: Box::new(move |tiny| check(tiny, scenario, seeds)),
        })
        .collect();
    list.push(Check {
        name: format!("{prefix}_each_tool"),
        run: Box::new(|tiny| check_each_tool(tiny, 2)),
    });
    list.push(Check {
        name: format!("{prefix}_reproducible"),
        run: Box::new(check_reproducible),
    });
    list
}

/// Runs the checks of one vocabulary that match the filters; returns the failed ones.
fn run_checks(vocab: Vocab, filters: &[String], skips: &[String]) -> Vec<String> {
    let selected: Vec<Check> = checks(vocab)
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .filter(|c| !skips.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        return Vec::new();
    }
    let tiny = write_and_load(vocab);
    let mut failed = Vec::new();
    for check in selected {
        let outcome = catch_unwind(AssertUnwindSafe(|| (check.run)(&tiny)));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!("test {} ... {verdict}", check.name);
        if outcome.is_err() {
            failed.push(check.name);
        }
    }
    failed
}

/// The test's own entry point (`harness = false`): candle's CPU kernels read their
/// thread count from the environment once, so it is set here, before any thread
/// starts. One thread per vocabulary runs its checks, each thread with one compute
/// thread: two cores are kept busy without the kernels' worker threads spinning for a
/// core. As with the standard harness, arguments that are not options select checks by
/// name and `--skip NAME` leaves checks out.
fn main() -> ExitCode {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: nothing else runs yet: this is the first statement of `main`, and no
        // thread has been started.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--skip" => skips.extend(args.next()),
            "--test-threads" => {
                args.next();
            }
            _ if arg.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let failed: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = [Vocab::Llama, Vocab::Qwen3]
            .into_iter()
            .map(|vocab| {
                let (filters, skips) = (&filters, &skips);
                scope.spawn(move || run_checks(vocab, filters, skips))
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| {
                t.join()
                    .unwrap_or_else(|_| vec!["a vocabulary's setup".into()])
            })
            .collect()
    });
    if failed.is_empty() {
        println!("test result: ok");
        ExitCode::SUCCESS
    } else {
        println!("test result: FAILED: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
