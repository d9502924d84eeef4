//! The agent: a model, tools and options, built once and shared; each run is a
//! [`Session`] turn.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use schemars::JsonSchema as DeriveSchema;
use serde::de::DeserializeOwned;
use taper_grammar::{AnswerFormat, JsonSchema, TurnGrammar};
use taper_model::SamplerConfig;
use taper_tool::{CancellationToken, DynTool, RegisterError, ToolBox};

use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::format::ToolInfo;
use crate::run::Answer;
use crate::session::Session;
use crate::stream::EventStream;

/// Whether the model may, must or must not call tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides at every step (the default).
    #[default]
    Auto,
    /// Every step but the last must call a tool; the last step answers.
    Required,
    /// No tools: the first step answers.
    None,
}

/// A reasoning agent: a loaded model, a set of tools, and how to run them.
///
/// Cloning is cheap; many agents (and many runs of one agent) share one
/// [`Decoder`]. Each run is a fresh [`Session`]; use [`Agent::session`] for a
/// conversation with follow-up questions.
///
/// # Example
///
/// A run with the calculator. The hidden lines write a tiny random-weight Qwen3 model
/// (real tokenizer, random weights), so the answer is noise; with a real model file
/// only the path changes.
///
/// ```
/// use taper::{Agent, Decoder};
/// use taper_calculator::Calculator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf");
/// # let tokenizer = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache/r1_qwen3.tokenizer.json");
/// # let config = taper_model::Preset::Tiny.config(taper_model::Architecture::Qwen3, Some(151_936));
/// # taper_model::ModelWriter::new(config).tokenizer_json(std::fs::read_to_string(tokenizer)?).write_gguf(&path)?;
/// let decoder = Decoder::load(&path)?;
/// let agent = Agent::builder(&decoder)
///     .tool(Calculator::new())
///     .system_prompt("Answer with a number.")
///     .max_steps(4)
///     .thinking_budget(16)
///     .max_answer_tokens(16)
///     .build()?;
/// let answer = agent.run("What is 17 * 23 + 4?").await?;
/// assert!(answer.steps.len() <= 4);
/// println!("{} (after {} steps)", answer.text, answer.steps.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<AgentInner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tools: Vec<&str> = self.inner.tools.tools().iter().map(|t| t.name()).collect();
        f.debug_struct("Agent")
            .field("tools", &tools)
            .field("max_steps", &self.inner.options.max_steps)
            .finish_non_exhaustive()
    }
}

/// The options of a run, as built.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) max_steps: usize,
    pub(crate) thinking_budget: Option<usize>,
    pub(crate) sampling: SamplerConfig,
    pub(crate) tool_timeout: Duration,
    pub(crate) parallel_calls: bool,
    pub(crate) context: Option<usize>,
    pub(crate) tool_choice: ToolChoice,
    pub(crate) max_repeated_calls: usize,
    pub(crate) max_answer_tokens: Option<usize>,
}

pub(crate) struct AgentInner {
    pub(crate) decoder: Decoder,
    pub(crate) tools: ToolBox,
    pub(crate) system: String,
    pub(crate) options: Options,
    text: Arc<Grammars>,
    typed: Mutex<HashMap<TypeId, Arc<Grammars>>>,
}

/// The two grammars of a run: with tools (absent when there are none or
/// `max_steps` is 1) and answer only (the last step).
pub(crate) struct Grammars {
    pub(crate) with_tools: Option<TurnGrammar>,
    pub(crate) answer_only: TurnGrammar,
}

/// Options for an [`Agent`]; made by [`Agent::builder`].
pub struct AgentBuilder {
    decoder: Decoder,
    tools: ToolBox,
    register_error: Option<RegisterError>,
    system_prompt: Option<String>,
    options: Options,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("tools", &self.tools)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts building an agent on a loaded model. Defaults: no tools, no system
    /// prompt, 16 steps, no thinking budget, the model card's sampling (temperature
    /// 0.6, top-p 0.95, seed 0), 30 s per tool call, parallel calls allowed, the
    /// model's context (capped by memory), tools at the model's choice, at most 2
    /// identical calls in a row, no answer limit.
    pub fn builder(decoder: &Decoder) -> AgentBuilder {
        AgentBuilder {
            decoder: decoder.clone(),
            tools: ToolBox::new(),
            register_error: None,
            system_prompt: None,
            options: Options {
                max_steps: 16,
                thinking_budget: None,
                sampling: SamplerConfig::default(),
                tool_timeout: Duration::from_secs(30),
                parallel_calls: true,
                context: None,
                tool_choice: ToolChoice::Auto,
                max_repeated_calls: 2,
                max_answer_tokens: None,
            },
        }
    }

