//! End to end on tiny random-weight models of both architectures with the real
//! tokenizers: every run finishes, every call's arguments validate against its
//! schema, every step's prompt is exactly the chat format's rendering, and the
//! prefill counts are exact. One loaded model serves concurrent sessions that each
//! get what they get alone.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use common::fixture;
use schemars::JsonSchema;
use serde::Deserialize;
use taper::{
    Agent, AgentBuilder, Answer, Backend, ChatFormat, Decoder, Error, Message, SamplerConfig,
    Sequence, Tokenizer, Tool, ToolChoice, ToolContext, ToolError, async_trait,
};
use taper_model::{
    Architecture, CacheOptions, KvCache, LoadOptions, LogitsFor, Model, ModelWriter, Preset, Quant,
};

/// A catalogue lookup with a rich argument type.
struct Lookup;

/// What to look up. Every field is bounded, so even a random-weight model writes
/// short arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LookupArgs {
    /// The item.
    item: Item,
    /// How many results, 1 to 5.
    #[schemars(range(min = 1, max = 5))]
    limit: u8,
    /// Up to three flags.
    #[schemars(length(max = 3))]
    flags: Option<Vec<bool>>,
    /// A short note.
    #[schemars(length(max = 12))]
    note: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Item {
    /// A book by its number.
    Book { number: u16 },
    /// Any record.
    Record,
}

#[async_trait]
impl Tool for Lookup {
    type Args = LookupArgs;
    type Output = String;

    fn name(&self) -> &str {
        "lookup"
    }

    fn description(&self) -> &str {
        "Looks an item up in the catalogue."
    }

    async fn call(&self, args: LookupArgs, _ctx: ToolContext) -> Result<String, ToolError> {
        let flags = args.flags.map_or(0, |f| f.len());
        Ok(match args.item {
            Item::Book { number } => format!(
                "book {number}: {} results, {flags} flags, note {:?}",
                args.limit, args.note
            ),
            Item::Record => format!("no records ({flags} flags)"),
        })
    }
}

struct Tiny {
    path: PathBuf,
    tokenizer: &'static str,
    format: ChatFormat,
}

/// Writes each tiny model once per test binary (weights random, tokenizer real and
/// embedded, Q4_K_M like the files users download).
fn tiny(arch: Architecture) -> &'static Tiny {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LLAMA: OnceLock<Tiny> = OnceLock::new();
    static QWEN3: OnceLock<Tiny> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let (cell, name, rows, format) = match arch {
        Architecture::Llama => (&LLAMA, "r1_llama", 128_256, ChatFormat::R1DistillLlama),
        Architecture::Qwen3 => (&QWEN3, "r1_qwen3", 151_936, ChatFormat::R1Qwen3),
    };
    cell.get_or_init(|| {
        let tokenizer = fixture(&format!("{name}.tokenizer.json"));
        let path = dir.join(format!("{name}.gguf"));
        let mut config = Preset::Tiny.config(arch, Some(rows));
        config.max_context = 8192;
        ModelWriter::new(config)
            .quant(Quant::Q4KM)
            .seed(3)
            .tokenizer_json(std::fs::read_to_string(&tokenizer).unwrap())
            .write_gguf(&path)
            .unwrap();
        Tiny {
            path,
            tokenizer: if name == "r1_llama" {
                "r1_llama.tokenizer.json"
            } else {
                "r1_qwen3.tokenizer.json"
            },
            format,
        }
    })
}

/// What a recorded sequence did to its cache.
#[derive(Debug, Clone)]
enum Op {
    Truncate(usize),
    Forward(Vec<u32>),
}

/// The real model as a backend that records every cache operation.
struct Recording {
    model: Arc<Model>,
    log: Arc<Mutex<Vec<Op>>>,
}

struct RecordingSeq {
    model: Arc<Model>,
    cache: KvCache,
    log: Arc<Mutex<Vec<Op>>>,
}

impl Backend for Recording {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn new_sequence(&self, context: Option<usize>) -> taper::Result<Box<dyn Sequence>> {
        let cache = self
            .model
            .new_cache(CacheOptions::new().context(context.unwrap_or(4096)))?;
        Ok(Box::new(RecordingSeq {
            model: Arc::clone(&self.model),
            cache,
            log: Arc::clone(&self.log),
        }))
    }
}

impl Sequence for RecordingSeq {
    fn len(&self) -> usize {
        self.cache.len()
    }

    fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    fn truncate(&mut self, len: usize) {
        self.log.lock().unwrap().push(Op::Truncate(len));
        self.cache.truncate(len);
    }

    fn forward(&mut self, tokens: &[u32]) -> taper::Result<Vec<f32>> {
        self.log.lock().unwrap().push(Op::Forward(tokens.to_vec()));
        Ok(self
            .model
            .forward(tokens, &mut self.cache, LogitsFor::Last)?
            .into_vec())
    }
}

