//! Printing a run's events: for people (reasoning dimmed on a terminal, tool calls
//! and results marked, a usage line) or as one JSON object per line.

use std::io::{IsTerminal as _, Write};

use serde_json::{Value, json};
use taper::{Answer, CallRecord, Event, Usage};

use crate::error::CliError;

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// What was printed last, to separate the reasoning from what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Nothing yet, or a finished line.
    LineStart,
    /// Reasoning text, mid-line or not.
    Thinking,
    /// Answer text.
    Answer,
}

/// Writes events to standard output as they come.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    color: bool,
    section: Section,
}

impl Printer {
    /// A printer for people (ANSI dimming only when standard output is a terminal),
    /// or for programs with `json`.
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            color: !json && std::io::stdout().is_terminal(),
            section: Section::LineStart,
        }
    }

    /// Prints one event and flushes.
    pub fn event(&mut self, event: &Event) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        let written = if self.json {
            json_line(&mut out, event)
        } else {
            self.human(&mut out, event)
        };
        written.and_then(|()| out.flush()).map_err(CliError::Output)
    }

    /// Ends a line left open (an answer or reasoning cut by an error).
    pub fn finish_line(&mut self) -> Result<(), CliError> {
        if self.json || self.section == Section::LineStart {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        self.end_section(&mut out)
            .and_then(|()| out.flush())
            .map_err(CliError::Output)
    }

    fn end_section(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.section != Section::LineStart {
            writeln!(out)?;
            self.section = Section::LineStart;
        }
        Ok(())
    }

    fn human(&mut self, out: &mut impl Write, event: &Event) -> std::io::Result<()> {
        match event {
            Event::ThinkingDelta(text) => {
                if self.section != Section::Thinking {
                    self.end_section(out)?;
                    if !self.color {
                        write!(out, "thinking: ")?;
                    }
                    self.section = Section::Thinking;
                }
                if self.color {
                    write!(out, "{DIM}{text}{RESET}")?;
                } else {
                    write!(out, "{text}")?;
                }
            }
            Event::AnswerDelta(text) => {
                if self.section != Section::Answer {
                    self.end_section(out)?;
                    write!(out, "answer: ")?;
                    self.section = Section::Answer;
                }
                write!(out, "{text}")?;
            }
            Event::ToolCallStarted {
                name, arguments, ..
            } => {
                self.end_section(out)?;
                writeln!(out, "-> {name} {arguments}")?;
            }
            Event::ToolResult { call, .. } => {
                self.end_section(out)?;
                let text = call.model_text();
                let marker = if call.result.is_ok() {
                    "<-"
                } else {
                    "<- error:"
                };
                let mut lines = text.lines();
                writeln!(out, "{marker} {}", lines.next().unwrap_or(""))?;
                for line in lines {
                    writeln!(out, "   {line}")?;
                }
            }
            Event::Usage(usage) => {
                self.end_section(out)?;
                writeln!(out, "{}", usage_line(usage))?;
            }
            Event::Done(answer) => {
                self.end_section(out)?;
                if answer.truncated {
                    writeln!(out, "(the answer was cut at the answer budget)")?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The usage of a run, in one line.
fn usage_line(u: &Usage) -> String {
    let decode = u.decode_time.as_secs_f64();
    let rate = if decode > 0.0 {
        format!(" ({:.1} tokens/s)", u.generated_tokens as f64 / decode)
    } else {
        String::new()
    };
    format!(
        "[{} prompt tokens ({} prefilled), {} generated, {} forced; prefill {:.2} s, decode {:.2} s{rate}, grammar {:.3} s, tools {:.3} s]",
        u.prompt_tokens,
        u.prefilled_tokens,
        u.generated_tokens,
        u.forced_tokens,
        u.prefill_time.as_secs_f64(),
        decode,
        u.grammar_time.as_secs_f64(),
        u.tool_time.as_secs_f64()
    )
}

/// One event as one line of JSON.
fn json_line(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    let value = match event {
        Event::ThinkingDelta(text) => json!({"event": "thinking", "text": text}),
        Event::AnswerDelta(text) => json!({"event": "answer", "text": text}),
        Event::ToolCallStarted {
            step,
            name,
            arguments,
        } => json!({"event": "tool_call", "step": step, "name": name, "arguments": arguments}),
        Event::ToolResult { step, call } => tool_result(*step, call),
        Event::StepFinished(step) => json!({
            "event": "step",
            "index": step.index,
            "calls": step.calls.len(),
            "usage": usage_json(&step.usage),
        }),
        Event::Usage(usage) => {
            let mut value = usage_json(usage);
            value["event"] = json!("usage");
            value
        }
        Event::Done(answer) => done(answer),
        _ => return Ok(()),
    };
    writeln!(out, "{value}")
}

fn tool_result(step: usize, call: &CallRecord) -> Value {
    json!({
        "event": "tool_result",
        "step": step,
        "name": call.name,
        "output": call.model_text(),
        "ok": call.result.is_ok(),
        "seconds": call.elapsed.as_secs_f64(),
    })
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "prefilled_tokens": u.prefilled_tokens,
        "generated_tokens": u.generated_tokens,
        "forced_tokens": u.forced_tokens,
        "forward_passes": u.forward_passes,
        "prefill_seconds": u.prefill_time.as_secs_f64(),
        "decode_seconds": u.decode_time.as_secs_f64(),
        "grammar_seconds": u.grammar_time.as_secs_f64(),
        "tool_seconds": u.tool_time.as_secs_f64(),
    })
}

fn done(answer: &Answer) -> Value {
    json!({
        "event": "done",
        "answer": answer.text,
        "truncated": answer.truncated,
        "steps": answer.steps.len(),
    })
}
