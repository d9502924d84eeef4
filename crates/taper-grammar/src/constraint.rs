//! One generation under a grammar: masks, commits, forced tokens, rollback.

use llguidance::Matcher;
use llguidance::toktrie::SimpleVob;

use crate::env::{OPENER, TokenEnv};
use crate::error::ConstraintError;
use crate::markers::{ARGS_CLOSE, ARGS_OPEN, Marker, Markers};
use crate::numbers::JsonScan;

/// The outcome of [`Constraint::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Tokens the grammar forced after the committed one, already committed: append
    /// them to the transcript and prefill them in one chunk, without sampling and
    /// without committing them again. May be empty.
    pub forced: Vec<u32>,
    /// The grammar is finished (EOS is committed); nothing more can be generated.
    pub finished: bool,
}

/// The state of one generation under a grammar.
///
/// Per step: [`mask`](Self::mask) the logits, sample, [`commit`](Self::commit) the
/// token and append the tokens the commit forced. [`rollback`](Self::rollback) undoes
/// committed tokens (sampled or forced alike). A constraint is `Send`: it can move to
/// the model's thread.
///
/// # Example
///
/// ```
/// use serde_json::json;
/// use taper_grammar::{JsonGrammar, JsonSchema, TokenEnv};
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache");
/// # let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/r1_qwen3.tokenizer.json"))
/// #     .expect("tokenizer fixture: run scripts/fetch-fixtures.sh");
/// # let eos = tokenizer.token_to_id("<｜end▁of▁sentence｜>").expect("R1 has an EOS");
/// # let env = TokenEnv::new(&tokenizer, 151_936, eos)?;
/// let grammar = JsonGrammar::new(&env, &JsonSchema::new(json!({"type": "boolean"}))?)?;
/// let mut constraint = grammar.constraint();
/// let mut logits = vec![0.0f32; env.vocab_size()];
/// constraint.mask(&mut logits)?;
/// let token = logits.iter().position(|l| l.is_finite()).expect("something is allowed") as u32;
/// let commit = constraint.commit(token)?; // `t` or `f`, say
/// // The rest of `true` or `false` and then EOS were forced.
/// assert!(commit.finished);
/// let text = env.decode(constraint.tokens());
/// assert!(text.starts_with(b"true") || text.starts_with(b"false"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Constraint {
    env: TokenEnv,
    matcher: Matcher,
    tokens: Vec<u32>,
    text: Transcript,
    turn: Option<TurnState>,
    /// The allowed tokens in the current state, once computed.
    allowed: Option<SimpleVob>,
    /// The last token is an EOS the engine did not see: its grammar was complete, and a
    /// complete grammar takes no token, so EOS is recorded here.
    eos_after_end: bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("tokens", &self.tokens.len())
            .field("thinking_done", &self.thinking_done())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// The bytes of the committed tokens (added tokens as the engine writes them) and
