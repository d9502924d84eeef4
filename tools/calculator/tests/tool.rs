//! The calculator through a ToolBox, as the agent calls it.

use std::time::Duration;

use serde_json::{Value, json};
use taper_calculator::{Calculator, DESCRIPTION};
use taper_tool::{CancellationToken, ToolBox, ToolError};

fn tools() -> ToolBox {
    let mut tools = ToolBox::new();
    tools
        .register(Calculator::new())
        .expect("the calculator's schema is enforceable");
    tools
}

async fn call(tools: &ToolBox, args: Value) -> Result<String, ToolError> {
    tools
        .call(
            "calculator",
            args,
            Duration::from_secs(10),
            CancellationToken::new(),
        )
        .await
        .map(|output| output.into_text())
}

#[test]
fn registers_with_its_description_and_schema() {
    let tools = tools();
    let tool = tools.get("calculator").expect("registered as `calculator`");
    assert_eq!(tool.description(), DESCRIPTION);
    let schema = tool.schema_value();
    assert_eq!(schema["required"], json!(["expression"]));
    assert_eq!(schema["additionalProperties"], false);
    let described = schema["properties"]["expression"]["description"]
        .as_str()
        .expect("the field's doc comment is its description");
    assert!(
        described.starts_with("One arithmetic expression"),
        "{described}"
    );
}

#[tokio::test]
async fn computes_exactly() {
    let tools = tools();
    assert_eq!(
        call(&tools, json!({"expression": "0.1 + 0.2"}))
            .await
            .as_deref(),
        Ok("= 3/10 (exactly 0.3)")
    );
    assert_eq!(
        call(&tools, json!({"expression": "17 * 23"}))
            .await
            .as_deref(),
        Ok("= 391")
    );
}

#[tokio::test]
async fn errors_reach_the_model_verbatim() {
    let tools = tools();
    let division = call(&tools, json!({"expression": "1 / (2 - 2)"}))
        .await
        .unwrap_err();
    assert_eq!(
        division,
        ToolError::failed("division by zero at position 2")
    );
    assert_eq!(
        division.to_model_text(),
        "error: division by zero at position 2"
    );

    let syntax = call(&tools, json!({"expression": "2 +* 3"}))
        .await
        .unwrap_err();
    assert!(
        syntax
            .to_model_text()
            .starts_with("error: syntax error at position 3"),
        "{syntax}"
    );

    let missing = call(&tools, json!({"expr": "1"})).await.unwrap_err();
    assert!(
        matches!(&missing, ToolError::InvalidArguments { message } if message.contains("unknown field `expr`")),
        "{missing:?}"
    );
}
