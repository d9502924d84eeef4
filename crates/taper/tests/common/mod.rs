//! A scripted model double: a [`Backend`] whose next token is the next token of a
//! script, chosen by the conversation it sees.
//!
//! The double is a pure function of the context: it finds the last user turn, looks
//! up the script registered for that text, counts the tool-output blocks since that
//! turn (the step), and favours the first token of what the step's script has left
//! after the text written since the last `<think>\n`. The grammar may overrule it;
//! then the double favours EOS (which the grammar may overrule too).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use taper::{Backend, ChatFormat, Decoder, Sequence, Tokenizer};

pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/cache")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-fixtures.sh",
        path.display()
    );
    path
}

/// One conversation's script: the text of each step, after `<think>\n`.
#[derive(Clone, Default)]
pub struct Script {
    pub steps: Vec<String>,
    pub delay: Duration,
    pub forwards: Arc<AtomicUsize>,
}

type Registry = Mutex<HashMap<String, Script>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Registers the steps the double writes when the last user turn is `task`; returns
/// the counter of forward passes it answers for that task.
pub fn script(task: &str, steps: &[&str]) -> Arc<AtomicUsize> {
    script_with_delay(task, steps, Duration::ZERO)
}

/// Like [`script`], each forward pass taking `delay`.
pub fn script_with_delay(task: &str, steps: &[&str], delay: Duration) -> Arc<AtomicUsize> {
    let forwards = Arc::new(AtomicUsize::new(0));
    registry().lock().unwrap().insert(
        task.to_owned(),
        Script {
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            delay,
            forwards: Arc::clone(&forwards),
        },
    );
    forwards
}

pub struct Scripted {
    tokenizer: Arc<Tokenizer>,
    vocab: usize,
    eos: u32,
    context: usize,
}

struct ScriptedSeq {
    tokenizer: Arc<Tokenizer>,
    vocab: usize,
    eos: u32,
    tokens: Vec<u32>,
    capacity: usize,
}

impl Backend for Scripted {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn new_sequence(&self, context: Option<usize>) -> taper::Result<Box<dyn Sequence>> {
        Ok(Box::new(ScriptedSeq {
            tokenizer: Arc::clone(&self.tokenizer),
            vocab: self.vocab,
            eos: self.eos,
            tokens: Vec::new(),
            capacity: context.unwrap_or(self.context),
        }))
    }
}

const USER: &str = "<｜User｜>";
const ASSISTANT: &str = "<｜Assistant｜>";
const OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
const THINK_OPEN: &str = "<think>\n";

impl ScriptedSeq {
    fn next_token(&self) -> u32 {
        let text = self.tokenizer.decode(&self.tokens).unwrap();
        let Some(user_at) = text.rfind(USER) else {
            return self.eos;
        };
        let user = &text[user_at + USER.len()..];
        let task_end = [ASSISTANT, OUTPUTS_BEGIN, THINK_OPEN]
            .iter()
            .filter_map(|m| user.find(m))
            .min()
            .unwrap_or(user.len());
        let task = &user[..task_end];
        let script = registry().lock().unwrap().get(task).cloned();
        let Some(script) = script else {
            return self.eos;
        };
        script.forwards.fetch_add(1, Ordering::SeqCst);
        if !script.delay.is_zero() {
            std::thread::sleep(script.delay);
        }
        let step = user.matches(OUTPUTS_BEGIN).count();
        let Some(step_text) = script.steps.get(step.min(script.steps.len() - 1)) else {
            return self.eos;
        };
        let Some(open) = text.rfind(THINK_OPEN) else {
            return self.eos;
        };
        let written = &text[open + THINK_OPEN.len()..];
        let Some(rest) = step_text.strip_prefix(written) else {
            return self.eos;
        };
        if rest.is_empty() {
            return self.eos;
        }
        // The first token of the rest. Tokenizing a suffix can differ from the
        // tokens of the whole; the grammar decides what is allowed anyway.
        self.tokenizer
            .encode(rest)
            .unwrap()
            .first()
            .copied()
            .unwrap_or(self.eos)
    }
}

impl Sequence for ScriptedSeq {
    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    fn forward(&mut self, tokens: &[u32]) -> taper::Result<Vec<f32>> {
        self.tokens.extend_from_slice(tokens);
        let mut logits = vec![0.0f32; self.vocab];
        logits[self.next_token() as usize] = 100.0;
        Ok(logits)
    }
}

/// A decoder over the scripted double for a format, shared by the tests of a binary
/// (building the token environment takes about a second).
pub fn scripted(format: ChatFormat) -> Decoder {
    static QWEN3: OnceLock<Decoder> = OnceLock::new();
    static LLAMA: OnceLock<Decoder> = OnceLock::new();
    let (cell, file, vocab) = match format {
        ChatFormat::R1Qwen3 => (&QWEN3, "r1_qwen3.tokenizer.json", 151_936),
        ChatFormat::R1DistillLlama => (&LLAMA, "r1_llama.tokenizer.json", 128_256),
    };
    cell.get_or_init(|| {
        let tokenizer = Tokenizer::from_file(fixture(file)).unwrap();
        let eos = tokenizer.eos_id().unwrap();
        let backend = Scripted {
            tokenizer: Arc::new(tokenizer.clone()),
            vocab,
            eos,
            context: 4096,
        };
        Decoder::from_backend(backend, tokenizer, format).unwrap()
    })
    .clone()
}

pub const FORMATS: [ChatFormat; 2] = [ChatFormat::R1Qwen3, ChatFormat::R1DistillLlama];

/// A tool-call block as the model writes it.
pub fn calls(calls: &[(&str, &str)]) -> String {
    let mut out = String::from("<｜tool▁calls▁begin｜>");
    for (i, (name, args)) in calls.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{args}\n```<｜tool▁call▁end｜>"
        ));
    }
    out.push_str("<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
    out
}
