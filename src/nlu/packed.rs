//! Building blocks of the 4-bit encoder's forward pass over *packed* tokens:
//! the texts of a batch are concatenated without padding (as the reference
//! engine does) and attention stays within each text's own span. Plain Rust
//! on slices: for the dozen tokens of a chat message, candle's per-operation
//! dispatch and thread hand-offs cost more than these loops themselves.

use multiversion::multiversion;
use rayon::prelude::*;

/// Rows of this many values or more are processed in parallel.
const PARALLEL_MIN: usize = 1 << 15;

/// `e^x` without a libm call, so that loops over it vectorise: the argument
/// is split as `n · ln 2 + r` (Cody–Waite, |r| ≤ ln 2 / 2) and `e^r` taken by
/// its Taylor series to r⁶ (relative error < 2e-7, below f32 rounding of the
/// inputs). Arguments are clamped to [-87, 88], the normal f32 range.
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5·2^23 trick (no libm `round` call).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from the bits of n + 127 (in 1..=254), again without a cast: added
    // to 2^23 it sits in the low mantissa bits, and the shift drops the rest.
    f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23) * p
}

/// `Σ a·b` in eight independent partial sums, so that the compiler
/// vectorises it (a single running float sum must be added in order).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a` in eight partial sums (see `dot`).
#[inline]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `x[r] = layer_norm(x[r] + add[r])` for every row of width `h`.
pub fn add_layer_norm(
    x: &mut [f32],
    add: Option<&[f32]>,
    h: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
) {
    let row = |(r, xs): (usize, &mut [f32])| {
        layer_norm_row(xs, add.map(|a| &a[r * h..(r + 1) * h]), w, b, eps)
    };
    if x.len() >= PARALLEL_MIN {
        x.par_chunks_mut(h).enumerate().for_each(row);
    } else {
        x.chunks_mut(h).enumerate().for_each(row);
    }
}

/// One row of `add_layer_norm`, compiled for AVX2 as well.
#[multiversion(targets("x86_64+avx2+fma"))]
fn layer_norm_row(xs: &mut [f32], add: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    if let Some(add) = add {
        xs.iter_mut().zip(add).for_each(|(x, a)| *x += a);
    }
    let h = xs.len() as f32;
    let mean = sum(xs) / h;
    xs.iter_mut().for_each(|v| *v -= mean);
    let var = dot(xs, xs) / h;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, w), b) in xs.iter_mut().zip(w).zip(b) {
        *x = *x * inv * w + b;
    }
}

/// Multi-head self-attention: `qkv` rows are `[q | k | v]` (3·h values);
/// `spans[i]..spans[i+1]` are text i's tokens. Returns the context, `t × h`.
pub fn attention(qkv: &[f32], spans: &[usize], h: usize, heads: usize) -> Vec<f32> {
    let t = qkv.len() / (3 * h);
    let mut ctx = vec![0f32; t * h];
    // Span of every token.
    let mut span_of = vec![(0usize, 0usize); t];
    for w in spans.windows(2) {
        span_of[w[0]..w[1]]
            .iter_mut()
            .for_each(|s| *s = (w[0], w[1]));
    }
    let token = |(i, out): (usize, &mut [f32])| {
        let (s0, s1) = span_of[i];
        attention_token(qkv, i, s0..s1, h, heads, out)
    };
    if t * t * h >= PARALLEL_MIN * 8 {
        ctx.par_chunks_mut(h).enumerate().for_each(token);
    } else {
        ctx.chunks_mut(h).enumerate().for_each(token);
    }
    ctx
}

/// Token `i`'s context over the keys `span`, every head (see `attention`);
/// compiled for AVX2 as well.
#[multiversion(targets("x86_64+avx2+fma"))]
fn attention_token(
    qkv: &[f32],
    i: usize,
    span: std::ops::Range<usize>,
    h: usize,
    heads: usize,
    out: &mut [f32],
) {
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut p = vec![0f32; span.len()];
    for hh in 0..heads {
        let q = &qkv[i * 3 * h + hh * hd..i * 3 * h + (hh + 1) * hd];
        let mut mx = f32::NEG_INFINITY;
        for (j, pj) in span.clone().zip(p.iter_mut()) {
            let k = &qkv[j * 3 * h + h + hh * hd..j * 3 * h + h + (hh + 1) * hd];
            *pj = dot(q, k) * scale;
            mx = mx.max(*pj);
        }
        let mut total = 0f32;
        p.iter_mut().for_each(|v| {
            *v = exp(*v - mx);
            total += *v;
        });
        let o = &mut out[hh * hd..(hh + 1) * hd];
        for (j, pj) in span.clone().zip(&p) {
            let v = &qkv[j * 3 * h + 2 * h + hh * hd..j * 3 * h + 2 * h + (hh + 1) * hd];
            let wgt = pj / total;
            o.iter_mut().zip(v).for_each(|(o, v)| *o += wgt * v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_f32_range() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.013;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn attention_stays_within_each_span() {
        // Two texts of 2 and 1 tokens, one head of width 2.
        let (h, heads) = (2, 1);
        let row = |q: [f32; 2], k: [f32; 2], v: [f32; 2]| [q, k, v].concat();
        let qkv = [
            row([1.0, 0.0], [1.0, 0.0], [1.0, 2.0]),
            row([0.0, 1.0], [0.0, 1.0], [3.0, 4.0]),
            row([1.0, 1.0], [5.0, 5.0], [7.0, 9.0]),
        ]
        .concat();
        let ctx = attention(&qkv, &[0, 2, 3], h, heads);
        // The lone token of the second text attends only to itself.
        assert_eq!(&ctx[4..6], &[7.0, 9.0]);
        // Token 0 prefers key 0 (dot 1 vs 0): its context leans to v0.
        assert!(ctx[0] < 2.0 && ctx[0] > 1.0, "{ctx:?}");
        let w0 = 1.0 / (1.0 + (-1.0f32 / 2f32.sqrt()).exp());
        assert!((ctx[0] - (w0 * 1.0 + (1.0 - w0) * 3.0)).abs() < 1e-5);
    }

    #[test]
    fn layer_norm_normalises_each_row() {
        let mut x = vec![1.0, 2.0, 3.0, 10.0, 10.0, 10.0];
        add_layer_norm(
            &mut x,
            Some(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]),
            3,
            &[1.0; 3],
            &[0.5; 3],
            1e-12,
        );
        let r0: f32 = x[..3].iter().sum();
        assert!((r0 / 3.0 - 0.5).abs() < 1e-5);
        assert!((x[3] - x[0]).abs() < 1e-4, "{x:?}");
    }
}
