//! `ChatFormat` against the official chat templates of the two distills: the same
//! conversations rendered by taper and by the models' Jinja templates (minijinja)
//! encode to the same tokens. Where the format deliberately differs (the three
//! normalizations documented on `ChatFormat`), the template's text is rewritten first,
//! one narrow rewrite per difference, and each rewrite must change the text of the
//! conversations it is declared for; every other conversation matches as rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, context};
use serde_json::json;
use taper::{AssistantMessage, ChatFormat, Message, RenderedCall, Tokenizer, ToolInfo};

const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
const ASSISTANT: &str = "<｜Assistant｜>";
const THINK_OPEN: &str = "<think>\n";
const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const CALLS_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const TOOL_SEP: &str = "<｜tool▁sep｜>";
const OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
const OUTPUTS_END: &str = "<｜tool▁outputs▁end｜>";
const OUTPUT_BEGIN: &str = "<｜tool▁output▁begin｜>";
const OUTPUT_END: &str = "<｜tool▁output▁end｜>";

const TOOL_MARKERS: [&str; 9] = [
    CALLS_BEGIN,
    CALLS_END,
    CALL_BEGIN,
    CALL_END,
    TOOL_SEP,
    OUTPUTS_BEGIN,
    OUTPUTS_END,
    OUTPUT_BEGIN,
    OUTPUT_END,
];

const FORMATS: [ChatFormat; 2] = [ChatFormat::R1DistillLlama, ChatFormat::R1Qwen3];

fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(relative)
}

fn tokenizer(format: ChatFormat) -> &'static Tokenizer {
    static LLAMA: OnceLock<Tokenizer> = OnceLock::new();
    static QWEN3: OnceLock<Tokenizer> = OnceLock::new();
    let (cell, name) = match format {
        ChatFormat::R1DistillLlama => (&LLAMA, "r1_llama"),
        ChatFormat::R1Qwen3 => (&QWEN3, "r1_qwen3"),
    };
    cell.get_or_init(|| {
        let path = fixture(&format!("cache/{name}.tokenizer.json"));
        assert!(
            path.exists(),
            "{} is missing: run scripts/fetch-fixtures.sh first",
            path.display()
        );
        Tokenizer::from_file(&path).unwrap()
    })
}

fn template_source(format: ChatFormat) -> String {
    let name = match format {
        ChatFormat::R1DistillLlama => "distill_llama_8b.jinja",
        ChatFormat::R1Qwen3 => "r1_0528_qwen3_8b.reconstructed.jinja",
    };
    std::fs::read_to_string(fixture(&format!("chat-templates/{name}"))).unwrap()
}

