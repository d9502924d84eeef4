//! Random-weight models in the exact layout of the real ones, for tests and
//! benchmarks: GGUF with llama.cpp's metadata keys and tensor names, and
//! safetensors with a Hugging Face `config.json`. Deterministic from a seed.
//!
//! The same writer converts trained weights: [`ModelWriter::from_hf_dir`] reads a
//! Hugging Face directory and writes its tensors instead of random ones.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use serde_json::json;

use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::gguf::{self, TensorSpec, TensorType, Value};
use crate::model::ProgressFn;
use crate::tokenizer::GgufVocab;
use crate::weights::{
    PlannedTensor, SafetensorsSource, TensorRole, Weight, gguf_row_to_hf, tensor_plan,
};

/// A model size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A few MB: 2 blocks of width 256, for tests. Long-context scaling is on with
    /// a short original context, so tests reach positions well past it.
    Tiny,
    /// The real 8B shapes of the two distills.
    Full8B,
}

impl Preset {
    /// The config of this preset for `arch`. `vocab` overrides the vocabulary size
    /// (the tiny preset's default is 512; give a real tokenizer's row count to use
    /// it).
    pub fn config(self, arch: Architecture, vocab: Option<usize>) -> ModelConfig {
        match (self, arch) {
            (Self::Tiny, Architecture::Llama) => ModelConfig {
                architecture: arch,
                vocab_size: vocab.unwrap_or(512),
                hidden_size: 256,
                intermediate_size: 512,
                num_layers: 2,
                num_heads: 4,
                num_kv_heads: 2,
                head_dim: 64,
                rms_norm_eps: 1e-5,
                rope_theta: 500_000.0,
                rope_scaling: RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_context: 64,
                },
                max_context: 2048,
                tie_word_embeddings: false,
            },
            (Self::Tiny, Architecture::Qwen3) => ModelConfig {
                architecture: arch,
                vocab_size: vocab.unwrap_or(512),
                hidden_size: 256,
                intermediate_size: 512,
                num_layers: 2,
                num_heads: 4,
                num_kv_heads: 2,
                head_dim: 64,
                rms_norm_eps: 1e-6,
                rope_theta: 1_000_000.0,
                rope_scaling: RopeScaling::Yarn {
                    factor: 4.0,
                    original_context: 64,
                    beta_fast: 32.0,
                    beta_slow: 1.0,
                    mscale: RopeScaling::yarn_mscale(4.0) * 0.875,
                },
                max_context: 2048,
                tie_word_embeddings: true,
            },
            // DeepSeek-R1-Distill-Llama-8B's config.json.
            (Self::Full8B, Architecture::Llama) => ModelConfig {
                architecture: arch,
                vocab_size: vocab.unwrap_or(128_256),
                hidden_size: 4096,
                intermediate_size: 14_336,
                num_layers: 32,
                num_heads: 32,
                num_kv_heads: 8,
                head_dim: 128,
                rms_norm_eps: 1e-5,
                rope_theta: 500_000.0,
                rope_scaling: RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_context: 8192,
                },
                max_context: 131_072,
                tie_word_embeddings: false,
            },
            // DeepSeek-R1-0528-Qwen3-8B's config.json.
            (Self::Full8B, Architecture::Qwen3) => ModelConfig {
                architecture: arch,
                vocab_size: vocab.unwrap_or(151_936),
                hidden_size: 4096,
                intermediate_size: 12_288,
                num_layers: 36,
                num_heads: 32,
                num_kv_heads: 8,
                head_dim: 128,
                rms_norm_eps: 1e-6,
                rope_theta: 1_000_000.0,
                rope_scaling: RopeScaling::Yarn {
                    factor: 4.0,
                    original_context: 32_768,
                    beta_fast: 32.0,
                    beta_slow: 1.0,
                    mscale: RopeScaling::yarn_mscale(4.0) * 0.878_248_856_286_941_9,
                },
                max_context: 131_072,
                tie_word_embeddings: false,
            },
        }
    }
}

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Every matrix in this one type.
    Pure(TensorType),
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the output and for `attn_v` and
    /// `ffn_down` in the first and last eighth of the layers and every third between.
    Q4KM,
}