/// where each token ends.
#[derive(Debug, Clone, Default)]
struct Transcript {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Transcript {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len());
    }

    fn truncate(&mut self, len: usize) {
        self.ends.truncate(len);
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// Where the first `n` tokens end.
    fn end_of(&self, n: usize) -> usize {
        n.checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Whether `needle` occurs ending in the last token (earlier occurrences would
    /// have been seen at earlier tokens).
    fn tail_contains(&self, needle: &[u8]) -> bool {
        let last_start = self.end_of(self.ends.len().saturating_sub(1));
        let from = last_start.saturating_sub(needle.len().saturating_sub(1));
        self.bytes[from..]
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

/// What a turn constraint tracks beyond the grammar: the reasoning (how it ends, its
/// budget), and what follows it (free text to keep `<｜` out of, JSON whose numbers
/// must stay in range).
#[derive(Debug, Clone)]
pub(crate) struct TurnState {
    end: Marker,
    /// The tokens that write `</think>`.
    end_tokens: Vec<u32>,
    budget: Option<usize>,
    /// Number of tokens up to and including the end of the reasoning, once ended.
    ended_at: Option<usize>,
    /// Whether the text after the reasoning may be a free-text answer.
    text_answer: bool,
    /// Whether the text after the reasoning may be a JSON answer.
    json_answer: bool,
    /// How the tool-calls block starts (token bytes, as in the transcript).
    calls_begin: Vec<u8>,
}

/// What the text after the reasoning is, as far as written.
enum After<'a> {
    /// Nothing but blanks yet, or the start of the calls marker.
    Undecided,
    /// The tool-calls block, from its marker on.
    Calls(usize),
    /// The answer, from its first character on.
    Answer(&'a [u8], usize),
}

impl TurnState {
    pub(crate) fn new(
        env: &TokenEnv,
        markers: &Markers,
        budget: Option<usize>,
        text_answer: bool,
        json_answer: bool,
    ) -> Self {
        let end_tokens = match &markers.think_end {
            Marker::Token(id) => vec![*id],
            Marker::Text(text) => env.tokenize(text.as_bytes()),
        };
        let calls_begin = match &markers.calls_begin {
            Marker::Token(id) => env.trie().token(*id).to_vec(),
            Marker::Text(text) => text.as_bytes().to_vec(),
        };
        TurnState {
            end: markers.think_end.clone(),
            end_tokens,
            budget,
            ended_at: None,
            text_answer,
            json_answer,
            calls_begin,
        }
    }

    /// Whether the reasoning is over budget.
    fn over_budget(&self, text: &Transcript) -> bool {
        self.ended_at.is_none() && self.budget.is_some_and(|b| text.ends.len() >= b)
    }

    fn after<'a>(&self, ended: usize, text: &'a Transcript) -> After<'a> {
        let start = text.end_of(ended);
        let after = &text.bytes[start..];
        let Some(first) = after.iter().position(|b| !matches!(b, b' ' | b'\n')) else {
            return After::Undecided;
        };
        let rest = &after[first..];
        if rest.starts_with(&self.calls_begin) {
            After::Calls(start + first)
        } else if self.calls_begin.starts_with(rest) {
            // (the grammar keeps answers from starting with `<｜`)
            After::Undecided
        } else {
            After::Answer(rest, start + first)
        }
    }

    /// The free text being written now (reasoning, or a text answer), if any.
    fn free_text<'a>(&self, text: &'a Transcript) -> Option<&'a [u8]> {
        let Some(ended) = self.ended_at else {
            return Some(&text.bytes);
        };
        match self.after(ended, text) {
            After::Answer(answer, _) if self.text_answer => Some(answer),
            _ => None,
        }
    }

    /// Where the JSON being written now starts (a call's arguments, or a JSON answer).
    fn json_start(&self, text: &Transcript) -> Option<usize> {
        let ended = self.ended_at?;
        match self.after(ended, text) {
            After::Calls(from) => {
                let block = &text.bytes[from..];
                let open = ARGS_OPEN.as_bytes();
                let at = block.windows(open.len()).rposition(|w| w == open)?;
                let start = from + at + open.len();
                let closed = text.bytes[start..]
                    .windows(ARGS_CLOSE.len())
                    .any(|w| w == ARGS_CLOSE.as_bytes());
                (!closed).then_some(start)
            }
            After::Answer(_, from) if self.json_answer => Some(from),
            _ => None,
        }
    }
}

impl Constraint {
    pub(crate) fn new(env: TokenEnv, matcher: Matcher, turn: Option<TurnState>) -> Self {
        Constraint {
            env,
            matcher,
            tokens: Vec::new(),
            text: Transcript::default(),
            turn,
            allowed: None,
            eos_after_end: false,
        }
    }

