//! The notifications' sender: reads the outbox of notices (kind "notice",
//! `services::notices`, in due order), decides for each due notice at send
//! time (the client's consent, everything off, quiet hours, the daily limit:
//! `services::notify::decide`), and delivers it to the client's channel
//! exactly once and in order: the notice is claimed (a `Swap`) in the same
//! commit as the channel's delivery records (`Channel::keep`: the web
//! outbox message, Telegram's undelivered record) and the conversation's
//! history (`Engine::notice_turn`), then handed to `Channel::deliver`. A
//! crash after the commit leaves the message where the channel redelivers
//! it; a crash before leaves the notice in the outbox. A client's later
//! notices wait while an earlier one waits. The voice robot makes no
//! outbound calls: a voice client's notices are cancelled. It also runs the
//! triggers read from storage: an appointment tomorrow (a reminder, once
//! per appointment) and a callback scheduled (a notice, once per callback).

use super::pipeline::Pipeline;
use crate::dialog::{Engine, Turn};
use crate::services::appointments::{day_label, time_label};
use crate::services::notices::{self, Category, Notice};
use crate::services::notify::{self, Decision, Settings};
use crate::store::{RecordOp, SessionKey};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Channels a notice is delivered on (the voice robot does not call out).
const DELIVERS: &[&str] = &["web", "telegram"];

/// Notices read per round (the rest wait for the next round).
const BATCH: usize = 200;

/// Runs the sender until the server stops.
pub async fn run(p: Arc<Pipeline>) {
    let every = Duration::from_millis(p.cfg.notify.interval_ms.max(100));
    let mut shutdown = p.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = round(&p).await {
            tracing::error!("notifications: {e:#}");
        }
    }
}

/// One round: the triggers, then every due notice.
pub async fn round(p: &Arc<Pipeline>) -> anyhow::Result<usize> {
    let Some(engine) = p.engine() else {
        return Ok(0);
    };
    let (e2, p2) = (engine.clone(), p.clone());
    let due = tokio::task::spawn_blocking(move || {
        triggers(&e2)?;
        plan(&p2, &e2)
    })
    .await??;
    let mut sent = 0;
    for (key, nkey, raw) in due {
        if send(p, &engine, &key, &nkey, raw).await? {
            sent += 1;
        }
    }
    Ok(sent)
}

/// The due notices to send now, in order; the ones that can never go
/// (switched off, a channel that does not deliver) are cancelled here.
fn plan(p: &Pipeline, engine: &Engine) -> anyhow::Result<Vec<(SessionKey, String, Vec<u8>)>> {
    let store = p.store.as_ref();
    let now = p.clock.now();
    let tz = &engine.hours.tz;
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for (nkey, raw) in store.records(notices::KIND, "")? {
        if out.len() >= BATCH {
            break;
        }
        let n: Notice = match serde_json::from_slice(&raw) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("notifications: unreadable notice {nkey}: {e}");
                continue;
            }
        };
        if n.due > now.as_second() {
            break; // key order is due order
        }
        if waiting.contains(&n.user) {
            continue; // an earlier notice of this client waits: in order
        }
        let Some(key) = SessionKey::parse(&n.user) else {
            store
                .write_records(notify::cancel(
                    &nkey,
                    raw,
                    &n,
                    now.as_second(),
                    "not a client",
                )?)?
                .ok();
            continue;
        };
        if !DELIVERS.contains(&key.channel.as_str()) || p.channel(&key.channel).is_none() {
            let why = "the client's channel takes no notifications";
            store
                .write_records(notify::cancel(&nkey, raw, &n, now.as_second(), why)?)?
                .ok();
            continue;
        }
        let settings = Settings::load(store, &n.user)?;
        // Notices already picked this round count toward the daily limit.
        let picked = out
            .iter()
            .filter(|(k, _, _): &&(SessionKey, String, Vec<u8>)| k == &key)
            .count();
        match notify::decide(store, &p.cfg.notify, &settings, &n, now, tz)? {
            Decision::Send => {
                let limit = settings.limit(&p.cfg.notify);
                if limit > 0
                    && notify::sent_today(store, &n.user, now, tz)? + picked as u32 >= limit
                {
                    waiting.insert(n.user.clone());
                    continue;
                }
                out.push((key, nkey, raw));
            }
            Decision::Wait(_) => {
                waiting.insert(n.user.clone());
            }
            Decision::Cancel(why) => {
                store
                    .write_records(notify::cancel(&nkey, raw, &n, now.as_second(), why)?)?
                    .ok();
            }
        }
    }
    Ok(out)
}

