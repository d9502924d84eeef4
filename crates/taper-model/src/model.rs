//! The decoder: one transformer block for both architectures, and its KV cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weight_cache::WeightCache;
use crate::weights::{GgufSource, PlannedTensor, SafetensorsSource, Weight, tensor_plan};

/// How much of a load is done, for a progress bar: `(bytes loaded, bytes in all)`.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options for [`Model::load`].
#[derive(Clone, Default)]
pub struct LoadOptions {
    progress: Option<ProgressFn>,
    weight_cache: Option<PathBuf>,
}

impl LoadOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f(done, total)` (in bytes) as tensors are loaded.
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Keeps the weights that loading repacks for our kernels (the Q4_K and Q6_K
    /// matrices of a GGUF file, on CPUs with AVX2 or AVX-512) in a file in `dir`,
    /// one per model file, so that later loads of the same file map them from the
    /// page cache instead of repacking them into fresh memory: on the development
    /// machine this brings an 8B Q4_K_M model's load from several seconds to about
    /// one. It costs disk space about the size of the model file, and the first
    /// load writes it.
    ///
    /// The cache is written again when the model file changes (size, modification
    /// time or inode); a cache file that is truncated, corrupt (each matrix has a
    /// checksum) or unwritable is logged and ignored, never an error.
    pub fn weight_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.weight_cache = Some(dir.into());
        self
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("progress", &self.progress.is_some())
            .field("weight_cache", &self.weight_cache)
            .finish()
    }
}

/// The element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    /// 32-bit floats: exact, twice the memory of f16.
    F32,
    /// 16-bit floats, as llama.cpp stores its cache by default.
    #[default]
    F16,
}

impl KvDtype {
    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }

    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// Options for [`Model::new_cache`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheOptions {
    context: Option<usize>,
    dtype: KvDtype,
}

impl CacheOptions {
    /// Default options: the model's full context (capped by available memory), f16.
    pub fn new() -> Self {
        Self::default()
    }

    /// Preallocates exactly `tokens` positions; an error if they do not fit in memory
    /// or exceed the model's maximum.
    pub fn context(mut self, tokens: usize) -> Self {
        self.context = Some(tokens);
        self
    }

    /// The element type of the cache.
    pub fn dtype(mut self, dtype: KvDtype) -> Self {
        self.dtype = dtype;
        self
    }
}

/// Which positions of a chunk to compute logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (decoding).
    Last,
    /// Every token of the chunk (scoring, speculative checks, tests).
    All,
}

/// Logits of one forward pass: one row of `vocab` values per requested position.
#[derive(Debug, Clone)]
pub struct Logits {
    data: Vec<f32>,
    vocab: usize,
}

impl Logits {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.vocab.max(1)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// The last row.
    pub fn last(&self) -> &[f32] {
        self.row(self.rows() - 1)
    }

    /// The last row, mutable (for masking in place).
    pub fn last_mut(&mut self) -> &mut [f32] {
        let r = self.rows() - 1;
        &mut self.data[r * self.vocab..(r + 1) * self.vocab]
    }

    /// Consumes the logits, giving the flat row-major data.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

/// A per-sequence key/value cache, preallocated to a fixed context.
///
/// Many caches can share one [`Model`]; each holds one conversation.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
    layers: usize,
    kv_width: (usize, usize),
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every token from position `len` on, so the next forward continues
    /// from there (rolling back a rejected continuation or an edited history).
    /// Truncating to a length at or beyond [`len`](Self::len) does nothing.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// A loaded model: weights and hyper-parameters, shared by any number of caches.
///
/// `Model` is `Send + Sync`; wrap it in an `Arc` to serve many sessions.
pub struct Model {
    config: ModelConfig,
    device: Device,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Weight,
    inv_freq: Vec<f32>,
    rope_scale: f32,
    /// Rope on interleaved pairs `(2i, 2i+1)` instead of halves `(i, i + d/2)`: for
    /// Llama GGUF files, whose q/k rows llama.cpp's converter permutes so (and which
    /// are used in place, unpermuted).
    rope_interleaved: bool,
    weight_bytes: u64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("weight_bytes", &self.weight_bytes)
            .finish_non_exhaustive()
    }
}

enum Source {
    Gguf(Box<GgufSource>),
    Safetensors(SafetensorsSource),
}

impl Source {
    fn load(
        &self,
        p: &PlannedTensor,
        device: &Device,
        cache: Option<&WeightCache>,
    ) -> Result<Weight> {
        match self {
            Self::Gguf(s) => s.load(p, device, cache),
            Self::Safetensors(s) => s.load(p, device),
        }
    }
}

impl Model {
    /// Loads a model from a GGUF file, or from a directory holding `config.json` and
    /// `model.safetensors` (or shards listed in `model.safetensors.index.json`).
    ///
    /// The file is memory-mapped: quantized matrices are used in place (the resident
    /// memory is the file's pages, shared with the page cache and with other
    /// processes mapping the same file), except Q4_K and Q6_K matrices where our
    /// AVX-512 or AVX2 kernels run, which are interleaved into 16-column groups at
    /// load (the same size, in memory of their own, or mapped from the
    /// [weight cache](LoadOptions::weight_cache); the file's pages are released);
    /// dense tensors are converted one at a time.
    /// The file must not be rewritten or truncated while the model is loaded. A
    /// missing, extra or misshaped tensor is an error that names it.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let start = Instant::now();
        let (config, source) = if path.is_dir() {
            let cfg_path = path.join("config.json");
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
            let config = ModelConfig::from_hf_json(&text)?;
            let src = SafetensorsSource::open(path)?;
            src.check(&tensor_plan(&config))?;
            (config, Source::Safetensors(src))
        } else {
            let src = GgufSource::open(path)?;
            let config = src.config()?;
            src.check(&tensor_plan(&config))?;
            (config, Source::Gguf(Box::new(src)))
        };
        let model = Self::from_source(config, &source, opts)?;
        tracing::info!(
            path = %path.display(),
            arch = ?model.config.architecture,
            params = model.config.parameter_count(),
            mib = model.weight_bytes >> 20,
            secs = start.elapsed().as_secs_f32(),
            "model loaded"
        );
        Ok(model)
    }

    fn from_source(config: ModelConfig, source: &Source, opts: &LoadOptions) -> Result<Self> {
        let device = Device::Cpu;
        let plan = tensor_plan(&config);
        let total: u64 = plan
            .iter()
            .map(|p| p.shape.iter().product::<usize>() as u64)
            .sum();
        let mut done = 0u64;
        let mut weight_bytes = 0u64;
        let cache = match (&opts.weight_cache, source) {
            (Some(dir), Source::Gguf(gguf)) => WeightCache::open(dir, &gguf.path),
            _ => None,
        };
        let mut loaded = std::collections::HashMap::with_capacity(plan.len());
        for p in &plan {
            let _span = tracing::trace_span!("load_tensor", name = %p.gguf).entered();
            let w = source.load(p, &device, cache.as_ref())?;
            weight_bytes += w.bytes() as u64;
            done += p.shape.iter().product::<usize>() as u64;
            if let Some(f) = &opts.progress {
                f(done, total);
            }
            loaded.insert(p.gguf.clone(), w);
        }
        if let Some(cache) = cache {
            cache.finish();
        }
        let mut take = |name: String| -> Result<Weight> {
            loaded.remove(&name).ok_or(Error::MissingTensor(name))
        };
        let dense = |w: Weight, name: &str| -> Result<Tensor> {
            match w {
                Weight::Dense(t) => Ok(t),
                Weight::Quantized(_) => Err(Error::UnsupportedTensorType {
                    tensor: name.into(),
                    kind: "quantized vector".into(),
                }),
            }
        };
        let embed = take("token_embd.weight".into())?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let mut t = |s: &str| take(format!("blk.{i}.{s}.weight"));
            let qwen = config.architecture == Architecture::Qwen3;
            layers.push(Layer {
                attn_norm: dense(t("attn_norm")?, "attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                q_norm: if qwen {
                    Some(dense(t("attn_q_norm")?, "attn_q_norm")?)
                } else {
                    None
                },
                k_norm: if qwen {
                    Some(dense(t("attn_k_norm")?, "attn_k_norm")?)
                } else {
                    None
                },
                ffn_norm: dense(t("ffn_norm")?, "ffn_norm")?,
                gate: t("ffn_gate")?,
                up: t("ffn_up")?,
                down: t("ffn_down")?,
            });
        }
        let norm = dense(take("output_norm.weight".into())?, "output_norm")?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            take("output.weight".into())?
        };
        let (inv_freq, rope_scale) = config.rope_frequencies();
        let rope_interleaved = matches!(source, Source::Gguf(_))
            && plan.iter().any(|p| p.gguf_permuted_heads.is_some());
        Ok(Self {
            config,
            device,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            rope_scale,
            rope_interleaved,
            weight_bytes,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// A new, empty KV cache. Without an explicit context, it holds the model's
    /// full context, or as much of it as fits in the memory available now (a
    /// warning says so when capped).
    pub fn new_cache(&self, opts: CacheOptions) -> Result<KvCache> {
        let per_token = self.config.kv_bytes_per_token(opts.dtype.bytes());
        let available = available_memory();
        let capacity = match opts.context {
            Some(0) => {
                return Err(Error::Config(
                    "a KV cache needs a context of at least one token".into(),
                ));
            }
            Some(n) if n > self.config.max_context => {
                return Err(Error::ContextOverflow {
                    requested: n,
                    capacity: self.config.max_context,
                });
            }
            Some(n) => {
                if let Some(avail) = available
                    && per_token.saturating_mul(n as u64) > avail
                {
                    return Err(Error::OutOfMemory {
                        context: n,
                        needed_mib: (per_token * n as u64) >> 20,
                        available_mib: avail >> 20,
                    });
                }
                n
            }
            None => {
                let max = self.config.max_context;
                match available {
                    Some(avail) if per_token.saturating_mul(max as u64) > avail * 8 / 10 => {
                        let fit = ((avail * 8 / 10) / per_token.max(1)) as usize;
                        let fit = fit / 256 * 256;
                        if fit == 0 {
                            return Err(Error::OutOfMemory {
                                context: max,
                                needed_mib: (per_token * max as u64) >> 20,
                                available_mib: avail >> 20,
                            });
                        }
                        tracing::warn!(
                            "capping the context at {fit} tokens: the model's full context of {max} needs {} MiB of KV cache, {} MiB of memory is available",
                            (per_token * max as u64) >> 20,
                            avail >> 20
                        );
                        fit
                    }
                    _ => max,
                }
            }
        };
        let shape = (self.config.num_kv_heads, capacity, self.config.head_dim);
        let mut k = Vec::with_capacity(self.config.num_layers);
        let mut v = Vec::with_capacity(self.config.num_layers);
        for _ in 0..self.config.num_layers {
            k.push(Tensor::zeros(shape, opts.dtype.dtype(), &self.device)?);
            v.push(Tensor::zeros(shape, opts.dtype.dtype(), &self.device)?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            capacity,
            layers: self.config.num_layers,
            kv_width: (self.config.num_kv_heads, self.config.head_dim),
        })
    }

    /// Runs `tokens` through the model at the cache's current position, appends
    /// their keys and values to the cache, and returns logits for the last token
    /// or for every token of the chunk.
    ///
    /// A chunk may have any length at any position that fits the cache. On error
    /// the cache is left as it was.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: LogitsFor) -> Result<Logits> {
        let n = tokens.len();
        if n == 0 {
            return Err(Error::Config("forward needs at least one token".into()));
        }
        if cache.layers != self.config.num_layers
            || cache.kv_width != (self.config.num_kv_heads, self.config.head_dim)
        {
            return Err(Error::Config(
                "the KV cache was made for a different model".into(),
            ));
        }
        let pos = cache.len;
        if pos + n > cache.capacity {
            return Err(Error::ContextOverflow {
                requested: pos + n,
                capacity: cache.capacity,
            });
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { token: bad, vocab });
        }
        let _span = tracing::trace_span!("forward", pos, n).entered();
        let ids = Tensor::from_slice(tokens, n, &self.device)?;
        let mut x = self.embed.rows(&ids)?;
        let (cos, sin) = self.rope_tables(pos, n)?;
        let mask = if n > crate::attention::MAX_QUERIES {
            Some(causal_mask(
                pos,
                n,
                self.config.num_heads / self.config.num_kv_heads,
                &self.device,
            )?)
        } else {
            None
        };
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.block(
                layer,
                &x,
                &mut cache.k[i],
                &mut cache.v[i],
                pos,
                &cos,
                &sin,
                mask.as_ref(),
            )?;
        }
        let x = match which {
            LogitsFor::Last => x.narrow(0, n - 1, 1)?,
            LogitsFor::All => x,
        };
        let x = rms_norm(&x, &self.norm, self.config.rms_norm_eps)?;
        let logits = self.lm_head.matmul_t(&x)?;
        let data = logits.flatten_all()?.to_vec1::<f32>()?;
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteLogits {
                position: bad / vocab,
            });
        }
        cache.len = pos + n;
        Ok(Logits { data, vocab })
    }

    /// cos and sin for positions `pos..pos+n`, `[n, head_dim/2]`, in f32 as
    /// transformers computes them (f32 angle = f32 frequency x f32 position).
    fn rope_tables(&self, pos: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in pos..pos + n {
            for &f in &self.inv_freq {
                let a = f * p as f32;
                cos.push(a.cos() * self.rope_scale);
                sin.push(a.sin() * self.rope_scale);
            }
        }
        Ok((
            Tensor::from_vec(cos, (n, half), &self.device)?,
            Tensor::from_vec(sin, (n, half), &self.device)?,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: &Layer,
        x: &Tensor,
        cache_k: &mut Tensor,
        cache_v: &mut Tensor,
        pos: usize,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let n = x.dim(0)?;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let h = rms_norm(x, &l.attn_norm, c.rms_norm_eps)?;
        let mut q = l.wq.matmul_t(&h)?.reshape((n, nh, hd))?;
        let mut k = l.wk.matmul_t(&h)?.reshape((n, nkv, hd))?;
        let v = l.wv.matmul_t(&h)?.reshape((n, nkv, hd))?;
        if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
            q = rms_norm(&q, qn, c.rms_norm_eps)?;
            k = rms_norm(&k, kn, c.rms_norm_eps)?;
        }
        // [heads, n, hd]
        let rope = if self.rope_interleaved {
            rope_interleaved
        } else {
            rope
        };
        let q = rope(&q.transpose(0, 1)?.contiguous()?, cos, sin)?;
        let k = rope(&k.transpose(0, 1)?.contiguous()?, cos, sin)?;
        let v = v.transpose(0, 1)?.contiguous()?;
        cache_k.slice_set(&k.to_dtype(cache_k.dtype())?, 1, pos)?;
        cache_v.slice_set(&v.to_dtype(cache_v.dtype())?, 1, pos)?;
        let out = match mask {
            // A few queries (decoding): straight from the cache, read once.
            None => crate::attention::attend(&q, cache_k, cache_v, pos)?,
            Some(mask) => {
                let len = pos + n;
                let keys = cache_k
                    .narrow(1, 0, len)?
                    .to_dtype(DType::F32)?
                    .contiguous()?;
                let vals = cache_v
                    .narrow(1, 0, len)?
                    .to_dtype(DType::F32)?
                    .contiguous()?;
                // Grouped-query attention: the query heads sharing a key/value head
                // are stacked as rows, [nkv, groups * n, hd].
                let groups = nh / nkv;
                let q = q.reshape((nkv, groups * n, hd))?;
                let scale = 1.0 / (hd as f64).sqrt();
                let scores = (q.matmul(&keys.t()?)? * scale)?.broadcast_add(mask)?;
                let probs = softmax_last(&scores)?;
                let out = probs.matmul(&vals)?; // [nkv, groups*n, hd]
                out.reshape((nh, n, hd))?
                    .transpose(0, 1)?
                    .reshape((n, nh * hd))?
            }
        };
        let x = (x + l.wo.matmul_t(&out)?)?;
        let h = rms_norm(&x, &l.ffn_norm, c.rms_norm_eps)?;
        let gate = l.gate.matmul_t(&h)?;
        let act = (silu(&gate)? * l.up.matmul_t(&h)?)?;
        Ok((x + l.down.matmul_t(&act)?)?)
    }
}

/// This process's peak resident memory so far, from `/proc/self/status`'s `VmHWM`,
/// or `None` where that cannot be read.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The largest amount of memory this process could allocate now, from
/// `/proc/meminfo`'s `MemAvailable`, or `None` where that cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// RMSNorm over the last dimension, in f32 (transformers' LlamaRMSNorm).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?)
}

/// Rotary embedding in the rotate-half layout of transformers, on `[heads, n, hd]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let half = hd / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[a, b], D::Minus1)?)
}

