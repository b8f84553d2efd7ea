//! The voice robot against a simulated Asterisk that speaks AudioSocket byte
//! for byte: the UUID first, then 20 ms frames of 8 kHz signed-linear audio
//! paced in real time (or none at all while the caller is silent, as a
//! Local channel or a phone with silence suppression sends), keypad keys as
//! AudioSocket DTMF messages or as tones inside the audio, and a hangup by
//! message or by closing the socket. The robot speaks through the real
//! synthesiser (festival with festvox-ru).

mod common;

use common::{frames_of, free_port, send_paced, start_server, wait_ready};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A call as Asterisk's app_audiosocket makes it.
struct Asterisk {
    sock: TcpStream,
}

/// What the caller heard until the robot fell silent.
#[derive(Debug, Default)]
struct Heard {
    frames: usize,
    /// Arrival times of the frames.
    at: Vec<Instant>,
    hangup: bool,
    closed: bool,
    bad: Vec<String>,
}

impl Heard {
    fn seconds(&self) -> f64 {
        self.frames as f64 * 0.02
    }

    /// No frame came sooner than real time allows: by any moment, at most
    /// the frames that fit since the first, plus a small allowance for the
    /// network.
    fn paced(&self) -> bool {
        let Some(&t0) = self.at.first() else {
            return true;
        };
        self.at.iter().enumerate().all(|(i, t)| {
            let allowed = (t.duration_since(t0).as_millis() as f64 / 20.0) + 5.0;
            (i as f64) <= allowed
        })
    }
}

impl Asterisk {
    async fn call(port: u16, uuid: &str) -> Self {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let id = hex::decode(uuid.replace('-', "")).unwrap();
        let mut m = vec![0x01, 0x00, 0x10];
        m.extend(id);
        sock.write_all(&m).await.unwrap();
        Self { sock }
    }

