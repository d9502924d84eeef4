//! Quantized matrix products with our own SIMD kernels (AVX-512 VNNI, detected at
//! run time): Q4_K and Q8_0 weights times activations quantized to 8 bits.
//!
//! The block layouts are ggml's (`ggml-common.h`: `block_q4_K`, `block_q8_K`,
//! `block_q8_0`), as GGUF files store them, and so is the arithmetic
//! (`ggml_vec_dot_q4_K_q8_K`, `ggml_vec_dot_q8_0_q8_0`). A Q4_K weight is
//! `d * scale[j] * q - dmin * min[j]` for its sub-block `j` of 32, so a block's dot
//! product with Q8_K activations `y` (scale `dy`) is
//! `dy * (d * sum_j scale[j] * <q_j, y_j> - dmin * sum_j min[j] * sum(y_j))`, the
//! sums of `y` coming from the Q8_K block's `bsums`. A Q8_0 block is 32 weights
//! `d * q`.
//!
//! Where the CPU lacks these features the caller keeps candle's kernels (AVX2 or
//! portable). Each kernel is tested against a plain reference and against candle's
//! own `vec_dot` on random blocks.

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

/// Activations of one super-block quantized to 8 bits (ggml's `block_q8_K`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Q8K {
    d: f32,
    qs: [i8; QK_K],
    bsums: [i16; QK_K / 16],
}

impl Q8K {
    const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };

    /// As candle's `BlockQ8K::from_float` (the path this kernel replaces), so both
    /// paths give the same numbers: the value of largest magnitude maps to -127.
    fn quantize(x: &[f32]) -> Self {
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
        out
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
    /// Weights (and activations) per block.
    const BLOCK: usize;
    /// Quantizes `BLOCK` activations.
    fn quantize(x: &[f32]) -> Self::Act;
    /// `<x, y>` over whole rows of blocks.
    ///
    /// # Safety
    /// The CPU must have the features [`avx512`] checks.
    unsafe fn dot(x: &[Self], y: &[Self::Act]) -> f32;
}

impl QuantDot for Q4K {
    type Act = Q8K;
    const BLOCK: usize = QK_K;
    fn quantize(x: &[f32]) -> Q8K {
        Q8K::quantize(x)
    }
    unsafe fn dot(x: &[Self], y: &[Q8K]) -> f32 {
        // SAFETY: the caller's promise.
        unsafe { dot_simd_q4k(x, y) }
    }
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
/// rounding kept, as candle's `BlockQ8_0` stores it).
#[derive(Clone, Copy)]
pub(crate) struct Q8_0Act {
    d: f32,
    qs: [i8; 32],
}

impl QuantDot for Q8_0 {
    type Act = Q8_0Act;
    const BLOCK: usize = 32;
    /// As candle's `BlockQ8_0::from_float`: `d = amax / 127`, stored as f16.
    fn quantize(x: &[f32]) -> Q8_0Act {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; 32];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
        Q8_0Act {
            d: half::f16::from_f32(d).to_f32(),
            qs,
        }
    }
    unsafe fn dot(x: &[Self], y: &[Q8_0Act]) -> f32 {
        // SAFETY: the caller's promise.
        unsafe { dot_simd_q8_0(x, y) }
    }
}

