//! A loaded model with its tokenizer, chat format and token environment, and the
//! worker thread that runs every forward pass of every session on it.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use taper_grammar::TokenEnv;
use taper_model::{CacheOptions, KvDtype, LoadOptions, Model, Tokenizer};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, ModelBackend, Sequence};
use crate::error::{Error, Result};
use crate::format::ChatFormat;

/// A loaded model, ready to serve any number of agents and sessions.
///
/// Cloning is cheap (an `Arc`): the weights are loaded once. Every forward pass runs
/// on one worker thread per loaded model, taken from a bounded queue in arrival order;
/// each session has at most one pass queued and prefills in chunks, so sessions
/// interleave fairly.
#[derive(Clone)]
pub struct Decoder {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) env: TokenEnv,
    pub(crate) format: ChatFormat,
    pub(crate) eos: u32,
    pub(crate) think_end: u32,
    /// Tokens that close JSON (only `"`, `}` and `]`) or a tool-call block: where a
    /// step over its budget is steered.
    pub(crate) closers: Vec<u32>,
    pub(crate) prefill_chunk: usize,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &self.inner.format)
            .field("vocab_size", &self.inner.env.vocab_size())
            .finish_non_exhaustive()
    }
}

/// Options for loading a [`Decoder`]; made by [`Decoder::builder`].
pub struct DecoderBuilder {
    path: PathBuf,
    tokenizer: Option<PathBuf>,
    kv_dtype: KvDtype,
    queue: usize,
    prefill_chunk: usize,
    weight_cache: Option<PathBuf>,
    progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
}

impl std::fmt::Debug for DecoderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderBuilder")
            .field("path", &self.path)
            .field("tokenizer", &self.tokenizer)
            .field("queue", &self.queue)
            .field("prefill_chunk", &self.prefill_chunk)
            .field("weight_cache", &self.weight_cache)
            .finish_non_exhaustive()
    }
}

/// One forward pass, queued for the worker.
struct Job {
    seq: Arc<Mutex<SeqState>>,
    tokens: Vec<u32>,
    reply: oneshot::Sender<Result<Vec<f32>>>,
}

/// A sequence and the tokens its cache holds, kept in step by the worker.
pub(crate) struct SeqState {
    pub(crate) seq: Box<dyn Sequence>,
    pub(crate) tokens: Vec<u32>,
}

impl Decoder {
    /// Loads a model with default options: a GGUF file (its tokenizer from the file's
    /// metadata) or a Hugging Face directory (`config.json`, safetensors and
    /// `tokenizer.json`). Blocking; in async code call it from `spawn_blocking`.
    pub fn load(path: impl AsRef<Path>) -> Result<Decoder> {
        Decoder::builder(path).load()
    }

    /// Options for loading the model at `path`.
    pub fn builder(path: impl AsRef<Path>) -> DecoderBuilder {
        DecoderBuilder {
            path: path.as_ref().to_owned(),
            tokenizer: None,
            kv_dtype: KvDtype::default(),
            queue: 64,
            prefill_chunk: 512,
            weight_cache: None,
            progress: None,
        }
    }

    /// A decoder over any [`Backend`] (a scripted model in tests, another runtime),
    /// with the tokenizer and chat format it speaks.
    pub fn from_backend(
        backend: impl Backend,
        tokenizer: Tokenizer,
        format: ChatFormat,
    ) -> Result<Decoder> {
        Decoder::assemble(Arc::new(backend), tokenizer, format, 64, 512)
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        tokenizer: Tokenizer,
        format: ChatFormat,
        queue: usize,
        prefill_chunk: usize,
    ) -> Result<Decoder> {
        let rows = backend.vocab_size();
        tokenizer.check_model_vocab(rows)?;
        let missing: Vec<String> = [
            taper_model::BOS,
            taper_model::EOS,
            "<｜User｜>",
            "<｜Assistant｜>",
            "<think>",
            "</think>",
        ]
        .into_iter()
        .filter(|m| tokenizer.single_token(m).is_none())
        .map(|m| format!("`{m}`"))
        .collect();
        if !missing.is_empty() {
            return Err(Error::Tokenizer(format!(
                "{} not single tokens in its vocabulary",
                missing.join(", ")
            )));
        }
        let single = |text: &str| {
            tokenizer
                .single_token(text)
                .expect("checked above: every marker is a single token")
        };
        let eos = single(taper_model::EOS);
        let think_end = single("</think>");
        let closers = closers(&tokenizer)?;
        let start = Instant::now();
        let env = TokenEnv::new(tokenizer.hf(), rows, eos)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tracing::info!(
            elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
            vocab = rows,
            "token environment built"
        );
        let (jobs, rx) = mpsc::channel(queue.max(1));
        std::thread::Builder::new()
            .name("taper-model".into())
            .spawn(move || worker(rx))
            .map_err(|e| Error::Config(format!("cannot start the model thread: {e}")))?;
        Ok(Decoder {
            inner: Arc::new(Inner {
                backend,
                tokenizer,
                env,
                format,
                eos,
                think_end,
                closers,
                prefill_chunk: prefill_chunk.max(1),
                jobs,
            }),
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// The chat format.
    pub fn format(&self) -> ChatFormat {
        self.inner.format
    }

    /// The longest context the model supports, if its backend says.
    pub fn max_context(&self) -> Option<usize> {
        self.inner.backend.max_context()
    }

    /// Logits per position (the model's embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.env.vocab_size()
    }

    pub(crate) fn new_sequence(&self, context: Option<usize>) -> Result<SeqState> {
        Ok(SeqState {
            seq: self.inner.backend.new_sequence(context)?,
            tokens: Vec::new(),
        })
    }

    /// Queues one forward pass of `tokens` on `seq` and waits for its logits.
    pub(crate) async fn forward(
        &self,
        seq: &Arc<Mutex<SeqState>>,
        tokens: Vec<u32>,
    ) -> Result<Vec<f32>> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            seq: Arc::clone(seq),
            tokens,
            reply,
        };
        self.inner
            .jobs
            .send(job)
            .await
            .map_err(|_| Error::WorkerStopped)?;
        rx.await.map_err(|_| Error::WorkerStopped)?
    }
}

