//! The encoder's top layers as candle tensors: the post-LayerNorm BERT layer
//! written with differentiable operations, so `otklik train` can fine-tune it
//! with candle's autograd (f32), and the same code runs the tuned layers at
//! inference (their matrices requantised to 8 bits, a quarter of f32's memory,
//! fine enough to keep what fine-tuning changed).

use anyhow::{ensure, Context, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use std::collections::HashMap;
use std::path::Path;

/// A dense layer: `y = x·wᵀ + b`, weights f32 (training) or 8-bit (inference).
pub enum Lin {
    F32 { w: Tensor, b: Tensor },
    Q8 { w: QMatMul, b: Tensor },
}

impl Lin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let x2 = x.reshape((b * l, h))?;
        let y = match self {
            Lin::F32 { w, b } => x2.matmul(&w.t()?)?.broadcast_add(b)?,
            Lin::Q8 { w, b } => w.forward(&x2)?.broadcast_add(b)?,
        };
        let out = y.dim(1)?;
        Ok(y.reshape((b, l, out))?)
    }

    fn weight(&self) -> Result<Tensor> {
        Ok(match self {
            Lin::F32 { w, .. } => w.clone(),
            Lin::Q8 { w, .. } => match w {
                QMatMul::QTensor(q) => q.dequantize(&Device::Cpu)?,
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
            },
        })
    }

    fn bias(&self) -> &Tensor {
        match self {
            Lin::F32 { b, .. } | Lin::Q8 { b, .. } => b,
        }
    }

    fn to_q8(&self) -> Result<Lin> {
        let w = self.weight()?;
        Ok(Lin::Q8 {
            w: QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?,
            b: self.bias().clone(),
        })
    }
}

/// One post-LayerNorm BERT layer.
pub struct Layer {
    pub qkv: Lin,
    pub out: Lin,
    pub ln_attn: (Tensor, Tensor),
    pub ffn_in: Lin,
    pub ffn_out: Lin,
    pub ln_ffn: (Tensor, Tensor),
}

const NAMES: [&str; 12] = [
    "qkv.w",
    "qkv.b",
    "out.w",
    "out.b",
    "ln_attn.w",
    "ln_attn.b",
    "ffn_in.w",
    "ffn_in.b",
    "ffn_out.w",
    "ffn_out.b",
    "ln_ffn.w",
    "ln_ffn.b",
];

impl Layer {
    /// From twelve f32 tensors in `NAMES` order.
    pub fn from_tensors(t: Vec<Tensor>) -> Result<Self> {
        let [qw, qb, ow, ob, aw, ab, iw, ib, fw, fb, nw, nb]: [Tensor; 12] = t
            .try_into()
            .map_err(|_| anyhow::anyhow!("a layer has {} tensors", NAMES.len()))?;
        Ok(Self {
            qkv: Lin::F32 { w: qw, b: qb },
            out: Lin::F32 { w: ow, b: ob },
            ln_attn: (aw, ab),
            ffn_in: Lin::F32 { w: iw, b: ib },
            ffn_out: Lin::F32 { w: fw, b: fb },
            ln_ffn: (nw, nb),
        })
    }

    /// The twelve tensors in `NAMES` order (8-bit matrices dequantised).
    pub fn tensors(&self) -> Result<Vec<Tensor>> {
        let mut v = Vec::with_capacity(NAMES.len());
        for (lin, ln) in [
            (&self.qkv, None),
            (&self.out, Some(&self.ln_attn)),
            (&self.ffn_in, None),
            (&self.ffn_out, Some(&self.ln_ffn)),
        ] {
            v.push(lin.weight()?);
            v.push(lin.bias().clone());
            if let Some((w, b)) = ln {
                v.push(w.clone());
                v.push(b.clone());
            }
        }
        Ok(v)
    }

    /// `x` is `(batch, len, hidden)`; `bias` the additive attention mask
    /// `(batch, 1, 1, len)`. Differentiable in every weight.
    pub fn forward(&self, x: &Tensor, bias: &Tensor, heads: usize, eps: f64) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let hd = h / heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, l, 3, heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(bias)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let ctx = att
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, h))?;
        let x = norm(&(self.out.forward(&ctx)? + x)?, &self.ln_attn, eps)?;
        let mid = self.ffn_in.forward(&x)?.gelu_erf()?;
        norm(&(self.ffn_out.forward(&mid)? + &x)?, &self.ln_ffn, eps)
    }
}

