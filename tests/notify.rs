//! Notifications (issue 16, items б and з): the sender over a real sled
//! store and the real engine and model, its clock set by the test
//! (`FixedClock`): quiet hours defer, the daily limit defers to the next
//! day, order holds, a notification carries its unsubscribe button and the
//! press unsubscribes, «не присылайте уведомления» switches everything off,
//! switching a category off cancels its pending notices in the same commit,
//! a reminder of tomorrow's appointment goes once with cancel and move
//! buttons that open the forms, a callback gets its notice, a new measure
//! reaches each consenting client whose profile fits once. Then the real
//! `otklik serve`: the status webhook (401 without the right key,
//! idempotent by event id) notifies the application's web client, exactly
//! once across a kill -9 between the commit and the delivery and a restart.

mod common;

use otklik::channels::pipeline::Pipeline;
use otklik::channels::web::{Sockets, Web};
use otklik::channels::Registry;
use otklik::dialog::graph::Graph;
use otklik::dialog::{Engine, Input, Turn, TurnOpts};
use otklik::services::applications::{self, Application};
use otklik::services::notices::{self, Category, Notice};
use otklik::services::notify::{self, Logged, Settings, State};
use otklik::services::profile::Profile;
use otklik::services::{Clock, FixedClock};
use otklik::store::{Appointment, Keep, LocalLocks, RecordOp, SessionKey, Storage, Store};
use serde_json::{json, Value};
use std::sync::Arc;

struct Rig {
    p: Arc<Pipeline>,
    clock: Arc<FixedClock>,
    _dir: tempfile::TempDir,
}

/// The turn service with the web channel, the engine and a fresh store, at `now`.
fn rig(now: &str, per_day: u32) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config_with_data(dir.path());
    cfg.notify.per_day = per_day;
    cfg.notify.quiet = "22:00-09:00".into();
    let store: Arc<dyn Storage> = Arc::new(Store::open(&cfg.data_dir).unwrap());
    let clock = Arc::new(FixedClock::new(now.parse().unwrap()));
    let p = Pipeline::new(
        cfg.clone(),
        store.clone(),
        Arc::new(LocalLocks::default()),
        clock.clone(),
    );
    let mut reg = Registry::default();
    reg.add(Web::new(p.clone(), Sockets::new(&cfg.http)));
    p.set_registry(reg);
    let nlu = common::shared_nlu();
    let ids: Vec<String> = nlu.kb.intents.iter().map(|i| i.id.clone()).collect();
    let graph = Graph::load_dir(&cfg.dialog.dialogs_dir, &ids).unwrap();
    let status = otklik::services::status::provider(&cfg.status, &store).unwrap();
    let e = Engine::with_parts(&cfg, nlu, graph, store, status, clock.clone())
        .unwrap()
        .with_locks(p.locks.clone());
    p.set_engine(e);
    Rig {
        p,
        clock,
        _dir: dir,
    }
}

impl Rig {
    fn store(&self) -> &(dyn Storage + 'static) {
        self.p.store.as_ref()
    }

    fn at(&self, t: &str) {
        self.clock.set(t.parse().unwrap());
    }

    fn enqueue(&self, user: &str, c: Category, text: &str) {
        let now = self.clock.now().as_second();
        let ops = notices::enqueue(self.store(), now, user, c, text, "test").unwrap();
        self.store().write_records(ops).unwrap().unwrap();
    }

    async fn round(&self) -> usize {
        otklik::channels::notify::round(&self.p).await.unwrap()
    }

    /// The web outbox of `user` (`web:…`): every message, in order.
    fn outbox(&self, user: &str) -> Vec<Value> {
        let key = SessionKey::parse(user).unwrap();
        self.store().outbox_since(&key, 0).unwrap()
    }

