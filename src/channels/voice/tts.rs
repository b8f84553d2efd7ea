//! Speech synthesis: one `Tts` trait, four engines, and a cache of what was
//! said. `festival` runs Debian's text2wave with the festvox-ru voice (the
//! default), `espeak` runs espeak-ng (the fallback), `command` runs any
//! program that reads text on stdin and writes WAV on stdout, and `http`
//! posts `{"text", "voice"}` to a synthesiser that answers with WAV. Every
//! engine's audio is resampled to the call's rate and cached by engine,
//! voice, rate and text, so the graph's fixed prompts (synthesised at
//! start-up) cost nothing when a call reaches them.

use crate::config::TtsConfig;
use crate::speech::audio::{self, Pcm};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub trait Tts: Send + Sync {
    /// The engine and voice, part of the cache key.
    fn id(&self) -> String;
    /// The text as speech (blocking; run off the async runtime).
    fn synth(&self, text: &str) -> Result<Pcm>;
}

/// The engine the settings name.
pub fn engine(cfg: &TtsConfig) -> Result<Arc<dyn Tts>> {
    let timeout = Duration::from_millis(cfg.timeout_ms.max(100));
    Ok(match cfg.engine.as_str() {
        "festival" => {
            let mut args = vec!["-o".to_string(), "-".to_string()];
            if !cfg.voice.is_empty() {
                args.extend(["-eval".into(), format!("({})", cfg.voice)]);
            }
            Arc::new(Fallback {
                first: Box::new(Command::new("festival", "text2wave", args, timeout)),
                then: Box::new(espeak("ru", timeout)),
            })
        }
        "espeak" => {
            let voice = if cfg.voice.is_empty() {
                "ru"
            } else {
                &cfg.voice
            };
            Arc::new(espeak(voice, timeout))
        }
        "command" => {
            let Some((prog, args)) = cfg.command.split_first() else {
                bail!("[voice.tts] engine = \"command\" needs `command` (a program and its arguments)");
            };
            Arc::new(Command::new("command", prog, args.to_vec(), timeout))
        }
        "http" => {
            if cfg.url.is_empty() {
                bail!("[voice.tts] engine = \"http\" needs `url`");
            }
            Arc::new(Http {
                url: cfg.url.clone(),
                voice: cfg.voice.clone(),
                agent: ureq::Agent::config_builder()
                    .timeout_global(Some(timeout))
                    .http_status_as_error(false)
                    .build()
                    .into(),
            })
        }
        e => bail!("[voice.tts] engine {e:?}: festival, espeak, command or http"),
    })
}

/// espeak-ng with `voice`, text on stdin, WAV on stdout.
fn espeak(voice: &str, timeout: Duration) -> Command {
    let args = ["-v", voice, "--stdin", "--stdout"]
        .map(String::from)
        .to_vec();
    Command::new("espeak", "espeak-ng", args, timeout)
}

/// A program that reads the text on stdin and writes WAV on stdout.
pub struct Command {
    name: &'static str,
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

impl Command {
    pub fn new(name: &'static str, program: &str, args: Vec<String>, timeout: Duration) -> Self {
        Self {
            name,
            program: program.to_string(),
            args,
            timeout,
        }
    }
}

impl Tts for Command {
    fn id(&self) -> String {
        format!("{}:{} {}", self.name, self.program, self.args.join(" "))
    }

    fn synth(&self, text: &str) -> Result<Pcm> {
        use std::io::{Read, Write};
        use std::process::{Command as Proc, Stdio};
        let mut child = Proc::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", self.program))?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let text = format!("{text}\n");
        let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let mut stdout = child.stdout.take().context("no stdout")?;
        // The output is read on a thread so a hung synthesiser is killed at
        // the timeout instead of holding the call.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = (&mut stdout)
                .take(audio::MAX_WAV_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map(|_| buf);
            let _ = tx.send(r);
        });
        let out = match rx.recv_timeout(self.timeout) {
            Ok(r) => r?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} took longer than {:?}", self.program, self.timeout);
            }
        };
        let status = child.wait()?;
        let _ = writer.join();
        if !status.success() {
            bail!("{} failed: {status}", self.program);
        }
        audio::read_wav(&out).with_context(|| format!("{}'s output", self.program))
    }
}

/// The first engine, and where it fails (not installed, no voice, a text
/// it cannot say) the second: festival, then espeak-ng.
pub struct Fallback {
    first: Box<dyn Tts>,
    then: Box<dyn Tts>,
}

impl Tts for Fallback {
    fn id(&self) -> String {
        self.first.id()
    }

