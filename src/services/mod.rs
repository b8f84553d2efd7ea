//! What the dialog books and looks up besides answers: operators' hours,
//! appointment slots, application status providers, the client's profile,
//! applications, notifications, state fees and their payments, and the
//! clock they share.

pub mod applications;
pub mod appointments;
pub mod hours;
pub mod notices;
pub mod notify;
pub mod payments;
pub mod profile;
pub mod status;
pub mod validate;

use jiff::Timestamp;
use std::sync::Mutex;

/// The engine's notion of "now" (a fixed or adjustable time in tests and demos).
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stays where it is set.
pub struct FixedClock(pub Mutex<Timestamp>);

impl FixedClock {
    pub fn new(t: Timestamp) -> Self {
        Self(Mutex::new(t))
    }
    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
