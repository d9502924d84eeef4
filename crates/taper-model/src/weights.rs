//! Where each weight lives: the tensor plan of an architecture (GGUF and Hugging
//! Face names, shapes), and the readers that fetch tensors from GGUF or safetensors
//! files (mapped into memory), so loading never holds a second copy of the model
//! (a Q4_K or Q6_K matrix interleaved for our kernels replaces the file's pages it
//! came from).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8_0, GgmlType,
};
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use memmap2::{Advice, Mmap, MmapMut, UncheckedAdvice};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorInfo, TensorType};
use crate::kernels;
use crate::weight_cache::{Wanted, WeightCache};

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
    /// Block-quantized (Q4_0, Q8_0, Q4_K, ...), read in place from the mapped file
    /// (Q4_K and Q6_K interleaved at load where our kernels run): matmuls run on the
    /// blocks.
    Quantized(QuantMatrix),
    /// Dense f32, f16 or bf16.
    Dense(Tensor),
}

impl Weight {
    /// `x @ self^T` for `x` of shape `[n, in]` in f32, giving `[n, out]` in f32.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Quantized(q) => q.matmul_t(x)?,
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
            Self::Quantized(q) => q.rows(ids)?,
            Self::Dense(w) => w.index_select(ids, 0)?.to_dtype(DType::F32)?,
        })
    }

    /// The storage type, as GGUF names it.
    pub fn kind(&self) -> String {
        match self {
            Self::Quantized(q) => q.kind.name().to_string(),
            Self::Dense(t) => format!("{:?}", t.dtype()),
        }
    }

    /// Bytes the weight occupies (in memory, or in the mapped file).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Quantized(q) => q.interleaved.as_ref().unwrap_or(&q.data).len,
            Self::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }
}

/// A tensor's bytes where they lie: a range of a read-only memory map (the model
/// file itself, or an anonymous map holding a copy).
#[derive(Clone)]
pub(crate) struct Mapped {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    /// Whether `map` maps a file (else it is an anonymous copy).
    file: bool,
}

impl Mapped {
    /// `len` bytes of the file mapped by `map`, from `start`, which the caller has
    /// checked lie inside it.
    pub(crate) fn file_range(map: &Arc<Mmap>, start: usize, len: usize) -> Self {
        Self {
            map: Arc::clone(map),
            start,
            len,
            file: true,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }

    /// The bytes as blocks of `T`, one of the block types (plain old data).
    fn blocks<T>(&self) -> &[T] {
        // SAFETY: the block types are plain old data (integers, f16s and f32s), so
        // any bytes are a valid value; `align_to` only yields aligned blocks.
        let (head, blocks, _) = unsafe { self.bytes().align_to::<T>() };
        assert!(
            head.is_empty(),
            "QuantMatrix::new copies misaligned data into an aligned map"
        );
        blocks
    }

    /// A copy of `bytes` in an anonymous map, which is page-aligned.
    fn copy_of(bytes: &[u8]) -> std::io::Result<Self> {
        let mut map = MmapMut::map_anon(bytes.len().max(1))?;
        map[..bytes.len()].copy_from_slice(bytes);
        Self::anonymous(map, bytes.len())
    }

    /// The first `len` bytes of an anonymous map, made read-only.
    fn anonymous(map: MmapMut, len: usize) -> std::io::Result<Self> {
        Ok(Self {
            map: Arc::new(map.make_read_only()?),
            start: 0,
            len,
            file: false,
        })
    }

    /// Best effort: reads the pages of `range` (bytes of this tensor) in now, in
    /// one call, so that loading, not the first forward pass, pays for reading the
    /// file (kernels before 5.14 lack MADV_POPULATE_READ, and then the pages are
    /// read on first use).
    pub(crate) fn populate(&self, range: std::ops::Range<usize>) {
        if !range.is_empty() {
            let _ =
                self.map
                    .advise_range(Advice::PopulateRead, self.start + range.start, range.len());
        }
    }

    /// Best effort: takes the pages of `range` (bytes of this tensor) out of this
    /// process's resident memory. They stay valid: a later read brings them back
    /// from the page cache or the file. An anonymous copy is kept, having nowhere
    /// to come back from.
    fn release(&self, range: std::ops::Range<usize>) {
        if self.file && !range.is_empty() {
            // SAFETY: the map is a shared read-only file mapping, so dropping its
            // pages loses nothing (no private changes exist) and every slice of it
            // stays valid, its pages read again on access. A page this range shares
            // with a neighbour is read again too.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.start + range.start,
                    range.len(),
                )
            };
        }
    }
}