/// Plain Rust: the reference the Q8_0 kernel is tested against.
#[cfg(test)]
fn dot_q8_0_portable(x: &[Q8_0], y: &[Q8_0Act]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(x, y)| {
            let s: i32 =
                x.qs.iter()
                    .zip(&y.qs)
                    .map(|(&a, &b)| a as i32 * b as i32)
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
    use super::{Q4K, Q8_0, Q8_0Act, Q8K, scales_mins};
    use std::arch::x86_64::*;

    /// One 64-weight chunk at a time: its 32 bytes of nibbles widen to 64 bytes
    /// (low nibbles, the chunk's first sub-block, then high nibbles, its second),
    /// which line up with 64 consecutive activations, so one `vpdpbusd` (unsigned
    /// weights times signed activations) gives 16 partial sums, eight per sub-block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4k(x: &[Q4K], y: &[Q8K]) -> f32 {
        let nibble = _mm256_set1_epi8(0x0f);
        // Lane i of chunk c takes the scale of sub-block 2c (lanes 0-7) or 2c+1.
        let pick = [
            _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
            _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
            _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4),
            _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6),
        ];
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm512_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        // SAFETY: every load reads inside a block (32 bytes at 32c of the 128 nibble
        // bytes, 64 at 64c of the 256 activations, the 32 bytes of bsums, 8 bytes of
        // a local array); the features are the caller's promise.
        for (x, y) in x.iter().zip(y) {
            unsafe {
                let (sc, mn) = scales_mins(&x.scales);
                let sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    sc.as_ptr().cast(),
                )));
                let mut sums = _mm512_setzero_si512();
                for (c, pick) in pick.iter().enumerate() {
                    let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                    let lo = _mm256_and_si256(q, nibble);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nibble);
                    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                    let a = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c).cast());
                    let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a);
                    sums = _mm512_add_epi32(
                        sums,
                        _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(*pick, sc)),
                    );
                }
                let dy = y.d;
                let d = _mm512_set1_ps(f16_to_f32(x.d) * dy);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), d, acc);
                // Sub-block sums of y (pairs of bsums) times the mins.
                let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                let ysum = _mm256_madd_epi16(bsums, ones);
                let mins = _mm256_cvtepu8_epi32(_mm_loadl_epi64(mn.as_ptr().cast()));
                let dmin = _mm256_set1_ps(f16_to_f32(x.dmin) * dy);
                acc_min = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(_mm256_mullo_epi32(ysum, mins)),
                    dmin,
                    acc_min,
                );
            }
        }
        // SAFETY: as above.
        _mm512_reduce_add_ps(acc) - unsafe { hsum256(acc_min) }
    }

    /// Two blocks at a time where it can: `vpdpbusd` wants unsigned times signed, so
    /// the weights' signs move onto the activations (`|x| * sign(x) y`), as ggml's
    /// AVX2 kernel does with `maddubs`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_0(x: &[Q8_0], y: &[Q8_0Act]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        // SAFETY: each load reads the 32 quants of one block; the features are the
        // caller's promise.
        for (x, y) in x.iter().zip(y) {
            unsafe {
                let a = _mm256_loadu_si256(x.qs.as_ptr().cast());
                let b = _mm256_loadu_si256(y.qs.as_ptr().cast());
                let p = _mm256_dpbusd_epi32(
                    _mm256_setzero_si256(),
                    _mm256_abs_epi8(a),
                    _mm256_sign_epi8(b, a),
                );
                let d = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc);
            }
        }
        // SAFETY: as above.
        unsafe { hsum256(acc) }
    }

    /// One f16 (as bits) to f32 with F16C.
    #[target_feature(enable = "f16c")]
    fn f16_to_f32(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[cfg(target_arch = "x86_64")]
use avx512::{dot_q4k as dot_simd_q4k, dot_q8_0 as dot_simd_q8_0};

/// Off x86_64 `avx512()` is false, so this is never called.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn dot_simd_q4k(_: &[Q4K], _: &[Q8K]) -> f32 {
    unreachable!("avx512() is false off x86_64")
}

/// Off x86_64 `avx512()` is false, so this is never called.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn dot_simd_q8_0(_: &[Q8_0], _: &[Q8_0Act]) -> f32 {
    unreachable!("avx512() is false off x86_64")
}

/// Whether this CPU runs our AVX-512 kernel (checked once).
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Output columns (weight rows) per task: a task's weights (2.3 KB per column of
/// 4096) stay in L1/L2 while every activation row passes over them.
const COLS: usize = 32;
/// Activation rows per tile: their Q8_K blocks (4.6 KB per row of 4096) stay in L2
/// while a task's columns pass over them.
const ROWS: usize = 64;

