//! The `taper` binary, driven as a user drives it: exit codes, messages, and a whole
//! make-model, info and run on a tiny random-weight model with the real tokenizer.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/cache/r1_qwen3.tokenizer.json"
);

/// Runs `taper` with `args`.
fn taper(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taper"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the taper binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the error report's shape: `error: ...` first, no panic or debug dump.
fn assert_clean_error(out: &Output) {
    let err = stderr(out);
    assert!(err.starts_with("error: "), "stderr: {err}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "{ ", "Os {"] {
        assert!(!err.contains(bad), "stderr has `{bad}`: {err}");
    }
    for line in err.lines().skip(1) {
        assert!(line.starts_with("  caused by: "), "stderr line `{line}`");
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A few pseudo-random bytes from a fixed seed (xorshift).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn help_lists_the_subcommands_and_each_shows_an_example() {
    let out = taper(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for command in ["run", "chat", "info", "bench", "make-model"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`{command}` missing from:\n{text}"
        );
    }
    for command in ["run", "chat", "info", "bench", "make-model"] {
        let out = taper(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help failed");
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Example:\n  taper {command} ")),
            "{command} --help has no example:\n{text}"
        );
    }
}

/// The events of one kind (`tool_call`, `usage`, ...).
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Checks the tool events of the built-in model's run of a word problem: exactly
/// one call, the calculator's, with `expression`, answered by `output`.
fn one_calculator_call(events: &[Value], expression: &str, output: &str) {
    let calls = of_kind(events, "tool_call");
    let results = of_kind(events, "tool_result");
    assert_eq!((calls.len(), results.len()), (1, 1), "{events:?}");
    assert_eq!(calls[0]["name"], "calculator", "{events:?}");
    assert_eq!(
        calls[0]["arguments"]["expression"], expression,
        "{events:?}"
    );
    assert_eq!(results[0]["ok"], true, "{events:?}");
    assert_eq!(results[0]["output"], output, "{events:?}");
}

#[test]
fn run_without_a_model_solves_a_word_problem_with_the_built_in_model() {
    let out = taper(&[
        "run",
        "--json",
        "One pen costs 3 dollars. What do 12 pens cost in total?",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let events = json_events(&stdout(&out));
    one_calculator_call(&events, "12 * 3", "= 36");
    let done = events.last().expect("a run ends with done");
    assert_eq!(done["event"], "done");
    assert_eq!(done["truncated"], false);
    let answer = done["answer"].as_str().expect("the answer is text");
    assert!(taper_nano::mentions_number(answer, "36"), "{answer}");
}

#[test]
fn chat_with_the_built_in_model_answers_each_turn_on_the_cache_of_the_ones_before() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taper"))
        .args(["chat", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the taper binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(
            b"One pen costs 3 dollars. What do 12 pens cost in total?\n\
              How many minutes are in 7 hours?\n\
              What is 25 percent of 800?\n",
        )
        .expect("chat reads its input");
    drop(stdin);
    let out = child.wait_with_output().expect("chat ends at end of input");
    assert!(out.status.success(), "chat: {}", stderr(&out));
    let events = json_events(&stdout(&out));
    // Split the events into turns at each `done`.
    let turns: Vec<&[Value]> = events.split_inclusive(|e| e["event"] == "done").collect();
    assert_eq!(turns.len(), 3, "{events:?}");
    let expected = [
        ("12 * 3", "= 36", "36"),
        ("7 * 60", "= 420", "420"),
        ("800 * 25 / 100", "= 200", "200"),
    ];
    let mut first_prefilled = None;
    for (turn, (expression, output, number)) in turns.iter().zip(expected) {
        one_calculator_call(turn, expression, output);
        let done = turn.last().expect("a turn ends with done");
        let answer = done["answer"].as_str().expect("the answer is text");
        assert!(taper_nano::mentions_number(answer, number), "{answer}");
        let usage = *of_kind(turn, "usage")
            .first()
            .expect("a turn reports its usage");
        let prompt = usage["prompt_tokens"].as_u64().expect("a count");
        let prefilled = usage["prefilled_tokens"].as_u64().expect("a count");
        // The first turn prefills the system prompt (over 200 tokens) and its
        // question; a later one only its own question and the tool's result, the
        // conversation before it is in the cache. (Three turns: the model answers
        // about 94% of third turns, 75% of fourth ones; `nano-eval --chat`.)
        match first_prefilled {
            None => first_prefilled = Some(prefilled),
            Some(first) => {
                assert!(
                    prefilled < first && 2 * prefilled < prompt,
                    "{usage}, first turn {first}"
                );
            }
        }
    }
}

#[test]
fn the_built_in_model_takes_only_the_calculator() {
    let out = taper(&["run", "--tool", "calculator", "--tool", "python", "hi"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert_clean_error(&out);
    let err = stderr(&out);
    assert!(
        err.contains("only knows the calculator, not `python`"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn an_unknown_tool_is_a_usage_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("absent.gguf");
    let out = taper(&[
        "run",
        "--model",
        path_str(&model),
        "--tool",
        "calculator",
        "--tool",
        "abacus",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert_clean_error(&out);
    let err = stderr(&out);
    assert!(err.contains("`abacus`"), "{err}");
    assert!(err.contains("calculator, python"), "{err}");
}

#[test]
fn bad_option_values_are_usage_errors() {
    for args in [
        &["run", "--model", "m.gguf", "--max-steps", "0", "hi"][..],
        &["run", "--model", "m.gguf", "--temperature", "-1", "hi"],
        &["run", "--model", "m.gguf", "--context", "0", "hi"],
        &[
            "run",
            "--model",
            "m.gguf",
            "--tool-choice",
            "sometimes",
            "hi",
        ],
        &["make-model", "--arch", "qwen3", "--quant", "q3_x"],
        &["info"],
    ] {
        let out = taper(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_missing_model_file_is_a_runtime_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("no-such-model.gguf");
    for args in [
        vec!["run", "--model", path_str(&model), "hi"],
        vec!["info", "--model", path_str(&model)],
    ] {
        let out = taper(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_clean_error(&out);
        let err = stderr(&out);
        assert!(err.contains(path_str(&model)), "{err}");
        // The OS error shows once, though two errors in the chain carry it.
        assert_eq!(err.matches("No such file").count(), 1, "{err}");
    }
}

#[test]
fn a_corrupt_model_file_is_a_runtime_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.gguf");
    std::fs::write(&random, noise(100, 0x9e37_79b9_7f4a_7c15)).unwrap();
    // A real magic and version, then noise: the header parser has to refuse it.
    let truncated = dir.path().join("truncated.gguf");
    let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
    bytes.extend(noise(92, 42));
    std::fs::write(&truncated, bytes).unwrap();
    for model in [&random, &truncated] {
        for args in [
            vec![
                "run",
                "--model",
                path_str(model),
                "--tool",
                "calculator",
                "hi",
            ],
            vec!["info", "--model", path_str(model)],
        ] {
            let out = taper(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert_clean_error(&out);
            let err = stderr(&out);
            assert!(err.contains(path_str(model)), "{err}");
            assert!(err.contains("GGUF"), "{err}");
        }
    }
}

/// The tiny Qwen3 model with the real tokenizer, written once per test run by
/// `taper make-model`.
fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        assert!(
            Path::new(TOKENIZER).exists(),
            "{TOKENIZER} is missing: run scripts/fetch-fixtures.sh"
        );
        let model = Path::new(env!("CARGO_TARGET_TMPDIR")).join("taper-cli-tiny-qwen3.gguf");
        let out = taper(&[
            "make-model",
            "--arch",
            "qwen3",
            "--preset",
            "tiny",
            "--quant",
            "q4_k_m",
            "--tokenizer",
            TOKENIZER,
            "--seed",
            "7",
            "-o",
            path_str(&model),
        ]);
        assert!(out.status.success(), "make-model: {}", stderr(&out));
        assert!(model.metadata().unwrap().len() > 1 << 20);
        model
    })
}

/// Parses every line of `text` as a JSON event.
fn json_events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is not JSON: {e}")))
        .collect()
}

#[test]
fn make_model_then_info_then_a_json_run_with_the_calculator() {
    let model = tiny_model();

    let out = taper(&["info", "--model", path_str(model)]);
    assert!(out.status.success(), "info: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("qwen3: 2 layers"), "{text}");
    assert!(text.contains("vocab 151936"), "{text}");
    assert!(text.contains("quantization  Q4_K_M: Q4_K ("), "{text}");
    assert!(text.contains("Q6_K (2 tensors"), "{text}");
    assert!(text.contains("max context   2048 tokens"), "{text}");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("context"))
        .skip(1)
        .collect();
    let contexts: Vec<&str> = table
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(contexts, ["1024", "2048"], "{text}");
    for row in &table {
        assert!(
            row.ends_with("fits") || row.ends_with("does not fit") || row.ends_with("unknown"),
            "{row}"
        );
    }

    let out = taper(&[
        "run",
        "--model",
        path_str(model),
        "--json",
        "--think-budget",
        "8",
        "--answer-budget",
        "8",
        "--max-steps",
        "2",
        "--tool",
        "calculator",
        "What is 17 * 23?",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let events = json_events(&text);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("every line has an event"))
        .collect();
    assert_eq!(kinds.last(), Some(&"done"), "{text}");
    assert_eq!(kinds[kinds.len() - 2], "usage", "{text}");
    assert!(kinds.contains(&"thinking"), "{text}");
    let done = events.last().unwrap();
    let answer: String = events
        .iter()
        .filter(|e| e["event"] == "answer")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(done["answer"].as_str(), Some(answer.trim_start()), "{text}");
    let steps = done["steps"].as_u64().unwrap();
    assert!((1..=2).contains(&steps), "{text}");
    let usage = &events[events.len() - 2];
    assert!(usage["generated_tokens"].as_u64().unwrap() > 0, "{text}");
    // Every call (the random model rarely makes one) reached the calculator and
    // its result was reported.
    let calls = of_kind(&events, "tool_call");
    let results = of_kind(&events, "tool_result");
    assert_eq!(calls.len(), results.len(), "{text}");
    for (call, result) in calls.iter().zip(&results) {
        assert_eq!(call["name"], "calculator", "{text}");
        assert!(call["arguments"]["expression"].is_string(), "{text}");
        assert_eq!(result["name"], "calculator", "{text}");
        assert!(result["ok"].is_boolean(), "{text}");
    }
}

#[test]
fn chat_answers_each_line_in_one_session() {
    let model = tiny_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_taper"))
        .args(["chat", "--model", path_str(model), "--json"])
        .args(["--tool", "calculator", "--max-steps", "2"])
        .args(["--think-budget", "4", "--answer-budget", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"What is 2 + 2?\n\n   \nAnd 3 + 3?\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chat: {}", stderr(&out));
    let events = json_events(&stdout(&out));
    let usages = of_kind(&events, "usage");
    let done = of_kind(&events, "done").len();
    // Two turns (blank lines are skipped), the second on the first one's cache.
    assert_eq!((usages.len(), done), (2, 2), "{}", stdout(&out));
    let second = usages[1];
    assert!(
        second["prefilled_tokens"].as_u64() < second["prompt_tokens"].as_u64(),
        "{second}"
    );
    assert_eq!(events.last().unwrap()["event"], "done");
}

#[test]
fn ctrl_c_in_chat_cancels_the_answer_not_the_program() {
    let model = tiny_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_taper"))
        .args(["chat", "--model", path_str(model), "--json"])
        .args(["--think-budget", "400", "--answer-budget", "400"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Tell me a long story.\n").unwrap();
    stdin.flush().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("an event").unwrap();
    assert!(first.contains("\"thinking\""), "{first}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The chat goes on reading its input: end it.
    drop(stdin);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.contains("(cancelled)"), "stderr: {err}");
    assert!(
        rest.iter().all(|l| !l.contains("\"done\"")),
        "the cancelled turn finished: {rest:?}"
    );
}

#[test]
fn a_text_run_streams_reasoning_answer_and_usage_without_escapes_into_a_pipe() {
    let model = tiny_model();
    let out = taper(&[
        "run",
        "--model",
        path_str(model),
        "--think-budget",
        "4",
        "--answer-budget",
        "4",
        "--seed",
        "1",
        "Hello?",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "escapes in a pipe: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("thinking: "), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("answer: ")), "{text}");
    let usage = lines
        .iter()
        .find(|l| l.starts_with('[') && l.contains(" prompt tokens ("))
        .unwrap_or_else(|| panic!("no usage line: {text}"));
    assert!(usage.contains("generated"), "{usage}");
}

#[test]
fn info_reads_a_hugging_face_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama");
    let tokenizer = TOKENIZER.replace("r1_qwen3", "r1_llama");
    let out = taper(&[
        "make-model",
        "--arch",
        "llama",
        "--quant",
        "bf16",
        "--format",
        "safetensors",
        "--tokenizer",
        &tokenizer,
        "-o",
        path_str(&model),
    ]);
    assert!(out.status.success(), "make-model: {}", stderr(&out));
    let out = taper(&["info", "--model", path_str(&model)]);
    assert!(out.status.success(), "info: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("llama: 2 layers"), "{text}");
    assert!(text.contains("vocab 128256"), "{text}");
    assert!(text.contains("quantization  BF16 ("), "{text}");
    // Norm weights are stored in BF16 too; nothing else.
    assert!(!text.contains("F32 ("), "{text}");

    // A directory without safetensors is refused with a sentence, not a panic.
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let out = taper(&["info", "--model", path_str(&model)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_clean_error(&out);
    assert!(
        stderr(&out).contains("no .safetensors files"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_prints_load_prefill_decode_mask_and_memory() {
    let model = tiny_model();
    let out = taper(&[
        "bench",
        "--model",
        path_str(model),
        "--prompt",
        "32",
        "--gen",
        "16",
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "bench: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("with 1 thread(s)"), "{text}");
    for row in [
        "| load | ",
        "| prefill 32 tokens | ",
        "| decode 16 tokens | ",
        "| grammar mask + commit per token | mean ",
        "| mask share of a decode step | ",
        "| peak RSS | ",
    ] {
        assert!(text.contains(row), "`{row}` missing from:\n{text}");
    }

    let weights = tempfile::tempdir().unwrap();
    let out = taper(&[
        "bench",
        "--model",
        path_str(model),
        "--prompt",
        "8",
        "--gen",
        "4",
        "--json",
        "--weight-cache",
        path_str(weights.path()),
    ]);
    assert!(out.status.success(), "bench --json: {}", stderr(&out));
    // The tiny model's Q4_K and Q6_K matrices are repacked wherever our kernels run.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
        && std::env::var("TAPER_KERNELS").as_deref() != Ok("none")
    {
        let cached: Vec<_> = std::fs::read_dir(weights.path()).unwrap().collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
    }
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(v["prompt_tokens"], 8);
    assert_eq!(v["decode_tokens"], 4);
    for key in ["load_s", "prefill_tokens_per_s", "decode_tokens_per_s"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    let mask = &v["mask_us"];
    assert!(mask["p50"].as_f64() <= mask["max"].as_f64(), "{mask}");

    let out = taper(&["bench", "--model", "/nonexistent/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert_clean_error(&out);
    assert!(stderr(&out).contains("/nonexistent/model.gguf"));
}

#[test]
fn a_run_with_the_python_tool_streams_to_the_end() {
    let model = tiny_model();
    let out = taper(&[
        "run",
        "--model",
        path_str(model),
        "--tool",
        "python",
        "--tool-choice",
        "required",
        "--max-steps",
        "2",
        "--think-budget",
        "4",
        "--answer-budget",
        "8",
        "--json",
        "Print 6 * 7.",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let events = json_events(&stdout(&out));
    // The first step must call python (required); the sandbox runs whatever code the
    // random model wrote and reports how it ended.
    let call = events
        .iter()
        .find(|e| e["event"] == "tool_call")
        .expect("a python call");
    assert_eq!(call["name"], "python");
    assert!(call["arguments"]["code"].is_string(), "{call}");
    let result = events
        .iter()
        .find(|e| e["event"] == "tool_result")
        .expect("its result");
    assert!(
        result["output"]
            .as_str()
            .is_some_and(|o| o.contains("[status]") || o.starts_with("error: ")),
        "{result}"
    );
    assert_eq!(events.last().expect("events")["event"], "done");
}

#[test]
fn make_model_without_a_tokenizer_takes_a_vocabulary_size() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("hf");
    let out = taper(&[
        "make-model",
        "--arch",
        "llama",
        "--quant",
        "f32",
        "--vocab",
        "300",
        "--format",
        "safetensors",
        "-o",
        path_str(&out_dir),
    ]);
    assert!(out.status.success(), "make-model: {}", stderr(&out));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["vocab_size"], 300);

    let out = taper(&["make-model", "--arch", "llama", "-o", "x.gguf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--tokenizer"), "{}", stderr(&out));
}

#[test]
fn a_context_the_model_cannot_serve_is_refused_with_the_memory_table() {
    let model = tiny_model();
    let out = taper(&[
        "run",
        "--model",
        path_str(model),
        "--context",
        "5000",
        "Hello?",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error: a context of 5000 tokens is longer than the model's maximum of 2048; memory per context:"
        ),
        "{err}"
    );
    assert!(err.contains("KV cache (f16)"), "{err}");
    assert!(err.contains("    2048  "), "{err}");
    assert!(stdout(&out).is_empty());
}
