//! Values read out of a client's free text: numbers written as words
//! («семьдесят два»), days («завтра», «в среду», «30 ноября») and times of
//! day («14:00», «часа в 2», «после обеда»), numbers of applications and
//! phones inside a longer message. Hand-written: no maintained crate parses
//! Russian numerals or spoken dates and times.

use jiff::civil::{Date, Time, Weekday};
use regex::Regex;
use std::sync::LazyLock;

/// Number words and their values; case forms by their own entries.
const WORDS: &[(&str, u32)] = &[
    ("ноль", 0),
    ("нуль", 0),
    ("один", 1),
    ("одна", 1),
    ("одного", 1),
    ("одной", 1),
    ("два", 2),
    ("две", 2),
    ("двух", 2),
    ("три", 3),
    ("трех", 3),
    ("четыре", 4),
    ("четырех", 4),
    ("пять", 5),
    ("пяти", 5),
    ("шесть", 6),
    ("шести", 6),
    ("семь", 7),
    ("семи", 7),
    ("восемь", 8),
    ("восьми", 8),
    ("девять", 9),
    ("девяти", 9),
    ("десять", 10),
    ("десяти", 10),
    ("одиннадцать", 11),
    ("одиннадцати", 11),
    ("двенадцать", 12),
    ("двенадцати", 12),
    ("тринадцать", 13),
    ("четырнадцать", 14),
    ("пятнадцать", 15),
    ("шестнадцать", 16),
    ("семнадцать", 17),
    ("восемнадцать", 18),
    ("девятнадцать", 19),
    ("двадцать", 20),
    ("двадцати", 20),
    ("тридцать", 30),
    ("тридцати", 30),
    ("сорок", 40),
    ("сорока", 40),
    ("пятьдесят", 50),
    ("пятидесяти", 50),
    ("шестьдесят", 60),
    ("шестидесяти", 60),
    ("семьдесят", 70),
    ("семидесяти", 70),
    ("восемьдесят", 80),
    ("восьмидесяти", 80),
    ("девяносто", 90),
    ("девяноста", 90),
    ("сто", 100),
    ("ста", 100),
    ("двести", 200),
    ("триста", 300),
    ("четыреста", 400),
    ("пятьсот", 500),
    ("шестьсот", 600),
    ("семьсот", 700),
    ("восемьсот", 800),
    ("девятьсот", 900),
    ("тысяча", 1000),
    ("тысячи", 1000),
    ("тысяч", 1000),
];

fn word_value(w: &str) -> Option<u32> {
    WORDS.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// The text (normalised: lower case, ё → е, no punctuation) with numbers
/// written as words turned into digits: «мне семьдесят два года» → «мне 72
/// года», «тысяча двести» → «1200». A smaller order joins a larger one
/// (hundreds, tens, units: «девяносто девять»), «тысяча» multiplies what
/// came before it; digits said one by one stay apart («два три» → «2 3»).
pub fn words_to_digits(normalised: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    // the number so far, and the order of its last part (1, 10, 100, 1000)
    let mut acc: Option<(u32, u32)> = None;
    let order = |v: u32| match v {
        0..=9 => 1,
        10..=99 => 10,
        100..=999 => 100,
        _ => 1000,
    };
    for w in normalised.split_whitespace() {
        match word_value(w) {
            Some(1000) => {
                let (a, _) = acc.unwrap_or((1, 1));
                acc = Some(if a < 1000 {
                    (a * 1000, 1000)
                } else {
                    (a, 1000)
                });
            }
            Some(v) => {
                acc = match acc {
                    // a smaller order after a larger one («сто двадцать»,
                    // «тысяча двести»); a unit only after a round ten from
                    // twenty on («семьдесят два», not «пятнадцать три»)
                    Some((a, last))
                        if order(v) < last && (last != 10 || a % 10 == 0 && a % 100 >= 20) =>
                    {
                        Some((a + v, order(v)))
                    }
                    Some((a, _)) => {
                        out.push(a.to_string());
                        Some((v, order(v)))
                    }
                    None => Some((v, order(v))),
                };
            }
            None => {
                if let Some((a, _)) = acc.take() {
                    out.push(a.to_string());
                }
                out.push(w.to_string());
            }
        }
    }
    if let Some((a, _)) = acc {
        out.push(a.to_string());
    }
    out.join(" ")
}

/// A whole message that is one number (digits or words), like a score.
pub fn number(text: &str) -> Option<u32> {
    let t = words_to_digits(&crate::nlu::kb::normalize_text(text));
    let t = t
        .trim_start_matches("на ")
        .trim_end_matches(" баллов")
        .trim_end_matches(" балла")
        .trim_end_matches(" балл");
    t.parse().ok()
}

/// A run of 4–20 digits in a longer message (spaces and dashes inside
/// allowed), as an application's number.
pub fn digits_in(text: &str) -> Option<String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d[\d\- ]{2,}\d").unwrap());
    // not a part of a date or a time («12.10.2026», «14:00»)
    let joined = |c: Option<char>| c.is_some_and(|c| matches!(c, '.' | ':' | '/'));
    RE.find_iter(text)
        .filter(|m| {
            !joined(text[..m.start()].chars().next_back())
                && !joined(text[m.end()..].chars().next())
        })
        .map(|m| {
            m.as_str()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .find(|d| (4..=20).contains(&d.len()))
}

/// A phone number written anywhere in a message.
pub fn phone_in(text: &str) -> Option<String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:\+7|8)?[\s\-(]*9\d{2}[\s\-)]*\d{3}[\s\-]*\d{2}[\s\-]*\d{2}").unwrap()
    });
    RE.find_iter(text)
        .find_map(|m| parse_phone(m.as_str().trim()))
}

