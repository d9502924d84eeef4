//! Model hyper-parameters, read from GGUF metadata or a Hugging Face `config.json`.

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::GgufHeader;

/// The transformer block family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// Llama-3.1 (DeepSeek-R1-Distill-Llama-8B).
    Llama,
    /// Qwen3 (DeepSeek-R1-0528-Qwen3-8B): adds per-head RMSNorm on queries and keys.
    Qwen3,
}

impl Architecture {
    /// The name GGUF uses in `general.architecture`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen3 => "qwen3",
        }
    }

    /// The class name Hugging Face uses in `config.json`'s `architectures`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    fn from_gguf(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen3" => Ok(Self::Qwen3),
            other => Err(Error::UnknownArchitecture(other.into())),
        }
    }
}

/// How rotary position frequencies are scaled for long context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama-3.1's frequency-dependent scaling (`rope_type = llama3`).
    Llama3 {
        /// Scale applied to low frequencies (8 for Llama-3.1).
        factor: f64,
        /// Wavelength bound, as a fraction of the original context (1).
        low_freq_factor: f64,
        /// Wavelength bound, as a fraction of the original context (4).
        high_freq_factor: f64,
        /// The pre-training context (8192).
        original_context: usize,
    },
    /// Per-frequency divisors as GGUF stores them (`rope_freqs.weight`, which
    /// llama.cpp's converter computes from the llama3 parameters).
    Frequencies(Vec<f32>),
    /// YaRN (`rope_type = yarn`), as Qwen3 uses it.
    Yarn {
        /// Context extension factor (4 for the Qwen3 distill).
        factor: f64,
        /// The pre-training context (32768).
        original_context: usize,
        /// Rotations bounding the extrapolated band (default 32).
        beta_fast: f64,
        /// Rotations bounding the interpolated band (default 1).
        beta_slow: f64,
        /// The scale applied to cos/sin: Hugging Face's `attention_factor` if the
        /// config gives it, else `0.1 ln(factor) + 1`, times `attn_factor` (the
        /// multiplier that vLLM and llama.cpp apply and DeepSeek's config sets).
        mscale: f64,
    },
}

impl RopeScaling {
    /// YaRN's default cos/sin scale for a context extension `factor`.
    pub fn yarn_mscale(factor: f64) -> f64 {
        if factor <= 1.0 {
            1.0
        } else {
            0.1 * factor.ln() + 1.0
        }
    }
}

/// The hyper-parameters of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Block family.
    pub architecture: Architecture,
    /// Rows of the token embedding (and of the output projection).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Long-context scaling of the RoPE frequencies.
    pub rope_scaling: RopeScaling,
    /// The longest context the model supports.
    pub max_context: usize,
    /// Whether the output projection reuses the token embedding.
    pub tie_word_embeddings: bool,
}