/// Python's `str.split(sep)`, the one Python string method the templates call
/// (`content.split('</think>')[-1]`); minijinja itself has no Python methods.
fn python_split(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match (value.as_str(), method, args) {
        (Some(text), "split", [sep]) => match sep.as_str() {
            Some(sep) if !sep.is_empty() => Ok(text.split(sep).map(Value::from).collect()),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                "split takes one non-empty string separator",
            )),
        },
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn object(entries: Vec<(&'static str, Value)>) -> Value {
    Value::from_object(entries.into_iter().collect::<BTreeMap<_, _>>())
}

/// The conversation as the templates read it: a system message first, then one map
/// per message. An assistant message's `content` carries its reasoning as the model
/// wrote it (`<think>\n...</think>` then the text); the Llama template takes a turn
/// with tool calls only when its content is none.
fn template_messages(format: ChatFormat, system: Option<&str>, messages: &[Message]) -> Value {
    let mut out = Vec::new();
    if let Some(system) = system {
        out.push(object(vec![
            ("role", Value::from("system")),
            ("content", Value::from(system)),
        ]));
    }
    for message in messages {
        out.push(match message {
            Message::User(text) => object(vec![
                ("role", Value::from("user")),
                ("content", Value::from(text.as_str())),
            ]),
            Message::Tool(text) => object(vec![
                ("role", Value::from("tool")),
                ("content", Value::from(text.as_str())),
            ]),
            Message::Assistant(m) => {
                let content = match &m.thinking {
                    Some(thinking) => format!("<think>\n{thinking}</think>{}", m.content),
                    None => m.content.clone(),
                };
                if m.calls.is_empty() {
                    object(vec![
                        ("role", Value::from("assistant")),
                        ("content", Value::from(content)),
                    ])
                } else {
                    let calls: Value = m
                        .calls
                        .iter()
                        .map(|call| {
                            object(vec![
                                ("type", Value::from("function")),
                                (
                                    "function",
                                    object(vec![
                                        ("name", Value::from(call.name.as_str())),
                                        ("arguments", Value::from(call.arguments.as_str())),
                                    ]),
                                ),
                            ])
                        })
                        .collect();
                    let content = match format {
                        ChatFormat::R1DistillLlama => Value::from(()),
                        ChatFormat::R1Qwen3 => Value::from(content),
                    };
                    object(vec![
                        ("role", Value::from("assistant")),
                        ("content", content),
                        ("tool_calls", calls),
                    ])
                }
            }
        });
    }
    Value::from(out)
}

/// The official template's rendering, with the whitespace options transformers'
/// `apply_chat_template` uses.
fn render_template(
    format: ChatFormat,
    system: Option<&str>,
    messages: &[Message],
    add_generation_prompt: bool,
) -> String {
    let source = template_source(format);
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .unwrap(),
    );
    env.set_unknown_method_callback(|_, value, method, args| python_split(value, method, args));
    env.template_from_str(&source)
        .unwrap()
        .render(context! {
            messages => template_messages(format, system, messages),
            bos_token => BOS,
            add_generation_prompt => add_generation_prompt,
        })
        .unwrap()
}

/// A documented difference between `ChatFormat` and an official template, as a
/// rewrite of the template's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Normalization {
    /// 1. The prompt for a new assistant turn ends with `<think>\n`. The Llama template
    ///    writes it after a user turn only, the Qwen3 one never: append it where the
    ///    template's generation prompt ends (after `<｜Assistant｜>` or the outputs).
    ReasoningOpening,
    /// 2. (Llama) Every tool-call block is closed once, after its last call. The
    ///    template closes it after every call but the first: drop the closings it
    ///    writes between calls, and close a block whose last call it left open.
    CloseCallBlock,
    /// 3. (Llama) Later tool rounds render like the first. The template never resets
    ///    its "first call" and "first output" flags: a later round's calls start with
    ///    `\n` and no block opening (after tool outputs, which it leaves unclosed, or
    ///    after a user turn, with no `<｜Assistant｜>`), and its first output starts
    ///    with `\n` and no block opening.
    LaterRounds,
}

impl Normalization {
    /// The order the rewrites are applied in.
    const ALL: [Normalization; 3] = [
        Normalization::LaterRounds,
        Normalization::CloseCallBlock,
        Normalization::ReasoningOpening,
    ];

