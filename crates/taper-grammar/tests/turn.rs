//! The R1 turn grammar on both real vocabularies: transcripts written as the model
//! would write them are accepted and parsed; markers, the thinking budget, forced
//! tokens, the options and rollback behave as documented.

mod common;

use common::{Vocab, encode, env, feed_text, shared_tokenizer};
use serde_json::json;
use taper_grammar::{
    Answer, AnswerFormat, Constraint, ConstraintError, GrammarError, JsonGrammar, JsonSchema,
    TokenEnv, ToolCall, Turn, TurnGrammar, TurnGrammarBuilder, TurnOutcome,
};
use tokenizers::Tokenizer;

const VOCABS: [Vocab; 2] = [Vocab::Qwen3, Vocab::Llama];
const EOS: &str = "<｜end▁of▁sentence｜>";

fn weather() -> JsonSchema {
    JsonSchema::new(json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 14}
        },
        "required": ["city", "days"],
        "additionalProperties": false
    }))
    .expect("schema compiles")
}

fn time() -> JsonSchema {
    JsonSchema::new(json!({
        "type": "object",
        "properties": {"tz": {"type": "string"}},
        "additionalProperties": false
    }))
    .expect("schema compiles")
}

fn builder(env: &TokenEnv) -> TurnGrammarBuilder {
    TurnGrammar::builder(env)
        .tool("get_weather", weather())
        .tool("get_time", time())
}

