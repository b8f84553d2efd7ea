//! Storage: the one module that touches the database. Sessions, consent,
//! appointments (with their slot counters), callback requests, feedback, the
//! operators' queue, the demo application statuses and the anonymised turn
//! log live in an embedded sled database under `data_dir`. Every method here
//! is what a shared database would have to provide for a multi-instance
//! deployment; nothing outside this module sees sled.

use crate::analytics::LogEntry;
use crate::services::status::AppStatus;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::Tree;
use std::path::Path;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sessions: Tree,
    consent: Tree,
    appointments: Tree,
    slots: Tree,
    callbacks: Tree,
    feedback: Tree,
    queue: Tree,
    status: Tree,
    log: Tree,
    meta: Tree,
    outbox: Tree,
    seen: Tree,
    /// Replies committed with their turn and not yet confirmed as sent, by
    /// marker (a Telegram update id, or an operator's message's
    /// `telegram:out:<id>`): sent again after a crash or failure.
    undelivered: Tree,
    /// Operators' console sign-ins: sha256 of the cookie token → (login,
    /// expiry), so a restart does not sign everyone out.
    signins: Tree,
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

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BookingError {
    #[error("the slot is fully booked")]
    SlotTaken,
    #[error("no such appointment")]
    NotFound,
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b)
        .context("a stored record cannot be read (written by another version?)")
}

fn slot_key(a: &Appointment) -> String {
    format!("{}|{}|{}|{}", a.service, a.office, a.date, a.time)
}

fn count(v: Option<sled::IVec>) -> u32 {
    v.map(|b| u32::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 4])))
        .unwrap_or(0)
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<BookingError>>;

