//! The reason-act loop, exactly, on a scripted model double: calls, tool errors,
//! timeouts, parallel calls, max steps, repetition, cancellation, context full,
//! streaming, typed answers and sessions.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{FORMATS, calls, script, script_with_delay, scripted};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use taper::{
    Agent, AgentBuilder, ChatFormat, DynamicTool, Error, Event, Message, SamplerConfig, Tool,
    ToolContext, ToolError, async_trait,
};

/// Adds two integers, counting its calls.
struct Add(Arc<AtomicUsize>);

#[derive(Deserialize, JsonSchema)]
struct AddArgs {
    /// The first summand.
    a: i64,
    /// The second summand.
    b: i64,
}

#[async_trait]
impl Tool for Add {
    type Args = AddArgs;
    type Output = i64;

    fn name(&self) -> &str {
        "add"
    }

    fn description(&self) -> &str {
        "Adds two integers."
    }

    async fn call(&self, args: AddArgs, _ctx: ToolContext) -> Result<i64, ToolError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        if args.a < 0 {
            return Err(ToolError::invalid_arguments("`a` must not be negative"));
        }
        args.a
            .checked_add(args.b)
            .ok_or_else(|| ToolError::failed("the sum overflows"))
    }
}

fn text_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": false
    })
}

/// Waits until `n` calls are running at once (or fails after 5 s).
fn meet(n: usize) -> DynamicTool {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    DynamicTool::new(
        "meet",
        "Waits for the other calls.",
        text_schema(),
        move |args, _ctx| {
            let barrier = Arc::clone(&barrier);
            async move {
                tokio::time::timeout(Duration::from_secs(5), barrier.wait())
                    .await
                    .map_err(|_| ToolError::failed("the other calls never came"))?;
                Ok(args["text"].clone())
            }
        },
    )
}

/// Never returns; sets `cancelled` when its call is cancelled.
fn hang(cancelled: Arc<AtomicBool>) -> DynamicTool {
    DynamicTool::new(
        "hang",
        "Never finishes.",
        text_schema(),
        move |_args, ctx: ToolContext| {
            let cancelled = Arc::clone(&cancelled);
            async move {
                let token = ctx.cancellation_token().clone();
                tokio::spawn(async move {
                    token.cancelled().await;
                    cancelled.store(true, Ordering::SeqCst);
                });
                std::future::pending::<()>().await;
                Ok(Value::Null)
            }
        },
    )
}

fn agent(format: ChatFormat) -> AgentBuilder {
    Agent::builder(&scripted(format)).sampling(SamplerConfig::greedy())
}

