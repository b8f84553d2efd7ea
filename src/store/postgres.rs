//! The shared backend: `Storage` on PostgreSQL, so that several instances
//! serve one database. A turn is one transaction (READ COMMITTED with row
//! locks): a slot's counter is raised by one `INSERT … ON CONFLICT DO UPDATE
//! … WHERE booked < capacity`, owned appointments, queue items and swapped
//! records are read `FOR UPDATE`, so a race between instances is a
//! `Conflict`, never a double booking. Ids come from a sequence. Versioned
//! migrations (`migrations/*.sql`) are applied at start-up under an
//! advisory lock, so instances starting together do not race.
//!
//! Also here, because they need the database's own connections: the
//! conversation lock across instances (`PgLocks`, an advisory lock held on a
//! pooled connection for the turn), the leadership of one instance
//! (`try_lead`, an advisory lock on a dedicated connection), and the news
//! between instances (`announce`/`news`: NOTIFY and LISTEN on channel
//! `otklik`).
//!
//! The client is tokio-postgres with a deadpool pool, run on a small tokio
//! runtime of the store's own. The `Storage` trait is synchronous and is
//! called from the engine's blocking threads and from async handlers alike;
//! the synchronous `postgres` crate blocks with `Runtime::block_on`, which
//! panics inside a tokio runtime. Here each call is spawned on the store's
//! runtime and the caller waits on a channel, which is safe on any thread
//! (the store's runtime never calls back into it).

use super::{
    dec, enc, scrub_message, AppStatus, Appointment, BookingError, BookingOp, Callback, Committed,
    Conflict, Consent, ConversationLock, Feedback, LocalLocks, LockGuard, News, QueueItem, QueueOp,
    RecordOp, Retention, SessionKey, Storage, Swept, TurnWrites, Unavailable, Unlink,
};
use crate::analytics::LogEntry;
use anyhow::{anyhow, Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::broadcast;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

type PgTx<'a> = tokio_postgres::Transaction<'a>;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_init.sql"))];

/// Advisory lock keys of our own (conversations use hashes of their keys).
const MIGRATE_KEY: i64 = 0x6f74_6b6c_0001;
/// The NOTIFY channel of the news between instances.
const CHANNEL: &str = "otklik";

type Sql<'a> = &'a (dyn ToSql + Sync);

/// How to connect: the parsed URL and its TLS.
#[derive(Clone)]
struct Connect {
    cfg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connect {
    fn new(url: &str, ca_file: &str) -> Result<Self> {
        let cfg: tokio_postgres::Config = url
            .parse()
            .context("storage.url is not a PostgreSQL URL (postgres://user:password@host/db)")?;
        let tls = match cfg.get_ssl_mode() {
            SslMode::Require => Some(tls(ca_file)?),
            _ => None,
        };
        Ok(Self { cfg, tls })
    }

    fn manager(&self) -> Manager {
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        match &self.tls {
            Some(t) => Manager::from_config(self.cfg.clone(), t.clone(), mc),
            None => Manager::from_config(self.cfg.clone(), NoTls, mc),
        }
    }

    /// A connection of its own, outside the pool (LISTEN, leadership): the
    /// client, and its connection driven on the store's runtime; the
    /// receiver gets the notifications.
    async fn dedicated(
        &self,
    ) -> Result<(
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    )> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = match &self.tls {
            Some(t) => {
                let (c, conn) = self.cfg.connect(t.clone()).await?;
                tokio::spawn(drive(conn, tx));
                c
            }
            None => {
                let (c, conn) = self.cfg.connect(NoTls).await?;
                tokio::spawn(drive(conn, tx));
                c
            }
        };
        Ok((client, rx))
    }
}

/// Drives a dedicated connection, passing its notifications on.
async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_postgres::AsyncMessage;
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                let _ = tx.send(n);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!("postgres: a dedicated connection ended: {e}");
                return;
            }
            None => return,
        }
    }
}

