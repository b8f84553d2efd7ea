//! Drives the dialog engine through the conversations in `tests/scenarios/*.yaml`,
//! on every channel each scenario names, with the real model and knowledge
//! base and a fresh sled database per run. Each step sends one input (or an
//! operator action, or moves the clock) and checks the bot's turn; the style
//! rules (no emoji in voice, on the web or for seniors; no URLs in voice) are
//! checked on every turn.

mod common;

use otklik::dialog::style::has_emoji;
use otklik::dialog::{Engine, Input, Keep, Turn};
use otklik::nlu::Nlu;
use otklik::operator::OperatorError;
use otklik::services::FixedClock;
use otklik::store::SessionKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    #[serde(default = "web")]
    channels: Vec<String>,
    #[serde(default)]
    segment: Option<String>,
    #[serde(default = "default_now")]
    now: String,
    steps: Vec<Step>,
}

fn web() -> Vec<String> {
    vec!["web".into(), "telegram".into(), "voice".into()]
}

fn default_now() -> String {
    // a Thursday, 10:00 in Moscow: operators at work
    "2026-11-26T10:00:00+03:00".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Step {
    // inputs (one of)
    #[serde(default)]
    start: bool,
    say: Option<String>,
    choice: Option<String>,
    /// the N-th choice shown (1-based), as `#N` in `otklik chat`
    pick: Option<usize>,
    dtmf: Option<String>,
    #[serde(default)]
    silence: bool,
    attach: Option<String>,
    set_segment: Option<String>,
    clock: Option<String>,
    take: Option<String>,
    reply: Option<(String, String)>,
    transfer: Option<(String, String)>,
    release: Option<String>,
    /// applications: this step on another channel (the same client there,
    /// e.g. a draft continued on Telegram), and profile facts kept before it
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    profile: BTreeMap<String, String>,
    // expectations
    #[serde(default)]
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    intent: Option<String>,
    decision: Option<String>,
    node: Option<String>,
    segment: Option<String>,
    #[serde(default)]
    text: Vec<String>,
    #[serde(default)]
    not_text: Vec<String>,
    #[serde(default)]
    choices: Option<Vec<String>>,
    #[serde(default)]
    choices_include: Vec<String>,
    choice_count: Option<usize>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    no_actions: Vec<String>,
    #[serde(default)]
    links: Option<bool>,
    /// an operator action's error: taken, not_yours, transfer_limit…
    error: Option<String>,
    /// records in the store after the step
    store: Option<BTreeMap<String, String>>,
    /// the text of this step on this channel only
    #[serde(default)]
    channel_text: BTreeMap<String, Vec<String>>,
    /// the channels whose turn carries an image (a payment's QR code); the
    /// others' must not
    image: Option<Vec<String>>,
}

fn nlu() -> Arc<Nlu> {
    common::shared_nlu()
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad time {s:?}: {e}"))
}

fn op_err(e: &OperatorError) -> &'static str {
    match e {
        OperatorError::NotWaiting => "not_waiting",
        OperatorError::Taken => "taken",
        OperatorError::NotYours => "not_yours",
        OperatorError::TransferLimit => "transfer_limit",
        OperatorError::EmptyReply => "empty_reply",
    }
}

