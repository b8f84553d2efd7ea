//! Notifications' HTTP surface: the ministry's system posting a status
//! change (`POST /api/v1/events/status`, an integration key whose sha256 is
//! in `[notify] event_key_hashes`; a bounded body; idempotent by the event's
//! id), which sets the application's status and queues the notice to its
//! client in one commit; and what was sent to whom and why
//! (`GET /api/v1/admin/notifications`, the admin token or an operator
//! signed in to the console).

use crate::channels::pipeline::Pipeline;
use crate::errors::{error, internal};
use crate::operator::console::{Desk, Role};
use crate::services::applications::{self, Application};
use crate::services::notices::{self, Category, Notice};
use crate::services::notify::{self, Logged, Settings, State};
use crate::services::status::{set_status, AppStatus};
use crate::store::{Conflict, RecordOp};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use serde_json::json;
use std::num::NonZeroU32;
use std::sync::Arc;

/// A status event's body is small: at most this many bytes.
const MAX_EVENT_BYTES: usize = 8 * 1024;
/// The record kind of status events received (key: the event's id).
pub const EVENT_KIND: &str = "status_event";
/// At most this many notices in one answer of the log.
const MAX_LISTED: usize = 1000;

pub struct Notify {
    p: Arc<Pipeline>,
    desk: Arc<Desk>,
    /// Events per integration key and minute.
    limiter: DefaultKeyedRateLimiter<String>,
}

pub fn routes(p: Arc<Pipeline>, desk: Arc<Desk>) -> Router {
    let per_minute = NonZeroU32::new(p.cfg.notify.events_per_minute.max(1)).unwrap();
    let st = Arc::new(Notify {
        p,
        desk,
        limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
    });
    Router::new()
        .route(
            "/api/v1/events/status",
            post(status_event).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
        )
        .route("/api/v1/admin/notifications", get(list))
        .with_state(st)
}

/// The integration key's hash when the request carries an allowed one.
fn integration(st: &Notify, headers: &HeaderMap) -> Option<String> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let hash = crate::channels::api::key_hash(key);
    st.p.cfg
        .notify
        .event_key_hashes
        .iter()
        .any(|h| h.trim().eq_ignore_ascii_case(&hash))
        .then_some(hash)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusEvent {
    /// The sender's id of the event: a repeat of it changes nothing.
    event_id: String,
    number: String,
    status: String,
    #[serde(default)]
    details: String,
}

fn bad(code: &str, message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// A status change from the ministry's system: the status is set and the
/// application's client notified, in one commit, once per event id
/// (`[notify] event_key_hashes` holds the keys' sha256).
#[utoipa::path(post, path = "/api/v1/events/status", request_body = StatusEvent,
    security(("api_key" = [])),
    responses((status = 200, description = "accepted (`notified`: the application's client was notified; `duplicate`: the event id came before)"),
        (status = 401, description = "no or unknown key", body = crate::errors::ErrorBody),
        (status = 413, description = "a body over 8 KB"),
        (status = 422, body = crate::errors::ErrorBody), (status = 429, body = crate::errors::ErrorBody)))]
pub async fn status_event(
    AxState(st): AxState<Arc<Notify>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = integration(&st, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Нужен ключ интеграции: заголовок Authorization: Bearer <ключ>.",
        );
    };
    if st.limiter.check_key(&key).is_err() {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            crate::errors::RATE_LIMITED,
        );
    }
    let ev: StatusEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return bad(
                "bad_json",
                &format!("Тело запроса — JSON с полями event_id, number, status и details: {e}"),
            )
        }
    };
    let id_ok = !ev.event_id.is_empty()
        && ev.event_id.len() <= 100
        && ev
            .event_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !id_ok {
        return bad(
            "bad_event_id",
            "event_id: от 1 до 100 латинских букв, цифр и знаков - _ . :",
        );
    }
    if !(4..=20).contains(&ev.number.len()) || !ev.number.chars().all(|c| c.is_ascii_digit()) {
        return bad("bad_number", "number: номер заявления, от 4 до 20 цифр.");
    }
    if ev.status.trim().is_empty()
        || ev.status.chars().count() > 200
        || ev.details.chars().count() > 1000
    {
        return bad(
            "bad_status",
            "status: от 1 до 200 знаков; details: не больше 1000 знаков.",
        );
    }
    let Some(engine) = st.p.engine() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "Сервис ещё запускается.",
        );
    };
    let p = st.p.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Response> {
        let store = p.store.as_ref();
        let now = p.clock.now().as_second();
        let app: Option<Application> = store.record_of(applications::KIND, &ev.number)?;
        let mut ops = vec![
            RecordOp::Swap {
                kind: EVENT_KIND.into(),
                key: ev.event_id.clone(),
                expected: None,
                value: Some(serde_json::to_vec(
                    &json!({"number": ev.number, "status": ev.status, "at": now}),
                )?),
            },
            set_status(
                &ev.number,
                &AppStatus {
                    status: ev.status.clone(),
                    details: ev.details.clone(),
                },
            )?,
        ];
        if let Some(a) = &app {
            let text = crate::channels::notify::fill(
                engine.graph.prompt("notice_status"),
                &[
                    ("number", ev.number.clone()),
                    ("status", ev.status.clone()),
                    ("details", ev.details.clone()),
                ],
            );
            ops.extend(notices::enqueue(
                store,
                now,
                &a.user,
                Category::Status,
                &text,
                &format!("status event {}", ev.event_id),
            )?);
        }
        Ok(match store.write_records(ops)? {
            Ok(()) => Json(json!({"accepted": true, "notified": app.is_some()})).into_response(),
            Err(Conflict::Changed) => {
                Json(json!({"accepted": true, "duplicate": true})).into_response()
            }
            Err(e) => internal(e),
        })
    })
    .await;
    match r {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => internal(format!("status event: {e:#}")),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// One client only (`channel:user`).
    user: Option<String>,
}

