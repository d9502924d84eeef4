//! Quantized matrix products with our own SIMD kernels (AVX-512 VNNI, and AVX2 for
//! Q4_K and Q6_K; detected at run time): Q4_K, Q6_K and Q8_0 weights times
//! activations quantized to 8 bits.
//! Q4_K and Q6_K are interleaved at load into groups of 16 columns ([`Q4KX16`],
//! [`Q6KX16`]: the idea of llama.cpp's `block_q4_Kx8` repacking, our own layouts),
//! so that one pass computes 16 columns on the lanes of a register and a decode
//! step streams each group's bytes in order. Q8_0 stays as stored, for decode, and
//! is interleaved ([`Q8_0X16`]) a task at a time for a prefill
//! ([`matmul_interleaving`]): the largest files load as fast as they map.
//!
//! The block layouts are ggml's (`ggml-common.h`: `block_q4_K`, `block_q6_K`,
//! `block_q8_K`, `block_q8_0`), as GGUF files store them, and so is the arithmetic
//! (`ggml_vec_dot_q4_K_q8_K`, `ggml_vec_dot_q6_K_q8_K`, `ggml_vec_dot_q8_0_q8_0`). A Q4_K weight is
//! `d * scale[j] * q - dmin * min[j]` for its sub-block `j` of 32, so a block's dot
//! product with Q8_K activations `y` (scale `dy`) is
//! `dy * (d * sum_j scale[j] * <q_j, y_j> - dmin * sum_j min[j] * sum(y_j))`, the
//! sums of `y` coming from the Q8_K block's `bsums`. A Q6_K weight is
//! `d * scale[j] * (q - 32)` for its group `j` of 16, so the `- 32` also goes
//! through `bsums`. A Q8_0 block is 32 weights `d * q`.
//!
//! With AVX2 but not AVX-512 ([`Level::Avx2`]), Q4_K and Q6_K are interleaved at
//! load too, for our AVX2 kernels (`vpmaddubsw`): with the prefetch hints they
//! decode faster than candle's AVX2 kernels on the blocks as stored (Qwen3 8B
//! shape, Q4_K_M: 1.57-1.67 against 1.13-1.38 tok/s at one thread, 2.75-3.74
//! against 1.98-2.05 at two), and a prefill of 64 rows took about 2/3 of candle's
//! time. Q8_0 has no AVX2 kernel of ours. Without AVX2 and FMA the caller keeps
//! candle's portable kernels. [`KERNELS_ENV`] lowers the level, to compare them on
//! one machine. Each kernel is tested against a plain reference, itself checked
//! against candle's own `vec_dot`, on random blocks.

use rayon::prelude::*;

/// Weights per super-block.
const QK_K: usize = 256;

/// A Q4_K block as stored (ggml's `block_q4_K`: 144 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Q4K {
    d: u16,
    dmin: u16,
    scales: [u8; 12],
    qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<Q4K>() == 144);

/// Activations of one super-block quantized to 8 bits (ggml's `block_q8_K`, plus
/// the sums of its eight 32-value sub-blocks).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Q8K {
    d: f32,
    qs: [i8; QK_K],
    bsums: [i16; QK_K / 16],
    /// Each 32-value sub-block's sum (its two `bsums`; at most 32 * 127), for the
    /// Q4_K mins.
    sub_sums: [i16; QK_K / 32],
}

impl Q8K {
    const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
        sub_sums: [0; QK_K / 32],
    };

    /// Sets `sub_sums` from `bsums`.
    fn with_sums(mut self) -> Self {
        for (j, s) in self.sub_sums.iter_mut().enumerate() {
            *s = self.bsums[2 * j] + self.bsums[2 * j + 1];
        }
        self
    }

    /// As candle's `BlockQ8K::from_float` (the path this kernel replaces), so both
    /// paths give the same numbers: the value of largest magnitude maps to -127.
    fn quantize(x: &[f32]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx512() && x.len() == QK_K {
            // SAFETY: the CPU has the features; `x` holds a whole block.
            return unsafe { avx512::quantize_q8k(x) };
        }
        Self::quantize_plain(x)
    }

    /// [`Q8K::quantize`] in plain Rust.
    fn quantize_plain(x: &[f32]) -> Self {
        let mut out = Self::ZERO;
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return out;
        }
        let iscale = -127.0 / max;
        for (q, &v) in out.qs.iter_mut().zip(x) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (s, chunk) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
            *s = chunk.iter().map(|&q| q as i16).sum();
        }
        out.d = 1.0 / iscale;
        out.with_sums()
    }
}

/// The eight 6-bit scales and mins of a Q4_K block (ggml's `get_scale_min_k4`).
fn scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for j in 4..8 {
        sc[j] = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    (sc, mn)
}

/// A weight block type with a SIMD dot product against its activation blocks.
pub(crate) trait QuantDot: Copy + Send + Sync + Sized {
    /// The activations' block, quantized from f32.
    type Act: Copy + Send + Sync;
    /// Weights (and activations) per block along the inner dimension.
    const BLOCK: usize;
    /// Output columns a block holds: 1, or more for blocks interleaved at load.
    const WIDTH: usize;
    /// One dot product per column of a block: `[f32; WIDTH]`.
    type Out: AsRef<[f32]>;
    /// Whether there is an AVX2 kernel (there is always an AVX-512 one).
    const AVX2: bool;
    /// Quantizes `BLOCK` activations.
    fn quantize(x: &[f32]) -> Self::Act;
    /// `<x, y[r]>` for `R` activation rows of `x.len()` blocks each (one result
    /// per column of the blocks), each weight block unpacked once for all rows, by
    /// the kernel for `level`.
    ///
    /// # Safety
    /// The CPU runs `level` (it is at most [`level`]) and the type has a kernel for
    /// it ([`runs_at`]); every row has `x.len()` blocks.
    unsafe fn dot<const R: usize>(level: Level, x: &[Self], y: [&[Self::Act]; R])
    -> [Self::Out; R];
}

/// Whether `W` has a kernel for `level`.
pub(crate) fn runs_at<W: QuantDot>(level: Level) -> bool {
    level == Level::Avx512 || W::AVX2
}

/// Implements [`QuantDot`] for a weight block type: its activation block, weights
/// per block, columns per block, the activations' quantizer, the AVX-512 kernel in
/// `avx512` and, if there is one, the AVX2 kernel in `avx2`.
macro_rules! quant_dot {
    ($block:ty, $act:ty, $n:expr, $width:expr, $quantize:path, $kernel:ident $(, $avx2:ident)?) => {
        impl QuantDot for $block {
            type Act = $act;
            const BLOCK: usize = $n;
            const WIDTH: usize = $width;
            type Out = [f32; $width];
            const AVX2: bool = quant_dot!(@has $($avx2)?);
            fn quantize(x: &[f32]) -> $act {
                $quantize(x)
            }
            unsafe fn dot<const R: usize>(
                level: Level,
                x: &[Self],
                y: [&[$act]; R],
            ) -> [[f32; $width]; R] {
                #[cfg(target_arch = "x86_64")]
                {
                    $(
                        if level == Level::Avx2 {
                            // SAFETY: the caller's promise.
                            return unsafe { avx2::$avx2(x, y) };
                        }
                    )?
                    debug_assert_eq!(level, Level::Avx512, "no kernel for {level:?}");
                    // SAFETY: the caller's promise.
                    return unsafe { avx512::$kernel(x, y) };
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("level() is None off x86_64, so no kernel is called ({level:?})")
            }
        }
    };
    (@has $avx2:ident) => {
        true
    };
    (@has) => {
        false
    };
}

/// Columns of a [`Q4KX16`].
pub(crate) const LANES: usize = 16;

/// One super-block (256 inputs) of 16 columns' Q4_K weights, interleaved at load so
/// that the kernel computes the 16 columns side by side on the 16 lanes of a
/// register: each 4-byte group of activations, broadcast to all lanes, meets 4
/// weights of every column in one `vpdpbusd`. The same bytes as the 16 blocks it
/// comes from (2304), plus the scales and mins unpacked to a byte each (64 more).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Q4KX16 {
    /// Each column's `d` (f16 bits).
    d: [u16; LANES],
    /// Each column's `dmin` (f16 bits).
    dmin: [u16; LANES],
    /// `scales[16 j + c]`: column `c`'s scale of sub-block `j` (32 weights).
    scales: [u8; 8 * LANES],
    /// `mins[32 p + 2 c + e]`: column `c`'s min of sub-block `2 p + e`, so that
    /// pairs of sub-blocks meet pairs of activation sums in `vpdpwssd`.
    mins: [u8; 8 * LANES],
    /// 64-byte groups: group `g` holds tile `2 g` in its low nibbles and tile
    /// `2 g + 1` in its high ones; byte `4 c + i` of tile `t` is column `c`'s weight
    /// `4 t + i`.
    qs: [u8; QK_K / 2 * LANES],
}
const _: () = assert!(std::mem::size_of::<Q4KX16>() == 2368);

