//! A tool of your own: a Rust struct for the arguments, whose doc comments become the
//! descriptions in the JSON schema the model reads and the grammar enforces, and an
//! async function that answers. The model cannot call it with arguments that do not
//! deserialize: an unknown city or a missing field is impossible to generate.
//!
//! ```sh
//! cargo run --release -p taper-examples --example custom_tool -- MODEL.gguf \
//!     "Should I take an umbrella in Lisbon tomorrow?"
//! ```

use std::process::ExitCode;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taper::{Agent, Tool, ToolContext, ToolError, async_trait};
use taper_examples::{ExampleArgs, exit};

/// The tool: a weather forecast from a fixed table (a real one would call a
/// service; the shape is the same).
struct Forecast;

/// Which forecast to look up.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ForecastArgs {
    /// The city.
    city: City,
    /// Days from today: 0 is today, 1 tomorrow, at most 6.
    #[schemars(range(max = 6))]
    days_ahead: u8,
}

/// The cities the forecast covers.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
enum City {
    Lisbon,
    Oslo,
    Nairobi,
}

/// What the tool returns to the model.
#[derive(Debug, Serialize)]
struct Weather {
    /// Degrees Celsius at noon.
    noon_celsius: i32,
    /// Chance of rain, percent.
    rain_percent: u8,
}

#[async_trait]
impl Tool for Forecast {
    type Args = ForecastArgs;
    type Output = Weather;

    fn name(&self) -> &str {
        "forecast"
    }

    fn description(&self) -> &str {
        "The weather forecast for a city: noon temperature and chance of rain."
    }

    async fn call(&self, args: ForecastArgs, _ctx: ToolContext) -> Result<Weather, ToolError> {
        let day = i32::from(args.days_ahead);
        Ok(match args.city {
            City::Lisbon => Weather {
                noon_celsius: 19 + day % 3,
                rain_percent: 60,
            },
            City::Oslo => Weather {
                noon_celsius: 4 - day % 2,
                rain_percent: 35,
            },
            City::Nairobi => Weather {
                noon_celsius: 25,
                rain_percent: 10 + 5 * args.days_ahead,
            },
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = ExampleArgs::parse("custom_tool")?;
    // The schema the model sees, derived from `ForecastArgs` and its doc comments.
    let schema = schemars::schema_for!(ForecastArgs);
    println!("schema: {}", serde_json::to_string(&schema)?);

    let decoder = args.load().await?;
    let agent = args
        .apply(Agent::builder(&decoder).tool(Forecast))
        .build()?;
    let answer = agent
        .run(args.task_or("Should I take an umbrella in Lisbon tomorrow?"))
        .await?;
    for call in answer.steps.iter().flat_map(|s| &s.calls) {
        println!(
            "call: {} {} -> {}",
            call.name,
            call.arguments,
            call.model_text()
        );
    }
    println!("answer: {}", answer.text.trim());
    Ok(())
}
