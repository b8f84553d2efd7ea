//! A form's action once its fields are filled: booking, cancelling and
//! moving appointments, callback requests, application status, listing
//! appointments; and saving the rating (ease, satisfaction, NPS).

use crate::services::appointments::{day_label, time_label};
use crate::store::{Appointment, BookingError, BookingOp, Callback, Feedback};
use anyhow::{Context, Result};

use super::graph::{FormAction, Node, Source};
use super::session::Session;
use super::{Engine, Out};

impl Engine {
    pub(super) fn save_feedback(
        &self,
        s: &mut Session,
        ease: u8,
        satisfaction: Option<u8>,
        nps: Option<u8>,
        out: &mut Out,
    ) -> Result<()> {
        out.writes.feedback.push(Feedback {
            user: s.key(),
            conversation: s.conversation,
            channel: s.channel.clone(),
            segment: s.segment.clone(),
            ease,
            satisfaction,
            nps,
            at: self.now(),
        });
        out.events.push(format!("rating:{ease}"));
        out.rating = Some(crate::analytics::Rating {
            ease,
            satisfaction,
            nps,
        });
        out.say(self.p("rating_thanks"));
        Ok(())
    }

    pub(super) fn describe_appointment(&self, a: &Appointment) -> String {
        let service = self
            .schedule
            .service(&a.service)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| a.service.clone());
        let office = self
            .schedule
            .office(&a.office)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| a.office.clone());
        let day = a
            .date
            .parse::<jiff::civil::Date>()
            .map(day_label)
            .unwrap_or_else(|_| a.date.clone());
        let time = a
            .time
            .parse::<jiff::civil::Time>()
            .map(time_label)
            .unwrap_or_else(|_| a.time.clone());
        format!("{service}, {office}, {day} в {time}")
    }

    pub(super) fn run_action(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        let action = node.action.context("form without action")?;
        let next = node.next.clone().context("form without next")?;
        let done = node.text.clone().unwrap_or_default();
        let user = s.key();
        let cap = self.schedule.cfg.capacity;
        let slots = s.slots.clone();
        let slot = |k: &str| slots.get(k).cloned().unwrap_or_default();
        match action {
            FormAction::BookAppointment => {
                let a = Appointment {
                    id: self.store.next_id()?,
                    user: user.clone(),
                    service: slot("service"),
                    office: slot("office"),
                    date: slot("day"),
                    time: slot("time"),
                    name: s.slots.get("name").filter(|n| !n.is_empty()).cloned(),
                    created: self.now(),
                };
                if !self.valid_slot(&a.date, &a.time) {
                    return self.retry_times(s, node, out);
                }
                let op = BookingOp::Book {
                    appointment: a,
                    capacity: cap,
                };
                match self.booking(op, out)? {
                    Ok(()) => out.events.push("appointment_booked".into()),
                    Err(_) => return self.retry_times(s, node, out),
                }
            }
            FormAction::CancelAppointment => {
                let id = slot("appointment").parse::<u64>().unwrap_or(0);
                let op = BookingOp::Cancel {
                    id,
                    user: user.clone(),
                };
                match self.booking(op, out)? {
                    Ok(()) => out.events.push("appointment_cancelled".into()),
                    Err(BookingError::NotFound | BookingError::SlotTaken) => {
                        out.say(node.empty.clone().unwrap_or_default());
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::MoveAppointment => {
                let id = slot("appointment").parse::<u64>().unwrap_or(0);
                let (d, t) = (slot("day"), slot("time"));
                if !self.valid_slot(&d, &t) {
                    return self.retry_times(s, node, out);
                }
                let op = BookingOp::Move {
                    id,
                    user: user.clone(),
                    date: d,
                    time: t,
                    capacity: cap,
                };
                match self.booking(op, out)? {
                    Ok(()) => out.events.push("appointment_moved".into()),
                    Err(BookingError::SlotTaken) => return self.retry_times(s, node, out),
                    Err(BookingError::NotFound) => {
                        out.say(node.empty.clone().unwrap_or_default());
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::RequestCallback => {
                let topic = match slot("topic") {
                    t if t.is_empty() => s
                        .intent
                        .as_ref()
                        .and_then(|i| self.nlu.kb.intent(i))
                        .map(|i| i.title.clone())
                        .unwrap_or_default(),
                    t => t,
                };
                s.slots.insert("topic".into(), topic.clone());
                out.writes.callbacks.push(Callback {
                    id: self.store.next_id()?,
                    user: user.clone(),
                    phone: slot("phone"),
                    preferred_time: slot("preferred_time"),
                    topic,
                    created: self.now(),
                });
                out.events.push("callback_requested".into());
            }
            FormAction::ApplicationStatus => {
                let number = slot("number");
                match self.status.lookup(&number) {
                    Ok(Some(st)) => {
                        s.slots.insert("status".into(), st.status);
                        s.slots.insert("details".into(), st.details);
                        out.events.push("status_found".into());
                    }
                    Ok(None) => {
                        out.say(self.fill_s(s, &self.p("status_unknown")));
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                    Err(e) => {
                        tracing::warn!("application status: {e}");
                        out.events.push("status_unavailable".into());
                        out.say(self.p("status_unavailable"));
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::SubmitApplication => {
                if !self.submit_application(s, node, out)? {
                    return Ok(());
                }
            }
            FormAction::ResumeDraft => return self.resume_draft(s, node, out),
            FormAction::ListAppointments => {
                let list = self.store.appointments_of(&user)?;
                if list.is_empty() {
                    out.say(node.empty.clone().unwrap_or_default());
                    return self.enter(s, &next, out);
                }
                let lines: Vec<String> = list
                    .iter()
                    .map(|a| format!("— {}", self.describe_appointment(a)))
                    .collect();
                s.labels.insert("appointment".into(), lines.join("\n"));
            }
            FormAction::PayFee => return self.pay_fee(s, node, out),
        }
        out.say(self.fill_s(s, &done));
        self.clear_form(s);
        self.enter(s, &next, out)
    }

    /// The chosen time was taken meanwhile: say so and offer the free times again.
    fn retry_times(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        out.say(self.p("slot_taken"));
        match node
            .fields
            .iter()
            .position(|f| f.source == Some(Source::Times))
        {
            Some(i) => {
                s.slots.remove(&node.fields[i].slot);
                s.labels.remove(&node.fields[i].slot);
                self.ask_field(s, node, i, out)
            }
            None => self.enter(
                s,
                node.next.as_deref().unwrap_or(&self.graph.classify.clone()),
                out,
            ),
        }
    }

    fn valid_slot(&self, date: &str, time: &str) -> bool {
        let (Ok(d), Ok(t)) = (
            date.parse::<jiff::civil::Date>(),
            time.parse::<jiff::civil::Time>(),
        ) else {
            return false;
        };
        self.schedule
            .is_slot(d, t, self.clock.now(), &self.hours.tz)
    }

    /// A booking change for the turn's commit, if it can be made now (the
    /// commit checks the slot again, and a lost race runs the turn again).
    fn booking(
        &self,
        op: BookingOp,
        out: &mut Out,
    ) -> Result<std::result::Result<(), BookingError>> {
        let free = |a: &Appointment, cap: u32| -> Result<bool> {
            Ok(self.store.booked(&a.service, &a.office, &a.date, &a.time)? < cap)
        };
        let owned = |id: u64, user: &str| -> Result<Option<Appointment>> {
            Ok(self.store.appointment(id)?.filter(|a| a.user == user))
        };
        let verdict = match &op {
            BookingOp::Book {
                appointment,
                capacity,
            } => free(appointment, *capacity)?
                .then_some(())
                .ok_or(BookingError::SlotTaken),
            BookingOp::Cancel { id, user } => {
                owned(*id, user)?.map(|_| ()).ok_or(BookingError::NotFound)
            }
            BookingOp::Move {
                id,
                user,
                date,
                time,
                capacity,
            } => match owned(*id, user)? {
                None => Err(BookingError::NotFound),
                Some(old) => {
                    let mut new = old.clone();
                    new.date = date.clone();
                    new.time = time.clone();
                    if old.slot() == new.slot() || free(&new, *capacity)? {
                        Ok(())
                    } else {
                        Err(BookingError::SlotTaken)
                    }
                }
            },
        };
        if verdict.is_ok() {
            out.writes.bookings.push(op);
        }
        Ok(verdict)
    }
}