/// Groups of 16 columns' blocks interleaved from the blocks a file stores, so that
/// a kernel computes the 16 columns side by side.
pub(crate) trait Interleaved: QuantDot {
    /// The block type as stored.
    type Source: Sync;
    /// Stored blocks per column in one group (its `BLOCK` inputs).
    const UNIT: usize;
    /// Interleaves into `self` the `UNIT` blocks of each of the first `n` (at most
    /// 16) columns, column `c`'s at `blocks[c * stride..]`; missing columns are zero
    /// (their products are zero).
    fn interleave(&mut self, blocks: &[Self::Source], stride: usize, n: usize);
}

/// Groups `G` that hold a matrix of `n` rows (output columns) of `k` weights, 16
/// rows and `G::BLOCK` inputs each.
pub(crate) fn group_count<G: Interleaved>(n: usize, k: usize) -> usize {
    n.div_ceil(LANES) * (k / G::BLOCK)
}

/// Interleaves a matrix of `n` rows (output columns) of `blocks.len() / n` blocks
/// each into `out`, groups of 16 rows: group `g`'s units come one per `G::BLOCK`
/// inputs, at `g * per_row ..`, the last group padded with zero columns. `out`
/// holds [`group_count`] groups.
pub(crate) fn interleave<G: Interleaved>(blocks: &[G::Source], n: usize, out: &mut [G]) {
    let per_row = blocks.len() / n.max(1) / G::UNIT;
    out.par_chunks_mut(per_row)
        .enumerate()
        .for_each(|(g, out)| {
            interleave_group(&blocks[LANES * g * per_row * G::UNIT..], n - LANES * g, out)
        });
}

/// Interleaves the first 16 (or `n`, if fewer) rows of `blocks` into the groups
/// `out`, one per `G::BLOCK` inputs, on the calling thread.
fn interleave_group<G: Interleaved>(blocks: &[G::Source], n: usize, out: &mut [G]) {
    let stride = out.len() * G::UNIT;
    let unit = std::mem::size_of::<G::Source>() * G::UNIT;
    for (b, out) in out.iter_mut().enumerate() {
        // The 16 columns are 16 streams through the file's pages, more than the
        // hardware follows: each column's blocks two units ahead are asked for.
        for c in 0..n.min(LANES) {
            prefetch(
                blocks.as_ptr().wrapping_add(c * stride + (b + 2) * G::UNIT),
                unit,
            );
        }
        out.interleave(&blocks[b * G::UNIT..], stride, n);
    }
}

/// Asks for the cache lines of the `len` bytes at `at` (a hint: any address will
/// do, none is read).
#[inline(always)]
fn prefetch<T>(at: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address; SSE is part of
        // x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                at.cast::<i8>().wrapping_add(offset),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// How far ahead of the weights being read the kernels ask for the next ones.
/// A decode streams each matrix once, and one core's loads alone keep too few
/// cache misses in flight: streaming a 0.9 GB matrix at one row, the hint 2-8
/// KiB ahead took Q4_K from 7.0-7.6 to 8.5-9.4 GB/s, Q6_K from 6.8-7.6 to
/// 8.2-9.8 and stored Q8_0 from 5.5-6.7 to 6.6-10.8 on one core of this
/// machine (and 10-12 to 12-18 GB/s on two).
const AHEAD: usize = 4096;

/// Asks for the cache lines holding the `len` bytes [`AHEAD`] bytes past `at`:
/// the weights the kernel reads next (in a task's columns, or the next
/// task's, which follow them in memory; past the matrix's end, nothing useful).
#[inline(always)]
fn prefetch_ahead<T>(at: &T, len: usize) {
    prefetch(std::ptr::from_ref(at).cast::<u8>().wrapping_add(AHEAD), len);
}

/// Column `c`'s block of a group being interleaved, or `None` past the `n`th.
fn column<S>(blocks: &[S], stride: usize, n: usize, c: usize) -> Option<&S> {
    (c < n).then(|| &blocks[c * stride])
}

impl Interleaved for Q4KX16 {
    type Source = Q4K;
    const UNIT: usize = 1;

    fn interleave(&mut self, blocks: &[Q4K], stride: usize, n: usize) {
        for c in 0..LANES {
            let Some(x) = column(blocks, stride, n, c) else {
                self.d[c] = 0;
                self.dmin[c] = 0;
                continue;
            };
            self.d[c] = x.d;
            self.dmin[c] = x.dmin;
            let (sc, mn) = scales_mins(&x.scales);
            for j in 0..8 {
                self.scales[16 * j + c] = sc[j];
                self.mins[32 * (j / 2) + 2 * c + j % 2] = mn[j];
            }
            // Weight w of a Q4_K block is nibble (w % 64) / 32 of byte
            // 32 (w / 64) + w % 32 (ggml's `dequantize_row_q4_K`). Tiles 2g and
            // 2g + 1 hold weights 8g .. 8g + 8: eight consecutive bytes, one nibble
            // half. So the k-th 8 bytes (k = 4q + i) give tiles g = 8q + i (low
            // nibbles) and g = 8q + 4 + i (high ones).
            for (k, bytes) in x.qs.chunks_exact(8).enumerate() {
                let word = u64::from_le_bytes(bytes.try_into().expect("chunks of 8 bytes"));
                for half in 0..2 {
                    let v = (word >> (4 * half)) & 0x0f0f_0f0f_0f0f_0f0f;
                    let tiles = (v as u32) | ((v >> 32) as u32) << 4;
                    let g = 8 * (k / 4) + 4 * half + k % 4;
                    self.qs[64 * g + 4 * c..64 * g + 4 * c + 4]
                        .copy_from_slice(&tiles.to_le_bytes());
                }
            }
        }
    }
}

quant_dot!(
    Q4KX16,
    Q8K,
    QK_K,
    LANES,
    Q8K::quantize,
    dot_q4k_x16,
    dot_q4k_x16
);

/// A Q6_K block as stored (ggml's `block_q6_K`: 210 bytes): per weight 4 low bits
/// in `ql` and 2 high bits in `qh`, stored plus 32; one signed scale per 16.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Q6K {
    ql: [u8; QK_K / 2],
    qh: [u8; QK_K / 4],
    scales: [i8; QK_K / 16],
    d: u16,
}
const _: () = assert!(std::mem::size_of::<Q6K>() == 210);

/// One super-block (256 inputs) of 16 columns' Q6_K weights, interleaved at load as
/// [`Q4KX16`] is, in exactly the bytes of the 16 blocks it comes from.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Q6KX16 {
    /// `scales[16 j + c]`: column `c`'s scale of weights `16 j .. 16 j + 16`.
    scales: [i8; 16 * LANES],
    /// The weights (stored plus 32) in 16 runs of 192 bytes, one per 16 inputs `j`,
    /// read in order: tiles `4 j .. 4 j + 4` (byte `4 c + i` of tile `t` is column
    /// `c`'s weight `4 t + i`). Bytes 0-63 hold bits 0-3 of tiles `4 j` (low
    /// nibbles) and `4 j + 1` (high nibbles), bytes 64-127 those of tiles `4 j + 2`
    /// and `4 j + 3`, bytes 128-191 bits 4-5 of all four (tile `4 j + s` at bits
    /// `2 s, 2 s + 1`).
    qs: [u8; 192 * 16],
    /// Each column's `d` (f16 bits).
    d: [u16; LANES],
}
// The 16 blocks' bytes, padded to whole cache lines (the 192-byte runs start on
// one: a run split across lines streams at half the speed).
const _: () = assert!(std::mem::size_of::<Q6KX16>() == 16 * 210 + 32);

impl Interleaved for Q6KX16 {
    type Source = Q6K;
    const UNIT: usize = 1;

    fn interleave(&mut self, blocks: &[Q6K], stride: usize, n: usize) {
        for c in 0..LANES {
            let Some(x) = column(blocks, stride, n, c) else {
                self.d[c] = 0;
                continue;
            };
            self.d[c] = x.d;
            for j in 0..16 {
                self.scales[16 * j + c] = x.scales[j];
            }
            let q = q6k_weights(x);
            // Four weights at a time, one per byte of a u32.
            let four = |w: usize| u32::from_le_bytes(std::array::from_fn(|i| q[w + i]));
            for j in 0..QK_K / 16 {
                let run = &mut self.qs[192 * j..192 * (j + 1)];
                let mut put = |at: usize, v: u32| {
                    run[at + 4 * c..at + 4 * c + 4].copy_from_slice(&v.to_le_bytes())
                };
                for half in 0..2 {
                    let w = 16 * j + 8 * half;
                    put(
                        64 * half,
                        (four(w) & 0x0f0f_0f0f) | (four(w + 4) & 0x0f0f_0f0f) << 4,
                    );
                }
                put(
                    128,
                    (0..4).fold(0, |b, s| {
                        b | ((four(16 * j + 4 * s) >> 4) & 0x0303_0303) << (2 * s)
                    }),
                );
            }
        }
    }
}

