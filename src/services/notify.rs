//! The client's notification settings and what becomes of each notice: the
//! consent per category (each change kept with its time and the version of
//! the text the client saw, like the personal-data consent), everything off,
//! quiet hours and a daily limit (record kind "notify_settings", key: the
//! session key); the decision taken at send time (send, wait, cancel); the
//! log of what was sent or cancelled, to whom and why (kind "notice_log");
//! withdrawal of a category, which cancels its pending notices in the same
//! commit; and the new-measure trigger. The sender itself is the channels'
//! (`channels/notify.rs`).

use super::notices::{self, Category, Notice};
use super::profile::Profile;
use crate::config::NotifyConfig;
use crate::store::{Conflict, RecordOp, Storage};
use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record kind of clients' settings.
pub const SETTINGS_KIND: &str = "notify_settings";
/// The record kind of notices sent or cancelled (key: `user|id`).
pub const LOG_KIND: &str = "notice_log";
/// Exactly-once claims of triggers (a reminder per appointment, a notice
/// per callback, per status event, per new measure and client).
pub const CLAIM_KIND: &str = "notice_claim";

/// Every category, in the order the settings show them.
pub const CATEGORIES: [Category; 5] = [
    Category::Status,
    Category::Reminder,
    Category::Payment,
    Category::Measures,
    Category::Surveys,
];

/// The category's name in the client's words (after «уведомления о …»).
pub fn about(c: Category) -> &'static str {
    match c {
        Category::Status => "статусе заявлений",
        Category::Reminder => "записи на приём и звонках",
        Category::Payment => "оплате",
        Category::Measures => "новых мерах поддержки",
        Category::Surveys => "опросах",
    }
}

/// The category's short name on a settings button.
pub fn label(c: Category) -> &'static str {
    match c {
        Category::Status => "статус заявлений",
        Category::Reminder => "напоминания о приёме",
        Category::Payment => "оплата",
        Category::Measures => "новые меры поддержки",
        Category::Surveys => "опросы",
    }
}

/// The category's id in choices and the API (`status`, `reminder`…).
pub fn id(c: Category) -> &'static str {
    match c {
        Category::Status => "status",
        Category::Reminder => "reminder",
        Category::Payment => "payment",
        Category::Measures => "measures",
        Category::Surveys => "surveys",
    }
}

pub fn by_id(s: &str) -> Option<Category> {
    CATEGORIES.into_iter().find(|c| id(*c) == s)
}

/// Transactional categories (about the client's own request) are on until
/// the client switches them off; content ones need the client's consent.
pub fn on_by_default(c: Category) -> bool {
    matches!(c, Category::Status | Category::Reminder | Category::Payment)
}

/// One change of the client's settings, as it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Unix seconds.
    pub at: i64,
    /// What changed: a category's id, `all`, `quiet` or `per_day`.
    pub what: String,
    /// The new value: `on`, `off`, or a number.
    pub value: String,
    /// Version of the text the client saw (a hash of it), and the text.
    pub version: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Consent per category given or withdrawn (absent: the default).
    pub consent: BTreeMap<Category, bool>,
    /// Everything off, whatever the categories say.
    pub all_off: bool,
    /// Quiet hours: None the configured ones, Some(false) none, Some(true) the configured ones.
    #[serde(default)]
    pub quiet: Option<bool>,
    /// At most this many a day (0: no limit); None: the configured limit.
    #[serde(default)]
    pub per_day: Option<u32>,
    /// Every change, oldest first.
    pub history: Vec<Change>,
}

/// Limits kept in the history (a client toggling for ever is bounded).
const MAX_HISTORY: usize = 500;

