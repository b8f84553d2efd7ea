//! The intent classifier and its decision. A message is embedded, then scored
//! three ways: a linear head (multinomial logistic regression trained on the
//! example embeddings at load time), a vote of the nearest examples in the
//! hnsw index (softmax over cosine similarities) and the lexical scorer over
//! character n-grams (`lexical`, robust to typos). The blend is a calibrated
//! probability per intent (plus an out-of-scope class when the knowledge base
//! has negative examples); thresholds on it and on the lead over the second
//! intent give the decision: answer, confirm, three alternatives, or out of scope.

use super::encoder::{Embedder, Encoder};
use super::index::{short_hash, EmbeddingCache, ExampleIndex};
use super::kb::KnowledgeBase;
use super::layers::Tuned;
use super::lexical::{Lexical, LexicalParams};
use crate::config::ClassifierConfig;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Confident: give the answer of the best intent.
    Answer,
    /// Unsure: ask «Вы имели в виду …?» about the best intent.
    Confirm,
    /// Unsure between several: offer the three most likely intents.
    Alternatives,
    /// Nothing close: say so honestly and offer options or an operator.
    OutOfScope,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Answer => "answer",
            Decision::Confirm => "confirm",
            Decision::Alternatives => "alternatives",
            Decision::OutOfScope => "out_of_scope",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub intent: String,
    pub title: String,
    /// Calibrated probability.
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub decision: Decision,
    /// In-scope intents, best first (at most five).
    pub top: Vec<Scored>,
    /// Probability that the message is none of the intents.
    pub out_of_scope_score: f32,
    /// Cosine similarity of the nearest example.
    pub nearest_similarity: f32,
    /// The intents to offer: three for `alternatives`, one for `confirm`/`answer`.
    pub options: Vec<Scored>,
}

/// How the per-intent probabilities are computed (for `eval --compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Linear head, neighbour vote and lexical scorer blended (the default).
    Blend,
    /// Linear head blended with the neighbour vote, without the lexical scorer.
    Embedding,
    /// Lexical scorer (character n-grams) alone.
    Lexical,
    /// Linear head (logistic regression) alone.
    Linear,
    /// Neighbour vote alone.
    Knn,
    /// Softmax over cosine similarity to each intent's mean example.
    Centroid,
}

/// Logistic regression on standardised embeddings.
#[derive(Serialize, Deserialize)]
struct LinearHead {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Class-major weights: `w[c * dim + j]`.
    w: Vec<f32>,
    b: Vec<f32>,
    dim: usize,
    classes: usize,
}