/// A Q6_K block's 256 weights (stored plus 32: 0..=63), in order (ggml's
/// `dequantize_row_q6_K`).
fn q6k_weights(x: &Q6K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&x.ql[64 * h..], &x.qh[32 * h..]);
        for l in 0..32 {
            let base = 128 * h + l;
            q[base] = (ql[l] & 15) | ((qh[l] & 3) << 4);
            q[base + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
            q[base + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[base + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

quant_dot!(
    Q6KX16,
    Q8K,
    QK_K,
    LANES,
    Q8K::quantize,
    dot_q6k_x16,
    dot_q6k_x16
);

/// Plain Rust, weight by weight as ggml's `dequantize_row_q6_K` lays them out: the
/// reference the Q6_K kernel is tested against.
#[cfg(test)]
fn dot_q6k_portable(x: &[Q6K], y: &[Q8K]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in x.iter().zip(y) {
        let q = q6k_weights(x);
        let dots: i32 = (0..QK_K)
            .map(|i| x.scales[i / 16] as i32 * (q[i] as i32 - 32) * y.qs[i] as i32)
            .sum();
        sum += half::f16::from_bits(x.d).to_f32() * y.d * dots as f32;
    }
    sum
}

/// A Q8_0 block as stored (ggml's `block_q8_0`: 34 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Q8_0 {
    d: u16,
    qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<Q8_0>() == 34);

/// Activations of one Q8_0 block: the scale already widened to f32 (the f16
/// rounding kept, as candle's `BlockQ8_0` stores it), and the quants stored plus
/// 128, unsigned, as `vpdpbusd` wants them.
#[derive(Clone, Copy)]
pub(crate) struct Q8_0Act {
    d: f32,
    qs: [u8; 32],
}

impl Q8_0Act {
    /// As candle's `BlockQ8_0::from_float`: `d = amax / 127`, stored as f16; the
    /// quants (-127..=127) then biased by 128.
    fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 32];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = ((v * id).round() as i8 as i16 + 128) as u8;
        }
        Self {
            d: half::f16::from_f32(d).to_f32(),
            qs,
        }
    }
}

quant_dot!(Q8_0, Q8_0Act, 32, 1, Q8_0Act::quantize, dot_q8_0);

/// Two Q8_0 blocks (64 inputs) of 16 columns, interleaved as [`Q4KX16`] is,
/// the weights stored plus 128 (unsigned) for `vpdpbusd`: the 16 columns' 32
/// stored blocks are 1088 bytes, and so is this, 17 cache lines.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Q8_0X16 {
    /// 16 tiles of 64 bytes: byte `4 c + i` of tile `t` is column `c`'s weight
    /// `4 t + i`, plus 128.
    qs: [u8; 64 * LANES],
    /// `d[16 b + c]`: column `c`'s scale of block `b` (f16 bits).
    d: [u16; 2 * LANES],
}
const _: () = assert!(std::mem::size_of::<Q8_0X16>() == 32 * 34);

impl Interleaved for Q8_0X16 {
    type Source = Q8_0;
    const UNIT: usize = 2;

    fn interleave(&mut self, blocks: &[Q8_0], stride: usize, n: usize) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the features.
            return unsafe { avx512::interleave_q8_0(self, blocks, stride, n) };
        }
        self.interleave_plain(blocks, stride, n);
    }
}

impl Q8_0X16 {
    /// [`Interleaved::interleave`] in plain Rust.
    fn interleave_plain(&mut self, blocks: &[Q8_0], stride: usize, n: usize) {
        for c in 0..LANES {
            for b in 0..2 {
                let x = column(&blocks[b..], stride, n, c);
                self.d[LANES * b + c] = x.map_or(0, |x| x.d);
                for t in 0..8 {
                    let four: [u8; 4] = match x {
                        Some(x) => std::array::from_fn(|i| x.qs[4 * t + i] as u8 ^ 0x80),
                        None => [0; 4],
                    };
                    let at = 64 * (8 * b + t) + 4 * c;
                    self.qs[at..at + 4].copy_from_slice(&four);
                }
            }
        }
    }
}

/// Activations of 64 inputs for [`Q8_0X16`]: two blocks quantized as
/// [`Q8_0Act::quantize`] does (the same numbers), kept signed, with each block's
/// sum (the weights' bias of 128 adds `128 * sum` to a product).
#[derive(Clone, Copy)]
pub(crate) struct Q8_0PairAct {
    d: [f32; 2],
    sums: [i32; 2],
    qs: [i8; 64],
}

impl Q8_0PairAct {
    fn quantize(x: &[f32]) -> Self {
        let mut out = Self {
            d: [0.0; 2],
            sums: [0; 2],
            qs: [0; 64],
        };
        for (b, x) in x.chunks_exact(32).enumerate() {
            let a = Q8_0Act::quantize(x);
            out.d[b] = a.d;
            for (q, &v) in out.qs[32 * b..].iter_mut().zip(&a.qs) {
                *q = (v ^ 0x80) as i8;
            }
            out.sums[b] = out.qs[32 * b..32 * b + 32].iter().map(|&q| q as i32).sum();
        }
        out
    }
}

quant_dot!(
    Q8_0X16,
    Q8_0PairAct,
    64,
    LANES,
    Q8_0PairAct::quantize,
    dot_q8_0_x16
);

/// Plain Rust: the reference the Q8_0 kernel is tested against.
#[cfg(test)]
fn dot_q8_0_portable(x: &[Q8_0], y: &[Q8_0Act]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(x, y)| {
            let s: i32 =
                x.qs.iter()
                    .zip(&y.qs)
                    .map(|(&a, &b)| a as i32 * (b as i32 - 128))
                    .sum();
            half::f16::from_bits(x.d).to_f32() * y.d * s as f32
        })
        .sum()
}

