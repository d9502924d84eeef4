//! Scoring the agent on problems: per-run outcomes and the summary the evaluation
//! prints.

use std::time::{Duration, Instant};

use taper::{Answer, Session};

use crate::mentions_number;
use crate::tasks::Problem;

/// How one run went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The answer, or the run's error as text.
    pub answer: Result<Answer, String>,
    /// Whether the answer states the expected number.
    pub correct: bool,
    /// Tool calls made.
    pub calls: usize,
    /// Calls the tool refused (the calculator could not evaluate the expression).
    pub failed_calls: usize,
    /// Calls whose expression is exactly the expected one.
    pub expected_calls: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Runs `problem` as the next turn of `session` and scores it. Clear the session
/// first for a problem on its own (the KV cache keeps the system prompt from run to
/// run); leave it for a later turn of a chat.
pub async fn solve(session: &mut Session, problem: &Problem) -> Outcome {
    let started = Instant::now();
    let result = session.run(problem.text.clone()).await;
    let elapsed = started.elapsed();
    let answer = result.map_err(|e| e.to_string());
    let (mut calls, mut failed_calls, mut expected_calls) = (0, 0, 0);
    let mut correct = false;
    if let Ok(a) = &answer {
        for call in a.steps.iter().flat_map(|s| &s.calls) {
            calls += 1;
            failed_calls += usize::from(call.result.is_err());
            let expression = call.arguments.get("expression").and_then(|e| e.as_str());
            expected_calls += usize::from(expression == Some(problem.expression.as_str()));
        }
        correct = !a.truncated && mentions_number(&a.text, &problem.answer);
    }
    Outcome {
        answer,
        correct,
        calls,
        failed_calls,
        expected_calls,
        elapsed,
    }
}

/// `a` as a percentage of `b` (0 when `b` is 0).
fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

/// The summary of many runs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Runs.
    pub runs: usize,
    /// Runs whose answer states the expected number.
    pub correct: usize,
    /// Runs that called a tool at least once.
    pub with_calls: usize,
    /// Runs that ended with an untruncated answer.
    pub answered: usize,
    /// Runs that ended with an error.
    pub errors: usize,
    /// Tool calls in all.
    pub calls: usize,
    /// Calls the tool refused.
    pub failed_calls: usize,
    /// Calls with exactly the expected expression.
    pub expected_calls: usize,
    /// Model steps over the runs that answered.
    pub steps: usize,
    /// Tokens sampled.
    pub generated_tokens: usize,
    /// Tokens the grammar forced.
    pub forced_tokens: usize,
    /// Prompt tokens prefilled.
    pub prefilled_tokens: usize,
    /// Time decoding (sampled and forced tokens).
    pub decode_time: Duration,
    /// Time prefilling prompts.
    pub prefill_time: Duration,
    /// Wall time of all runs.
    pub wall_time: Duration,
}

impl Report {
    /// Adds one run.
    pub fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        self.correct += usize::from(o.correct);
        self.with_calls += usize::from(o.calls > 0);
        self.calls += o.calls;
        self.failed_calls += o.failed_calls;
        self.expected_calls += o.expected_calls;
        self.wall_time += o.elapsed;
        match &o.answer {
            Ok(a) => {
                self.answered += usize::from(!a.truncated && !a.text.trim().is_empty());
                self.steps += a.steps.len();
                self.generated_tokens += a.usage.generated_tokens;
                self.forced_tokens += a.usage.forced_tokens;
                self.prefilled_tokens += a.usage.prefilled_tokens;
                self.decode_time += a.usage.decode_time;
                self.prefill_time += a.usage.prefill_time;
            }
            Err(_) => self.errors += 1,
        }
    }

    /// The accuracy as a percentage and a count: `98.8% (494/500)`.
    pub fn accuracy(&self) -> String {
        format!(
            "{:.1}% ({}/{})",
            pct(self.correct, self.runs),
            self.correct,
            self.runs
        )
    }

    /// The summary as a table of metric and value lines.
    pub fn table(&self) -> String {
        let per_s = |n: usize, t: Duration| n as f64 / t.as_secs_f64().max(1e-9);
        let rows = [
            ("runs", self.runs.to_string()),
            ("accuracy", self.accuracy()),
            (
                "tool-call rate",
                format!(
                    "{:.1}% of runs called the calculator",
                    pct(self.with_calls, self.runs)
                ),
            ),
            (
                "ended with an answer",
                format!("{}/{} ({} errors)", self.answered, self.runs, self.errors),
            ),
            (
                "tool calls",
                format!(
                    "{} ({} refused by the tool, {} with exactly the expected expression)",
                    self.calls, self.failed_calls, self.expected_calls
                ),
            ),
            (
                "avg steps",
                format!(
                    "{:.2}",
                    self.steps as f64 / (self.runs - self.errors).max(1) as f64
                ),
            ),
            (
                "decode tokens/s",
                format!(
                    "{:.0} ({} sampled + {} forced)",
                    per_s(self.generated_tokens + self.forced_tokens, self.decode_time),
                    self.generated_tokens,
                    self.forced_tokens
                ),
            ),
            (
                "prefill tokens/s",
                format!(
                    "{:.0} ({} tokens)",
                    per_s(self.prefilled_tokens, self.prefill_time),
                    self.prefilled_tokens
                ),
            ),
            (
                "wall time",
                format!(
                    "{:.1} s ({:.0} ms per run)",
                    self.wall_time.as_secs_f64(),
                    self.wall_time.as_secs_f64() * 1e3 / self.runs.max(1) as f64
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_run(correct: bool) -> Outcome {
        Outcome {
            answer: Err("the model ran out of context".into()),
            correct,
            calls: 1,
            failed_calls: 1,
            expected_calls: 0,
            elapsed: Duration::from_millis(10),
        }
    }

    #[test]
    fn a_report_counts_runs_errors_and_refused_calls() {
        let mut report = Report::default();
        assert_eq!(report.accuracy(), "0.0% (0/0)");
        report.add(&failed_run(true));
        report.add(&failed_run(false));
        report.add(&failed_run(false));
        assert_eq!(report.accuracy(), "33.3% (1/3)");
        let table = report.table();
        assert!(table.contains("0/3 (3 errors)"), "{table}");
        assert!(
            table.contains("3 (3 refused by the tool, 0 with exactly"),
            "{table}"
        );
    }
}
