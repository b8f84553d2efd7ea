//! Live delivery: the web chat sockets connected for each conversation, and
//! the operators' consoles waiting for "the queue changed". Each connection
//! has a bounded buffer; a client too slow to keep up is disconnected (it
//! reconnects and resumes from its outbox), so it never holds others up.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::{broadcast, mpsc};

/// Messages buffered per connection before it is considered stuck.
const BUFFER: usize = 64;

/// The open connections of one conversation: (connection id, its buffer).
type Connections = Vec<(u64, mpsc::Sender<String>)>;

pub struct Hub {
    clients: Mutex<HashMap<String, Connections>>,
    next: std::sync::atomic::AtomicU64,
    queue: broadcast::Sender<()>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            next: 0.into(),
            queue: broadcast::channel(16).0,
        }
    }
}

impl Hub {
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

    /// Tells the operators' consoles to refresh the queue.
    pub fn queue_changed(&self) {
        let _ = self.queue.send(());
    }

    pub fn watch_queue(&self) -> broadcast::Receiver<()> {
        self.queue.subscribe()
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
