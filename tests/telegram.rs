//! The Telegram channel against a Bot API double on loopback: a real axum
//! server speaking the Bot API's JSON, which `otklik serve` polls through
//! teloxide. A whole conversation with inline keyboards and a stale button,
//! HTML escaping, a video note, consent before the contact button, a 429
//! with retry_after, 5xx errors, a restart in the middle (offset persisted, nothing
//! processed twice), a handoff and an operator's reply from the console.
//! Replies and operators' messages whose sending failed are not lost: delivered when the webhook
//! update comes again, or at the next start in polling mode. The double
//! parses HTML into text and entities as Telegram does (refusing what its
//! parser refuses), keeps each message so that a press carries it and an
//! edit changes it, and answers edits and callback queries as the Bot API
//! does. Links sit after the answer, keyboards fit a phone, a pressed choice
//! is echoed in its message, /privacy offers withdrawal only with a consent.
//! Voice messages: real speech (festival's Russian voice, encoded to Ogg
//! Opus by opusenc as Telegram's clients record it) is fetched through
//! getFile and the file endpoint, recognised by the server's Whisper and
//! answered like text; the limits hold before anything is downloaded.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAT: i64 = 5550001;
const TOKEN: &str = "123456:TEST-token";

#[derive(Default)]
struct Fake {
    updates: Vec<Value>,
    /// (method, request body)
    calls: Vec<(String, Value)>,
    /// sendMessage answers 429 this many times first
    fail_send: u32,
    /// sendMessage answers 400 (not retried) this many times first
    fail_hard: u32,
    /// sendMessage answers a server error this many times first: the Bot
    /// API's JSON 500 and a proxy's HTML 502, alternately
    fail_5xx: u32,
    /// the offsets getUpdates was called with
    offsets: Vec<i64>,
    next_message: i64,
    next_update: i64,
    /// The bot's messages as they are now (edits applied), by id.
    messages: BTreeMap<i64, Value>,
    /// Each message's inline keyboard as sent, by id: a press names its message.
    keyboards: BTreeMap<i64, Value>,
    /// Callback queries sent to the bot, and whether each was answered.
    queries: BTreeMap<String, bool>,
    /// Files the client sent, (file_id, bytes); the n-th is served at
    /// `voice/file_<n>.oga`.
    files: Vec<(String, Vec<u8>)>,
    /// The file paths downloaded from the file endpoint, in order.
    downloads: Vec<String>,
    /// Photos the bot uploaded (sendPhoto): the file's bytes and caption.
    photos: Vec<(Vec<u8>, String)>,
}

type Shared = Arc<Mutex<Fake>>;

/// A Bot API error answer.
fn api_error(status: StatusCode, description: &str, extra: Value) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if !extra.is_null() {
        body["parameters"] = extra;
    }
    (status, Json(body)).into_response()
}

fn bad_request(description: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        &format!("Bad Request: {description}"),
        Value::Null,
    )
}

/// A bot's message as the Bot API returns it: plain text with its entities,
/// and the inline keyboard (a reply keyboard is not part of a message).
fn message_json(id: i64, text: &str, entities: &[Value], markup: &Value) -> Value {
    let mut m = json!({"message_id": id, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"},
           "from": {"id": 777, "is_bot": true, "first_name": "Помощник", "username": "otklik_bot"}, "text": text});
    if !entities.is_empty() {
        m["entities"] = json!(entities);
    }
    if markup["inline_keyboard"].is_array() {
        m["reply_markup"] = json!({"inline_keyboard": markup["inline_keyboard"]});
    }
    m
}

/// A request body as JSON: teloxide posts JSON, or multipart when a method
/// may carry a file (setWebhook); multipart text fields become JSON strings.
fn body_json(bytes: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = serde_json::Map::new();
    for part in text
        .split("Content-Disposition: form-data; name=\"")
        .skip(1)
    {
        let Some((name, rest)) = part.split_once('"') else {
            continue;
        };
        let Some((_, value)) = rest.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.split("\r\n--").next().unwrap_or("").to_string();
        out.insert(name.to_string(), Value::String(value));
    }
    Value::Object(out)
}

