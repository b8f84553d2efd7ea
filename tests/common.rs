//! Shared helpers for the integration tests: the project's settings with a
//! data folder under target/, so tests share the embedding cache.
#![allow(dead_code)]

use otklik::config::Config;
use std::path::{Path, PathBuf};

pub fn test_data_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("otklik-test-data")
}

/// Where the tests' tuned layers go (never the model's folder, so a
/// developer's own `otklik train` does not change what the tests see).
pub fn tune_dir() -> PathBuf {
    test_data_dir().join("tuned")
}

pub fn config() -> Config {
    let mut cfg = Config::load(Path::new("otklik.toml")).expect("otklik.toml");
    cfg.data_dir = test_data_dir();
    cfg.tune.dir = tune_dir();
    cfg
}

/// The project's settings with a fresh database in `data` and the shared embedding cache.
pub fn config_with_data(data: &Path) -> Config {
    let mut cfg = config();
    cfg.kb.cache_dir = test_data_dir().join("cache");
    cfg.data_dir = data.to_path_buf();
    cfg
}

/// The model and knowledge base, loaded once per test binary.
pub fn shared_nlu() -> std::sync::Arc<otklik::nlu::Nlu> {
    static N: std::sync::OnceLock<std::sync::Arc<otklik::nlu::Nlu>> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let cfg = config();
        std::sync::Arc::new(
            otklik::nlu::Nlu::load(&cfg, otklik::nlu::load_encoder(&cfg).unwrap()).unwrap(),
        )
    })
    .clone()
}

/// An engine over a database in `data`, its clock fixed at `now` (RFC 3339).
pub fn engine_at(
    data: &Path,
    now: &str,
) -> (
    otklik::dialog::Engine,
    std::sync::Arc<otklik::services::FixedClock>,
) {
    let clock = std::sync::Arc::new(otklik::services::FixedClock::new(now.parse().unwrap()));
    let e =
        otklik::dialog::Engine::new(&config_with_data(data), shared_nlu(), clock.clone()).unwrap();
    (e, clock)
}

/// Thursday 26 November 2026, 10:00 in Moscow: operators at work.
pub const WORKDAY: &str = "2026-11-26T10:00:00+03:00";

/// `otklik serve` as a real process on a free loopback port, with its own
/// database, the shared embedding cache, an admin token, two operators
/// (op1 / op2) and a trainer (tr1), password `test-password`.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    /// The database folder (taken over by a restarted server).
    data: Option<tempfile::TempDir>,
}

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// Keys of two integrations of the REST API: `portal` and `crm`.
pub const PORTAL_KEY: &str = "test-key-of-the-portal";
pub const CRM_KEY: &str = "test-key-of-the-crm";
pub const OPERATOR_PASSWORD: &str = "test-password";

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server; `env` adds or overrides settings.
pub fn start_server(env: &[(&str, String)]) -> Server {
    start_server_in(tempfile::tempdir().unwrap(), env)
}

