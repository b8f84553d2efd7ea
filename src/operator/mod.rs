//! The human side of a handoff: the operators' console (sign-in, the queue,
//! take, reply, transfer, release, the live queue push). What an action does
//! to a conversation is the engine's (`dialog::handoff`).

pub mod analytics;
pub mod console;
pub mod signin;

pub use crate::dialog::handoff::{OperatorError, Reply, MAX_TRANSFERS};
