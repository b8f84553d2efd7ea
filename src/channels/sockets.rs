//! Open WebSockets, counted against the server's limits: in all
//! (`http.max_connections`, of which `operator_reserved_connections` only
//! operators' consoles may take, so idle chat sockets cannot lock operators
//! out) and per client address for the web chat
//! (`max_connections_per_address`), and each socket's buffers and message
//! limits (`bounded`).

use crate::config::HttpConfig;
use axum::extract::ws::WebSocketUpgrade;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Whose socket it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Operator,
}

/// Why a socket was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The server has no place for this kind.
    Server,
    /// This address holds as many as it may.
    Address,
}

#[derive(Default)]
struct Open {
    all: usize,
    by_address: HashMap<IpAddr, usize>,
}

pub struct Sockets {
    open: Mutex<Open>,
    max: usize,
    reserved: usize,
    per_address: usize,
}

/// Holds a socket's place until dropped.
pub struct SocketGuard {
    sockets: Arc<Sockets>,
    ip: Option<IpAddr>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut o = self.sockets.open.lock().unwrap_or_else(|e| e.into_inner());
        o.all -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = o.by_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    o.by_address.remove(&ip);
                }
            }
        }
    }
}

impl Sockets {
    pub fn new(cfg: &HttpConfig) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            max: cfg.max_connections,
            reserved: cfg.operator_reserved_connections.min(cfg.max_connections),
            per_address: cfg.max_connections_per_address.max(1),
        })
    }

    /// Takes a place for a socket of `kind` from `ip` (chat sockets are
    /// counted per address).
    pub fn open(self: &Arc<Self>, ip: Option<IpAddr>, kind: Kind) -> Result<SocketGuard, Full> {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let limit = match kind {
            Kind::Chat => self.max - self.reserved,
            Kind::Operator => self.max,
        };
        if o.all >= limit {
            return Err(Full::Server);
        }
        let ip = ip.filter(|_| kind == Kind::Chat);
        if let Some(ip) = ip {
            let n = o.by_address.entry(ip).or_default();
            if *n >= self.per_address {
                return Err(Full::Address);
            }
            *n += 1;
        }
        o.all += 1;
        Ok(SocketGuard {
            sockets: self.clone(),
            ip,
        })
    }
}

/// What a socket reads from the network at a time. tungstenite's default
/// (128 KiB) is allocated and zero-filled for every socket on its first
/// read, which made an idle chat cost ~130 KB; a message larger than this
/// is still read whole (the buffer grows to the frame's declared length,
/// which the message limit bounds, and shrinks back with the next reads).
const READ_BUFFER: usize = 4 * 1024;

/// What a socket may hold of messages it has not yet written out before a
/// send fails (the client is too slow: it reconnects and replays). Our
/// largest messages (a turn with a QR code) are a few KB.
const WRITE_BUFFER_MAX: usize = 1024 * 1024;

/// A WebSocket upgrade with small buffers and messages (and frames) up to
/// `max_message` bytes. Sends are written out at once (no write batching:
/// every send is flushed anyway).
pub fn bounded(ws: WebSocketUpgrade, max_message: usize) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WRITE_BUFFER_MAX)
        .max_message_size(max_message)
        .max_frame_size(max_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_sockets_leave_the_operators_share_and_are_limited_per_address() {
        let cfg = HttpConfig {
            max_connections: 4,
            operator_reserved_connections: 1,
            max_connections_per_address: 2,
            ..Default::default()
        };
        let s = Sockets::new(&cfg);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let _a1 = s.open(Some(a), Kind::Chat).unwrap();
        let a2 = s.open(Some(a), Kind::Chat).unwrap();
        assert_eq!(s.open(Some(a), Kind::Chat).err(), Some(Full::Address));
        let _b1 = s.open(Some(b), Kind::Chat).unwrap();
        assert_eq!(
            s.open(Some(b), Kind::Chat).err(),
            Some(Full::Server),
            "the last place is the operators'"
        );
        let op = s.open(Some(b), Kind::Operator).unwrap();
        assert_eq!(s.open(None, Kind::Operator).err(), Some(Full::Server));
        drop(a2);
        drop(op);
        assert!(s.open(Some(a), Kind::Chat).is_ok(), "places come back");
    }
}
