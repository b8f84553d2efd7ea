//! Speech recognition for every channel that hears a voice (the voice
//! robot, Telegram voice messages, the web chat's voice button): one `Asr`
//! trait over whole utterances, its engines, and `Hearing`, the one loaded
//! recogniser the channels share. `whisper` (the default) is Whisper base on
//! candle; `none` recognises nothing, so a caller is served by the keypad.
//! `audio` holds what speech in and out share: WAV, resampling, loudness;
//! `ogg` decodes Ogg Opus (Telegram's voice messages).

pub mod audio;
pub mod ct2;
pub mod ogg;
pub mod whisper;

use crate::config::SpeechConfig;
use anyhow::Result;
use audio::Pcm;
use std::sync::{Arc, RwLock};

/// What the dialog expects to hear next, to bias recognition towards it:
/// the offered options and their synonyms, «да» and «нет», digits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    pub phrases: Vec<String>,
}

pub trait Asr: Send + Sync {
    fn name(&self) -> &'static str;
    /// What was said in one utterance (mono, any rate): None for no words.
    /// Blocking: run it off the async runtime.
    fn recognise(&self, pcm: &Pcm, hints: &Hints) -> Result<Option<String>>;
}

impl Asr for whisper::Whisper {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn recognise(&self, pcm: &Pcm, hints: &Hints) -> Result<Option<String>> {
        self.transcribe(pcm, hints)
    }
}

/// Recognises nothing: the keypad serves the caller.
pub struct Keypad;

impl Asr for Keypad {
    fn name(&self) -> &'static str {
        "none"
    }

    fn recognise(&self, _pcm: &Pcm, _hints: &Hints) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The recogniser every channel shares, once loaded (loading takes a
/// second or two and happens in the background at start-up).
pub struct Hearing {
    asr: RwLock<Option<Arc<dyn Asr>>>,
}

/// Why nothing was heard.
#[derive(Debug, thiserror::Error)]
pub enum Unheard {
    /// No recogniser (still loading, or the settings say `none`).
    #[error("speech recognition is not available")]
    NoRecogniser,
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl Default for Hearing {
    fn default() -> Self {
        Self::new()
    }
}

impl Hearing {
    pub fn new() -> Self {
        Self {
            asr: RwLock::new(None),
        }
    }

    pub fn get(&self) -> Option<Arc<dyn Asr>> {
        self.asr.read().unwrap().clone()
    }

    pub fn set(&self, asr: Arc<dyn Asr>) {
        *self.asr.write().unwrap() = Some(asr);
    }

    /// What was said (None: no words), recognised off the async runtime.
    pub async fn recognise(&self, pcm: Pcm, hints: Hints) -> Result<Option<String>, Unheard> {
        let asr = self.get().ok_or(Unheard::NoRecogniser)?;
        match tokio::task::spawn_blocking(move || asr.recognise(&pcm, &hints)).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(Unheard::Failed(anyhow::anyhow!("recognition task: {e}"))),
        }
    }
}

/// The engine the settings name, loaded (blocking: a model is read).
pub fn engine(cfg: &SpeechConfig) -> Result<Arc<dyn Asr>> {
    Ok(match cfg.engine.as_str() {
        "whisper" => {
            let t = std::time::Instant::now();
            let w = whisper::Whisper::load(&cfg.whisper_dir, cfg.whisper_instances)?;
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