    /// Runs `task` in a fresh session: reasons, calls tools until it answers (or
    /// `max_steps` forces the answer), and returns the answer with every step.
    pub async fn run(&self, task: impl Into<String>) -> Result<Answer> {
        self.session()?.run(task).await
    }

    /// Like [`run`](Self::run), stopped (with [`Error::Cancelled`]) when `cancel` is
    /// cancelled: within one token while decoding, at once while tools run (they are
    /// cancelled too).
    pub async fn run_cancellable(
        &self,
        task: impl Into<String>,
        cancel: CancellationToken,
    ) -> Result<Answer> {
        self.session()?.run_cancellable(task, cancel).await
    }

    /// Runs `task` with the final answer constrained to `T`'s JSON schema, and returns
    /// it deserialized.
    pub async fn run_typed<T>(&self, task: impl Into<String>) -> Result<T>
    where
        T: DeriveSchema + DeserializeOwned + 'static,
    {
        self.session()?.run_typed(task).await
    }

    /// Runs `task` in a fresh session as a stream of [`Event`](crate::Event)s.
    /// Dropping the stream stops the run within one token and cancels running tools.
    pub fn stream(&self, task: impl Into<String>) -> EventStream<'static> {
        let agent = self.clone();
        let task = task.into();
        EventStream::new(move |sink, cancel| async move {
            let mut session = agent.session()?;
            session.turn(task, None, sink, cancel).await
        })
    }

    /// A new conversation: follow-up runs see the earlier ones and reuse the KV cache.
    pub fn session(&self) -> Result<Session> {
        Session::new(self.clone())
    }

    /// The loaded model the agent runs on.
    pub fn decoder(&self) -> &Decoder {
        &self.inner.decoder
    }

    /// The registered tools.
    pub fn tools(&self) -> &ToolBox {
        &self.inner.tools
    }

    /// The system prompt the model reads (the tools and call format included).
    pub fn system_prompt(&self) -> &str {
        &self.inner.system
    }

    /// The grammars for a free-text answer, or for `T`'s JSON (compiled once per type).
    pub(crate) fn grammars_for<T: DeriveSchema + 'static>(&self) -> Result<Arc<Grammars>> {
        let id = TypeId::of::<T>();
        if let Some(g) = self
            .inner
            .typed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(Arc::clone(g));
        }
        let schema = JsonSchema::new(schemars::schema_for!(T).to_value())?;
        let grammars = Arc::new(build_grammars(
            &self.inner.decoder,
            &self.inner.tools,
            &self.inner.options,
            AnswerFormat::Json(schema),
        )?);
        self.inner
            .typed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&grammars));
        Ok(grammars)
    }

    pub(crate) fn text_grammars(&self) -> Arc<Grammars> {
        Arc::clone(&self.inner.text)
    }
}

fn build_grammars(
    decoder: &Decoder,
    tools: &ToolBox,
    options: &Options,
    answer: AnswerFormat,
) -> Result<Grammars> {
    let env = &decoder.inner.env;
    let base = |b: taper_grammar::TurnGrammarBuilder| {
        let b = b.answer(answer.clone());
        match options.thinking_budget {
            Some(n) => b.thinking_budget(n),
            None => b,
        }
    };
    let with_tools =
        if tools.is_empty() || options.max_steps < 2 || options.tool_choice == ToolChoice::None {
            None
        } else {
            let mut b = TurnGrammar::builder(env);
            for tool in tools.tools() {
                b = b.tool(tool.name(), tool.schema().clone());
            }
            let b = b
                .tools_allowed(true)
                .require_tool_call(options.tool_choice == ToolChoice::Required)
                .parallel_calls(options.parallel_calls);
            Some(base(b).build()?)
        };
    let answer_only = base(TurnGrammar::builder(env).tools_allowed(false)).build()?;
    Ok(Grammars {
        with_tools,
        answer_only,
    })
}

