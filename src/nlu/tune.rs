//! `otklik train`: fine-tuning of the encoder's top layers on the knowledge
//! base, on the CPU. The lower layers stay frozen: their token states for
//! every example are computed once (4-bit path, as at inference). The top
//! `tune.layers` layers (f32, from the model's weights) and a cosine training
//! head are trained with cross-entropy through candle's autograd, on the
//! examples and copies of them with generated typos; a validation share of
//! each intent stops training when it no longer improves. The result is a
//! small safetensors file beside the model holding only the trained layers,
//! keyed by the training set's and the model's hashes: loaded at start-up
//! when it matches, ignored (frozen encoder) when it does not.

use super::encoder::{Embedder, Encoder};
use super::index::{progress, short_hash};
use super::layers::{Batch, Layer, Tuned};
use super::typos::with_typos;
use crate::config::TuneConfig;
use anyhow::{ensure, Result};
use candle_core::{Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Bumped when training changes what a weights file means.
const FORMAT: &str = "tune-v1";

/// The key of a training run: the model, the labelled examples (in order)
/// and the settings that change the result.
pub fn key(encoder: &Encoder, items: &[(String, String)], t: &TuneConfig) -> String {
    let settings = format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        t.layers,
        t.epochs,
        t.patience,
        t.batch,
        t.lr,
        t.head_lr,
        t.scale,
        t.typo_copies,
        t.typo_rate,
        t.validation_share,
        t.max_tokens
    );
    let data = bincode::serialize(items).unwrap_or_default();
    short_hash(&[
        FORMAT.as_bytes(),
        encoder.identity.as_bytes(),
        &data,
        settings.as_bytes(),
        &t.seed.to_le_bytes(),
    ])
}

/// Where the weights of a run are kept: in `tune.dir`, or beside the model
/// file (inside a model directory), named by the model and the run's key.
pub fn weights_path(model: &Path, t: &TuneConfig, key: &str) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let dir = if !t.dir.as_os_str().is_empty() {
        t.dir.clone()
    } else if model.is_dir() {
        model.to_path_buf()
    } else {
        model.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    dir.join(format!("{stem}.tuned-{key}.safetensors"))
}

/// The tuned layers matching `items`, if `otklik train` wrote them.
pub fn find(
    model: &Path,
    encoder: &Encoder,
    items: &[(String, String)],
    t: &TuneConfig,
) -> Result<Option<Arc<Tuned>>> {
    let key = key(encoder, items, t);
    let path = weights_path(model, t, &key);
    if !path.exists() {
        return Ok(None);
    }
    let n = t.layers.min(encoder.layer_count());
    let tuned = Tuned::load(
        &path,
        encoder.layer_count() - n,
        encoder.heads(),
        encoder.eps(),
        &key,
    )?;
    ensure!(
        tuned.layers.len() == n,
        "{} holds {} layers, the settings say {n}",
        path.display(),
        tuned.layers.len()
    );
    Ok(Some(Arc::new(tuned)))
}

/// What a training run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trained {
    pub key: String,
    pub examples: usize,
    pub validation: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// Validation accuracy of the training head: frozen layers, then tuned.
    pub validation_before: f64,
    pub validation_after: f64,
    pub seconds: f64,
}

/// The trainable copy of the top layers.
struct Params {
    vars: Vec<Var>,
}

impl Params {
    fn from_layers(layers: &[Layer]) -> Result<Self> {
        let mut vars = Vec::new();
        for l in layers {
            for t in l.tensors()? {
                vars.push(Var::from_tensor(&t.contiguous()?)?);
            }
        }
        Ok(Self { vars })
    }

    fn layers(&self) -> Result<Vec<Layer>> {
        self.vars
            .chunks(12)
            .map(|c| Layer::from_tensors(c.iter().map(|v| v.as_tensor().clone()).collect()))
            .collect()
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?)
    }

    fn layers_from(snapshot: &[Tensor]) -> Result<Vec<Layer>> {
        snapshot
            .chunks(12)
            .map(|c| Layer::from_tensors(c.to_vec()))
            .collect()
    }
}

