//! The personal-data scrubber behind `anonymise`: it owns the rules and the
//! word lists (under `pii/`) that find personal data in a client's free text
//! and replace each piece with a typed placeholder. Rules and lists only, no
//! model: it runs on every logged turn.
//!
//! Placeholders, in the order the passes run:
//! - «[email]»: e-mail addresses;
//! - «[дата рождения]»: a date after «родился», «д.р.», «дата рождения», a
//!   full date of a year before 2010, «1985 г.р.», «1985 года рождения»;
//!   «[дата]»: any other full date (day, month and year);
//! - «[паспорт]»: series and number after «паспорт»/«серия», or shaped
//!   «45 06 123456» / «4506 123456»;
//! - «[СНИЛС]» (123-456-789 01, or 11 digits after «СНИЛС»), «[ИНН]» (10 or 12
//!   digits), «[карта]» (16–19 digits), «[счёт]» (20 digits), «[полис]»;
//! - «[номер заявления]»: after «заявление», «обращение», «№»…;
//! - «[адрес]»: a street with its name and numbers, a house, corpus,
//!   building or flat number, a city, village or settlement after its
//!   marker, and big cities from the list after «в», «из»… or capitalised;
//! - «[телефон]»: phones in any common writing, and local numbers after
//!   «тел.»/«звоните»;
//! - «[номер]»: any other run of five digits or more (amounts of money and
//!   ranges of years stay);
//! - «[ФИО]»: names — first names from the list with their case forms,
//!   surnames from the list or by their suffix, patronymics by suffix,
//!   initials, and words after a name cue («меня зовут», «фамилия», «моя
//!   мама», «С уважением»…). A first name that is also an ordinary word
//!   (Вера, Роман, Любовь) counts only next to another part of a name or
//!   after a cue.
//!
//! Numbers of up to four digits stay unless a cue stands right before them
//! («кв. 12», «№ 77», «серия 4506»): ages, years, amounts and days survive.

use regex::{Captures, Regex};
use std::collections::HashSet;
use std::sync::LazyLock;

const FIRST_NAMES: &str = include_str!("pii/first_names.txt");
const SURNAMES: &str = include_str!("pii/surnames.txt");
const CITIES: &str = include_str!("pii/cities.txt");
const COMMON: &str = include_str!("pii/common_words.txt");

/// Lower case with ё as е: the form every list is kept in.
fn norm(w: &str) -> String {
    w.to_lowercase().replace('ё', "е")
}

fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Case forms of a first name or a city (nominative included) by its ending.
/// `soft_feminine`: a word in -ь declined like «Любовь», «Казань».
fn declension(nom: &str, soft_feminine: bool) -> Vec<String> {
    let w = norm(nom);
    let mut v = vec![w.clone()];
    let Some(last) = w.chars().last() else {
        return v;
    };
    let stem = &w[..w.len() - last.len_utf8()];
    let ends = |s: &[&str]| s.iter().map(|e| format!("{stem}{e}")).collect::<Vec<_>>();
    let hard_hush = stem.ends_with(['г', 'к', 'х', 'ж', 'ш', 'ч', 'щ']);
    match last {
        'а' if hard_hush => v.extend(ends(&["и", "е", "у", "ой", "ою"])),
        'а' => v.extend(ends(&["ы", "е", "у", "ой", "ою"])),
        'я' if stem.ends_with('и') => v.extend(ends(&["и", "ю", "ей", "ею"])),
        'я' => v.extend(ends(&["и", "е", "ю", "ей", "ею"])),
        'й' => v.extend(ends(&["я", "ю", "ем", "е", "и"])),
        'ь' if soft_feminine => v.extend(ends(&["и", "ью"])),
        'ь' => v.extend(ends(&["я", "ю", "ем", "е", "и", "ью"])),
        'о' | 'е' | 'и' | 'ы' | 'у' | 'э' | 'ю' => {}
        _ => {
            let mut f = vec!["а", "у", "ом", "е"];
            if w.ends_with(['ж', 'ш', 'ч', 'щ', 'ц']) {
                f.push("ем");
            }
            v.extend(f.iter().map(|e| format!("{w}{e}")));
        }
    }
    v
}

/// Masculine, feminine, plural and case forms of a surname by its suffix.
fn surname_declension(nom: &str) -> Vec<String> {
    let w = norm(nom);
    let with = |base: &str, s: &[&str]| s.iter().map(|e| format!("{base}{e}")).collect::<Vec<_>>();
    if w.ends_with("ов") || w.ends_with("ев") || w.ends_with("ин") || w.ends_with("ын") {
        let mut v = vec![w.clone()];
        v.extend(with(
            &w,
            &["а", "у", "ым", "е", "ой", "ою", "ы", "ых", "ыми"],
        ));
        v
    } else if w.ends_with("ский") || w.ends_with("цкий") {
        let stem = &w[..w.len() - "ий".len()];
        with(
            stem,
            &[
                "ий", "ого", "ому", "им", "ом", "ая", "ой", "ую", "ою", "ие", "их", "ими",
            ],
        )
    } else if ["ко", "ых", "их", "ян", "дзе", "швили", "ани"]
        .iter()
        .any(|e| w.ends_with(e))
    {
        vec![w]
    } else {
        declension(&w, false)
    }
}

