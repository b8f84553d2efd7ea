//! Notifications in the dialog: the settings node (the state of each
//! category, one choice per switch, quiet hours, the daily limit, everything
//! off), the node that switches everything off, the buttons every
//! notification carries (unsubscribe from its category; cancel or move the
//! appointment a reminder is about), and the notification's own turn,
//! committed with the claim of its notice and the channel's delivery
//! records (`notice_turn`, called by `channels/notify.rs`).

use crate::services::notices::{self, Category, Notice};
use crate::services::notify::{self, about, by_id, label, Settings, State, CATEGORIES};
use crate::store::{Committed, Keep, RecordOp, SessionKey};
use anyhow::Result;

use super::core::Said;
use super::graph::{FormAction, Node};
use super::session::{ChoiceOut, Entry, Session, Wait};
use super::{choice, fill, Engine, Input, Out, Turn};

/// The daily limits the settings cycle through (0: no limit).
const LIMITS: [u32; 4] = [1, 3, 5, 0];

/// Choice ids of the buttons a notification carries.
const UNSUB: &str = "notify_unsub:";
const CANCEL: &str = "notify_cancel";
const MOVE: &str = "notify_move";

impl Engine {
    fn notify_settings(&self, s: &Session) -> Result<Settings> {
        Settings::load(self.store.as_ref(), &s.key())
    }

    /// What the settings say now, in the client's words.
    fn notify_summary(&self, st: &Settings) -> String {
        if st.all_off {
            return self.p("notify_all_off_state");
        }
        let (on, off): (Vec<Category>, Vec<Category>) =
            CATEGORIES.iter().partition(|c| st.category_on(**c));
        let list = |cs: &[Category]| cs.iter().map(|c| about(*c)).collect::<Vec<_>>().join(", ");
        let mut t = Vec::new();
        if !on.is_empty() {
            t.push(fill(&self.p("notify_on_state"), &[("list", list(&on))]));
        }
        if !off.is_empty() {
            t.push(fill(&self.p("notify_off_state"), &[("list", list(&off))]));
        }
        let quiet = notify::parse_quiet(&self.notify.quiet);
        if let (true, Some((a, b))) = (st.quiet_on(), quiet) {
            let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
            t.push(fill(
                &self.p("notify_quiet_state"),
                &[("from", hm(a)), ("to", hm(b))],
            ));
        }
        match st.limit(&self.notify) {
            0 => {}
            n => t.push(fill(&self.p("notify_limit_state"), &[("n", n.to_string())])),
        }
        t.join(" ")
    }

    fn notify_choices(&self, st: &Settings) -> Vec<ChoiceOut> {
        let mut cs = Vec::new();
        let mut key = 0;
        let mut next_key = || {
            key += 1;
            Some(key.to_string())
        };
        if st.all_off {
            let k = next_key();
            cs.push(choice(
                "notify_all_on",
                &self.p("notify_choice_all_on"),
                k.as_deref(),
            ));
        } else {
            for c in CATEGORIES {
                let p = if st.category_on(c) {
                    "notify_choice_off"
                } else {
                    "notify_choice_on"
                };
                let k = next_key();
                cs.push(choice(
                    &format!("notify_set:{}", notify::id(c)),
                    &fill(&self.p(p), &[("category", label(c).to_string())]),
                    k.as_deref(),
                ));
            }
            if notify::parse_quiet(&self.notify.quiet).is_some() {
                let p = if st.quiet_on() {
                    "notify_choice_quiet_off"
                } else {
                    "notify_choice_quiet_on"
                };
                let k = next_key();
                cs.push(choice("notify_quiet", &self.p(p), k.as_deref()));
            }
            let k = next_key();
            let next = next_limit(st.limit(&self.notify));
            let l = match next {
                0 => self.p("notify_choice_no_limit"),
                n => fill(&self.p("notify_choice_limit"), &[("n", n.to_string())]),
            };
            cs.push(choice("notify_limit", &l, k.as_deref()));
            let k = next_key();
            cs.push(choice(
                "notify_all_off",
                &self.p("notify_choice_all_off"),
                k.as_deref(),
            ));
        }
        cs.push(choice(
            "done",
            &self.p("notify_choice_done"),
            next_key().as_deref(),
        ));
        cs
    }

