//! Compiled grammars: a JSON value for a schema, and the R1 assistant turn.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use llguidance::Matcher;
use llguidance::api::TopLevelGrammar;

use crate::constraint::{Constraint, TurnState};
use crate::env::{Template, TokenEnv};
use crate::error::{GrammarError, ParseError};
use crate::markers::{ARGS_CLOSE, ARGS_OPEN, CALL_JOIN, CALL_TYPE, Marker, Markers};
use crate::parse::{self, Turn};
use crate::schema::JsonSchema;

/// A compiled grammar, shared by every constraint made from it.
struct Compiled {
    env: TokenEnv,
    /// The fresh parser; each constraint starts from a clone (clones share the lexer's
    /// caches, so later constraints are faster).
    template: Template,
}

impl Compiled {
    /// Compiles `lark`, or takes it from the environment's cache.
    fn new(env: &TokenEnv, lark: String) -> Result<Self, GrammarError> {
        if let Some(template) = env.cached_grammar(&lark) {
            tracing::debug!("grammar taken from the cache");
            return Ok(Compiled {
                env: env.clone(),
                template,
            });
        }
        let start = Instant::now();
        let parser = env
            .factory()
            .create_parser(TopLevelGrammar::from_lark(lark.clone()))
            .map_err(|e| GrammarError::Compile(e.to_string()))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError::Compile(e));
        }
        for warning in matcher.grammar_warnings() {
            tracing::warn!(%warning, "grammar warning");
        }
        tracing::debug!(
            elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
            "grammar compiled"
        );
        let template = Arc::new(Mutex::new(matcher));
        env.cache_grammar(lark, template.clone());
        Ok(Compiled {
            env: env.clone(),
            template,
        })
    }

    fn matcher(&self) -> Matcher {
        self.template
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A grammar for one JSON value of a schema, followed by EOS.
///
/// # Example
///
/// ```
/// use serde_json::json;
/// use taper_grammar::{JsonGrammar, JsonSchema, TokenEnv};
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache");
/// # let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/r1_qwen3.tokenizer.json"))
/// #     .expect("tokenizer fixture: run scripts/fetch-fixtures.sh");
/// # let eos = tokenizer.token_to_id("<｜end▁of▁sentence｜>").expect("R1 has an EOS");
/// # let env = TokenEnv::new(&tokenizer, 151_936, eos)?;
/// let schema = JsonSchema::new(json!({
///     "type": "object",
///     "properties": {"n": {"type": "integer"}},
///     "required": ["n"]
/// }))?;
/// let grammar = JsonGrammar::new(&env, &schema)?;
/// let mut constraint = grammar.constraint();
/// // `{"n": ` is forced: the decoder prefills it without sampling.
/// let forced = constraint.fast_forward()?;
/// assert_eq!(env.decode(&forced), b"{\"n\":");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JsonGrammar {
    compiled: Arc<Compiled>,
}

impl std::fmt::Debug for JsonGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonGrammar").finish_non_exhaustive()
    }
}

impl JsonGrammar {
    /// Compiles the grammar of one JSON value valid for `schema`, then EOS.
    pub fn new(env: &TokenEnv, schema: &JsonSchema) -> Result<Self, GrammarError> {
        let mut lark = String::new();
        let _ = writeln!(lark, "start: value");
        let _ = writeln!(lark, "value: %json {}", schema.engine_value());
        Ok(JsonGrammar {
            compiled: Arc::new(Compiled::new(env, lark)?),
        })
    }

    /// A fresh constraint at the start of the value.
    pub fn constraint(&self) -> Constraint {
        Constraint::new(self.compiled.env.clone(), self.compiled.matcher(), None)
    }
}

/// What the final answer of a turn is.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerFormat {
    /// Free text (at least one non-blank character; no tool-call markers).
    Text,
    /// One JSON value valid for the schema.
    Json(JsonSchema),
}