/// Telegram's HTML parse mode: the plain text and its entities (offsets and
/// lengths in UTF-16 code units), or the Bot API's error for a tag it does
/// not support, an unclosed tag or a stray `<`.
fn parse_html(html: &str) -> Result<(String, Vec<Value>), String> {
    fn entity(s: &str) -> Option<char> {
        match s {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            _ => {
                let n = s.strip_prefix('#')?;
                let code = match n.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok()?,
                    None => n.parse().ok()?,
                };
                char::from_u32(code)
            }
        }
    }
    fn decode(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            match rest.find(';').and_then(|j| Some((j, entity(&rest[1..j])?))) {
                Some((j, c)) => {
                    out.push(c);
                    rest = &rest[j + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out + rest
    }
    let mut text = String::new();
    let mut units = 0; // UTF-16 length of `text`
    let mut open: Vec<(String, usize, Value)> = Vec::new();
    let mut entities = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let at = html.len() - rest.len();
        if rest.starts_with('<') {
            let end = rest.find('>').ok_or(format!(
                "can't parse entities: Unclosed start tag at byte offset {at}"
            ))?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim().to_lowercase();
                match open.pop() {
                    Some((n, start, mut e)) if n == name => {
                        if units > start {
                            e["offset"] = json!(start);
                            e["length"] = json!(units - start);
                            entities.push(e);
                        }
                    }
                    _ => {
                        return Err(format!(
                            "can't parse entities: Unmatched end tag at byte offset {at}, expected \"</{}>\", found \"</{name}>\"",
                            open.last().map_or("", |o| o.0.as_str())
                        ))
                    }
                }
                continue;
            }
            let (name, attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
            let name = name.to_lowercase();
            let e = match name.as_str() {
                "b" | "strong" => json!({"type": "bold"}),
                "i" | "em" => json!({"type": "italic"}),
                "u" | "ins" => json!({"type": "underline"}),
                "s" | "strike" | "del" => json!({"type": "strikethrough"}),
                "tg-spoiler" => json!({"type": "spoiler"}),
                "code" => json!({"type": "code"}),
                "pre" => json!({"type": "pre"}),
                "a" => {
                    let href = attrs
                        .trim()
                        .strip_prefix("href=\"")
                        .and_then(|h| h.split_once('"'))
                        .map(|(h, _)| decode(h))
                        .unwrap_or_default();
                    json!({"type": "text_link", "url": href})
                }
                _ => {
                    return Err(format!(
                        "can't parse entities: Unsupported start tag \"{name}\" at byte offset {at}"
                    ))
                }
            };
            open.push((name, units, e));
            continue;
        }
        let next = rest.find('<').unwrap_or(rest.len());
        let plain = decode(&rest[..next]);
        units += plain.encode_utf16().count();
        text.push_str(&plain);
        rest = &rest[next..];
    }
    if let Some((name, _, _)) = open.last() {
        return Err(format!(
            "can't parse entities: Can't find end tag corresponding to start tag \"{name}\""
        ));
    }
    // As Telegram lists them: by offset, an outer entity before the inner.
    entities.sort_by_key(|e| {
        (
            e["offset"].as_u64(),
            std::cmp::Reverse(e["length"].as_u64()),
        )
    });
    Ok((text, entities))
}

/// The text of a sendMessage or editMessageText, parsed by its parse mode.
fn parse_text(body: &Value) -> Result<(String, Vec<Value>), String> {
    let text = body["text"].as_str().unwrap_or("");
    if body["parse_mode"] == "HTML" {
        parse_html(text)
    } else {
        Ok((text.to_string(), Vec::new()))
    }
}

/// A file part of a multipart body (`name="…"; filename="…"`), its bytes.
/// A field `attach://<name>` names the part, as the Bot API reads uploads.
fn multipart_file(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let boundary = &raw[..find(raw, b"\r\n", 0)?];
    let part = find(raw, format!("name=\"{name}\"").as_bytes(), 0)?;
    let start = find(raw, b"\r\n\r\n", part)? + 4;
    let end = find(raw, &[b"\r\n", boundary].concat(), start)?;
    Some(raw[start..end].to_vec())
}

async fn api(
    State(f): State<Shared>,
    Path((_bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let raw = body.clone();
    let body = if body.is_empty() {
        json!({})
    } else {
        body_json(&body)
    };
    // Bot API method names are case-insensitive (teloxide sends "SendMessage").
    let method = method.to_lowercase();
    if method == "getupdates" {
        let offset = body["offset"].as_i64().unwrap_or(0);
        for _ in 0..10 {
            {
                let mut g = f.lock().unwrap();
                g.offsets.push(offset);
                let ups: Vec<Value> = g
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
                    .cloned()
                    .collect();
                if !ups.is_empty() {
                    return Json(json!({"ok": true, "result": ups})).into_response();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Json(json!({"ok": true, "result": []})).into_response();
    }
    let mut g = f.lock().unwrap();
    if method == "sendmessage" {
        if let Some((label, refused)) = refusal(&mut g) {
            g.calls.push((label.into(), body));
            return refused;
        }
        if let Err(e) = parse_text(&body) {
            g.calls.push(("unparsable".into(), body));
            return bad_request(&e);
        }
    }
    g.calls.push((method.clone(), body.clone()));
    let result = match method.as_str() {
        "sendmessage" => {
            let (text, entities) = parse_text(&body).unwrap();
            g.next_message += 1;
            let id = 100 + g.next_message;
            let m = message_json(id, &text, &entities, &body["reply_markup"]);
            if let Some(k) = m.get("reply_markup") {
                g.keyboards.insert(id, k.clone());
            }
            g.messages.insert(id, m.clone());
            m
        }
        // Without a reply_markup an edit drops the message's inline keyboard.
        "editmessagetext" | "editmessagereplymarkup" => {
            let id = body["message_id"].as_i64().unwrap_or(0);
            let Some(old) = g.messages.get(&id).cloned() else {
                return bad_request("message to edit not found");
            };
            let (text, entities) = if method == "editmessagetext" {
                match parse_text(&body) {
                    Ok(t) => t,
                    Err(e) => return bad_request(&e),
                }
            } else {
                let entities = old["entities"].as_array().cloned().unwrap_or_default();
                (old["text"].as_str().unwrap().to_string(), entities)
            };
            let m = message_json(id, &text, &entities, &body["reply_markup"]);
            if m == old {
                return bad_request("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message");
            }
            g.messages.insert(id, m.clone());
            m
        }
        // A photo uploaded as a multipart file, as Telegram takes it.
        "sendphoto" => {
            let part = body["photo"]
                .as_str()
                .and_then(|p| p.strip_prefix("attach://"));
            let Some(bytes) = part.and_then(|name| multipart_file(&raw, name)) else {
                return bad_request("there is no photo in the request");
            };
            let caption = body["caption"].as_str().unwrap_or("").to_string();
            g.photos.push((bytes, caption.clone()));
            g.next_message += 1;
            let id = 100 + g.next_message;
            json!({"message_id": id, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"},
                "photo": [{"file_id": format!("p{id}"), "file_unique_id": format!("up{id}"), "width": 240, "height": 240}],
                "caption": caption})
        }
        "answercallbackquery" => {
            let id = body["callback_query_id"].as_str().unwrap_or("").to_string();
            match g.queries.get_mut(&id) {
                Some(answered @ false) => *answered = true,
                _ => {
                    return bad_request(
                        "query is too old and response timeout expired or query ID is invalid",
                    )
                }
            }
            json!(true)
        }
        // As Telegram answers: the file's size and the path to download it by.
        "getfile" => {
            let id = body["file_id"].as_str().unwrap_or("");
            let Some(n) = g.files.iter().position(|(f, _)| f == id) else {
                return bad_request("invalid file_id");
            };
            json!({"file_id": id, "file_unique_id": format!("u{id}"), "file_size": g.files[n].1.len(),
                "file_path": format!("voice/file_{n}.oga")})
        }
        "getme" => {
            json!({"id": 777, "is_bot": true, "first_name": "Помощник", "username": "otklik_bot"})
        }
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result})).into_response()
}

/// The refusal due for the next sendMessage, if any: the label recorded in
/// `calls` instead of the method, and the answer.
fn refusal(g: &mut Fake) -> Option<(&'static str, Response)> {
    if g.fail_5xx > 0 {
        g.fail_5xx -= 1;
        let r = if g.fail_5xx % 2 == 1 {
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                Value::Null,
            )
        } else {
            (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response()
        };
        return Some(("5xx", r));
    }
    if g.fail_send > 0 {
        g.fail_send -= 1;
        let r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: retry after 1",
            json!({"retry_after": 1}),
        );
        return Some(("429", r));
    }
    if g.fail_hard > 0 {
        g.fail_hard -= 1;
        let r = api_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message is too long",
            Value::Null,
        );
        return Some(("400", r));
    }
    None
}

/// The Bot API's file endpoint: `/file/bot<token>/<file_path>`.
async fn file(State(f): State<Shared>, Path((bot, path)): Path<(String, String)>) -> Response {
    let mut g = f.lock().unwrap();
    let n = path
        .strip_prefix("voice/file_")
        .and_then(|p| p.strip_suffix(".oga"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < g.files.len());
    match n {
        Some(n) if bot == format!("bot{TOKEN}") => {
            g.downloads.push(path);
            let bytes = g.files[n].1.clone();
            ([("content-type", "audio/ogg")], bytes).into_response()
        }
        _ => api_error(StatusCode::NOT_FOUND, "Not Found", Value::Null),
    }
}

fn fake_server(f: Shared) -> String {
    let app = Router::new()
        .route("/{bot}/{method}", post(api))
        .route("/file/{bot}/{*path}", get(file))
        .with_state(f);
    format!("http://{}", common::serve_in_background(app))
}

struct Chat {
    f: Shared,
    seen: usize,
}

impl Chat {
    fn push(&self, mut update: Value) {
        let mut g = self.f.lock().unwrap();
        g.next_update += 1;
        update["update_id"] = json!(g.next_update);
        g.updates.push(update);
    }

    fn user() -> Value {
        json!({"id": CHAT, "is_bot": false, "first_name": "Иван"})
    }

    fn text(&self, t: &str) {
        let mid = 10_000 + self.f.lock().unwrap().next_update;
        self.push(json!({"message": {"message_id": mid, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Self::user(), "text": t}}));
    }

    fn message(&self, extra: Value) {
        let mid = 10_000 + self.f.lock().unwrap().next_update;
        let mut m = json!({"message_id": mid, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Self::user()});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        self.push(json!({"message": m}));
    }

    /// The client sends a voice message: its file is put on the Bot API
    /// server, the update says its duration and size (as Telegram does).
    fn voice(&self, file_id: &str, ogg: &[u8], seconds: u32) {
        self.f
            .lock()
            .unwrap()
            .files
            .push((file_id.to_string(), ogg.to_vec()));
        self.message(
            json!({"voice": {"file_id": file_id, "file_unique_id": format!("u{file_id}"),
            "duration": seconds, "mime_type": "audio/ogg", "file_size": ogg.len()}}),
        );
    }

    /// The client presses the button with `data`: the callback query
    /// carries the message the button was sent with, as it is now.
    fn press(&self, data: &str) {
        let message = self.message_with(data);
        let id = {
            let mut g = self.f.lock().unwrap();
            let id = format!("cq{}", g.next_update + 1);
            g.queries.insert(id.clone(), false);
            id
        };
        self.push(json!({"callback_query": {"id": id, "from": Self::user(), "chat_instance": "ci", "data": data,
            "message": message}}));
    }

    /// The latest message sent with a button carrying `data`, as it is now.
    fn message_with(&self, data: &str) -> Value {
        let g = self.f.lock().unwrap();
        let (id, _) = g
            .keyboards
            .iter()
            .rev()
            .find(|(_, k)| {
                k["inline_keyboard"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|row| row.as_array().unwrap())
                    .any(|b| b["callback_data"] == data)
            })
            .unwrap_or_else(|| panic!("no message has a button {data}"));
        g.messages[id].clone()
    }

    /// The next call of `method` after the ones already looked at.
    fn next(&mut self, method: &str) -> Value {
        let t0 = Instant::now();
        loop {
            {
                let g = self.f.lock().unwrap();
                if let Some(i) = g.calls[self.seen..]
                    .iter()
                    .position(|(m, _)| *m == method.to_lowercase())
                {
                    self.seen += i + 1;
                    return g.calls[self.seen - 1].1.clone();
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no {method} call; calls: {:?}",
                self.f.lock().unwrap().calls
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The next bot message (sendMessage) text and body.
    fn reply(&mut self) -> (String, Value) {
        let b = self.next("sendMessage");
        (b["text"].as_str().unwrap().to_string(), b)
    }

    /// No new sendMessage during `secs`.
    fn quiet(&mut self, secs: u64) {
        std::thread::sleep(Duration::from_secs(secs));
        let g = self.f.lock().unwrap();
        let extra: Vec<_> = g.calls[self.seen..]
            .iter()
            .filter(|(m, _)| m == "sendmessage")
            .collect();
        assert!(extra.is_empty(), "unexpected messages: {extra:?}");
    }
}

fn button(body: &Value, id_suffix: &str) -> String {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap_or_else(|| panic!("no inline keyboard in {body}"))
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|b| b["callback_data"].as_str().unwrap().to_string())
        .find(|d| d.ends_with(id_suffix))
        .unwrap_or_else(|| panic!("no button ending {id_suffix} in {body}"))
}

/// The labels of an inline keyboard, row by row.
fn rows(body: &Value) -> Vec<Vec<String>> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap_or_else(|| panic!("no inline keyboard in {body}"))
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|b| b["text"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Operator op1 («Анна») signed in to the console, on the test chat's conversation.
struct Console {
    http: reqwest::Client,
    conv: String,
}

impl Console {
    async fn sign_in(base: &str) -> Console {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let r = http
            .post(format!("{base}/api/v1/operator/login"))
            .json(&json!({"login": "op1", "password": common::OPERATOR_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let conv = format!("{base}/api/v1/operator/conversations/telegram:{CHAT}");
        Console { http, conv }
    }

    /// POSTs to the conversation's `action`; the status and the JSON answer.
    async fn post(&self, action: &str, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/{action}", self.conv));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A bot polling a fresh Bot API double, with its server ready.
struct Bot {
    f: Shared,
    env: Vec<(&'static str, String)>,
    server: common::Server,
    rt: tokio::runtime::Runtime,
    c: Chat,
}

fn polling_bot() -> Bot {
    polling_bot_with(&[])
}

/// A polling bot with more settings.
fn polling_bot_with(extra: &[(&'static str, String)]) -> Bot {
    let f: Shared = Arc::default();
    let mut env = vec![
        ("OTKLIK_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("OTKLIK_TELEGRAM_API_URL", fake_server(f.clone())),
        ("OTKLIK_TELEGRAM_POLL_TIMEOUT_S", "1".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let server = common::start_server(&env);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let c = Chat {
        f: f.clone(),
        seen: 0,
    };
    Bot {
        f,
        env,
        server,
        rt,
        c,
    }
}

#[test]
fn a_telegram_conversation_end_to_end() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();

    c.text("/start");
    let (t, b) = c.reply();
    assert!(
        t.contains("Здравствуйте") && t.contains("👋"),
        "a friendly greeting with an emoji: {t}"
    );
    assert_eq!(b["parse_mode"], "HTML");
    assert_eq!(
        b["reply_markup"]["keyboard"][0][0]["text"], "Оператор",
        "the persistent operator button: {b}"
    );
    assert_eq!(b["reply_markup"]["is_persistent"], true);

    c.text("пенсия");
    let (t, b) = c.reply();
    assert!(t.contains("Ваш вопрос решён?"), "{t}");
    let no = button(&b, ":no");
    c.press(&no);
    c.next("answerCallbackQuery");
    let e = c.next("editMessageText");
    assert!(
        e["text"].as_str().unwrap().ends_with("Ваш выбор: Нет"),
        "{e}"
    );
    let (t, _) = c.reply();
    assert!(t.contains("другими словами"), "{t}");
    // The same button again: stale, answered, nothing else happens.
    c.press(&no);
    let a = c.next("answerCallbackQuery");
    assert!(a["text"].as_str().unwrap().contains("неактуален"), "{a}");
    c.quiet(2);

    // A video note is not listened to: text or a voice message is asked for.
    c.message(json!({"video_note": {"file_id": "v1", "file_unique_id": "u1", "length": 240, "duration": 3}}));
    let (t, _) = c.reply();
    assert!(t.contains("понимаю текст и голосовые сообщения"), "{t}");
    assert!(
        !f.lock().unwrap().calls.iter().any(|(m, _)| m == "getfile"),
        "not downloaded"
    );

    // Consent before any personal data; the contact button only after it.
    c.text("перезвоните мне пожалуйста");
    let (t, b) = c.reply();
    assert!(t.contains("согласны"), "{t}");
    assert!(
        b["reply_markup"]["keyboard"].is_null(),
        "no contact button before consent: {b}"
    );
    c.message(
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Иван", "user_id": CHAT}}),
    );
    let (t, _) = c.reply();
    assert!(
        t.contains("не сохранила"),
        "an unasked contact is not stored: {t}"
    );
    c.press(&button(&b, ":yes"));
    let (t, b) = c.reply();
    assert!(t.contains("номер телефона"), "{t}");
    assert_eq!(
        b["reply_markup"]["keyboard"][0][0]["request_contact"], true,
        "{b}"
    );
    c.message(
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Иван", "user_id": CHAT}}),
    );
    let (t, _) = c.reply();
    assert!(t.contains("Когда Вам удобно"), "{t}");

    // Restart in the middle of the form: the offset and the form survive.
    let last_update = f.lock().unwrap().next_update;
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let t0 = Instant::now();
    while !f
        .lock()
        .unwrap()
        .offsets
        .iter()
        .rev()
        .take(1)
        .any(|o| *o == last_update + 1)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "polling did not resume from the persisted offset: {:?}",
            f.lock().unwrap().offsets
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.quiet(1); // nothing processed twice
    c.text("завтра после 14");
    let (t, _) = c.reply();
    assert!(
        t.contains("Коротко опишите"),
        "the form goes on after the restart: {t}"
    );
    c.text("пропустить");
    let (t, b) = c.reply();
    assert!(t.contains("+79123456789"), "{t}");
    c.press(&button(&b, ":yes"));
    let (t, _) = c.reply();
    assert!(t.contains("Заявка на обратный звонок принята"), "{t}");
    let phones = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, b)| {
            m == "sendmessage" && b["text"].as_str().unwrap().contains("Когда Вам удобно")
        })
        .count();
    assert_eq!(phones, 1, "no update was processed twice");

    // A 429 with retry_after: the reply still arrives, once.
    f.lock().unwrap().fail_send = 1;
    c.text("/operator");
    let (t, _) = c.reply();
    assert!(t.contains("Передаю разговор оператору"), "{t}");
    assert!(f.lock().unwrap().calls.iter().any(|(m, _)| m == "429"));

    // The operator answers from the console; HTML in it is escaped. The Bot
    // API fails twice with server errors first (JSON 500, a proxy's HTML
    // 502): retried, delivered once.
    f.lock().unwrap().fail_5xx = 2;
    rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        assert_eq!(op.post("take", json!(null)).await.0, 200);
        let (status, body) = op
            .post(
                "reply",
                json!({"text": "<b>Здравствуйте</b> & добрый день"}),
            )
            .await;
        assert_eq!((status, &body["delivered"]), (200, &json!(true)), "{body}");
    });
    let (t, _) = c.reply();
    assert!(t.contains("подключился оператор"), "told first: {t}");
    let (t, b) = c.reply();
    assert!(
        t.contains("&lt;b&gt;Здравствуйте&lt;/b&gt; &amp; добрый день"),
        "escaped for HTML: {t}"
    );
    assert_eq!(b["parse_mode"], "HTML");
    let failures = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, _)| m == "5xx")
        .count();
    assert_eq!(failures, 2, "both server errors were retried");
    // The bot is silent while the operator holds the conversation.
    c.text("спасибо, жду");
    c.quiet(2);

    // /privacy and /profile.
    c.text("/privacy");
    let (t, b) = c.reply();
    assert!(t.contains("Вы дали согласие"), "{t}");
    assert_eq!(
        b["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "w"
    );
    c.text("/profile");
    let (_, b) = c.reply();
    button(&b, "p:senior");
}

#[test]
fn webhook_mode_checks_the_secret() {
    let f: Shared = Arc::default();
    let api = fake_server(f.clone());
    let secret = "s3cret-s3cret-s3cret";
    let server = common::start_server(&[
        ("OTKLIK_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("OTKLIK_TELEGRAM_API_URL", api),
        ("OTKLIK_TELEGRAM_MODE", "webhook".to_string()),
        (
            "OTKLIK_TELEGRAM_WEBHOOK_URL",
            "https://bot.example.gov.ru/telegram/webhook".to_string(),
        ),
        ("OTKLIK_TELEGRAM_WEBHOOK_SECRET", secret.to_string()),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let mut c = Chat {
        f: f.clone(),
        seen: 0,
    };
    let hook = c.next("setWebhook");
    assert_eq!(hook["secret_token"], secret);
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 1764140000,
        "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Chat::user(), "text": "/start"}});
    rt.block_on(async {
        let base = &server.base;
        assert_eq!(webhook(base, None, &update).await, 401, "no secret header");
        assert_eq!(
            webhook(base, Some("wrong"), &update).await,
            401,
            "a wrong secret"
        );
        assert_eq!(webhook(base, Some(secret), &update).await, 200);
        // Telegram delivering the same update again: not processed twice.
        assert_eq!(webhook(base, Some(secret), &update).await, 200);
    });
    let (t, _) = c.reply();
    assert!(t.contains("Здравствуйте"), "{t}");
    c.quiet(1);

    // The reply to an update fails to send: 500, so Telegram sends the
    // update again; the committed reply goes out then, once, and the turn is
    // not run twice.
    f.lock().unwrap().fail_hard = 1;
    let update = json!({"update_id": 2, "message": {"message_id": 2, "date": 1764140001,
        "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Chat::user(), "text": "когда придёт пенсия"}});
    rt.block_on(async {
        let send = || webhook(&server.base, Some(secret), &update);
        assert_eq!(send().await, 500, "the send failed");
        assert_eq!(send().await, 200, "delivered now");
        assert_eq!(send().await, 200, "nothing left to do");
    });
    let failed = c.next("400");
    let (t, _) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap(), "the same reply");
    c.quiet(1);
    let texts = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, b)| m == "sendmessage" && b["text"] == failed["text"])
        .count();
    assert_eq!(texts, 1, "sent once");
    assert!(
        !f.lock()
            .unwrap()
            .calls
            .iter()
            .any(|(m, _)| m == "getupdates"),
        "no polling in webhook mode"
    );

    // A voice message delivered twice: fetched, heard and answered once.
    rt.block_on(common::speech_ready(&server.base));
    let (ogg, secs) = spoken("Да.");
    f.lock()
        .unwrap()
        .files
        .push(("voice-da".into(), ogg.clone()));
    let update = json!({"update_id": 3, "message": {"message_id": 3, "date": 1764140002,
        "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Chat::user(),
        "voice": {"file_id": "voice-da", "file_unique_id": "uda", "duration": secs,
            "mime_type": "audio/ogg", "file_size": ogg.len()}}});
    rt.block_on(async {
        for _ in 0..2 {
            assert_eq!(webhook(&server.base, Some(secret), &update).await, 200);
        }
    });
    let (t, _) = c.reply();
    assert!(t.to_lowercase().starts_with("вы сказали: «да"), "{t}");
    c.reply();
    c.quiet(1);
    assert_eq!(fetched(&f), (1, 1), "fetched once");
}

#[test]
fn a_reply_that_failed_is_sent_at_the_next_start() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    let (t, _) = c.reply();
    assert!(t.contains("Здравствуйте"), "{t}");
    // The answer cannot be sent (a 400 is not retried); polling goes on.
    f.lock().unwrap().fail_hard = 1;
    c.text("когда придёт пенсия");
    let failed = c.next("400");
    c.quiet(1);
    // After a restart the saved reply goes out, once, with its buttons.
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, b) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap(), "the same reply");
    assert_eq!(b["reply_markup"], failed["reply_markup"]);
    c.quiet(2);
    // The conversation goes on from there.
    c.text("/operator");
    let (t, _) = c.reply();
    assert!(t.contains("Передаю разговор оператору"), "{t}");
}

#[test]
fn an_operator_message_that_failed_is_sent_later_and_in_order() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    c.reply();
    // Telegram is down from here: the bot's answer to the handoff fails...
    f.lock().unwrap().fail_hard = 1;
    c.text("/operator");
    let handoff = c.next("400");
    assert!(
        handoff["text"]
            .as_str()
            .unwrap()
            .contains("Передаю разговор оператору"),
        "{handoff}"
    );
    // ...and so do the notice that an operator joined and the operator's
    // message: the console is told it is saved (202), not that it failed,
    // so the operator does not resend it.
    f.lock().unwrap().fail_hard = 2;
    let (status, body) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        assert_eq!(op.post("take", json!(null)).await.0, 200);
        op.post("reply", json!({"text": "Проверю Ваше заявление и напишу."}))
            .await
    });
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivered"], false);
    assert!(
        body["notice"].as_str().unwrap().contains("сохранено"),
        "{body}"
    );
    let joined = c.next("400");
    assert!(
        joined["text"]
            .as_str()
            .unwrap()
            .contains("подключился оператор"),
        "{joined}"
    );
    let failed = c.next("400");
    assert_eq!(
        failed["text"], "<b>Анна</b>: Проверю Ваше заявление и напишу.",
        "signed with the operator's name"
    );
    // So is the next one; all four wait.
    f.lock().unwrap().fail_hard = 1;
    let (status, _) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        op.post("reply", json!({"text": "Нашла, пишу ответ."}))
            .await
    });
    assert_eq!(status, 202);
    c.next("400");
    c.quiet(1);
    // After a restart they go out once each, in the order they were written
    // (not in the order of their keys: "telegram:out:…" < "telegram:update:…").
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, _) = c.reply();
    assert_eq!(t, handoff["text"].as_str().unwrap());
    let (t, _) = c.reply();
    assert_eq!(t, joined["text"].as_str().unwrap());
    let (t, _) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap());
    let (t, _) = c.reply();
    assert_eq!(t, "<b>Анна</b>: Нашла, пишу ответ.");
    c.quiet(2);
    // Giving the conversation back: the bot's message is sent at once and
    // not kept, so another restart sends nothing again.
    let (status, body) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        op.post("release", json!(null)).await
    });
    assert_eq!((status, &body["delivered"]), (200, &json!(true)), "{body}");
    let (t, _) = c.reply();
    assert!(!t.starts_with("<b>Анна</b>"), "from the bot: {t}");
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    c.quiet(2);
    drop(server);
}

#[test]
fn deep_links_help_and_stop() {
    // The server runs while `bot` lives.
    let mut bot = polling_bot();
    let c = &mut bot.c;
    // https://t.me/<bot>?start=segment-senior: the senior profile, no emoji.
    c.text("/start segment-senior");
    let (t, _) = c.reply();
    assert!(t.contains("пенсионер"), "the profile is set: {t}");
    let (t, _) = c.reply();
    assert!(
        t.contains("Здравствуйте") && !t.contains('👋'),
        "no emoji for seniors: {t}"
    );
    // A topic deep link opens the intent at once, in the senior wording.
    c.text("/start topic-pension_application");
    let (t, _) = c.reply();
    assert!(!t.contains("Ваш вопрос решён?"), "the greeting first: {t}");
    let (t, _) = c.reply();
    assert!(
        t.contains("раньше это был Пенсионный фонд") && t.contains("Ваш вопрос решён?"),
        "{t}"
    );
    c.text("/help");
    let (t, _) = c.reply();
    assert!(
        t.contains("/profile") && t.contains("/privacy") && t.contains("Оператор"),
        "{t}"
    );
    c.text("/stop");
    let (t, b) = c.reply();
    assert!(
        t.contains("насколько легко"),
        "/stop closes with the rating: {t}"
    );
    button(&b, ":easy");
}

#[test]
fn the_conversation_rate_limit_holds_on_telegram() {
    let Bot { server, mut c, .. } =
        polling_bot_with(&[("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "3".into())]);
    c.text("/start");
    c.reply();
    for _ in 0..2 {
        c.text("пенсия");
        let (t, _) = c.reply();
        assert!(t.contains("Ваш вопрос решён?"), "{t}");
    }
    c.text("пенсия");
    let (t, _) = c.reply();
    assert!(t.contains("Слишком много сообщений"), "{t}");
    c.quiet(1);
    drop(server);
}

/// A reply holding the client's phone that could not be sent, then
/// «отзываю согласие»: what goes out after the restart no longer has it.
#[test]
fn consent_withdrawal_scrubs_replies_not_yet_delivered() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    c.reply();
    c.text("перезвоните мне пожалуйста");
    c.reply();
    c.text("да, согласен");
    c.reply();
    c.text("+7 (912) 345-67-89");
    c.reply();
    c.text("завтра после 14");
    c.reply();
    c.text("пропустить");
    let (t, _) = c.reply();
    assert!(t.contains("+79123456789"), "{t}");
    // Telegram refuses the confirmation, which repeats the phone.
    f.lock().unwrap().fail_hard = 1;
    c.text("да");
    let failed = c.next("400");
    assert!(
        failed["text"].as_str().unwrap().contains("принята"),
        "{failed}"
    );
    c.text("отзываю согласие на обработку персональных данных");
    let (t, _) = c.reply();
    assert!(t.contains("Согласие отозвано"), "{t}");
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, _) = c.reply();
    assert!(t.contains("принята"), "the kept reply still goes out: {t}");
    assert!(
        !t.contains("912") && !t.contains("345"),
        "without the phone: {t}"
    );
    c.quiet(1);
}

/// A turn with links, as the engine gives it, for `html` alone.
fn turn_with_links(text: &str, links_at: Option<usize>) -> otklik::dialog::Turn {
    let link = |title: &str, url: &str| otklik::nlu::kb::Link {
        title: title.into(),
        url: url.into(),
    };
    otklik::dialog::Turn {
        text: text.into(),
        choices: Vec::new(),
        actions: Vec::new(),
        intent: None,
        decision: None,
        segment: "universal".into(),
        links: vec![
            link("Госуслуги", "https://www.gosuslugi.ru/"),
            link("Льготы <и> выплаты", "https://example.ru/?a=1&b=\"2\""),
        ],
        links_at,
        node: "answer".into(),
        seq: 2,
        events: Vec::new(),
        image: None,
    }
}

/// The links go where `links_at` says: after the answer's paragraphs,
/// before the question that follows; None keeps them at the end.
#[test]
fn links_are_placed_after_the_answer_paragraphs() {
    use otklik::channels::telegram::html;
    let text = "Ответ: 2 < 3 & «ещё».\n\nВторой абзац ответа.\n\nВаш вопрос решён?";
    let anchors = "<a href=\"https://www.gosuslugi.ru/\">Госуслуги</a>\n\
        <a href=\"https://example.ru/?a=1&amp;b=&quot;2&quot;\">Льготы &lt;и&gt; выплаты</a>";
    assert_eq!(
        html(&turn_with_links(text, Some(2))),
        format!(
            "Ответ: 2 &lt; 3 &amp; «ещё».\n\nВторой абзац ответа.\n{anchors}\n\nВаш вопрос решён?"
        )
    );
    assert_eq!(
        html(&turn_with_links(text, None)),
        format!(
            "Ответ: 2 &lt; 3 &amp; «ещё».\n\nВторой абзац ответа.\n\nВаш вопрос решён?\n{anchors}"
        )
    );
    assert_eq!(
        html(&turn_with_links("Ваш вопрос решён?", Some(0))),
        format!("{anchors}\n\nВаш вопрос решён?")
    );
    // Whatever the bot sends, Telegram's HTML parser accepts.
    for at in [None, Some(0), Some(1), Some(2), Some(3), Some(9)] {
        parse_html(&html(&turn_with_links(text, at))).unwrap();
    }
}

/// An answered question with links: in the message the client gets, the
/// links come right after the answer, before «Ваш вопрос решён?».
#[test]
fn links_come_before_the_solved_question() {
    let mut bot = polling_bot();
    let c = &mut bot.c;
    c.text("/start");
    c.reply();
    c.text("как оформить пенсию по старости");
    let (t, _) = c.reply();
    let question = t.find("Ваш вопрос решён?").expect(&t);
    let link = t
        .find("<a href=\"https://www.gosuslugi.ru/\">Госуслуги</a>")
        .expect(&t);
    let answer = t.find("Пенсию по старости назначает").expect(&t);
    assert!(answer < link && link < question, "{t}");
    // Nothing but the links between the answer and the question.
    let between = &t[t[..link].rfind('\n').unwrap()..question];
    assert!(
        between
            .trim()
            .lines()
            .all(|l| l.starts_with("<a href=") && l.ends_with("</a>")),
        "{t}"
    );
}

/// The rule that lays out inline keyboards.
#[test]
fn keyboard_layout_fits_a_phone() {
    use otklik::channels::telegram::layout;
    let mut nps: Vec<String> = (0..=10).map(|n| n.to_string()).collect();
    nps.push("Пропустить".into());
    let nps: Vec<&str> = nps.iter().map(String::as_str).collect();
    assert_eq!(layout(&nps), [6, 5, 1], "0–5, 6–10, «Пропустить»");
    assert_eq!(layout(&["Да", "Нет"]), [2]);
    assert_eq!(
        layout(&["Да", "Нет", "Связаться с оператором"]),
        [2, 1],
        "a long label has its own row"
    );
    assert_eq!(
        layout(&["Легко", "Скорее легко", "Скорее сложно", "Сложно"]),
        [2, 2]
    );
    assert_eq!(layout(&["Пропустить"]), [1]);
    assert_eq!(
        layout(&[
            "Пенсия по старости",
            "Жалоба",
            "Другой вопрос",
            "Связаться с оператором"
        ]),
        [1, 1, 1, 1],
        "topics one per row, short ones too"
    );
    assert_eq!(
        layout(&[
            "общий профиль",
            "пенсионер",
            "семья с детьми",
            "человек с инвалидностью"
        ]),
        [1, 1, 1, 1]
    );
    assert_eq!(layout(&["1", "2", "3", "4", "5", "6", "7"]), [4, 3]);
    assert_eq!(layout(&["Легко", "Сложно", "Средне"]), [2, 1]);
    assert!(layout(&[]).is_empty());
}

/// The keyboards the client sees: yes/no side by side, the ease scale in
/// two rows of two, NPS 0–5 and 6–10 with «Пропустить» below, long labels
/// one per row.
#[test]
fn keyboards_are_laid_out_in_rows_that_fit_a_phone() {
    let mut bot = polling_bot();
    let c = &mut bot.c;
    c.text("/start");
    c.reply();
    c.text("пенсия");
    let (_, b) = c.reply();
    assert_eq!(rows(&b), [["Да", "Нет"]]);
    c.press(&button(&b, ":no"));
    // Topics, «Другой вопрос» and the operator: one per row.
    let (t, b) = c.reply();
    assert!(t.contains("одна из этих тем"), "{t}");
    let topics = rows(&b);
    assert!(topics.len() >= 3, "{b}");
    assert!(topics.iter().all(|r| r.len() == 1), "{b}");
    assert_eq!(
        topics[topics.len() - 2..],
        [["Другой вопрос"], ["Связаться с оператором"]]
    );
    c.text("/stop");
    let (_, b) = c.reply();
    assert_eq!(
        rows(&b),
        [["Легко", "Скорее легко"], ["Скорее сложно", "Сложно"]]
    );
    c.press(&button(&b, ":easy"));
    let (t, b) = c.reply();
    assert!(t.contains("от 1 до 5"), "{t}");
    assert_eq!(
        rows(&b),
        [vec!["1", "2", "3", "4", "5"], vec!["Пропустить"]]
    );
    c.press(&button(&b, ":4"));
    let (t, b) = c.reply();
    assert!(t.contains("от 0 до 10"), "{t}");
    let nps: Vec<Vec<String>> = vec![
        (0..=5).map(|n| n.to_string()).collect(),
        (6..=10).map(|n| n.to_string()).collect(),
        vec!["Пропустить".into()],
    ];
    assert_eq!(rows(&b), nps);
}

/// A pressed button: its message shows the choice and loses the keyboard
/// (editMessageText without reply_markup), keeping its text and links; a
/// stale press is only answered.
#[test]
fn a_pressed_button_is_echoed_in_its_message() {
    let mut bot = polling_bot();
    let c = &mut bot.c;
    c.text("/start");
    c.reply();
    c.text("как оформить пенсию по старости");
    let (t, b) = c.reply();
    let no = button(&b, ":no");
    let before = c.message_with(&no);
    c.press(&no);
    let a = c.next("answerCallbackQuery");
    assert!(a["text"].is_null(), "no notice for a fresh button: {a}");
    let e = c.next("editMessageText");
    assert_eq!(e["message_id"], before["message_id"], "{e}");
    assert_eq!(e["parse_mode"], "HTML");
    assert_eq!(
        e["text"].as_str().unwrap(),
        format!("{t}\n\nВаш выбор: Нет"),
        "the same text and links, the choice last"
    );
    assert!(e["reply_markup"].is_null(), "no keyboard: {e}");
    let (t2, _) = c.reply();
    assert!(t2.contains("другими словами"), "{t2}");
    let after = c.message_with(&no);
    assert!(after["reply_markup"].is_null(), "{after}");
    assert_eq!(after["entities"], before["entities"], "the links stay");
    assert!(after["text"]
        .as_str()
        .unwrap()
        .ends_with("Ваш вопрос решён?\n\nВаш выбор: Нет"));
    {
        let g = bot.f.lock().unwrap();
        let order: Vec<&str> = g
            .calls
            .iter()
            .map(|(m, _)| m.as_str())
            .filter(|m| *m == "editmessagetext" || *m == "sendmessage")
            .collect();
        assert_eq!(
            &order[order.len() - 2..],
            ["editmessagetext", "sendmessage"],
            "the choice is shown before the next reply"
        );
    }
    // The same button again (pressed before the keyboard went): stale,
    // answered with a notice, the message left as it is.
    c.press(&no);
    let a = c.next("answerCallbackQuery");
    assert!(a["text"].as_str().unwrap().contains("неактуален"), "{a}");
    c.quiet(2);
    let g = bot.f.lock().unwrap();
    assert!(
        !g.calls[c.seen..].iter().any(|(m, _)| m.starts_with("edit")),
        "{:?}",
        &g.calls[c.seen..]
    );
    assert_eq!(g.messages[&after["message_id"].as_i64().unwrap()], after);
}

/// The echo keeps the message's HTML: what Telegram makes of a sent message
/// (plain text and entities) renders back to the same HTML.
#[test]
fn a_message_renders_back_to_the_html_it_was_sent_as() {
    use otklik::channels::telegram::{entities_html, html};
    let mut turn = turn_with_links(
        "Ответ: 2 < 3 & «ещё» 👋.\n\nНажмите /privacy.\n\nВаш вопрос решён?",
        Some(2),
    );
    // (A quote in a URL comes back percent-encoded: the same address.)
    turn.links[1].url = "https://example.ru/?a=1&b=2".into();
    for sent in [
        html(&turn),
        format!("<b>Анна &amp; Co</b>: {}", html(&turn)),
        "Простой текст".to_string(),
    ] {
        let (text, entities) = parse_html(&sent).unwrap();
        let entities: Vec<teloxide::types::MessageEntity> =
            serde_json::from_value(json!(entities)).unwrap();
        assert_eq!(entities_html(&text, &entities), sent);
    }
}

/// /privacy offers «Отозвать согласие» only while a consent is active.
#[test]
fn privacy_offers_withdrawal_only_with_an_active_consent() {
    let mut bot = polling_bot();
    let c = &mut bot.c;
    c.text("/start");
    c.reply();
    c.text("/privacy");
    let (t, b) = c.reply();
    assert!(t.contains("Вы не давали согласия"), "{t}");
    assert!(
        b["reply_markup"]["inline_keyboard"].is_null(),
        "nothing to withdraw: {b}"
    );
    c.text("перезвоните мне пожалуйста");
    let (t, b) = c.reply();
    assert!(t.contains("согласны"), "{t}");
    c.press(&button(&b, ":yes"));
    c.reply();
    c.text("/privacy");
    let (t, b) = c.reply();
    assert!(t.contains("Вы дали согласие"), "{t}");
    assert_eq!(rows(&b), [["Отозвать согласие"]]);
    c.press(&button(&b, "w"));
    let (t, _) = c.reply();
    assert!(t.contains("Согласие отозвано"), "{t}");
    c.text("/privacy");
    let (t, b) = c.reply();
    assert!(t.contains("Вы отозвали согласие"), "{t}");
    assert!(
        b["reply_markup"]["inline_keyboard"].is_null(),
        "nothing to withdraw: {b}"
    );
}

/// Posts `update` to the bot's webhook as Telegram does, with the secret
/// header (if any); returns the status.
async fn webhook(base: &str, secret: Option<&str>, update: &Value) -> u16 {
    let mut r = reqwest::Client::new()
        .post(format!("{base}/telegram/webhook"))
        .json(update);
    if let Some(s) = secret {
        r = r.header("x-telegram-bot-api-secret-token", s);
    }
    r.send().await.unwrap().status().as_u16()
}

// Voice messages.

/// A WAV file as Ogg Opus, as Telegram's clients record voice messages
/// (Opus at 48 kHz, mono, in Ogg), by Debian's opusenc (`make speech`).
fn ogg_opus(wav: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.wav"), dir.path().join("out.oga"));
    std::fs::write(&inp, wav).unwrap();
    let st = std::process::Command::new("opusenc")
        .args(["--quiet", "--bitrate", "32"])
        .arg(&inp)
        .arg(&out)
        .status()
        .expect("opusenc (make speech)");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// A citizen's phrase, said by festival's Russian voice at 48 kHz, as a
/// voice message; and its length in whole seconds, rounded up.
fn spoken(text: &str) -> (Vec<u8>, u32) {
    let dir = tempfile::tempdir().unwrap();
    let (txt, wav) = (dir.path().join("say.txt"), dir.path().join("say.wav"));
    std::fs::write(&txt, text).unwrap();
    let st = std::process::Command::new("text2wave")
        .args(["-F", "48000", "-o"])
        .arg(&wav)
        .arg(&txt)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("festival (make speech)");
    assert!(st.success());
    let wav = std::fs::read(wav).unwrap();
    let pcm = otklik::speech::audio::read_wav(&wav).unwrap();
    assert!(pcm.duration_ms() > 500, "festival said nothing");
    (ogg_opus(&wav), pcm.duration_ms().div_ceil(1000) as u32)
}

/// `ms` of near silence (a faint hiss, as a microphone in a quiet room).
fn hush(ms: u32) -> Vec<u8> {
    let mut seed = 7u32;
    let samples = (0..48 * ms)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((seed >> 16) % 41) as i16 - 20
        })
        .collect();
    ogg_opus(&otklik::speech::audio::write_wav(
        &otklik::speech::audio::Pcm {
            rate: 48_000,
            samples,
        },
    ))
}

/// (getFile calls, downloads) so far.
fn fetched(f: &Shared) -> (usize, usize) {
    let g = f.lock().unwrap();
    let gets = g.calls.iter().filter(|(m, _)| m == "getfile").count();
    (gets, g.downloads.len())
}

/// A voice message is recognised and answered like the same words typed:
/// the booking asks for consent, and a spoken «Да» goes on with the form.
/// The bot shows what it heard first. Each file is fetched once.
#[test]
fn a_voice_message_is_heard_and_answered_like_text() {
    let Bot {
        f,
        server,
        rt,
        mut c,
        ..
    } = polling_bot();
    rt.block_on(common::speech_ready(&server.base));
    c.text("/start");
    c.reply();
    let (ogg, secs) = spoken("Хочу записаться на приём.");
    c.voice("voice-book", &ogg, secs);
    let (t, _) = c.reply();
    assert!(
        t.starts_with("Вы сказали: «") && t.to_lowercase().contains("записаться на при"),
        "what was heard, first: {t}"
    );
    let (t, b) = c.reply();
    assert!(t.contains("Вы согласны"), "the booking asks consent: {t}");
    button(&b, ":yes");
    let (ogg, secs) = spoken("Да.");
    c.voice("voice-yes", &ogg, secs);
    let (t, _) = c.reply();
    assert!(t.to_lowercase().starts_with("вы сказали: «да"), "{t}");
    let (t, b) = c.reply();
    assert!(t.contains("Выберите услугу"), "the form goes on: {t}");
    assert!(rows(&b).len() > 1, "the services to choose from: {b}");
    c.quiet(2);
    assert_eq!(fetched(&f), (2, 2), "each file fetched once");
    assert_eq!(
        f.lock().unwrap().downloads,
        ["voice/file_0.oga", "voice/file_1.oga"]
    );
    drop(server);
}

/// Limits: a voice message longer or larger than the settings allow (by
/// what its update says) is refused without being downloaded; one whose
/// update understates its length is refused while decoding. Silence is
/// «не расслышала», a file that is not Ogg Opus or cannot be fetched is
/// reported, and the conversation's rate limit is taken before anything is
/// downloaded.
#[test]
fn voice_messages_are_bounded_and_failures_explained() {
    let Bot {
        f,
        server,
        rt,
        mut c,
        ..
    } = polling_bot_with(&[
        ("OTKLIK_TELEGRAM_VOICE_MAX_SECONDS", "20".into()),
        ("OTKLIK_TELEGRAM_VOICE_MAX_BYTES", "200000".into()),
        ("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "6".into()),
    ]);
    rt.block_on(common::speech_ready(&server.base));
    c.text("/start");
    c.reply();
    let quiet = hush(2000);

    // Refused by the update's duration or size: nothing fetched.
    c.voice("long", &quiet, 21);
    let (t, _) = c.reply();
    assert!(
        t.contains("слишком длинное") && t.contains("до 20 секунд"),
        "{t}"
    );
    c.message(
        json!({"voice": {"file_id": "big", "file_unique_id": "ubig", "duration": 5,
        "mime_type": "audio/ogg", "file_size": 200_001}}),
    );
    let (t, _) = c.reply();
    assert!(t.contains("слишком длинное"), "{t}");
    c.quiet(1);
    assert_eq!(fetched(&f), (0, 0), "refused before downloading");

    // The update says 3 s; the audio runs 25 s: decoding stops there.
    let long = ogg_opus(&otklik::speech::audio::write_wav(
        &otklik::speech::audio::Pcm {
            rate: 48_000,
            samples: vec![0; 48_000 * 25],
        },
    ));
    assert!(long.len() < 200_000);
    c.voice("liar", &long, 3);
    let (t, _) = c.reply();
    assert!(t.contains("слишком длинное"), "{t}");

    // Near silence: nothing heard.
    c.voice("hush", &quiet, 2);
    let (t, _) = c.reply();
    assert!(t.contains("Не расслышала"), "{t}");

    // Not Ogg Opus, and a file the Bot API does not have.
    c.voice("junk", b"ID3\x03\x00 not an ogg file at all", 2);
    let (t, _) = c.reply();
    assert!(t.contains("Не получилось прослушать"), "{t}");
    c.message(
        json!({"voice": {"file_id": "gone", "file_unique_id": "ugone", "duration": 2,
        "mime_type": "audio/ogg", "file_size": 1000}}),
    );
    let (t, _) = c.reply();
    assert!(t.contains("Не получилось прослушать"), "{t}");
    c.quiet(1);
    // getFile for each of the four; the missing one has nothing to download.
    assert_eq!(fetched(&f), (4, 3));

    // Seven at once, over the six a minute: a refused one is not fetched.
    for i in 0..7 {
        c.voice(&format!("burst{i}"), b"not audio", 1);
    }
    let mut refused = 0;
    for _ in 0..7 {
        let (t, _) = c.reply();
        if t.contains("Слишком много сообщений") {
            refused += 1;
        } else {
            assert!(t.contains("Не получилось прослушать"), "{t}");
        }
    }
    assert!(refused >= 1);
    c.quiet(1);
    assert_eq!(fetched(&f), (4 + 7 - refused, 3 + 7 - refused));
    drop(server);
}

/// With no recogniser (`[speech] engine = "none"`) a voice message is not
/// downloaded: the client is asked to write.
#[test]
fn without_a_recogniser_a_voice_message_asks_for_text() {
    let Bot {
        f, server, mut c, ..
    } = polling_bot_with(&[("OTKLIK_SPEECH_ENGINE", "none".into())]);
    c.text("/start");
    c.reply();
    c.voice("v", &hush(1000), 1);
    let (t, _) = c.reply();
    assert!(
        t.contains("не могу распознать") && t.contains("напишите"),
        "{t}"
    );
    c.quiet(1);
    assert_eq!(fetched(&f), (0, 0));
    drop(server);
}

/// Notifications on Telegram (issue 16): /notifications opens the same
/// settings node as the dialog; a status event from the ministry's system
/// reaches the chat as a message with its unsubscribe button; a press
/// unsubscribes at once, even after later turns, and the next event of that
/// category is not sent.
#[test]
fn notifications_settings_a_status_event_and_unsubscribing_on_telegram() {
    use otklik::store::{RecordOp, Storage};
    const EVENT_KEY: &str = "test-key-of-the-ministry";
    let data = tempfile::tempdir().unwrap();
    {
        let store = otklik::store::Store::open(data.path()).unwrap();
        let store: &dyn Storage = &store;
        let a = otklik::services::applications::Application {
            number: "7654321".into(),
            user: format!("telegram:{CHAT}"),
            service: "single_allowance".into(),
            fields: Default::default(),
            created: 0,
            paid_at: None,
        };
        store
            .write_records(vec![RecordOp::put("application", "7654321", &a).unwrap()])
            .unwrap()
            .unwrap();
        store.flush().unwrap();
    }
    let f: Shared = Arc::default();
    let env = vec![
        ("OTKLIK_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("OTKLIK_TELEGRAM_API_URL", fake_server(f.clone())),
        ("OTKLIK_TELEGRAM_POLL_TIMEOUT_S", "1".to_string()),
        (
            "OTKLIK_NOTIFY_EVENT_KEY_HASHES",
            otklik::channels::api::key_hash(EVENT_KEY),
        ),
        ("OTKLIK_NOTIFY_QUIET", String::new()),
        ("OTKLIK_NOTIFY_INTERVAL_MS", "200".to_string()),
    ];
    let server = common::start_server_in(data, &env);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let mut c = Chat { f, seen: 0 };
    c.text("/start");
    c.reply();
    c.text("/notifications");
    let (t, b) = c.reply();
    assert!(t.contains("Настройки уведомлений"), "{t}");
    let labels: Vec<String> = rows(&b).concat();
    assert!(
        labels.contains(&"Выключить: статус заявлений".to_string())
            && labels.contains(&"Включить: опросы".to_string())
            && labels.contains(&"Готово".to_string()),
        "{labels:?}"
    );
    let post = |id: &str, status: &str| {
        let body = json!({"event_id": id, "number": "7654321", "status": status});
        let base = server.base.clone();
        rt.block_on(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/events/status"))
                .bearer_auth(EVENT_KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(post("e1", "одобрено"), 200);
    let (t, b) = c.reply();
    assert!(t.contains("7654321") && t.contains("одобрено"), "{t}");
    let unsub = button(&b, ":notify_unsub:status");
    // A later turn does not make the notification's button stale.
    c.text("здравствуйте");
    c.reply();
    c.press(&unsub);
    c.next("answerCallbackQuery");
    let (t, _) = c.reply();
    assert!(
        t.contains("уведомления о статусе заявлений больше не придут"),
        "{t}"
    );
    assert_eq!(post("e2", "выплачено"), 200);
    c.quiet(2);
}

/// A fee's QR code reaches Telegram as a photo uploaded from memory, before
/// the details and the buttons (issue 16 ж); it decodes to the payment.
#[test]
fn a_payment_qr_code_is_sent_as_a_photo() {
    let Bot {
        f,
        server: _server,
        rt: _rt,
        mut c,
        ..
    } = polling_bot();
    c.text("/start");
    c.reply();
    c.text("сколько стоит дубликат удостоверения");
    let (t, b) = c.reply();
    assert!(t.contains("согласны"), "consent first: {t}");
    c.press(&button(&b, ":yes"));
    let (t, _) = c.reply();
    assert!(t.contains("назовите его номер"), "{t}");
    c.text("пропустить");
    let photo = c.next("sendPhoto");
    assert!(
        photo["caption"]
            .as_str()
            .unwrap()
            .contains("QR-код для оплаты"),
        "{photo}"
    );
    let (t, b) = c.reply();
    assert!(
        t.contains("350 рублей") && t.contains("03100643000000016500"),
        "{t}"
    );
    assert!(t.contains("Ваш вопрос решён?"), "{t}");
    button(&b, ":yes");
    let png = f.lock().unwrap().photos[0].0.clone();
    let (header, fields) = common::qr_fields(&common::read_qr(&png));
    assert_eq!(header, "ST00012");
    assert_eq!(fields["Sum"], "35000");
    assert_eq!(fields["PersonalAcc"], "03100643000000016500");
}

/// `/profile` shows the answers the service search kept (with consent) and
/// deletes them by its button, through the engine's rule.
#[test]
fn profile_shows_the_kept_answers_and_deletes_them() {
    let mut bot = polling_bot();
    let c = &mut bot.c;
    c.text("/start");
    c.reply();
    c.text("/profile");
    let (t, b) = c.reply();
    assert!(!t.contains("сохранено"), "nothing kept yet: {t}");
    assert!(
        !rows(&b)
            .concat()
            .iter()
            .any(|l| l == "Удалить данные профиля"),
        "{b}"
    );
    c.text("на какие пособия я имею право");
    let (t, _) = c.reply();
    assert!(t.contains("инвалидность"), "{t}");
    c.text("нет");
    let (t, _) = c.reply();
    assert!(t.contains("прожиточного минимума"), "{t}");
    c.text("нет, не ниже");
    let (t, _) = c.reply();
    assert!(t.contains("Сколько Вам лет"), "{t}");
    c.text("шестьдесят семь");
    let (t, b) = c.reply();
    assert!(t.contains("работаете"), "{t}");
    c.press(&button(&b, ":retired"));
    let (t, b) = c.reply();
    assert!(t.contains("Пенсия по старости"), "{t}");
    c.press(&button(&b, ":save"));
    let (t, b) = c.reply();
    assert!(t.contains("согласны"), "{t}");
    c.press(&button(&b, ":yes"));
    let (t, _) = c.reply();
    assert!(t.contains("сохранила"), "{t}");
    c.text("/profile");
    let (t, b) = c.reply();
    assert!(
        t.contains("возраст: 67 лет") && t.contains("на пенсии"),
        "{t}"
    );
    c.press(&button(&b, "pd"));
    let (t, _) = c.reply();
    assert!(t.contains("удалила все сведения"), "{t}");
    c.text("/profile");
    let (t, b) = c.reply();
    assert!(!t.contains("сохранено"), "deleted: {t}");
    assert!(
        !rows(&b)
            .concat()
            .iter()
            .any(|l| l == "Удалить данные профиля"),
        "{b}"
    );
}
