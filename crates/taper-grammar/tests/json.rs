//! JSON values for a schema: schemars schemas of every construct compile, integer
//! formats become bounds, forced tokens, EOS and rollback.

mod common;

use common::types::{Calc, Command, Event, Lookup, Node, NumOrWord, Options, Rich, Search, Shape};
use common::{Vocab, encode, env, feed_text, shared_tokenizer};
use schemars::{JsonSchema as Derive, schema_for};
use serde_json::{Value, json};
use taper_grammar::{ConstraintError, JsonGrammar, JsonSchema};

fn schema<T: Derive>() -> JsonSchema {
    JsonSchema::new(schema_for!(T).to_value())
        .unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<T>()))
}

/// Whether the grammar of `schema` accepts `text` (written in the generated layout).
fn accepts(schema: &JsonSchema, text: &str) -> bool {
    let env = env(Vocab::Qwen3);
    let grammar = JsonGrammar::new(&env, schema).expect("grammar");
    let mut c = grammar.constraint();
    let eos = "<｜end▁of▁sentence｜>";
    feed_text(
        shared_tokenizer(Vocab::Qwen3),
        &env,
        &mut c,
        &format!("{text}{eos}"),
    )
    .is_ok()
        && c.is_finished()
}

#[test]
fn schemars_schemas_of_every_construct_compile() {
    let env = env(Vocab::Qwen3);
    for s in [
        schema::<Search>(),
        schema::<Shape>(),
        schema::<Command>(),
        schema::<Event>(),
        schema::<NumOrWord>(),
        schema::<Node>(),
        schema::<Options>(),
        schema::<Rich>(),
        schema::<Calc>(),
        schema::<Lookup>(),
    ] {
        JsonGrammar::new(&env, &s).expect("grammar compiles");
    }
}

#[test]
fn values_of_rust_types_are_accepted() {
    let cases: Vec<(JsonSchema, Value)> = vec![
        (
            schema::<Shape>(),
            serde_json::to_value(Shape::Rect { w: 3, h: 65535 }).expect("json"),
        ),
        (schema::<Shape>(), json!("empty")),
        (schema::<Shape>(), json!({"polygon": [[1, -2], [3, 4]]})),
        (
            schema::<Command>(),
            json!({"kind": "move", "dx": -128, "dy": 127}),
        ),
        (schema::<Event>(), json!({"type": "Key", "data": "é"})),
        (schema::<NumOrWord>(), json!(-42)),
        (
            schema::<Node>(),
            json!({"label": "a", "children": [{"label": "b", "children": [], "weight": 7}]}),
        ),
    ];
    for (schema, value) in cases {
        let text = layout(&value);
        assert!(accepts(&schema, &text), "{text}");
    }
}

