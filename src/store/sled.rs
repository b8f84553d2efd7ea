//! The embedded default backend: `Storage` on a sled database under
//! `data_dir`, one tree per kind of record. A turn is one sled transaction
//! over every tree it touches; sled transactions cannot iterate, so what a
//! consent withdrawal rewrites is read first (under the conversation's lock,
//! so nothing else changes it meanwhile) and written inside the transaction.

use super::{
    dec, enc, scrub_message, AppStatus, Appointment, BookingError, BookingOp, Callback, Committed,
    Conflict, Consent, Feedback, Forget, QueueItem, QueueOp, RecordOp, Retention, SessionKey,
    Storage, Swept, TurnWrites, Unlink,
};
use crate::analytics::LogEntry;
use anyhow::{Context, Result};
use sled::transaction::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
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
    /// Web chat messages by `session \0 seq` (JSON with `seq` and `at`).
    outbox: Tree,
    /// Processed-input markers → the Unix second they were committed.
    seen: Tree,
    /// Replies committed with their turn and not yet confirmed as sent, by
    /// marker (a Telegram update id, or an operator's message's
    /// `telegram:out:<id>`): sent again after a crash or failure.
    undelivered: Tree,
    /// Operators' console sign-ins: sha256 of the cookie token → (login,
    /// expiry), so a restart does not sign everyone out.
    signins: Tree,
    /// Records of the routine operations: `kind \0 key` → value.
    records: Tree,
}

type Tx<T> = std::result::Result<T, ConflictableTransactionError<Conflict>>;

fn abort<T>(c: impl Into<Conflict>) -> Tx<T> {
    Err(ConflictableTransactionError::Abort(c.into()))
}

fn count(v: Option<sled::IVec>) -> u32 {
    v.map(|b| u32::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 4])))
        .unwrap_or(0)
}

fn be_u64(v: Option<sled::IVec>) -> u64 {
    v.map(|b| u64::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 8])))
        .unwrap_or(0)
}

fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn outbox_prefix(session: &SessionKey) -> Vec<u8> {
    format!("{session}\u{0}").into_bytes()
}

fn outbox_key(session: &SessionKey, seq: u64) -> Vec<u8> {
    let mut k = outbox_prefix(session);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The appointment `id` if it belongs to `user` (someone else's is "not found").
fn owned(appts: &TransactionalTree, id: u64, user: &str) -> Tx<Appointment> {
    let Some(raw) = appts.get(id.to_be_bytes())? else {
        return abort(BookingError::NotFound);
    };
    match dec::<Appointment>(&raw) {
        Ok(a) if a.user == user => Ok(a),
        _ => abort(BookingError::NotFound),
    }
}

/// Moves a slot counter by `delta`, refusing to pass `capacity` upwards.
fn bump(slots: &TransactionalTree, key: &str, delta: i32, capacity: u32) -> Tx<()> {
    let n = count(slots.get(key.as_bytes())?);
    if delta > 0 && n >= capacity {
        return abort(BookingError::SlotTaken);
    }
    let m = (n as i64 + delta as i64).max(0) as u32;
    slots.insert(key.as_bytes(), &m.to_be_bytes())?;
    Ok(())
}

/// What a withdrawal rewrites, read before the transaction.
#[derive(Default)]
struct ForgetPlan {
    callbacks: Vec<u64>,
    appointments: Vec<(u64, Vec<u8>)>,
    outbox: Vec<(Vec<u8>, Vec<u8>)>,
    undelivered: Vec<(String, Vec<u8>)>,
    /// Analytics log entries re-keyed to pseudonyms that link to no one.
    log: Vec<(Vec<u8>, Vec<u8>)>,
    unlink: Unlink,
}

impl ForgetPlan {
    fn unlink(&mut self, e: &mut LogEntry, pseudonym: &str) {
        self.unlink.apply(e, pseudonym);
    }
}

/// The database holds personal data: its folder is the owner's alone (0700)
/// and so are its files (0600).
fn private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot restrict {}", p.display()))
        };
        set(dir, 0o700)?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                if p.file_name().is_some_and(|n| n == "db") {
                    private(&p)?;
                }
            } else if p.parent().is_some_and(|d| d.ends_with("db")) {
                set(&p, 0o600)?;
            }
        }
    }
    Ok(())
}

