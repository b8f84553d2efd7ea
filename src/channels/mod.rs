//! Channel adapters: each turns its input into an engine input and renders
//! the engine's turns. `hub` delivers messages to whoever is connected (web
//! chat sockets, operator consoles); `web` is the web chat. A message that
//! does not come from the client's own turn (an operator's reply, the bot
//! taking the conversation back) goes through `deliver`, which knows how each
//! channel reaches its client.

pub mod hub;
pub mod web;

use crate::dialog::Turn;
use crate::store::Store;
use hub::Hub;

/// Who a message to the client is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Bot,
    Operator,
}

/// Delivers a turn that the client did not ask for to the client's channel.
pub fn deliver(
    store: &Store,
    hub: &Hub,
    session: &str,
    turn: &Turn,
    from: From,
    operator: Option<&str>,
) -> anyhow::Result<()> {
    match session.split_once(':').map(|x| x.0) {
        Some("web") => web::push(store, hub, session, web::turn_message(turn, from, operator)),
        // Other channels connect their delivery here as they arrive.
        _ => {
            tracing::warn!("no live delivery for {session}: the message stays in its history");
            Ok(())
        }
    }
}