    /// Reads the robot until it has been quiet for `quiet` (or `max` passed).
    async fn listen(&mut self, quiet: Duration, max: Duration) -> Heard {
        let mut h = Heard::default();
        let start = Instant::now();
        let mut last = Instant::now();
        loop {
            if start.elapsed() > max || (h.frames > 0 && last.elapsed() > quiet) {
                return h;
            }
            let mut head = [0u8; 3];
            match tokio::time::timeout(Duration::from_millis(50), self.sock.read_exact(&mut head))
                .await
            {
                Err(_) => continue,
                Ok(Err(_)) => {
                    h.closed = true;
                    return h;
                }
                Ok(Ok(_)) => {}
            }
            let len = u16::from_be_bytes([head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            self.sock.read_exact(&mut payload).await.unwrap();
            match head[0] {
                0x10 => {
                    if len != 320 {
                        h.bad.push(format!("a frame of {len} bytes"));
                    }
                    h.frames += 1;
                    h.at.push(Instant::now());
                    last = Instant::now();
                }
                0x00 => {
                    h.hangup = true;
                    // Asterisk closes after the hangup; the robot must close too.
                    let mut rest = [0u8; 1];
                    let r = tokio::time::timeout(Duration::from_secs(2), self.sock.read(&mut rest))
                        .await;
                    h.closed = matches!(r, Ok(Ok(0)));
                    return h;
                }
                k => h.bad.push(format!(
                    "message kind 0x{k:02x} (Asterisk accepts only audio and hangup)"
                )),
            }
        }
    }

    /// Reads until `n` frames came (or `max` passed): the robot is mid-prompt.
    async fn some(&mut self, n: usize, max: Duration) -> Heard {
        let start = Instant::now();
        let mut all = Heard::default();
        while all.frames < n && start.elapsed() < max && !all.closed {
            let h = self
                .listen(Duration::from_millis(100), Duration::from_millis(200))
                .await;
            all.frames += h.frames;
            all.closed |= h.closed || h.hangup;
        }
        all
    }

    async fn key(&mut self, k: char) {
        self.sock
            .write_all(&[0x03, 0x00, 0x01, k as u8])
            .await
            .unwrap();
    }

    /// Sends audio in 20 ms frames, paced in real time.
    async fn audio(&mut self, samples: &[i16]) {
        send_paced(&mut self.sock, samples).await;
    }

    /// A key as its tone pair inside the audio (no DTMF message).
    async fn tone(&mut self, k: char) {
        let mut a = otklik::channels::voice::dtmf::tone(k, 8000, 100, 0.3);
        a.extend(vec![0i16; 800]);
        self.audio(&a).await;
    }

    async fn hangup(mut self) {
        let _ = self.sock.write_all(&[0x00, 0x00, 0x00]).await;
        let _ = self.sock.shutdown().await;
    }
}

/// A conversation as the admin API shows it.
async fn conversation(base: &str, uuid: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/conversations/voice:{uuid}"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn outcome(base: &str, uuid: &str) -> (u16, Value) {
    outcome_with(base, uuid, None).await
}

async fn outcome_with(base: &str, uuid: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{base}/api/v1/voice/calls/{uuid}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn calls_running(base: &str) -> i64 {
    let m = common::metrics(base).await;
    m.lines()
        .find_map(|l| l.strip_prefix("otklik_voice_calls "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

async fn wait_calls(base: &str, n: i64) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if calls_running(base).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for the server, and for its fixed prompts to be synthesised (on a
/// fresh machine the first server makes them, about a minute of festival;
/// later ones read them from the shared cache): a call then hears its
/// prompts without a pause between sentences.
async fn ready(base: &str) {
    wait_ready(base).await;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(400) {
        if common::metrics(base)
            .await
            .lines()
            .any(|l| l == "otklik_voice_prompts_ready 1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the prompts were not synthesised");
}

fn voice_server(extra: &[(&str, String)]) -> (common::Server, u16) {
    let port = free_port();
    let mut env = vec![
        ("OTKLIK_VOICE_AUDIOSOCKET_ADDR", format!("127.0.0.1:{port}")),
        ("OTKLIK_VOICE_NO_INPUT_MS", "1500".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    (start_server(&env), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_greeted_in_paced_frames_and_key_zero_hands_it_to_the_queue() {
    let (s, port) = voice_server(&[]);
    ready(&s.base).await;
    let uuid = "2f3a1c9e-0b4d-4e6f-8a1b-9c0d1e2f3a4b";
    let mut a = Asterisk::call(port, uuid).await;
    let greeting = a
        .listen(Duration::from_millis(1200), Duration::from_secs(30))
        .await;
    assert!(greeting.bad.is_empty(), "{:?}", greeting.bad);
    assert!(
        greeting.seconds() > 2.0,
        "the greeting is {} s",
        greeting.seconds()
    );
    assert!(greeting.paced(), "frames came faster than real time");
    assert!(!greeting.hangup);
    let (st, _) = outcome(&s.base, uuid).await;
    assert_eq!(st, 404, "no outcome while the call goes on");
    // The caller presses 0: the robot says it passes the call on, then
    // hangs up so the dialplan runs Queue().
    a.key('0').await;
    let last = a
        .listen(Duration::from_secs(3), Duration::from_secs(30))
        .await;
    assert!(last.frames > 25, "the last words: {} frames", last.frames);
    assert!(last.hangup && last.closed, "{last:?}");
    assert!(last.paced());
    let (st, o) = outcome(&s.base, uuid).await;
    assert_eq!(st, 200);
    assert_eq!(o["outcome"], "handoff");
    assert_eq!(o["queue"], "otklik");
    // one field as plain text, for a dialplan without JSON_DECODE()
    let plain = reqwest::get(format!(
        "{}/api/v1/voice/calls/{uuid}?field=outcome",
        s.base
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(plain, "handoff");
    // the token, where one is set, is required (the next test)
    assert!(wait_calls(&s.base, 0).await, "a call task was left behind");
    // the conversation is the engine's, under voice:<uuid>
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/conversations/voice:{uuid}", s.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_mid_prompt_leaves_nothing_behind() {
    let token = "outcome-token-of-the-dialplan";
    let (s, port) = voice_server(&[("OTKLIK_VOICE_OUTCOME_TOKEN", token.to_string())]);
    ready(&s.base).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let uuid = format!("00000000-0000-4000-8000-00000000000{i}");
        let mut a = Asterisk::call(port, &uuid).await;
        let h = a.some(10, Duration::from_secs(20)).await;
        assert!(h.frames >= 10 && !h.closed, "the robot is speaking: {h:?}");
        calls.push((uuid, a));
    }
    assert!(wait_calls(&s.base, 3).await);
    // one by message, one by closing the socket, one by dropping it
    let (u0, a0) = calls.remove(0);
    a0.hangup().await;
    let (u1, mut a1) = calls.remove(0);
    a1.sock.shutdown().await.unwrap();
    drop(a1);
    let (u2, a2) = calls.remove(0);
    drop(a2);
    assert!(wait_calls(&s.base, 0).await, "call tasks were left behind");
    for u in [u0, u1, u2] {
        let (st, o) = outcome_with(&s.base, &u, Some(token)).await;
        assert_eq!((st, o["outcome"].as_str()), (200, Some("hangup")), "{u}");
        // without the token, or with a wrong one, even from this machine
        assert_eq!(outcome(&s.base, &u).await.0, 401);
        assert_eq!(outcome_with(&s.base, &u, Some("guess")).await.0, 401);
    }
    // Garbage instead of a UUID is refused with a hangup, and counts nothing.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    bad.write_all(&[0x10, 0x00, 0x02, 0, 0]).await.unwrap();
    let mut b = [0u8; 3];
    bad.read_exact(&mut b).await.unwrap();
    assert_eq!(b, [0x00, 0x00, 0x00]);
    assert!(wait_calls(&s.base, 0).await);
    let (st, _) = outcome_with(&s.base, "not-a-uuid", Some(token)).await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_without_frames_is_asked_about_then_the_keypad_then_an_operator() {
    let (s, port) = voice_server(&[]);
    ready(&s.base).await;
    let uuid = "11111111-2222-4333-8444-555555555555";
    let mut a = Asterisk::call(port, uuid).await;
    let g = a
        .listen(Duration::from_millis(1200), Duration::from_secs(30))
        .await;
    assert!(g.frames > 0);
    // The caller's phone sends nothing at all while its user is silent:
    // the robot's clock, not a count of frames, notices the silence.
    let again = a
        .listen(Duration::from_millis(1200), Duration::from_secs(30))
        .await;
    assert!(again.frames > 0, "asked again after silence");
    let keypad = a
        .listen(Duration::from_millis(1200), Duration::from_secs(30))
        .await;
    assert!(
        keypad.frames > again.frames,
        "the keypad menu is longer: {} vs {}",
        keypad.frames,
        again.frames
    );
    // From the keypad menu a key in the audio picks hours (in-band DTMF)
    a.tone('3').await;
    let hours = a
        .listen(Duration::from_millis(800), Duration::from_secs(30))
        .await;
    assert!(hours.frames > 50, "hours: {}", hours.frames);
    let conv = conversation(&s.base, uuid).await;
    let text = conv.to_string();
    assert!(text.contains("кнопк"), "the keypad was offered: {text}");
    assert!(
        text.contains("Операторы работают"),
        "the key in the audio chose hours: {text}"
    );
    a.hangup().await;
    assert!(wait_calls(&s.base, 0).await);
}

/// What a citizen says, as festival's Russian voice says it at 8 kHz.
fn said(text: &str) -> Vec<i16> {
    common::festival(text, 8000).samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_speaks_stops_the_robot_and_is_understood() {
    let (s, port) = voice_server(&[]);
    ready(&s.base).await;
    common::speech_ready(&s.base).await;
    let phrase = said("Хочу записаться на приём.");
    let uuid = "33333333-2222-4333-8444-555555555555";
    let a = Asterisk::call(port, uuid).await;
    let (rd, mut wr) = a.sock.into_split();
    // Every robot frame's arrival, read while the caller talks.
    let (heard, reader) = frames_of(rd);
    // The greeting starts; the caller speaks over it after half a second.
    let t = Instant::now();
    while heard.lock().unwrap().len() < 25 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spoke_at = Instant::now();
    send_paced(&mut wr, &phrase).await;
    let ended_at = Instant::now();
    // then nothing: the phone sends no frames while its user is silent
    tokio::time::sleep(Duration::from_secs(12)).await;
    let at = heard.lock().unwrap().clone();
    let during = at
        .iter()
        .filter(|&&x| x > spoke_at + Duration::from_millis(700) && x < ended_at)
        .count();
    assert_eq!(
        during, 0,
        "the robot kept talking over the caller (barge-in)"
    );
    let after = at.iter().filter(|&&x| x > ended_at).count();
    assert!(after > 25, "the robot answered the caller: {after} frames");
    let conv = conversation(&s.base, uuid).await;
    let text = conv.to_string().to_lowercase();
    assert!(
        text.contains("запис"),
        "what the caller said was recognised: {text}"
    );
    assert!(
        text.contains("согласны"),
        "and understood as a booking: {text}"
    );
    // A short word is heard from its first sound: «Да.» gives consent.
    let yes = said("Да.");
    send_paced(&mut wr, &yes).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let conv = conversation(&s.base, uuid).await;
    let text = conv.to_string();
    assert!(text.contains("По какому вопросу"), "«да» was heard: {text}");
    wr.write_all(&[0, 0, 0]).await.unwrap();
    drop(wr);
    let _ = reader.await;
    assert!(wait_calls(&s.base, 0).await);
}

// ARI mode against a simulated Asterisk REST Interface: the events'
// WebSocket (`/ari/events`, basic auth) and the REST calls the robot makes,
// answered as Asterisk answers them; `externalMedia` with AudioSocket
// encapsulation connects to the robot's listener with the UUID of `data`,
// as Asterisk's chan_audiosocket does.

mod ari_sim {
    use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{delete, get, post};
    use axum::{Json, Router};
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::sync::broadcast;

    pub const USER: &str = "otklik";
    pub const PASSWORD: &str = "ari-secret";

    #[derive(Clone)]
    pub struct Sim(pub Arc<Inner>);

    pub struct Inner {
        /// Every REST request: "POST /channels/X/answer?query".
        pub requests: Mutex<Vec<String>>,
        /// Events sockets opened so far.
        pub connections: AtomicUsize,
        events: broadcast::Sender<String>,
        /// Media connections Asterisk made, by the media channel's id.
        media: Mutex<HashMap<String, TcpStream>>,
    }

    impl Sim {
        pub fn start() -> (Self, String) {
            let (events, _) = broadcast::channel(64);
            let sim = Sim(Arc::new(Inner {
                requests: Mutex::new(Vec::new()),
                connections: AtomicUsize::new(0),
                events,
                media: Mutex::new(HashMap::new()),
            }));
            let app = Router::new()
                .route("/ari/events", get(events_socket))
                .route("/ari/channels/externalMedia", post(external_media))
                .route("/ari/bridges", post(bridge))
                .route("/ari/channels/{id}/{action}", post(no_content))
                .route("/ari/bridges/{id}/{action}", post(no_content))
                .route("/ari/channels/{id}", delete(gone))
                .route("/ari/bridges/{id}", delete(gone))
                .layer(axum::middleware::from_fn(basic_auth))
                .with_state(sim.clone());
            let addr = super::common::serve_in_background(app);
            (sim, format!("http://{addr}/ari"))
        }

        /// Sends an event to every connected events socket.
        pub fn emit(&self, ev: Value) {
            let _ = self.0.events.send(ev.to_string());
        }

        /// Closes every events socket (Asterisk restarting).
        pub fn drop_sockets(&self) {
            let _ = self.0.events.send("close".into());
        }

        pub fn requests(&self) -> Vec<String> {
            self.0.requests.lock().unwrap().clone()
        }

        pub fn connections(&self) -> usize {
            self.0.connections.load(Ordering::SeqCst)
        }

        /// Waits for a request that starts with `prefix` and contains `part`.
        pub async fn wait_for(&self, prefix: &str, part: &str) -> Option<String> {
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_secs(10) {
                if let Some(r) = self
                    .requests()
                    .into_iter()
                    .find(|r| r.starts_with(prefix) && r.contains(part))
                {
                    return Some(r);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            None
        }

        /// The media connection Asterisk made for channel `id`.
        pub async fn take_media(&self, id: &str) -> Option<TcpStream> {
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_secs(10) {
                if let Some(s) = self.0.media.lock().unwrap().remove(id) {
                    return Some(s);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            None
        }

        pub fn channel(id: &str) -> Value {
            json!({
                "id": id,
                "name": format!("PJSIP/softphone-{id}"),
                "state": "Ring",
                "caller": {"name": "", "number": "100"},
                "connected": {"name": "", "number": ""},
                "accountcode": "",
                "dialplan": {"context": "from-phones", "exten": "700", "priority": 2,
                             "app_name": "Stasis", "app_data": "otklik"},
                "creationtime": "2026-12-04T10:00:00.000+0300",
                "language": "ru"
            })
        }

        pub fn event(kind: &str, channel: &str, extra: Value) -> Value {
            let mut ev = json!({
                "type": kind,
                "timestamp": "2026-12-04T10:00:00.000+0300",
                "application": "otklik",
                "asterisk_id": "52:54:00:12:34:56",
                "channel": Self::channel(channel),
            });
            if let (Some(o), Some(x)) = (ev.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            ev
        }
    }

    /// Every ARI resource, the events socket too, needs the user's password.
    async fn basic_auth(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
        if authorised(req.headers()) {
            next.run(req).await
        } else {
            unauthorised()
        }
    }

    fn authorised(h: &HeaderMap) -> bool {
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
    }

    fn record(sim: &Sim, method: &str, path: &str, q: &HashMap<String, String>) {
        let mut q: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        q.sort();
        sim.0
            .requests
            .lock()
            .unwrap()
            .push(format!("{method} {path}?{}", q.join("&")));
    }

    fn unauthorised() -> Response {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Authentication required"})),
        )
            .into_response()
    }

    async fn events_socket(
        State(sim): State<Sim>,
        Query(q): Query<HashMap<String, String>>,
        ws: WebSocketUpgrade,
    ) -> Response {
        if q.get("app").map(String::as_str) != Some("otklik") {
            return (StatusCode::BAD_REQUEST, "app required").into_response();
        }
        let rx = sim.0.events.subscribe();
        ws.on_upgrade(move |s| async move {
            sim.0.connections.fetch_add(1, Ordering::SeqCst);
            pump(s, rx).await
        })
    }

    async fn pump(mut s: WebSocket, mut rx: broadcast::Receiver<String>) {
        while let Ok(ev) = rx.recv().await {
            if ev == "close" {
                let _ = s.send(WsMessage::Close(None)).await;
                return;
            }
            if s.send(WsMessage::Text(ev.into())).await.is_err() {
                return;
            }
        }
    }

    async fn external_media(
        State(sim): State<Sim>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        record(&sim, "POST", "/channels/externalMedia", &q);
        let (Some(host), Some(uuid), Some(id)) =
            (q.get("external_host"), q.get("data"), q.get("channelId"))
        else {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "external_host, data and channelId are required"})),
            )
                .into_response();
        };
        // chan_audiosocket connects and names the call by the UUID of `data`.
        let Ok(mut sock) = TcpStream::connect(host.as_str()).await else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "connect failed").into_response();
        };
        let mut m = vec![0x01, 0x00, 0x10];
        m.extend(hex::decode(uuid.replace('-', "")).unwrap());
        sock.write_all(&m).await.unwrap();
        sim.0.media.lock().unwrap().insert(id.clone(), sock);
        let mut ch = Sim::channel(id);
        ch["name"] = json!(format!("AudioSocket/{host}-{id}"));
        Json(ch).into_response()
    }

    async fn bridge(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Response {
        record(&sim, "POST", "/bridges", &q);
        let id = q.get("bridgeId").cloned().unwrap_or_else(|| "b1".into());
        Json(
            json!({"id": id, "technology": "simple_bridge", "bridge_type": "mixing",
                    "bridge_class": "stasis", "creator": "Stasis", "name": "", "channels": []}),
        )
        .into_response()
    }

    async fn no_content(
        State(sim): State<Sim>,
        Path((id, action)): Path<(String, String)>,
        Query(q): Query<HashMap<String, String>>,
        uri: axum::http::Uri,
    ) -> Response {
        let kind = if uri.path().starts_with("/ari/bridges") {
            "bridges"
        } else {
            "channels"
        };
        record(&sim, "POST", &format!("/{kind}/{id}/{action}"), &q);
        StatusCode::NO_CONTENT.into_response()
    }

    async fn gone(
        State(sim): State<Sim>,
        Path(id): Path<String>,
        uri: axum::http::Uri,
    ) -> Response {
        let kind = if uri.path().starts_with("/ari/bridges") {
            "bridges"
        } else {
            "channels"
        };
        record(&sim, "DELETE", &format!("/{kind}/{id}"), &HashMap::new());
        StatusCode::NO_CONTENT.into_response()
    }
}

use ari_sim::Sim;

fn ari_server(ari: &str) -> (common::Server, u16) {
    voice_server(&[
        ("OTKLIK_VOICE_ARI_URL", ari.to_string()),
        ("OTKLIK_VOICE_ARI_USER", ari_sim::USER.to_string()),
        ("OTKLIK_VOICE_ARI_PASSWORD", ari_sim::PASSWORD.to_string()),
    ])
}

async fn wait_connected(sim: &Sim, n: usize) {
    let t = Instant::now();
    while sim.connections() < n {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the robot did not connect to ARI's events ({} of {n})",
            sim.connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A caller comes to Stasis: the robot answers, bridges them with a media
/// channel that connects over AudioSocket; returns the call's UUID and
/// the media connection.
async fn ari_call(sim: &Sim, caller: &str) -> (String, Asterisk) {
    sim.emit(Sim::event(
        "StasisStart",
        caller,
        serde_json::json!({"args": []}),
    ));
    let answer = format!("POST /channels/{caller}/answer");
    assert!(
        sim.wait_for(&answer, "").await.is_some(),
        "{:?}",
        sim.requests()
    );
    // The caller is bridged with the media channel made for them.
    let bridged = sim
        .wait_for("POST /bridges/", &format!("channel={caller},"))
        .await
        .unwrap_or_else(|| panic!("{:?}", sim.requests()));
    let media_id = bridged.rsplit(',').next().unwrap().to_string();
    let media = sim
        .wait_for(
            "POST /channels/externalMedia",
            &format!("channelId={media_id}&"),
        )
        .await
        .expect("externalMedia");
    for part in [
        "encapsulation=audiosocket",
        "transport=tcp",
        "format=slin",
        "app=otklik",
        "connection_type=client",
    ] {
        assert!(media.contains(part), "{media}");
    }
    let uuid = media
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("data="))
        .unwrap()
        .to_string();
    let sock = sim.take_media(&media_id).await.expect("media connection");
    (uuid, Asterisk { sock })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_mode_answers_bridges_hears_keys_and_continues_a_handoff_into_the_queue() {
    let (sim, ari) = Sim::start();
    let (s, _) = ari_server(&ari);
    ready(&s.base).await;
    wait_connected(&sim, 1).await;
    let caller = "1733300000.17";
    let (uuid, mut a) = ari_call(&sim, caller).await;
    let greeting = a
        .listen(Duration::from_millis(1200), Duration::from_secs(30))
        .await;
    assert!(greeting.seconds() > 2.0 && greeting.paced() && !greeting.hangup);
    // The key comes as an ARI event, not on the media socket.
    sim.emit(Sim::event(
        "ChannelDtmfReceived",
        caller,
        serde_json::json!({"digit": "0", "duration_ms": 120}),
    ));
    let last = a
        .listen(Duration::from_secs(3), Duration::from_secs(30))
        .await;
    assert!(last.frames > 25 && last.hangup, "{last:?}");
    // The caller goes on into the queue's context; the robot's side is gone.
    let var = sim
        .wait_for(
            &format!("POST /channels/{caller}/variable"),
            "variable=OTKLIK_QUEUE",
        )
        .await
        .expect("the queue's name is set on the caller");
    assert!(var.contains("value=otklik"), "{var}");
    let cont = sim
        .wait_for(
            &format!("POST /channels/{caller}/continue"),
            "context=otklik-handoff",
        )
        .await
        .expect("the caller continues into the handoff context");
    assert!(cont.contains("extension=s") && cont.contains("priority=1"));
    assert!(sim
        .wait_for("DELETE /channels/otklik-media-", "")
        .await
        .is_some());
    assert!(sim.wait_for("DELETE /bridges/otklik-", "").await.is_some());
    assert!(
        !sim.requests()
            .iter()
            .any(|r| r.starts_with(&format!("DELETE /channels/{caller}"))),
        "a handoff must not hang the caller up"
    );
    let (st, o) = outcome(&s.base, &uuid).await;
    assert_eq!((st, o["outcome"].as_str()), (200, Some("handoff")));
    assert!(wait_calls(&s.base, 0).await);
    // The handoff counts as a pass to a person, and the console's queue
    // does not show a phone call it cannot answer.
    let c = conversation(&s.base, &uuid).await;
    assert_eq!(c["transfers"], 1, "{c}");
    assert!(c["handoff"].is_null(), "{c}");
    let op = common::operator(&s, "op1").await;
    let q: Value = op
        .get(format!("{}/api/v1/operator/queue", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!q.to_string().contains(&uuid), "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_mode_cleans_up_a_hangup_and_reconnects_after_asterisk_restarts() {
    let (sim, ari) = Sim::start();
    let (s, _) = ari_server(&ari);
    ready(&s.base).await;
    wait_connected(&sim, 1).await;
    let caller = "1733300000.21";
    let (uuid, mut a) = ari_call(&sim, caller).await;
    let some = a.some(20, Duration::from_secs(20)).await;
    assert!(some.frames >= 20, "mid-prompt");
    // The caller hangs up: Stasis ends for their channel.
    sim.emit(Sim::event("StasisEnd", caller, serde_json::json!({})));
    assert!(sim
        .wait_for("DELETE /channels/otklik-media-", "")
        .await
        .is_some());
    assert!(sim.wait_for("DELETE /bridges/otklik-", "").await.is_some());
    // Asterisk hangs the media channel up: its socket closes.
    drop(a);
    assert!(wait_calls(&s.base, 0).await, "a call task was left behind");
    let (_, o) = outcome(&s.base, &uuid).await;
    assert_eq!(o["outcome"], "hangup");
    // Asterisk restarts: the events socket closes, the robot comes back.
    sim.drop_sockets();
    wait_connected(&sim, 2).await;
    let (_, mut b) = ari_call(&sim, "1733300000.22").await;
    let g = b.some(10, Duration::from_secs(20)).await;
    assert!(g.frames >= 10, "the next call is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_vosk_words_stop_the_robot_and_loud_noise_does_not() {
    let (s, port) = voice_server(&[
        ("OTKLIK_SPEECH_ENGINE", "vosk".to_string()),
        (
            "OTKLIK_SPEECH_VOSK_MODEL",
            "models/vosk/model-ko".to_string(),
        ),
    ]);
    ready(&s.base).await;
    common::speech_ready(&s.base).await;
    let uuid = "44444444-2222-4333-8444-555555555555";
    let a = Asterisk::call(port, uuid).await;
    let (rd, mut wr) = a.sock.into_split();
    let (heard, reader) = frames_of(rd);
    let t = Instant::now();
    while heard.lock().unwrap().len() < 25 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second of loud hum over the greeting: no words, the robot goes on.
    let hum: Vec<i16> = (0..8000)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 50.0 / 8000.0).sin() * 12000.0) as i16)
        .collect();
    let hum_at = Instant::now();
    send_paced(&mut wr, &hum).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hum_end = Instant::now();
    let during_hum = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|&&x| x > hum_at + Duration::from_millis(400) && x < hum_end)
        .count();
    let rel: Vec<i64> = heard
        .lock()
        .unwrap()
        .iter()
        .map(|&x| {
            if x > hum_at {
                x.duration_since(hum_at).as_millis() as i64
            } else {
                -(hum_at.duration_since(x).as_millis() as i64)
            }
        })
        .collect();
    assert!(
        during_hum > 25,
        "hum stopped the robot: {during_hum} frames while it lasted; frames at {rel:?}; {}",
        conversation(&s.base, uuid).await
    );
    // Words over the greeting stop it (a partial result), and it answers.
    let words = common::korean("안녕하세요 예약하고 싶습니다");
    let spoke_at = Instant::now();
    send_paced(&mut wr, &words).await;
    let ended_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let at = heard.lock().unwrap().clone();
    let during = at
        .iter()
        .filter(|&&x| x > spoke_at + Duration::from_millis(1500) && x < ended_at)
        .count();
    // (the first partial result comes with the first word, within a second
    // or so of speech)
    let rel: Vec<u128> = at
        .iter()
        .filter(|&&x| x > spoke_at)
        .map(|&x| x.duration_since(spoke_at).as_millis())
        .collect();
    assert_eq!(
        during,
        0,
        "the robot kept talking over words (barge-in); speech {} ms, frames at {rel:?}; {}",
        ended_at.duration_since(spoke_at).as_millis(),
        conversation(&s.base, uuid).await
    );
    let after = at.iter().filter(|&&x| x > ended_at).count();
    assert!(after > 25, "the robot answered: {after} frames");
    let conv = conversation(&s.base, uuid).await;
    let said_by_client = conv["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "client")
        .count();
    assert_eq!(said_by_client, 1, "one utterance, the hum was none: {conv}");
    wr.write_all(&[0, 0, 0]).await.unwrap();
    drop(wr);
    let _ = reader.await;
    assert!(wait_calls(&s.base, 0).await);
}
