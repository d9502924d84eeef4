//! The token environment: every token's bytes, the token trie and the grammar compiler
//! for one tokenizer, built once and shared.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use llguidance::toktrie::{self, SimpleVob, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use tokenizers::Tokenizer;

use crate::error::TokenEnvError;
use crate::markers::Markers;

/// The token environment of one tokenizer: each token's bytes, the trie the engine walks
/// to compute masks, and the grammar compiler.
///
/// Building one takes a few hundred milliseconds on a 150k-token vocabulary; build it
/// once per loaded model and clone it freely: clones share everything (it is an `Arc`),
/// and it is `Send + Sync`.
///
/// The vocabulary is padded to the model's embedding rows: ids the tokenizer does not
/// know are never allowed. Every added token (special or not, e.g. `<think>` or the
/// tool-call markers) is a special token for the engine: free text can never produce
/// it, only a grammar that names it.
///
/// It also keeps the last [`CACHED_GRAMMARS`] grammars it compiled: compiling one of
/// them again (an agent with the same tools and options, built again for another
/// request) clones the compiled grammar instead of compiling it (for ten tools, about
/// 0.2-0.3 ms instead of 10-20 ms).
///
/// # Example
///
/// ```
/// use taper_grammar::TokenEnv;
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache");
/// # let path = format!("{dir}/r1_qwen3.tokenizer.json");
/// // `path`: the DeepSeek-R1-0528-Qwen3-8B tokenizer.json
/// let tokenizer = tokenizers::Tokenizer::from_file(path)
///     .expect("tokenizer fixture: run scripts/fetch-fixtures.sh");
/// let eos = tokenizer.token_to_id("<｜end▁of▁sentence｜>").expect("R1 has an EOS");
/// let env = TokenEnv::new(&tokenizer, 151_936, eos)?; // 151936 embedding rows
/// assert_eq!(env.vocab_size(), 151_936);
/// assert_eq!(env.decode(&env.tokenize("</think>".as_bytes())), b"</think>");
/// # Ok::<(), taper_grammar::TokenEnvError>(())
/// ```
#[derive(Clone)]
pub struct TokenEnv {
    inner: Arc<EnvInner>,
}

struct EnvInner {
    hf: Arc<HfTokEnv>,
    factory: ParserFactory,
    /// Compiled grammars by their source text, the most recently used last.
    grammars: Mutex<Vec<(String, Template)>>,
    markers: Markers,
    vocab_size: usize,
    eos: u32,
    classes: TokenClasses,
}

impl fmt::Debug for TokenEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEnv")
            .field("vocab_size", &self.inner.vocab_size)
            .field("eos", &self.inner.eos)
            .field("markers", &self.inner.markers)
            .finish_non_exhaustive()
    }
}

impl TokenEnv {
    /// Builds the environment from a tokenizer, the model's vocabulary size (its
    /// embedding rows, at least the tokenizer's largest id + 1) and its EOS token id.
    ///
    /// Token strings are mapped to bytes with the byte-level alphabet (Llama-3, Qwen
    /// and GPT-2 style BPE); other tokenizers are refused.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, eos: u32) -> Result<Self, TokenEnvError> {
        let start = Instant::now();
        ensure_byte_level(tokenizer)?;
        // The engine keeps its own copy of the tokenizer (for forced text); copying it
        // overlaps with building the trie.
        let (copy, built) = std::thread::scope(|scope| {
            let copier = scope.spawn(|| tokenizer.clone());
            let built = build_trie(tokenizer, vocab_size, eos);
            (copier.join(), built)
        });
        let (trie, added, classes) = built?;
        let tokenizer =
            copy.map_err(|_| TokenEnvError::Engine("copying the tokenizer failed".into()))?;
        let hf = Arc::new(HfTokEnv {
            trie,
            tokenizer,
            memo: Mutex::new(HashMap::new()),
        });
        let tok_env: toktrie::TokEnv = hf.clone();
        let mut factory = catch_unwind(AssertUnwindSafe(|| ParserFactory::new_simple(&tok_env)))
            .map_err(|_| TokenEnvError::Engine("building the mask computer failed".into()))?
            .map_err(|e| TokenEnvError::Engine(e.to_string()))?;
        factory.quiet();