fn call(name: &str, args: &str) -> String {
    format!(
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{args}\n```<｜tool▁call▁end｜>"
    )
}

fn calls(calls: &[String]) -> String {
    format!(
        "<｜tool▁calls▁begin｜>{}<｜tool▁calls▁end｜>{EOS}",
        calls.join("\n")
    )
}

/// Feeds the transcript and parses the finished turn.
fn run(vocab: Vocab, grammar: &TurnGrammar, transcript: &str) -> Turn {
    let env = env(vocab);
    let tok = shared_tokenizer(vocab);
    let mut c = grammar.constraint();
    let tokens = match feed_text(tok, &env, &mut c, transcript) {
        Ok(t) => t,
        Err(e) => panic!("{vocab:?}: {e}"),
    };
    assert!(c.is_finished(), "{vocab:?}: not finished");
    assert_eq!(env.decode(&tokens), transcript.as_bytes());
    match grammar.parse(&tokens) {
        Ok(turn) => turn,
        Err(e) => panic!("{vocab:?}: {e}"),
    }
}

/// Feeds the transcript; returns the error where it stops.
fn rejected(vocab: Vocab, grammar: &TurnGrammar, transcript: &str) -> String {
    let env = env(vocab);
    let mut c = grammar.constraint();
    match feed_text(shared_tokenizer(vocab), &env, &mut c, transcript) {
        Ok(_) if !c.is_finished() => "unfinished".into(),
        Ok(_) => panic!("{vocab:?}: accepted {transcript:?}"),
        Err(e) => e,
    }
}

#[test]
fn parallel_calls_are_accepted_and_parsed() {
    for vocab in VOCABS {
        let env = env(vocab);
        let grammar = builder(&env).build().expect("grammar");
        let transcript = format!(
            "Weather and time, then.</think>\n\n{}",
            calls(&[
                call("get_weather", r#"{"city": "Lyon", "days": 3}"#),
                call("get_time", r#"{"tz": "Europe/Paris"}"#),
            ])
        );
        let turn = run(vocab, &grammar, &transcript);
        assert_eq!(turn.thinking, "Weather and time, then.");
        assert_eq!(
            turn.outcome,
            TurnOutcome::ToolCalls(vec![
                ToolCall {
                    name: "get_weather".into(),
                    arguments: json!({"city": "Lyon", "days": 3}),
                },
                ToolCall {
                    name: "get_time".into(),
                    arguments: json!({"tz": "Europe/Paris"}),
                },
            ])
        );
    }
}

#[test]
fn text_and_json_answers_are_parsed() {
    for vocab in VOCABS {
        let env = env(vocab);
        let grammar = builder(&env).build().expect("grammar");
        let turn = run(
            vocab,
            &grammar,
            &format!("2 + 2 is 4.</think>\n\nThe answer is 4 (and 3 < 4).{EOS}"),
        );
        assert_eq!(
            turn.outcome,
            TurnOutcome::Answer(Answer::Text("The answer is 4 (and 3 < 4).".into()))
        );

        let grammar = builder(&env)
            .answer(AnswerFormat::Json(weather()))
            .build()
            .expect("grammar");
        let turn = run(
            vocab,
            &grammar,
            &format!("Done.</think>\n\n{{\"city\": \"Oslo\", \"days\": 14}}{EOS}"),
        );
        assert_eq!(
            turn.outcome,
            TurnOutcome::Answer(Answer::Json(json!({"city": "Oslo", "days": 14})))
        );

        // `-0` is the integer 0 (a JSON reader alone would give the float -0.0).
        let grammar = builder(&env)
            .tools_allowed(false)
            .answer(AnswerFormat::Json(
                JsonSchema::new(json!({"type": "array", "items": {"type": "integer"}}))
                    .expect("schema"),
            ))
            .build()
            .expect("grammar");
        let turn = run(vocab, &grammar, &format!("Zero.</think>\n\n[-0, 1]{EOS}"));
        let TurnOutcome::Answer(Answer::Json(value)) = turn.outcome else {
            panic!("{vocab:?}: not a JSON answer");
        };
        assert_eq!(value, json!([0, 1]));
        assert!(serde_json::from_value::<Vec<i8>>(value).is_ok());
    }
}

#[test]
fn markers_cannot_appear_in_free_text() {
    for vocab in VOCABS {
        let env = env(vocab);
        let grammar = builder(&env).build().expect("grammar");
        // In the reasoning, as text or as a token.
        let e = rejected(vocab, &grammar, "I could call <｜tool▁calls▁begin｜> now");
        assert!(e.contains("not allowed"), "{vocab:?}: {e}");
        let e = rejected(vocab, &grammar, "Just <｜User｜> text");
        assert!(e.contains("not allowed"), "{vocab:?}: {e}");
        // In the answer.
        let e = rejected(vocab, &grammar, "ok</think>\n\nSee <｜tool▁call▁begin｜>");
        assert!(e.contains("not allowed"), "{vocab:?}: {e}");
        // EOS cannot end the reasoning.
        let mut c = grammar.constraint();
        assert_eq!(c.is_allowed(env.eos()), Ok(false));
        // `<` alone is fine in both.
        let turn = run(
            vocab,
            &grammar,
            &format!("Is 1 < 2? <b>yes</b>.</think>\n\nYes, 1 < 2.{EOS}"),
        );
        assert_eq!(turn.thinking, "Is 1 < 2? <b>yes</b>.");
    }
}

#[test]
fn marker_tokens_are_matched_by_id_where_they_exist() {
    let env = env(Vocab::Qwen3);
    let tok = shared_tokenizer(Vocab::Qwen3);
    let grammar = builder(&env).build().expect("grammar");
    let begin = tok
        .token_to_id("<｜tool▁calls▁begin｜>")
        .expect("a Qwen3 token");
    let think_end = tok.token_to_id("</think>").expect("a Qwen3 token");
    let mut c = grammar.constraint();
    assert_eq!(c.is_allowed(begin), Ok(false));
    assert_eq!(
        c.commit(begin),
        Err(ConstraintError::TokenRejected { token: begin })
    );
    c.commit(think_end).expect("</think> ends the reasoning");
    assert!(c.thinking_done());
    assert_eq!(c.is_allowed(begin), Ok(true));
}

#[test]
fn forced_tokens_cover_markers_names_keys_and_eos() {
    for vocab in VOCABS {
        let env = env(vocab);
        let tok = shared_tokenizer(vocab);
        let grammar = builder(&env)
            .require_tool_call(true)
            .build()
            .expect("grammar");
        let mut c = grammar.constraint();
        // Feeds `s` and returns what the grammar forced beyond it.
        let text = |c: &mut Constraint, s: &str| -> Vec<u8> {
            let before = env.decode(c.tokens()).len();
            feed_text(tok, &env, c, s).unwrap_or_else(|e| panic!("{vocab:?}: {e}"));
            env.decode(c.tokens())[before + s.len()..].to_vec()
        };
        text(&mut c, "Hmm.</think>\n\n");
        // Once the calls block is opened (on Llama, once its text marker has begun),
        // everything up to where the two tool names part is forced.
        let forced = match vocab {
            Vocab::Qwen3 => text(&mut c, "<｜tool▁calls▁begin｜>"),
            Vocab::Llama => text(&mut c, "<"),
        };
        let forced = String::from_utf8(forced).expect("text");
        assert!(
            forced.ends_with("<｜tool▁call▁begin｜>function<｜tool▁sep｜>get"),
            "{vocab:?}: {forced:?}"
        );
        let forced = String::from_utf8(text(&mut c, "_w")).expect("text");
        assert_eq!(forced, "eather\n```json\n{\"city\":", "{vocab:?}");
        let forced = String::from_utf8(text(&mut c, " \"Rome\", \"days\": 2}")).expect("text");
        assert!(
            // (the last `>` may be held back to merge with what follows)
            forced.starts_with("\n```<｜tool▁call▁end｜"),
            "{vocab:?}: {forced:?}"
        );
        let rest = "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            .strip_prefix(forced.as_str())
            .expect("forced a prefix of the call's end");
        let forced = text(&mut c, rest);
        assert_eq!(forced, EOS.as_bytes(), "{vocab:?}");
        assert!(c.is_finished(), "{vocab:?}: EOS is forced after the calls");
        assert_eq!(c.tokens().last(), Some(&env.eos()));
    }
}