// Indexes of the trees in a commit's transaction.
const SESSIONS: usize = 0;
const LOG: usize = 1;
const SEEN: usize = 2;
const UNDELIVERED: usize = 3;
const CONSENT: usize = 4;
const SLOTS: usize = 5;
const APPOINTMENTS: usize = 6;
const CALLBACKS: usize = 7;
const FEEDBACK: usize = 8;
const QUEUE: usize = 9;
const OUTBOX: usize = 10;
const META: usize = 11;
const RECORDS: usize = 12;

fn record_key(kind: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 1 + key.len());
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("db");
        private(dir)?;
        let db = sled::Config::new().path(&path).open().with_context(|| {
            format!(
                "cannot open the database {} (is another otklik using it?)",
                path.display()
            )
        })?;
        private(&path)?;
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
            records: t("records")?,
            db,
        })
    }

    fn plan_forget(&self, f: &Forget) -> Result<ForgetPlan> {
        let user = f.key.to_string();
        let mut p = ForgetPlan::default();
        for c in Storage::callbacks(self)? {
            if c.user == user {
                p.callbacks.push(c.id);
            }
        }
        for mut a in Storage::appointments(self)? {
            if a.user == user && a.name.take().is_some() {
                p.appointments.push((a.id, enc(&a)?));
            }
        }
        for kv in self.outbox.scan_prefix(outbox_prefix(&f.key)) {
            let (k, v) = kv?;
            let mut m: serde_json::Value = dec(&v)?;
            scrub_message(&mut m, &f.values);
            p.outbox.push((k.to_vec(), enc(&m)?));
        }
        let prefix = format!("{}:", f.key.channel);
        for kv in self.undelivered.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            let Ok(mut r) = serde_json::from_slice::<serde_json::Value>(&v) else {
                continue;
            };
            if r["user"].as_str() == Some(f.key.user.as_str()) {
                if let Some(t) = r.get_mut("turn") {
                    scrub_message(t, &f.values);
                }
                p.undelivered
                    .push((String::from_utf8_lossy(&k).into_owned(), enc(&r)?));
            }
        }
        if !f.pseudonym.is_empty() {
            for kv in self.log.iter() {
                let (k, v) = kv?;
                let mut e: LogEntry = dec(&v)?;
                if e.client == f.pseudonym {
                    p.unlink(&mut e, &f.pseudonym);
                    p.log.push((k.to_vec(), enc(&e)?));
                }
            }
        }
        Ok(p)
    }

    fn apply_booking(t: &[TransactionalTree], op: &BookingOp) -> Tx<Appointment> {
        let (slots, appts) = (&t[SLOTS], &t[APPOINTMENTS]);
        let store = |a: &Appointment| -> Tx<()> {
            let bytes = enc(a)
                .map_err(|_| ConflictableTransactionError::Abort(BookingError::NotFound.into()))?;
            appts.insert(&a.id.to_be_bytes(), bytes)?;
            Ok(())
        };
        match op {
            BookingOp::Book {
                appointment,
                capacity,
            } => {
                bump(slots, &appointment.slot(), 1, *capacity)?;
                store(appointment)?;
                Ok(appointment.clone())
            }
            BookingOp::Cancel { id, user } => {
                let a = owned(appts, *id, user)?;
                bump(slots, &a.slot(), -1, u32::MAX)?;
                appts.remove(&id.to_be_bytes())?;
                Ok(a)
            }
            BookingOp::Move {
                id,
                user,
                date,
                time,
                capacity,
            } => {
                let old = owned(appts, *id, user)?;
                let mut new = old.clone();
                new.date = date.clone();
                new.time = time.clone();
                if old.slot() != new.slot() {
                    bump(slots, &new.slot(), 1, *capacity)?;
                    bump(slots, &old.slot(), -1, u32::MAX)?;
                }
                store(&new)?;
                Ok(new)
            }
        }
    }

    fn apply_record(r: &TransactionalTree, op: &RecordOp) -> Tx<()> {
        match op {
            RecordOp::Put { kind, key, value } => {
                r.insert(record_key(kind, key), value.as_slice())?;
            }
            RecordOp::Remove { kind, key } => {
                r.remove(record_key(kind, key))?;
            }
            RecordOp::Swap {
                kind,
                key,
                expected,
                value,
            } => {
                let k = record_key(kind, key);
                if r.get(&k)?.as_deref() != expected.as_deref() {
                    return abort(Conflict::Changed);
                }
                match value {
                    Some(v) => r.insert(k, v.as_slice())?,
                    None => r.remove(k)?,
                };
            }
        }
        Ok(())
    }

    fn apply_queue(q: &TransactionalTree, op: &QueueOp) -> Tx<()> {
        let bad = |_| ConflictableTransactionError::Abort(Conflict::Taken);
        match op {
            QueueOp::Put(item) => {
                q.insert(item.session.as_bytes(), enc(item).map_err(bad)?)?;
            }
            QueueOp::Remove(s) => {
                q.remove(s.as_bytes())?;
            }
            QueueOp::Claim { session, operator } => {
                let Some(old) = q.get(session.as_bytes())? else {
                    return abort(Conflict::Taken);
                };
                let mut item: QueueItem = dec(&old).map_err(bad)?;
                if item.operator.as_deref().is_some_and(|o| o != operator) {
                    return abort(Conflict::Taken);
                }
                item.operator = Some(operator.clone());
                q.insert(session.as_bytes(), enc(&item).map_err(bad)?)?;
            }
        }
        Ok(())
    }

    /// The outbox messages of a commit, with their sequence numbers and time.
    fn append_outbox(
        t: &[TransactionalTree],
        session: &SessionKey,
        msgs: &[serde_json::Value],
        at: i64,
    ) -> Tx<Vec<serde_json::Value>> {
        let counter = format!("seq\u{0}{session}");
        let mut seq = be_u64(t[META].get(counter.as_bytes())?);
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            seq += 1;
            let mut m = m.clone();
            m["seq"] = seq.into();
            m["at"] = at.into();
            let bytes =
                enc(&m).map_err(|_| ConflictableTransactionError::Abort(Conflict::Taken))?;
            t[OUTBOX].insert(outbox_key(session, seq), bytes)?;
            out.push(m);
        }
        t[META].insert(counter.as_bytes(), &seq.to_be_bytes())?;
        Ok(out)
    }
}

