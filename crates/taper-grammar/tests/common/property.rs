//! The property check behind `tests/property.rs`: generate under a turn grammar from
//! some logits source, then check the turn with the typed parse, the tool schemas
//! (with the independent `jsonschema` validator) and the Rust types (serde).
//!
//! Only the logits source differs between runs on random logits and runs on a real
//! (tiny, random-weight) model: pass another `make_source`.

#![allow(dead_code)]

use schemars::{JsonSchema as Derive, schema_for};
use serde::de::DeserializeOwned;
use serde_json::Value;
use taper_grammar::{
    Answer, AnswerFormat, JsonSchema, TokenEnv, TurnGrammar, TurnGrammarBuilder, TurnOutcome,
};

use super::types::{Calc, Command, Event, Lookup, Node, Options, Rich, Search, Shape, Verdict};
use super::{LogitsSource, Rng, generate};

/// A tool: its schema as schemars wrote it, and a check that arguments deserialize
/// into its Rust type.
pub struct Tool {
    pub name: &'static str,
    pub schema: Value,
    pub validator: jsonschema::Validator,
    pub deserialize: fn(Value) -> Result<(), serde_json::Error>,
}

fn tool<T: Derive + DeserializeOwned>(name: &'static str) -> Tool {
    let schema = schema_for!(T).to_value();
    let validator = jsonschema::validator_for(&schema).expect("schemars schemas are valid");
    Tool {
        name,
        schema,
        validator,
        deserialize: |v| serde_json::from_value::<T>(v).map(|_| ()),
    }
}

/// Tools whose argument types cover structs, enums with data (all four taggings),
/// `Option`, `Vec`, maps, tuples, recursion, integer formats and bounds, doc comments.
pub fn tools() -> Vec<Tool> {
    vec![
        tool::<Search>("search"),
        tool::<Shape>("draw"),
        tool::<Calc>("calc"),
        tool::<Lookup>("lookup"),
        tool::<Options>("configure"),
        tool::<Rich>("rich"),
        tool::<Command>("command"),
        tool::<Node>("tree"),
        tool::<Event>("event"),
    ]
}

/// One grammar configuration under test.
pub struct Scenario {
    pub name: &'static str,
    pub grammar: TurnGrammar,
    pub tools: Vec<Tool>,
    pub calls_allowed: bool,
    pub answer_allowed: bool,
    pub parallel: bool,
    pub json_answer: bool,
    pub budget: Option<usize>,
}

pub const SCENARIOS: [&str; 7] = [
    "tools",
    "no tools",
    "tool required",
    "single call",
    "json answer",
    "json answer, no tools",
    "small thinking budget",
];

/// Builds the named scenario.
pub fn scenario(env: &TokenEnv, name: &'static str) -> Scenario {
    scenario_with_budget(env, name, None)
}

/// Builds the named scenario with a thinking budget (the small-budget scenario keeps
/// its own).
pub fn scenario_with_budget(env: &TokenEnv, name: &'static str, budget: Option<usize>) -> Scenario {
    let tools = tools();
    let mut b: TurnGrammarBuilder = TurnGrammar::builder(env);
    if let Some(tokens) = budget {
        b = b.thinking_budget(tokens);
    }
    for t in &tools {
        let schema = JsonSchema::new(t.schema.clone()).expect("tool schema compiles");
        b = b.tool(t.name, schema);
    }
    let verdict = || {
        AnswerFormat::Json(
            JsonSchema::new(schema_for!(Verdict).to_value()).expect("answer schema compiles"),
        )
    };
    let (b, calls, answer, parallel, json, budget) = match name {
        "tools" => (b, true, true, true, false, budget),
        "no tools" => (b.tools_allowed(false), false, true, true, false, budget),
        "tool required" => (b.require_tool_call(true), true, false, true, false, budget),
        "single call" => (
            b.require_tool_call(true).parallel_calls(false),
            true,
            false,
            false,
            false,
            budget,
        ),
        "json answer" => (b.answer(verdict()), true, true, true, true, budget),
        "json answer, no tools" => (
            b.tools_allowed(false).answer(verdict()),
            false,
            true,
            true,
            true,
            budget,
        ),
        "small thinking budget" => (b.thinking_budget(3), true, true, true, false, Some(3)),
        other => panic!("unknown scenario {other}"),
    };
    Scenario {
        name,
        grammar: b.build().expect("turn grammar builds"),
        tools,
        calls_allowed: calls,
        answer_allowed: answer,
        parallel,
        json_answer: json,
        budget,
    }
}

