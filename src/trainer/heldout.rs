//! The held-out check of a retraining round: the classifier trained on the
//! knowledge base as it is on disk, scored on the trainers' held-out file
//! (`kb.heldout_file`), so the review page and the loop can show the
//! before/after gain.

use crate::config::Config;
use crate::nlu::classifier::Method;
use crate::nlu::encoder::Encoder;
use crate::nlu::eval::{self, EvalSetup, Latency};
use anyhow::Result;
use serde::Serialize;
use std::sync::Arc;

/// The figures the trainer compares before and after.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    /// Whether the encoder's tuned top layers (`otklik train`) were used.
    pub tuned: bool,
    pub items: usize,
    /// Out-of-scope texts among `items`.
    pub out_of_scope: usize,
    pub top1: f64,
    pub top3: f64,
    pub macro_f1: f64,
    /// Out-of-scope texts not answered.
    pub oos_rejected: f64,
}

/// Scores the knowledge base in `cfg.kb.intents_dir` on the held-out file;
/// `None` when no held-out file is set or it does not exist.
pub fn score(cfg: &Config, encoder: Arc<Encoder>) -> Result<Option<Score>> {
    let path = &cfg.kb.heldout_file;
    if path.as_os_str().is_empty() || !path.exists() {
        return Ok(None);
    }
    let kb = crate::nlu::load_kb(cfg)?;
    let test = eval::read_labelled(path)?;
    let cache_dir = cfg.in_data_dir(&cfg.kb.cache_dir);
    // What `serve` would run: the tuned layers when a file matches, else frozen.
    let tuned = cfg.tune.enabled
        && crate::nlu::tune::find(
            &cfg.model.path,
            &encoder,
            &crate::nlu::training_items(cfg, &kb),
            &cfg.tune,
        )
        .ok()
        .flatten()
        .is_some();
    let setup = EvalSetup {
        encoder,
        cfg: cfg.classifier.clone(),
        prefix: cfg.model.query_prefix.clone(),
        cache_dir: Some(&cache_dir),
        extra_train: if cfg.classifier.derived_examples {
            kb.derived_items()
        } else {
            Vec::new()
        },
        typos: None,
        tune: tuned.then(|| (cfg.tune.clone(), cfg.model.path.clone())),
    };
    let (preds, clf) = setup.train_test(&eval::kb_items(&kb), &test, &[Method::Blend])?;
    let r = eval::report(
        Method::Blend,
        &clf,
        &preds[0],
        Latency { p50: 0.0, p95: 0.0 },
    );
    Ok(Some(Score {
        tuned,
        items: r.items,
        out_of_scope: r.out_of_scope,
        top1: r.top1,
        top3: r.top3,
        macro_f1: r.macro_f1,
        oos_rejected: r.oos_rejected,
    }))
}
