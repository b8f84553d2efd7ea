//! `otklik eval`: cross-validation and train/test evaluation of the classifier
//! on the knowledge base or labelled files (TSV `intent<TAB>text` or JSONL
//! `{"intent":…,"text":…}`), the report (top-1/top-3, macro-F1, decisions,
//! out-of-scope handling, confusions, latency) and threshold calibration.

use super::classifier::{decision_for, BuildOptions, Classifier, Decision, Method, Scores};
use super::encoder::{Embedder, Encoder};
use super::index::{progress, EmbeddingCache};
use super::kb::KnowledgeBase;
use crate::config::ClassifierConfig;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub const OOS: &str = "out_of_scope";

/// Reads a labelled file; every bad line is reported with its number.
pub fn read_labelled(path: &Path) -> Result<Vec<(String, String)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if jsonl {
            #[derive(serde::Deserialize)]
            struct Row {
                intent: String,
                text: String,
            }
            match serde_json::from_str::<Row>(line) {
                Ok(r) => out.push((r.intent, r.text)),
                Err(e) => errors.push(format!(
                    "{}:{n}: {e}; expected {{\"intent\": …, \"text\": …}}",
                    path.display()
                )),
            }
        } else {
            match line.split_once('\t') {
                Some((l, t)) if !l.trim().is_empty() && !t.trim().is_empty() => {
                    out.push((l.trim().to_string(), t.trim().to_string()))
                }
                _ => errors.push(format!(
                    "{}:{n}: expected `intent<TAB>text`",
                    path.display()
                )),
            }
        }
    }
    if !errors.is_empty() {
        bail!("{} bad line(s):\n  {}", errors.len(), errors.join("\n  "));
    }
    if out.is_empty() {
        bail!("{} has no labelled lines", path.display());
    }
    Ok(out)
}

/// The labelled items of a knowledge base: its examples and its negatives.
pub fn kb_items(kb: &KnowledgeBase) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = kb
        .intents
        .iter()
        .flat_map(|i| i.examples.iter().map(|e| (i.id.clone(), e.clone())))
        .collect();
    v.extend(kb.out_of_scope.iter().map(|e| (OOS.to_string(), e.clone())));
    v
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub method: Method,
    pub items: usize,
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub top1: f64,
    pub top3: f64,
    pub macro_f1: f64,
    pub oos_rejected: f64,
    pub in_scope_rejected: f64,
    pub decisions: BTreeMap<String, f64>,
    /// Precision of `answer` decisions on in-scope texts.
    pub answer_precision: f64,
    pub confused: Vec<(String, String, usize)>,
    pub latency_ms: Latency,
}

/// One scored item kept for the report and for calibration.
pub struct Prediction {
    pub label: String,
    pub ranked: Vec<String>,
    pub scores: Scores,
}

struct Embedded {
    vectors: HashMap<String, Vec<f32>>,
}

fn embed_items(
    enc: &Embedder,
    prefix: &str,
    texts: &[&String],
    cache_dir: Option<&Path>,
) -> Result<Embedded> {
    let mut cache = EmbeddingCache::open(cache_dir, &format!("{}|{}", enc.identity(), prefix));
    let uniq: Vec<String> = {
        let mut s: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        s.sort();
        s.dedup();
        s
    };
    let vecs = cache.embed_all(enc, &uniq, "embedding")?;
    let _ = cache.save();
    Ok(Embedded {
        vectors: uniq.into_iter().zip(vecs).collect(),
    })
}

/// What cross-validation yields: predictions per method, and the last fold's
/// classifier with its test texts (for latency measurement).
pub struct CrossValidation {
    pub predictions: Vec<Vec<Prediction>>,
    pub last_classifier: Classifier,
    pub last_test: Vec<(String, String)>,
}

pub struct EvalSetup<'a> {
    pub encoder: Arc<Encoder>,
    pub cfg: ClassifierConfig,
    pub prefix: String,
    pub cache_dir: Option<&'a Path>,
    /// Always in the training part, never tested: the knowledge base's derived
    /// examples when evaluating it (empty for labelled files).
    pub extra_train: Vec<(String, String)>,
    /// Typos put into the tested texts: (rate per letter, seed).
    pub typos: Option<(f64, u64)>,
    /// Evaluate the tuned encoder: each training set's top layers are
    /// loaded from `otklik train`'s file beside the model when one matches,
    /// trained in memory otherwise (each fold of a cross-validation).
    pub tune: Option<(crate::config::TuneConfig, std::path::PathBuf)>,
}

