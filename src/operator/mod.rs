//! The human side of a handoff: the queue of conversations waiting for a
//! person, taking one (never two operators on one conversation), replying,
//! passing it to another operator (at most twice per conversation), and
//! giving it back to the bot. Channels deliver the returned turns.

pub mod console;

use crate::dialog::session::{Entry, Session, Wait};
use crate::dialog::{Action, Engine, Outgoing, Turn};
use crate::store::QueueItem;
use anyhow::Result;

/// Passes of a conversation from one person to another, at most (the standard).
pub const MAX_TRANSFERS: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OperatorError {
    #[error("the conversation is not waiting for an operator")]
    NotWaiting,
    #[error("another operator has already taken the conversation")]
    Taken,
    #[error("the conversation is held by another operator")]
    NotYours,
    #[error("the conversation has already been passed between people twice; it stays with its current operator")]
    TransferLimit,
    #[error("the reply is empty")]
    EmptyReply,
}

/// A turn for the client, or why the operator's action was refused.
type Reply = std::result::Result<Turn, OperatorError>;

fn split(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

impl Engine {
    /// Conversations waiting for or held by a person, longest waiting first.
    pub fn queue(&self) -> Result<Vec<QueueItem>> {
        self.store.queue()
    }

    fn holder_check(s: &Session, operator: &str) -> std::result::Result<(), OperatorError> {
        match &s.handoff {
            None => Err(OperatorError::NotWaiting),
            Some(h) if h.operator.as_deref() != Some(operator) => Err(OperatorError::NotYours),
            Some(_) => Ok(()),
        }
    }

    /// An operator takes a waiting conversation; returns its history.
    pub fn take(
        &self,
        session_key: &str,
        operator: &str,
    ) -> Result<std::result::Result<Session, OperatorError>> {
        let (ch, user) = split(session_key);
        self.with_session(ch, user, |e, s| {
            let Some(h) = &mut s.handoff else {
                return Ok((Err(OperatorError::NotWaiting), None));
            };
            if h.operator.as_deref().is_some_and(|o| o != operator) {
                return Ok((Err(OperatorError::Taken), None));
            }
            if e.store.queue_claim(session_key, operator)?.is_none() {
                return Ok((Err(OperatorError::Taken), None));
            }
            h.operator = Some(operator.to_string());
            let at = e.clock.now().as_second();
            s.history.push(Entry {
                who: format!("system:{operator}"),
                text: "оператор подключился".into(),
                at,
            });
            Ok((Ok(s.clone()), None))
        })
    }

    /// Runs an action of the operator holding `session_key` that gives the
    /// client a turn, committed with the session (with `out`, also as
    /// undelivered until the channel confirms it).
    fn holder_turn(
        &self,
        session_key: &str,
        operator: &str,
        out: Option<&Outgoing>,
        f: impl FnOnce(&Self, &mut Session) -> Result<Reply>,
    ) -> Result<Reply> {
        let (ch, user) = split(session_key);
        let keep = out.map(|o| o.marker.as_str());
        let name = out.and_then(|o| o.operator.as_deref());
        let reply = |r: &Reply| match r {
            Ok(t) => self.pending_reply(user, t, name),
            Err(_) => Ok(None),
        };
        let r = self.with_session_marked(
            ch,
            user,
            None,
            keep,
            |e, s| match Self::holder_check(s, operator) {
                Err(x) => Ok((Err(x), None)),
                Ok(()) => Ok((f(e, s)?, None)),
            },
            reply,
        )?;
        Ok(r.expect("no marker, always runs"))
    }

    /// The operator's message to the client (the turn the client's channel
    /// shows); with `out`, saved as undelivered until the channel confirms it.
    pub fn operator_reply(
        &self,
        session_key: &str,
        operator: &str,
        text: &str,
        out: Option<&Outgoing>,
    ) -> Result<Reply> {
        self.holder_turn(session_key, operator, out, |e, s| {
            if text.trim().is_empty() {
                return Ok(Err(OperatorError::EmptyReply));
            }
            let at = e.clock.now().as_second();
            s.history.push(Entry {
                who: format!("operator:{operator}"),
                text: text.to_string(),
                at,
            });
            let mut t = e.render(
                s,
                text.to_string(),
                Vec::new(),
                vec![Action::Handoff],
                Vec::new(),
            );
            // An operator's own words are not restyled, only shown.
            t.text = text.to_string();
            Ok(Ok(t))
        })
    }

    /// Passes a held conversation to another operator, at most twice.
    pub fn transfer(
        &self,
        session_key: &str,
        from: &str,
        to: &str,
    ) -> Result<std::result::Result<u32, OperatorError>> {
        let (ch, user) = split(session_key);
        self.with_session(ch, user, |e, s| {
            if let Err(x) = Self::holder_check(s, from) {
                return Ok((Err(x), None));
            }
            if s.transfers >= MAX_TRANSFERS {
                return Ok((Err(OperatorError::TransferLimit), None));
            }
            s.transfers += 1;
            if let Some(h) = &mut s.handoff {
                h.operator = Some(to.to_string());
            }
            let mut item = e
                .store
                .queue()?
                .into_iter()
                .find(|q| q.session == session_key)
                .ok_or_else(|| anyhow::anyhow!("queue entry missing for {session_key}"))?;
            item.operator = Some(to.to_string());
            e.store.queue_put(&item)?;
            let at = e.clock.now().as_second();
            s.history.push(Entry {
                who: format!("system:{from}"),
                text: format!("разговор передан оператору {to}"),
                at,
            });
            Ok((Ok(s.transfers), None))
        })
    }

    /// Gives the conversation back to the bot, which asks whether the
    /// question is solved; with `out`, that turn is saved as undelivered
    /// until the channel confirms it.
    pub fn release(
        &self,
        session_key: &str,
        operator: &str,
        out: Option<&Outgoing>,
    ) -> Result<Reply> {
        // One commit: the conversation back with the bot and the bot's turn.
        self.holder_turn(session_key, operator, out, |e, s| {
            s.handoff = None;
            e.store.queue_remove(session_key)?;
            let g = e.graph.clone();
            let next = g
                .node(&g.operator)
                .next
                .clone()
                .unwrap_or_else(|| g.classify.clone());
            s.wait = Wait::Node;
            Ok(Ok(e.returned_turn(s, &next)?))
        })
    }
}