/// What a batch of runs produced.
#[derive(Debug, Default)]
pub struct Tally {
    pub runs: usize,
    pub finished: usize,
    pub capped: usize,
    pub calls: usize,
    pub answers: usize,
    pub tokens: usize,
    pub forced: usize,
}

/// The tool-call markers, which must never appear in free text.
const MARKERS: [&str; 9] = [
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
];

fn has_marker(text: &str) -> bool {
    MARKERS.iter().any(|m| text.contains(m))
}

/// Checks one finished turn; returns whether it ended in calls.
pub fn check_turn(env: &TokenEnv, s: &Scenario, tokens: &[u32]) -> Result<bool, String> {
    let turn = s
        .grammar
        .parse(tokens)
        .map_err(|e| format!("parse failed: {e}"))?;
    if tokens.last() != Some(&env.eos()) {
        return Err("the turn does not end with EOS".into());
    }
    if has_marker(&turn.thinking) {
        return Err(format!("marker text in the thinking: {:?}", turn.thinking));
    }
    if let Some(budget) = s.budget {
        let think_end = tokens
            .iter()
            .position(|&t| env.decode(&[t]) == b"</think>")
            .ok_or("no </think> token")?;
        // `</think>` comes at the budget, or a few tokens later to finish a character.
        if think_end > budget + 4 {
            return Err(format!("</think> at token {think_end}, budget {budget}"));
        }
    }
    match turn.outcome {
        TurnOutcome::ToolCalls(calls) => {
            if !s.calls_allowed {
                return Err("tool calls where only an answer is allowed".into());
            }
            if calls.is_empty() || (!s.parallel && calls.len() != 1) {
                return Err(format!("{} calls (parallel: {})", calls.len(), s.parallel));
            }
            for call in calls {
                let t = s
                    .tools
                    .iter()
                    .find(|t| t.name == call.name)
                    .ok_or_else(|| format!("unknown tool {}", call.name))?;
                if let Err(e) = t.validator.validate(&call.arguments) {
                    return Err(format!(
                        "arguments of {} fail the schema: {e}: {}",
                        call.name, call.arguments
                    ));
                }
                (t.deserialize)(call.arguments.clone()).map_err(|e| {
                    format!(
                        "arguments of {} do not deserialize: {e}: {}",
                        call.name, call.arguments
                    )
                })?;
            }
            Ok(true)
        }
        TurnOutcome::Answer(answer) => {
            if !s.answer_allowed {
                return Err("an answer where a tool call is required".into());
            }
            match answer {
                Answer::Text(text) if !s.json_answer => {
                    if text.trim().is_empty() || has_marker(&text) {
                        return Err(format!("bad text answer {text:?}"));
                    }
                }
                Answer::Json(value) if s.json_answer => {
                    let schema = schema_for!(Verdict).to_value();
                    let validator =
                        jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
                    if let Err(e) = validator.validate(&value) {
                        return Err(format!("answer fails its schema: {e}: {value}"));
                    }
                    serde_json::from_value::<Verdict>(value).map_err(|e| e.to_string())?;
                }
                other => return Err(format!("answer of the wrong kind: {other:?}")),
            }
            Ok(false)
        }
    }
}

/// Generates `seeds` runs under the scenario and checks each finished one; runs that hit
/// `cap` are counted (they must not error either).
pub fn run_scenario(
    env: &TokenEnv,
    s: &Scenario,
    seeds: std::ops::Range<u64>,
    cap: usize,
    make_source: &mut dyn FnMut(u64) -> Box<dyn LogitsSource>,
) -> Tally {
    let mut tally = Tally::default();
    for seed in seeds {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 7);
        let mut source = make_source(seed);
        let mut c = s.grammar.constraint();
        let run = match generate(env, &mut c, source.as_mut(), &mut rng, cap, None) {
            Ok(run) => run,
            Err(e) => panic!("{}: seed {seed}: constraint error {e}", s.name),
        };
        tally.runs += 1;
        tally.tokens += run.tokens.len();
        tally.forced += run.forced;
        if !run.finished {
            tally.capped += 1;
            continue;
        }
        tally.finished += 1;
        match check_turn(env, s, &run.tokens) {
            Ok(true) => tally.calls += 1,
            Ok(false) => tally.answers += 1,
            Err(e) => panic!(
                "{}: seed {seed}: {e}\nturn: {:?}",
                s.name,
                String::from_utf8_lossy(&env.decode(&run.tokens))
            ),
        }
    }
    tally
}