/// The appointment `id` if it belongs to `user` (someone else's is "not found").
fn owned(
    appts: &sled::transaction::TransactionalTree,
    id: u64,
    user: &str,
) -> TxResult<Appointment> {
    let not_found = || ConflictableTransactionError::Abort(BookingError::NotFound);
    let raw = appts.get(id.to_be_bytes())?.ok_or_else(not_found)?;
    let a: Appointment = dec(&raw).map_err(|_| not_found())?;
    if a.user != user {
        return Err(not_found());
    }
    Ok(a)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("db");
        let db = sled::Config::new().path(&path).open().with_context(|| {
            format!(
                "cannot open the database {} (is another otklik using it?)",
                path.display()
            )
        })?;
        let t = |n: &str| db.open_tree(n);
        Ok(Self {
            sessions: t("sessions")?,
            consent: t("consent")?,
            appointments: t("appointments")?,
            slots: t("slots")?,
            callbacks: t("callbacks")?,
            feedback: t("feedback")?,
            queue: t("queue")?,
            status: t("status")?,
            log: t("log")?,
            meta: t("meta")?,
            outbox: t("outbox")?,
            seen: t("seen")?,
            undelivered: t("undelivered")?,
            signins: t("signins")?,
            db,
        })
    }

    /// A number greater than every one given before, across restarts.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .context("cannot write the database to disk")?;
        Ok(())
    }

    /// A random salt for the log's pseudonyms, made once per database.
    pub fn salt(&self) -> Result<String> {
        if let Some(v) = self.meta.get("salt")? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let s = format!("{:032x}", rand::random::<u128>());
        let _ = self
            .meta
            .compare_and_swap("salt", None as Option<&[u8]>, Some(s.as_bytes()))?;
        Ok(String::from_utf8_lossy(&self.meta.get("salt")?.unwrap_or_default()).into_owned())
    }

    pub fn session<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.sessions.get(key)?.map(|b| dec(&b)).transpose()
    }

    pub fn session_keys(&self) -> Vec<String> {
        self.sessions
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect()
    }

    /// Saves a turn atomically, then flushes, so that a turn the client saw
    /// survives a crash: the session, its log entry, with a `marker` (an
    /// input processed exactly once, like a Telegram update id) the marker,
    /// and with `reply` (key, record) the reply still to be delivered.
    pub fn commit_turn<T: Serialize>(
        &self,
        key: &str,
        session: &T,
        log: Option<&LogEntry>,
        marker: Option<&str>,
        reply: Option<(&str, &[u8])>,
    ) -> Result<()> {
        let s = enc(session)?;
        let l = log.map(enc).transpose()?;
        let id = self.db.generate_id()?;
        (&self.sessions, &self.log, &self.seen, &self.undelivered)
            .transaction(|(sessions, logt, seen, undelivered)| {
                sessions.insert(key.as_bytes(), s.as_slice())?;
                if let Some(l) = &l {
                    logt.insert(&id.to_be_bytes(), l.as_slice())?;
                }
                if let Some(m) = marker {
                    seen.insert(m.as_bytes(), &[1u8][..])?;
                }
                if let Some((k, r)) = reply {
                    undelivered.insert(k.as_bytes(), r)?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("cannot save the conversation: {e:?}"))?;
        self.flush()
    }

    /// Undelivered replies of `marker`'s sub-markers (`marker:…`, the earlier
    /// turns of one input) then of `marker` itself, or all of them, in key
    /// order, with `None`; as (marker, reply).
    pub fn undelivered(&self, marker: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
        let entry = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(String, Vec<u8>)> {
            let (k, v) = kv?;
            Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
        };
        match marker {
            None => self.undelivered.iter().map(entry).collect(),
            Some(m) => {
                let mut out = self
                    .undelivered
                    .scan_prefix(format!("{m}:"))
                    .map(entry)
                    .collect::<Result<Vec<_>>>()?;
                out.extend(
                    self.undelivered
                        .get(m)?
                        .map(|v| (m.to_string(), v.to_vec())),
                );
                Ok(out)
            }
        }
    }

    /// A reply was sent: it is no longer undelivered.
    pub fn delivered(&self, marker: &str) -> Result<()> {
        self.undelivered.remove(marker)?;
        self.flush()
    }

    pub fn log_entries(&self) -> Result<Vec<LogEntry>> {
        self.log.iter().values().map(|v| dec(&v?)).collect()
    }

    pub fn consent(&self, user: &str) -> Result<Option<Consent>> {
        self.consent.get(user)?.map(|b| dec(&b)).transpose()
    }

    pub fn set_consent(&self, user: &str, c: &Consent) -> Result<()> {
        self.consent.insert(user, enc(c)?)?;
        Ok(())
    }

    /// Books `a` unless its slot is full; returns it with its id.
    pub fn book(
        &self,
        mut a: Appointment,
        capacity: u32,
    ) -> Result<std::result::Result<Appointment, BookingError>> {
        a.id = self.db.generate_id()?;
        let r = (&self.slots, &self.appointments).transaction(|(slots, appts)| -> TxResult<()> {
            let k = slot_key(&a);
            let n = count(slots.get(k.as_bytes())?);
            if n >= capacity {
                return Err(ConflictableTransactionError::Abort(BookingError::SlotTaken));
            }
            slots.insert(k.as_bytes(), &(n + 1).to_be_bytes())?;
            appts.insert(
                &a.id.to_be_bytes(),
                enc(&a).map_err(|_| ConflictableTransactionError::Abort(BookingError::NotFound))?,
            )?;
            Ok(())
        });
        Self::booking_result(r.map(|_| a))
    }

    fn booking_result<T>(
        r: std::result::Result<T, TransactionError<BookingError>>,
    ) -> Result<std::result::Result<T, BookingError>> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(TransactionError::Abort(e)) => Ok(Err(e)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    pub fn appointment(&self, id: u64) -> Result<Option<Appointment>> {
        self.appointments
            .get(id.to_be_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    pub fn appointments(&self) -> Result<Vec<Appointment>> {
        self.appointments
            .iter()
            .values()
            .map(|v| dec(&v?))
            .collect()
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

    pub fn cancel(
        &self,
        id: u64,
        user: &str,
    ) -> Result<std::result::Result<Appointment, BookingError>> {
        let r = (&self.slots, &self.appointments).transaction(
            |(slots, appts)| -> TxResult<Appointment> {
                let a = owned(appts, id, user)?;
                let k = slot_key(&a);
                let n = count(slots.get(k.as_bytes())?);
                slots.insert(k.as_bytes(), &n.saturating_sub(1).to_be_bytes())?;
                appts.remove(&id.to_be_bytes())?;
                Ok(a)
            },
        );
        Self::booking_result(r)
    }

    /// Moves an appointment to another day and time (atomically: the old slot
    /// is freed only if the new one is taken).
    pub fn reschedule(
        &self,
        id: u64,
        user: &str,
        date: &str,
        time: &str,
        capacity: u32,
    ) -> Result<std::result::Result<Appointment, BookingError>> {
        let r = (&self.slots, &self.appointments).transaction(
            |(slots, appts)| -> TxResult<Appointment> {
                let old = owned(appts, id, user)?;
                let mut new = old.clone();
                new.date = date.to_string();
                new.time = time.to_string();
                let (ko, kn) = (slot_key(&old), slot_key(&new));
                if ko != kn {
                    let n = count(slots.get(kn.as_bytes())?);
                    if n >= capacity {
                        return Err(ConflictableTransactionError::Abort(BookingError::SlotTaken));
                    }
                    slots.insert(kn.as_bytes(), &(n + 1).to_be_bytes())?;
                    let o = count(slots.get(ko.as_bytes())?);
                    slots.insert(ko.as_bytes(), &o.saturating_sub(1).to_be_bytes())?;
                }
                appts.insert(
                    &id.to_be_bytes(),
                    enc(&new)
                        .map_err(|_| ConflictableTransactionError::Abort(BookingError::NotFound))?,
                )?;
                Ok(new)
            },
        );
        Self::booking_result(r)
    }

    /// Clients booked in a slot.
    pub fn booked(&self, service: &str, office: &str, date: &str, time: &str) -> Result<u32> {
        Ok(count(
            self.slots
                .get(format!("{service}|{office}|{date}|{time}"))?,
        ))
    }

    pub fn add_callback(&self, mut c: Callback) -> Result<Callback> {
        c.id = self.db.generate_id()?;
        self.callbacks.insert(c.id.to_be_bytes(), enc(&c)?)?;
        Ok(c)
    }

    pub fn callbacks(&self) -> Result<Vec<Callback>> {
        self.callbacks.iter().values().map(|v| dec(&v?)).collect()
    }

    /// Deletes a client's personal data outside the session: callback
    /// requests (they hold the phone) and the names on appointments.
    /// Returns how many records were changed.
    pub fn forget_personal(&self, user: &str) -> Result<usize> {
        let mut n = 0;
        for c in self.callbacks()? {
            if c.user == user {
                self.callbacks.remove(c.id.to_be_bytes())?;
                n += 1;
            }
        }
        for mut a in self.appointments_of(user)? {
            if a.name.take().is_some() {
                self.appointments.insert(a.id.to_be_bytes(), enc(&a)?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn add_feedback(&self, f: &Feedback) -> Result<()> {
        let id = self.db.generate_id()?;
        self.feedback.insert(id.to_be_bytes(), enc(f)?)?;
        Ok(())
    }

    pub fn feedback(&self) -> Result<Vec<Feedback>> {
        self.feedback.iter().values().map(|v| dec(&v?)).collect()
    }

    pub fn queue_put(&self, item: &QueueItem) -> Result<()> {
        self.queue.insert(item.session.as_bytes(), enc(item)?)?;
        Ok(())
    }

    /// Claims a queued conversation for `operator` unless someone else holds it.
    pub fn queue_claim(&self, session: &str, operator: &str) -> Result<Option<QueueItem>> {
        loop {
            let Some(old) = self.queue.get(session)? else {
                return Ok(None);
            };
            let mut item: QueueItem = dec(&old)?;
            if item.operator.as_deref().is_some_and(|o| o != operator) {
                return Ok(None);
            }
            item.operator = Some(operator.to_string());
            let new = enc(&item)?;
            if self
                .queue
                .compare_and_swap(session, Some(old), Some(new))?
                .is_ok()
            {
                return Ok(Some(item));
            }
        }
    }

    pub fn queue_remove(&self, session: &str) -> Result<()> {
        self.queue.remove(session)?;
        Ok(())
    }

    pub fn queue(&self) -> Result<Vec<QueueItem>> {
        let mut v: Vec<QueueItem> = self
            .queue
            .iter()
            .values()
            .map(|v| dec(&v?))
            .collect::<Result<_>>()?;
        v.sort_by_key(|q| q.since);
        Ok(v)
    }

    pub fn seed_status(&self, number: &str, s: &AppStatus) -> Result<()> {
        if self.status.get(number)?.is_none() {
            self.status.insert(number, enc(s)?)?;
        }
        Ok(())
    }

    pub fn status(&self, number: &str) -> Result<Option<AppStatus>> {
        self.status.get(number)?.map(|b| dec(&b)).transpose()
    }

    /// Appends a message to a web client's outbox; returns its sequence number
    /// (1, 2, …) by which the client resumes after a reconnect or reload.
    pub fn outbox_append(&self, session: &str, message: &serde_json::Value) -> Result<u64> {
        let prefix = format!("{session}\u{0}");
        // An atomic counter per session: a bot turn and an operator's reply may append at once.
        let next = self
            .meta
            .update_and_fetch(format!("seq\u{0}{session}"), |old| {
                let n = old
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                    .unwrap_or(0);
                Some((n + 1).to_be_bytes().to_vec())
            })?;
        let seq = next
            .map(|b| u64::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(1);
        let mut key = prefix.into_bytes();
        key.extend_from_slice(&seq.to_be_bytes());
        let mut m = message.clone();
        m["seq"] = seq.into();
        self.outbox.insert(key, enc(&m)?)?;
        Ok(seq)
    }

    /// The outbox messages after `seq`, oldest first.
    pub fn outbox_since(&self, session: &str, seq: u64) -> Result<Vec<serde_json::Value>> {
        let prefix = format!("{session}\u{0}");
        let mut from = prefix.clone().into_bytes();
        from.extend_from_slice(&(seq + 1).to_be_bytes());
        let mut to = prefix.into_bytes();
        to.extend_from_slice(&u64::MAX.to_be_bytes());
        self.outbox
            .range(from..=to)
            .values()
            .map(|v| dec(&v?))
            .collect()
    }

    /// Whether an input marker was committed with a turn.
    pub fn marked(&self, marker: &str) -> Result<bool> {
        Ok(self.seen.contains_key(marker.as_bytes())?)
    }

    /// Records a marker outside a turn (an input handled by the channel itself).
    pub fn mark(&self, marker: &str) -> Result<()> {
        self.seen.insert(marker.as_bytes(), &[1u8][..])?;
        self.flush()
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Stores a small value durably (flushed).
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        self.flush()
    }

    /// Saves a console sign-in (`key`: a hash of its token) valid until
    /// `expires` (Unix seconds); drops the ones already expired.
    pub fn signin_put(&self, key: &str, login: &str, expires: i64, now: i64) -> Result<()> {
        for kv in self.signins.iter() {
            let (k, v) = kv?;
            if dec::<(String, i64)>(&v).map_or(true, |(_, exp)| exp <= now) {
                self.signins.remove(k)?;
            }
        }
        self.signins.insert(key, enc(&(login, expires))?)?;
        self.flush()
    }

    /// The login of a sign-in still valid at `now`.
    pub fn signin_get(&self, key: &str, now: i64) -> Result<Option<String>> {
        let Some(v) = self.signins.get(key)? else {
            return Ok(None);
        };
        let (login, expires): (String, i64) = dec(&v)?;
        Ok((expires > now).then_some(login))
    }

    pub fn signin_remove(&self, key: &str) -> Result<()> {
        self.signins.remove(key)?;
        self.flush()
    }

    /// Records a client's message id; false if it was seen before (a resend).
    pub fn first_sight(&self, session: &str, id: &str) -> Result<bool> {
        let key = format!("{session}\u{0}{id}");
        Ok(self
            .seen
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(&[1u8][..]))?
            .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_lasts_until_it_expires_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path()).unwrap();
        st.signin_put("a", "op1", 100, 0).unwrap();
        assert_eq!(st.signin_get("a", 99).unwrap().as_deref(), Some("op1"));
        assert_eq!(st.signin_get("a", 100).unwrap(), None, "expired");
        assert_eq!(st.signin_get("b", 0).unwrap(), None, "never signed in");
        st.signin_put("b", "op2", 300, 150).unwrap();
        assert_eq!(st.signins.len(), 1, "the expired one was dropped");
        st.signin_remove("b").unwrap();
        assert_eq!(st.signin_get("b", 150).unwrap(), None, "signed out");
    }
}