        let markers = Markers::resolve(&added);
        tracing::debug!(
            vocab_size,
            eos,
            ?markers,
            elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
            "token environment built"
        );
        Ok(TokenEnv {
            inner: Arc::new(EnvInner {
                hf,
                factory,
                grammars: Mutex::new(Vec::new()),
                markers,
                vocab_size,
                eos,
                classes,
            }),
        })
    }

    /// The vocabulary size: the model's embedding rows, and the length of every logits
    /// slice given to [`Constraint::mask`](crate::Constraint::mask).
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    /// The end-of-sentence token id.
    pub fn eos(&self) -> u32 {
        self.inner.eos
    }

    /// Whether the token is an added token (special to the engine), e.g. `</think>`.
    pub fn is_special(&self, token: u32) -> bool {
        self.inner.hf.trie.is_special_token(token)
    }

    /// The bytes the tokens stand for, added tokens written as their text (ids the
    /// tokenizer does not know contribute nothing).
    pub fn decode(&self, tokens: &[u32]) -> Vec<u8> {
        self.inner.hf.trie.decode_ext(tokens, true)
    }

    /// Tokenizes text the way the engine does for forced text: with the tokenizer,
    /// never producing added tokens; bytes that are not UTF-8 become byte tokens.
    pub fn tokenize(&self, bytes: &[u8]) -> Vec<u32> {
        self.inner.hf.tokenize_bytes(bytes)
    }

    pub(crate) fn factory(&self) -> &ParserFactory {
        &self.inner.factory
    }

    /// The compiled grammar of `source`, if it is one of the last [`CACHED_GRAMMARS`]
    /// compiled (it becomes the most recently used).
    pub(crate) fn cached_grammar(&self, source: &str) -> Option<Template> {
        let mut grammars = self.grammars();
        let at = grammars.iter().position(|(s, _)| s == source)?;
        let entry = grammars.remove(at);
        let template = entry.1.clone();
        grammars.push(entry);
        Some(template)
    }

    /// Keeps a compiled grammar, dropping the least recently used beyond
    /// [`CACHED_GRAMMARS`].
    pub(crate) fn cache_grammar(&self, source: String, template: Template) {
        let mut grammars = self.grammars();
        grammars.retain(|(s, _)| *s != source);
        if grammars.len() == CACHED_GRAMMARS {
            grammars.remove(0);
        }
        grammars.push((source, template));
    }

    fn grammars(&self) -> std::sync::MutexGuard<'_, Vec<(String, Template)>> {
        // A panic while the list was held leaves it consistent (each change is one
        // `Vec` call).
        self.inner
            .grammars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn markers(&self) -> &Markers {
        &self.inner.markers
    }

    pub(crate) fn trie(&self) -> &TokTrie {
        &self.inner.hf.trie
    }

    pub(crate) fn classes(&self) -> &TokenClasses {
        &self.inner.classes
    }
}

/// Compiled grammars a [`TokenEnv`] keeps.
pub const CACHED_GRAMMARS: usize = 16;

/// A compiled grammar's fresh parser, shared by the grammars compiled from the same
/// source; each constraint starts from a clone.
pub(crate) type Template = Arc<Mutex<Matcher>>;

/// `<｜`, the opening of every DeepSeek marker (`<｜tool▁calls▁begin｜>`,
/// `<｜end▁of▁sentence｜>`, `<｜User｜>`, ...). Free text never contains it.
pub(crate) const OPENER: &[u8] = "<｜".as_bytes();

/// Sets of tokens the constraints need beyond the grammar.
pub(crate) struct TokenClasses {
    /// Tokens made only of UTF-8 continuation bytes: they finish a character without
    /// starting another one (used to close the reasoning at a character boundary).
    pub(crate) continuation: SimpleVob,
    /// Text tokens that contain [`OPENER`].
    pub(crate) opener_inside: SimpleVob,
    /// `opener_rest[k]`: text tokens that start with `OPENER[k + 1..]`, i.e. finish the
    /// opener after text ending with its first `k + 1` bytes.
    pub(crate) opener_rest: Vec<SimpleVob>,
}

impl TokenClasses {
    fn new(words: &[Vec<u8>]) -> Self {
        let n = words.len();
        let mut continuation = SimpleVob::alloc(n);
        let mut opener_inside = SimpleVob::alloc(n);
        let mut opener_rest: Vec<SimpleVob> =
            (1..OPENER.len()).map(|_| SimpleVob::alloc(n)).collect();
        for (id, word) in words.iter().enumerate() {
            if word.is_empty() || word[0] == TokTrie::SPECIAL_TOKEN_MARKER {
                continue;
            }
            if word.iter().all(|b| (0x80..=0xBF).contains(b)) {
                continuation.set(id, true);
            }
            if word.windows(OPENER.len()).any(|w| w == OPENER) {
                opener_inside.set(id, true);
            }
            for (k, set) in opener_rest.iter_mut().enumerate() {
                if word.starts_with(&OPENER[k + 1..]) {
                    set.set(id, true);
                }
            }
        }
        TokenClasses {
            continuation,
            opener_inside,
            opener_rest,
        }
    }
}

