//! Where each weight lives: the tensor plan of an architecture (GGUF and Hugging
//! Face names, shapes), and the readers that fetch tensors from GGUF or safetensors
//! files one at a time, so loading never holds a second copy of the model.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorInfo, TensorType};

/// What a tensor is for, which decides how it is stored in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// A projection matrix `[out, in]`, used through a matmul.
    Matrix,
    /// The token embedding `[vocab, hidden]`, read by rows.
    Embedding,
    /// A norm weight or other small vector, kept in f32.
    Vector,
}

/// One tensor an architecture needs.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// The name in GGUF files (llama.cpp's naming).
    pub gguf: String,
    /// The name in Hugging Face safetensors files.
    pub hf: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// How it is used.
    pub role: TensorRole,
    /// For Llama's q/k projections: llama.cpp's converter permutes their rows so its
    /// interleaved rope applies; this is the head count of that permutation.
    pub gguf_permuted_heads: Option<usize>,
    /// The layer the tensor belongs to, if any.
    pub layer: Option<usize>,
}

/// Every tensor of a model with this config, in llama.cpp's file order.
pub fn tensor_plan(cfg: &ModelConfig) -> Vec<PlannedTensor> {
    let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let llama = cfg.architecture == Architecture::Llama;
    let t = |gguf: &str, hf: &str, shape: Vec<usize>, role, layer| PlannedTensor {
        gguf: gguf.into(),
        hf: hf.into(),
        shape,
        role,
        gguf_permuted_heads: None,
        layer,
    };
    let mut plan = vec![t(
        "token_embd.weight",
        "model.embed_tokens.weight",
        vec![v, h],
        TensorRole::Embedding,
        None,
    )];
    for i in 0..cfg.num_layers {
        let g = |s: &str| format!("blk.{i}.{s}.weight");
        let m = |s: &str| format!("model.layers.{i}.{s}.weight");
        let l = Some(i);
        plan.push(t(
            &g("attn_norm"),
            &m("input_layernorm"),
            vec![h],
            TensorRole::Vector,
            l,
        ));
        let mut wq = t(
            &g("attn_q"),
            &m("self_attn.q_proj"),
            vec![q, h],
            TensorRole::Matrix,
            l,
        );
        let mut wk = t(
            &g("attn_k"),
            &m("self_attn.k_proj"),
            vec![kv, h],
            TensorRole::Matrix,
            l,
        );
        if llama {
            wq.gguf_permuted_heads = Some(cfg.num_heads);
            wk.gguf_permuted_heads = Some(cfg.num_kv_heads);
        }
        plan.push(wq);
        plan.push(wk);
        plan.push(t(
            &g("attn_v"),
            &m("self_attn.v_proj"),
            vec![kv, h],
            TensorRole::Matrix,
            l,
        ));
        plan.push(t(
            &g("attn_output"),
            &m("self_attn.o_proj"),
            vec![h, q],
            TensorRole::Matrix,
            l,
        ));
        if !llama {
            let d = vec![cfg.head_dim];
            plan.push(t(
                &g("attn_q_norm"),
                &m("self_attn.q_norm"),
                d.clone(),
                TensorRole::Vector,
                l,
            ));
            plan.push(t(
                &g("attn_k_norm"),
                &m("self_attn.k_norm"),
                d,
                TensorRole::Vector,
                l,
            ));
        }
        plan.push(t(
            &g("ffn_norm"),
            &m("post_attention_layernorm"),
            vec![h],
            TensorRole::Vector,
            l,
        ));
        plan.push(t(
            &g("ffn_gate"),
            &m("mlp.gate_proj"),
            vec![f, h],
            TensorRole::Matrix,
            l,
        ));
        plan.push(t(
            &g("ffn_up"),
            &m("mlp.up_proj"),
            vec![f, h],
            TensorRole::Matrix,
            l,
        ));
        plan.push(t(
            &g("ffn_down"),
            &m("mlp.down_proj"),
            vec![h, f],
            TensorRole::Matrix,
            l,
        ));
    }
    plan.push(t(
        "output_norm.weight",
        "model.norm.weight",
        vec![h],
        TensorRole::Vector,
        None,
    ));
    if !cfg.tie_word_embeddings {
        plan.push(t(
            "output.weight",
            "lm_head.weight",
            vec![v, h],
            TensorRole::Matrix,
            None,
        ));
    }
    plan
}