    fn synth(&self, text: &str) -> Result<Pcm> {
        match self.first.synth(text) {
            Ok(p) if !p.samples.is_empty() => Ok(p),
            Ok(_) => self.then.synth(text),
            Err(e) => {
                tracing::warn!("voice: {e:#}; speaking with {}", self.then.id());
                self.then.synth(text)
            }
        }
    }
}

/// A synthesiser behind HTTP: POST {"text", "voice"}, WAV in the answer.
pub struct Http {
    url: String,
    voice: String,
    agent: ureq::Agent,
}

impl Tts for Http {
    fn id(&self) -> String {
        format!("http:{} {}", self.url, self.voice)
    }

    fn synth(&self, text: &str) -> Result<Pcm> {
        let mut r = self
            .agent
            .post(&self.url)
            .send_json(serde_json::json!({"text": text, "voice": self.voice}))
            .with_context(|| format!("synthesiser {}", self.url))?;
        if !r.status().is_success() {
            bail!("synthesiser {} answered {}", self.url, r.status());
        }
        let body = r
            .body_mut()
            .with_config()
            .limit(audio::MAX_WAV_BYTES as u64)
            .read_to_vec()?;
        audio::read_wav(&body)
    }
}

/// What was synthesised, at the call's rate, most recent last; bounded by
/// the samples it holds.
pub struct Cache {
    tts: Arc<dyn Tts>,
    inner: Mutex<CacheInner>,
    max_samples: usize,
    /// Where the graph's fixed texts are also kept, so a restart
    /// synthesises none of them again (raw 16-bit samples, one file a text).
    dir: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<[u8; 32], Arc<Vec<i16>>>,
    order: VecDeque<[u8; 32]>,
    samples: usize,
    hits: u64,
    misses: u64,
}

impl Cache {
    pub fn new(tts: Arc<dyn Tts>, max_mb: usize) -> Self {
        Self {
            tts,
            inner: Mutex::new(CacheInner::default()),
            max_samples: max_mb * 1024 * 1024 / 2,
            dir: None,
        }
    }

