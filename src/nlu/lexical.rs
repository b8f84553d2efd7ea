//! The lexical scorer: character n-grams (2–5 letters inside word
//! boundaries, plus whole words) weighted by TF-IDF, and a multinomial
//! logistic regression over them, trained at load time like the linear head.
//! A misspelt word still shares most of its n-grams with the right one, and a
//! rare word the encoder splits badly (a surname, СНИЛС, МФЦ, ЕПГУ) is a
//! feature of its own, so this scorer covers what the embeddings miss.
//!
//! Written by hand: the Rust crates for logistic regression (linfa-logistic,
//! smartcore) take dense matrices, and a dense matrix of a few thousand
//! examples by tens of thousands of n-grams is hundreds of megabytes for what
//! is a few hundred non-zeros per row.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Training settings of the lexical model.
#[derive(Debug, Clone, Copy)]
pub struct LexicalParams {
    pub epochs: usize,
    pub l2: f32,
    pub lr: f32,
}

impl Default for LexicalParams {
    fn default() -> Self {
        Self {
            epochs: 60,
            l2: 1e-5,
            lr: 0.05,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Lexical {
    /// N-gram hash → column.
    columns: HashMap<u64, u32>,
    idf: Vec<f32>,
    /// Feature-major weights as f16 bits, to keep them small: `w[f * classes + c]`.
    w: Vec<u16>,
    b: Vec<f32>,
    classes: usize,
}

/// Lower case, ё as е and й as и (a phone keyboard often drops them), every
/// other character that is not a letter or digit a space.
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ё' => 'е',
            'й' => 'и',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect()
}

/// FNV-1a over the n-gram's characters, with its length mixed in first.
fn hash(tag: u8, chars: &[char]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ tag as u64;
    for &c in chars {
        for b in (c as u32).to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The n-gram hashes of a text with their counts.
fn grams(text: &str) -> HashMap<u64, f32> {
    let mut out: HashMap<u64, f32> = HashMap::new();
    for word in fold(text).split_whitespace() {
        let padded: Vec<char> = std::iter::once('^')
            .chain(word.chars())
            .chain(std::iter::once('$'))
            .collect();
        *out.entry(hash(0, &padded)).or_default() += 1.0;
        for n in 2..=5 {
            for g in padded.windows(n) {
                *out.entry(hash(n as u8, g)).or_default() += 1.0;
            }
        }
    }
    out
}

/// A sparse unit vector: (column, weight).
type Sparse = Vec<(u32, f32)>;

impl Lexical {
    fn vector(&self, text: &str) -> Sparse {
        let mut v: Sparse = grams(text)
            .into_iter()
            .filter_map(|(g, tf)| {
                let c = *self.columns.get(&g)?;
                Some((c, (1.0 + tf.ln()) * self.idf[c as usize]))
            })
            .collect();
        v.sort_unstable_by_key(|x| x.0);
        let n = v.iter().map(|x| x.1 * x.1).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| x.1 /= n);
        v
    }

    /// Trains on `texts` with class `labels` (`0..classes`): full-batch Adam
    /// over the softmax loss with L2, deterministic.
    pub fn train(texts: &[String], labels: &[usize], classes: usize, p: LexicalParams) -> Self {
        let docs: Vec<HashMap<u64, f32>> = texts.iter().map(|t| grams(t)).collect();
        let mut df: HashMap<u64, u32> = HashMap::new();
        for d in &docs {
            for g in d.keys() {
                *df.entry(*g).or_default() += 1;
            }
        }
        let mut keys: Vec<u64> = df.keys().copied().collect();
        keys.sort_unstable();
        let columns: HashMap<u64, u32> = keys
            .iter()
            .enumerate()
            .map(|(i, g)| (*g, i as u32))
            .collect();
        let n = docs.len().max(1) as f32;
        let idf: Vec<f32> = keys
            .iter()
            .map(|g| ((1.0 + n) / (1.0 + df[g] as f32)).ln() + 1.0)
            .collect();
        let mut model = Self {
            columns,
            idf,
            w: Vec::new(),
            b: vec![0.0; classes],
            classes,
        };
        let xs: Vec<Sparse> = texts.iter().map(|t| model.vector(t)).collect();
        let f = keys.len();
        let mut w = vec![0f32; f * classes];
        let mut b = vec![0f32; classes];
        let (mut mw, mut vw) = (vec![0f32; w.len()], vec![0f32; w.len()]);
        let (mut mb, mut vb) = (vec![0f32; classes], vec![0f32; classes]);
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let mut gw = vec![0f32; w.len()];
        let mut gb = vec![0f32; classes];
        let mut logits = vec![0f32; classes];
        for step in 1..=p.epochs {
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for (x, &y) in xs.iter().zip(labels) {
                logits.copy_from_slice(&b);
                for &(c, v) in x {
                    let row = &w[c as usize * classes..(c as usize + 1) * classes];
                    logits.iter_mut().zip(row).for_each(|(l, w)| *l += v * w);
                }
                softmax_in_place(&mut logits);
                logits[y] -= 1.0;
                for &(c, v) in x {
                    let row = &mut gw[c as usize * classes..(c as usize + 1) * classes];
                    row.iter_mut()
                        .zip(&logits)
                        .for_each(|(g, d)| *g += v * d / n);
                }
                gb.iter_mut().zip(&logits).for_each(|(g, d)| *g += d / n);
            }
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            let adam = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], l2: f32| {
                for i in 0..w.len() {
                    let g = g[i] + l2 * w[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * g;
                    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                    w[i] -= p.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                }
            };
            adam(&mut w, &gw, &mut mw, &mut vw, p.l2);
            adam(&mut b, &gb, &mut mb, &mut vb, 0.0);
        }
        model.w = w
            .into_iter()
            .map(|v| half::f16::from_f32(v).to_bits())
            .collect();
        model.b = b;
        model
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Probability per class of `text`.
    pub fn probs(&self, text: &str) -> Vec<f32> {
        let mut logits = self.b.clone();
        for (c, v) in self.vector(text) {
            let row = &self.w[c as usize * self.classes..(c as usize + 1) * self.classes];
            logits
                .iter_mut()
                .zip(row)
                .for_each(|(l, w)| *l += v * half::f16::from_bits(*w).to_f32());
        }
        softmax_in_place(&mut logits);
        logits
    }
}

fn softmax_in_place(x: &mut [f32]) {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    x.iter_mut().for_each(|v| {
        *v = (*v - m).exp();
        s += *v;
    });
    x.iter_mut().for_each(|v| *v /= s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Lexical {
        let texts: Vec<String> = [
            "как получить снилс",
            "где взять номер снилс",
            "снилс ребёнку оформить",
            "запись в мфц на приём",
            "записаться в мфц",
            "когда работает мфц",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Lexical::train(&texts, &[0, 0, 0, 1, 1, 1], 2, LexicalParams::default())
    }

    #[test]
    fn folds_case_yo_and_short_i() {
        assert_eq!(fold("Ёлка, Мой СНИЛС!"), "елка  мои снилс ");
    }

    #[test]
    fn a_misspelt_word_still_scores_its_class() {
        let m = model();
        // «снлис»: a swap; «мфз»: a neighbouring key.
        assert!(m.probs("снлис получить")[0] > 0.6, "{:?}", m.probs("снлис"));
        assert!(m.probs("запсиь в мфз")[1] > 0.6);
    }

    #[test]
    fn training_is_deterministic() {
        let (a, b) = (model(), model());
        assert_eq!(a.probs("снилс"), b.probs("снилс"));
    }
}
