//! The chat formats of the two R1 distills: conversations rendered as the prompt text
//! the models were trained on, and the system prompt that teaches the tools.

use serde_json::Value;
use taper_model::Architecture;

const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
const USER: &str = "<｜User｜>";
const ASSISTANT: &str = "<｜Assistant｜>";
pub(crate) const THINK_OPEN: &str = "<think>\n";
pub(crate) const THINK_END: &str = "</think>";
pub(crate) const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const CALLS_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const TOOL_SEP: &str = "<｜tool▁sep｜>";
const OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
const OUTPUTS_END: &str = "<｜tool▁outputs▁end｜>";
const OUTPUT_BEGIN: &str = "<｜tool▁output▁begin｜>";
const OUTPUT_END: &str = "<｜tool▁output▁end｜>";

/// The chat format of one R1 distill: how a conversation becomes prompt text.
///
/// Both follow their model's official Jinja chat template (`fixtures/chat-templates/`
/// holds copies) and render the same text for every conversation those templates
/// render well. Where a template is broken or leaves the model without its reasoning
/// opening, the format normalizes it as llama.cpp does; each difference:
///
/// 1. **The reasoning opening.** The prompt for a new assistant turn always ends with
///    `<think>\n`, so every step starts by reasoning: the Llama template writes it
///    after a user turn only, the Qwen3 one never; after tool outputs neither does.
/// 2. **Closing the tool-call block** (Llama). The Llama template closes the block
///    (`<｜tool▁calls▁end｜><｜end▁of▁sentence｜>`) after every call but the first, so
///    a single call is never closed and parallel calls are closed once per extra call.
///    The format closes every block once, after its last call, as the Qwen3 template
///    does and as the model writes it.
/// 3. **Later tool rounds** (Llama). The Llama template never resets its "first call"
///    and "first output" flags, so a second round of calls or outputs loses its
///    opening marker, and a call after tool outputs leaves the outputs unclosed. The
///    format renders every round like the first, a call after outputs as
///    `<｜tool▁outputs▁end｜>` and the block (the Qwen3 template's rule).
///
/// What the templates drop, the format drops too: the reasoning of earlier assistant
/// turns (all of it for Qwen3; for Llama, except an answer that follows tool outputs),
/// and for Llama any text beside tool calls. A [`Session`](crate::Session) rolls its
/// KV cache back to where the rendering diverges from what it holds, instead of
/// prefilling from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// DeepSeek-R1-Distill-Llama-8B (Llama-3.1 architecture).
    R1DistillLlama,
    /// DeepSeek-R1-0528-Qwen3-8B (Qwen3 architecture).
    R1Qwen3,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A user turn.
    User(String),
    /// An assistant turn: a step that called tools, or the final answer.
    Assistant(AssistantMessage),
    /// The output of one tool call, in the order of the calls.
    Tool(String),
}

/// An assistant turn as the model wrote it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssistantMessage {
    /// The reasoning between `<think>\n` and `</think>`; `None` for a turn written
    /// without reasoning.
    pub thinking: Option<String>,
    /// The text after `</think>`, blanks included: the answer, or what precedes the
    /// tool calls.
    pub content: String,
    /// The tool calls, in order; empty for an answer.
    pub calls: Vec<RenderedCall>,
}

/// A tool call as written in the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// What the system prompt says about one tool.
#[derive(Debug, Clone, Copy)]
pub struct ToolInfo<'a> {
    /// The tool's name.
    pub name: &'a str,
    /// What it does, for the model.
    pub description: &'a str,
    /// The JSON schema of its arguments.
    pub schema: &'a Value,
}

impl<'a> From<&'a taper_tool::RegisteredTool> for ToolInfo<'a> {
    /// What the system prompt says about a tool of a [`ToolBox`](taper_tool::ToolBox).
    fn from(tool: &'a taper_tool::RegisteredTool) -> Self {
        ToolInfo {
            name: tool.name(),
            description: tool.description(),
            schema: tool.schema_value(),
        }
    }
}