    /// Entering the settings node: its text, the state, the switches.
    pub(super) fn enter_notifications(
        &self,
        s: &mut Session,
        text: String,
        out: &mut Out,
    ) -> Result<()> {
        let st = self.notify_settings(s)?;
        let t = format!("{text} {}", self.notify_summary(&st));
        let cs = self.notify_choices(&st);
        self.ask(s, out, t, cs, Wait::Node);
        Ok(())
    }

    /// Entering the all-off node: everything off, committed with the turn.
    pub(super) fn enter_notifications_off(
        &self,
        s: &mut Session,
        text: &str,
        out: &mut Out,
    ) -> Result<()> {
        let mut st = self.notify_settings(s)?;
        st.set_all_off(self.now(), true, text);
        let ops = st.save(self.store.as_ref(), &s.key(), self.now())?;
        out.writes.records.extend(ops);
        out.say(text.to_string());
        Ok(())
    }

    /// A choice at the settings node: the switch changed and the settings
    /// shown again; «Готово» goes on; free text is a new question.
    pub(super) fn on_notifications(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let Some(id) = self.pick(s, input) else {
            return self.free_text_or_repeat(s, input, out);
        };
        if id == "done" {
            let next = node
                .next
                .clone()
                .unwrap_or_else(|| self.graph.classify.clone());
            return self.enter(s, &next, out);
        }
        let label = s
            .choices
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.label.clone())
            .unwrap_or_default();
        let seen = format!("{} {label}", node.text.as_deref().unwrap_or_default());
        let now = self.now();
        let mut st = self.notify_settings(s)?;
        match id.as_str() {
            "notify_all_on" => st.set_all_off(now, false, &seen),
            "notify_all_off" => st.set_all_off(now, true, &seen),
            "notify_quiet" => {
                let on = !st.quiet_on();
                st.set_quiet(now, on, &seen)
            }
            "notify_limit" => {
                let n = next_limit(st.limit(&self.notify));
                st.set_per_day(now, n, &seen)
            }
            other => {
                let Some(c) = other.strip_prefix("notify_set:").and_then(by_id) else {
                    return self.free_text_or_repeat(s, input, out);
                };
                let on = !st.category_on(c);
                st.set_category(now, c, on, &seen)
            }
        }
        out.writes
            .records
            .extend(st.save(self.store.as_ref(), &s.key(), now)?);
        out.events.push(format!("notify:{id}"));
        out.say(self.p("notify_saved"));
        let text = node.text.clone().unwrap_or_default();
        let text = self.fill_s(s, &text);
        let summary = self.notify_summary(&st);
        self.ask(
            s,
            out,
            format!("{text} {summary}"),
            self.notify_choices(&st),
            Wait::Node,
        );
        Ok(())
    }

    /// The buttons a notification carries, pressed at any step: unsubscribe
    /// from its category (at once, committed with the turn), or cancel or
    /// move the appointment a reminder is about (its forms).
    pub(super) fn step_notice(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        let Input::Choice(id) = input else {
            return None;
        };
        if let Some(c) = id.strip_prefix(UNSUB).and_then(by_id) {
            return Some(self.unsubscribe(s, c, out));
        }
        let action = match id.as_str() {
            CANCEL => FormAction::CancelAppointment,
            MOVE => FormAction::MoveAppointment,
            _ => return None,
        };
        let node = self
            .graph
            .nodes
            .iter()
            .find(|(_, n)| n.action == Some(action))
            .map(|(k, _)| k.clone())?;
        self.clear_form(s);
        Some(self.enter(s, &node, out))
    }

    fn unsubscribe(&self, s: &mut Session, c: Category, out: &mut Out) -> Result<()> {
        let now = self.now();
        let text = unsubscribe_label(self, c);
        let mut st = self.notify_settings(s)?;
        st.set_category(now, c, false, &text);
        out.writes
            .records
            .extend(st.save(self.store.as_ref(), &s.key(), now)?);
        out.events.push(format!("notify_unsub:{}", notify::id(c)));
        out.say(fill(
            &self.p("notify_unsubscribed"),
            &[("category", about(c).to_string())],
        ));
        if s.wait != Wait::Fresh && !s.ended && !s.prompt.is_empty() {
            self.repeat(s, out);
        }
        Ok(())
    }

    /// A notification's turn for the client of `key`: committed with the
    /// claim of its notice (a `Swap` that takes it out of the outbox only if
    /// it is still there as read), its log record and what the channel
    /// keeps to deliver it, all at once. None when the notice is gone
    /// (sent by another instance, or cancelled meanwhile).
    pub fn notice_turn(
        &self,
        key: &SessionKey,
        notice_key: &str,
        raw: &[u8],
        keep: &dyn Fn(&Turn) -> Result<Keep>,
    ) -> Result<Option<(Turn, Committed, Keep)>> {
        let n: Notice = serde_json::from_slice(raw)?;
        let r = self.with_session_committed(key, None, |e, s, w| {
            if e.store.record(notices::KIND, notice_key)?.as_deref() != Some(raw) {
                return Ok(None);
            }
            let now = e.now();
            let mut cs = Vec::new();
            if n.category == Category::Reminder && n.reason.starts_with("appointment ") {
                cs.push(choice(CANCEL, &e.p("notify_choice_cancel"), None));
                cs.push(choice(MOVE, &e.p("notify_choice_move"), None));
            }
            cs.push(choice(
                &format!("{UNSUB}{}", notify::id(n.category)),
                &unsubscribe_label(e, n.category),
                None,
            ));
            let texts = [n.text.clone()];
            let t = e.render(s, &Said::plain(&texts), cs, Vec::new(), Vec::new());
            s.history.push(Entry {
                who: "bot".into(),
                text: t.text.clone(),
                at: now,
            });
            w.records.push(RecordOp::Swap {
                kind: notices::KIND.into(),
                key: notice_key.into(),
                expected: Some(raw.to_vec()),
                value: None,
            });
            w.records
                .push(notify::logged(&n, State::Sent, now, &key.channel)?);
            let k = keep(&t)?;
            w.keep(&k);
            Ok(Some((t, k)))
        })?;
        Ok(match r {
            Some((Some((t, k)), c)) => Some((t, c, k)),
            _ => None,
        })
    }
}

