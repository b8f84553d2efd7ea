//! Application status: where the dialog looks up «what happened to my
//! application». A provider is either the demo one (seeded records in the
//! store) or an HTTP backend (`GET {url}/{number}` → `{"status": …, "details": …}`).

pub use crate::config::StatusConfig;
pub use crate::store::AppStatus;
use crate::store::Storage;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the status service did not answer: {0}")]
    Unavailable(String),
}

pub trait StatusProvider: Send + Sync {
    /// `Ok(None)`: no application with this number.
    fn lookup(&self, number: &str) -> Result<Option<AppStatus>, StatusError>;
}

/// Records the demo provider is seeded with (shown in the README).
pub const DEMO_RECORDS: &[(&str, &str, &str)] = &[
    (
        "1234567",
        "на рассмотрении",
        "Решение примут до 10 декабря. Мы сообщим о нём на Госуслугах.",
    ),
    (
        "2345678",
        "одобрено",
        "Первая выплата придёт в течение 5 рабочих дней.",
    ),
    (
        "3456789",
        "нужны документы",
        "Принесите справку о доходах в МФЦ или загрузите её на Госуслугах.",
    ),
];

pub struct DemoStatus {
    store: Arc<dyn Storage>,
}

impl DemoStatus {
    /// Seeds the demo records (once) and serves them from the store.
    pub fn new(store: Arc<dyn Storage>) -> anyhow::Result<Self> {
        for (n, s, d) in DEMO_RECORDS {
            store.seed_status(
                n,
                &AppStatus {
                    status: s.to_string(),
                    details: d.to_string(),
                },
            )?;
        }
        Ok(Self { store })
    }
}

impl StatusProvider for DemoStatus {
    /// A status set since (an application filed here, a status webhook, a
    /// payment) comes before the seeded one.
    fn lookup(&self, number: &str) -> Result<Option<AppStatus>, StatusError> {
        let unavailable = |e: anyhow::Error| StatusError::Unavailable(e.to_string());
        if let Some(s) = self
            .store
            .record_of(STATUS_KIND, number)
            .map_err(unavailable)?
        {
            return Ok(Some(s));
        }
        self.store.status(number).map_err(unavailable)
    }
}

/// The record kind of statuses set after seeding (`set_status`).
pub const STATUS_KIND: &str = "status";

/// Sets an application's status for the demo provider (committed with the
/// rest of what changes it).
pub fn set_status(number: &str, s: &AppStatus) -> anyhow::Result<crate::store::RecordOp> {
    crate::store::RecordOp::put(STATUS_KIND, number, s)
}

pub struct HttpStatus {
    base: String,
    agent: ureq::Agent,
}

impl HttpStatus {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("status.url must start with http:// or https://, got {url:?}");
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            agent,
        })
    }
}

impl StatusProvider for HttpStatus {
    fn lookup(&self, number: &str) -> Result<Option<AppStatus>, StatusError> {
        // Only digits reach here (the form validates), so no escaping is needed.
        let url = format!("{}/{}", self.base, number);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| StatusError::Unavailable(e.to_string()))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .read_json::<AppStatus>()
                .map(Some)
                .map_err(|e| StatusError::Unavailable(format!("bad JSON from {url}: {e}"))),
            404 => Ok(None),
            s => Err(StatusError::Unavailable(format!("{url} answered HTTP {s}"))),
        }
    }
}

pub fn provider(
    cfg: &StatusConfig,
    store: &Arc<dyn Storage>,
) -> anyhow::Result<Box<dyn StatusProvider>> {
    match cfg.provider.as_str() {
        "demo" => Ok(Box::new(DemoStatus::new(store.clone())?)),
        "http" => Ok(Box::new(HttpStatus::new(
            &cfg.url,
            Duration::from_millis(cfg.timeout_ms),
        )?)),
        other => anyhow::bail!("status.provider must be \"demo\" or \"http\", got {other:?}"),
    }
}