/// Every token's bytes (added tokens as special tokens), the trie over them, the added
/// tokens by content, and the token classes.
fn build_trie(
    tokenizer: &Tokenizer,
    vocab_size: usize,
    eos: u32,
) -> Result<(TokTrie, HashMap<String, u32>, TokenClasses), TokenEnvError> {
    let table = ByteLevelTable::new();
    let mut words: Vec<Vec<u8>> = vec![Vec::new(); vocab_size];
    let beyond = |id: u32| TokenEnvError::TokenBeyondVocab { id, vocab_size };
    let added_tokens = tokenizer.get_added_tokens_decoder();
    for (text, id) in tokenizer.get_vocab(false) {
        // An added token may be in the model's vocabulary too; it is filled in below.
        if added_tokens.contains_key(&id) {
            continue;
        }
        let slot = words.get_mut(id as usize).ok_or_else(|| beyond(id))?;
        *slot = table.decode(&text).ok_or_else(|| {
            TokenEnvError::UnsupportedTokenizer(format!(
                "token {id} ({text:?}) is not in the byte-level alphabet"
            ))
        })?;
    }
    let mut added = HashMap::new();
    for (id, token) in added_tokens {
        let slot = words.get_mut(id as usize).ok_or_else(|| beyond(id))?;
        let mut bytes = Vec::with_capacity(token.content.len() + 1);
        bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
        bytes.extend_from_slice(token.content.as_bytes());
        *slot = bytes;
        added.insert(token.content, id);
    }
    if words.get(eos as usize).is_none_or(|w| w.is_empty()) {
        return Err(TokenEnvError::BadEos { eos, vocab_size });
    }
    let vocab_u32 = u32::try_from(vocab_size).map_err(|_| {
        TokenEnvError::UnsupportedTokenizer(format!("vocabulary of {vocab_size} tokens"))
    })?;
    let info = TokRxInfo::new(vocab_u32, eos);
    let trie = catch_unwind(AssertUnwindSafe(|| TokTrie::from(&info, &words)))
        .map_err(|_| TokenEnvError::Engine("building the token trie failed".into()))?;
    Ok((trie, added, TokenClasses::new(&words)))
}

/// The engine's view of the tokenizer: the trie, and tokenization through the tokenizer.
struct HfTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
    /// Tokenizations of short texts: the text a grammar forces (`": "`, a key, a
    /// marker's neighbours) comes back again and again, and the tokenizer's fixed
    /// cost per call (normalizer, pre-tokenizer, allocations) is most of a short
    /// text's tokenization.
    memo: Mutex<HashMap<String, Vec<u32>>>,
}

/// Longest text [`HfTokEnv::memo`] keeps, in bytes.
const MEMO_TEXT: usize = 64;
/// Texts [`HfTokEnv::memo`] holds before it starts over.
const MEMO_ENTRIES: usize = 4096;

impl HfTokEnv {
    /// [`HfTokEnv::tokenize`], remembered for short texts.
    fn encode(&self, text: &str) -> Vec<u32> {
        if text.len() > MEMO_TEXT {
            return self.tokenize(text);
        }
        // A panic while the map was held leaves it consistent (each change is one
        // `HashMap` call).
        let memo = || self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ids) = memo().get(text) {
            return ids.clone();
        }
        let ids = self.tokenize(text);
        let mut memo = memo();
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(text.to_owned(), ids.clone());
        ids
    }

    /// The tokenizer's tokens for `text`, in text tokens only.
    fn tokenize(&self, text: &str) -> Vec<u32> {
        let ids = match self.tokenizer.encode_fast(text, false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            Err(_) => return self.trie.greedy_tokenize(text.as_bytes()),
        };
        // The tokenizer splits added tokens out of plain text; the engine needs text
        // tokens for text, so fall back to the trie (which never enters an added token
        // from text bytes).
        let vocab = self.trie.vocab_size();
        if ids
            .iter()
            .any(|&t| t as usize >= vocab || self.trie.is_special_token(t))
        {
            self.trie.greedy_tokenize(text.as_bytes())
        } else {
            ids
        }
    }
}

impl TokenizerEnv for HfTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        self.trie
            .tokenize_with_greedy_fallback(s, |text| self.encode(text))
    }
}

