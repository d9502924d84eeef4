//! Attention of a few new queries (decoding) over the KV cache, reading each cached
//! key and value once per step, straight from the cache's storage.
//!
//! Long chunks (prefill) go through candle's matrix products instead, where the
//! cost of converting the cache once is small next to the products.

use candle_core::{CpuStorage, Storage, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Queries per chunk up to which [`attend`] is used (a decode step, or a short run
/// of tokens the grammar forces).
pub(crate) const MAX_QUERIES: usize = 16;

/// A layer's cache, `[kv_heads, capacity, head_dim]`, as stored.
enum Cache<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
}

impl<'a> Cache<'a> {
    fn of(storage: &'a Storage, len: usize) -> Result<Self> {
        let cache = match storage {
            Storage::Cpu(CpuStorage::F16(v)) => Self::F16(v),
            Storage::Cpu(CpuStorage::F32(v)) => Self::F32(v),
            _ => {
                return Err(Error::Config(
                    "the KV cache is not f16 or f32 on the CPU".into(),
                ));
            }
        };
        let stored = match &cache {
            Self::F16(v) => v.len(),
            Self::F32(v) => v.len(),
        };
        if stored != len {
            return Err(Error::Config(
                "the KV cache does not match its shape".into(),
            ));
        }
        Ok(cache)
    }

    /// Row `i` (of `width` values) in f32, converted into `buf` where needed.
    fn row<'b>(&'b self, i: usize, width: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match self {
            Self::F16(v) => {
                v[i * width..(i + 1) * width].convert_to_f32_slice(buf);
                buf
            }
            Self::F32(v) => &v[i * width..(i + 1) * width],
        }
    }
}

