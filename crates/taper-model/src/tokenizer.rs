//! Text <-> token ids: `tokenizer.json` files and GGUF-embedded vocabularies, the
//! raw bytes of every token, DeepSeek marker lookup, and streaming decode.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, Value};

/// The DeepSeek beginning-of-sequence marker.
pub const BOS: &str = "<｜begin▁of▁sentence｜>";
/// The DeepSeek end-of-sequence marker.
pub const EOS: &str = "<｜end▁of▁sentence｜>";

/// The Llama-3 pre-tokenizer split pattern (from Llama-3.1's `tokenizer.json`;
/// llama.cpp's `llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2/Qwen3 pre-tokenizer split pattern (from Qwen3's `tokenizer.json`;
/// llama.cpp's `qwen2`), which splits digits one by one.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// How a marker such as `<｜tool▁calls▁begin｜>` is spelled in token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// One added token.
    Single(u32),
    /// Not a token of its own: these ids spell its text.
    Text(Vec<u32>),
}

impl Marker {
    /// The marker's ids.
    pub fn ids(&self) -> &[u32] {
        match self {
            Self::Single(id) => std::slice::from_ref(id),
            Self::Text(ids) => ids,
        }
    }
}

/// A byte-level BPE tokenizer with the raw bytes of every token.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    token_bytes: Vec<Vec<u8>>,
    added: Vec<bool>,
    special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.token_bytes.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Parses the text of a `tokenizer.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_str(text).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Self::wrap(inner, None, None)
    }

    /// Builds the tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata.
    ///
    /// Supports `tokenizer.ggml.model = gpt2` with the pre-tokenizers `llama-bpe`
    /// (Llama-3: its split regex, merges ignored for whole-word tokens) and `qwen2` /
    /// `deepseek-r1-qwen` (Qwen2's regex, NFC normalization).
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        let model = h.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::key(
                "tokenizer.ggml.model",
                format!("unsupported tokenizer model `{model}` (supported: gpt2)"),
            ));
        }
        let pre = match h.get("tokenizer.ggml.pre") {
            Some(_) => h.str("tokenizer.ggml.pre")?,
            None => "default",
        };
        let (regex, ignore_merges, nfc) = match pre {
            "llama-bpe" | "llama3" => (LLAMA3_REGEX, true, false),
            "qwen2" | "deepseek-r1-qwen" => (QWEN2_REGEX, false, true),
            other => {
                return Err(Error::key(
                    "tokenizer.ggml.pre",
                    format!(
                        "unsupported pre-tokenizer `{other}` (supported: llama-bpe, qwen2, deepseek-r1-qwen)"
                    ),
                ));
            }
        };
        let strings = |key: &str| -> Result<Vec<&str>> {
            h.get(key)
                .ok_or_else(|| Error::MissingKey(key.into()))?
                .as_array()
                .ok_or_else(|| Error::key(key, "expected an array"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| Error::key(key, "expected strings"))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match h.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_NORMAL; tokens.len()],
            Some(v) => v
                .as_array()
                .ok_or_else(|| Error::key("tokenizer.ggml.token_type", "expected an array"))?
                .iter()
                .map(|t| match t {
                    Value::I32(t) => Ok(*t),
                    _ => t.as_u64().map(|t| t as i32).ok_or_else(|| {
                        Error::key("tokenizer.ggml.token_type", "expected integers")
                    }),
                })
                .collect::<Result<_>>()?,
        };
        if types.len() != tokens.len() {
            return Err(Error::key(
                "tokenizer.ggml.token_type",
                format!("{} types for {} tokens", types.len(), tokens.len()),
            ));
        }
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_UNUSED {
                continue;
            }
            // Added tokens go in the model's vocabulary too: `tokenizers` gives an
            // added token that the vocabulary lacks a new id after the vocabulary,
            // whatever id the file says, which is wrong wherever the added tokens do
            // not come last (a vocabulary with its markers first).
            vocab.insert(tok.to_string(), json!(id));
            if matches!(ty, TOKEN_CONTROL | TOKEN_USER_DEFINED) {
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": ty == TOKEN_CONTROL,
                }));
            }
        }
        let doc = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": if nfc { json!({"type": "NFC"}) } else { Json::Null },
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
            },
        });
        let inner = tokenizers::Tokenizer::from_str(&doc.to_string())
            .map_err(|e| Error::Tokenizer(format!("GGUF vocabulary: {e}")))?;
        let id = |key: &str| -> Result<Option<u32>> {
            match h.get(key) {
                None => Ok(None),
                Some(_) => Ok(Some(h.usize(key)? as u32)),
            }
        };
        Self::wrap(
            inner,
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
        )
    }

    /// Builds the tokenizer embedded in a GGUF file (see [`from_gguf`](Self::from_gguf)).
    pub fn from_gguf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let header = GgufHeader::read(std::io::BufReader::with_capacity(1 << 20, file), len)?;
        Self::from_gguf(&header)
    }

    fn wrap(inner: tokenizers::Tokenizer, bos: Option<u32>, eos: Option<u32>) -> Result<Self> {
        let added_tokens = inner.get_added_tokens_decoder();
        let n = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let decode = byte_decoder();
        let mut token_bytes = vec![Vec::new(); n];
        let mut added = vec![false; n];
        let mut special = vec![false; n];
        for (tok, id) in inner.get_vocab(true) {
            let i = id as usize;
            if let Some(a) = added_tokens.get(&id) {
                added[i] = true;
                special[i] = a.special;
                token_bytes[i] = a.content.clone().into_bytes();
            } else {
                token_bytes[i] = tok
                    .chars()
                    .map(|c| decode.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| tok.into_bytes());
            }
        }
        let by_name = |s: &str| inner.token_to_id(s);
        let bos = bos.or_else(|| by_name(BOS));
        let eos = eos.or_else(|| by_name(EOS));
        for (name, id) in [("BOS", bos), ("EOS", eos)] {
            if let Some(id) = id
                && id as usize >= n
            {
                return Err(Error::Tokenizer(format!(
                    "{name} id {id} is not in the vocabulary of {n}"
                )));
            }
        }
        Ok(Self {
            inner,
            token_bytes,
            added,
            special,
            bos,
            eos,
        })
    }

    /// Number of token ids (one more than the largest id).
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Checks that every token id is a row of a model embedding with `rows` rows.
    pub fn check_model_vocab(&self, rows: usize) -> Result<()> {
        if self.vocab_size() > rows {
            return Err(Error::VocabMismatch {
                tokenizer: self.vocab_size(),
                model: rows,
            });
        }
        Ok(())
    }

    /// The beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Encodes text; markers written in the text (`<｜User｜>`, `<think>`, ...) become
    /// their single tokens where the vocabulary has them. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// Decodes ids to text, markers included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The raw bytes a token stands for (an added token's text for markers).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .ok_or(Error::TokenOutOfRange {
                token: id,
                vocab: self.vocab_size(),
            })
    }

    /// Whether `id` is an added token (a marker) rather than a BPE piece.
    pub fn is_added(&self, id: u32) -> bool {
        self.added.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether `id` is an added token flagged special (control tokens such as BOS).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The id of a marker that is a single added token, by its text.
    pub fn single_token(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text).filter(|&id| self.is_added(id))
    }

    /// How `text` is spelled: one added token, or the ids of its text.
    pub fn marker(&self, text: &str) -> Result<Marker> {
        match self.single_token(text) {
            Some(id) => Ok(Marker::Single(id)),
            None => Ok(Marker::Text(self.encode(text)?)),
        }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// A streaming decoder for this tokenizer.
    pub fn decode_stream(&self) -> DecodeStream<'_> {
        DecodeStream {
            tokenizer: self,
            pending: Vec::new(),
        }
    }
}

/// Decodes tokens one at a time into text without ever splitting a UTF-8
/// character: bytes of an unfinished character wait for the next token.
#[derive(Debug)]
pub struct DecodeStream<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
}

impl DecodeStream<'_> {
    /// Adds one token and returns the text it completes (possibly empty).
    pub fn step(&mut self, id: u32) -> Result<String> {
        self.pending
            .extend_from_slice(self.tokenizer.token_bytes(id)?);
        Ok(take_utf8(&mut self.pending, false))
    }

    /// Flushes bytes of a character that never completed, as U+FFFD.
    pub fn finish(&mut self) -> String {
        take_utf8(&mut self.pending, true)
    }
}

/// Takes the longest decodable prefix of `buf`. Invalid bytes become U+FFFD; an
/// incomplete character at the end stays in `buf` unless `flush`.
fn take_utf8(buf: &mut Vec<u8>, flush: bool) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (ok, tail) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(ok).expect("valid_up_to marks a valid prefix"));
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &tail[bad..];
                    }
                    None if flush => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &[];
                        break;
                    }
                    None => {
                        rest = tail;
                        break;
                    }
                }
            }
        }
    }
    *buf = rest.to_vec();
    out
}

/// GPT-2's byte-to-character table, inverted: the character a byte-level BPE
/// token uses for each byte (printable bytes as themselves, the rest shifted to
/// 256 + n), mapped back to the byte.
fn byte_decoder() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("256..=323 are valid chars")
        };
        map.insert(c, b);
    }
    map
}

/// A vocabulary in GGUF's `tokenizer.ggml.*` form, built from a `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// `tokenizer.ggml.pre`: `llama-bpe` or `qwen2`.
    pub pre: &'static str,
    /// One string per embedding row (`[PADn]` for rows the tokenizer does not use).
    pub tokens: Vec<String>,
    /// llama.cpp token types, one per row.
    pub types: Vec<i32>,
    /// BPE merges as `"left right"`.
    pub merges: Vec<String>,
    /// BOS id, if the tokenizer has the DeepSeek BOS.
    pub bos: Option<u32>,
    /// EOS id, if the tokenizer has the DeepSeek EOS.
    pub eos: Option<u32>,
}