impl EvalSetup<'_> {
    /// A tested text as the classifier sees it (with typos when asked).
    fn tested(&self, t: &str) -> String {
        match self.typos {
            Some((rate, seed)) => super::typos::with_typos(t, rate, seed),
            None => t.to_string(),
        }
    }

    /// The embedder for a training set: frozen, or with tuned top layers.
    fn embedder_for(&self, train: &[(String, String)]) -> Result<Embedder> {
        let Some((t, model)) = &self.tune else {
            return Ok(Embedder::frozen(self.encoder.clone()));
        };
        if let Some(tuned) = super::tune::find(model, &self.encoder, train, t)? {
            return Ok(Embedder {
                encoder: self.encoder.clone(),
                tuned: Some(tuned),
            });
        }
        super::tune::train_embedder(&self.encoder, train, &self.prefix, t)
    }

    fn classifier(
        &self,
        train: &[(String, String)],
        emb: &Embedded,
        embedder: &Embedder,
    ) -> Result<Classifier> {
        let kb = KnowledgeBase::from_labelled(train);
        let index: HashMap<&str, usize> = kb
            .intents
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.as_str(), i))
            .collect();
        let mut vectors = Vec::new();
        let mut labels = Vec::new();
        let texts: Vec<String> = train.iter().map(|(_, t)| t.clone()).collect();
        for (l, t) in train {
            vectors.push(emb.vectors[&format!("{}{t}", self.prefix)].clone());
            labels.push(if l == OOS {
                kb.intents.len()
            } else {
                index[l.as_str()]
            });
        }
        let oos = (!kb.out_of_scope.is_empty()).then_some(kb.intents.len());
        let opts = BuildOptions {
            cache_dir: None,
            prefix: &self.prefix,
            cache_entries: 1,
            tuned: embedder.tuned.clone(),
        };
        Classifier::from_vectors(
            self.encoder.clone(),
            &kb,
            &texts,
            &vectors,
            labels,
            oos,
            &self.cfg,
            &opts,
        )
    }

    fn predict(
        &self,
        clf: &Classifier,
        test: &[(String, String)],
        emb: &Embedded,
        methods: &[Method],
    ) -> Vec<Vec<Prediction>> {
        methods
            .iter()
            .map(|&m| {
                test.iter()
                    .map(|(l, t)| {
                        let t = self.tested(t);
                        let s =
                            clf.scores(Some(&t), &emb.vectors[&format!("{}{t}", self.prefix)], m);
                        let c = clf.decide(&s);
                        Prediction {
                            label: l.clone(),
                            ranked: c.top.iter().map(|x| x.intent.clone()).collect(),
                            scores: s,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Stratified K-fold cross-validation; one prediction list per method.
    pub fn cross_validate(
        &self,
        items: &[(String, String)],
        folds: usize,
        methods: &[Method],
    ) -> Result<CrossValidation> {
        if folds < 2 {
            bail!("--folds must be at least 2");
        }
        let tested: Vec<String> = items.iter().map(|(_, t)| self.tested(t)).collect();
        let texts: Vec<&String> = items
            .iter()
            .chain(&self.extra_train)
            .map(|(_, t)| t)
            .chain(&tested)
            .collect();
        let frozen = Embedder::frozen(self.encoder.clone());
        let emb = if self.tune.is_none() {
            Some(embed_items(&frozen, &self.prefix, &texts, self.cache_dir)?)
        } else {
            None
        };
        // Deterministic stratified assignment: the i-th item of a label (in a
        // seeded shuffle) goes to fold i mod K.
        let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (l, _)) in items.iter().enumerate() {
            by_label.entry(l).or_default().push(i);
        }
        let mut fold_of = vec![0usize; items.len()];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for idxs in by_label.values_mut() {
            for i in (1..idxs.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                idxs.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            for (k, &i) in idxs.iter().enumerate() {
                fold_of[i] = k % folds;
            }
        }
        let mut out: Vec<Vec<Prediction>> = methods.iter().map(|_| Vec::new()).collect();
        let bar = progress(folds as u64, "folds");
        let mut last = None;
        let mut last_test = Vec::new();
        for f in 0..folds {
            let train: Vec<(String, String)> = items
                .iter()
                .zip(&fold_of)
                .filter(|(_, &k)| k != f)
                .map(|(x, _)| x.clone())
                .chain(self.extra_train.iter().cloned())
                .collect();
            let test: Vec<(String, String)> = items
                .iter()
                .zip(&fold_of)
                .filter(|(_, &k)| k == f)
                .map(|(x, _)| x.clone())
                .collect();
            let (clf, fold_emb);
            let emb = match &emb {
                Some(e) => {
                    clf = self.classifier(&train, e, &frozen)?;
                    e
                }
                None => {
                    let embedder = self.embedder_for(&train)?;
                    let tested: Vec<String> = test.iter().map(|(_, t)| self.tested(t)).collect();
                    let texts: Vec<&String> = train.iter().map(|(_, t)| t).chain(&tested).collect();
                    fold_emb = embed_items(&embedder, &self.prefix, &texts, None)?;
                    clf = self.classifier(&train, &fold_emb, &embedder)?;
                    &fold_emb
                }
            };
            for (acc, preds) in out.iter_mut().zip(self.predict(&clf, &test, emb, methods)) {
                acc.extend(preds);
            }
            bar.inc(1);
            last = Some(clf);
            last_test = test;
        }
        bar.finish_and_clear();
        Ok(CrossValidation {
            predictions: out,
            last_classifier: last.unwrap(),
            last_test,
        })
    }

    /// Trains on `train`, scores `test`.
    pub fn train_test(
        &self,
        train: &[(String, String)],
        test: &[(String, String)],
        methods: &[Method],
    ) -> Result<(Vec<Vec<Prediction>>, Classifier)> {
        let train: Vec<(String, String)> = train.iter().chain(&self.extra_train).cloned().collect();
        let tested: Vec<String> = test.iter().map(|(_, t)| self.tested(t)).collect();
        let texts: Vec<&String> = train.iter().map(|(_, t)| t).chain(&tested).collect();
        let embedder = self.embedder_for(&train)?;
        let emb = embed_items(&embedder, &self.prefix, &texts, self.cache_dir)?;
        let clf = self.classifier(&train, &emb, &embedder)?;
        Ok((self.predict(&clf, test, &emb, methods), clf))
    }
}

/// Full classify latency (embedding included) over up to 200 texts.
pub fn measure_latency(clf: &Classifier, texts: &[(String, String)]) -> Latency {
    let mut ms: Vec<f64> = texts
        .iter()
        .take(200)
        .filter_map(|(_, t)| {
            let start = Instant::now();
            clf.classify(&format!("{t} ")).ok()?; // a fresh text: no cache hit
            Some(start.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((ms.len() - 1) as f64 * q).round() as usize]
        }
    };
    Latency {
        p50: pick(0.5),
        p95: pick(0.95),
    }
}

pub fn report(method: Method, clf: &Classifier, preds: &[Prediction], latency: Latency) -> Report {
    let mut decisions: BTreeMap<String, f64> = BTreeMap::new();
    let (
        mut in_scope,
        mut oos,
        mut top1,
        mut top3,
        mut oos_rej,
        mut in_rej,
        mut answered,
        mut answered_ok,
    ) = (0, 0, 0, 0, 0, 0, 0, 0);
    let mut tp: HashMap<&str, usize> = HashMap::new();
    let mut fp: HashMap<&str, usize> = HashMap::new();
    let mut fneg: HashMap<&str, usize> = HashMap::new();
    let mut confused: HashMap<(String, String), usize> = HashMap::new();
    for p in preds {
        let d = clf.decide(&p.scores).decision;
        *decisions.entry(d.as_str().to_string()).or_default() += 1.0;
        let first = p.ranked.first().map(String::as_str).unwrap_or("");
        if p.label == OOS {
            oos += 1;
            if d != Decision::Answer {
                oos_rej += 1;
            }
            continue;
        }
        in_scope += 1;
        if d == Decision::OutOfScope {
            in_rej += 1;
        }
        if d == Decision::Answer {
            answered += 1;
            if first == p.label {
                answered_ok += 1;
            }
        }
        if first == p.label {
            top1 += 1;
            *tp.entry(&p.label).or_default() += 1;
        } else {
            *fneg.entry(&p.label).or_default() += 1;
            *fp.entry(first).or_default() += 1;
            *confused
                .entry((p.label.clone(), first.to_string()))
                .or_default() += 1;
        }
        if p.ranked.iter().take(3).any(|r| *r == p.label) {
            top3 += 1;
        }
    }
    let labels: std::collections::BTreeSet<&str> = preds
        .iter()
        .filter(|p| p.label != OOS)
        .map(|p| p.label.as_str())
        .collect();
    let f1s: Vec<f64> = labels
        .iter()
        .map(|l| {
            let t = *tp.get(l).unwrap_or(&0) as f64;
            let denom =
                2.0 * t + *fp.get(l).unwrap_or(&0) as f64 + *fneg.get(l).unwrap_or(&0) as f64;
            if denom == 0.0 {
                0.0
            } else {
                2.0 * t / denom
            }
        })
        .collect();
    let total = preds.len().max(1) as f64;
    decisions.values_mut().for_each(|v| *v /= total);
    let mut confused: Vec<(String, String, usize)> =
        confused.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    confused.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    confused.truncate(10);
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Report {
        method,
        items: preds.len(),
        in_scope,
        out_of_scope: oos,
        top1: ratio(top1, in_scope),
        top3: ratio(top3, in_scope),
        macro_f1: if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        },
        oos_rejected: ratio(oos_rej, oos),
        in_scope_rejected: ratio(in_rej, in_scope),
        decisions,
        answer_precision: ratio(answered_ok, answered),
        confused,
        latency_ms: latency,
    }
}

impl Report {
    pub fn print(&self) {
        println!(
            "method {:?}: {} texts ({} in scope, {} out of scope)",
            self.method, self.items, self.in_scope, self.out_of_scope
        );
        println!("  top-1 accuracy       {:6.2} %", self.top1 * 100.0);
        println!("  top-3 accuracy       {:6.2} %", self.top3 * 100.0);
        println!("  macro-F1             {:6.3}", self.macro_f1);
        println!(
            "  answer precision     {:6.2} %",
            self.answer_precision * 100.0
        );
        if self.out_of_scope > 0 {
            println!(
                "  out of scope not answered {:6.2} %",
                self.oos_rejected * 100.0
            );
        }
        println!(
            "  in scope rejected    {:6.2} %",
            self.in_scope_rejected * 100.0
        );
        let d: Vec<String> = self
            .decisions
            .iter()
            .map(|(k, v)| format!("{k} {:.1} %", v * 100.0))
            .collect();
        println!("  decisions            {}", d.join(", "));
        if self.latency_ms.p50 > 0.0 {
            println!(
                "  classify latency     p50 {:.2} ms, p95 {:.2} ms",
                self.latency_ms.p50, self.latency_ms.p95
            );
        }
        if !self.confused.is_empty() {
            println!("  most confused (true → predicted):");
            for (a, b, n) in &self.confused {
                println!("    {n:3} × {a} → {b}");
            }
        }
    }
}

/// Blend weights and thresholds proposed by `eval --calibrate`.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub linear_weight: f32,
    pub lexical_weight: f32,
    pub answer_threshold: f32,
    pub answer_margin: f32,
    pub confirm_threshold: f32,
    pub alternatives_threshold: f32,
    pub utility: f64,
}

/// The blend weights (linear head against neighbour vote, lexical scorer
/// against both) that rank the true class first most often on
/// cross-validated predictions; ties go to the higher mean log-likelihood of
/// the true class. Predictions without their parts keep the configured weights.
pub fn calibrate_weights(clf: &Classifier, preds: &[Prediction]) -> (f32, f32) {
    let ids = clf.intent_ids();
    let class_of = |label: &str| -> Option<usize> {
        if label == OOS {
            Some(ids.len())
        } else {
            ids.iter().position(|i| i == label)
        }
    };
    let rows: Vec<(&super::classifier::Parts, usize, bool)> = preds
        .iter()
        .filter_map(|p| {
            Some((
                p.scores.parts.as_deref()?,
                class_of(&p.label)?,
                p.label == OOS,
            ))
        })
        .collect();
    if rows.is_empty() {
        return (clf.cfg.linear_weight, clf.cfg.lexical_weight);
    }
    let mut best = (
        clf.cfg.linear_weight,
        clf.cfg.lexical_weight,
        0usize,
        f64::NEG_INFINITY,
    );
    for wi in 0..=10 {
        for li in 0..=9 {
            let (w, l) = (wi as f32 / 10.0, li as f32 / 10.0);
            let (mut right, mut ll) = (0usize, 0f64);
            for (parts, y, is_oos) in &rows {
                let p = super::classifier::blend(parts, w, l);
                // In scope: the best intent, out-of-scope class aside; out of scope: the best class.
                let top = p
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| *is_oos || *c < ids.len())
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(c, _)| c);
                right += usize::from(top == Some(*y));
                ll += (p.get(*y).copied().unwrap_or(0.0).max(1e-6) as f64).ln();
            }
            if right > best.2 || (right == best.2 && ll > best.3) {
                best = (w, l, right, ll);
            }
        }
    }
    (best.0, best.1)
}

/// Grid search over thresholds on cross-validated predictions, after the
/// blend weights (`calibrate_weights`). The utility
/// rewards what helps a citizen and penalises a wrong answer most:
/// right answer +1, right confirm +0.5, alternatives holding the intent +0.3,
/// out-of-scope text admitted as such +0.5; wrong answer −3, out-of-scope
/// text answered −2, in-scope text rejected −0.5.
pub fn calibrate(clf: &Classifier, preds: &[Prediction]) -> Calibration {
    let grid = |lo: f32, hi: f32, step: f32| -> Vec<f32> {
        (0..)
            .map(|i| lo + step * i as f32)
            .take_while(|v| *v <= hi + 1e-6)
            .collect()
    };
    let (linear_weight, lexical_weight) = calibrate_weights(clf, preds);
    let mut best = Calibration {
        linear_weight,
        lexical_weight,
        answer_threshold: 0.0,
        answer_margin: 0.0,
        confirm_threshold: 0.0,
        alternatives_threshold: 0.0,
        utility: f64::NEG_INFINITY,
    };
    let ranked: Vec<(f32, f32, f32, bool, bool, bool)> = preds
        .iter()
        .map(|p| {
            let c = match &p.scores.parts {
                Some(parts) => clf.decide(&Scores {
                    probs: super::classifier::blend(parts, linear_weight, lexical_weight),
                    nearest_similarity: p.scores.nearest_similarity,
                    parts: None,
                }),
                None => clf.decide(&p.scores),
            };
            let p1 = c.top.first().map(|s| s.score).unwrap_or(0.0);
            let p2 = c.top.get(1).map(|s| s.score).unwrap_or(0.0);
            let first_ok = c.top.first().is_some_and(|s| s.intent == p.label);
            let top3_ok = c.top.iter().take(3).any(|s| s.intent == p.label);
            (
                p1,
                p2,
                c.out_of_scope_score,
                p.label == OOS,
                first_ok,
                top3_ok,
            )
        })
        .collect();
    let mut trial = clf.cfg.clone();
    for a in grid(0.3, 0.95, 0.05) {
        for m in grid(0.0, 0.5, 0.05) {
            for c in grid(0.1, a, 0.05) {
                for alt in grid(0.02, c, 0.02) {
                    trial.answer_threshold = a;
                    trial.answer_margin = m;
                    trial.confirm_threshold = c;
                    trial.alternatives_threshold = alt;
                    let mut u = 0.0;
                    for &(p1, p2, oos, is_oos, ok1, ok3) in &ranked {
                        let d = decision_for(&trial, p1, p2, oos, 3);
                        u += match (is_oos, d) {
                            (true, Decision::Answer) => -2.0,
                            (true, Decision::OutOfScope) => 0.5,
                            (true, _) => 0.0,
                            (false, Decision::Answer) => {
                                if ok1 {
                                    1.0
                                } else {
                                    -3.0
                                }
                            }
                            (false, Decision::Confirm) => {
                                if ok1 {
                                    0.5
                                } else {
                                    -0.5
                                }
                            }
                            (false, Decision::Alternatives) => {
                                if ok3 {
                                    0.3
                                } else {
                                    0.0
                                }
                            }
                            (false, Decision::OutOfScope) => -0.5,
                        };
                    }
                    if u > best.utility {
                        best = Calibration {
                            linear_weight,
                            lexical_weight,
                            answer_threshold: a,
                            answer_margin: m,
                            confirm_threshold: c,
                            alternatives_threshold: alt,
                            utility: u,
                        };
                    }
                }
            }
        }
    }
    best
}