impl Settings {
    pub fn load(store: &(dyn Storage + 'static), user: &str) -> Result<Self> {
        Ok(store.record_of(SETTINGS_KIND, user)?.unwrap_or_default())
    }

    /// Whether notices of `c` may be sent.
    pub fn allows(&self, c: Category) -> bool {
        !self.all_off && self.category_on(c)
    }

    /// The category's own switch (everything off aside).
    pub fn category_on(&self, c: Category) -> bool {
        self.consent.get(&c).copied().unwrap_or(on_by_default(c))
    }

    pub fn quiet_on(&self) -> bool {
        self.quiet.unwrap_or(true)
    }

    pub fn limit(&self, cfg: &NotifyConfig) -> u32 {
        self.per_day.unwrap_or(cfg.per_day)
    }

    fn record(&mut self, at: i64, what: &str, value: String, text: &str) {
        self.history.push(Change {
            at,
            what: what.into(),
            value,
            version: version(text),
            text: text.into(),
        });
        let over = self.history.len().saturating_sub(MAX_HISTORY);
        self.history.drain(..over);
    }

    /// Gives (`on`) or withdraws consent to a category. Switching a
    /// category on also lifts «everything off».
    pub fn set_category(&mut self, at: i64, c: Category, on: bool, text: &str) {
        self.consent.insert(c, on);
        if on {
            self.all_off = false;
        }
        self.record(at, id(c), onoff(on), text);
    }

    pub fn set_all_off(&mut self, at: i64, off: bool, text: &str) {
        self.all_off = off;
        self.record(at, "all", onoff(!off), text);
    }

    pub fn set_quiet(&mut self, at: i64, on: bool, text: &str) {
        self.quiet = Some(on);
        self.record(at, "quiet", onoff(on), text);
    }

    pub fn set_per_day(&mut self, at: i64, n: u32, text: &str) {
        self.per_day = Some(n);
        self.record(at, "per_day", n.to_string(), text);
    }

    /// The settings' record, and the removal of every pending notice of a
    /// category they no longer allow (logged as cancelled): commit them
    /// together so that no notice of a withdrawn category goes out.
    pub fn save(
        &self,
        store: &(dyn Storage + 'static),
        user: &str,
        now: i64,
    ) -> Result<Vec<RecordOp>> {
        let mut ops = vec![RecordOp::put(SETTINGS_KIND, user, self)?];
        for (key, raw) in store.records(notices::KIND, "")? {
            let Ok(n) = serde_json::from_slice::<Notice>(&raw) else {
                continue;
            };
            if n.user == user && !self.allows(n.category) {
                ops.extend(cancel(&key, raw, &n, now, "the client switched it off")?);
            }
        }
        Ok(ops)
    }
}

fn onoff(on: bool) -> String {
    if on { "on" } else { "off" }.into()
}

/// The version of a text the client saw: a short hash of it.
pub fn version(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// What became of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    /// Due, but waiting: quiet hours, the daily limit, or an earlier one of
    /// the same client waiting.
    Deferred,
    Sent,
    Cancelled,
}

/// A notice sent or cancelled, kept for operators and administrators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub notice: Notice,
    pub state: State,
    /// Unix seconds it was sent or cancelled.
    pub at: i64,
    /// Why it was cancelled (or where it was sent).
    pub note: String,
}

pub fn log_key(user: &str, id: u64) -> String {
    format!("{user}|{id:020}")
}

/// The log record of a notice sent or cancelled at `at`.
pub fn logged(n: &Notice, state: State, at: i64, note: &str) -> Result<RecordOp> {
    RecordOp::put(
        LOG_KIND,
        &log_key(&n.user, n.id),
        &Logged {
            notice: n.clone(),
            state,
            at,
            note: note.into(),
        },
    )
}

/// Takes a pending notice out of the outbox (only if it is still there as
/// read: a `Swap`) and logs it cancelled.
pub fn cancel(key: &str, raw: Vec<u8>, n: &Notice, now: i64, why: &str) -> Result<Vec<RecordOp>> {
    Ok(vec![
        RecordOp::Swap {
            kind: notices::KIND.into(),
            key: key.into(),
            expected: Some(raw),
            value: None,
        },
        logged(n, State::Cancelled, now, why)?,
    ])
}

/// What to do with a due notice now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Not now: why.
    Wait(&'static str),
    /// Never: why.
    Cancel(&'static str),
}

/// Quiet hours `HH:MM-HH:MM` as minutes of the day (from, to).
pub fn parse_quiet(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('-')?;
    let m = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    Some((m(a)?, m(b)?))
}

/// Whether `now` falls in the quiet hours (which may cross midnight).
pub fn in_quiet(quiet: Option<(u32, u32)>, now: Timestamp, tz: &TimeZone) -> bool {
    let Some((from, to)) = quiet else {
        return false;
    };
    let z = now.to_zoned(tz.clone());
    let m = z.hour() as u32 * 60 + z.minute() as u32;
    if from <= to {
        (from..to).contains(&m)
    } else {
        m >= from || m < to
    }
}

/// Notices sent to `user` since the start of `now`'s day in `tz`.
pub fn sent_today(
    store: &(dyn Storage + 'static),
    user: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<u32> {
    let day = now
        .to_zoned(tz.clone())
        .start_of_day()
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0);
    Ok(store
        .records_of::<Logged>(LOG_KIND, &format!("{user}|"))?
        .into_iter()
        .filter(|(_, l)| l.state == State::Sent && l.at >= day)
        .count() as u32)
}

/// The decision for a due notice of a client with `settings`, checked at
/// send time (consent and settings may have changed since it was queued).
pub fn decide(
    store: &(dyn Storage + 'static),
    cfg: &NotifyConfig,
    settings: &Settings,
    n: &Notice,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<Decision> {
    if !settings.allows(n.category) {
        return Ok(Decision::Cancel("the client switched it off"));
    }
    if settings.quiet_on() && in_quiet(parse_quiet(&cfg.quiet), now, tz) {
        return Ok(Decision::Wait("quiet hours"));
    }
    let limit = settings.limit(cfg);
    if limit > 0 && sent_today(store, &n.user, now, tz)? >= limit {
        return Ok(Decision::Wait("the daily limit"));
    }
    Ok(Decision::Send)
}

/// Claims `what` once (a `Swap` from nothing) and commits `ops` with it:
/// false when it was claimed before (nothing is written then).
pub fn once(
    store: &(dyn Storage + 'static),
    what: &str,
    now: i64,
    ops: Vec<RecordOp>,
) -> Result<bool> {
    let mut all = vec![RecordOp::Swap {
        kind: CLAIM_KIND.into(),
        key: what.into(),
        expected: None,
        value: Some(now.to_string().into_bytes()),
    }];
    all.extend(ops);
    Ok(match store.write_records(all)? {
        Ok(()) => true,
        Err(Conflict::Changed) => false,
        Err(e) => anyhow::bail!("{what}: {e}"),
    })
}

/// A new measure (the knowledge base's intent `intent`, called `title`):
/// each client whose profile it fits (`fits`, the service search's
/// eligibility rules) and who consented to news of measures is notified,
/// once per measure and client. Returns how many were notified now.
pub fn new_measure(
    store: &(dyn Storage + 'static),
    now: i64,
    intent: &str,
    title: &str,
    fits: impl Fn(&Profile, &str) -> bool,
) -> Result<usize> {
    let mut n = 0;
    for (user, profile) in store.records_of::<Profile>(super::profile::KIND, "")? {
        if !Settings::load(store, &user)?.allows(Category::Measures) || !fits(&profile, intent) {
            continue;
        }
        let text = format!(
            "Появилась новая мера поддержки, которая Вам подходит: {title}. Чтобы узнать подробности, напишите «{title}»."
        );
        let ops = notices::enqueue(
            store,
            now,
            &user,
            Category::Measures,
            &text,
            &format!("new measure {intent} fits the profile"),
        )?;
        if once(store, &format!("measure:{intent}:{user}"), now, ops)? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight() {
        let tz = TimeZone::get("Europe/Moscow").unwrap();
        let q = parse_quiet("22:00-09:00");
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(in_quiet(q, at("2026-11-26T23:30:00+03:00"), &tz));
        assert!(in_quiet(q, at("2026-11-26T08:59:00+03:00"), &tz));
        assert!(!in_quiet(q, at("2026-11-26T09:00:00+03:00"), &tz));
        assert!(!in_quiet(q, at("2026-11-26T21:59:00+03:00"), &tz));
        assert!(!in_quiet(
            parse_quiet(""),
            at("2026-11-26T23:30:00+03:00"),
            &tz
        ));
        assert_eq!(parse_quiet("13:00-14:30"), Some((780, 870)));
        assert_eq!(parse_quiet("25:00-09:00"), None);
    }

    #[test]
    fn content_needs_consent_and_all_off_wins() {
        let mut s = Settings::default();
        assert!(s.allows(Category::Status) && !s.allows(Category::Measures));
        s.set_category(1, Category::Measures, true, "t");
        assert!(s.allows(Category::Measures));
        s.set_all_off(2, true, "t");
        assert!(CATEGORIES.iter().all(|c| !s.allows(*c)));
        s.set_category(3, Category::Status, true, "t");
        assert!(s.allows(Category::Status) && s.allows(Category::Measures));
        assert_eq!(s.history.len(), 3);
        assert_eq!(s.history[1].what, "all");
        assert_eq!(s.history[1].version, version("t"));
    }
}