impl Quant {
    /// Parses `f32`, `f16`, `bf16`, `q4_0`, `q8_0`, `q4_k`, `q5_k`, `q6_k`, `q4_k_m`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "q4_k_m" => Self::Q4KM,
            other => Self::Pure(
                TensorType::ALL
                    .into_iter()
                    .find(|t| t.name().eq_ignore_ascii_case(other))?,
            ),
        })
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`) for this mix.
    fn file_type(self) -> u32 {
        match self {
            Self::Q4KM => 15,
            Self::Pure(t) => match t {
                TensorType::F32 => 0,
                TensorType::F16 => 1,
                TensorType::Q4_0 => 2,
                TensorType::Q8_0 => 7,
                TensorType::Q4K => 14,
                TensorType::Q5K => 16,
                TensorType::Q6K => 18,
                TensorType::BF16 => 32,
            },
        }
    }

    /// The type of one tensor, falling back (as llama.cpp does) to Q8_0 where rows
    /// are not whole 256-element super-blocks, and to F16 where not whole 32-blocks.
    pub fn type_for(self, p: &PlannedTensor, num_layers: usize) -> TensorType {
        if p.role == TensorRole::Vector {
            return TensorType::F32;
        }
        // llama.cpp's use_more_bits: the first and last eighth, every third between.
        let more_bits = |i: usize| {
            i < num_layers / 8 || i >= 7 * num_layers / 8 || (i - num_layers / 8) % 3 == 2
        };
        let wanted = match self {
            Self::Pure(t) => t,
            Self::Q4KM => {
                let upgraded = p.gguf == "output.weight"
                    || ((p.gguf.ends_with("attn_v.weight") || p.gguf.ends_with("ffn_down.weight"))
                        && p.layer.is_some_and(more_bits));
                if upgraded {
                    TensorType::Q6K
                } else {
                    TensorType::Q4K
                }
            }
        };
        let row = *p.shape.last().unwrap_or(&0);
        if row.is_multiple_of(wanted.block_size()) {
            wanted
        } else if row.is_multiple_of(32) {
            TensorType::Q8_0
        } else {
            TensorType::F16
        }
    }
}

/// Writes models: random weights from a seed, or given weights
/// ([`from_hf_dir`](Self::from_hf_dir)).
///
/// ```no_run
/// use taper_model::{Architecture, ModelWriter, Preset, Quant};
/// # fn main() -> taper_model::Result<()> {
/// let cfg = Preset::Tiny.config(Architecture::Qwen3, None);
/// ModelWriter::new(cfg).seed(7).quant(Quant::Q4KM).write_gguf("tiny.gguf")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ModelWriter {
    config: ModelConfig,
    quant: Quant,
    seed: u64,
    tokenizer_json: Option<String>,
    chat_template: Option<String>,
    progress: Option<ProgressFn>,
    pooled_blocks: bool,
    /// Given weights by Hugging Face name, row-major in Hugging Face layout.
    tensors: Option<Arc<HashMap<String, Vec<f32>>>>,
    name: Option<String>,
}

