//! What `run` and `chat` share: the model and agent options, loading the model
//! (with a progress bar on a terminal) and building the agent. Without `--model`
//! they run the built-in model (`taper-nano`) with the agent it was trained for.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use taper::{Agent, Decoder, SamplerConfig, ToolBox, ToolChoice};
use taper_calculator::Calculator;
use taper_python::PythonTool;

use crate::error::CliError;

/// The tools `--tool` can name.
const KNOWN_TOOLS: [&str; 2] = ["calculator", "python"];

/// Which model to load.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model: a GGUF file, or a Hugging Face directory (config.json,
    /// safetensors and tokenizer.json) [default: the built-in toy model, which
    /// solves arithmetic word problems with the calculator].
    #[arg(long, value_name = "FILE.gguf|DIR")]
    pub model: Option<PathBuf>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// A directory where the weights repacked at load are kept, so that later
    /// runs load the same model in about a second (costs disk space about the
    /// model file's size; see `LoadOptions::weight_cache`).
    #[arg(long, value_name = "DIR")]
    pub weight_cache: Option<PathBuf>,
}

/// How the agent runs.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A tool the model may call: calculator or python (repeat for several).
    #[arg(long = "tool", value_name = "NAME")]
    pub tools: Vec<String>,
    /// Whether the model may (auto), must (required: every step but the last) or
    /// must not (none) call tools.
    #[arg(long, value_enum, default_value = "auto")]
    pub tool_choice: ToolChoiceArg,
    /// Model turns per task; the last one may only answer [default: 8; 3 for the
    /// built-in model].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_steps: Option<u32>,
    /// Reasoning tokens per step, after which the reasoning is closed.
    #[arg(long, value_name = "N")]
    pub think_budget: Option<usize>,
    /// Tokens the answer may take before it is cut.
    #[arg(long, value_name = "N")]
    pub answer_budget: Option<usize>,
    /// Sampling temperature; 0 always takes the most likely token [default: 0.6;
    /// 0 for the built-in model].
    #[arg(long, value_parser = parse_temperature)]
    pub temperature: Option<f32>,
    /// Seed of the sampler: the same seed gives the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Context of the conversation in tokens [default: the model's, capped by the
    /// memory available].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub context: Option<u64>,
    /// Text that opens the system prompt, before the tool descriptions.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
}

/// `--tool-choice`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ToolChoiceArg {
    /// The model decides at every step.
    Auto,
    /// Every step but the last calls a tool.
    Required,
    /// No tool calls.
    None,
}

/// A temperature: a finite number, at least 0.
fn parse_temperature(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("`{text}` is not a temperature (a number >= 0)")),
    }
}

/// A tool `--tool` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolName {
    Calculator,
    Python,
}

