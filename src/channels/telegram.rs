//! The Telegram channel (teloxide): long polling (the default) or a webhook
//! through the same axum server, with the secret-token header checked. It
//! turns updates into engine inputs — messages, inline-keyboard presses,
//! commands (/start with deep links, /help, /profile, /privacy,
//! /notifications, /stop), shared
//! contacts, voice messages (Ogg Opus: checked against the limits before
//! they are downloaded, fetched from the Bot API's file endpoint, decoded by
//! `speech::ogg`, recognised by the shared recogniser and answered like
//! text, with what was heard shown first) — and renders turns as
//! HTML-escaped messages with inline keyboards laid out to fit a phone (a
//! pressed choice replaces the keyboard in its message: «Ваш выбор: …») and
//! a persistent «Оператор» button. Every update is processed exactly once:
//! its id is committed with the turn, and the polling offset is persisted.
//! Bot API errors (429 with retry_after, 5xx, network) are retried with
//! backoff. A reply (or an operator's message, see `keep`) is committed with
//! its turn as undelivered until sendMessage succeeds; one left over by a
//! crash or a failed send goes out when the update comes again, at start-up,
//! or by a periodic sweep (at least once rather than never). With a shared
//! store, one instance leads the bot (`Storage::try_lead`): it alone polls
//! and sweeps; another takes over from the persisted offset when it dies;
//! webhook updates are served by every instance. Turns go
//! through the shared turn service, so the conversation's rate limit and the
//! length limit hold here too (a voice message takes its rate limit before
//! it is downloaded).

use super::pipeline::{Pipeline, TurnError, TurnRequest};
use super::{BoxFuture, Channel, Delivery, Origin, Sent};
use crate::dialog::{Action, Engine, Input, Keep, PendingReply, Turn};
use crate::errors::error;
use crate::speech::ogg::{decode_ogg_opus, OggError};
use crate::speech::Unheard;
use crate::store::SessionKey;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use teloxide::net::Download;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, GetUpdatesSetters, SendMessageSetters,
    SetWebhookSetters,
};
use teloxide::prelude::Requester;
use teloxide::requests::Request;
use teloxide::types::{
    Audio, ButtonRequest, ChatId, FileId, InlineKeyboardButton, InlineKeyboardButtonKind,
    InlineKeyboardMarkup, KeyboardButton, KeyboardMarkup, Message, MessageEntity,
    MessageEntityKind, ParseMode, ReplyMarkup, Update, UpdateKind,
};
use teloxide::utils::html::escape;
use teloxide::{Bot, RequestError};

pub use crate::config::TelegramConfig;

const OPERATOR_BUTTON: &str = "Оператор";
const OFFSET_KEY: &str = "telegram_offset";
const HELP: &str = "Я цифровой помощник министерства социальной защиты. Напишите вопрос своими словами: о пособиях, льготах, пенсии, записи на приём.\n\nКоманды:\n/profile — выбрать профиль, чтобы ответы были точнее\n/privacy — какие данные мы храним и как отозвать согласие\n/notifications — настроить уведомления\n/stop — завершить разговор\n\nКнопка «Оператор» соединит Вас с человеком в любой момент.";
/// The callback data of «Отозвать согласие» under /privacy.
const WITHDRAW: &str = "w";
/// The `/profile` button that deletes the service search's kept answers.
const PROFILE_DELETE: &str = "pd";
const STALE: &str = "Этот вариант уже неактуален. Выберите из последнего сообщения.";
const VOICE_UNAVAILABLE: &str =
    "Сейчас я не могу распознать голосовое сообщение. Пожалуйста, напишите вопрос текстом.";
const VOICE_UNHEARD: &str =
    "Не расслышала Ваше сообщение. Повторите, пожалуйста, или напишите вопрос текстом.";
const VOICE_FAILED: &str = "Не получилось прослушать голосовое сообщение. Отправьте его ещё раз или напишите вопрос текстом.";
/// How long downloading a voice message may take.
const VOICE_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(20);

pub const NAME: &str = "telegram";

pub struct Telegram {
    pub bot: Bot,
    p: Arc<Pipeline>,
}