    /// Sets every logit the grammar does not allow now to `f32::NEG_INFINITY`.
    ///
    /// `logits` has one entry per vocabulary token ([`TokenEnv::vocab_size`]). After the
    /// grammar is finished there is nothing to mask: [`ConstraintError::Finished`].
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        if self.is_finished() {
            return Err(ConstraintError::Finished);
        }
        let expected = self.env.vocab_size();
        if logits.len() != expected {
            return Err(ConstraintError::LogitsLength {
                got: logits.len(),
                expected,
            });
        }
        let allowed = self.allowed()?;
        apply_mask(allowed.as_slice(), logits);
        Ok(())
    }

    /// Whether the grammar allows `token` now.
    pub fn is_allowed(&mut self, token: u32) -> Result<bool, ConstraintError> {
        self.check_range(token)?;
        if self.is_finished() {
            return Ok(false);
        }
        Ok(self.allowed()?.is_allowed(token))
    }

    /// Commits a sampled token, then the tokens the grammar forces after it (see
    /// [`Commit::forced`]).
    ///
    /// A token the grammar does not allow is refused with
    /// [`ConstraintError::TokenRejected`] and changes nothing.
    pub fn commit(&mut self, token: u32) -> Result<Commit, ConstraintError> {
        self.check_range(token)?;
        if self.is_finished() {
            return Err(ConstraintError::Finished);
        }
        if !self.allowed()?.is_allowed(token) {
            tracing::debug!(token, "token rejected by the grammar");
            return Err(ConstraintError::TokenRejected { token });
        }
        self.consume(token)?;
        let forced = self.fast_forward()?;
        Ok(Commit {
            forced,
            finished: self.is_finished(),
        })
    }

    /// Commits the tokens the grammar forces now and returns them (possibly none).
    ///
    /// [`commit`](Self::commit) does this after every token; call it yourself once,
    /// before the first mask, for the tokens forced at the very start (e.g. `{"key": `
    /// of a JSON object, or `</think>` with a zero thinking budget).
    pub fn fast_forward(&mut self) -> Result<Vec<u32>, ConstraintError> {
        let mut forced = Vec::new();
        while !self.is_finished() {
            if let Some(end) = self.due_think_end()? {
                for token in end {
                    self.consume(token)?;
                    forced.push(token);
                }
                continue;
            }
            let ff = self.matcher.compute_ff_tokens();
            self.check_engine()?;
            if !ff.is_empty() {
                for &token in &ff {
                    self.consume(token)?;
                }
                forced.extend(ff);
                continue;
            }
            let Some(token) = only_token(self.allowed()?) else {
                break;
            };
            self.consume(token)?;
            forced.push(token);
        }
        Ok(forced)
    }

    /// Undoes the last `n` committed tokens (sampled or forced).
    pub fn rollback(&mut self, n: usize) -> Result<(), ConstraintError> {
        let available = self.tokens.len();
        if n > available {
            return Err(ConstraintError::Rollback {
                requested: n,
                available,
            });
        }
        let engine_n = if n > 0 && self.eos_after_end {
            self.eos_after_end = false;
            n - 1
        } else {
            n
        };
        self.matcher.rollback(engine_n).map_err(engine)?;
        let len = available - n;
        self.tokens.truncate(len);
        self.text.truncate(len);
        self.allowed = None;
        if let Some(turn) = &mut self.turn
            && turn.ended_at.is_some_and(|end| end > len)
        {
            turn.ended_at = None;
        }
        Ok(())
    }

    /// Whether the grammar is finished (its EOS is committed).
    pub fn is_finished(&self) -> bool {
        self.tokens.last() == Some(&self.env.eos())
    }

    /// Every committed token, sampled and forced, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Whether the reasoning is over (`</think>` committed); always false for grammars
    /// without reasoning.
    pub fn thinking_done(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| t.ended_at.is_some())
    }

    fn check_range(&self, token: u32) -> Result<(), ConstraintError> {
        let vocab_size = self.env.vocab_size();
        if token as usize >= vocab_size {
            return Err(ConstraintError::TokenOutOfRange { token, vocab_size });
        }
        Ok(())
    }

    fn check_engine(&self) -> Result<(), ConstraintError> {
        match self.matcher.get_error() {
            Some(e) => Err(ConstraintError::Engine(e)),
            None => Ok(()),
        }
    }

    /// The allowed tokens now (cached until the next change), with the thinking budget
    /// applied.
    fn allowed(&mut self) -> Result<&SimpleVob, ConstraintError> {
        if self.allowed.is_none() {
            if self.matcher.is_stopped() {
                // The grammar is complete: only EOS remains.
                self.check_engine()?;
                self.allowed = Some(self.env.trie().singleton_token_set(self.env.eos()));
                return self
                    .allowed
                    .as_ref()
                    .ok_or_else(|| ConstraintError::Engine("mask missing".into()));
            }
            let mut set = self.matcher.compute_mask().map_err(engine)?;
            self.keep_opener_out(&mut set);
            self.keep_numbers_in_range(&mut set);
            let over_budget = self
                .turn
                .as_ref()
                .filter(|t| t.over_budget(&self.text))
                .map(|t| t.end_tokens.clone());
            if let Some(end) = over_budget {
                match end.first() {
                    Some(&first) if set.is_allowed(first) && self.valid_prefix(&end)? => {
                        set = self.env.trie().singleton_token_set(first);
                    }
                    _ => {
                        // Mid-character: only tokens that finish the character.
                        let mut finishing = set.clone();
                        finishing.and(&self.env.classes().continuation);
                        if !finishing.is_zero() {
                            set = finishing;
                        }
                    }
                }
            }
            if set.is_zero() {
                return Err(ConstraintError::Engine(
                    "the grammar allows no token here".into(),
                ));
            }
            self.allowed = Some(set);
        }
        self.allowed
            .as_ref()
            .ok_or_else(|| ConstraintError::Engine("mask missing".into()))
    }

    /// Removes the tokens that would put `<｜` into free text: the markers' opening,
    /// which the grammar leaves to the constraint (a regex excluding it would make every
    /// `<` in the text cost a walk over the whole vocabulary).
    fn keep_opener_out(&self, set: &mut SimpleVob) {
        let Some(text) = self.turn.as_ref().and_then(|t| t.free_text(&self.text)) else {
            return;
        };
        let classes = self.env.classes();
        set.sub(&classes.opener_inside);
        for (k, rest) in classes.opener_rest.iter().enumerate() {
            if text.ends_with(&OPENER[..=k]) {
                set.sub(rest);
            }
        }
    }

    /// Removes the tokens that would take a JSON number out of `f64` range (see
    /// [`crate::numbers`]).
    fn keep_numbers_in_range(&self, set: &mut SimpleVob) {
        let start = match &self.turn {
            None => Some(0),
            Some(turn) => turn.json_start(&self.text),
        };
        let Some(start) = start else {
            return;
        };
        let scan = JsonScan::over(&self.text.bytes[start..]);
        if scan.in_string() {
            return;
        }
        let trie = self.env.trie();
        let in_number = scan.in_number();
        let mut out = Vec::new();
        set.iter_set_entries(|t| {
            let bytes = trie.token(t as u32);
            let may_touch = in_number || matches!(bytes.first(), Some(b'-' | b'0'..=b'9'));
            if may_touch && !scan.accepts(bytes) {
                out.push(t);
            }
        });
        for t in out {
            set.set(t, false);
        }
    }

    /// Whether the grammar accepts all of `tokens` from here.
    fn valid_prefix(&mut self, tokens: &[u32]) -> Result<bool, ConstraintError> {
        let n = self.matcher.validate_tokens(tokens).map_err(engine)?;
        Ok(n == tokens.len())
    }

    /// The `</think>` tokens, when the budget is spent and they can be written now.
    fn due_think_end(&mut self) -> Result<Option<Vec<u32>>, ConstraintError> {
        let Some(end) = self
            .turn
            .as_ref()
            .filter(|t| t.over_budget(&self.text))
            .map(|t| t.end_tokens.clone())
        else {
            return Ok(None);
        };
        Ok(self.valid_prefix(&end)?.then_some(end))
    }

    /// Feeds one token to the engine and updates the turn state.
    fn consume(&mut self, token: u32) -> Result<(), ConstraintError> {
        if token == self.env.eos() && self.matcher.is_stopped() {
            self.check_engine()?;
            self.eos_after_end = true;
        } else {
            self.matcher.consume_token(token).map_err(engine)?;
        }
        self.tokens.push(token);
        self.allowed = None;
        let len = self.tokens.len();
        self.text.push(self.env.trie().token(token));
        if let Some(turn) = &mut self.turn
            && turn.ended_at.is_none()
        {
            let ended = match &turn.end {
                Marker::Token(id) => token == *id,
                Marker::Text(text) => self.text.tail_contains(text.as_bytes()),
            };
            if ended {
                turn.ended_at = Some(len);
            }
        }
        Ok(())
    }
}