/// `lhs [m, k] @ rhs^T` for quantized weights `rhs` of `n` rows of `k`, giving
/// `[m, n]`, or `None` where this CPU has no kernel of ours (the caller falls back
/// to candle's). `parallel`: spread the columns over rayon's pool.
pub(crate) fn matmul<W: QuantDot>(
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs: &[W],
    parallel: bool,
) -> Option<Vec<f32>> {
    if !avx512() || k % W::BLOCK != 0 || lhs.len() != m * k || rhs.len() * W::BLOCK != n * k {
        return None;
    }
    let blocks = k / W::BLOCK;
    let y: Vec<W::Act> = lhs.chunks_exact(W::BLOCK).map(W::quantize).collect();
    let mut out_t = vec![0f32; n * m];
    let task = |(t, out): (usize, &mut [f32])| {
        let cols = &rhs[t * COLS * blocks..];
        for r0 in (0..m).step_by(ROWS) {
            let rows = r0..(r0 + ROWS).min(m);
            for (out, col) in out.chunks_exact_mut(m).zip(cols.chunks_exact(blocks)) {
                for r in rows.clone() {
                    // SAFETY: `avx512()` checked the CPU's features above.
                    out[r] = unsafe { W::dot(col, &y[r * blocks..(r + 1) * blocks]) };
                }
            }
        }
    };
    if parallel {
        out_t.par_chunks_mut(COLS * m).enumerate().for_each(task);
    } else {
        out_t.chunks_mut(COLS * m).enumerate().for_each(task);
    }
    if m == 1 {
        return Some(out_t);
    }
    let mut out = vec![0f32; m * n];
    for (c, col) in out_t.chunks_exact(m).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            out[r * n + c] = v;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, BlockQ8K, GgmlType};
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

    fn as_candle(x: &[Q4K]) -> &[BlockQ4K] {
        assert_eq!(std::mem::size_of::<BlockQ4K>(), std::mem::size_of::<Q4K>());
        // SAFETY: both are ggml's block_q4_K, repr(C) with the same fields; any bytes
        // are a valid block, and the alignment is checked by `align_to`.
        let (head, blocks, tail) = unsafe { x.align_to::<BlockQ4K>() };
        assert!(head.is_empty() && tail.is_empty());
        blocks
    }

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    /// Every entry of `got` (`[m, n]`) against the plain dot product of its row and
    /// column.
    fn check_product<W: QuantDot>(
        lhs: &[f32],
        (m, k, n): (usize, usize, usize),
        w: &[W],
        got: &[f32],
        reference: fn(&[W], &[W::Act]) -> f32,
    ) {
        let blocks = k / W::BLOCK;
        for r in 0..m {
            let y: Vec<W::Act> = lhs[r * k..(r + 1) * k]
                .chunks_exact(W::BLOCK)
                .map(W::quantize)
                .collect();
            for c in 0..n {
                let want = reference(&w[c * blocks..(c + 1) * blocks], &y);
                let v = got[r * n + c];
                assert!(
                    close(v, want, want.abs()),
                    "({m},{k},{n}) [{r},{c}]: {v} vs {want}"
                );
            }
        }
    }

    #[test]
    fn dot_products_match_candle_and_the_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for blocks in [1, 2, 3, 16, 17] {
            let k = blocks * QK_K;
            let x = random_q4k(&mut rng, blocks);
            let a: Vec<f32> = (0..k).map(|_| rng.f32() * 4.0).collect();
            let ours: Vec<Q8K> = a.chunks_exact(QK_K).map(Q8K::quantize).collect();
            let mut theirs = vec![BlockQ8K::zeros(); blocks];
            BlockQ8K::from_float(&a, &mut theirs);
            let want = BlockQ4K::vec_dot(k, as_candle(&x), &theirs);
            let reference = dot_q4k_portable(&x, &ours);
            let scale: f32 = want.abs() + 1.0;
            assert!(
                close(reference, want, scale),
                "k {k}: reference {reference}, candle {want}"
            );
            if avx512() {
                // SAFETY: the CPU has the features the kernel needs.
                let simd = unsafe { Q4K::dot(&x, &ours) };
                assert!(
                    close(simd, reference, scale),
                    "k {k}: simd {simd}, reference {reference}"
                );
            }
        }
    }

    #[test]
    fn products_match_the_reference_at_odd_sizes() {
        let mut rng = Rng(7);
        for (m, k, n) in [
            (1, 256, 1),
            (1, 512, 33),
            (3, 768, 65),
            (70, 256, 40),
            (2, 4096, 97),
        ] {
            let blocks = k / QK_K;
            let w = random_q4k(&mut rng, n * blocks);
            let a: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
            for parallel in [false, true] {
                let Some(got) = matmul(&a, (m, k, n), &w, parallel) else {
                    assert!(!avx512(), "the kernel must run where the CPU has AVX-512");
                    continue;
                };
                assert_eq!(got.len(), m * n);
                check_product(&a, (m, k, n), &w, &got, dot_q4k_portable);
            }
        }
        assert!(matmul(&[0.0; 100], (1, 100, 1), &random_q4k(&mut rng, 1), false).is_none());
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

    #[test]
    fn q8_0_products_match_candle_and_the_reference() {
        let mut rng = Rng(11);
        for blocks in [1, 2, 3, 31, 128] {
            let k = blocks * 32;
            let x = random_q8_0(&mut rng, blocks);
            let a: Vec<f32> = (0..k).map(|_| rng.f32() * 3.0).collect();
            let ours: Vec<Q8_0Act> = a.chunks_exact(32).map(Q8_0::quantize).collect();
            let mut theirs = vec![BlockQ8_0::zeros(); blocks];
            BlockQ8_0::from_float(&a, &mut theirs);
            // SAFETY: both are ggml's block_q8_0, repr(C) with the same fields; any
            // bytes are a valid block, and `align_to` checks the alignment.
            let (head, xc, tail) = unsafe { x.align_to::<BlockQ8_0>() };
            assert!(head.is_empty() && tail.is_empty());
            let want = BlockQ8_0::vec_dot(k, xc, &theirs);
            let reference = dot_q8_0_portable(&x, &ours);
            let scale = want.abs() + 1.0;
            assert!(
                close(reference, want, scale),
                "k {k}: reference {reference}, candle {want}"
            );
            for (m, n) in [(1, 1), (2, 9), (67, 5)] {
                let w: Vec<Q8_0> = (0..n).flat_map(|_| random_q8_0(&mut rng, blocks)).collect();
                let lhs: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
                let Some(got) = matmul(&lhs, (m, k, n), &w, true) else {
                    assert!(!avx512(), "the kernel must run where the CPU has AVX-512");
                    continue;
                };
                check_product(&lhs, (m, k, n), &w, &got, dot_q8_0_portable);
            }
        }
    }
}