/// Retries a Bot API call: after `retry_after` on 429, with backoff on
/// network errors and server errors; other errors are returned at once.
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(RequestError::RetryAfter(s)) if attempt < 8 => {
                tracing::warn!("telegram {what}: 429, retrying after {:?}", s.duration());
                tokio::time::sleep(s.duration()).await;
            }
            Err(e) if attempt < 8 && transient(&e) => {
                tracing::warn!("telegram {what}: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

fn transient(e: &RequestError) -> bool {
    match e {
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => true,
        RequestError::Api(api) => {
            let d = api.to_string().to_lowercase();
            d.contains("internal server error")
                || d.contains("bad gateway")
                || d.contains("gateway")
                || d.contains("unavailable")
        }
        _ => false,
    }
}

fn persistent_keyboard() -> ReplyMarkup {
    ReplyMarkup::Keyboard(
        KeyboardMarkup::new(vec![vec![KeyboardButton::new(OPERATOR_BUTTON)]])
            .resize_keyboard()
            .persistent(),
    )
}

fn contact_keyboard() -> ReplyMarkup {
    ReplyMarkup::Keyboard(
        KeyboardMarkup::new(vec![
            vec![KeyboardButton::new("Поделиться номером").request(ButtonRequest::Contact)],
            vec![KeyboardButton::new(OPERATOR_BUTTON)],
        ])
        .resize_keyboard()
        .one_time_keyboard(),
    )
}

/// The message text in Telegram's HTML: everything escaped, links as
/// anchors placed where the turn says (`links_at` paragraphs of the text,
/// that is right after the answer and before the question that follows it).
pub fn html(t: &Turn) -> String {
    let anchors: Vec<String> = t
        .links
        .iter()
        .filter(|l| l.url.starts_with("https://") || l.url.starts_with("http://"))
        .map(|l| format!("<a href=\"{}\">{}</a>", attr(&l.url), escape(&l.title)))
        .collect();
    if anchors.is_empty() {
        return escape(&t.text);
    }
    let paragraphs: Vec<&str> = t.text.split("\n\n").collect();
    let at = t.links_at.unwrap_or(paragraphs.len()).min(paragraphs.len());
    let head = escape(&paragraphs[..at].join("\n\n"));
    let tail = escape(&paragraphs[at..].join("\n\n"));
    let mut s = head;
    if !s.is_empty() {
        s.push('\n');
    }
    s.push_str(&anchors.join("\n"));
    if !tail.is_empty() {
        s.push_str("\n\n");
        s.push_str(&tail);
    }
    s
}

/// Escaped for an HTML attribute in double quotes.
fn attr(s: &str) -> String {
    escape(s).replace('"', "&quot;")
}

/// A message's text with its formatting entities (as Telegram returns a
/// sent message) back in Telegram's HTML, to edit the message without
/// losing its links. Entities Telegram detects by itself (URLs, commands,
/// phone numbers) stay plain text.
pub fn entities_html(text: &str, entities: &[MessageEntity]) -> String {
    // (start, end) in UTF-16 code units, the opening and the closing tag.
    let mut tags: Vec<(usize, usize, String, &str)> = entities
        .iter()
        .filter_map(|e| {
            let (open, close) = match &e.kind {
                MessageEntityKind::Bold => ("<b>".to_string(), "</b>"),
                MessageEntityKind::Italic => ("<i>".to_string(), "</i>"),
                MessageEntityKind::Underline => ("<u>".to_string(), "</u>"),
                MessageEntityKind::Strikethrough => ("<s>".to_string(), "</s>"),
                MessageEntityKind::Spoiler => ("<tg-spoiler>".to_string(), "</tg-spoiler>"),
                MessageEntityKind::Code => ("<code>".to_string(), "</code>"),
                MessageEntityKind::Pre { language: None } => ("<pre>".to_string(), "</pre>"),
                MessageEntityKind::TextLink { url } => {
                    (format!("<a href=\"{}\">", attr(url.as_str())), "</a>")
                }
                _ => return None,
            };
            Some((e.offset, e.offset + e.length, open, close))
        })
        .collect();
    // Entities nest (Telegram does not let them overlap): outer ones first.
    tags.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len() + 32 * tags.len());
    let mut open: Vec<(usize, &str)> = Vec::new();
    let mut next = tags.iter().peekable();
    let mut pos = 0;
    for ch in text.chars() {
        while let Some(&(end, close)) = open.last() {
            if end > pos {
                break;
            }
            out.push_str(close);
            open.pop();
        }
        while let Some((start, end, tag, close)) = next.next_if(|t| t.0 <= pos) {
            if end > start {
                out.push_str(tag);
                open.push((*end, close));
            }
        }
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
        pos += ch.len_utf16();
    }
    while let Some((_, close)) = open.pop() {
        out.push_str(close);
    }
    out
}

/// How many buttons go in each row of an inline keyboard, in order, so that
/// it fits a phone. A button's size is its label's: up to 3 letters (the
/// numbers 0–10, «Да», «Нет») six to a row; up to 13 letters («Скорее
/// легко», «Пропустить») two to a row, unless the keyboard also has a longer
/// label (a list of topics keeps one per row); longer labels a row each.
/// Neighbours of one size are split into rows as even as possible (0–10: six
/// and five); buttons of different sizes never share a row.
pub fn layout(labels: &[&str]) -> Vec<usize> {
    let size = |l: &str| match l.chars().count() {
        0..=3 => 0,
        4..=13 => 1,
        _ => 2,
    };
    let any_long = labels.iter().any(|l| size(l) == 2);
    let per_row = |s: usize| match s {
        0 => 6,
        1 if !any_long => 2,
        _ => 1,
    };
    let mut rows = Vec::new();
    let mut i = 0;
    while i < labels.len() {
        let s = size(labels[i]);
        let run = labels[i..].iter().take_while(|l| size(l) == s).count();
        let n = run.div_ceil(per_row(s));
        rows.extend((0..n).map(|r| run / n + usize::from(r < run % n)));
        i += run;
    }
    rows
}

/// An inline keyboard of (label, callback data) laid out by `layout`.
fn inline_keyboard(buttons: Vec<(String, String)>) -> ReplyMarkup {
    let labels: Vec<&str> = buttons.iter().map(|(l, _)| l.as_str()).collect();
    let sizes = layout(&labels);
    let mut it = buttons
        .into_iter()
        .map(|(label, data)| InlineKeyboardButton::callback(label, data));
    let rows = sizes
        .into_iter()
        .map(|n| it.by_ref().take(n).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows))
}