#[test]
fn single_call_forces_the_end_of_the_block() {
    for vocab in VOCABS {
        let env = env(vocab);
        let grammar = builder(&env)
            .parallel_calls(false)
            .build()
            .expect("grammar");
        let turn = run(
            vocab,
            &grammar,
            &format!("One call.</think>\n\n{}", calls(&[call("get_time", "{}")])),
        );
        assert!(matches!(turn.outcome, TurnOutcome::ToolCalls(ref c) if c.len() == 1));
        let e = rejected(
            vocab,
            &grammar,
            &format!(
                "Two.</think>\n\n{}",
                calls(&[call("get_time", "{}"), call("get_time", "{}")])
            ),
        );
        assert!(e.contains("forced"), "{vocab:?}: {e}");
    }
}

#[test]
fn options_select_answer_or_calls() {
    for vocab in VOCABS {
        let env = env(vocab);
        let answer_only = builder(&env).tools_allowed(false).build().expect("grammar");
        let call_text = format!("x</think>\n\n{}", calls(&[call("get_time", "{}")]));
        rejected(vocab, &answer_only, &call_text);
        run(vocab, &answer_only, &format!("x</think>\n\nNo tools.{EOS}"));

        let required = builder(&env)
            .require_tool_call(true)
            .build()
            .expect("grammar");
        run(vocab, &required, &call_text);
        let e = rejected(vocab, &required, &format!("x</think>\n\nNo tools.{EOS}"));
        assert!(e.contains("not allowed"), "{vocab:?}: {e}");

        // Unknown tool names and arguments outside the schema cannot be written.
        let either = builder(&env).build().expect("grammar");
        rejected(
            vocab,
            &either,
            &format!("x</think>\n\n{}", calls(&[call("get_date", "{}")])),
        );
        rejected(
            vocab,
            &either,
            &format!(
                "x</think>\n\n{}",
                calls(&[call("get_weather", r#"{"city": "Lyon", "days": 15}"#)])
            ),
        );
    }
}

#[test]
fn thinking_budget_forces_think_end() {
    for vocab in VOCABS {
        let env = env(vocab);
        let tok = shared_tokenizer(vocab);
        let grammar = builder(&env).thinking_budget(4).build().expect("grammar");
        let mut c = grammar.constraint();
        let words = encode(tok, "one two three four five six");
        for (i, &t) in words.iter().take(4).enumerate() {
            let commit = c.commit(t).expect("text in the reasoning");
            if i < 3 {
                assert!(commit.forced.is_empty());
            } else {
                assert_eq!(env.decode(&commit.forced), b"</think>", "{vocab:?}");
            }
        }
        assert!(c.thinking_done());

        // A zero budget closes the reasoning before anything is sampled.
        let grammar = builder(&env).thinking_budget(0).build().expect("grammar");
        let mut c = grammar.constraint();
        assert_eq!(env.decode(&c.fast_forward().expect("ff")), b"</think>");
    }
}

#[test]
fn thinking_budget_waits_for_the_end_of_a_character() {
    for vocab in VOCABS {
        let env = env(vocab);
        let grammar = builder(&env).thinking_budget(2).build().expect("grammar");
        let mut c = grammar.constraint();
        let byte = |b: u8| {
            let t = env.tokenize(&[b]);
            assert_eq!(t.len(), 1);
            t[0]
        };
        c.commit(env.tokenize(b"Hi")[0]).expect("text");
        // "😀" is F0 9F 98 80: the budget is spent after its first byte.
        assert!(c.commit(byte(0xF0)).expect("a lead byte").forced.is_empty());
        let mut logits = vec![0.0f32; env.vocab_size()];
        c.mask(&mut logits).expect("mask");
        let allowed: Vec<u32> = (0..logits.len() as u32)
            .filter(|&t| logits[t as usize].is_finite())
            .collect();
        assert!(!allowed.is_empty());
        for &t in &allowed {
            assert!(
                env.decode(&[t]).iter().all(|b| (0x80..=0xBF).contains(b)),
                "{vocab:?}: token {t} does not continue the character"
            );
        }
        assert!(
            c.commit(byte(0x9F))
                .expect("continuation")
                .forced
                .is_empty()
        );
        assert!(
            c.commit(byte(0x98))
                .expect("continuation")
                .forced
                .is_empty()
        );
        let commit = c.commit(byte(0x80)).expect("continuation");
        assert_eq!(env.decode(&commit.forced), b"</think>", "{vocab:?}");
        let mut tokens = c.tokens().to_vec();
        let mut rest = encode(shared_tokenizer(vocab), &format!("\n\nOk.{EOS}"));
        tokens.append(&mut rest);
        let turn = grammar.parse(&tokens).expect("parses");
        assert_eq!(turn.thinking, "Hi😀");
    }
}

#[test]
fn rollback_undoes_tokens_and_the_turn_state() {
    for vocab in VOCABS {
        let env = env(vocab);
        let tok = shared_tokenizer(vocab);
        let grammar = builder(&env).build().expect("grammar");
        let mut c = grammar.constraint();
        let tokens = feed_text(
            tok,
            &env,
            &mut c,
            &format!("Think.</think>\n\nAnswer A.{EOS}"),
        )
        .expect("accepted");
        assert!(c.is_finished());
        assert_eq!(
            c.commit(tokens[0]),
            Err(ConstraintError::Finished),
            "{vocab:?}"
        );
        // Back into the reasoning, then another ending.
        let think_end = tokens
            .iter()
            .position(|&t| env.decode(&[t]) == b"</think>")
            .expect("</think>");
        c.rollback(tokens.len() - think_end).expect("rollback");
        assert!(!c.thinking_done());
        assert!(!c.is_finished());
        assert_eq!(c.tokens(), &tokens[..think_end]);
        let more = feed_text(
            tok,
            &env,
            &mut c,
            &format!(" More.</think>\n\n{}", calls(&[call("get_time", "{}")])),
        )
        .expect("accepted after rollback");
        let turn = grammar.parse(&more).expect("parses");
        assert_eq!(turn.thinking, "Think. More.");
        assert!(matches!(turn.outcome, TurnOutcome::ToolCalls(_)));
        assert_eq!(
            c.rollback(more.len() + 1),
            Err(ConstraintError::Rollback {
                requested: more.len() + 1,
                available: more.len()
            })
        );
    }
}

#[test]
fn grammars_and_environments_are_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<TokenEnv>();
    send_sync::<TurnGrammar>();
    send_sync::<JsonGrammar>();
    send::<Constraint>();

    let env = env(Vocab::Qwen3);
    let grammar = builder(&env).build().expect("grammar");
    let tok = shared_tokenizer(Vocab::Qwen3);
    std::thread::scope(|s| {
        for i in 0..4 {
            let grammar = &grammar;
            let env = &env;
            s.spawn(move || {
                let mut c = grammar.constraint();
                let text = format!("Thread {i}.</think>\n\nDone {i}.{EOS}");
                let tokens = feed_text(tok, env, &mut c, &text).expect("accepted");
                let turn = grammar.parse(&tokens).expect("parses");
                assert_eq!(turn.thinking, format!("Thread {i}."));
            });
        }
    });
}

/// The Llama tokenizer with `</think>` taken out of the added tokens, so that every
/// marker is text.
fn all_text_tokenizer() -> Tokenizer {
    let path = common::fixture_path(Vocab::Llama.file());
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("JSON");
    for added in json["added_tokens"].as_array_mut().expect("added tokens") {
        if added["content"] == "</think>" {
            added["content"] = json!("<|reserved_special_token_6|>");
        }
    }
    json.to_string().parse().expect("tokenizer")
}

#[test]
fn think_end_as_text_works_too() {
    let tok = all_text_tokenizer();
    let env = TokenEnv::new(&tok, Vocab::Llama.rows(), common::eos_of(&tok)).expect("env");
    let grammar = builder(&env).build().expect("grammar");
    let mut c = grammar.constraint();
    let text = format!(
        "a < b and </b>.</think>\n\n{}",
        calls(&[call("get_weather", r#"{"city": "Nice", "days": 1}"#)])
    );
    let tokens = feed_text(&tok, &env, &mut c, &text).expect("accepted");
    let turn = grammar.parse(&tokens).expect("parses");
    assert_eq!(turn.thinking, "a < b and </b>.");
    assert!(matches!(turn.outcome, TurnOutcome::ToolCalls(_)));

    let grammar = builder(&env).thinking_budget(3).build().expect("grammar");
    let mut c = grammar.constraint();
    let mut forced = Vec::new();
    for t in encode(&tok, "one two three four") {
        let commit = c.commit(t).expect("text");
        forced.extend(commit.forced);
        if c.thinking_done() {
            break;
        }
    }
    assert_eq!(env.decode(&forced), b"</think>");
}

#[test]
fn builder_errors() {
    let env = env(Vocab::Qwen3);
    let err = TurnGrammar::builder(&env).require_tool_call(true).build();
    assert!(matches!(err, Err(GrammarError::EmptyToolSet)));
    let err = builder(&env)
        .tools_allowed(false)
        .require_tool_call(true)
        .build();
    assert!(matches!(err, Err(GrammarError::RequiredButNotAllowed)));
    let err = builder(&env).tool("get_time", time()).build();
    assert!(matches!(err, Err(GrammarError::DuplicateToolName(n)) if n == "get_time"));
    for bad in [
        "",
        "has space",
        "new\nline",
        "名前",
        &"x".repeat(65),
        "a\"b",
    ] {
        let err = TurnGrammar::builder(&env).tool(bad, time()).build();
        assert!(
            matches!(err, Err(GrammarError::InvalidToolName { ref name, .. }) if name == bad),
            "{bad:?}: {err:?}"
        );
    }
    // No tools and tools allowed: an answer-only grammar, not an error.
    let grammar = TurnGrammar::builder(&env).build().expect("grammar");
    assert!(grammar.tools().is_empty());
}
