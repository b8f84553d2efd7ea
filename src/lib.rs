//! Otklik: an engine for chat bots and voice robots that serve citizens,
//! following the client-centricity standard «Государство для людей».
//!
//! Modules, top to bottom (each imports only those below it; see
//! ARCHITECTURE.md): `app` (setup and the server), `http` (health, metrics,
//! classifier, admin API), `operator` (handoffs to people and the console),
//! `channels` (web, Telegram, REST, and the turn service they share),
//! `dialog` (the conversation engine and its graph), `nlu` (encoder,
//! knowledge base, classifier, evaluation), `config` (settings), `services`
//! (hours, appointment slots, application status), `store` (storage behind
//! the `Storage` trait), `metrics`, `errors` (JSON errors), `analytics`
//! (anonymised turn logs), `yaml` (bounded YAML), `lint` (the answer linter:
//! the knowledge base's and the graph's texts against the plain-language
//! rules), and `classification_json`, the JSON shape of a classification
//! shared by the CLI and the API.

pub mod analytics;
pub mod app;
pub mod channels;
pub mod config;
pub mod dialog;
pub mod errors;
pub mod http;
pub mod lint;
pub mod metrics;
pub mod nlu;
pub mod operator;
pub mod secrets;
pub mod services;
pub mod speech;
pub mod store;
pub mod trainer;
pub mod yaml;

use nlu::classifier::Classification;

/// The JSON shape of a classification, shared by the CLI and the HTTP API.
pub fn classification_json(c: &Classification) -> serde_json::Value {
    serde_json::json!({
        "decision": c.decision.as_str(),
        "intent": c.top.first().map(|s| s.intent.as_str()),
        "top": c.top,
        "options": c.options,
        "out_of_scope_score": c.out_of_scope_score,
        "nearest_similarity": c.nearest_similarity,
    })
}
