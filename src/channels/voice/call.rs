//! One call, from Asterisk's first message to the hangup. A reader task
//! turns the socket into events; the call's loop speaks the turns in 20 ms
//! frames paced by the clock (never faster than real time), hears the caller
//! (keypad keys as AudioSocket messages or as tones in the audio, speech by
//! loudness), and runs a turn through the pipeline on a key, a number typed
//! and ended by «#» or a pause, an utterance, or silence. Every timer runs
//! on the clock, so missing frames (a phone that sends none while its user
//! is silent) count as silence. Speech or a key while the robot speaks stops
//! it (barge-in). When a turn hands the call over or ends it, the robot says
//! its last words, sends a hangup message and closes; a caller who hangs up
//! leaves nothing running.

use super::audiosocket::{self, Message};
use super::{dtmf, say, Live, Outcome, Running, Voice, NAME};
use crate::channels::pipeline::{TurnError, TurnRequest};
use crate::channels::Channel;
use crate::dialog::{Action, Input, Turn};
use crate::speech::audio::{self, frame_len, Pcm};
use crate::speech::{Hints, Stream, Unheard};
use crate::store::SessionKey;
use anyhow::{bail, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How long Asterisk has to name the call after connecting.
const UUID_WAIT: Duration = Duration::from_secs(5);
/// A write the caller's side does not take in this long ends the call.
const WRITE_WAIT: Duration = Duration::from_secs(2);

/// What the caller is likely to say after `turn` (its options).
fn expected(turn: Option<&Turn>) -> Hints {
    crate::channels::expected(turn.map(|t| t.choices.as_slice()).unwrap_or_default())
}

/// What the recogniser heard; a failure is logged and heard as nothing.
fn heard(r: std::result::Result<Option<String>, Unheard>) -> Option<String> {
    match r {
        Ok(t) => t,
        Err(Unheard::NoRecogniser) => None,
        Err(e) => {
            tracing::error!("voice: recognition failed: {e:#}");
            None
        }
    }
}

/// No place for another call: hang up at once.
pub async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(
        WRITE_WAIT,
        audiosocket::write(&mut stream, &Message::Hangup),
    )
    .await;
    let _ = stream.shutdown().await;
}

enum Event {
    Audio(u32, Vec<i16>),
    Key(char),
    Closed,
}

/// The reader: Asterisk's messages as events, until the socket closes.
async fn read_loop(mut rd: OwnedReadHalf, tx: mpsc::Sender<Event>) {
    loop {
        let ev = match audiosocket::read(&mut rd).await {
            Ok(Some(Message::Audio { rate, samples })) => Event::Audio(rate, samples),
            Ok(Some(Message::Dtmf(k))) => Event::Key(k),
            Ok(Some(Message::Uuid(_))) => continue,
            Ok(Some(Message::Error(code))) => {
                tracing::warn!("voice: Asterisk reports error {code:?}");
                continue;
            }
            Ok(Some(Message::Hangup)) | Ok(None) => Event::Closed,
            Err(e) => {
                tracing::warn!("voice: {e}");
                Event::Closed
            }
        };
        let closed = matches!(ev, Event::Closed);
        if tx.send(ev).await.is_err() || closed {
            return;
        }
    }
}

/// Aborts the reader and leaves the call's outcome when the call ends, on
/// every way out (a hangup, an error, a panic).
struct Leave {
    v: Arc<Voice>,
    uuid: String,
    reader: JoinHandle<()>,
    outcome: Outcome,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.reader.abort();
        self.v.finish(&self.uuid, self.outcome.clone());
    }
}

pub async fn run(v: Arc<Voice>, stream: TcpStream, _place: Running) -> Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let uuid = match tokio::time::timeout(UUID_WAIT, audiosocket::read(&mut rd)).await {
        Ok(Ok(Some(Message::Uuid(id)))) => audiosocket::uuid_string(&id),
        other => {
            let _ = audiosocket::write(&mut wr, &Message::Hangup).await;
            bail!("the call did not start with its UUID: {other:?}");
        }
    };
    let (tx, mut events) = mpsc::channel(256);
    let reader = tokio::spawn(read_loop(rd, tx));
    let (turns, mut pushed) = mpsc::channel(8);
    let (keys, mut pressed) = mpsc::channel(16);
    v.register(&uuid, Live { turns, keys });
    let mut leave = Leave {
        v: v.clone(),
        uuid: uuid.clone(),
        reader,
        outcome: Outcome {
            outcome: "hangup".into(),
            queue: None,
            intent: None,
        },
    };
    let mut call = Call::new(v, SessionKey::new(NAME, uuid), wr);
    let r = call.serve(&mut events, &mut pushed, &mut pressed).await;
    leave.outcome = call.outcome;
    r
}

