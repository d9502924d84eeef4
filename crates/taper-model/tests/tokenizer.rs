//! The real distill vocabularies: GGUF-embedded tokenizers encode exactly like
//! `tokenizer.json`, markers resolve by string, streaming decode never splits a
//! character.

mod common;

use taper_model::gguf::{self, GgufHeader};
use taper_model::{GgufVocab, Marker, Tokenizer};

const CORPUS: &[&str] = &[
    "Hello, world! It's a test: we'll see what they've done.",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b=3):\n\treturn a ** b  # comment\n\n\n",
    r#"{"name": "calculator", "arguments": {"expression": "12.5 * (3 + 4) / 7", "digits": [1, 22, 333, 4444]}}"#,
    "Digits: 0 1 12 123 1234 12345 123456789 3.14159 -42 1e-9 1,000,000",
    "中文测试：模型能否正确分词？日本語のテキストも。한국어 문장도.",
    "Emoji: 🙂🚀👩‍💻 🇫🇷 ✅ — “quotes” and ‘single’ … café naïve Ångström",
    "   leading spaces and trailing   \n\n  \r\n mixed\twhitespace  ",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 2+2?<｜Assistant｜><think>\nLet me add.\n</think>\n\n4<｜end▁of▁sentence｜>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>calculator\n```json\n{\"expression\": \"2+2\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>4<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
    "Ｆｕｌｌｗｉｄｔｈ and combining: e\u{301} a\u{308} (NFC matters for Qwen)",
];

fn gguf_tokenizer(json: &str, rows: usize) -> Tokenizer {
    let vocab = GgufVocab::from_tokenizer_json(json, rows).unwrap();
    let mut bytes = Vec::new();
    gguf::write(&mut bytes, &vocab.metadata(), &[], |_, _| Ok(())).unwrap();
    let header = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    Tokenizer::from_gguf(&header).unwrap()
}

#[test]
fn gguf_tokenizers_encode_exactly_like_tokenizer_json() {
    for (name, rows, pre) in [
        ("r1_llama", 128_256, "llama-bpe"),
        ("r1_qwen3", 151_936, "qwen2"),
    ] {
        let json = common::tokenizer_json(name);
        let reference = Tokenizer::from_json(&json).unwrap();
        let vocab = GgufVocab::from_tokenizer_json(&json, rows).unwrap();
        assert_eq!(vocab.pre, pre);
        assert_eq!(vocab.tokens.len(), rows);
        let ours = gguf_tokenizer(&json, rows);
        assert_eq!(ours.bos_id(), reference.bos_id(), "{name}");
        assert_eq!(ours.eos_id(), reference.eos_id(), "{name}");
        for text in CORPUS {
            let want = reference.encode(text).unwrap();
            assert_eq!(ours.encode(text).unwrap(), want, "{name}: {text:?}");
            assert_eq!(
                ours.decode(&want).unwrap(),
                reference.decode(&want).unwrap()
            );
        }
        // Every token's bytes agree between the two.
        for id in 0..reference.vocab_size() as u32 {
            assert_eq!(
                ours.token_bytes(id).unwrap(),
                reference.token_bytes(id).unwrap(),
                "{name} id {id}"
            );
        }
    }
}

#[test]
fn markers_resolve_by_string() {
    let llama = Tokenizer::from_json(&common::tokenizer_json("r1_llama")).unwrap();
    assert_eq!(llama.bos_id(), Some(128_000));
    assert_eq!(llama.eos_id(), Some(128_001));
    assert_eq!(llama.marker("<｜User｜>").unwrap(), Marker::Single(128_011));
    assert_eq!(llama.marker("<think>").unwrap(), Marker::Single(128_013));
    // The Llama distill has no tool-call tokens: the marker is text.
    let Marker::Text(ids) = llama.marker("<｜tool▁calls▁begin｜>").unwrap() else {
        panic!("tool markers are not single tokens in the Llama vocabulary")
    };
    assert!(ids.len() > 1);
    assert_eq!(llama.decode(&ids).unwrap(), "<｜tool▁calls▁begin｜>");
    assert!(llama.is_special(128_000) && !llama.is_special(128_011) && llama.is_added(128_011));

    let qwen = Tokenizer::from_json(&common::tokenizer_json("r1_qwen3")).unwrap();
    assert_eq!(qwen.bos_id(), Some(151_643));
    assert_eq!(qwen.eos_id(), Some(151_645));
    for m in [
        "<｜User｜>",
        "<｜Assistant｜>",
        "<think>",
        "</think>",
        "<｜tool▁calls▁begin｜>",
        "<｜tool▁call▁begin｜>",
        "<｜tool▁sep｜>",
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁end｜>",
        "<｜tool▁outputs▁begin｜>",
        "<｜tool▁output▁begin｜>",
        "<｜tool▁output▁end｜>",
        "<｜tool▁outputs▁end｜>",
    ] {
        assert!(matches!(qwen.marker(m).unwrap(), Marker::Single(_)), "{m}");
    }
    // A rendered prompt keeps its markers as single tokens.
    let ids = qwen.encode("<｜User｜>hi<｜Assistant｜><think>\n").unwrap();
    assert_eq!(ids[0], qwen.single_token("<｜User｜>").unwrap());
    assert!(ids.contains(&qwen.single_token("<think>").unwrap()));
    // Plain text that merely looks like a word of a marker is not a marker.
    assert_eq!(qwen.single_token("User"), None);
}

#[test]
fn streaming_decode_never_splits_a_character() {
    for name in ["r1_llama", "r1_qwen3"] {
        let tok = Tokenizer::from_json(&common::tokenizer_json(name)).unwrap();
        for text in CORPUS {
            let ids = tok.encode(text).unwrap();
            let mut stream = tok.decode_stream();
            let mut out = String::new();
            for &id in &ids {
                let piece = stream.step(id).unwrap();
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "{name}: split character in {text:?}"
                );
                out.push_str(&piece);
            }
            out.push_str(&stream.finish());
            assert_eq!(out, tok.decode(&ids).unwrap(), "{name}: {text:?}");
        }
        // Multi-byte characters really do span several tokens in these vocabularies.
        let ids = tok.encode("👩‍💻").unwrap();
        assert!(ids.len() > 1, "{name}");
    }
}

#[test]
fn vocab_larger_than_the_model_is_an_error() {
    let json = common::tokenizer_json("r1_qwen3");
    let tok = Tokenizer::from_json(&json).unwrap();
    let e = tok.check_model_vocab(512).unwrap_err();
    assert!(
        matches!(e, taper_model::Error::VocabMismatch { model: 512, .. }),
        "{e}"
    );
    assert!(GgufVocab::from_tokenizer_json(&json, 1000).is_err());
    assert!(tok.check_model_vocab(151_936).is_ok());
}

#[test]
fn wrong_or_broken_tokenizers_are_errors() {
    assert!(Tokenizer::from_json("{not json").is_err());
    assert!(Tokenizer::from_json(r#"{"model": {"type": "Nope"}}"#).is_err());
    // A GGUF vocabulary with an unknown pre-tokenizer names it.
    let json = common::tokenizer_json("r1_llama");
    let mut meta = GgufVocab::from_tokenizer_json(&json, 128_256)
        .unwrap()
        .metadata();
    for (k, v) in &mut meta {
        if k == "tokenizer.ggml.pre" {
            *v = gguf::Value::String("falcon".into());
        }
    }
    let mut bytes = Vec::new();
    gguf::write(&mut bytes, &meta, &[], |_, _| Ok(())).unwrap();
    let header = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    let e = Tokenizer::from_gguf(&header).unwrap_err();
    assert!(e.to_string().contains("falcon"), "{e}");
}

/// GPT-2's byte-level alphabet: the character that stands for each byte.
fn byte_level_alphabet() -> Vec<char> {
    let mut bytes: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut chars = bytes.clone();
    let mut extra = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut by_byte = vec!['\0'; 256];
    for (b, c) in bytes.iter().zip(&chars) {
        by_byte[*b as usize] = char::from_u32(*c).expect("GPT-2's alphabet is valid chars");
    }
    by_byte
}

/// The Llama-3 split pattern (from its tokenizer.json), which GGUF calls `llama-bpe`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[test]
fn markers_first_keep_their_ids_through_gguf() {
    // A vocabulary like the nano model's: the markers at ids 0-2 (and in the BPE
    // vocabulary too, as `tokenizers` training puts them), then the 256 bytes.
    let specials = [
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        "<｜User｜>",
    ];
    let mut vocab = serde_json::Map::new();
    for (id, s) in specials.iter().enumerate() {
        vocab.insert((*s).to_owned(), serde_json::json!(id));
    }
    for (b, c) in byte_level_alphabet().iter().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(specials.len() + b));
    }
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| {
            serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": true, "vocab": vocab, "merges": []},
    })
    .to_string();
    let reference = Tokenizer::from_json(&json).unwrap();
    let ours = gguf_tokenizer(&json, 320);
    let text = "<｜begin▁of▁sentence｜>ab<｜User｜>c<｜end▁of▁sentence｜>";
    let a = 3 + u32::from(b'a');
    assert_eq!(
        reference.encode(text).unwrap(),
        vec![0, a, a + 1, 2, a + 2, 1]
    );
    assert_eq!(ours.encode(text).unwrap(), reference.encode(text).unwrap());
    assert_eq!(ours.single_token("<｜User｜>"), Some(2));
    assert_eq!(ours.bos_id(), Some(0));
    assert_eq!(ours.eos_id(), Some(1));
}
