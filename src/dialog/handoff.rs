//! The engine's API for the human side of a handoff: taking a waiting
//! conversation (never two operators on one conversation), replying,
//! passing it to another operator (at most twice per conversation), and
//! giving it back to the bot. Each action is one commit under the
//! conversation's lock; the turns it gives the client are committed with
//! what the client's channel keeps to deliver them. The console
//! (`operator`) calls these and nothing else of the engine's insides.

use super::session::{Entry, Session, Wait};
use super::{Action, Engine, Keep, Turn};
use crate::store::{Committed, QueueOp, SessionKey, TurnWrites};
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

/// A turn for the client with what was committed for its channel, or why
/// the operator's action was refused.
pub type Reply = std::result::Result<(Turn, Committed, Keep), OperatorError>;

/// What a channel keeps for a turn it is to deliver (`Channel::keep`).
pub type Keeper<'a> = dyn Fn(&Turn) -> Result<Keep> + 'a;

impl Engine {
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
        key: &SessionKey,
        operator: &str,
    ) -> Result<std::result::Result<Session, OperatorError>> {
        let session = key.to_string();
        self.with_session(key, |e, s, w| {
            let Some(h) = &mut s.handoff else {
                return Ok(Err(OperatorError::NotWaiting));
            };
            if h.operator.as_deref().is_some_and(|o| o != operator) {
                return Ok(Err(OperatorError::Taken));
            }
            let queued = e.store.queue()?.into_iter().find(|q| q.session == session);
            if queued.is_none_or(|q| q.operator.as_deref().is_some_and(|o| o != operator)) {
                return Ok(Err(OperatorError::Taken));
            }
            w.queue.push(QueueOp::Claim {
                session: session.clone(),
                operator: operator.to_string(),
            });
            h.operator = Some(operator.to_string());
            let at = e.clock.now().as_second();
            s.history.push(Entry {
                who: format!("system:{operator}"),
                text: "оператор подключился".into(),
                at,
            });
            Ok(Ok(s.clone()))
        })
    }

    /// Runs an action of the operator holding `key` that gives the client a
    /// turn, committed with the session and with what the client's channel
    /// keeps to deliver it.
    fn holder_turn(
        &self,
        key: &SessionKey,
        operator: &str,
        keep: &Keeper,
        f: impl Fn(
            &Self,
            &mut Session,
            &mut TurnWrites,
        ) -> Result<std::result::Result<Turn, OperatorError>>,
    ) -> Result<Reply> {
        let r = self.with_session_committed(key, None, |e, s, w| {
            if let Err(x) = Self::holder_check(s, operator) {
                return Ok(Err(x));
            }
            let turn = match f(e, s, w)? {
                Ok(t) => t,
                Err(x) => return Ok(Err(x)),
            };
            let k = keep(&turn)?;
            w.keep(&k);
            Ok(Ok((turn, k)))
        })?;
        let (r, committed) = r.expect("no marker, always runs");
        Ok(r.map(|(t, k)| (t, committed, k)))
    }

    /// The operator's message to the client (the turn the client's channel
    /// shows), committed with what its channel keeps to deliver it.
    pub fn operator_reply(
        &self,
        key: &SessionKey,
        operator: &str,
        text: &str,
        keep: &Keeper,
    ) -> Result<Reply> {
        self.holder_turn(key, operator, keep, |e, s, _| {
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
        key: &SessionKey,
        from: &str,
        to: &str,
    ) -> Result<std::result::Result<u32, OperatorError>> {
        let session = key.to_string();
        self.with_session(key, |e, s, w| {
            if let Err(x) = Self::holder_check(s, from) {
                return Ok(Err(x));
            }
            if s.transfers >= MAX_TRANSFERS {
                return Ok(Err(OperatorError::TransferLimit));
            }
            s.transfers += 1;
            if let Some(h) = &mut s.handoff {
                h.operator = Some(to.to_string());
            }
            let mut item = e
                .store
                .queue()?
                .into_iter()
                .find(|q| q.session == session)
                .ok_or_else(|| anyhow::anyhow!("queue entry missing for {session}"))?;
            item.operator = Some(to.to_string());
            w.queue.push(QueueOp::Put(item));
            let at = e.clock.now().as_second();
            s.history.push(Entry {
                who: format!("system:{from}"),
                text: format!("разговор передан оператору {to}"),
                at,
            });
            Ok(Ok(s.transfers))
        })
    }

    /// Gives the conversation back to the bot, which asks whether the
    /// question is solved; that turn is committed with the release and with
    /// what the client's channel keeps to deliver it.
    pub fn release(&self, key: &SessionKey, operator: &str, keep: &Keeper) -> Result<Reply> {
        let session = key.to_string();
        self.holder_turn(key, operator, keep, |e, s, w| {
            s.handoff = None;
            w.queue.push(QueueOp::Remove(session.clone()));
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
