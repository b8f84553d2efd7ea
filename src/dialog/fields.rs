//! The values of application fields as a client gives and hears them:
//! reading SNILS, INN, BIK, account numbers, dates and draft codes out of
//! typed or spoken words («один один два…», «5 мая 1980», «пятое мая
//! тысяча девятьсот восьмидесятого года»), checking them with
//! `services::validate` (each failure with its own prompt), and saying them
//! back on voice as words in short groups, so a synthesiser never reads
//! «11223344595» as one huge number. Also what the graph checks of an
//! application form when it loads.

use crate::nlu::kb::normalize_text;
use crate::services::validate::{self, Invalid};
use jiff::civil::Date;
use regex::Regex;
use std::sync::LazyLock;

use super::graph::{prompts_of, SlotType};
use super::values::{words_to_digits, MONTH_STEMS};
use crate::services::appointments::MONTHS_GEN;

/// The slot types this module reads.
pub fn is_field_kind(t: SlotType) -> bool {
    matches!(
        t,
        SlotType::Snils
            | SlotType::Inn
            | SlotType::Bik
            | SlotType::Account
            | SlotType::Date
            | SlotType::BirthDate
            | SlotType::Code
    )
}

fn refused(t: SlotType, e: Invalid) -> &'static str {
    let p = prompts_of(t);
    match e {
        Invalid::Length => p[0],
        Invalid::Checksum | Invalid::NotRussian | Invalid::Future => {
            p.get(1).copied().unwrap_or(p[0])
        }
        Invalid::TooOld => p.get(2).copied().unwrap_or(p[0]),
    }
}

/// The digits of a value typed or said: as written when it is only
/// digits and separators, else the numbers in its words joined
/// («один один два два три три…» → «112233…»).
fn digits_said(text: &str) -> String {
    if let Some(d) = validate::digits_of(text) {
        return d;
    }
    words_to_digits(&normalize_text(text))
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// Checks a field's value: the value as kept (SNILS as on the card, dates
/// as dd.mm.yyyy), or the prompt that says what is wrong. `bik`: the
/// form's BIK, for an account's key.
pub fn check(
    t: SlotType,
    text: &str,
    today: Date,
    bik: Option<&str>,
) -> Result<String, &'static str> {
    let d = || digits_said(text);
    let r = match t {
        SlotType::Snils => validate::snils(&d()),
        SlotType::Inn => validate::inn_personal(&d()),
        SlotType::Bik => validate::bik(&d()),
        SlotType::Account => match bik {
            Some(b) => validate::account(&d(), b),
            None => validate::account_digits(&d()),
        },
        SlotType::Date => date_in(text)
            .map(validate::date_text)
            .ok_or(Invalid::Length),
        SlotType::BirthDate => date_in(text)
            .ok_or(Invalid::Length)
            .and_then(|x| validate::birth_date(x, today))
            .map(validate::date_text),
        SlotType::Code => {
            let c = d();
            if c.len() == 8 {
                Ok(c)
            } else {
                Err(Invalid::Length)
            }
        }
        _ => return Ok(text.to_string()),
    };
    r.map_err(|e| refused(t, e))
}

/// A field's value inside a longer message (the one that started the form,
/// an answer that said more than asked): only a value that passes its check.
pub fn said_in(t: SlotType, text: &str, today: Date, bik: Option<&str>) -> Option<String> {
    static RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d[\d\- ]*\d").unwrap());
    match t {
        SlotType::Date | SlotType::BirthDate => check(t, text, today, bik).ok(),
        _ => {
            let t2 = words_to_digits(&normalize_text(text));
            RUN.find_iter(text)
                .chain(RUN.find_iter(&t2))
                .find_map(|m| check(t, m.as_str(), today, bik).ok())
        }
    }
}