/// `<a, b>` with 16 independent partial sums, so that it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Causal attention of `q` (`[heads, n, head_dim]`, f32, positions `pos..pos + n`)
/// over positions `0..pos + n` of the caches `k` and `v` (`[kv_heads, capacity,
/// head_dim]`, f16 or f32), the query heads sharing a key/value head in groups as
/// grouped-query attention does. Gives `[n, heads * head_dim]`. The key/value
/// heads run in parallel.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, pos: usize) -> Result<Tensor> {
    let (heads, n, hd) = q.dims3()?;
    let (kv_heads, capacity, hd_cache) = k.dims3()?;
    if hd != hd_cache || v.dims3()? != (kv_heads, capacity, hd) || pos + n > capacity {
        return Err(Error::Config(
            "attention shapes do not match the cache".into(),
        ));
    }
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::Config(format!(
            "{heads} query heads cannot share {kv_heads} key/value heads"
        )));
    }
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let k = k.contiguous()?;
    let v = v.contiguous()?;
    let (k_store, k_layout) = k.storage_and_layout();
    let (v_store, v_layout) = v.storage_and_layout();
    if k_layout.start_offset() != 0 || v_layout.start_offset() != 0 {
        return Err(Error::Config(
            "the KV cache is a view, not a whole tensor".into(),
        ));
    }
    let size = kv_heads * capacity * hd;
    let (kc, vc) = (Cache::of(&k_store, size)?, Cache::of(&v_store, size)?);
    let groups = heads / kv_heads;
    let len = pos + n;
    let scale = 1.0 / (hd as f32).sqrt();
    // Per key/value head: its `groups * n` query rows' outputs, `[groups, n, hd]`.
    let per_head: Vec<Vec<f32>> = (0..kv_heads)
        .into_par_iter()
        .map(|h| {
            let rows = groups * n;
            let queries = &q[h * rows * hd..(h + 1) * rows * hd];
            // Query row r = (g, i) sees positions 0..=pos + i.
            let seen = |r: usize| pos + r % n + 1;
            let mut scores = vec![0f32; rows * len];
            let mut buf = vec![0f32; hd];
            for j in 0..len {
                let key = kc.row(h * capacity + j, hd, &mut buf);
                for (r, q) in queries.chunks_exact(hd).enumerate() {
                    if j < seen(r) {
                        scores[r * len + j] = dot(q, key) * scale;
                    }
                }
            }
            for (r, s) in scores.chunks_exact_mut(len).enumerate() {
                let s = &mut s[..seen(r)];
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for x in s.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                s.iter_mut().for_each(|x| *x /= sum);
            }
            let mut out = vec![0f32; rows * hd];
            for j in 0..len {
                let value = vc.row(h * capacity + j, hd, &mut buf);
                for (r, o) in out.chunks_exact_mut(hd).enumerate() {
                    if j < seen(r) {
                        let p = scores[r * len + j];
                        o.iter_mut().zip(value).for_each(|(o, v)| *o += p * v);
                    }
                }
            }
            out
        })
        .collect();
    // [kv_heads, groups, n, hd] -> [n, heads * hd]
    let mut out = vec![0f32; n * heads * hd];
    for (h, rows) in per_head.iter().enumerate() {
        for (r, row) in rows.chunks_exact(hd).enumerate() {
            let (head, i) = (h * groups + r / n, r % n);
            out[(i * heads + head) * hd..][..hd].copy_from_slice(row);
        }
    }
    Ok(Tensor::from_vec(
        out,
        (n, heads * hd),
        &candle_core::Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Plain causal grouped-query attention, one query at a time, in f64.
    fn reference(
        q: &[f32],
        (heads, n, hd): (usize, usize, usize),
        k: &[f32],
        v: &[f32],
        (kv_heads, capacity): (usize, usize),
        pos: usize,
    ) -> Vec<f32> {
        let groups = heads / kv_heads;
        let mut out = vec![0f32; n * heads * hd];
        for h in 0..heads {
            let kvh = h / groups;
            for i in 0..n {
                let qr = &q[(h * n + i) * hd..][..hd];
                let seen = pos + i + 1;
                let s: Vec<f64> = (0..seen)
                    .map(|j| {
                        let kr = &k[(kvh * capacity + j) * hd..][..hd];
                        let d: f64 = qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum();
                        d / (hd as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..seen)
                        .map(|j| e[j] / sum * v[(kvh * capacity + j) * hd + d] as f64)
                        .sum();
                    out[(i * heads + h) * hd + d] = o as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_plain_attention_at_odd_sizes() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (heads, kv_heads, hd, n, pos, capacity) in [
            (1, 1, 16, 1, 0, 1),
            (4, 2, 20, 1, 9, 12),
            (6, 2, 35, 5, 3, 9),
            (8, 8, 64, 16, 30, 50),
        ] {
            let q: Vec<f32> = (0..heads * n * hd).map(|_| next() * 2.0).collect();
            let size = kv_heads * capacity * hd;
            let k: Vec<f32> = (0..size).map(|_| next() * 2.0).collect();
            let v: Vec<f32> = (0..size).map(|_| next()).collect();
            let want = reference(&q, (heads, n, hd), &k, &v, (kv_heads, capacity), pos);
            let qt = Tensor::from_vec(q, (heads, n, hd), &Device::Cpu).unwrap();
            for dtype in [DType::F32, DType::F16] {
                let shape = (kv_heads, capacity, hd);
                let kt = Tensor::from_vec(k.clone(), shape, &Device::Cpu).unwrap();
                let vt = Tensor::from_vec(v.clone(), shape, &Device::Cpu).unwrap();
                let (kt, vt) = (kt.to_dtype(dtype).unwrap(), vt.to_dtype(dtype).unwrap());
                let got = attend(&qt, &kt, &vt, pos).unwrap();
                assert_eq!(got.dims2().unwrap(), (n, heads * hd));
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                // f16 keeps 11 bits of each key and value.
                let tol = if dtype == DType::F16 { 1e-2 } else { 1e-5 };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol,
                        "{dtype:?} heads {heads}/{kv_heads} hd {hd} n {n} pos {pos} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let q = Tensor::zeros((4, 1, 8), DType::F32, &Device::Cpu).unwrap();
        let k = Tensor::zeros((3, 4, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(attend(&q, &k, &k, 0).is_err(), "4 heads over 3 kv heads");
        let k = Tensor::zeros((2, 4, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(attend(&q, &k, &k, 4).is_err(), "past the capacity");
        assert!(attend(&q, &k, &k, 3).is_ok());
    }
}
