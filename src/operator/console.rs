//! The operator console: sign-in (accounts in a TOML file, argon2 password
//! hashes, an HttpOnly session cookie whose sign-in is stored hashed, so a
//! restart signs nobody out), the console's JSON API under
//! `/api/v1/operator/` (queue, take, reply, transfer, release, callbacks,
//! appointments), the live "queue changed" WebSocket, and the console page.

use super::signin::{Refusal, SignInGuard};
use super::{OperatorError, MAX_TRANSFERS};
use crate::channels::pipeline::Pipeline;
use crate::channels::web::Sockets;
use crate::channels::Delivery;
use crate::config::Config;
use crate::dialog::handoff::{Person, TagError};
use crate::errors::{error, internal, starting};
use crate::store::{SessionKey, Storage};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("../../web/operator.html");
const SCRIPT: &str = include_str!("../../web/operator.js");
const COOKIE: &str = "otklik_operator";

pub use crate::config::OperatorsConfig;

/// What an account may do: take conversations (`operator`), read the
/// indicators (`analyst`), review what the classifier heard (`trainer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Analyst,
    Trainer,
}

fn operator_only() -> Vec<Role> {
    vec![Role::Operator]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub login: String,
    pub name: String,
    pub password_hash: String,
    /// Without it, an account is an operator.
    #[serde(default = "operator_only")]
    pub roles: Vec<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    operator: Vec<Account>,
}

pub struct Console {
    accounts: HashMap<String, Account>,
    /// Checked for an unknown login, so that it costs what a real one does.
    dummy_hash: String,
    ttl: Duration,
    secure: bool,
}

/// An argon2id hash of `password` in PHC form, for the accounts file.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

impl Console {
    pub fn load(cfg: &Config) -> anyhow::Result<Self> {
        let c = &cfg.operators;
        let mut accounts = HashMap::new();
        if c.accounts_file.exists() {
            let text = std::fs::read_to_string(&c.accounts_file)?;
            let f: AccountsFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", c.accounts_file.display()))?;
            for a in f.operator {
                PasswordHash::new(&a.password_hash).map_err(|e| {
                    anyhow::anyhow!("{}: operator {}: password_hash is not a PHC hash ({e}); make one with `otklik hash-password`", c.accounts_file.display(), a.login)
                })?;
                accounts.insert(a.login.clone(), a);
            }
        } else {
            tracing::warn!(
                "no operator accounts: {} does not exist",
                c.accounts_file.display()
            );
        }
        Ok(Self {
            accounts,
            dummy_hash: hash_password(&format!("{:032x}", rand::random::<u128>()))?,
            ttl: Duration::from_secs(c.session_hours * 3600),
            secure: c.secure_cookie,
        })
    }

    /// The account if the password is right. An unknown login is checked
    /// against a dummy hash: both take one argon2 run.
    fn check(&self, login: &str, password: &str) -> Option<&Account> {
        let a = self.accounts.get(login);
        let hash = a.map_or(self.dummy_hash.as_str(), |a| a.password_hash.as_str());
        let h = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok();
        a.filter(|_| ok)
    }

    /// Signs `login` in: a new random cookie token, saved (as its hash, so a
    /// copy of the database does not sign anyone in) to survive restarts.
    fn open(&self, store: &dyn Storage, login: &str, now: i64) -> anyhow::Result<String> {
        let token = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let expires = now + self.ttl.as_secs() as i64;
        store.signin_put(&token_key(&token), login, expires, now)?;
        Ok(token)
    }

    /// The operator signed in with this cookie value, while the account exists.
    pub fn who(&self, store: &dyn Storage, token: &str, now: i64) -> Option<String> {
        match store.signin_get(&token_key(token), now) {
            Ok(login) => login.filter(|l| self.accounts.contains_key(l)),
            Err(e) => {
                tracing::error!("operator sign-in: {e:#}");
                None
            }
        }
    }

    /// Whether the account `login` has `role`.
    pub fn has(&self, login: &str, role: Role) -> bool {
        self.accounts
            .get(login)
            .is_some_and(|a| a.roles.contains(&role))
    }

    fn roles(&self, login: &str) -> Vec<Role> {
        self.accounts
            .get(login)
            .map(|a| a.roles.clone())
            .unwrap_or_default()
    }