/// Ordinal numerals (neuter nominative and genitive), as a date is said:
/// «пятое мая», «восьмидесятого года».
const ORDINALS: &[(u32, &str, &str)] = &[
    (1, "первое", "первого"),
    (2, "второе", "второго"),
    (3, "третье", "третьего"),
    (4, "четвертое", "четвертого"),
    (5, "пятое", "пятого"),
    (6, "шестое", "шестого"),
    (7, "седьмое", "седьмого"),
    (8, "восьмое", "восьмого"),
    (9, "девятое", "девятого"),
    (10, "десятое", "десятого"),
    (11, "одиннадцатое", "одиннадцатого"),
    (12, "двенадцатое", "двенадцатого"),
    (13, "тринадцатое", "тринадцатого"),
    (14, "четырнадцатое", "четырнадцатого"),
    (15, "пятнадцатое", "пятнадцатого"),
    (16, "шестнадцатое", "шестнадцатого"),
    (17, "семнадцатое", "семнадцатого"),
    (18, "восемнадцатое", "восемнадцатого"),
    (19, "девятнадцатое", "девятнадцатого"),
    (20, "двадцатое", "двадцатого"),
    (30, "тридцатое", "тридцатого"),
    (40, "сороковое", "сорокового"),
    (50, "пятидесятое", "пятидесятого"),
    (60, "шестидесятое", "шестидесятого"),
    (70, "семидесятое", "семидесятого"),
    (80, "восьмидесятое", "восьмидесятого"),
    (90, "девяностое", "девяностого"),
    (100, "сотое", "сотого"),
    (200, "двухсотое", "двухсотого"),
    (300, "трехсотое", "трехсотого"),
    (400, "четырехсотое", "четырехсотого"),
    (500, "пятисотое", "пятисотого"),
    (600, "шестисотое", "шестисотого"),
    (700, "семисотое", "семисотого"),
    (800, "восьмисотое", "восьмисотого"),
    (900, "девятисотое", "девятисотого"),
    (1000, "тысячное", "тысячного"),
    (2000, "двухтысячное", "двухтысячного"),
];

/// The value of an ordinal word in any of its forms («пятого», «пятое», «пятый»).
fn ordinal_value(w: &str) -> Option<u32> {
    const ENDINGS: &[&str] = &[
        "ое", "ого", "ый", "ой", "ом", "ая", "ую", "ье", "ьего", "ий", "ья", "ем", "ему",
    ];
    ORDINALS.iter().find_map(|(v, nom, _)| {
        let stem = nom.strip_suffix("ье").or(nom.strip_suffix("ое"))?;
        let rest = w.strip_prefix(stem)?;
        ENDINGS.contains(&rest).then_some(*v)
    })
}

/// A date in a message: «05.05.1980», «5/5/1980», «1980-05-05», «5 мая
/// 1980», «пятое мая тысяча девятьсот восьмидесятого года».
pub fn date_in(text: &str) -> Option<Date> {
    static NUMERIC: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(\d{1,2})[./\-](\d{1,2})[./\-](\d{4})\b").unwrap());
    static ISO: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(\d{4})-(\d{2})-(\d{2})\b").unwrap());
    if let Some(c) = ISO.captures(text) {
        return Date::new(c[1].parse().ok()?, c[2].parse().ok()?, c[3].parse().ok()?).ok();
    }
    if let Some(c) = NUMERIC.captures(text) {
        return Date::new(c[3].parse().ok()?, c[2].parse().ok()?, c[1].parse().ok()?).ok();
    }
    let t = words_to_digits(&normalize_text(text));
    let words: Vec<&str> = t.split_whitespace().collect();
    let month_at = words.iter().position(|w| {
        MONTH_STEMS
            .iter()
            .any(|m| w.starts_with(m) && (*m != "ма" || w.starts_with("мая")))
    })?;
    let month = MONTH_STEMS.iter().position(|m| {
        words[month_at].starts_with(m) && (*m != "ма" || words[month_at].starts_with("мая"))
    })? as i8
        + 1;
    // a number's parts: digits or ordinal words, added up («20 пятое», «1900 восьмидесятого»)
    let value = |w: &str| w.parse::<u32>().ok().or_else(|| ordinal_value(w));
    let day: u32 = words[..month_at].iter().rev().map_while(|w| value(w)).sum();
    let year: u32 = words[month_at + 1..].iter().map_while(|w| value(w)).sum();
    if day == 0 || year < 1000 {
        return None;
    }
    Date::new(i16::try_from(year).ok()?, month, i8::try_from(day).ok()?).ok()
}

const DIGITS: [&str; 10] = [
    "ноль",
    "один",
    "два",
    "три",
    "четыре",
    "пять",
    "шесть",
    "семь",
    "восемь",
    "девять",
];

/// Digits said one by one in groups: «один один два, два три три».
pub fn say_digits(d: &str, groups: &[usize]) -> String {
    let ds: Vec<&str> = d
        .chars()
        .filter_map(|c| c.to_digit(10).map(|n| DIGITS[n as usize]))
        .collect();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = groups.iter().copied().chain(std::iter::repeat(3));
    while at < ds.len() {
        let n = sizes.next().unwrap_or(3).max(1);
        let end = (at + n).min(ds.len());
        out.push(ds[at..end].join(" "));
        at = end;
    }
    out.join(", ")
}