impl Storage for Store {
    fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .context("cannot write the database to disk")?;
        Ok(())
    }

    fn salt(&self) -> Result<String> {
        if let Some(v) = self.meta.get("salt")? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let s = format!("{:032x}", rand::random::<u128>());
        let _ = self
            .meta
            .compare_and_swap("salt", None as Option<&[u8]>, Some(s.as_bytes()))?;
        Ok(String::from_utf8_lossy(&self.meta.get("salt")?.unwrap_or_default()).into_owned())
    }

    fn commit(&self, w: &TurnWrites) -> Result<std::result::Result<Committed, Conflict>> {
        let mut plan = w.forget.as_ref().map(|f| self.plan_forget(f)).transpose()?;
        let mut log = w.log.clone();
        if let (Some(p), Some(e), Some(f)) = (&mut plan, &mut log, &w.forget) {
            p.unlink(e, &f.pseudonym);
        }
        let log = log.as_ref().map(enc).transpose()?;
        let log_id = self.db.generate_id()?;
        let fb: Vec<(u64, Vec<u8>)> = w
            .feedback
            .iter()
            .map(|f| Ok((self.db.generate_id()?, enc(f)?)))
            .collect::<Result<_>>()?;
        let cbs: Vec<(u64, Vec<u8>)> = w
            .callbacks
            .iter()
            .map(|c| Ok((c.id, enc(c)?)))
            .collect::<Result<_>>()?;
        let consent = w
            .consent
            .as_ref()
            .map(|(u, c)| Ok::<_, anyhow::Error>((u.clone(), enc(c)?)))
            .transpose()?;
        let outbox_session = w.session.as_ref().map(|(k, _)| k.clone());
        let at = now_s();
        let trees = [
            &self.sessions,
            &self.log,
            &self.seen,
            &self.undelivered,
            &self.consent,
            &self.slots,
            &self.appointments,
            &self.callbacks,
            &self.feedback,
            &self.queue,
            &self.outbox,
            &self.meta,
            &self.records,
        ];
        let r = trees[..].transaction(|t| -> Tx<Committed> {
            let mut done = Committed::default();
            for op in &w.bookings {
                done.bookings.push(Self::apply_booking(t, op)?);
            }
            for op in &w.queue {
                Self::apply_queue(&t[QUEUE], op)?;
            }
            if let Some((k, s)) = &w.session {
                t[SESSIONS].insert(k.to_string().as_bytes(), s.as_slice())?;
            }
            if let Some(l) = &log {
                t[LOG].insert(&log_id.to_be_bytes(), l.as_slice())?;
            }
            if let Some(m) = &w.marker {
                t[SEEN].insert(m.as_bytes(), &at.to_be_bytes())?;
            }
            if let Some((u, c)) = &consent {
                t[CONSENT].insert(u.as_bytes(), c.as_slice())?;
            }
            for (id, c) in &cbs {
                t[CALLBACKS].insert(&id.to_be_bytes(), c.as_slice())?;
            }
            for (id, f) in &fb {
                t[FEEDBACK].insert(&id.to_be_bytes(), f.as_slice())?;
            }
            if let Some(p) = &plan {
                for id in &p.callbacks {
                    t[CALLBACKS].remove(&id.to_be_bytes())?;
                }
                for (id, a) in &p.appointments {
                    t[APPOINTMENTS].insert(&id.to_be_bytes(), a.as_slice())?;
                }
                for (k, v) in &p.outbox {
                    t[OUTBOX].insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &p.undelivered {
                    t[UNDELIVERED].insert(k.as_bytes(), v.as_slice())?;
                }
                for (k, v) in &p.log {
                    t[LOG].insert(k.as_slice(), v.as_slice())?;
                }
            }
            if !w.outbox.is_empty() {
                let Some(k) = &outbox_session else {
                    return abort(Conflict::Taken);
                };
                done.outbox = Self::append_outbox(t, k, &w.outbox, at)?;
            }
            for (k, r) in &w.undelivered {
                t[UNDELIVERED].insert(k.as_bytes(), r.as_slice())?;
            }
            for op in &w.records {
                Self::apply_record(&t[RECORDS], op)?;
            }
            Ok(done)
        });
        let r = match r {
            Ok(c) => Ok(c),
            Err(TransactionError::Abort(c)) => return Ok(Err(c)),
            Err(TransactionError::Storage(e)) => {
                Err(anyhow::anyhow!("cannot save the conversation: {e}"))
            }
        }?;
        self.flush()?;
        Ok(Ok(r))
    }

    fn session_raw(&self, key: &SessionKey) -> Result<Option<Vec<u8>>> {
        Ok(self.sessions.get(key.to_string())?.map(|v| v.to_vec()))
    }

    fn session_keys(&self) -> Result<Vec<SessionKey>> {
        self.sessions
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                let s = String::from_utf8_lossy(&k);
                SessionKey::parse(&s).with_context(|| format!("bad session key {s:?}"))
            })
            .collect()
    }

    fn log_entries(&self) -> Result<Vec<LogEntry>> {
        self.log.iter().values().map(|v| dec(&v?)).collect()
    }

    fn log_append(&self, entries: &[LogEntry]) -> Result<()> {
        for e in entries {
            let id = self.db.generate_id()?;
            self.log.insert(id.to_be_bytes(), enc(e)?)?;
        }
        self.flush()
    }

    fn consent(&self, user: &str) -> Result<Option<Consent>> {
        self.consent.get(user)?.map(|b| dec(&b)).transpose()
    }

    fn appointment(&self, id: u64) -> Result<Option<Appointment>> {
        self.appointments
            .get(id.to_be_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    fn appointments(&self) -> Result<Vec<Appointment>> {
        self.appointments
            .iter()
            .values()
            .map(|v| dec(&v?))
            .collect()
    }

    fn booked(&self, service: &str, office: &str, date: &str, time: &str) -> Result<u32> {
        Ok(count(
            self.slots
                .get(super::slot_key(service, office, date, time))?,
        ))
    }

    fn callbacks(&self) -> Result<Vec<Callback>> {
        self.callbacks.iter().values().map(|v| dec(&v?)).collect()
    }

    fn feedback(&self) -> Result<Vec<Feedback>> {
        self.feedback.iter().values().map(|v| dec(&v?)).collect()
    }

    fn queue(&self) -> Result<Vec<QueueItem>> {
        let mut v: Vec<QueueItem> = self
            .queue
            .iter()
            .values()
            .map(|v| dec(&v?))
            .collect::<Result<_>>()?;
        v.sort_by_key(|q| q.since);
        Ok(v)
    }

    fn seed_status(&self, number: &str, s: &AppStatus) -> Result<()> {
        if self.status.get(number)?.is_none() {
            self.status.insert(number, enc(s)?)?;
        }
        Ok(())
    }

    fn status(&self, number: &str) -> Result<Option<AppStatus>> {
        self.status.get(number)?.map(|b| dec(&b)).transpose()
    }

    fn outbox_since(&self, session: &SessionKey, seq: u64) -> Result<Vec<serde_json::Value>> {
        let from = outbox_key(session, seq.saturating_add(1));
        let to = outbox_key(session, u64::MAX);
        self.outbox
            .range(from..=to)
            .values()
            .map(|v| dec(&v?))
            .collect()
    }

    fn marked(&self, marker: &str) -> Result<bool> {
        Ok(self.seen.contains_key(marker.as_bytes())?)
    }

    fn mark(&self, marker: &str) -> Result<()> {
        self.seen
            .insert(marker.as_bytes(), &now_s().to_be_bytes())?;
        self.flush()
    }

    fn undelivered(&self, marker: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
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

    fn delivered(&self, marker: &str) -> Result<()> {
        self.undelivered.remove(marker)?;
        self.flush()
    }

    fn record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(record_key(kind, key))?.map(|v| v.to_vec()))
    }

    fn records(&self, kind: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let skip = kind.len() + 1;
        self.records
            .scan_prefix(record_key(kind, prefix))
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k[skip..]).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        self.flush()
    }

    fn signin_put(&self, key: &str, login: &str, expires: i64, now: i64) -> Result<()> {
        for kv in self.signins.iter() {
            let (k, v) = kv?;
            if dec::<(String, i64)>(&v).map_or(true, |(_, exp)| exp <= now) {
                self.signins.remove(k)?;
            }
        }
        self.signins.insert(key, enc(&(login, expires))?)?;
        self.flush()
    }

    fn signin_get(&self, key: &str, now: i64) -> Result<Option<String>> {
        let Some(v) = self.signins.get(key)? else {
            return Ok(None);
        };
        let (login, expires): (String, i64) = dec(&v)?;
        Ok((expires > now).then_some(login))
    }

    fn signin_remove(&self, key: &str) -> Result<()> {
        self.signins.remove(key)?;
        self.flush()
    }

    fn remove_conversation(&self, key: &SessionKey) -> Result<()> {
        let keys: Vec<sled::IVec> = self
            .outbox
            .scan_prefix(outbox_prefix(key))
            .keys()
            .collect::<sled::Result<_>>()?;
        let counter = format!("seq\u{0}{key}");
        (&self.sessions, &self.outbox, &self.meta)
            .transaction(|(sessions, outbox, meta)| {
                sessions.remove(key.to_string().as_bytes())?;
                for k in &keys {
                    outbox.remove(k)?;
                }
                meta.remove(counter.as_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("cannot remove {key}: {e:?}"))?;
        self.flush()
    }

    fn sweep(&self, now: i64, keep: &Retention) -> Result<Swept> {
        let mut n = Swept::default();
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            // Markers from before timestamps were kept read as 0: swept.
            let at = i64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]));
            if now - at > keep.seen_s {
                self.seen.remove(k)?;
                n.seen += 1;
            }
        }
        let at_of = |v: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(v)
                .ok()
                .and_then(|m| m["at"].as_i64())
                .unwrap_or(0)
        };
        for kv in self.outbox.iter() {
            let (k, v) = kv?;
            if now - at_of(&v) > keep.outbox_s {
                self.outbox.remove(k)?;
                n.outbox += 1;
            }
        }
        for kv in self.undelivered.iter() {
            let (k, v) = kv?;
            if now - at_of(&v) > keep.undelivered_s {
                self.undelivered.remove(k)?;
                n.undelivered += 1;
            }
        }
        // The log is in the order it was written: the sweep stops at the
        // first entry young enough to keep.
        for kv in self.log.iter() {
            let (k, v) = kv?;
            let ts = serde_json::from_slice::<serde_json::Value>(&v)
                .ok()
                .and_then(|e| e["ts"].as_i64())
                .unwrap_or(0);
            if now - ts <= keep.log_s {
                break;
            }
            self.log.remove(k)?;
            n.log += 1;
        }
        self.flush()?;
        Ok(n)
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