/// Checks the `--tool` names (duplicates count once).
fn tool_names(names: &[String]) -> Result<Vec<ToolName>, CliError> {
    let mut tools = Vec::new();
    for name in names {
        let tool = match name.as_str() {
            "calculator" => ToolName::Calculator,
            "python" => ToolName::Python,
            _ => {
                return Err(CliError::UnknownTool {
                    name: name.clone(),
                    known: KNOWN_TOOLS.join(", "),
                });
            }
        };
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    Ok(tools)
}

/// Everything checked before the model loads: the model path and the tools.
pub struct Plan {
    model: PathBuf,
    /// The built-in model (no `--model`): its own agent configuration.
    nano: bool,
    tokenizer: Option<PathBuf>,
    weight_cache: Option<PathBuf>,
    tools: Vec<ToolName>,
    context: Option<u64>,
}

impl Plan {
    /// Checks the usage first (a model, known tools), so that a mistake is
    /// reported before anything slow starts. Without `--model`, the built-in model,
    /// which knows only the calculator.
    pub fn new(model: &ModelArgs, agent: &AgentArgs) -> Result<Plan, CliError> {
        Plan::with_built_in(model, agent, taper_nano::model_path())
    }

    /// [`Plan::new`] with the built-in model looked for at `embedded`.
    fn with_built_in(
        model: &ModelArgs,
        agent: &AgentArgs,
        embedded: PathBuf,
    ) -> Result<Plan, CliError> {
        let tools = tool_names(&agent.tools)?;
        let (path, nano) = match &model.model {
            Some(path) => (path.clone(), false),
            None => {
                if let Some(name) = agent.tools.iter().find(|n| n.as_str() != "calculator") {
                    return Err(CliError::NanoTool { name: name.clone() });
                }
                if !embedded.is_file() {
                    return Err(CliError::NoModel { embedded });
                }
                (embedded, true)
            }
        };
        Ok(Plan {
            model: path,
            nano,
            tokenizer: model.tokenizer.clone(),
            weight_cache: model.weight_cache.clone(),
            tools,
            context: agent.context,
        })
    }

    /// Loads the model, with a progress bar when standard error is a terminal.
    /// Blocking. A context (or weights) that cannot fit in memory is refused first,
    /// with the memory table.
    pub fn load(&self) -> Result<Decoder, CliError> {
        crate::info::check_context(&self.model, self.context)?;
        let mut builder = Decoder::builder(&self.model);
        if let Some(tokenizer) = &self.tokenizer {
            builder = builder.tokenizer(tokenizer);
        }
        if let Some(dir) = &self.weight_cache {
            builder = builder.weight_cache(dir);
        }
        let bar = crate::progress::bar(&format!("loading {}", self.model.display()));
        if let Some(bar) = &bar {
            let bar = bar.clone();
            builder = builder.progress(move |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
        }
        let decoder = builder.load();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        decoder.map_err(|source| CliError::Load {
            path: self.model.clone(),
            source,
        })
    }

    /// Makes the planned tools (the Python sandbox is checked here, before the
    /// model loads); none for the built-in model, whose agent brings its own
    /// calculator.
    pub async fn tools(&self) -> Result<ToolBox, CliError> {
        let mut tools = ToolBox::new();
        if self.nano {
            return Ok(tools);
        }
        for tool in &self.tools {
            let registered = match tool {
                ToolName::Calculator => tools.register(Calculator::new()),
                ToolName::Python => tools.register(
                    PythonTool::new()
                        .await
                        .map_err(CliError::Python)?
                        .persistent(),
                ),
            };
            registered.map_err(|e| CliError::Agent(e.into()))?;
        }
        Ok(tools)
    }

    /// Builds the agent on the loaded model with `tools` and the options of
    /// `args`: for the built-in model, the configuration it was trained for
    /// ([`taper_nano::agent_builder`]) with the options given on top.
    pub fn build_agent(
        &self,
        decoder: &Decoder,
        tools: ToolBox,
        args: &AgentArgs,
    ) -> Result<Agent, CliError> {
        let mut builder = if self.nano {
            taper_nano::agent_builder(decoder)
        } else {
            Agent::builder(decoder)
                .tools(tools)
                .max_steps(8)
                .sampling(SamplerConfig::default().seed(args.seed))
        };
        builder = builder.tool_choice(match args.tool_choice {
            ToolChoiceArg::Auto => ToolChoice::Auto,
            ToolChoiceArg::Required => ToolChoice::Required,
            ToolChoiceArg::None => ToolChoice::None,
        });
        if let Some(n) = args.max_steps {
            builder = builder.max_steps(n as usize);
        }
        if let Some(t) = args.temperature {
            builder = builder.sampling(SamplerConfig::default().temperature(t).seed(args.seed));
        }
        if let Some(n) = args.think_budget {
            builder = builder.thinking_budget(n);
        }
        if let Some(n) = args.answer_budget {
            builder = builder.max_answer_tokens(n);
        }
        if let Some(n) = args.context {
            builder = builder.context(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(text) = &args.system {
            builder = builder.system_prompt(text.clone());
        }
        builder.build().map_err(CliError::Agent)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The options `run` takes, to parse them as the command line gives them.
    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn without_a_model_the_built_in_one_is_planned_or_its_absence_is_a_usage_error() {
        let args = Run::parse_from(["taper", "--tool", "calculator"]);
        let missing = std::env::temp_dir().join("taper-no-such-model.gguf");
        let err = Plan::with_built_in(&args.model, &args.agent, missing.clone())
            .err()
            .expect("a missing built-in model is an error");
        assert!(matches!(&err, CliError::NoModel { embedded } if *embedded == missing));
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("a model path is needed"), "{text}");
        assert!(
            text.contains("taper-no-such-model.gguf, is missing"),
            "{text}"
        );

        let plan = Plan::new(&args.model, &args.agent).expect("the built-in model is committed");
        assert!(plan.nano);
        assert_eq!(plan.model, taper_nano::model_path());
    }
}