    fn texts(&self, user: &str) -> Vec<String> {
        self.outbox(user)
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// A client's turn through the engine.
    fn say(&self, user: &str, input: Input) -> Turn {
        let key = SessionKey::parse(user).unwrap();
        let e = self.p.engine().unwrap();
        e.turn(&key, input, TurnOpts::default(), &|_| Ok(Keep::default()))
            .unwrap()
            .unwrap()
            .0
    }

    fn pending(&self) -> Vec<Notice> {
        self.store()
            .records_of::<Notice>(notices::KIND, "")
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    fn logged(&self, user: &str) -> Vec<Logged> {
        self.store()
            .records_of::<Logged>(notify::LOG_KIND, &format!("{user}|"))
            .unwrap()
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    }
}

const U: &str = "web:0123456789abcdef0123456789abcdef";

fn choice_ids(m: &Value) -> Vec<String> {
    m["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_defer_and_the_notice_goes_in_the_morning_with_its_unsubscribe_button() {
    let r = rig("2026-11-26T23:30:00+03:00", 5);
    r.enqueue(
        U,
        Category::Status,
        "Заявление 1234567: новый статус — одобрено.",
    );
    assert_eq!(r.round().await, 0, "quiet hours: nothing sent at 23:30");
    assert_eq!(r.pending().len(), 1, "deferred, not dropped");
    assert!(r.outbox(U).is_empty());
    r.at("2026-11-27T08:59:00+03:00");
    assert_eq!(r.round().await, 0);
    r.at("2026-11-27T09:00:00+03:00");
    assert_eq!(r.round().await, 1, "sent when the quiet hours end");
    assert!(r.pending().is_empty());
    let out = r.outbox(U);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0]["text"].as_str().unwrap().contains("одобрено"));
    assert_eq!(choice_ids(&out[0]), ["notify_unsub:status"]);
    assert_eq!(
        out[0]["choices"][0]["label"],
        "Отписаться от уведомлений о статусе заявлений"
    );
    let log = r.logged(U);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].state, State::Sent);
    assert_eq!(log[0].at, r.clock.now().as_second());
    // Nothing goes twice.
    assert_eq!(r.round().await, 0);
    assert_eq!(r.outbox(U).len(), 1);

    // The press unsubscribes from statuses at once; reminders still go.
    let t = r.say(U, Input::Choice("notify_unsub:status".into()));
    assert!(
        t.text
            .contains("уведомления о статусе заявлений больше не придут"),
        "{}",
        t.text
    );
    let st = Settings::load(r.store(), U).unwrap();
    assert!(!st.allows(Category::Status) && st.allows(Category::Reminder));
    let last = st.history.last().unwrap();
    assert_eq!((last.what.as_str(), last.value.as_str()), ("status", "off"));
    assert_eq!(last.at, r.clock.now().as_second());
    assert_eq!(last.version, notify::version(&last.text));
    r.enqueue(
        U,
        Category::Status,
        "Заявление 1234567: новый статус — выплачено.",
    );
    r.enqueue(U, Category::Reminder, "Напоминаю: завтра приём.");
    assert_eq!(r.round().await, 1);
    let texts = r.texts(U);
    assert!(!texts.iter().any(|t| t.contains("выплачено")), "{texts:?}");
    assert!(texts.last().unwrap().contains("завтра приём"), "{texts:?}");
    assert!(r
        .logged(U)
        .iter()
        .any(|l| l.state == State::Cancelled && l.notice.text.contains("выплачено")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_limit_defers_the_rest_to_the_next_day_in_order() {
    let r = rig("2026-11-26T10:00:00+03:00", 2);
    for i in 1..=4 {
        r.enqueue(U, Category::Status, &format!("Уведомление номер {i}."));
    }
    assert_eq!(r.round().await, 2, "two a day");
    assert_eq!(r.round().await, 0, "the limit holds later that day");
    r.at("2026-11-26T21:59:00+03:00");
    assert_eq!(r.round().await, 0);
    r.at("2026-11-27T09:30:00+03:00");
    assert_eq!(r.round().await, 2, "the next day, the rest");
    let texts = r.texts(U);
    assert_eq!(texts.len(), 4);
    for (i, t) in texts.iter().enumerate() {
        assert!(
            t.contains(&format!("номер {}", i + 1)),
            "in order: {texts:?}"
        );
    }
    // A client's own limit: one a day.
    r.say(U, Input::Text("настроить уведомления".into()));
    let mut st = Settings::load(r.store(), U).unwrap();
    st.set_per_day(r.clock.now().as_second(), 0, "test");
    r.store()
        .write_records(st.save(r.store(), U, 0).unwrap())
        .unwrap()
        .unwrap();
    r.enqueue(U, Category::Status, "Уведомление номер 5.");
    assert_eq!(r.round().await, 1, "no limit now");
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_off_from_the_dialog_and_settings_per_category() {
    let r = rig("2026-11-26T10:00:00+03:00", 5);
    r.say(U, Input::Start);
    let t = r.say(U, Input::Text("не присылайте уведомления".into()));
    assert!(
        t.text.contains("больше не буду присылать уведомления"),
        "{}",
        t.text
    );
    let st = Settings::load(r.store(), U).unwrap();
    assert!(st.all_off);
    assert_eq!(st.history.last().unwrap().what, "all");
    r.enqueue(U, Category::Reminder, "Напоминаю: завтра приём.");
    assert_eq!(r.round().await, 0);
    assert!(r.pending().is_empty(), "cancelled");

    // The settings: one choice per switch, the state said.
    let t = r.say(U, Input::Text("настроить уведомления".into()));
    assert_eq!(t.node, "notify_settings", "{t:?}");
    assert!(t.text.contains("выключены"), "{}", t.text);
    assert_eq!(t.choices[0].id, "notify_all_on");
    let t = r.say(U, Input::Choice("notify_all_on".into()));
    assert!(t.text.contains("Сохранила"), "{}", t.text);
    let ids: Vec<&str> = t.choices.iter().map(|c| c.id.as_str()).collect();
    assert!(
        ids.contains(&"notify_set:measures") && ids.contains(&"done"),
        "{ids:?}"
    );
    assert!(t.text.contains("статусе заявлений"), "{}", t.text);
    // Content categories need consent: switched on here.
    let t = r.say(U, Input::Choice("notify_set:measures".into()));
    let st = Settings::load(r.store(), U).unwrap();
    assert!(st.allows(Category::Measures), "{}", t.text);
    // Reminders pending while the client switches them off: cancelled in that commit.
    r.at("2026-11-26T23:00:00+03:00");
    r.enqueue(U, Category::Reminder, "Напоминание первое.");
    r.enqueue(U, Category::Reminder, "Напоминание второе.");
    r.enqueue(U, Category::Status, "Статус изменился.");
    assert_eq!(r.pending().len(), 3);
    r.say(U, Input::Choice("notify_set:reminder".into()));
    let left = r.pending();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].category, Category::Status);
    let cancelled = r
        .logged(U)
        .into_iter()
        .filter(|l| l.state == State::Cancelled && l.notice.category == Category::Reminder)
        .count();
    assert_eq!(cancelled, 3, "the two now and the one before");
    let t = r.say(U, Input::Choice("done".into()));
    assert_ne!(t.node, "notify_settings");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_of_tomorrows_appointment_goes_once_with_cancel_and_move() {
    // Thursday: an appointment on Friday.
    let r = rig("2026-11-26T10:00:00+03:00", 5);
    r.say(U, Input::Start);
    let a = r
        .store()
        .book(
            Appointment {
                id: 0,
                user: U.into(),
                service: "benefits".into(),
                office: "central".into(),
                date: "2026-11-27".into(),
                time: "10:30".into(),
                name: None,
                created: 0,
            },
            1,
        )
        .unwrap()
        .unwrap();
    // An appointment next week gets no reminder yet.
    let mut later = a.clone();
    later.date = "2026-12-03".into();
    r.store().book(later, 1).unwrap().unwrap();
    let before = r.outbox(U).len();
    assert_eq!(r.round().await, 1);
    assert_eq!(r.round().await, 0, "once per appointment");
    let out = r.outbox(U);
    assert_eq!(out.len(), before + 1);
    let m = out.last().unwrap();
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("завтра") && text.contains("10:30"), "{text}");
    assert_eq!(
        choice_ids(m),
        ["notify_cancel", "notify_move", "notify_unsub:reminder"]
    );
    // The cancel button opens the cancellation form.
    let t = r.say(U, Input::Choice("notify_cancel".into()));
    assert_eq!(t.node, "cancel_appointment", "{t:?}");
    let t = r.say(U, Input::Choice("notify_move".into()));
    assert_eq!(t.node, "move_appointment", "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_scheduled_and_a_new_measure_are_notified_once() {
    let r = rig("2026-11-26T10:00:00+03:00", 5);
    let cb = otklik::store::Callback {
        id: r.store().next_id().unwrap(),
        user: U.into(),
        phone: "+79123456789".into(),
        preferred_time: String::new(),
        topic: String::new(),
        created: r.clock.now().as_second(),
    };
    let w = otklik::store::TurnWrites {
        callbacks: vec![cb],
        ..Default::default()
    };
    r.store().commit(&w).unwrap().unwrap();
    assert_eq!(r.round().await, 1);
    assert_eq!(r.round().await, 0);
    assert!(r.texts(U)[0].contains("обратный звонок"));

    // Measures: only a consenting client whose profile fits, once.
    let other = "web:ffffffffffffffffffffffffffffffff";
    let mut prof = Profile::default();
    prof.facts.insert("children".into(), "2".into());
    let now = r.clock.now().as_second();
    r.store()
        .write_records(vec![prof.save(U).unwrap(), prof.save(other).unwrap()])
        .unwrap()
        .unwrap();
    let mut st = Settings::default();
    st.set_category(now, Category::Measures, true, "test");
    r.store()
        .write_records(vec![RecordOp::put(notify::SETTINGS_KIND, U, &st).unwrap()])
        .unwrap()
        .unwrap();
    let fits = |p: &Profile, intent: &str| {
        intent == "child_allowance" && p.facts.get("children").is_some_and(|c| c != "0")
    };
    let n = notify::new_measure(r.store(), now, "child_allowance", "единое пособие", fits).unwrap();
    assert_eq!(n, 1, "the other client gave no consent to measures");
    let again = notify::new_measure(r.store(), now, "child_allowance", "единое пособие", fits);
    assert_eq!(again.unwrap(), 0, "once per measure and client");
    assert_eq!(r.round().await, 1);
    assert!(r.texts(U).last().unwrap().contains("единое пособие"));
    assert!(r.texts(other).is_empty());
}

// The real server.

const EVENT_KEY: &str = "test-key-of-the-ministry";
const CLIENT: &str = "00112233445566778899aabbccddeeff";

fn env(fault: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "OTKLIK_NOTIFY_EVENT_KEY_HASHES",
            otklik::channels::api::key_hash(EVENT_KEY),
        ),
        ("OTKLIK_NOTIFY_QUIET", String::new()),
        ("OTKLIK_NOTIFY_INTERVAL_MS", "200".into()),
    ];
    if fault {
        v.push(("OTKLIK_FAULT", "notice_after_commit".into()));
    }
    v
}