    fn apply(self, text: &str) -> String {
        match self {
            Normalization::ReasoningOpening => {
                // Only at the very end, where the template's generation prompt stops.
                assert!(
                    !text.ends_with(THINK_OPEN),
                    "the template already opens the reasoning: {text:?}"
                );
                assert!(
                    text.ends_with(ASSISTANT) || text.ends_with(OUTPUTS_END),
                    "not the end of a generation prompt: {text:?}"
                );
                format!("{text}{THINK_OPEN}")
            }
            Normalization::CloseCallBlock => {
                let closing = format!("{CALLS_END}{EOS}");
                let between = format!("{CALL_END}{closing}\n{CALL_BEGIN}");
                // Parallel calls: no closing between two calls of one block.
                let text = text.replace(&between, &format!("{CALL_END}\n{CALL_BEGIN}"));
                // A call followed by neither another call nor a closing ends a block
                // the template left open: close it.
                let next_call = format!("\n{CALL_BEGIN}");
                let mut pieces = text.split(CALL_END);
                let mut out = pieces.next().unwrap_or_default().to_string();
                for piece in pieces {
                    out.push_str(CALL_END);
                    if !piece.starts_with(CALLS_END) && !piece.starts_with(&next_call) {
                        out.push_str(&closing);
                    }
                    out.push_str(piece);
                }
                out
            }
            Normalization::LaterRounds => {
                // The first output of a later round follows the closed call block
                // with `\n` instead of the outputs block's opening.
                let text = text.replace(
                    &format!("{EOS}\n{OUTPUT_BEGIN}"),
                    &format!("{EOS}{OUTPUTS_BEGIN}{OUTPUT_BEGIN}"),
                );
                let continued = [CALL_END.to_string(), format!("{CALL_END}{CALLS_END}{EOS}")];
                let call = format!("\n{CALL_BEGIN}");
                let mut pieces = text.split(&call);
                let mut out = pieces.next().unwrap_or_default().to_string();
                // A call that starts with `\n` and does not follow another call of its
                // block opens a later round: after tool outputs, close them and open
                // the block; after a user turn, open the assistant turn and the block.
                for piece in pieces {
                    if continued.iter().any(|c| out.ends_with(c.as_str())) {
                        out.push('\n');
                    } else if out.ends_with(OUTPUT_END) {
                        out.push_str(OUTPUTS_END);
                        out.push_str(CALLS_BEGIN);
                    } else {
                        out.push_str(ASSISTANT);
                        out.push_str(CALLS_BEGIN);
                    }
                    out.push_str(CALL_BEGIN);
                    out.push_str(piece);
                }
                out
            }
        }
    }
}

use Normalization::{CloseCallBlock, LaterRounds, ReasoningOpening};

/// A conversation, and the normalizations each format's template needs for it.
struct Case {
    name: &'static str,
    system: Option<String>,
    messages: Vec<Message>,
    open_turn: bool,
    llama: &'static [Normalization],
    qwen3: &'static [Normalization],
}

fn user(text: &str) -> Message {
    Message::User(text.into())
}

fn tool(text: &str) -> Message {
    Message::Tool(text.into())
}

fn answer(thinking: Option<&str>, content: &str) -> Message {
    Message::Assistant(AssistantMessage {
        thinking: thinking.map(Into::into),
        content: content.into(),
        calls: vec![],
    })
}

fn calls(thinking: Option<&str>, content: &str, calls: &[(&str, String)]) -> Message {
    Message::Assistant(AssistantMessage {
        thinking: thinking.map(Into::into),
        content: content.into(),
        calls: calls
            .iter()
            .map(|(name, arguments)| RenderedCall {
                name: (*name).into(),
                arguments: arguments.clone(),
            })
            .collect(),
    })
}

fn args(value: serde_json::Value) -> String {
    serde_json::to_string(&value).unwrap()
}

fn calculator_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "An arithmetic expression."}},
        "required": ["expression"]
    })
}

fn weather_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city"]
    })
}

fn tools_system_prompt(format: ChatFormat, base: &str) -> String {
    let calculator = calculator_schema();
    let weather = weather_schema();
    format.system_prompt(
        Some(base),
        &[
            ToolInfo {
                name: "calculator",
                description: "Exact arithmetic.",
                schema: &calculator,
            },
            ToolInfo {
                name: "get_weather",
                description: "The current weather in a city.",
                schema: &weather,
            },
        ],
    )
}