impl Telegram {
    pub fn new(p: Arc<Pipeline>) -> anyhow::Result<Arc<Self>> {
        let cfg = &p.cfg.telegram;
        let url = url::Url::parse(&cfg.api_url)
            .map_err(|e| anyhow::anyhow!("telegram.api_url {:?}: {e}", cfg.api_url))?;
        Ok(Arc::new(Self {
            bot: Bot::new(&cfg.token).set_api_url(url),
            p,
        }))
    }

    fn chat(key: &SessionKey) -> anyhow::Result<ChatId> {
        Ok(ChatId(key.user.parse()?))
    }

    /// Sends a turn to a chat: the text, an inline keyboard for its choices
    /// (buttons carry the turn number, so stale ones are recognised), or the
    /// contact button when the bot asks for a phone.
    pub async fn send_turn(
        &self,
        chat: ChatId,
        t: &Turn,
        operator: Option<&str>,
    ) -> Result<(), RequestError> {
        if t.text.is_empty() {
            return Ok(());
        }
        if let Some(img) = &t.image {
            self.send_image(chat, img).await?;
        }
        let mut text = html(t);
        if let Some(name) = operator {
            text = format!("<b>{}</b>: {}", escape(name), text);
        }
        let markup = if t.actions.contains(&Action::RequestContact) {
            Some(contact_keyboard())
        } else if !t.choices.is_empty() {
            Some(inline_keyboard(
                t.choices
                    .iter()
                    .map(|c| (c.label.clone(), format!("c:{}:{}", t.seq, c.id)))
                    .collect(),
            ))
        } else if t.node == "start" || t.actions.contains(&Action::End) || t.seq <= 1 {
            Some(persistent_keyboard())
        } else {
            None
        };
        self.send_html(chat, text, markup).await
    }

    /// sendPhoto of a turn's picture (a payment's QR code), uploaded from
    /// memory, its description as the caption; before the turn's text, so
    /// that the text and its buttons come last.
    async fn send_image(
        &self,
        chat: ChatId,
        img: &crate::dialog::Image,
    ) -> Result<(), RequestError> {
        use base64::Engine as _;
        use teloxide::payloads::SendPhotoSetters as _;
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&img.base64) else {
            tracing::error!("telegram: a turn's picture is not base64; sent without it");
            return Ok(());
        };
        let file = teloxide::types::InputFile::memory(bytes).file_name("qr.png");
        retry("sendPhoto", || {
            let r = self
                .bot
                .send_photo(chat, file.clone())
                .caption(img.alt.clone());
            async move { r.await.map(|_| ()) }
        })
        .await
    }

    /// Sends plain text (escaped here) from the channel itself.
    async fn say(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<ReplyMarkup>,
    ) -> Result<(), RequestError> {
        self.send_html(chat, escape(text), markup).await
    }

    /// sendMessage with HTML already escaped, retried.
    async fn send_html(
        &self,
        chat: ChatId,
        html: String,
        markup: Option<ReplyMarkup>,
    ) -> Result<(), RequestError> {
        retry("sendMessage", || {
            let mut r = self
                .bot
                .send_message(chat, html.clone())
                .parse_mode(ParseMode::Html);
            if let Some(m) = markup.clone() {
                r = r.reply_markup(m);
            }
            async move { r.await.map(|_| ()) }
        })
        .await
    }
}

/// What an update asks of the engine (or of the channel itself).
enum Step {
    Engine(Vec<Input>),
    Help,
    Profile,
    Privacy,
    /// A pressed button from an older message.
    Stale,
    /// A contact shared when no phone was asked.
    UnaskedContact,
    /// A voice message to recognise.
    Voice(VoiceNote),
    Ignore,
}

/// A voice message as its update describes it.
struct VoiceNote {
    file: FileId,
    seconds: u32,
    /// None when the update does not say.
    bytes: Option<u32>,
}

impl VoiceNote {
    fn new(file: &teloxide::types::FileMeta, seconds: u32) -> Self {
        Self {
            file: file.id.clone(),
            seconds,
            // teloxide reads a missing file_size as u32::MAX.
            bytes: (file.size != u32::MAX).then_some(file.size),
        }
    }
}

/// An audio file sent as music or a document may be Ogg Opus too (a voice
/// message forwarded from elsewhere).
fn is_ogg_opus(a: &Audio) -> bool {
    let mime = a.mime_type.as_ref().map(|m| m.essence_str());
    let name = a.file_name.as_deref().unwrap_or("").to_lowercase();
    matches!(mime, Some("audio/ogg" | "audio/opus"))
        || [".ogg", ".oga", ".opus"].iter().any(|e| name.ends_with(e))
}