/// Russian phone number → +7XXXXXXXXXX.
pub fn parse_phone(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let ok_chars = text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    match digits.len() {
        11 if ok_chars && (digits.starts_with('7') || digits.starts_with('8')) => {
            Some(format!("+7{}", &digits[1..]))
        }
        10 if ok_chars && digits.starts_with('9') => Some(format!("+7{digits}")),
        _ => None,
    }
}

/// Part of the day a client asks for: a time or a span of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWish {
    pub from: Time,
    pub to: Time,
    /// An exact time («14:00», «часа в 2»), not a span («после обеда»).
    pub exact: bool,
}

impl TimeWish {
    fn at(h: i8, m: i8) -> Option<Self> {
        let t = Time::new(h, m, 0, 0).ok()?;
        Some(Self {
            from: t,
            to: t,
            exact: true,
        })
    }

    fn span(h1: i8, h2: i8) -> Self {
        Self {
            from: Time::constant(h1, 0, 0, 0),
            to: Time::constant(h2, 0, 0, 0),
            exact: false,
        }
    }

    /// How far `t` is from what was asked (0 inside the span), in minutes.
    pub fn distance(&self, t: Time) -> i64 {
        let m = |x: Time| x.hour() as i64 * 60 + x.minute() as i64;
        if t < self.from {
            m(self.from) - m(t)
        } else if t > self.to {
            m(t) - m(self.to)
        } else {
            0
        }
    }
}

/// The time a message asks for. Hours below 8 are afternoon hours («в 2» is
/// 14:00): reception is in the daytime.
pub fn time_in(text: &str) -> Option<TimeWish> {
    static CLOCK: LazyLock<Regex> =
        // «14:20», «14.30» (a dot only before round minutes: «10.12» is a date)
        LazyLock::new(|| {
            Regex::new(r"\b([01]?\d|2[0-3])(?::([0-5]\d)|\.(00|15|30|45))\b").unwrap()
        });
    static HOUR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:\bв|\bк|\bна|\bчаса в|\bчасов в|\bчасам к|\bоколо)\s+(\d{1,2})\b(?:\s*(час\w*|утра|дня|вечера))?|\b(\d{1,2})\s*(час\w*|утра|дня|вечера)\b").unwrap()
    });
    let afternoon = |h: i8, said: Option<&str>| -> i8 {
        match said {
            Some("утра") => h,
            Some("дня") | Some("вечера") if h < 12 => h + 12,
            _ if h < 8 => h + 12,
            _ => h,
        }
    };
    if let Some(c) = CLOCK.captures(text) {
        let h: i8 = c[1].parse().ok()?;
        let m: i8 = c.get(2).or(c.get(3))?.as_str().parse().ok()?;
        return TimeWish::at(afternoon(h, None), m);
    }
    let t = words_to_digits(&crate::nlu::kb::normalize_text(text));
    if let Some(c) = HOUR.captures(&t) {
        let (h, said) = match (c.get(1), c.get(3)) {
            (Some(h), _) => (h.as_str(), c.get(2).map(|x| x.as_str())),
            (None, Some(h)) => (h.as_str(), c.get(4).map(|x| x.as_str())),
            _ => return None,
        };
        let h: i8 = h.parse().ok()?;
        if h <= 23 {
            return TimeWish::at(afternoon(h, said), 0);
        }
    }
    let has = |w: &str| t.contains(w);
    if has("после обеда") || has("во второй половине") || has("днем")
    {
        return Some(TimeWish::span(13, 18));
    }
    if has("вечер") {
        return Some(TimeWish::span(16, 20));
    }
    if has("в обед") || has("обед") {
        return Some(TimeWish::span(12, 14));
    }
    if has("утр") || has("до обеда") || has("пораньше") || has("в первой половине")
    {
        return Some(TimeWish::span(8, 12));
    }
    None
}

const WEEKDAY_STEMS: [(&str, Weekday); 7] = [
    ("понедельник", Weekday::Monday),
    ("вторник", Weekday::Tuesday),
    ("сред", Weekday::Wednesday),
    ("четверг", Weekday::Thursday),
    ("пятниц", Weekday::Friday),
    ("суббот", Weekday::Saturday),
    ("воскресен", Weekday::Sunday),
];