    fn name(&self, login: &str) -> String {
        self.accounts
            .get(login)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| login.to_string())
    }
}

/// The stored key of a sign-in token.
fn token_key(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A signed-in operator (the extractor answers 401 otherwise, and 403 to
/// an account without the operator's role).
pub struct Operator(pub String);

/// Anyone signed in, whatever their roles.
pub struct SignedIn(pub String);

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Войдите в систему.",
    )
}

/// 403 for a signed-in account without `role`.
fn forbidden(role: Role) -> Response {
    let what = match role {
        Role::Operator => "Работать с обращениями могут только операторы.",
        Role::Analyst => {
            "Показатели видят только аналитики. Попросите администратора добавить Вам роль analyst."
        }
        Role::Trainer => "Этот раздел открыт только тем, кто обучает помощника.",
    };
    error(StatusCode::FORBIDDEN, "forbidden", what)
}

/// The operator's desk: what the console's handlers share.
pub struct Desk {
    pub p: Arc<Pipeline>,
    pub console: Console,
    pub sockets: Arc<Sockets>,
    guard: SignInGuard,
}

impl Desk {
    pub fn new(p: Arc<Pipeline>, sockets: Arc<Sockets>) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            console: Console::load(&p.cfg)?,
            guard: SignInGuard::new(&p.cfg.operators),
            p,
            sockets,
        }))
    }

    /// The operator signed in with the request's cookie.
    pub fn signed_in(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let jar = CookieJar::from_headers(headers);
        let now = self.p.clock.now().as_second();
        jar.get(COOKIE)
            .and_then(|c| self.console.who(self.p.store.as_ref(), c.value(), now))
    }

    /// The account signed in with the request's cookie if it has `role`;
    /// otherwise a ready 401 (not signed in) or 403 (no such role).
    #[allow(clippy::result_large_err)]
    pub fn signed_in_as(
        &self,
        headers: &axum::http::HeaderMap,
        role: Role,
    ) -> Result<String, Response> {
        let login = self.signed_in(headers).ok_or_else(unauthorized)?;
        if self.console.has(&login, role) {
            Ok(login)
        } else {
            Err(forbidden(role))
        }
    }

    /// Whether the client is told the operators' names.
    fn named(&self) -> bool {
        self.p.cfg.operators.show_name_to_client
    }

    /// The engine, or a 503 while the model is still loading (a ready
    /// response for handlers to return as is, hence the large error type).
    #[allow(clippy::result_large_err)]
    pub(crate) fn engine(&self) -> Result<Arc<crate::dialog::Engine>, Response> {
        self.p.engine().ok_or_else(starting)
    }
}

impl FromRequestParts<Arc<Desk>> for Operator {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &Arc<Desk>) -> Result<Self, Response> {
        st.signed_in_as(&parts.headers, Role::Operator)
            .map(Operator)
    }
}

impl FromRequestParts<Arc<Desk>> for SignedIn {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &Arc<Desk>) -> Result<Self, Response> {
        st.signed_in(&parts.headers)
            .map(SignedIn)
            .ok_or_else(unauthorized)
    }
}

/// A conversation named in a path (`channel:user`), or a ready 400.
#[allow(clippy::result_large_err)]
fn session_key(s: &str) -> Result<SessionKey, Response> {
    SessionKey::parse(s).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_session",
            "Разговор указывается как канал:пользователь, например web:abc.",
        )
    })
}

pub fn routes(desk: Arc<Desk>) -> Router {
    Router::new()
        .route("/operator", get(|| async { Html(PAGE) }))
        .route(
            "/operator.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/api/v1/operator/login", post(login))
        .route("/api/v1/operator/logout", post(logout))
        .route("/api/v1/operator/me", get(me))
        .route("/api/v1/operator/queue", get(queue))
        .route("/api/v1/operator/operators", get(operators))
        .route("/api/v1/operator/callbacks", get(callbacks))
        .route("/api/v1/operator/appointments", get(appointments))
        .route("/api/v1/operator/conversations/{session}/take", post(take))
        .route(
            "/api/v1/operator/conversations/{session}/reply",
            post(reply),
        )
        .route(
            "/api/v1/operator/conversations/{session}/transfer",
            post(transfer),
        )
        .route(
            "/api/v1/operator/conversations/{session}/release",
            post(release),
        )
        .route("/api/v1/operator/intents", get(intents))
        .route("/api/v1/operator/conversations/{session}/tag", post(tag))
        .route("/ws/operator", get(socket))
        .with_state(desk)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    login: String,
    password: String,
}