async fn post_event(base: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}/api/v1/events/status"))
        .json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The web client's replay: every message of its conversation.
async fn replay(base: &str) -> Vec<Value> {
    let mut w = common::ws(base, "notify-client").await;
    common::send(
        &mut w,
        json!({"type": "hello", "client": CLIENT, "last_seq": 0}),
    )
    .await;
    common::drain(&mut w, 2).await
}

#[test]
fn a_status_event_notifies_the_web_client_exactly_once_across_a_kill_9() {
    // The application 7654321 was filed by the web client CLIENT.
    let data = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Storage> = Arc::new(Store::open(data.path()).unwrap());
        let a = Application {
            number: "7654321".into(),
            user: format!("web:{CLIENT}"),
            service: "single_allowance".into(),
            fields: Default::default(),
            created: 0,
            paid_at: None,
        };
        store
            .write_records(vec![
                RecordOp::put(applications::KIND, "7654321", &a).unwrap()
            ])
            .unwrap()
            .unwrap();
        store.flush().unwrap();
    }
    let mut server = common::start_server_in(data, &env(true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let ev = json!({"event_id": "ev-1", "number": "7654321", "status": "одобрено", "details": "Первая выплата придёт до 10 декабря."});
    rt.block_on(async {
        let (s, b) = post_event(&server.base, None, ev.clone()).await;
        assert_eq!(s, 401, "{b}");
        let (s, b) = post_event(&server.base, Some("wrong"), ev.clone()).await;
        assert_eq!(s, 401, "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("ключ"));
        let (s, b) = post_event(&server.base, Some(EVENT_KEY), json!({"number": "1"})).await;
        assert_eq!(s, 422, "{b}");
        let (s, b) = post_event(&server.base, Some(EVENT_KEY), ev.clone()).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["notified"], true);
    });
    // The sender commits the notice and the process dies before delivering.
    let t0 = std::time::Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed().as_secs() < 30, "the fault did not fire");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let server = server.restart(&env(false));
    rt.block_on(async {
        common::wait_ready(&server.base).await;
        let (s, b) = post_event(&server.base, Some(EVENT_KEY), ev.clone()).await;
        assert_eq!((s, b["duplicate"].clone()), (200, json!(true)), "{b}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let got = replay(&server.base).await;
        let notices: Vec<&Value> = got
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains("7654321")))
            .collect();
        assert_eq!(notices.len(), 1, "exactly once: {got:?}");
        assert_eq!(notices[0]["choices"][0]["id"], "notify_unsub:status");
        // The status itself is set: the dialog tells it.
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/admin/notifications", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/admin/notifications", server.base))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let rows = v["notifications"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(rows[0]["state"], "sent");
        assert_eq!(rows[0]["category"], "status");
        assert_eq!(rows[0]["reason"], "status event ev-1");
        assert_eq!(rows[0]["user"], format!("web:{CLIENT}"));
        assert!(rows[0]["sent"].as_i64().is_some());
    });

    // More events, and a kill -9 at once, while they are being sent.
    rt.block_on(async {
        for i in 2..=4 {
            let ev = json!({"event_id": format!("ev-{i}"), "number": "7654321", "status": format!("этап {i}")});
            let (s, _) = post_event(&server.base, Some(EVENT_KEY), ev).await;
            assert_eq!(s, 200);
        }
    });
    let server = server.restart(&env(false));
    rt.block_on(async {
        common::wait_ready(&server.base).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let got = replay(&server.base).await;
        let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
        for i in 2..=4 {
            let n = texts
                .iter()
                .filter(|t| t.contains(&format!("этап {i}")))
                .count();
            assert_eq!(n, 1, "этап {i} exactly once: {texts:?}");
        }
        let pos = |i: usize| {
            texts
                .iter()
                .position(|t| t.contains(&format!("этап {i}")))
                .unwrap()
        };
        assert!(pos(2) < pos(3) && pos(3) < pos(4), "in order: {texts:?}");
    });
}