/// A cardinal number below 10,000 in words (feminine «две тысячи»).
fn cardinal(n: u32) -> String {
    const UNITS: [&str; 20] = [
        "",
        "один",
        "два",
        "три",
        "четыре",
        "пять",
        "шесть",
        "семь",
        "восемь",
        "девять",
        "десять",
        "одиннадцать",
        "двенадцать",
        "тринадцать",
        "четырнадцать",
        "пятнадцать",
        "шестнадцать",
        "семнадцать",
        "восемнадцать",
        "девятнадцать",
    ];
    const TENS: [&str; 10] = [
        "",
        "",
        "двадцать",
        "тридцать",
        "сорок",
        "пятьдесят",
        "шестьдесят",
        "семьдесят",
        "восемьдесят",
        "девяносто",
    ];
    const HUNDREDS: [&str; 10] = [
        "",
        "сто",
        "двести",
        "триста",
        "четыреста",
        "пятьсот",
        "шестьсот",
        "семьсот",
        "восемьсот",
        "девятьсот",
    ];
    let mut w = Vec::new();
    match n / 1000 {
        0 => {}
        1 => w.push("тысяча".to_string()),
        2 => w.push("две тысячи".to_string()),
        k @ 3..=4 => w.push(format!("{} тысячи", UNITS[k as usize])),
        k => w.push(format!("{} тысяч", UNITS[(k % 20) as usize])),
    }
    let r = n % 1000;
    if r >= 100 {
        w.push(HUNDREDS[(r / 100) as usize].to_string());
    }
    let r = r % 100;
    if r >= 20 {
        w.push(TENS[(r / 10) as usize].to_string());
        if !r.is_multiple_of(10) {
            w.push(UNITS[(r % 10) as usize].to_string());
        }
    } else if r > 0 {
        w.push(UNITS[r as usize].to_string());
    }
    w.join(" ")
}

fn ordinal_of(v: u32, genitive: bool) -> &'static str {
    ORDINALS
        .iter()
        .find(|(x, _, _)| *x == v)
        .map(|(_, n, g)| if genitive { *g } else { *n })
        .unwrap_or("")
}

/// An ordinal number below 10,000 in words: the last part ordinal, the
/// parts before it cardinal («тысяча девятьсот восьмидесятого»).
fn ordinal(n: u32, genitive: bool) -> String {
    if n.is_multiple_of(1000) && n > 0 && n <= 2000 {
        return ordinal_of(n, genitive).to_string();
    }
    let last = if n % 100 < 20 && !n.is_multiple_of(100) {
        n % 100
    } else if !n.is_multiple_of(10) {
        n % 10
    } else if !n.is_multiple_of(100) {
        n % 100
    } else {
        n % 1000
    };
    let head = n - last;
    let mut s = if head > 0 {
        cardinal(head)
    } else {
        String::new()
    };
    if !s.is_empty() {
        s.push(' ');
    }
    s.push_str(ordinal_of(last, genitive));
    s
}

/// A date said aloud: «пятое мая тысяча девятьсот девяностого года».
pub fn say_date(d: Date) -> String {
    format!(
        "{} {} {} года",
        ordinal(d.day() as u32, false),
        MONTHS_GEN[d.month() as usize - 1],
        ordinal(d.year() as u32, true)
    )
}

/// A field's value as the voice robot says it: digits in short groups,
/// dates in words; other values as they are.
pub fn say_value(t: SlotType, value: &str) -> String {
    match t {
        SlotType::Snils => say_digits(value, &[3, 3, 3, 2]),
        SlotType::Inn => say_digits(value, &[4, 2, 4, 2]),
        SlotType::Bik => say_digits(value, &[2, 2, 2, 3]),
        // twenty digits are too many to take in by ear: the last four, as
        // telephone banking reads an account
        SlotType::Account if value.len() > 4 => format!(
            "последние цифры {}",
            say_digits(&value[value.len() - 4..], &[4])
        ),
        SlotType::Account => say_digits(value, &[4]),
        SlotType::Code | SlotType::Digits => say_digits(value, &[4, 4, 4, 4, 4]),
        SlotType::Phone => {
            let d: String = value.chars().filter(char::is_ascii_digit).collect();
            format!("плюс {}", say_digits(&d, &[1, 3, 3, 2, 2]))
        }
        SlotType::Date | SlotType::BirthDate => validate::parse_date_text(value)
            .map(say_date)
            .unwrap_or_else(|| value.to_string()),
        _ => value.to_string(),
    }
}