/// Alignment every block type needs (the widest field of any block is an f32).
const BLOCK_ALIGN: usize = 4;

/// A block-quantized matrix `[rows, cols]` read in place from the model file, so
/// loading copies nothing and the resident memory is the file's pages; or, for
/// Q4_K and Q6_K where our kernels run, interleaved at load into groups of 16 rows
/// (the same bytes, the file's pages released). Cloning shares the data.
#[derive(Clone)]
pub struct QuantMatrix {
    kind: TensorType,
    rows: usize,
    cols: usize,
    data: Mapped,
    /// Q4_K or Q6_K interleaved for our kernels (`kernels::Q4KX16`, `Q6KX16`), in
    /// an anonymous map.
    interleaved: Option<Mapped>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("kind", &self.kind)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl QuantMatrix {
    /// `data` as a matrix of `rows` rows of `cols` weights of block type `kind`;
    /// copied into an aligned map where the file leaves it misaligned.
    fn new(name: &str, kind: TensorType, rows: usize, cols: usize, data: Mapped) -> Result<Self> {
        let whole_rows = cols.is_multiple_of(kind.block_size())
            && kind.bytes_for((rows * cols) as u64) == Some(data.len as u64);
        if kind.block_size() == 1 || !whole_rows {
            return Err(Error::UnsupportedTensorType {
                tensor: name.into(),
                kind: format!("{} with rows of {cols}", kind.name()),
            });
        }
        let data = if (data.bytes().as_ptr() as usize).is_multiple_of(BLOCK_ALIGN) {
            data
        } else {
            Mapped::copy_of(data.bytes()).map_err(|e| Error::io(name, e))?
        };
        Ok(Self {
            kind,
            rows,
            cols,
            data,
            interleaved: None,
        })
    }

    /// Readies the matrix for products: where our kernels run, a Q4_K or Q6_K
    /// matrix is interleaved for them (see `kernels::Interleaved`) and the file's
    /// pages of the original released; reading rows or dequantizing still reads the
    /// original. Anything else has its pages read in now.
    fn for_products(mut self, name: &str, cache: Option<&WeightCache>) -> Result<Self> {
        // Interleaved exactly where our kernel for the groups runs; elsewhere
        // (without AVX2) candle's portable kernels read the blocks as stored.
        let ours = |runs: fn(kernels::Level) -> bool| kernels::level().is_some_and(runs);
        self.interleaved = match self.kind {
            TensorType::Q4K if ours(kernels::runs_at::<kernels::Q4KX16>) => {
                Some(self.interleave_cached::<kernels::Q4KX16>(name, cache)?)
            }
            TensorType::Q6K if ours(kernels::runs_at::<kernels::Q6KX16>) => {
                Some(self.interleave_cached::<kernels::Q6KX16>(name, cache)?)
            }
            _ => None,
        };
        if self.interleaved.is_none() {
            self.data.populate(0..self.data.len);
        }
        Ok(self)
    }

    /// The matrix interleaved into groups `G`: mapped from `cache` where it holds
    /// them, else interleaved into the cache's new file (or, failing that, into
    /// memory of our own).
    fn interleave_cached<G: kernels::Interleaved>(
        &self,
        name: &str,
        cache: Option<&WeightCache>,
    ) -> Result<Mapped> {
        let len = kernels::group_count::<G>(self.rows, self.cols) * std::mem::size_of::<G>();
        let fill = |out: &mut [u8]| self.interleave_into::<G>(out);
        let want = Wanted {
            name,
            kind: self.kind,
            rows: self.rows,
            cols: self.cols,
            len,
        };
        match cache.and_then(|c| c.get(&want, fill)) {
            Some(data) => Ok(data),
            None => self.interleave::<G>(name),
        }
    }

    /// The matrix interleaved into groups `G`, in an anonymous map.
    fn interleave<G: kernels::Interleaved>(&self, name: &str) -> Result<Mapped> {
        let len = kernels::group_count::<G>(self.rows, self.cols) * std::mem::size_of::<G>();
        let mut map = MmapMut::map_anon(len.max(1)).map_err(|e| Error::io(name, e))?;
        // Best effort: huge pages make the first touch of fresh memory cheaper (on
        // the development VM, loading the Qwen3 Q4_K_M file at one thread spent
        // 4.3 s in the kernel with them, 5.0-5.4 s without).
        let _ = map.advise(Advice::HugePage);
        self.interleave_into::<G>(&mut map[..len]);
        Mapped::anonymous(map, len).map_err(|e| Error::io(name, e))
    }

    /// Interleaves the matrix into groups `G` in `out` (page-aligned, the groups'
    /// size). The original is read and released a slab of rows at a time, so that
    /// it and the copy are never both resident in full.
    fn interleave_into<G: kernels::Interleaved>(&self, out: &mut [u8]) {
        /// Bytes of the original per slab (a multiple of 16 rows).
        const SLAB: usize = 16 << 20;
        let groups = kernels::group_count::<G>(self.rows, self.cols);
        // SAFETY: the groups are plain old data (integers and f16 bits), so any
        // bytes are a valid value; `align_to_mut` only yields aligned values.
        let (head, out, _) = unsafe { out.align_to_mut::<G>() };
        assert!(
            head.is_empty() && out.len() == groups,
            "callers pass page-aligned space for exactly the groups"
        );
        let blocks = self.blocks::<G::Source>();
        let per_row = blocks.len() / self.rows;
        let groups_per_row = groups / self.rows.div_ceil(kernels::LANES);
        let row_bytes = self.data.len / self.rows;
        let slab = (SLAB / row_bytes.max(1)).next_multiple_of(kernels::LANES);
        for first in (0..self.rows).step_by(slab) {
            let end = self.rows.min(first + slab);
            let bytes = first * row_bytes..end * row_bytes;
            self.data.populate(bytes.clone());
            kernels::interleave(
                &blocks[first * per_row..end * per_row],
                end - first,
                &mut out[first / kernels::LANES * groups_per_row
                    ..end.div_ceil(kernels::LANES) * groups_per_row],
            );
            self.data.release(bytes);
        }
    }

    /// The data as blocks of `T`, one of the block types (plain old data).
    fn blocks<T>(&self) -> &[T] {
        self.data.blocks()
    }

    /// `x @ self^T` for `x` `[m, cols]` in f32.
    fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: x.shape().clone(),
                rhs: (self.rows, self.cols).into(),
                op: "matmul_t",
            }
            .into());
        }
        let lhs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mkn = (m, k, self.rows);
        let out = match self.kind {
            TensorType::Q4K => product::<BlockQ4K>(self, mkn, &lhs)?,
            TensorType::Q5K => product::<BlockQ5K>(self, mkn, &lhs)?,
            TensorType::Q6K => product::<BlockQ6K>(self, mkn, &lhs)?,
            TensorType::Q8_0 => product::<BlockQ8_0>(self, mkn, &lhs)?,
            TensorType::Q4_0 => product::<BlockQ4_0>(self, mkn, &lhs)?,
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
                unreachable!("QuantMatrix::new refuses dense types")
            }
        };
        Ok(Tensor::from_vec(out, (m, self.rows), x.device())?)
    }

    /// Rows `ids` dequantized to f32, `[ids, cols]`.
    fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            return Err(Error::TokenOutOfRange {
                token: bad,
                vocab: self.rows,
            });
        }
        let out = self.dequantize_rows(ids.iter().map(|&i| i as usize));
        Ok(Tensor::from_vec(out, (ids.len(), self.cols), &Device::Cpu)?)
    }

    /// The whole matrix in f32.
    pub fn dequantize(&self) -> Result<Tensor> {
        let out = self.dequantize_rows(0..self.rows);
        Ok(Tensor::from_vec(out, (self.rows, self.cols), &Device::Cpu)?)
    }

    fn dequantize_rows(&self, ids: impl ExactSizeIterator<Item = usize>) -> Vec<f32> {
        fn go<T: GgmlType>(q: &QuantMatrix, ids: impl Iterator<Item = usize>, out: &mut [f32]) {
            let per_row = q.cols / T::BLCK_SIZE;
            let blocks = q.blocks::<T>();
            for (r, out) in ids.zip(out.chunks_exact_mut(q.cols)) {
                T::to_float(&blocks[r * per_row..(r + 1) * per_row], out);
            }
        }
        let mut out = vec![0f32; ids.len() * self.cols];
        match self.kind {
            TensorType::Q4K => go::<BlockQ4K>(self, ids, &mut out),
            TensorType::Q5K => go::<BlockQ5K>(self, ids, &mut out),
            TensorType::Q6K => go::<BlockQ6K>(self, ids, &mut out),
            TensorType::Q8_0 => go::<BlockQ8_0>(self, ids, &mut out),
            TensorType::Q4_0 => go::<BlockQ4_0>(self, ids, &mut out),
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
                unreachable!("QuantMatrix::new refuses dense types")
            }
        }
        out
    }
}

