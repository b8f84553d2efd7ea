//! Speech recognition for every channel that hears a voice (the voice
//! robot now; Telegram voice messages and the web chat's voice button next):
//! one `Asr` trait over whole utterances, and its engines. `whisper` (the
//! default) is Whisper base on candle; `none` recognises nothing, so a
//! caller is served by the keypad. `audio` holds what speech in and out
//! share: WAV, resampling, loudness.

pub mod audio;
pub mod ct2;
pub mod whisper;

use crate::config::SpeechConfig;
use anyhow::Result;
use audio::Pcm;
use std::sync::Arc;

pub trait Asr: Send + Sync {
    fn name(&self) -> &'static str;
    /// What was said in one utterance (mono, any rate): None for no words.
    /// Blocking: run it off the async runtime.
    fn recognise(&self, pcm: &Pcm) -> Result<Option<String>>;
}

impl Asr for whisper::Whisper {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn recognise(&self, pcm: &Pcm) -> Result<Option<String>> {
        self.transcribe(pcm)
    }
}

/// Recognises nothing: the keypad serves the caller.
pub struct Keypad;

impl Asr for Keypad {
    fn name(&self) -> &'static str {
        "none"
    }

    fn recognise(&self, _pcm: &Pcm) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The engine the settings name, loaded (blocking: a model is read).
pub fn engine(cfg: &SpeechConfig) -> Result<Arc<dyn Asr>> {
    Ok(match cfg.engine.as_str() {
        "whisper" => {
            let t = std::time::Instant::now();
            let w = whisper::Whisper::load(&cfg.whisper_dir)?;
            tracing::info!(
                "speech: Whisper loaded in {:.2} s",
                t.elapsed().as_secs_f64()
            );
            Arc::new(w)
        }
        "none" => Arc::new(Keypad),
        e => anyhow::bail!("[speech] engine {e:?}: whisper or none"),
    })
}
