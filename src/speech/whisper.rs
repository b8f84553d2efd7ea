//! Whisper speech recognition on the CPU with candle-transformers: the
//! multilingual base model read from faster-whisper's CTranslate2 file
//! (`models/fetch whisper`), Russian forced, greedy decoding without
//! timestamps, the encoder run on the utterance's real length instead of a
//! padded 30 s, and two gates against Whisper's habit of inventing text from
//! silence and noise: its no-speech probability with the decoding's average
//! log-probability, and a list of phrases it makes up (subtitle credits).

use super::audio::{self, Pcm};
use super::ct2;
use super::Hints;
use anyhow::{Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, IndexOp, Module, Tensor, D};
use candle_transformers::models::whisper::{self as wm, quantized_model::Whisper as Model};
use candle_transformers::quantized_var_builder::VarBuilder;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokenizers::Tokenizer;

/// Whisper base: 6 + 6 layers of 512.
const LAYERS: usize = 6;
const D_MODEL: usize = 512;
/// Tokens a short utterance takes at most (a long one is cut, not looped).
const MAX_TOKENS: usize = 96;
/// The encoder sees at least this many 10 ms frames (a second). A full
/// 30 s window lowers the word error rate on the test set from 17.6 % to
/// 15.4 % but takes six times as long.
const MIN_FRAMES: usize = 100;
/// The hints' share of the prompt, in tokens.
const MAX_HINT_TOKENS: usize = 32;

pub struct Whisper {
    /// Copies of the model, so utterances of several calls are recognised
    /// at once instead of queueing behind one (each keeps its own caches).
    models: Vec<Mutex<Model>>,
    next: AtomicUsize,
    tokenizer: Tokenizer,
    filters: Vec<f32>,
    cfg: wm::Config,
    /// sot, <|ru|>, <|transcribe|>, <|notimestamps|>
    prompt: [u32; 4],
    /// <|startofprev|>: what precedes it biases recognition (the hints).
    prev: u32,
    eot: u32,
    no_speech: u32,
    /// Added to the logits: −∞ for special tokens, timestamps and the
    /// suppressed ones; and at the first step, also for end and a space.
    suppress: Tensor,
    suppress_first: Tensor,
    /// The token embeddings, which are also the output projection, as an
    /// 8-bit matmul (the model's own final_linear transposes 100 MB of f32
    /// embeddings at every token).
    proj: QMatMul,
}

/// What Whisper writes for noise or silence, learnt from subtitles.
const INVENTED: &[&str] = &[
    "субтитр",
    "продолжение следует",
    "спасибо за просмотр",
    "подписывайтесь",
    "редактор субтитров",
    "музыка",
    "аплодисменты",
    "динамичная музыка",
];

