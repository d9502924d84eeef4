//! Runs every example as a user would, on a tiny random-weight Qwen3 model with the
//! real tokenizer: each finishes with its answer, and the service streams several
//! runs at once as server-sent events. (Random weights: the text is noise; the loop,
//! the grammar and the tools are real.)

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use taper_model::{Architecture, ModelWriter, Preset, Quant};

/// Budgets that keep a random-weight run to a few dozen tokens.
const SHORT: [&str; 6] = [
    "--max-steps",
    "2",
    "--think-budget",
    "8",
    "--answer-budget",
    "16",
];

/// The tiny model, written once per test process.
fn model() -> &'static PathBuf {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let tokenizer = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/cache/r1_qwen3.tokenizer.json");
            let text = std::fs::read_to_string(&tokenizer).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: run scripts/fetch-fixtures.sh",
                    tokenizer.display()
                )
            });
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("tiny-qwen3.gguf");
            ModelWriter::new(Preset::Tiny.config(Architecture::Qwen3, Some(151_936)))
                .quant(Quant::parse("q8_0").expect("q8_0 is a known quantization"))
                .seed(5)
                .tokenizer_json(text)
                .write_gguf(&path)
                .expect("the tiny model is written");
            (dir, path)
        })
        .1
}

/// An example's binary, built by `cargo test` next to this test's.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/PROFILE/deps");
    Command::new(dir.join("examples").join(name))
}

fn run(name: &str, task: Option<&str>) -> Output {
    let mut cmd = example(name);
    cmd.arg(model());
    if let Some(task) = task {
        cmd.arg(task);
    }
    let out = cmd.args(SHORT).output().expect("the example runs");
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn math_agent_answers() {
    let text = stdout(&run("math_agent", Some("What is 17 * 23?")));
    assert!(
        text.contains("\nanswer: ") || text.starts_with("answer: "),
        "{text}"
    );
    assert!(text.contains(" steps, "), "{text}");
}

#[test]
fn coding_agent_answers() {
    let text = stdout(&run("coding_agent", None));
    assert!(text.contains("answer: "), "{text}");
}

#[test]
fn custom_tool_shows_the_schema_from_the_doc_comments_and_answers() {
    let text = stdout(&run("custom_tool", None));
    let schema_line = text
        .lines()
        .find_map(|l| l.strip_prefix("schema: "))
        .expect("the schema is printed");
    let schema: Value = serde_json::from_str(schema_line).expect("the schema is JSON");
    assert_eq!(
        schema["properties"]["days_ahead"]["description"],
        "Days from today: 0 is today, 1 tomorrow, at most 6."
    );
    assert_eq!(schema["properties"]["days_ahead"]["maximum"], 6);
    assert!(text.contains("answer: "), "{text}");
}

#[test]
fn typed_output_returns_the_struct() {
    let text = stdout(&run("typed_output", None));
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("json: "))
        .expect("the solution is printed as JSON");
    let solution: Value = serde_json::from_str(json).expect("JSON");
    assert!(solution["answer"].is_number(), "{solution}");
    assert!(
        solution["unit"]
            .as_str()
            .is_some_and(|u| u.chars().count() <= 20)
    );
    assert!(
        ["low", "medium", "high"].contains(&solution["confidence"].as_str().unwrap_or("")),
        "{solution}"
    );
}

#[test]
fn examples_refuse_a_missing_model_with_a_clear_error() {
    let out = example("math_agent")
        .arg("/nonexistent/model.gguf")
        .output()
        .expect("the example runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

/// Kills the service when the test ends, however it ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on its own connection; returns the status line, the
/// headers and the body (chunked transfer decoded).
fn http(addr: &str, request: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("the service accepts connections");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response read");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status.to_string(), headers.to_ascii_lowercase(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn post_run(addr: &str, body: &str) -> (String, String, String) {
    http(
        addr,
        &format!(
            "POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The (event, data) pairs of a server-sent event stream, keep-alive comments
/// skipped.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut kind = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = Some(k.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).expect("each event's data is JSON"));
                }
            }
            Some((kind?, data?))
        })
        .collect()
}

#[test]
fn service_streams_concurrent_runs_as_server_sent_events() {
    let mut child = example("service")
        .arg(model())
        .args(["--listen", "127.0.0.1:0"])
        .args(SHORT)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the service starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let _service = Service(child);
    let line = lines
        .next()
        .expect("the service prints its address")
        .expect("readable stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let (status, _, body) = http(
        &addr,
        &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "ok");

    let (status, _, _) = post_run(&addr, r#"{"question": "no task field"}"#);
    assert!(status.contains(" 422 "), "{status}");

    let tasks = ["What is 2 + 2?", "What is 17 * 23?", "Divide 10 by 4."];
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .iter()
            .map(|task| {
                let addr = addr.clone();
                s.spawn(move || post_run(&addr, &serde_json::json!({ "task": task }).to_string()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("the request thread finishes"))
            .collect()
    });
    for (status, headers, body) in runs {
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            headers.contains("content-type: text/event-stream"),
            "{headers}"
        );
        let events = events(&body);
        let (last, done) = events.last().expect("at least one event");
        assert_eq!(last, "done", "{body}");
        assert!(done["answer"].is_string(), "{done}");
        assert!(events.iter().any(|(kind, _)| kind == "usage"), "{body}");
        for (kind, data) in &events {
            assert_eq!(data["event"], kind.as_str());
        }
    }
}