/// The widget in headless Chromium (`tests/browser/notify.mjs`): a
/// notification sent while the page was closed is in the chat on the next
/// visit and shown by the browser's Notification API; the «Уведомления»
/// button opens the settings; one sent while the page is open is shown at
/// once; its unsubscribe button works.
#[test]
fn the_widget_shows_notifications_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run `make test` (it installs both)"
    );
    let data = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Storage> = Arc::new(Store::open(data.path()).unwrap());
        let a = Application {
            number: "7654321".into(),
            user: format!("web:{CLIENT}"),
            service: "single_allowance".into(),
            fields: Default::default(),
            created: 0,
            paid_at: None,
        };
        store
            .write_records(vec![
                RecordOp::put(applications::KIND, "7654321", &a).unwrap()
            ])
            .unwrap()
            .unwrap();
        store.flush().unwrap();
    }
    let server = common::start_server_in(data, &env(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        common::wait_ready(&server.base).await;
        let ev = json!({"event_id": "browser-1", "number": "7654321", "status": "одобрено"});
        let (s, b) = post_event(&server.base, Some(EVENT_KEY), ev).await;
        assert_eq!(s, 200, "{b}");
        // Delivered into the outbox before the page opens.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    });
    let status = std::process::Command::new("node")
        .args(["tests/browser/notify.mjs", &server.base, CLIENT, EVENT_KEY])
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the widget's notifications test failed (screenshot: /tmp/otklik-notify-failure.png)"
    );
}

