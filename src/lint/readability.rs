//! Readability of Russian text: words, sentences and syllables counted the
//! way Oborneva's adaptation of the Flesch reading ease expects (a syllable is
//! a vowel: а е ё и о у ы э ю я), the score itself
//! (FRE = 206.835 − 1.3 × words/sentences − 60.1 × syllables/words) and its
//! band on the school-grade scale.

use serde::Serialize;

const VOWELS: &[char] = &['а', 'е', 'ё', 'и', 'о', 'у', 'ы', 'э', 'ю', 'я'];

/// Syllables of a Russian word: its vowels (Latin words: a e i o u y).
pub fn syllables(word: &str) -> usize {
    word.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| VOWELS.contains(c) || matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y'))
        .count()
}

/// The words of a text: runs of letters, a hyphenated word («медико-социальная»)
/// counted once. Numbers are not words here (they are read out in any case).
pub fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphabetic() || c == '-' || c == '\u{301}'))
        .map(|w| w.trim_matches('-'))
        .filter(|w| w.chars().any(char::is_alphabetic))
        .collect()
}

/// The sentences of a text (line by line, abbreviations such as «ул.» do not
/// end one), with at least one word each.
pub fn sentences(text: &str) -> Vec<String> {
    crate::dialog::style::sentences(text)
        .into_iter()
        .filter(|s| !words(s).is_empty())
        .collect()
}

/// What a text's readability is computed from, and the result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readability {
    pub sentences: usize,
    pub words: usize,
    pub syllables: usize,
    /// Words in the longest sentence.
    pub longest_sentence: usize,
    /// Words of `long_syllables` syllables or more, as a share of all words.
    pub long_word_share: f64,
    /// Flesch reading ease, Oborneva's coefficients.
    pub fre: f64,
    /// The band of `fre`: «очень легко» … «очень трудно».
    pub grade: &'static str,
    /// Who reads a text of that band with ease.
    pub readers: &'static str,
}

impl Readability {
    pub fn words_per_sentence(&self) -> f64 {
        self.words as f64 / self.sentences.max(1) as f64
    }
    pub fn syllables_per_word(&self) -> f64 {
        self.syllables as f64 / self.words.max(1) as f64
    }
}

/// Flesch reading ease with Oborneva's coefficients for Russian.
pub fn fre(words: usize, sentences: usize, syllables: usize) -> f64 {
    if words == 0 {
        return 0.0;
    }
    let asl = words as f64 / sentences.max(1) as f64;
    let asw = syllables as f64 / words as f64;
    206.835 - 1.3 * asl - 60.1 * asw
}

/// The band of a score: (difficulty, the readers it suits). Flesch's bands,
/// which Oborneva kept for the adapted formula.
pub fn grade(fre: f64) -> (&'static str, &'static str) {
    match fre {
        f if f >= 90.0 => ("очень легко", "5 класс (11 лет)"),
        f if f >= 80.0 => ("легко", "6 класс"),
        f if f >= 70.0 => ("довольно легко", "7 класс"),
        f if f >= 60.0 => ("нормально", "8–9 классы"),
        f if f >= 50.0 => ("довольно трудно", "10–11 классы"),
        f if f >= 30.0 => ("трудно", "студенты вуза"),
        _ => ("очень трудно", "выпускники вуза"),
    }
}

/// Scores a text; a word of `long_syllables` syllables or more is long.
pub fn score(text: &str, long_syllables: usize) -> Readability {
    let sents = sentences(text);
    let mut words_n = 0;
    let mut syl = 0;
    let mut long = 0;
    let mut longest = 0;
    for s in &sents {
        let ws = words(s);
        longest = longest.max(ws.len());
        words_n += ws.len();
        for w in ws {
            let n = syllables(w);
            syl += n;
            if n >= long_syllables {
                long += 1;
            }
        }
    }
    let f = fre(words_n, sents.len(), syl);
    let (g, r) = grade(f);
    Readability {
        sentences: sents.len(),
        words: words_n,
        syllables: syl,
        longest_sentence: longest,
        long_word_share: if words_n == 0 {
            0.0
        } else {
            (long as f64 / words_n as f64 * 1000.0).round() / 1000.0
        },
        fre: (f * 10.0).round() / 10.0,
        grade: g,
        readers: r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syllables_are_vowels() {
        assert_eq!(syllables("заявление"), 5);
        assert_eq!(syllables("Ёлка"), 2);
        assert_eq!(syllables("в"), 0);
        assert_eq!(syllables("МФЦ"), 0);
        assert_eq!(syllables("медико-социальная"), 8);
    }

    #[test]
    fn words_skip_numbers_and_punctuation() {
        assert_eq!(
            words("Позвоните 8 800 — медико-социальная «экспертиза», 15 лет."),
            vec!["Позвоните", "медико-социальная", "экспертиза", "лет"]
        );
    }

    #[test]
    fn the_formula_is_obornevas() {
        // 10 words, 2 sentences, 20 syllables: 206.835 − 1.3·5 − 60.1·2
        assert!((fre(10, 2, 20) - 80.135).abs() < 1e-9);
        let r = score("Мама мыла раму. Папа пил чай.", 4);
        assert_eq!((r.sentences, r.words, r.syllables), (2, 6, 10));
        assert_eq!(r.longest_sentence, 3);
        assert!((r.fre - 102.8).abs() < 0.05, "{r:?}");
        assert_eq!(r.grade, "очень легко");
    }

    #[test]
    fn bureaucratic_text_scores_low() {
        let r = score("Предоставление государственной услуги осуществляется многофункциональными центрами предоставления государственных и муниципальных услуг.", 4);
        assert!(r.fre < 0.0, "{r:?}");
        assert_eq!(r.grade, "очень трудно");
        assert!(r.long_word_share > 0.5, "{r:?}");
    }

    #[test]
    fn bands_cover_the_scale() {
        assert_eq!(grade(95.0).0, "очень легко");
        assert_eq!(grade(65.0).0, "нормально");
        assert_eq!(grade(55.0).0, "довольно трудно");
        assert_eq!(grade(40.0).0, "трудно");
        assert_eq!(grade(-20.0).0, "очень трудно");
    }
}