#[test]
fn integer_formats_and_bounds_are_enforced() {
    let uint32 = JsonSchema::new(json!({"type": "integer", "format": "uint32", "minimum": 0}))
        .expect("schema");
    assert!(accepts(&uint32, "4294967295"));
    assert!(!accepts(&uint32, "4294967296"));
    assert!(!accepts(&uint32, "-1"));
    let int8 = schema::<Command>();
    assert!(!accepts(&int8, r#"{"kind": "move", "dx": 128, "dy": 0}"#));
    let int64 = JsonSchema::new(json!({"type": "integer", "format": "int64"})).expect("schema");
    assert!(accepts(&int64, "9223372036854775807"));
    assert!(!accepts(&int64, "9223372036854775808"));
    // The engine's lowest representable bound (see `JsonSchema`).
    assert!(accepts(&int64, "-9223372036854774784"));
    assert!(!accepts(&int64, "-9223372036854775808"));
    let ranged = schema::<Options>();
    assert!(!accepts(
        &ranged,
        r#"{"verbose": true, "retries": 6, "ident": "abc"}"#
    ));
    assert!(!accepts(
        &ranged,
        r#"{"verbose": true, "retries": 5, "ident": "ab"}"#
    ));
    assert!(accepts(
        &ranged,
        r#"{"verbose": true, "retries": 5, "ident": "abc"}"#
    ));
    // `deny_unknown_fields` forbids extra keys; other structs allow them.
    assert!(!accepts(
        &ranged,
        r#"{"retries": 1, "ident": "abc", "x": 1}"#
    ));
    assert!(accepts(&schema::<Search>(), r#"{"query": "q", "x": [1]}"#));
}

#[test]
fn numbers_stay_in_f64_range() {
    let number = JsonSchema::new(json!({"type": "number"})).expect("schema");
    assert!(accepts(&number, "-1.5e99"));
    assert!(accepts(&number, "1E-99"));
    assert!(!accepts(&number, "1e100"));
    assert!(!accepts(&number, "1e-100"));
    assert!(accepts(&number, &"9".repeat(100)));
    assert!(!accepts(&number, &"9".repeat(101)));
    // Inside strings digits are free.
    let any = JsonSchema::new(json!({})).expect("schema");
    assert!(accepts(&any, r#"["1e999", 2e20]"#));
    assert!(!accepts(&any, r#"["1e999", 2e200]"#));
}

#[test]
fn an_anchored_pattern_is_enforced_whole() {
    // An arithmetic expression: numbers joined by binary operators, parentheses one
    // level deep (the shape of the embedded model's calculator argument).
    let number = r"[0-9]+(\.[0-9]+)?";
    let group = format!(r"({number}|\({number}( [-+*/] {number})*\))");
    let pattern = format!("^{group}( [-+*/] {group})*$");
    let expression =
        JsonSchema::new(json!({"type": "string", "pattern": pattern})).expect("schema");
    for ok in ["12 * 3", "(4 * 2.5 + 3) / 2", "7"] {
        assert!(accepts(&expression, &format!("{ok:?}")), "{ok}");
    }
    for bad in [
        "676 *  / 10",
        "22 * 2 + 22) / 200",
        "200 + 202 7",
        "12*3",
        "(1 + (2 * 3))",
        "",
    ] {
        assert!(!accepts(&expression, &format!("{bad:?}")), "{bad}");
    }
}

#[test]
fn keys_and_eos_are_forced_and_rollback_crosses_eos() {
    let env = env(Vocab::Qwen3);
    let tok = shared_tokenizer(Vocab::Qwen3);
    let grammar = JsonGrammar::new(&env, &schema::<Calc>()).expect("grammar");
    let mut c = grammar.constraint();
    let forced = c.fast_forward().expect("ff");
    assert_eq!(env.decode(&forced), b"{\"expression\":");
    for t in encode(tok, " \"1+1\"") {
        c.commit(t).expect("the expression");
    }
    let close = encode(tok, "}")[0];
    let commit = c.commit(close).expect("`}` ends the object");
    assert_eq!(commit.forced, vec![env.eos()]);
    assert!(commit.finished);
    let len = c.tokens().len();
    // Back before EOS: only EOS is allowed, and it is forced again.
    c.rollback(1).expect("rollback");
    assert!(!c.is_finished());
    assert_eq!(c.is_allowed(env.eos()), Ok(true));
    assert_eq!(c.is_allowed(close), Ok(false));
    assert_eq!(c.fast_forward().expect("ff"), vec![env.eos()]);
    // Back before `}`: the object can go on.
    c.rollback(2).expect("rollback");
    assert_eq!(c.tokens().len(), len - 2);
    let comma = encode(tok, ",")[0];
    c.commit(comma).expect("`,` before another key");
    assert_eq!(
        c.commit(close),
        Err(ConstraintError::TokenRejected { token: close })
    );
    feed_text(tok, &env, &mut c, " \"precision\": 3}").expect("the optional key");
    assert!(c.is_finished());
    let text = env.decode(c.tokens());
    assert_eq!(
        text,
        "{\"expression\": \"1+1\", \"precision\": 3}<｜end▁of▁sentence｜>".as_bytes()
    );
}

/// Compact JSON with `", "` and `": "`, the layout the grammar generates.
fn layout(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(layout).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), layout(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Repeated bounded numbers are compiled once (the engine's copy shares them), and
/// each occurrence still enforces its own bounds; a property named like an annotation
/// keyword is kept.
#[test]
fn repeated_bounds_are_enforced_at_every_occurrence() {
    let s = JsonSchema::new(json!({
        "type": "object",
        "properties": {
            "a": {"type": "integer", "format": "int32", "description": "first"},
            "b": {"type": "integer", "format": "int32"},
            "c": {"type": "integer", "format": "uint8"},
            "d": {"type": "integer", "format": "uint8", "title": "fourth"},
            "description": {"type": "integer", "format": "int32"}
        },
        "required": ["a", "b", "c", "d", "description"]
    }))
    .expect("schema");
    let ok = r#"{"a": -2147483648, "b": 2147483647, "c": 0, "d": 255, "description": 7}"#;
    assert!(accepts(&s, ok));
    for bad in [
        r#"{"a": -2147483649, "b": 0, "c": 0, "d": 0, "description": 0}"#,
        r#"{"a": 0, "b": 2147483648, "c": 0, "d": 0, "description": 0}"#,
        r#"{"a": 0, "b": 0, "c": 256, "d": 0, "description": 0}"#,
        r#"{"a": 0, "b": 0, "c": 0, "d": -1, "description": 0}"#,
        r#"{"a": 0, "b": 0, "c": 0, "d": 0, "description": 2147483648}"#,
    ] {
        assert!(!accepts(&s, bad), "{bad}");
    }
}