/// A tensor's storage as found in a file: its element type and bytes, in the
/// file's row order.
pub(crate) struct RawTensor {
    kind: TensorType,
    data: Mapped,
}

/// Builds the in-memory weight for `plan`: dense tensors are converted into candle
/// tensors, quantized matrices stay where they are in the map (or are interleaved
/// for our kernels).
pub(crate) fn build_weight(
    plan: &PlannedTensor,
    raw: RawTensor,
    device: &Device,
    cache: Option<&WeightCache>,
) -> Result<Weight> {
    let shape = plan.shape.clone();
    let quantized = raw.kind.block_size() > 1;
    if !(quantized && plan.role == TensorRole::Matrix) {
        // Projection matrices read their pages in `for_products`.
        raw.data.populate(0..raw.data.len);
    }
    let dense = |dtype: DType| -> Result<Tensor> {
        Ok(bytes_to_tensor(raw.data.bytes(), dtype, &shape, device)?)
    };
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape.iter().product::<usize>() / cols.max(1);
    match (plan.role, raw.kind) {
        (_, TensorType::F32) => Ok(Weight::Dense(dense(DType::F32)?)),
        (TensorRole::Vector, TensorType::F16) => {
            Ok(Weight::Dense(dense(DType::F16)?.to_dtype(DType::F32)?))
        }
        (TensorRole::Vector, TensorType::BF16) => {
            Ok(Weight::Dense(dense(DType::BF16)?.to_dtype(DType::F32)?))
        }
        (_, TensorType::F16) => Ok(Weight::Dense(dense(DType::F16)?)),
        (_, TensorType::BF16) => Ok(Weight::Dense(dense(DType::BF16)?)),
        (TensorRole::Vector, k) => {
            let q = QuantMatrix::new(&plan.gguf, k, rows, cols, raw.data)?;
            Ok(Weight::Dense(q.dequantize()?.reshape(shape)?))
        }
        (TensorRole::Embedding, k) => Ok(Weight::Quantized(QuantMatrix::new(
            &plan.gguf, k, rows, cols, raw.data,
        )?)),
        (TensorRole::Matrix, k) => Ok(Weight::Quantized(
            QuantMatrix::new(&plan.gguf, k, rows, cols, raw.data)?
                .for_products(&plan.gguf, cache)?,
        )),
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

/// Maps the whole of an open file (`path` names it in errors) read-only.
fn map_file(file: &File, path: &Path) -> Result<Arc<Mmap>> {
    // SAFETY: the map is read-only and private to this process; as with every
    // memory-mapped model loader (llama.cpp's included), the file must not be
    // truncated or rewritten while the model is loaded, which `Model::load`
    // documents.
    let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(map))
}

/// The bytes of `[offset, offset + len)` of `map`, faulted in now (where the kernel
/// supports it) so that loading, not the first forward pass, pays for reading the
/// file.
fn mapped_range(map: &Arc<Mmap>, path: &Path, offset: u64, len: u64) -> Result<Mapped> {
    let end = offset.checked_add(len).filter(|&e| e <= map.len() as u64);
    if end.is_none() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "tensor data past the end of the file",
            ),
        ));
    }
    let (start, len) = (offset as usize, len as usize);
    Ok(Mapped {
        map: Arc::clone(map),
        start,
        len,
        file: true,
    })
}