/// Plain Rust, block by block: the reference the Q4_K kernel is tested against.
#[cfg(test)]
fn dot_q4k_portable(x: &[Q4K], y: &[Q8K]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, mn) = scales_mins(&x.scales);
        let mut dots = 0i32;
        let mut mins = 0i32;
        for c in 0..4 {
            let q = &x.qs[32 * c..32 * c + 32];
            let lo: i32 = q
                .iter()
                .zip(&y.qs[64 * c..64 * c + 32])
                .map(|(&q, &y)| (q & 15) as i32 * y as i32)
                .sum();
            let hi: i32 = q
                .iter()
                .zip(&y.qs[64 * c + 32..64 * c + 64])
                .map(|(&q, &y)| (q >> 4) as i32 * y as i32)
                .sum();
            dots += sc[2 * c] as i32 * lo + sc[2 * c + 1] as i32 * hi;
        }
        for (j, &m) in mn.iter().enumerate() {
            mins += m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        let d = half::f16::from_bits(x.d).to_f32() * y.d;
        let dmin = half::f16::from_bits(x.dmin).to_f32() * y.d;
        sum += d * dots as f32 - dmin * mins as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{
        LANES, Q4KX16, Q6KX16, Q8_0, Q8_0Act, Q8_0PairAct, Q8_0X16, Q8K, QK_K, prefetch_ahead,
    };
    use std::arch::x86_64::*;

    /// `start` plus tile `t`'s 16 columns (unsigned weights `w[t]`) times the 4
    /// activations at `a + 4t`, broadcast to every lane: one `vpdpbusd` each, in
    /// two chains so that one row alone (decode) is not bound by their latency.
    ///
    /// # Safety
    /// `a` points to `4 * w.len()` activations.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tiles(start: __m512i, w: &[__m512i], a: *const i8) -> __m512i {
        let mut s = [start, _mm512_setzero_si512()];
        for (t, w) in w.iter().enumerate() {
            // SAFETY: 4 bytes at 4t, inside the caller's promise.
            let four = unsafe { a.add(4 * t).cast::<i32>().read_unaligned() };
            s[t % 2] = _mm512_dpbusd_epi32(s[t % 2], *w, _mm512_set1_epi32(four));
        }
        _mm512_add_epi32(s[0], s[1])
    }

    /// The 16 lanes of `v`, one per column.
    #[target_feature(enable = "avx512f")]
    fn lanes(v: __m512) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: stores the 16 floats of `out`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    /// Sixteen columns side by side, one per 32-bit lane. Per sub-block of 32
    /// inputs: four 64-byte loads give its eight tiles of unsigned weights, and each
    /// tile meets its 4 activations, broadcast to every lane, in one `vpdpbusd` (4
    /// products of at most 15 * 128 summed into 32 bits); the sub-block's sums are
    /// multiplied by the columns' scales in 32 bits (at most 8 * 63 * 32 * 15 * 128
    /// in all), and the float scales `d` come once per super-block. The mins meet
    /// the activations' sub-block sums in `vpdpwssd`. Each super-block's weights are
    /// unpacked once for the `R` activation rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4k_x16<const R: usize>(
        x: &[Q4KX16],
        y: [&[Q8K]; R],
    ) -> [[f32; LANES]; R] {
        let nibble = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); R];
        // SAFETY: every load reads inside a block (16 scales at 16j, 64 bytes at
        // 64g of the 2048 weight bytes, 32 mins at 32p, the 16 d and dmin) or an
        // activation block (4 bytes at 32j + 4t of its 256, 2 sums at 2p of its 8),
        // and the caller passes rows of `x.len()` blocks; the features are the
        // caller's promise.
        for (b, x) in x.iter().enumerate() {
            unsafe {
                prefetch_ahead(x, std::mem::size_of::<Q4KX16>());
                let mut sums = [_mm512_setzero_si512(); R];
                for j in 0..8 {
                    let sc =
                        _mm512_cvtepu8_epi32(_mm_loadu_si128(x.scales.as_ptr().add(16 * j).cast()));
                    let mut w = [_mm512_setzero_si512(); 8];
                    for g in 0..4 {
                        let q = _mm512_loadu_si512(x.qs.as_ptr().add(64 * (4 * j + g)).cast());
                        w[2 * g] = _mm512_and_si512(q, nibble);
                        w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), nibble);
                    }
                    for r in 0..R {
                        let a = y[r].get_unchecked(b).qs.as_ptr().add(32 * j);
                        let s = tiles(_mm512_setzero_si512(), &w, a);
                        sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(s, sc));
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(x.d.as_ptr().cast()));
                let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(x.dmin.as_ptr().cast()));
                let mins: [__m512i; 4] = std::array::from_fn(|p| {
                    _mm512_cvtepu8_epi16(_mm256_loadu_si256(x.mins.as_ptr().add(32 * p).cast()))
                });
                for r in 0..R {
                    let y = y[r].get_unchecked(b);
                    let mut m = _mm512_setzero_si512();
                    for (p, mins) in mins.iter().enumerate() {
                        let pair = y
                            .sub_sums
                            .as_ptr()
                            .add(2 * p)
                            .cast::<i32>()
                            .read_unaligned();
                        m = _mm512_dpwssd_epi32(m, *mins, _mm512_set1_epi32(pair));
                    }
                    let dy = _mm512_set1_ps(y.d);
                    let main = _mm512_mul_ps(_mm512_cvtepi32_ps(sums[r]), d);
                    let mins = _mm512_mul_ps(_mm512_cvtepi32_ps(m), dmin);
                    acc[r] = _mm512_fmadd_ps(_mm512_sub_ps(main, mins), dy, acc[r]);
                }
            }
        }
        acc.map(|v| lanes(v))
    }

    /// Sixteen columns side by side, as [`dot_q4k_x16`]. Per 16 inputs: two
    /// 64-byte loads give four tiles' bits 0-3 and one more their bits 4-5
    /// (`vpternlogd` merges them); each tile meets its 4 activations in one
    /// `vpdpbusd`. The weights are stored plus 32, so each 16's sums start at
    /// `-32 * sum(y)` (from `bsums`) before the columns' signed scales multiply them
    /// (at most 16 * (63 + 32) * 128 * 128 per 16, 16 of them).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q6k_x16<const R: usize>(
        x: &[Q6KX16],
        y: [&[Q8K]; R],
    ) -> [[f32; LANES]; R] {
        let nibble = _mm512_set1_epi8(0x0f);
        let high = _mm512_set1_epi8(0x30);
        let mut acc = [_mm512_setzero_ps(); R];
        // SAFETY: every load reads inside a block (16 scales at 16j, the 192-byte
        // run j of the 3072 weight bytes, the 16 d) or an activation block (4 bytes at 16j + 4t of its 256, its 16
        // bsums), and the caller passes rows of `x.len()` blocks; the features are
        // the caller's promise.
        for (b, x) in x.iter().enumerate() {
            unsafe {
                prefetch_ahead(x, std::mem::size_of::<Q6KX16>());
                let mut sums = [_mm512_setzero_si512(); R];
                for j in 0..16 {
                    let sc =
                        _mm512_cvtepi8_epi32(_mm_loadu_si128(x.scales.as_ptr().add(16 * j).cast()));
                    let run = x.qs.as_ptr().add(192 * j);
                    let lo0 = _mm512_loadu_si512(run.cast());
                    let lo1 = _mm512_loadu_si512(run.add(64).cast());
                    let h = _mm512_loadu_si512(run.add(128).cast());
                    // (low nibble) | (bits 4-5 moved into place & 0x30).
                    let merge =
                        |lo: __m512i, h: __m512i| _mm512_ternarylogic_epi32::<0xf8>(lo, h, high);
                    let w = [
                        merge(_mm512_and_si512(lo0, nibble), _mm512_slli_epi16::<4>(h)),
                        merge(
                            _mm512_and_si512(_mm512_srli_epi16::<4>(lo0), nibble),
                            _mm512_slli_epi16::<2>(h),
                        ),
                        merge(_mm512_and_si512(lo1, nibble), h),
                        merge(
                            _mm512_and_si512(_mm512_srli_epi16::<4>(lo1), nibble),
                            _mm512_srli_epi16::<2>(h),
                        ),
                    ];
                    for r in 0..R {
                        let y = y[r].get_unchecked(b);
                        let start = _mm512_set1_epi32(-32 * *y.bsums.get_unchecked(j) as i32);
                        let s = tiles(start, &w, y.qs.as_ptr().add(16 * j));
                        sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(s, sc));
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(x.d.as_ptr().cast()));
                for r in 0..R {
                    let dy = _mm512_set1_ps(y[r].get_unchecked(b).d);
                    acc[r] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), _mm512_mul_ps(d, dy), acc[r]);
                }
            }
        }
        acc.map(|v| lanes(v))
    }

    /// Two blocks per 512-bit register. `vpdpbusd` multiplies unsigned by signed
    /// bytes, so the activations come biased by 128: `<y + 128, x> = <y, x> + 128 *
    /// sum(x)`, and the accumulator starts at `-128 * sum(x)`, computed once per pair
    /// of weight blocks for the `R` activation rows. An odd last block goes alone,
    /// with the upper half zero.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_0<const R: usize>(x: &[Q8_0], y: [&[Q8_0Act]; R]) -> [[f32; 1]; R] {
        let bias = _mm512_set1_epi8(-128);
        // Lanes 0-7 take the first block's scale, 8-15 the second's.
        let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut acc = [_mm512_setzero_ps(); R];
        // SAFETY: each load reads the 32 quants of one block (`b + 1` only when it
        // exists), and the caller passes rows of `x.len()` blocks; the features are
        // the caller's promise.
        for b in (0..x.len()).step_by(2) {
            unsafe {
                let two = b + 1 < x.len();
                let quants = |q: *const u8, next: *const u8| {
                    let lo = _mm512_zextsi256_si512(_mm256_loadu_si256(q.cast()));
                    if two {
                        _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(next.cast()))
                    } else {
                        lo
                    }
                };
                let x0 = x.get_unchecked(b);
                let x1 = if two { x.get_unchecked(b + 1) } else { x0 };
                prefetch_ahead(x0, 2 * std::mem::size_of::<Q8_0>());
                let w = quants(x0.qs.as_ptr().cast(), x1.qs.as_ptr().cast());
                let start = _mm512_sub_epi32(
                    _mm512_setzero_si512(),
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, w),
                );
                let d1 = if two { x1.d as i16 } else { 0 };
                let dx = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, 0, 0, d1, x0.d as i16));
                for r in 0..R {
                    let y0 = y[r].get_unchecked(b);
                    let y1 = if two { y[r].get_unchecked(b + 1) } else { y0 };
                    let a = quants(y0.qs.as_ptr(), y1.qs.as_ptr());
                    let p = _mm512_dpbusd_epi32(start, a, w);
                    let dd = _mm_mul_ps(dx, _mm_set_ps(0.0, 0.0, y1.d, y0.d));
                    let d = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(dd));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc[r]);
                }
            }
        }
        std::array::from_fn(|r| [_mm512_reduce_add_ps(acc[r])])
    }

    /// Sixteen columns side by side, as [`dot_q4k_x16`]: each tile of 4 inputs
    /// meets its activations, broadcast to every lane, in one `vpdpbusd` (weights
    /// plus 128, unsigned, times signed activations); each block's sums start at
    /// `-128 * sum(y)` to take the bias off. The 16 tiles of a group are loaded once
    /// for the `R` activation rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_0_x16<const R: usize>(
        x: &[Q8_0X16],
        y: [&[Q8_0PairAct]; R],
    ) -> [[f32; LANES]; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        // SAFETY: every load reads inside a group (64 bytes at 64t of its 1024, its
        // 32 scales) or an activation block (4 bytes at 4t of its 64), and the
        // caller passes rows of `x.len()` blocks; the features are the caller's
        // promise.
        for (b, x) in x.iter().enumerate() {
            unsafe {
                let w: [__m512i; 16] =
                    std::array::from_fn(|t| _mm512_loadu_si512(x.qs.as_ptr().add(64 * t).cast()));
                let d = [
                    _mm512_cvtph_ps(_mm256_loadu_si256(x.d.as_ptr().cast())),
                    _mm512_cvtph_ps(_mm256_loadu_si256(x.d.as_ptr().add(LANES).cast())),
                ];
                for r in 0..R {
                    let y = y[r].get_unchecked(b);
                    let mut s = [
                        _mm512_set1_epi32(-128 * y.sums[0]),
                        _mm512_set1_epi32(-128 * y.sums[1]),
                    ];
                    for (t, w) in w.iter().enumerate() {
                        let a = y.qs.as_ptr().add(4 * t).cast::<i32>().read_unaligned();
                        s[t / 8] = _mm512_dpbusd_epi32(s[t / 8], *w, _mm512_set1_epi32(a));
                    }
                    for h in 0..2 {
                        let dy = _mm512_mul_ps(d[h], _mm512_set1_ps(y.d[h]));
                        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[h]), dy, acc[r]);
                    }
                }
            }
        }
        acc.map(|v| lanes(v))
    }

    /// [`Q8_0X16::interleave_plain`] with one gather per tile of 4 inputs.
    ///
    /// # Safety
    /// The CPU has the features [`super::avx512`] checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn interleave_q8_0(
        out: &mut Q8_0X16,
        blocks: &[Q8_0],
        stride: usize,
        n: usize,
    ) {
        let n = n.min(LANES);
        let mask: __mmask16 = ((1u32 << n) - 1) as u16;
        // Column c's block b is `stride * c + b` blocks on, at most 16 rows of a
        // matrix (a few hundred KB): the byte offsets fit in i32.
        let step = (stride * std::mem::size_of::<Q8_0>()) as i32;
        let rows = _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32(step),
        );
        let bias = _mm512_set1_epi8(-128);
        for b in 0..2 {
            for c in 0..LANES {
                out.d[LANES * b + c] = if c < n { blocks[c * stride + b].d } else { 0 };
            }
            let base = blocks[b..].as_ptr().cast::<u8>();
            for t in 0..8 {
                // SAFETY: lane c reads 4 bytes of the quants of column c's block b
                // (bytes 2 + 4t ..), for the columns below `n` only (masked), which
                // `blocks` holds: the caller passes 16 rows of `stride` blocks or
                // `n` rows and the indexing above checked the last one.
                let v = unsafe {
                    _mm512_mask_i32gather_epi32::<1>(
                        _mm512_setzero_si512(),
                        mask,
                        rows,
                        base.add(2 + 4 * t).cast(),
                    )
                };
                let v = _mm512_maskz_xor_epi32(mask, v, bias);
                // SAFETY: tile 8b + t, 64 bytes inside the 1024 of `out.qs`.
                unsafe { _mm512_storeu_si512(out.qs.as_mut_ptr().add(64 * (8 * b + t)).cast(), v) };
            }
        }
    }

    /// [`Q8K::quantize_plain`], 16 lanes at a time, to the same bits: the first
    /// value of the largest magnitude sets the scale, and rounding is half away
    /// from zero as `f32::round` (truncate, then step away from zero where the
    /// dropped fraction is at least one half).
    ///
    /// # Safety
    /// `x` holds `QK_K` values; the CPU has the features [`super::avx512`] checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn quantize_q8k(x: &[f32]) -> Q8K {
        let mut v = [_mm512_setzero_ps(); QK_K / 16];
        let mut amax = _mm512_setzero_ps();
        for (i, v) in v.iter_mut().enumerate() {
            // SAFETY: 16 values at 16i of the block's 256.
            *v = unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * i)) };
            amax = _mm512_max_ps(amax, _mm512_abs_ps(*v));
        }
        let amax = _mm512_reduce_max_ps(amax);
        let mut out = Q8K::ZERO;
        if amax == 0.0 {
            return out;
        }
        let first = v.iter().enumerate().find_map(|(i, v)| {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(*v), _mm512_set1_ps(amax));
            (hit != 0).then(|| 16 * i + hit.trailing_zeros() as usize)
        });
        let Some(first) = first else {
            // Only NaNs compare unequal to their own maximum: the plain path's rules.
            return Q8K::quantize_plain(x);
        };
        let iscale = -127.0 / x[first];
        let sign = _mm512_castps_si512(_mm512_set1_ps(-0.0));
        let (lo, hi) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
        for (i, v) in v.iter().enumerate() {
            let y = _mm512_mul_ps(*v, _mm512_set1_ps(iscale));
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(
                _mm512_abs_ps(_mm512_sub_ps(y, t)),
                _mm512_set1_ps(0.5),
            );
            let step = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_and_si512(_mm512_castps_si512(y), sign),
                _mm512_castps_si512(_mm512_set1_ps(1.0)),
            ));
            let r = _mm512_mask_add_ps(t, away, t, step);
            let q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi));
            out.bsums[i] = _mm512_reduce_add_epi32(q) as i16;
            // SAFETY: 16 bytes at 16i of the block's 256.
            unsafe {
                _mm_storeu_si128(
                    out.qs.as_mut_ptr().add(16 * i).cast(),
                    _mm512_cvtsepi32_epi8(q),
                )
            };
        }
        out.d = 1.0 / iscale;
        out.with_sums()
    }
}