/// Month names' stems, as typed or said in any case.
pub(super) const MONTH_STEMS: [&str; 12] = [
    "январ",
    "феврал",
    "март",
    "апрел",
    "ма",
    "июн",
    "июл",
    "август",
    "сентябр",
    "октябр",
    "ноябр",
    "декабр",
];

/// The day a message asks for, counted from `today`: «сегодня», «завтра»,
/// «послезавтра», a weekday (the next one), «30 ноября» or «30.11».
pub fn day_in(text: &str, today: Date) -> Option<Date> {
    static NUMERIC: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b([0-3]?\d)\.([01]?\d)(?:\.(\d{2,4}))?\b").unwrap());
    if let Some(c) = NUMERIC.captures(text) {
        let d: i8 = c[1].parse().ok()?;
        let m: i8 = c[2].parse().ok()?;
        if (1..=12).contains(&m) {
            return next_date(today, m, d);
        }
    }
    let t = words_to_digits(&crate::nlu::kb::normalize_text(text));
    let words: Vec<&str> = t.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        match *w {
            "сегодня" => return Some(today),
            "завтра" => return today.tomorrow().ok(),
            "послезавтра" => return today.tomorrow().ok()?.tomorrow().ok(),
            _ => {}
        }
        if let Some((_, wd)) = WEEKDAY_STEMS.iter().find(|(s, _)| w.starts_with(s)) {
            let mut d = today.tomorrow().ok()?;
            while d.weekday() != *wd {
                d = d.tomorrow().ok()?;
            }
            return Some(d);
        }
        if let (Ok(day), Some(next)) = (w.parse::<i8>(), words.get(i + 1)) {
            if let Some(m) = MONTH_STEMS
                .iter()
                .position(|s| next.starts_with(s) && (*s != "ма" || next.starts_with("мая")))
            {
                return next_date(today, m as i8 + 1, day);
            }
        }
    }
    None
}

/// The date with this month and day on or after `today` (this year or next).
fn next_date(today: Date, month: i8, day: i8) -> Option<Date> {
    let this = Date::new(today.year(), month, day).ok()?;
    if this >= today {
        Some(this)
    } else {
        Date::new(today.year() + 1, month, day).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn number_words_become_digits() {
        assert_eq!(words_to_digits("мне семьдесят два года"), "мне 72 года");
        assert_eq!(words_to_digits("восемь"), "8");
        assert_eq!(words_to_digits("девяносто девять лет"), "99 лет");
        assert_eq!(words_to_digits("два три"), "2 3");
        assert_eq!(words_to_digits("тысяча двести"), "1200");
        assert_eq!(words_to_digits("две тысячи двадцать шесть"), "2026");
        assert_eq!(words_to_digits("сто двадцать три"), "123");
        assert_eq!(words_to_digits("один два три четыре"), "1 2 3 4");
        assert_eq!(words_to_digits("двенадцать тридцать четыре"), "12 34");
        assert_eq!(words_to_digits("пятнадцать три"), "15 3");
        assert_eq!(
            digits_in(&words_to_digits(
                "номер один два три четыре пять шесть семь"
            ))
            .as_deref(),
            Some("1234567")
        );
        assert_eq!(number("Восемь"), Some(8));
        assert_eq!(number("на десять баллов"), Some(10));
        assert_eq!(number("десять"), Some(10));
        assert_eq!(number("ну не знаю"), None);
    }

    #[test]
    fn numbers_and_phones_inside_messages() {
        assert_eq!(
            digits_in("статус заявления 1234567").as_deref(),
            Some("1234567")
        );
        assert_eq!(digits_in("заявление от 5 мая"), None);
        assert_eq!(digits_in("заявление от 12.10.2026"), None);
        assert_eq!(
            phone_in("перезвоните на 8 912 345-67-89 пожалуйста").as_deref(),
            Some("+79123456789")
        );
    }

    #[test]
    fn times_of_day() {
        let at = |h, m| Some(TimeWish::at(h, m).unwrap());
        assert_eq!(time_in("14:00"), at(14, 0));
        assert_eq!(time_in("часа в 2"), at(14, 0));
        assert_eq!(time_in("в 10 утра"), at(10, 0));
        assert_eq!(time_in("в два часа дня"), at(14, 0));
        assert_eq!(time_in("к 9"), at(9, 0));
        let after = time_in("завтра после обеда").unwrap();
        assert!(!after.exact && after.from.hour() == 13);
        assert!(time_in("в среду утром").unwrap().to.hour() == 12);
        assert_eq!(time_in("не знаю"), None);
    }

    #[test]
    fn days() {
        let thu = date(2026, 11, 26);
        assert_eq!(day_in("завтра после обеда", thu), Some(date(2026, 11, 27)));
        assert_eq!(day_in("в среду утром", thu), Some(date(2026, 12, 2)));
        assert_eq!(day_in("30 ноября", thu), Some(date(2026, 11, 30)));
        assert_eq!(day_in("на 3.12", thu), Some(date(2026, 12, 3)));
        assert_eq!(day_in("когда угодно", thu), None);
    }
}
