//! Guarding the console's sign-in against floods and guessing: password
//! checks (argon2, 19 MiB each) run on a pool of at most as many as there
//! are cores, and a caller who waits too long for a place gets 429; failed
//! attempts are counted per account and per client address, and past a
//! threshold each further failure locks that account or address for a
//! growing time (doubling, up to a ceiling). An unknown login is checked
//! against a dummy hash, so the answer's timing does not tell which logins
//! exist. Written by hand: the rate-limit crates count requests, not
//! failures with a growing lockout.

use crate::config::OperatorsConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Entries kept at most per table; expired ones are dropped first.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Why a sign-in is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: try again after this long.
    Locked(Duration),
    /// Every password-checking place is taken for too long.
    Busy,
}

pub struct SignInGuard {
    hashing: Semaphore,
    wait: Duration,
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
    lock_after: u32,
    lock_address_after: u32,
    max_lock: Duration,
}

fn locked<K: std::hash::Hash + Eq>(m: &Mutex<HashMap<K, Failures>>, k: &K) -> Option<Duration> {
    let now = Instant::now();
    let t = m.lock().unwrap().get(k)?.locked_until?;
    (t > now).then(|| t - now)
}

impl SignInGuard {
    pub fn new(cfg: &OperatorsConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            hashing: Semaphore::new(cores),
            wait: Duration::from_millis(cfg.hashing_wait_ms),
            accounts: Mutex::default(),
            addresses: Mutex::default(),
            lock_after: cfg.lock_after_failures.max(1),
            lock_address_after: cfg.lock_address_after_failures.max(1),
            max_lock: Duration::from_secs(cfg.max_lock_minutes.max(1) * 60),
        }
    }

    /// Whether this login or address is locked now.
    pub fn refused(&self, login: &str, ip: IpAddr) -> Option<Refusal> {
        let a = locked(&self.accounts, &login.to_string());
        let b = locked(&self.addresses, &ip);
        a.max(b).map(Refusal::Locked)
    }

    /// Runs a password check on the bounded pool (off the async workers).
    pub async fn check<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let permit = tokio::time::timeout(self.wait, self.hashing.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let r = tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| Refusal::Busy);
        drop(permit);
        r
    }

    /// Counts a failure; returns how long the account or address is locked
    /// now, if it is.
    pub fn failed(&self, login: &str, ip: IpAddr) -> Option<Duration> {
        let a = self.bump(&self.accounts, login.to_string(), self.lock_after);
        let b = self.bump(&self.addresses, ip, self.lock_address_after);
        a.max(b)
    }

    /// A successful sign-in clears the account's failures.
    pub fn succeeded(&self, login: &str) {
        self.accounts.lock().unwrap().remove(login);
    }

    fn bump<K: std::hash::Hash + Eq>(
        &self,
        m: &Mutex<HashMap<K, Failures>>,
        k: K,
        after: u32,
    ) -> Option<Duration> {
        let now = Instant::now();
        let mut m = m.lock().unwrap();
        if m.len() >= MAX_ENTRIES {
            // Forget the quiet ones first: an entry idle for the longest lock.
            let max = self.max_lock;
            m.retain(|_, f| now.duration_since(f.last) < max);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        let f = m.entry(k).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        // A long quiet spell starts the count again.
        if now.duration_since(f.last) > self.max_lock {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count < after {
            return None;
        }
        let doublings = (f.count - after).min(20);
        let lock = Duration::from_secs(1u64 << doublings).min(self.max_lock);
        f.locked_until = Some(now + lock);
        Some(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_an_account_for_a_growing_time_and_success_clears_it() {
        let cfg = OperatorsConfig {
            lock_after_failures: 3,
            lock_address_after_failures: 100,
            ..Default::default()
        };
        let g = SignInGuard::new(&cfg);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(g.failed("op1", ip), None);
        assert_eq!(g.failed("op1", ip), None);
        assert_eq!(g.failed("op1", ip), Some(Duration::from_secs(1)));
        assert_eq!(g.failed("op1", ip), Some(Duration::from_secs(2)));
        assert_eq!(g.failed("op1", ip), Some(Duration::from_secs(4)));
        assert!(matches!(g.refused("op1", ip), Some(Refusal::Locked(_))));
        assert_eq!(g.refused("op2", ip), None, "another account is not locked");
        g.succeeded("op1");
        assert_eq!(g.refused("op1", ip), None);
    }
}
