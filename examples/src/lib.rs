//! Command-line handling shared by the taper examples: the model path, an optional
//! task, and the budgets that keep a run short.
//!
//! Every example takes `MODEL [TASK] [--max-steps N] [--think-budget N]
//! [--answer-budget N] [--seed S]`. MODEL is a GGUF file or a Hugging Face directory.
//! The budgets matter on small or random-weight models, which reason until a budget
//! stops them.

use std::path::PathBuf;
use std::process::ExitCode;

use taper::{AgentBuilder, Decoder, SamplerConfig};

/// What an example was asked to do.
#[derive(Debug, Clone)]
pub struct ExampleArgs {
    /// The model file or directory.
    pub model: PathBuf,
    /// The task, when one was given.
    pub task: Option<String>,
    /// Model turns per task.
    pub max_steps: Option<usize>,
    /// Reasoning tokens per step.
    pub think_budget: Option<usize>,
    /// Answer tokens before the answer is cut.
    pub answer_budget: Option<usize>,
    /// Sampler seed.
    pub seed: u64,
}

impl ExampleArgs {
    /// Reads the process arguments; the error is a usage line naming `example`.
    pub fn parse(example: &str) -> Result<ExampleArgs, String> {
        Self::parse_from(example, std::env::args().skip(1))
    }

    /// Reads `args` (without the program name).
    pub fn parse_from(
        example: &str,
        args: impl IntoIterator<Item = String>,
    ) -> Result<ExampleArgs, String> {
        let usage = || {
            format!(
                "usage: {example} MODEL [TASK] [--max-steps N] [--think-budget N] [--answer-budget N] [--seed S]"
            )
        };
        let mut positional = Vec::new();
        let mut parsed = ExampleArgs {
            model: PathBuf::new(),
            task: None,
            max_steps: None,
            think_budget: None,
            answer_budget: None,
            seed: 0,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| {
                args.next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("{name} needs a number\n{}", usage()))
            };
            match arg.as_str() {
                "--max-steps" => parsed.max_steps = Some(number(&arg)? as usize),
                "--think-budget" => parsed.think_budget = Some(number(&arg)? as usize),
                "--answer-budget" => parsed.answer_budget = Some(number(&arg)? as usize),
                "--seed" => parsed.seed = number(&arg)?,
                "-h" | "--help" => return Err(usage()),
                _ if arg.starts_with("--") => {
                    return Err(format!("unknown option {arg}\n{}", usage()));
                }
                _ => positional.push(arg),
            }
        }
        let mut positional = positional.into_iter();
        parsed.model = positional.next().ok_or_else(usage)?.into();
        parsed.task = positional.next();
        if positional.next().is_some() {
            return Err(usage());
        }
        Ok(parsed)
    }

    /// The task given, or `default`.
    pub fn task_or(&self, default: &str) -> String {
        self.task.clone().unwrap_or_else(|| default.to_string())
    }

    /// Loads the model on a blocking thread (loading reads the whole file).
    pub async fn load(&self) -> taper::Result<Decoder> {
        let path = self.model.clone();
        tokio::task::spawn_blocking(move || Decoder::load(path))
            .await
            .map_err(|e| taper::Error::ModelPanicked(e.to_string()))?
    }

    /// Applies the budgets and the seed to an agent builder.
    pub fn apply(&self, mut builder: AgentBuilder) -> AgentBuilder {
        builder = builder.sampling(SamplerConfig::default().seed(self.seed));
        if let Some(n) = self.max_steps {
            builder = builder.max_steps(n);
        }
        if let Some(n) = self.think_budget {
            builder = builder.thinking_budget(n);
        }
        if let Some(n) = self.answer_budget {
            builder = builder.max_answer_tokens(n);
        }
        builder
    }
}

/// Ends an example: prints `error: ...` with the chain of causes on failure.
pub fn exit(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExampleArgs, String> {
        ExampleArgs::parse_from("demo", args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn reads_the_model_the_task_and_the_budgets() {
        let a = parse(&[
            "m.gguf",
            "--think-budget",
            "8",
            "add 2 and 3",
            "--seed",
            "4",
        ])
        .unwrap();
        assert_eq!(a.model, PathBuf::from("m.gguf"));
        assert_eq!(a.task.as_deref(), Some("add 2 and 3"));
        assert_eq!(a.think_budget, Some(8));
        assert_eq!(a.seed, 4);
        assert_eq!(a.max_steps, None);
    }

    #[test]
    fn refuses_a_missing_model_a_bad_number_and_unknown_options() {
        assert!(parse(&[]).unwrap_err().starts_with("usage: demo MODEL"));
        assert!(
            parse(&["m", "--max-steps", "x"])
                .unwrap_err()
                .contains("needs a number")
        );
        assert!(
            parse(&["m", "--fast"])
                .unwrap_err()
                .contains("unknown option --fast")
        );
        assert!(parse(&["m", "a", "b"]).unwrap_err().starts_with("usage"));
    }
}