/// Maps row `r` of llama.cpp's permuted q/k layout to the Hugging Face row it holds.
///
/// llama.cpp's `convert_hf_to_gguf.py` reshapes `[heads, 2, head_dim/2, ...]`, swaps
/// the two middle axes and flattens: Hugging Face row `(h, s, i)` lands at GGUF row
/// `(h, i, s)`.
pub fn gguf_row_to_hf(r: usize, rows: usize, heads: usize) -> usize {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let (h, within) = (r / head_dim, r % head_dim);
    let (i, s) = (within / 2, within % 2);
    h * head_dim + s * half + i
}

/// A weight as held in memory.
#[derive(Debug, Clone)]
pub enum Weight {
    /// Block-quantized (Q4_0, Q8_0, Q4_K, ...): matmuls run on the quantized data.
    Quantized(Arc<QTensor>),
    /// Dense f32, f16 or bf16.
    Dense(Tensor),
}

impl Weight {
    /// `x @ self^T` for `x` of shape `[n, in]` in f32, giving `[n, out]` in f32.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Quantized(q) => match compact_matmul_t(q, x)? {
                Some(out) => out,
                None => x.apply_op1_no_bwd(q.as_ref())?,
            },
            Self::Dense(w) if w.dtype() == DType::F32 => x.matmul(&w.t()?)?,
            Self::Dense(w) => x
                .to_dtype(w.dtype())?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32)?,
        })
    }

    /// Rows `ids` of an embedding `[vocab, hidden]`, in f32.
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Quantized(q) => q.embedding(ids)?,
            Self::Dense(w) => w.index_select(ids, 0)?.to_dtype(DType::F32)?,
        })
    }

    /// The storage type, as GGUF names it.
    pub fn kind(&self) -> String {
        match self {
            Self::Quantized(q) => format!("{:?}", q.dtype()),
            Self::Dense(t) => format!("{:?}", t.dtype()),
        }
    }

    /// Bytes the weight occupies in memory.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Quantized(q) => q.storage_size_in_bytes(),
            Self::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }
}

/// A tensor's storage as read from a file: its element type and raw bytes in the
/// file's row order.
pub(crate) struct RawTensor {
    kind: TensorType,
    bytes: Vec<u8>,
}

/// Builds the in-memory weight for `plan` from raw bytes (already in Hugging Face
/// row order).
pub(crate) fn build_weight(
    plan: &PlannedTensor,
    raw: RawTensor,
    device: &Device,
) -> Result<Weight> {
    let shape = plan.shape.clone();
    let dense = |dtype: DType| -> Result<Tensor> {
        Ok(bytes_to_tensor(&raw.bytes, dtype, &shape, device)?)
    };
    match (plan.role, raw.kind) {
        (TensorRole::Vector, k) => {
            let t = match k {
                TensorType::F32 => dense(DType::F32)?,
                TensorType::F16 => dense(DType::F16)?.to_dtype(DType::F32)?,
                TensorType::BF16 => dense(DType::BF16)?.to_dtype(DType::F32)?,
                other => {
                    let q = QTensor::new(
                        QStorage::from_data(Cow::Owned(raw.bytes), device, other.to_candle())?,
                        shape,
                    )?;
                    q.dequantize(device)?
                }
            };
            Ok(Weight::Dense(t))
        }
        (_, TensorType::F32) => Ok(Weight::Dense(dense(DType::F32)?)),
        (_, TensorType::F16) => Ok(Weight::Dense(dense(DType::F16)?)),
        (_, TensorType::BF16) => Ok(Weight::Dense(dense(DType::BF16)?)),
        (_, k) => {
            let storage = QStorage::from_data(Cow::Owned(raw.bytes), device, k.to_candle())?;
            Ok(Weight::Quantized(Arc::new(QTensor::new(storage, shape)?)))
        }
    }
}

fn bytes_to_tensor(
    bytes: &[u8],
    dtype: DType,
    shape: &[usize],
    device: &Device,
) -> candle_core::Result<Tensor> {
    match dtype {
        DType::F32 => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, shape, device)
        }
        DType::F16 => {
            let v: Vec<f16> = bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, shape, device)
        }
        _ => {
            let v: Vec<bf16> = bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, shape, device)
        }
    }
}