/// The token, when the set holds exactly one (stops at the second one found).
fn only_token(set: &SimpleVob) -> Option<u32> {
    let mut found = None;
    for (i, &word) in set.as_slice().iter().enumerate() {
        match (word.count_ones(), found) {
            (0, _) => {}
            (1, None) => found = Some(i * 32 + word.trailing_zeros() as usize),
            _ => return None,
        }
    }
    found.and_then(|t| u32::try_from(t).ok())
}

/// Writes `-inf` into the logits whose bit is clear (and past the words' end).
///
/// This writes up to the whole vocabulary (600 KB for Qwen3) per token, a third of a
/// JSON mask's cost: with AVX-512 it is one masked store per 16 logits, which never
/// reads them; otherwise [`apply_mask_portable`].
fn apply_mask(words: &[u32], logits: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f")) {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { apply_mask_avx512(words, logits) };
            return;
        }
    }
    apply_mask_portable(words, logits);
}

/// [`apply_mask`] without SIMD intrinsics: words with no bit set are filled in runs,
/// full words are skipped, mixed words use a branch-free select the compiler
/// vectorizes.
fn apply_mask_portable(words: &[u32], logits: &mut [f32]) {
    let covered = (words.len() * 32).min(logits.len());
    logits[covered..].fill(f32::NEG_INFINITY);
    let (chunks, tail) = logits[..covered].as_chunks_mut::<32>();
    let mut i = 0;
    while i < chunks.len() {
        match words[i] {
            u32::MAX => i += 1,
            0 => {
                let mut end = i + 1;
                while end < chunks.len() && words[end] == 0 {
                    end += 1;
                }
                chunks[i..end].as_flattened_mut().fill(f32::NEG_INFINITY);
                i = end;
            }
            word => {
                for (bit, logit) in chunks[i].iter_mut().enumerate() {
                    let keep = (word >> bit) & 1 == 1;
                    *logit = if keep { *logit } else { f32::NEG_INFINITY };
                }
                i += 1;
            }
        }
    }
    mask_tail(words.get(chunks.len()).copied(), tail);
}

