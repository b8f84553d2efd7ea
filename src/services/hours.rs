//! Operators' working hours: a weekly schedule in a time zone, with holidays.
//! Answers "is anyone there now?" and says the schedule in Russian.

use anyhow::{bail, Context, Result};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use std::collections::BTreeSet;

pub use crate::config::HoursConfig;

pub type Span = (Time, Time);

/// Parses "09:00-18:00" ("" = closed).
pub fn parse_span(s: &str) -> Result<Option<Span>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("{s:?} is not a time range like \"09:00-18:00\""))?;
    let t = |x: &str| -> Result<Time> {
        if x.trim() == "24:00" {
            return Ok(Time::MAX);
        }
        x.trim()
            .parse::<Time>()
            .with_context(|| format!("{x:?} is not a time like 09:00"))
    };
    let (a, b) = (t(a)?, t(b)?);
    if a >= b {
        bail!("{s:?}: the range must end after it starts");
    }
    Ok(Some((a, b)))
}

pub fn parse_tz(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).with_context(|| {
        format!("unknown time zone {name:?} (use an IANA name like Europe/Moscow)")
    })
}

pub fn parse_holidays(list: &[String]) -> Result<BTreeSet<Date>> {
    list.iter()
        .map(|d| {
            d.trim()
                .parse::<Date>()
                .with_context(|| format!("holiday {d:?} is not a date like 2026-12-31"))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Hours {
    pub tz: TimeZone,
    /// Monday first.
    week: [Option<Span>; 7],
    holidays: BTreeSet<Date>,
    /// The hotline's number, as said to clients.
    pub hotline: String,
}

const DAY_NAMES: [&str; 7] = [
    "понедельник",
    "вторник",
    "среда",
    "четверг",
    "пятница",
    "суббота",
    "воскресенье",
];

pub fn fmt_time(t: Time) -> String {
    if t == Time::MAX {
        return "24:00".into();
    }
    format!("{}:{:02}", t.hour(), t.minute())
}

impl Hours {
    pub fn from_config(c: &HoursConfig) -> Result<Self> {
        let days = [&c.mon, &c.tue, &c.wed, &c.thu, &c.fri, &c.sat, &c.sun];
        let mut week = [None; 7];
        for (i, d) in days.iter().enumerate() {
            week[i] = parse_span(d).with_context(|| {
                format!(
                    "hours.{}",
                    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][i]
                )
            })?;
        }
        Ok(Self {
            tz: parse_tz(&c.timezone)?,
            week,
            holidays: parse_holidays(&c.holidays).context("hours.holidays")?,
            hotline: c.hotline.clone(),
        })
    }

    pub fn local(&self, ts: Timestamp) -> Zoned {
        ts.to_zoned(self.tz.clone())
    }

    /// The open span of a date (none on days off and holidays).
    pub fn span_on(&self, d: Date) -> Option<Span> {
        if self.holidays.contains(&d) {
            return None;
        }
        self.week[d.weekday().to_monday_zero_offset() as usize]
    }

    pub fn is_open(&self, ts: Timestamp) -> bool {
        let z = self.local(ts);
        self.span_on(z.date())
            .is_some_and(|(a, b)| z.time() >= a && z.time() < b)
    }

    /// The weekly schedule in words: «понедельник–четверг с 9:00 до 18:00, пятница с 9:00 до 16:45; суббота, воскресенье — выходные».
    pub fn describe(&self) -> String {
        let mut open = Vec::new();
        let mut i = 0;
        while i < 7 {
            let Some(span) = self.week[i] else {
                i += 1;
                continue;
            };
            let mut j = i;
            while j + 1 < 7 && self.week[j + 1] == Some(span) {
                j += 1;
            }
            let days = if j > i {
                format!("{}–{}", DAY_NAMES[i], DAY_NAMES[j])
            } else {
                DAY_NAMES[i].to_string()
            };
            open.push(format!(
                "{days} с {} до {}",
                fmt_time(span.0),
                fmt_time(span.1)
            ));
            i = j + 1;
        }
        let closed: Vec<&str> = (0..7)
            .filter(|&d| self.week[d].is_none())
            .map(|d| DAY_NAMES[d])
            .collect();
        let mut s = open.join(", ");
        if s.is_empty() {
            s = "операторы сейчас не работают".into();
        }
        if !closed.is_empty() {
            s.push_str(&format!("; {} — выходные", closed.join(", ")));
        }
        s
    }

    /// When operators are next available, in words («завтра в 9:00», «в понедельник в 9:00»).
    pub fn next_open(&self, ts: Timestamp) -> Option<String> {
        let z = self.local(ts);
        let today = z.date();
        for k in 0..30 {
            let d = today.checked_add(jiff::Span::new().days(k)).ok()?;
            if let Some((a, b)) = self.span_on(d) {
                if k == 0 {
                    if z.time() < a {
                        return Some(format!("сегодня в {}", fmt_time(a)));
                    }
                    if z.time() < b {
                        return Some("сейчас".into());
                    }
                    continue;
                }
                let when = if k == 1 {
                    "завтра".to_string()
                } else {
                    weekday_phrase(d.weekday())
                };
                return Some(format!("{when} в {}", fmt_time(a)));
            }
        }
        None
    }
}

/// «в понедельник», «во вторник», «в среду»…
pub fn weekday_phrase(w: Weekday) -> String {
    match w {
        Weekday::Monday => "в понедельник",
        Weekday::Tuesday => "во вторник",
        Weekday::Wednesday => "в среду",
        Weekday::Thursday => "в четверг",
        Weekday::Friday => "в пятницу",
        Weekday::Saturday => "в субботу",
        Weekday::Sunday => "в воскресенье",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse::<Zoned>().unwrap().timestamp()
    }

    #[test]
    fn open_closed_and_holidays() {
        let h = Hours::from_config(&HoursConfig::default()).unwrap();
        // Thursday 26 Nov 2026, 10:00 Moscow
        assert!(h.is_open(at("2026-11-26T10:00[Europe/Moscow]")));
        assert!(!h.is_open(at("2026-11-26T18:00[Europe/Moscow]")));
        assert!(!h.is_open(at("2026-11-27T17:00[Europe/Moscow]"))); // Friday closes 16:45
        assert!(!h.is_open(at("2026-11-28T12:00[Europe/Moscow]"))); // Saturday
        assert!(!h.is_open(at("2026-12-31T12:00[Europe/Moscow]"))); // holiday
                                                                    // 07:30 UTC is 10:30 in Moscow
        assert!(h.is_open(at("2026-11-26T07:30[UTC]")));
        assert_eq!(
            h.next_open(at("2026-11-28T12:00[Europe/Moscow]")).unwrap(),
            "в понедельник в 9:00"
        );
        assert_eq!(
            h.next_open(at("2026-11-26T20:00[Europe/Moscow]")).unwrap(),
            "завтра в 9:00"
        );
        assert_eq!(h.describe(), "понедельник–четверг с 9:00 до 18:00, пятница с 9:00 до 16:45; суббота, воскресенье — выходные");
    }

    #[test]
    fn bad_ranges_are_reported() {
        assert!(parse_span("18:00-09:00").is_err());
        assert!(parse_span("девять-шесть").is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }
}