struct Lists {
    /// Forms of first names that are not ordinary words.
    first: HashSet<String>,
    /// Forms of first names that are also ordinary words (Вера, Роман).
    first_ambiguous: HashSet<String>,
    surnames: HashSet<String>,
    /// One-word city forms, and city forms of two words.
    cities: HashSet<String>,
    cities2: HashSet<String>,
    common: HashSet<String>,
}

static LISTS: LazyLock<Lists> = LazyLock::new(|| {
    let common: HashSet<String> = data_lines(COMMON)
        .flat_map(|l| l.split_whitespace())
        .map(norm)
        .collect();
    let (mut first, mut first_ambiguous) = (HashSet::new(), HashSet::new());
    for l in data_lines(FIRST_NAMES) {
        let ambiguous = l.starts_with('?');
        let soft = l.starts_with('~');
        let l = l.trim_start_matches(['?', '~']);
        let (nom, extra) = l.split_once(':').unwrap_or((l, ""));
        let mut forms = declension(nom, soft);
        forms.extend(extra.split(',').filter(|f| !f.is_empty()).map(norm));
        for f in forms {
            if ambiguous || common.contains(&f) {
                first_ambiguous.insert(f);
            } else {
                first.insert(f);
            }
        }
    }
    let surnames = data_lines(SURNAMES)
        .flat_map(surname_declension)
        .filter(|f| !common.contains(f))
        .collect();
    let (mut cities, mut cities2) = (HashSet::new(), HashSet::new());
    for l in data_lines(CITIES) {
        let (nom, extra) = l.split_once(':').unwrap_or((l, ""));
        let mut forms = if nom.contains(' ') {
            vec![norm(nom)]
        } else {
            declension(nom, true)
        };
        forms.extend(extra.split(',').filter(|f| !f.is_empty()).map(norm));
        for f in forms {
            if f.contains(' ') {
                cities2.insert(f);
            } else {
                cities.insert(f);
            }
        }
    }
    Lists {
        first,
        first_ambiguous,
        surnames,
        cities,
        cities2,
        common,
    }
});

fn re(p: &str) -> Regex {
    Regex::new(p).expect("a valid pattern")
}

const MONTHS: &str =
    r"(?i:января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря)";