fn cases(format: ChatFormat) -> Vec<Case> {
    let system = Some(tools_system_prompt(format, "You are a careful assistant."));
    let add = args(json!({"expression": "2+3"}));
    let paris = args(json!({"city": "Paris"}));
    let tokyo = args(json!({"city": "Tokyo", "unit": "celsius"}));
    let lima = args(json!({"city": "Lima", "unit": "fahrenheit"}));
    vec![
        Case {
            name: "single user turn with the generation prompt",
            system: None,
            messages: vec![user("What is 2+3?")],
            open_turn: true,
            llama: &[],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "single user turn without the generation prompt",
            system: Some("Be brief.".into()),
            messages: vec![user("What is 2+3?")],
            open_turn: false,
            llama: &[],
            qwen3: &[],
        },
        Case {
            name: "system prompt with two tools",
            system: system.clone(),
            messages: vec![user("Weather in Paris, and 17*23?")],
            open_turn: true,
            llama: &[],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "one call, its output, the answer",
            system: system.clone(),
            messages: vec![
                user("What is 2+3?"),
                calls(
                    Some("I will use the calculator."),
                    "\n\n",
                    &[("calculator", add.clone())],
                ),
                tool("5"),
                answer(Some("The tool says 5."), "\n\n2+3 = 5."),
            ],
            open_turn: false,
            llama: &[CloseCallBlock],
            qwen3: &[],
        },
        Case {
            name: "continuation after a tool output",
            system: system.clone(),
            messages: vec![
                user("What is 2+3?"),
                calls(
                    Some("I will use the calculator."),
                    "\n\n",
                    &[("calculator", add.clone())],
                ),
                tool("5"),
            ],
            open_turn: true,
            llama: &[CloseCallBlock, ReasoningOpening],
            qwen3: &[ReasoningOpening],
        },
        // The Llama template closes the block after the second call, which for two
        // calls is exactly once, after the last: no normalization.
        Case {
            name: "two parallel calls, two outputs, the answer",
            system: system.clone(),
            messages: vec![
                user("Weather in Paris and Tokyo?"),
                calls(
                    Some("Two cities, two calls."),
                    "\n\n",
                    &[
                        ("get_weather", paris.clone()),
                        ("get_weather", tokyo.clone()),
                    ],
                ),
                tool("Paris: 18°C, sunny"),
                tool("Tokyo: 22°C, cloudy"),
                answer(Some("Both came back."), "\n\nParis 18°C, Tokyo 22°C."),
            ],
            open_turn: false,
            llama: &[],
            qwen3: &[],
        },
        Case {
            name: "three parallel calls, then the continuation",
            system: system.clone(),
            messages: vec![
                user("Weather in Paris, Tokyo and Lima?"),
                calls(
                    None,
                    "",
                    &[
                        ("get_weather", paris.clone()),
                        ("get_weather", tokyo.clone()),
                        ("get_weather", lima.clone()),
                    ],
                ),
                tool("18°C"),
                tool("22°C"),
                tool("70°F"),
            ],
            open_turn: true,
            llama: &[CloseCallBlock, ReasoningOpening],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "multi-turn: user, answer, user, answer",
            system: Some("Be brief.".into()),
            messages: vec![
                user("Capital of France?"),
                answer(Some("Easy: Paris."), "\n\nParis."),
                user("And of Japan?"),
                answer(Some("Tokyo."), "\n\nTokyo."),
            ],
            open_turn: false,
            llama: &[],
            qwen3: &[],
        },
        Case {
            name: "a new assistant turn right after an answer",
            system: None,
            messages: vec![user("Hi"), answer(Some("x"), "\n\nHello.")],
            open_turn: true,
            llama: &[],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "multi-turn, then a new question",
            system: None,
            messages: vec![
                user("Capital of France?"),
                answer(None, "Paris."),
                user("And of Japan?"),
                answer(Some(""), "\n\nTokyo."),
                user("And of Peru?"),
            ],
            open_turn: true,
            llama: &[],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "two tool rounds in one turn",
            system: system.clone(),
            messages: vec![
                user("Is it warmer in Paris than 2+3 degrees, and how about Tokyo and Lima?"),
                calls(
                    Some("First the number."),
                    "\n\n",
                    &[("calculator", add.clone())],
                ),
                tool("5"),
                calls(
                    Some("Now the cities."),
                    "\n\n",
                    &[
                        ("get_weather", tokyo.clone()),
                        ("get_weather", lima.clone()),
                    ],
                ),
                tool("22°C"),
                tool("70°F"),
                answer(Some("All warmer than 5."), "\n\nYes, both are."),
            ],
            open_turn: false,
            llama: &[LaterRounds, CloseCallBlock],
            qwen3: &[],
        },
        Case {
            name: "continuation after a second tool round",
            system: system.clone(),
            messages: vec![
                user("What is (2+3) and the weather in Paris?"),
                calls(None, "\n\n", &[("calculator", add.clone())]),
                tool("5"),
                calls(None, "\n\n", &[("get_weather", paris.clone())]),
                tool("18°C"),
            ],
            open_turn: true,
            llama: &[LaterRounds, CloseCallBlock, ReasoningOpening],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "tool calls in two user turns",
            system: system.clone(),
            messages: vec![
                user("Weather in Paris?"),
                calls(Some("Call it."), "\n\n", &[("get_weather", paris.clone())]),
                tool("18°C"),
                answer(Some("Done."), "\n\n18°C in Paris."),
                user("And in Tokyo?"),
                calls(Some("Again."), "\n\n", &[("get_weather", tokyo.clone())]),
                tool("22°C"),
                answer(Some("Done again."), "\n\n22°C in Tokyo."),
            ],
            open_turn: false,
            llama: &[LaterRounds, CloseCallBlock],
            qwen3: &[],
        },
        Case {
            name: "reasoning the templates drop",
            system: None,
            messages: vec![
                user("What is 2+2?"),
                answer(
                    Some("SECRET-REASONING: 2 and 2.\nThat makes 4.\n"),
                    "\n\nThe answer is 4.",
                ),
                user("Sure?"),
            ],
            open_turn: true,
            llama: &[],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "unicode: CJK, emoji, accents",
            system: Some(tools_system_prompt(
                format,
                "你是一个助手。Réponds brièvement. 🙂",
            )),
            messages: vec![
                user("東京の天気は？ 🌧️ Und in Zürich?"),
                calls(
                    Some("日本語で答える。"),
                    "好的。\n\n",
                    &[("get_weather", args(json!({"city": "東京"})))],
                ),
                tool("小雨，12°C 🌂"),
                answer(Some("雨です。"), "\n\n東京は小雨です ☔（12°C）。"),
            ],
            open_turn: false,
            llama: &[CloseCallBlock],
            qwen3: &[],
        },
        Case {
            name: "empty tool output",
            system: system.clone(),
            messages: vec![
                user("Run it."),
                calls(
                    None,
                    "\n\n",
                    &[("calculator", args(json!({"expression": ""})))],
                ),
                tool(""),
                answer(Some("Nothing came back."), "\n\nThe tool returned nothing."),
            ],
            open_turn: false,
            llama: &[CloseCallBlock],
            qwen3: &[],
        },
        Case {
            name: "nested JSON arguments",
            system: None,
            messages: vec![
                user("Search."),
                calls(
                    Some("Nested filter."),
                    "\n\n",
                    &[(
                        "search",
                        args(json!({
                            "query": {
                                "filter": {"and": [
                                    {"field": "price", "gte": 1.5},
                                    {"field": "tags", "in": ["a", "b\"c", "d\\e"]}
                                ]},
                                "limit": 10
                            },
                            "options": {"deep": {"deeper": {"flag": true, "none": null, "text": "line\nbreak {}[]"}}}
                        })),
                    )],
                ),
                tool("{\"hits\": []}"),
            ],
            open_turn: true,
            llama: &[CloseCallBlock, ReasoningOpening],
            qwen3: &[ReasoningOpening],
        },
        Case {
            name: "pretty-printed JSON arguments",
            system: None,
            messages: vec![
                user("Compute."),
                calls(
                    None,
                    "\n\n",
                    &[(
                        "calculator",
                        serde_json::to_string_pretty(&json!({"expression": "(1 + 2) * 3"}))
                            .unwrap(),
                    )],
                ),
                tool("9"),
                answer(None, "9"),
            ],
            open_turn: false,
            llama: &[CloseCallBlock],
            qwen3: &[],
        },
    ]
}

