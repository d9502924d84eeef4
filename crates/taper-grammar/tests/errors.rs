//! Bad input gives typed errors, never a panic or a silent fall-back: malformed
//! schemas, unsupported keywords (with their path), bad tool sets and names, tokens
//! outside the grammar, wrong logits, bad rollbacks, tokenizers that do not fit, and
//! token sequences that are not turns.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use common::{Vocab, encode, env, shared_tokenizer};
use schemars::{JsonSchema as Derive, schema_for};
use serde_json::{Value, json};
use taper_grammar::{
    ConstraintError, JsonGrammar, JsonSchema, ParseError, SchemaError, TokenEnv, TokenEnvError,
    TurnGrammar,
};

fn unsupported(schema: Value) -> (String, String) {
    match JsonSchema::new(schema) {
        Err(SchemaError::Unsupported { keyword, path, .. }) => (keyword, path),
        other => panic!("expected an unsupported keyword, got {other:?}"),
    }
}

fn malformed(schema: Value) -> String {
    match JsonSchema::new(schema) {
        Err(SchemaError::Malformed { path, .. }) => path,
        other => panic!("expected a malformed schema, got {other:?}"),
    }
}

#[test]
fn malformed_schemas_name_the_place() {
    assert_eq!(malformed(json!(42)), "");
    assert_eq!(malformed(json!("string")), "");
    assert_eq!(malformed(json!({"type": "strnig"})), "");
    assert_eq!(malformed(json!({"type": ["string", 3]})), "");
    assert_eq!(malformed(json!({"properties": []})), "");
    assert_eq!(
        malformed(json!({"properties": {"a": {"minLength": -1}}})),
        "/properties/a"
    );
    assert_eq!(
        malformed(json!({"properties": {"a/b~c": {"required": "x"}}})),
        "/properties/a~1b~0c"
    );
    assert_eq!(malformed(json!({"items": [{"type": "string"}]})), "");
    assert_eq!(
        malformed(json!({"$defs": {"x": {"anyOf": []}}})),
        "/$defs/x"
    );
    assert_eq!(malformed(json!({"multipleOf": 0})), "");
    assert_eq!(malformed(json!({"enum": "a"})), "");
    assert_eq!(
        malformed(json!({"prefixItems": [true, {"maximum": "9"}]})),
        "/prefixItems/1"
    );
}

#[test]
fn schemas_the_engine_refuses_are_compile_errors() {
    for schema in [
        json!({"type": "string", "pattern": "("}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"$ref": "https://example.com/remote.json"}),
        json!(false),
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
    ] {
        match JsonSchema::new(schema.clone()) {
            Err(SchemaError::Compile { .. }) => {}
            other => panic!("{schema}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_keywords_name_keyword_and_path() {
    assert_eq!(
        unsupported(json!({"not": {"type": "string"}})),
        ("not".into(), "".into())
    );
    assert_eq!(
        unsupported(json!({"$defs": {"A": {"properties": {"x": {"contains": {}}}}}})),
        ("contains".into(), "/$defs/A/properties/x".into())
    );
    assert_eq!(
        unsupported(json!({"anyOf": [{}, {"if": {}, "then": {}}]})),
        ("if".into(), "/anyOf/1".into())
    );
    assert_eq!(
        unsupported(json!({"items": {"propertyNames": {"pattern": "^a"}}})),
        ("propertyNames".into(), "/items".into())
    );
    assert_eq!(
        unsupported(json!({"properties": {"d": {"dependentRequired": {"a": ["b"]}}}})),
        ("dependentRequired".into(), "/properties/d".into())
    );
    assert_eq!(
        unsupported(json!({"unevaluatedProperties": false})),
        ("unevaluatedProperties".into(), "".into())
    );
    assert_eq!(
        unsupported(json!({"$schema": "http://json-schema.org/draft-07/schema#"})),
        ("$schema".into(), "".into())
    );
    assert_eq!(
        unsupported(json!({"type": "string", "format": "iri"})),
        ("format".into(), "".into())
    );
    // Keywords that constrain nothing are not errors.
    for fine in [
        json!({"uniqueItems": false}),
        json!({"then": {"type": "string"}}),
        json!({"if": {"type": "string"}}),
        json!({"minContains": 2}),
        json!({"unevaluatedProperties": true}),
        json!({"type": "integer", "format": "made-up"}),
        json!({"additionalItems": false, "dependencies": {"a": ["b"]}}),
        json!({"title": "t", "description": "d", "examples": [1], "deprecated": true}),
    ] {
        assert!(JsonSchema::new(fine.clone()).is_ok(), "{fine}");
    }
}

#[test]
fn one_of_that_cannot_be_enforced_is_located() {
    let overlapping = json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]});
    assert_eq!(
        unsupported(overlapping.clone()),
        ("oneOf".into(), "".into())
    );
    // Two oneOfs, only the second overlaps.
    let schema = json!({
        "properties": {
            "a": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "b": overlapping
        }
    });
    assert_eq!(
        unsupported(schema),
        ("oneOf".into(), "/properties/b".into())
    );
}