/// The grammar of one R1 assistant turn, for one tokenizer.
///
/// The turn starts inside the reasoning (the prompt ends with `<｜Assistant｜><think>\n`):
///
/// 1. free reasoning text, then `</think>`; with a thinking budget, `</think>` is
///    forced once the reasoning has that many tokens (at the next character boundary);
/// 2. up to three spaces or newlines;
/// 3. exactly one of
///    - tool calls: `<｜tool▁calls▁begin｜>`, one or more (with
///      [`parallel_calls`](TurnGrammarBuilder::parallel_calls)) calls
///      `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`
///      joined by `\n`, then `<｜tool▁calls▁end｜>`; NAME is a registered tool and ARGS
///      valid for its schema;
///    - the final answer: free text (not blank), or JSON for a schema;
/// 4. EOS (`<｜end▁of▁sentence｜>`). A tool-call block ends with EOS too, as the chat
///    templates write it (`<｜tool▁calls▁end｜><｜end▁of▁sentence｜>`): the turn is
///    finished when EOS is committed, and after the calls EOS is forced, so the
///    transcript holds exactly the tokens the template renders for the history.
///
/// Markers the tokenizer has as single tokens are matched by id; the others as text
/// (the Llama distill's tokenizer has the tool markers only as text).
///
/// No marker can appear in free text (the reasoning and a text answer): added tokens
/// are never free text, and the constraint keeps out the text `<｜`, which opens every
/// DeepSeek marker (`<｜tool▁calls▁begin｜>`, `<｜end▁of▁sentence｜>`, `<｜User｜>`, ...).
/// A text answer cannot start with `<｜`, so on a tokenizer with text markers an answer
/// and a tool-call block part at their first characters.
///
/// # Example
///
/// ```
/// use serde_json::json;
/// use taper_grammar::{Answer, JsonSchema, TokenEnv, TurnGrammar, TurnOutcome};
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache");
/// # let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/r1_qwen3.tokenizer.json"))
/// #     .expect("tokenizer fixture: run scripts/fetch-fixtures.sh");
/// # let eos = tokenizer.token_to_id("<｜end▁of▁sentence｜>").expect("R1 has an EOS");
/// # let env = TokenEnv::new(&tokenizer, 151_936, eos)?;
/// let grammar = TurnGrammar::builder(&env)
///     .tool("add", JsonSchema::new(json!({
///         "type": "object",
///         "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
///         "required": ["a", "b"]
///     }))?)
///     .thinking_budget(512)
///     .build()?;
///
/// // A stand-in for the model: it likes `</think>` and EOS, nothing else.
/// let think_end = tokenizer.token_to_id("</think>").expect("R1 has </think>");
/// let forward = |_transcript: &[u32]| {
///     let mut logits = vec![0.0f32; env.vocab_size()];
///     logits[think_end as usize] = 1.0;
///     logits[env.eos() as usize] = 1.0;
///     logits
/// };
/// let sample = |logits: &[f32]| {
///     let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
///     logits.iter().position(|&l| l == best).expect("a token is allowed") as u32
/// };
///
/// let mut constraint = grammar.constraint();
/// let mut transcript = constraint.fast_forward()?;
/// loop {
///     let mut logits = forward(&transcript);
///     constraint.mask(&mut logits)?;
///     let token = sample(&logits);
///     let commit = constraint.commit(token)?;
///     transcript.push(token);
///     transcript.extend(&commit.forced); // prefill these in one chunk
///     if commit.finished {
///         break;
///     }
/// }
/// let turn = grammar.parse(constraint.tokens())?;
/// assert_eq!(turn.thinking, "");
/// // The stand-in wrote the lowest-id token allowed as the answer, then EOS.
/// assert_eq!(turn.outcome, TurnOutcome::Answer(Answer::Text("!".into())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TurnGrammar {
    compiled: Arc<Compiled>,
    spec: Arc<TurnSpec>,
}

impl std::fmt::Debug for TurnGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnGrammar")
            .field("tools", &self.spec.tools)
            .field("mode", &self.spec.mode)
            .field("parallel_calls", &self.spec.parallel)
            .field("thinking_budget", &self.spec.thinking_budget)
            .finish_non_exhaustive()
    }
}

