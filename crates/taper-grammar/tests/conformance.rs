//! Conformance with the JSON-Schema-Test-Suite, draft 2020-12 (required tests).
//!
//! For every schema that compiles, every instance is written as JSON text (in the
//! layout the grammar generates: `", "` and `": "`), tokenized with the real tokenizer
//! and committed token by token; it is accepted when the grammar then allows EOS (or
//! forced it). Valid instances must be accepted, invalid ones rejected. Schemas that do
//! not compile are listed with the reason. Each disagreement ("wrong") must be
//! explained in `CONFORMANCE.md`; the test fails on any unexplained one, and on any
//! explained one that no longer happens.
//!
//! Set `TAPER_WRITE_CONFORMANCE=1` to rewrite the summary table in `CONFORMANCE.md`.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use common::{Vocab, env};
use serde_json::Value;
use taper_grammar::{Constraint, ConstraintError, JsonGrammar, JsonSchema, TokenEnv};

const SUMMARY_BEGIN: &str = "<!-- summary:begin -->";
const SUMMARY_END: &str = "<!-- summary:end -->";

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/JSON-Schema-Test-Suite/tests/draft2020-12")
}

fn conformance_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFORMANCE.md")
}

/// The layout the grammar generates: compact, with `", "` and `": "`.
struct Layout;

impl serde_json::ser::Formatter for Layout {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

fn to_text(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Layout);
    serde::Serialize::serialize(value, &mut ser).expect("JSON values serialize");
    out
}