/// What was sent to whom and why: the notices waiting (pending, or deferred
/// when due but held by quiet hours or the daily limit), then those sent or
/// cancelled, newest first (the admin token, or an operator signed in).
#[utoipa::path(get, path = "/api/v1/admin/notifications",
    params(("user" = Option<String>, Query, description = "one client: channel:user")),
    security(("admin_token" = [])),
    responses((status = 200, description = "`notifications`: id, user, category, text, reason, created, due, state (pending, deferred, sent, cancelled), sent, cancelled, note"),
        (status = 401, body = crate::errors::ErrorBody), (status = 403, body = crate::errors::ErrorBody)))]
pub async fn list(
    AxState(st): AxState<Arc<Notify>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let admin = {
        let t = &st.p.cfg.admin_token;
        !t.is_empty() && crate::secrets::bearer_is(&headers, t)
    };
    if !admin {
        match st.desk.signed_in_as(&headers, Role::Operator) {
            Ok(_) => {}
            Err(r) if st.desk.signed_in(&headers).is_some() => return r,
            Err(_) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Нужен токен администратора или вход оператора.",
                )
            }
        }
    }
    let Some(engine) = st.p.engine() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "Сервис ещё запускается.",
        );
    };
    let p = st.p.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
        let store = p.store.as_ref();
        let now = p.clock.now();
        let tz = &engine.hours.tz;
        let mine = |u: &str| q.user.as_deref().is_none_or(|x| x == u);
        let mut rows = Vec::new();
        for (_, n) in store.records_of::<Notice>(notices::KIND, "")? {
            if !mine(&n.user) || rows.len() >= MAX_LISTED {
                continue;
            }
            let settings = Settings::load(store, &n.user)?;
            let state = if n.due > now.as_second() {
                State::Pending
            } else {
                match notify::decide(store, &p.cfg.notify, &settings, &n, now, tz)? {
                    notify::Decision::Wait(_) => State::Deferred,
                    _ => State::Pending,
                }
            };
            rows.push(row(&n, state, None, ""));
        }
        let prefix = q
            .user
            .as_deref()
            .map(|u| format!("{u}|"))
            .unwrap_or_default();
        let mut done: Vec<Logged> = store
            .records_of::<Logged>(notify::LOG_KIND, &prefix)?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        done.sort_by_key(|l| std::cmp::Reverse((l.at, l.notice.id)));
        for l in done.into_iter().take(MAX_LISTED.saturating_sub(rows.len())) {
            rows.push(row(&l.notice, l.state, Some(l.at), &l.note));
        }
        Ok(json!({"notifications": rows}))
    })
    .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => internal(format!("notifications: {e:#}")),
        Err(e) => internal(e),
    }
}

fn row(n: &Notice, state: State, at: Option<i64>, note: &str) -> serde_json::Value {
    json!({
        "id": n.id,
        "user": n.user,
        "category": notify::id(n.category),
        "text": n.text,
        "reason": n.reason,
        "created": n.created,
        "due": n.due,
        "state": state,
        "sent": if state == State::Sent { at } else { None },
        "cancelled": if state == State::Cancelled { at } else { None },
        "note": note,
    })
}
