//! The Python tool through a ToolBox, as the agent calls it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taper_python::{DESCRIPTION, Error, PythonTool, Sandbox};
use taper_tool::{CancellationToken, ToolBox, ToolError};

const LIMIT: Duration = Duration::from_secs(20);

async fn sandbox() -> Sandbox {
    Sandbox::builder()
        .wall_time_limit(Duration::from_secs(10))
        .cpu_time_limit(Duration::from_secs(5))
        .build()
        .await
        .expect("python3 is installed and the sandbox works on this machine")
}

async fn call(tools: &ToolBox, code: &str) -> Result<String, ToolError> {
    tools
        .call(
            "python",
            json!({ "code": code }),
            LIMIT,
            CancellationToken::new(),
        )
        .await
        .map(|output| output.into_text())
}

#[tokio::test]
async fn runs_code_one_shot() {
    let mut tools = ToolBox::new();
    tools
        .register(PythonTool::with_sandbox(sandbox().await))
        .expect("the schema is enforceable");
    let tool = tools.get("python").expect("registered as `python`");
    assert_eq!(tool.description(), DESCRIPTION);
    assert_eq!(tool.schema_value()["required"], json!(["code"]));

    assert_eq!(
        call(&tools, "print(6*7)").await.as_deref(),
        Ok("[stdout]\n42\n[status] the code finished")
    );
    let forgotten = call(&tools, "x = 1").await;
    assert!(forgotten.is_ok(), "{forgotten:?}");
    let error = call(&tools, "x").await.expect("an exception is an output");
    assert!(
        error.contains("NameError"),
        "one-shot runs share nothing: {error}"
    );

    let invalid = tools
        .call(
            "python",
            json!({ "source": "1" }),
            LIMIT,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&invalid, ToolError::InvalidArguments { message } if message.contains("unknown field `source`")),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn a_persistent_tool_keeps_variables_and_reports_interruptions() {
    let mut tools = ToolBox::new();
    tools
        .register(PythonTool::with_sandbox(sandbox().await).persistent())
        .expect("registers");
    assert!(call(&tools, "x = 20").await.is_ok());
    assert_eq!(
        call(&tools, "x + 22").await.as_deref(),
        Ok("[value]\n42\n[status] the code finished")
    );

    let started = Instant::now();
    let stopped = tools
        .call(
            "python",
            json!({ "code": "import time\ntime.sleep(60)" }),
            Duration::from_millis(500),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(stopped, Err(ToolError::Timeout { .. })),
        "{stopped:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let after = call(&tools, "print('again')").await.expect("runs");
    assert!(after.starts_with("[stdout]\nagain\n"), "{after}");
    assert!(
        after.contains("variables from earlier calls are gone"),
        "{after}"
    );
    let forgotten = call(&tools, "x").await.expect("an exception is an output");
    assert!(forgotten.contains("NameError"), "{forgotten}");
}

#[tokio::test]
async fn no_interpreter_is_an_error_before_registration() {
    let missing = Sandbox::builder()
        .interpreter("/nonexistent/python3")
        .build()
        .await
        .map(PythonTool::with_sandbox);
    assert!(
        matches!(missing, Err(Error::InterpreterNotFound { .. })),
        "{missing:?}"
    );
}

#[test]
fn args_schema_is_described() {
    let schema: Value = schemars::schema_for!(taper_python::PythonArgs).to_value();
    let described = schema["properties"]["code"]["description"]
        .as_str()
        .expect("the field's doc comment is its description");
    assert!(described.starts_with("Python 3 source code"), "{described}");
}
