//! Applications a client files through the bot: the record kept for each
//! (by its number, which status tracking then follows), where they are
//! filed (the `ApplicationProvider`: the demo stores them, the HTTP one
//! posts them to the ministry's system) and the drafts a client continues
//! later on any channel.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record kind of applications (key: the application's number).
pub const KIND: &str = "application";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub number: String,
    /// The client: `channel:user`.
    pub user: String,
    /// Which application: `single_allowance`…
    pub service: String,
    /// The values filed, by field name.
    pub fields: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    /// When its fee was paid (a payment confirmed).
    #[serde(default)]
    pub paid_at: Option<i64>,
}

pub use crate::config::ApplicationsConfig;
use crate::store::{AppStatus, RecordOp, Storage};
use std::sync::Arc;
use std::time::Duration;

/// The record kind of drafts (key: the draft's code).
pub const DRAFT_KIND: &str = "draft";
/// The record kind that finds a client's draft (key: `channel:user`, value: the code).
pub const DRAFT_OF_KIND: &str = "draft_of";

/// The status a demo application gets when it is filed.
pub const ACCEPTED: &str = "принято";
pub const ACCEPTED_DETAILS: &str =
    "Заявление зарегистрировано. Решение примут в течение 10 рабочих дней.";

/// An application being filled, saved to go on later on any channel by
/// its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// 8 digits, said to the client.
    pub code: String,
    /// Who saved it: `channel:user`.
    pub user: String,
    /// The form's node in the dialog graph.
    pub node: String,
    /// Which application: `single_allowance`…
    pub service: String,
    /// The values filled so far, by field name, and their labels.
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
}

/// A new random draft code: 8 digits, the first not 0 (so it reads as
/// typed). Its record is written with a swap, so a code in use is never
/// overwritten.
pub fn draft_code() -> String {
    use rand::Rng;
    rand::rng()
        .random_range(10_000_000..100_000_000u32)
        .to_string()
}

/// Saves `d` as the client's one draft (a draft saved before is replaced).
pub fn save_draft(store: &dyn Storage, d: &Draft) -> anyhow::Result<Vec<RecordOp>> {
    let mut ops = forget_drafts(store, &d.user)?;
    ops.push(RecordOp::Swap {
        kind: DRAFT_KIND.into(),
        key: d.code.clone(),
        expected: None,
        value: Some(serde_json::to_vec(d)?),
    });
    ops.push(RecordOp::put(DRAFT_OF_KIND, &d.user, &d.code)?);
    Ok(ops)
}

/// Removes the client's draft (a consent withdrawal, a new draft).
pub fn forget_drafts(store: &dyn Storage, user: &str) -> anyhow::Result<Vec<RecordOp>> {
    let code: Option<String> = store
        .record(DRAFT_OF_KIND, user)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut ops = Vec::new();
    if let Some(code) = code {
        ops.push(RecordOp::remove(DRAFT_KIND, &code));
        ops.push(RecordOp::remove(DRAFT_OF_KIND, user));
    }
    Ok(ops)
}

/// Takes a draft by its code, exactly once: the draft and its owner's
/// pointer are removed only if the draft is still as read.
pub fn take_draft(
    store: &dyn Storage,
    code: &str,
) -> anyhow::Result<Option<(Draft, Vec<RecordOp>)>> {
    let Some(raw) = store.record(DRAFT_KIND, code)? else {
        return Ok(None);
    };
    let d: Draft = serde_json::from_slice(&raw)?;
    let ops = vec![
        RecordOp::Swap {
            kind: DRAFT_KIND.into(),
            key: code.into(),
            expected: Some(raw),
            value: None,
        },
        RecordOp::remove(DRAFT_OF_KIND, &d.user),
    ];
    Ok(Some((d, ops)))
}

/// What filing an application gave: its number and what to commit with
/// the client's turn.
#[derive(Debug)]
pub struct Filed {
    pub number: String,
    pub ops: Vec<RecordOp>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the applications service did not take the application: {0}")]
    Unavailable(String),
}

/// Where filled applications go. `app.number` is empty: the provider
/// gives it. `request_id` is the same when a turn runs again, so a
/// backend can recognise a repeated request.
pub trait ApplicationProvider: Send + Sync {
    fn file(&self, app: &Application, request_id: &str) -> Result<Filed, FileError>;
}

/// The demo: the application is stored in the database under a new
/// number and its status set to «принято», in the client's turn.
pub struct DemoApplications {
    store: Arc<dyn Storage>,
}

impl DemoApplications {
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Self { store }
    }
}

