//! The training texts of a problem: exactly what the agent renders as prompts and
//! what the model writes, for both steps of a run.
//!
//! A run of the nano agent has two model turns. The first reads the system prompt
//! and the problem and writes its reasoning, `</think>` and one calculator call; the
//! second reads the conversation as the chat format re-renders it (the first turn's
//! reasoning dropped, the call's arguments compact, the tool output) and writes a
//! short reasoning step and the answer. Prompts come from [`ChatFormat::render`]
//! and [`ChatFormat::system_prompt`] with [`NanoCalculator`] as the agent lists it, so
//! the training data is the agent's own text byte for byte.

use serde_json::json;
use taper::{AssistantMessage, ChatFormat, Message, RenderedCall, ToolInfo};
use taper_tool::{RegisterError, ToolBox};

use crate::tasks::Problem;
use crate::{NanoCalculator, SYSTEM_PROMPT};

/// The chat format of the nano model (a Llama block).
pub const FORMAT: ChatFormat = ChatFormat::R1DistillLlama;

const EOS: &str = "<｜end▁of▁sentence｜>";
const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const CALLS_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const TOOL_SEP: &str = "<｜tool▁sep｜>";

/// What can go wrong rendering transcripts.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The calculator could not be registered (a bug in the tool's definition).
    #[error("registering the calculator: {0}")]
    Register(#[from] RegisterError),
}

/// The two model turns of a solved problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transcript {
    /// The prompt of the first turn (ends with `<think>\n`).
    pub prompt1: String,
    /// What the model writes in the first turn: reasoning, `</think>`, the call
    /// block, EOS.
    pub completion1: String,
    /// The prompt of the second turn, after the tool output (ends with `<think>\n`).
    pub prompt2: String,
    /// What the model writes in the second turn: reasoning, `</think>`, the answer,
    /// EOS.
    pub completion2: String,
}

/// Renders transcripts with the system prompt of the nano agent.
#[derive(Debug, Clone)]
pub struct Renderer {
    system: String,
}

impl Renderer {
    /// A renderer with the system prompt [`crate::agent_builder`] gives the agent.
    pub fn new() -> Result<Self, TranscriptError> {
        let mut tools = ToolBox::new();
        tools.register(NanoCalculator::default())?;
        let infos: Vec<ToolInfo<'_>> = tools.tools().iter().map(ToolInfo::from).collect();
        Ok(Renderer {
            system: FORMAT.system_prompt(Some(SYSTEM_PROMPT), &infos),
        })
    }

    /// The whole system prompt (base, calculator, call format).
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The transcript of `problem` solved with one calculator call.
    pub fn transcript(&self, problem: &Problem) -> Transcript {
        self.transcript_after(&mut Vec::new(), problem)
    }

    /// The transcripts of a chat that solves `problems` one after the other in one
    /// session: each turn's prompts carry the earlier turns as the session keeps
    /// them (calls, tool outputs, the final reasoning and answers).
    pub fn conversation(&self, problems: &[Problem]) -> Vec<Transcript> {
        let mut history = Vec::new();
        problems
            .iter()
            .map(|p| self.transcript_after(&mut history, p))
            .collect()
    }

    /// The transcript of `problem` after the messages of `history`, to which the
    /// solved problem's messages are appended.
    fn transcript_after(&self, history: &mut Vec<Message>, problem: &Problem) -> Transcript {
        history.push(Message::User(problem.text.clone()));
        let prompt1 = FORMAT.render(Some(&self.system), history, true);
        // The grammar writes the arguments with `": "`; the history renders them
        // compact, as `serde_json` prints the parsed value.
        let completion1 = format!(
            "{}</think>\n\n{CALLS_BEGIN}{CALL_BEGIN}function{TOOL_SEP}calculator\n```json\n{{\"expression\": {}}}\n```{CALL_END}{CALLS_END}{EOS}",
            problem.notes,
            json!(problem.expression),
        );
        history.push(Message::Assistant(AssistantMessage {
            thinking: Some(problem.notes.clone()),
            content: "\n\n".into(),
            calls: vec![RenderedCall {
                name: "calculator".into(),
                arguments: json!({"expression": problem.expression}).to_string(),
            }],
        }));
        history.push(Message::Tool(problem.calculator_output.clone()));
        let prompt2 = FORMAT.render(Some(&self.system), history, true);
        let unit = if problem.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", problem.unit)
        };
        let thinking = format!("The calculator gives {}.", problem.answer);
        let answer = format!("\n\nThe answer is {}{unit}.", problem.answer);
        let completion2 = format!("{thinking}</think>{answer}{EOS}");
        history.push(Message::Assistant(AssistantMessage {
            thinking: Some(thinking),
            content: answer,
            calls: Vec::new(),
        }));
        Transcript {
            prompt1,
            completion1,
            prompt2,
            completion2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Split, generate};

    #[test]
    fn second_prompt_continues_the_first_turn_without_its_reasoning() {
        let renderer = Renderer::new().expect("the calculator registers");
        let problem = &generate(0, Split::Train, 1)[0];
        let t = renderer.transcript(problem);
        assert!(t.prompt1.ends_with("<｜Assistant｜><think>\n"));
        let shared = t.prompt1.strip_suffix("<think>\n").expect("opening");
        assert!(t.prompt2.starts_with(shared));
        assert!(t.prompt2.ends_with("<｜tool▁outputs▁end｜><think>\n"));
        assert!(!t.prompt2.contains(&problem.notes));
        assert!(
            t.prompt2
                .contains(&format!("{{\"expression\":\"{}\"}}", problem.expression))
        );
        assert!(
            t.completion1
                .contains(&format!("{{\"expression\": \"{}\"}}", problem.expression))
        );
        assert!(
            t.completion2
                .ends_with(&format!("{}.<｜end▁of▁sentence｜>", problem.unit))
        );
    }

    #[test]
    fn a_later_chat_turn_continues_the_whole_earlier_one() {
        let renderer = Renderer::new().expect("the calculator registers");
        let problems = generate(0, Split::Train, 2);
        let chat = renderer.conversation(&problems);
        assert_eq!(chat[0], renderer.transcript(&problems[0]));
        let first = format!("{}{}", chat[0].prompt2, chat[0].completion2);
        let rest = chat[1]
            .prompt1
            .strip_prefix(&first)
            .expect("the first turn, whole");
        assert_eq!(
            rest,
            format!("<｜User｜>{}<｜Assistant｜><think>\n", problems[1].text)
        );
        assert!(chat[1].prompt2.starts_with(&first));
    }
}
