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