impl ChatFormat {
    /// The format of a model architecture: Llama is the Llama distill, Qwen3 the
    /// Qwen3 one.
    pub fn for_architecture(architecture: Architecture) -> Self {
        match architecture {
            Architecture::Llama => ChatFormat::R1DistillLlama,
            Architecture::Qwen3 => ChatFormat::R1Qwen3,
        }
    }

    /// The system prompt: `base` (if any), then the tools, their argument schemas and
    /// the call format, in the DeepSeek tool-call markers both models read.
    ///
    /// ```
    /// use serde_json::json;
    /// use taper::{ChatFormat, ToolInfo};
    ///
    /// let schema = json!({"type": "object", "properties": {"expression": {"type": "string"}}});
    /// let tool = ToolInfo { name: "calculator", description: "Exact arithmetic.", schema: &schema };
    /// let prompt = ChatFormat::R1Qwen3.system_prompt(Some("Be brief."), &[tool]);
    /// assert!(prompt.starts_with("Be brief.\n\n"));
    /// assert!(prompt.contains("calculator: Exact arithmetic."));
    /// ```
    pub fn system_prompt(&self, base: Option<&str>, tools: &[ToolInfo<'_>]) -> String {
        let mut out = String::new();
        if let Some(base) = base.filter(|b| !b.is_empty()) {
            out.push_str(base);
            if !tools.is_empty() {
                out.push_str("\n\n");
            }
        }
        if tools.is_empty() {
            return out;
        }
        out.push_str("## Tools\n\nYou can call these tools. Each takes one JSON object of arguments, described by its JSON schema.\n");
        for tool in tools {
            out.push_str(&format!(
                "\n### {}\n{}: {}\nArguments schema: {}\n",
                tool.name,
                tool.name,
                tool.description.trim(),
                tool.schema
            ));
        }
        out.push_str(&format!(
            "\nTo call tools, think first, then write the calls instead of an answer, exactly like this (one or more calls, joined by a newline):\n{CALLS_BEGIN}{CALL_BEGIN}function{TOOL_SEP}TOOL_NAME\n```json\nARGUMENTS\n```{CALL_END}{CALLS_END}\nThe results come back as tool outputs, in the order of the calls. Then think again and either call more tools or write the final answer. Never write a tool call inside your thinking, and do not repeat a call whose result you already have."
        ));
        out
    }

    /// Renders a conversation as prompt text: BOS, the system prompt, the messages,
    /// and with `open_turn` the opening of a new assistant turn (ending in
    /// `<think>\n`).
    ///
    /// ```
    /// use taper::{ChatFormat, Message};
    ///
    /// let messages = [Message::User("2+2?".into())];
    /// let text = ChatFormat::R1Qwen3.render(Some("Be brief."), &messages, true);
    /// assert_eq!(
    ///     text,
    ///     "<｜begin▁of▁sentence｜>Be brief.<｜User｜>2+2?<｜Assistant｜><think>\n"
    /// );
    /// ```
    pub fn render(&self, system: Option<&str>, messages: &[Message], open_turn: bool) -> String {
        let llama = *self == ChatFormat::R1DistillLlama;
        let mut out = String::from(BOS);
        out.push_str(system.unwrap_or(""));
        // Whether the previous message was a tool output (the outputs block is open).
        let mut in_outputs = false;
        // Whether the next tool output opens a block.
        let mut first_output = true;
        for message in messages {
            match message {
                Message::User(text) => {
                    if in_outputs {
                        // Neither template closes outputs before a user turn; we do not
                        // either, to stay token for token with them.
                        in_outputs = false;
                    }
                    out.push_str(USER);
                    out.push_str(text);
                    if !llama {
                        out.push_str(ASSISTANT);
                    }
                }
                Message::Assistant(m) if m.calls.is_empty() => {
                    if in_outputs {
                        out.push_str(OUTPUTS_END);
                        if llama {
                            // The Llama template keeps the whole content here, reasoning
                            // included.
                            if let Some(thinking) = &m.thinking {
                                out.push_str(THINK_OPEN);
                                out.push_str(thinking);
                                out.push_str(THINK_END);
                            }
                        }
                        in_outputs = false;
                    } else if llama {
                        out.push_str(ASSISTANT);
                    }
                    out.push_str(&m.content);
                    out.push_str(EOS);
                }
                Message::Assistant(m) => {
                    if in_outputs {
                        out.push_str(OUTPUTS_END);
                        in_outputs = false;
                        if !llama {
                            out.push_str(&m.content);
                        }
                    } else if llama {
                        out.push_str(ASSISTANT);
                    } else {
                        out.push_str(&m.content);
                    }
                    first_output = true;
                    out.push_str(CALLS_BEGIN);
                    for (i, call) in m.calls.iter().enumerate() {
                        if i > 0 {
                            out.push('\n');
                        }
                        out.push_str(CALL_BEGIN);
                        out.push_str("function");
                        out.push_str(TOOL_SEP);
                        out.push_str(&call.name);
                        out.push_str("\n```json\n");
                        out.push_str(&call.arguments);
                        out.push_str("\n```");
                        out.push_str(CALL_END);
                    }
                    out.push_str(CALLS_END);
                    out.push_str(EOS);
                }
                Message::Tool(text) => {
                    if first_output {
                        out.push_str(OUTPUTS_BEGIN);
                        first_output = false;
                    } else {
                        out.push('\n');
                    }
                    out.push_str(OUTPUT_BEGIN);
                    out.push_str(text);
                    out.push_str(OUTPUT_END);
                    in_outputs = true;
                }
            }
        }
        if in_outputs {
            out.push_str(OUTPUTS_END);
        }
        if open_turn {
            // After a user turn the Qwen3 template has written `<｜Assistant｜>`
            // already; after tool outputs the model continues without it.
            let assistant = match messages.last() {
                Some(Message::User(_)) => llama,
                Some(Message::Tool(_)) => false,
                Some(Message::Assistant(_)) | None => true,
            };
            if assistant {
                out.push_str(ASSISTANT);
            }
            out.push_str(THINK_OPEN);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> RenderedCall {
        RenderedCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::User("What is 2+3?".into()),
            Message::Assistant(AssistantMessage {
                thinking: Some("Use the tool.".into()),
                content: "\n\n".into(),
                calls: vec![call("add", r#"{"a":2,"b":3}"#)],
            }),
            Message::Tool("5".into()),
            Message::Assistant(AssistantMessage {
                thinking: Some("It says 5.".into()),
                content: "\n\n5".into(),
                calls: vec![],
            }),
        ]
    }

    #[test]
    fn qwen3_drops_thinking_and_keeps_text_before_calls() {
        let text = ChatFormat::R1Qwen3.render(None, &conversation(), false);
        assert_eq!(
            text,
            "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\":2,\"b\":3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>5<｜tool▁output▁end｜><｜tool▁outputs▁end｜>\n\n5<｜end▁of▁sentence｜>"
        );
    }

    #[test]
    fn llama_keeps_thinking_of_an_answer_after_tool_outputs() {
        let text = ChatFormat::R1DistillLlama.render(None, &conversation(), false);
        assert_eq!(
            text,
            "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\":2,\"b\":3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>5<｜tool▁output▁end｜><｜tool▁outputs▁end｜><think>\nIt says 5.</think>\n\n5<｜end▁of▁sentence｜>"
        );
    }

    #[test]
    fn a_turn_after_tool_outputs_opens_with_reasoning() {
        for format in [ChatFormat::R1Qwen3, ChatFormat::R1DistillLlama] {
            let text = format.render(None, &conversation()[..3], true);
            assert!(
                text.ends_with("<｜tool▁outputs▁end｜><think>\n"),
                "{format:?}: {text}"
            );
        }
    }

    #[test]
    fn a_turn_after_an_answer_opens_with_the_assistant_marker() {
        for format in [ChatFormat::R1Qwen3, ChatFormat::R1DistillLlama] {
            let text = format.render(None, &conversation(), true);
            assert!(
                text.ends_with("<｜end▁of▁sentence｜><｜Assistant｜><think>\n"),
                "{format:?}: {text}"
            );
        }
    }

    #[test]
    fn system_prompt_without_tools_is_the_base() {
        assert_eq!(ChatFormat::R1Qwen3.system_prompt(Some("Hi."), &[]), "Hi.");
        assert_eq!(ChatFormat::R1Qwen3.system_prompt(None, &[]), "");
    }
}