/// LayerNorm from elementary operations (candle's fused one has no gradient).
fn norm(x: &Tensor, (w, b): &(Tensor, Tensor), eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(xc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)?)
}

/// A padded batch of token states: `(batch, len, hidden)`, the attention
/// bias `(batch, 1, 1, len)` (0 for tokens, −10⁴ for padding) and the mask
/// `(batch, len, 1)` for pooling.
pub struct Batch {
    pub x: Tensor,
    pub bias: Tensor,
    pub mask: Tensor,
}

impl Batch {
    pub fn new(states: &[&[f32]], hidden: usize) -> Result<Self> {
        let b = states.len();
        let l = states
            .iter()
            .map(|s| s.len() / hidden)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut x = vec![0f32; b * l * hidden];
        let mut mask = vec![0f32; b * l];
        for (i, s) in states.iter().enumerate() {
            x[i * l * hidden..i * l * hidden + s.len()].copy_from_slice(s);
            mask[i * l..i * l + s.len() / hidden].fill(1.0);
        }
        let dev = Device::Cpu;
        let mask = Tensor::from_vec(mask, (b, l), &dev)?;
        Ok(Self {
            x: Tensor::from_vec(x, (b, l, hidden), &dev)?,
            bias: ((mask.clone() - 1.0)? * 1e4)?.reshape((b, 1, 1, l))?,
            mask: mask.unsqueeze(2)?,
        })
    }

    /// Mean over each sequence's tokens of `y` `(batch, len, hidden)`.
    pub fn mean_pool(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.broadcast_mul(&self.mask)?
            .sum(1)?
            .broadcast_div(&self.mask.sum(1)?)?)
    }
}

/// The tuned top layers of an encoder, as loaded from `otklik train`'s file.
pub struct Tuned {
    pub layers: Vec<Layer>,
    /// Index of the first tuned layer in the encoder.
    pub first: usize,
    pub heads: usize,
    pub eps: f64,
    /// The file's key: the training set's and the model's hashes and the settings.
    pub key: String,
}

impl Tuned {
    /// Runs the tuned layers over each sequence's token states (after layer
    /// `first`); returns each sequence's output token states.
    pub fn forward(&self, states: &[Vec<f32>], hidden: usize) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&[f32]> = states.iter().map(|s| s.as_slice()).collect();
        let batch = Batch::new(&refs, hidden)?;
        let mut x = batch.x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, &batch.bias, self.heads, self.eps)?;
        }
        let l = x.dim(1)?;
        let flat = x.flatten_all()?.to_vec1::<f32>()?;
        Ok(states
            .iter()
            .enumerate()
            .map(|(i, s)| flat[i * l * hidden..i * l * hidden + s.len()].to_vec())
            .collect())
    }

    /// Writes the layers (f32) as safetensors.
    pub fn save(layers: &[Layer], path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, layer) in layers.iter().enumerate() {
            for (name, t) in NAMES.iter().zip(layer.tensors()?) {
                map.insert(format!("{i}.{name}"), t.contiguous()?);
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Reads a file written by `save`, requantising its matrices to 8 bits.
    pub fn load(path: &Path, first: usize, heads: usize, eps: f64, key: &str) -> Result<Self> {
        let mut map = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut layers = Vec::new();
        for i in 0.. {
            if !map.contains_key(&format!("{i}.qkv.w")) {
                break;
            }
            let t = NAMES
                .iter()
                .map(|n| {
                    map.remove(&format!("{i}.{n}"))
                        .with_context(|| format!("{} lacks {i}.{n}", path.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            layers.push(Layer::from_tensors(t)?.quantized()?);
        }
        ensure!(!layers.is_empty(), "{} holds no layers", path.display());
        Ok(Self {
            layers,
            first,
            heads,
            eps,
            key: key.to_string(),
        })
    }
}

impl Layer {
    /// The same layer with its matrices in 8 bits.
    pub fn quantized(&self) -> Result<Self> {
        Ok(Self {
            qkv: self.qkv.to_q8()?,
            out: self.out.to_q8()?,
            ln_attn: self.ln_attn.clone(),
            ffn_in: self.ffn_in.to_q8()?,
            ffn_out: self.ffn_out.to_q8()?,
            ln_ffn: self.ln_ffn.clone(),
        })
    }
}
