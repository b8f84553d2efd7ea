//! What the robot says, made for a synthesiser: numbers, times, dates and
//! application numbers in words, abbreviations spelled, no URLs or emoji,
//! sentence by sentence, and the keys of the options announced («Нажмите 1
//! или скажите …»). The engine has already styled the text for voice
//! (short sentences, «скажите» for «напишите»); this is only how it sounds.

use crate::dialog::Turn;
use regex::Regex;
use std::sync::LazyLock;

const ONES: [&str; 20] = [
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
/// Ordinals in the genitive («тридцатого ноября»), 1 to 31.
const DAY_ORDINALS: [&str; 32] = [
    "",
    "первого",
    "второго",
    "третьего",
    "четвёртого",
    "пятого",
    "шестого",
    "седьмого",
    "восьмого",
    "девятого",
    "десятого",
    "одиннадцатого",
    "двенадцатого",
    "тринадцатого",
    "четырнадцатого",
    "пятнадцатого",
    "шестнадцатого",
    "семнадцатого",
    "восемнадцатого",
    "девятнадцатого",
    "двадцатого",
    "двадцать первого",
    "двадцать второго",
    "двадцать третьего",
    "двадцать четвёртого",
    "двадцать пятого",
    "двадцать шестого",
    "двадцать седьмого",
    "двадцать восьмого",
    "двадцать девятого",
    "тридцатого",
    "тридцать первого",
];
const MONTHS_GEN: &str =
    "января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря";

/// Abbreviations read as words; every other capitalised abbreviation of two
/// to five letters is spelled letter by letter.
const AS_WORDS: &[(&str, &str)] = &[("СНИЛС", "снилс"), ("ВУЗ", "вуз"), ("ЗАГС", "загс")];

/// Below 1000, feminine or masculine («одна тысяча», «два рубля»).
fn below_thousand(n: u64, feminine: bool) -> Vec<&'static str> {
    let mut w = Vec::new();
    let (h, rest) = (n / 100, n % 100);
    if h > 0 {
        w.push(HUNDREDS[h as usize]);
    }
    if rest >= 20 {
        w.push(TENS[(rest / 10) as usize]);
        let u = rest % 10;
        if u > 0 {
            w.push(unit(u, feminine));
        }
    } else if rest > 0 || n == 0 {
        w.push(unit(rest, feminine));
    }
    w
}

fn unit(u: u64, feminine: bool) -> &'static str {
    match (u, feminine) {
        (1, true) => "одна",
        (2, true) => "две",
        _ => ONES[u as usize],
    }
}

/// The form of a counted noun: 1 → one, 2–4 → few, else many.
fn plural<'a>(n: u64, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    let (d, h) = (n % 10, n % 100);
    if (11..=14).contains(&h) {
        many
    } else if d == 1 {
        one
    } else if (2..=4).contains(&d) {
        few
    } else {
        many
    }
}

/// A cardinal number in words (up to 999 999 999 999).
pub fn number(n: u64) -> String {
    if n == 0 {
        return "ноль".into();
    }
    let scales = [
        (
            1_000_000_000,
            false,
            ["миллиард", "миллиарда", "миллиардов"],
        ),
        (1_000_000, false, ["миллион", "миллиона", "миллионов"]),
        (1_000, true, ["тысяча", "тысячи", "тысяч"]),
    ];
    let mut w: Vec<&str> = Vec::new();
    let mut rest = n % 1_000_000_000_000;
    for (scale, fem, names) in scales {
        let k = rest / scale;
        if k > 0 {
            w.extend(below_thousand(k, fem));
            w.push(plural(k, names[0], names[1], names[2]));
        }
        rest %= scale;
    }
    if rest > 0 {
        w.extend(below_thousand(rest, false));
    }
    w.join(" ")
}

/// Digits read in groups of two or three («12 34 567»), as people dictate
/// numbers: a leading zero is read as «ноль».
pub fn digits(s: &str) -> String {
    let d: Vec<char> = s.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut groups = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let left = d.len() - i;
        let take = if left == 4 { 2 } else { left.min(3) };
        let g: String = d[i..i + take].iter().collect();
        if g.starts_with('0') {
            groups.extend(
                g.chars()
                    .map(|c| ONES[c.to_digit(10).unwrap() as usize].to_string()),
            );
        } else {
            groups.push(number(g.parse().unwrap()));
        }
        i += take;
    }
    groups.join(" ")
}

