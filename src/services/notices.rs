//! Notifications to clients: their categories and the outbox of notices
//! waiting to be sent, one record each, keyed by due time and id so they
//! are read in order.

use crate::store::{RecordOp, Storage};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The record kind of notices waiting to be sent.
pub const KIND: &str = "notice";

/// What a notification is about; the client consents to each separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// An application's status changed (transactional).
    Status,
    /// An appointment tomorrow, a callback scheduled (transactional).
    Reminder,
    /// A payment confirmed (transactional).
    Payment,
    /// A new measure that fits the client's profile (content).
    Measures,
    /// A new survey (content).
    Surveys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    /// The client: `channel:user`.
    pub user: String,
    pub category: Category,
    /// What the client reads (Russian).
    pub text: String,
    /// Why it was sent, for operators and administrators.
    pub reason: String,
    /// Unix seconds: not sent before.
    pub due: i64,
    pub created: i64,
}

/// The notice's record key: due time, then id (read back in order).
pub fn key(due: i64, id: u64) -> String {
    format!("{due:012}:{id:020}")
}

/// Queues a notice for `user` (committed with the rest of what causes it).
pub fn enqueue(
    store: &dyn Storage,
    now: i64,
    user: &str,
    category: Category,
    text: &str,
    reason: &str,
) -> Result<Vec<RecordOp>> {
    let n = Notice {
        id: store.next_id()?,
        user: user.to_string(),
        category,
        text: text.to_string(),
        reason: reason.to_string(),
        due: now,
        created: now,
    };
    Ok(vec![RecordOp::put(KIND, &key(n.due, n.id), &n)?])
}
