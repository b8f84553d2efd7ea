//! The payments' HTTP surface: the gateway's signed webhook
//! (`POST /api/v1/events/payment`, HMAC-SHA-256 of the raw body in
//! `X-Signature`), the administrator's confirmation for the demo provider
//! (`POST /api/v1/admin/payments/{id}/confirm`, the admin token), and the
//! demo payment page a payment link opens (`GET /pay/{id}`, the unguessable
//! id is its key). Each is limited per caller address; a confirmation is
//! exactly once (`services::payments::confirm`). No card data comes here.

use crate::channels::pipeline::Pipeline;
use crate::errors::{error, internal, rate_limited};
use crate::services::payments::{self, Confirmation, Payment};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The header carrying the webhook's signature: the hex HMAC-SHA-256 of
/// the raw body keyed with `[payments] webhook_secret` (`sha256=` before it
/// is accepted too).
pub const SIGNATURE_HEADER: &str = "x-signature";

pub struct PayRoutes {
    p: Arc<Pipeline>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

pub fn routes(p: Arc<Pipeline>) -> Router {
    let per_minute = NonZeroU32::new(p.cfg.payments.per_address_per_minute.max(1)).unwrap();
    let max = p.cfg.payments.webhook_max_bytes;
    let st = Arc::new(PayRoutes {
        p,
        limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
    });
    Router::new()
        .route(
            "/api/v1/events/payment",
            post(webhook).layer(DefaultBodyLimit::max(max)),
        )
        .route("/api/v1/admin/payments/{id}/confirm", post(admin_confirm))
        .route("/pay/{id}", get(page))
        .with_state(st)
}

/// The signature of `body` under `secret`, checked in constant time.
pub fn signature_ok(secret: &str, body: &[u8], given: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let given = given.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    let Ok(sig) = hex::decode(given) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The hex signature of `body` (for gateways' and tests' use).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Deserialize)]
struct Event {
    /// Our payment id.
    id: String,
    /// "paid" confirms; any other status is acknowledged and changes nothing.
    status: String,
}

/// Confirms `id` off the async runtime; the answer for the caller.
async fn confirm(st: &PayRoutes, id: String, by: &'static str) -> Response {
    if !payments::valid_id(&id) {
        return not_found();
    }
    let (store, now) = (st.p.store.clone(), st.p.clock.now().as_second());
    match tokio::task::spawn_blocking(move || payments::confirm(store.as_ref(), &id, now, by)).await
    {
        Ok(Ok(Confirmation::Confirmed(p))) => {
            tracing::info!("payment {} confirmed by {by}", p.id);
            Json(json!({"id": p.id, "status": "confirmed", "paid_at": p.paid_at})).into_response()
        }
        Ok(Ok(Confirmation::AlreadyPaid(p))) => {
            Json(json!({"id": p.id, "status": "already_paid", "paid_at": p.paid_at}))
                .into_response()
        }
        Ok(Ok(Confirmation::NotFound)) => not_found(),
        Ok(Err(e)) => internal(format!("payment confirmation: {e:#}")),
        Err(e) => internal(e),
    }
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Платёж не найден. Проверьте его номер.",
    )
}

async fn webhook(
    State(st): State<Arc<PayRoutes>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if st.limiter.check_key(&peer.ip()).is_err() {
        return rate_limited();
    }
    let given = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature_ok(&st.p.cfg.payments.webhook_secret, &body, given) {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "Подпись запроса неверна или её нет (заголовок X-Signature).",
        );
    }
    let ev: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("Неверный запрос: ожидается JSON вида {{\"id\": \"…\", \"status\": \"paid\"}} ({e})"),
            )
        }
    };
    if ev.status != "paid" {
        return Json(json!({"id": ev.id, "status": "ignored"})).into_response();
    }
    confirm(&st, ev.id, "gateway").await
}

async fn admin_confirm(
    State(st): State<Arc<PayRoutes>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if st.limiter.check_key(&peer.ip()).is_err() {
        return rate_limited();
    }
    let token = &st.p.cfg.admin_token;
    if token.is_empty() || !crate::secrets::bearer_is(&headers, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Нужен токен администратора (заголовок Authorization: Bearer …).",
        );
    }
    if st.p.cfg.payments.provider != "demo" {
        return error(
            StatusCode::CONFLICT,
            "gateway_confirms",
            "Платежи подтверждает платёжный шлюз, а не администратор.",
        );
    }
    confirm(&st, id, "admin").await
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The demo payment page: what is paid, to whom, the QR code, and whether
/// the payment has come. The unguessable id is its only key; it shows no
/// personal data.
async fn page(
    State(st): State<Arc<PayRoutes>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    if st.limiter.check_key(&peer.ip()).is_err() {
        return rate_limited();
    }
    if !payments::valid_id(&id) {
        return not_found();
    }
    let p: Payment = match st.p.store.record_of(payments::KIND, &id) {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(),
        Err(e) => return internal(e),
    };
    let fees = &st.p.cfg.fees;
    let Some(fee) = fees.fee(&p.service) else {
        return not_found();
    };
    let r = fees.recipient_of(fee);
    let qr = payments::qr_payload(r, p.kopecks, &p.purpose);
    let img = match payments::qr_png(&qr) {
        Ok(png) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(png)
        }
        Err(e) => return internal(e),
    };
    let state = if p.paid_at.is_some() {
        "Оплата получена. Спасибо!"
    } else {
        "Оплата ещё не поступила. Отсканируйте QR-код в приложении банка."
    };
    let html = format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Оплата</title></head>\
<body style=\"font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em\">\
<h1>{name}</h1><p>Сумма: {sum}</p><p>{state}</p>\
<img src=\"data:image/png;base64,{img}\" alt=\"QR-код для оплаты\" width=\"240\" height=\"240\">\
<p>Получатель: {rname}<br>Счёт получателя: {acc}<br>Банк: {bank}<br>БИК (код банка): {bic}<br>Назначение платежа: {purpose}</p>\
<p>Это демонстрационная страница. Данные карты Вы вводите только на странице банка.</p></body></html>",
        name = escape(&p.name),
        sum = escape(&payments::rubles(p.kopecks)),
        rname = escape(&r.name),
        acc = escape(&r.personal_acc),
        bank = escape(&r.bank_name),
        bic = escape(&r.bic),
        purpose = escape(&p.purpose),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}
