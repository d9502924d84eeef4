//! The ToolBox end to end: registration checks, calls, errors, timeouts and cancellation.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use taper_grammar::SchemaError;
use taper_tool::{
    CancellationToken, DynamicTool, RegisterError, Tool, ToolBox, ToolContext, ToolError,
    async_trait,
};

const LIMIT: Duration = Duration::from_secs(10);
/// Far below the tools' sleeps, far above scheduling noise on a busy machine.
const QUICK: Duration = Duration::from_secs(3);

/// Looks up the weather.
struct Weather;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WeatherArgs {
    /// The city, e.g. "Lisbon".
    city: String,
    /// Days ahead, 0 for today.
    #[serde(default)]
    days: u8,
}

#[derive(Serialize)]
struct Forecast {
    city: String,
    days: u8,
    celsius: i32,
}

#[async_trait]
impl Tool for Weather {
    type Args = WeatherArgs;
    type Output = Forecast;

    fn name(&self) -> &str {
        "weather"
    }

    fn description(&self) -> &str {
        "Forecast for a city."
    }

    async fn call(&self, args: WeatherArgs, _ctx: ToolContext) -> Result<Forecast, ToolError> {
        if args.city.trim().is_empty() {
            return Err(ToolError::invalid_arguments("`city` is empty"));
        }
        Ok(Forecast {
            city: args.city,
            days: args.days,
            celsius: 21,
        })
    }
}

/// A tool whose behaviour the test picks.
struct Scripted {
    name: &'static str,
    behaviour: Behaviour,
    dropped: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Sleep(Duration),
    Fail,
    Panic,
    Render,
}

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

/// Sets its flag when dropped: tells whether a call's future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Scripted {
    fn new(name: &'static str, behaviour: Behaviour) -> (Self, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let tool = Scripted {
            name,
            behaviour,
            dropped: Arc::clone(&dropped),
        };
        (tool, dropped)
    }
}

#[async_trait]
impl Tool for Scripted {
    type Args = NoArgs;
    type Output = Vec<u32>;

    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        "A scripted tool."
    }

    async fn call(&self, _args: NoArgs, _ctx: ToolContext) -> Result<Vec<u32>, ToolError> {
        let _flag = DropFlag(Arc::clone(&self.dropped));
        match self.behaviour {
            Behaviour::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                Ok(vec![1])
            }
            Behaviour::Fail => Err(ToolError::failed("the disk is full")),
            Behaviour::Panic => panic!("index out of range"),
            Behaviour::Render => Ok(vec![1, 2, 3]),
        }
    }

    fn render(&self, output: &Vec<u32>) -> Option<String> {
        match self.behaviour {
            Behaviour::Render => Some(format!("{} numbers", output.len())),
            _ => None,
        }
    }
}

/// A tool whose arguments include a set, which the grammar cannot enforce.
struct Tagger;

#[derive(Deserialize, JsonSchema)]
struct TaggerArgs {
    /// Distinct tags.
    tags: HashSet<String>,
}

#[async_trait]
impl Tool for Tagger {
    type Args = TaggerArgs;
    type Output = usize;

    fn name(&self) -> &str {
        "tagger"
    }

    fn description(&self) -> &str {
        "Counts tags."
    }

    async fn call(&self, args: TaggerArgs, _ctx: ToolContext) -> Result<usize, ToolError> {
        Ok(args.tags.len())
    }
}

fn echo(name: &str, schema: Value) -> DynamicTool {
    DynamicTool::new(name, "Echoes.", schema, |args, _ctx| async move {
        Ok::<Value, ToolError>(args)
    })
}

async fn call(tools: &ToolBox, name: &str, args: Value) -> Result<String, ToolError> {
    tools
        .call(name, args, LIMIT, CancellationToken::new())
        .await
        .map(|output| output.into_text())
}

