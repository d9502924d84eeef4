//! Printing a run's events: for people (reasoning dimmed on a terminal, tool calls
//! and results marked, a usage line) or as one JSON object per line.

use std::io::{IsTerminal as _, Write};

use taper::{Event, Usage};

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
                // A failure's text starts with `error: `, as the model reads it.
                let mut lines = text.lines();
                writeln!(out, "<- {}", lines.next().unwrap_or(""))?;
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

/// One event as one line of JSON ([`Event::to_json`]).
fn json_line(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    writeln!(out, "{}", event.to_json())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};
    use taper::{Answer, CallRecord, ToolError, ToolOutput};

    use super::*;

    fn call(result: Result<ToolOutput, ToolError>) -> CallRecord {
        CallRecord {
            name: "calculator".into(),
            arguments: json!({"expression": "17 * 23"}),
            result,
            elapsed: Duration::from_millis(2),
        }
    }

    fn answer(text: &str, truncated: bool) -> Answer {
        Answer {
            text: text.into(),
            json: None,
            thinking: String::new(),
            steps: Vec::new(),
            usage: Usage::default(),
            truncated,
        }
    }

    fn human(events: &[Event]) -> String {
        let mut printer = Printer {
            json: false,
            color: false,
            section: Section::LineStart,
        };
        let mut out = Vec::new();
        for event in events {
            printer.human(&mut out, event).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn people_read_reasoning_calls_results_and_the_answer_apart() {
        let text = human(&[
            Event::ThinkingDelta("I should ".into()),
            Event::ThinkingDelta("multiply.".into()),
            Event::ToolCallStarted {
                step: 0,
                name: "calculator".into(),
                arguments: json!({"expression": "17 * 23"}),
            },
            Event::ToolResult {
                step: 0,
                call: call(Ok(ToolOutput::from_value(json!("= 391\nexact")))),
            },
            Event::ToolResult {
                step: 0,
                call: call(Err(ToolError::failed("division by zero"))),
            },
            Event::ThinkingDelta("Done.".into()),
            Event::AnswerDelta("It is ".into()),
            Event::AnswerDelta("391.".into()),
            Event::Done(answer("It is 391.", true)),
        ]);
        assert_eq!(
            text,
            "thinking: I should multiply.\n\
             -> calculator {\"expression\":\"17 * 23\"}\n\
             <- = 391\n   exact\n\
             <- error: division by zero\n\
             thinking: Done.\n\
             answer: It is 391.\n\
             (the answer was cut at the answer budget)\n"
        );
    }

    #[test]
    fn programs_read_one_json_object_per_event() {
        let mut out = Vec::new();
        for event in [
            Event::ThinkingDelta("hm".into()),
            Event::ToolResult {
                step: 1,
                call: call(Err(ToolError::failed("no"))),
            },
            Event::Usage(Usage {
                generated_tokens: 5,
                ..Usage::default()
            }),
            Event::Done(answer("391", false)),
        ] {
            json_line(&mut out, &event).unwrap();
        }
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], json!({"event": "thinking", "text": "hm"}));
        assert_eq!(lines[1]["event"], "tool_result");
        assert_eq!(lines[1]["ok"], false);
        assert_eq!(lines[1]["step"], 1);
        assert_eq!(lines[1]["output"], "error: no");
        assert_eq!(lines[2]["event"], "usage");
        assert_eq!(lines[2]["generated_tokens"], 5);
        assert_eq!(
            lines[3],
            json!({"event": "done", "answer": "391", "json": null, "truncated": false, "steps": 0})
        );
    }
}
