//! A conversation's state between turns: where it is in the graph, what it
//! waits for, the client's segment, collected slots, the handoff and the
//! history. Stored as one record per client (`channel:user`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentSource {
    /// Nobody said: the universal profile.
    #[default]
    Default,
    /// Guessed from what the client said («я пенсионер»).
    Inferred,
    /// Set by the channel, an integration or the client's own choice.
    Explicit,
}

/// What the conversation waits for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "wait")]
pub enum Wait {
    /// Nothing yet: the next input starts the conversation.
    #[default]
    Fresh,
    /// Input for the current node (its own kind says what it takes).
    Node,
    /// «Вы имели в виду …?» about `intent`.
    Confirm { intent: String },
    /// Intents offered as choices (or free text: a new question).
    Options,
    /// «Соединить с оператором?».
    OfferOperator,
    /// Consent before a form collects personal data.
    Consent,
    /// The form field at `field`.
    Field { field: usize },
    /// The form's confirmation.
    FormConfirm,
    /// The service search's question, its results, or the profile view
    /// (`Session::search` says which).
    Search,
    /// Satisfaction 1–5 after the ease rating.
    Satisfaction { ease: u8 },
    /// NPS 0–10 after the ease rating (and satisfaction, when asked).
    Nps {
        ease: u8,
        #[serde(default)]
        satisfaction: Option<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// Unix seconds when the client asked for a person.
    pub since: i64,
    /// The operator holding the conversation (none while it waits in the queue).
    pub operator: Option<String>,
    /// The client was told once that the operator will answer soon.
    pub notified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// client, bot or operator (with its name after a colon).
    pub who: String,
    pub text: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChoiceOut {
    pub id: String,
    pub label: String,
    pub dtmf: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    pub channel: String,
    pub user: String,
    /// Whose style applies, when not the channel's own (an integration of
    /// the REST API may ask for the voice style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Increases with every new conversation of this client.
    pub conversation: u64,
    pub segment: String,
    pub segment_source: SegmentSource,
    pub node: String,
    pub wait: Wait,
    /// The intent being answered.
    pub intent: Option<String>,
    /// The last classification's decision.
    pub decision: Option<String>,
    /// The last classification's intents, best first.
    pub candidates: Vec<String>,
    /// «No» answers to «Ваш вопрос решён?» for the current question.
    pub unsolved: u32,
    /// Silences in a row.
    pub silences: u32,
    /// Form values; `labels` holds what a choice value is called.
    pub slots: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Slots holding personal data.
    pub personal: BTreeSet<String>,
    /// Personal values the client gave in this conversation (kept to scrub
    /// them from the history on withdrawal; cleared then).
    pub pii: Vec<String>,
    pub handoff: Option<Handoff>,
    /// Passes of the conversation from one operator to another.
    pub transfers: u32,
    pub history: Vec<Entry>,
    pub turns: u64,
    pub ended: bool,
    /// The last prompt and choices, to repeat them (silence, a wrong key, a resumed chat).
    pub prompt: String,
    pub choices: Vec<ChoiceOut>,
    /// The client's last message in a form: later fields take their values
    /// from it when it has them (a number, a day, a time), so nothing said
    /// is asked again.
    #[serde(default)]
    pub form_text: Option<String>,
    /// Which page of days or times a form field shows («Другое время»).
    #[serde(default)]
    pub page: usize,
    /// The turn in which the bot last greeted the client.
    #[serde(default)]
    pub greeted_at: Option<u64>,
    /// Intents whose answer the client said did not solve the question:
    /// never given again in this conversation.
    #[serde(default)]
    pub rejected: Vec<String>,
    /// Wrong draft codes given in this conversation (`dialog/application.rs`).
    #[serde(default)]
    pub draft_tries: u32,
    /// Facts the client said or answered in this conversation (age,
    /// children…): the service search does not ask them again. Kept in the
    /// profile only with consent.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    /// The service search or profile view under way.
    #[serde(default)]
    pub search: Option<SearchState>,
}

impl Session {
    /// The conversation's key as stored (`channel:user`).
    pub fn key(&self) -> String {
        crate::store::SessionKey::new(self.channel.clone(), self.user.clone()).to_string()
    }

    /// Values of personal slots (to scrub them from logs and on withdrawal).
    pub fn personal_values(&self) -> Vec<String> {
        self.personal
            .iter()
            .filter_map(|k| self.slots.get(k).cloned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// Where a service search (or a profile view) stands.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SearchState {
    /// Questions asked so far.
    pub asked: usize,
    /// Facts the client could not or would not tell («не знаю»).
    #[serde(default)]
    pub skipped: BTreeSet<String>,
    pub phase: Phase,
    /// The results' choices, offered again after the answers are saved.
    #[serde(default)]
    pub offered: Vec<ChoiceOut>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Phase {
    /// The measures that fit are shown.
    #[default]
    Results,
    /// A question about `fact`.
    Asking { fact: String },
    /// Consent before the answers are kept in the profile.
    Consent,
    /// The profile is shown with its delete button.
    Profile,
}