/// Claims and delivers one notice: false when it was gone.
async fn send(
    p: &Arc<Pipeline>,
    engine: &Arc<Engine>,
    key: &SessionKey,
    nkey: &str,
    raw: Vec<u8>,
) -> anyhow::Result<bool> {
    let keep = p.keeper(key, None)?;
    let (e, k, nk) = (engine.clone(), key.clone(), nkey.to_string());
    let fault = std::env::var("OTKLIK_FAULT").ok();
    let done = tokio::task::spawn_blocking(move || {
        let r = e.notice_turn(&k, &nk, &raw, &|t: &Turn| keep(t))?;
        // Test hook: the notice is committed and not yet delivered.
        if r.is_some() && fault.as_deref() == Some("notice_after_commit") {
            tracing::error!("OTKLIK_FAULT=notice_after_commit: aborting");
            std::process::abort();
        }
        anyhow::Ok(r)
    })
    .await??;
    let Some((turn, committed, kept)) = done else {
        return Ok(false);
    };
    p.deliver(key, &turn, None, committed, &kept).await?;
    Ok(true)
}

/// The triggers read from storage: reminders of tomorrow's appointments
/// and notices of callbacks scheduled (in the last day), each once.
pub fn triggers(engine: &Engine) -> anyhow::Result<()> {
    let store = engine.store.as_ref();
    let now = engine.clock.now();
    let tz = &engine.hours.tz;
    let tomorrow = now.to_zoned(tz.clone()).date().tomorrow()?.to_string();
    for a in store.appointments()? {
        if a.date != tomorrow {
            continue;
        }
        let service = engine
            .schedule
            .service(&a.service)
            .map_or(a.service.clone(), |x| x.name.clone());
        let office = engine
            .schedule
            .office(&a.office)
            .map_or(a.office.clone(), |x| x.name.clone());
        let day = a
            .date
            .parse()
            .map(day_label)
            .unwrap_or_else(|_| a.date.clone());
        let time = a
            .time
            .parse()
            .map(time_label)
            .unwrap_or_else(|_| a.time.clone());
        let text = fill(
            engine.graph.prompt("notice_reminder"),
            &[
                ("day", day),
                ("time", time),
                ("service", service),
                ("office", office),
            ],
        );
        let what = format!("reminder:{}", a.id);
        if store.record(notify::CLAIM_KIND, &what)?.is_some() {
            continue;
        }
        let ops = notices::enqueue(
            store,
            now.as_second(),
            &a.user,
            Category::Reminder,
            &text,
            &format!("appointment {} tomorrow", a.id),
        )?;
        notify::once(store, &what, now.as_second(), ops)?;
    }
    for c in store.callbacks()? {
        if now.as_second() - c.created > 86_400 {
            continue;
        }
        let what = format!("callback:{}", c.id);
        if store.record(notify::CLAIM_KIND, &what)?.is_some() {
            continue;
        }
        let text = engine.graph.prompt("notice_callback").to_string();
        let ops = notices::enqueue(
            store,
            now.as_second(),
            &c.user,
            Category::Reminder,
            &text,
            &format!("callback {} scheduled", c.id),
        )?;
        notify::once(store, &what, now.as_second(), ops)?;
    }
    new_measures(engine)?;
    Ok(())
}

/// The record of the measures (intents with eligibility rules) the
/// knowledge base had when the sender last looked.
const MEASURES_KIND: &str = "measures_known";

/// Measures that appeared in the knowledge base since the last look (a
/// trainer added one, a new version was deployed) are notified to every
/// client whose profile they fit and who consented to new measures, once
/// each. The first look only records what there is: the measures a
/// deployment starts with are not news.
fn new_measures(engine: &Engine) -> anyhow::Result<()> {
    let store = engine.store.as_ref();
    let kb = &engine.nlu.kb;
    let now: Vec<String> = kb.measures().iter().map(|(id, _)| id.to_string()).collect();
    let known: Option<Vec<String>> = store.record_of(MEASURES_KIND, "all")?;
    if known.as_ref() == Some(&now) {
        return Ok(());
    }
    if let Some(known) = &known {
        for id in now.iter().filter(|id| !known.contains(id)) {
            let title = kb.intent(id).map_or(id.clone(), |i| i.title.clone());
            notify::new_measure(
                store,
                engine.clock.now().as_second(),
                id,
                &title,
                |profile, intent| kb.eligible(&profile.facts).contains(&intent),
            )?;
        }
    }
    store
        .write_records(vec![RecordOp::put(MEASURES_KIND, "all", &now)?])?
        .map_err(|c| anyhow::anyhow!("{c}"))?;
    Ok(())
}

/// A prompt with its `{name}`s filled.
pub fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut t = template.to_string();
    for (k, v) in vars {
        t = t.replace(&format!("{{{k}}}"), v);
    }
    t.trim().to_string()
}
