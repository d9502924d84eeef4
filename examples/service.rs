//! An HTTP service: one model loaded once, an agent run per request, events streamed
//! as server-sent events. Requests run at the same time and share the model: their
//! forward passes interleave on the model's worker, each session keeps its own
//! KV cache. A client that disconnects stops its run.
//!
//! ```sh
//! cargo run --release -p taper-examples --example service -- MODEL.gguf --listen 127.0.0.1:3000
//! curl -N localhost:3000/run -H 'content-type: application/json' \
//!     -d '{"task": "What is 17 * 23?"}'
//! ```
//!
//! `POST /run` with `{"task": "..."}` answers `text/event-stream`: one event per
//! [`taper::Event`] (`thinking`, `answer`, `tool_call`, `tool_result`, `step`,
//! `usage`, `done`), its data the JSON of [`taper::Event::to_json`]; an `error` event
//! if the run fails. `GET /health` answers `ok`.

use std::convert::Infallible;
use std::process::ExitCode;

use axum::extract::State;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use taper::Agent;
use taper_calculator::Calculator;
use taper_examples::{ExampleArgs, exit};

/// The body of `POST /run`.
#[derive(Deserialize)]
struct RunRequest {
    task: String,
}

/// Streams one run of the shared agent.
async fn run_task(
    State(agent): State<Agent>,
    Json(request): Json<RunRequest>,
) -> axum::response::Sse<impl Stream<Item = Result<Sse, Infallible>>> {
    let events = agent.stream(request.task).map(|event| {
        Ok(match event {
            Ok(event) => {
                let value = event.to_json();
                let kind = value["event"].as_str().unwrap_or("event").to_owned();
                Sse::default().event(kind).data(value.to_string())
            }
            Err(error) => Sse::default()
                .event("error")
                .data(json!({"error": error.to_string()}).to_string()),
        })
    });
    axum::response::Sse::new(events).keep_alive(KeepAlive::default())
}

#[tokio::main]
async fn main() -> ExitCode {
    exit(serve().await)
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    // `--listen ADDR` is this example's own option; the rest are the shared ones.
    let mut rest: Vec<String> = std::env::args().skip(1).collect();
    let mut listen = "127.0.0.1:3000".to_string();
    if let Some(i) = rest.iter().position(|a| a == "--listen") {
        rest.remove(i);
        if i >= rest.len() {
            return Err("--listen needs an address, e.g. 127.0.0.1:3000".into());
        }
        listen = rest.remove(i);
    }
    let args = ExampleArgs::parse_from("service", rest)?;
    let decoder = args.load().await?;
    // One agent for all requests: cloning it is cheap, and each run gets its own session.
    let agent = args
        .apply(Agent::builder(&decoder).tool(Calculator::new()))
        .build()?;

    let app = Router::new()
        .route("/run", post(run_task))
        .route("/health", get(|| async { "ok" }))
        .with_state(agent);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // Without a Ctrl-C handler, the process exits on the signal anyway.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