struct Call {
    v: Arc<Voice>,
    key: SessionKey,
    wr: OwnedWriteHalf,
    /// The caller's sample rate (from their audio; 8 kHz until then).
    rate: u32,
    /// Sentences still to synthesise, the one being synthesised, and the
    /// samples ready to play.
    to_say: VecDeque<String>,
    synth: Option<JoinHandle<Result<Arc<Vec<i16>>>>>,
    playing: VecDeque<i16>,
    speaking: bool,
    /// Since when the robot waits for the caller (none while it speaks).
    listening: Option<Instant>,
    /// Loud frames in a row (ms) before speech counts, and the utterance.
    voiced_ms: u64,
    speech: Option<Speech>,
    /// The caller's last 400 ms, so an utterance keeps the start of its
    /// first word (speech counts only after `barge_in_ms` of it).
    recent: VecDeque<i16>,
    digits: String,
    digit_at: Option<Instant>,
    tones: dtmf::Detector,
    /// The last turn spoken: its options decide whether a key is a choice.
    last: Option<Turn>,
    /// Set by a handoff or the end: hang up once the last words are said.
    ending: Option<&'static str>,
    outcome: Outcome,
}

struct Speech {
    started: Instant,
    last_voice: Instant,
    samples: Vec<i16>,
    /// The samples up to the last loud frame.
    voiced: usize,
    /// Recognition started early, at a short pause, on the samples up to
    /// `voiced` then: used at the end of the utterance if the caller said
    /// nothing more, so the answer does not wait for the whole pause plus
    /// the recognition.
    early: Option<(usize, JoinHandle<Option<String>>)>,
    /// A streaming engine's recognition, fed frame by frame.
    feed: Option<Feed>,
}

impl Speech {
    /// More of the utterance's audio (`loud`: the caller's voice), also to
    /// the streaming recognition.
    fn push(&mut self, samples: &[i16], loud: bool) {
        self.samples.extend_from_slice(samples);
        if loud {
            self.voiced = self.samples.len();
        }
        if let Some(f) = &self.feed {
            let _ = f.audio.send(samples.to_vec());
        }
    }
}

/// A streaming recognition (Vosk) fed as the caller speaks, on a blocking
/// thread of its own for the utterance: frames go in, a flag says when
/// words have been heard, and the text comes back once the audio stops.
struct Feed {
    audio: std::sync::mpsc::Sender<Vec<i16>>,
    /// Words were heard (a partial result): the caller really speaks.
    words: Arc<AtomicBool>,
    job: JoinHandle<Option<String>>,
}

impl Feed {
    fn start(mut stream: Box<dyn Stream>) -> Self {
        let (audio, frames) = std::sync::mpsc::channel::<Vec<i16>>();
        let words = Arc::new(AtomicBool::new(false));
        let heard_words = words.clone();
        let job = tokio::task::spawn_blocking(move || {
            for f in frames {
                match stream.feed(&f) {
                    Ok(w) if !w.trim().is_empty() => heard_words.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("voice: recognition failed: {e:#}");
                        return None;
                    }
                }
            }
            stream.finish().unwrap_or_else(|e| {
                tracing::error!("voice: recognition failed: {e:#}");
                None
            })
        });
        Self { audio, words, job }
    }

    /// Whether words have been heard by now.
    fn words_heard(&self) -> bool {
        self.words.load(Ordering::Relaxed)
    }

    /// The audio is over: what was said.
    async fn text(self) -> Option<String> {
        drop(self.audio);
        self.job.await.unwrap_or(None)
    }
}

impl Call {
    fn new(v: Arc<Voice>, key: SessionKey, wr: OwnedWriteHalf) -> Self {
        Self {
            v,
            key,
            wr,
            rate: 8000,
            to_say: VecDeque::new(),
            synth: None,
            playing: VecDeque::new(),
            speaking: false,
            listening: None,
            voiced_ms: 0,
            speech: None,
            recent: VecDeque::new(),
            digits: String::new(),
            digit_at: None,
            tones: dtmf::Detector::new(8000),
            last: None,
            ending: None,
            outcome: Outcome {
                outcome: "hangup".into(),
                queue: None,
                intent: None,
            },
        }
    }