static EMAIL: LazyLock<Regex> = LazyLock::new(|| re(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)*|\S+@\S+"));
/// A date after a birth cue; the cue stays.
static BIRTH: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?P<cue>(?i:родил\w*|рожд\w*|д\.\s?р\.?|др\b)[\s:,\-—]*(?:(?i:в|во)\s+)?)(?P<date>\d{{1,2}}[./\-]\d{{1,2}}[./\-]\d{{2,4}}|\d{{1,2}}\s+{MONTHS}(?:\s+\d{{4}})?(?:\s*(?i:года|г\.?))?|(?:19|20)\d\d(?:\s*(?i:году|года|г\.?))?)"
    ))
});
static BIRTH_YEAR: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:19|20)\d\d\s*(?i:г\.?\s*р\.?|гр\b|года\s+рождения|г\.\s*рождения)"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:(?P<d>\d{{1,2}})(?P<sep>[./\-])(?P<m>\d{{1,2}})[./\-](?P<y>\d{{4}}|\d{{2}})|\d{{1,2}}\s+{MONTHS}\s+(?P<y2>\d{{4}})(?:\s*(?i:года|г\.?))?)\b"
    ))
});
static PASSPORT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?P<cue>(?i:паспорт\w*(?:\s+рф)?|серия|серии))[\s:,]*(?:(?i:серия|серии)\s*)?\d{2}\s?\d{2}[\s,]*(?:(?i:номер|№|n|н\.)\s*)?\d{6}\b",
    )
});
static SNILS: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{3}[\- ]\d{3}[\- ]\d{3}[\- ]\d{2}\b"));
static APPLICATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\b(?P<kw>(?i:(?:номер\s+)?(?:заявлени|обращени|дел|жалоб|запрос|квитанци|договор)\p{L}*\.?))[\s:]*(?P<mark>№|N|#|(?i:номер|за\s+номером|под\s+номером))?|№|#)\s*(?P<val>(?:[A-ZА-ЯЁ]{1,3}-?)?\d[\d\-/]*)",
    )
});
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?P<kw>(?i:улиц[аеуы]|ул|пр-кт|пр-т|просп|проспект[аеу]?|пр|переул(?:ок|ка|ке|ку)|пер|б-р|бул|бульвар[аеу]?|шоссе|ш|набережн(?:ая|ой|ую)|наб|площад[ьи]|пл|микрорайон[аеу]?|мкрн|мкр|проезд[аеу]?|тупик[аеу]?|туп|квартал[аеу]?|алле[яеи]|тракт[аеу]?))\b(?P<dot>\.)?\s*(?P<name>(?:\d{1,3}-?(?:я|й|го|ая|ий|е|ого)?\s+)?\p{L}[\p{L}\-]*\.?(?:\s+(?:\p{Lu}[\p{L}\-]*|\p{Ll}[\p{L}\-]*(?:ова|ева|ёва|ина|ына|кса|ского|цкого|ской)))?)(?P<num>(?:[\s,]*(?:(?i:д\.|д|дом[ау]?|доме|корп\.|корп|корпус[ае]?|к\.|стр\.|строени[ея]|кв\.|кв|квартир[аеуы]|оф\.|офис[е]?)\s*)?№?\s*\d{1,4}[а-яa-z]?\b(?:\s*[/\-]\s*\d{1,4}[а-яa-z]?\b)?)*)",
    )
});
static SETTLEMENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\b(?P<kw>(?i:город[аеу]?|села|селе|село|посел(?:ок|ке|ка)|посёл(?:ок|ке|ка)|деревн[яеиюй]|станиц[аеуы]|хутор[аеу]?|аул[аеу]?))|\b(?P<abbr>(?i:гор|пос|пгт|дер|ст-ца|рп))\b\.?|\b(?P<short>[гсдпх])\b(?P<dot>\.)?)\s*(?P<name>\p{L}[\p{L}\-]*(?:\s+\p{Lu}[\p{L}\-]*)?)",
    )
});
static HOUSE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?i:квартир[аеуы]|кв\.|кв|дом[ау]?|доме|д\.|д|корпус[ае]?|корп\.|корп|к\.|строени[ея]|стр\.|офис[е]?|оф\.)\s*№?\s*\d{1,4}[а-яa-z]?\b(?:\s*[/\-]\s*\d{1,4}[а-яa-z]?\b)?",
    )
});
static ADDRESS_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"\[адрес\](?:[\s,]*\[адрес\])+"));
/// A run of digits joined by the separators people write numbers with.
static CHUNK: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\+\s?)?\(?\d+(?:(?:[ \u{a0}]?[\-–/.№)][ \u{a0}]?\(?|[ \u{a0}]\(?)\d+)*\)?")
});
/// What a number is, from the words before it (the last one found wins).
static NUMBER_CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?P<snils>снилс)|(?P<inn>\bинн)|(?P<passport>паспорт|серия|серии)|(?P<card>\bкарт[аыуео])|(?P<account>сч[её]т|р/с)|(?P<policy>полис|\bомс)|(?P<app>заявлени|обращени|№)|(?P<phone>\bтел\b|\bтел\.|телефон|звон|\bмоб|сотов|whatsapp|ватсап|вотсап|позвон|набер)",
    )
});
/// A cue right before a short number (up to four digits).
static NUMBER_CUE_NEAR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:снилс|\bинн|серия|серии|\bкарт\p{L}*|сч[её]т\p{L}*|\bтел\.?|телефон\p{L}*|паспорт\p{L}*)[\s:№.\-]*(?:номер\s*)?\(?$",
    )
});
static MONEY_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:руб|р\.|р\b|₽|тыс|млн|млрд|коп|%|процент|лет\b|год|мес|дн|шт|кг|человек)")
});
static AGE_AFTER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*(?:лет|год|г\.|мес|дн|числ|раз|%|процент)"));