fn action_names(t: &Turn) -> Vec<String> {
    t.actions
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn store_value(engine: &Engine, user: &str, what: &str) -> String {
    let st = &engine.store;
    match what {
        "consent" => match st.consent(user).unwrap() {
            None => "none".into(),
            Some(c) if c.active() => "active".into(),
            Some(_) => "withdrawn".into(),
        },
        "appointments" => st.appointments_of(user).unwrap().len().to_string(),
        "appointment_names" => st
            .appointments_of(user)
            .unwrap()
            .iter()
            .filter(|a| a.name.is_some())
            .count()
            .to_string(),
        "callbacks" => st
            .callbacks()
            .unwrap()
            .iter()
            .filter(|c| c.user == user)
            .count()
            .to_string(),
        "callback_phone" => st
            .callbacks()
            .unwrap()
            .iter()
            .find(|c| c.user == user)
            .map(|c| c.phone.clone())
            .unwrap_or_default(),
        "feedback" => st
            .feedback()
            .unwrap()
            .iter()
            .filter(|f| f.user == user)
            .map(|f| {
                let or_dash = |n: Option<u8>| n.map(|n| n.to_string()).unwrap_or("-".into());
                format!("{}/{}/{}", f.ease, or_dash(f.satisfaction), or_dash(f.nps))
            })
            .collect::<Vec<_>>()
            .join(","),
        "queue" => st.queue().unwrap().len().to_string(),
        // A person takes the conversation: the console's queue holds it, or,
        // on a channel whose own line takes handoffs (voice: Asterisk's
        // Queue()), the console does not and the pass is counted.
        "waits_for_person" => {
            let key = SessionKey::parse(user).unwrap();
            let queued = st.queue().unwrap().iter().any(|q| q.session == user);
            let s = engine.session(&key).unwrap().unwrap();
            if engine.graph.channel(&key.channel).line_queue {
                (!queued && s.handoff.is_none() && s.transfers > 0).to_string()
            } else {
                (queued && s.handoff.is_some()).to_string()
            }
        }
        "transfers" => engine
            .session(&SessionKey::parse(user).unwrap())
            .unwrap()
            .unwrap()
            .transfers
            .to_string(),
        "history_has_personal" => {
            let s = engine
                .session(&SessionKey::parse(user).unwrap())
                .unwrap()
                .unwrap();
            s.history
                .iter()
                .any(|e| e.text.contains("912") || e.text.contains("Петров"))
                .to_string()
        }
        // applications: filed by this client, drafts kept for them
        "applications" => st
            .records_of::<otklik::services::applications::Application>("application", "")
            .unwrap()
            .iter()
            .filter(|(_, a)| a.user == user)
            .count()
            .to_string(),
        "drafts" => st
            .records("draft_of", user)
            .unwrap()
            .iter()
            .filter(|(k, _)| k == user)
            .count()
            .to_string(),
        "log_has_personal" => st
            .log_entries()
            .unwrap()
            .iter()
            .any(|e| {
                e.text.contains("912") || e.text.contains("Петров") || e.text.contains("1234567")
            })
            .to_string(),
        // payments the client has (issue 16 ж)
        "payments" => st
            .records_of::<otklik::services::payments::Payment>("payment", "")
            .unwrap()
            .iter()
            .filter(|(_, p)| p.user == user)
            .count()
            .to_string(),
        // the service search's profile: its facts (k=v,…) or none
        "profile" => {
            let p = otklik::services::profile::Profile::load(&**st, user).unwrap();
            if p.facts.is_empty() {
                "none".into()
            } else {
                let kv: Vec<String> = p.facts.iter().map(|(k, v)| format!("{k}={v}")).collect();
                kv.join(",")
            }
        }
        other => panic!("unknown store check {other:?}"),
    }
}

fn run(sc: &Scenario, channel: &str, file: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_with_data(dir.path());
    let clock = Arc::new(FixedClock::new(ts(&sc.now)));
    let engine = Engine::new(&cfg, nlu(), clock.clone()).expect("engine");
    let user = "citizen";
    // The scenarios check the engine alone: no channel keeps anything.
    let no_keep = |_: &Turn| Ok(Keep::default());
    let mut errors = Vec::new();
    if let Some(seg) = &sc.segment {
        engine
            .handle(channel, user, Input::SetSegment(seg.clone()))
            .unwrap();
    }
    let mut last: Option<Turn> = None;
    let mut prev_text: Option<String> = None;
    for (i, st) in sc.steps.iter().enumerate() {
        let at = format!("{}: {} [{channel}] step {}", file.display(), sc.name, i + 1);
        let mut fail = |m: String| errors.push(format!("{at}: {m}"));
        if let Some(c) = &st.clock {
            clock.set(ts(c));
        }
        // applications: the step's channel, facts in the profile, and the
        // number or draft code the bot gave ({number}, {draft})
        let channel = st.channel.as_deref().unwrap_or(channel);
        let key = SessionKey::new(channel, user);
        if !st.profile.is_empty() {
            let p = otklik::services::profile::Profile {
                facts: st.profile.clone(),
                updated: 0,
            };
            let op = p.save(&key.to_string()).unwrap();
            engine.store.write_records(vec![op]).unwrap().unwrap();
        }
        let said = st.say.as_ref().map(|t| {
            let st = &engine.store;
            let number = st
                .records("application", "")
                .unwrap()
                .last()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            let draft = st
                .records("draft", "")
                .unwrap()
                .first()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            t.replace("{number}", &number).replace("{draft}", &draft)
        });
        let input = if st.start {
            Some(Input::Start)
        } else if let Some(t) = &said {
            Some(Input::Text(t.clone()))
        } else if let Some(c) = &st.choice {
            Some(Input::Choice(c.clone()))
        } else if let Some(n) = st.pick {
            let Some(c) = last.as_ref().and_then(|t| t.choices.get(n - 1)) else {
                fail(format!("no choice #{n} in the last turn"));
                break;
            };
            Some(Input::Choice(c.id.clone()))
        } else if let Some(d) = &st.dtmf {
            Some(Input::Dtmf(d.clone()))
        } else if st.silence {
            Some(Input::Silence)
        } else if let Some(a) = &st.attach {
            Some(Input::Attachment(a.clone()))
        } else {
            st.set_segment
                .as_ref()
                .map(|s| Input::SetSegment(s.clone()))
        };
        let mut op_error = None;
        let turn: Option<Turn> = if let Some(input) = input {
            Some(engine.handle(channel, user, input).unwrap())
        } else if let Some(op) = &st.take {
            op_error = engine.take(&key, op).unwrap().err().map(|e| op_err(&e));
            None
        } else if let Some((op, text)) = &st.reply {
            match engine.operator_reply(&key, op, text, &no_keep).unwrap() {
                Ok((t, _, _)) => Some(t),
                Err(e) => {
                    op_error = Some(op_err(&e));
                    None
                }
            }
        } else if let Some((from, to)) = &st.transfer {
            op_error = engine
                .transfer(&key, from, to)
                .unwrap()
                .err()
                .map(|e| op_err(&e));
            None
        } else if let Some(op) = &st.release {
            match engine.release(&key, op, &no_keep).unwrap() {
                Ok((t, _, _)) => Some(t),
                Err(e) => {
                    op_error = Some(op_err(&e));
                    None
                }
            }
        } else {
            None
        };
        let e = &st.expect;
        if e.error.as_deref() != op_error {
            fail(format!(
                "operator error {:?}, expected {:?}",
                op_error, e.error
            ));
        }
        if let Some(t) = &turn {
            let lower = t.text.to_lowercase();
            for problem in turn_properties(t, channel, prev_text.as_deref(), st.silence) {
                fail(problem);
            }
            if !t.text.is_empty() {
                prev_text = Some(t.text.clone());
            }
            // style rules, every turn
            let senior = t.segment == "senior";
            if (channel != "telegram" || senior)
                && (has_emoji(&t.text) || t.choices.iter().any(|c| has_emoji(&c.label)))
            {
                fail(format!(
                    "emoji on {channel} (segment {}): {:?}",
                    t.segment, t.text
                ));
            }
            if channel == "voice"
                && (lower.contains("http") || lower.contains("www.") || !t.links.is_empty())
            {
                fail(format!("a URL in voice: {:?}", t.text));
            }
            for w in &e.text {
                if !lower.contains(&w.to_lowercase()) {
                    fail(format!("text lacks {w:?}: {:?}", t.text));
                }
            }
            for w in e.channel_text.get(channel).into_iter().flatten() {
                if !lower.contains(&w.to_lowercase()) {
                    fail(format!("text lacks {w:?}: {:?}", t.text));
                }
            }
            for w in &e.not_text {
                if lower.contains(&w.to_lowercase()) {
                    fail(format!("text has {w:?}: {:?}", t.text));
                }
            }
            let ids: Vec<String> = t.choices.iter().map(|c| c.id.clone()).collect();
            if let Some(c) = &e.choices {
                if &ids != c {
                    fail(format!("choices {ids:?}, expected {c:?}"));
                }
            }
            for c in &e.choices_include {
                if !ids.contains(c) {
                    fail(format!("choices {ids:?} lack {c:?}"));
                }
            }
            if let Some(n) = e.choice_count {
                if ids.len() != n {
                    fail(format!("{} choices {ids:?}, expected {n}", ids.len()));
                }
            }
            let acts = action_names(t);
            for a in &e.actions {
                if !acts.contains(a) {
                    fail(format!("actions {acts:?} lack {a:?}"));
                }
            }
            for a in &e.no_actions {
                if acts.contains(a) {
                    fail(format!("actions {acts:?} have {a:?}"));
                }
            }
            if let Some(x) = &e.intent {
                if t.intent.as_deref() != Some(x.as_str()) {
                    fail(format!(
                        "intent {:?}, expected {x:?} (text {:?})",
                        t.intent, t.text
                    ));
                }
            }
            if let Some(x) = &e.decision {
                if t.decision.as_deref() != Some(x.as_str()) {
                    fail(format!("decision {:?}, expected {x:?}", t.decision));
                }
            }
            if let Some(x) = &e.node {
                if &t.node != x {
                    fail(format!(
                        "node {:?}, expected {x:?} (text {:?})",
                        t.node, t.text
                    ));
                }
            }
            if let Some(x) = &e.segment {
                if &t.segment != x {
                    fail(format!("segment {:?}, expected {x:?}", t.segment));
                }
            }
            if let Some(on) = &e.image {
                let want = on.iter().any(|c| c == channel);
                if t.image.is_some() != want {
                    fail(format!(
                        "image present={}, expected {want}",
                        t.image.is_some()
                    ));
                }
            }
            if let Some(l) = e.links {
                if t.links.is_empty() == l {
                    fail(format!("links {:?}, expected present={l}", t.links));
                }
            }
            last = Some(t.clone());
        } else if !e.text.is_empty() || e.choices.is_some() || e.node.is_some() {
            fail("no turn to check".into());
        }
        if let Some(checks) = &e.store {
            for (k, v) in checks {
                let got = store_value(&engine, &key.to_string(), k);
                if &got != v {
                    fail(format!("store {k} = {got:?}, expected {v:?}"));
                }
            }
        }
    }
    errors
}

/// Intents a conversation acts on at once (the classify node's `direct`):
/// never offered as an option or confirmed.
const DIRECT: [&str; 3] = ["greeting", "thanks_bye", "operator_request"];

fn sentence_key(s: &str) -> String {
    otklik::dialog::style::sentence_key(s)
}

/// The rules every turn keeps on every channel: no sentence said twice in
/// a turn or straight after the turn before (a silence may be answered by
/// the same reminder), no two sentences starting the same way, no filler
/// «Хорошо!» after something else, no «напишите» on voice, links before the
/// closing question, and no conversational intent among the options.
fn turn_properties(t: &Turn, channel: &str, prev: Option<&str>, silence: bool) -> Vec<String> {
    use otklik::dialog::style::sentences;
    let mut problems = Vec::new();
    let said = sentences(&t.text);
    let mut seen = std::collections::HashSet::new();
    let mut starts = std::collections::HashSet::new();
    for (i, x) in said.iter().enumerate() {
        let k = sentence_key(x);
        if k.is_empty() {
            continue;
        }
        if !seen.insert(k.clone()) {
            problems.push(format!("sentence {x:?} twice in the turn: {:?}", t.text));
        }
        let start: Vec<&str> = k.split_whitespace().take(2).collect();
        if start.len() == 2 && !starts.insert(start.join(" ")) {
            problems.push(format!(
                "two sentences start with {:?}: {:?}",
                start.join(" "),
                t.text
            ));
        }
        if i > 0 && k == "хорошо" {
            problems.push(format!(
                "filler «Хорошо!» after something else: {:?}",
                t.text
            ));
        }
    }
    // a new answer asks «Ваш вопрос решён?» again; a silence or unusable
    // input is met with the question again
    let asks_again = silence || t.events.iter().any(|e| e == "answered" || e == "reprompt");
    if let (Some(p), false) = (prev, asks_again) {
        let before: std::collections::HashSet<String> =
            sentences(p).iter().map(|x| sentence_key(x)).collect();
        for x in &said {
            let k = sentence_key(x);
            if !k.is_empty() && before.contains(&k) {
                problems.push(format!(
                    "sentence {x:?} repeats the turn before ({p:?}): {:?}",
                    t.text
                ));
            }
        }
    }
    let lower = t.text.to_lowercase();
    if channel == "voice" && (lower.contains("напиш") || lower.contains("введите")) {
        problems.push(format!("«напишите» on voice: {:?}", t.text));
    }
    if !t.links.is_empty() {
        let cut = t.links_at.unwrap_or(usize::MAX);
        let after_question = t
            .text
            .split("\n\n")
            .take(cut)
            .any(|p| p.contains("решён?") || p.contains("решен?"));
        if after_question || t.links_at.is_none() {
            problems.push(format!(
                "links {:?} after the closing question (at {:?}): {:?}",
                t.links, t.links_at, t.text
            ));
        }
    }
    for c in &t.choices {
        if DIRECT.contains(&c.id.as_str()) {
            problems.push(format!(
                "conversational intent {:?} offered as an option",
                c.id
            ));
        }
    }
    if t.decision.as_deref() == Some("confirm")
        && t.intent.as_deref().is_some_and(|i| DIRECT.contains(&i))
    {
        problems.push(format!("conversational intent {:?} confirmed", t.intent));
    }
    problems
}

#[test]
fn scenarios() {
    let mut files: Vec<_> = std::fs::read_dir("tests/scenarios")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let only = std::env::var("SCENARIO").ok();
    let mut errors = Vec::new();
    let mut runs = 0;
    for f in files {
        if only
            .as_deref()
            .is_some_and(|o| !f.to_string_lossy().contains(o))
        {
            continue;
        }
        let list: Vec<Scenario> = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for sc in &list {
            for ch in &sc.channels {
                errors.extend(run(sc, ch, &f));
                runs += 1;
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} problem(s) in {runs} runs:\n{}",
        errors.len(),
        errors.join("\n")
    );
}
