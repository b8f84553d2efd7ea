//! Channel adapters: each turns its input into an engine input and renders
//! the engine's turns. `hub` delivers messages to whoever is connected (web
//! chat sockets, operator consoles); `web` is the web chat. A message that
//! does not come from the client's own turn (an operator's reply, the bot
//! taking the conversation back) goes through `deliver`, which knows how each
//! channel reaches its client.

pub mod hub;
pub mod telegram;
pub mod web;

use crate::dialog::{Outgoing, Turn};
use crate::http::AppState;

/// Who a message to the client is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Bot,
    Operator,
}

/// What became of a message given to `deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered, or stored where the client reads it (the web outbox).
    Sent,
    /// Not sent now; saved as undelivered and sent by the channel later.
    Later,
}

/// How a message the client did not ask for is kept until it is delivered on
/// `session`'s channel, to be passed to the engine with it: a Telegram send
/// can fail (Telegram unreachable, the bot not running), so there it is saved
/// as undelivered with the turn; the web chat has its outbox instead.
pub fn outgoing(
    st: &AppState,
    session: &str,
    operator: Option<&str>,
) -> anyhow::Result<Option<Outgoing>> {
    Ok(match session.split_once(':') {
        Some(("telegram", _)) => Some(Outgoing {
            marker: format!("telegram:out:{}", st.store.next_id()?),
            operator: operator.map(str::to_string),
        }),
        _ => None,
    })
}

/// Delivers a turn that the client did not ask for to the client's channel;
/// `out` is what `outgoing` gave for it.
pub async fn deliver(
    st: &AppState,
    session: &str,
    turn: &Turn,
    from: From,
    operator: Option<&str>,
    out: Option<&Outgoing>,
) -> anyhow::Result<Delivery> {
    match session.split_once(':') {
        Some(("web", _)) => {
            web::push(
                &st.store,
                &st.hub,
                session,
                web::turn_message(turn, from, operator),
            )?;
            Ok(Delivery::Sent)
        }
        Some(("telegram", chat)) => {
            let sent = match st.telegram.get() {
                Some(tg) => {
                    let chat: i64 = chat.parse()?;
                    tg.send_turn(teloxide::types::ChatId(chat), turn, from, operator)
                        .await
                        .map_err(anyhow::Error::from)
                }
                None => Err(anyhow::anyhow!("the Telegram bot is not running")),
            };
            match (sent, out) {
                (Ok(()), Some(o)) => {
                    st.store.delivered(&o.marker)?;
                    Ok(Delivery::Sent)
                }
                (Ok(()), None) => Ok(Delivery::Sent),
                (Err(e), Some(o)) => {
                    tracing::error!(
                        "telegram: {session}: {e:#}; {} kept to send later",
                        o.marker
                    );
                    Ok(Delivery::Later)
                }
                (Err(e), None) => Err(e),
            }
        }
        // The voice channel connects its delivery here when it arrives.
        _ => {
            tracing::warn!("no live delivery for {session}: the message stays in its history");
            Ok(Delivery::Sent)
        }
    }
}
