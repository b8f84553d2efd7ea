//! The trainers' review page: proposals made from the live analytics log
//! (`trainer::suggest`), the trainer's verdict on each (accept, edit,
//! reject), and applying the accepted ones: written into the knowledge
//! base's files, scored on the held-out set before and after, and loaded
//! without a restart. Signed in like the operators' console, with the
//! `trainer` role.

use super::console::{Desk, Role};
use crate::analytics::export::utterances;
use crate::errors::{error, internal};
use crate::trainer::suggest::{self, Kind, Proposal, Proposals, Status};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const PAGE: &str = include_str!("../../web/trainer.html");
const SCRIPT: &str = include_str!("../../web/trainer.js");
/// Where the proposals under review are kept (the store's meta tree).
const KEY: &str = "trainer:proposals";
/// Bounds of what a trainer writes into a proposal.
const MAX_TEXTS: usize = 100;
const MAX_TEXT_CHARS: usize = 500;
const MAX_ANSWER_CHARS: usize = 4000;

pub fn routes(desk: Arc<Desk>) -> Router {
    Router::new()
        .route("/trainer", get(|| async { Html(PAGE) }))
        .route(
            "/trainer.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/api/v1/trainer/proposals", get(list))
        .route("/api/v1/trainer/intents", get(intents))
        .route("/api/v1/trainer/suggest", post(make))
        .route("/api/v1/trainer/proposals/{id}", post(edit))
        .route("/api/v1/trainer/apply", post(apply))
        .with_state(desk)
}

/// The refusal (401, or 403 without the `trainer` role) unless a trainer
/// is signed in.
fn trainer(st: &Desk, headers: &HeaderMap) -> Option<Response> {
    st.signed_in_as(headers, Role::Trainer).err()
}

fn load(st: &Desk) -> anyhow::Result<Proposals> {
    Ok(match st.p.store.meta_get(KEY)? {
        Some(b) => serde_json::from_slice(&b)?,
        None => Proposals::default(),
    })
}

fn save(st: &Desk, p: &Proposals) -> anyhow::Result<()> {
    st.p.store.meta_put(KEY, &serde_json::to_vec(p)?)
}

async fn list(State(st): State<Arc<Desk>>, headers: HeaderMap) -> Response {
    if let Some(r) = trainer(&st, &headers) {
        return r;
    }
    match load(&st) {
        Ok(p) => Json(p).into_response(),
        Err(e) => internal(e),
    }
}

/// The knowledge base's intents (id and title), to move an example to another.
async fn intents(State(st): State<Arc<Desk>>, headers: HeaderMap) -> Response {
    if let Some(r) = trainer(&st, &headers) {
        return r;
    }
    match st.engine() {
        Ok(e) => Json(super::console::intent_list(&e)).into_response(),
        Err(r) => r,
    }
}

fn busy() -> Response {
    error(
        StatusCode::CONFLICT,
        "busy",
        "Уже идёт подготовка предложений или применение изменений. Подождите минуту и повторите.",
    )
}

/// Makes proposals from the log (one run at a time, on the blocking pool).
/// Proposals already accepted or edited stay; the rest are replaced.
async fn make(State(st): State<Arc<Desk>>, headers: HeaderMap) -> Response {
    if let Some(r) = trainer(&st, &headers) {
        return r;
    }
    let Ok(_one) = st.p.reload_lock.try_lock() else {
        return busy();
    };
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let st2 = st.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Proposals> {
        let log = st2.p.store.log_entries()?;
        let us = utterances(&log);
        let mut made = suggest::suggest(
            &us,
            &engine.nlu.kb,
            &engine.nlu.classifier,
            &suggest::Options::default(),
        )?;
        let kept: Vec<Proposal> = load(&st2)?
            .items
            .into_iter()
            .filter(|p| p.status != Status::Pending)
            .collect();
        made.items.retain(|p| !kept.iter().any(|k| k.id == p.id));
        made.items.splice(0..0, kept);
        save(&st2, &made)?;
        Ok(made)
    })
    .await;
    match r {
        Ok(Ok(p)) => Json(p).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    status: Status,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
}