fn letter(c: char) -> &'static str {
    match c {
        'А' => "а",
        'Б' => "бэ",
        'В' => "вэ",
        'Г' => "гэ",
        'Д' => "дэ",
        'Е' => "е",
        'Ё' => "ё",
        'Ж' => "жэ",
        'З' => "зэ",
        'И' => "и",
        'Й' => "й",
        'К' => "ка",
        'Л' => "эл",
        'М' => "эм",
        'Н' => "эн",
        'О' => "о",
        'П' => "пэ",
        'Р' => "эр",
        'С' => "эс",
        'Т' => "тэ",
        'У' => "у",
        'Ф' => "эф",
        'Х' => "ха",
        'Ц' => "цэ",
        'Ч' => "че",
        'Ш' => "ша",
        'Щ' => "ща",
        'Ы' => "ы",
        'Э' => "э",
        'Ю' => "ю",
        'Я' => "я",
        _ => "",
    }
}

static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:https?://|www\.)\S+|\S+@\S+\.\w+").unwrap());
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([01]?\d|2[0-3]):([0-5]\d)\b").unwrap());
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\b([1-9]|[12]\d|3[01]) ({MONTHS_GEN})")).unwrap());
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+7|\b8)[\s(-]*\d{3}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}\b").unwrap()
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(?:[ \u{a0}]\d{3})*").unwrap());
/// Written abbreviations said in full.
static SHORT: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\bул\.\s*", "улица "),
        (r"\bд\.\s*", "дом "),
        (r"\bкв\.\s*", "квартира "),
        (r"\bг\.\s*", "город "),
        (r"\bпр\.\s*", "проспект "),
        (r"\bкорп\.\s*", "корпус "),
        (r"\bруб\.", "рублей"),
        (r"\bтыс\.", "тысяч"),
    ]
    .into_iter()
    .map(|(p, w)| (Regex::new(p).unwrap(), w))
    .collect()
});
static ABBR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[А-ЯЁ]{2,5}\b").unwrap());

