//! Channel adapters: each turns its input into an engine input and renders
//! the engine's turns. `hub` delivers messages to whoever is connected (web
//! chat sockets, operator consoles); `web` is the web chat. A message that
//! does not come from the client's own turn (an operator's reply, the bot
//! taking the conversation back) goes through `deliver`, which knows how each
//! channel reaches its client.

pub mod hub;
pub mod telegram;
pub mod web;

use crate::dialog::Turn;
use crate::http::AppState;

/// Who a message to the client is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Bot,
    Operator,
}

/// Delivers a turn that the client did not ask for to the client's channel.
pub async fn deliver(
    st: &AppState,
    session: &str,
    turn: &Turn,
    from: From,
    operator: Option<&str>,
) -> anyhow::Result<()> {
    match session.split_once(':') {
        Some(("web", _)) => web::push(
            &st.store,
            &st.hub,
            session,
            web::turn_message(turn, from, operator),
        ),
        Some(("telegram", chat)) => {
            let Some(tg) = st.telegram.get() else {
                anyhow::bail!("the Telegram bot is not running: the reply stays in the history");
            };
            let chat: i64 = chat.parse()?;
            tg.send_turn(teloxide::types::ChatId(chat), turn, from, operator)
                .await?;
            Ok(())
        }
        // The voice channel connects its delivery here when it arrives.
        _ => {
            tracing::warn!("no live delivery for {session}: the message stays in its history");
            Ok(())
        }
    }
}