fn parse_start(payload: &str) -> Vec<Input> {
    let mut v = Vec::new();
    if let Some(seg) = payload
        .strip_prefix("segment-")
        .or_else(|| payload.strip_prefix("segment_"))
    {
        v.push(Input::SetSegment(seg.to_string()));
    }
    v.push(Input::Start);
    if let Some(topic) = payload.strip_prefix("topic-") {
        v.push(Input::Topic(topic.to_string()));
    }
    v
}

fn message_step(engine: &Engine, m: &Message) -> Step {
    let key = SessionKey::new(NAME, m.chat.id.0.to_string());
    if let Some(c) = m.contact() {
        if !engine.expects_phone(&key) {
            return Step::UnaskedContact;
        }
        return Step::Engine(vec![Input::Text(c.phone_number.clone())]);
    }
    if let Some(v) = m.voice() {
        return Step::Voice(VoiceNote::new(&v.file, v.duration.seconds()));
    }
    if let Some(a) = m.audio().filter(|a| is_ogg_opus(a)) {
        return Step::Voice(VoiceNote::new(&a.file, a.duration.seconds()));
    }
    // Other audio (MP3…) and video notes (MP4) are not decoded.
    if m.audio().is_some() || m.video_note().is_some() {
        return Step::Engine(vec![Input::Attachment("voice".into())]);
    }
    let Some(text) = m.text() else {
        return Step::Engine(vec![Input::Attachment("file".into())]);
    };
    let (cmd, arg) = text
        .split_once(' ')
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((text, ""));
    let cmd = cmd.split('@').next().unwrap_or(cmd);
    match cmd {
        "/start" => Step::Engine(parse_start(arg)),
        "/help" => Step::Help,
        "/profile" => Step::Profile,
        "/privacy" => Step::Privacy,
        "/notifications" => Step::Engine(vec![Input::Topic("notifications_settings".into())]),
        "/stop" => Step::Engine(vec![Input::Finish]),
        "/operator" => Step::Engine(vec![Input::Choice("operator".into())]),
        _ => Step::Engine(vec![Input::Text(text.to_string())]),
    }
}

/// The message that carried a pressed button, in HTML, with a last line
/// saying what was chosen: «Ваш выбор: Скорее легко». None when the button
/// is not on the message (any more) or the message has no text.
fn echoed(m: &Message, data: &str) -> Option<String> {
    let label = m
        .reply_markup()?
        .inline_keyboard
        .iter()
        .flatten()
        .find(|b| matches!(&b.kind, InlineKeyboardButtonKind::CallbackData(d) if d == data))?
        .text
        .clone();
    let text = m.text()?;
    let body = entities_html(text, m.entities().unwrap_or(&[]));
    Some(format!("{body}\n\nВаш выбор: {}", escape(&label)))
}

fn callback_step(engine: &Engine, key: &SessionKey, data: &str) -> Step {
    if let Some(seg) = data.strip_prefix("p:") {
        return Step::Engine(vec![Input::SetSegment(seg.to_string())]);
    }
    if data == WITHDRAW {
        return Step::Engine(vec![Input::Text("отозвать согласие".into())]);
    }
    if data == PROFILE_DELETE {
        // the engine's rule: the same words on every channel
        return Step::Engine(vec![Input::Text("удалить данные профиля".into())]);
    }
    let Some(rest) = data.strip_prefix("c:") else {
        return Step::Ignore;
    };
    let Some((seq, id)) = rest.split_once(':') else {
        return Step::Ignore;
    };
    // A notification's buttons stay valid after later turns.
    let notice = id.starts_with("notify_unsub:") || id == "notify_cancel" || id == "notify_move";
    if !notice && seq.parse::<u64>().map_or(true, |n| engine.is_stale(key, n)) {
        return Step::Stale;
    }
    Step::Engine(vec![Input::Choice(id.to_string())])
}

impl Channel for Telegram {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The reply is committed as undelivered under the update's marker (a
    /// turn the client asked for) or a new `telegram:out:<id>` (an operator's
    /// message, the bot taking the conversation back) until it is sent.
    fn keep(&self, key: &SessionKey, turn: &Turn, origin: &Origin) -> anyhow::Result<Keep> {
        if turn.text.is_empty() {
            return Ok(Keep::default());
        }
        let marker = match origin.marker {
            Some(m) => m.to_string(),
            None => format!("{NAME}:out:{}", self.p.store.next_id()?),
        };
        let record = PendingReply {
            at: self.p.clock.now().as_second(),
            user: key.user.clone(),
            seq: turn.seq,
            turn: turn.clone(),
            order: self.p.store.next_id()?,
            operator: origin.operator.map(str::to_string),
        };
        Ok(Keep {
            undelivered: vec![(marker.clone(), serde_json::to_vec(&record)?)],
            marker: Some(marker),
            ..Default::default()
        })
    }