impl LinearHead {
    fn train(x: &[Vec<f32>], y: &[usize], classes: usize, cfg: &ClassifierConfig) -> Result<Self> {
        let n = x.len();
        let dim = x.first().map(|v| v.len()).unwrap_or(0);
        let mut mean = vec![0f32; dim];
        for v in x {
            mean.iter_mut().zip(v).for_each(|(m, a)| *m += a / n as f32);
        }
        let mut var = vec![0f32; dim];
        for v in x {
            var.iter_mut()
                .zip(v.iter().zip(&mean))
                .for_each(|(s, (a, m))| *s += (a - m) * (a - m) / n as f32);
        }
        let inv_std: Vec<f32> = var.iter().map(|s| 1.0 / (s.sqrt() + 1e-6)).collect();
        let flat: Vec<f32> = x
            .iter()
            .flat_map(|v| {
                v.iter()
                    .zip(&mean)
                    .zip(&inv_std)
                    .map(|((a, m), s)| (a - m) * s)
            })
            .collect();
        let dev = Device::Cpu;
        let xt = Tensor::from_vec(flat, (n, dim), &dev)?;
        let yt = Tensor::from_vec(y.iter().map(|&c| c as u32).collect::<Vec<_>>(), n, &dev)?;
        let w = Var::zeros((dim, classes), DType::F32, &dev)?;
        let b = Var::zeros(classes, DType::F32, &dev)?;
        let mut opt = AdamW::new(
            vec![w.clone(), b.clone()],
            ParamsAdamW {
                lr: 0.01,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        for _ in 0..cfg.epochs {
            let logits = xt.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let loss = (candle_nn::loss::cross_entropy(&logits, &yt)?
                + (w.as_tensor().sqr()?.sum_all()? * cfg.l2 as f64)?)?;
            opt.backward_step(&loss)?;
        }
        let w = w
            .as_tensor()
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = b.as_tensor().to_vec1::<f32>()?;
        Ok(Self {
            mean,
            inv_std,
            w,
            b,
            dim,
            classes,
        })
    }

    fn probs(&self, v: &[f32]) -> Vec<f32> {
        let z: Vec<f32> = v
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((a, m), s)| (a - m) * s)
            .collect();
        let logits: Vec<f32> = (0..self.classes)
            .map(|c| self.b[c] + super::encoder::dot(&self.w[c * self.dim..(c + 1) * self.dim], &z))
            .collect();
        softmax(&logits, 1.0)
    }
}

fn softmax(x: &[f32], temperature: f32) -> Vec<f32> {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| ((v - m) / temperature).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The decision rule: `p1`/`p2` are the two best intents' probabilities,
/// `oos` the out-of-scope probability, `n` the number of intents.
pub fn decision_for(c: &ClassifierConfig, p1: f32, p2: f32, oos: f32, n: usize) -> Decision {
    if p1 >= c.answer_threshold && p1 - p2 >= c.answer_margin && p1 > oos {
        Decision::Answer
    } else if p1 >= c.confirm_threshold && p1 > oos {
        Decision::Confirm
    } else if p1 >= c.alternatives_threshold && n >= 3 {
        Decision::Alternatives
    } else {
        Decision::OutOfScope
    }
}

/// Intent scores for one embedding, before the decision.
pub struct Scores {
    /// Probability per class (intents, then out-of-scope if present).
    pub probs: Vec<f32>,
    pub nearest_similarity: f32,
    /// For `Blend`: the linear head's, the neighbour vote's and the lexical
    /// scorer's probabilities, so `eval --calibrate` can choose their weights.
    pub parts: Option<Box<Parts>>,
}

pub struct Parts {
    pub linear: Vec<f32>,
    pub knn: Vec<f32>,
    /// Absent when no text was scored (a cluster's centroid).
    pub lexical: Option<Vec<f32>>,
}

/// `(1 − λ)·(w·linear + (1 − w)·knn) + λ·lexical`, with `w` the linear
/// weight and `λ` the lexical weight (0 when there is no lexical part).
pub fn blend(parts: &Parts, linear_weight: f32, lexical_weight: f32) -> Vec<f32> {
    let (w, l) = (linear_weight, lexical_weight);
    let emb = parts
        .linear
        .iter()
        .zip(&parts.knn)
        .map(|(a, b)| w * a + (1.0 - w) * b);
    match &parts.lexical {
        Some(lex) if l > 0.0 => emb.zip(lex).map(|(e, x)| (1.0 - l) * e + l * x).collect(),
        _ => emb.collect(),
    }
}

/// Bumped when the dumped index or head changes meaning, so old dumps are ignored.
const INDEX_FORMAT: &str = "index-v2";
/// Bumped when the lexical model's features or training change.
const LEXICAL_FORMAT: &str = "lexical-v1";

pub struct Classifier {
    embedder: Embedder,
    ids: Vec<String>,
    titles: Vec<String>,
    /// Index of the out-of-scope class, when the knowledge base has negatives.
    oos_class: Option<usize>,
    head: LinearHead,
    lexical: Lexical,
    index: ExampleIndex,
    centroids: Vec<Vec<f32>>,
    pub cfg: ClassifierConfig,
    prefix: String,
    max_chars: usize,
    cache: Mutex<HashMap<String, Vec<f32>>>,
    cache_entries: usize,
    /// Messages being embedded now, bounded by `max_concurrent_encodes`.
    encoding: (Mutex<usize>, std::sync::Condvar),
    /// Examples the model had to embed when this classifier was built (the rest came from the cache).
    pub embedded_at_build: usize,
}

/// Error for text that cannot be classified, worded for the person who wrote it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("Сообщение пустое. Напишите, пожалуйста, свой вопрос словами.")]
    Empty,
}

impl InputError {
    pub fn code(&self) -> &'static str {
        match self {
            InputError::Empty => "empty_text",
        }
    }
}