/// An open GGUF file, mapped into memory.
pub(crate) struct GgufSource {
    pub path: PathBuf,
    pub header: GgufHeader,
    map: Arc<Mmap>,
}

impl GgufSource {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let header = GgufHeader::read(std::io::BufReader::with_capacity(1 << 20, &file), len)?;
        let map = map_file(&file, path)?;
        Ok(Self {
            path: path.to_owned(),
            header,
            map,
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
                    raw.data
                        .bytes()
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
            data: mapped_range(&self.map, &self.path, t.offset, t.size)?,
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

    /// Loads the tensor planned as `p`, its matrices repacked through `cache` if
    /// given.
    pub fn load(
        &self,
        p: &PlannedTensor,
        device: &Device,
        cache: Option<&WeightCache>,
    ) -> Result<Weight> {
        let t = self
            .header
            .tensor(&p.gguf)
            .ok_or_else(|| Error::MissingTensor(p.gguf.clone()))?;
        // Llama's q/k rows stay in llama.cpp's permuted order; the model applies
        // rope in the matching interleaved form (see `Model::load`).
        build_weight(p, self.read(t)?, device, cache)
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
    files: Vec<(PathBuf, Arc<Mmap>)>,
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
            let map = map_file(&file, &path)?;
            files.push((path, map));
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
        let (path, map) = &self.files[e.file];
        let raw = RawTensor {
            kind: e.kind,
            data: mapped_range(map, path, e.offset, e.size)?,
        };
        build_weight(p, raw, device, None)
    }
}

fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Rows from which interleaving blocks for a product pays for itself (Q8_0 with
/// AVX-512, a 4096 x 4096 matrix on one core: 16 rows in 4.5 ms, against 7.4 ms as
/// stored; 256 rows in 38 ms against 104).
const INTERLEAVE_ROWS: usize = 16;

/// `lhs [m, k] @ q^T` by our kernels on groups `G`: those `q` was interleaved into
/// at load, or, without them (Q8_0, or a matrix never readied for products), from
/// [`INTERLEAVE_ROWS`] rows up, groups interleaved task by task from the stored
/// blocks. `None` where neither applies or the CPU lacks the kernel.
fn interleaved<G: kernels::Interleaved>(
    q: &QuantMatrix,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    parallel: bool,
) -> Option<Vec<f32>> {
    match &q.interleaved {
        Some(groups) => kernels::matmul(lhs, (m, k, n), groups.blocks::<G>(), parallel),
        None if m >= INTERLEAVE_ROWS => {
            kernels::matmul_interleaving::<G>(lhs, (m, k, n), q.blocks(), parallel)
        }
        None => None,
    }
}

/// `lhs [m, k] @ q^T` on the quantized blocks as they are stored (4.5 bits per
/// weight for Q4_K), giving `[m, n]`: our own kernels where the CPU runs them,
/// candle's dot products otherwise.
///
/// candle's own `QMatMul` dispatch for Q4_K first repacks the whole matrix into
/// tiles with one byte per weight (kept for the model's lifetime): that doubles the
/// resident memory and the bytes a decode step streams, so it is not used.
fn product<T: GgmlType>(
    q: &QuantMatrix,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
) -> Result<Vec<f32>> {
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::k_quants::matmul;

    /// Multiply-adds below which a product runs on the calling thread (a 512 x 2048
    /// matrix times one vector).
    const SMALL_PRODUCT: usize = 1 << 20;
    let parallel = m * n * k > SMALL_PRODUCT;
    // SAFETY (of the casts): kernels' block types have the layout of candle's.
    let ours = match T::DTYPE {
        GgmlDType::Q4K => interleaved::<kernels::Q4KX16>(q, (m, k, n), lhs, parallel),
        GgmlDType::Q6K => interleaved::<kernels::Q6KX16>(q, (m, k, n), lhs, parallel),
        // Q8_0 stays as stored (interleaving it at load would double the load
        // time of the largest files); a decode runs on the stored blocks.
        GgmlDType::Q8_0 => interleaved::<kernels::Q8_0X16>(q, (m, k, n), lhs, parallel)
            .or_else(|| kernels::matmul(lhs, (m, k, n), q.blocks::<kernels::Q8_0>(), parallel)),
        _ => None,
    };
    if let Some(out) = ours {
        return Ok(out);
    }
    let rhs = q.blocks::<T>();
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
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantized matmuls on the stored blocks match the plain product with the
    /// dequantized matrix, for every block type, one row (decode) and several
    /// (prefill), and column counts that leave a tail; dequantizing (whole, and by
    /// rows) matches candle's.
    #[test]
    fn quantized_matrices_match_the_dequantized_product() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let k = 512;
        for (dtype, kind) in [
            (GgmlDType::Q4K, TensorType::Q4K),
            (GgmlDType::Q5K, TensorType::Q5K),
            (GgmlDType::Q6K, TensorType::Q6K),
            (GgmlDType::Q8_0, TensorType::Q8_0),
            (GgmlDType::Q4_0, TensorType::Q4_0),
        ] {
            // Small products run on the calling thread, the last two on candle's pool.
            for (m, n) in [
                (1, 7),
                (1, 64),
                (5, 9),
                (3, 32),
                (17, 40),
                (1, 2051),
                (9, 300),
            ] {
                let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
                let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let plain = q.dequantize(&Device::Cpu).unwrap();
                let ours = QuantMatrix::new(
                    "w",
                    kind,
                    n,
                    k,
                    Mapped::copy_of(&q.data().unwrap()).unwrap(),
                )
                .unwrap();
                // As stored, and as readied for products (Q4_K interleaved where our
                // kernels run): rows and dequantizing read the original either way.
                let ready = ours.clone().for_products("w", None).unwrap();
                assert_eq!(
                    ready.interleaved.is_some(),
                    kernels::level().is_some() && matches!(kind, TensorType::Q4K | TensorType::Q6K),
                    "{dtype:?} interleaved at load exactly where our kernels run"
                );
                for ours in [ours, ready] {
                    let same = ours.dequantize().unwrap().sub(&plain).unwrap();
                    let diff = same.abs().unwrap().max_all().unwrap();
                    assert_eq!(
                        diff.to_scalar::<f32>().unwrap(),
                        0.0,
                        "{dtype:?} dequantize"
                    );
                    let ids = Tensor::new(&[n as u32 - 1, 0], &Device::Cpu).unwrap();
                    let rows = ours.rows(&ids).unwrap();
                    let want_rows = plain.index_select(&ids, 0).unwrap();
                    let diff = (rows - want_rows)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap();
                    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{dtype:?} rows");
                    let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
                    let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
                    let got = ours.matmul_t(&x).unwrap();
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