impl Engine {
    /// Personal-data consent withdrawn: the client's pending notices are
    /// cancelled and the texts of those sent or cancelled (an application's
    /// number, a time) are removed from the log, in the withdrawal's commit.
    pub(super) fn forget_notices(&self, s: &Session, out: &mut Out) -> Result<()> {
        let user = s.key();
        let now = self.now();
        let gone = "[удалено]";
        for (key, raw) in self.store.records(notices::KIND, "")? {
            let Ok(mut n) = serde_json::from_slice::<Notice>(&raw) else {
                continue;
            };
            if n.user == user {
                n.text = gone.into();
                let why = "personal-data consent withdrawn";
                out.writes
                    .records
                    .extend(notify::cancel(&key, raw, &n, now, why)?);
            }
        }
        for (key, mut l) in self
            .store
            .records_of::<notify::Logged>(notify::LOG_KIND, &format!("{user}|"))?
        {
            if l.notice.text != gone {
                l.notice.text = gone.into();
                out.writes
                    .records
                    .push(RecordOp::put(notify::LOG_KIND, &key, &l)?);
            }
        }
        Ok(())
    }
}

fn unsubscribe_label(e: &Engine, c: Category) -> String {
    fill(
        &e.p("notify_choice_unsubscribe"),
        &[("category", about(c).to_string())],
    )
}

/// The next daily limit in the cycle after `n`.
fn next_limit(n: u32) -> u32 {
    let i = LIMITS.iter().position(|x| *x == n).map_or(0, |i| i + 1);
    LIMITS[i % LIMITS.len()]
}
