//! The engine's API for the human side of a handoff: taking a waiting
//! conversation (never two operators on one conversation), replying,
//! passing it to another operator (at most twice per conversation), and
//! giving it back to the bot. Each action is one commit under the
//! conversation's lock; the turns it gives the client (an operator's words,
//! the notice that an operator joined or took over, the bot's return) are
//! committed with what the client's channel keeps to deliver them. The
//! console (`operator`) calls these and nothing else of the engine's insides.

use super::core::Said;
use super::session::{Entry, Session, Wait};
use super::{Action, Engine, Keep, Turn};
use crate::analytics::export::OPERATOR_TAG;
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

/// An action's own result with the turn it gives the client, what was
/// committed for the client's channel, or why the action was refused.
pub type Told<T> = std::result::Result<(T, Turn, Committed, Keep), OperatorError>;

/// An operator as the conversation records them and the client hears of them.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    /// The console's login (the queue, the history's `who`).
    pub login: &'a str,
    /// The name people read (the history's lines, the client's notice).
    pub name: &'a str,
    /// Whether the client is told the name (a ministry may keep it private).
    pub named: bool,
}

impl<'a> Person<'a> {
    /// An operator known by login only, not named to the client (the
    /// engine's own tests, the command line).
    pub fn login(login: &'a str) -> Self {
        Self {
            login,
            name: login,
            named: false,
        }
    }
}

/// Keeps nothing: for callers with no channel to deliver through.
fn keep_nothing(_: &Turn) -> Result<Keep> {
    Ok(Keep::default())
}

impl Engine {
    fn holder_check(s: &Session, operator: &str) -> std::result::Result<(), OperatorError> {
        match &s.handoff {
            None => Err(OperatorError::NotWaiting),
            Some(h) if h.operator.as_deref() != Some(operator) => Err(OperatorError::NotYours),
            Some(_) => Ok(()),
        }
    }

    /// An operator takes a waiting conversation; returns its history. The
    /// client is told, but nothing is kept for a channel to deliver: the
    /// console uses `take_as`.
    pub fn take(
        &self,
        key: &SessionKey,
        operator: &str,
    ) -> Result<std::result::Result<Session, OperatorError>> {
        match self.take_as(key, &Person::login(operator), &keep_nothing)? {
            Ok(((), ..)) => Ok(Ok(self.session(key)?.unwrap_or_default())),
            Err(e) => Ok(Err(e)),
        }
    }

    /// An operator takes a waiting conversation. The client is told that
    /// an operator joined (by name if `who.named`), in the same commit, with
    /// what the client's channel keeps to deliver it.
    pub fn take_as(&self, key: &SessionKey, who: &Person, keep: &Keeper) -> Result<Told<()>> {
        let session = key.to_string();
        self.told(key, keep, |e, s, w| {
            let Some(h) = &mut s.handoff else {
                return Ok(Err(OperatorError::NotWaiting));
            };
            if h.operator.as_deref().is_some_and(|o| o != who.login) {
                return Ok(Err(OperatorError::Taken));
            }
            let queued = e.store.queue()?.into_iter().find(|q| q.session == session);
            if queued.is_none_or(|q| q.operator.as_deref().is_some_and(|o| o != who.login)) {
                return Ok(Err(OperatorError::Taken));
            }
            w.queue.push(QueueOp::Claim {
                session: session.clone(),
                operator: who.login.to_string(),
            });
            h.operator = Some(who.login.to_string());
            s.history.push(Entry {
                who: format!("system:{}", who.login),
                text: format!("к разговору подключился оператор: {}", who.name),
                at: e.now(),
            });
            Ok(Ok(((), e.notice(s, "operator_joined", who))))
        })
    }

    /// The client's notice about `who` (prompt `key`, or `key_named` with
    /// the name), recorded in the history as the bot's.
    fn notice(&self, s: &mut Session, key: &str, who: &Person) -> Turn {
        let text = if who.named {
            super::fill(
                &self.p(&format!("{key}_named")),
                &[("name", who.name.to_string())],
            )
        } else {
            self.p(key)
        };
        let texts = [text];
        let t = self.render(
            s,
            &Said::plain(&texts),
            Vec::new(),
            vec![Action::Handoff],
            Vec::new(),
        );
        s.history.push(Entry {
            who: "bot".into(),
            text: t.text.clone(),
            at: self.now(),
        });
        t
    }

    /// Runs an operator's action that gives the client a turn, committed
    /// with the session and with what the client's channel keeps to
    /// deliver it.
    fn told<T>(
        &self,
        key: &SessionKey,
        keep: &Keeper,
        f: impl Fn(
            &Self,
            &mut Session,
            &mut TurnWrites,
        ) -> Result<std::result::Result<(T, Turn), OperatorError>>,
    ) -> Result<Told<T>> {
        let r = self.with_session_committed(key, None, |e, s, w| {
            let (v, turn) = match f(e, s, w)? {
                Ok(x) => x,
                Err(x) => return Ok(Err(x)),
            };
            let k = keep(&turn)?;
            w.keep(&k);
            Ok(Ok((v, turn, k)))
        })?;
        let (r, committed) = r.expect("no marker, always runs");
        Ok(r.map(|(v, t, k)| (v, t, committed, k)))
    }

