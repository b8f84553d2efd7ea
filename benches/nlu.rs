//! NLU benchmarks: single-query classify latency, batch embedding throughput,
//! model + index load time (warm), and steady RSS after load and queries.
//! Run with `make bench`; the figures go into the closing notes, not into tests.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use otklik::config::Config;
use otklik::nlu::{self, Nlu};
use std::path::Path;
use std::time::Duration;

const QUERIES: &[&str] = &[
    "как оформить единое пособие на ребёнка",
    "когда придёт пенсия",
    "хочу записаться на приём в мфц",
    "мне нужен живой оператор",
    "у меня трое детей какие льготы положены",
    "где получить слуховой аппарат бесплатно",
];

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn config() -> Config {
    let mut cfg = Config::load(Path::new("otklik.toml")).expect("otklik.toml");
    cfg.data_dir = std::env::temp_dir().join("otklik-bench-data");
    cfg
}

fn benches(c: &mut Criterion) {
    let cfg = config();
    // Warm the caches once (embeddings, index dump), then measure loads.
    let nlu = Nlu::load(&cfg, nlu::load_encoder(&cfg).unwrap()).unwrap();
    for q in QUERIES {
        nlu.classifier.classify(q).unwrap();
    }
    eprintln!(
        "encoder: {} (OTKLIK_TUNE_ENABLED=false for the frozen one)",
        match &nlu.classifier.embedder().tuned {
            Some(t) => format!("{} tuned top layer(s), {}", t.layers.len(), t.key),
            None => "frozen".into(),
        }
    );
    eprintln!("steady RSS after load and queries: {:.1} MB", rss_mb());

    let mut g = c.benchmark_group("classify");
    g.measurement_time(Duration::from_secs(10));
    let mut i = 0usize;
    g.bench_function("single_query_uncached", |b| {
        b.iter(|| {
            i += 1;
            // A distinct text every time so the query cache never answers.
            let q = format!("{} {}", QUERIES[i % QUERIES.len()], i);
            nlu.classifier.classify(&q).unwrap()
        })
    });
    g.finish();
    // Criterion reports the mean; the target is on the median, so measure
    // the distribution of single calls as well.
    let mut times: Vec<f64> = (0..300)
        .map(|j| {
            let q = format!("{} {}", QUERIES[j % QUERIES.len()], 100_000 + j);
            let t = std::time::Instant::now();
            nlu.classifier.classify(&q).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "single-query classify over 300 distinct texts: p50 {:.2} ms, p95 {:.2} ms",
        times[times.len() / 2],
        times[times.len() * 95 / 100]
    );

    let enc = nlu.classifier.encoder().clone();
    let kb_texts: Vec<String> = nlu
        .kb
        .intents
        .iter()
        .flat_map(|i| i.examples.iter().map(|e| format!("query: {e}")))
        .take(128)
        .collect();
    let refs: Vec<&str> = kb_texts.iter().map(|s| s.as_str()).collect();
    let mut g = c.benchmark_group("embed");
    g.sample_size(10);
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_with_input(BenchmarkId::new("batch", refs.len()), &refs, |b, refs| {
        b.iter(|| enc.embed(refs).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("model_and_index_warm", |b| {
        b.iter(|| Nlu::load(&cfg, nlu::load_encoder(&cfg).unwrap()).unwrap())
    });
    g.finish();
    eprintln!("RSS at the end: {:.1} MB", rss_mb());
}

criterion_group!(nlu_benches, benches);
criterion_main!(nlu_benches);
