//! The calculator as a [`Tool`] the model can call.

use taper_tool::{Tool, ToolContext, ToolError, async_trait};

use crate::{Calculator, CalculatorArgs, DESCRIPTION};

/// The tool `calculator`: the model reads the [`Evaluation`](crate::Evaluation)'s
/// `Display` text, and a [`CalcError`](crate::CalcError) as
/// [`ToolError::Failed`] with the calculator's message (what is wrong and where).
///
/// An evaluation is bounded to milliseconds by the calculator's limits, so it
/// runs on the calling task.
///
/// ```
/// use std::time::Duration;
///
/// use serde_json::json;
/// use taper_calculator::Calculator;
/// use taper_tool::{CancellationToken, ToolBox};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut tools = ToolBox::new();
/// tools.register(Calculator::new())?;
/// let limit = Duration::from_secs(5);
/// let sum = tools
///     .call("calculator", json!({"expression": "0.1 + 0.2"}), limit, CancellationToken::new())
///     .await?;
/// assert_eq!(sum.text(), "= 3/10 (exactly 0.3)");
/// # Ok(())
/// # }
/// ```
#[async_trait]
impl Tool for Calculator {
    type Args = CalculatorArgs;
    type Output = String;

    fn name(&self) -> &str {
        "calculator"
    }

    fn description(&self) -> &str {
        DESCRIPTION
    }

    async fn call(&self, args: CalculatorArgs, _ctx: ToolContext) -> Result<String, ToolError> {
        self.evaluate(&args.expression)
            .map(|evaluation| evaluation.to_string())
            .map_err(ToolError::failed)
    }
}
