//! The example embeddings and index are cached on disk: a restart embeds
//! nothing, and changing one example re-embeds only that example.

mod common;

use otklik::nlu::classifier::{BuildOptions, Classifier};
use otklik::nlu::kb::KnowledgeBase;
use otklik::nlu::{self};

#[test]
fn restart_reuses_cache_and_a_change_re_embeds_only_itself() {
    let mut cfg = common::config();
    // Count only the examples written below.
    cfg.classifier.derived_examples = false;
    let enc = nlu::load_encoder(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = |extra: &str| {
        format!(
            "intents:\n  - id: pension\n    title: Пенсия\n    examples:\n      - как оформить пенсию\n      - пенсия по старости{extra}\n    answer:\n      universal: Пенсию назначает Социальный фонд.\n  - id: passport\n    title: Паспорт\n    examples:\n      - поменять паспорт в 45 лет\n      - потерял паспорт что делать\n    answer:\n      universal: Паспорт меняют в МВД или МФЦ.\n"
        )
    };
    let segs = cfg.kb.segments.clone();
    let load = |text: String| {
        KnowledgeBase::from_sources(&[("a.yaml".into(), text.into_bytes())], 2, &segs).unwrap()
    };
    let cache = dir.path().join("cache");
    let opts = BuildOptions {
        cache_dir: Some(&cache),
        prefix: "query: ",
        cache_entries: 10,
        tuned: None,
    };

    let first = Classifier::build(enc.clone(), &load(yaml("")), &cfg.classifier, &opts).unwrap();
    assert_eq!(first.embedded_at_build, 4);
    let graphs = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".hnsw.graph")
            })
            .count()
    };
    assert_eq!(graphs(), 1, "the index is dumped to disk");

    let again = Classifier::build(enc.clone(), &load(yaml("")), &cfg.classifier, &opts).unwrap();
    assert_eq!(again.embedded_at_build, 0, "a restart must not re-embed");
    assert_eq!(graphs(), 1, "the same index is reloaded, not rebuilt");
    assert_eq!(
        again.classify("как оформить пенсию").unwrap().top[0].intent,
        "pension"
    );

    let changed = Classifier::build(
        enc,
        &load(yaml("\n      - пенсия досрочно")),
        &cfg.classifier,
        &opts,
    )
    .unwrap();
    assert_eq!(
        changed.embedded_at_build, 1,
        "only the new example is embedded"
    );
    assert_eq!(graphs(), 2, "a new knowledge-base hash gets its own index");
}
