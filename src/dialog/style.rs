//! Wording rules per segment and channel, and reading the client's words:
//! emoji only where channel and segment allow them, spoken output without
//! URLs or symbols and with short sentences, options ordered by the segment's
//! likely life situations, the segment guessed from what the client says,
//! and yes / no / operator / withdrawal / skip words from the graph's lexicon.

use super::graph::{ChannelStyle, Graph};
use crate::nlu::kb::{normalize_text, KnowledgeBase};
use regex::Regex;
use std::sync::LazyLock;

/// Pictographs, dingbats, flags, variation selectors and joiners. Hand-written
/// ranges: the emoji crates map names to emoji, none strips them cheaply.
pub fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE00..=0xFE0F | 0x200D | 0x20E3 | 0xE0020..=0xE007F)
}

pub fn strip_emoji(s: &str) -> String {
    let t: String = s.chars().filter(|c| !is_emoji(*c)).collect();
    // tidy the spaces an emoji leaves behind
    let t = t
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    t.replace(" \n", "\n")
        .replace(" .", ".")
        .replace(" !", "!")
        .trim()
        .to_string()
}

pub fn has_emoji(s: &str) -> bool {
    s.chars().any(is_emoji)
}

static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:https?://|www\.)\S+").unwrap());

/// Text for speech synthesis: no URLs, symbols as words, no brackets.
pub fn spoken(s: &str) -> String {
    let t = URL.replace_all(s, "");
    let t = t
        .replace('№', " номер ")
        .replace('%', " процентов")
        .replace(['(', ')'], ", ")
        .replace(['«', '»', '"', '*', '_', '#', '\\', '&', '<', '>'], "");
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    t.replace(" ,", ",")
        .replace(",,", ",")
        .replace(", .", ".")
        .replace(" .", ".")
}

/// Splits sentences longer than `max` words at safe points (a semicolon, a
/// dash, or a comma before «а», «но», «и», «чтобы», «если»).
pub fn short_sentences(s: &str, max: usize) -> String {
    if max == 0 {
        return s.to_string();
    }
    static SPLIT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:;|\s—|,)\s+(а|но|и|чтобы|если|тогда|затем|потом)?\s*").unwrap()
    });
    let mut out = Vec::new();
    for sentence in split_sentences(s) {
        let mut rest = sentence.trim().to_string();
        while rest.split_whitespace().count() > max {
            // the safe point nearest the middle
            let words = rest.split_whitespace().count();
            let best = SPLIT
                .find_iter(&rest)
                .filter(|m| {
                    let before = rest[..m.start()].split_whitespace().count();
                    before >= 3 && words - before >= 3
                })
                .min_by_key(|m| {
                    (rest[..m.start()].split_whitespace().count() as i64 - words as i64 / 2).abs()
                });
            let Some(m) = best else { break };
            let head = rest[..m.start()]
                .trim_end_matches([',', ';', ' '])
                .to_string();
            let tail = rest[m.end()..].to_string();
            let joint = SPLIT
                .captures(&rest[m.start()..m.end()])
                .and_then(|c| c.get(1))
                .map(|w| w.as_str().to_string());
            out.push(format!("{head}."));
            let tail = match joint {
                Some(w) if w != "и" => format!("{w} {tail}"),
                _ => tail,
            };
            rest = capitalise(&tail);
        }
        out.push(rest);
    }
    out.join(" ")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Abbreviations a sentence does not end at («ул. Ленина, д. 5»).
const ABBREVIATIONS: &[&str] = &[
    "ул", "д", "кв", "г", "гг", "пр", "пер", "стр", "корп", "им", "т", "е", "п", "см", "др", "руб",
    "тыс", "млн", "млрд", "ст", "обл", "пос", "с", "мкр", "наб", "пл", "б",
];