/// Refuses tokenizers whose decoder is not byte-level: their token strings are not
/// byte-level encoded bytes.
fn ensure_byte_level(tokenizer: &Tokenizer) -> Result<(), TokenEnvError> {
    let decoder = tokenizer.get_decoder().ok_or_else(|| {
        TokenEnvError::UnsupportedTokenizer("the tokenizer has no decoder".into())
    })?;
    let value = serde_json::to_value(decoder)
        .map_err(|e| TokenEnvError::UnsupportedTokenizer(format!("unreadable decoder: {e}")))?;
    if mentions_byte_level(&value) {
        Ok(())
    } else {
        Err(TokenEnvError::UnsupportedTokenizer(
            "only byte-level BPE tokenizers are supported".into(),
        ))
    }
}

fn mentions_byte_level(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.get("type").and_then(|t| t.as_str()) == Some("ByteLevel")
                || map.values().any(mentions_byte_level)
        }
        serde_json::Value::Array(items) => items.iter().any(mentions_byte_level),
        _ => false,
    }
}

/// The byte-level alphabet of GPT-2 (`bytes_to_unicode` in its `encoder.py`), shared by
/// the Llama-3 and Qwen tokenizers: printable bytes `!`..`~`, `¡`..`¬` and `®`..`ÿ`
/// stand for themselves, the other 68 bytes, in increasing order, for U+0100 onwards.
struct ByteLevelTable {
    /// Indexed by the char's code point (all are below 0x200).
    byte_of: [Option<u8>; 0x200],
}

impl ByteLevelTable {
    fn new() -> Self {
        let mut byte_of = [None; 0x200];
        let mut next = 0x100usize;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            if printable {
                byte_of[usize::from(b)] = Some(b);
            } else {
                byte_of[next] = Some(b);
                next += 1;
            }
        }
        ByteLevelTable { byte_of }
    }

    fn decode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars()
            .map(|c| self.byte_of.get(c as usize).copied().flatten())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The environment of the Qwen3 distill's tokenizer (a fixture).
    pub(crate) fn qwen3_env() -> TokenEnv {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/cache/r1_qwen3.tokenizer.json"
        );
        let tokenizer = Tokenizer::from_file(path).expect("run scripts/fetch-fixtures.sh");
        let eos = tokenizer
            .token_to_id("<｜end▁of▁sentence｜>")
            .expect("R1 has an EOS");
        TokenEnv::new(&tokenizer, 151_936, eos).expect("token env builds")
    }

    #[test]
    fn remembered_tokenizations_are_the_tokenizers() {
        let env = qwen3_env();
        let hf = &env.inner.hf;
        let long = "a text longer than what is remembered, ".repeat(3);
        let mut texts: Vec<String> = ["\": ", "}\n```", " <｜User｜>x", "😀 ü", long.as_str()]
            .map(String::from)
            .to_vec();
        // Past the memo's size, so that it starts over once.
        texts.extend((0..MEMO_ENTRIES + 10).map(|i| format!("\"key_{i}\": ")));
        for round in 0..2 {
            for text in &texts {
                assert_eq!(
                    hf.encode(text),
                    hf.tokenize(text),
                    "{text:?}, round {round}"
                );
            }
        }
        assert!(hf.memo.lock().expect("no panic held it").len() <= MEMO_ENTRIES);
        assert!(
            !hf.memo
                .lock()
                .expect("no panic held it")
                .contains_key(&long)
        );
        // Marker text is text: never the marker's token.
        let user = hf
            .tokenizer
            .token_to_id("<｜User｜>")
            .expect("R1 has the marker");
        assert!(!hf.encode(" <｜User｜>x").contains(&user));
    }

    #[test]
    fn byte_level_alphabet_round_trips() {
        let table = ByteLevelTable::new();
        assert_eq!(table.decode("Ġhello"), Some(b" hello".to_vec()));
        assert_eq!(table.decode("Ċ"), Some(b"\n".to_vec()));
        assert_eq!(table.decode("ĉ"), Some(b"\t".to_vec()));
        assert_eq!(table.decode("Ā"), Some(vec![0u8]));
        assert_eq!(table.decode("ÿ"), Some(vec![0xFFu8]));
        assert_eq!(table.decode("ł"), Some(vec![0xA0u8]));
        assert_eq!(table.decode("Ń"), Some(vec![0xADu8]));
        assert_eq!(table.decode("中"), None);
        let covered = table.byte_of.iter().flatten().count();
        assert_eq!(covered, 256);
    }
}