/// The records that keep a filed application (and its first status). A
/// new number (`fresh`) is written only where none is: a number given
/// twice makes the turn run again with another.
pub fn filed_records(
    app: &Application,
    status: Option<&AppStatus>,
    fresh: bool,
) -> anyhow::Result<Vec<RecordOp>> {
    let mut ops = vec![if fresh {
        RecordOp::Swap {
            kind: KIND.into(),
            key: app.number.clone(),
            expected: None,
            value: Some(serde_json::to_vec(app)?),
        }
    } else {
        RecordOp::put(KIND, &app.number, app)?
    }];
    if let Some(s) = status {
        ops.push(crate::services::status::set_status(&app.number, s)?);
    }
    Ok(ops)
}

impl ApplicationProvider for DemoApplications {
    fn file(&self, app: &Application, _request_id: &str) -> Result<Filed, FileError> {
        let failed = |e: anyhow::Error| FileError::Unavailable(e.to_string());
        // 8 digits from 70000000 on: clear of the seeded demo statuses
        let id = self.store.next_id().map_err(failed)?;
        let number = (70_000_000 + id % 30_000_000).to_string();
        let mut app = app.clone();
        app.number = number.clone();
        let status = AppStatus {
            status: ACCEPTED.into(),
            details: ACCEPTED_DETAILS.into(),
        };
        Ok(Filed {
            number,
            ops: filed_records(&app, Some(&status), true).map_err(failed)?,
        })
    }
}

/// The ministry's system: `POST {url}` with the application as JSON
/// (`request_id`, `service`, `fields`, `created`), answered with
/// `{"number": …}` (4 to 20 digits, which status tracking then follows).
/// The application is kept in the database too, under that number.
pub struct HttpApplications {
    url: String,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct HttpAnswer {
    number: serde_json::Value,
}

impl HttpApplications {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("applications.url must start with http:// or https://, got {url:?}");
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            url: url.to_string(),
            agent,
        })
    }
}

impl ApplicationProvider for HttpApplications {
    fn file(&self, app: &Application, request_id: &str) -> Result<Filed, FileError> {
        let body = serde_json::json!({
            "request_id": request_id,
            "service": app.service,
            "fields": app.fields,
            "created": app.created,
        });
        let mut resp = self
            .agent
            .post(&self.url)
            .send_json(&body)
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            return Err(FileError::Unavailable(format!(
                "{} answered HTTP {code}",
                self.url
            )));
        }
        // Only a bounded answer is read.
        let answer: HttpAnswer = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_json()
            .map_err(|e| FileError::Unavailable(format!("bad JSON from {}: {e}", self.url)))?;
        let number = match answer.number {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(FileError::Unavailable(format!(
                    "{} gave no number: {other}",
                    self.url
                )))
            }
        };
        if !(4..=20).contains(&number.len()) || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(FileError::Unavailable(format!(
                "{} gave a number that is not 4 to 20 digits: {number:?}",
                self.url
            )));
        }
        let mut app = app.clone();
        app.number = number.clone();
        let ops =
            filed_records(&app, None, false).map_err(|e| FileError::Unavailable(e.to_string()))?;
        Ok(Filed { number, ops })
    }
}

pub fn provider(
    cfg: &ApplicationsConfig,
    store: &Arc<dyn Storage>,
) -> anyhow::Result<Box<dyn ApplicationProvider>> {
    match cfg.provider.as_str() {
        "demo" => Ok(Box::new(DemoApplications::new(store.clone()))),
        "http" => Ok(Box::new(HttpApplications::new(
            &cfg.url,
            Duration::from_millis(cfg.timeout_ms),
        )?)),
        other => anyhow::bail!("applications.provider must be \"demo\" or \"http\", got {other:?}"),
    }
}

/// Removes the drafts older than `draft_days` (the retention sweep); each
/// one only if it is still as read, so a draft taken meanwhile is left to
/// its taker. Returns how many were removed.
pub fn sweep_drafts(
    store: &(dyn Storage + 'static),
    now: i64,
    draft_days: u32,
) -> anyhow::Result<usize> {
    let max_age = i64::from(draft_days) * 86_400;
    let mut n = 0;
    for (code, raw) in store.records(DRAFT_KIND, "")? {
        let Ok(d) = serde_json::from_slice::<Draft>(&raw) else {
            continue;
        };
        if now - d.created <= max_age {
            continue;
        }
        let mut ops = vec![RecordOp::Swap {
            kind: DRAFT_KIND.into(),
            key: code.clone(),
            expected: Some(raw),
            value: None,
        }];
        // the owner's pointer, unless it names a newer draft
        let pointer = store.record(DRAFT_OF_KIND, &d.user)?;
        if pointer.as_deref() == Some(serde_json::to_vec(&code)?.as_slice()) {
            ops.push(RecordOp::Swap {
                kind: DRAFT_OF_KIND.into(),
                key: d.user.clone(),
                expected: pointer,
                value: None,
            });
        }
        if store.write_records(ops)?.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}