#[derive(Derive)]
#[allow(dead_code)]
struct WithSet {
    tags: HashSet<String>,
}

#[derive(Derive)]
#[allow(dead_code)]
struct WithNestedSet {
    inner: Vec<Inner>,
}

#[derive(Derive)]
#[allow(dead_code)]
struct Inner {
    ids: BTreeSet<u32>,
}

#[derive(Derive)]
#[allow(dead_code)]
struct WithIp {
    addr: IpAddr,
}

#[test]
fn rust_types_the_engine_cannot_enforce_are_errors() {
    let schema = |v: schemars::Schema| JsonSchema::new(v.to_value());
    assert!(matches!(
        schema(schema_for!(WithSet)),
        Err(SchemaError::Unsupported { ref keyword, ref path, .. })
            if keyword == "uniqueItems" && path == "/properties/tags"
    ));
    assert!(matches!(
        schema(schema_for!(WithNestedSet)),
        Err(SchemaError::Unsupported { ref keyword, ref path, .. })
            if keyword == "uniqueItems" && path == "/$defs/Inner/properties/ids"
    ));
    assert!(matches!(
        schema(schema_for!(WithIp)),
        Err(SchemaError::Unsupported { ref keyword, ref path, .. })
            if keyword == "format" && path == "/properties/addr"
    ));
}

#[test]
fn tokens_outside_the_grammar_are_refused_and_change_nothing() {
    let env = env(Vocab::Qwen3);
    let tok = shared_tokenizer(Vocab::Qwen3);
    let schema =
        JsonSchema::new(json!({"type": "array", "items": {"type": "integer"}})).expect("schema");
    let grammar = JsonGrammar::new(&env, &schema).expect("grammar");
    let mut c = grammar.constraint();
    let open = encode(tok, "[")[0];
    c.commit(open).expect("`[` starts the array");
    let word = encode(tok, "hello")[0];
    assert_eq!(
        c.commit(word),
        Err(ConstraintError::TokenRejected { token: word })
    );
    assert_eq!(c.tokens(), &[open]);
    // A padding id (inside the embedding rows, unknown to the tokenizer).
    let padding = (env.vocab_size() - 1) as u32;
    assert_eq!(
        c.commit(padding),
        Err(ConstraintError::TokenRejected { token: padding })
    );
    // Beyond the vocabulary.
    let beyond = env.vocab_size() as u32 + 5;
    assert_eq!(
        c.commit(beyond),
        Err(ConstraintError::TokenOutOfRange {
            token: beyond,
            vocab_size: env.vocab_size()
        })
    );
    assert!(matches!(
        c.is_allowed(beyond),
        Err(ConstraintError::TokenOutOfRange { .. })
    ));
    // EOS is not allowed inside the array.
    assert_eq!(c.is_allowed(env.eos()), Ok(false));
    // The constraint goes on after the refusals.
    for t in encode(tok, "1, 2]") {
        c.commit(t).expect("the array goes on");
    }
    assert!(c.is_finished());
    assert_eq!(c.commit(open), Err(ConstraintError::Finished));
    let mut logits = vec![0.0f32; env.vocab_size()];
    assert_eq!(c.mask(&mut logits), Err(ConstraintError::Finished));
}

