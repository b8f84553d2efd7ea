//! The retraining step of the trainers' loop: after accepted examples are
//! written, the encoder's top layers are tuned again (`otklik train`).

use crate::config::Config;
use crate::nlu::encoder::Encoder;
use crate::nlu::tune::Trained;
use std::sync::Arc;

/// `otklik train`: the encoder's top layers tuned on the knowledge base in
/// `cfg` and written beside the model (or in `tune.dir`); the run and the file.
pub fn train(
    cfg: &Config,
    encoder: &Arc<Encoder>,
    quiet: bool,
) -> anyhow::Result<(Trained, std::path::PathBuf)> {
    let kb = crate::nlu::load_kb(cfg)?;
    let items = crate::nlu::training_items(cfg, &kb);
    let (_, trained, path) = crate::nlu::tune::train_and_save(
        &cfg.model.path,
        encoder,
        &items,
        &cfg.model.query_prefix,
        &cfg.tune,
        quiet,
    )?;
    Ok((trained, path))
}

/// The retraining loop's `otklik train`: the encoder's top layers tuned on
/// the knowledge base as just written (when `[tune]` asks for it), so the
/// reload and the held-out score after it use them. A failure is logged and
/// leaves the frozen encoder in use.
pub fn retrain(cfg: &Config, encoder: &Arc<Encoder>) -> Option<Trained> {
    if !(cfg.tune.enabled && cfg.tune.after_accept) {
        return None;
    }
    match train(cfg, encoder, true) {
        Ok((trained, path)) => {
            tracing::info!(weights = %path.display(), seconds = trained.seconds, "encoder retrained");
            Some(trained)
        }
        Err(e) => {
            tracing::warn!("retraining the encoder failed, the frozen encoder runs: {e:#}");
            None
        }
    }
}
