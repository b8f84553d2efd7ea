//! Applications a client files through the bot: the record kept for each
//! (by its number, which status tracking then follows).

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
