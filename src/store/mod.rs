//! Storage: what the engine and the channels keep, behind one object-safe
//! `Storage` trait, and the `ConversationLock` that serialises the turns of
//! one conversation. Everything a turn writes (the session, its log entry,
//! consent, bookings, callbacks, feedback, queue changes, the channel's
//! delivery records, the processed-input marker, consent withdrawal) is
//! gathered in a `TurnWrites` and committed atomically by `Storage::commit`;
//! nothing commits on its own in the middle of a turn. Conditional writes
//! (a slot's capacity, an appointment's owner, a queued conversation's
//! holder) are checked again inside the commit, so a race is a `Conflict`,
//! never a double booking. `sled` is the embedded default backend (one
//! instance); `postgres` is the shared one (several instances on one
//! database: its conversation locks, leadership and news between instances
//! too). Both pass the same conformance suite (`tests/storage.rs`).

mod lock;
mod postgres;
mod sled;

pub use self::lock::{ConversationLock, LocalLocks, LockGuard};
pub use self::postgres::{PgLocks, PgStore};
pub use self::sled::Store;

/// Opens the store `backend` names: `sled` under `data_dir`, or `postgres`
/// at `url` (migrated at start-up).
pub fn open(
    backend: &str,
    data_dir: &std::path::Path,
    url: &str,
    pool_size: usize,
    ca_file: &str,
) -> Result<std::sync::Arc<dyn Storage>> {
    Ok(match backend {
        "sled" => std::sync::Arc::new(Store::open(data_dir)?),
        "postgres" => {
            if url.is_empty() {
                anyhow::bail!(
                    "storage.backend = \"postgres\" needs storage.url (or OTKLIK_STORAGE_URL)"
                );
            }
            std::sync::Arc::new(PgStore::open(url, pool_size, ca_file)?)
        }
        other => anyhow::bail!("storage.backend must be \"sled\" or \"postgres\", got {other:?}"),
    })
}

/// The store cannot be reached now (a shared database restarting or out
/// of connections): callers answer 503 and the client tries again.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct Unavailable(pub String);

impl Unavailable {
    /// Whether `e` (or one of its causes) is the store being unavailable.
    pub fn is(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<Unavailable>())
    }
}

/// News one instance gives the others sharing its store (PostgreSQL
/// NOTIFY): hints only, the store stays the source of truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum News {
    /// A message was added to a session's web outbox.
    Outbox { session: String, seq: u64 },
    /// The operators' queue changed.
    Queue,
}

/// Held while this instance leads (`Storage::try_lead`).
pub trait Leadership: Send + Sync {
    /// Whether it still leads (its connection to the database lives).
    fn held(&self) -> bool;
}

struct Alone;

impl Leadership for Alone {
    fn held(&self) -> bool {
        true
    }
}

use crate::analytics::LogEntry;
use anyhow::Result;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// Which conversation: a channel and the client's id on it. The one way
/// session keys are made and read (stored as `channel:user`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub channel: String,
    pub user: String,
}

impl SessionKey {
    pub fn new(channel: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            user: user.into(),
        }
    }

    /// `channel:user` (the user may itself contain colons).
    pub fn parse(s: &str) -> Option<Self> {
        let (c, u) = s.split_once(':')?;
        (!c.is_empty() && !u.is_empty()).then(|| Self::new(c, u))
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.user)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Consent {
    /// Unix seconds.
    pub given_at: i64,
    /// Version of the consent text the client agreed to (a hash of it).
    pub version: String,
    pub text: String,
    /// Set when the client withdraws consent.
    pub withdrawn_at: Option<i64>,
}