impl std::fmt::Debug for ModelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWriter")
            .field("config", &self.config)
            .field("quant", &self.quant)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl ModelWriter {
    /// A writer for a model of this config, f32, seed 0, no tokenizer.
    pub fn new(config: ModelConfig) -> Self {
        Self {
            config,
            quant: Quant::Pure(TensorType::F32),
            seed: 0,
            tokenizer_json: None,
            chat_template: None,
            progress: None,
            pooled_blocks: false,
            tensors: None,
            name: None,
        }
    }

    /// A writer for the trained model in a Hugging Face directory: its
    /// `config.json`, its safetensors weights (f32, f16 or bf16; every tensor the
    /// config needs, no other) and its `tokenizer.json` if present. Written as
    /// GGUF, the q/k rows are permuted to llama.cpp's layout, so the file computes
    /// the same logits as the directory.
    ///
    /// ```no_run
    /// use taper_model::gguf::TensorType;
    /// use taper_model::{ModelWriter, Quant};
    /// # fn main() -> taper_model::Result<()> {
    /// ModelWriter::from_hf_dir("trained/")?
    ///     .quant(Quant::Pure(TensorType::Q8_0))
    ///     .write_gguf("trained.gguf")?;
    /// # Ok(()) }
    /// ```
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config = ModelConfig::from_hf_json(&text)?;
        let plan = tensor_plan(&config);
        let source = SafetensorsSource::open(dir)?;
        source.check(&plan)?;
        let mut tensors = HashMap::with_capacity(plan.len());
        for p in &plan {
            let tensor = match source.load(p, &Device::Cpu)? {
                Weight::Dense(t) => t,
                Weight::Quantized(q) => q.dequantize()?,
            };
            let values = tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            tensors.insert(p.hf.clone(), values);
        }
        let mut writer = Self::new(config);
        writer.tensors = Some(Arc::new(tensors));
        let tokenizer = dir.join("tokenizer.json");
        if tokenizer.exists() {
            let text = std::fs::read_to_string(&tokenizer).map_err(|e| Error::io(&tokenizer, e))?;
            writer.tokenizer_json = Some(text);
        }
        Ok(writer)
    }

    /// The model's name in the GGUF `general.name` (default: "taper random" and the
    /// architecture and size).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// For benchmark files: fill quantized tensors with blocks drawn at random from
    /// a small pool of quantized normal samples, instead of quantizing every
    /// sample (which takes many minutes for 8B parameters). The values follow the
    /// same distribution, but differ from the f32 model of the same seed.
    pub fn pooled_blocks(mut self, on: bool) -> Self {
        self.pooled_blocks = on;
        self
    }

    /// The storage types (GGUF; safetensors accepts F32, F16 and BF16 only).
    pub fn quant(mut self, quant: Quant) -> Self {
        self.quant = quant;
        self
    }

    /// The seed: the same seed and config give the same weights in every format.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A `tokenizer.json` to embed (GGUF `tokenizer.ggml.*`) or copy (safetensors).
    pub fn tokenizer_json(mut self, text: String) -> Self {
        self.tokenizer_json = Some(text);
        self
    }

    /// A chat template to embed as `tokenizer.chat_template`.
    pub fn chat_template(mut self, template: String) -> Self {
        self.chat_template = Some(template);
        self
    }

    /// Calls `f(done, total)` (in parameters) as tensors are written.
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(f));
        self
    }

    /// The values of one tensor, row-major in Hugging Face layout: the given ones,
    /// or random ones from the seed.
    fn values(&self, p: &PlannedTensor) -> Vec<f32> {
        if let Some(given) = self.tensors.as_ref().and_then(|t| t.get(&p.hf)) {
            return given.clone();
        }
        let n: usize = p.shape.iter().product();
        let mut rng = Normal::new(self.seed ^ fnv1a(p.hf.as_bytes()));
        match p.role {
            TensorRole::Vector => (0..n).map(|_| 1.0 + 0.1 * rng.sample()).collect(),
            // Scaled like a projection: a tied embedding is also the output matrix,
            // and logits of order one keep f32 comparisons meaningful.
            TensorRole::Embedding | TensorRole::Matrix => {
                let std = 1.0 / (p.shape[1] as f32).sqrt();
                (0..n).map(|_| std * rng.sample()).collect()
            }
        }
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(f) = &self.progress {
            f(done, total);
        }
    }

    /// Writes a GGUF file.
    pub fn write_gguf(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let cfg = &self.config;
        let plan = tensor_plan(cfg);
        let mut specs: Vec<TensorSpec> = Vec::with_capacity(plan.len() + 1);
        let mut sources: Vec<Option<&PlannedTensor>> = Vec::with_capacity(plan.len() + 1);
        let rope_freqs = self.rope_freq_factors();
        if let Some(f) = &rope_freqs {
            specs.push(TensorSpec {
                name: "rope_freqs.weight".into(),
                dims: vec![f.len()],
                kind: TensorType::F32,
            });
            sources.push(None);
        }
        for p in &plan {
            specs.push(TensorSpec {
                name: p.gguf.clone(),
                dims: p.shape.iter().rev().copied().collect(),
                kind: self.quant.type_for(p, cfg.num_layers),
            });
            sources.push(Some(p));
        }
        let metadata = self.gguf_metadata()?;
        let total: u64 = plan
            .iter()
            .map(|p| p.shape.iter().product::<usize>() as u64)
            .sum();
        let mut done = 0u64;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let out = BufWriter::with_capacity(8 << 20, file);
        gguf::write(out, &metadata, &specs, |i, buf| {
            let Some(p) = sources[i] else {
                for v in rope_freqs.as_deref().unwrap_or_default() {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                return Ok(());
            };
            let elements = p.shape.iter().product::<usize>() as u64;
            let kind = specs[i].kind;
            if self.pooled_blocks && self.tensors.is_none() && kind.block_size() > 1 {
                pooled(
                    kind,
                    p.shape[1],
                    elements,
                    self.seed ^ fnv1a(p.hf.as_bytes()),
                    buf,
                )?;
                done += elements;
                self.report(done, total);
                return Ok(());
            }
            let mut values = self.values(p);
            if let Some(heads) = p.gguf_permuted_heads {
                values = permute_to_gguf(&values, p.shape[0], p.shape[1], heads);
            }
            encode(&values, &p.shape, specs[i].kind, buf)?;
            done += values.len() as u64;
            self.report(done, total);
            Ok(())
        })
        .map_err(|e| match e {
            Error::Gguf { reason, .. } => Error::Gguf {
                offset: 0,
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// llama.cpp's `rope_freqs.weight`: per-frequency divisors for llama3 scaling.
    fn rope_freq_factors(&self) -> Option<Vec<f32>> {
        if !matches!(self.config.rope_scaling, RopeScaling::Llama3 { .. }) {
            return None;
        }
        let plain = ModelConfig {
            rope_scaling: RopeScaling::None,
            ..self.config.clone()
        };
        let (base, _) = plain.rope_frequencies();
        let (scaled, _) = self.config.rope_frequencies();
        Some(base.iter().zip(&scaled).map(|(b, s)| b / s).collect())
    }

    fn gguf_metadata(&self) -> Result<Vec<(String, Value)>> {
        let c = &self.config;
        let a = c.architecture.gguf_name();
        let k = |s: &str| format!("{a}.{s}");
        let u = |v: usize| Value::U32(v as u32);
        let mut m = vec![
            ("general.architecture".to_string(), Value::String(a.into())),
            (
                "general.name".to_string(),
                Value::String(
                    self.name
                        .clone()
                        .unwrap_or_else(|| format!("taper random {a} {}", c.parameter_count())),
                ),
            ),
            (
                "general.file_type".to_string(),
                Value::U32(self.quant.file_type()),
            ),
            ("general.quantization_version".to_string(), Value::U32(2)),
            (k("context_length"), u(c.max_context)),
            (k("embedding_length"), u(c.hidden_size)),
            (k("block_count"), u(c.num_layers)),
            (k("feed_forward_length"), u(c.intermediate_size)),
            (k("attention.head_count"), u(c.num_heads)),
            (k("attention.head_count_kv"), u(c.num_kv_heads)),
            (
                k("attention.layer_norm_rms_epsilon"),
                Value::F32(c.rms_norm_eps as f32),
            ),
            (k("rope.freq_base"), Value::F32(c.rope_theta as f32)),
            (k("rope.dimension_count"), u(c.head_dim)),
            (k("attention.key_length"), u(c.head_dim)),
            (k("attention.value_length"), u(c.head_dim)),
            (k("vocab_size"), u(c.vocab_size)),
        ];
        if let RopeScaling::Yarn {
            factor,
            original_context,
            beta_fast,
            beta_slow,
            mscale,
        } = c.rope_scaling
        {
            m.push((k("rope.scaling.type"), Value::String("yarn".into())));
            m.push((k("rope.scaling.factor"), Value::F32(factor as f32)));
            m.push((
                k("rope.scaling.original_context_length"),
                u(original_context),
            ));
            m.push((
                k("rope.scaling.attn_factor"),
                Value::F32((mscale / RopeScaling::yarn_mscale(factor)) as f32),
            ));
            m.push((
                k("rope.scaling.yarn_beta_fast"),
                Value::F32(beta_fast as f32),
            ));
            m.push((
                k("rope.scaling.yarn_beta_slow"),
                Value::F32(beta_slow as f32),
            ));
        }
        if let Some(text) = &self.tokenizer_json {
            m.extend(GgufVocab::from_tokenizer_json(text, c.vocab_size)?.metadata());
        }
        if let Some(t) = &self.chat_template {
            m.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
        }
        Ok(m)
    }

    /// Writes `config.json` and safetensors weights into `dir` (created if needed):
    /// one `model.safetensors`, or shards of at most `shard_bytes` with
    /// `model.safetensors.index.json`. Copies the tokenizer as `tokenizer.json`.
    pub fn write_safetensors(&self, dir: impl AsRef<Path>, shard_bytes: Option<u64>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let kind = match self.quant {
            Quant::Pure(t @ (TensorType::F32 | TensorType::F16 | TensorType::BF16)) => t,
            other => {
                return Err(Error::Config(format!(
                    "safetensors holds f32, f16 or bf16 weights, not {other:?}"
                )));
            }
        };
        let plan = tensor_plan(&self.config);
        let bytes_of = |p: &PlannedTensor| {
            p.shape.iter().product::<usize>() as u64 * kind.block_bytes() as u64
        };
        let limit = shard_bytes.unwrap_or(u64::MAX).max(1);
        let mut shards: Vec<Vec<&PlannedTensor>> = vec![Vec::new()];
        let mut size = 0;
        for p in &plan {
            let b = bytes_of(p);
            if size > 0 && size + b > limit {
                shards.push(Vec::new());
                size = 0;
            }
            shards.last_mut().expect("starts with one shard").push(p);
            size += b;
        }
        let n = shards.len();
        let total: u64 = plan
            .iter()
            .map(|p| p.shape.iter().product::<usize>() as u64)
            .sum();
        let mut done = 0u64;
        let mut weight_map = serde_json::Map::new();
        for (i, shard) in shards.iter().enumerate() {
            let name = if n == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{n:05}.safetensors", i + 1)
            };
            let mut header = serde_json::Map::new();
            let mut offset = 0u64;
            for p in shard {
                let b = bytes_of(p);
                header.insert(
                    p.hf.clone(),
                    json!({"dtype": kind.name(), "shape": p.shape, "data_offsets": [offset, offset + b]}),
                );
                weight_map.insert(p.hf.clone(), json!(name));
                offset += b;
            }
            header.insert("__metadata__".into(), json!({"format": "pt"}));
            let mut head = serde_json::to_vec(&header).map_err(|e| Error::Config(e.to_string()))?;
            while head.len() % 8 != 0 {
                head.push(b' ');
            }
            let path = dir.join(&name);
            let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut out = BufWriter::with_capacity(8 << 20, file);
            let io = |e| Error::io(&path, e);
            out.write_all(&(head.len() as u64).to_le_bytes())
                .map_err(io)?;
            out.write_all(&head).map_err(io)?;
            let mut buf = Vec::new();
            for p in shard {
                buf.clear();
                let values = self.values(p);
                encode(&values, &p.shape, kind, &mut buf)?;
                out.write_all(&buf).map_err(io)?;
                done += values.len() as u64;
                self.report(done, total);
            }
            out.flush().map_err(io)?;
        }
        if n > 1 {
            let index = json!({"metadata": {"total_size": plan.iter().map(bytes_of).sum::<u64>()}, "weight_map": weight_map});
            write_text(
                &dir.join("model.safetensors.index.json"),
                &index.to_string(),
            )?;
        }
        write_text(&dir.join("config.json"), &self.hf_config(kind).to_string())?;
        if let Some(t) = &self.tokenizer_json {
            write_text(&dir.join("tokenizer.json"), t)?;
        }
        Ok(())
    }

    fn hf_config(&self, kind: TensorType) -> serde_json::Value {
        let c = &self.config;
        let rope_scaling = match &c.rope_scaling {
            RopeScaling::None | RopeScaling::Frequencies(_) => serde_json::Value::Null,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_context})
            }
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                mscale,
            } => {
                json!({"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original_context,
                "beta_fast": beta_fast, "beta_slow": beta_slow,
                "attn_factor": mscale / RopeScaling::yarn_mscale(*factor)})
            }
        };
        let dtype = match kind {
            TensorType::F16 => "float16",
            TensorType::BF16 => "bfloat16",
            _ => "float32",
        };
        json!({
            "architectures": [c.architecture.hf_name()],
            "model_type": match c.architecture { Architecture::Llama => "llama", Architecture::Qwen3 => "qwen3" },
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads,
            "num_key_value_heads": c.num_kv_heads,
            "head_dim": c.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": c.max_context,
            "tie_word_embeddings": c.tie_word_embeddings,
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": dtype,
        })
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Reorders Hugging Face rows into llama.cpp's permuted q/k layout.
fn permute_to_gguf(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        let src = gguf_row_to_hf(r, rows, heads);
        out[r * cols..(r + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
    }
    out
}

/// Appends `values` encoded as `kind` to `buf`.
fn encode(values: &[f32], shape: &[usize], kind: TensorType, buf: &mut Vec<u8>) -> Result<()> {
    match kind {
        TensorType::F32 => values
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
        TensorType::F16 => values
            .iter()
            .for_each(|v| buf.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        TensorType::BF16 => values
            .iter()
            .for_each(|v| buf.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        quant => {
            let t = Tensor::from_slice(values, shape, &Device::Cpu)?;
            let q = QTensor::quantize(&t, quant.to_candle())?;
            buf.extend_from_slice(&q.data()?);
        }
    }
    Ok(())
}

/// Appends `elements` values of `kind` as blocks picked at random from a pool of
/// 1024 quantized blocks of normal samples with the std of a projection with
/// `row` inputs.
fn pooled(kind: TensorType, row: usize, elements: u64, seed: u64, buf: &mut Vec<u8>) -> Result<()> {
    const POOL: usize = 1024;
    let bs = kind.block_size();
    let std = 1.0 / (row as f32).sqrt();
    let mut rng = Normal::new(seed);
    let samples: Vec<f32> = (0..POOL * bs).map(|_| std * rng.sample()).collect();
    let mut pool = Vec::new();
    encode(&samples, &[POOL, bs], kind, &mut pool)?;
    let bb = kind.block_bytes();
    let blocks = elements / bs as u64;
    buf.reserve(blocks as usize * bb);
    let mut state = seed | 1;
    for _ in 0..blocks {
        // xorshift64: a fast index stream; quality does not matter here.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % POOL as u64) as usize;
        buf.extend_from_slice(&pool[i * bb..(i + 1) * bb]);
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Standard normal samples from a splitmix64 stream (Box-Muller).
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        let z = crate::sampler::splitmix64(&mut self.state);
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CacheOptions, LoadOptions, LogitsFor, Model};

    fn logits(path: &Path, tokens: &[u32]) -> Vec<f32> {
        let model = Model::load(path, &LoadOptions::new()).expect("model loads");
        let mut cache = model
            .new_cache(CacheOptions::new().context(32))
            .expect("cache");
        model
            .forward(tokens, &mut cache, LogitsFor::All)
            .expect("forward")
            .into_vec()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_hugging_face_directory_converts_to_a_gguf_with_its_logits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hf = dir.path().join("hf");
        // Two query heads per key head: the q and k row permutations both matter.
        let config = Preset::Tiny.config(Architecture::Llama, Some(512));
        ModelWriter::new(config.clone())
            .seed(11)
            .write_safetensors(&hf, None)
            .expect("writes safetensors");
        let gguf = dir.path().join("converted.gguf");
        // The seed is irrelevant once weights are given.
        ModelWriter::from_hf_dir(&hf)
            .expect("reads the directory")
            .seed(99)
            .name("converted")
            .write_gguf(&gguf)
            .expect("writes GGUF");
        let random = dir.path().join("random.gguf");
        ModelWriter::new(config)
            .seed(99)
            .write_gguf(&random)
            .expect("writes GGUF");

        let tokens = [1, 7, 42, 300, 5, 9, 511, 0];
        let expected = logits(&hf, &tokens);
        assert!(max_diff(&expected, &logits(&gguf, &tokens)) < 1e-4);
        assert!(max_diff(&expected, &logits(&random, &tokens)) > 1e-2);
    }

    #[test]
    fn a_directory_without_a_needed_tensor_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Preset::Tiny.config(Architecture::Llama, Some(512));
        ModelWriter::new(config)
            .write_safetensors(dir.path(), None)
            .expect("writes safetensors");
        let path = dir.path().join("config.json");
        let text = std::fs::read_to_string(&path).expect("config");
        // One more layer than the weights hold.
        let text = text.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":3");
        std::fs::write(&path, text).expect("rewrites config");
        assert!(matches!(
            ModelWriter::from_hf_dir(dir.path()),
            Err(Error::MissingTensor(name)) if name.contains("layers.2")
        ));
    }
}