    /// Sends the turn and clears its undelivered record. A reply to an
    /// update that cannot be sent is an error (a webhook answers 500 and
    /// Telegram sends the update again); a message the client did not ask
    /// for stays undelivered for the sweep (`Delivery::Later`).
    fn deliver<'a>(
        &'a self,
        key: &'a SessionKey,
        turn: &'a Turn,
        sent: &'a Sent,
    ) -> BoxFuture<'a, anyhow::Result<Delivery>> {
        Box::pin(async move {
            let r = self
                .send_turn(Self::chat(key)?, turn, sent.operator.as_deref())
                .await;
            match (r, sent.marker.as_deref()) {
                (Ok(()), Some(m)) => {
                    self.p.store.delivered(m)?;
                    Ok(Delivery::Sent)
                }
                (Ok(()), None) => Ok(Delivery::Sent),
                (Err(e), Some(m)) if m.starts_with(OUT_PREFIX) => {
                    tracing::error!("telegram: {key}: {e}; {m} kept to send later");
                    Ok(Delivery::Later)
                }
                (Err(e), _) => Err(e.into()),
            }
        })
    }

    fn start(self: Arc<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(start(self))
    }

    fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/telegram/webhook", post(webhook))
            .with_state(self)
    }
}

const OUT_PREFIX: &str = "telegram:out:";