fn task(name: &str, format: ChatFormat) -> String {
    format!("{name} ({format:?})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_tools() {
    for format in FORMATS {
        let task = task("Say hello.", format);
        script(
            &task,
            &["A greeting.</think>\n\nHello, world!<｜end▁of▁sentence｜>"],
        );
        let agent = agent(format).build().unwrap();
        let answer = agent.run(&task).await.unwrap();
        assert_eq!(answer.text, "Hello, world!", "{format:?}");
        assert_eq!(answer.thinking, "A greeting.");
        assert_eq!(answer.steps.len(), 1);
        assert!(answer.steps[0].calls.is_empty());
        let usage = answer.usage;
        assert_eq!(usage.prefilled_tokens, usage.prompt_tokens);
        assert!(usage.generated_tokens > 3);
        assert_eq!(
            usage.forward_passes,
            1 + usage.generated_tokens - 1,
            "one prefill pass, then one pass per token but the last: {usage:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_tool_and_answers_from_its_output() {
    for format in FORMATS {
        let task = task("What is 2+3?", format);
        let step0 = format!(
            "I will add.</think>\n\n{}",
            calls(&[("add", r#"{"a": 2, "b": 3}"#)])
        );
        script(
            &task,
            &[&step0, "The tool said 5.</think>\n\n5<｜end▁of▁sentence｜>"],
        );
        let count = Arc::new(AtomicUsize::new(0));
        let agent = agent(format).tool(Add(Arc::clone(&count))).build().unwrap();
        let mut session = agent.session().unwrap();
        let answer = session.run(&task).await.unwrap();
        assert_eq!(answer.text, "5", "{format:?}");
        assert_eq!(answer.steps.len(), 2);
        let call = &answer.steps[0].calls[0];
        assert_eq!(call.name, "add");
        assert_eq!(call.arguments, json!({"a": 2, "b": 3}));
        assert_eq!(call.model_text(), "5");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // The history holds the call and its output as the format renders them.
        assert!(matches!(&session.history()[2], Message::Tool(t) if t == "5"));
        let rendered = session.rendered_history();
        assert!(rendered.contains("add\n```json\n{\"a\":2,\"b\":3}\n```"));
        assert!(rendered.contains("<｜tool▁output▁begin｜>5<｜tool▁output▁end｜>"));
        // The second step prefilled only the call block and its output, not the prompt.
        let step1 = answer.steps[1].usage;
        assert!(
            step1.prefilled_tokens < step1.prompt_tokens / 2,
            "{step1:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_reach_the_model_as_outputs() {
    for format in FORMATS {
        let task = task("Add -1 and 2, then fail.", format);
        let step0 = format!(
            "Try.</think>\n\n{}",
            calls(&[
                ("add", r#"{"a": -1, "b": 2}"#),
                ("add", r#"{"a": 9223372036854775807, "b": 1}"#)
            ])
        );
        script(
            &task,
            &[&step0, "Both failed.</think>\n\nNo.<｜end▁of▁sentence｜>"],
        );
        let agent = agent(format).tool(Add(Arc::default())).build().unwrap();
        let mut session = agent.session().unwrap();
        let answer = session.run(&task).await.unwrap();
        let records = &answer.steps[0].calls;
        assert_eq!(records.len(), 2, "{format:?}");
        assert_eq!(
            records[0].result,
            Err(ToolError::invalid_arguments("`a` must not be negative"))
        );
        assert_eq!(records[1].model_text(), "error: the sum overflows");
        let outputs: Vec<&Message> = session
            .history()
            .iter()
            .filter(|m| matches!(m, Message::Tool(_)))
            .collect();
        assert_eq!(
            outputs,
            [
                &Message::Tool("error: invalid arguments: `a` must not be negative".into()),
                &Message::Tool("error: the sum overflows".into())
            ]
        );
        assert_eq!(answer.text, "No.");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_hangs_times_out() {
    let format = ChatFormat::R1Qwen3;
    let task = task("Hang.", format);
    let step0 = format!("Go.</think>\n\n{}", calls(&[("hang", r#"{"text": "x"}"#)]));
    script(
        &task,
        &[
            &step0,
            "It timed out.</think>\n\nSorry.<｜end▁of▁sentence｜>",
        ],
    );
    let cancelled = Arc::new(AtomicBool::new(false));
    let agent = agent(format)
        .tool(hang(Arc::clone(&cancelled)))
        .tool_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let answer = agent.run(&task).await.unwrap();
    let record = &answer.steps[0].calls[0];
    assert_eq!(
        record.result,
        Err(ToolError::Timeout {
            limit: Duration::from_millis(200)
        })
    );
    assert_eq!(record.model_text(), "error: the tool timed out after 0.2 s");
    assert_eq!(answer.text, "Sorry.");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the tool saw its cancellation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_run_concurrently() {
    for format in FORMATS {
        let task = task("Meet twice.", format);
        let step0 = format!(
            "Both.</think>\n\n{}",
            calls(&[
                ("meet", r#"{"text": "one"}"#),
                ("meet", r#"{"text": "two"}"#)
            ])
        );
        script(
            &task,
            &[&step0, "Met.</think>\n\nDone.<｜end▁of▁sentence｜>"],
        );
        let agent = agent(format).tool(meet(2)).build().unwrap();
        let answer = agent.run(&task).await.unwrap();
        let texts: Vec<String> = answer.steps[0]
            .calls
            .iter()
            .map(|c| c.model_text())
            .collect();
        // Run one after the other, the first call would wait for the second forever.
        assert_eq!(texts, ["one", "two"], "{format:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_parallel_calls_a_step_makes_one_call() {
    let format = ChatFormat::R1Qwen3;
    let task = task("Add twice.", format);
    let step0 = format!(
        "Both.</think>\n\n{}",
        calls(&[
            ("add", r#"{"a": 1, "b": 1}"#),
            ("add", r#"{"a": 2, "b": 2}"#)
        ])
    );
    script(&task, &[&step0, "Ok.</think>\n\n2<｜end▁of▁sentence｜>"]);
    let count = Arc::new(AtomicUsize::new(0));
    let agent = agent(format)
        .tool(Add(Arc::clone(&count)))
        .parallel_calls(false)
        .build()
        .unwrap();
    let answer = agent.run(&task).await.unwrap();
    assert_eq!(answer.steps[0].calls.len(), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_steps_only_an_answer_is_allowed() {
    for format in FORMATS {
        let task = task("Loop forever.", format);
        let step = format!(
            "Again.</think>\n\n{}",
            calls(&[("add", r#"{"a": 1, "b": 2}"#)])
        );
        // Every step of the script calls the tool: a different sum each time so
        // the repetition guard stays out of the way.
        let step1 = format!(
            "Again.</think>\n\n{}",
            calls(&[("add", r#"{"a": 2, "b": 2}"#)])
        );
        let step2 = format!(
            "Again.</think>\n\n{}",
            calls(&[("add", r#"{"a": 3, "b": 2}"#)])
        );
        script(&task, &[&step, &step1, &step2]);
        let count = Arc::new(AtomicUsize::new(0));
        let agent = agent(format)
            .tool(Add(Arc::clone(&count)))
            .max_steps(3)
            .build()
            .unwrap();
        let answer = agent.run(&task).await.unwrap();
        assert_eq!(answer.steps.len(), 3, "{format:?}");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(answer.steps[2].calls.is_empty());
        assert!(!answer.text.trim().is_empty());
        assert!(!answer.text.contains("tool"), "{:?}", answer.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_calls_in_a_row_are_stopped() {
    let format = ChatFormat::R1DistillLlama;
    let task = task("Repeat.", format);
    let step = format!(
        "Same.</think>\n\n{}",
        calls(&[("add", r#"{"a": 1, "b": 1}"#)])
    );
    script(
        &task,
        &[
            &step,
            &step,
            &step,
            "Stop.</think>\n\n2<｜end▁of▁sentence｜>",
        ],
    );
    let count = Arc::new(AtomicUsize::new(0));
    let agent = agent(format)
        .tool(Add(Arc::clone(&count)))
        .max_repeated_calls(2)
        .build()
        .unwrap();
    let answer = agent.run(&task).await.unwrap();
    assert_eq!(answer.steps.len(), 4);
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "the third identical call did not run"
    );
    let third = &answer.steps[2].calls[0];
    assert!(
        third.model_text().contains("already made 2 times in a row"),
        "{}",
        third.model_text()
    );
    assert_eq!(answer.text, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_decoding_within_a_token() {
    let format = ChatFormat::R1Qwen3;
    let task = task("Think slowly.", format);
    let long = "word ".repeat(200);
    let forwards = script_with_delay(
        &task,
        &[&format!("{long}</think>\n\nDone.<｜end▁of▁sentence｜>")],
        Duration::from_millis(20),
    );
    let agent = agent(format).build().unwrap();
    let cancel = taper::CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopper.cancel();
    });
    let error = agent.run_cancellable(&task, cancel).await.unwrap_err();
    let Error::Cancelled { partial } = &error else {
        panic!("expected a cancellation, got {error}");
    };
    assert!(partial.text.starts_with("word word"), "{:?}", partial.text);
    assert!(partial.usage.generated_tokens > 0);
    let at_cancel = forwards.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        forwards.load(Ordering::SeqCst) <= at_cancel + 1,
        "at most the pass in flight finishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_running_tool() {
    let format = ChatFormat::R1Qwen3;
    let task = task("Hang until cancelled.", format);
    let step0 = format!("Go.</think>\n\n{}", calls(&[("hang", r#"{"text": "x"}"#)]));
    script(&task, &[&step0]);
    let cancelled = Arc::new(AtomicBool::new(false));
    let agent = agent(format)
        .tool(hang(Arc::clone(&cancelled)))
        .tool_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let cancel = taper::CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        agent.run_cancellable(&task, cancel),
    )
    .await
    .expect("the run stops at once")
    .unwrap_err();
    let Error::Cancelled { partial } = &error else {
        panic!("expected a cancellation, got {error}");
    };
    assert_eq!(partial.steps.len(), 1);
    assert_eq!(partial.steps[0].calls[0].result, Err(ToolError::Cancelled));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(cancelled.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_run() {
    let format = ChatFormat::R1DistillLlama;
    let task = task("Stream slowly.", format);
    let long = "step ".repeat(200);
    let forwards = script_with_delay(
        &task,
        &[&format!("{long}</think>\n\nDone.<｜end▁of▁sentence｜>")],
        Duration::from_millis(10),
    );
    let agent = agent(format).build().unwrap();
    let mut events = agent.stream(&task);
    let mut seen = 0;
    while let Some(event) = events.next().await {
        assert!(matches!(event.unwrap(), Event::ThinkingDelta(_)));
        seen += 1;
        if seen == 5 {
            break;
        }
    }
    drop(events);
    let at_drop = forwards.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(forwards.load(Ordering::SeqCst) <= at_drop + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_context_is_an_error_with_everything_so_far() {
    let format = ChatFormat::R1Qwen3;
    let task = task("Overflow.", format);
    let long = "thought ".repeat(300);
    script(
        &task,
        &[&format!("{long}</think>\n\nDone.<｜end▁of▁sentence｜>")],
    );
    let agent = agent(format).context(256).build().unwrap();
    let error = agent.run(&task).await.unwrap_err();
    let Error::ContextFull {
        limit,
        needed,
        partial,
    } = &error
    else {
        panic!("expected a full context, got {error}");
    };
    assert_eq!(*limit, 256);
    assert_eq!(*needed, 257);
    assert!(partial.text.starts_with("thought thought"));
    assert_eq!(
        partial.usage.prompt_tokens + partial.usage.generated_tokens,
        257,
        "{partial:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_tells_the_whole_run() {
    for format in FORMATS {
        let task = task("Stream it.", format);
        let step0 = format!(
            "Call. ü 日本</think>\n\n{}",
            calls(&[("add", r#"{"a": 20, "b": 22}"#)])
        );
        script(
            &task,
            &[
                &step0,
                "Got 42.</think>\n\nIt is 42 — ✓.<｜end▁of▁sentence｜>",
            ],
        );
        let agent = agent(format).tool(Add(Arc::default())).build().unwrap();
        let events: Vec<Event> = agent.stream(&task).map(|e| e.unwrap()).collect().await;
        let thinking: String = events
            .iter()
            .filter_map(|e| match e {
                Event::ThinkingDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "Call. ü 日本Got 42.", "{format:?}");
        let answer: String = events
            .iter()
            .filter_map(|e| match e {
                Event::AnswerDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(answer, "It is 42 — ✓.");
        let kinds: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::ToolCallStarted { name, .. } => Some(name.as_str()),
                Event::ToolResult { call, .. } => Some(if call.model_text() == "42" {
                    "result 42"
                } else {
                    "wrong result"
                }),
                Event::StepFinished(_) => Some("step"),
                Event::Usage(_) => Some("usage"),
                Event::Done(_) => Some("done"),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, ["add", "result 42", "step", "usage", "done"]);
        let Some(Event::Done(done)) = events.last() else {
            panic!("the stream ends with Done");
        };
        assert_eq!(done.text, "It is 42 — ✓.");
    }
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Measure {
    value: i64,
    unit: Unit,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Metre,
    Foot,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_runs_return_the_type() {
    for format in FORMATS {
        let task = task("How tall?", format);
        script(
            &task,
            &[r#"Tall.</think>

{"value": 12, "unit": "foot"}<｜end▁of▁sentence｜>"#],
        );
        let agent = agent(format).build().unwrap();
        let measure: Measure = agent.run_typed(&task).await.unwrap();
        assert_eq!(
            measure,
            Measure {
                value: 12,
                unit: Unit::Foot
            },
            "{format:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_prefill_only_what_the_cache_has_not_seen() {
    for format in FORMATS {
        let first = task("First question.", format);
        let second = task("Second question.", format);
        script(
            &first,
            &["One.</think>\n\nAnswer one.<｜end▁of▁sentence｜>"],
        );
        script(
            &second,
            &["Two.</think>\n\nAnswer two.<｜end▁of▁sentence｜>"],
        );
        let decoder = scripted(format);
        let agent = agent(format).system_prompt("Be brief.").build().unwrap();
        let mut session = agent.session().unwrap();
        session.run(&first).await.unwrap();
        let cached = session.cached_transcript();
        let mut history = session.history().to_vec();
        history.push(Message::User(second.clone()));
        let prompt = decoder
            .tokenizer()
            .encode(&format.render(Some(agent.system_prompt()), &history, true))
            .unwrap();
        let common = cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let answer = session.run(&second).await.unwrap();
        assert_eq!(answer.text, "Answer two.");
        assert_eq!(answer.usage.prompt_tokens, prompt.len());
        assert_eq!(
            answer.usage.prefilled_tokens,
            prompt.len() - common,
            "{format:?}"
        );
        // The first turn's reasoning is gone from the rendering: the cache was rolled
        // back to just after it began, not cleared.
        assert!(
            common > 10 && common < cached.len(),
            "{common} of {}",
            cached.len()
        );
    }
}

fn echo() -> DynamicTool {
    DynamicTool::new(
        "echo",
        "Echoes its text.",
        text_schema(),
        |args, _ctx| async move { Ok(args["text"].clone()) },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_budget_is_steered_to_close_its_call() {
    for format in FORMATS {
        let task = task("Ramble in a call.", format);
        // The script never closes the string: only the budget can end the call.
        let step0 = format!(
            "Go.</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>echo\n```json\n{{\"text\": \"{}",
            "on and on ".repeat(200)
        );
        script(
            &task,
            &[&step0, "Enough.</think>\n\nok<｜end▁of▁sentence｜>"],
        );
        let agent = agent(format)
            .tool(echo())
            .max_answer_tokens(20)
            .build()
            .unwrap();
        let answer = agent.run(&task).await.unwrap();
        let call = &answer.steps[0].calls[0];
        let text = call.arguments["text"].as_str().unwrap();
        assert!(text.starts_with("on and on"), "{format:?}: {text:?}");
        assert!(
            text.len() < 100,
            "{format:?}: the call was closed early: {text:?}"
        );
        assert_eq!(call.model_text(), text);
        assert!(answer.steps[0].usage.generated_tokens < 40);
        assert_eq!(answer.text, "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_errors_surface_at_build() {
    let format = ChatFormat::R1Qwen3;
    let error = agent(format)
        .tool(Add(Arc::default()))
        .tool(Add(Arc::default()))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("add"), "{error}");
    assert!(matches!(error, Error::Register(_)));
    let bad = DynamicTool::new("bad name", "x", text_schema(), |_, _| async {
        Ok(Value::Null)
    });
    assert!(matches!(
        agent(format).tool(bad).build(),
        Err(Error::Register(_))
    ));
    assert!(matches!(
        agent(format).max_steps(0).build(),
        Err(Error::Config(_))
    ));
}