impl DecoderBuilder {
    /// Reads the tokenizer from this `tokenizer.json` instead of the model's own.
    pub fn tokenizer(mut self, path: impl AsRef<Path>) -> Self {
        self.tokenizer = Some(path.as_ref().to_owned());
        self
    }

    /// The element type of every session's KV cache (default f16).
    pub fn kv_dtype(mut self, dtype: KvDtype) -> Self {
        self.kv_dtype = dtype;
        self
    }

    /// How many forward passes may wait for the worker (default 64); sessions beyond
    /// it wait to queue.
    pub fn queue(mut self, jobs: usize) -> Self {
        self.queue = jobs;
        self
    }

    /// The longest chunk one prefill pass takes (default 512 tokens): a long prompt
    /// is prefilled in several passes, so other sessions keep decoding in between.
    pub fn prefill_chunk(mut self, tokens: usize) -> Self {
        self.prefill_chunk = tokens;
        self
    }

    /// Keeps the weights repacked at load in a file in `dir`, so that later loads
    /// of the same model map them instead of repacking (see
    /// [`LoadOptions::weight_cache`]).
    pub fn weight_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.weight_cache = Some(dir.into());
        self
    }

    /// Calls `f(done, total)` in bytes as the weights load.
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Loads the model and its tokenizer, and builds the token environment. A
    /// tokenizer that does not fit the model (more ids than embedding rows, or missing
    /// R1 markers) is an error.
    pub fn load(self) -> Result<Decoder> {
        let mut opts = LoadOptions::new();
        if let Some(dir) = self.weight_cache {
            opts = opts.weight_cache(dir);
        }
        if let Some(progress) = self.progress {
            opts = opts.progress(progress);
        }
        let model = Model::load(&self.path, &opts)?;
        let tokenizer = match &self.tokenizer {
            Some(path) => Tokenizer::from_file(path)?,
            None if self.path.is_dir() => Tokenizer::from_file(self.path.join("tokenizer.json"))?,
            None => Tokenizer::from_gguf_file(&self.path)?,
        };
        let format = ChatFormat::for_architecture(model.config().architecture);
        let backend = ModelBackend {
            model: Arc::new(model),
            kv: CacheOptions::new().dtype(self.kv_dtype),
        };
        Decoder::assemble(
            Arc::new(backend),
            tokenizer,
            format,
            self.queue,
            self.prefill_chunk,
        )
    }
}

/// Tokens made only of `"`, `}` and `]`, the first token of the tool-call block's end
/// marker (the whole marker where it is one token), and, where the markers are text,
/// the tokens where the last call's `>` meets the block's end (`><` in the Llama
/// vocabulary).
fn closers(tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let junction = "><｜tool▁calls▁end｜>".as_bytes();
    let mut closers: Vec<u32> = (0..tokenizer.vocab_size() as u32)
        .filter(|&id| {
            !tokenizer.is_added(id)
                && tokenizer.token_bytes(id).is_ok_and(|b| {
                    (!b.is_empty() && b.iter().all(|c| matches!(c, b'"' | b'}' | b']')))
                        || (b.len() >= 2 && junction.starts_with(b))
                })
        })
        .collect();
    if let Some(&first) = tokenizer.marker("<｜tool▁calls▁end｜>")?.ids().first() {
        closers.push(first);
    }
    Ok(closers)
}

/// The model thread: runs queued passes in arrival order until every [`Decoder`]
/// clone is gone.
fn worker(mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.blocking_recv() {
        if job.reply.is_closed() {
            // The session stopped waiting (cancelled or dropped): skip the work.
            continue;
        }
        let span = tracing::debug_span!("forward", tokens = job.tokens.len());
        let _enter = span.enter();
        let mut state = job.seq.lock().unwrap_or_else(PoisonError::into_inner);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| state.seq.forward(&job.tokens)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(%message, "the model panicked in a forward pass");
                Err(Error::ModelPanicked(message))
            });
        if result.is_ok() {
            state.tokens.extend_from_slice(&job.tokens);
        } else {
            let len = state.tokens.len();
            state.seq.truncate(len);
        }
        drop(state);
        // The session may have stopped waiting meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}