/// Starts a server on the database in `data` (to restart on the same one).
pub fn start_server_in(data: tempfile::TempDir, env: &[(&str, String)]) -> Server {
    let accounts = data.path().join("operators.toml");
    let hash = otklik::operator::console::hash_password(OPERATOR_PASSWORD).unwrap();
    std::fs::write(
        &accounts,
        format!("[[operator]]\nlogin = \"op1\"\nname = \"Анна\"\npassword_hash = \"{hash}\"\n\n[[operator]]\nlogin = \"op2\"\nname = \"Борис\"\npassword_hash = \"{hash}\"\n\n[[operator]]\nlogin = \"tr1\"\nname = \"Дарья\"\npassword_hash = \"{hash}\"\nroles = [\"trainer\"]\n"),
    )
    .unwrap();
    let keys = data.path().join("api_keys.toml");
    let entry = |name: &str, key: &str| {
        format!(
            "[[key]]\nname = \"{name}\"\nkey_hash = \"{}\"\n",
            otklik::channels::api::key_hash(key)
        )
    };
    std::fs::write(&keys, entry("portal", PORTAL_KEY) + &entry("crm", CRM_KEY)).unwrap();
    let port = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_otklik"));
    cmd.arg("serve")
        .env("OTKLIK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("OTKLIK_DATA_DIR", data.path())
        .env("OTKLIK_KB_CACHE_DIR", test_data_dir().join("cache"))
        .env("OTKLIK_TUNE_DIR", tune_dir())
        .env("OTKLIK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("OTKLIK_OPERATORS_ACCOUNTS_FILE", &accounts)
        .env("OTKLIK_API_KEYS_FILE", &keys)
        .env("RUST_LOG", "warn")
        // operators on duty whenever the tests run
        .env("OTKLIK_HOURS_HOLIDAYS", "");
    for d in ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"] {
        cmd.env(format!("OTKLIK_HOURS_{d}"), "00:00-24:00");
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        data: Some(data),
    }
}

impl Server {
    pub fn data_path(&self) -> &Path {
        self.data.as_ref().unwrap().path()
    }

    /// Kills the server (SIGKILL) and starts it again on the same database.
    pub fn restart(mut self, env: &[(&str, String)]) -> Server {
        let data = self.data.take().unwrap();
        drop(self);
        start_server_in(data, env)
    }
}

/// An operator's HTTP client, signed in to the console.
pub async fn operator(s: &Server, login: &str) -> reqwest::Client {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/api/v1/operator/login", s.base))
        .json(&serde_json::json!({"login": login, "password": OPERATOR_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{login} signs in");
    c
}

/// The `/metrics` page, read from this machine (no token needed).
pub async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `/readyz` says the model and dialogs are loaded.
pub async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(180) {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("server at {base} did not become ready");
}

/// Serves `app` (a backend double) on a free loopback port from a thread of
/// its own; returns the address.
pub fn serve_in_background(app: axum::Router) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

// A web chat client over a real WebSocket.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A web chat client: a socket and the name the test gives its client. The
/// server issues the identity in its welcome; the client names it in its
/// next hellos, as the widget does (kept per name for the test process).
pub struct Ws {
    pub inner: Stream,
    name: String,
}

impl std::ops::Deref for Ws {
    type Target = Stream;
    fn deref(&self) -> &Stream {
        &self.inner
    }
}

impl std::ops::DerefMut for Ws {
    fn deref_mut(&mut self) -> &mut Stream {
        &mut self.inner
    }
}

fn issued_ids() -> &'static std::sync::Mutex<std::collections::HashMap<String, String>> {
    static IDS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        std::sync::OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// The identity the server issued to the client the test calls `name`.
pub fn issued(name: &str) -> String {
    issued_ids().lock().unwrap()[name].clone()
}

pub async fn ws(base: &str, client: &str) -> Ws {
    let url = format!("{}/ws/chat", base.replace("http://", "ws://"));
    Ws {
        inner: tokio_tungstenite::connect_async(url).await.unwrap().0,
        name: client.to_string(),
    }
}

pub async fn send(w: &mut Ws, mut v: Value) {
    if v["type"] == "hello" && v.get("client").is_none() {
        if let Some(id) = issued_ids().lock().unwrap().get(&w.name) {
            v["client"] = id.clone().into();
        }
    }
    w.inner
        .send(Message::Text(v.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message, or None after `secs` of silence.
pub async fn recv(w: &mut Ws, secs: u64) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(secs), w.inner.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if let (true, Some(id)) = (v["type"] == "welcome", v["client"].as_str()) {
                    issued_ids()
                        .lock()
                        .unwrap()
                        .insert(w.name.clone(), id.to_string());
                }
                return Some(v);
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Messages until one matches `pred` (which is returned last).
pub async fn until(w: &mut Ws, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(v) = recv(w, 30).await {
        let done = pred(&v);
        got.push(v);
        if done {
            return got;
        }
    }
    panic!("no matching message; got {got:?}");
}

pub fn is_bot(v: &Value) -> bool {
    v["type"] == "msg" && v["from"] == "bot"
}

/// Every JSON message until `secs` of silence (or the socket closes).
pub async fn drain(w: &mut Ws, secs: u64) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(v) = recv(w, secs).await {
        got.push(v);
    }
    got
}

// Speech.

/// What a citizen says, as festival's Russian voice says it, at `rate`.
/// `make speech` installs festival with festvox-ru.
pub fn festival(text: &str, rate: u32) -> otklik::speech::audio::Pcm {
    use std::io::Write;
    let mut c = std::process::Command::new("text2wave")
        .args(["-eval", "(voice_msu_ru_nsh_clunits)", "-o", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("festival (make speech)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let pcm = otklik::speech::audio::read_wav(&out.stdout).expect("festival's WAV");
    otklik::speech::audio::resample(&pcm, rate).unwrap()
}

/// At 16 kHz, as the web chat's voice button sends it.
pub fn festival_16k(text: &str) -> otklik::speech::audio::Pcm {
    festival(text, 16_000)
}

/// Korean speech from espeak-ng at 8 kHz, ending with its last loud frame
/// (the end of speech), for the Korean Vosk model the tests have; never for
/// Whisper, which cannot understand espeak-ng.
pub fn korean(text: &str) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", "ko", "-s", "140", "--stdout", text])
        .output()
        .expect("espeak-ng (make speech)");
    let p = otklik::speech::audio::read_wav(&out.stdout).unwrap();
    to_last_word(otklik::speech::audio::resample(&p, 8000).unwrap().samples)
}

/// 8 kHz speech up to its last loud 20 ms frame: where speech ends, so that
/// a synthesiser's trailing silence does not count as the caller's pause.
pub fn to_last_word(mut s: Vec<i16>) -> Vec<i16> {
    while s.len() > 160 && otklik::speech::audio::level_db(&s[s.len() - 160..]) < -38.0 {
        s.truncate(s.len() - 160);
    }
    s
}

/// Records when each of the robot's audio frames arrives, until the socket
/// closes.
pub fn frames_of(
    mut rd: tokio::net::tcp::OwnedReadHalf,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let h2 = heard.clone();
    use tokio::io::AsyncReadExt;
    let reader = tokio::spawn(async move {
        loop {
            let mut head = [0u8; 3];
            if rd.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u16::from_be_bytes([head[1], head[2]]) as usize;
            let mut p = vec![0u8; len];
            if rd.read_exact(&mut p).await.is_err() {
                return;
            }
            if head[0] == 0x10 {
                h2.lock().unwrap().push(std::time::Instant::now());
            }
        }
    });
    (heard, reader)
}

/// 8 kHz audio in 20 ms AudioSocket frames, paced in real time, as
/// Asterisk sends it.
pub async fn send_paced<W: tokio::io::AsyncWriteExt + Unpin>(wr: &mut W, samples: &[i16]) {
    let mut next = tokio::time::Instant::now();
    for f in samples.chunks(160) {
        let mut m = vec![0x10, 0x01, 0x40];
        let mut f = f.to_vec();
        f.resize(160, 0);
        m.extend(f.iter().flat_map(|s| s.to_le_bytes()));
        wr.write_all(&m).await.unwrap();
        next += Duration::from_millis(20);
        tokio::time::sleep_until(next).await;
    }
}

/// Waits until `/metrics` says the speech recogniser is loaded.
pub async fn speech_ready(base: &str) {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        // the exact line: the metric's help text says "… ready 1 once …" too
        if metrics(base)
            .await
            .lines()
            .any(|l| l == "otklik_speech_ready 1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the recogniser did not load");
}

/// The text of the one QR code in a PNG (a payment's), decoded by rqrr.
pub fn read_qr(png_bytes: &[u8]) -> String {
    let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().expect("a PNG's size")];
    let info = r.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!(
        info.color_type,
        png::ColorType::Grayscale,
        "a greyscale PNG"
    );
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("a readable QR code").1
}

/// A payment QR code's fields (GOST R 56042-2014: `ST00012|Key=Value|…`):
/// the header and the fields by name.
pub fn qr_fields(text: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let mut parts = text.split('|');
    let header = parts.next().unwrap_or_default().to_string();
    let fields = parts
        .map(|p| {
            let (k, v) = p.split_once('=').expect("Key=Value");
            (k.to_string(), v.to_string())
        })
        .collect();
    (header, fields)
}
