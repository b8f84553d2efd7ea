//! A standard Hugging Face sentence-encoder directory (all-MiniLM-L6-v2, BERT,
//! mean pooling from 1_Pooling/config.json) loads and gives sensible embeddings.

use otklik::nlu::encoder::{dot, Encoder, Pooling};
use std::path::Path;

#[test]
fn minilm_directory_loads_and_ranks_paraphrases_first() {
    let enc = Encoder::from_hf_dir(Path::new("models/minilm"), Pooling::Auto)
        .expect("run `make test-models` first");
    assert_eq!(enc.dim(), 384);
    // [CLS] … [SEP] around WordPiece tokens.
    let ids = enc.token_ids("hello world").unwrap();
    assert_eq!(ids.first(), Some(&101));
    assert_eq!(ids.last(), Some(&102));
    let e = enc
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
            "A man is riding a horse.",
        ])
        .unwrap();
    let n: f32 = e[0].iter().map(|x| x * x).sum();
    assert!((n - 1.0).abs() < 1e-4);
    let s_para = dot(&e[0], &e[1]);
    assert!(
        s_para > dot(&e[0], &e[2]) + 0.2 && s_para > dot(&e[0], &e[3]),
        "{s_para}"
    );
    // Batched and single embeddings agree (padding is masked out).
    let single = enc.embed(&["A man is riding a horse."]).unwrap();
    assert!(dot(&single[0], &e[3]) > 0.9999);
}