/// Reorders whole rows of raw tensor bytes from llama.cpp's permuted q/k layout to
/// Hugging Face's. Rows are whole blocks, so this works for every storage type.
fn unpermute_rows(raw: &mut RawTensor, rows: usize, heads: usize) -> Result<()> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(Error::Config(format!(
            "cannot split {rows} rows into {heads} rotary heads"
        )));
    }
    let row_bytes = raw.bytes.len() / rows;
    let mut out = vec![0u8; raw.bytes.len()];
    for r in 0..rows {
        let dst = gguf_row_to_hf(r, rows, heads);
        out[dst * row_bytes..(dst + 1) * row_bytes]
            .copy_from_slice(&raw.bytes[r * row_bytes..(r + 1) * row_bytes]);
    }
    raw.bytes = out;
    Ok(())
}

fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// An open GGUF file.
pub(crate) struct GgufSource {
    pub path: PathBuf,
    pub file: File,
    pub header: GgufHeader,
}

impl GgufSource {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let header = GgufHeader::read(std::io::BufReader::with_capacity(1 << 20, &file), len)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            header,
        })
    }

    /// The config of the model in the file.
    pub fn config(&self) -> Result<ModelConfig> {
        let h = &self.header;
        let embd = h
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
        if embd.dims.len() != 2 {
            return Err(Error::TensorShape {
                tensor: embd.name.clone(),
                expected: vec![0, 0],
                found: embd.shape(),
            });
        }
        let rope_freqs = match h.tensor("rope_freqs.weight") {
            None => None,
            Some(t) => {
                let raw = self.read(t)?;
                if raw.kind != TensorType::F32 {
                    return Err(Error::UnsupportedTensorType {
                        tensor: t.name.clone(),
                        kind: raw.kind.to_string(),
                    });
                }
                Some(
                    raw.bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
        };
        ModelConfig::from_gguf(
            h,
            embd.dims[1],
            h.tensor("output.weight").is_none(),
            rope_freqs,
        )
    }

    fn read(&self, t: &TensorInfo) -> Result<RawTensor> {
        Ok(RawTensor {
            kind: t.kind,
            bytes: read_at(&self.file, &self.path, t.offset, t.size)?,
        })
    }

    /// Checks the file's tensors against the plan: every planned tensor present
    /// with its shape, nothing else (but `rope_freqs.weight`).
    pub fn check(&self, plan: &[PlannedTensor]) -> Result<()> {
        for p in plan {
            let t = self
                .header
                .tensor(&p.gguf)
                .ok_or_else(|| Error::MissingTensor(p.gguf.clone()))?;
            if t.shape() != p.shape {
                return Err(Error::TensorShape {
                    tensor: p.gguf.clone(),
                    expected: p.shape.clone(),
                    found: t.shape(),
                });
            }
        }
        let known: std::collections::HashSet<&str> = plan.iter().map(|p| p.gguf.as_str()).collect();
        if let Some(t) = self
            .header
            .tensors
            .iter()
            .find(|t| !known.contains(t.name.as_str()) && t.name != "rope_freqs.weight")
        {
            return Err(Error::UnexpectedTensor(t.name.clone()));
        }
        Ok(())
    }

    pub fn load(&self, p: &PlannedTensor, device: &Device) -> Result<Weight> {
        let t = self
            .header
            .tensor(&p.gguf)
            .ok_or_else(|| Error::MissingTensor(p.gguf.clone()))?;
        let mut raw = self.read(t)?;
        if let Some(heads) = p.gguf_permuted_heads {
            unpermute_rows(&mut raw, p.shape[0], heads)?;
        }
        build_weight(p, raw, device)
    }
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone)]
struct StEntry {
    file: usize,
    kind: TensorType,
    shape: Vec<usize>,
    offset: u64,
    size: u64,
}

/// A Hugging Face model directory: `config.json` and one or more safetensors files.
pub(crate) struct SafetensorsSource {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, StEntry>,
}

/// The largest safetensors JSON header accepted (the format's own limit is 100 MB).
const MAX_ST_HEADER: u64 = 100 << 20;