impl GgufVocab {
    /// Converts a `tokenizer.json` for a model with `rows` embedding rows, the way
    /// llama.cpp's converter does: added special tokens are CONTROL, other added
    /// tokens USER_DEFINED, unused rows `[PADn]` UNUSED.
    pub fn from_tokenizer_json(text: &str, rows: usize) -> Result<Self> {
        let tok = Tokenizer::from_json(text)?;
        tok.check_model_vocab(rows)?;
        let j: Json = serde_json::from_str(text).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let regex = j
            .pointer("/pre_tokenizer/pretokenizers/0/pattern/Regex")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let pre = match regex {
            LLAMA3_REGEX => "llama-bpe",
            QWEN2_REGEX => "qwen2",
            _ => {
                return Err(Error::Tokenizer(
                    "unknown pre-tokenizer (expected the Llama-3 or Qwen2 split pattern)".into(),
                ));
            }
        };
        let merges = j
            .pointer("/model/merges")
            .and_then(Json::as_array)
            .ok_or_else(|| Error::Tokenizer("tokenizer.json has no BPE merges".into()))?
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) => match &pair[..] {
                    [Json::String(a), Json::String(b)] => Ok(format!("{a} {b}")),
                    _ => Err(Error::Tokenizer("malformed merge".into())),
                },
                _ => Err(Error::Tokenizer("malformed merge".into())),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tokens = Vec::with_capacity(rows);
        let mut types = Vec::with_capacity(rows);
        for id in 0..rows as u32 {
            match tok.inner.id_to_token(id) {
                Some(t) => {
                    tokens.push(t);
                    types.push(if tok.is_special(id) {
                        TOKEN_CONTROL
                    } else if tok.is_added(id) {
                        TOKEN_USER_DEFINED
                    } else {
                        TOKEN_NORMAL
                    });
                }
                None => {
                    tokens.push(format!("[PAD{id}]"));
                    types.push(TOKEN_UNUSED);
                }
            }
        }
        Ok(Self {
            pre,
            tokens,
            types,
            merges,
            bos: tok.bos,
            eos: tok.eos,
        })
    }

    /// The `tokenizer.ggml.*` metadata entries.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let mut m = vec![
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("gpt2".into()),
            ),
            (
                "tokenizer.ggml.pre".to_string(),
                Value::String(self.pre.into()),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(
                    self.tokens
                        .iter()
                        .map(|t| Value::String(t.clone()))
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                Value::Array(self.types.iter().map(|&t| Value::I32(t)).collect()),
            ),
            (
                "tokenizer.ggml.merges".to_string(),
                Value::Array(
                    self.merges
                        .iter()
                        .map(|t| Value::String(t.clone()))
                        .collect(),
                ),
            ),
        ];
        if let Some(b) = self.bos {
            m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
            m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)));
        }
        if let Some(e) = self.eos {
            m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_never_split() {
        let mut buf = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut buf, false), "");
        buf.push("é".as_bytes()[1]);
        assert_eq!(take_utf8(&mut buf, false), "é");
        assert!(buf.is_empty());
        let mut buf = vec![b'a', 0xFF, b'b', 0xE2, 0x82];
        assert_eq!(take_utf8(&mut buf, false), "a\u{FFFD}b");
        assert_eq!(buf, vec![0xE2, 0x82]);
        assert_eq!(take_utf8(&mut buf, true), "\u{FFFD}");
    }

    #[test]
    fn byte_decoder_covers_every_byte() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'a'], b'a');
    }
}