/// The Q4_K and Q6_K kernels for CPUs with AVX2 but not AVX-512: the same
/// interleaved groups, each 16 columns in two 8-lane halves. Without VNNI a tile's
/// products go through `vpmaddubsw` (pairs of unsigned weights times signed
/// activations, summed into 16 bits) and `vpmaddwd` (pairs of 16-bit values into
/// 32 bits); the weights are small enough that several tiles add up in 16 bits
/// before widening.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LANES, Q4KX16, Q6KX16, Q8K, QK_K, prefetch_ahead};
    use std::arch::x86_64::*;

    /// Columns per half of a group.
    const HALF: usize = LANES / 2;

    /// The 4 activations at `a`, in every 32-bit lane.
    ///
    /// # Safety
    /// `a` points to 4 bytes.
    #[target_feature(enable = "avx2")]
    unsafe fn four(a: *const i8) -> __m256i {
        // SAFETY: the caller's promise.
        _mm256_set1_epi32(unsafe { a.cast::<i32>().read_unaligned() })
    }

    /// The 16 lanes of two halves, one per column.
    #[target_feature(enable = "avx")]
    fn lanes([lo, hi]: [__m256; 2]) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: two stores of 8 floats into the 16 of `out`.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), lo);
            _mm256_storeu_ps(out.as_mut_ptr().add(HALF), hi);
        }
        out
    }

    /// [`super::avx512::dot_q4k_x16`] on 8 columns at a time. Per sub-block of 32
    /// inputs, each of its 8 tiles meets its 4 activations in one `vpmaddubsw`
    /// (two products of at most 15 * 128 per 16-bit lane) and the 8 add up in 16
    /// bits (at most 8 * 3840 = 30720); one `vpmaddwd` against the columns'
    /// scales, doubled into both 16-bit halves of a lane, widens them scaled. The
    /// mins meet the activations' sub-block sums in `vpmaddwd`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4k_x16<const R: usize>(
        x: &[Q4KX16],
        y: [&[Q8K]; R],
    ) -> [[f32; LANES]; R] {
        let nibble = _mm256_set1_epi8(0x0f);
        let mut acc = [[_mm256_setzero_ps(); R]; 2];
        // SAFETY: every load reads inside a block (8 scales at 16j + 8h, 32 bytes at
        // 64g + 32h of the 2048 weight bytes, 16 mins at 32p + 16h, 8 d and dmin at
        // 8h) or an activation block (4 bytes at 32j + 4t of its 256, 2 sums at 2p
        // of its 8), and the caller passes rows of `x.len()` blocks; the features
        // are the caller's promise.
        for (b, x) in x.iter().enumerate() {
            prefetch_ahead(x, std::mem::size_of::<Q4KX16>());
            for (h, acc) in acc.iter_mut().enumerate() {
                unsafe {
                    let mut sums = [_mm256_setzero_si256(); R];
                    for j in 0..8 {
                        let sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            x.scales.as_ptr().add(16 * j + HALF * h).cast(),
                        ));
                        let sc = _mm256_or_si256(sc, _mm256_slli_epi32::<16>(sc));
                        let mut w = [_mm256_setzero_si256(); 8];
                        for g in 0..4 {
                            let q = _mm256_loadu_si256(
                                x.qs.as_ptr().add(64 * (4 * j + g) + 32 * h).cast(),
                            );
                            w[2 * g] = _mm256_and_si256(q, nibble);
                            w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nibble);
                        }
                        for r in 0..R {
                            let a = y[r].get_unchecked(b).qs.as_ptr().add(32 * j);
                            let mut s = _mm256_setzero_si256();
                            for (t, w) in w.iter().enumerate() {
                                s = _mm256_add_epi16(
                                    s,
                                    _mm256_maddubs_epi16(*w, four(a.add(4 * t))),
                                );
                            }
                            sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(s, sc));
                        }
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(x.d.as_ptr().add(HALF * h).cast()));
                    let dmin =
                        _mm256_cvtph_ps(_mm_loadu_si128(x.dmin.as_ptr().add(HALF * h).cast()));
                    let mins: [__m256i; 4] = std::array::from_fn(|p| {
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(
                            x.mins.as_ptr().add(32 * p + 2 * HALF * h).cast(),
                        ))
                    });
                    for r in 0..R {
                        let y = y[r].get_unchecked(b);
                        let mut m = _mm256_setzero_si256();
                        for (p, mins) in mins.iter().enumerate() {
                            let pair = four(y.sub_sums.as_ptr().add(2 * p).cast());
                            m = _mm256_add_epi32(m, _mm256_madd_epi16(*mins, pair));
                        }
                        let main = _mm256_mul_ps(_mm256_cvtepi32_ps(sums[r]), d);
                        let mins = _mm256_mul_ps(_mm256_cvtepi32_ps(m), dmin);
                        acc[r] =
                            _mm256_fmadd_ps(_mm256_sub_ps(main, mins), _mm256_set1_ps(y.d), acc[r]);
                    }
                }
            }
        }
        std::array::from_fn(|r| lanes([acc[0][r], acc[1][r]]))
    }

    /// [`super::avx512::dot_q6k_x16`] on 8 columns at a time: per 16 inputs, two
    /// tiles' `vpmaddubsw` add up in 16 bits (at most 2 * 2 * 63 * 128 = 32256)
    /// before `vpmaddwd` widens them; the `-32` offset and the columns' signed
    /// scales are applied in 32 bits, as there.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q6k_x16<const R: usize>(
        x: &[Q6KX16],
        y: [&[Q8K]; R],
    ) -> [[f32; LANES]; R] {
        let nibble = _mm256_set1_epi8(0x0f);
        let high = _mm256_set1_epi8(0x30);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); R]; 2];
        // (low nibble) | (bits 4-5 moved into place & 0x30).
        let merge = |lo: __m256i, h: __m256i| _mm256_or_si256(lo, _mm256_and_si256(h, high));
        // SAFETY: every load reads inside a block (8 scales at 16j + 8h, 32 bytes at
        // 32h of each 64 of run j of the 3072 weight bytes, 8 d at 8h) or an
        // activation block (4 bytes at 16j + 4t of its 256, its 16 bsums), and the
        // caller passes rows of `x.len()` blocks; the features are the caller's
        // promise.
        for (b, x) in x.iter().enumerate() {
            prefetch_ahead(x, std::mem::size_of::<Q6KX16>());
            for (h, acc) in acc.iter_mut().enumerate() {
                unsafe {
                    let mut sums = [_mm256_setzero_si256(); R];
                    for j in 0..QK_K / 16 {
                        let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                            x.scales.as_ptr().add(16 * j + HALF * h).cast(),
                        ));
                        let run = x.qs.as_ptr().add(192 * j + 32 * h);
                        let lo0 = _mm256_loadu_si256(run.cast());
                        let lo1 = _mm256_loadu_si256(run.add(64).cast());
                        let hb = _mm256_loadu_si256(run.add(128).cast());
                        let w = [
                            merge(_mm256_and_si256(lo0, nibble), _mm256_slli_epi16::<4>(hb)),
                            merge(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(lo0), nibble),
                                _mm256_slli_epi16::<2>(hb),
                            ),
                            merge(_mm256_and_si256(lo1, nibble), hb),
                            merge(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(lo1), nibble),
                                _mm256_srli_epi16::<2>(hb),
                            ),
                        ];
                        for r in 0..R {
                            let y = y[r].get_unchecked(b);
                            let a = y.qs.as_ptr().add(16 * j);
                            let pair = |t: usize| {
                                _mm256_add_epi16(
                                    _mm256_maddubs_epi16(w[t], four(a.add(4 * t))),
                                    _mm256_maddubs_epi16(w[t + 1], four(a.add(4 * t + 4))),
                                )
                            };
                            let s = _mm256_add_epi32(
                                _mm256_madd_epi16(pair(0), ones),
                                _mm256_madd_epi16(pair(2), ones),
                            );
                            let start = _mm256_set1_epi32(-32 * *y.bsums.get_unchecked(j) as i32);
                            let s = _mm256_add_epi32(s, start);
                            sums[r] = _mm256_add_epi32(sums[r], _mm256_mullo_epi32(s, sc));
                        }
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(x.d.as_ptr().add(HALF * h).cast()));
                    for r in 0..R {
                        let dy = _mm256_set1_ps(y[r].get_unchecked(b).d);
                        acc[r] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(sums[r]),
                            _mm256_mul_ps(d, dy),
                            acc[r],
                        );
                    }
                }
            }
        }
        std::array::from_fn(|r| lanes([acc[0][r], acc[1][r]]))
    }
}