/// What was sent to whom: a notice held by quiet hours is listed as
/// deferred, for the admin token and an operator signed in, by client; the
/// event endpoint refuses a body over its limit; both are in the OpenAPI.
#[test]
fn the_log_shows_a_deferred_notice_to_admins_and_operators() {
    let data = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Storage> = Arc::new(Store::open(data.path()).unwrap());
        let a = Application {
            number: "7654321".into(),
            user: format!("web:{CLIENT}"),
            service: "single_allowance".into(),
            fields: Default::default(),
            created: 0,
            paid_at: None,
        };
        store
            .write_records(vec![
                RecordOp::put(applications::KIND, "7654321", &a).unwrap()
            ])
            .unwrap()
            .unwrap();
        store.flush().unwrap();
    }
    let mut e = env(false);
    // Quiet all day long: the notice waits.
    e.push(("OTKLIK_NOTIFY_QUIET", "00:00-23:59".into()));
    let server = common::start_server_in(data, &e);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        common::wait_ready(&server.base).await;
        let ev = json!({"event_id": "q-1", "number": "7654321", "status": "одобрено"});
        assert_eq!(post_event(&server.base, Some(EVENT_KEY), ev).await.0, 200);
        let big = json!({"event_id": "q-2", "number": "7654321", "status": "x", "details": "я".repeat(9000)});
        assert_eq!(post_event(&server.base, Some(EVENT_KEY), big).await.0, 413);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let url = format!(
            "{}/api/v1/admin/notifications?user=web:{CLIENT}",
            server.base
        );
        let op = common::operator(&server, "op1").await;
        let v: Value = op.get(&url).send().await.unwrap().json().await.unwrap();
        let rows = v["notifications"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(rows[0]["state"], "deferred", "{v}");
        assert_eq!(rows[0]["reason"], "status event q-1");
        assert!(rows[0]["sent"].is_null());
        let other = format!("{}/api/v1/admin/notifications?user=web:someone", server.base);
        let v: Value = reqwest::Client::new()
            .get(&other)
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["notifications"], json!([]));
        let api: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in ["/api/v1/events/status", "/api/v1/admin/notifications"] {
            assert!(api["paths"][p].is_object(), "{p} missing in OpenAPI");
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn withdrawing_personal_data_consent_cancels_and_scrubs_the_clients_notices() {
    let r = rig("2026-11-26T23:30:00+03:00", 5);
    r.enqueue(
        U,
        Category::Status,
        "Заявление 1234567: новый статус — одобрено.",
    );
    r.at("2026-11-27T10:00:00+03:00");
    assert_eq!(r.round().await, 1);
    r.enqueue(
        U,
        Category::Status,
        "Заявление 1234567: новый статус — выплачено.",
    );
    r.say(U, Input::Start);
    let t = r.say(U, Input::Text("отозвать согласие".into()));
    assert!(t.text.contains("Согласие отозвано"), "{}", t.text);
    assert!(r.pending().is_empty(), "the pending notice is cancelled");
    let log = r.logged(U);
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|l| !l.notice.text.contains("1234567")),
        "{log:?}"
    );
}