/// What the turn may end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    AnswerOnly,
    CallsOnly,
    Either,
}

/// The parts of a turn grammar the parser and the constraints need.
#[derive(Debug)]
pub(crate) struct TurnSpec {
    pub(crate) markers: Markers,
    pub(crate) eos: u32,
    pub(crate) tools: Vec<String>,
    pub(crate) mode: Mode,
    pub(crate) parallel: bool,
    pub(crate) json_answer: bool,
    pub(crate) thinking_budget: Option<usize>,
}

impl TurnGrammar {
    /// Starts building a turn grammar for this tokenizer. Defaults: no tools, tools
    /// allowed, calls not required, parallel calls allowed, free-text answer, no
    /// thinking budget.
    pub fn builder(env: &TokenEnv) -> TurnGrammarBuilder {
        TurnGrammarBuilder {
            env: env.clone(),
            tools: Vec::new(),
            tools_allowed: true,
            require_tool_call: false,
            parallel: true,
            answer: AnswerFormat::Text,
            thinking_budget: None,
        }
    }

    /// A fresh constraint at the start of the turn (inside the reasoning).
    pub fn constraint(&self) -> Constraint {
        let env = &self.compiled.env;
        let spec = &self.spec;
        let answer = spec.mode != Mode::CallsOnly;
        let turn = TurnState::new(
            env,
            &spec.markers,
            spec.thinking_budget,
            answer && !spec.json_answer,
            answer && spec.json_answer,
        );
        Constraint::new(env.clone(), self.compiled.matcher(), Some(turn))
    }

    /// Parses the tokens of a finished turn (everything generated after the prompt,
    /// EOS included): the reasoning, and the calls or the answer.
    pub fn parse(&self, tokens: &[u32]) -> Result<Turn, ParseError> {
        parse::parse_turn(&self.compiled.env, &self.spec, tokens)
    }

    /// The registered tool names, in registration order.
    pub fn tools(&self) -> &[String] {
        &self.spec.tools
    }
}

/// Builds a [`TurnGrammar`]; see [`TurnGrammar::builder`].
#[derive(Debug, Clone)]
pub struct TurnGrammarBuilder {
    env: TokenEnv,
    tools: Vec<(String, JsonSchema)>,
    tools_allowed: bool,
    require_tool_call: bool,
    parallel: bool,
    answer: AnswerFormat,
    thinking_budget: Option<usize>,
}

impl TurnGrammarBuilder {
    /// Registers a tool: its name (1 to 64 of `A-Z a-z 0-9 _ -`) and the schema of its
    /// arguments.
    pub fn tool(mut self, name: impl Into<String>, arguments: JsonSchema) -> Self {
        self.tools.push((name.into(), arguments));
        self
    }

    /// Whether the turn may call tools (default true). With false only the final answer
    /// is allowed, e.g. at the agent's last step.
    pub fn tools_allowed(mut self, allowed: bool) -> Self {
        self.tools_allowed = allowed;
        self
    }

    /// Whether the turn must call tools (default false): no final answer is allowed.
    pub fn require_tool_call(mut self, required: bool) -> Self {
        self.require_tool_call = required;
        self
    }

