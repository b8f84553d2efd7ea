//! Shared helpers for the integration tests: the project's settings with a
//! data folder under target/, so tests share the embedding cache.
#![allow(dead_code)]

use otklik::config::Config;
use std::path::{Path, PathBuf};

pub fn test_data_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("otklik-test-data")
}

pub fn config() -> Config {
    let mut cfg = Config::load(Path::new("otklik.toml")).expect("otklik.toml");
    cfg.data_dir = test_data_dir();
    cfg
}

/// The project's settings with a fresh database in `data` and the shared embedding cache.
pub fn config_with_data(data: &Path) -> Config {
    let mut cfg = config();
    cfg.kb.cache_dir = test_data_dir().join("cache");
    cfg.data_dir = data.to_path_buf();
    cfg
}

/// The model and knowledge base, loaded once per test binary.
pub fn shared_nlu() -> std::sync::Arc<otklik::nlu::Nlu> {
    static N: std::sync::OnceLock<std::sync::Arc<otklik::nlu::Nlu>> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let cfg = config();
        std::sync::Arc::new(
            otklik::nlu::Nlu::load(&cfg, otklik::nlu::load_encoder(&cfg).unwrap()).unwrap(),
        )
    })
    .clone()
}

/// An engine over a database in `data`, its clock fixed at `now` (RFC 3339).
pub fn engine_at(
    data: &Path,
    now: &str,
) -> (
    otklik::dialog::Engine,
    std::sync::Arc<otklik::services::FixedClock>,
) {
    let clock = std::sync::Arc::new(otklik::services::FixedClock::new(now.parse().unwrap()));
    let e =
        otklik::dialog::Engine::new(&config_with_data(data), shared_nlu(), clock.clone()).unwrap();
    (e, clock)
}

/// Thursday 26 November 2026, 10:00 in Moscow: operators at work.
pub const WORKDAY: &str = "2026-11-26T10:00:00+03:00";