/// Scrubs `text` of personal data (see the module's header).
pub fn scrub(text: &str) -> String {
    let t = EMAIL.replace_all(text, "[email]");
    let t = BIRTH.replace_all(&t, "${cue}[дата рождения]");
    let t = BIRTH_YEAR.replace_all(&t, "[дата рождения]");
    let t = DATE.replace_all(&t, |c: &Captures| {
        // A numeric date must be one; with dashes, only with a full year
        // (a phone's «5-12-34» is not a date).
        if let (Some(d), Some(m), Some(y)) = (c.name("d"), c.name("m"), c.name("y")) {
            let (d, m) = (d.as_str().parse::<u32>(), m.as_str().parse::<u32>());
            let valid = matches!(d, Ok(1..=31)) && matches!(m, Ok(1..=12));
            if !valid || (&c["sep"] == "-" && y.as_str().len() == 2) {
                return c[0].to_string();
            }
        }
        let y = c.name("y").or(c.name("y2")).map_or("", |m| m.as_str());
        let old = y.len() == 2 || y.parse::<u32>().is_ok_and(|y| y < 2010);
        if old {
            "[дата рождения]"
        } else {
            "[дата]"
        }
        .to_string()
    });
    let t = PASSPORT.replace_all(&t, "${cue} [паспорт]");
    let t = SNILS.replace_all(&t, "[СНИЛС]");
    let t = APPLICATION.replace_all(&t, |c: &Captures| {
        let digits = c["val"].chars().filter(char::is_ascii_digit).count();
        match c.name("kw") {
            Some(_) if c.name("mark").is_none() && digits < 4 => c[0].to_string(),
            Some(kw) => format!("{} [номер заявления]", kw.as_str()),
            None => "[номер заявления]".to_string(),
        }
    });
    let t = STREET.replace_all(&t, |c: &Captures| {
        let kw = &c["kw"];
        let name = c["name"].trim_end_matches('.');
        let short = kw.chars().count() <= 4 || matches!(kw, "просп" | "пр-кт");
        let first = name.split_whitespace().next().unwrap_or("");
        let has_num = !c["num"].trim().is_empty();
        let lower = first.chars().next().is_some_and(char::is_lowercase);
        let common = LISTS.common.contains(&norm(first));
        let abbreviated = c.name("dot").is_some() || (short && (has_num || !common));
        // After «улица» in lower case, only a word that reads like a
        // street's name or is followed by a number («на улице холодно»).
        let ok = !lower
            || abbreviated
            || first.chars().next().is_some_and(|c| c.is_ascii_digit())
            || (!common && (has_num || street_like(&norm(first))));
        if ok {
            "[адрес]".to_string()
        } else {
            c[0].to_string()
        }
    });
    let t = SETTLEMENT.replace_all(&t, |c: &Captures| {
        let name = c.name("name").expect("always there");
        let first = name.as_str().split_whitespace().next().unwrap_or("");
        let n = norm(first);
        let cap = first.chars().next().is_some_and(char::is_uppercase);
        let ok = !LISTS.common.contains(&n)
            && (LISTS.cities.contains(&n)
                || toponym_like(&n)
                || if c.name("kw").is_some() {
                    cap
                } else if c.name("abbr").is_some() {
                    true
                } else {
                    // «с. Ивановка»; without the dot a letter is a
                    // preposition, so only a word that reads like a place.
                    c.name("dot").is_some() && cap && first.chars().count() > 1
                });
        if ok {
            let m = c.get(0).expect("the match");
            format!(
                "{} [адрес]",
                m.as_str()[..name.start() - m.start()].trim_end()
            )
        } else {
            c[0].to_string()
        }
    });
    let t = HOUSE.replace_all(&t, "[адрес]");
    let t = numbers(&t);
    let t = words(&t);
    ADDRESS_RUN.replace_all(&t, "[адрес]").into_owned()
}

/// A lower-case word that reads like a street's name (Ленина, Садовая).
fn street_like(w: &str) -> bool {
    [
        "ая",
        "ой",
        "ого",
        "ина",
        "ова",
        "ева",
        "ых",
        "их",
        "ого",
        "ое",
        "ый",
        "ий",
        "ского",
        "ская",
        "ский",
    ]
    .iter()
    .any(|e| w.ends_with(e))
}

/// A lower-case word that reads like a village's or town's name.
fn toponym_like(w: &str) -> bool {
    [
        "овка",
        "евка",
        "овке",
        "евке",
        "овку",
        "евку",
        "овки",
        "евки",
        "ино",
        "ово",
        "ево",
        "ыно",
        "ское",
        "ском",
        "ск",
        "ске",
        "ска",
        "град",
        "граде",
        "бург",
        "бурге",
        "ный",
        "ное",
        "ский",
    ]
    .iter()
    .any(|e| w.ends_with(e))
}