    /// Whether one block may hold several calls (default true).
    pub fn parallel_calls(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// The final answer's format (default free text).
    pub fn answer(mut self, format: AnswerFormat) -> Self {
        self.answer = format;
        self
    }

    /// Forces `</think>` once the reasoning has `tokens` tokens (at the next character
    /// boundary). Without a budget the reasoning is unbounded.
    pub fn thinking_budget(mut self, tokens: usize) -> Self {
        self.thinking_budget = Some(tokens);
        self
    }

    /// Checks the options and compiles the grammar.
    pub fn build(self) -> Result<TurnGrammar, GrammarError> {
        let mut seen = HashSet::new();
        for (name, _) in &self.tools {
            check_tool_name(name)?;
            if !seen.insert(name.as_str()) {
                return Err(GrammarError::DuplicateToolName(name.clone()));
            }
        }
        let mode = match (self.tools_allowed, self.require_tool_call) {
            (false, true) => return Err(GrammarError::RequiredButNotAllowed),
            (true, true) if self.tools.is_empty() => return Err(GrammarError::EmptyToolSet),
            (true, true) => Mode::CallsOnly,
            (true, false) if !self.tools.is_empty() => Mode::Either,
            _ => Mode::AnswerOnly,
        };
        let markers = self.env.markers().clone();
        let lark = turn_lark(&self, &markers, mode);
        tracing::trace!(%lark, "turn grammar");
        let compiled = Compiled::new(&self.env, lark)?;
        let spec = TurnSpec {
            markers,
            eos: self.env.eos(),
            tools: self.tools.into_iter().map(|(name, _)| name).collect(),
            mode,
            parallel: self.parallel,
            json_answer: matches!(self.answer, AnswerFormat::Json(_)),
            thinking_budget: self.thinking_budget,
        };
        Ok(TurnGrammar {
            compiled: Arc::new(compiled),
            spec: Arc::new(spec),
        })
    }
}

/// Tool names as OpenAI-style function names: they must survive the call format, where
/// the name is ended by a newline.
fn check_tool_name(name: &str) -> Result<(), GrammarError> {
    let invalid = |reason: &str| GrammarError::InvalidToolName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > 64 {
        return Err(invalid("the name is longer than 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid("only A-Z, a-z, 0-9, `_` and `-` are allowed"));
    }
    Ok(())
}

/// One element of a lark sequence: text, a marker, or a rule / terminal name.
#[derive(Clone, Copy)]
enum Item<'a> {
    Text(&'a str),
    Marker(&'a Marker),
    Name(&'a str),
}

/// Renders a sequence, merging adjacent text (text markers included) into one literal.
fn seq(items: &[Item<'_>]) -> String {
    let mut out = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut Vec<String>| {
        if !text.is_empty() {
            out.push(lark_string(text));
            text.clear();
        }
    };
    for item in items {
        match item {
            Item::Text(s) | Item::Marker(Marker::Text(s)) => text.push_str(s),
            Item::Marker(Marker::Token(id)) => {
                flush(&mut text, &mut out);
                out.push(format!("<[{id}]>"));
            }
            Item::Name(name) => {
                flush(&mut text, &mut out);
                out.push((*name).to_owned());
            }
        }
    }
    flush(&mut text, &mut out);
    out.join(" ")
}

/// A lark string literal (JSON string escaping is a subset of lark's).
fn lark_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The lark grammar of a turn.
fn turn_lark(b: &TurnGrammarBuilder, m: &Markers, mode: Mode) -> String {
    let mut g = String::new();
    let _ = writeln!(g, "%llguidance {{}}");
    match &m.think_end {
        Marker::Token(id) => {
            let _ = writeln!(g, "start: THINK? <[{id}]> after");
            let _ = writeln!(g, "THINK: /(?s:.+)/");
        }
        Marker::Text(end) => {
            // The reasoning ends at the first `</think>`: a lazy lexeme that includes it.
            let _ = writeln!(g, "start: think after");
            let _ = writeln!(g, "think[lazy]: THINK_CLOSED");
            let _ = writeln!(g, "THINK_CLOSED: THINK_BODY {}", lark_string(end));
            let _ = writeln!(g, "THINK_BODY: /(?s:.*)/");
        }
    }
    let _ = writeln!(g, "SEP: /[ \\n]{{1,3}}/");
    let after = match mode {
        Mode::AnswerOnly => "answer",
        Mode::CallsOnly => "calls",
        Mode::Either => "answer | calls",
    };
    let _ = writeln!(g, "after: {after}");
    if mode != Mode::CallsOnly {
        match &b.answer {
            AnswerFormat::Text => {
                let _ = writeln!(g, "answer: SEP? {}", seq(&[Item::Name("ANSWER")]));
                // Not blank, and not `<｜` (which opens the calls) at the start; the
                // constraint keeps `<｜` out of the rest of the text.
                let _ = writeln!(g, "ANSWER: /(?s:[^\\s<].*|<(?:[^｜].*)?)/");
            }
            AnswerFormat::Json(schema) => {
                let _ = writeln!(g, "answer: SEP? {}", seq(&[Item::Name("answer_json")]));
                let _ = writeln!(g, "answer_json: %json {}", schema.engine_value());
            }
        }
    }
    if mode != Mode::AnswerOnly {
        let head = [
            Item::Marker(&m.call_begin),
            Item::Text(CALL_TYPE),
            Item::Marker(&m.sep),
        ];
        let first = seq(&[&[Item::Marker(&m.calls_begin)][..], &head].concat());
        let more = seq(&[&[Item::Text(CALL_JOIN)][..], &head].concat());
        let end = seq(&[Item::Marker(&m.calls_end)]);
        if b.parallel {
            let _ = writeln!(g, "calls: SEP? {first} tool ({more} tool)* {end}");
        } else {
            let _ = writeln!(g, "calls: SEP? {first} tool {end}");
        }
        let names: Vec<String> = (0..b.tools.len()).map(|i| format!("tool_{i}")).collect();
        let _ = writeln!(g, "tool: {}", names.join(" | "));
        for (i, (name, schema)) in b.tools.iter().enumerate() {
            let open = format!("{name}{ARGS_OPEN}");
            let _ = writeln!(
                g,
                "tool_{i}: {}",
                seq(&[
                    Item::Text(&open),
                    Item::Name(&format!("args_{i}")),
                    Item::Text(ARGS_CLOSE),
                    Item::Marker(&m.call_end),
                ])
            );
            let _ = writeln!(g, "args_{i}: %json {}", schema.engine_value());
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::CACHED_GRAMMARS;
    use crate::env::tests::qwen3_env as env;

    fn schema(n: usize) -> JsonSchema {
        JsonSchema::new(serde_json::json!({
            "type": "object",
            "properties": { format!("field_{n}"): { "type": "integer" } },
            "required": [format!("field_{n}")],
        }))
        .expect("a plain schema")
    }

    fn same(a: &Compiled, b: &Compiled) -> bool {
        Arc::ptr_eq(&a.template, &b.template)
    }

    #[test]
    fn a_grammar_compiled_again_comes_from_the_cache_and_starts_fresh() {
        let env = env();
        let builder = || TurnGrammar::builder(&env).tool("calc", schema(0));
        let first = builder().build().expect("compiles");
        let mut used = first.constraint();
        let prefix = env.tokenize(b"some thoughts");
        for &token in &prefix {
            used.commit(token).expect("free text in the reasoning");
        }
        let again = builder().build().expect("compiles");
        assert!(same(&first.compiled, &again.compiled));
        let other = TurnGrammar::builder(&env)
            .tool("calc", schema(0))
            .require_tool_call(true)
            .build()
            .expect("compiles");
        assert!(!same(&first.compiled, &other.compiled));

        // The cached parser is the fresh one, not the one a constraint advanced: both
        // grammars' new constraints take the same text from the start.
        for grammar in [&first, &again] {
            let mut fresh = grammar.constraint();
            for &token in &prefix {
                fresh.commit(token).expect("free text in the reasoning");
            }
            assert_eq!(fresh.tokens(), used.tokens());
        }
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_grammars() {
        let env = env();
        let compile = |n: usize| {
            JsonGrammar::new(&env, &schema(n))
                .expect("compiles")
                .compiled
        };
        let kept: Vec<Arc<Compiled>> = (0..CACHED_GRAMMARS).map(compile).collect();
        // Using grammar 0 again makes grammar 1 the least recently used.
        assert!(same(&kept[0], &compile(0)));
        let newest = compile(CACHED_GRAMMARS);
        assert!(same(&newest, &compile(CACHED_GRAMMARS)));
        assert!(same(&kept[0], &compile(0)));
        assert!(!same(&kept[1], &compile(1)), "grammar 1 was dropped");
        for (n, grammar) in kept.iter().enumerate().skip(3) {
            assert!(same(grammar, &compile(n)), "grammar {n} was kept");
        }
    }
}
