//! The wire types between a channel and the engine: what a channel feeds in
//! (`Input`), what it renders (`Turn`, `Action`), and the undelivered-reply
//! records (`PendingReply`).

use crate::nlu::kb::Link;
use serde::{Deserialize, Serialize};

use super::session::ChoiceOut;

/// What a channel feeds the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A new conversation (/start, a call picked up, a chat opened).
    Start,
    Text(String),
    /// A choice by its id (a button).
    Choice(String),
    /// Keypad digits (one key, or several for a number).
    Dtmf(String),
    /// The client said nothing before the channel's timeout.
    Silence,
    /// A file, photo, sticker or voice message the engine cannot read (its kind).
    Attachment(String),
    /// The client (or an integration) picks a segment profile.
    SetSegment(String),
    /// Go straight to an intent (a deep link, a menu), as if it were understood.
    Topic(String),
    /// The client closes the conversation (/stop): the graph's `finish`.
    Finish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The conversation waits for (or is with) a person.
    Handoff,
    /// The conversation is over (the voice robot hangs up).
    End,
    /// The next answer is a phone number: a channel may offer contact sharing.
    RequestContact,
    /// The engine refused to pass the conversation a third time.
    TransferRefused,
    /// Nothing to say: an operator holds the conversation.
    Silent,
}

/// What the channel renders.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Turn {
    pub text: String,
    pub choices: Vec<ChoiceOut>,
    pub actions: Vec<Action>,
    pub intent: Option<String>,
    pub decision: Option<String>,
    pub segment: String,
    pub links: Vec<Link>,
    /// Where the links belong: after this many paragraphs of `text` (split on
    /// a blank line), that is right after the answer they come with and before
    /// the question that follows it. None: after the whole text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_at: Option<usize>,
    pub node: String,
    /// The client's turn count after this turn (a channel can tell a stale button by it).
    #[serde(skip_serializing, default)]
    pub seq: u64,
    /// What happened in this turn (decision:…, handoff, intent:…), for metrics.
    #[serde(skip_serializing, default)]
    pub events: Vec<String>,
    /// A picture shown after the text (a payment's QR code): the web chat
    /// shows it, Telegram sends it as a photo, voice reads the text alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

/// A picture of a turn, carried inline (it is small: a QR code's PNG).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    /// `image/png`.
    pub mime: String,
    /// The picture's bytes, base64 (standard alphabet, padded).
    pub base64: String,
    /// What it shows, for screen readers and as Telegram's caption (Russian).
    pub alt: String,
    /// Where it belongs: after this many paragraphs of the turn's text
    /// (split on a blank line), before the question that follows. None:
    /// after the whole text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<usize>,
}

/// A reply saved with a marked turn until its channel confirms delivery
/// (`Store::undelivered`), so that a crash or a failed send does not lose it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingReply {
    /// When the turn was committed (Unix seconds).
    pub at: i64,
    pub user: String,
    pub seq: u64,
    pub turn: Turn,
    /// Commit order across all clients (sled's monotonic id), so replies
    /// left undelivered go out in the order they were written.
    #[serde(default)]
    pub order: u64,
    /// The operator's display name when the message is an operator's.
    #[serde(default)]
    pub operator: Option<String>,
}
