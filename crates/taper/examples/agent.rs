//! Runs an agent with the calculator on a model file and streams what it does: the
//! reasoning (dimmed), each tool call and its result, the answer, and the usage.
//!
//! ```sh
//! cargo run --release -p taper --example agent -- MODEL.gguf "What is 17 * 23 + 4?"
//! ```
//!
//! Options: `--max-steps N` (default 6), `--think-budget N`, `--answer-budget N`,
//! `--seed S`. On a random-weight model the text is noise, but the loop, the grammar
//! and the tool calls are real.

use std::io::Write as _;
use std::process::ExitCode;

use futures_util::StreamExt;
use taper::{Agent, Decoder, Event, SamplerConfig};
use taper_calculator::Calculator;

struct Args {
    model: String,
    task: String,
    max_steps: usize,
    think_budget: Option<usize>,
    answer_budget: Option<usize>,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut args = Args {
        model: String::new(),
        task: String::new(),
        max_steps: 6,
        think_budget: None,
        answer_budget: None,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--max-steps" => args.max_steps = value("--max-steps")? as usize,
            "--think-budget" => args.think_budget = Some(value("--think-budget")? as usize),
            "--answer-budget" => args.answer_budget = Some(value("--answer-budget")? as usize),
            "--seed" => args.seed = value("--seed")?,
            _ => positional.push(arg),
        }
    }
    let [model, task] = <[String; 2]>::try_from(positional)
        .map_err(|_| "usage: agent MODEL TASK [--max-steps N] [--think-budget N] [--answer-budget N] [--seed S]".to_owned())?;
    args.model = model;
    args.task = task;
    Ok(args)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.model.clone();
    let decoder = tokio::task::spawn_blocking(move || Decoder::load(path)).await??;
    let mut builder = Agent::builder(&decoder)
        .tool(Calculator::new())
        .max_steps(args.max_steps)
        .context(decoder.max_context().unwrap_or(8192).min(8192))
        .sampling(SamplerConfig::default().seed(args.seed));
    if let Some(n) = args.think_budget {
        builder = builder.thinking_budget(n);
    }
    if let Some(n) = args.answer_budget {
        builder = builder.max_answer_tokens(n);
    }
    let agent = builder.build()?;
    let mut events = agent.stream(args.task);
    let mut out = std::io::stdout();
    while let Some(event) = events.next().await {
        match event? {
            Event::ThinkingDelta(text) => write!(out, "\x1b[2m{text}\x1b[0m")?,
            Event::AnswerDelta(text) => write!(out, "{text}")?,
            Event::ToolCallStarted {
                name, arguments, ..
            } => {
                writeln!(out, "\n-> {name} {arguments}")?;
            }
            Event::ToolResult { call, .. } => writeln!(out, "<- {}", call.model_text())?,
            Event::Usage(u) => writeln!(
                out,
                "\n\n[{} prompt tokens ({} prefilled), {} generated, {} forced; prefill {:.2} s, decode {:.2} s, grammar {:.3} s, tools {:.3} s]",
                u.prompt_tokens,
                u.prefilled_tokens,
                u.generated_tokens,
                u.forced_tokens,
                u.prefill_time.as_secs_f64(),
                u.decode_time.as_secs_f64(),
                u.grammar_time.as_secs_f64(),
                u.tool_time.as_secs_f64()
            )?,
            Event::Done(answer) => writeln!(out, "answer: {}", answer.text)?,
            _ => {}
        }
        out.flush()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
