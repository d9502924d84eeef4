//! One generation under a grammar: masks, commits, forced tokens, rollback.

use llguidance::Matcher;
use llguidance::toktrie::SimpleVob;

use crate::env::TokenEnv;
use crate::error::ConstraintError;
use crate::markers::Marker;

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
/// # let env = TokenEnv::new(&tokenizer, 151_936, 151_645)?;
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
    thinking: Option<Thinking>,
    /// The allowed tokens in the current state, once computed.
    allowed: Option<SimpleVob>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("tokens", &self.tokens.len())
            .field("thinking", &self.thinking)
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// The reasoning part of a turn: how it ends and its budget.
#[derive(Debug, Clone)]
pub(crate) struct Thinking {
    end: Marker,
    /// The tokens that write `</think>`.
    end_tokens: Vec<u32>,
    budget: Option<usize>,
    /// Number of tokens up to and including the end of the reasoning, once ended.
    ended_at: Option<usize>,
}

impl Thinking {
    pub(crate) fn new(env: &TokenEnv, end: &Marker, budget: Option<usize>) -> Self {
        let end_tokens = match end {
            Marker::Token(id) => vec![*id],
            Marker::Text(text) => env.tokenize(text.as_bytes()),
        };
        Thinking {
            end: end.clone(),
            end_tokens,
            budget,
            ended_at: None,
        }
    }

    /// Whether the reasoning is over budget at `len` committed tokens.
    fn over_budget(&self, len: usize) -> bool {
        self.ended_at.is_none() && self.budget.is_some_and(|b| len >= b)
    }
}

impl Constraint {
    pub(crate) fn new(env: TokenEnv, matcher: Matcher, thinking: Option<Thinking>) -> Self {
        Constraint {
            env,
            matcher,
            tokens: Vec::new(),
            thinking,
            allowed: None,
        }
    }

    /// Sets every logit the grammar does not allow now to `f32::NEG_INFINITY`.
    ///
    /// `logits` has one entry per vocabulary token ([`TokenEnv::vocab_size`]).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let expected = self.env.vocab_size();
        if logits.len() != expected {
            return Err(ConstraintError::LogitsLength {
                got: logits.len(),
                expected,
            });
        }
        let allowed = self.allowed()?;
        for (chunk, &word) in logits.chunks_mut(32).zip(allowed.as_slice()) {
            match word {
                u32::MAX => {}
                0 => chunk.fill(f32::NEG_INFINITY),
                _ => {
                    for (bit, logit) in chunk.iter_mut().enumerate() {
                        if word & (1 << bit) == 0 {
                            *logit = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
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
            let allowed = self.allowed()?;
            if allowed.num_set() != 1 {
                break;
            }
            let Some(token) = allowed.first_bit_set() else {
                break;
            };
            let token = u32::try_from(token).map_err(|_| ConstraintError::TokenOutOfRange {
                token: u32::MAX,
                vocab_size: self.env.vocab_size(),
            })?;
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
        self.matcher.rollback(n).map_err(engine)?;
        let len = available - n;
        self.tokens.truncate(len);
        self.allowed = None;
        if let Some(thinking) = &mut self.thinking
            && thinking.ended_at.is_some_and(|end| end > len)
        {
            thinking.ended_at = None;
        }
        Ok(())
    }

    /// Whether the grammar is finished (its EOS is committed).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// Every committed token, sampled and forced, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Whether the reasoning is over (`</think>` committed); always false for grammars
    /// without reasoning.
    pub fn thinking_done(&self) -> bool {
        self.thinking.as_ref().is_some_and(|t| t.ended_at.is_some())
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
            let mut set = self.matcher.compute_mask().map_err(engine)?;
            let len = self.tokens.len();
            let over_budget = self
                .thinking
                .as_ref()
                .filter(|t| t.over_budget(len))
                .map(|t| t.end_tokens.clone());
            if let Some(end) = over_budget {
                match end.first() {
                    Some(&first) if set.is_allowed(first) && self.valid_prefix(&end)? => {
                        set = self.env.trie().singleton_token_set(first);
                    }
                    _ => {
                        // Mid-character: only tokens that finish the character.
                        let mut finishing = set.clone();
                        finishing.and(self.env.continuation_tokens());
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

    /// Whether the grammar accepts all of `tokens` from here.
    fn valid_prefix(&mut self, tokens: &[u32]) -> Result<bool, ConstraintError> {
        let n = self.matcher.validate_tokens(tokens).map_err(engine)?;
        Ok(n == tokens.len())
    }

    /// The `</think>` tokens, when the budget is spent and they can be written now.
    fn due_think_end(&mut self) -> Result<Option<Vec<u32>>, ConstraintError> {
        let len = self.tokens.len();
        let Some(end) = self
            .thinking
            .as_ref()
            .filter(|t| t.over_budget(len))
            .map(|t| t.end_tokens.clone())
        else {
            return Ok(None);
        };
        Ok(self.valid_prefix(&end)?.then_some(end))
    }

    /// Feeds one token to the engine and updates the reasoning state.
    fn consume(&mut self, token: u32) -> Result<(), ConstraintError> {
        self.matcher.consume_token(token).map_err(engine)?;
        self.tokens.push(token);
        self.allowed = None;
        let len = self.tokens.len();
        let ended = match &self.thinking {
            Some(thinking) if thinking.ended_at.is_none() => match &thinking.end {
                Marker::Token(id) => token == *id,
                Marker::Text(text) => self.tail_contains(text.as_bytes()),
            },
            _ => false,
        };
        if ended && let Some(thinking) = &mut self.thinking {
            thinking.ended_at = Some(len);
        }
        Ok(())
    }

    /// Whether `needle` occurs in the bytes of the committed tokens, ending in the last
    /// one (earlier occurrences would have been seen at earlier tokens).
    fn tail_contains(&self, needle: &[u8]) -> bool {
        let trie = self.env.trie();
        let Some((&last, before)) = self.tokens.split_last() else {
            return false;
        };
        let mut window: Vec<u8> = Vec::new();
        for &t in before.iter().rev() {
            if window.len() >= needle.len() {
                break;
            }
            let mut bytes = trie.token(t).to_vec();
            bytes.extend_from_slice(&window);
            window = bytes;
        }
        window.extend_from_slice(trie.token(last));
        window.windows(needle.len()).any(|w| w == needle)
    }
}

fn engine(e: impl std::fmt::Display) -> ConstraintError {
    ConstraintError::Engine(e.to_string())
}