/// Replaces numbers that can identify someone, typed by the words before
/// them and by their shape.
fn numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in CHUNK.find_iter(text) {
        let raw = m.as_str();
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        let before = tail(&text[..m.start()], 40);
        let after = &text[m.end()..];
        if let Some(p) = number_kind(raw, &digits, before, after) {
            out.push_str(&text[last..m.start()]);
            out.push_str(p);
            last = m.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The last `chars` characters of `s`.
fn tail(s: &str, chars: usize) -> &str {
    match s.char_indices().rev().nth(chars.saturating_sub(1)) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

fn number_kind(raw: &str, digits: &str, before: &str, after: &str) -> Option<&'static str> {
    let n = digits.len();
    let cue = NUMBER_CUE.captures_iter(before).last().and_then(|c| {
        [
            ("snils", "[СНИЛС]"),
            ("inn", "[ИНН]"),
            ("passport", "[паспорт]"),
            ("card", "[карта]"),
            ("account", "[счёт]"),
            ("policy", "[полис]"),
            ("app", "[номер заявления]"),
            ("phone", "[телефон]"),
        ]
        .into_iter()
        .find(|(g, _)| c.name(g).is_some())
        .map(|(_, p)| p)
    });
    if n <= 4 {
        let near = NUMBER_CUE_NEAR.is_match(before) && !AGE_AFTER.is_match(after);
        return if near {
            cue.or(Some("[номер]"))
        } else {
            None
        };
    }
    let groups: Vec<&str> = raw
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let years = groups.len() > 1
        && groups
            .iter()
            .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")));
    let strong = matches!(
        cue,
        Some("[СНИЛС]" | "[ИНН]" | "[паспорт]" | "[карта]" | "[счёт]" | "[полис]" | "[телефон]")
    );
    // «15 000»: thousands written apart are an amount.
    let amount = n <= 7
        && groups.len() > 1
        && groups[0].len() <= 3
        && groups[1..].iter().all(|g| g.len() == 3)
        && raw
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with([' ', '\u{a0}']);
    if !strong && n <= 9 && (years || amount || MONEY_AFTER.is_match(after)) {
        return None;
    }
    if let Some(c) = cue {
        return Some(c);
    }
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens == [8] {
        // ddmmyyyy
        let part = |a: usize, b: usize| digits[a..b].parse::<u32>().unwrap_or(0);
        let (d, m, y) = (part(0, 2), part(2, 4), part(4, 8));
        if (1..=31).contains(&d) && (1..=12).contains(&m) && (1900..2100).contains(&y) {
            return Some(if y < 2010 {
                "[дата рождения]"
            } else {
                "[дата]"
            });
        }
    }
    let first = digits.as_bytes()[0];
    Some(match n {
        11 if lens == [3, 3, 3, 2] => "[СНИЛС]",
        11 if raw.starts_with('+') || first == b'7' || first == b'8' => "[телефон]",
        11 => "[СНИЛС]",
        10 if first == b'9' => "[телефон]",
        10 if lens == [2, 2, 6] || lens == [4, 6] => "[паспорт]",
        10 | 12 => "[ИНН]",
        16..=19 => "[карта]",
        20 => "[счёт]",
        _ if raw.starts_with('+') => "[телефон]",
        _ => "[номер]",
    })
}

/// Words of the scrubbed text: a placeholder, an initial («И.») or a word.
static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\[[^\[\]]{1,30}\]|[А-ЯЁA-Z]\.|\p{L}[\p{L}\-]*"));

struct Tok {
    start: usize,
    end: usize,
    norm: String,
    cap: bool,
    all_caps: bool,
    initial: bool,
    placeholder: bool,
    sentence_start: bool,
    common: bool,
    first: bool,
    first_ambiguous: bool,
    patronymic: bool,
    surname: bool,
    surname_shape: bool,
    /// Ends like a surname, whatever the case and however common the ending.
    shape: bool,
}

static PATRONYMIC: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:\p{L}{2,}(?:ович|евич)(?:а|у|ем|е)?|\p{L}{2,}(?:овн|евн)(?:а|ы|е|у|ой|ою)|(?:ильич|кузьмич|лукич|фомич|никитич|саввич)(?:а|у|ем|е)?|(?:ильинич|кузьминич|лукинич|фоминич|никитич|саввич)н(?:а|ы|е|у|ой|ою))$",
    )
});
/// Adjectives that end like a patronymic.
const NOT_PATRONYMIC: &[&str] = &[
    "условн",
    "безусловн",
    "виновн",
    "невиновн",
    "духовн",
    "греховн",
    "любовн",
    "верховн",
    "бескровн",
    "голословн",
    "неровн",
    "ровн",
    "плачевн",
    "душевн",
    "задушевн",
    "гневн",
    "повседневн",
    "ежедневн",
    "напевн",
    "царевн",
    "королевн",
];
static SURNAME_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\p{L}[\p{L}\-]{2,}(?:(?:ов|ев|ин|ын)(?:а|у|ым|е|ой|ою|ы|ых|ыми)?|(?:ск|цк)(?:ий|ого|ому|им|ом|ая|ой|ую|ою)|енко|чук|щук|юк|ян|янц|швили|дзе|ых|их)$",
    )
});

impl Tok {
    /// Could be a part of a name next to another part or after a cue.
    fn nameish(&self) -> bool {
        if self.placeholder || self.common || self.all_caps {
            return false;
        }
        self.initial
            || self.first
            || self.first_ambiguous
            || self.patronymic
            || self.surname
            || self.surname_shape
            || self.cap
    }
}