fn builder(decoder: &Decoder, seed: u64) -> AgentBuilder {
    Agent::builder(decoder)
        .tool(Lookup)
        .system_prompt("You are a careful assistant.")
        .tool_choice(ToolChoice::Required)
        .max_steps(3)
        .thinking_budget(8)
        .max_answer_tokens(8)
        .sampling(SamplerConfig::default().seed(seed))
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks one finished run against the recorded cache operations.
fn check_run(
    agent: &Agent,
    tokenizer: &Tokenizer,
    history: &[Message],
    answer: &Answer,
    log: &[Op],
) {
    // Every call's arguments are valid for its tool's schema.
    for step in &answer.steps {
        for call in &step.calls {
            let schema = agent.tools().get(&call.name).unwrap().schema_value();
            let validator = jsonschema::validator_for(schema).unwrap();
            assert!(
                validator.is_valid(&call.arguments),
                "{} {} does not fit {schema}",
                call.name,
                call.arguments
            );
        }
    }
    // Replay the cache: each step truncates once, then prefills its prompt.
    let format = agent.decoder().format();
    let mut cache: Vec<u32> = Vec::new();
    let mut step = 0;
    let mut h = 1;
    let mut ops = log.iter().peekable();
    while let Some(op) = ops.next() {
        let Op::Truncate(kept) = op else {
            panic!("a step starts with a truncation, not {op:?}");
        };
        let expected = tokenizer
            .encode(&format.render(Some(agent.system_prompt()), &history[..h], true))
            .unwrap();
        let reusable = common_prefix(&cache, &expected).min(expected.len() - 1);
        assert_eq!(*kept, reusable, "step {step}: the cache keeps all it can");
        assert_eq!(
            answer.steps[step].usage.prefilled_tokens,
            expected.len() - reusable,
            "step {step}: exactly the unseen tokens are prefilled"
        );
        assert_eq!(answer.steps[step].usage.prompt_tokens, expected.len());
        cache.truncate(*kept);
        while let Some(Op::Forward(tokens)) = ops.peek() {
            cache.extend_from_slice(tokens);
            ops.next();
        }
        assert_eq!(
            &cache[..expected.len()],
            &expected[..],
            "step {step}: the transcript is the format's rendering"
        );
        h += 1 + answer.steps[step].calls.len();
        step += 1;
    }
    assert_eq!(step, answer.steps.len());
    assert_eq!(h, history.len());
}

async fn runs_finish_valid_and_exact(arch: Architecture) {
    let tiny = tiny(arch);
    let model = Arc::new(Model::load(&tiny.path, &LoadOptions::new()).unwrap());
    let tokenizer = Tokenizer::from_file(fixture(tiny.tokenizer)).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let backend = Recording {
        model,
        log: Arc::clone(&log),
    };
    let decoder = Decoder::from_backend(backend, tokenizer.clone(), tiny.format).unwrap();
    for seed in 0..2 {
        log.lock().unwrap().clear();
        let agent = builder(&decoder, seed).build().unwrap();
        let mut session = agent.session().unwrap();
        let answer = session.run("What is 6 times 7?").await.unwrap();
        assert_eq!(answer.steps.len(), 3, "{arch:?} seed {seed}");
        assert!(answer.steps[..2].iter().all(|s| !s.calls.is_empty()));
        assert!(!answer.text.trim().is_empty());
        let log = log.lock().unwrap().clone();
        check_run(&agent, &tokenizer, session.history(), &answer, &log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_runs_finish_valid_and_exact() {
    runs_finish_valid_and_exact(Architecture::Llama).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen3_runs_finish_valid_and_exact() {
    runs_finish_valid_and_exact(Architecture::Qwen3).await;
}

/// What a run must reproduce: everything but timings.
#[derive(Debug, PartialEq)]
struct Essence {
    text: String,
    thinking: String,
    calls: Vec<(String, String, String)>,
    generated: usize,
    prefilled: usize,
}

fn essence(answer: &Answer) -> Essence {
    Essence {
        text: answer.text.clone(),
        thinking: answer.thinking.clone(),
        calls: answer
            .steps
            .iter()
            .flat_map(|s| &s.calls)
            .map(|c| (c.name.clone(), c.arguments.to_string(), c.model_text()))
            .collect(),
        generated: answer.usage.generated_tokens,
        prefilled: answer.usage.prefilled_tokens,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_get_what_they_get_alone() {
    let tiny = tiny(Architecture::Qwen3);
    let decoder = Decoder::builder(&tiny.path)
        .prefill_chunk(64)
        .load()
        .unwrap();
    assert_eq!(decoder.format(), ChatFormat::R1Qwen3);
    assert_eq!(decoder.max_context(), Some(8192));
    let tasks = ["Add 2 and 2.", "Look up book 7.", "What is 1/3 + 1/6?"];
    let agents: Vec<Agent> = (0..3)
        .map(|seed| {
            builder(&decoder, 10 + seed)
                .max_steps(2)
                .context(4096)
                .build()
                .unwrap()
        })
        .collect();
    let mut alone = Vec::new();
    for (agent, task) in agents.iter().zip(tasks) {
        alone.push(essence(&agent.run(task).await.unwrap()));
    }
    let together = futures_util::future::join_all(
        agents
            .iter()
            .zip(tasks)
            .map(|(agent, task)| agent.run(task)),
    )
    .await;
    for (i, result) in together.into_iter().enumerate() {
        assert_eq!(essence(&result.unwrap()), alone[i], "session {i}");
    }
}

#[test]
fn a_tokenizer_that_does_not_fit_is_refused() {
    let llama = tiny(Architecture::Llama);
    let error = Decoder::builder(&llama.path)
        .tokenizer(fixture("r1_qwen3.tokenizer.json"))
        .load()
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Model(taper_model::Error::VocabMismatch { .. })
        ),
        "{error}"
    );
    let qwen3 = tiny(Architecture::Qwen3);
    let error = Decoder::builder(&qwen3.path)
        .tokenizer(fixture("qwen3.tokenizer.json"))
        .load()
        .unwrap_err();
    assert!(matches!(error, Error::Tokenizer(_)), "{error}");
    for marker in ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"] {
        assert!(error.to_string().contains(marker), "{error}");
    }
}

#[test]
fn a_corrupt_model_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("broken.gguf");
    let bytes = std::fs::read(&tiny(Architecture::Qwen3).path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(Decoder::load(path), Err(Error::Model(_))));
}