/// Processes one update (exactly once: its id is committed with the turn).
pub async fn process(tg: &Arc<Telegram>, u: Update) -> anyhow::Result<()> {
    let st = &tg.p;
    let engine = st
        .engine()
        .ok_or_else(|| anyhow::anyhow!("engine not loaded"))?;
    let marker = format!("telegram:update:{}", u.id.0);
    if st.store.marked(&marker)? {
        // Processed before (a restart, or Telegram sending it again after a
        // failure): only what was committed but not delivered goes out.
        return redeliver(tg, Some(&marker), 0).await;
    }
    let (chat, step, callback) = match &u.kind {
        UpdateKind::Message(m) => (m.chat.id, message_step(&engine, m), None),
        UpdateKind::CallbackQuery(q) => {
            let Some(m) = q.regular_message() else {
                return Ok(());
            };
            let key = SessionKey::new(NAME, m.chat.id.0.to_string());
            let data = q.data.as_deref().unwrap_or("");
            let step = callback_step(&engine, &key, data);
            // What the client chose, echoed in the message (not for a stale button).
            let echo = match step {
                Step::Stale | Step::Ignore => None,
                _ => echoed(m, data),
            };
            let keyboard = m.reply_markup().is_some();
            (m.chat.id, step, Some((q.id.clone(), m.id, echo, keyboard)))
        }
        _ => return Ok(()),
    };
    let key = SessionKey::new(NAME, chat.0.to_string());
    if let Some((qid, mid, echo, keyboard)) = &callback {
        // Answer the press, and take the keyboard off so it cannot be pressed
        // again: the message shows the choice in its place (editMessageText
        // without a keyboard drops it), or, if that fails, just loses it.
        let stale = matches!(step, Step::Stale);
        let _ = retry("answerCallbackQuery", || {
            let r = tg.bot.answer_callback_query(qid.clone());
            let r = if stale { r.text(STALE) } else { r };
            async move { r.await.map(|_| ()) }
        })
        .await;
        let mut edited = false;
        if let Some(text) = echo {
            edited = retry("editMessageText", || {
                let r = tg
                    .bot
                    .edit_message_text(chat, *mid, text.clone())
                    .parse_mode(ParseMode::Html);
                async move { r.await.map(|_| ()) }
            })
            .await
            .is_ok();
        }
        if !edited && *keyboard {
            let _ = retry("editMessageReplyMarkup", || {
                let r = tg.bot.edit_message_reply_markup(chat, *mid);
                async move { r.await.map(|_| ()) }
            })
            .await;
        }
    }
    let mut admitted = false;
    let inputs = match step {
        Step::Engine(inputs) => inputs,
        Step::Voice(v) => match hear(tg, &key, &v).await {
            Ok(words) => {
                // What was heard, so the client sees what the bot understood.
                // A full stop goes after the quotes (none after ? or !).
                let said = words.trim_end_matches('.');
                let stop = if said.ends_with(['?', '!', '…']) {
                    ""
                } else {
                    "."
                };
                let echo = format!("Вы сказали: «{said}»{stop}");
                if let Err(e) = tg.say(chat, &echo, None).await {
                    tracing::warn!("telegram: {key}: the recognised words were not shown: {e}");
                }
                admitted = true;
                vec![Input::Text(words)]
            }
            Err(message) => {
                tg.say(chat, &message, None).await?;
                st.store.mark(&marker)?;
                return Ok(());
            }
        },
        other => {
            channel_step(tg, &engine, chat, &key, other).await?;
            st.store.mark(&marker)?;
            return Ok(());
        }
    };
    // Earlier turns of this update committed before a crash: theirs first.
    redeliver(tg, Some(&marker), 0).await?;
    let mut req = TurnRequest::several(key, inputs);
    req.marker = Some(marker.clone());
    req.admitted = admitted;
    match st.turn(tg.clone(), req).await {
        Ok(_) => Ok(()),
        Err(TurnError::Duplicate) => redeliver(tg, Some(&marker), 0).await,
        Err(e @ (TurnError::RateLimited | TurnError::TooLong(_))) => {
            tg.say(chat, &e.message(), None).await?;
            st.store.mark(&marker)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A voice message's words, or what to tell the client instead. The
/// update's duration and size are checked before anything is downloaded,
/// then the conversation's rate limit is taken (recognising costs more than
/// a text); the file is fetched with a size bound and a timeout, decoded
/// (stopping past the limit) and recognised.
async fn hear(tg: &Telegram, key: &SessionKey, v: &VoiceNote) -> Result<String, String> {
    let cfg = &tg.p.cfg.telegram;
    let max_s = cfg.voice_max_seconds;
    let too_long = || {
        format!(
            "Голосовое сообщение слишком длинное. Я слушаю до {max_s} {}. Запишите, пожалуйста, вопрос короче или напишите его текстом.",
            seconds(max_s)
        )
    };
    if v.seconds > max_s || v.bytes.is_some_and(|b| b > cfg.voice_max_bytes) {
        return Err(too_long());
    }
    // `none` recognises nothing: saying «не расслышала» would mislead.
    if tg.p.speech.get().is_none_or(|a| a.name() == "none") {
        return Err(VOICE_UNAVAILABLE.into());
    }
    tg.p.admit(key, None).map_err(|e| e.message())?;
    let bytes = match fetch(&tg.bot, &v.file, cfg.voice_max_bytes).await {
        Ok(b) => b,
        Err(Fetch::TooLarge) => return Err(too_long()),
        Err(Fetch::Failed(e)) => {
            tracing::warn!("telegram: {key}: a voice message not downloaded: {e}");
            return Err(VOICE_FAILED.into());
        }
    };
    let pcm = match tokio::task::spawn_blocking(move || decode_ogg_opus(&bytes, max_s)).await {
        Ok(Ok(pcm)) => pcm,
        Ok(Err(OggError::TooLong(_))) => return Err(too_long()),
        Ok(Err(e)) => {
            tracing::warn!("telegram: {key}: a voice message not decoded: {e}");
            return Err(VOICE_FAILED.into());
        }
        Err(e) => {
            tracing::error!("telegram: decoding a voice message: {e}");
            return Err(VOICE_FAILED.into());
        }
    };
    match tg.p.speech.recognise(pcm, tg.p.expected(key)).await {
        Ok(Some(words)) => Ok(words),
        Ok(None) => Err(VOICE_UNHEARD.into()),
        Err(Unheard::NoRecogniser) => Err(VOICE_UNAVAILABLE.into()),
        Err(Unheard::Failed(e)) => {
            tracing::error!("telegram: {key}: recognising a voice message: {e:#}");
            Err(VOICE_FAILED.into())
        }
    }
}

/// «секунды» or «секунд» after «до n» (до 1 секунды, до 30 секунд).
fn seconds(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (1, m) if m != 11 => "секунды",
        _ => "секунд",
    }
}

enum Fetch {
    TooLarge,
    Failed(String),
}

/// A file from the Bot API: getFile, then its bytes from the file endpoint
/// (`{api_url}/file/bot<token>/<file_path>`), at most `max` of them and
/// within `VOICE_DOWNLOAD_TIMEOUT`.
async fn fetch(bot: &Bot, file: &FileId, max: u32) -> Result<Vec<u8>, Fetch> {
    let f = retry("getFile", || bot.get_file(file.clone()).send())
        .await
        .map_err(|e| Fetch::Failed(e.to_string()))?;
    // (u32::MAX: the Bot API did not say.)
    if f.size != u32::MAX && f.size > max {
        return Err(Fetch::TooLarge);
    }
    let download = async {
        // The stream's errors have the token taken out of their URL.
        let mut chunks = bot.download_file_stream(&f.path);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| Fetch::Failed(e.to_string()))?;
            if out.len() + chunk.len() > max as usize {
                return Err(Fetch::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(VOICE_DOWNLOAD_TIMEOUT, download)
        .await
        .map_err(|_| Fetch::Failed("timed out".into()))?
}

/// What the channel answers by itself (commands, stale buttons).
async fn channel_step(
    tg: &Telegram,
    engine: &Engine,
    chat: ChatId,
    key: &SessionKey,
    step: Step,
) -> anyhow::Result<()> {
    match step {
        Step::Ignore | Step::Stale | Step::Engine(_) | Step::Voice(_) => {}
        Step::Help => tg.say(chat, HELP, Some(persistent_keyboard())).await?,
        Step::UnaskedContact => {
            tg.say(
                chat,
                "Номер телефона нужен только для обратного звонка или записи. Я не сохранила его.",
                None,
            )
            .await?
        }
        Step::Profile => {
            let buttons = engine
                .graph
                .segments
                .iter()
                .map(|(id, s)| {
                    let label = s.label.clone().unwrap_or_else(|| id.clone());
                    (label, format!("p:{id}"))
                })
                .collect();
            let mut buttons: Vec<(String, String)> = buttons;
            let mut text = "Выберите профиль. Ответы будут точнее для Вашей ситуации.".to_string();
            // the service search's kept answers, with a button to delete them
            let kept = crate::services::profile::Profile::load(&*tg.p.store, &key.to_string())?;
            if !kept.facts.is_empty() {
                text.push_str("\n\nВ Вашем профиле сохранено:\n");
                text.push_str(&crate::dialog::describe_facts(&kept.facts));
                buttons.push(("Удалить данные профиля".into(), PROFILE_DELETE.into()));
            }
            tg.say(chat, &text, Some(inline_keyboard(buttons))).await?
        }
        Step::Privacy => {
            let consent = tg.p.store.consent(&key.to_string())?;
            let active = consent.as_ref().is_some_and(|c| c.active());
            let status = match consent {
                Some(c) if c.active() => {
                    let when = jiff::Timestamp::from_second(c.given_at)
                        .map(|t| {
                            t.to_zoned(engine.hours.tz.clone())
                                .strftime("%d.%m.%Y")
                                .to_string()
                        })
                        .unwrap_or_default();
                    format!("Вы дали согласие на обработку персональных данных {when}.")
                }
                Some(_) => "Вы отозвали согласие на обработку персональных данных.".into(),
                None => "Вы не давали согласия на обработку персональных данных.".into(),
            };
            let text = format!("Мы храним историю разговора, чтобы оператор видел Ваш вопрос. Телефон, имя и номер заявления мы храним только с Вашего согласия и только для Вашей просьбы. В отчёты попадают обезличенные данные.\n\n{status}");
            // Withdrawal is offered only when there is a consent to withdraw.
            let markup = active
                .then(|| inline_keyboard(vec![("Отозвать согласие".into(), WITHDRAW.into())]));
            tg.say(chat, &text, markup).await?
        }
    }
    Ok(())
}

/// Sends the replies committed but not confirmed as sent — of `marker` (and
/// its sub-markers), or all — that are at least `min_age_s` old, in order.
async fn redeliver(tg: &Telegram, marker: Option<&str>, min_age_s: i64) -> anyhow::Result<()> {
    let store = &tg.p.store;
    let mut pending = Vec::new();
    for (m, bytes) in store.undelivered(marker)? {
        match serde_json::from_slice::<PendingReply>(&bytes) {
            Ok(p) => pending.push((m, p)),
            Err(e) => {
                tracing::error!("telegram: unreadable undelivered reply {m}: {e}");
                store.delivered(&m)?;
            }
        }
    }
    // In the order they were committed: a client reads them as written.
    pending.sort_by_key(|(_, p)| p.order);
    let now = jiff::Timestamp::now().as_second();
    for (m, p) in pending {
        if now - p.at < min_age_s {
            continue; // probably still being sent by its own update
        }
        if now - p.at > GIVE_UP_S {
            tracing::error!("telegram: giving up a reply undelivered for a day ({m})");
            store.delivered(&m)?;
            continue;
        }
        let chat = ChatId(p.user.parse()?);
        let mut turn = p.turn;
        turn.seq = p.seq;
        match tg.send_turn(chat, &turn, p.operator.as_deref()).await {
            Ok(()) => {
                store.delivered(&m)?;
                tracing::info!("telegram: delivered a reply left undelivered ({m})");
            }
            // For one update the caller reports it (a webhook answers 500).
            Err(e) if marker.is_some() => return Err(e.into()),
            // A sweep goes on with the others and tries again later.
            Err(e) => tracing::error!("telegram: reply {m} still undelivered: {e}"),
        }
    }
    Ok(())
}

/// A reply that could not be delivered for this long is dropped (the client
/// blocked the bot, or the message is refused for good).
const GIVE_UP_S: i64 = 86_400;

/// How often the leader sends the replies left undelivered by a send that
/// failed after its retries (those at least this old).
const REDELIVER_EVERY: Duration = Duration::from_secs(60);
/// How often an instance that does not lead tries to.
const LEAD_RETRY: Duration = Duration::from_secs(1);

/// Runs `work` while this instance leads the bot (`Storage::try_lead`: one
/// instance among those sharing a store; alone, always), and tries again
/// when another instance leads or leadership is lost.
async fn lead<F, Fut>(tg: Arc<Telegram>, work: F)
where
    F: Fn(Arc<Telegram>, Arc<dyn crate::store::Leadership>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut shutdown = tg.p.shutdown.clone();
    while tg.p.engine().is_none() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
    }
    let mut waiting = false;
    loop {
        let st = tg.p.store.clone();
        let got = tokio::task::spawn_blocking(move || st.try_lead("telegram")).await;
        match got {
            Ok(Ok(Some(l))) => {
                tracing::info!("telegram: this instance leads the bot");
                waiting = false;
                work(tg.clone(), Arc::from(l)).await;
                if *shutdown.borrow() {
                    return;
                }
                tracing::warn!("telegram: leadership lost");
            }
            Ok(Ok(None)) if !waiting => {
                waiting = true;
                tracing::info!("telegram: another instance leads the bot");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!("telegram: cannot take the lead: {e:#}"),
            Err(e) => tracing::error!("telegram: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LEAD_RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The leader's sweep in webhook mode: at the start every reply a previous
/// run left undelivered, then every minute those a minute old.
async fn sweep_undelivered(tg: Arc<Telegram>, l: Arc<dyn crate::store::Leadership>) {
    let mut shutdown = tg.p.shutdown.clone();
    let mut min_age = 0;
    while l.held() {
        if let Err(e) = redeliver(&tg, None, min_age).await {
            tracing::error!("telegram redelivery: {e:#}");
        }
        min_age = REDELIVER_EVERY.as_secs() as i64;
        tokio::select! {
            _ = tokio::time::sleep(REDELIVER_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Long polling by the leader: reads updates from the persisted offset,
/// processes each, and persists the next offset; sends the replies left
/// undelivered first, then every minute. Stops when leadership is lost.
pub async fn poll(tg: Arc<Telegram>, l: Arc<dyn crate::store::Leadership>) {
    let st = tg.p.clone();
    let mut shutdown = st.shutdown.clone();
    if let Err(e) = retry("deleteWebhook", || tg.bot.delete_webhook().send()).await {
        tracing::error!("telegram: cannot switch to polling: {e}");
    }
    let store = st.store.clone();
    let mut offset: i32 = tokio::task::spawn_blocking(move || store.meta_get(OFFSET_KEY))
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten()
        .and_then(|v| v.try_into().ok().map(i32::from_be_bytes))
        .unwrap_or(0);
    tracing::info!("telegram: polling from update {offset}");
    // Before new updates, so that none of them races with these replies.
    if let Err(e) = redeliver(&tg, None, 0).await {
        tracing::error!("telegram redelivery: {e:#}");
    }
    let mut swept = std::time::Instant::now();
    let timeout = st.cfg.telegram.poll_timeout_s;
    while l.held() {
        if swept.elapsed() >= REDELIVER_EVERY {
            swept = std::time::Instant::now();
            if let Err(e) = redeliver(&tg, None, REDELIVER_EVERY.as_secs() as i64).await {
                tracing::error!("telegram redelivery: {e:#}");
            }
        }
        let updates = tokio::select! {
            r = retry("getUpdates", || tg.bot.get_updates().offset(offset).timeout(timeout).send()) => r,
            _ = shutdown.changed() => return,
        };
        let updates = match updates {
            Ok(u) => u,
            Err(e) => {
                tracing::error!("telegram getUpdates: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        for u in updates {
            let next = u.id.0 as i32 + 1;
            if let Err(e) = process(&tg, u).await {
                tracing::error!("telegram update: {e:#}");
            }
            offset = offset.max(next);
            let store = st.store.clone();
            let saved = tokio::task::spawn_blocking(move || {
                store.meta_put(OFFSET_KEY, &offset.to_be_bytes())
            })
            .await;
            if let Ok(Err(e)) = saved {
                tracing::error!("telegram offset: {e:#}");
            }
        }
    }
}

/// Starts the bot: polling, or registers the webhook.
async fn start(tg: Arc<Telegram>) -> anyhow::Result<()> {
    let cfg = &tg.p.cfg.telegram;
    match cfg.mode.as_str() {
        "polling" => {
            tokio::spawn(lead(tg.clone(), poll));
        }
        "webhook" => {
            if cfg.webhook_url.is_empty() || cfg.webhook_secret.len() < 16 {
                anyhow::bail!("telegram webhook mode needs telegram.webhook_url and a telegram.webhook_secret of 16+ characters");
            }
            let url = url::Url::parse(&cfg.webhook_url)?;
            let secret = cfg.webhook_secret.clone();
            tokio::spawn(lead(tg.clone(), sweep_undelivered));
            // Registered in the background: a slow Bot API must not hold up serving.
            tokio::spawn(async move {
                match retry("setWebhook", || {
                    tg.bot
                        .set_webhook(url.clone())
                        .secret_token(secret.clone())
                        .send()
                })
                .await
                {
                    Ok(_) => tracing::info!("telegram: webhook at {url}"),
                    Err(e) => tracing::error!("telegram: cannot set the webhook: {e}"),
                }
            });
        }
        other => anyhow::bail!("telegram.mode must be \"polling\" or \"webhook\", got {other:?}"),
    }
    Ok(())
}

async fn webhook(State(tg): State<Arc<Telegram>>, headers: HeaderMap, body: Bytes) -> Response {
    let cfg = &tg.p.cfg.telegram;
    if cfg.mode != "webhook" {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Вебхук Telegram не настроен.",
        );
    }
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given.is_empty() || given.as_bytes() != cfg.webhook_secret.as_bytes() {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Неверный секрет вебхука.",
        );
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("Неверное обновление: {e}"),
            )
        }
    };
    if let Err(e) = process(&tg, update).await {
        tracing::error!("telegram webhook update: {e:#}");
        // 500 makes Telegram deliver it again; the id marker keeps it from running twice.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Не удалось обработать обновление.",
        );
    }
    StatusCode::OK.into_response()
}