impl Whisper {
    /// Loads `dir`: model.bin (CTranslate2), tokenizer.json, config.json.
    /// The weights are quantised to 8 bits once and kept beside the model
    /// as `model-q8.gguf` (rebuilt when model.bin changes).
    pub fn load(dir: &Path, instances: usize) -> Result<Self> {
        let gguf = quantised(dir)?;
        let vb = VarBuilder::from_gguf_buffer(&gguf, &Device::Cpu)?;
        drop(gguf);
        let emb = vb.get_no_shape("model.decoder.embed_tokens.weight")?;
        let vocab = emb.shape().dims()[0];
        let extra: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        let ids = |k: &str| -> Vec<u32> {
            extra[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64())
                        .map(|v| v as u32)
                        .collect()
                })
                .unwrap_or_default()
        };
        let cfg = wm::Config {
            num_mel_bins: 80,
            max_source_positions: 1500,
            d_model: D_MODEL,
            encoder_attention_heads: 8,
            encoder_layers: LAYERS,
            vocab_size: vocab,
            max_target_positions: 448,
            decoder_attention_heads: 8,
            decoder_layers: LAYERS,
            suppress_tokens: ids("suppress_ids"),
        };
        let models = (0..instances.max(1))
            .map(|_| Ok(Mutex::new(Model::load(&vb, cfg.clone())?)))
            .collect::<Result<Vec<_>>>()?;
        let proj = QMatMul::from_arc(emb)?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("tokenizer.json: {e}"))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .with_context(|| format!("the tokenizer has no {t}"))
        };
        let eot = id(wm::EOT_TOKEN)?;
        let no_speech = wm::NO_SPEECH_TOKENS
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .context("the tokenizer has no no-speech token")?;
        let prev = id("<|startofprev|>")?;
        let prompt = [
            id(wm::SOT_TOKEN)?,
            id("<|ru|>")?,
            id(wm::TRANSCRIBE_TOKEN)?,
            id(wm::NO_TIMESTAMPS_TOKEN)?,
        ];
        let mask = |extra: &[u32]| -> Result<Tensor> {
            let v: Vec<f32> = (0..vocab as u32)
                .map(|i| {
                    if (i > eot) || cfg.suppress_tokens.contains(&i) || extra.contains(&i) {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            Ok(Tensor::new(v.as_slice(), &Device::Cpu)?)
        };
        let mut first = ids("suppress_ids_begin");
        first.push(eot);
        Ok(Self {
            suppress: mask(&[])?,
            suppress_first: mask(&first)?,
            models,
            next: AtomicUsize::new(0),
            tokenizer,
            filters: mel_filters(80, wm::N_FFT, wm::SAMPLE_RATE as f32),
            cfg,
            prompt,
            prev,
            eot,
            no_speech,
            proj,
        })
    }

    /// A free copy of the model, or the next one in turn when all are busy.
    fn model(&self) -> MutexGuard<'_, Model> {
        for m in &self.models {
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.models.len();
        self.models[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next token's logits at `pos` of the decoder's output.
    fn logits(&self, ys: &Tensor, pos: usize) -> Result<Tensor> {
        let x = ys.i((0, pos))?.unsqueeze(0)?;
        Ok(self.proj.forward(&x)?.squeeze(0)?)
    }

    /// The decoder's prompt: the hints as previous text (Whisper's own way
    /// of biasing towards a vocabulary), then sot, Russian, transcribe, no
    /// timestamps. Returns the tokens and where sot stands.
    fn prompt_for(&self, hints: &Hints) -> (Vec<u32>, usize) {
        let mut tokens = Vec::new();
        if !hints.phrases.is_empty() {
            let text = format!(" {}.", hints.phrases.join(", "));
            if let Ok(enc) = self.tokenizer.encode(text, false) {
                let ids = enc.get_ids();
                // Each step decodes the whole prompt again: keep it short.
                let ids = &ids[..ids.len().min(MAX_HINT_TOKENS)];
                tokens.push(self.prev);
                tokens.extend_from_slice(ids);
            }
        }
        let sot = tokens.len();
        tokens.extend_from_slice(&self.prompt);
        (tokens, sot)
    }

    /// What was said, or None for no words (silence, noise, nothing sure).
    pub fn transcribe(&self, pcm: &Pcm, hints: &Hints) -> Result<Option<String>> {
        let a = audio::resample(pcm, wm::SAMPLE_RATE as u32)?;
        if a.samples.len() < wm::SAMPLE_RATE / 5 {
            return Ok(None);
        }
        // 30 s is all the encoder takes.
        let n = a.samples.len().min(wm::N_SAMPLES);
        let samples: Vec<f32> = a.samples[..n].iter().map(|&s| s as f32 / 32768.0).collect();
        let mel = wm::audio::pcm_to_mel(&self.cfg, &samples, &self.filters);
        let n_len = mel.len() / self.cfg.num_mel_bins;
        // The utterance's own frames (even, for the stride-2 convolution),
        // plus a little silence so the last word is not cut.
        let frames = ((n / wm::HOP_LENGTH + 50).div_ceil(2) * 2)
            .clamp(MIN_FRAMES, wm::N_FRAMES)
            .min(n_len);
        let mel = Tensor::from_vec(mel, (1, self.cfg.num_mel_bins, n_len), &Device::Cpu)?
            .narrow(2, 0, frames)?;
        let mut model = self.model();
        let features = model.encoder.forward(&mel, true)?;
        let (mut tokens, sot) = self.prompt_for(hints);
        let start = tokens.len();
        let mut logprob = 0f64;
        let mut no_speech = 0f64;
        // Speech holds about 3 tokens a second; more is Whisper looping.
        let cap = (n / wm::SAMPLE_RATE * 8 + 12).min(MAX_TOKENS);
        for step in 0..cap {
            let t = Tensor::new(tokens.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let ys = model.decoder.forward(&t, &features, step == 0)?;
            if step == 0 {
                let first = self.logits(&ys, sot)?;
                let p = candle_nn::ops::softmax(&first, D::Minus1)?;
                no_speech = p.i(self.no_speech as usize)?.to_scalar::<f32>()? as f64;
            }
            let last = ys.dim(1)? - 1;
            let logits = self.logits(&ys, last)?;
            let mask = if step == 0 {
                &self.suppress_first
            } else {
                &self.suppress
            };
            let logits = (logits + mask)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let next = lp.argmax(D::Minus1)?.to_scalar::<u32>()?;
            logprob += lp.i(next as usize)?.to_scalar::<f32>()? as f64;
            if next == self.eot {
                break;
            }
            tokens.push(next);
            if let Some(cut) = repeated(&tokens[start..]) {
                tokens.truncate(start + cut);
                break;
            }
        }
        drop(model);
        let said = &tokens[start..];
        let avg = logprob / (said.len() + 1) as f64;
        if said.is_empty() || no_speech > wm::NO_SPEECH_THRESHOLD && avg < wm::LOGPROB_THRESHOLD {
            return Ok(None);
        }
        let text = self
            .tokenizer
            .decode(said, true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let text = text.trim().to_string();
        let low = text.to_lowercase();
        if text.is_empty() || INVENTED.iter().any(|w| low.contains(w)) {
            return Ok(None);
        }
        tracing::debug!("whisper: {text:?} (no speech {no_speech:.2}, log-prob {avg:.2})");
        Ok(Some(text))
    }
}

/// The model as 8-bit GGUF bytes: read from `model-q8.gguf` when it was made
/// from this model.bin (its size and first bytes' hash in the name of a
/// marker), else converted from the CTranslate2 file and saved.
fn quantised(dir: &Path) -> Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let src = dir.join("model.bin");
    let bytes = std::fs::read(&src)
        .with_context(|| format!("{} (make models fetches it)", src.display()))?;
    let stamp = hex::encode(&Sha256::digest(&bytes)[..8]);
    let out = dir.join(format!("model-q8-{stamp}.gguf"));
    if let Ok(b) = std::fs::read(&out) {
        return Ok(b);
    }
    let t = std::time::Instant::now();
    let ct = ct2::read(&bytes)?;
    drop(bytes);
    let tensors = ct2::whisper_names(&ct, LAYERS, D_MODEL)?;
    drop(ct);
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut q = Vec::with_capacity(names.len());
    for n in &names {
        // A fresh buffer: quantize reads the whole storage, and a split
        // projection is a view into its fused parent.
        let t = &tensors[*n];
        let t = Tensor::from_vec(t.flatten_all()?.to_vec1::<f32>()?, t.shape(), &Device::Cpu)?;
        let t = &t;
        // Matrices whose rows split into 32-value blocks become 8-bit; the
        // convolutions, norms, biases and positions stay f32.
        let dt = if t.rank() == 2 && t.dim(1)? % 32 == 0 && !n.contains("embed_positions") {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        q.push((n.as_str(), QTensor::quantize(t, dt)?));
    }
    let refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (*n, t)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &[], &refs)?;
    let buf = buf.into_inner();
    let tmp = out.with_extension("part");
    if std::fs::write(&tmp, &buf)
        .and_then(|_| std::fs::rename(&tmp, &out))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(
            "speech: cannot keep {}; converting at every start",
            out.display()
        );
    }
    tracing::info!(
        "speech: Whisper quantised in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(buf)
}

/// Where the text starts repeating itself (its last run of 3 or more
/// tokens said twice in a row): Whisper's loops on short audio.
fn repeated(t: &[u32]) -> Option<usize> {
    (3..=t.len() / 2)
        .find(|&k| t[t.len() - k..] == t[t.len() - 2 * k..t.len() - k])
        .map(|k| t.len() - k)
}

/// The mel filter bank Whisper was trained with (librosa's, Slaney's mel
/// scale and area normalisation), `n_mels` × (n_fft/2 + 1), row-major.
/// Computed instead of shipped: it is 40 lines and saves a data file.
pub fn mel_filters(n_mels: usize, n_fft: usize, rate: f32) -> Vec<f32> {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() / logstep
        } else {
            f / f_sp
        }
    };
    let mel_to_hz = |m: f64| {
        if m >= min_log_mel {
            min_log_hz * (logstep * (m - min_log_mel)).exp()
        } else {
            f_sp * m
        }
    };
    let bins = n_fft / 2 + 1;
    let fmax = rate as f64 / 2.0;
    let fft: Vec<f64> = (0..bins)
        .map(|i| fmax * i as f64 / (bins - 1) as f64)
        .collect();
    let top = hz_to_mel(fmax);
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (lo, mid, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, &f) in fft.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            w[m * bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_cut_where_it_starts() {
        assert_eq!(repeated(&[1, 2, 3, 4, 5, 6, 4, 5, 6]), Some(6));
        assert_eq!(repeated(&[1, 2, 3, 1, 2]), None);
        assert_eq!(repeated(&[7, 7]), None);
    }

    #[test]
    fn mel_filters_match_librosa() {
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): the first
        // weight of Whisper's mel_filters.npz, and the second filter at 80 Hz
        // worked out by hand from librosa's definition (centres 37.2, 74.5
        // and 111.7 Hz: 0.8513 of the peak, times 2 / 74.5 Hz)
        let f = mel_filters(80, 400, 16000.0);
        assert_eq!(f.len(), 80 * 201);
        let at = |m: usize, k: usize| f[m * 201 + k];
        assert!((at(0, 1) - 0.024_862_6).abs() < 1e-5, "{}", at(0, 1));
        assert!((at(1, 2) - 0.022_871_8).abs() < 1e-5, "{}", at(1, 2));
        // every filter has weight somewhere, and none is negative
        for m in 0..80 {
            assert!((0..201).any(|k| at(m, k) > 0.0), "filter {m}");
        }
        assert!(f.iter().all(|&x| x >= 0.0));
    }
}
