//! The storage conformance suite: what every `Storage` backend must do.
//! Each check takes a fresh backend from `open`; `sled` and PostgreSQL (a
//! throwaway cluster, `pg/mod.rs`) run the same checks, and PostgreSQL's
//! two instances on one database share capacity, locks, ids and claims.

mod pg;

use otklik::analytics::LogEntry;
use otklik::store::{
    Appointment, BookingError, BookingOp, Callback, Conflict, ConversationLock, Forget, Keep,
    LocalLocks, PgStore, QueueItem, QueueOp, RecordOp, Retention, SessionKey, Storage, Store,
    TurnWrites,
};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Open<'a> = &'a dyn Fn() -> Arc<dyn Storage>;

fn appt(user: &str, time: &str) -> Appointment {
    Appointment {
        id: 0,
        user: user.into(),
        service: "benefits".into(),
        office: "central".into(),
        date: "2026-11-27".into(),
        time: time.into(),
        name: Some("Иванова Анна".into()),
        created: 0,
    }
}

fn session_bytes(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Everything a turn writes becomes visible together; a refused condition
/// writes nothing at all.
fn atomic_turn_commit(open: Open) {
    let st = open();
    let key = SessionKey::new("web", "alice");
    let mut a = appt("web:alice", "09:00");
    a.id = st.next_id().unwrap();
    let keep = Keep {
        outbox: vec![json!({"type": "msg", "text": "Вы записаны"})],
        undelivered: vec![("telegram:update:1".into(), b"{\"user\":\"1\"}".to_vec())],
        marker: Some("telegram:update:1".into()),
    };
    let mut w = TurnWrites {
        session: Some((key.clone(), session_bytes(json!({"turns": 1})))),
        marker: Some("web:alice:msg:1".into()),
        bookings: vec![BookingOp::Book {
            appointment: a.clone(),
            capacity: 1,
        }],
        callbacks: vec![Callback {
            id: st.next_id().unwrap(),
            user: key.to_string(),
            phone: "+79991112233".into(),
            preferred_time: "утром".into(),
            topic: "пенсия".into(),
            created: 0,
        }],
        ..Default::default()
    };
    w.keep(&keep);
    let done = st.commit(&w).unwrap().unwrap();
    assert_eq!(done.outbox.len(), 1);
    assert_eq!(
        done.outbox[0]["seq"], 1,
        "the outbox numbers messages from 1"
    );
    assert!(st.marked("web:alice:msg:1").unwrap());
    assert_eq!(st.appointments_of("web:alice").unwrap().len(), 1);
    assert_eq!(st.callbacks().unwrap().len(), 1);
    assert_eq!(st.undelivered(None).unwrap().len(), 1);
    assert_eq!(st.outbox_since(&key, 0).unwrap().len(), 1);

    // The same slot again, with a new session state, a marker and a message:
    // the slot is full, so none of it is written.
    let mut b = appt("web:bob", "09:00");
    b.id = st.next_id().unwrap();
    let w = TurnWrites {
        session: Some((key.clone(), session_bytes(json!({"turns": 2})))),
        marker: Some("web:alice:msg:2".into()),
        bookings: vec![BookingOp::Book {
            appointment: b,
            capacity: 1,
        }],
        outbox: vec![json!({"type": "msg", "text": "ещё"})],
        ..Default::default()
    };
    assert_eq!(
        st.commit(&w).unwrap().unwrap_err(),
        Conflict::Booking(BookingError::SlotTaken)
    );
    let s: serde_json::Value = st.session(&key).unwrap().unwrap();
    assert_eq!(s["turns"], 1, "the session stays as it was");
    assert!(!st.marked("web:alice:msg:2").unwrap());
    assert_eq!(st.outbox_since(&key, 0).unwrap().len(), 1);
    assert_eq!(
        st.booked("benefits", "central", "2026-11-27", "09:00")
            .unwrap(),
        1
    );

    // Someone else's appointment cannot be cancelled; one's own can.
    let cancel = |user: &str| TurnWrites {
        bookings: vec![BookingOp::Cancel {
            id: a.id,
            user: user.into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        st.commit(&cancel("web:bob")).unwrap().unwrap_err(),
        Conflict::Booking(BookingError::NotFound)
    );
    st.commit(&cancel("web:alice")).unwrap().unwrap();
    assert_eq!(
        st.booked("benefits", "central", "2026-11-27", "09:00")
            .unwrap(),
        0
    );
}

/// One turn of a conversation at a time (through any of the instances'
/// `locks`); other conversations go on.
fn lock_exclusion(all: &[Arc<dyn ConversationLock>]) {
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let locks = all[0].clone();
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (locks, inside, most) = (all[i % all.len()].clone(), inside.clone(), most.clone());
            sc.spawn(move || {
                for _ in 0..20 {
                    let _g = locks.lock("web:same");
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two turns of one conversation ran at once"
    );
    let held = all[all.len() - 1].lock("web:a");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let _g = locks.lock("web:b");
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("another conversation is not held up");
    });
    drop(held);
}

/// 16 threads book one slot of capacity 3 at once, thread `i` through
/// `stores[i % len]`; how many bookings were accepted.
fn book_from_16_threads(stores: &[Arc<dyn Storage>]) -> usize {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let st = stores[i % stores.len()].clone();
                sc.spawn(move || {
                    st.book(appt(&format!("web:u{i}"), "10:00"), 3)
                        .unwrap()
                        .is_ok()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
    })
}

/// Bookings from 16 threads at once never pass the slot's capacity.
fn booking_capacity_under_threads(open: Open) {
    let st = open();
    let won = book_from_16_threads(std::slice::from_ref(&st));
    assert_eq!(won, 3, "exactly the capacity is booked");
    assert_eq!(
        st.booked("benefits", "central", "2026-11-27", "10:00")
            .unwrap(),
        3
    );
    // Moving into a full slot is refused and keeps the old one.
    let mine = st.appointments_of("web:mover").unwrap();
    assert!(mine.is_empty());
    let a = st.book(appt("web:mover", "11:00"), 3).unwrap().unwrap();
    let mv = TurnWrites {
        bookings: vec![BookingOp::Move {
            id: a.id,
            user: "web:mover".into(),
            date: a.date.clone(),
            time: "10:00".into(),
            capacity: 3,
        }],
        ..Default::default()
    };
    assert_eq!(
        st.commit(&mv).unwrap().unwrap_err(),
        Conflict::Booking(BookingError::SlotTaken)
    );
    assert_eq!(st.appointment(a.id).unwrap().unwrap().time, "11:00");
}

/// Withdrawal deletes or scrubs the client's personal data everywhere it is
/// kept, in the turn's commit, and leaves other clients' data alone.
fn consent_withdrawal_deletes_personal_data(open: Open) {
    let st = open();
    let web = SessionKey::new("web", "carol");
    let tg = SessionKey::new("telegram", "4242");
    let other = SessionKey::new("web", "dave");
    let phone = "+7 999 111-22-33";
    for (key, marker) in [
        (&web, None),
        (&tg, Some("telegram:update:9")),
        (&other, None),
    ] {
        let mut w = TurnWrites {
            session: Some((key.clone(), session_bytes(json!({})))),
            callbacks: vec![Callback {
                id: st.next_id().unwrap(),
                user: key.to_string(),
                phone: phone.into(),
                preferred_time: String::new(),
                topic: String::new(),
                created: 0,
            }],
            ..Default::default()
        };
        let mut a = appt(&key.to_string(), &format!("1{}:00", w.callbacks[0].id % 7));
        a.id = st.next_id().unwrap();
        w.bookings.push(BookingOp::Book {
            appointment: a,
            capacity: 10,
        });
        match marker {
            None => w.outbox.push(json!({"type": "msg", "from": "client", "text": phone})),
            Some(m) => w.undelivered.push((
                m.to_string(),
                serde_json::to_vec(&json!({"user": key.user, "turn": {"text": format!("Перезвоним на номер {phone}")}, "at": 0})).unwrap(),
            )),
        }
        st.commit(&w).unwrap().unwrap();
    }
    for key in [&web, &tg] {
        let w = TurnWrites {
            session: Some((key.clone(), session_bytes(json!({})))),
            forget: Some(Forget {
                key: key.clone(),
                values: vec![phone.to_string(), "Иванова Анна".into()],
                pseudonym: String::new(),
            }),
            outbox: vec![json!({"type": "msg", "text": "Согласие отозвано"})],
            ..Default::default()
        };
        st.commit(&w).unwrap().unwrap();
    }
    let shows = |v: &serde_json::Value| {
        let t = v.to_string();
        t.contains("999") || t.contains("Иванова")
    };
    let outbox = st.outbox_since(&web, 0).unwrap();
    assert_eq!(outbox.len(), 2, "messages stay, scrubbed");
    assert!(!outbox.iter().any(shows), "{outbox:?}");
    for (_, r) in st.undelivered(None).unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert!(!shows(&v), "{v}");
    }
    let callbacks = st.callbacks().unwrap();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(
        callbacks[0].user,
        other.to_string(),
        "only the others' are kept"
    );
    for a in st.appointments().unwrap() {
        assert_eq!(a.name.is_some(), a.user == other.to_string(), "{a:?}");
    }
    assert!(
        shows(&st.outbox_since(&other, 0).unwrap()[0]),
        "others untouched"
    );
}

/// Sweeps drop delivery bookkeeping past its retention and keep the rest.
fn sweeps(open: Open) {
    let st = open();
    let key = SessionKey::new("web", "erin");
    st.commit(&TurnWrites {
        session: Some((key.clone(), session_bytes(json!({})))),
        marker: Some("web:erin:msg:1".into()),
        outbox: vec![json!({"type": "msg", "text": "старое"})],
        undelivered: vec![(
            "telegram:update:5".into(),
            serde_json::to_vec(&json!({"user": "5", "at": 0})).unwrap(),
        )],
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let now = jiff::Timestamp::now().as_second();
    let keep = Retention {
        seen_s: 3600,
        outbox_s: 3600,
        undelivered_s: 3600,
        log_s: 3600,
    };
    let n = st.sweep(now, &keep).unwrap();
    assert_eq!(n.seen + n.outbox, 0, "fresh records stay: {n:?}");
    assert_eq!(n.undelivered, 1, "a reply undelivered since 1970 goes");
    let n = st.sweep(now + 7200, &keep).unwrap();
    assert_eq!((n.seen, n.outbox), (1, 1), "{n:?}");
    assert!(!st.marked("web:erin:msg:1").unwrap());
    assert!(st.outbox_since(&key, 0).unwrap().is_empty());
    // Sequence numbers go on after a sweep: a client never sees one twice.
    let c = st
        .commit(&TurnWrites {
            session: Some((key.clone(), session_bytes(json!({})))),
            outbox: vec![json!({"type": "msg", "text": "новое"})],
            ..Default::default()
        })
        .unwrap()
        .unwrap();
    assert_eq!(c.outbox[0]["seq"], 2);
}

/// A queued conversation is claimed by one operator only.
fn queue_claims(open: Open) {
    let st = open();
    let item = QueueItem {
        session: "web:frank".into(),
        channel: "web".into(),
        segment: "universal".into(),
        intent: None,
        since: 1,
        operator: None,
    };
    let q = |op: QueueOp| TurnWrites {
        queue: vec![op],
        ..Default::default()
    };
    st.commit(&q(QueueOp::Put(item))).unwrap().unwrap();
    let claim = |who: &str| {
        q(QueueOp::Claim {
            session: "web:frank".into(),
            operator: who.into(),
        })
    };
    st.commit(&claim("op1")).unwrap().unwrap();
    assert_eq!(
        st.commit(&claim("op2")).unwrap().unwrap_err(),
        Conflict::Taken
    );
    assert_eq!(st.queue().unwrap()[0].operator.as_deref(), Some("op1"));
    st.commit(&q(QueueOp::Remove("web:frank".into())))
        .unwrap()
        .unwrap();
    assert!(st.queue().unwrap().is_empty());
}

/// The analytics log: a withdrawal re-keys the client's entries to a
/// pseudonym that links to no one (the rest stays for the indicators), and
/// the sweep drops entries past their retention, oldest first.
fn analytics_log(open: Open) {
    let st = open();
    let entry = |client: &str, conversation: &str, ts: i64| LogEntry {
        ts,
        client: client.into(),
        conversation: conversation.into(),
        channel: "web".into(),
        intent: Some("child_allowance".into()),
        ..Default::default()
    };
    let now = jiff::Timestamp::now().as_second();
    st.log_append(&[
        entry("anna", "a1", now - 7200),
        entry("anna", "a2", now - 10),
        entry("boris", "b1", now - 5),
    ])
    .unwrap();
    let key = SessionKey::new("web", "anna");
    st.commit(&TurnWrites {
        session: Some((key.clone(), session_bytes(json!({})))),
        log: Some(entry("anna", "a2", now)),
        forget: Some(Forget {
            key,
            values: Vec::new(),
            pseudonym: "anna".into(),
        }),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let log = st.log_entries().unwrap();
    assert_eq!(log.len(), 4, "nothing of the log is lost");
    assert!(!log.iter().any(|e| e.client == "anna"), "{log:?}");
    let anna: Vec<_> = log.iter().filter(|e| e.client != "boris").collect();
    assert!(
        anna.iter().all(|e| e.client == anna[0].client),
        "still one client"
    );
    assert!(!anna
        .iter()
        .any(|e| ["a1", "a2"].contains(&e.conversation.as_str())));
    assert_ne!(anna[0].conversation, anna[1].conversation);
    assert_eq!(
        anna[1].conversation, anna[2].conversation,
        "one conversation stays one"
    );
    assert_eq!(log[2].client, "boris", "others untouched");
    let keep = Retention {
        seen_s: 3600,
        outbox_s: 3600,
        undelivered_s: 3600,
        log_s: 3600,
    };
    assert_eq!(st.sweep(now, &keep).unwrap().log, 1);
    assert_eq!(st.log_entries().unwrap().len(), 3);
}

/// Records: put, read back in key order by prefix, removed; a swap writes
/// only over the value it expects, so of many claims exactly one wins and a
/// refused swap writes nothing else of its commit.
fn records(open: Open) {
    let st = open();
    let w = |ops| st.write_records(ops).unwrap();
    w(vec![
        RecordOp::put("draft", "web:b", &json!({"n": 2})).unwrap(),
        RecordOp::put("draft", "web:a", &json!({"n": 1})).unwrap(),
        RecordOp::put("draftx", "web:c", &json!({"n": 3})).unwrap(),
    ])
    .unwrap();
    let all: Vec<(String, serde_json::Value)> = st.records_of("draft", "").unwrap();
    assert_eq!(
        all,
        vec![
            ("web:a".into(), json!({"n": 1})),
            ("web:b".into(), json!({"n": 2}))
        ]
    );
    assert_eq!(st.records("draft", "web:b").unwrap().len(), 1);
    assert_eq!(st.records("draft", "tg:").unwrap().len(), 0);
    w(vec![RecordOp::remove("draft", "web:a")]).unwrap();
    assert!(st.record("draft", "web:a").unwrap().is_none());
    assert!(st.record("draftx", "web:c").unwrap().is_some());

    // a refused swap writes nothing of its commit
    let refused = st
        .write_records(vec![
            RecordOp::put("draft", "web:z", &json!(1)).unwrap(),
            RecordOp::Swap {
                kind: "draft".into(),
                key: "web:b".into(),
                expected: None,
                value: Some(b"x".to_vec()),
            },
        ])
        .unwrap();
    assert!(matches!(refused, Err(Conflict::Changed)));
    assert!(st.record("draft", "web:z").unwrap().is_none());

    // 16 threads claim one notification: exactly one swap succeeds
    w(vec![RecordOp::Put {
        kind: "note".into(),
        key: "1".into(),
        value: b"due".to_vec(),
    }])
    .unwrap();
    let won = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for i in 0..16 {
            let (st, won) = (&st, &won);
            sc.spawn(move || {
                let r = st
                    .write_records(vec![RecordOp::Swap {
                        kind: "note".into(),
                        key: "1".into(),
                        expected: Some(b"due".to_vec()),
                        value: Some(format!("sent by {i}").into_bytes()),
                    }])
                    .unwrap();
                if r.is_ok() {
                    won.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(won.load(Ordering::SeqCst), 1);
    assert!(st
        .record("note", "1")
        .unwrap()
        .unwrap()
        .starts_with(b"sent by "));
}

fn conformance(open: Open, locks: Arc<dyn ConversationLock>) {
    records(open);
    atomic_turn_commit(open);
    lock_exclusion(&[locks]);
    booking_capacity_under_threads(open);
    consent_withdrawal_deletes_personal_data(open);
    sweeps(open);
    queue_claims(open);
    analytics_log(open);
}

#[test]
fn sled_passes_the_storage_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let open = || -> Arc<dyn Storage> {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path()).unwrap();
        dirs.lock().unwrap().push(d);
        Arc::new(st)
    };
    conformance(&open, Arc::new(LocalLocks::default()));
}

#[test]
fn postgres_passes_the_storage_conformance_suite() {
    let pg = pg::Pg::start();
    let n = AtomicUsize::new(0);
    let open = || -> Arc<dyn Storage> {
        let url = pg.database(&format!("t{}", n.fetch_add(1, Ordering::SeqCst)));
        Arc::new(PgStore::open(&url, 8, "").unwrap())
    };
    let locks = open().conversation_locks();
    conformance(&open, locks);
}

/// Two instances on one database: a slot's capacity, the conversation
/// locks, the ids and a claim hold across them; a second start applies no
/// migration again.
#[test]
fn two_postgres_instances_share_one_database() {
    let pg = pg::Pg::start();
    let url = pg.database("shared");
    let (a, b): (Arc<dyn Storage>, Arc<dyn Storage>) = std::thread::scope(|sc| {
        // started together: the migrations run once, under their lock
        let a = sc.spawn(|| PgStore::open(&url, 8, "").unwrap());
        let b = sc.spawn(|| PgStore::open(&url, 8, "").unwrap());
        let a: Arc<dyn Storage> = Arc::new(a.join().unwrap());
        let b: Arc<dyn Storage> = Arc::new(b.join().unwrap());
        (a, b)
    });
    assert_eq!(
        pg.psql("shared", "SELECT count(*) FROM schema_migrations"),
        "1"
    );
    assert!(PgStore::migrate_only(&url, "").unwrap().is_empty());
    let both: [Arc<dyn Storage>; 2] = [a.clone(), b.clone()];

    let won = book_from_16_threads(&both);
    assert_eq!(won, 3, "exactly the capacity is booked across instances");
    assert_eq!(
        b.booked("benefits", "central", "2026-11-27", "10:00")
            .unwrap(),
        3
    );

    lock_exclusion(&[
        a.clone().conversation_locks(),
        b.clone().conversation_locks(),
    ]);

    let mut ids: Vec<u64> = (0..50)
        .flat_map(|_| [a.next_id().unwrap(), b.next_id().unwrap()])
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "ids are unique across instances");

    a.write_records(vec![RecordOp::Put {
        kind: "note".into(),
        key: "1".into(),
        value: b"due".to_vec(),
    }])
    .unwrap()
    .unwrap();
    let won = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (st, won) = (both[i % 2].clone(), &won);
            sc.spawn(move || {
                let r = st
                    .write_records(vec![RecordOp::Swap {
                        kind: "note".into(),
                        key: "1".into(),
                        expected: Some(b"due".to_vec()),
                        value: Some(format!("sent by {i}").into_bytes()),
                    }])
                    .unwrap();
                if r.is_ok() {
                    won.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        won.load(Ordering::SeqCst),
        1,
        "one claim wins across instances"
    );
}

/// `sslmode=require`: the store talks TLS, checked against the CA it is
/// given; a server whose certificate that CA did not sign is refused.
#[test]
fn postgres_over_tls_checks_the_server_certificate() {
    let pg = pg::Pg::start_tls();
    let url = pg.database("tls");
    let ca = pg.ca();
    let st = PgStore::open(&pg.tls_url("tls"), 2, ca.to_str().unwrap()).unwrap();
    st.meta_put("k", b"v").unwrap();
    assert_eq!(st.meta_get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_ne!(
        pg.psql(
            "tls",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.datname = 'tls'"
        ),
        "0",
        "the store's connections are TLS"
    );
    // Without TLS in the URL the same store connects in plain text.
    assert!(PgStore::open(&url, 1, "").is_ok());
    // The web PKI's roots do not include the test's CA: refused.
    let refused = PgStore::open(&pg.tls_url("tls"), 1, "")
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("cannot connect"),
        "{refused:#}"
    );
}
