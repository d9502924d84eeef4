//! Choosing the next token from logits: greedy, temperature, top-k, top-p, min-p,
//! seeded and reproducible, correct when most logits are masked to `-inf`.

use crate::error::{Error, Result};

/// Sampling options. The default is the DeepSeek-R1 model card's recommendation:
/// temperature 0.6, top-p 0.95.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_k: 0,
            top_p: 0.95,
            min_p: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Softmax temperature; 0 means greedy.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Keep only the `k` most likely tokens; 0 disables.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Keep the smallest set of most likely tokens whose probability reaches `p`;
    /// 1 disables.
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }

    /// Drop tokens less likely than `p` times the most likely one; 0 disables.
    pub fn min_p(mut self, p: f32) -> Self {
        self.min_p = p;
        self
    }

    /// Seed of the random stream: the same seed and logits give the same tokens.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The seed set with [`seed`](Self::seed) (0 by default).
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// Builds the sampler, checking every option's range.
    pub fn build(self) -> Result<Sampler> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Sampling(format!(
                "temperature {} must be >= 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Sampling(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::Sampling(format!(
                "min_p {} must be in [0, 1]",
                self.min_p
            )));
        }
        Ok(Sampler {
            cfg: self,
            rng: Rng::new(self.seed),
            candidates: Vec::new(),
        })
    }
}

/// A seeded sampler. Reusing one sampler for a whole generation keeps its random
/// stream, so a run is reproducible from the seed.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    candidates: Vec<(u32, f32)>,
}

/// How many of the best candidates are sorted before falling back to a full sort
/// for top-p; with real models these almost always hold the nucleus.
const TOP_P_PREFIX: usize = 1024;

impl Sampler {
    /// The options this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks a token. Entries at `-inf` are never picked; NaN logits or a row
    /// with no finite entry are errors.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.iter().any(|v| v.is_nan()) {
            return Err(Error::NonFiniteLogits { position: 0 });
        }
        let no_token = || Error::Sampling("every token is masked: nothing can be sampled".into());
        if self.cfg.temperature == 0.0 {
            let (best, v) =
                logits
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv { (i, v) } else { (bi, bv) }
                    });
            return if v == f32::NEG_INFINITY {
                Err(no_token())
            } else {
                Ok(best as u32)
            };
        }
        let c = &mut self.candidates;
        c.clear();
        c.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (i as u32, v)),
        );
        if c.is_empty() {
            return Err(no_token());
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if self.cfg.top_k > 0 && self.cfg.top_k < c.len() {
            c.select_nth_unstable_by(self.cfg.top_k - 1, by_logit);
            c.truncate(self.cfg.top_k);
        }
        // Probabilities at this temperature (unnormalized, max = 1).
        let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
        let t = self.cfg.temperature;
        for x in c.iter_mut() {
            x.1 = ((x.1 - max) / t).exp();
        }
        if self.cfg.min_p > 0.0 {
            let floor = self.cfg.min_p;
            c.retain(|x| x.1 >= floor);
        }
        if self.cfg.top_p < 1.0 {
            let total: f64 = c.iter().map(|x| f64::from(x.1)).sum();
            let target = f64::from(self.cfg.top_p) * total;
            let by_prob = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            if c.len() > TOP_P_PREFIX {
                c.select_nth_unstable_by(TOP_P_PREFIX - 1, by_prob);
                let head: f64 = c[..TOP_P_PREFIX].iter().map(|x| f64::from(x.1)).sum();
                if head >= target {
                    c.truncate(TOP_P_PREFIX);
                }
            }
            c.sort_unstable_by(by_prob);
            let mut acc = 0.0f64;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                acc += f64::from(x.1);
                if acc >= target {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
        } else {
            c.sort_unstable_by_key(|x| x.0);
        }
        let total: f64 = c.iter().map(|x| f64::from(x.1)).sum();
        let mut r = self.rng.next_f64() * total;
        for x in c.iter() {
            r -= f64::from(x.1);
            if r < 0.0 {
                return Ok(x.0);
            }
        }
        Ok(c[c.len() - 1].0)
    }
}

/// One step of splitmix64: advances `state` and returns the next output.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** seeded through splitmix64: small, fast, and the same stream on
/// every platform and version, which a library RNG does not promise.
#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || splitmix64(&mut x);
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, f32::NEG_INFINITY, 2.0, 0.5]
    }

    #[test]
    fn greedy_takes_the_max_and_skips_masked() {
        let mut s = SamplerConfig::greedy().build().unwrap();
        assert_eq!(s.sample(&logits()).unwrap(), 1);
        let mut masked = vec![f32::NEG_INFINITY; 1000];
        masked[777] = -5.0;
        assert_eq!(s.sample(&masked).unwrap(), 777);
    }

    #[test]
    fn all_masked_and_nan_are_errors() {
        let mut s = SamplerConfig::default().build().unwrap();
        assert!(s.sample(&[f32::NEG_INFINITY; 4]).is_err());
        assert!(s.sample(&[1.0, f32::NAN]).is_err());
        let mut g = SamplerConfig::greedy().build().unwrap();
        assert!(g.sample(&[f32::NEG_INFINITY; 4]).is_err());
    }

    #[test]
    fn never_picks_masked_tokens() {
        let mut big = vec![f32::NEG_INFINITY; 151_936];
        for i in (0..big.len()).step_by(997) {
            big[i] = (i % 13) as f32 * 0.1;
        }
        for cfg in [
            SamplerConfig::default(),
            SamplerConfig::default().top_k(3),
            SamplerConfig::default().min_p(0.5).top_p(1.0),
            SamplerConfig::default().temperature(5.0).top_p(1.0),
        ] {
            let mut s = cfg.seed(7).build().unwrap();
            for _ in 0..200 {
                let t = s.sample(&big).unwrap() as usize;
                assert!(big[t].is_finite(), "picked masked token {t}");
            }
        }
    }

    #[test]
    fn seeded_runs_reproduce_and_seeds_differ() {
        let l: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 / 30.0).collect();
        let run = |seed| {
            let mut s = SamplerConfig::default()
                .temperature(1.0)
                .seed(seed)
                .build()
                .unwrap();
            (0..50).map(|_| s.sample(&l).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn filters_restrict_the_support() {
        // top-k 2 only ever yields the two best.
        let mut s = SamplerConfig::default()
            .top_k(2)
            .temperature(10.0)
            .top_p(1.0)
            .build()
            .unwrap();
        for _ in 0..200 {
            assert!(matches!(s.sample(&logits()).unwrap(), 1 | 3));
        }
        // top-p tiny keeps only the best.
        let mut s = SamplerConfig::default().top_p(0.01).build().unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&logits()).unwrap(), 1);
        }
        // min-p 0.9 at temperature 1 keeps only tokens with p >= 0.9 p_max.
        let mut s = SamplerConfig::default()
            .temperature(1.0)
            .min_p(0.9)
            .top_p(1.0)
            .build()
            .unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&logits()).unwrap(), 1);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        // Two tokens with logits 0 and ln 3 at temperature 1: 1/4 and 3/4.
        let l = [0.0, 3f32.ln()];
        let mut s = SamplerConfig::default()
            .temperature(1.0)
            .top_p(1.0)
            .seed(3)
            .build()
            .unwrap();
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&l).unwrap() == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.015, "{frac}");
    }

    #[test]
    fn invalid_options_are_errors() {
        assert!(SamplerConfig::default().temperature(-1.0).build().is_err());
        assert!(SamplerConfig::default().top_p(0.0).build().is_err());
        assert!(SamplerConfig::default().min_p(1.5).build().is_err());
    }
}