fn split_sentences(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()) {
            let word: String = cur[..cur.len() - 1]
                .chars()
                .rev()
                .take_while(|c| c.is_alphabetic())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if c == '.' && ABBREVIATIONS.contains(&word.as_str()) && chars.get(i + 1).is_some() {
                continue;
            }
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// The engine's own text in the channel's words (whole words only, so that
/// «напишите» becomes «скажите» on voice and nothing else changes).
pub fn channel_words(text: &str, ch: &ChannelStyle) -> String {
    if ch.words.is_empty() {
        return text.to_string();
    }
    // phrases (keys with a space) first, as they are written
    let mut phrased = text.to_string();
    for (k, v) in ch.words.iter().filter(|(k, _)| k.contains(' ')) {
        phrased = phrased.replace(k.as_str(), v);
    }
    let text = phrased.as_str();
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(ch.words.get(word.as_str()).unwrap_or(word));
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || c == '-' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// How a sentence is compared with another: lower case, no emoji, no
/// surrounding spaces or final punctuation.
pub fn sentence_key(s: &str) -> String {
    strip_emoji(s)
        .trim()
        .trim_end_matches(['.', '!', '?', '…'])
        .to_lowercase()
        .replace('ё', "е")
}

/// The sentences of a text (line by line, each keeping its punctuation).
pub fn sentences(text: &str) -> Vec<String> {
    text.lines()
        .flat_map(split_sentences)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `text` without the sentences in `seen` (which gains the rest): a turn
/// never says the same sentence twice. Line breaks are kept.
pub fn without_sentences(text: &str, seen: &mut std::collections::HashSet<String>) -> String {
    keep_sentences(text, |k| seen.insert(k.to_string()))
}

/// `text` with only the sentences whose key (`sentence_key`) `keep` accepts;
/// sentences without words always stay. Line breaks are kept.
pub fn keep_sentences(text: &str, mut keep: impl FnMut(&str) -> bool) -> String {
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            split_sentences(line)
                .into_iter()
                .filter(|s| {
                    let k = sentence_key(s);
                    k.is_empty() || keep(&k)
                })
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect();
    let mut t = lines.join("\n");
    while t.contains("\n\n\n") {
        t = t.replace("\n\n\n", "\n\n");
    }
    t.trim().to_string()
}

/// Applies the channel's and the segment's rules to a text the client will see or hear.
pub fn adapt(text: &str, graph: &Graph, channel: &str, segment: &str) -> String {
    let ch: &ChannelStyle = graph.channel(channel);
    let seg_emoji = graph.segments.get(segment).is_none_or(|s| s.emoji);
    let mut t = if ch.emoji && seg_emoji {
        text.trim().to_string()
    } else {
        strip_emoji(text)
    };
    if ch.spoken {
        t = t
            .lines()
            .map(spoken)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    if ch.max_sentence_words > 0 {
        t = t
            .split('\n')
            .map(|l| short_sentences(l, ch.max_sentence_words))
            .collect::<Vec<_>>()
            .join("\n");
    }
    t
}

/// Orders intents so that the segment's likely life situations come first
/// (stable: otherwise the classifier's order stays).
pub fn order_for_segment(intents: &mut [String], kb: &KnowledgeBase, graph: &Graph, segment: &str) {
    let Some(style) = graph.segments.get(segment) else {
        return;
    };
    let rank = |id: &String| {
        kb.intent(id)
            .and_then(|i| i.situation.as_ref())
            .and_then(|s| style.situations.iter().position(|x| x == s))
            .unwrap_or(usize::MAX)
    };
    intents.sort_by_key(rank);
}

/// The segment a message reveals, if any.
pub fn infer_segment(graph: &Graph, text: &str) -> Option<String> {
    // «мне семьдесят два года» reads as «мне 72 года»
    let t = super::values::words_to_digits(&normalize_text(text));
    graph
        .detectors
        .iter()
        .find(|(_, r)| r.is_match(&t))
        .map(|(s, _)| s.clone())
}

fn any(rs: &[Regex], text: &str) -> bool {
    let t = normalize_text(text);
    !t.is_empty() && rs.iter().any(|r| r.is_match(&t))
}

pub fn is_yes(g: &Graph, text: &str) -> bool {
    any(&g.lexicon.yes, text)
}
pub fn is_no(g: &Graph, text: &str) -> bool {
    any(&g.lexicon.no, text)
}
pub fn wants_operator(g: &Graph, text: &str) -> bool {
    any(&g.lexicon.operator, text)
}
pub fn wants_withdrawal(g: &Graph, text: &str) -> bool {
    any(&g.lexicon.withdraw, text)
}
pub fn is_skip(g: &Graph, text: &str) -> bool {
    any(&g.lexicon.skip, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_stripped_and_spaces_tidied() {
        assert_eq!(
            strip_emoji("Здравствуйте! 👋 Чем помочь? 🙂"),
            "Здравствуйте! Чем помочь?"
        );
        assert!(!has_emoji(&strip_emoji("Готово ✅ 👍🏻 ❤️")));
    }

    #[test]
    fn spoken_text_has_no_urls_or_symbols() {
        let s = spoken("Подайте заявление на www.gosuslugi.ru или https://gosuslugi.ru/600 (раздел «Пособия»). Скидка 50%, № 5.");
        assert!(
            !s.contains("http")
                && !s.contains("www")
                && !s.contains('«')
                && !s.contains('%')
                && !s.contains('№'),
            "{s}"
        );
        assert!(s.contains("50 процентов") && s.contains("номер 5"), "{s}");
    }

    #[test]
    fn abbreviations_do_not_end_sentences() {
        assert_eq!(
            sentences("Центральный офис, ул. Ленина, д. 1, в 15:00. Всё верно?"),
            vec!["Центральный офис, ул. Ленина, д. 1, в 15:00.", "Всё верно?"]
        );
        let mut seen = std::collections::HashSet::new();
        let _ = without_sentences("Записываю: ул. Ленина, 1. Верно?", &mut seen);
        assert_eq!(
            without_sentences("Готово: ул. Ленина, 1. Возьмите паспорт.", &mut seen),
            "Готово: ул. Ленина, 1. Возьмите паспорт."
        );
    }

    #[test]
    fn long_sentences_are_split_at_safe_points() {
        let long = "Вы можете подать заявление в МФЦ или на Госуслугах, а решение придёт в личный кабинет в течение десяти рабочих дней после подачи.";
        let s = short_sentences(long, 12);
        for sent in split_sentences(&s) {
            assert!(sent.split_whitespace().count() <= 14, "{s}");
        }
        assert!(s.contains("А решение"), "{s}");
        assert_eq!(short_sentences("Коротко и ясно.", 12), "Коротко и ясно.");
    }
}