/// One text as it should be spoken.
pub fn speakable(text: &str) -> String {
    let mut t = crate::dialog::style::strip_emoji(&URL.replace_all(text, ""));
    for (re, full) in SHORT.iter() {
        t = re.replace_all(&t, *full).into_owned();
    }
    let t = PHONE.replace_all(&t, |c: &regex::Captures| {
        let d: String = c[0].chars().filter(char::is_ascii_digit).collect();
        let (head, rest) = d.split_at(1);
        let head = if head == "7" {
            "плюс семь"
        } else {
            "восемь"
        };
        format!("{head}, {}", digits(rest))
    });
    let t = TIME.replace_all(&t, |c: &regex::Captures| {
        let (h, m): (u64, u64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
        let m = match m {
            0 => "ноль-ноль".to_string(),
            1..=9 => format!("ноль {}", number(m)),
            _ => number(m),
        };
        format!("{} {m}", number(h))
    });
    let t = DATE.replace_all(&t, |c: &regex::Captures| {
        let d: usize = c[1].parse().unwrap();
        format!("{} {}", DAY_ORDINALS[d], &c[2])
    });
    let t = NUMBER.replace_all(&t, |c: &regex::Captures| {
        let raw: String = c[0].chars().filter(char::is_ascii_digit).collect();
        // An application or document number is dictated, an amount is counted.
        if raw.len() >= 5 && !c[0].contains([' ', '\u{a0}'])
            || raw.starts_with('0') && raw.len() > 1
        {
            digits(&raw)
        } else {
            raw.parse().map(number).unwrap_or(raw)
        }
    });
    let t = ABBR.replace_all(&t, |c: &regex::Captures| {
        let a = &c[0];
        if let Some((_, w)) = AS_WORDS.iter().find(|(k, _)| *k == a) {
            return w.to_string();
        }
        a.chars().map(letter).collect::<Vec<_>>().join(" ")
    });
    crate::dialog::style::spoken(&t)
}

/// The turn as sentences to speak, each synthesised on its own (so the first
/// plays while the next is made, and repeated ones come from the cache),
/// with the keys of its options announced.
pub fn sentences(turn: &Turn) -> Vec<String> {
    let mut out = Vec::new();
    for part in turn.text.split("\n\n").flat_map(|p| p.split('\n')) {
        for s in split(part) {
            let s = speakable(&s);
            if s.chars().any(char::is_alphanumeric) {
                out.push(s);
            }
        }
    }
    let keyed: Vec<_> = turn
        .choices
        .iter()
        .filter_map(|c| c.dtmf.as_deref().map(|k| (k, c.label.as_str())))
        .filter(|(k, _)| *k != "0")
        .collect();
    // Yes/no questions need no keys read out: the caller answers in a word.
    // unless the caller was silent and is offered the keypad.
    let keypad = turn.events.iter().any(|e| e == "silence_keypad");
    let yes_no = turn.choices.len() == 2 && turn.choices.iter().any(|c| c.id == "yes") && !keypad;
    if !keyed.is_empty() && !yes_no {
        for (i, (k, label)) in keyed.iter().enumerate() {
            let label = speakable(label).trim_end_matches('.').to_lowercase();
            let k = speakable(k);
            out.push(if i == 0 {
                format!("Нажмите {k} или скажите: {label}.")
            } else {
                format!("{}: {k}.", capital(&label))
            });
        }
    }
    if turn.choices.iter().any(|c| c.id == "operator") && !keyed.is_empty() {
        out.push("Чтобы поговорить с оператором, нажмите ноль.".into());
    }
    out
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Sentences of a paragraph, not cut at «ул.», «д.» and the like.
fn split(p: &str) -> Vec<String> {
    static END: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[.!?…]+\s+").unwrap());
    let abbr = [
        "ул", "д", "кв", "г", "пр", "пер", "стр", "корп", "им", "т", "е", "п", "см", "руб", "тыс",
    ];
    let mut out = Vec::new();
    let mut start = 0;
    for m in END.find_iter(p) {
        let head = &p[start..m.start()];
        let last: String = head
            .chars()
            .rev()
            .take_while(|c| c.is_alphabetic())
            .collect();
        let last: String = last.chars().rev().collect();
        if abbr.contains(&last.as_str()) {
            continue;
        }
        out.push(p[start..m.end()].trim().to_string());
        start = m.end();
    }
    if start < p.len() && !p[start..].trim().is_empty() {
        out.push(p[start..].trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_words() {
        assert_eq!(number(1200), "одна тысяча двести");
        assert_eq!(number(72), "семьдесят два");
        assert_eq!(number(2_000_011), "два миллиона одиннадцать");
        assert_eq!(number(15_000), "пятнадцать тысяч");
        assert_eq!(number(342_002), "триста сорок две тысячи два");
        assert_eq!(
            digits("1234567"),
            "сто двадцать три сорок пять шестьдесят семь"
        );
        assert_eq!(
            digits("12345678"),
            "сто двадцать три четыреста пятьдесят шесть семьдесят восемь"
        );
        assert_eq!(digits("0123"), "ноль один двадцать три");
    }

    #[test]
    fn what_is_said_has_no_digits_urls_or_bare_abbreviations() {
        let s = speakable(
            "Заявление 1234567: на рассмотрении. Приходите 30 ноября в 14:00 в МФЦ, ул. Ленина, д. 1. \
             Подробнее: https://www.gosuslugi.ru/ 🙂 Телефон 8 800 000-00-00. СНИЛС возьмите.",
        );
        assert!(!s.chars().any(|c| c.is_ascii_digit()), "{s}");
        assert!(!s.contains("http") && !s.contains("gosuslugi"), "{s}");
        assert!(
            s.contains("сто двадцать три сорок пять шестьдесят семь"),
            "{s}"
        );
        assert!(s.contains("тридцатого ноября"), "{s}");
        assert!(s.contains("четырнадцать ноль-ноль"), "{s}");
        assert!(s.contains("эм эф цэ"), "{s}");
        assert!(
            s.contains("восемь, восемьсот ноль ноль ноль ноль ноль ноль ноль"),
            "{s}"
        );
        assert!(s.contains("снилс возьмите"), "{s}");
        assert!(s.contains("улица Ленина, дом один"), "{s}");
    }
}
