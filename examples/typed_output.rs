//! Typed output: `run_typed::<T>()` constrains the final answer to `T`'s JSON schema
//! and returns a `T`. The answer cannot fail to deserialize: the grammar only lets
//! the model write JSON that fits, ranges and enums included.
//!
//! ```sh
//! cargo run --release -p taper-examples --example typed_output -- MODEL.gguf \
//!     "Tickets cost 14 dollars for adults and 9 for children. What do 2 adults and 3 children pay?"
//! ```

use std::process::ExitCode;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taper::Agent;
use taper_calculator::Calculator;
use taper_examples::{ExampleArgs, exit};

/// A solved problem, as the program wants it.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Solution {
    /// The number that answers the question.
    answer: f64,
    /// The unit of the answer, e.g. "dollars".
    #[schemars(length(max = 20))]
    unit: String,
    /// How sure the model is.
    confidence: Confidence,
}

/// A coarse confidence.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Confidence {
    Low,
    Medium,
    High,
}

const TASK: &str = "Tickets cost 14 dollars for adults and 9 dollars for children. \
                    What do 2 adults and 3 children pay in total?";

#[tokio::main]
async fn main() -> ExitCode {
    exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = ExampleArgs::parse("typed_output")?;
    let decoder = args.load().await?;
    let agent = args
        .apply(Agent::builder(&decoder).tool(Calculator::new()))
        .build()?;

    let solution: Solution = agent.run_typed(args.task_or(TASK)).await?;

    println!("{solution:?}");
    println!("json: {}", serde_json::to_string(&solution)?);
    Ok(())
}
