//! The `vosk` engine: Vosk (Kaldi) with an operator's model, through the
//! `vosk` crate (the library is PyPI's vosk wheel, linked by build.rs). It
//! streams: audio is fed as the caller speaks, partial results come back at
//! once, Vosk's own endpointing splits long speech, and the utterance is
//! final as soon as it ends. Where the dialog expects certain phrases (the
//! hints: options, «да», «нет»), a second recogniser restricted to them (a
//! Vosk grammar) runs beside the free one, and its phrase wins when it heard
//! one; otherwise the free text stands, so a caller who says something else
//! is still understood.

use super::audio::Pcm;
use super::{Asr, Hints, Stream};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;
use vosk::{CompleteResult, DecodingState, Model, Recognizer};

/// What Vosk writes for speech outside a grammar.
const UNKNOWN: &str = "[unk]";

pub struct Vosk {
    model: Model,
    end_of_speech: Duration,
}

impl Vosk {
    /// Loads the model folder (am/, graph/, conf/ …).
    pub fn load(dir: &Path, end_of_speech_ms: u64) -> Result<Self> {
        vosk::set_log_level(vosk::LogLevel::Error);
        let path = dir
            .to_str()
            .with_context(|| format!("{}: not a UTF-8 path", dir.display()))?;
        anyhow::ensure!(
            dir.join("am").is_dir() || dir.join("final.mdl").exists(),
            "{}: no Vosk model there ([speech] vosk_model)",
            dir.display()
        );
        let model = Model::new(path).with_context(|| format!("Vosk cannot load {path}"))?;
        Ok(Self {
            model,
            end_of_speech: Duration::from_millis(end_of_speech_ms.max(100)),
        })
    }

    fn open(&self, rate: u32, hints: &Hints) -> Result<VoskStream> {
        let free = Recognizer::new(&self.model, rate as f32).context("Vosk recogniser")?;
        let grammar = if hints.phrases.is_empty() {
            None
        } else {
            let mut g: Vec<&str> = hints.phrases.iter().map(String::as_str).collect();
            g.push(UNKNOWN);
            // A model without a dynamic graph takes no grammar: free only.
            Recognizer::new_with_grammar(&self.model, rate as f32, &g)
        };
        Ok(VoskStream {
            free: Part::new(free),
            grammar: grammar.map(Part::new),
        })
    }
}

impl Asr for Vosk {
    fn name(&self) -> &'static str {
        "vosk"
    }

    fn recognise(&self, pcm: &Pcm, hints: &Hints) -> Result<Option<String>> {
        let mut s = self.open(pcm.rate, hints)?;
        for chunk in pcm.samples.chunks(pcm.rate as usize / 10) {
            s.feed(chunk)?;
        }
        s.finish()
    }

    fn stream(&self, rate: u32, hints: &Hints) -> Result<Option<Box<dyn Stream>>> {
        Ok(Some(Box::new(self.open(rate, hints)?)))
    }

    fn end_of_speech(&self) -> Option<Duration> {
        Some(self.end_of_speech)
    }
}

/// One recogniser and the segments it finalised (Vosk's endpointing).
struct Part {
    rec: Recognizer,
    done: Vec<String>,
}

impl Part {
    fn new(rec: Recognizer) -> Self {
        Self {
            rec,
            done: Vec::new(),
        }
    }

    fn feed(&mut self, samples: &[i16]) -> Result<String> {
        let state = self
            .rec
            .accept_waveform(samples)
            .map_err(|e| anyhow::anyhow!("Vosk: {e}"))?;
        let now = match state {
            DecodingState::Finalized => {
                let t = text(self.rec.result());
                if !t.is_empty() {
                    self.done.push(t);
                }
                String::new()
            }
            DecodingState::Running => clean(self.rec.partial_result().partial),
            DecodingState::Failed => anyhow::bail!("Vosk failed to decode"),
        };
        Ok(join(&self.done, &now))
    }

    fn finish(&mut self) -> String {
        let last = text(self.rec.final_result());
        let all = join(&self.done, &last);
        self.done.clear();
        all
    }
}

struct VoskStream {
    free: Part,
    grammar: Option<Part>,
}

impl Stream for VoskStream {
    fn feed(&mut self, samples: &[i16]) -> Result<String> {
        let free = self.free.feed(samples)?;
        match &mut self.grammar {
            Some(g) => {
                let expected = g.feed(samples)?;
                Ok(if expected.is_empty() { free } else { expected })
            }
            None => Ok(free),
        }
    }

    fn finish(&mut self) -> Result<Option<String>> {
        let free = self.free.finish();
        let expected = self.grammar.as_mut().map(Part::finish).unwrap_or_default();
        let t = if expected.is_empty() { free } else { expected };
        Ok((!t.is_empty()).then_some(t))
    }
}

fn text(r: CompleteResult) -> String {
    match r {
        CompleteResult::Single(s) => clean(s.text),
        CompleteResult::Multiple(m) => m
            .alternatives
            .first()
            .map(|a| clean(a.text))
            .unwrap_or_default(),
    }
}

/// The words without Vosk's marker of speech outside the grammar.
fn clean(t: &str) -> String {
    t.split_whitespace()
        .filter(|w| *w != UNKNOWN)
        .collect::<Vec<_>>()
        .join(" ")
}

fn join(done: &[String], now: &str) -> String {
    done.iter()
        .map(String::as_str)
        .chain((!now.is_empty()).then_some(now))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_words_are_dropped_and_segments_joined() {
        assert_eq!(clean("[unk] да [unk]"), "да");
        assert_eq!(clean("[unk]"), "");
        assert_eq!(join(&["один".into(), "два".into()], "три"), "один два три");
        assert_eq!(join(&["один".into()], ""), "один");
        assert_eq!(join(&[], ""), "");
    }
}