    /// Runs an action of the operator holding `key` that gives the client a
    /// turn (see `told`).
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
        let r = self.told(key, keep, |e, s, w| {
            if let Err(x) = Self::holder_check(s, operator) {
                return Ok(Err(x));
            }
            Ok(f(e, s, w)?.map(|t| ((), t)))
        })?;
        Ok(r.map(|((), t, c, k)| (t, c, k)))
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
        self.holder_turn(key, operator, keep, |e, s, w| {
            if text.trim().is_empty() {
                return Ok(Err(OperatorError::EmptyReply));
            }
            let at = e.clock.now().as_second();
            // The first reply since the handoff: its wait is the operators'
            // time to answer.
            let since = s.handoff.as_ref().map_or(at, |h| h.since);
            let first = !s
                .history
                .iter()
                .any(|h| h.at >= since && h.who.starts_with("operator:"));
            if first {
                let wait = (at - since).max(0) as u64 * 1000;
                w.log = Some(e.operator_log(s, "operator_reply", None, Some(wait)));
            }
            s.history.push(Entry {
                who: format!("operator:{operator}"),
                text: text.to_string(),
                at,
            });
            let texts = [text.to_string()];
            let mut t = e.render(
                s,
                &super::core::Said::plain(&texts),
                Vec::new(),
                vec![Action::Handoff],
                Vec::new(),
            );
            // An operator's own words are not restyled, only shown.
            t.text = text.to_string();
            Ok(Ok(t))
        })
    }

    /// Passes a held conversation to another operator, at most twice. The
    /// client is told, but nothing is kept for a channel to deliver: the
    /// console uses `transfer_as`.
    pub fn transfer(
        &self,
        key: &SessionKey,
        from: &str,
        to: &str,
    ) -> Result<std::result::Result<u32, OperatorError>> {
        let (from, to) = (Person::login(from), Person::login(to));
        Ok(self
            .transfer_as(key, &from, &to, &keep_nothing)?
            .map(|(n, ..)| n))
    }

    /// Passes a held conversation to another operator, at most twice;
    /// returns how many times it was passed. The client is told that
    /// another operator answers now (by name if `to.named`), in the same
    /// commit, with what the client's channel keeps to deliver it.
    pub fn transfer_as(
        &self,
        key: &SessionKey,
        from: &Person,
        to: &Person,
        keep: &Keeper,
    ) -> Result<Told<u32>> {
        let session = key.to_string();
        self.told(key, keep, |e, s, w| {
            if let Err(x) = Self::holder_check(s, from.login) {
                return Ok(Err(x));
            }
            if s.transfers >= MAX_TRANSFERS {
                return Ok(Err(OperatorError::TransferLimit));
            }
            s.transfers += 1;
            if let Some(h) = &mut s.handoff {
                h.operator = Some(to.login.to_string());
            }
            let mut item = e
                .store
                .queue()?
                .into_iter()
                .find(|q| q.session == session)
                .ok_or_else(|| anyhow::anyhow!("queue entry missing for {session}"))?;
            item.operator = Some(to.login.to_string());
            w.queue.push(QueueOp::Put(item));
            s.history.push(Entry {
                who: format!("system:{}", from.login),
                text: format!("разговор передан оператору: {}", to.name),
                at: e.now(),
            });
            w.log = Some(e.operator_log(s, "transfer", None, None));
            Ok(Ok((s.transfers, e.notice(s, "operator_transferred", to))))
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

/// Why an operator's tag was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TagError {
    #[error("no such intent")]
    UnknownIntent,
    #[error("the operator has not handled this conversation")]
    NotHandled,
}

impl Engine {
    /// An entry of the analytics log for what an operator did in the
    /// conversation (an event, the intent tagged, the wait before the first
    /// reply), under the conversation's pseudonyms.
    fn operator_log(
        &self,
        s: &Session,
        event: &str,
        intent: Option<&str>,
        answer_ms: Option<u64>,
    ) -> crate::analytics::LogEntry {
        let key = s.key();
        crate::analytics::LogEntry {
            ts: self.now(),
            conversation: crate::analytics::pseudonym(&self.secret, &key, s.conversation),
            client: crate::analytics::client_pseudonym(&self.secret, &key),
            channel: s.channel.clone(),
            segment: s.segment.clone(),
            node: s.node.clone(),
            intent: s.intent.clone(),
            confirmed: intent.map(str::to_string),
            situation: self.situation_of(intent.or(s.intent.as_deref())),
            answer_ms,
            events: vec![event.to_string()],
            ..Default::default()
        }
    }

    /// An operator who handled a conversation tags the intent it was about:
    /// the best label for retraining. It goes to the analytics log under
    /// the conversation's pseudonym (`analytics::export` applies it to the
    /// utterances that led to the handoff).
    pub fn tag_intent(
        &self,
        key: &SessionKey,
        operator: &str,
        intent: &str,
    ) -> Result<std::result::Result<(), TagError>> {
        if self.nlu.kb.intent(intent).is_none() {
            return Ok(Err(TagError::UnknownIntent));
        }
        let Some(s) = self.session(key)? else {
            return Ok(Err(TagError::NotHandled));
        };
        let held = s
            .handoff
            .as_ref()
            .is_some_and(|h| h.operator.as_deref() == Some(operator));
        let handled = s.history.iter().any(|e| {
            e.who == format!("operator:{operator}") || e.who == format!("system:{operator}")
        });
        if !held && !handled {
            return Ok(Err(TagError::NotHandled));
        }
        self.store
            .log_append(&[self.operator_log(&s, OPERATOR_TAG, Some(intent), None)])?;
        Ok(Ok(()))
    }
}