    /// Keeps synthesised audio in `dir` as well.
    pub fn on_disk(mut self, dir: std::path::PathBuf) -> Self {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!("voice: no speech cache in {}: {e}", dir.display());
            return self;
        }
        self.dir = Some(dir);
        self
    }

    fn read_disk(&self, k: &[u8; 32]) -> Option<Vec<i16>> {
        let b = std::fs::read(self.dir.as_ref()?.join(hex::encode(k))).ok()?;
        Some(
            b.chunks_exact(2)
                .map(|x| i16::from_le_bytes([x[0], x[1]]))
                .collect(),
        )
    }

    fn write_disk(&self, k: &[u8; 32], s: &[i16]) {
        let Some(dir) = &self.dir else { return };
        let name = hex::encode(k);
        let tmp = dir.join(format!("{name}.part"));
        let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
        if std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, dir.join(name)))
            .is_err()
        {
            let _ = std::fs::remove_file(tmp);
        }
    }

    fn key(&self, text: &str, rate: u32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.tts.id());
        h.update([0]);
        h.update(rate.to_le_bytes());
        h.update(text);
        h.finalize().into()
    }

    /// Whether the text is cached at the rate (no synthesis needed).
    pub fn has(&self, text: &str, rate: u32) -> bool {
        let k = self.key(text, rate);
        self.inner.lock().unwrap().map.contains_key(&k)
    }

    /// The text as samples at `rate` if it is in memory (no waiting).
    pub fn cached(&self, text: &str, rate: u32) -> Option<Arc<Vec<i16>>> {
        let k = self.key(text, rate);
        let mut c = self.inner.lock().unwrap();
        let a = c.map.get(&k).cloned()?;
        c.hits += 1;
        Some(a)
    }

    /// The text as samples at `rate` (blocking on a miss), kept in memory
    /// only: a turn's sentences may hold personal data (a name, a number),
    /// which must not outlive the conversation on disk.
    pub fn say(&self, text: &str, rate: u32) -> Result<Arc<Vec<i16>>> {
        self.fetch(text, rate, false)
    }

    /// A fixed text of the graph (no personal data): also kept on disk, so
    /// a restart synthesises none of them again.
    pub fn say_fixed(&self, text: &str, rate: u32) -> Result<Arc<Vec<i16>>> {
        self.fetch(text, rate, true)
    }

    fn fetch(&self, text: &str, rate: u32, keep: bool) -> Result<Arc<Vec<i16>>> {
        let k = self.key(text, rate);
        {
            let mut c = self.inner.lock().unwrap();
            if let Some(a) = c.map.get(&k).cloned() {
                c.hits += 1;
                return Ok(a);
            }
            c.misses += 1;
        }
        let samples = match self.read_disk(&k) {
            Some(s) => s,
            None => {
                let s = audio::resample(&self.tts.synth(text)?, rate)?.samples;
                if keep {
                    self.write_disk(&k, &s);
                }
                s
            }
        };
        let a = Arc::new(samples);
        let mut c = self.inner.lock().unwrap();
        if c.map.insert(k, a.clone()).is_none() {
            c.order.push_back(k);
            c.samples += a.len();
        }
        while c.samples > self.max_samples && c.order.len() > 1 {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(v) = c.map.remove(&old) {
                c.samples -= v.len();
            }
        }
        Ok(a)
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = self.inner.lock().unwrap();
        (c.hits, c.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tone(std::sync::atomic::AtomicUsize);
    impl Tts for Tone {
        fn id(&self) -> String {
            "tone".into()
        }
        fn synth(&self, text: &str) -> Result<Pcm> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Pcm {
                rate: 16000,
                samples: vec![1000; 16 * text.chars().count()],
            })
        }
    }

    #[test]
    fn the_cache_synthesises_once_per_text_and_rate_and_stays_bounded() {
        let t = Arc::new(Tone(Default::default()));
        let c = Cache::new(t.clone(), 1);
        let a = c.say("Здравствуйте", 8000).unwrap();
        assert_eq!(a.len(), 12 * 8);
        c.say("Здравствуйте", 8000).unwrap();
        assert!(c.has("Здравствуйте", 8000));
        assert!(!c.has("Здравствуйте", 16000));
        assert_eq!(c.counts(), (1, 1));
        // 1 MiB holds 524288 samples: a long text pushes the first one out
        c.say(&"а".repeat(70000), 8000).unwrap();
        assert!(!c.has("Здравствуйте", 8000));
        assert_eq!(t.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_restart_takes_what_was_said_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let t = Arc::new(Tone(Default::default()));
        let c = Cache::new(t.clone(), 1).on_disk(dir.path().join("tts"));
        let a = c.say_fixed("Слушаю Вас.", 8000).unwrap();
        // a turn's own sentence (a name, a number) stays in memory only
        c.say("Заявление 1234567, Петрова Анна.", 8000).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tts")).unwrap().count(),
            1
        );
        let c2 = Cache::new(t.clone(), 1).on_disk(dir.path().join("tts"));
        assert_eq!(c2.say("Слушаю Вас.", 8000).unwrap(), a);
        assert_eq!(t.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_missing_program_or_bad_settings_are_clear_errors() {
        let cmd = Command::new(
            "command",
            "/nonexistent/tts",
            vec![],
            Duration::from_secs(1),
        );
        assert!(format!("{:#}", cmd.synth("текст").unwrap_err()).contains("cannot run"));
        let cfg = TtsConfig {
            engine: "command".into(),
            ..Default::default()
        };
        assert!(engine(&cfg).is_err());
        let cfg = TtsConfig {
            engine: "sapi".into(),
            ..Default::default()
        };
        assert!(engine(&cfg).is_err());
        // a program that hangs is killed at the timeout
        let slow = Command::new(
            "command",
            "sleep",
            vec!["5".into()],
            Duration::from_millis(200),
        );
        let t = std::time::Instant::now();
        assert!(slow.synth("x").is_err());
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}

#[cfg(test)]
mod real {
    use super::*;

    /// Debian's festival with festvox-ru (installed by `make test`).
    #[test]
    fn festival_says_russian_at_the_calls_rate() {
        let e = engine(&TtsConfig::default()).unwrap();
        let pcm = e.synth("Здравствуйте! Чем могу помочь?").unwrap();
        assert!(
            pcm.duration_ms() > 1000 && pcm.duration_ms() < 6000,
            "{}",
            pcm.duration_ms()
        );
        let c = Cache::new(e, 8);
        let s = c.say("Здравствуйте! Чем могу помочь?", 8000).unwrap();
        assert!(s.len() > 8000);
        assert!(audio::level_db(&s) > -40.0, "speech is audible");
    }

    #[test]
    fn espeak_takes_over_where_festival_fails() {
        let f = Fallback {
            first: Box::new(Command::new(
                "festival",
                "/nonexistent/text2wave",
                vec![],
                Duration::from_secs(5),
            )),
            then: Box::new(espeak("ru", Duration::from_secs(5))),
        };
        let pcm = f.synth("Запись на приём").unwrap();
        assert!(pcm.duration_ms() > 500, "{}", pcm.duration_ms());
    }
}
