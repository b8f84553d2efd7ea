//! The people who work on the bot: the operators' console (sign-in, the
//! queue, take, reply, transfer, release, tagging a conversation's topic,
//! the live queue push) and the trainers' review page. What an action does
//! to a conversation is the engine's (`dialog::handoff`).

pub mod analytics;
pub mod console;
pub mod review;
pub mod signin;

pub use crate::dialog::handoff::{OperatorError, Reply, MAX_TRANSFERS};