/// Word cues after which a name may stand: `true` for strong ones (the next
/// word is a name even in lower case).
fn cue(toks: &[Tok], text: &str, i: usize) -> Option<bool> {
    // Skip filler words between the cue and the name.
    let mut j = i;
    let mut skipped = 0;
    while j > 0 && skipped <= 3 {
        let gap = &text[toks[j - 1].end..toks[j].start];
        if gap.contains(['.', '!', '?', '\n']) && !toks[j - 1].initial {
            return None;
        }
        let p = &toks[j - 1];
        let n = p.norm.as_str();
        match n {
            "зовут" | "звать" | "зовусь" | "фио" | "подпись" => {
                let how = j >= 2 && matches!(toks[j - 2].norm.as_str(), "как");
                return Some(!how);
            }
            "уважением" => return Some(true),
            "имя" | "фамилия" | "фамилию" | "фамилии" | "отчество" | "имени" | "инициалы" => {
                return Some(gap.contains(':'))
            }
            "я" if gap.contains(['—', '-', '–']) => return Some(false),
            "мама"
            | "маму"
            | "мамы"
            | "маме"
            | "мамой"
            | "папа"
            | "папу"
            | "папы"
            | "сын"
            | "сына"
            | "сыну"
            | "сыном"
            | "дочь"
            | "дочери"
            | "дочка"
            | "дочку"
            | "дочки"
            | "муж"
            | "мужа"
            | "мужу"
            | "жена"
            | "жену"
            | "жены"
            | "бабушка"
            | "бабушку"
            | "бабушки"
            | "дедушка"
            | "дедушку"
            | "дедушки"
            | "внук"
            | "внука"
            | "внучка"
            | "внучку"
            | "брат"
            | "брата"
            | "сестра"
            | "сестру"
            | "сестры"
            | "отец"
            | "отца"
            | "мать"
            | "матери"
            | "супруг"
            | "супруга"
            | "супругу"
            | "ребенок"
            | "ребенка"
            | "гражданин"
            | "гражданка"
            | "гражданина"
            | "гражданки"
            | "уважаемый"
            | "уважаемая"
            | "это"
            | "абонент"
            | "заявитель"
            | "получатель"
            | "опекун" => return Some(false),
            "у" | "меня" | "мое" | "моя" | "мой" | "по" | "паспорту" | "полное" | "полностью"
            | "его" | "ее" | "её" => {
                j -= 1;
                skipped += 1;
            }
            _ => return None,
        }
    }
    None
}