/// Panics with where the tokens first differ, decoded, if they do.
fn assert_same_tokens(
    what: &str,
    tokenizer: &Tokenizer,
    ours: (&str, &[u32]),
    template: (&str, &[u32]),
) {
    if ours.1 == template.1 {
        return;
    }
    let at = ours
        .1
        .iter()
        .zip(template.1)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.1.len().min(template.1.len()));
    let window = |ids: &[u32]| {
        let ids = &ids[at.saturating_sub(3)..(at + 6).min(ids.len())];
        format!("{ids:?} {:?}", tokenizer.decode(ids).unwrap())
    };
    panic!(
        "{what}: tokens differ at {at} ({} ours, {} template's)\n  ours:     {}\n  template: {}\nours:     {:?}\ntemplate: {:?}",
        ours.1.len(),
        template.1.len(),
        window(ours.1),
        window(template.1),
        ours.0,
        template.0,
    );
}

fn check_against_template(format: ChatFormat) {
    let tokenizer = tokenizer(format);
    for case in cases(format) {
        let what = format!("{format:?}, {}", case.name);
        let system = case.system.as_deref();
        let ours = format.render(system, &case.messages, case.open_turn);
        let mut theirs = render_template(format, system, &case.messages, case.open_turn);
        let declared = match format {
            ChatFormat::R1DistillLlama => case.llama,
            ChatFormat::R1Qwen3 => case.qwen3,
        };
        for normalization in Normalization::ALL {
            if declared.contains(&normalization) {
                let normalized = normalization.apply(&theirs);
                assert_ne!(
                    normalized, theirs,
                    "{what}: {normalization:?} is declared but changes nothing"
                );
                theirs = normalized;
            }
        }
        let ours_ids = tokenizer.encode(&ours).unwrap();
        let their_ids = tokenizer.encode(&theirs).unwrap();
        assert_same_tokens(&what, tokenizer, (&ours, &ours_ids), (&theirs, &their_ids));
    }
}

