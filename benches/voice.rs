//! The voice robot's targets, measured (not asserted): the recogniser's
//! real-time factor on human Russian speech at 8 kHz, and, against `otklik
//! serve` with a simulated Asterisk on loopback, the time from the end of
//! the caller's speech to the robot's first audio frame, late frames (an
//! underrun: a gap of more than 40 ms while the robot speaks) with several
//! calls at once, and the server's memory per call. `cargo bench --bench
//! voice` runs 1 and 4 concurrent calls × 3 utterances; under `cargo test
//! --benches` it runs one call, once.

// The test suite's fixtures: festival and espeak-ng speech, paced sending.
#[path = "../tests/common.rs"]
mod common;

use otklik::speech::audio::read_wav;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const SOUNDS: &str = "/usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU";
const PROMPTS: &[&str] = &[
    "agent-pass",
    "all-circuits-busy-now",
    "auth-incorrect",
    "cannot-complete-as-dialed",
    "check-number-dial-again",
    "conf-kicked",
    "privacy-unident",
    "queue-youarenext",
    "vm-nobodyavail",
];

fn rss_mb(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Festival's Russian at 8 kHz, up to its last word.
fn said(text: &str) -> Vec<i16> {
    common::to_last_word(common::festival(text, 8000).samples)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// One caller: waits for the greeting to end, says each phrase, and times
/// the robot's answer. Returns (latencies ms, late frames, frames).
async fn call(
    port: u16,
    id: usize,
    phrases: Arc<Vec<Vec<i16>>>,
    n: usize,
) -> (Vec<f64>, usize, usize) {
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut m = vec![0x01, 0x00, 0x10];
    m.extend(
        format!("{id:032x}")
            .as_bytes()
            .chunks(2)
            .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap()),
    );
    sock.write_all(&m).await.unwrap();
    let (rd, mut wr) = sock.into_split();
    let (frames, reader) = common::frames_of(rd);
    let quiet = |ms: u64| {
        let f = frames.clone();
        async move {
            let t = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let last = f.lock().unwrap().last().copied();
                if last.is_some_and(|l| l.elapsed() > Duration::from_millis(ms))
                    || t.elapsed() > Duration::from_secs(60)
                {
                    return;
                }
            }
        }
    };
    quiet(800).await;
    let mut lat = Vec::new();
    for i in 0..n {
        let phrase = &phrases[i % phrases.len()];
        common::send_paced(&mut wr, phrase).await;
        let ended = Instant::now();
        let t = Instant::now();
        let first = loop {
            if let Some(&f) = frames.lock().unwrap().iter().find(|&&f| f > ended) {
                break Some(f);
            }
            if t.elapsed() > Duration::from_secs(30) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Some(f) = first {
            lat.push(f.duration_since(ended).as_secs_f64() * 1000.0);
        }
        quiet(800).await;
    }
    let _ = wr.write_all(&[0, 0, 0]).await;
    drop(wr);
    let _ = reader.await;
    let f = frames.lock().unwrap();
    // late: a gap over 40 ms inside a run of speech (gaps over 300 ms are
    // the robot waiting for the caller)
    let late = f
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .filter(|g| *g > Duration::from_millis(40) && *g < Duration::from_millis(300))
        .count();
    (lat, late, f.len())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // The recogniser alone.
    let w = otklik::speech::whisper::Whisper::load(std::path::Path::new("models/whisper-base"), 1)
        .expect("make models");
    let (mut audio_s, mut busy_s) = (0.0, 0.0);
    for p in if full { PROMPTS } else { &PROMPTS[..2] } {
        let pcm = read_wav(&std::fs::read(format!("{SOUNDS}/{p}.wav")).unwrap()).unwrap();
        let t = Instant::now();
        let _ = w.transcribe(&pcm, &Default::default()).unwrap();
        busy_s += t.elapsed().as_secs_f64();
        audio_s += pcm.samples.len() as f64 / pcm.rate as f64;
    }
    println!(
        "whisper: {audio_s:.1} s of speech in {busy_s:.1} s, real-time factor {:.2}",
        busy_s / audio_s
    );
    drop(w);
    let phrases = Arc::new(vec![
        said("Хочу записаться на приём."),
        said("Нет."),
        said("Я хочу подать заявление на материнский капитал."),
    ]);
    serve_calls("whisper", &[], phrases, full);
    // Vosk, on the Korean model the tests have (the latency does not depend
    // on the language: the answer is a fixed prompt either way).
    if std::path::Path::new("models/vosk/model-ko/am/final.mdl").exists() {
        let korean = Arc::new(vec![
            common::korean("안녕하세요 예약하고 싶습니다"),
            common::korean("아니요"),
            common::korean("상담원과 통화하고 싶어요"),
        ]);
        serve_calls(
            "vosk",
            &[
                ("OTKLIK_SPEECH_ENGINE", "vosk"),
                ("OTKLIK_SPEECH_VOSK_MODEL", "models/vosk/model-ko"),
            ],
            korean,
            full,
        );
    }
}

/// Starts `otklik serve` with `env`, and measures calls saying `phrases`.
fn serve_calls(engine: &str, env: &[(&str, &str)], phrases: Arc<Vec<Vec<i16>>>, full: bool) {
    let data = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, voice) = (free(), free());
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otklik"))
        .arg("serve")
        .env("OTKLIK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "OTKLIK_VOICE_AUDIOSOCKET_ADDR",
            format!("127.0.0.1:{voice}"),
        )
        .env("OTKLIK_DATA_DIR", data.path())
        .env(
            "OTKLIK_KB_CACHE_DIR",
            std::env::temp_dir().join("otklik-bench-data/cache"),
        )
        .env("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "100000")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            let m = c.get(format!("{base}/metrics")).send().await;
            let ready = match m {
                Ok(r) => r
                    .text()
                    .await
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l == "otklik_speech_ready 1"),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(300), "server not ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // the fixed prompts synthesised at start-up
        while !c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default()
            .lines()
            .any(|l| l == "otklik_voice_prompts_ready 1")
        {
            assert!(t0.elapsed() < Duration::from_secs(400), "prompts not ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let idle = rss_mb(pid, "VmRSS:");
    println!("{engine}: server ready, RSS {idle:.0} MB");
    let rounds: Vec<(usize, usize)> = if full {
        vec![(1, 3), (4, 3)]
    } else {
        vec![(1, 1)]
    };
    let mut id = 1;
    for (n, utterances) in rounds {
        let out: Vec<(Vec<f64>, usize, usize)> = rt.block_on(async {
            let hs: Vec<_> = (0..n)
                .map(|i| tokio::spawn(call(voice, id + i, phrases.clone(), utterances)))
                .collect();
            let mut v = Vec::new();
            for h in hs {
                v.push(h.await.unwrap());
            }
            v
        });
        id += n;
        let mut lat: Vec<f64> = out.iter().flat_map(|o| o.0.clone()).collect();
        let late: usize = out.iter().map(|o| o.1).sum();
        let frames: usize = out.iter().map(|o| o.2).sum();
        println!(
            "{engine}: {n} concurrent call(s) × {utterances} utterances: end of speech → first frame p50 {:.0} ms, max {:.0} ms; {late} late frames of {frames}; server RSS {:.0} MB (peak {:.0} MB, idle {idle:.0} MB)",
            pct(&mut lat, 0.5),
            pct(&mut lat, 1.0),
            rss_mb(pid, "VmRSS:"),
            rss_mb(pid, "VmHWM:")
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