#[test]
fn wrong_logits_length_and_rollback_are_errors() {
    let env = env(Vocab::Qwen3);
    let grammar = JsonGrammar::new(
        &env,
        &JsonSchema::new(json!({"type": "string"})).expect("schema"),
    )
    .expect("grammar");
    let mut c = grammar.constraint();
    let mut short = vec![0.0f32; 10];
    assert_eq!(
        c.mask(&mut short),
        Err(ConstraintError::LogitsLength {
            got: 10,
            expected: env.vocab_size()
        })
    );
    assert_eq!(
        c.rollback(1),
        Err(ConstraintError::Rollback {
            requested: 1,
            available: 0
        })
    );
    assert_eq!(c.rollback(0), Ok(()));
}

#[test]
fn token_env_refuses_tokenizers_that_do_not_fit() {
    let tok = shared_tokenizer(Vocab::Qwen3);
    let eos = common::eos_of(tok);
    assert!(matches!(
        TokenEnv::new(tok, 1000, eos),
        Err(TokenEnvError::TokenBeyondVocab {
            vocab_size: 1000,
            ..
        })
    ));
    assert!(matches!(
        TokenEnv::new(tok, Vocab::Qwen3.rows(), 151_900),
        Err(TokenEnvError::BadEos { eos: 151_900, .. })
    ));
    assert!(matches!(
        TokenEnv::new(tok, Vocab::Qwen3.rows(), 999_999),
        Err(TokenEnvError::BadEos { .. })
    ));
    // A word-level tokenizer has no byte-level alphabet.
    let word_level: tokenizers::Tokenizer = json!({
        "version": "1.0",
        "added_tokens": [],
        "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "<unk>": 2}, "unk_token": "<unk>"}
    })
    .to_string()
    .parse()
    .expect("a word-level tokenizer");
    assert!(matches!(
        TokenEnv::new(&word_level, 3, 1),
        Err(TokenEnvError::UnsupportedTokenizer(_))
    ));
}

#[test]
fn token_sequences_that_are_not_turns_are_parse_errors() {
    let env = env(Vocab::Qwen3);
    let tok = shared_tokenizer(Vocab::Qwen3);
    let args = JsonSchema::new(json!({"type": "object"})).expect("schema");
    let grammar = TurnGrammar::builder(&env)
        .tool("known", args)
        .build()
        .expect("grammar");
    let parse = |text: &str| grammar.parse(&encode(tok, text));
    assert_eq!(parse(""), Err(ParseError::Unfinished));
    assert_eq!(parse("no end</think>\n\nhi"), Err(ParseError::Unfinished));
    assert!(matches!(
        parse("no think end<｜end▁of▁sentence｜>"),
        Err(ParseError::Malformed(_))
    ));
    assert_eq!(
        parse(
            "x</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>other\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
        ),
        Err(ParseError::UnknownTool("other".into()))
    );
    assert!(matches!(
        parse(
            "x</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>known\n```json\n{oops}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
        ),
        Err(ParseError::InvalidJson { .. })
    ));
    assert_eq!(
        grammar.parse(&[env.vocab_size() as u32, env.eos()]),
        Err(ParseError::TokenOutOfRange(env.vocab_size() as u32))
    );
}

#[test]
fn deeply_nested_schemas_are_refused_not_overflowed() {
    let mut schema = json!({"type": "string"});
    for _ in 0..1000 {
        schema = json!({ "items": schema });
    }
    assert!(matches!(
        JsonSchema::new(schema),
        Err(SchemaError::Malformed { .. })
    ));
}
