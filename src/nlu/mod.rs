//! Natural-language understanding: the sentence encoder and its tokenizer,
//! the knowledge base, the example index, and the intent classifier that turns
//! a citizen's message into a decision the dialog can act on.

pub mod classifier;
pub mod e5file;
pub mod eligibility;
pub mod encoder;
pub mod eval;
pub mod index;
pub mod kb;
pub mod layers;
pub mod lexical;
pub mod packed;
pub mod q4;
pub mod source;
pub mod tokenizer;
pub mod tune;
pub mod typos;

use crate::config::{Config, ModelKind};
use anyhow::{Context, Result};
use classifier::{BuildOptions, Classifier};
use encoder::Encoder;
use kb::KnowledgeBase;
use std::sync::Arc;

/// The loaded knowledge base and the classifier trained on it.
pub struct Nlu {
    pub kb: KnowledgeBase,
    pub classifier: Classifier,
}

/// Hands memory freed after loading back to the OS. Building the tokenizer
/// and the index allocates and frees hundreds of thousands of small strings;
/// glibc keeps those pages otherwise, ~60 MB of resident memory for nothing.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads the configured encoder.
pub fn load_encoder(cfg: &Config) -> Result<Arc<Encoder>> {
    let m = &cfg.model;
    let enc = match m.kind {
        ModelKind::E5File => {
            if !m.path.exists() {
                anyhow::bail!(
                    "model file {} is missing: run `make models` (or models/fetch) first",
                    m.path.display()
                );
            }
            Encoder::from_e5_file(&m.path, m.weights, m.vocab)?
        }
        ModelKind::Hf => Encoder::from_hf_dir(&m.path, m.pooling)?,
    };
    release_freed_memory();
    Ok(Arc::new(enc))
}

pub fn load_kb(cfg: &Config) -> Result<KnowledgeBase> {
    KnowledgeBase::load_dir(&cfg.kb.intents_dir, cfg.kb.min_examples, &cfg.kb.segments)
}

/// What the classifier and `otklik train` learn from: the knowledge base's
/// examples and negatives, and its derived examples when configured.
pub fn training_items(cfg: &Config, kb: &KnowledgeBase) -> Vec<(String, String)> {
    let mut items = eval::kb_items(kb);
    if cfg.classifier.derived_examples {
        items.extend(kb.derived_items());
    }
    items
}

impl Nlu {
    /// Loads the knowledge base and builds the classifier with `encoder`.
    pub fn load(cfg: &Config, encoder: Arc<Encoder>) -> Result<Self> {
        let kb = load_kb(cfg)?;
        let cache_dir = cfg.in_data_dir(&cfg.kb.cache_dir);
        let tuned = if cfg.tune.enabled {
            match tune::find(
                &cfg.model.path,
                &encoder,
                &training_items(cfg, &kb),
                &cfg.tune,
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("tuned layers not loaded, the frozen encoder runs: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        match &tuned {
            Some(t) => {
                tracing::info!(key = %t.key, layers = t.layers.len(), "tuned top layers loaded")
            }
            None => tracing::info!(
                "no tuned layers for this knowledge base (`otklik train`): the frozen encoder runs"
            ),
        }
        let opts = BuildOptions {
            cache_dir: Some(&cache_dir),
            prefix: &cfg.model.query_prefix,
            cache_entries: cfg.model.cache_entries,
            tuned,
        };
        let classifier = Classifier::build(encoder, &kb, &cfg.classifier, &opts)
            .context("building the classifier")?;
        Ok(Self { kb, classifier })
    }
}