fn invalid(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// The trainer's verdict on one proposal, with any edits.
async fn edit(
    State(st): State<Arc<Desk>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Edit>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = trainer(&st, &headers) {
        return r;
    }
    let Ok(Json(e)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Ожидается JSON вида {\"status\": \"accept\" | \"reject\" | \"pending\", …}.",
        );
    };
    if let Some(t) = &e.texts {
        if t.len() > MAX_TEXTS || t.iter().any(|x| x.chars().count() > MAX_TEXT_CHARS) {
            return invalid(&format!(
                "Не больше {MAX_TEXTS} примеров, каждый до {MAX_TEXT_CHARS} знаков."
            ));
        }
    }
    if e.answer
        .as_ref()
        .is_some_and(|a| a.chars().count() > MAX_ANSWER_CHARS)
        || e.title.as_ref().is_some_and(|t| t.chars().count() > 200)
    {
        return invalid("Название темы — до 200 знаков, ответ — до 4000 знаков.");
    }
    if let Some(i) = &e.intent {
        let ok = !i.is_empty()
            && i.len() <= 64
            && i.starts_with(|c: char| c.is_ascii_lowercase())
            && i.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return invalid(
                "Идентификатор темы: латинские строчные буквы, цифры и «_», например pet_allowance.",
            );
        }
    }
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let _one = st.p.reload_lock.lock().await;
    let mut all = match load(&st) {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let Some(p) = all.items.iter_mut().find(|p| p.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Такого предложения нет: обновите список.",
        );
    };
    if let Some(i) = e.intent {
        // An example goes to an existing intent; a new intent needs a new id.
        let exists = engine.nlu.kb.intent(&i).is_some();
        if (p.kind == Kind::Example) != exists {
            return invalid(if exists {
                "Такая тема уже есть: для новой темы придумайте другой идентификатор."
            } else {
                "Такой темы нет: выберите тему из списка."
            });
        }
        p.intent = i;
    }
    if let Some(t) = e.title {
        p.title = t.trim().to_string();
    }
    if let Some(a) = e.answer {
        p.answer = a.trim().to_string();
    }
    if let Some(t) = e.texts {
        p.texts = t
            .into_iter()
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
    }
    p.status = e.status;
    let out = p.clone();
    match save(&st, &all) {
        Ok(()) => Json(out).into_response(),
        Err(e) => internal(e),
    }
}

/// Applies the accepted proposals: held-out score before, the knowledge
/// base's files edited (checked first), the score after, then the engine
/// reloaded. Applied and rejected proposals leave the list.
async fn apply(State(st): State<Arc<Desk>>, headers: HeaderMap) -> Response {
    if let Some(r) = trainer(&st, &headers) {
        return r;
    }
    let Ok(_one) = st.p.reload_lock.try_lock() else {
        return busy();
    };
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let st2 = st.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Result<_, String>> {
        let cfg = &st2.p.cfg;
        let mut all = load(&st2)?;
        if !all.items.iter().any(|p| p.status == Status::Accept) {
            return Ok(Err("Нет принятых предложений: примите хотя бы одно.".into()));
        }
        let encoder = engine.nlu.classifier.encoder().clone();
        let before = crate::trainer::heldout::score(cfg, encoder.clone())?;
        let kb = crate::nlu::load_kb(cfg)?;
        let applied = match crate::trainer::accept::apply(
            &cfg.kb.intents_dir,
            &kb,
            &all.items,
            cfg.kb.min_examples,
            &cfg.kb.segments,
        ) {
            Ok(a) => a,
            Err(e) => return Ok(Err(format!("Изменения не записаны: {e:#}"))),
        };
        let tuned = crate::trainer::retrain::retrain(cfg, &encoder);
        let after = crate::trainer::heldout::score(cfg, encoder)?;
        let fresh = st2.p.load()?;
        let intents = fresh.nlu.kb.intents.len();
        st2.p.set_engine(fresh);
        all.items.retain(|p| p.status == Status::Pending);
        save(&st2, &all)?;
        tracing::info!(
            "trainer: {} examples and {} intents applied; held-out top-1 {:?} → {:?}",
            applied.examples,
            applied.intents,
            before.as_ref().map(|s| s.top1),
            after.as_ref().map(|s| s.top1)
        );
        Ok(Ok(json!({
            "applied": applied,
            "before": before,
            "after": after,
            "tuned": tuned,
            "intents": intents,
        })))
    })
    .await;
    match r {
        Ok(Ok(Ok(v))) => Json(v).into_response(),
        Ok(Ok(Err(message))) => invalid(&message),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