/// Feeds `text` token by token (forced tokens must match the text); true when the
/// whole text is taken and the grammar may end there.
fn accepts(env: &TokenEnv, c: &mut Constraint, text: &[u8]) -> Result<bool, ConstraintError> {
    let mut pos = 0;
    let mut pending = c.fast_forward()?;
    let mut tokens: Vec<u32> = env.tokenize(text);
    let mut next = 0;
    loop {
        if !pending.is_empty() {
            for f in pending.drain(..) {
                if f == env.eos() {
                    return Ok(pos == text.len());
                }
                let bytes = env.decode(&[f]);
                if !text[pos..].starts_with(&bytes) {
                    return Ok(false);
                }
                pos += bytes.len();
            }
            tokens = env.tokenize(&text[pos..]);
            next = 0;
        }
        if pos == text.len() {
            return Ok(c.is_finished() || c.is_allowed(env.eos())?);
        }
        if c.is_finished() {
            return Ok(false);
        }
        let Some(&token) = tokens.get(next) else {
            return Ok(false);
        };
        match c.commit(token) {
            Ok(commit) => {
                pos += env.decode(&[token]).len();
                next += 1;
                pending = commit.forced;
            }
            Err(ConstraintError::TokenRejected { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

#[derive(Default)]
struct FileStats {
    groups: usize,
    compiled: usize,
    tests: usize,
    accepted: usize,
    rejected: usize,
    wrong: usize,
    skipped: usize,
}

/// One disagreement: file, schema description, instance description.
type Case = (String, String, String);

struct Report {
    table: String,
    not_compiled: Vec<(String, String, String)>,
    wrong: Vec<(Case, bool)>,
}

fn run(vocab: Vocab) -> Report {
    let env = env(vocab);
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("the suite is in tests/data")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut total = FileStats::default();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| file | schemas compiled | instances | accepted | rejected | wrong | not run |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|");
    let mut not_compiled = Vec::new();
    let mut wrong = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let groups: Value = serde_json::from_slice(&std::fs::read(&path).expect("readable file"))
            .expect("suite files are JSON");
        let mut st = FileStats::default();
        for group in groups.as_array().expect("a suite file is an array") {
            let desc = group["description"].as_str().unwrap_or_default().to_owned();
            let tests = group["tests"].as_array().expect("a group has tests");
            st.groups += 1;
            st.tests += tests.len();
            let grammar = JsonSchema::new(group["schema"].clone())
                .map_err(|e| e.to_string())
                .and_then(|s| JsonGrammar::new(&env, &s).map_err(|e| e.to_string()));
            let grammar = match grammar {
                Ok(g) => g,
                Err(reason) => {
                    st.skipped += tests.len();
                    not_compiled.push((name.clone(), desc, reason));
                    continue;
                }
            };
            st.compiled += 1;
            for test in tests {
                let tdesc = test["description"].as_str().unwrap_or_default().to_owned();
                let valid = test["valid"].as_bool().expect("a test says valid or not");
                let text = to_text(&test["data"]);
                let mut c = grammar.constraint();
                let ok = match accepts(&env, &mut c, &text) {
                    Ok(ok) => ok,
                    Err(e) => panic!("{name} / {desc} / {tdesc}: engine error {e}"),
                };
                if ok {
                    st.accepted += 1;
                } else {
                    st.rejected += 1;
                }
                if ok != valid {
                    st.wrong += 1;
                    wrong.push(((name.clone(), desc.clone(), tdesc), valid));
                }
            }
        }
        let _ = writeln!(
            table,
            "| {name} | {}/{} | {} | {} | {} | {} | {} |",
            st.compiled, st.groups, st.tests, st.accepted, st.rejected, st.wrong, st.skipped
        );
        total.groups += st.groups;
        total.compiled += st.compiled;
        total.tests += st.tests;
        total.accepted += st.accepted;
        total.rejected += st.rejected;
        total.wrong += st.wrong;
        total.skipped += st.skipped;
    }
    let _ = writeln!(
        table,
        "| **total** | {}/{} | {} | {} | {} | {} | {} |",
        total.compiled,
        total.groups,
        total.tests,
        total.accepted,
        total.rejected,
        total.wrong,
        total.skipped
    );
    Report {
        table,
        not_compiled,
        wrong,
    }
}

/// The explained cases: rows of the table under "## Explained disagreements" whose
/// first three cells are file, schema and instance.
fn explained() -> BTreeSet<Case> {
    let md = std::fs::read_to_string(conformance_md()).unwrap_or_default();
    let section = md
        .split("## Explained disagreements")
        .nth(1)
        .unwrap_or_default();
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let strip = |s: &str| s.trim_matches('`').to_owned();
            Some((
                strip(cells.get(1)?),
                strip(cells.get(2)?),
                strip(cells.get(3)?),
            ))
        })
        .collect()
}

fn check(vocab: Vocab) {
    let report = run(vocab);
    println!("JSON-Schema-Test-Suite draft 2020-12, {vocab:?} vocabulary\n");
    println!("{}", report.table);
    println!("schemas that do not compile:");
    for (file, desc, reason) in &report.not_compiled {
        println!("- {file} / {desc}: {reason}");
    }
    println!("\ndisagreements:");
    for ((file, desc, test), valid) in &report.wrong {
        let what = if *valid {
            "valid, rejected"
        } else {
            "INVALID, ACCEPTED"
        };
        println!("| `{file}` | `{desc}` | `{test}` | {what} |");
    }
    if std::env::var_os("TAPER_WRITE_CONFORMANCE").is_some() {
        let md = std::fs::read_to_string(conformance_md()).unwrap_or_default();
        if let (Some(a), Some(b)) = (md.find(SUMMARY_BEGIN), md.find(SUMMARY_END)) {
            let mut out = md[..a + SUMMARY_BEGIN.len()].to_owned();
            out.push('\n');
            out.push_str(&report.table);
            out.push_str(&md[b..]);
            std::fs::write(conformance_md(), out).expect("CONFORMANCE.md is writable");
        }
    }
    let got: BTreeSet<Case> = report.wrong.iter().map(|(c, _)| c.clone()).collect();
    let documented = explained();
    let unexplained: Vec<&Case> = got.difference(&documented).collect();
    let stale: Vec<&Case> = documented.difference(&got).collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "{} wrong, {} explained in CONFORMANCE.md; unexplained: {unexplained:#?}; \
         explained but no longer wrong: {stale:#?}",
        got.len(),
        documented.len()
    );
    assert_eq!(got.len(), documented.len());
}

#[test]
fn json_schema_test_suite_qwen3() {
    check(Vocab::Qwen3);
}

/// The same on the Llama vocabulary (slower; run with `--ignored`).
#[test]
#[ignore]
fn json_schema_test_suite_llama() {
    check(Vocab::Llama);
}