/// Pooled, L2-normalised outputs of the layers over a batch.
fn embed_batch(
    layers: &[Layer],
    batch: &Batch,
    heads: usize,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mut x = batch.x.clone();
    for l in layers {
        x = l
            .forward(&x, &batch.bias, heads, eps)
            .map_err(candle_core::Error::wrap)?;
    }
    let e = batch.mean_pool(&x).map_err(candle_core::Error::wrap)?;
    e.broadcast_div(&e.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// Trains the top layers on `items` (`label`, `text`; the labels' order
/// fixes the classes). Deterministic for a seed. `quiet` hides the progress bar.
pub fn train(
    encoder: &Arc<Encoder>,
    items: &[(String, String)],
    prefix: &str,
    t: &TuneConfig,
    quiet: bool,
) -> Result<(Tuned, Vec<Layer>, Trained)> {
    let start = Instant::now();
    let n_layers = t.layers.min(encoder.layer_count());
    let first = encoder.layer_count() - n_layers;
    let (heads, eps, hidden) = (encoder.heads(), encoder.eps(), encoder.dim());
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    for (l, _) in items {
        let n = classes.len();
        classes.entry(l).or_insert(n);
    }
    let labels: Vec<usize> = items.iter().map(|(l, _)| classes[l.as_str()]).collect();
    let n_classes = classes.len();
    ensure!(n_classes >= 2, "training needs at least two intents");

    // Validation: every k-th example of each intent in a seeded shuffle.
    let mut rng = StdRng::seed_from_u64(t.seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &c) in labels.iter().enumerate() {
        by_class[c].push(i);
    }
    let mut is_val = vec![false; items.len()];
    if t.validation_share > 0.0 {
        let every = (1.0 / t.validation_share).round().max(2.0) as usize;
        for idx in &mut by_class {
            idx.shuffle(&mut rng);
            if idx.len() >= 4 {
                for (k, &i) in idx.iter().enumerate() {
                    is_val[i] = k % every == every - 1;
                }
            }
        }
    }

    // The texts trained on: each example, and its copies with typos.
    let mut texts: Vec<(String, usize, bool)> = Vec::new();
    for (i, (_, text)) in items.iter().enumerate() {
        texts.push((text.clone(), labels[i], is_val[i]));
        for c in 0..t.typo_copies {
            let typo = with_typos(text, t.typo_rate, t.seed.wrapping_add(c as u64 + 1));
            if typo != *text {
                texts.push((typo, labels[i], is_val[i]));
            }
        }
    }

    // Frozen lower layers, once.
    let bar = (!quiet).then(|| progress(texts.len() as u64, "frozen layers"));
    let mut states: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(x, _, _)| {
                let mut ids = encoder.token_ids(&format!("{prefix}{x}"))?;
                if ids.len() > t.max_tokens {
                    let last = *ids.last().unwrap();
                    ids.truncate(t.max_tokens - 1);
                    ids.push(last);
                }
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(|v| v.as_slice()).collect();
        states.extend(encoder.states(&refs, first)?);
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let frozen: Vec<Layer> = (first..encoder.layer_count())
        .map(|l| encoder.layer_f32(l))
        .collect::<Result<_>>()?;
    let params = Params::from_layers(&frozen)?;
    let train_idx: Vec<usize> = (0..texts.len()).filter(|&i| !texts[i].2).collect();
    let mut val_idx: Vec<usize> = (0..texts.len()).filter(|&i| texts[i].2).collect();
    val_idx.sort_by_key(|&i| states[i].len());

    // The training head starts at each class's mean frozen embedding.
    let dev = Device::Cpu;
    let mut centroids = vec![0f32; n_classes * hidden];
    for chunk in train_idx.chunks(64) {
        let refs: Vec<&[f32]> = chunk.iter().map(|&i| states[i].as_slice()).collect();
        let e = embed_batch(&frozen, &Batch::new(&refs, hidden)?, heads, eps)?.to_vec2::<f32>()?;
        for (row, &i) in e.iter().zip(chunk) {
            let c = texts[i].1;
            centroids[c * hidden..(c + 1) * hidden]
                .iter_mut()
                .zip(row)
                .for_each(|(a, b)| *a += b);
        }
    }
    let head = Var::from_tensor(&Tensor::from_vec(centroids, (n_classes, hidden), &dev)?)?;
    let logits = |layers: &[Layer], idx: &[usize]| -> Result<Tensor> {
        let refs: Vec<&[f32]> = idx.iter().map(|&i| states[i].as_slice()).collect();
        let e = embed_batch(layers, &Batch::new(&refs, hidden)?, heads, eps)?;
        let w = head.as_tensor();
        let w = w.broadcast_div(&w.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?;
        Ok((e.matmul(&w.t()?)? * t.scale)?)
    };
    let accuracy = |layers: &[Layer]| -> Result<f64> {
        if val_idx.is_empty() {
            return Ok(0.0);
        }
        let mut right = 0usize;
        for chunk in val_idx.chunks(64) {
            let pred = logits(layers, chunk)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            right += pred
                .iter()
                .zip(chunk)
                .filter(|(p, &i)| **p as usize == texts[i].1)
                .count();
        }
        Ok(right as f64 / val_idx.len() as f64)
    };
    let before = accuracy(&frozen)?;
    let adamw = |lr| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut opt_layers = AdamW::new(params.vars.clone(), adamw(t.lr))?;
    let mut opt_head = AdamW::new(vec![head.clone()], adamw(t.head_lr))?;
    let mut best = (before, 0usize, params.snapshot()?);
    let mut order = train_idx.clone();
    let mut epochs_run = 0;
    let steps = order.len().div_ceil(t.batch) * t.epochs;
    let bar = (!quiet).then(|| progress(steps as u64, "training"));
    for epoch in 1..=t.epochs {
        epochs_run = epoch;
        // Batches of similar lengths (little padding), in a random order.
        order.shuffle(&mut rng);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for big in order.chunks(t.batch * 16) {
            let mut big = big.to_vec();
            big.sort_by_key(|&i| states[i].len());
            batches.extend(big.chunks(t.batch).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut rng);
        let layers = params.layers()?;
        let mut total_loss = 0f64;
        for chunk in &batches {
            let y = Tensor::from_vec(
                chunk.iter().map(|&i| texts[i].1 as u32).collect::<Vec<_>>(),
                chunk.len(),
                &dev,
            )?;
            let loss = candle_nn::loss::cross_entropy(&logits(&layers, chunk)?, &y)?;
            total_loss += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let grads = loss.backward()?;
            opt_layers.step(&grads)?;
            opt_head.step(&grads)?;
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        let acc = accuracy(&layers)?;
        tracing::info!(
            epoch,
            loss = total_loss / order.len().max(1) as f64,
            validation = acc,
            "tuning epoch"
        );
        if acc > best.0 || val_idx.is_empty() {
            best = (acc, epoch, params.snapshot()?);
        } else if epoch - best.1 >= t.patience {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let layers = Params::layers_from(&best.2)?;
    let tuned = Tuned {
        layers: layers.iter().map(Layer::quantized).collect::<Result<_>>()?,
        first,
        heads,
        eps,
        key: String::new(),
    };
    let report = Trained {
        key: String::new(),
        examples: train_idx.len(),
        validation: val_idx.len(),
        epochs_run,
        best_epoch: best.1,
        validation_before: before,
        validation_after: best.0,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((tuned, layers, report))
}

/// Trains on `items` and writes the weights beside the model; returns the
/// embedder with the tuned layers and the run's report.
pub fn train_and_save(
    model: &Path,
    encoder: &Arc<Encoder>,
    items: &[(String, String)],
    prefix: &str,
    t: &TuneConfig,
    quiet: bool,
) -> Result<(Embedder, Trained, PathBuf)> {
    let key = key(encoder, items, t);
    let (mut tuned, layers, mut report) = train(encoder, items, prefix, t, quiet)?;
    let path = weights_path(model, t, &key);
    Tuned::save(&layers, &path)?;
    tuned.key = key.clone();
    report.key = key;
    Ok((
        Embedder {
            encoder: encoder.clone(),
            tuned: Some(Arc::new(tuned)),
        },
        report,
        path,
    ))
}

/// An in-memory run (for `eval --tuned` on folds): the embedder with the
/// tuned layers, keyed like a file would be.
pub fn train_embedder(
    encoder: &Arc<Encoder>,
    items: &[(String, String)],
    prefix: &str,
    t: &TuneConfig,
) -> Result<Embedder> {
    let (mut tuned, _, _) = train(encoder, items, prefix, t, true)?;
    tuned.key = key(encoder, items, t);
    Ok(Embedder {
        encoder: encoder.clone(),
        tuned: Some(Arc::new(tuned)),
    })
}