/// Rotary embedding on interleaved pairs `(2i, 2i+1)` (llama.cpp's "normal" rope),
/// on `[heads, n, hd]`: the same rotation as [`rope`] on rows permuted by
/// llama.cpp's converter (`crate::weights::gguf_row_to_hf`).
fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (heads, n, hd) = x.dims3()?;
    let pairs = x.reshape((heads, n, hd / 2, 2))?;
    let x1 = pairs.narrow(D::Minus1, 0, 1)?;
    let x2 = pairs.narrow(D::Minus1, 1, 1)?;
    let cos = cos.unsqueeze(D::Minus1)?;
    let sin = sin.unsqueeze(D::Minus1)?;
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[a, b], D::Minus1)?.reshape((heads, n, hd))?)
}

fn silu(x: &Tensor) -> Result<Tensor> {
    Ok((x / (x.neg()?.exp()? + 1.0)?)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

/// The additive causal mask for a chunk of `n` queries at `pos`, repeated for each
/// of `groups` stacked query heads: `[groups * n, pos + n]`.
fn causal_mask(pos: usize, n: usize, groups: usize, device: &Device) -> Result<Tensor> {
    let len = pos + n;
    let mut m = Vec::with_capacity(groups * n * len);
    for _ in 0..groups {
        for i in 0..n {
            m.extend((0..len).map(|j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }));
        }
    }
    Ok(Tensor::from_vec(m, (groups * n, len), device)?)
}
