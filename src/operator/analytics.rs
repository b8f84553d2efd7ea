//! The analysts' dashboard: the page `/analytics` (the console's sign-in
//! and cookie; the account needs the role `analyst`) and its API
//! `GET /api/v1/analytics/indicators?since=&until=&by=&period=`, the
//! indicators of `analytics::indicators` as JSON with the intents' titles.
//!
//! Every answer reads the whole log, so it is bounded three ways: a period
//! of at most `[analytics] max_days` (30 days when none is given), answers
//! kept for `cache_seconds`, and one computation at a time (a request
//! waits for the one before it and usually finds its answer kept).

use super::console::{Desk, Role};
use crate::analytics::indicators::{self, Dimension, Period, Query};
use crate::errors::{error, internal};
use axum::extract::{Query as Params, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: &str = include_str!("../../web/analytics.html");
const SCRIPT: &str = include_str!("../../web/analytics.js");

/// The period shown when none is asked for, days.
const DEFAULT_DAYS: i64 = 30;

pub struct Dashboard {
    desk: Arc<Desk>,
    /// Answers by query, with when they were computed; the lock is held
    /// while computing, so that one computation runs at a time.
    kept: tokio::sync::Mutex<HashMap<String, (Instant, Arc<Value>)>>,
}

pub fn routes(desk: Arc<Desk>) -> Router {
    let st = Arc::new(Dashboard {
        desk,
        kept: Default::default(),
    });
    Router::new()
        .route("/analytics", get(|| async { Html(PAGE) }))
        .route(
            "/analytics.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/api/v1/analytics/indicators", get(indicators_api))
        .with_state(st)
}

#[derive(Deserialize, Default)]
struct Ask {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    period: Option<String>,
}

fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

async fn indicators_api(
    State(st): State<Arc<Dashboard>>,
    headers: HeaderMap,
    ask: Result<Params<Ask>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = st.desk.signed_in_as(&headers, Role::Analyst) {
        return r;
    }
    let Ok(Params(ask)) = ask else {
        return bad("Не удалось разобрать параметры запроса.");
    };
    let p = &st.desk.p;
    let tz = match crate::services::hours::parse_tz(&p.cfg.hours.timezone) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let by = match ask.by.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match Dimension::parse(b) {
            Some(d) => Some(d),
            None => {
                return bad("Разбивка возможна по каналу, сегменту, теме или жизненной ситуации.")
            }
        },
    };
    let period = match ask.period.as_deref().filter(|b| !b.is_empty()) {
        None => Period::Day,
        Some(x) => match Period::parse(x) {
            Some(x) => x,
            None => return bad("Период графика: day, week или month."),
        },
    };
    let Ok((since, until)) = indicators::bounds(ask.since.as_deref(), ask.until.as_deref(), &tz)
    else {
        return bad("Даты указываются в виде ГГГГ-ММ-ДД, и начало не позже конца.");
    };
    // The last day: the one asked for, or today; the first: at most
    // max_days before it.
    let now = p.clock.now().as_second();
    let until = until.unwrap_or_else(|| {
        indicators::day_of(now, &tz)
            .and_then(|d| {
                indicators::bounds(None, Some(&d.to_string()), &tz)
                    .ok()
                    .and_then(|b| b.1)
            })
            .unwrap_or(now)
    });
    let since = since.unwrap_or(until - DEFAULT_DAYS * 86_400);
    let max = p.cfg.analytics.max_days.max(1) as i64;
    // a day may have 23 or 25 hours
    if until - since > max * 86_400 + 7200 {
        return bad(&format!(
            "Можно выбрать не больше {max} дней. Сократите период."
        ));
    }
    let key = format!("{since}|{until}|{by:?}|{period:?}");
    let ttl = Duration::from_secs(p.cfg.analytics.cache_seconds);
    let mut kept = st.kept.lock().await;
    kept.retain(|_, (at, _)| at.elapsed() < ttl);
    if let Some((_, v)) = kept.get(&key) {
        return Json(v.as_ref().clone()).into_response();
    }
    let store = p.store.clone();
    let stars = p.cfg.analytics.stars.clone();
    let q = Query {
        since: Some(since),
        until: Some(until),
        by,
        period,
    };
    let tz2 = tz.clone();
    let computed = tokio::task::spawn_blocking(move || {
        let log = store.log_entries()?;
        Ok::<_, anyhow::Error>(indicators::report(&log, &q, &stars, &tz2))
    })
    .await;
    let report = match computed {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(anyhow::anyhow!("{e}")),
    };
    let mut v = match serde_json::to_value(&report) {
        Ok(v) => v,
        Err(e) => return internal(anyhow::Error::from(e)),
    };
    v["since"] = json!(day(since, &tz));
    v["until"] = json!(day(until - 1, &tz));
    v["titles"] = json!(titles(&st.desk, &report));
    let v = Arc::new(v);
    if !ttl.is_zero() {
        kept.insert(key, (Instant::now(), v.clone()));
    }
    Json(v.as_ref().clone()).into_response()
}

fn day(ts: i64, tz: &jiff::tz::TimeZone) -> Option<String> {
    indicators::day_of(ts, tz).map(|d| d.to_string())
}

/// The knowledge base's titles of the intents the report names (none while
/// the model is still loading).
fn titles(desk: &Desk, r: &indicators::Report) -> BTreeMap<String, String> {
    let Some(engine) = desk.p.engine() else {
        return BTreeMap::new();
    };
    let w = &r.worst;
    let named = r
        .groups
        .iter()
        .map(|g| &g.key)
        .chain(w.fallbacks.iter().map(|c| &c.intent))
        .chain(w.unsolved.iter().map(|c| &c.intent))
        .chain(w.handoffs.iter().map(|c| &c.intent));
    named
        .filter_map(|id| {
            engine
                .nlu
                .kb
                .intent(id)
                .map(|i| (id.clone(), i.title.clone()))
        })
        .collect()
}
