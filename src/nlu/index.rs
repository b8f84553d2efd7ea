//! Example embeddings and the example index: an on-disk embedding cache keyed
//! by model identity and text (so a restart or a changed file re-embeds only
//! new texts), and the hnsw_rs graph over the examples, dumped to disk and
//! reloaded when the knowledge base's content hash and the model match.

use super::encoder::Embedder;
use anyhow::{Context, Result};
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{AnnT, DistDot, Hnsw};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file name suffix no other writer (process or thread) uses at the same time.
pub fn unique_tmp_suffix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..12])
}

/// Persistent text → embedding cache for one model identity.
pub struct EmbeddingCache {
    path: Option<PathBuf>,
    map: HashMap<[u8; 16], Vec<f32>>,
    dirty: bool,
    /// Texts embedded by the model (not found in the cache) since opening.
    pub computed: usize,
}

fn key(text: &str) -> [u8; 16] {
    let d = Sha256::digest(text.as_bytes());
    d[..16].try_into().unwrap()
}

impl EmbeddingCache {
    /// Opens (or starts) the cache file for `identity` under `dir`; `None` keeps it in memory.
    pub fn open(dir: Option<&Path>, identity: &str) -> Self {
        let path = dir.map(|d| d.join(format!("emb-{}.bin", short_hash(&[identity.as_bytes()]))));
        let map = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| bincode::deserialize::<Vec<([u8; 16], Vec<f32>)>>(&b).ok())
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        Self {
            path,
            map,
            dirty: false,
            computed: 0,
        }
    }

    /// Embeddings of `texts`, computing only the ones not cached yet.
    pub fn embed_all(
        &mut self,
        enc: &Embedder,
        texts: &[String],
        what: &str,
    ) -> Result<Vec<Vec<f32>>> {
        let missing: Vec<&String> = {
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .filter(|t| !self.map.contains_key(&key(t)) && seen.insert(key(t)))
                .collect()
        };
        if !missing.is_empty() {
            let bar = progress(missing.len() as u64, what);
            for chunk in missing.chunks(64) {
                let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
                for (t, e) in chunk.iter().zip(enc.embed(&refs)?) {
                    self.map.insert(key(t), e);
                }
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            self.dirty = true;
            self.computed += missing.len();
        }
        Ok(texts.iter().map(|t| self.map[&key(t)].clone()).collect())
    }

    /// Writes the cache atomically (temp file + rename) when it changed.
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let entries: Vec<(&[u8; 16], &Vec<f32>)> = self.map.iter().collect();
        let tmp = path.with_extension(format!("tmp{}", unique_tmp_suffix()));
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&bincode::serialize(&entries)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A progress bar on stderr that only appears after a second of work.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    // Hide it for short jobs: draw only once a second has passed.
    let b = bar.clone();
    let start = Instant::now();
    bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    std::thread::spawn(move || {
        while !b.is_finished() {
            if start.elapsed() > Duration::from_secs(1) {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    bar
}

/// Nearest-example search over unit vectors (distance = 1 − cosine).
pub struct ExampleIndex {
    hnsw: Hnsw<'static, f32, DistDot>,
    /// Label (class index) of every indexed example.
    pub labels: Vec<usize>,
}

const MAX_CONN: usize = 24;
/// hnsw_rs's dot distance asserts `1 − a·b ≥ 0`, which rounding breaks for a
/// query equal to an example (a·b = 1.0000001): vectors are stored and
/// searched at this fraction of unit length, and similarities scaled back.
const SHRINK: f32 = 0.999;

fn shrink(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x * SHRINK).collect()
}
const EF_CONSTRUCTION: usize = 200;

impl ExampleIndex {
    pub fn build(vectors: &[Vec<f32>], labels: Vec<usize>) -> Self {
        // hnsw_rs prints to stdout when dumping fewer than its 16 layers; 16 costs nothing.
        let layers = 16;
        let hnsw = Hnsw::<f32, DistDot>::new(
            MAX_CONN,
            vectors.len().max(1),
            layers,
            EF_CONSTRUCTION,
            DistDot {},
        );
        let shrunk: Vec<Vec<f32>> = vectors.iter().map(|v| shrink(v)).collect();
        let data: Vec<(&Vec<f32>, usize)> = shrunk.iter().zip(0..).collect();
        hnsw.parallel_insert(&data);
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        Self { hnsw, labels }
    }

    /// Reloads `dir/basename` if it was dumped, else builds and dumps it.
    pub fn load_or_build(
        dir: Option<&Path>,
        basename: &str,
        vectors: &[Vec<f32>],
        labels: Vec<usize>,
    ) -> Result<Self> {
        if let Some(dir) = dir {
            let graph = dir.join(format!("{basename}.hnsw.graph"));
            if graph.exists() {
                // HnswIo only holds paths when data is not memory-mapped, but the
                // loaded graph borrows it; leaking it (~100 bytes per reload) gives
                // the graph the 'static lifetime the classifier needs.
                let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, basename)));
                if let Ok(mut hnsw) = io.load_hnsw::<f32, DistDot>() {
                    if hnsw.get_nb_point() == vectors.len() {
                        hnsw.set_searching_mode(true);
                        return Ok(Self { hnsw, labels });
                    }
                }
            }
            let idx = Self::build(vectors, labels);
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Dump under a temporary name, then rename: a crash leaves no half index.
            let tmp = format!("{basename}-tmp{}", unique_tmp_suffix());
            // hnsw_rs panics when it cannot create its files: a read-only cache
            // folder must cost the cache, not the process.
            let dumped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                idx.hnsw.file_dump(dir, &tmp)
            }));
            if matches!(dumped, Ok(Ok(_))) {
                for ext in ["hnsw.data", "hnsw.graph"] {
                    let _ = std::fs::rename(
                        dir.join(format!("{tmp}.{ext}")),
                        dir.join(format!("{basename}.{ext}")),
                    );
                }
            }
            return Ok(idx);
        }
        Ok(Self::build(vectors, labels))
    }

    /// The `k` nearest examples: (label, cosine similarity), best first.
    pub fn search(&self, v: &[f32], k: usize) -> Vec<(usize, f32)> {
        let k = k.min(self.labels.len());
        if k == 0 {
            return Vec::new();
        }
        let mut out: Vec<(usize, f32)> = self
            .hnsw
            .search(&shrink(v), k, (k * 4).max(48))
            .into_iter()
            .map(|n| (self.labels[n.d_id], (1.0 - n.distance) / (SHRINK * SHRINK)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