/// Marks names and cities among the words; replaces them.
fn words(text: &str) -> String {
    let l = &*LISTS;
    let mut toks: Vec<Tok> = Vec::new();
    for m in TOKEN.find_iter(text) {
        let s = m.as_str();
        let placeholder = s.starts_with('[');
        let initial = !placeholder && s.ends_with('.');
        let n = norm(s.trim_end_matches('.'));
        let cap = s.chars().next().is_some_and(char::is_uppercase);
        let all_caps = !initial && s.chars().count() > 1 && s.chars().all(|c| !c.is_lowercase());
        let before = text[..m.start()].trim_end();
        let sentence_start = before.is_empty() || before.ends_with(['.', '!', '?', '\n', '…']);
        let common = !initial && l.common.contains(&n);
        let word = !placeholder && !initial;
        let patronymic = word
            && PATRONYMIC.is_match(&n)
            && !NOT_PATRONYMIC
                .iter()
                .any(|a| n.strip_prefix(a).is_some_and(|r| r.len() <= 4));
        let surname = word && l.surnames.contains(&n);
        let shape = word && SURNAME_SHAPE.is_match(&n);
        // In lower case only the suffixes that ordinary words rarely have.
        let surname_shape = shape
            && !common
            && (cap
                || [
                    "ова", "ева", "ина", "ына", "ову", "еву", "ову", "ской", "ская", "ский", "енко",
                ]
                .iter()
                .any(|e| n.ends_with(e)));
        toks.push(Tok {
            start: m.start(),
            end: m.end(),
            first: word && l.first.contains(&n),
            first_ambiguous: word && l.first_ambiguous.contains(&n),
            norm: n,
            cap,
            all_caps,
            initial,
            placeholder,
            sentence_start,
            common,
            patronymic,
            surname,
            surname_shape,
            shape,
        });
    }
    let adjacent = |a: usize, b: usize| text[toks[a].end..toks[b].start].trim().is_empty();
    let mut city = vec![false; toks.len()];
    let mut name = vec![false; toks.len()];
    for i in 0..toks.len() {
        let t = &toks[i];
        if t.placeholder || t.initial {
            continue;
        }
        let prev = i.checked_sub(1).map(|p| toks[p].norm.as_str());
        let place_cue = matches!(
            prev,
            Some("в" | "во" | "из" | "под" | "около" | "г" | "город" | "городе" | "города")
        );
        if city[i] {
            continue;
        }
        if i + 1 < toks.len()
            && adjacent(i, i + 1)
            && l.cities2
                .contains(&format!("{} {}", t.norm, toks[i + 1].norm))
        {
            city[i] = true;
            city[i + 1] = true;
            continue;
        }
        if l.cities.contains(&t.norm) && (t.cap || place_cue) && !t.common {
            city[i] = true;
            continue;
        }
        if t.common || t.all_caps {
            continue;
        }
        // An ordinary word that is a first name, next to a surname or a
        // patronymic («Вера Петрова», «надежда ивановна»).
        let by_surname = |k: usize| {
            k < toks.len()
                && adjacent(i.min(k), i.max(k))
                && (toks[k].surname || toks[k].shape || toks[k].patronymic)
                && !toks[k].common
        };
        let ambiguous_named =
            t.first_ambiguous && (by_surname(i.wrapping_sub(1)) || by_surname(i + 1));
        name[i] = t.patronymic
            || ambiguous_named
            || t.first
            || (t.surname && t.cap)
            || (t.surname_shape && t.cap && !t.sentence_start && t.norm.ends_with(['в', 'а', 'н']));
    }
    // Initials next to a capitalised word.
    for i in 0..toks.len() {
        if !toks[i].initial {
            continue;
        }
        for k in [i.wrapping_sub(1), i + 1] {
            if k < toks.len() && !city[k] && adjacent(i.min(k), i.max(k)) {
                let w = &toks[k];
                if w.cap && !w.common && !w.all_caps && !w.placeholder {
                    name[i] = true;
                    if !w.initial {
                        name[k] = true;
                    }
                }
            }
        }
    }
    // Words after a cue.
    for i in 0..toks.len() {
        if city[i] || toks[i].placeholder || toks[i].all_caps || toks[i].common {
            continue;
        }
        let Some(strong) = cue(&toks, text, i) else {
            continue;
        };
        if !(strong || toks[i].nameish()) {
            continue;
        }
        name[i] = true;
        let mut k = i + 1;
        while k < toks.len()
            && k <= i + 3
            && adjacent(k - 1, k)
            && !city[k]
            && (toks[k].nameish() || (toks[k].shape && !toks[k].common))
        {
            name[k] = true;
            k += 1;
        }
    }
    // Grow names over adjacent parts of a name.
    loop {
        let mut grew = false;
        for i in 0..toks.len() {
            if !name[i] {
                continue;
            }
            for k in [i.wrapping_sub(1), i + 1] {
                if k >= toks.len() || name[k] || city[k] || !adjacent(i.min(k), i.max(k)) {
                    continue;
                }
                let w = &toks[k];
                let joins = w.nameish()
                    && (!w.cap
                        || w.initial
                        || !w.sentence_start
                        || w.first
                        || w.first_ambiguous
                        || w.surname
                        || w.surname_shape
                        || w.patronymic)
                    // A lower-case ordinary word joins only a full name.
                    && (w.cap || w.initial || !w.first_ambiguous || toks[i].patronymic || toks[i].surname);
                // A lower-case word ending like a surname, next to a first
                // name or a patronymic («игорь гусейнов»).
                let t = &toks[i];
                let surname_next =
                    w.shape && !w.common && (t.first || t.first_ambiguous || t.patronymic);
                let joins = joins || surname_next;
                if joins {
                    name[k] = true;
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i < toks.len() {
        let kind = if name[i] {
            "[ФИО]"
        } else if city[i] {
            "[адрес]"
        } else {
            i += 1;
            continue;
        };
        let mut k = i;
        while k + 1 < toks.len()
            && (name[k + 1] && name[i] || city[k + 1] && city[i])
            && adjacent(k, k + 1)
        {
            k += 1;
        }
        out.push_str(&text[last..toks[i].start]);
        out.push_str(kind);
        last = toks[k].end;
        i = k + 1;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    fn has(text: &str, want: &str) {
        let s = scrub(text);
        assert!(s.contains(want), "{text:?} → {s:?}, no {want}");
    }

    fn keeps(text: &str) {
        assert_eq!(scrub(text), text);
    }

    #[test]
    fn names_in_every_case_and_spelling() {
        let s = scrub("Меня зовут Попова Ольга Сергеевна, живу на ул. Ленина, д. 5, кв. 12");
        assert_eq!(s, "Меня зовут [ФИО], живу на [адрес]");
        assert_eq!(
            scrub("меня зовут ольга сергеевна попова"),
            "меня зовут [ФИО]"
        );
        assert_eq!(scrub("С уважением, Петрова И.В."), "С уважением, [ФИО]");
        assert_eq!(
            scrub("справка для Ивановой Анны Петровны"),
            "справка для [ФИО]"
        );
        assert_eq!(scrub("пособие на сына Льва"), "пособие на сына [ФИО]");
        assert_eq!(scrub("я — Гусейнова Айгюль"), "я — [ФИО]");
        assert_eq!(scrub("звонит Николаю Степановичу"), "звонит [ФИО]");
        assert_eq!(scrub("Вера Ивановна просит"), "[ФИО] просит");
        assert_eq!(scrub("фамилия: Кулибякина"), "фамилия: [ФИО]");
        has("здравствуйте это иван петров", "[ФИО]");
    }

    #[test]
    fn ordinary_words_that_are_names_stay() {
        keeps("Вера в государство");
        keeps("Роман Толстого нужен для школы");
        keeps("Любовь к детям и надежда на лучшее");
        keeps("на улице холодно, где МФЦ");
        keeps("в нашем городе какие льготы");
        keeps("мир и слава");
        keeps("справка о составе семьи для любой организации");
    }

    #[test]
    fn phones() {
        for p in [
            "+7 (912) 345-67-89",
            "8-912-345-67-89",
            "89123456789",
            "8 912 345 67 89",
            "+79123456789",
            "8 (34342) 5-12-34",
        ] {
            assert_eq!(
                scrub(&format!("мой номер {p}")),
                "мой номер [телефон]",
                "{p}"
            );
        }
        assert_eq!(scrub("тел. 45-67-89"), "тел. [телефон]");
        assert_eq!(scrub("звоните 245-67-89"), "звоните [телефон]");
    }

    #[test]
    fn documents() {
        assert_eq!(scrub("СНИЛС 123-456-789 01"), "СНИЛС [СНИЛС]");
        assert_eq!(scrub("снилс 12345678901"), "снилс [СНИЛС]");
        assert_eq!(scrub("ИНН 7707083893"), "ИНН [ИНН]");
        assert_eq!(scrub("инн 500100732259"), "инн [ИНН]");
        assert_eq!(scrub("паспорт 45 06 123456"), "паспорт [паспорт]");
        assert_eq!(scrub("4506 123456"), "[паспорт]");
        assert_eq!(scrub("серия 4506 номер 123456"), "серия [паспорт]");
        assert_eq!(scrub("паспорт 4506№123456"), "паспорт [паспорт]");
        assert_eq!(scrub("карта 4276 1234 5678 9012"), "карта [карта]");
        assert_eq!(scrub("2202200012345678901"), "[карта]");
        assert_eq!(scrub("счёт 40817810099910004312"), "счёт [счёт]");
        assert_eq!(scrub("пишите на ivan.petrov@mail.ru"), "пишите на [email]");
    }

    #[test]
    fn dates_of_birth() {
        assert_eq!(scrub("родилась 12.03.1985"), "родилась [дата рождения]");
        assert_eq!(scrub("12 марта 1985 года"), "[дата рождения]");
        assert_eq!(scrub("родилась 5 мая 1960"), "родилась [дата рождения]");
        assert_eq!(scrub("1985 г.р."), "[дата рождения]");
        assert_eq!(scrub("подала 15.03.2025"), "подала [дата]");
    }

    #[test]
    fn addresses() {
        assert_eq!(scrub("г. Казань"), "г. [адрес]");
        assert_eq!(scrub("город Тверь"), "город [адрес]");
        assert_eq!(scrub("улица пушкина дом 3 квартира 7"), "[адрес]");
        assert_eq!(scrub("пр-т Мира 10-15"), "[адрес]");
        assert_eq!(scrub("пер. Школьный"), "[адрес]");
        assert_eq!(scrub("мкр. Северный"), "[адрес]");
        assert_eq!(scrub("с. Ивановка"), "с. [адрес]");
        assert_eq!(scrub("пос. Заречный"), "пос. [адрес]");
        assert_eq!(scrub("деревня ивановка"), "деревня [адрес]");
        assert_eq!(scrub("д. 5 корп. 2 стр. 1"), "[адрес]");
        assert_eq!(scrub("живу в Екатеринбурге"), "живу в [адрес]");
        assert_eq!(scrub("переехали из казани"), "переехали из [адрес]");
    }

    #[test]
    fn applications() {
        assert_eq!(
            scrub("заявление № 12-345/2024"),
            "заявление [номер заявления]"
        );
        assert_eq!(
            scrub("номер заявления 123456789"),
            "номер заявления [номер заявления]"
        );
        assert_eq!(scrub("№ А-12345"), "[номер заявления]");
        assert_eq!(scrub("обращение №77"), "обращение [номер заявления]");
    }

    #[test]
    fn harmless_numbers_stay() {
        for t in [
            "мне 75 лет",
            "трое детей",
            "на 2 года",
            "в 2025 году",
            "до 15 числа",
            "5 тысяч рублей",
            "пенсия 15000 рублей",
            "долг 125 000, пенсия 15 000",
            "замена паспорта в 45 лет",
            "инвалид 2 группы",
            "справка 070 для санатория",
            "с 2024-2025 годы",
        ] {
            keeps(t);
        }
    }
}