impl Consent {
    pub fn active(&self) -> bool {
        self.withdrawn_at.is_none()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Appointment {
    pub id: u64,
    /// The client: `channel:user`.
    pub user: String,
    pub service: String,
    pub office: String,
    /// YYYY-MM-DD
    pub date: String,
    /// HH:MM
    pub time: String,
    /// The name the client gave (personal data; removed on consent withdrawal).
    pub name: Option<String>,
    pub created: i64,
}

impl Appointment {
    /// The slot's counter key.
    pub fn slot(&self) -> String {
        slot_key(&self.service, &self.office, &self.date, &self.time)
    }
}

pub fn slot_key(service: &str, office: &str, date: &str, time: &str) -> String {
    format!("{service}|{office}|{date}|{time}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Callback {
    pub id: u64,
    pub user: String,
    pub phone: String,
    pub preferred_time: String,
    pub topic: String,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Feedback {
    pub user: String,
    pub conversation: u64,
    pub channel: String,
    pub segment: String,
    /// 1 = «Легко» … 4 = «Сложно».
    pub ease: u8,
    /// 1–5, when asked and answered.
    #[serde(default)]
    pub satisfaction: Option<u8>,
    pub nps: Option<u8>,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueItem {
    /// The session key (`channel:user`).
    pub session: String,
    pub channel: String,
    pub segment: String,
    pub intent: Option<String>,
    /// Unix seconds when the client asked for a person.
    pub since: i64,
    /// The operator holding it, if taken.
    pub operator: Option<String>,
}

/// An application's status as the demo provider stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The state in the citizen's words: «на рассмотрении», «одобрено»…
    pub status: String,
    /// What to do next, when there is anything to say.
    #[serde(default)]
    pub details: String,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum BookingError {
    #[error("the slot is fully booked")]
    SlotTaken,
    #[error("no such appointment")]
    NotFound,
}

/// Why a commit was refused: a condition checked during the turn no longer holds.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Conflict {
    #[error(transparent)]
    Booking(#[from] BookingError),
    /// The queued conversation is held by another operator.
    #[error("the conversation is held by another operator")]
    Taken,
    /// A record changed since it was read (`RecordOp::Swap`).
    #[error("a record changed meanwhile")]
    Changed,
}

/// A change to a record of the routine operations (profile facts, drafts,
/// applications, notifications, payments…): small serialised values kept by
/// `kind` and `key`, read back in key order. Committed with a turn or alone
/// (`dyn Storage::write_records`).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOp {
    Put {
        kind: String,
        key: String,
        value: Vec<u8>,
    },
    Remove {
        kind: String,
        key: String,
    },
    /// Writes `value` (or removes the record with `None`) only if the stored
    /// value is still `expected` (`None`: no record): a `Conflict::Changed`
    /// otherwise, and nothing of the commit is written. What makes a claim
    /// exactly-once (a notification sent, a payment confirmed), across
    /// instances too.
    Swap {
        kind: String,
        key: String,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    },
}

impl RecordOp {
    pub fn put<T: Serialize>(kind: &str, key: &str, value: &T) -> Result<Self> {
        Ok(Self::Put {
            kind: kind.into(),
            key: key.into(),
            value: enc(value)?,
        })
    }

    pub fn remove(kind: &str, key: &str) -> Self {
        Self::Remove {
            kind: kind.into(),
            key: key.into(),
        }
    }
}

/// A booking change, checked against the slot counters inside the commit.
#[derive(Debug, Clone, PartialEq)]
pub enum BookingOp {
    /// `appointment.id` must be set (`Storage::next_id`).
    Book {
        appointment: Appointment,
        capacity: u32,
    },
    Cancel {
        id: u64,
        user: String,
    },
    Move {
        id: u64,
        user: String,
        date: String,
        time: String,
        capacity: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueOp {
    Put(QueueItem),
    Remove(String),
    /// Take a queued conversation for `operator` unless another holds it.
    Claim {
        session: String,
        operator: String,
    },
}

/// Consent withdrawal: the client's personal data is deleted or scrubbed
/// everywhere it is kept (callbacks, names on appointments, the web outbox,
/// replies not yet delivered), in the same commit as the turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Forget {
    pub key: SessionKey,
    /// Values the client gave as personal data (replaced by «[удалено]»).
    pub values: Vec<String>,
    /// The client's pseudonym in the analytics log: its entries get a
    /// random one instead, which links to no one.
    pub pseudonym: String,
}

/// Everything one turn writes, committed at once by `Storage::commit`.
#[derive(Debug, Default, Clone)]
pub struct TurnWrites {
    /// The conversation's state (serialised session).
    pub session: Option<(SessionKey, Vec<u8>)>,
    pub log: Option<LogEntry>,
    /// An input processed exactly once (a Telegram update, a web message id).
    pub marker: Option<String>,
    pub consent: Option<(String, Consent)>,
    pub bookings: Vec<BookingOp>,
    pub callbacks: Vec<Callback>,
    pub feedback: Vec<Feedback>,
    pub queue: Vec<QueueOp>,
    /// Applied before the outbox and undelivered records below.
    pub forget: Option<Forget>,
    /// Messages appended to the session's web outbox (each gets a `seq`).
    pub outbox: Vec<serde_json::Value>,
    /// Replies kept until their channel confirms delivery: (marker, record).
    pub undelivered: Vec<(String, Vec<u8>)>,
    /// Records of the routine operations, applied in order.
    pub records: Vec<RecordOp>,
}

/// What a channel commits with a turn so its delivery survives a crash
/// (`Channel::keep`): web outbox messages, or an undelivered reply.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    pub outbox: Vec<serde_json::Value>,
    pub undelivered: Vec<(String, Vec<u8>)>,
    /// The undelivered record's marker, cleared once the turn is sent.
    pub marker: Option<String>,
}

impl TurnWrites {
    /// Adds what the channel keeps for the turn.
    pub fn keep(&mut self, k: &Keep) {
        self.outbox.extend(k.outbox.iter().cloned());
        self.undelivered.extend(k.undelivered.iter().cloned());
    }
}

/// What a commit assigned.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// The outbox messages as stored, with their `seq`.
    pub outbox: Vec<serde_json::Value>,
    /// Bookings as stored (with their ids), in the order given.
    pub bookings: Vec<Appointment>,
}

/// How long delivery bookkeeping is kept (`[retention]` in otklik.toml).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Processed-input markers (a resend older than this runs again).
    pub seen_s: i64,
    /// Web outbox messages (a reload replays no further back).
    pub outbox_s: i64,
    /// Replies never confirmed as delivered.
    pub undelivered_s: i64,
    /// Entries of the analytics log.
    pub log_s: i64,
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub seen: usize,
    pub outbox: usize,
    pub undelivered: usize,
    pub log: usize,
}

/// The storage every backend provides. Object-safe: the application holds an
/// `Arc<dyn Storage>`; typed helpers are on `dyn Storage` below.
pub trait Storage: Send + Sync {
    /// A number greater than every one given before, across restarts.
    fn next_id(&self) -> Result<u64>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;
    /// A random salt for the log's pseudonyms, made once per database.
    fn salt(&self) -> Result<String>;

    /// Commits a turn atomically and durably; `Ok(Err(_))` when a condition
    /// no longer holds (nothing was written).
    fn commit(&self, w: &TurnWrites) -> Result<std::result::Result<Committed, Conflict>>;

    fn session_raw(&self, key: &SessionKey) -> Result<Option<Vec<u8>>>;
    fn session_keys(&self) -> Result<Vec<SessionKey>>;
    /// The analytics log, oldest first.
    fn log_entries(&self) -> Result<Vec<LogEntry>>;
    /// Appends entries to the analytics log outside a turn (an operator's tag).
    fn log_append(&self, entries: &[LogEntry]) -> Result<()>;
    fn consent(&self, user: &str) -> Result<Option<Consent>>;
    fn appointment(&self, id: u64) -> Result<Option<Appointment>>;
    fn appointments(&self) -> Result<Vec<Appointment>>;
    /// Clients booked in a slot.
    fn booked(&self, service: &str, office: &str, date: &str, time: &str) -> Result<u32>;
    fn callbacks(&self) -> Result<Vec<Callback>>;
    fn feedback(&self) -> Result<Vec<Feedback>>;
    /// Conversations waiting for or held by a person, longest waiting first.
    fn queue(&self) -> Result<Vec<QueueItem>>;

    /// Adds a demo application status unless the number has one.
    fn seed_status(&self, number: &str, s: &AppStatus) -> Result<()>;
    fn status(&self, number: &str) -> Result<Option<AppStatus>>;

    /// The session's outbox messages after `seq`, oldest first.
    fn outbox_since(&self, session: &SessionKey, seq: u64) -> Result<Vec<serde_json::Value>>;
    /// Whether an input marker was committed.
    fn marked(&self, marker: &str) -> Result<bool>;
    /// Records a marker outside a turn (an input the channel handled itself).
    fn mark(&self, marker: &str) -> Result<()>;
    /// Undelivered replies of `marker`'s sub-markers (`marker:…`) then of
    /// `marker` itself, or all of them with `None`, as (marker, record).
    fn undelivered(&self, marker: Option<&str>) -> Result<Vec<(String, Vec<u8>)>>;
    /// A reply was sent: it is no longer undelivered.
    fn delivered(&self, marker: &str) -> Result<()>;

    /// A record of the routine operations (`RecordOp`).
    fn record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// The records of `kind` whose key starts with `prefix`, in key order.
    fn records(&self, kind: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a small value durably.
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Saves a console sign-in (`key`: a hash of its token) valid until
    /// `expires` (Unix seconds); drops the ones already expired.
    fn signin_put(&self, key: &str, login: &str, expires: i64, now: i64) -> Result<()>;
    /// The login of a sign-in still valid at `now`.
    fn signin_get(&self, key: &str, now: i64) -> Result<Option<String>>;
    fn signin_remove(&self, key: &str) -> Result<()>;

    /// Removes a conversation: its session and its web outbox (a
    /// conversation in which the client never said anything, expired).
    fn remove_conversation(&self, key: &SessionKey) -> Result<()>;

    /// Removes markers, outbox messages and undelivered replies older than
    /// the retention allows (`now` in Unix seconds).
    fn sweep(&self, now: i64, keep: &Retention) -> Result<Swept>;

    /// The locks that serialise a conversation's turns: within this process
    /// for an embedded store, across instances for a shared one.
    fn conversation_locks(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn ConversationLock> {
        std::sync::Arc::new(LocalLocks::default())
    }

    /// Tells the other instances sharing this store (nothing when alone).
    fn announce(&self, _news: &News) {}

    /// The other instances' news; `None` when no other instance can share
    /// this store.
    fn news(&self) -> Option<tokio::sync::broadcast::Receiver<News>> {
        None
    }

    /// Leads `name` (one Telegram poller among the instances) unless
    /// another instance does: `None` then. Alone, always leads.
    fn try_lead(&self, _name: &str) -> Result<Option<Box<dyn Leadership>>> {
        Ok(Some(Box::new(Alone)))
    }
}

impl dyn Storage {
    pub fn session<T: DeserializeOwned>(&self, key: &SessionKey) -> Result<Option<T>> {
        self.session_raw(key)?.map(|b| dec(&b)).transpose()
    }

    pub fn appointments_of(&self, user: &str) -> Result<Vec<Appointment>> {
        let mut v: Vec<Appointment> = self
            .appointments()?
            .into_iter()
            .filter(|a| a.user == user)
            .collect();
        v.sort_by(|a, b| (&a.date, &a.time).cmp(&(&b.date, &b.time)));
        Ok(v)
    }

    /// Books `a` unless its slot is full (a commit of the booking alone).
    pub fn book(
        &self,
        mut a: Appointment,
        capacity: u32,
    ) -> Result<std::result::Result<Appointment, BookingError>> {
        a.id = self.next_id()?;
        let w = TurnWrites {
            bookings: vec![BookingOp::Book {
                appointment: a,
                capacity,
            }],
            ..Default::default()
        };
        Ok(match self.commit(&w)? {
            Ok(mut c) => Ok(c.bookings.remove(0)),
            Err(Conflict::Booking(e)) => Err(e),
            Err(Conflict::Taken | Conflict::Changed) => Err(BookingError::SlotTaken),
        })
    }

    /// A record, decoded.
    pub fn record_of<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Result<Option<T>> {
        self.record(kind, key)?.map(|b| dec(&b)).transpose()
    }

    /// The records of `kind` under `prefix`, decoded, in key order.
    pub fn records_of<T: DeserializeOwned>(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        self.records(kind, prefix)?
            .into_iter()
            .map(|(k, b)| Ok((k, dec(&b)?)))
            .collect()
    }

    /// Commits record changes alone (atomically, and durably).
    pub fn write_records(&self, ops: Vec<RecordOp>) -> Result<std::result::Result<(), Conflict>> {
        let w = TurnWrites {
            records: ops,
            ..Default::default()
        };
        Ok(self.commit(&w)?.map(|_| ()))
    }
}

/// The pseudonyms a withdrawal gives the client's log entries: one new
/// client pseudonym, and one per conversation, so the entries still count as
/// one client's without naming them.
pub(crate) struct Unlink {
    client: String,
    conversations: std::collections::HashMap<String, String>,
}

impl Default for Unlink {
    fn default() -> Self {
        Self {
            client: crate::analytics::unlinked(),
            conversations: Default::default(),
        }
    }
}

impl Unlink {
    /// Re-keys an entry of the withdrawing client (and leaves others be).
    pub(crate) fn apply(&mut self, e: &mut LogEntry, pseudonym: &str) {
        if e.client != pseudonym || pseudonym.is_empty() {
            return;
        }
        e.client = self.client.clone();
        e.conversation = self
            .conversations
            .entry(e.conversation.clone())
            .or_insert_with(crate::analytics::unlinked)
            .clone();
    }
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    use anyhow::Context;
    serde_json::from_slice(b)
        .context("a stored record cannot be read (written by another version?)")
}

/// What withdrawal leaves of a message (a web outbox message, or the turn
/// of an undelivered reply): its text and its choices' labels with the
/// client's `values` replaced by «[удалено]» and anonymised. Ids, sequence
/// numbers and times stay, so the message still replays and sends.
pub fn scrub_message(m: &mut serde_json::Value, values: &[String]) {
    if let Some(t) = m.get_mut("text") {
        if let Some(s) = t.as_str() {
            *t = scrub_text(s, values).into();
        }
    }
    if let Some(cs) = m.get_mut("choices").and_then(|c| c.as_array_mut()) {
        for c in cs {
            if let Some(l) = c.get_mut("label") {
                if let Some(s) = l.as_str() {
                    *l = scrub_text(s, values).into();
                }
            }
        }
    }
}

/// A text with the client's personal `values` removed and anonymised (the
/// same treatment the history gets on withdrawal).
pub fn scrub_text(text: &str, values: &[String]) -> String {
    let mut t = text.to_string();
    for v in values.iter().filter(|v| !v.trim().is_empty()) {
        t = t.replace(v.as_str(), "[удалено]");
    }
    crate::analytics::anonymise(&t, &[])
}