impl AgentBuilder {
    /// Registers a tool (a [`Tool`](taper_tool::Tool) or a
    /// [`DynamicTool`](taper_tool::DynamicTool)). A bad name, a duplicate or a schema
    /// the grammar cannot enforce is reported by [`build`](Self::build).
    pub fn tool(mut self, tool: impl DynTool + 'static) -> Self {
        if let Err(e) = self.tools.register(tool)
            && self.register_error.is_none()
        {
            self.register_error = Some(e);
        }
        self
    }

    /// Uses these tools (replacing any registered so far).
    pub fn tools(mut self, tools: ToolBox) -> Self {
        self.tools = tools;
        self
    }

    /// Text that opens the system prompt, before the tool descriptions.
    pub fn system_prompt(mut self, text: impl Into<String>) -> Self {
        self.system_prompt = Some(text.into());
        self
    }

    /// Model turns per run (at least 1): the last may only answer, so a run always
    /// ends with an answer.
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.options.max_steps = steps;
        self
    }

    /// Reasoning tokens per step, after which `</think>` is forced.
    pub fn thinking_budget(mut self, tokens: usize) -> Self {
        self.options.thinking_budget = Some(tokens);
        self
    }

    /// Sampling options (default: the model card's temperature 0.6, top-p 0.95).
    pub fn sampling(mut self, sampling: SamplerConfig) -> Self {
        self.options.sampling = sampling;
        self
    }

    /// The time limit of one tool call (default 30 s); past it the model reads a
    /// timeout error.
    pub fn tool_timeout(mut self, limit: Duration) -> Self {
        self.options.tool_timeout = limit;
        self
    }

    /// Whether one step may call several tools, run concurrently (default true).
    pub fn parallel_calls(mut self, allowed: bool) -> Self {
        self.options.parallel_calls = allowed;
        self
    }

    /// The KV cache of each session, in tokens (default: the model's context, capped
    /// by memory). A run that outgrows it ends with [`Error::ContextFull`].
    pub fn context(mut self, tokens: usize) -> Self {
        self.options.context = Some(tokens);
        self
    }

    /// Whether the model may, must or must not call tools.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.options.tool_choice = choice;
        self
    }

    /// How many times in a row the same call (same tool, same arguments) runs
    /// (default 2); the next identical call is not run and the model reads why.
    pub fn max_repeated_calls(mut self, calls: usize) -> Self {
        self.options.max_repeated_calls = calls;
        self
    }

    /// Tokens a step may sample after its reasoning (forced tokens do not count)
    /// before it is brought to an end:
    /// EOS is forced as soon as the grammar allows it, and until then (inside a tool
    /// call or a JSON answer) the sampler is steered to tokens that close the JSON
    /// (`"`, `}`, `]`) or the call block. The answer is then marked truncated.
    pub fn max_answer_tokens(mut self, tokens: usize) -> Self {
        self.options.max_answer_tokens = Some(tokens);
        self
    }

    /// Checks the options, renders the system prompt and compiles the grammars.
    pub fn build(self) -> Result<Agent> {
        if let Some(e) = self.register_error {
            return Err(e.into());
        }
        let o = &self.options;
        if o.max_steps == 0 {
            return Err(Error::Config("max_steps must be at least 1".into()));
        }
        if o.max_repeated_calls == 0 {
            return Err(Error::Config(
                "max_repeated_calls must be at least 1".into(),
            ));
        }
        if o.context == Some(0) {
            return Err(Error::Config(
                "the context must hold at least one token".into(),
            ));
        }
        o.sampling.build()?;
        let infos: Vec<ToolInfo<'_>> = self.tools.tools().iter().map(ToolInfo::from).collect();
        let system = self
            .decoder
            .format()
            .system_prompt(self.system_prompt.as_deref(), &infos);
        let text = build_grammars(&self.decoder, &self.tools, o, AnswerFormat::Text)?;
        Ok(Agent {
            inner: Arc::new(AgentInner {
                decoder: self.decoder,
                tools: self.tools,
                system,
                options: self.options,
                text: Arc::new(text),
                typed: Mutex::new(HashMap::new()),
            }),
        })
    }
}
