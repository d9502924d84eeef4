//! Shared test helpers: the real tokenizer fixtures and their token environments.

#![allow(dead_code)]

pub mod property;
pub mod types;

use std::path::PathBuf;
use std::sync::OnceLock;

use taper_grammar::TokenEnv;
use tokenizers::Tokenizer;

/// One of the two R1 distill vocabularies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// DeepSeek-R1-Distill-Llama-8B: tool markers only as text.
    Llama,
    /// DeepSeek-R1-0528-Qwen3-8B: every marker a single token.
    Qwen3,
}

impl Vocab {
    pub fn file(self) -> &'static str {
        match self {
            Vocab::Llama => "r1_llama.tokenizer.json",
            Vocab::Qwen3 => "r1_qwen3.tokenizer.json",
        }
    }

    /// The model's embedding rows.
    pub fn rows(self) -> usize {
        match self {
            Vocab::Llama => 128_256,
            Vocab::Qwen3 => 151_936,
        }
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/cache")
        .join(name)
}

pub fn tokenizer(vocab: Vocab) -> Tokenizer {
    let path = fixture_path(vocab.file());
    assert!(
        path.exists(),
        "missing tokenizer fixture {}: run scripts/fetch-fixtures.sh first",
        path.display()
    );
    match Tokenizer::from_file(&path) {
        Ok(t) => t,
        Err(e) => panic!("cannot load {}: {e}", path.display()),
    }
}

pub fn eos_of(tokenizer: &Tokenizer) -> u32 {
    tokenizer
        .token_to_id("<｜end▁of▁sentence｜>")
        .expect("the R1 tokenizers have <｜end▁of▁sentence｜>")
}

pub fn build_env(vocab: Vocab) -> TokenEnv {
    let tok = tokenizer(vocab);
    TokenEnv::new(&tok, vocab.rows(), eos_of(&tok)).expect("token env builds")
}

/// The token environment of a vocabulary, built once per test binary.
pub fn env(vocab: Vocab) -> TokenEnv {
    static LLAMA: OnceLock<TokenEnv> = OnceLock::new();
    static QWEN3: OnceLock<TokenEnv> = OnceLock::new();
    let cell = match vocab {
        Vocab::Llama => &LLAMA,
        Vocab::Qwen3 => &QWEN3,
    };
    cell.get_or_init(|| build_env(vocab)).clone()
}

/// A small deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Where the next logits come from: random numbers here, a tiny random-weight model
/// in the decoder's tests. Only this changes between the two.
pub trait LogitsSource {
    /// Writes the logits of the next token after `transcript` (one per vocabulary entry).
    fn next_logits(&mut self, transcript: &[u32], logits: &mut [f32]);
}

/// Seeded random logits that now and then strongly favour ending: EOS, `</think>` and
/// the special token that opens tool calls most, then tokens that close JSON (`}`,
/// `]`, `"`), so runs terminate (and sometimes call tools where calls are optional).
pub struct RandomLogits {
    rng: Rng,
    finishers: Vec<u32>,
    closers: Vec<u32>,
    p_finish: f32,
    p_close: f32,
}

impl RandomLogits {
    /// `p_end` is the chance per step that ending tokens get a large bonus.
    pub fn new(env: &TokenEnv, seed: u64, p_end: f32) -> Self {
        Self::with_rates(env, seed, p_end, p_end)
    }

    /// Separate chances for finishing (EOS, `</think>`, opening calls) and for closing
    /// JSON: a small `p_finish` gives long reasoning and answers.
    pub fn with_rates(env: &TokenEnv, seed: u64, p_finish: f32, p_close: f32) -> Self {
        let mut finishers = vec![env.eos()];
        let mut closers = Vec::new();
        for t in 0..env.vocab_size() as u32 {
            let bytes = env.decode(&[t]);
            if bytes == b"</think>"
                || (env.is_special(t) && bytes == "<｜tool▁calls▁begin｜>".as_bytes())
            {
                finishers.push(t);
            } else if !env.is_special(t) && bytes.iter().any(|b| b"}]\"".contains(b)) {
                closers.push(t);
            }
        }
        RandomLogits {
            rng: Rng::new(seed ^ 0x5EED),
            finishers,
            closers,
            p_finish,
            p_close,
        }
    }
}

impl LogitsSource for RandomLogits {
    fn next_logits(&mut self, _transcript: &[u32], logits: &mut [f32]) {
        for l in logits.iter_mut() {
            *l = self.rng.unit() * 8.0 - 4.0;
        }
        let finish = self.rng.unit() < self.p_finish;
        let close = self.rng.unit() < self.p_close;
        for (tokens, bonus, on) in [
            (&self.closers, 40.0, close || finish),
            (&self.finishers, 60.0, finish),
        ] {
            if on {
                for &t in tokens {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l += bonus;
                    }
                }
            }
        }
    }
}

/// Samples from softmax(logits); masked entries are `-inf`.
pub fn sample(logits: &[f32], rng: &mut Rng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(max.is_finite(), "every token is masked");
    let total: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let mut target = f64::from(rng.unit()) * total;
    let mut last = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l == f32::NEG_INFINITY {
            continue;
        }
        last = i;
        target -= f64::from((l - max).exp());
        if target <= 0.0 {
            return i as u32;
        }
    }
    last as u32
}

