//! Channels: thin adapters between a client's medium and the engine. Each
//! implements `Channel`: it names itself, says what must be committed with a
//! turn so that the reply survives a crash until it is delivered (`keep`),
//! delivers committed turns (`deliver`), redelivers what a previous run
//! left undelivered (`start`), and serves its routes. They are registered in
//! one `Registry`; every client turn goes through the one turn service,
//! `pipeline::Pipeline`, which holds the rules (readiness, limits,
//! exactly-once inputs, metrics) for all of them.

pub mod api;
pub mod hub;
pub mod notify;
pub mod pipeline;
pub mod sockets;
pub mod telegram;
pub mod voice;
pub mod web;

use crate::dialog::session::ChoiceOut;
use crate::dialog::{Keep, Turn};
use crate::speech::Hints;
use crate::store::{Committed, SessionKey};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a turn goes to the client, as its channel needs to know to keep it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The operator whose message it is (their display name); none: the bot's.
    pub operator: Option<&'a str>,
    /// The client's input this turn answers, processed exactly once.
    pub marker: Option<&'a str>,
    /// What the client said, as the channel shows it back (the web chat's echo).
    pub echo: Option<&'a serde_json::Value>,
}

/// A committed turn on its way to the client.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub operator: Option<String>,
    /// What the commit stored for the channel (the web outbox with seqs).
    pub committed: Committed,
    /// The undelivered record kept with the turn, cleared once it is sent.
    pub marker: Option<String>,
}

/// What became of a turn given to `deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered, or stored where the client reads it (the web outbox).
    Sent,
    /// Not sent now; kept as undelivered and sent by the channel later.
    Later,
}

pub trait Channel: Send + Sync {
    /// The channel's name: the first part of its session keys.
    fn name(&self) -> &'static str;

    /// Records committed with a turn of `key` so its delivery survives a crash.
    fn keep(&self, key: &SessionKey, turn: &Turn, origin: &Origin) -> anyhow::Result<Keep>;

    /// Delivers a committed turn (a turn the client asked for, an operator's
    /// message, the bot taking the conversation back).
    fn deliver<'a>(
        &'a self,
        key: &'a SessionKey,
        turn: &'a Turn,
        sent: &'a Sent,
    ) -> BoxFuture<'a, anyhow::Result<Delivery>>;

    /// Starts the channel's background work (polling, redelivery of what a
    /// previous run left undelivered).
    fn start(self: Arc<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// The channel's HTTP routes, with their state bound.
    fn routes(self: Arc<Self>) -> axum::Router;
}

/// The channels this server runs, by name.
#[derive(Default, Clone)]
pub struct Registry {
    channels: BTreeMap<&'static str, Arc<dyn Channel>>,
}

impl Registry {
    pub fn add(&mut self, c: Arc<dyn Channel>) {
        self.channels.insert(c.name(), c);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Channel>> {
        self.channels.get(name).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Channel>> {
        self.channels.values()
    }
}

/// What a client is likely to say next: the offered options' labels and
/// synonyms (which include «да» and «нет» where a turn asks yes or no), to
/// bias speech recognition towards them. Nothing when no options are
/// offered: free speech is recognised without a bias.
pub fn expected(choices: &[ChoiceOut]) -> Hints {
    let mut phrases: Vec<String> = Vec::new();
    for c in choices {
        for p in std::iter::once(&c.label).chain(&c.synonyms) {
            let p = p.trim().to_lowercase();
            if !p.is_empty() && !phrases.contains(&p) {
                phrases.push(p);
            }
        }
    }
    Hints { phrases }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(label: &str, synonyms: &[&str]) -> ChoiceOut {
        ChoiceOut {
            id: label.to_lowercase(),
            label: label.into(),
            dtmf: None,
            synonyms: synonyms.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_options_and_their_synonyms_are_what_the_client_is_expected_to_say() {
        let cs = [choice("Да", &["верно"]), choice("Нет", &["нет", "неверно"])];
        assert_eq!(expected(&cs).phrases, ["да", "верно", "нет", "неверно"]);
        assert!(expected(&[]).phrases.is_empty());
    }
}
