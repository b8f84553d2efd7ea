//! Speech recognition for every channel that hears a voice (the voice
//! robot, Telegram voice messages, the web chat's voice button): one `Asr`
//! trait over whole utterances (and `Stream`, for an engine that recognises
//! while the caller speaks), its engines, and `Hearing`, the one loaded
//! recogniser the channels share. `whisper` (the default) is Whisper base on
//! candle; `vosk` is Vosk with an operator's model (streaming, with partial
//! results and a grammar of the expected phrases); `none` recognises
//! nothing, so a caller is served by the keypad. `audio` holds what speech
//! in and out share: WAV, resampling, loudness; `ogg` decodes Ogg Opus
//! (Telegram's voice messages).

pub mod audio;
pub mod ct2;
pub mod ogg;
pub mod vosk;
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
    /// A recognition fed as the caller speaks (audio at `rate`), for an
    /// engine that streams; None: the utterance is recognised whole.
    fn stream(&self, _rate: u32, _hints: &Hints) -> Result<Option<Box<dyn Stream>>> {
        Ok(None)
    }
    /// The pause that ends an utterance for this engine, when shorter than
    /// the channel's (a streaming engine has recognised it all by then).
    fn end_of_speech(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A recognition in progress. Blocking calls: run them off the runtime.
pub trait Stream: Send {
    /// More of the caller's audio; returns the words heard so far (empty:
    /// none yet).
    fn feed(&mut self, samples: &[i16]) -> Result<String>;
    /// The utterance is over: what was said, None for no words.
    fn finish(&mut self) -> Result<Option<String>>;
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
#[derive(Default)]
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

impl Hearing {
    pub fn get(&self) -> Option<Arc<dyn Asr>> {
        self.asr.read().unwrap().clone()
    }

    pub fn set(&self, asr: Arc<dyn Asr>) {
        *self.asr.write().unwrap() = Some(asr);
    }

    /// A streaming recognition, where the engine streams.
    pub fn stream(&self, rate: u32, hints: &Hints) -> Option<Box<dyn Stream>> {
        match self.get()?.stream(rate, hints) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("speech: cannot start a recognition: {e:#}");
                None
            }
        }
    }

    /// The loaded engine's own end-of-utterance pause, if it has one.
    pub fn end_of_speech(&self) -> Option<std::time::Duration> {
        self.get()?.end_of_speech()
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
        "vosk" => Arc::new(vosk::Vosk::load(
            &cfg.vosk_model,
            cfg.vosk_end_of_speech_ms,
        )?),
        "none" => Arc::new(Keypad),
        e => anyhow::bail!("[speech] engine {e:?}: whisper, vosk or none"),
    })
}