/// A field's value as a chat shows it (a draft's code in two halves).
pub fn show_value(t: SlotType, value: &str) -> String {
    match t {
        SlotType::Code if value.len() == 8 => format!("{} {}", &value[..4], &value[4..]),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const TODAY: Date = date(2026, 11, 26);

    #[test]
    fn values_typed_or_said() {
        let c = |t, s: &str| check(t, s, TODAY, Some("044525225"));
        assert_eq!(
            c(SlotType::Snils, "112-233-445 95").as_deref(),
            Ok("112-233-445 95")
        );
        assert_eq!(
            c(
                SlotType::Snils,
                "один один два два три три четыре четыре пять девяносто пять"
            )
            .as_deref(),
            Ok("112-233-445 95")
        );
        assert_eq!(c(SlotType::Snils, "112-233-445 96"), Err("snils_checksum"));
        assert_eq!(c(SlotType::Snils, "12345"), Err("invalid_snils"));
        assert_eq!(
            c(SlotType::Inn, "500100732259").as_deref(),
            Ok("500100732259")
        );
        assert_eq!(c(SlotType::Inn, "500100732258"), Err("inn_checksum"));
        assert_eq!(c(SlotType::Bik, "123456789"), Err("bik_not_russian"));
        assert_eq!(
            c(SlotType::Account, "40702810038000017240").as_deref(),
            Ok("40702810038000017240")
        );
        assert_eq!(
            c(SlotType::Account, "40702810038000017241"),
            Err("account_key")
        );
        assert_eq!(c(SlotType::Code, "1234 5678").as_deref(), Ok("12345678"));
        assert_eq!(
            c(SlotType::Code, "один два три четыре пять шесть семь восемь").as_deref(),
            Ok("12345678")
        );
        assert_eq!(
            c(SlotType::BirthDate, "05.05.1990").as_deref(),
            Ok("05.05.1990")
        );
        assert_eq!(
            c(SlotType::BirthDate, "5 мая 1990").as_deref(),
            Ok("05.05.1990")
        );
        assert_eq!(
            c(SlotType::BirthDate, "05.05.2030"),
            Err("birth_date_future")
        );
        assert_eq!(c(SlotType::BirthDate, "05.05.1800"), Err("birth_date_old"));
        assert_eq!(c(SlotType::BirthDate, "31.02.1990"), Err("invalid_date"));
        assert_eq!(c(SlotType::BirthDate, "вчера"), Err("invalid_date"));
    }

    #[test]
    fn dates_in_words() {
        assert_eq!(date_in("5 мая 1980"), Some(date(1980, 5, 5)));
        assert_eq!(
            date_in("родилась 21 марта 1985 года"),
            Some(date(1985, 3, 21))
        );
        assert_eq!(
            date_in("пятое мая тысяча девятьсот восьмидесятого года"),
            Some(date(1980, 5, 5))
        );
        assert_eq!(
            date_in("двадцать первого декабря две тысячи пятнадцатого"),
            Some(date(2015, 12, 21))
        );
        assert_eq!(date_in("1980-05-05"), Some(date(1980, 5, 5)));
        assert_eq!(date_in("5 мая"), None);
    }

    #[test]
    fn values_said_in_words_on_voice() {
        assert_eq!(
            say_value(SlotType::Snils, "112-233-445 95"),
            "один один два, два три три, четыре четыре пять, девять пять"
        );
        assert_eq!(
            say_value(SlotType::Phone, "+79123456789"),
            "плюс семь, девять один два, три четыре пять, шесть семь, восемь девять"
        );
        assert_eq!(
            say_value(SlotType::BirthDate, "05.05.1990"),
            "пятое мая тысяча девятьсот девяностого года"
        );
        assert_eq!(
            say_value(SlotType::BirthDate, "21.12.2015"),
            "двадцать первое декабря две тысячи пятнадцатого года"
        );
        assert_eq!(
            say_value(SlotType::BirthDate, "01.01.2000"),
            "первое января двухтысячного года"
        );
        assert_eq!(
            say_value(SlotType::BirthDate, "30.06.1900"),
            "тридцатое июня тысяча девятисотого года"
        );
        // no long run of digits is left for a synthesiser to read as one number
        for (t, v) in [
            (SlotType::Account, "40702810038000017240"),
            (SlotType::Bik, "044525225"),
            (SlotType::Inn, "500100732259"),
            (SlotType::Code, "12345678"),
        ] {
            assert!(
                !say_value(t, v).chars().any(|c| c.is_ascii_digit()),
                "{t:?}"
            );
        }
    }
}