/// The instruction sets our kernels come in, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// AVX2 with FMA and F16C (x86-64 since 2013-2015): Q4_K and Q6_K.
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (and AVX2, FMA, F16C): every kernel.
    Avx512,
}

/// Environment variable that lowers the kernels used below what the CPU runs:
/// `avx2`, or `none` for candle's kernels everywhere (to measure one against the
/// other on one machine).
pub const KERNELS_ENV: &str = "TAPER_KERNELS";

/// The highest [`Level`] this CPU runs, as lowered by [`KERNELS_ENV`], or `None`
/// where it runs none (the caller keeps candle's kernels). Checked once.
pub(crate) fn level() -> Option<Level> {
    static LEVEL: std::sync::OnceLock<Option<Level>> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cpu = detected();
        let cap = match std::env::var(KERNELS_ENV).as_deref() {
            Ok("none") => None,
            Ok("avx2") => Some(Level::Avx2),
            Ok("avx512") | Err(_) => Some(Level::Avx512),
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "unknown {KERNELS_ENV} (avx512, avx2, none): ignored"
                );
                Some(Level::Avx512)
            }
        };
        let level = cpu.min(cap);
        tracing::debug!(?level, "quantized kernels");
        level
    })
}

/// The highest [`Level`] the CPU has.
fn detected() -> Option<Level> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma") && has!("f16c")) {
            return None;
        }
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
            return Some(Level::Avx512);
        }
        Some(Level::Avx2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Whether our AVX-512 kernels run (this CPU has them and [`KERNELS_ENV`] does not
/// lower them).
fn avx512() -> bool {
    level() == Some(Level::Avx512)
}

/// Output columns (weight rows) per task: a task's weights (2.3 KB per column of
/// 4096) stay in L1/L2 while every activation row passes over them.
const COLS: usize = 32;
/// Activation rows per tile: their Q8_K blocks (4.6 KB per row of 4096) stay in L2
/// while a task's columns pass over them.
const ROWS: usize = 64;

/// `lhs [m, k] @ rhs^T` for quantized weights `rhs` of `n` rows of `k` (in groups
/// of `W::WIDTH` rows, the last padded), giving `[m, n]`, or `None` where this CPU
/// has no kernel of ours (the caller falls back to candle's). `parallel`: spread
/// the columns over rayon's pool.
pub(crate) fn matmul<W: QuantDot>(
    lhs: &[f32],
    dims: (usize, usize, usize),
    rhs: &[W],
    parallel: bool,
) -> Option<Vec<f32>> {
    matmul_at(level()?, lhs, dims, rhs, parallel)
}

/// [`matmul`] with the kernels of `level` (at most [`level`]).
fn matmul_at<W: QuantDot>(
    level: Level,
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs: &[W],
    parallel: bool,
) -> Option<Vec<f32>> {
    let groups = n.div_ceil(W::WIDTH);
    if !runs_at::<W>(level)
        || k % W::BLOCK != 0
        || lhs.len() != m * k
        || rhs.len() * W::BLOCK != groups * k
    {
        return None;
    }
    let blocks = k / W::BLOCK;
    Some(product::<W>(
        level,
        lhs,
        (m, k, n),
        parallel,
        |first, end, run| run(&rhs[first * blocks..end * blocks]),
    ))
}

/// [`matmul`] on blocks as stored (`n` rows of `k`) through an interleaved kernel
/// `G`: each task first interleaves its columns into a buffer of its thread (one
/// pass over them, shared by the `m` rows), so a prefill gets the interleaved
/// kernel's speed and no copy of the matrix is kept.
pub(crate) fn matmul_interleaving<G: Interleaved>(
    lhs: &[f32],
    dims: (usize, usize, usize),
    rhs: &[G::Source],
    parallel: bool,
) -> Option<Vec<f32>> {
    matmul_interleaving_at::<G>(level()?, lhs, dims, rhs, parallel)
}

/// [`matmul_interleaving`] with the kernels of `level` (at most [`level`]).
fn matmul_interleaving_at<G: Interleaved>(
    level: Level,
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs: &[G::Source],
    parallel: bool,
) -> Option<Vec<f32>> {
    let units = k / G::BLOCK;
    if !runs_at::<G>(level)
        || k % G::BLOCK != 0
        || lhs.len() != m * k
        || rhs.len() != n * units * G::UNIT
    {
        return None;
    }
    thread_local! {
        /// Bytes for one task's interleaved groups.
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    Some(product::<G>(
        level,
        lhs,
        (m, k, n),
        parallel,
        |first, end, run| {
            let cols = LANES * first..n.min(LANES * end);
            let source = &rhs[cols.start * units * G::UNIT..cols.end * units * G::UNIT];
            let bytes = (end - first) * units * std::mem::size_of::<G>();
            BUFFER.with_borrow_mut(|buffer| {
                buffer.resize(bytes + std::mem::align_of::<G>(), 0);
                // SAFETY: the groups are plain old data (integers and f16 bits), so any
                // bytes are a valid value; `align_to_mut` only yields aligned values.
                let (_, groups, _) = unsafe { buffer.align_to_mut::<G>() };
                let groups = &mut groups[..(end - first) * units];
                for (g, out) in groups.chunks_exact_mut(units).enumerate() {
                    let source = &source[LANES * g * units * G::UNIT..];
                    interleave_group(source, cols.len() - LANES * g, out);
                }
                run(groups);
            });
        },
    ))
}

/// The tiled product behind [`matmul`] and [`matmul_interleaving`], by the kernels
/// of `level` (the callers checked that they run): tasks of [`COLS`] columns, each
/// given its groups `first..end` (of `k / W::BLOCK` blocks each) by
/// `groups(first, end, run)`, which calls `run` on them.
fn product<W: QuantDot>(
    level: Level,
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    parallel: bool,
    groups: impl Fn(usize, usize, &mut dyn FnMut(&[W])) + Sync,
) -> Vec<f32> {
    let count = n.div_ceil(W::WIDTH);
    let blocks = k / W::BLOCK;
    let y: Vec<W::Act> = if parallel && m > 1 {
        lhs.par_chunks_exact(W::BLOCK).map(W::quantize).collect()
    } else {
        lhs.chunks_exact(W::BLOCK).map(W::quantize).collect()
    };
    let mut out = vec![0f32; m * n];
    let dst = Output(out.as_mut_ptr());
    let per_task = (COLS / W::WIDTH).max(1);
    let task = |t: usize| {
        let first = t * per_task;
        // Writes the `[m, n]` entries of row r for this task's group g.
        let put = |r: usize, g: usize, v: &W::Out| {
            for (c, &v) in (g * W::WIDTH..n).zip(v.as_ref()) {
                // SAFETY: r < m and c < n, so the entry is inside `out`, which
                // outlives the tasks; task t alone writes the columns of groups
                // t * per_task .. (t + 1) * per_task, so no two tasks write one entry.
                unsafe { dst.write(r * n + c, v) }
            }
        };
        groups(first, count.min(first + per_task), &mut |mine: &[W]| {
            for r0 in (0..m).step_by(ROWS) {
                let rows = r0..(r0 + ROWS).min(m);
                let row = |r: usize| &y[r * blocks..(r + 1) * blocks];
                for (g, group) in (first..).zip(mine.chunks_exact(blocks)) {
                    let mut r = rows.start;
                    while r + 8 <= rows.end {
                        let eight: [_; 8] = std::array::from_fn(|i| row(r + i));
                        // SAFETY: the callers checked that `W` runs at `level`
                        // on this CPU; each row has `blocks` blocks, as `group`.
                        let v = unsafe { W::dot(level, group, eight) };
                        (0..8).for_each(|i| put(r + i, g, &v[i]));
                        r += 8;
                    }
                    while r + 4 <= rows.end {
                        let four: [_; 4] = std::array::from_fn(|i| row(r + i));
                        // SAFETY: as above.
                        let v = unsafe { W::dot(level, group, four) };
                        (0..4).for_each(|i| put(r + i, g, &v[i]));
                        r += 4;
                    }
                    for r in r..rows.end {
                        // SAFETY: as above.
                        let [v] = unsafe { W::dot(level, group, [row(r)]) };
                        put(r, g, &v);
                    }
                }
            }
        });
    };
    let tasks = count.div_ceil(per_task);
    if parallel {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    out
}

/// The output of [`matmul`], shared by its tasks, which write disjoint columns.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: the tasks write disjoint entries (see `put` in `matmul`).
unsafe impl Send for Output {}
// SAFETY: as above.
unsafe impl Sync for Output {}

impl Output {
    /// # Safety
    /// `i` is inside the output, and no other task writes entry `i`.
    unsafe fn write(&self, i: usize, v: f32) {
        // SAFETY: the caller's promise.
        unsafe { self.0.add(i).write(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ4K, BlockQ6K, BlockQ8_0, GgmlType};
    use half::f16;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// Random Q4_K blocks: any bytes are a valid block, given finite scales.
    fn random_q4k(rng: &mut Rng, n: usize) -> Vec<Q4K> {
        (0..n)
            .map(|_| {
                let mut b = Q4K {
                    d: f16::from_f32(rng.f32() * 0.01).to_bits(),
                    dmin: f16::from_f32(rng.f32() * 0.01).to_bits(),
                    scales: [0; 12],
                    qs: [0; QK_K / 2],
                };
                b.scales.iter_mut().for_each(|v| *v = rng.next() as u8);
                b.qs.iter_mut().for_each(|v| *v = rng.next() as u8);
                b
            })
            .collect()
    }

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    /// Every entry of `got` (`[m, n]`) against `want(column, row's activations)`,
    /// the plain dot product.
    fn check_product<A>(
        lhs: &[f32],
        (m, k, n): (usize, usize, usize),
        (block, quantize): (usize, fn(&[f32]) -> A),
        got: &[f32],
        want: impl Fn(usize, &[A]) -> f32,
    ) {
        let blocks = k / block;
        for r in 0..m {
            let y: Vec<A> = lhs[r * k..(r + 1) * k]
                .chunks_exact(block)
                .map(quantize)
                .collect();
            for c in 0..n {
                let want = want(c, &y);
                let v = got[r * n + c];
                // Blocks' terms (tens each) cancel to a sum near zero, so the float
                // rounding grows with their count; one wrong 16-weight group moves
                // the sum by about one.
                assert!(
                    close(v, want, want.abs().max(blocks as f32 / 4.0)),
                    "({m},{k},{n}) [{r},{c}]: {v} vs {want}"
                );
            }
        }
    }

    /// The plain `reference` on stored blocks `S` against candle's `vec_dot` for the
    /// same layout `C`, on random blocks of each count.
    fn reference_matches_candle<S, A, C: GgmlType>(
        rng: &mut Rng,
        random: fn(&mut Rng, usize) -> Vec<S>,
        (block, quantize): (usize, fn(&[f32]) -> A),
        reference: fn(&[S], &[A]) -> f32,
        block_counts: &[usize],
    ) {
        assert_eq!(std::mem::size_of::<S>(), std::mem::size_of::<C>());
        for &blocks in block_counts {
            let k = blocks * block;
            let x = random(rng, blocks);
            let a: Vec<f32> = (0..k).map(|_| rng.f32() * 4.0).collect();
            let ours: Vec<A> = a.chunks_exact(block).map(quantize).collect();
            let mut theirs = vec![C::VecDotType::zeros(); k / C::VecDotType::BLCK_SIZE];
            C::VecDotType::from_float(&a, &mut theirs);
            // SAFETY: both are ggml's layout of the block, repr(C) with the same
            // fields (sizes checked above); any bytes are a valid block, and
            // `align_to` checks the alignment.
            let (head, xc, tail) = unsafe { x.align_to::<C>() };
            assert!(head.is_empty() && tail.is_empty());
            let want = C::vec_dot(k, xc, &theirs);
            let plain = reference(&x, &ours);
            assert!(
                close(plain, want, want.abs() + 1.0),
                "k {k}: reference {plain}, candle {want}"
            );
        }
    }

    /// `w` (`n` columns of `k` inputs) interleaved into groups, over stale bytes to
    /// show that every byte is written.
    fn interleaved<G: Interleaved>(w: &[G::Source], n: usize, k: usize) -> Vec<G> {
        // SAFETY: the groups are plain old data, any bytes valid (0xabab is a
        // finite f16), and `transmute_copy` reads the first bytes of the array,
        // which is larger than any group.
        let stale: G = unsafe { std::mem::transmute_copy(&[0xabu8; 4096]) };
        assert!(std::mem::size_of::<G>() <= 4096);
        let mut out = vec![stale; group_count::<G>(n, k)];
        interleave(w, n, &mut out);
        out
    }

    /// An interleaved kernel against the plain `reference` (activations quantized
    /// by `quantize`, `block` at a time) on the blocks it was interleaved from:
    /// one, several and a partial group of 16 columns, one row and the 8-, 4- and
    /// 1-row paths, serial and parallel.
    fn check_interleaved<G: Interleaved, A>(
        rng: &mut Rng,
        random: fn(&mut Rng, usize) -> Vec<G::Source>,
        (block, quantize): (usize, fn(&[f32]) -> A),
        reference: fn(&[G::Source], &[A]) -> f32,
    ) {
        for (m, k, n) in [
            (1, 256, 1),
            (1, 512, 33),
            (3, 768, 65),
            (70, 256, 40),
            (2, 4096, 97),
            (13, 1024, 16),
        ] {
            let blocks = k / block;
            let w = random(rng, n * blocks);
            let groups = interleaved::<G>(&w, n, k);
            let a: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
            for (level, parallel) in levels().into_iter().flat_map(|l| [(l, false), (l, true)]) {
                let Some(got) = matmul_at(level, &a, (m, k, n), &groups, parallel) else {
                    assert!(!runs_at::<G>(level), "the {level:?} kernel must run");
                    continue;
                };
                assert_eq!(got.len(), m * n);
                check_product(&a, (m, k, n), (block, quantize), &got, |c, y| {
                    reference(&w[c * blocks..(c + 1) * blocks], y)
                });
                // The same, interleaving the stored blocks task by task.
                let got = matmul_interleaving_at::<G>(level, &a, (m, k, n), &w, parallel)
                    .expect("the CPU has the kernel (checked above)");
                check_product(&a, (m, k, n), (block, quantize), &got, |c, y| {
                    reference(&w[c * blocks..(c + 1) * blocks], y)
                });
            }
        }
        let w = random(rng, G::UNIT);
        let groups = interleaved::<G>(&w, 1, G::BLOCK);
        for level in levels() {
            assert!(matmul_at(level, &[0.0; 100], (1, 100, 1), &groups, false).is_none());
            let odd = matmul_interleaving_at::<G>(level, &[0.0; 100], (1, 100, 1), &w, false);
            assert!(odd.is_none());
        }
    }

    /// Every [`Level`] this CPU runs, whatever [`KERNELS_ENV`] says.
    fn levels() -> Vec<Level> {
        [Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|&l| detected() >= Some(l))
            .collect()
    }

    #[test]
    fn only_the_k_quants_have_avx2_kernels() {
        assert!(runs_at::<Q4KX16>(Level::Avx2) && runs_at::<Q6KX16>(Level::Avx2));
        assert!(!runs_at::<Q8_0>(Level::Avx2) && !runs_at::<Q8_0X16>(Level::Avx2));
        assert!(runs_at::<Q8_0>(Level::Avx512) && runs_at::<Q8_0X16>(Level::Avx512));
    }

    /// A K-quant's plain reference against candle's `vec_dot` (layout `C`), then its
    /// interleaved kernel `G` against the reference.
    fn check_k_quant<G: Interleaved, C: GgmlType>(
        seed: u64,
        random: fn(&mut Rng, usize) -> Vec<G::Source>,
        reference: fn(&[G::Source], &[Q8K]) -> f32,
    ) {
        let mut rng = Rng(seed);
        let quantize = (QK_K, Q8K::quantize as fn(&[f32]) -> Q8K);
        reference_matches_candle::<_, _, C>(
            &mut rng,
            random,
            quantize,
            reference,
            &[1, 2, 3, 16, 17],
        );
        check_interleaved::<G, _>(&mut rng, random, quantize, reference);
    }

    #[test]
    fn q4k_products_match_candle_and_the_reference() {
        check_k_quant::<Q4KX16, BlockQ4K>(0x9e37_79b9_7f4a_7c15, random_q4k, dot_q4k_portable);
    }

    #[test]
    fn simd_quantization_gives_the_plain_bits() {
        let mut rng = Rng(13);
        for case in 0..300 {
            let mut x: Vec<f32> = (0..QK_K).map(|_| rng.f32() * 10.0).collect();
            match case % 5 {
                // Ties: with a largest value of -127 the scale is 1, so halves stay
                // halves.
                0 => {
                    x.iter_mut().for_each(|v| *v = (*v * 10.0).round() / 2.0);
                    x[7] = -127.0;
                }
                // The largest magnitude twice, with both signs: the first wins.
                1 => {
                    x[3] = 20.0;
                    x[200] = -20.0;
                }
                2 => x.iter_mut().for_each(|v| *v = 0.0),
                _ => {}
            }
            let plain = Q8K::quantize_plain(&x);
            let ours = Q8K::quantize(&x);
            assert_eq!(ours.d.to_bits(), plain.d.to_bits(), "case {case}");
            assert_eq!(ours.qs, plain.qs, "case {case}");
            assert_eq!(ours.bsums, plain.bsums, "case {case}");
            assert_eq!(ours.sub_sums, plain.sub_sums, "case {case}");
        }
    }

    /// Random Q6_K blocks: any bytes are a valid block, given a finite scale.
    fn random_q6k(rng: &mut Rng, n: usize) -> Vec<Q6K> {
        (0..n)
            .map(|_| {
                let mut b = Q6K {
                    ql: [0; QK_K / 2],
                    qh: [0; QK_K / 4],
                    scales: [0; QK_K / 16],
                    d: f16::from_f32(rng.f32() * 0.01).to_bits(),
                };
                b.ql.iter_mut().for_each(|v| *v = rng.next() as u8);
                b.qh.iter_mut().for_each(|v| *v = rng.next() as u8);
                b.scales.iter_mut().for_each(|v| *v = rng.next() as i8);
                b
            })
            .collect()
    }

    #[test]
    fn q6k_products_match_candle_and_the_reference() {
        check_k_quant::<Q6KX16, BlockQ6K>(5, random_q6k, dot_q6k_portable);
    }

    fn random_q8_0(rng: &mut Rng, n: usize) -> Vec<Q8_0> {
        (0..n)
            .map(|_| {
                let mut b = Q8_0 {
                    d: f16::from_f32(rng.f32() * 0.01).to_bits(),
                    qs: [0; 32],
                };
                b.qs.iter_mut().for_each(|v| *v = rng.next() as i8);
                b
            })
            .collect()
    }

    /// The Q8_0 kernels against the plain reference (itself against candle's
    /// `vec_dot`): on blocks as stored, whole products (serial and parallel) at
    /// sizes with row and column tails, odd block counts included; then
    /// interleaved.
    #[test]
    fn q8_0_products_match_candle_and_the_reference() {
        let mut rng = Rng(11);
        for blocks in [1, 2, 3, 31, 128] {
            reference_matches_candle::<_, _, BlockQ8_0>(
                &mut rng,
                random_q8_0,
                (32, Q8_0Act::quantize),
                dot_q8_0_portable,
                &[blocks],
            );
            let k = 32 * blocks;
            for (m, n) in [(1, 1), (2, 33), (67, 5)] {
                let w = random_q8_0(&mut rng, n * blocks);
                let lhs: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
                // Q8_0 as stored has an AVX-512 kernel only: never called elsewhere.
                let level = Level::Avx512;
                for parallel in [false, true]
                    .into_iter()
                    .filter(|_| levels().contains(&level))
                {
                    let got = matmul_at(level, &lhs, (m, k, n), &w, parallel)
                        .expect("the CPU has the kernel (checked above)");
                    check_product(&lhs, (m, k, n), (32, Q8_0Act::quantize), &got, |c, y| {
                        dot_q8_0_portable(&w[c * blocks..(c + 1) * blocks], y)
                    });
                }
            }
        }
        check_interleaved::<Q8_0X16, _>(
            &mut rng,
            random_q8_0,
            (32, Q8_0Act::quantize),
            dot_q8_0_portable,
        );
        // The gathering interleave writes the plain one's bytes, for every count of
        // columns in a group.
        let w = random_q8_0(&mut rng, 16 * 6);
        for n in 1..=16 {
            let mut plain = interleaved::<Q8_0X16>(&w, 16, 6 * 32);
            let mut fast = plain.clone();
            for (b, (p, f)) in plain.iter_mut().zip(&mut fast).enumerate() {
                p.interleave_plain(&w[2 * b..], 6, n);
                f.interleave(&w[2 * b..], 6, n);
                assert_eq!((p.qs, p.d), (f.qs, f.d), "{n} columns");
            }
        }
    }
}
