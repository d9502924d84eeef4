//! A conversation with an agent: its history, its KV cache, and the reason-act loop.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use schemars::JsonSchema as DeriveSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taper_grammar::{Answer as GrammarAnswer, Constraint, ToolCall, TurnGrammar, TurnOutcome};
use taper_model::{DecodeStream, Sampler};
use taper_tool::{CancellationToken, ToolError};
use tracing::Instrument;

use crate::agent::{Agent, Grammars};
use crate::decoder::SeqState;
use crate::error::{Error, Result};
use crate::format::{AssistantMessage, CALLS_BEGIN, Message, RenderedCall, THINK_END};
use crate::run::{Answer, CallRecord, Event, Partial, Step, Usage};
use crate::stream::{EventStream, Sink};

/// A conversation: follow-up runs see the earlier questions and answers, and only
/// the tokens the KV cache has not seen are prefilled.
///
/// Where the chat format drops old reasoning from the history, the cache is rolled
/// back to where the new rendering diverges from what it holds, not cleared.
///
/// # Example
///
/// (The hidden lines write a tiny random-weight Llama model with the real
/// tokenizer; with a real model file only the path changes.)
///
/// ```
/// use taper::{Agent, Decoder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf");
/// # let tokenizer = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache/r1_llama.tokenizer.json");
/// # let config = taper_model::Preset::Tiny.config(taper_model::Architecture::Llama, Some(128_256));
/// # taper_model::ModelWriter::new(config).tokenizer_json(std::fs::read_to_string(tokenizer)?).write_gguf(&path)?;
/// let decoder = Decoder::load(&path)?;
/// let agent = Agent::builder(&decoder)
///     .context(2048)
///     .thinking_budget(8)
///     .max_answer_tokens(8)
///     .build()?;
/// let mut session = agent.session()?;
/// let first = session.run("Name a prime above 100.").await?;
/// let second = session.run("And the next one?").await?;
/// // The second run prefilled only what the cache had not seen.
/// assert!(second.usage.prefilled_tokens < second.usage.prompt_tokens);
/// assert_eq!(session.history().len(), 4);
/// # let _ = first;
/// # Ok(())
/// # }
/// ```
pub struct Session {
    agent: Agent,
    seq: Arc<Mutex<SeqState>>,
    history: Vec<Message>,
    runs: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("messages", &self.history.len())
            .field("cached_tokens", &self.cached_tokens())
            .finish_non_exhaustive()
    }
}

/// What one model turn produced.
struct TurnOutput {
    thinking: String,
    content: String,
    outcome: TurnOutcome,
    usage: Usage,
    truncated: bool,
}

/// Where a run is: what a failing step hands to its error.
struct Progress {
    steps: Vec<Step>,
    usage: Usage,
}

impl Progress {
    fn partial(&self, text: String, step: &Usage) -> Box<Partial> {
        let mut usage = self.usage;
        usage.add(step);
        Box::new(Partial {
            steps: self.steps.clone(),
            text,
            usage,
        })
    }
}

impl Session {
    pub(crate) fn new(agent: Agent) -> Result<Session> {
        let state = agent
            .inner
            .decoder
            .new_sequence(agent.inner.options.context)?;
        Ok(Session {
            agent,
            seq: Arc::new(Mutex::new(state)),
            history: Vec::new(),
            runs: 0,
        })
    }

    /// Asks `task` as the next user turn and runs the loop to an answer.
    pub async fn run(&mut self, task: impl Into<String>) -> Result<Answer> {
        self.turn(task.into(), None, Sink::none(), CancellationToken::new())
            .await
    }

    /// Like [`run`](Self::run), stopped (with [`Error::Cancelled`]) when `cancel` is
    /// cancelled: within one token while decoding, at once while tools run.
    pub async fn run_cancellable(
        &mut self,
        task: impl Into<String>,
        cancel: CancellationToken,
    ) -> Result<Answer> {
        self.turn(task.into(), None, Sink::none(), cancel).await
    }

