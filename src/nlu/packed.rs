//! Building blocks of the 4-bit encoder's forward pass over *packed* tokens:
//! the texts of a batch are concatenated without padding (as the reference
//! engine does) and attention stays within each text's own span. Plain Rust
//! on slices: for the dozen tokens of a chat message, candle's per-operation
//! dispatch and thread hand-offs cost more than these loops themselves.

use rayon::prelude::*;

/// Rows of this many values or more are processed in parallel.
const PARALLEL_MIN: usize = 1 << 15;

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
        if let Some(add) = add {
            xs.iter_mut()
                .zip(&add[r * h..(r + 1) * h])
                .for_each(|(x, a)| *x += a);
        }
        let mean = xs.iter().sum::<f32>() / h as f32;
        let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, w), b) in xs.iter_mut().zip(w).zip(b) {
            *x = (*x - mean) * inv * w + b;
        }
    };
    if x.len() >= PARALLEL_MIN {
        x.par_chunks_mut(h).enumerate().for_each(row);
    } else {
        x.chunks_mut(h).enumerate().for_each(row);
    }
}

/// Multi-head self-attention: `qkv` rows are `[q | k | v]` (3·h values);
/// `spans[i]..spans[i+1]` are text i's tokens. Returns the context, `t × h`.
pub fn attention(qkv: &[f32], spans: &[usize], h: usize, heads: usize) -> Vec<f32> {
    let t = qkv.len() / (3 * h);
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
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
        let mut p = vec![0f32; s1 - s0];
        for hh in 0..heads {
            let q = &qkv[i * 3 * h + hh * hd..i * 3 * h + (hh + 1) * hd];
            let mut mx = f32::NEG_INFINITY;
            for (j, pj) in (s0..s1).zip(p.iter_mut()) {
                let k = &qkv[j * 3 * h + h + hh * hd..j * 3 * h + h + (hh + 1) * hd];
                *pj = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                mx = mx.max(*pj);
            }
            let mut sum = 0f32;
            p.iter_mut().for_each(|v| {
                *v = (*v - mx).exp();
                sum += *v;
            });
            let o = &mut out[hh * hd..(hh + 1) * hd];
            for (j, pj) in (s0..s1).zip(&p) {
                let v = &qkv[j * 3 * h + 2 * h + hh * hd..j * 3 * h + 2 * h + (hh + 1) * hd];
                let wgt = pj / sum;
                o.iter_mut().zip(v).for_each(|(o, v)| *o += wgt * v);
            }
        }
    };
    if t * t * h >= PARALLEL_MIN * 8 {
        ctx.par_chunks_mut(h).enumerate().for_each(token);
    } else {
        ctx.chunks_mut(h).enumerate().for_each(token);
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

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