/// One generation under a constraint.
#[derive(Debug, Clone)]
pub struct Run {
    /// Everything committed, sampled and forced.
    pub tokens: Vec<u32>,
    pub finished: bool,
    pub sampled: usize,
    pub forced: usize,
}

/// Time spent in the constraint per sampled token.
#[derive(Debug, Default)]
pub struct Timings {
    /// `Constraint::mask` (applies the allowed set to the logits), wall clock.
    pub mask: Vec<std::time::Duration>,
    /// `Constraint::commit` (feeds the token, commits forced tokens, computes the next
    /// allowed set), wall clock.
    pub commit: Vec<std::time::Duration>,
    /// `mask` + `commit` in this thread's CPU time: what the work costs, without the
    /// time the thread waited for a core on a busy machine.
    pub cpu: Vec<std::time::Duration>,
}

/// This thread's CPU time.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the
    // platform defines; clock_gettime writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Generates under `constraint` until it is finished or `cap` tokens are committed.
/// Time spent in the constraint is pushed to `timings` when given.
pub fn generate(
    env: &TokenEnv,
    constraint: &mut taper_grammar::Constraint,
    source: &mut dyn LogitsSource,
    rng: &mut Rng,
    cap: usize,
    mut timings: Option<&mut Timings>,
) -> Result<Run, taper_grammar::ConstraintError> {
    let mut logits = vec![0.0f32; env.vocab_size()];
    let mut tokens = constraint.fast_forward()?;
    let mut forced = tokens.len();
    let mut sampled = 0;
    while !constraint.is_finished() && tokens.len() < cap {
        source.next_logits(&tokens, &mut logits);
        let cpu0 = thread_cpu_time();
        let start = std::time::Instant::now();
        constraint.mask(&mut logits)?;
        let masked = start.elapsed();
        let cpu1 = thread_cpu_time();
        let token = sample(&logits, rng);
        let cpu2 = thread_cpu_time();
        let start = std::time::Instant::now();
        let commit = constraint.commit(token)?;
        let committed = start.elapsed();
        let cpu3 = thread_cpu_time();
        if let Some(t) = timings.as_deref_mut() {
            t.mask.push(masked);
            t.commit.push(committed);
            t.cpu.push((cpu1 - cpu0) + (cpu3 - cpu2));
        }
        sampled += 1;
        tokens.push(token);
        forced += commit.forced.len();
        tokens.extend(commit.forced);
    }
    Ok(Run {
        finished: constraint.is_finished(),
        tokens,
        sampled,
        forced,
    })
}

/// The tokenizer of a vocabulary, loaded once per test binary.
pub fn shared_tokenizer(vocab: Vocab) -> &'static Tokenizer {
    static LLAMA: OnceLock<Tokenizer> = OnceLock::new();
    static QWEN3: OnceLock<Tokenizer> = OnceLock::new();
    let cell = match vocab {
        Vocab::Llama => &LLAMA,
        Vocab::Qwen3 => &QWEN3,
    };
    cell.get_or_init(|| tokenizer(vocab))
}

/// Encodes text with the tokenizer, added tokens (markers, EOS) included.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    tokenizer
        .encode_fast(text, false)
        .expect("the tokenizer encodes text")
        .get_ids()
        .to_vec()
}

/// Feeds a transcript (written as text; markers the tokenizer has as tokens become
/// those tokens) into the constraint token by token. Tokens the grammar forces must
/// be what the transcript says next (or run past its end). Returns every committed
/// token, or where it failed.
pub fn feed_text(
    tokenizer: &Tokenizer,
    env: &TokenEnv,
    c: &mut taper_grammar::Constraint,
    text: &str,
) -> Result<Vec<u32>, String> {
    let mut rest: Vec<u8> = text.as_bytes().to_vec();
    let mut forced = c.fast_forward().map_err(|e| e.to_string())?;
    loop {
        if !forced.is_empty() {
            let bytes = env.decode(&forced);
            if bytes.starts_with(&rest) {
                return Ok(c.tokens().to_vec());
            }
            if !rest.starts_with(&bytes) {
                return Err(format!(
                    "forced {:?} but the transcript goes on with {:?}",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(&rest)
                ));
            }
            rest.drain(..bytes.len());
            forced.clear();
        }
        if rest.is_empty() {
            return Ok(c.tokens().to_vec());
        }
        let token = match std::str::from_utf8(&rest) {
            Ok(s) => encode(tokenizer, s)[0],
            Err(_) => env.tokenize(&rest)[0],
        };
        let bytes = env.decode(&[token]);
        let commit = c.commit(token).map_err(|e| {
            format!(
                "{e} at {:?} (token {token} = {:?})",
                String::from_utf8_lossy(&rest),
                String::from_utf8_lossy(&bytes)
            )
        })?;
        rest.drain(..bytes.len().min(rest.len()));
        forced = commit.forced;
    }
}
