//! The embedded default model: synthetic tasks, training data, evaluation.
//!
//! `taper-nano` is a tiny Llama-block model in the DeepSeek R1 chat format, trained
//! in this repository on synthetic arithmetic word problems to restate the
//! quantities, call the calculator with the whole computation, read the result and
//! answer with the number. This crate holds everything about it that is Rust:
//!
//! - [`tasks`]: the seeded generator of word problems, composed from sentences and
//!   questions per kind of computation, with a training split and a held-out split
//!   (pairings of sentence and question training never shows, other number
//!   intervals);
//! - [`transcript`]: the exact prompt and completion texts the agent renders and
//!   samples for a problem, which are the training data;
//! - [`eval`]: scoring agent runs on problems;
//! - [`agent_builder`]: the agent configuration the model is trained for (system
//!   prompt, calculator, budgets, sampling), shared by the evaluation and the CLI.
//!
//! The binaries `nano-corpus` (writes the training corpus), `nano-gguf` (converts
//! the trained weights) and `nano-eval` (runs the agent on the held-out split) and
//! the Python training code under `train/` complete the pipeline; the crate's
//! README describes it.

pub mod eval;
pub mod rng;
pub mod tasks;
pub mod transcript;

use async_trait::async_trait;
use serde_json::{Value, json};
use taper::{Agent, AgentBuilder, Decoder, SamplerConfig};
use taper_calculator::Calculator;
use taper_tool::{DynTool, ToolContext, ToolError, ToolOutput};

pub use tasks::{Problem, Split, generate};
pub use transcript::{Transcript, TranscriptError};

/// Where the trained model lives, relative to the workspace root.
pub const MODEL_PATH: &str = "models/taper-nano.gguf";

/// The trained model's file in this crate's workspace ([`MODEL_PATH`] resolved
/// against the workspace this crate was built from), wherever the program runs.
pub fn model_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(MODEL_PATH)
}

/// The base of the system prompt the model was trained with (the format appends the
/// calculator's description and the call format).
pub const SYSTEM_PROMPT: &str =
    "Solve the arithmetic problem: call the calculator once, then answer with its result.";

/// How the nano agent describes the calculator to the model, in place of the
/// calculator's own manual (about 700 tokens of syntax and examples that a toy
/// model cannot use, and that would be most of every prompt it reads).
pub const CALCULATOR_DESCRIPTION: &str = "Evaluates one arithmetic expression exactly.";

/// The regular expression the nano calculator's `expression` must match: numbers
/// (whole or decimal) joined by `+ - * /` with one space on each side, and groups of
/// them in parentheses, one level deep. Every expression of the training problems
/// matches, and no text the calculator cannot parse does; the grammar
/// enforces it, so a model that miscopies still writes an expression that evaluates.
pub fn expression_pattern() -> String {
    let number = r"[0-9]+(\.[0-9]+)?";
    let group = format!(r"({number}|\({number}( [-+*/] {number})*\))");
    format!("^{group}( [-+*/] {group})*$")
}

/// The calculator of the nano agent: the real [`Calculator`] (same name, same
/// evaluation, same output text), described by [`CALCULATOR_DESCRIPTION`] with a
/// schema of one string matching [`expression_pattern`] and no descriptions.
///
/// ```
/// use taper_tool::ToolBox;
///
/// let mut tools = ToolBox::new();
/// tools.register(taper_nano::NanoCalculator::default())?;
/// assert_eq!(tools.tools()[0].name(), "calculator");
/// # Ok::<(), taper_tool::RegisterError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NanoCalculator {
    inner: Calculator,
}

#[async_trait]
impl DynTool for NanoCalculator {
    fn name(&self) -> &str {
        DynTool::name(&self.inner)
    }

    fn description(&self) -> &str {
        CALCULATOR_DESCRIPTION
    }

    fn schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"expression": {
                "type": "string",
                "pattern": expression_pattern(),
            }},
            "required": ["expression"],
            "additionalProperties": false
        })
    }

    async fn call_json(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        self.inner.call_json(args, ctx).await
    }
}

/// The most reasoning tokens per step (the training traces use under 40).
pub const THINKING_BUDGET: usize = 96;

/// The most answer tokens (the training answers use under 20).
pub const MAX_ANSWER_TOKENS: usize = 48;

/// Steps per run: one calculator call and the answer, with one spare.
pub const MAX_STEPS: usize = 3;

/// The context the agent reserves (a whole run takes a few hundred tokens).
pub const CONTEXT: usize = 1024;

/// The agent the model was trained for: [`SYSTEM_PROMPT`], [`NanoCalculator`], one call
/// per step, the budgets above and greedy sampling. Callers may override any option
/// before `build()` (for example `.sampling(SamplerConfig::default())` for the model
/// card's temperature 0.6).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let decoder = taper::Decoder::load(taper_nano::MODEL_PATH)?;
/// let agent = taper_nano::agent_builder(&decoder).build()?;
/// let answer = agent.run("A pen costs 3 dollars. What do 12 pens cost in total?").await?;
/// println!("{}", answer.text);
/// # Ok(())
/// # }
/// ```
pub fn agent_builder(decoder: &Decoder) -> AgentBuilder {
    Agent::builder(decoder)
        .tool(NanoCalculator::default())
        .system_prompt(SYSTEM_PROMPT)
        .parallel_calls(false)
        .max_steps(MAX_STEPS)
        .thinking_budget(THINKING_BUDGET)
        .max_answer_tokens(MAX_ANSWER_TOKENS)
        .context(CONTEXT)
        .sampling(SamplerConfig::greedy())
}

/// Whether `text` contains `number` as a whole number: not as part of a longer one
/// (`42` is in "is 42." but not in "142" or "42.5").
pub fn mentions_number(text: &str, number: &str) -> bool {
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    text.match_indices(number).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let mut after = text[i + number.len()..].chars();
        let next = after.next();
        let decimal_continues = next == Some('.') && digit(after.next());
        !digit(before) && before != Some('.') && !digit(next) && !decimal_continues
    })
}

#[cfg(test)]
mod tests {
    use taper_tool::DynTool as _;

    use super::{NanoCalculator, Split, generate, mentions_number};

    #[test]
    fn the_calculator_schema_takes_every_problem_expression_and_no_malformed_one() {
        let schema = NanoCalculator::default().schema();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let arguments = |e: &str| serde_json::json!({ "expression": e });
        let problems = [
            generate(0, Split::Train, 1000),
            generate(1, Split::HeldOut, 1000),
        ];
        for p in problems.iter().flatten() {
            assert!(
                validator.is_valid(&arguments(&p.expression)),
                "{}",
                p.expression
            );
        }
        // Expressions an undertrained model wrote, which the calculator refused.
        for bad in [
            "676 *  / 10",
            "22 * 2 + 22) / 200",
            "200 + 202 7",
            "6000 - 6000 Gives away 50000000",
            "(1 + (2 * 3))",
            "12*3",
            "",
        ] {
            assert!(!validator.is_valid(&arguments(bad)), "{bad}");
        }
    }

    #[test]
    fn numbers_match_whole() {
        assert!(mentions_number("The answer is 42 dollars.", "42"));
        assert!(mentions_number("42", "42"));
        assert!(mentions_number("It is 12.5.", "12.5"));
        assert!(!mentions_number("The answer is 142.", "42"));
        assert!(!mentions_number("The answer is 42.5.", "42"));
        assert!(!mentions_number("The answer is 0.42", "42"));
        assert!(!mentions_number("The answer is 421", "42"));
    }
}
