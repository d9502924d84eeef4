//! A math agent: the model reasons about a word problem and does the arithmetic with
//! the calculator tool instead of in its head.
//!
//! ```sh
//! cargo run --release -p taper-examples --example math_agent -- MODEL.gguf \
//!     "A box holds 24 pencils. A school buys 17 boxes and hands out 390 pencils. How many are left?"
//! ```

use std::process::ExitCode;

use taper::Agent;
use taper_calculator::Calculator;
use taper_examples::{ExampleArgs, exit};

const TASK: &str = "A shop sells notebooks at 3.75 dollars each. Maria buys 12 notebooks \
                    and pays with a 50 dollar note. How much change does she get?";

#[tokio::main]
async fn main() -> ExitCode {
    exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = ExampleArgs::parse("math_agent")?;
    let decoder = args.load().await?;
    let agent = args
        .apply(Agent::builder(&decoder).tool(Calculator::new()))
        .build()?;

    let answer = agent.run(args.task_or(TASK)).await?;

    for step in &answer.steps {
        for call in &step.calls {
            println!("step {}: {} {}", step.index, call.name, call.arguments);
            println!("  -> {}", call.model_text().replace('\n', "\n     "));
        }
    }
    println!("answer: {}", answer.text.trim());
    println!(
        "({} steps, {} tokens generated in {:.2} s)",
        answer.steps.len(),
        answer.usage.generated_tokens,
        answer.usage.decode_time.as_secs_f64()
    );
    Ok(())
}
