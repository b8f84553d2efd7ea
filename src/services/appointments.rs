//! Appointment settings and the slots they give: services, offices, open days
//! and hours, slot length and capacity. Booking itself (atomic, no double
//! booking) is in the store.

use super::hours::{fmt_time, parse_holidays, parse_span, weekday_phrase, Span};
use anyhow::{bail, Context, Result};
use jiff::civil::{Date, Time};
use jiff::{Timestamp, Zoned};
use std::collections::BTreeSet;

pub use crate::config::{AppointmentsConfig, Named};

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Month names in the genitive («30 ноября»).
pub const MONTHS_GEN: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];

/// «в понедельник, 30 ноября».
pub fn day_label(d: Date) -> String {
    format!(
        "{}, {} {}",
        weekday_phrase(d.weekday()),
        d.day(),
        MONTHS_GEN[d.month() as usize - 1]
    )
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cfg: AppointmentsConfig,
    days: [bool; 7],
    span: Span,
    holidays: BTreeSet<Date>,
}

impl Schedule {
    pub fn from_config(c: &AppointmentsConfig) -> Result<Self> {
        let mut days = [false; 7];
        for d in &c.days {
            let Some(i) = WEEKDAYS.iter().position(|w| w == d) else {
                bail!(
                    "appointments.days: {d:?} is not one of {}",
                    WEEKDAYS.join(", ")
                );
            };
            days[i] = true;
        }
        let span = parse_span(&c.hours)
            .context("appointments.hours")?
            .context("appointments.hours must not be empty")?;
        if c.slot_minutes == 0 || c.capacity == 0 {
            bail!("appointments.slot_minutes and appointments.capacity must be positive");
        }
        if c.services.is_empty() || c.offices.is_empty() {
            bail!("appointments needs at least one service and one office");
        }
        Ok(Self {
            cfg: c.clone(),
            days,
            span,
            holidays: parse_holidays(&c.holidays).context("appointments.holidays")?,
        })
    }

    /// Reception days from tomorrow up to the horizon.
    pub fn days_from(&self, now: &Zoned) -> Vec<Date> {
        let today = now.date();
        (1..=self.cfg.horizon_days as i64)
            .filter_map(|k| today.checked_add(jiff::Span::new().days(k)).ok())
            .filter(|d| {
                self.days[d.weekday().to_monday_zero_offset() as usize]
                    && !self.holidays.contains(d)
            })
            .collect()
    }

    /// The slot start times of a day.
    pub fn times(&self) -> Vec<Time> {
        let mut out = Vec::new();
        let mut t = self.span.0;
        let step = jiff::Span::new().minutes(self.cfg.slot_minutes as i64);
        while let Ok(end) = t.checked_add(step) {
            if end > self.span.1 || end <= t {
                break;
            }
            out.push(t);
            t = end;
        }
        out
    }

    pub fn is_slot(&self, d: Date, t: Time, now: Timestamp, tz: &jiff::tz::TimeZone) -> bool {
        let z = now.to_zoned(tz.clone());
        self.days_from(&z).contains(&d) && self.times().contains(&t)
    }

    pub fn service(&self, id: &str) -> Option<&Named> {
        self.cfg.services.iter().find(|s| s.id == id)
    }
    pub fn office(&self, id: &str) -> Option<&Named> {
        self.cfg.offices.iter().find(|s| s.id == id)
    }
}

/// «9:30», as said and shown.
pub fn time_label(t: Time) -> String {
    fmt_time(t)
}

/// "09:30", as stored.
pub fn time_id(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}
