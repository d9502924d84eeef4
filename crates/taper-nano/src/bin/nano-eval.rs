//! Evaluates the nano model: runs the agent (calculator, the trained system prompt
//! and budgets) on held-out problems and prints accuracy, tool use and speed.

use std::path::PathBuf;

use clap::Parser;
use taper::{Decoder, SamplerConfig};
use taper_nano::eval::{Report, solve};
use taper_nano::{Split, agent_builder, generate};

/// Runs the nano agent on the held-out split.
#[derive(Parser)]
struct Args {
    /// The model (GGUF or Hugging Face directory).
    #[arg(long, default_value = taper_nano::MODEL_PATH)]
    model: PathBuf,
    /// Number of held-out problems.
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Generator seed of the held-out problems.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sample at this temperature (top-p 0.95, seed 0) instead of greedily.
    #[arg(long)]
    temperature: Option<f32>,
    /// Ask the problems in chats of this many turns (each turn on the conversation
    /// before it) and print the accuracy of each turn too.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    chat: u16,
    /// Print every run that is not correct.
    #[arg(long)]
    verbose: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let decoder = Decoder::load(&args.model)?;
    let mut builder = agent_builder(&decoder);
    let sampling = match args.temperature {
        Some(t) => {
            builder = builder.sampling(SamplerConfig::default().temperature(t));
            format!("temperature {t}, top-p 0.95, seed 0")
        }
        None => "greedy (temperature 0)".to_owned(),
    };
    let agent = builder.build()?;
    let mut session = agent.session()?;
    let chat = usize::from(args.chat);
    let mut report = Report::default();
    let mut by_turn = vec![Report::default(); chat];
    for (i, problem) in generate(args.seed, Split::HeldOut, args.n)
        .iter()
        .enumerate()
    {
        let turn = i % chat;
        if turn == 0 {
            session.clear();
        }
        let outcome = solve(&mut session, problem).await;
        if args.verbose && !outcome.correct {
            println!(
                "- {}\n  expected {} = {}",
                problem.text, problem.expression, problem.answer
            );
            match &outcome.answer {
                Ok(a) => {
                    for step in &a.steps {
                        println!("  think: {:?}", step.thinking);
                        for call in &step.calls {
                            println!("  call: {} -> {}", call.arguments, call.model_text());
                        }
                    }
                    println!("  answer: {:?}", a.text);
                }
                Err(e) => println!("  error: {e}"),
            }
        }
        report.add(&outcome);
        by_turn[turn].add(&outcome);
    }
    let asked = if chat == 1 {
        "each on its own".to_owned()
    } else {
        format!("in chats of {chat} turns")
    };
    println!(
        "model {}, {} held-out problems (seed {}) {asked}, sampling {sampling}\n",
        args.model.display(),
        args.n,
        args.seed
    );
    print!("{}", report.table());
    if chat > 1 {
        for (turn, r) in by_turn.iter().enumerate() {
            println!("turn {} of {chat}  {}", turn + 1, r.accuracy());
        }
    }
    Ok(())
}
