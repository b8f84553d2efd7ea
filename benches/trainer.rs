//! The trainers' tools, measured (not asserted): `suggest` over 10,000
//! logged utterances on 2 cores (target ≤ 60 s), in a realistic mix (most
//! answered at once, a fifth confirmed after options, a fifth unanswered)
//! and in the worst case where every utterance is a different unanswered
//! question (the default `max_questions`, 5,000, of them embedded and
//! clustered). `cargo bench --bench trainer` runs 10,000; under `cargo test
//! --benches` it runs 500, once.

#[path = "../tests/common.rs"]
mod common;

use otklik::analytics::export::Utterance;
use otklik::analytics::Candidate;
use otklik::trainer::suggest::{suggest, Kind, Options};
use std::time::Instant;

const FILLERS: &[&str] = &[
    "",
    "подскажите",
    "пожалуйста",
    "срочно",
    "здравствуйте",
    "а если",
    "у меня вопрос",
    "скажите",
    "добрый день",
    "помогите",
];

/// `n` utterances made from the knowledge base's examples and its
/// out-of-scope ones, each different; `unanswered` of every 10 are
/// out-of-scope questions nobody confirmed, 2 more were confirmed after
/// options, the rest were answered at once.
fn utterances(nlu: &otklik::nlu::Nlu, n: usize, unanswered: usize) -> Vec<Utterance> {
    let examples: Vec<(&str, &str)> = nlu
        .kb
        .intents
        .iter()
        .flat_map(|i| i.examples.iter().map(move |e| (i.id.as_str(), e.as_str())))
        .collect();
    let oos = &nlu.kb.out_of_scope;
    (0..n)
        .map(|k| {
            let filler = FILLERS[(k / 7) % FILLERS.len()];
            let round = k / (examples.len() * FILLERS.len()).max(1);
            let kind = k % 10;
            let (label, text, decision) = if kind < unanswered {
                (None, oos[k % oos.len()].as_str(), "out_of_scope")
            } else {
                let (id, e) = examples[k % examples.len()];
                let confirmed = kind < unanswered + 2;
                (
                    confirmed.then(|| id.to_string()),
                    e,
                    if confirmed { "alternatives" } else { "answer" },
                )
            };
            let text = format!(
                "{filler} {text} {}",
                if round > 0 {
                    round.to_string()
                } else {
                    String::new()
                }
            )
            .trim()
            .to_string()
                + &format!(" {}", ["", "ну", "вот", "так"][k % 4]);
            Utterance {
                ts: k as i64,
                conversation: format!("c{k}"),
                channel: "web".into(),
                segment: "universal".into(),
                text: text.trim().to_string(),
                predicted: Some("complaint".into()),
                scores: vec![Candidate {
                    intent: "complaint".into(),
                    score: 0.3,
                }],
                decision: Some(decision.into()),
                label_source: label.as_ref().map(|_| "option".into()),
                confirmed: label,
                solved: None,
                handed_off: false,
            }
        })
        .collect()
}

fn run(nlu: &otklik::nlu::Nlu, name: &str, us: &[Utterance]) {
    let t = Instant::now();
    let p = suggest(us, &nlu.kb, &nlu.classifier, &Options::default()).unwrap();
    let examples = p.items.iter().filter(|i| i.kind == Kind::Example).count();
    println!(
        "suggest, {name}: {} utterances in {:.1} s → {examples} example and {} new-intent proposals",
        us.len(),
        t.elapsed().as_secs_f64(),
        p.items.len() - examples
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 10_000 } else { 500 };
    let nlu = common::shared_nlu();
    run(&nlu, "realistic mix", &utterances(&nlu, n, 2));
    run(
        &nlu,
        "every one a different unanswered question (the 5,000 most frequent clustered)",
        &{
            let mut us = utterances(&nlu, n, 10);
            // Different texts: the out-of-scope set is small, so number them.
            for (k, u) in us.iter_mut().enumerate() {
                u.text = format!("{} {}", u.text, k);
            }
            us
        },
    );
}