/// [`apply_mask`] with AVX-512 masked stores: the clear bits of each 16-bit half-word
/// are the store mask, so allowed logits are never touched.
///
/// # Safety
///
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_mask_avx512(words: &[u32], logits: &mut [f32]) {
    use std::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_set1_ps};
    let covered = (words.len() * 32).min(logits.len());
    logits[covered..].fill(f32::NEG_INFINITY);
    let (chunks, tail) = logits[..covered].as_chunks_mut::<32>();
    let minus_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    for (chunk, &word) in chunks.iter_mut().zip(words) {
        if word == u32::MAX {
            continue;
        }
        let low = !(word as u16);
        let high = !((word >> 16) as u16);
        let at = chunk.as_mut_ptr();
        // SAFETY: `chunk` holds 32 floats, so both 16-float stores stay inside it.
        unsafe {
            _mm512_mask_storeu_ps(at, low, minus_inf);
            _mm512_mask_storeu_ps(at.add(16), high, minus_inf);
        }
    }
    mask_tail(words.get(chunks.len()).copied(), tail);
}

/// Masks the last logits (fewer than 32) with the word that covers them.
fn mask_tail(word: Option<u32>, tail: &mut [f32]) {
    if let Some(word) = word {
        for (bit, logit) in tail.iter_mut().enumerate() {
            if (word >> bit) & 1 == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

fn engine(e: impl std::fmt::Display) -> ConstraintError {
    ConstraintError::Engine(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference: bit `i` of the words keeps logit `i`; everything past the
    /// words is masked.
    fn reference(words: &[u32], logits: &mut [f32]) {
        for (i, logit) in logits.iter_mut().enumerate() {
            let keep = words.get(i / 32).is_some_and(|w| (w >> (i % 32)) & 1 == 1);
            if !keep {
                *logit = f32::NEG_INFINITY;
            }
        }
    }

    /// Random words with every kind of run (empty, full, mixed, single bits) over
    /// lengths that do and do not fill the last word, shorter and longer than the words.
    #[test]
    fn mask_kernels_match_the_reference() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [0usize, 1, 31, 32, 33, 100, 1000, 4097, 151_936] {
            for extra_words in [0usize, 1] {
                let words: Vec<u32> = (0..len.div_ceil(32) + extra_words)
                    .map(|_| match next() % 5 {
                        0 => 0,
                        1 => u32::MAX,
                        2 => 1 << (next() % 32),
                        _ => next() as u32,
                    })
                    .collect();
                for short in [0usize, 40] {
                    let words = &words[..words.len().saturating_sub(short / 32)];
                    let logits: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
                    let mut expected = logits.clone();
                    reference(words, &mut expected);
                    let mut got = logits.clone();
                    apply_mask_portable(words, &mut got);
                    assert_eq!(got, expected, "portable, len {len}");
                    let mut got = logits.clone();
                    apply_mask(words, &mut got);
                    assert_eq!(got, expected, "dispatched, len {len}");
                }
            }
        }
    }
}
