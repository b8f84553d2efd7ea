//! Open WebSockets, counted against the server's limits: in all
//! (`http.max_connections`, of which `operator_reserved_connections` only
//! operators' consoles may take, so idle chat sockets cannot lock operators
//! out) and per client address for the web chat
//! (`max_connections_per_address`).

use crate::config::HttpConfig;
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