impl SafetensorsSource {
    /// Opens `model.safetensors`, or every shard listed in
    /// `model.safetensors.index.json`, in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let j: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", index.display())))?;
            let map = j
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Config(format!("{}: no weight_map", index.display())))?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec!["model.safetensors".into()]
        };
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.contains('/') || name.contains("..") {
                return Err(Error::Config(format!(
                    "shard name `{name}` is not a plain file name"
                )));
            }
            let path = dir.join(name);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            let bad = |reason: String| Error::Config(format!("{}: {reason}", path.display()));
            if len < 8 {
                return Err(bad("too short for a safetensors file".into()));
            }
            let n = u64::from_le_bytes(
                read_at(&file, &path, 0, 8)?
                    .try_into()
                    .map_err(|_| bad("short read".into()))?,
            );
            if n > MAX_ST_HEADER || 8 + n > len {
                return Err(bad(format!("header length {n} does not fit the file")));
            }
            let header = read_at(&file, &path, 8, n)?;
            let j: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
            let data_start = 8 + n;
            for (tname, info) in j {
                if tname == "__metadata__" {
                    continue;
                }
                let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
                let kind = match dtype {
                    "F32" => TensorType::F32,
                    "F16" => TensorType::F16,
                    "BF16" => TensorType::BF16,
                    other => {
                        return Err(Error::UnsupportedTensorType {
                            tensor: tname,
                            kind: other.into(),
                        });
                    }
                };
                let shape: Vec<usize> = info
                    .get("shape")
                    .and_then(|s| s.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| d.as_u64().map(|d| d as usize))
                            .collect()
                    })
                    .ok_or_else(|| bad(format!("tensor `{tname}` has no shape")))?;
                let offs: Vec<u64> = info
                    .get("data_offsets")
                    .and_then(|s| s.as_array())
                    .map(|a| a.iter().filter_map(|d| d.as_u64()).collect())
                    .unwrap_or_default();
                let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
                let (start, end) = match offs[..] {
                    [s, e] if s <= e => (s, e),
                    _ => return Err(bad(format!("tensor `{tname}` has bad data_offsets"))),
                };
                if elements.and_then(|e| kind.bytes_for(e)) != Some(end - start)
                    || data_start + end > len
                {
                    return Err(bad(format!(
                        "tensor `{tname}` data does not match its shape or the file"
                    )));
                }
                entries.insert(
                    tname,
                    StEntry {
                        file: i,
                        kind,
                        shape,
                        offset: data_start + start,
                        size: end - start,
                    },
                );
            }
            files.push((path, file));
        }
        Ok(Self { files, entries })
    }

    pub fn check(&self, plan: &[PlannedTensor]) -> Result<()> {
        for p in plan {
            let e = self
                .entries
                .get(&p.hf)
                .ok_or_else(|| Error::MissingTensor(p.hf.clone()))?;
            if e.shape != p.shape {
                return Err(Error::TensorShape {
                    tensor: p.hf.clone(),
                    expected: p.shape.clone(),
                    found: e.shape.clone(),
                });
            }
        }
        let known: std::collections::HashSet<&str> = plan.iter().map(|p| p.hf.as_str()).collect();
        let mut extra: Vec<&String> = self
            .entries
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .collect();
        extra.sort();
        match extra.first() {
            Some(name) => Err(Error::UnexpectedTensor((*name).clone())),
            None => Ok(()),
        }
    }

    pub fn load(&self, p: &PlannedTensor, device: &Device) -> Result<Weight> {
        let e = self
            .entries
            .get(&p.hf)
            .ok_or_else(|| Error::MissingTensor(p.hf.clone()))?;
        let (path, file) = &self.files[e.file];
        let raw = RawTensor {
            kind: e.kind,
            bytes: read_at(file, path, e.offset, e.size)?,
        };
        build_weight(p, raw, device)
    }
}

