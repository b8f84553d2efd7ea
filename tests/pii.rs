//! The anonymiser of the analytics log against a generated corpus of
//! messages laden with personal data (seeded, so every run sees the same
//! 1,200 messages): no name, no digits of a document, phone or address and
//! no e-mail may survive; the knowledge base's own examples must stay almost
//! untouched; and through the engine, nothing personal reaches the stored log.

mod common;

use otklik::analytics::anonymise;
use otklik::dialog::Input;
use std::time::Instant;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            let d = self.below(10) as u8;
            // No leading zero, so every value keeps its length.
            s.push((b'0' + if i == 0 { 1 + d % 9 } else { d }) as char);
        }
        s
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A word's forms: nominative, genitive, dative, instrumental.
type Forms = [&'static str; 4];

const MALE: &[Forms] = &[
    ["Иван", "Ивана", "Ивану", "Иваном"],
    ["Сергей", "Сергея", "Сергею", "Сергеем"],
    ["Дмитрий", "Дмитрия", "Дмитрию", "Дмитрием"],
    ["Алексей", "Алексея", "Алексею", "Алексеем"],
    ["Николай", "Николая", "Николаю", "Николаем"],
    ["Павел", "Павла", "Павлу", "Павлом"],
    ["Пётр", "Петра", "Петру", "Петром"],
    ["Роман", "Романа", "Роману", "Романом"],
    ["Лев", "Льва", "Льву", "Львом"],
    ["Игорь", "Игоря", "Игорю", "Игорем"],
    ["Никита", "Никиты", "Никите", "Никитой"],
    ["Илья", "Ильи", "Илье", "Ильёй"],
    ["Рустам", "Рустама", "Рустаму", "Рустамом"],
    ["Олег", "Олега", "Олегу", "Олегом"],
    ["Владимир", "Владимира", "Владимиру", "Владимиром"],
    ["Михаил", "Михаила", "Михаилу", "Михаилом"],
];
const FEMALE: &[Forms] = &[
    ["Ольга", "Ольги", "Ольге", "Ольгой"],
    ["Мария", "Марии", "Марии", "Марией"],
    ["Анна", "Анны", "Анне", "Анной"],
    ["Вера", "Веры", "Вере", "Верой"],
    ["Надежда", "Надежды", "Надежде", "Надеждой"],
    ["Любовь", "Любови", "Любови", "Любовью"],
    ["Татьяна", "Татьяны", "Татьяне", "Татьяной"],
    ["Екатерина", "Екатерины", "Екатерине", "Екатериной"],
    ["Галина", "Галины", "Галине", "Галиной"],
    ["Наталья", "Натальи", "Наталье", "Натальей"],
    ["Людмила", "Людмилы", "Людмиле", "Людмилой"],
    ["Светлана", "Светланы", "Светлане", "Светланой"],
    ["Гульнара", "Гульнары", "Гульнаре", "Гульнарой"],
    ["Ирина", "Ирины", "Ирине", "Ириной"],
];
/// Patronymics: (masculine forms, feminine forms).
const PATRONYMICS: &[(Forms, Forms)] = &[
    (
        ["Сергеевич", "Сергеевича", "Сергеевичу", "Сергеевичем"],
        ["Сергеевна", "Сергеевны", "Сергеевне", "Сергеевной"],
    ),
    (
        ["Иванович", "Ивановича", "Ивановичу", "Ивановичем"],
        ["Ивановна", "Ивановны", "Ивановне", "Ивановной"],
    ),
    (
        ["Петрович", "Петровича", "Петровичу", "Петровичем"],
        ["Петровна", "Петровны", "Петровне", "Петровной"],
    ),
    (
        ["Николаевич", "Николаевича", "Николаевичу", "Николаевичем"],
        ["Николаевна", "Николаевны", "Николаевне", "Николаевной"],
    ),
    (
        ["Ильич", "Ильича", "Ильичу", "Ильичом"],
        ["Ильинична", "Ильиничны", "Ильиничне", "Ильиничной"],
    ),
    (
        ["Рашидович", "Рашидовича", "Рашидовичу", "Рашидовичем"],
        ["Рашидовна", "Рашидовны", "Рашидовне", "Рашидовной"],
    ),
    (
        [
            "Владимирович",
            "Владимировича",
            "Владимировичу",
            "Владимировичем",
        ],
        [
            "Владимировна",
            "Владимировны",
            "Владимировне",
            "Владимировной",
        ],
    ),
];
/// Surnames: (masculine forms, feminine forms). The last ones are not in
/// the scrubber's list: their suffix and their neighbours must give them away.
const SURNAMES: &[(Forms, Forms)] = &[
    (
        ["Попов", "Попова", "Попову", "Поповым"],
        ["Попова", "Поповой", "Поповой", "Поповой"],
    ),
    (
        ["Иванов", "Иванова", "Иванову", "Ивановым"],
        ["Иванова", "Ивановой", "Ивановой", "Ивановой"],
    ),
    (
        ["Петров", "Петрова", "Петрову", "Петровым"],
        ["Петрова", "Петровой", "Петровой", "Петровой"],
    ),
    (
        ["Соловьёв", "Соловьёва", "Соловьёву", "Соловьёвым"],
        ["Соловьёва", "Соловьёвой", "Соловьёвой", "Соловьёвой"],
    ),
    (
        ["Никитин", "Никитина", "Никитину", "Никитиным"],
        ["Никитина", "Никитиной", "Никитиной", "Никитиной"],
    ),
    (
        ["Покровский", "Покровского", "Покровскому", "Покровским"],
        ["Покровская", "Покровской", "Покровской", "Покровской"],
    ),
    (
        ["Шевченко", "Шевченко", "Шевченко", "Шевченко"],
        ["Шевченко", "Шевченко", "Шевченко", "Шевченко"],
    ),
    (
        ["Хабибуллин", "Хабибуллина", "Хабибуллину", "Хабибуллиным"],
        [
            "Хабибуллина",
            "Хабибуллиной",
            "Хабибуллиной",
            "Хабибуллиной",
        ],
    ),
    // Not in the list.
    (
        ["Кулибякин", "Кулибякина", "Кулибякину", "Кулибякиным"],
        ["Кулибякина", "Кулибякиной", "Кулибякиной", "Кулибякиной"],
    ),
    (
        ["Шестопалов", "Шестопалова", "Шестопалову", "Шестопаловым"],
        [
            "Шестопалова",
            "Шестопаловой",
            "Шестопаловой",
            "Шестопаловой",
        ],
    ),
    (
        ["Верещагин", "Верещагина", "Верещагину", "Верещагиным"],
        ["Верещагина", "Верещагиной", "Верещагиной", "Верещагиной"],
    ),
    (
        ["Завадский", "Завадского", "Завадскому", "Завадским"],
        ["Завадская", "Завадской", "Завадской", "Завадской"],
    ),
    (
        [
            "Мирошниченко",
            "Мирошниченко",
            "Мирошниченко",
            "Мирошниченко",
        ],
        [
            "Мирошниченко",
            "Мирошниченко",
            "Мирошниченко",
            "Мирошниченко",
        ],
    ),
    (
        ["Гусейнов", "Гусейнова", "Гусейнову", "Гусейновым"],
        ["Гусейнова", "Гусейновой", "Гусейновой", "Гусейновой"],
    ),
];

const STREETS: &[&str] = &[
    "Ленина",
    "Пушкина",
    "Гагарина",
    "Советская",
    "Садовая",
    "Мира",
    "Лесная",
    "Молодёжная",
    "Кирова",
    "Чехова",
    "Октябрьская",
    "Карла Маркса",
    "Маршала Жукова",
];
const LANES: &[&str] = &[
    "Школьный",
    "Северный",
    "Зелёный",
    "Почтовый",
    "Кооперативный",
];
/// Cities: nominative, prepositional.
const CITIES: &[[&str; 2]] = &[
    ["Казань", "Казани"],
    ["Тверь", "Твери"],
    ["Екатеринбург", "Екатеринбурге"],
    ["Новосибирск", "Новосибирске"],
    ["Самара", "Самаре"],
    ["Пермь", "Перми"],
    ["Воронеж", "Воронеже"],
    ["Нижний Новгород", "Нижнем Новгороде"],
];
const VILLAGES: &[&str] = &[
    "Ивановка",
    "Петровское",
    "Заречный",
    "Берёзовка",
    "Сосновка",
];
const MONTHS: &[&str] = &[
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
const TRANSLIT: &[&str] = &[
    "ivan", "olga", "petrova", "maria.s", "popov_n", "tanya", "kuznets",
];
const DOMAINS: &[&str] = &["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru"];

/// A message and the personal data in it.
#[derive(Default)]
struct Sample {
    text: String,
    /// Words that must not survive (names, streets, cities).
    words: Vec<String>,
    /// Digit sequences (five digits or more) that must not survive, compared
    /// digits only.
    digits: Vec<String>,
    /// Short numbers (house, flat, day, year) that must not survive as a
    /// number of their own.
    numbers: Vec<String>,
}

impl Sample {
    fn word(&mut self, w: &str) -> String {
        for part in w.split_whitespace() {
            self.words.push(part.to_string());
        }
        w.to_string()
    }
    fn digits(&mut self, formatted: String) -> String {
        self.digits
            .push(formatted.chars().filter(char::is_ascii_digit).collect());
        formatted
    }
    fn number(&mut self, n: String) -> String {
        self.numbers.push(n.clone());
        n
    }
}

/// Case of a name: 0 nominative, 1 genitive, 2 dative, 3 instrumental.
fn name(r: &mut Rng, s: &mut Sample, case: usize, full: bool) -> String {
    let female = r.chance(50);
    let first = if female { r.pick(FEMALE) } else { r.pick(MALE) }[case];
    let (pm, pf) = r.pick(PATRONYMICS);
    let patronymic = if female { pf } else { pm }[case];
    let (sm, sf) = r.pick(SURNAMES);
    let surname = if female { sf } else { sm }[case];
    let initials = format!(
        "{}.{}{}.",
        first.chars().next().unwrap(),
        if r.chance(30) { " " } else { "" },
        patronymic.chars().next().unwrap()
    );
    let (first, patronymic, surname) = (s.word(first), s.word(patronymic), s.word(surname));
    match r.below(if full { 4 } else { 7 }) {
        0 => format!("{surname} {first} {patronymic}"),
        1 => format!("{first} {patronymic} {surname}"),
        2 => format!("{first} {surname}"),
        3 => format!("{surname} {first}"),
        4 => format!("{first} {patronymic}"),
        5 => format!("{surname} {initials}"),
        _ => format!("{initials} {surname}"),
    }
}

fn phone(r: &mut Rng, s: &mut Sample) -> String {
    let (a, b, c, d) = (r.digits(3), r.digits(3), r.digits(2), r.digits(2));
    let p = match r.below(7) {
        0 => format!("+7 ({a}) {b}-{c}-{d}"),
        1 => format!("8-{a}-{b}-{c}-{d}"),
        2 => format!("8{a}{b}{c}{d}"),
        3 => format!("8 {a} {b} {c} {d}"),
        4 => format!("+7{a}{b}{c}{d}"),
        5 => format!(
            "8 ({}) {}-{}-{}",
            r.digits(5),
            r.digits(1),
            r.digits(2),
            r.digits(2)
        ),
        _ => format!("+7 {a} {b}{c}{d}"),
    };
    s.digits(p)
}

fn local_phone(r: &mut Rng, s: &mut Sample) -> String {
    let p = if r.chance(50) {
        format!("{}-{}-{}", r.digits(2), r.digits(2), r.digits(2))
    } else {
        format!("{}-{}-{}", r.digits(3), r.digits(2), r.digits(2))
    };
    s.digits(p)
}

fn snils(r: &mut Rng, s: &mut Sample) -> String {
    let (a, b, c, d) = (r.digits(3), r.digits(3), r.digits(3), r.digits(2));
    let v = match r.below(3) {
        0 => format!("{a}-{b}-{c} {d}"),
        1 => format!("{a}{b}{c}{d}"),
        _ => format!("{a} {b} {c} {d}"),
    };
    s.digits(v)
}

fn inn(r: &mut Rng, s: &mut Sample) -> String {
    let n = if r.chance(50) { 10 } else { 12 };
    let v = r.digits(n);
    s.digits(v)
}

fn passport(r: &mut Rng, s: &mut Sample) -> String {
    let (a, b, n) = (r.digits(2), r.digits(2), r.digits(6));
    s.digits.push(format!("{a}{b}"));
    s.digits.push(n.clone());
    match r.below(5) {
        0 => format!("паспорт {a} {b} {n}"),
        1 => format!("паспорт {a}{b} {n}"),
        2 => format!("паспорт серия {a}{b} номер {n}"),
        3 => format!("паспорт {a}{b}№{n}"),
        _ => format!("серия {a} {b} номер {n}"),
    }
}

fn card(r: &mut Rng, s: &mut Sample) -> String {
    let v = match r.below(3) {
        0 => format!(
            "{} {} {} {}",
            r.digits(4),
            r.digits(4),
            r.digits(4),
            r.digits(4)
        ),
        1 => r.digits(16),
        _ => format!(
            "{} {} {} {} {}",
            r.digits(4),
            r.digits(4),
            r.digits(4),
            r.digits(4),
            r.digits(3)
        ),
    };
    s.digits(v)
}

fn account(r: &mut Rng, s: &mut Sample) -> String {
    let v = format!("40817810{}", r.digits(12));
    s.digits(v)
}

fn email(r: &mut Rng, s: &mut Sample) -> String {
    let local = format!("{}{}", r.pick(TRANSLIT), r.digits(2));
    s.words.push(local.clone());
    format!("{local}@{}", r.pick(DOMAINS))
}

fn birth(r: &mut Rng, s: &mut Sample) -> String {
    let (d, m, y) = (1 + r.below(28), 1 + r.below(12), 1940 + r.below(65));
    match r.below(5) {
        0 => s.digits(format!("{d:02}.{m:02}.{y}")),
        1 => {
            s.number(y.to_string());
            format!("{d} {} {y} года", MONTHS[m - 1])
        }
        2 => {
            s.number(y.to_string());
            format!("родилась {d} {} {y}", MONTHS[m - 1])
        }
        3 => format!("{} г.р.", s.number(y.to_string())),
        _ => format!("дата рождения {}", s.digits(format!("{d:02}.{m:02}.{y}"))),
    }
}

fn address(r: &mut Rng, s: &mut Sample) -> String {
    let house = s.number((1 + r.below(60)).to_string());
    let flat = s.number((100 + r.below(300)).to_string());
    let street = r.pick(STREETS).to_string();
    match r.below(10) {
        0 => format!("ул. {}, д. {house}, кв. {flat}", s.word(&street)),
        1 => format!("улица {} дом {house} квартира {flat}", s.word(&street)),
        2 => format!("пр-т {} {house}-{flat}", s.word(&street)),
        3 => format!("пер. {}, {house}", s.word(r.pick(LANES))),
        4 => format!("мкр. {}, д. {house} корп. 2 стр. 1", s.word(r.pick(LANES))),
        5 => {
            let c = r.pick(CITIES);
            format!(
                "г. {}, ул. {} {house}/{flat}",
                s.word(c[0]),
                s.word(&street)
            )
        }
        6 => format!("город {}", s.word(r.pick(CITIES)[0])),
        7 => format!("с. {}, дом {house}", s.word(r.pick(VILLAGES))),
        8 => format!("деревня {}", s.word(r.pick(VILLAGES))),
        _ => format!(
            "пос. {} ул. {} д. {house}",
            s.word(r.pick(VILLAGES)),
            s.word(&street)
        ),
    }
}

fn application(r: &mut Rng, s: &mut Sample) -> String {
    match r.below(5) {
        0 => s.digits(format!("заявление № {}-{}/2024", r.digits(2), r.digits(3))),
        1 => format!("номер заявления {}", s.digits(r.digits(9))),
        2 => format!("№ А-{}", s.digits(r.digits(5))),
        3 => format!("обращение №{}", s.number(r.digits(2))),
        _ => format!("заявление {}", s.digits(r.digits(7))),
    }
}

/// One message of template `k`.
fn message(r: &mut Rng, k: usize) -> Sample {
    let mut s = Sample::default();
    let text = match k {
        0 => format!(
            "Меня зовут {}, живу на {}",
            name(r, &mut s, 0, true),
            address(r, &mut s)
        ),
        1 => format!(
            "{}, {}, СНИЛС {}",
            name(r, &mut s, 0, true),
            birth(r, &mut s),
            snils(r, &mut s)
        ),
        2 => format!(
            "здравствуйте это {} мой телефон {}",
            name(r, &mut s, 0, true),
            phone(r, &mut s)
        ),
        3 => format!(
            "Прошу перезвонить по номеру {}. С уважением, {}",
            phone(r, &mut s),
            name(r, &mut s, 0, false)
        ),
        4 => format!(
            "справка для {} по адресу {}",
            name(r, &mut s, 1, true),
            address(r, &mut s)
        ),
        5 => format!(
            "мой сын {} {} нужна путевка в лагерь",
            name(r, &mut s, 0, true),
            birth(r, &mut s)
        ),
        6 => format!(
            "моя мама {} инвалид 2 группы, {}",
            name(r, &mut s, 0, true),
            application(r, &mut s)
        ),
        7 => format!(
            "{} выдан на имя {}",
            passport(r, &mut s),
            name(r, &mut s, 1, true)
        ),
        8 => format!(
            "ИНН {}, карта {}, почта {}",
            inn(r, &mut s),
            card(r, &mut s),
            email(r, &mut s)
        ),
        9 => format!(
            "переведите пособие на счёт {} получатель {}",
            account(r, &mut s),
            name(r, &mut s, 0, true)
        ),
        10 => format!(
            "меня зовут {} {} живу {} телефон {}",
            name(r, &mut s, 0, true),
            birth(r, &mut s),
            address(r, &mut s),
            phone(r, &mut s)
        )
        .to_lowercase()
        .replace([',', '.'], ""),
        11 => format!(
            "Выплату {} так и не перечислили, {}",
            name(r, &mut s, 2, true),
            application(r, &mut s)
        ),
        12 => format!(
            "я — {}, тел. {}",
            name(r, &mut s, 0, true),
            local_phone(r, &mut s)
        ),
        13 => {
            let c = r.pick(CITIES);
            format!(
                "{}, живу в {}, {}",
                name(r, &mut s, 0, false),
                s.word(c[1]),
                phone(r, &mut s)
            )
        }
        14 => {
            let female = r.chance(50);
            let (sm, sf) = r.pick(SURNAMES);
            let surname = s.word(if female { sf } else { sm }[0]);
            let first = s.word(if female { r.pick(FEMALE) } else { r.pick(MALE) }[0]);
            let (pm, pf) = r.pick(PATRONYMICS);
            let patronymic = s.word(if female { pf } else { pm }[0]);
            format!("Фамилия: {surname}. Имя: {first}. Отчество: {patronymic}.")
        }
        15 => format!(
            "пишу от имени {}, {}",
            name(r, &mut s, 1, true),
            email(r, &mut s)
        ),
        16 => format!(
            "Добрый день! {}, {}, проживаю {}",
            name(r, &mut s, 0, true),
            birth(r, &mut s),
            address(r, &mut s)
        ),
        17 => format!(
            "с {} не могу связаться, звоните {}",
            name(r, &mut s, 3, true),
            local_phone(r, &mut s)
        ),
        18 => format!("ФИО {}, {}", name(r, &mut s, 0, true), birth(r, &mut s)),
        19 => format!(
            "номер карты {} на имя {}",
            card(r, &mut s),
            name(r, &mut s, 1, true)
        ),
        20 => format!("снилс {} инн {}", snils(r, &mut s), inn(r, &mut s)),
        21 => format!(
            "мне 75 лет, {}, пенсия 15000 рублей, телефон {}",
            name(r, &mut s, 0, true),
            phone(r, &mut s)
        ),
        22 => format!(
            "{} хочу узнать про пособие на 2 года",
            name(r, &mut s, 0, true)
        ),
        23 => format!(
            "Уважаемые специалисты, я {}, мой e-mail {}",
            name(r, &mut s, 0, true),
            email(r, &mut s)
        ),
        24 => format!(
            "{} {}, {}",
            passport(r, &mut s),
            snils(r, &mut s),
            application(r, &mut s)
        ),
        25 => format!(
            "{} {} {}",
            name(r, &mut s, 0, true),
            phone(r, &mut s),
            address(r, &mut s)
        )
        .to_lowercase()
        .replace([',', '.'], ""),
        26 => format!(
            "прошу разобраться, {}, заявитель {}",
            application(r, &mut s),
            name(r, &mut s, 0, false)
        ),
        _ => format!(
            "Звонила {}, {} {}, {}",
            name(r, &mut s, 0, false),
            address(r, &mut s),
            phone(r, &mut s),
            card(r, &mut s)
        ),
    };
    s.text = text;
    s
}

const TEMPLATES: usize = 28;

fn corpus() -> Vec<Sample> {
    let mut r = Rng(0x5EED_1234_ABCD_0013);
    (0..1200).map(|i| message(&mut r, i % TEMPLATES)).collect()
}

fn fold(s: &str) -> String {
    s.to_lowercase().replace('ё', "е")
}

/// What of `s`'s personal data survives in `out`.
fn leaks(s: &Sample, out: &str) -> Vec<String> {
    let mut found = Vec::new();
    let low = fold(out);
    let words: Vec<&str> = low
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .map(|w| w.trim_matches('.'))
        .collect();
    for w in &s.words {
        let w = fold(w);
        if words.contains(&w.as_str()) || (w.contains(['.', '_']) && low.contains(&w)) {
            found.push(w);
        }
    }
    let digits: String = out.chars().filter(char::is_ascii_digit).collect();
    for d in &s.digits {
        if digits.contains(d.as_str()) {
            found.push(d.clone());
        }
    }
    let numbers: Vec<&str> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .collect();
    for n in &s.numbers {
        if numbers.contains(&n.as_str()) {
            found.push(n.clone());
        }
    }
    found
}

#[test]
fn no_personal_data_survives_in_a_generated_corpus() {
    let corpus = corpus();
    assert!(corpus.len() >= 1000);
    let mut failed = Vec::new();
    for s in &corpus {
        let out = anonymise(&s.text, &[]);
        let l = leaks(s, &out);
        if !l.is_empty() {
            failed.push(format!("{:?}\n  → {out:?}\n  leaks {l:?}", s.text));
        }
    }
    let started = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        for s in &corpus {
            std::hint::black_box(anonymise(&s.text, &[]));
        }
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / (reps * corpus.len()) as f64;
    eprintln!(
        "pii corpus: {} messages, {} leaks; anonymise {per:.1} µs per message",
        corpus.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} messages leak:\n{}",
        failed.len(),
        corpus.len(),
        failed[..failed.len().min(30)].join("\n")
    );
}

/// The knowledge base's examples: what people ask, without personal data.
fn kb_examples() -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir("intents").unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let v: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for intent in v["intents"].as_sequence().into_iter().flatten() {
            for e in intent["examples"].as_sequence().into_iter().flatten() {
                if let Some(e) = e.as_str() {
                    out.push(e.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn ordinary_questions_keep_their_words() {
    let examples = kb_examples();
    assert!(examples.len() > 500, "{}", examples.len());
    let (mut total, mut changed) = (0usize, 0usize);
    let mut touched = Vec::new();
    for e in &examples {
        let out = anonymise(e, &[]);
        let mut left: Vec<&str> = out.split_whitespace().collect();
        for w in e.split_whitespace() {
            total += 1;
            match left.iter().position(|x| *x == w) {
                Some(p) => {
                    left.remove(p);
                }
                None => changed += 1,
            }
        }
        if out != *e {
            touched.push(format!("{e:?} → {out:?}"));
        }
    }
    let share = changed as f64 / total as f64;
    eprintln!(
        "pii false positives on the knowledge base: {changed} of {total} tokens ({:.2} %), {} of {} examples touched:\n{}",
        share * 100.0,
        touched.len(),
        examples.len(),
        touched.join("\n")
    );
    assert!(share <= 0.02, "{:.2} %", share * 100.0);
    for q in [
        "Вера в то, что пенсию поднимут",
        "Роман Толстого нужен для школы",
        "Любовь к детям не оплачивается",
        "Надежда только на вас",
        "на улице холодно, куда идти в МФЦ",
        "в какой город переезжать",
        "мне 75 лет, трое детей",
        "пособие на 2 года",
        "в 2025 году до 15 числа",
        "долг 5 тысяч рублей",
        "Лев и Слава это мои коты",
        "пенсионный возраст мужчины 1965 года",
        "Мир и Роза",
        "справка для любой организации",
        "Дом культуры работает?",
    ] {
        assert_eq!(anonymise(q, &[]), q);
    }
}

#[test]
fn nothing_personal_reaches_the_stored_log() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = common::engine_at(dir.path(), common::WORKDAY);
    let corpus = corpus();
    let sample: Vec<&Sample> = corpus.iter().step_by(30).collect();
    for (i, s) in sample.iter().enumerate() {
        let user = format!("u{i}");
        e.handle("web", &user, Input::Start).unwrap();
        e.handle("web", &user, Input::Text(s.text.clone())).unwrap();
    }
    let log = e.store.log_entries().unwrap();
    let texts = log.iter().filter(|l| !l.text.is_empty()).count();
    assert!(texts >= sample.len(), "{texts} texts logged");
    for entry in &log {
        // The pseudonyms are keyed hashes; every other field is checked.
        for p in [&entry.conversation, &entry.client] {
            assert!(p.len() == 24 && p.chars().all(|c| c.is_ascii_hexdigit() || c == 'x'));
        }
        let mut fields = vec![
            entry.channel.clone(),
            entry.segment.clone(),
            entry.node.clone(),
            entry.text.clone(),
        ];
        fields.extend(entry.intent.clone());
        fields.extend(entry.decision.clone());
        fields.extend(entry.confirmed.clone());
        fields.extend(entry.situation.clone());
        fields.extend(entry.events.clone());
        fields.extend(entry.scores.iter().map(|c| c.intent.clone()));
        for f in &fields {
            for s in &sample {
                let l = leaks(s, f);
                assert!(l.is_empty(), "{:?} leaks {l:?} into the log: {f:?}", s.text);
            }
        }
    }
}
