//! The client's universal profile: the facts a client gave with consent (age,
//! children and their ages, disability group, employment, income level,
//! region, and details an application can reuse), one record per client
//! (`channel:user`). The service search, applications and notifications read
//! it; the client views and deletes it (`/profile`, the widget).

use crate::store::{RecordOp, Storage};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record kind of profiles.
pub const KIND: &str = "profile";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Fact name → value, as the service search and the forms name them.
    pub facts: BTreeMap<String, String>,
    /// Unix seconds of the last change.
    pub updated: i64,
}

impl Profile {
    /// The client's profile (empty when nothing is kept).
    pub fn load(store: &(dyn Storage + 'static), user: &str) -> Result<Self> {
        Ok(store.record_of(KIND, user)?.unwrap_or_default())
    }

    /// Writes the profile (or removes it when it holds no facts).
    pub fn save(&self, user: &str) -> Result<RecordOp> {
        if self.facts.is_empty() {
            return Ok(Self::remove(user));
        }
        RecordOp::put(KIND, user, self)
    }

    /// Deletes the client's profile.
    pub fn remove(user: &str) -> RecordOp {
        RecordOp::remove(KIND, user)
    }
}