#[test]
fn derived_schema_carries_doc_comments() {
    let mut tools = ToolBox::new();
    tools.register(Weather).expect("a derived schema registers");
    let tool = tools.get("weather").expect("registered");
    assert_eq!(tool.description(), "Forecast for a city.");
    let schema = tool.schema_value();
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["properties"]["city"]["description"],
        "The city, e.g. \"Lisbon\"."
    );
    assert_eq!(
        schema["properties"]["days"]["description"],
        "Days ahead, 0 for today."
    );
    assert_eq!(schema["required"], json!(["city"]));
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn duplicate_and_invalid_names_are_rejected() {
    let mut tools = ToolBox::new();
    tools.register(Weather).expect("first registration");
    let duplicate = tools.register(echo("weather", json!({"type": "object"})));
    assert_eq!(
        duplicate.err(),
        Some(RegisterError::DuplicateName {
            name: "weather".into()
        })
    );
    for bad in [
        "",
        "9lives",
        "_private",
        "with space",
        "a.b",
        "naïve",
        &"n".repeat(65),
    ] {
        match tools.register(echo(bad, json!({"type": "object"}))) {
            Err(RegisterError::InvalidName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    tools
        .register(echo("Weather", json!({"type": "object"})))
        .expect("names are case-sensitive");
    tools
        .register(echo(&"n".repeat(64), json!({"type": "object"})))
        .expect("64 characters is the limit");
    let names: Vec<&str> = tools.tools().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["weather", "Weather", &"n".repeat(64)]);
}

#[test]
fn unenforceable_schemas_are_rejected_at_registration() {
    let mut tools = ToolBox::new();
    let error = tools
        .register(Tagger)
        .expect_err("a set cannot be enforced");
    match &error {
        RegisterError::UnenforceableSchema {
            name,
            source: SchemaError::Unsupported { keyword, path, .. },
        } => {
            assert_eq!(name, "tagger");
            assert_eq!(keyword, "uniqueItems");
            assert_eq!(path, "/properties/tags");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("uniqueItems"), "{error}");

    let negated = echo(
        "negated",
        json!({"type": "object", "properties": {"x": {"not": {"type": "string"}}}}),
    );
    assert!(matches!(
        tools.register(negated),
        Err(RegisterError::UnenforceableSchema {
            source: SchemaError::Unsupported { ref keyword, .. },
            ..
        }) if keyword == "not"
    ));
    assert!(
        tools.is_empty(),
        "failed registrations leave nothing behind"
    );
}

#[tokio::test]
async fn typed_tool_output_is_compact_json() {
    let mut tools = ToolBox::new();
    tools.register(Weather).expect("registers");
    let output = call(&tools, "weather", json!({"city": "Lisbon", "days": 2})).await;
    assert_eq!(
        output.as_deref(),
        Ok(r#"{"city":"Lisbon","days":2,"celsius":21}"#)
    );
}

#[tokio::test]
async fn dynamic_tool_round_trip() {
    let schema = json!({
        "type": "object",
        "properties": {
            "word": { "type": "string", "description": "A word." },
            "times": { "type": "integer", "minimum": 1, "maximum": 5 }
        },
        "required": ["word", "times"],
        "additionalProperties": false
    });
    let repeat = DynamicTool::new(
        "repeat",
        "Repeats a word.",
        schema.clone(),
        |args, _ctx| async move {
            let (Some(word), Some(times)) = (args["word"].as_str(), args["times"].as_u64()) else {
                return Err(ToolError::invalid_arguments(
                    "`word` and `times` are required",
                ));
            };
            let times = usize::try_from(times).map_err(ToolError::invalid_arguments)?;
            Ok(Value::String(word.repeat(times)))
        },
    );
    let mut tools = ToolBox::new();
    tools.register(repeat).expect("registers");
    let registered = tools.get("repeat").expect("registered");
    assert_eq!(registered.description(), "Repeats a word.");
    assert_eq!(
        registered.schema_value()["properties"],
        schema["properties"]
    );

    let output = tools
        .call(
            "repeat",
            json!({"word": "ab", "times": 3}),
            LIMIT,
            CancellationToken::new(),
        )
        .await
        .expect("runs");
    assert_eq!(output.text(), "ababab");
    assert_eq!(output.value(), &json!("ababab"));
    assert_eq!(
        call(&tools, "repeat", json!({"word": "ab"})).await,
        Err(ToolError::invalid_arguments(
            "`word` and `times` are required"
        ))
    );
}

#[tokio::test]
async fn invalid_arguments_are_readable() {
    let mut tools = ToolBox::new();
    tools.register(Weather).expect("registers");
    let missing = call(&tools, "weather", json!({})).await.unwrap_err();
    assert_eq!(
        missing,
        ToolError::InvalidArguments {
            message: "missing field `city`".into()
        }
    );
    assert_eq!(
        missing.to_model_text(),
        "error: invalid arguments: missing field `city`"
    );

    let wrong_type = call(&tools, "weather", json!({"city": "Lisbon", "days": 300}))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong_type, ToolError::InvalidArguments { message } if message.contains("300")),
        "{wrong_type:?}"
    );
    let unknown_field = call(&tools, "weather", json!({"city": "Oslo", "when": "now"}))
        .await
        .unwrap_err();
    assert!(
        unknown_field
            .to_model_text()
            .contains("unknown field `when`"),
        "{unknown_field}"
    );
    let semantic = call(&tools, "weather", json!({"city": " "})).await;
    assert_eq!(
        semantic,
        Err(ToolError::invalid_arguments("`city` is empty"))
    );
}

#[tokio::test]
async fn unknown_tool() {
    let tools = ToolBox::new();
    let error = call(&tools, "nope", json!({})).await.unwrap_err();
    assert_eq!(error.to_model_text(), "error: unknown tool `nope`");
}

#[tokio::test]
async fn failing_and_panicking_tools_give_failed() {
    let mut tools = ToolBox::new();
    tools
        .register(Scripted::new("fail", Behaviour::Fail).0)
        .expect("registers");
    tools
        .register(Scripted::new("panic", Behaviour::Panic).0)
        .expect("registers");
    let failed = call(&tools, "fail", json!({})).await.unwrap_err();
    assert_eq!(failed, ToolError::failed("the disk is full"));
    assert_eq!(failed.to_model_text(), "error: the disk is full");

    let panicked = call(&tools, "panic", json!({})).await.unwrap_err();
    assert_eq!(
        panicked.to_model_text(),
        "error: the tool crashed (panic: index out of range)"
    );
}

#[tokio::test]
async fn render_replaces_the_model_text() {
    let mut tools = ToolBox::new();
    tools
        .register(Scripted::new("render", Behaviour::Render).0)
        .expect("registers");
    let output = tools
        .call("render", json!({}), LIMIT, CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(output.text(), "3 numbers");
    assert_eq!(output.value(), &json!([1, 2, 3]));
}

#[tokio::test]
async fn a_slow_tool_times_out_quickly() {
    let (tool, dropped) = Scripted::new("slow", Behaviour::Sleep(Duration::from_secs(60)));
    let mut tools = ToolBox::new();
    tools.register(tool).expect("registers");
    let limit = Duration::from_millis(50);
    let started = Instant::now();
    let error = tools
        .call("slow", json!({}), limit, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(error, ToolError::Timeout { limit });
    assert_eq!(
        error.to_model_text(),
        "error: the tool timed out after 0.05 s"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the call's future was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_tool_quickly() {
    let (tool, dropped) = Scripted::new("slow", Behaviour::Sleep(Duration::from_secs(60)));
    let mut tools = ToolBox::new();
    tools.register(tool).expect("registers");
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let error = tools
        .call("slow", json!({}), Duration::from_secs(60), cancel.clone())
        .await
        .unwrap_err();
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(error, ToolError::Cancelled);
    assert_eq!(error.to_model_text(), "error: the call was cancelled");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the call's future was dropped"
    );

    let again = tools.call("slow", json!({}), LIMIT, cancel).await;
    assert_eq!(
        again,
        Err(ToolError::Cancelled),
        "an already cancelled token"
    );
}

#[tokio::test]
async fn the_context_token_is_cancelled_with_the_call() {
    let seen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&seen);
    let watcher = DynamicTool::new(
        "watch",
        "Waits.",
        json!({"type": "object"}),
        move |_args, ctx| {
            let flag = Arc::clone(&flag);
            async move {
                let token = ctx.cancellation_token().clone();
                tokio::spawn(async move {
                    token.cancelled().await;
                    flag.store(true, Ordering::SeqCst);
                });
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Value::Null)
            }
        },
    );
    let mut tools = ToolBox::new();
    tools.register(watcher).expect("registers");
    let error = tools
        .call(
            "watch",
            json!({}),
            Duration::from_millis(50),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(error, Err(ToolError::Timeout { .. })));
    let started = Instant::now();
    while !seen.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < QUICK,
            "spawned work never saw the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