/// 429 with Retry-After for a locked account or address, or a full pool.
fn refused(st: &Desk, r: Refusal, login: &str, ip: std::net::IpAddr) -> Response {
    let (reason, mut resp) = match r {
        Refusal::Locked(d) => {
            let minutes = d.as_secs().div_ceil(60).max(1);
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "locked",
                &format!("Слишком много неудачных попыток входа. Попробуйте через {minutes} мин."),
            );
            if let Ok(v) = header::HeaderValue::from_str(&d.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            ("locked", resp)
        }
        Refusal::Busy => (
            "busy",
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "Сервер занят проверкой входа. Попробуйте через несколько секунд.",
            ),
        ),
    };
    if reason == "busy" {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
    }
    tracing::warn!("operator sign-in refused ({reason}) for {login:?} from {ip}");
    st.p.metrics.signin_refused(reason);
    resp
}

async fn login(
    State(st): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    jar: CookieJar,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Ожидается JSON вида {\"login\": \"…\", \"password\": \"…\"}.",
        );
    };
    let ip = peer.ip();
    if let Some(r) = st.guard.refused(&req.login, ip) {
        return refused(&st, r, &req.login, ip);
    }
    let st2 = st.clone();
    let (login, password) = (req.login.clone(), req.password);
    // argon2 takes tens of milliseconds and 19 MiB: on the bounded pool.
    let checked = st
        .guard
        .check(move || st2.console.check(&login, &password).cloned())
        .await;
    let acc = match checked {
        Ok(Some(acc)) => acc,
        Ok(None) => {
            st.p.metrics.signin_refused("bad_credentials");
            if let Some(lock) = st.guard.failed(&req.login, ip) {
                tracing::warn!(
                    "operator sign-in: {:?} from {ip} locked for {} s after repeated failures",
                    req.login,
                    lock.as_secs()
                );
            }
            crate::nlu::release_freed_memory();
            return error(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "Неверный логин или пароль.",
            );
        }
        Err(r) => return refused(&st, r, &req.login, ip),
    };
    st.guard.succeeded(&acc.login);
    let token = match st.console.open(
        st.p.store.as_ref(),
        &acc.login,
        st.p.clock.now().as_second(),
    ) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let cookie = Cookie::build((COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(st.console.secure)
        .build();
    (
        jar.add(cookie),
        Json(json!({"login": acc.login, "name": acc.name, "roles": acc.roles})),
    )
        .into_response()
}

async fn logout(State(st): State<Arc<Desk>>, jar: CookieJar) -> Response {
    if let Some(c) = jar.get(COOKIE) {
        if let Err(e) = st.p.store.signin_remove(&token_key(c.value())) {
            return internal(e);
        }
    }
    (
        jar.remove(Cookie::build(COOKIE).path("/")),
        Json(json!({"ok": true})),
    )
        .into_response()
}

async fn me(State(st): State<Arc<Desk>>, SignedIn(login): SignedIn) -> Response {
    Json(
        json!({"login": login, "name": st.console.name(&login), "roles": st.console.roles(&login)}),
    )
    .into_response()
}

async fn operators(State(st): State<Arc<Desk>>, Operator(_): Operator) -> Response {
    let mut items: Vec<_> = st
        .console
        .accounts
        .values()
        .filter(|a| a.roles.contains(&Role::Operator))
        .map(|a| json!({"login": a.login, "name": a.name}))
        .collect();
    items.sort_by_key(|v| v["login"].as_str().unwrap_or("").to_string());
    Json(json!({"items": items})).into_response()
}

/// A channel in the operator's words.
fn channel_label(channel: &str) -> &str {
    match channel {
        "web" => "Веб-чат",
        "telegram" => "Telegram",
        "voice" => "Телефон",
        "api" => "API",
        other => other,
    }
}

/// A few characters of the client's id, enough to tell conversations apart
/// (for the REST API, of the id after the integration's name).
fn short_id(user: &str) -> String {
    let id = user.rsplit(':').next().unwrap_or(user);
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect()
}

/// Seconds the client waited before an operator took the conversation:
/// from the handoff to the first operator's line after it (None when the
/// history no longer holds it).
fn waited(since: i64, history: &[crate::dialog::session::Entry]) -> Option<i64> {
    history
        .iter()
        .find(|e| e.who.starts_with("system:") && e.at >= since)
        .map(|e| (e.at - since).max(0))
}

fn queue_item(
    st: &Desk,
    engine: &crate::dialog::Engine,
    q: &crate::store::QueueItem,
) -> serde_json::Value {
    let s = SessionKey::parse(&q.session).and_then(|k| engine.session(&k).ok().flatten());
    let now = st.p.clock.now().as_second();
    let user = q.session.split_once(':').map_or("", |(_, u)| u);
    let segment_label = engine
        .graph
        .segments
        .get(&q.segment)
        .and_then(|g| g.label.clone());
    let short = short_id(user);
    let title = [
        Some(channel_label(&q.channel).to_string()),
        segment_label.clone().filter(|_| q.segment != "universal"),
        Some(short.clone()).filter(|x| !x.is_empty()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let topic = q
        .intent
        .as_deref()
        .and_then(|id| engine.nlu.kb.intent(id))
        .map(|i| i.title.clone());
    // The clock stops when an operator takes the conversation.
    let waiting = match &q.operator {
        None => Some((now - q.since).max(0)),
        Some(_) => s.as_ref().and_then(|s| waited(q.since, &s.history)),
    };
    json!({
        "session": q.session,
        "title": title,
        "short_id": short,
        "channel": q.channel,
        "channel_label": channel_label(&q.channel),
        "segment": q.segment,
        "segment_label": segment_label,
        "intent": q.intent,
        "topic": topic,
        "waiting_seconds": waiting,
        "operator": q.operator,
        "operator_name": q.operator.as_deref().map(|o| st.console.name(o)),
        "transfers": s.as_ref().map(|s| s.transfers).unwrap_or(0),
        "max_transfers": MAX_TRANSFERS,
        "history": s.map(|s| s.history).unwrap_or_default(),
    })
}

async fn queue(State(st): State<Arc<Desk>>, Operator(_): Operator) -> Response {
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    match st.p.store.queue() {
        Ok(items) => Json(
            json!({"items": items.iter().map(|q| queue_item(&st, &engine, q)).collect::<Vec<_>>()}),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn callbacks(State(st): State<Arc<Desk>>, Operator(_): Operator) -> Response {
    match st.p.store.callbacks() {
        Ok(v) => Json(json!({"items": v})).into_response(),
        Err(e) => internal(e),
    }
}

async fn appointments(State(st): State<Arc<Desk>>, Operator(_): Operator) -> Response {
    match st.p.store.appointments() {
        Ok(v) => Json(json!({"items": v})).into_response(),
        Err(e) => internal(e),
    }
}

fn op_error(e: OperatorError) -> Response {
    let (status, code, msg) = match e {
        OperatorError::NotWaiting => (
            StatusCode::CONFLICT,
            "not_waiting",
            "Этот разговор не ждёт оператора.",
        ),
        OperatorError::Taken => (
            StatusCode::CONFLICT,
            "taken",
            "Разговор уже взял другой оператор.",
        ),
        OperatorError::NotYours => (
            StatusCode::FORBIDDEN,
            "not_yours",
            "Этот разговор ведёт другой оператор.",
        ),
        OperatorError::TransferLimit => (
            StatusCode::CONFLICT,
            "transfer_limit",
            "Разговор уже передавали дважды. Больше передавать нельзя: продолжите его сами.",
        ),
        OperatorError::EmptyReply => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_reply",
            "Ответ пустой. Напишите текст.",
        ),
    };
    error(status, code, msg)
}

/// Runs an engine operation for an operator off the async workers.
async fn with_engine<T: Send + 'static>(
    st: &Arc<Desk>,
    f: impl FnOnce(&crate::dialog::Engine) -> anyhow::Result<Result<T, OperatorError>> + Send + 'static,
) -> Result<T, Response> {
    let engine = st.engine()?;
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(op_error(e)),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

async fn take(
    State(st): State<Arc<Desk>>,
    Operator(op): Operator,
    Path(session): Path<String>,
) -> Response {
    let key = match session_key(&session) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // The client is told in the take's own commit: the bot's notice.
    let keep = match st.p.keeper(&key, None) {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let (k2, name, named) = (key.clone(), st.console.name(&op), st.named());
    let r = with_engine(&st, move |e| {
        let who = Person {
            login: &op,
            name: &name,
            named,
        };
        e.take_as(&k2, &who, &keep)
    })
    .await;
    st.p.hub.queue_changed();
    let ((), turn, committed, kept) = match r {
        Ok(v) => v,
        Err(r) => return r,
    };
    let delivery = st.p.deliver(&key, &turn, None, committed, &kept).await;
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let item =
        st.p.store
            .queue()
            .unwrap_or_default()
            .into_iter()
            .find(|q| q.session == session);
    let mut v = item
        .map(|q| queue_item(&st, &engine, &q))
        .unwrap_or(json!({}));
    told(&mut v, delivery);
    Json(v).into_response()
}

/// Adds to an answer whether the client's notice was sent: taken or
/// passed on stands either way (a notice not sent now is kept and sent later).
fn told(v: &mut serde_json::Value, r: anyhow::Result<Delivery>) {
    let sent = match r {
        Ok(d) => d == Delivery::Sent,
        Err(e) => {
            tracing::warn!("the client's notice was not delivered now: {e:#}");
            false
        }
    };
    v["client_told"] = sent.into();
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyRequest {
    text: String,
}

async fn reply(
    State(st): State<Arc<Desk>>,
    Operator(op): Operator,
    Path(session): Path<String>,
    body: Result<Json<ReplyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Ожидается JSON вида {\"text\": \"…\"}.",
        );
    };
    let key = match session_key(&session) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Whose message it is, as the client reads it.
    let name = if st.named() {
        st.console.name(&op)
    } else {
        "Оператор".to_string()
    };
    let keep = match st.p.keeper(&key, Some(name.clone())) {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let k2 = key.clone();
    match with_engine(&st, move |e| e.operator_reply(&k2, &op, &req.text, &keep)).await {
        Ok((turn, committed, kept)) => {
            st.p.hub.queue_changed();
            let r =
                st.p.deliver(&key, &turn, Some(&name), committed, &kept)
                    .await;
            delivered(r)
        }
        Err(r) => r,
    }
}

/// The answer to an operator whose message was sent, or saved to be sent
/// later (202, with a notice for the console: the operator must not resend).
fn delivered(r: anyhow::Result<Delivery>) -> Response {
    match r {
        Ok(Delivery::Sent) => Json(json!({"ok": true, "delivered": true})).into_response(),
        Ok(Delivery::Later) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "ok": true,
                "delivered": false,
                "notice": "Мессенджер сейчас не отвечает: сообщение сохранено и будет доставлено автоматически. Повторять его не нужно.",
            })),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    to: String,
}

async fn transfer(
    State(st): State<Arc<Desk>>,
    Operator(op): Operator,
    Path(session): Path<String>,
    body: Result<Json<TransferRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Ожидается JSON вида {\"to\": \"логин оператора\"}.",
        );
    };
    if !st.console.accounts.contains_key(&req.to) || req.to == op {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_operator",
            "Такого оператора нет: выберите другого оператора из списка.",
        );
    }
    let key = match session_key(&session) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let keep = match st.p.keeper(&key, None) {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let (from_name, to_name) = (st.console.name(&op), st.console.name(&req.to));
    let (k2, named) = (key.clone(), st.named());
    let r = with_engine(&st, move |e| {
        let from = Person {
            login: &op,
            name: &from_name,
            named,
        };
        let to = Person {
            login: &req.to,
            name: &to_name,
            named,
        };
        e.transfer_as(&k2, &from, &to, &keep)
    })
    .await;
    st.p.hub.queue_changed();
    let (n, turn, committed, kept) = match r {
        Ok(v) => v,
        Err(r) => return r,
    };
    let delivery = st.p.deliver(&key, &turn, None, committed, &kept).await;
    let mut v = json!({"transfers": n, "max_transfers": MAX_TRANSFERS});
    told(&mut v, delivery);
    Json(v).into_response()
}

async fn release(
    State(st): State<Arc<Desk>>,
    Operator(op): Operator,
    Path(session): Path<String>,
) -> Response {
    let key = match session_key(&session) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let keep = match st.p.keeper(&key, None) {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let k2 = key.clone();
    let r = with_engine(&st, move |e| e.release(&k2, &op, &keep)).await;
    st.p.hub.queue_changed();
    match r {
        Ok((turn, committed, kept)) => {
            delivered(st.p.deliver(&key, &turn, None, committed, &kept).await)
        }
        Err(r) => r,
    }
}

/// The knowledge base's intents (id and title), for tagging a conversation.
async fn intents(State(st): State<Arc<Desk>>, Operator(_): Operator) -> Response {
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    Json(intent_list(&engine)).into_response()
}

/// `{"intents": [{"id", "title"}…]}`: the topics people tag and move examples to.
pub(crate) fn intent_list(engine: &crate::dialog::Engine) -> serde_json::Value {
    let list: Vec<serde_json::Value> = engine
        .nlu
        .kb
        .intents
        .iter()
        .map(|i| json!({"id": i.id, "title": i.title}))
        .collect();
    json!({ "intents": list })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagRequest {
    intent: String,
}

/// Tags the intent of a conversation the operator handled: the best label
/// for the trainers' retraining.
async fn tag(
    State(st): State<Arc<Desk>>,
    Operator(op): Operator,
    Path(session): Path<String>,
    body: Result<Json<TagRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Ожидается JSON вида {\"intent\": \"тема\"}.",
        );
    };
    let key = match session_key(&session) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    match tokio::task::spawn_blocking(move || engine.tag_intent(&key, &op, &req.intent)).await {
        Ok(Ok(Ok(()))) => Json(json!({"tagged": true})).into_response(),
        Ok(Ok(Err(TagError::UnknownIntent))) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_intent",
            "Такой темы нет: выберите тему из списка.",
        ),
        Ok(Ok(Err(TagError::NotHandled))) => error(
            StatusCode::FORBIDDEN,
            "not_handled",
            "Отметить тему можно только в разговоре, который Вы вели.",
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// The largest message an operator's console socket takes, bytes.
const CONSOLE_MAX_MESSAGE: usize = 4 * 1024;

async fn socket(
    State(st): State<Arc<Desk>>,
    Operator(_): Operator,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The console's own pages only: another site's page must not ride on
    // an operator's cookie.
    if !crate::channels::web::origin_allowed(&headers, &[]) {
        return error(
            StatusCode::FORBIDDEN,
            "bad_origin",
            "Консоль оператора открывается только со своего адреса.",
        );
    }
    let Ok(guard) = st
        .sockets
        .open(None, crate::channels::sockets::Kind::Operator)
    else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Слишком много подключений. Попробуйте через минуту.",
        );
    };
    // The console only sends pings, pongs and small notes.
    crate::channels::sockets::bounded(ws, CONSOLE_MAX_MESSAGE).on_upgrade(
        move |socket| async move {
            let _g = guard;
            push_queue(st, socket).await;
        },
    )
}

async fn push_queue(st: Arc<Desk>, mut socket: WebSocket) {
    let mut changes = st.p.hub.watch_queue();
    let mut shutdown = st.p.shutdown.clone();
    let mut idle = crate::channels::web::IdleWatch::new(st.p.cfg.http.ws_idle_timeout_s);
    let msg = json!({"type": "queue"}).to_string();
    if socket
        .send(Message::Text(msg.clone().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            r = changes.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { break }
                let send = socket.send(Message::Text(msg.clone().into()));
                if !matches!(tokio::time::timeout(Duration::from_secs(5), send).await, Ok(Ok(()))) { break }
            }
            m = socket.recv() => {
                idle.heard();
                if !matches!(m, Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_)))) { break }
            }
            _ = idle.tick() => {
                if !idle.ping(&mut socket).await { break }
            }
            _ = shutdown.changed() => break,
        }
    }
}