pub struct BuildOptions<'a> {
    /// Folder for the embedding cache and the dumped index; `None` keeps all in memory.
    pub cache_dir: Option<&'a Path>,
    pub prefix: &'a str,
    pub cache_entries: usize,
    /// Fine-tuned top layers of the encoder (`otklik train`) matching this
    /// knowledge base; `None` runs the frozen encoder.
    pub tuned: Option<Arc<Tuned>>,
}

impl Classifier {
    /// Embeds the knowledge base (cached), builds the index and trains the head.
    pub fn build(
        encoder: Arc<Encoder>,
        kb: &KnowledgeBase,
        cfg: &ClassifierConfig,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let embedder = Embedder {
            encoder: encoder.clone(),
            tuned: opts.tuned.clone(),
        };
        let mut cache = EmbeddingCache::open(
            opts.cache_dir,
            &format!("{}|{}", embedder.identity(), opts.prefix),
        );
        let mut texts = Vec::new();
        let mut raw = Vec::new();
        let mut labels = Vec::new();
        for (c, intent) in kb.intents.iter().enumerate() {
            let derived = if cfg.derived_examples {
                intent.derived_examples()
            } else {
                Vec::new()
            };
            for ex in intent.examples.iter().chain(&derived) {
                texts.push(format!("{}{}", opts.prefix, ex));
                raw.push(ex.clone());
                labels.push(c);
            }
        }
        let oos_class = (!kb.out_of_scope.is_empty()).then_some(kb.intents.len());
        for ex in &kb.out_of_scope {
            texts.push(format!("{}{}", opts.prefix, ex));
            raw.push(ex.clone());
            labels.push(kb.intents.len());
        }
        let vectors = cache.embed_all(&embedder, &texts, "embedding")?;
        if let Err(e) = cache.save() {
            tracing::warn!("embedding cache not saved: {e:#}");
        }
        let mut clf =
            Self::from_vectors(encoder, kb, &raw, &vectors, labels, oos_class, cfg, opts)?;
        clf.embedded_at_build = cache.computed;
        Ok(clf)
    }