    /// Asks `task` with the final answer constrained to `T`'s JSON schema, and returns
    /// it deserialized.
    pub async fn run_typed<T>(&mut self, task: impl Into<String>) -> Result<T>
    where
        T: DeriveSchema + DeserializeOwned + 'static,
    {
        let grammars = self.agent.grammars_for::<T>()?;
        let answer = self
            .turn(
                task.into(),
                Some(grammars),
                Sink::none(),
                CancellationToken::new(),
            )
            .await?;
        let value = answer.json.clone().unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| Error::Deserialize {
            message: e.to_string(),
            partial: Box::new(Partial {
                steps: answer.steps,
                text: answer.text,
                usage: answer.usage,
            }),
        })
    }

    /// Asks `task` as a stream of [`Event`]s. Dropping the stream stops the run within
    /// one token and cancels running tools; the session keeps what finished.
    pub fn stream(&mut self, task: impl Into<String>) -> EventStream<'_> {
        let task = task.into();
        EventStream::new(move |sink, cancel| self.turn(task, None, sink, cancel))
    }

    /// The conversation so far (user turns, assistant turns as the format keeps them,
    /// tool outputs).
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Tokens the KV cache holds.
    pub fn cached_tokens(&self) -> usize {
        self.state().tokens.len()
    }

    /// The tokens the KV cache holds, in order.
    pub fn cached_transcript(&self) -> Vec<u32> {
        self.state().tokens.clone()
    }

    /// The prompt text the next run would start from, before its user turn.
    pub fn rendered_history(&self) -> String {
        let inner = &self.agent.inner;
        inner
            .decoder
            .format()
            .render(Some(&inner.system), &self.history, false)
    }

    /// Forgets the conversation (the cache is reused from its start on the next run).
    pub fn clear(&mut self) {
        self.history.clear();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SeqState> {
        self.seq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One user turn: the reason-act loop. On error the history is left as it was
    /// before the turn (the error carries what the turn produced).
    pub(crate) async fn turn(
        &mut self,
        task: String,
        typed: Option<Arc<Grammars>>,
        sink: Sink,
        cancel: CancellationToken,
    ) -> Result<Answer> {
        let run = self.runs;
        self.runs += 1;
        let span = tracing::info_span!("run", run, typed = typed.is_some());
        let grammars = typed.unwrap_or_else(|| self.agent.text_grammars());
        let mut history = self.history.clone();
        history.push(Message::User(task));
        let result = self
            .steps(&mut history, &grammars, run, &sink, &cancel)
            .instrument(span)
            .await;
        if result.is_ok() {
            self.history = history;
        }
        result
    }

    async fn steps(
        &mut self,
        history: &mut Vec<Message>,
        grammars: &Grammars,
        run: u64,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<Answer> {
        let options = self.agent.inner.options.clone();
        let seed_config = options.sampling.seed(options_seed(&options, run));
        let mut sampler = seed_config.build()?;
        let mut progress = Progress {
            steps: Vec::new(),
            usage: Usage::default(),
        };
        let mut repeats = Repeats::default();
        let mut index = 0;
        loop {
            let last = index + 1 >= options.max_steps;
            let grammar = match (&grammars.with_tools, last) {
                (Some(g), false) => g,
                _ => &grammars.answer_only,
            };
            let span = tracing::info_span!("step", index, tools_allowed = !last);
            let turn = self
                .model_turn(history, grammar, &mut sampler, &progress, sink, cancel)
                .instrument(span)
                .await?;
            match turn.outcome {
                TurnOutcome::ToolCalls(calls) => {
                    let mut usage = turn.usage;
                    let records = self
                        .call_tools(index, calls, &mut repeats, &mut usage, sink, cancel)
                        .await;
                    let step = Step {
                        index,
                        thinking: turn.thinking.clone(),
                        calls: records,
                        usage,
                    };
                    if cancel.is_cancelled() {
                        let partial = progress.partial(String::new(), &step.usage);
                        let mut partial = partial;
                        partial.steps.push(step);
                        return Err(Error::Cancelled { partial });
                    }
                    history.push(Message::Assistant(AssistantMessage {
                        thinking: Some(turn.thinking),
                        content: turn.content,
                        calls: step
                            .calls
                            .iter()
                            .map(|c| RenderedCall {
                                name: c.name.clone(),
                                arguments: c.arguments.to_string(),
                            })
                            .collect(),
                    }));
                    for call in &step.calls {
                        history.push(Message::Tool(call.model_text()));
                    }
                    progress.usage.add(&step.usage);
                    sink.send(Event::StepFinished(step.clone()));
                    progress.steps.push(step);
                    index += 1;
                }
                TurnOutcome::Answer(answer) => {
                    let (text, json) = match answer {
                        GrammarAnswer::Text(text) => (text, None),
                        GrammarAnswer::Json(value) => {
                            (turn.content.trim_start().to_owned(), Some(value))
                        }
                    };
                    history.push(Message::Assistant(AssistantMessage {
                        thinking: Some(turn.thinking.clone()),
                        content: turn.content,
                        calls: Vec::new(),
                    }));
                    progress.usage.add(&turn.usage);
                    progress.steps.push(Step {
                        index,
                        thinking: turn.thinking.clone(),
                        calls: Vec::new(),
                        usage: turn.usage,
                    });
                    return Ok(Answer {
                        text,
                        json,
                        thinking: turn.thinking,
                        steps: progress.steps,
                        usage: progress.usage,
                        truncated: turn.truncated,
                    });
                }
            }
        }
    }

    /// Renders the conversation, prefills what the cache has not seen, and decodes
    /// one assistant turn under `grammar`.
    async fn model_turn(
        &mut self,
        history: &[Message],
        grammar: &TurnGrammar,
        sampler: &mut Sampler,
        progress: &Progress,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<TurnOutput> {
        let inner = Arc::clone(&self.agent.inner);
        let decoder = &inner.decoder;
        let d = &decoder.inner;
        let text = d.format.render(Some(&inner.system), history, true);
        let prompt = d.tokenizer.encode(&text)?;
        let mut usage = Usage {
            prompt_tokens: prompt.len(),
            ..Usage::default()
        };
        let (reused, capacity) = {
            let mut state = self.state();
            let mut reused = state
                .tokens
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count();
            if reused == prompt.len() {
                // The logits after the last prompt token are needed: refeed it.
                reused -= 1;
            }
            state.tokens.truncate(reused);
            state.seq.truncate(reused);
            (reused, state.seq.capacity())
        };
        tracing::debug!(
            prompt = prompt.len(),
            reused,
            "prompt rendered; prefilling the rest"
        );

        let mut deltas = Deltas::new(&d.tokenizer, d.think_end, d.eos);
        let fail_constraint = |source, deltas: &Deltas<'_>, usage: &Usage| Error::Constraint {
            source,
            partial: progress.partial(deltas.text.clone(), usage),
        };
        let mut constraint: Constraint = grammar.constraint();
        let started = Instant::now();
        let forced = constraint
            .fast_forward()
            .map_err(|e| fail_constraint(e, &deltas, &usage))?;
        usage.grammar_time += started.elapsed();
        usage.forced_tokens += forced.len();
        let mut pending: Vec<u32> = prompt[reused..].to_vec();
        usage.prefilled_tokens = pending.len();
        for &token in &forced {
            deltas.push(token, sink);
        }
        pending.extend(forced);

        let started = Instant::now();
        let mut logits = Vec::new();
        let mut position = reused;
        for chunk in pending.chunks(d.prefill_chunk) {
            self.check_room(position, chunk.len(), capacity, progress, &deltas, &usage)?;
            logits = self
                .forward(chunk.to_vec(), cancel, progress, &deltas, &usage)
                .await?;
            position += chunk.len();
            usage.forward_passes += 1;
        }
        usage.prefill_time += started.elapsed();

        let budget = inner.options.max_answer_tokens;
        let mut truncated = false;
        // Tokens sampled after the reasoning (forced ones do not count).
        let mut written = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled {
                    partial: progress.partial(deltas.text.clone(), &usage),
                });
            }
            let started = Instant::now();
            let over_budget = budget.is_some_and(|b| written >= b);
            let end_now = over_budget
                && constraint
                    .is_allowed(d.eos)
                    .map_err(|e| fail_constraint(e, &deltas, &usage))?;
            let token = if end_now {
                truncated = true;
                usage.forced_tokens += 1;
                d.eos
            } else {
                constraint
                    .mask(&mut logits)
                    .map_err(|e| fail_constraint(e, &deltas, &usage))?;
                if over_budget {
                    // Past the budget inside a tool call or a JSON answer: steer to
                    // the end through whatever closers the grammar allows now.
                    truncated = true;
                    for &t in &d.closers {
                        if let Some(l) = logits.get_mut(t as usize)
                            && l.is_finite()
                        {
                            *l += CLOSER_BONUS;
                        }
                    }
                }
                usage.grammar_time += started.elapsed();
                let token = sampler.sample(&logits)?;
                usage.generated_tokens += 1;
                if !deltas.thinking {
                    written += 1;
                }
                token
            };
            let started = Instant::now();
            let commit = constraint
                .commit(token)
                .map_err(|e| fail_constraint(e, &deltas, &usage))?;
            usage.grammar_time += started.elapsed();
            usage.forced_tokens += commit.forced.len();
            deltas.push(token, sink);
            for &f in &commit.forced {
                deltas.push(f, sink);
            }
            if commit.finished {
                break;
            }
            let mut chunk = Vec::with_capacity(1 + commit.forced.len());
            chunk.push(token);
            chunk.extend(commit.forced);
            self.check_room(position, chunk.len(), capacity, progress, &deltas, &usage)?;
            let started = Instant::now();
            position += chunk.len();
            logits = self
                .forward(chunk, cancel, progress, &deltas, &usage)
                .await?;
            usage.forward_passes += 1;
            usage.decode_time += started.elapsed();
        }

        let turn = grammar
            .parse(constraint.tokens())
            .map_err(|source| Error::Parse {
                source,
                partial: progress.partial(deltas.text.clone(), &usage),
            })?;
        let written = String::from_utf8_lossy(&d.env.decode(constraint.tokens())).into_owned();
        let after = written
            .rfind(THINK_END)
            .map_or(written.as_str(), |i| &written[i + THINK_END.len()..]);
        let content = match &turn.outcome {
            TurnOutcome::ToolCalls(_) => after.split(CALLS_BEGIN).next().unwrap_or(""),
            TurnOutcome::Answer(_) => after.strip_suffix(taper_model::EOS).unwrap_or(after),
        };
        Ok(TurnOutput {
            thinking: turn.thinking,
            content: content.to_owned(),
            outcome: turn.outcome,
            usage,
            truncated,
        })
    }

    fn check_room(
        &self,
        position: usize,
        tokens: usize,
        capacity: usize,
        progress: &Progress,
        deltas: &Deltas<'_>,
        usage: &Usage,
    ) -> Result<()> {
        if position + tokens > capacity {
            return Err(Error::ContextFull {
                limit: capacity,
                needed: position + tokens,
                partial: progress.partial(deltas.text.clone(), usage),
            });
        }
        Ok(())
    }

    /// One forward pass on the model thread, abandoned at once on cancellation.
    async fn forward(
        &self,
        tokens: Vec<u32>,
        cancel: &CancellationToken,
        progress: &Progress,
        deltas: &Deltas<'_>,
        usage: &Usage,
    ) -> Result<Vec<f32>> {
        let decoder = &self.agent.inner.decoder;
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Error::Cancelled {
                partial: progress.partial(deltas.text.clone(), usage),
            }),
            logits = decoder.forward(&self.seq, tokens) => logits,
        }
    }

    /// Runs a step's calls concurrently, each with the tool timeout; a call identical
    /// to the ones before it past the repeat limit is not run.
    async fn call_tools(
        &self,
        step: usize,
        calls: Vec<ToolCall>,
        repeats: &mut Repeats,
        usage: &mut Usage,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Vec<CallRecord> {
        let inner = &self.agent.inner;
        let limit = inner.options.max_repeated_calls;
        let started = Instant::now();
        let futures = calls.into_iter().map(|call| {
            sink.send(Event::ToolCallStarted {
                step,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let seen = repeats.see(&call);
            async move {
                let started = Instant::now();
                let result = if seen > limit {
                    tracing::warn!(tool = %call.name, seen, "repeated call not run");
                    Err(ToolError::failed(format!(
                        "this exact call ({} with the same arguments) was already made {} times in a row and was not run again; use the results you have, change the arguments, or answer",
                        call.name,
                        seen - 1
                    )))
                } else {
                    inner
                        .tools
                        .call(
                            &call.name,
                            call.arguments.clone(),
                            inner.options.tool_timeout,
                            cancel.child_token(),
                        )
                        .await
                };
                let record = CallRecord {
                    name: call.name,
                    arguments: call.arguments,
                    result,
                    elapsed: started.elapsed(),
                };
                sink.send(Event::ToolResult {
                    step,
                    call: record.clone(),
                });
                record
            }
        });
        let records = futures_util::future::join_all(futures.collect::<Vec<_>>()).await;
        usage.tool_time += started.elapsed();
        records
    }
}

/// The sampling seed of a session's `run`-th run: the configured seed, then the next
/// ones, so reruns in one session differ and a fresh session repeats its first run.
fn options_seed(options: &crate::agent::Options, run: u64) -> u64 {
    options.sampling.seed_value().wrapping_add(run)
}

/// What a closing token gains past the step budget: more than any logit difference a
/// model produces, so the sampler picks a closer whenever the grammar allows one.
const CLOSER_BONUS: f32 = 1.0e4;

/// Counts identical calls in a row (same tool, same arguments) across steps.
#[derive(Default)]
struct Repeats {
    last: Option<(String, String)>,
    count: usize,
}

impl Repeats {
    /// Records `call` and says how many identical calls in a row it makes.
    fn see(&mut self, call: &ToolCall) -> usize {
        let key = (call.name.clone(), call.arguments.to_string());
        if self.last.as_ref() == Some(&key) {
            self.count += 1;
        } else {
            self.last = Some(key);
            self.count = 1;
        }
        self.count
    }
}

/// Turns committed tokens into thinking and answer deltas, whole characters only.
struct Deltas<'a> {
    stream: DecodeStream<'a>,
    think_end: u32,
    eos: u32,
    thinking: bool,
    /// Text after `</think>`.
    post: String,
    /// Bytes of `post` already sent as answer text.
    sent: usize,
    calls: bool,
    /// Everything written so far, for errors.
    text: String,
}

impl<'a> Deltas<'a> {
    fn new(tokenizer: &'a taper_model::Tokenizer, think_end: u32, eos: u32) -> Self {
        Deltas {
            stream: tokenizer.decode_stream(),
            think_end,
            eos,
            thinking: true,
            post: String::new(),
            sent: 0,
            calls: false,
            text: String::new(),
        }
    }

    fn push(&mut self, token: u32, sink: &Sink) {
        if token == self.eos {
            return;
        }
        if self.thinking && token == self.think_end {
            self.thinking = false;
            self.text.push_str(&self.stream.finish());
            self.text.push_str(THINK_END);
            return;
        }
        let piece = self.stream.step(token).unwrap_or_default();
        if piece.is_empty() {
            return;
        }
        self.text.push_str(&piece);
        if self.thinking {
            sink.send(Event::ThinkingDelta(piece));
            return;
        }
        self.post.push_str(&piece);
        if self.calls {
            return;
        }
        let trimmed = self.post.trim_start();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with(CALLS_BEGIN) {
            self.calls = true;
            return;
        }
        if self.sent == 0 && CALLS_BEGIN.starts_with(trimmed) {
            return;
        }
        let from = self.sent.max(self.post.len() - trimmed.len());
        if from < self.post.len() {
            sink.send(Event::AnswerDelta(self.post[from..].to_owned()));
            self.sent = self.post.len();
        }
    }
}