impl ModelConfig {
    /// Reads the config from GGUF metadata (`general.architecture` and the
    /// `{arch}.*` keys). `rope_freqs` is the content of the `rope_freqs.weight`
    /// tensor if the file has one. `embedding_rows` is the token embedding's row
    /// count, used when `{arch}.vocab_size` is absent; `tied` says whether the file
    /// lacks `output.weight`.
    pub fn from_gguf(
        h: &GgufHeader,
        embedding_rows: usize,
        tied: bool,
        rope_freqs: Option<Vec<f32>>,
    ) -> Result<Self> {
        let architecture = Architecture::from_gguf(h.str("general.architecture")?)?;
        let a = architecture.gguf_name();
        let k = |s: &str| format!("{a}.{s}");
        let hidden_size = h.usize(&k("embedding_length"))?;
        let num_heads = h.usize(&k("attention.head_count"))?;
        let head_dim = match h.get(&k("attention.key_length")) {
            Some(_) => h.usize(&k("attention.key_length"))?,
            None => hidden_size / num_heads.max(1),
        };
        let opt_f64 = |key: &str, default: f64| -> Result<f64> {
            match h.get(key) {
                Some(_) => h.f64(key),
                None => Ok(default),
            }
        };
        let scaling_type = match h.get(&k("rope.scaling.type")) {
            Some(_) => h.str(&k("rope.scaling.type"))?,
            None => "none",
        };
        let rope_scaling = match (scaling_type, rope_freqs) {
            ("none" | "linear", Some(f)) if architecture == Architecture::Llama => {
                RopeScaling::Frequencies(f)
            }
            ("none", None) => RopeScaling::None,
            ("yarn", _) => {
                let factor = h.f64(&k("rope.scaling.factor"))?;
                RopeScaling::Yarn {
                    factor,
                    original_context: h.usize(&k("rope.scaling.original_context_length"))?,
                    beta_fast: opt_f64(&k("rope.scaling.yarn_beta_fast"), 32.0)?,
                    beta_slow: opt_f64(&k("rope.scaling.yarn_beta_slow"), 1.0)?,
                    mscale: RopeScaling::yarn_mscale(factor)
                        * opt_f64(&k("rope.scaling.attn_factor"), 1.0)?,
                }
            }
            (other, _) => {
                return Err(Error::key(
                    k("rope.scaling.type"),
                    format!("unsupported rope scaling `{other}` for {a}"),
                ));
            }
        };
        let vocab_size = match h.get(&k("vocab_size")) {
            Some(_) => h.usize(&k("vocab_size"))?,
            None => embedding_rows,
        };
        let cfg = Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: h.usize(&k("feed_forward_length"))?,
            num_layers: h.usize(&k("block_count"))?,
            num_heads,
            num_kv_heads: h.usize(&k("attention.head_count_kv"))?,
            head_dim,
            rms_norm_eps: h.f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: opt_f64(&k("rope.freq_base"), 10_000.0)?,
            rope_scaling,
            max_context: h.usize(&k("context_length"))?,
            tie_word_embeddings: tied,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` (`LlamaForCausalLM` or `Qwen3ForCausalLM`),
    /// in the layout of transformers 4 (`rope_theta`, `rope_scaling`) or 5
    /// (`rope_parameters`).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let j: Json = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let arch_name = j
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Json::as_str)
            .ok_or_else(|| Error::MissingKey("architectures".into()))?;
        let architecture = match arch_name {
            "LlamaForCausalLM" => Architecture::Llama,
            "Qwen3ForCausalLM" => Architecture::Qwen3,
            other => return Err(Error::UnknownArchitecture(other.into())),
        };
        let num = |key: &str| -> Result<f64> {
            j.get(key)
                .ok_or_else(|| Error::MissingKey(key.into()))?
                .as_f64()
                .ok_or_else(|| Error::key(key, "expected a number"))
        };
        let int = |key: &str| -> Result<usize> {
            j.get(key)
                .ok_or_else(|| Error::MissingKey(key.into()))?
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::key(key, "expected a non-negative integer"))
        };
        let hidden_size = int("hidden_size")?;
        let num_heads = int("num_attention_heads")?;
        let head_dim = match j.get("head_dim") {
            Some(Json::Null) | None => hidden_size / num_heads.max(1),
            Some(_) => int("head_dim")?,
        };
        let max_context = int("max_position_embeddings")?;
        let rope_params = j
            .get("rope_parameters")
            .or_else(|| j.get("rope_scaling"))
            .filter(|v| !v.is_null());
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(t) => t
                .as_f64()
                .ok_or_else(|| Error::key("rope_theta", "expected a number"))?,
            None => match j.get("rope_theta") {
                Some(_) => num("rope_theta")?,
                None => 10_000.0,
            },
        };
        let rope_scaling = match rope_params {
            None => RopeScaling::None,
            Some(p) => hf_rope_scaling(p, max_context)?,
        };
        let cfg = Self {
            architecture,
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_layers: int("num_hidden_layers")?,
            num_heads,
            num_kv_heads: match j.get("num_key_value_heads") {
                Some(_) => int("num_key_value_heads")?,
                None => num_heads,
            },
            head_dim,
            rms_norm_eps: num("rms_norm_eps")?,
            rope_theta,
            rope_scaling,
            max_context,
            tie_word_embeddings: j
                .get("tie_word_embeddings")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the numbers fit together, so a bad file is an error here rather than a
    /// shape failure deep in a forward pass.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_context", self.max_context),
        ];
        // Generous bounds (the 8B models use 36 layers, 151936 rows, 131072 positions)
        // that keep a corrupt header from sizing allocations.
        for (k, v) in positive {
            if v == 0 {
                return Err(Error::key(k, "must be positive"));
            }
            let limit = match k {
                "num_layers" | "num_heads" | "num_kv_heads" => 4096,
                _ => 1 << 24,
            };
            if v > limit {
                return Err(Error::key(
                    k,
                    format!("{v} is larger than any supported model ({limit})"),
                ));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::key(
                "num_kv_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::key("head_dim", "must be even for rotary embeddings"));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return Err(Error::key("rope_theta", "must be a finite number above 1"));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(Error::key("rms_norm_eps", "must be in (0, 1)"));
        }
        if let RopeScaling::Frequencies(f) = &self.rope_scaling
            && f.len() != self.head_dim / 2
        {
            return Err(Error::TensorShape {
                tensor: "rope_freqs.weight".into(),
                expected: vec![self.head_dim / 2],
                found: vec![f.len()],
            });
        }
        Ok(())
    }

    /// Number of parameters (weights), counting a tied embedding once.
    pub fn parameter_count(&self) -> u64 {
        let (h, f, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let q = (self.num_heads * self.head_dim) as u64;
        let kv = (self.num_kv_heads * self.head_dim) as u64;
        let qk_norm = if self.architecture == Architecture::Qwen3 {
            2 * self.head_dim as u64
        } else {
            0
        };
        let layer = h * q + 2 * h * kv + q * h + 3 * h * f + 2 * h + qk_norm;
        let out = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + out + h + layer * self.num_layers as u64
    }

    /// Bytes of KV cache per token of context, for elements of `elem_bytes` bytes.
    pub fn kv_bytes_per_token(&self, elem_bytes: usize) -> u64 {
        (2 * self.num_layers * self.num_kv_heads * self.head_dim * elem_bytes) as u64
    }

    /// The RoPE inverse frequencies (one per pair of dimensions) and the scale of
    /// cos/sin, computed in f32 exactly as transformers computes them.
    pub fn rope_frequencies(&self) -> (Vec<f32>, f32) {
        let dim = self.head_dim;
        let base = self.rope_theta as f32;
        let half = dim / 2;
        // transformers: base ** (arange(0, dim, 2).float() / dim), all in f32.
        let pos_freqs: Vec<f32> = (0..half)
            .map(|i| base.powf((2 * i) as f32 / dim as f32))
            .collect();
        let plain: Vec<f32> = pos_freqs.iter().map(|p| 1.0 / p).collect();
        match &self.rope_scaling {
            RopeScaling::None => (plain, 1.0),
            RopeScaling::Frequencies(div) => {
                (plain.iter().zip(div).map(|(f, d)| f / d).collect(), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => (
                llama3_frequencies(
                    &plain,
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                    *original_context as f32,
                ),
                1.0,
            ),
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                mscale,
            } => {
                // transformers' find_correction_range (with truncate) in f64, the
                // ramp and the blend in f32.
                let corr = |rot: f64| {
                    (dim as f64
                        * (*original_context as f64 / (rot * 2.0 * std::f64::consts::PI)).ln())
                        / (2.0 * self.rope_theta.ln())
                };
                let low = corr(*beta_fast).floor().max(0.0);
                let mut high = corr(*beta_slow).ceil().min(dim as f64 - 1.0);
                if low == high {
                    high += 0.001;
                }
                let f = *factor as f32;
                let freqs = (0..half)
                    .map(|i| {
                        let ramp =
                            ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        let interp = 1.0 / (f * pos_freqs[i]);
                        interp * (1.0 - extrapolation) + plain[i] * extrapolation
                    })
                    .collect();
                (freqs, *mscale as f32)
            }
        }
    }
}

/// transformers' `_compute_llama3_parameters`, in f32.
fn llama3_frequencies(
    inv_freq: &[f32],
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    old_context: f32,
) -> Vec<f32> {
    let low_freq_wavelen = old_context / low_freq_factor;
    let high_freq_wavelen = old_context / high_freq_factor;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            let scaled = if wavelen > low_freq_wavelen {
                f / factor
            } else {
                f
            };
            // transformers: ~(wavelen < high) * ~(wavelen > low); wavelengths are finite.
            let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if medium {
                let smooth = (old_context / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            }
        })
        .collect()
}

fn hf_rope_scaling(p: &Json, max_context: usize) -> Result<RopeScaling> {
    let get = |k: &str| p.get(k).filter(|v| !v.is_null());
    let num = |k: &str| -> Result<f64> {
        get(k)
            .ok_or_else(|| Error::MissingKey(format!("rope_scaling.{k}")))?
            .as_f64()
            .ok_or_else(|| Error::key(format!("rope_scaling.{k}"), "expected a number"))
    };
    let opt = |k: &str, default: f64| -> Result<f64> {
        match get(k) {
            Some(_) => num(k),
            None => Ok(default),
        }
    };
    let kind = get("rope_type")
        .or_else(|| get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    let original = match get("original_max_position_embeddings") {
        Some(_) => num("original_max_position_embeddings")? as usize,
        None => max_context,
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_context: original,
        },
        "yarn" => {
            let factor = num("factor")?;
            let base = match get("attention_factor") {
                Some(_) => num("attention_factor")?,
                None => RopeScaling::yarn_mscale(factor),
            };
            RopeScaling::Yarn {
                factor,
                original_context: original,
                beta_fast: opt("beta_fast", 32.0)?,
                beta_slow: opt("beta_slow", 1.0)?,
                mscale: base * opt("attn_factor", 1.0)?,
            }
        }
        other => {
            return Err(Error::key(
                "rope_scaling.rope_type",
                format!("unsupported rope scaling `{other}`"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_8B: &str = r#"{
      "architectures": ["Qwen3ForCausalLM"], "hidden_size": 4096, "intermediate_size": 12288,
      "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
      "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000, "vocab_size": 151936,
      "max_position_embeddings": 131072, "tie_word_embeddings": false,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 32768, "attn_factor": 0.8782488562869419}
    }"#;

    #[test]
    fn qwen3_yarn_attn_factor_cancels_mscale() {
        let c = ModelConfig::from_hf_json(QWEN3_8B).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        let RopeScaling::Yarn { mscale, .. } = c.rope_scaling else {
            panic!("expected yarn")
        };
        assert!((mscale - 1.0).abs() < 1e-6, "{mscale}");
        assert_eq!(c.parameter_count() / 1_000_000, 8190);
    }

    #[test]
    fn llama3_frequencies_match_reference_values() {
        let c = crate::writer::Preset::Full8B.config(Architecture::Llama, None);
        let (f, scale) = c.rope_frequencies();
        assert_eq!(scale, 1.0);
        assert_eq!(f[0], 1.0);
        // The lowest frequency is divided by the full factor.
        let plain_last = 1.0 / 500_000f32.powf(126.0 / 128.0);
        assert!((f[63] - plain_last / 8.0).abs() < 1e-12);
        // Frequencies decrease monotonically.
        assert!(f.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn unknown_architecture_and_missing_key_are_named() {
        let e = ModelConfig::from_hf_json(r#"{"architectures":["GPT2LMHeadModel"]}"#).unwrap_err();
        assert!(
            matches!(e, Error::UnknownArchitecture(ref a) if a == "GPT2LMHeadModel"),
            "{e}"
        );
        let e =
            ModelConfig::from_hf_json(r#"{"architectures":["LlamaForCausalLM"],"hidden_size":8}"#)
                .unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
    }
}