/// TLS by rustls: the CA in `ca_file` (PEM) when given, or the web PKI's.
fn tls(ca_file: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for c in CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("cannot read storage.ca_file {ca_file}"))?
        {
            roots.add(c?)?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

struct Inner {
    pool: Pool,
    /// Connections holding conversation locks (apart, so that held locks
    /// never starve the commits).
    lock_pool: Pool,
    connect: Connect,
    /// This instance, in its notifications (its own are not news to it).
    instance: u64,
    /// News to send, in order, on one connection.
    outgoing: tokio::sync::mpsc::Sender<News>,
    incoming: broadcast::Sender<News>,
}

pub struct PgStore {
    inner: Arc<Inner>,
    rt: Option<Runtime>,
    local: LocalLocks,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; this does not wait.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn id64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The advisory lock key of a name (a conversation, a leadership).
fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(name.as_bytes());
    i64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// Why a commit's transaction ended early: a condition, or a database error.
enum Abort {
    Conflict(Conflict),
    Db(anyhow::Error),
}

impl From<anyhow::Error> for Abort {
    fn from(e: anyhow::Error) -> Self {
        Abort::Db(e)
    }
}

impl From<tokio_postgres::Error> for Abort {
    fn from(e: tokio_postgres::Error) -> Self {
        Abort::Db(e.into())
    }
}

type Tx<T> = std::result::Result<T, Abort>;

fn conflict<T>(c: impl Into<Conflict>) -> Tx<T> {
    Err(Abort::Conflict(c.into()))
}

/// An error of the connection rather than of the query (the server went
/// away, is shutting down or starting): the store is unavailable.
fn lost(e: anyhow::Error) -> anyhow::Error {
    let gone = e
        .chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|pe| match pe.code() {
            None => true,
            Some(c) => {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P")
            }
        });
    if gone && !Unavailable::is(&e) {
        anyhow::Error::new(Unavailable(format!("{e:#}")))
    } else {
        e
    }
}

/// A deadlock or serialisation failure: the commit runs again.
fn retryable(e: &anyhow::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

impl PgStore {
    /// Connects to `url`, applies the migrations not yet applied, and
    /// starts the news between instances.
    pub fn open(url: &str, pool_size: usize, ca_file: &str) -> Result<Self> {
        let s = Self::connect(url, pool_size, ca_file)?;
        s.run({
            let inner = s.inner.clone();
            async move { migrate(&inner.pool).await }
        })?;
        s.start_news();
        Ok(s)
    }

    /// Applies the migrations and nothing else (`otklik migrate`): the
    /// versions applied now.
    pub fn migrate_only(url: &str, ca_file: &str) -> Result<Vec<i32>> {
        let s = Self::connect(url, 1, ca_file)?;
        s.run({
            let inner = s.inner.clone();
            async move { migrate(&inner.pool).await }
        })
    }

    fn connect(url: &str, pool_size: usize, ca_file: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otklik-pg")
            .enable_all()
            .build()?;
        let connect = Connect::new(url, ca_file)?;
        let build = |size: usize| {
            Pool::builder(connect.manager())
                .max_size(size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(5)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
        };
        let (outgoing, out_rx) = tokio::sync::mpsc::channel(4096);
        let inner = Arc::new(Inner {
            pool: build(pool_size)?,
            lock_pool: build(pool_size.max(4) * 2)?,
            connect,
            instance: rand::random(),
            outgoing,
            incoming: broadcast::channel(1024).0,
        });
        let s = Self {
            inner,
            rt: Some(rt),
            local: LocalLocks::default(),
        };
        // Fail early and clearly when the database cannot be reached.
        s.run({
            let inner = s.inner.clone();
            async move {
                let _ = inner
                    .pool
                    .get()
                    .await
                    .map_err(|e| anyhow!("cannot connect to PostgreSQL (storage.url): {e}"))?;
                Ok(())
            }
        })?;
        s.rt().spawn(publish(s.inner.clone(), out_rx));
        Ok(s)
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("the store's runtime")
    }

    /// Runs `f` on the store's runtime and waits for it (see the header).
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| anyhow!("the database task stopped"))?
    }

    /// A pooled connection and `f` over it, waited for.
    fn with<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let c = pool
                .get()
                .await
                .map_err(|e| anyhow::Error::new(Unavailable(e.to_string())))?;
            f(c).await.map_err(lost)
        })
    }

    fn query_values(
        &self,
        sql: &'static str,
        args: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Vec<Vec<u8>>> {
        self.with(move |c| async move {
            let params: Vec<Sql> = args.iter().map(|a| a.as_ref() as Sql).collect();
            let rows = c.query(sql, &params).await?;
            Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
        })
    }

    fn exec(&self, sql: &'static str, args: Vec<Box<dyn ToSql + Sync + Send>>) -> Result<u64> {
        self.with(move |c| async move {
            let params: Vec<Sql> = args.iter().map(|a| a.as_ref() as Sql).collect();
            Ok(c.execute(sql, &params).await?)
        })
    }

    fn one_value(
        &self,
        sql: &'static str,
        args: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self.query_values(sql, args)?.into_iter().next())
    }

    /// Listens for the other instances' news and passes it to `news()`'s
    /// receivers; reconnects when the connection drops.
    fn start_news(&self) {
        let inner = self.inner.clone();
        self.rt().spawn(async move {
            loop {
                match inner.connect.dedicated().await {
                    Ok((client, mut rx)) => {
                        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                            tracing::warn!("postgres: LISTEN: {e}");
                        } else {
                            // Whatever was missed meanwhile is in the outboxes:
                            // the consoles refresh, the web clients resume.
                            let _ = inner.incoming.send(News::Queue);
                            while let Some(n) = rx.recv().await {
                                if let Some(news) = parse_news(n.payload(), inner.instance) {
                                    let _ = inner.incoming.send(news);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!("postgres: cannot listen for news: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// `instance|news-json`; none for this instance's own.
fn parse_news(payload: &str, me: u64) -> Option<News> {
    let (from, body) = payload.split_once('|')?;
    if from.parse::<u64>().ok()? == me {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Sends the news in order on one pooled connection.
async fn publish(inner: Arc<Inner>, mut rx: tokio::sync::mpsc::Receiver<News>) {
    while let Some(n) = rx.recv().await {
        let Ok(body) = serde_json::to_string(&n) else {
            continue;
        };
        let payload = format!("{}|{body}", inner.instance);
        let sent = async {
            let c = inner.pool.get().await?;
            c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await?;
            Ok::<_, anyhow::Error>(())
        };
        if let Err(e) = sent.await {
            // The outbox stays the source of truth: a client catches up
            // when it reconnects.
            tracing::debug!("postgres: news not sent: {e}");
        }
    }
}

/// Applies the migrations not yet applied, one transaction each, under an
/// advisory lock: the versions applied now.
async fn migrate(pool: &Pool) -> Result<Vec<i32>> {
    let mut c = pool.get().await?;
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_KEY])
        .await?;
    let r = async {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let mut done = Vec::new();
        for (v, sql) in MIGRATIONS {
            let t = c.transaction().await?;
            let have = t
                .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[v])
                .await?
                .is_some();
            if !have {
                t.batch_execute(sql)
                    .await
                    .with_context(|| format!("migration {v:04}"))?;
                t.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[v])
                    .await?;
                done.push(*v);
            }
            t.commit().await?;
        }
        Ok::<_, anyhow::Error>(done)
    }
    .await;
    let unlocked = c
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_KEY])
        .await;
    let done = r?;
    unlocked?;
    if !done.is_empty() {
        tracing::info!("postgres: migrations applied: {done:?}");
    }
    Ok(done)
}

/// The appointment `id` if it belongs to `user`, locked for the commit.
async fn owned(t: &PgTx<'_>, id: u64, user: &str) -> Tx<Appointment> {
    let row = t
        .query_opt(
            "SELECT value FROM appointments WHERE id = $1 FOR UPDATE",
            &[&id64(id)],
        )
        .await?;
    match row.map(|r| dec::<Appointment>(r.get(0))) {
        Some(Ok(a)) if a.user == user => Ok(a),
        _ => conflict(BookingError::NotFound),
    }
}

/// Takes one place in a slot unless `capacity` are taken.
async fn take_place(t: &PgTx<'_>, slot: &str, capacity: u32) -> Tx<()> {
    if capacity == 0 {
        return conflict(BookingError::SlotTaken);
    }
    let cap = capacity.min(i32::MAX as u32) as i32;
    let got = t
        .query_opt(
            "INSERT INTO slots (key, booked) VALUES ($1, 1)
             ON CONFLICT (key) DO UPDATE SET booked = slots.booked + 1
             WHERE slots.booked < $2
             RETURNING booked",
            &[&slot, &cap],
        )
        .await?;
    match got {
        Some(_) => Ok(()),
        None => conflict(BookingError::SlotTaken),
    }
}

async fn free_place(t: &PgTx<'_>, slot: &str) -> Tx<()> {
    t.execute(
        "UPDATE slots SET booked = greatest(booked - 1, 0) WHERE key = $1",
        &[&slot],
    )
    .await?;
    Ok(())
}

async fn store_appointment(t: &PgTx<'_>, a: &Appointment) -> Tx<()> {
    t.execute(
        "INSERT INTO appointments (id, user_key, value) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET user_key = $2, value = $3",
        &[&id64(a.id), &a.user, &enc(a)?],
    )
    .await?;
    Ok(())
}

async fn apply_booking(t: &PgTx<'_>, op: &BookingOp) -> Tx<Appointment> {
    match op {
        BookingOp::Book {
            appointment,
            capacity,
        } => {
            take_place(t, &appointment.slot(), *capacity).await?;
            store_appointment(t, appointment).await?;
            Ok(appointment.clone())
        }
        BookingOp::Cancel { id, user } => {
            let a = owned(t, *id, user).await?;
            free_place(t, &a.slot()).await?;
            t.execute("DELETE FROM appointments WHERE id = $1", &[&id64(*id)])
                .await?;
            Ok(a)
        }
        BookingOp::Move {
            id,
            user,
            date,
            time,
            capacity,
        } => {
            let old = owned(t, *id, user).await?;
            let mut new = old.clone();
            new.date = date.clone();
            new.time = time.clone();
            if old.slot() != new.slot() {
                take_place(t, &new.slot(), *capacity).await?;
                free_place(t, &old.slot()).await?;
            }
            store_appointment(t, &new).await?;
            Ok(new)
        }
    }
}

async fn apply_queue(t: &PgTx<'_>, op: &QueueOp) -> Tx<()> {
    let put = |item: &QueueItem| -> Tx<(String, i64, Vec<u8>)> {
        Ok((item.session.clone(), item.since, enc(item)?))
    };
    match op {
        QueueOp::Put(item) => {
            let (s, since, v) = put(item)?;
            t.execute(
                "INSERT INTO queue (session, since, value) VALUES ($1, $2, $3)
                 ON CONFLICT (session) DO UPDATE SET since = $2, value = $3",
                &[&s, &since, &v],
            )
            .await?;
        }
        QueueOp::Remove(s) => {
            t.execute("DELETE FROM queue WHERE session = $1", &[s])
                .await?;
        }
        QueueOp::Claim { session, operator } => {
            let Some(row) = t
                .query_opt(
                    "SELECT value FROM queue WHERE session = $1 FOR UPDATE",
                    &[session],
                )
                .await?
            else {
                return conflict(Conflict::Taken);
            };
            let Ok(mut item) = dec::<QueueItem>(row.get(0)) else {
                return conflict(Conflict::Taken);
            };
            if item.operator.as_deref().is_some_and(|o| o != operator) {
                return conflict(Conflict::Taken);
            }
            item.operator = Some(operator.clone());
            t.execute(
                "UPDATE queue SET value = $2 WHERE session = $1",
                &[session, &enc(&item)?],
            )
            .await?;
        }
    }
    Ok(())
}

async fn apply_record(t: &PgTx<'_>, op: &RecordOp) -> Tx<()> {
    match op {
        RecordOp::Put { kind, key, value } => {
            t.execute(
                "INSERT INTO records (kind, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key) DO UPDATE SET value = $3",
                &[kind, key, value],
            )
            .await?;
        }
        RecordOp::Remove { kind, key } => {
            t.execute(
                "DELETE FROM records WHERE kind = $1 AND key = $2",
                &[kind, key],
            )
            .await?;
        }
        RecordOp::Swap {
            kind,
            key,
            expected: None,
            value,
        } => {
            // No row to lock: the primary key decides between racers.
            match value {
                Some(v) => {
                    let n = t
                        .execute(
                            "INSERT INTO records (kind, key, value) VALUES ($1, $2, $3)
                             ON CONFLICT (kind, key) DO NOTHING",
                            &[kind, key, v],
                        )
                        .await?;
                    if n != 1 {
                        return conflict(Conflict::Changed);
                    }
                }
                None => {
                    let there = t
                        .query_opt(
                            "SELECT 1 FROM records WHERE kind = $1 AND key = $2",
                            &[kind, key],
                        )
                        .await?;
                    if there.is_some() {
                        return conflict(Conflict::Changed);
                    }
                }
            }
        }
        RecordOp::Swap {
            kind,
            key,
            expected: Some(e),
            value,
        } => {
            let row = t
                .query_opt(
                    "SELECT value FROM records WHERE kind = $1 AND key = $2 FOR UPDATE",
                    &[kind, key],
                )
                .await?;
            if row.map(|r| r.get::<_, Vec<u8>>(0)).as_ref() != Some(e) {
                return conflict(Conflict::Changed);
            }
            match value {
                Some(v) => {
                    t.execute(
                        "UPDATE records SET value = $3 WHERE kind = $1 AND key = $2",
                        &[kind, key, v],
                    )
                    .await?
                }
                None => {
                    t.execute(
                        "DELETE FROM records WHERE kind = $1 AND key = $2",
                        &[kind, key],
                    )
                    .await?
                }
            };
        }
    }
    Ok(())
}

/// A withdrawal, inside the commit's transaction: the client's callbacks
/// deleted, the names on their appointments removed, their outbox and
/// undelivered replies scrubbed, their log entries re-keyed. Runs first, so
/// what the same commit adds is left as given.
async fn forget(t: &PgTx<'_>, f: &super::Forget, unlink: &mut Unlink) -> Tx<()> {
    let user = f.key.to_string();
    t.execute("DELETE FROM callbacks WHERE user_key = $1", &[&user])
        .await?;
    for r in t
        .query(
            "SELECT id, value FROM appointments WHERE user_key = $1 FOR UPDATE",
            &[&user],
        )
        .await?
    {
        let mut a: Appointment = dec(r.get(1))?;
        if a.name.take().is_some() {
            t.execute(
                "UPDATE appointments SET value = $2 WHERE id = $1",
                &[&r.get::<_, i64>(0), &enc(&a)?],
            )
            .await?;
        }
    }
    for r in t
        .query(
            "SELECT seq, value FROM outbox WHERE session = $1 FOR UPDATE",
            &[&user],
        )
        .await?
    {
        let mut m: serde_json::Value = dec(r.get(1))?;
        scrub_message(&mut m, &f.values);
        t.execute(
            "UPDATE outbox SET value = $3 WHERE session = $1 AND seq = $2",
            &[&user, &r.get::<_, i64>(0), &enc(&m)?],
        )
        .await?;
    }
    let prefix = format!("{}:", f.key.channel);
    for r in t
        .query(
            "SELECT marker, value FROM undelivered WHERE starts_with(marker, $1) FOR UPDATE",
            &[&prefix],
        )
        .await?
    {
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(r.get(1)) else {
            continue;
        };
        if v["user"].as_str() == Some(f.key.user.as_str()) {
            if let Some(turn) = v.get_mut("turn") {
                scrub_message(turn, &f.values);
            }
            t.execute(
                "UPDATE undelivered SET value = $2 WHERE marker = $1",
                &[&r.get::<_, String>(0), &enc(&v)?],
            )
            .await?;
        }
    }
    if !f.pseudonym.is_empty() {
        for r in t
            .query(
                "SELECT id, value FROM log WHERE client = $1 ORDER BY id FOR UPDATE",
                &[&f.pseudonym],
            )
            .await?
        {
            let mut e: LogEntry = dec(r.get(1))?;
            unlink.apply(&mut e, &f.pseudonym);
            t.execute(
                "UPDATE log SET client = $2, value = $3 WHERE id = $1",
                &[&r.get::<_, i64>(0), &e.client, &enc(&e)?],
            )
            .await?;
        }
    }
    Ok(())
}

async fn insert_log(t: &PgTx<'_>, e: &LogEntry) -> Tx<()> {
    t.execute(
        "INSERT INTO log (client, ts, value) VALUES ($1, $2, $3)",
        &[&e.client, &e.ts, &enc(e)?],
    )
    .await?;
    Ok(())
}

/// The `at` of a stored message or record (0 when it has none).
fn at_of(v: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(v)
        .ok()
        .and_then(|m| m["at"].as_i64())
        .unwrap_or(0)
}

/// Everything a turn writes, in one transaction.
async fn commit_in(c: &mut Object, w: &TurnWrites) -> Tx<Committed> {
    let t = c.transaction().await?;
    let at = now_s();
    let mut done = Committed::default();
    let mut unlink = Unlink::default();
    if let Some(f) = &w.forget {
        forget(&t, f, &mut unlink).await?;
    }
    for op in &w.bookings {
        done.bookings.push(apply_booking(&t, op).await?);
    }
    for op in &w.queue {
        apply_queue(&t, op).await?;
    }
    if let Some((k, s)) = &w.session {
        t.execute(
            "INSERT INTO sessions (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&k.to_string(), s],
        )
        .await?;
    }
    if let Some(e) = &w.log {
        let mut e = e.clone();
        if let Some(f) = &w.forget {
            unlink.apply(&mut e, &f.pseudonym);
        }
        insert_log(&t, &e).await?;
    }
    if let Some(m) = &w.marker {
        t.execute(
            "INSERT INTO seen (marker, at) VALUES ($1, $2)
             ON CONFLICT (marker) DO UPDATE SET at = $2",
            &[m, &at],
        )
        .await?;
    }
    if let Some((u, consent)) = &w.consent {
        t.execute(
            "INSERT INTO consent (user_key, value) VALUES ($1, $2)
             ON CONFLICT (user_key) DO UPDATE SET value = $2",
            &[u, &enc(consent)?],
        )
        .await?;
    }
    for cb in &w.callbacks {
        t.execute(
            "INSERT INTO callbacks (id, user_key, value) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET user_key = $2, value = $3",
            &[&id64(cb.id), &cb.user, &enc(cb)?],
        )
        .await?;
    }
    for f in &w.feedback {
        t.execute("INSERT INTO feedback (value) VALUES ($1)", &[&enc(f)?])
            .await?;
    }
    if !w.outbox.is_empty() {
        let Some((k, _)) = &w.session else {
            return conflict(Conflict::Taken);
        };
        let session = k.to_string();
        let n = w.outbox.len() as i64;
        let last: i64 = t
            .query_one(
                "INSERT INTO outbox_seq (session, seq) VALUES ($1, $2)
                 ON CONFLICT (session) DO UPDATE SET seq = outbox_seq.seq + $2
                 RETURNING seq",
                &[&session, &n],
            )
            .await?
            .get(0);
        for (i, m) in w.outbox.iter().enumerate() {
            let seq = last - n + 1 + i as i64;
            let mut m = m.clone();
            m["seq"] = seq.into();
            m["at"] = at.into();
            t.execute(
                "INSERT INTO outbox (session, seq, at, value) VALUES ($1, $2, $3, $4)",
                &[&session, &seq, &at, &enc(&m)?],
            )
            .await?;
            done.outbox.push(m);
        }
    }
    for (k, r) in &w.undelivered {
        t.execute(
            "INSERT INTO undelivered (marker, at, value) VALUES ($1, $2, $3)
             ON CONFLICT (marker) DO UPDATE SET at = $2, value = $3",
            &[k, &at_of(r), r],
        )
        .await?;
    }
    for op in &w.records {
        apply_record(&t, op).await?;
    }
    t.commit().await?;
    Ok(done)
}

impl Storage for PgStore {
    fn next_id(&self) -> Result<u64> {
        self.with(|c| async move {
            let v: i64 = c.query_one("SELECT nextval('ids')", &[]).await?.get(0);
            Ok(v as u64)
        })
    }

    fn flush(&self) -> Result<()> {
        // Every commit is durable when it returns.
        Ok(())
    }

    fn salt(&self) -> Result<String> {
        let s = format!("{:032x}", rand::random::<u128>());
        self.with(move |c| async move {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('salt', $1) ON CONFLICT DO NOTHING",
                &[&s.as_bytes()],
            )
            .await?;
            let v: Vec<u8> = c
                .query_one("SELECT value FROM meta WHERE key = 'salt'", &[])
                .await?
                .get(0);
            Ok(String::from_utf8_lossy(&v).into_owned())
        })
    }

    fn commit(&self, w: &TurnWrites) -> Result<std::result::Result<Committed, Conflict>> {
        let w = Arc::new(w.clone());
        self.with(move |mut c| async move {
            let mut tries = 0;
            loop {
                match commit_in(&mut c, &w).await {
                    Ok(done) => return Ok(Ok(done)),
                    Err(Abort::Conflict(x)) => return Ok(Err(x)),
                    Err(Abort::Db(e)) if retryable(&e) && tries < 3 => tries += 1,
                    Err(Abort::Db(e)) => return Err(e.context("cannot save the conversation")),
                }
            }
        })
    }

    fn session_raw(&self, key: &SessionKey) -> Result<Option<Vec<u8>>> {
        self.one_value(
            "SELECT value FROM sessions WHERE key = $1",
            vec![Box::new(key.to_string())],
        )
    }

    fn session_keys(&self) -> Result<Vec<SessionKey>> {
        let keys: Vec<String> = self.with(|c| async move {
            let rows = c
                .query("SELECT key FROM sessions ORDER BY key", &[])
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        keys.iter()
            .map(|s| SessionKey::parse(s).with_context(|| format!("bad session key {s:?}")))
            .collect()
    }

    fn log_entries(&self) -> Result<Vec<LogEntry>> {
        self.query_values("SELECT value FROM log ORDER BY id", vec![])?
            .iter()
            .map(|v| dec(v))
            .collect()
    }

    fn log_append(&self, entries: &[LogEntry]) -> Result<()> {
        let entries = entries.to_vec();
        self.with(move |mut c| async move {
            let t = c.transaction().await?;
            for e in &entries {
                if let Err(Abort::Db(e)) = insert_log(&t, e).await {
                    return Err(e);
                }
            }
            t.commit().await?;
            Ok(())
        })
    }

    fn consent(&self, user: &str) -> Result<Option<Consent>> {
        self.one_value(
            "SELECT value FROM consent WHERE user_key = $1",
            vec![Box::new(user.to_string())],
        )?
        .map(|b| dec(&b))
        .transpose()
    }

    fn appointment(&self, id: u64) -> Result<Option<Appointment>> {
        self.one_value(
            "SELECT value FROM appointments WHERE id = $1",
            vec![Box::new(id64(id))],
        )?
        .map(|b| dec(&b))
        .transpose()
    }

    fn appointments(&self) -> Result<Vec<Appointment>> {
        self.query_values("SELECT value FROM appointments ORDER BY id", vec![])?
            .iter()
            .map(|v| dec(v))
            .collect()
    }

    fn booked(&self, service: &str, office: &str, date: &str, time: &str) -> Result<u32> {
        let key = super::slot_key(service, office, date, time);
        self.with(move |c| async move {
            let n: Option<i32> = c
                .query_opt("SELECT booked FROM slots WHERE key = $1", &[&key])
                .await?
                .map(|r| r.get(0));
            Ok(n.unwrap_or(0).max(0) as u32)
        })
    }

    fn callbacks(&self) -> Result<Vec<Callback>> {
        self.query_values("SELECT value FROM callbacks ORDER BY id", vec![])?
            .iter()
            .map(|v| dec(v))
            .collect()
    }

    fn feedback(&self) -> Result<Vec<Feedback>> {
        self.query_values("SELECT value FROM feedback ORDER BY id", vec![])?
            .iter()
            .map(|v| dec(v))
            .collect()
    }

    fn queue(&self) -> Result<Vec<QueueItem>> {
        self.query_values("SELECT value FROM queue ORDER BY since, session", vec![])?
            .iter()
            .map(|v| dec(v))
            .collect()
    }

    fn seed_status(&self, number: &str, s: &AppStatus) -> Result<()> {
        self.exec(
            "INSERT INTO status (number, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![Box::new(number.to_string()), Box::new(enc(s)?)],
        )?;
        Ok(())
    }

    fn status(&self, number: &str) -> Result<Option<AppStatus>> {
        self.one_value(
            "SELECT value FROM status WHERE number = $1",
            vec![Box::new(number.to_string())],
        )?
        .map(|b| dec(&b))
        .transpose()
    }

    fn outbox_since(&self, session: &SessionKey, seq: u64) -> Result<Vec<serde_json::Value>> {
        self.query_values(
            "SELECT value FROM outbox WHERE session = $1 AND seq > $2 ORDER BY seq",
            vec![Box::new(session.to_string()), Box::new(id64(seq))],
        )?
        .iter()
        .map(|v| dec(v))
        .collect()
    }

    fn marked(&self, marker: &str) -> Result<bool> {
        let m = marker.to_string();
        self.with(move |c| async move {
            Ok(c.query_opt("SELECT 1 FROM seen WHERE marker = $1", &[&m])
                .await?
                .is_some())
        })
    }

    fn mark(&self, marker: &str) -> Result<()> {
        self.exec(
            "INSERT INTO seen (marker, at) VALUES ($1, $2)
             ON CONFLICT (marker) DO UPDATE SET at = $2",
            vec![Box::new(marker.to_string()), Box::new(now_s())],
        )?;
        Ok(())
    }

    fn undelivered(&self, marker: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
        let m = marker.map(String::from);
        self.with(move |c| async move {
            let rows = match &m {
                None => {
                    c.query("SELECT marker, value FROM undelivered ORDER BY marker", &[])
                        .await?
                }
                Some(m) => {
                    let sub = format!("{m}:");
                    let mut rows = c
                        .query(
                            "SELECT marker, value FROM undelivered
                             WHERE starts_with(marker, $1) ORDER BY marker",
                            &[&sub],
                        )
                        .await?;
                    rows.extend(
                        c.query_opt(
                            "SELECT marker, value FROM undelivered WHERE marker = $1",
                            &[m],
                        )
                        .await?,
                    );
                    rows
                }
            };
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn delivered(&self, marker: &str) -> Result<()> {
        self.exec(
            "DELETE FROM undelivered WHERE marker = $1",
            vec![Box::new(marker.to_string())],
        )?;
        Ok(())
    }

    fn record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.one_value(
            "SELECT value FROM records WHERE kind = $1 AND key = $2",
            vec![Box::new(kind.to_string()), Box::new(key.to_string())],
        )
    }

    fn records(&self, kind: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let (kind, prefix) = (kind.to_string(), prefix.to_string());
        self.with(move |c| async move {
            let rows = c
                .query(
                    "SELECT key, value FROM records
                     WHERE kind = $1 AND starts_with(key, $2) ORDER BY key",
                    &[&kind, &prefix],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.one_value(
            "SELECT value FROM meta WHERE key = $1",
            vec![Box::new(key.to_string())],
        )
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            vec![Box::new(key.to_string()), Box::new(value.to_vec())],
        )?;
        Ok(())
    }

    fn signin_put(&self, key: &str, login: &str, expires: i64, now: i64) -> Result<()> {
        let (key, login) = (key.to_string(), login.to_string());
        self.with(move |c| async move {
            c.execute("DELETE FROM signins WHERE expires <= $1", &[&now])
                .await?;
            c.execute(
                "INSERT INTO signins (key, login, expires) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET login = $2, expires = $3",
                &[&key, &login, &expires],
            )
            .await?;
            Ok(())
        })
    }

    fn signin_get(&self, key: &str, now: i64) -> Result<Option<String>> {
        let key = key.to_string();
        self.with(move |c| async move {
            Ok(c.query_opt(
                "SELECT login FROM signins WHERE key = $1 AND expires > $2",
                &[&key, &now],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn signin_remove(&self, key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM signins WHERE key = $1",
            vec![Box::new(key.to_string())],
        )?;
        Ok(())
    }

    fn remove_conversation(&self, key: &SessionKey) -> Result<()> {
        let key = key.to_string();
        self.with(move |mut c| async move {
            let t = c.transaction().await?;
            t.execute("DELETE FROM sessions WHERE key = $1", &[&key])
                .await?;
            t.execute("DELETE FROM outbox WHERE session = $1", &[&key])
                .await?;
            t.execute("DELETE FROM outbox_seq WHERE session = $1", &[&key])
                .await?;
            t.commit().await?;
            Ok(())
        })
    }

    fn sweep(&self, now: i64, keep: &Retention) -> Result<Swept> {
        let keep = *keep;
        self.with(move |c| async move {
            let n = |x: u64| x as usize;
            let seen = c
                .execute("DELETE FROM seen WHERE at < $1", &[&(now - keep.seen_s)])
                .await?;
            let outbox = c
                .execute(
                    "DELETE FROM outbox WHERE at < $1",
                    &[&(now - keep.outbox_s)],
                )
                .await?;
            let undelivered = c
                .execute(
                    "DELETE FROM undelivered WHERE at < $1",
                    &[&(now - keep.undelivered_s)],
                )
                .await?;
            // The log in the order it was written, up to the first entry
            // young enough to keep (as sled sweeps it).
            let log = c
                .execute(
                    "DELETE FROM log WHERE id < coalesce(
                        (SELECT min(id) FROM log WHERE ts >= $1),
                        (SELECT max(id) + 1 FROM log), 0)",
                    &[&(now - keep.log_s)],
                )
                .await?;
            Ok(Swept {
                seen: n(seen),
                outbox: n(outbox),
                undelivered: n(undelivered),
                log: n(log),
            })
        })
    }

    fn conversation_locks(self: Arc<Self>) -> Arc<dyn ConversationLock> {
        Arc::new(PgLocks { store: self })
    }

    fn announce(&self, news: &News) {
        // Never blocks a turn: when the queue is full the news is dropped,
        // and the outbox still has every message.
        let _ = self.inner.outgoing.try_send(news.clone());
    }

    fn news(&self) -> Option<broadcast::Receiver<News>> {
        Some(self.inner.incoming.subscribe())
    }

    fn try_lead(&self, name: &str) -> Result<Option<Box<dyn super::Leadership>>> {
        let key = lock_key(&format!("leader:{name}"));
        let inner = self.inner.clone();
        let held = self.run(async move {
            let (client, _rx) = inner.connect.dedicated().await?;
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await?
                .get(0);
            Ok(got.then_some(client))
        })?;
        Ok(held.map(|client| {
            Box::new(Lead {
                client: Some(client),
                rt: self.rt().handle().clone(),
            }) as Box<dyn super::Leadership>
        }))
    }
}

/// Leadership: held while its dedicated connection lives (the database
/// releases the lock the moment the connection ends, a crash included).
struct Lead {
    client: Option<tokio_postgres::Client>,
    rt: tokio::runtime::Handle,
}

impl super::Leadership for Lead {
    fn held(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // Dropping the client ends the connection, and with it the lock; the
        // connection's task runs on the store's runtime.
        let c = self.client.take();
        self.rt.spawn(async move { drop(c) });
    }
}

/// Conversation locks across instances: first the in-process lock (so one
/// instance holds at most one connection per conversation), then a
/// session-level advisory lock keyed by the conversation, on a connection
/// of the lock pool kept for the turn. The lock pool holds twice
/// `storage.pool_size` connections; when none frees within its wait
/// timeout (10 s), or the database is down, the turn runs under the
/// in-process lock alone (logged): its commit then fails while the
/// database is down, and conditional writes (slots, claims) are still
/// checked in the commit.
pub struct PgLocks {
    store: Arc<PgStore>,
}

struct PgGuard<'a> {
    _local: Box<dyn LockGuard + 'a>,
    held: Option<(Object, i64)>,
    rt: tokio::runtime::Handle,
}

impl LockGuard for PgGuard<'_> {}

impl Drop for PgGuard<'_> {
    fn drop(&mut self) {
        if let Some((c, key)) = self.held.take() {
            // Unlocked before the connection goes back to the pool; one that
            // cannot unlock is closed (which unlocks too).
            self.rt.spawn(async move {
                if c.execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .is_err()
                {
                    drop(Object::take(c));
                }
            });
        }
    }
}

impl ConversationLock for PgLocks {
    fn lock<'a>(&'a self, key: &str) -> Box<dyn LockGuard + 'a> {
        let local = self.store.local.lock(key);
        let k = lock_key(key);
        let pool = self.store.inner.lock_pool.clone();
        let held = self.store.run(async move {
            let c = pool.get().await?;
            c.execute("SELECT pg_advisory_lock($1)", &[&k]).await?;
            Ok((c, k))
        });
        let held = match held {
            Ok(h) => Some(h),
            Err(e) => {
                // The database is down: the commit will fail and say so; the
                // turn is still serialised within this instance.
                tracing::warn!("postgres: conversation lock: {e:#}");
                None
            }
        };
        Box::new(PgGuard {
            _local: local,
            held,
            rt: self.store.rt().handle().clone(),
        })
    }
}