    async fn serve(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
        pushed: &mut mpsc::Receiver<Turn>,
        pressed: &mut mpsc::Receiver<char>,
    ) -> Result<()> {
        self.turn(Input::Start).await;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        // Late ticks are skipped, not bunched: frames never go out faster
        // than real time, and the schedule does not drift.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(Event::Audio(rate, samples)) => self.heard(rate, &samples).await,
                    Some(Event::Key(k)) => self.key(k).await,
                    Some(Event::Closed) | None => return Ok(()),
                },
                Some(t) = pushed.recv() => self.speak(t),
                Some(k) = pressed.recv() => self.key(k).await,
                _ = tick.tick() => {
                    if self.frame().await? {
                        return Ok(());
                    }
                    self.timers().await;
                }
            }
        }
    }

    /// One 20 ms frame of what the robot says; true when the call is over
    /// (the last words of a handoff or an end said, hangup sent).
    async fn frame(&mut self) -> Result<bool> {
        if self.synth.as_ref().is_some_and(|h| h.is_finished()) {
            let h = self.synth.take().unwrap();
            match h.await {
                Ok(Ok(s)) => self.playing.extend(s.iter()),
                Ok(Err(e)) => tracing::error!("voice: synthesis failed: {e:#}"),
                Err(e) => tracing::error!("voice: synthesis task: {e}"),
            }
        }
        if self.synth.is_none() {
            // Sentences in memory are queued to play at once (a fixed
            // prompt is the answer's first sentence more often than not);
            // the first that is not is synthesised off the runtime while
            // the ones before it play.
            while let Some(s) = self.to_say.pop_front() {
                if let Some(a) = self.v.speech.cached(&s, self.rate) {
                    self.playing.extend(a.iter());
                    continue;
                }
                let (speech, rate) = (self.v.speech.clone(), self.rate);
                self.synth = Some(tokio::task::spawn_blocking(move || speech.say(&s, rate)));
                break;
            }
        }
        let n = frame_len(self.rate);
        if !self.playing.is_empty() {
            let mut f: Vec<i16> = self.playing.drain(..n.min(self.playing.len())).collect();
            f.resize(n, 0);
            self.send(&Message::Audio {
                rate: self.rate,
                samples: f,
            })
            .await?;
        } else if self.speaking && self.synth.is_none() && self.to_say.is_empty() {
            self.speaking = false;
            self.listening = Some(Instant::now());
            if let Some(how) = self.ending {
                self.outcome.outcome = how.into();
                if how == "handoff" {
                    self.outcome.queue = Some(self.v.cfg.queue.clone());
                }
                self.send(&Message::Hangup).await?;
                let _ = self.wr.shutdown().await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn send(&mut self, m: &Message) -> Result<()> {
        match tokio::time::timeout(WRITE_WAIT, audiosocket::write(&mut self.wr, m)).await {
            Ok(r) => Ok(r?),
            Err(_) => bail!("Asterisk stopped reading the call's audio"),
        }
    }

    /// Stops the robot mid-sentence (the caller speaks or presses a key).
    fn barge_in(&mut self) {
        if self.speaking && self.ending.is_none() {
            tracing::debug!("voice {}: the caller barges in", self.key);
            self.to_say.clear();
            self.synth = None;
            self.playing.clear();
            self.speaking = false;
            self.listening = Some(Instant::now());
        }
    }

    async fn heard(&mut self, rate: u32, samples: &[i16]) {
        if rate != self.rate {
            self.rate = rate;
            self.tones = dtmf::Detector::new(rate);
        }
        for k in self.tones.feed(samples) {
            self.key(k).await;
        }
        let ms = samples.len() as u64 * 1000 / rate.max(1) as u64;
        let now = Instant::now();
        let keep = rate as usize * 2 / 5;
        self.recent.extend(samples.iter().copied());
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
        if audio::level_db(samples) > self.v.cfg.speech_db {
            self.voiced_ms += ms;
            match &mut self.speech {
                Some(s) => {
                    s.last_voice = now;
                    s.push(samples, true);
                }
                None if self.voiced_ms >= self.v.cfg.barge_in_ms => {
                    let hints = expected(self.last.as_ref());
                    let feed = self.v.p.speech.stream(rate, &hints).map(Feed::start);
                    tracing::debug!(
                        "voice {}: speech starts ({})",
                        self.key,
                        if feed.is_some() { "streamed" } else { "whole" }
                    );
                    // Loudness stops the robot; a streaming engine waits
                    // for words, so a cough or the line's noise does not.
                    if feed.is_none() {
                        self.barge_in();
                    }
                    let mut s = Speech {
                        started: now,
                        last_voice: now,
                        samples: Vec::new(),
                        voiced: 0,
                        early: None,
                        feed,
                    };
                    s.push(self.recent.make_contiguous(), true);
                    self.speech = Some(s);
                }
                None => {}
            }
        } else {
            self.voiced_ms = 0;
            if let Some(s) = &mut self.speech {
                s.push(samples, false);
            }
        }
    }

    async fn key(&mut self, k: char) {
        self.barge_in();
        self.speech = None;
        let choices = self.last.as_ref().is_some_and(|t| !t.choices.is_empty());
        if self.digits.is_empty() && (k == '0' || choices) && k.is_ascii_digit() {
            self.turn(Input::Dtmf(k.to_string())).await;
            return;
        }
        match k {
            '#' => {
                if !self.digits.is_empty() {
                    let d = std::mem::take(&mut self.digits);
                    self.turn(Input::Dtmf(d)).await;
                }
            }
            '*' => self.digits.clear(),
            d => {
                self.digits.push(d);
                self.digit_at = Some(Instant::now());
            }
        }
    }

    /// The clock's events: the end of an utterance, a number's pause, silence.
    async fn timers(&mut self) {
        let now = Instant::now();
        let cfg = &self.v.cfg;
        let streamed_pause = self.v.p.speech.end_of_speech();
        if let Some(s) = &mut self.speech {
            let quiet = now - s.last_voice;
            let pause = match (&s.feed, streamed_pause) {
                (Some(_), Some(p)) => p,
                _ => Duration::from_millis(cfg.end_of_speech_ms),
            };
            let paused = quiet >= pause;
            let long = now - s.started >= Duration::from_millis(cfg.max_utterance_ms);
            let words = s.feed.as_ref().is_some_and(Feed::words_heard);
            let stale = s.early.as_ref().is_some_and(|(n, _)| *n != s.voiced);
            if stale {
                // The caller went on: what was recognised early is not all.
                s.early = None;
            }
            if s.feed.is_none()
                && s.early.is_none()
                && !paused
                && !long
                && quiet >= Duration::from_millis(cfg.early_recognition_ms)
            {
                let pcm = Pcm {
                    rate: self.rate,
                    samples: s.samples.clone(),
                };
                let (speech, hints) = (self.v.p.speech.clone(), expected(self.last.as_ref()));
                let job = tokio::spawn(async move { heard(speech.recognise(pcm, hints).await) });
                s.early = Some((s.voiced, job));
            }
            if words {
                self.barge_in();
            }
            if paused || long {
                let s = self.speech.take().unwrap();
                let streamed = s.feed.is_some();
                let text = match (s.feed, s.early) {
                    (Some(f), _) => f.text().await,
                    (None, Some((n, job))) if n == s.voiced => job.await.unwrap_or(None),
                    _ => {
                        let pcm = Pcm {
                            rate: self.rate,
                            samples: s.samples,
                        };
                        let hints = expected(self.last.as_ref());
                        heard(self.v.p.speech.recognise(pcm, hints).await)
                    }
                };
                if streamed && text.is_none() && self.speaking {
                    // Noise while the robot speaks, no words: it goes on.
                    return;
                }
                // Not understood (or no recogniser): asked again like a
                // silence, then the keypad, then an operator.
                let input = match text {
                    Some(text) => Input::Text(text),
                    None => Input::Silence,
                };
                self.turn(input).await;
            }
            return;
        }
        if let Some(at) = self.digit_at {
            if !self.digits.is_empty() && now - at >= Duration::from_millis(cfg.digit_timeout_ms) {
                self.digit_at = None;
                let d = std::mem::take(&mut self.digits);
                self.turn(Input::Dtmf(d)).await;
            }
            return;
        }
        if let Some(since) = self.listening {
            if !self.speaking && now - since >= Duration::from_millis(cfg.no_input_ms) {
                self.turn(Input::Silence).await;
            }
        }
    }

    /// A turn through the pipeline, then spoken.
    async fn turn(&mut self, input: Input) {
        self.listening = None;
        let mut req = TurnRequest::new(self.key.clone(), input);
        req.live = false;
        let ch: Arc<dyn Channel> = self.v.clone();
        match self.v.p.turn(ch, req).await {
            Ok(turns) => {
                for (t, _) in turns {
                    self.speak(t);
                }
            }
            Err(TurnError::Duplicate) => {}
            Err(e) => {
                if let TurnError::Failed(err) = &e {
                    tracing::error!("voice turn {}: {err:#}", self.key);
                }
                self.say_text(e.message());
            }
        }
        if !self.speaking {
            self.listening = Some(Instant::now());
        }
    }

    fn speak(&mut self, t: Turn) {
        if t.intent.is_some() {
            self.outcome.intent = t.intent.clone();
        }
        if t.actions.contains(&Action::Handoff) {
            self.ending = Some("handoff");
        } else if t.actions.contains(&Action::End) {
            self.ending = Some("end");
        }
        self.to_say.extend(say::sentences(&t));
        self.speaking = true;
        self.last = Some(t);
    }

    fn say_text(&mut self, text: String) {
        if !text.is_empty() {
            self.to_say.push_back(say::speakable(&text));
            self.speaking = true;
        }
    }
}
