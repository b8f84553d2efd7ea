//! Conversation locks: one turn of a conversation at a time. `LocalLocks`
//! serialises turns inside one process; a shared backend (PostgreSQL
//! advisory locks) implements the same trait for several instances.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

/// Held while a conversation's turn runs; dropping it lets the next one in.
pub trait LockGuard {}

pub trait ConversationLock: Send + Sync {
    /// Waits until no other turn of `key` runs, then holds it.
    fn lock<'a>(&'a self, key: &str) -> Box<dyn LockGuard + 'a>;
}

/// In-process locks: the keys held now, and a condition variable to wait on.
/// Nothing is kept for a conversation once its turn ends.
#[derive(Default)]
pub struct LocalLocks {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

struct LocalGuard<'a> {
    locks: &'a LocalLocks,
    key: String,
}

impl LockGuard for LocalGuard<'_> {}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.key);
        self.locks.freed.notify_all();
    }
}

impl ConversationLock for LocalLocks {
    fn lock<'a>(&'a self, key: &str) -> Box<dyn LockGuard + 'a> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(key) {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(key.to_string());
        Box::new(LocalGuard {
            locks: self,
            key: key.to_string(),
        })
    }
}

impl LocalLocks {
    /// Conversations whose turn runs now.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }
}