/// `x @ q^T` on the quantized blocks as they are stored (4.5 bits per weight for
/// Q4_K), with candle's dot-product kernels, for the block types that have them.
///
/// candle's own dispatch for Q4_K first repacks the whole matrix into tiles with one
/// byte per weight (kept for the model's lifetime): that doubles the resident memory
/// and the bytes a decode step streams. `None` for other types, which go through
/// candle's dispatch.
fn compact_matmul_t(q: &QTensor, x: &Tensor) -> Result<Option<Tensor>> {
    use crate::kernels;
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::k_quants::{
        BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8_0, GgmlType, matmul,
    };

    /// Multiply-adds below which a product runs on the calling thread (a 512 x 2048
    /// matrix times one vector).
    const SMALL_PRODUCT: usize = 1 << 20;

    /// The stored bytes as blocks, where their alignment allows it.
    fn blocks<T>(data: &[u8]) -> Option<&[T]> {
        // SAFETY: the block types are plain old data (integers and f16s), so any
        // bytes are a valid value; `align_to` only yields correctly aligned blocks.
        let (head, blocks, tail) = unsafe { data.align_to::<T>() };
        (head.is_empty() && tail.is_empty()).then_some(blocks)
    }
    fn run<T: GgmlType>(
        data: &[u8],
        (m, k, n): (usize, usize, usize),
        lhs: &[f32],
    ) -> Result<Option<Vec<f32>>> {
        let Some(rhs) = blocks::<T>(data) else {
            return Ok(None);
        };
        if rhs.len() * T::BLCK_SIZE != n * k || k % T::BLCK_SIZE != 0 {
            return Ok(None);
        }
        // Our own kernels where this CPU runs them.
        let parallel = m * n * k > SMALL_PRODUCT;
        let ours = match T::DTYPE {
            GgmlDType::Q4K => blocks::<kernels::Q4K>(data)
                .and_then(|rhs| kernels::matmul(lhs, (m, k, n), rhs, parallel)),
            GgmlDType::Q8_0 => blocks::<kernels::Q8_0>(data)
                .and_then(|rhs| kernels::matmul(lhs, (m, k, n), rhs, parallel)),
            _ => None,
        };
        if ours.is_some() {
            return Ok(ours);
        }
        let mut dst = vec![0f32; m * n];
        if m * n * k <= SMALL_PRODUCT {
            // The calling thread alone: waking candle's worker pool and waiting at its
            // barrier costs more than the product (tiny models, where it dominated a
            // decode step, and far more on a busy machine, where a worker may not be
            // scheduled for a while).
            let blocks = k / T::BLCK_SIZE;
            let mut lhs_q = vec![T::VecDotType::zeros(); m * blocks];
            for (row, q) in lhs.chunks_exact(k).zip(lhs_q.chunks_exact_mut(blocks)) {
                T::VecDotType::from_float(row, q);
            }
            for (q, out) in lhs_q.chunks_exact(blocks).zip(dst.chunks_exact_mut(n)) {
                for (col, out) in rhs.chunks_exact(blocks).zip(out.iter_mut()) {
                    *out = T::vec_dot(k, col, q);
                }
            }
        } else {
            matmul::<T>((m, k, n), lhs, rhs, &mut dst)?;
        }
        Ok(Some(dst))
    }

    let (n, k) = q.shape().dims2()?;
    let (m, kx) = x.dims2()?;
    if kx != k || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(None);
    }
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let data = q.data()?;
    let mkn = (m, k, n);
    let dst = match q.dtype() {
        GgmlDType::Q4K => run::<BlockQ4K>(&data, mkn, &lhs)?,
        GgmlDType::Q5K => run::<BlockQ5K>(&data, mkn, &lhs)?,
        GgmlDType::Q6K => run::<BlockQ6K>(&data, mkn, &lhs)?,
        GgmlDType::Q8_0 => run::<BlockQ8_0>(&data, mkn, &lhs)?,
        GgmlDType::Q4_0 => run::<BlockQ4_0>(&data, mkn, &lhs)?,
        _ => None,
    };
    Ok(match dst {
        Some(dst) => Some(Tensor::from_vec(dst, (m, n), &Device::Cpu)?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantized matmuls on the stored blocks match the plain product with the
    /// dequantized matrix, for every block type with a compact kernel, one row
    /// (decode) and several (prefill), and column counts that leave a tail.
    #[test]
    fn compact_matmul_matches_the_dequantized_product() {
        use candle_core::quantized::GgmlDType;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let k = 512;
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
        ] {
            // Small products run on the calling thread, the last two on candle's pool.
            for (m, n) in [(1, 7), (1, 64), (5, 9), (3, 32), (1, 2051), (9, 300)] {
                let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
                let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let plain = q.dequantize(&Device::Cpu).unwrap();
                let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
                let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
                let got = compact_matmul_t(&q, &x)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{dtype:?} has a compact kernel"));
                let want = x.matmul(&plain.t().unwrap()).unwrap();
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // The activations are quantized to 8 bits per block on the way in: about
                    // 0.01 of noise on these sums; a wrong kernel is off by O(1).
                    assert!(
                        (g - w).abs() <= 0.05 + 0.02 * w.abs(),
                        "{dtype:?} m={m} n={n} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn permutation_is_a_bijection_matching_the_converter() {
        // 2 heads of dim 8: the converter's permute of rows [h, s, i] -> [h, i, s].
        let rows = 16;
        let mut seen = vec![false; rows];
        for r in 0..rows {
            seen[gguf_row_to_hf(r, rows, 2)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        // GGUF row 1 of head 0 is (i=0, s=1) = HF row 4 (second half, first pair).
        assert_eq!(gguf_row_to_hf(1, rows, 2), 4);
        assert_eq!(gguf_row_to_hf(2, rows, 2), 1);
        assert_eq!(gguf_row_to_hf(9, rows, 2), 12);
    }
}
