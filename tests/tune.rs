//! Fine-tuning of the encoder's top layers (`otklik train`): the candle
//! layers reproduce the frozen encoder before training, training is
//! deterministic for a seed, and the weights file is used only for the
//! examples it was trained on.

mod common;

use otklik::config::TuneConfig;
use otklik::nlu::encoder::{dot, Embedder, Encoder};
use otklik::nlu::layers::Tuned;
use otklik::nlu::{self, tune};
use std::sync::{Arc, OnceLock};

fn encoder() -> Arc<Encoder> {
    static E: OnceLock<Arc<Encoder>> = OnceLock::new();
    E.get_or_init(|| nlu::load_encoder(&common::config()).unwrap())
        .clone()
}

const TEXTS: &[&str] = &[
    "query: как оформить пенсию по старости",
    "query: где получить снилс ребёнку",
    "query: запишите меня в мфц на завтра",
    "query: спасибо, до свидания",
];

#[test]
fn the_candle_layers_start_where_the_frozen_encoder_is() {
    let enc = encoder();
    let n = enc.layer_count();
    let layers: Vec<_> = (n - 2..n).map(|l| enc.layer_f32(l).unwrap()).collect();
    let frozen = enc.embed(TEXTS).unwrap();
    let quantized = layers.iter().map(|l| l.quantized().unwrap()).collect();
    for (name, layers) in [("f32", layers), ("8-bit", quantized)] {
        let tuned = Tuned {
            layers,
            first: n - 2,
            heads: enc.heads(),
            eps: enc.eps(),
            key: "untrained".into(),
        };
        let e = enc.embed_tuned(TEXTS, usize::MAX, Some(&tuned)).unwrap();
        for (a, b) in frozen.iter().zip(&e) {
            let cos = dot(a, b);
            assert!(cos > 0.995, "{name}: cosine {cos} to the frozen embedding");
        }
    }
}

fn items() -> Vec<(String, String)> {
    let kb = nlu::load_kb(&common::config()).unwrap();
    kb.intents
        .iter()
        .take(4)
        .flat_map(|i| i.examples.iter().take(8).map(|e| (i.id.clone(), e.clone())))
        .collect()
}

fn settings() -> TuneConfig {
    TuneConfig {
        layers: 2,
        epochs: 2,
        patience: 2,
        validation_share: 0.25,
        ..Default::default()
    }
}

#[test]
fn training_is_deterministic_and_keyed_by_its_examples() {
    let enc = encoder();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    let items = items();
    let t = settings();
    let (embedder, report, path) =
        tune::train_and_save(&model, &enc, &items, "query: ", &t, true).unwrap();
    assert!(path.starts_with(dir.path()), "beside the model: {path:?}");
    assert_eq!(report.epochs_run, 2);
    let first = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (_, _, again) = tune::train_and_save(&model, &enc, &items, "query: ", &t, true).unwrap();
    assert_eq!(again, path);
    assert!(
        std::fs::read(&again).unwrap() == first,
        "same seed, same weights"
    );

    // Found for the same examples only.
    let found = tune::find(&model, &enc, &items, &t)
        .unwrap()
        .expect("the file matches");
    assert_eq!(found.layers.len(), 2);
    let mut changed = items.clone();
    changed[0].1.push_str(" срочно");
    assert!(tune::find(&model, &enc, &changed, &t).unwrap().is_none());
    let other_seed = TuneConfig {
        seed: 2,
        ..t.clone()
    };
    assert!(tune::find(&model, &enc, &items, &other_seed)
        .unwrap()
        .is_none());

    // The tuned embedder is not the frozen one, and is what the file holds.
    let frozen = Embedder::frozen(enc.clone()).embed(TEXTS).unwrap();
    let tuned = embedder.embed(TEXTS).unwrap();
    let loaded = Embedder {
        encoder: enc.clone(),
        tuned: Some(found),
    }
    .embed(TEXTS)
    .unwrap();
    assert!(frozen.iter().zip(&tuned).any(|(a, b)| dot(a, b) < 0.9999));
    for (a, b) in tuned.iter().zip(&loaded) {
        assert!(dot(a, b) > 0.99999);
    }
    assert_ne!(embedder.identity(), Embedder::frozen(enc).identity());
}
