//! The REST channel (`POST /api/v1/messages`) for integrations: a portal, a
//! CRM, another robot. Every call needs `Authorization: Bearer <key>`; keys
//! live in a file (`[api] keys_file`) as sha256 hashes with a per-key rate
//! limit, and `otklik api-key NAME` makes one. An integration's
//! conversations live in their own namespace, `api:<key name>:<user>`, so
//! no call can reach a web, Telegram or voice conversation, nor another
//! key's users. The reply is the HTTP response itself: nothing is kept for
//! later delivery.

use super::pipeline::{Pipeline, TurnError, TurnRequest};
use super::{BoxFuture, Channel, Delivery, Origin, Sent};
use crate::dialog::{Input, Keep, Turn};
use crate::errors::{bad_json, error, internal, rate_limited};
use crate::store::SessionKey;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use utoipa::ToSchema;

pub const NAME: &str = "api";

/// One integration's key, as the keys file holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Latin letters, digits, `-` and `_`: the namespace of its conversations.
    pub name: String,
    /// sha256 of the key, hex.
    pub key_hash: String,
    /// Messages per minute for the whole integration.
    #[serde(default = "default_rate")]
    pub messages_per_minute: u32,
}

fn default_rate() -> u32 {
    600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// The keys, by the hash of the key.
pub struct Keys {
    by_hash: HashMap<String, (KeyEntry, DefaultDirectRateLimiter)>,
}

pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A new key for `name` and the entry to add to the keys file.
pub fn new_key(name: &str) -> anyhow::Result<(String, String)> {
    if !valid_name(name) {
        anyhow::bail!("the key's name: 1 to 32 Latin letters, digits, `-` or `_`");
    }
    let key = format!(
        "otk_{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let entry = format!(
        "[[key]]\nname = \"{name}\"\nkey_hash = \"{}\"\nmessages_per_minute = {}\n",
        key_hash(&key),
        default_rate()
    );
    Ok((key, entry))
}

impl Keys {
    /// Reads the keys file; a missing file means no keys (every call is refused).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut by_hash = HashMap::new();
        if !path.exists() {
            tracing::warn!(
                "no API keys: {} does not exist; /api/v1/messages refuses every call",
                path.display()
            );
            return Ok(Self { by_hash });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let f: KeysFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for k in f.key {
            if !valid_name(&k.name) {
                anyhow::bail!(
                    "{}: key name {:?}: 1 to 32 Latin letters, digits, `-` or `_`",
                    path.display(),
                    k.name
                );
            }
            if k.key_hash.len() != 64 || !k.key_hash.chars().all(|c| c.is_ascii_hexdigit()) {
                anyhow::bail!(
                    "{}: key {}: key_hash must be 64 hex digits (make one with `otklik api-key {}`)",
                    path.display(),
                    k.name,
                    k.name
                );
            }
            let rate = NonZeroU32::new(k.messages_per_minute.max(1)).unwrap();
            let limiter = governor::RateLimiter::direct(Quota::per_minute(rate));
            by_hash.insert(k.key_hash.to_ascii_lowercase(), (k, limiter));
        }
        Ok(Self { by_hash })
    }

    /// The entry of a presented key.
    fn find(&self, key: &str) -> Option<&(KeyEntry, DefaultDirectRateLimiter)> {
        self.by_hash.get(&key_hash(key))
    }
}

pub struct Api {
    p: Arc<Pipeline>,
    keys: Keys,
}

impl Api {
    pub fn new(p: Arc<Pipeline>, keys: Keys) -> Arc<Self> {
        Arc::new(Self { p, keys })
    }
}

impl Channel for Api {
    fn name(&self) -> &'static str {
        NAME
    }

    fn keep(&self, _key: &SessionKey, _turn: &Turn, _origin: &Origin) -> anyhow::Result<Keep> {
        Ok(Keep::default())
    }

    /// The client polls: a turn it did not ask for (an operator's message)
    /// stays in the conversation's history, read through the API.
    fn deliver<'a>(
        &'a self,
        _key: &'a SessionKey,
        _turn: &'a Turn,
        _sent: &'a Sent,
    ) -> BoxFuture<'a, anyhow::Result<Delivery>> {
        Box::pin(async { Ok(Delivery::Sent) })
    }

    fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/messages", post(message))
            .with_state(self)
    }
}