/// A measure that appears in the knowledge base (here: one the last look did
/// not have) is notified by the sender to the consenting clients its rules
/// fit, through the knowledge base's eligibility rules, once; the measures
/// a deployment starts with are not news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_measure_in_the_knowledge_base_reaches_the_profiles_it_fits() {
    let r = rig("2026-11-26T10:00:00+03:00", 5);
    let now = r.clock.now().as_second();
    let (fits, young) = (U, "web:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    let mut low = Profile::default();
    low.facts.insert("children".into(), "1".into());
    low.facts.insert("youngest_child_age".into(), "4".into());
    low.facts.insert("income".into(), "low".into());
    let mut normal = low.clone();
    normal.facts.insert("income".into(), "normal".into());
    let mut st = Settings::default();
    st.set_category(now, Category::Measures, true, "test");
    r.store()
        .write_records(vec![
            low.save(fits).unwrap(),
            normal.save(young).unwrap(),
            RecordOp::put(notify::SETTINGS_KIND, fits, &st).unwrap(),
            RecordOp::put(notify::SETTINGS_KIND, young, &st).unwrap(),
        ])
        .unwrap()
        .unwrap();
    // the first look: the demo's measures are recorded, nobody is told
    assert_eq!(r.round().await, 0);
    let known: Vec<String> = r
        .store()
        .record_of("measures_known", "all")
        .unwrap()
        .unwrap();
    assert!(known.iter().any(|m| m == "child_allowance"), "{known:?}");
    // as if the single allowance were new since the last look
    let before: Vec<&String> = known.iter().filter(|m| *m != "child_allowance").collect();
    r.store()
        .write_records(vec![
            RecordOp::put("measures_known", "all", &before).unwrap()
        ])
        .unwrap()
        .unwrap();
    assert_eq!(r.round().await, 1);
    let told = r.texts(fits);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("новая мера поддержки"), "{}", told[0]);
    assert!(
        r.texts(young).is_empty(),
        "the rules do not fit a normal income"
    );
    assert_eq!(r.round().await, 0, "once");
}
