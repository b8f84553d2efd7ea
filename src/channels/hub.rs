//! Live delivery: the web chat sockets connected for each conversation, and
//! the operators' consoles waiting for "the queue changed". Each connection
//! has a bounded buffer; a client too slow to keep up is disconnected (it
//! reconnects and resumes from its outbox), so it never holds others up.
//! With a shared store, what happens here is announced to the other
//! instances (`Storage::announce`), and their news is brought in by
//! `relay`: a message for a socket connected here, a queue change.

use crate::store::{News, SessionKey, Storage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Messages buffered per connection before it is considered stuck.
const BUFFER: usize = 64;

/// The open connections of one conversation: (connection id, its buffer).
type Connections = Vec<(u64, mpsc::Sender<String>)>;

pub struct Hub {
    clients: Mutex<HashMap<String, Connections>>,
    next: std::sync::atomic::AtomicU64,
    queue: broadcast::Sender<()>,
    /// Where the other instances hear of this one's messages and queue.
    store: Option<Arc<dyn Storage>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            next: 0.into(),
            queue: broadcast::channel(16).0,
            store: None,
        }
    }
}

impl Hub {
    /// A hub that announces to the instances sharing `store`.
    pub fn shared(store: Arc<dyn Storage>) -> Self {
        Self {
            store: Some(store),
            ..Self::default()
        }
    }

    /// Sends a committed outbox message (with its `seq`) to the session's
    /// connections here, and tells the other instances it is there.
    pub fn outbox(&self, session: &SessionKey, m: &serde_json::Value) {
        let s = session.to_string();
        self.send(&s, &m.to_string());
        if let (Some(st), Some(seq)) = (&self.store, m["seq"].as_u64()) {
            st.announce(&News::Outbox { session: s, seq });
        }
    }

    /// Whether `session` has a connection here.
    pub fn has(&self, session: &str) -> bool {
        self.clients.lock().unwrap().contains_key(session)
    }

    /// Registers a connection of `session`; returns its id and its receiver.
    pub fn connect(&self, session: &str) -> (u64, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.clients
            .lock()
            .unwrap()
            .entry(session.to_string())
            .or_default()
            .push((id, tx));
        (id, rx)
    }

    pub fn disconnect(&self, session: &str, id: u64) {
        let mut m = self.clients.lock().unwrap();
        if let Some(v) = m.get_mut(session) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                m.remove(session);
            }
        }
    }

    /// Sends `msg` to every connection of `session`, dropping stuck ones.
    pub fn send(&self, session: &str, msg: &str) {
        let mut m = self.clients.lock().unwrap();
        if let Some(v) = m.get_mut(session) {
            v.retain(|(_, tx)| tx.try_send(msg.to_string()).is_ok());
        }
    }

    pub fn connections(&self) -> usize {
        self.clients.lock().unwrap().values().map(Vec::len).sum()
    }

    /// Tells the operators' consoles, here and on the other instances, to
    /// refresh the queue.
    pub fn queue_changed(&self) {
        let _ = self.queue.send(());
        if let Some(st) = &self.store {
            st.announce(&News::Queue);
        }
    }

    pub fn watch_queue(&self) -> broadcast::Receiver<()> {
        self.queue.subscribe()
    }
}

/// Brings the other instances' news in, until `shutdown`: a message is read
/// from the outbox (the source of truth) and sent to the session's sockets
/// connected here; a queue change refreshes the consoles here. Nothing when
/// the store is not shared.
pub async fn relay(hub: &Hub, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(store) = hub.store.clone() else {
        return;
    };
    let Some(mut news) = store.news() else {
        return;
    };
    loop {
        let n = tokio::select! {
            n = news.recv() => n,
            _ = shutdown.changed() => return,
        };
        match n {
            Ok(News::Queue) => {
                let _ = hub.queue.send(());
            }
            Ok(News::Outbox { session, seq }) => {
                if !hub.has(&session) {
                    continue;
                }
                let Some(key) = SessionKey::parse(&session) else {
                    continue;
                };
                let st = store.clone();
                let got = tokio::task::spawn_blocking(move || {
                    st.outbox_since(&key, seq.saturating_sub(1))
                })
                .await;
                match got {
                    Ok(Ok(msgs)) => {
                        for m in msgs.iter().filter(|m| m["seq"].as_u64() == Some(seq)) {
                            hub.send(&session, &m.to_string());
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("hub: outbox of {session}: {e:#}"),
                    Err(e) => tracing::warn!("hub: {e}"),
                }
            }
            // Missed news: the consoles refresh; web clients catch up from
            // their outbox when they reconnect.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let _ = hub.queue.send(());
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_connection_is_dropped_and_others_keep_receiving() {
        let h = Hub::default();
        let (_stuck, _never_read) = h.connect("web:x");
        let (_ok, mut rx) = h.connect("web:x");
        let mut got = 0;
        for _ in 0..(BUFFER * 3) {
            h.send("web:x", "m");
            while rx.try_recv().is_ok() {
                got += 1;
            }
        }
        assert_eq!(got, BUFFER * 3, "the reading connection got everything");
        assert_eq!(h.connections(), 1, "the stuck one was dropped");
    }
}