#[test]
fn llama_format_matches_its_template() {
    check_against_template(ChatFormat::R1DistillLlama);
}

#[test]
fn qwen3_format_matches_its_template() {
    check_against_template(ChatFormat::R1Qwen3);
}

#[test]
fn the_system_prompt_teaches_every_tool_and_the_call_format() {
    for format in FORMATS {
        let tokenizer = tokenizer(format);
        let system = tools_system_prompt(format, "You are a careful assistant.");
        let text = format.render(Some(&system), &[user("Hi")], true);
        let ids = tokenizer.encode(&text).unwrap();
        for name in ["calculator", "get_weather"] {
            let name_ids = tokenizer.encode(name).unwrap();
            assert!(
                ids.windows(name_ids.len()).any(|w| w == name_ids),
                "{format:?}: the tokens of the prompt do not spell {name} ({name_ids:?})"
            );
        }
        for schema in [calculator_schema(), weather_schema()] {
            assert!(
                system.contains(&schema.to_string()),
                "{format:?}: schema missing: {system}"
            );
        }
        let example = format!("{CALLS_BEGIN}{CALL_BEGIN}function{TOOL_SEP}TOOL_NAME\n```json\n");
        assert!(system.contains(&example), "{format:?}: {system}");
        assert!(
            system.contains(&format!("{CALL_END}{CALLS_END}")),
            "{format:?}: {system}"
        );
    }
}

#[test]
fn qwen3_tool_markers_are_single_tokens() {
    let format = ChatFormat::R1Qwen3;
    let tokenizer = tokenizer(format);
    let case = cases(format)
        .into_iter()
        .find(|c| c.name == "two tool rounds in one turn")
        .unwrap();
    let text = format.render(case.system.as_deref(), &case.messages, true);
    let ids = tokenizer.encode(&text).unwrap();
    for marker in TOOL_MARKERS {
        let id = tokenizer
            .single_token(marker)
            .unwrap_or_else(|| panic!("{marker} is not a single token"));
        let written = text.matches(marker).count();
        assert!(written > 0, "{marker} is not in the rendering");
        assert_eq!(
            ids.iter().filter(|&&t| t == id).count(),
            written,
            "{marker} ({id}) is not one token at each place it is written"
        );
    }
}

#[test]
fn the_reasoning_of_earlier_answers_is_dropped() {
    for format in FORMATS {
        let case = cases(format)
            .into_iter()
            .find(|c| c.name == "reasoning the templates drop")
            .unwrap();
        let text = format.render(case.system.as_deref(), &case.messages, true);
        assert!(!text.contains("SECRET-REASONING"), "{format:?}: {text}");
        assert!(text.contains("The answer is 4."), "{format:?}: {text}");
    }
}