    /// Builds from precomputed example embeddings of `texts` (labels: intent
    /// index, or `kb.intents.len()` for out-of-scope examples).
    #[allow(clippy::too_many_arguments)]
    pub fn from_vectors(
        encoder: Arc<Encoder>,
        kb: &KnowledgeBase,
        texts: &[String],
        vectors: &[Vec<f32>],
        labels: Vec<usize>,
        oos_class: Option<usize>,
        cfg: &ClassifierConfig,
        opts: &BuildOptions,
    ) -> Result<Self> {
        anyhow::ensure!(!kb.intents.is_empty(), "the knowledge base has no intents");
        let embedder = Embedder {
            encoder: encoder.clone(),
            tuned: opts.tuned.clone(),
        };
        let classes = kb.intents.len() + usize::from(oos_class.is_some());
        let key = short_hash(&[
            INDEX_FORMAT.as_bytes(),
            embedder.identity().as_bytes(),
            opts.prefix.as_bytes(),
            kb.hash.as_bytes(),
            &bincode::serialize(&labels)?,
        ]);
        let head_cfg = serde_json::to_string(&(cfg.l2, cfg.epochs))?;
        let head_path = opts.cache_dir.map(|d| {
            d.join(format!(
                "head-{}.bin",
                short_hash(&[key.as_bytes(), head_cfg.as_bytes()])
            ))
        });
        let head = match head_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| bincode::deserialize::<LinearHead>(&b).ok())
        {
            Some(h) if h.classes == classes && h.dim == encoder.dim() => h,
            _ => {
                let h = LinearHead::train(vectors, &labels, classes, cfg)
                    .context("training the linear head")?;
                if let Some(p) = &head_path {
                    let tmp = p.with_extension(format!("tmp{}", super::index::unique_tmp_suffix()));
                    if std::fs::create_dir_all(p.parent().unwrap()).is_ok()
                        && std::fs::write(&tmp, bincode::serialize(&h)?).is_ok()
                    {
                        let _ = std::fs::rename(&tmp, p);
                    }
                }
                h
            }
        };
        let lex_params = LexicalParams {
            epochs: cfg.lexical_epochs,
            ..Default::default()
        };
        let lexical_key = short_hash(&[
            LEXICAL_FORMAT.as_bytes(),
            kb.hash.as_bytes(),
            &bincode::serialize(&labels)?,
            &bincode::serialize(texts)?,
            format!("{lex_params:?}").as_bytes(),
        ]);
        let lexical_path = opts
            .cache_dir
            .map(|d| d.join(format!("lexical-{lexical_key}.bin")));
        let lexical = match lexical_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| bincode::deserialize::<Lexical>(&b).ok())
        {
            Some(l) if l.classes() == classes => l,
            _ => {
                let l = Lexical::train(texts, &labels, classes, lex_params);
                if let Some(p) = &lexical_path {
                    let tmp = p.with_extension(format!("tmp{}", super::index::unique_tmp_suffix()));
                    if std::fs::write(&tmp, bincode::serialize(&l)?).is_ok() {
                        let _ = std::fs::rename(&tmp, p);
                    }
                }
                l
            }
        };
        let mut centroids = vec![vec![0f32; encoder.dim()]; classes];
        for (v, &l) in vectors.iter().zip(&labels) {
            centroids[l].iter_mut().zip(v).for_each(|(c, a)| *c += a);
        }
        centroids
            .iter_mut()
            .for_each(|c| super::encoder::normalize(c));
        let index =
            ExampleIndex::load_or_build(opts.cache_dir, &format!("index-{key}"), vectors, labels)?;
        Ok(Self {
            embedder,
            ids: kb.intents.iter().map(|i| i.id.clone()).collect(),
            titles: kb.intents.iter().map(|i| i.title.clone()).collect(),
            oos_class,
            head,
            lexical,
            index,
            centroids,
            cfg: cfg.clone(),
            prefix: opts.prefix.to_string(),
            max_chars: 2000,
            cache: Mutex::new(HashMap::new()),
            cache_entries: opts.cache_entries,
            encoding: (Mutex::new(0), std::sync::Condvar::new()),
            embedded_at_build: 0,
        })
    }

    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.embedder.encoder
    }

    /// The encoder with the tuned layers in use, if any.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The prefix a query gets before it is embedded (e5's `query: `).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn intent_ids(&self) -> &[String] {
        &self.ids
    }

    /// Embeds a citizen's message (with the query prefix), using the text cache.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let text: String = text.chars().take(self.max_chars).collect();
        if let Some(v) = self.cache.lock().unwrap().get(&text) {
            return Ok(v.clone());
        }
        let v = {
            let _turn = self.encoding_turn();
            self.embedder
                .embed_capped(
                    &[&format!("{}{}", self.prefix, text)],
                    self.cfg.max_query_tokens.max(1),
                )?
                .remove(0)
        };
        let mut c = self.cache.lock().unwrap();
        if c.len() >= self.cache_entries {
            c.clear(); // a simple bound: repeated texts within a window stay cached
        }
        c.insert(text, v.clone());
        Ok(v)
    }

    /// Waits for one of the `max_concurrent_encodes` places to embed a message.
    fn encoding_turn(&self) -> impl Drop + '_ {
        struct Place<'a>(&'a (Mutex<usize>, std::sync::Condvar));
        impl Drop for Place<'_> {
            fn drop(&mut self) {
                *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                self.0 .1.notify_one();
            }
        }
        let (n, freed) = &self.encoding;
        let max = self.cfg.max_concurrent_encodes.max(1);
        let mut busy = n.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= max {
            busy = freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        Place(&self.encoding)
    }

    pub fn classify(&self, text: &str) -> Result<Classification> {
        if text.trim().is_empty() {
            return Err(InputError::Empty.into());
        }
        if !text.chars().any(char::is_alphanumeric) {
            // Emoji or punctuation only: there is nothing to understand.
            return Ok(self.decide(&Scores {
                probs: self.no_signal_probs(),
                nearest_similarity: 0.0,
                parts: None,
            }));
        }
        let v = self.embed_query(text)?;
        Ok(self.decide(&self.scores(Some(text), &v, Method::Blend)))
    }

    fn no_signal_probs(&self) -> Vec<f32> {
        let n = self.ids.len() + usize::from(self.oos_class.is_some());
        let mut p = vec![0.0; n];
        if let Some(o) = self.oos_class {
            p[o] = 1.0;
        }
        p
    }

    /// Per-class probabilities of a message (`text`, its embedding `v`) by
    /// `method`. Without the text (a cluster's centroid) the lexical scorer
    /// has nothing to read and the embedding scorers decide alone.
    pub fn scores(&self, text: Option<&str>, v: &[f32], method: Method) -> Scores {
        let classes = self.head.classes;
        let neighbours = self.index.search(v, self.cfg.knn_k);
        let nearest_similarity = neighbours.first().map(|n| n.1).unwrap_or(0.0);
        let knn = || {
            let mut best = vec![f32::NEG_INFINITY; classes];
            for &(l, s) in &neighbours {
                best[l] = best[l].max(s);
            }
            // Classes with no neighbour among the k get the k-th similarity minus a margin.
            let floor = neighbours.last().map(|n| n.1).unwrap_or(0.0) - 0.05;
            let best: Vec<f32> = best
                .into_iter()
                .map(|b| if b.is_finite() { b } else { floor })
                .collect();
            softmax(&best, self.cfg.knn_temperature)
        };
        let lexical = || text.map(|t| self.lexical.probs(t));
        let mut parts = None;
        let probs = match method {
            Method::Linear => self.head.probs(v),
            Method::Knn => knn(),
            Method::Lexical => lexical().unwrap_or_else(|| self.head.probs(v)),
            Method::Embedding => blend(
                &Parts {
                    linear: self.head.probs(v),
                    knn: knn(),
                    lexical: None,
                },
                self.cfg.linear_weight,
                0.0,
            ),
            Method::Centroid => softmax(
                &self
                    .centroids
                    .iter()
                    .map(|c| super::encoder::dot(c, v))
                    .collect::<Vec<_>>(),
                self.cfg.knn_temperature,
            ),
            Method::Blend => {
                let p = Parts {
                    linear: self.head.probs(v),
                    knn: knn(),
                    lexical: lexical(),
                };
                let b = blend(&p, self.cfg.linear_weight, self.cfg.lexical_weight);
                parts = Some(Box::new(p));
                b
            }
        };
        Scores {
            probs,
            nearest_similarity,
            parts,
        }
    }

    /// Ranks the in-scope intents and applies the thresholds.
    pub fn decide(&self, s: &Scores) -> Classification {
        let mut ranked: Vec<(usize, f32)> = s
            .probs
            .iter()
            .cloned()
            .enumerate()
            .filter(|(c, _)| Some(*c) != self.oos_class)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let scored = |&(c, p): &(usize, f32)| Scored {
            intent: self.ids[c].clone(),
            title: self.titles[c].clone(),
            score: p,
        };
        let top: Vec<Scored> = ranked.iter().take(5).map(scored).collect();
        let oos = self.oos_class.map(|o| s.probs[o]).unwrap_or(0.0);
        let p1 = ranked.first().map(|r| r.1).unwrap_or(0.0);
        let p2 = ranked.get(1).map(|r| r.1).unwrap_or(0.0);
        let decision = decision_for(&self.cfg, p1, p2, oos, ranked.len());
        let options = match decision {
            Decision::Alternatives | Decision::OutOfScope => top.iter().take(3).cloned().collect(),
            _ => top.iter().take(1).cloned().collect(),
        };
        Classification {
            decision,
            top,
            out_of_scope_score: oos,
            nearest_similarity: s.nearest_similarity,
            options,
        }
    }
}