/// One input of a conversation; exactly one of `text`, `choice`, `dtmf`, `start`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The client's id in your system; the conversation is `api:<key name>:<user>`.
    user: String,
    /// web (default), telegram or voice: whose style applies.
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// A choice id from the previous turn.
    #[serde(default)]
    choice: Option<String>,
    #[serde(default)]
    dtmf: Option<String>,
    /// Start a new conversation.
    #[serde(default)]
    start: bool,
    /// Set the client's segment profile first.
    #[serde(default)]
    segment: Option<String>,
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Нужен ключ интеграции: заголовок Authorization: Bearer <ключ>.",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn unprocessable(code: &str, message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Sends a message (or a choice, digits, a start) and returns the bot's turn.
#[utoipa::path(post, path = "/api/v1/messages", request_body = MessageRequest,
    security(("api_key" = [])),
    responses((status = 200, body = Turn), (status = 400, body = crate::errors::ErrorBody), (status = 401, description = "no or unknown key", body = crate::errors::ErrorBody), (status = 422, body = crate::errors::ErrorBody), (status = 429, body = crate::errors::ErrorBody), (status = 503, description = "starting, or the database is unavailable", body = crate::errors::ErrorBody)))]
pub async fn message(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<MessageRequest>, JsonRejection>,
) -> Response {
    let Some((entry, limiter)) = bearer(&headers).and_then(|k| api.keys.find(k)) else {
        return unauthorized();
    };
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e, "{\"user\": \"…\", \"text\": \"…\"}"),
    };
    let style = req.channel.clone().unwrap_or_else(|| "web".into());
    if !crate::dialog::graph::CHANNELS.contains(&style.as_str()) {
        return unprocessable("bad_channel", "Канал: web, telegram или voice.");
    }
    if req.user.is_empty()
        || req.user.chars().count() > 64
        || req.user.chars().any(|c| c == ':' || c.is_control())
    {
        return unprocessable("bad_user", "user: от 1 до 64 знаков, без двоеточия.");
    }
    let given = [
        req.text.is_some(),
        req.choice.is_some(),
        req.dtmf.is_some(),
        req.start,
    ];
    if given.iter().filter(|x| **x).count() != 1 {
        return unprocessable(
            "bad_input",
            "Укажите ровно одно из полей: text, choice, dtmf или start.",
        );
    }
    if limiter.check().is_err() {
        return rate_limited();
    }
    let Some(engine) = api.p.engine() else {
        return crate::errors::starting();
    };
    if let Some(seg) = &req.segment {
        if !engine.graph.segments.contains_key(seg) {
            return unprocessable(
                "bad_segment",
                "Неизвестный профиль: universal, senior, family, disability или jobseeker.",
            );
        }
    }
    let input = if req.start {
        Input::Start
    } else if let Some(t) = req.text {
        Input::Text(t)
    } else if let Some(c) = req.choice {
        Input::Choice(c)
    } else {
        Input::Dtmf(req.dtmf.unwrap_or_default())
    };
    let key = SessionKey::new(NAME, format!("{}:{}", entry.name, req.user));
    let mut inputs: Vec<Input> = req.segment.map(Input::SetSegment).into_iter().collect();
    inputs.push(input);
    let mut r = TurnRequest::several(key, inputs);
    r.style = Some(style);
    match api.p.turn(api.clone(), r).await {
        Ok(mut turns) => match turns.pop() {
            Some((turn, _)) => Json(turn).into_response(),
            None => internal("no turn"),
        },
        Err(TurnError::RateLimited) => rate_limited(),
        Err(TurnError::Starting) => crate::errors::starting(),
        Err(e @ TurnError::TooLong(_)) => unprocessable(e.code(), &e.message()),
        Err(e) if e.code() == "unavailable" => {
            tracing::warn!("api: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.message())
        }
        Err(e) => internal(e),
    }
}
