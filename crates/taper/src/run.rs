//! What a run produces: the answer, its steps, the usage, and the events of a stream.

use std::time::Duration;

use serde_json::{Value, json};
use taper_tool::{ToolError, ToolOutput};

/// The result of a run: the final answer, the reasoning behind it, every step and
/// the usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The final answer's text (leading blanks removed); the JSON text for a typed run.
    pub text: String,
    /// The final answer as JSON, for a typed run ([`Agent::run_typed`](crate::Agent::run_typed)).
    pub json: Option<Value>,
    /// The reasoning of the final step.
    pub thinking: String,
    /// Every step, the final one included (its `calls` are empty).
    pub steps: Vec<Step>,
    /// Tokens and time, summed over the steps.
    pub usage: Usage,
    /// Whether the answer was cut at the answer-token limit
    /// ([`AgentBuilder::max_answer_tokens`](crate::AgentBuilder::max_answer_tokens)).
    pub truncated: bool,
}

/// One model turn of a run: its reasoning and the tools it called.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 0 for the first step.
    pub index: usize,
    /// The reasoning.
    pub thinking: String,
    /// The calls, in the order the model wrote them; empty for the final step.
    pub calls: Vec<CallRecord>,
    /// This step's tokens and time.
    pub usage: Usage,
}

/// One tool call and what it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The tool's name.
    pub name: String,
    /// The arguments, valid for the tool's schema.
    pub arguments: Value,
    /// The output, or why there is none; either way the model read it.
    pub result: Result<ToolOutput, ToolError>,
    /// How long the call ran.
    pub elapsed: Duration,
}

impl CallRecord {
    /// The text the model read for this call.
    pub fn model_text(&self) -> String {
        match &self.result {
            Ok(output) => output.text().to_owned(),
            Err(error) => error.to_model_text(),
        }
    }
}

/// Tokens and time of a run or a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens rendered for the model (each step renders the whole conversation).
    pub prompt_tokens: usize,
    /// Prompt tokens actually prefilled: those the KV cache had not seen.
    pub prefilled_tokens: usize,
    /// Tokens sampled from the model.
    pub generated_tokens: usize,
    /// Tokens the grammar forced (markers, JSON keys, tool names), prefilled in chunks
    /// without sampling.
    pub forced_tokens: usize,
    /// Forward passes.
    pub forward_passes: usize,
    /// Time prefilling prompts.
    pub prefill_time: Duration,
    /// Time in forward passes while decoding (queueing included).
    pub decode_time: Duration,
    /// Time computing token masks and committing tokens to the grammar.
    pub grammar_time: Duration,
    /// Time running tools.
    pub tool_time: Duration,
}

impl Usage {
    pub(crate) fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.prefilled_tokens += other.prefilled_tokens;
        self.generated_tokens += other.generated_tokens;
        self.forced_tokens += other.forced_tokens;
        self.forward_passes += other.forward_passes;
        self.prefill_time += other.prefill_time;
        self.decode_time += other.decode_time;
        self.grammar_time += other.grammar_time;
        self.tool_time += other.tool_time;
    }
}

/// Everything a run produced before it stopped with an error.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Partial {
    /// The finished steps.
    pub steps: Vec<Step>,
    /// The unfinished step's text so far (reasoning, then what followed it).
    pub text: String,
    /// Tokens and time, the unfinished step included.
    pub usage: Usage,
}

/// One event of a streamed run ([`Agent::stream`](crate::Agent::stream)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// More reasoning text (whole characters only).
    ThinkingDelta(String),
    /// More answer text (whole characters only).
    AnswerDelta(String),
    /// A tool call is about to run.
    ToolCallStarted {
        /// The step it belongs to.
        step: usize,
        /// The tool's name.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool call finished.
    ToolResult {
        /// The step it belongs to.
        step: usize,
        /// The call and its result.
        call: CallRecord,
    },
    /// A step that called tools finished (the final step ends with [`Event::Done`]).
    StepFinished(Step),
    /// The usage of the whole run, just before [`Event::Done`].
    Usage(Usage),
    /// The run finished with this answer.
    Done(Answer),
}

impl Event {
    /// The event as one JSON object whose `event` field names its kind: `thinking`
    /// and `answer` (with `text`), `tool_call` (`step`, `name`, `arguments`),
    /// `tool_result` (`step`, `name`, `output`, `ok`, `seconds`), `step` (`index`,
    /// `calls`, `usage`), `usage` (the counts and seconds) and `done` (`answer`,
    /// `json`, `truncated`, `steps`). The form `taper run --json` prints, one per
    /// line, and a service can stream.
    ///
    /// ```
    /// let event = taper::Event::AnswerDelta("391".into());
    /// assert_eq!(event.to_json()["event"], "answer");
    /// assert_eq!(event.to_json()["text"], "391");
    /// ```
    pub fn to_json(&self) -> Value {
        match self {
            Event::ThinkingDelta(text) => json!({"event": "thinking", "text": text}),
            Event::AnswerDelta(text) => json!({"event": "answer", "text": text}),
            Event::ToolCallStarted {
                step,
                name,
                arguments,
            } => json!({"event": "tool_call", "step": step, "name": name, "arguments": arguments}),
            Event::ToolResult { step, call } => json!({
                "event": "tool_result",
                "step": step,
                "name": call.name,
                "output": call.model_text(),
                "ok": call.result.is_ok(),
                "seconds": call.elapsed.as_secs_f64(),
            }),
            Event::StepFinished(step) => json!({
                "event": "step",
                "index": step.index,
                "calls": step.calls.len(),
                "usage": step.usage.to_json(),
            }),
            Event::Usage(usage) => {
                let mut value = usage.to_json();
                value["event"] = json!("usage");
                value
            }
            Event::Done(answer) => json!({
                "event": "done",
                "answer": answer.text,
                "json": answer.json,
                "truncated": answer.truncated,
                "steps": answer.steps.len(),
            }),
        }
    }
}

impl Usage {
    /// The counts, and the times in seconds, as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "prefilled_tokens": self.prefilled_tokens,
            "generated_tokens": self.generated_tokens,
            "forced_tokens": self.forced_tokens,
            "forward_passes": self.forward_passes,
            "prefill_seconds": self.prefill_time.as_secs_f64(),
            "decode_seconds": self.decode_time.as_secs_f64(),
            "grammar_seconds": self.grammar_time.as_secs_f64(),
            "tool_seconds": self.tool_time.as_secs_f64(),
        })
    }
}
