//! The `otklik` command line: serve, classify, eval, check, lint.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use otklik::config::Config;
use otklik::nlu::classifier::{Classifier, Method};
use otklik::nlu::eval::{self, EvalSetup};
use otklik::nlu::{self, Nlu};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "otklik",
    version,
    about = "Otklik: an engine for citizen-facing chat bots and voice robots"
)]
struct Cli {
    /// Settings file (missing = built-in defaults); every setting can also be set by an OTKLIK_… variable.
    #[arg(
        long,
        global = true,
        default_value = "otklik.toml",
        env = "OTKLIK_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the web chat, the operator console and the HTTP API.
    Serve,
    /// Apply the PostgreSQL store's migrations and exit (`[storage] backend
    /// = "postgres"`; `serve` applies them too, under the same lock).
    Migrate,
    /// Hash an operator's password (read from stdin) for the accounts file.
    HashPassword,
    /// Make a key for an integration of the REST API: prints the key (give it
    /// to the integration) and the entry to add to the keys file.
    ApiKey {
        /// The integration's name (its conversations are api:NAME:<user>).
        name: String,
    },
    /// Classify a message: top intents with scores and the decision.
    Classify {
        /// The message; read from stdin when absent or `-`.
        text: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the classifier (cross-validation by default).
    Eval {
        /// Folds of cross-validation.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Train on the knowledge base (or --train) and score this file.
        #[arg(long)]
        test: Option<PathBuf>,
        /// Train on this file instead of the knowledge base (with --test).
        #[arg(long)]
        train: Option<PathBuf>,
        /// Cross-validate this file instead of the knowledge base.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Propose thresholds from cross-validation.
        #[arg(long)]
        calibrate: bool,
        /// Scoring method(s); several give a comparison.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "blend")]
        method: Vec<Method>,
        /// Print the report as one JSON object (several methods: an array).
        #[arg(long)]
        json: bool,
        /// Put typos into the tested texts at this rate per letter (0.11 is
        /// one in nine): neighbouring keys, swaps, drops, doubles, ё/й.
        #[arg(long)]
        typos: Option<f64>,
        /// Seed of the typos.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also evaluate the encoder with fine-tuned top layers (`otklik
        /// train`'s file when it matches the training set; otherwise each
        /// training set, every fold, is tuned in memory first: minutes).
        #[arg(long)]
        tuned: bool,
    },
    /// Fine-tune the encoder's top layers on the knowledge base (`[tune]`)
    /// and write them beside the model; `serve` loads them while they match
    /// the knowledge base. Reports the held-out set before and after.
    Train {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Validate the knowledge base and the dialog graph and report every problem.
    Check,
    /// Write the anonymised client utterances of the log, one per line:
    /// JSONL with --json, otherwise `intent<TAB>text` for the confirmed ones
    /// (the labelled format `eval` reads). Reads the database of a stopped
    /// server (sled allows one process at a time).
    Export {
        /// From this day (YYYY-MM-DD, in the hours' time zone).
        #[arg(long)]
        since: Option<String>,
        /// Every utterance as one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Propose new examples and new intents from the log (or an export) for
    /// the trainer's review; writes YAML the trainer edits and `accept`s.
    Suggest {
        /// Read utterances from this `export --json` file instead of the database.
        #[arg(long)]
        from: Option<PathBuf>,
        /// From this day (YYYY-MM-DD), when reading the database.
        #[arg(long)]
        since: Option<String>,
        /// Write the proposals here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Cosine similarity for unanswered questions to share a cluster.
        #[arg(long, default_value_t = 0.9)]
        similarity: f32,
        /// Utterances a cluster needs to be proposed as a new intent.
        #[arg(long, default_value_t = 3)]
        min_cluster: usize,
        /// Different unanswered questions clustered at most (the most frequent).
        #[arg(long, default_value_t = 5000)]
        max_questions: usize,
    },
    /// Write the proposals marked `status: accept` in FILE into the
    /// knowledge base (checked before anything is written); then run `eval`
    /// and reload the server (`POST /api/v1/admin/reload`).
    Accept {
        /// A proposals file from `suggest`, edited by the trainer.
        file: PathBuf,
    },
    /// The standard's indicators over the analytics log, with star levels.
    /// Reads the database directly: run it while the server is stopped (the
    /// database opens in one process at a time), or see /analytics.
    Stats {
        /// First day, YYYY-MM-DD (in [hours] timezone).
        #[arg(long)]
        since: Option<String>,
        /// Last day, YYYY-MM-DD, included.
        #[arg(long)]
        until: Option<String>,
        /// Break the figures down by this.
        #[arg(long, value_parser = ["channel", "segment", "intent", "situation"])]
        by: Option<String>,
        /// The trend's buckets (in --json).
        #[arg(long, value_parser = ["day", "week", "month"], default_value = "week")]
        period: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check every answer and prompt (knowledge base and dialog graph)
    /// against the plain-language rules: readability, sentence length,
    /// bureaucratic style, symbols, capitals, abbreviations. Exits with 1
    /// when a rule is broken at error level.
    Lint {
        /// Print one JSON object: the summary, the findings and every text's scores.
        #[arg(long)]
        json: bool,
    },
    /// Recognise speech in WAV files with the configured recogniser
    /// (`[speech]`), one line each: to check it on your own recordings.
    Transcribe {
        /// WAV files (mono or stereo, any rate).
        files: Vec<PathBuf>,
    },
    /// Talk to the dialog engine in the terminal (stdin line by line; `#N` picks
    /// choice N, `#dtmf D` sends a key, `#silence` a timeout, `#segment S` a profile).
    Chat {
        /// The client's segment profile (universal when absent).
        #[arg(long)]
        segment: Option<String>,
        /// Channel whose style applies.
        #[arg(long, value_parser = ["web", "telegram", "voice"], default_value = "web")]
        channel: String,
        /// The client's id (a conversation continues where it stopped).
        #[arg(long, default_value = "terminal")]
        user: String,
        /// Print each bot turn as one JSON line.
        #[arg(long)]
        json: bool,
        /// Pretend the time is this (RFC 3339, e.g. 2026-11-26T10:00:00+03:00), for demos and tests.
        #[arg(long)]
        now: Option<String>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hnsw_rs=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load(&cli.config)?;
    match cli.cmd {
        Cmd::Chat {
            segment,
            channel,
            user,
            json,
            now,
        } => chat(&cfg, segment, &channel, &user, json, now),
        Cmd::Export { since, json } => export(&cfg, since.as_deref(), json),
        Cmd::Suggest {
            from,
            since,
            out,
            similarity,
            min_cluster,
            max_questions,
        } => suggest(
            &cfg,
            from,
            since.as_deref(),
            out,
            otklik::trainer::suggest::Options {
                similarity,
                min_cluster,
                max_questions,
                ..Default::default()
            },
        ),
        Cmd::Accept { file } => accept(&cfg, &file),
        Cmd::Check => {
            let kb = nlu::load_kb(&cfg)?;
            let ids: Vec<String> = kb.intents.iter().map(|i| i.id.clone()).collect();
            let graph = otklik::dialog::graph::Graph::load_dir(&cfg.dialog.dialogs_dir, &ids)?;
            println!("dialog graph ok: {} nodes", graph.nodes.len());
            let n: usize = kb.intents.iter().map(|i| i.examples.len()).sum();
            println!(
                "knowledge base ok: {} intents, {} examples, {} out-of-scope examples",
                kb.intents.len(),
                n,
                kb.out_of_scope.len()
            );
            Ok(())
        }
        Cmd::Lint { json } => {
            let report = otklik::lint::run(&cfg)?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.errors() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Serve => serve(cfg, &cli.config),
        Cmd::Migrate => {
            if cfg.storage.backend != "postgres" || cfg.storage.url.is_empty() {
                anyhow::bail!("`otklik migrate` is for [storage] backend = \"postgres\" with storage.url (or OTKLIK_STORAGE_URL) set");
            }
            let done =
                otklik::store::PgStore::migrate_only(&cfg.storage.url, &cfg.storage.ca_file)?;
            if done.is_empty() {
                println!("the database is up to date");
            } else {
                println!("applied migrations: {done:?}");
            }
            Ok(())
        }
        Cmd::Stats {
            since,
            until,
            by,
            period,
            json,
        } => stats(&cfg, since, until, by, &period, json),
        Cmd::Transcribe { files } => {
            let asr = otklik::speech::engine(&cfg.speech)?;
            for f in files {
                let pcm = std::fs::read(&f)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| otklik::speech::audio::read_wav(&b));
                match pcm.and_then(|p| asr.recognise(&p, &Default::default())) {
                    Ok(Some(t)) => println!("{}\t{t}", f.display()),
                    Ok(None) => println!("{}\t", f.display()),
                    Err(e) => eprintln!("{}: {e:#}", f.display()),
                }
            }
            Ok(())
        }
        Cmd::ApiKey { name } => {
            let (key, entry) = otklik::channels::api::new_key(&name)?;
            println!("key (give it to the integration; it is not stored anywhere):\n{key}\n");
            println!("add to {}:\n{entry}", cfg.api.keys_file.display());
            Ok(())
        }
        Cmd::HashPassword => {
            let mut pw = String::new();
            std::io::stdin()
                .read_line(&mut pw)
                .context("cannot read the password from stdin")?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                bail!("the password is empty: type it on stdin");
            }
            println!("{}", otklik::operator::console::hash_password(pw)?);
            Ok(())
        }
        Cmd::Classify { text, json } => {
            let text = match text.as_deref() {
                None | Some("-") => read_stdin()?,
                Some(t) => t.to_string(),
            };
            let nlu = Nlu::load(&cfg, nlu::load_encoder(&cfg)?)?;
            let c = nlu.classifier.classify(&text)?;
            if json {
                println!("{}", otklik::classification_json(&c));
            } else {
                println!("decision: {}", c.decision.as_str());
                for s in &c.top {
                    println!("  {:5.3}  {:<28} {}", s.score, s.intent, s.title);
                }
                println!(
                    "  out of scope: {:.3}, nearest example similarity: {:.3}",
                    c.out_of_scope_score, c.nearest_similarity
                );
            }
            Ok(())
        }
        Cmd::Eval {
            folds,
            test,
            train,
            data,
            calibrate,
            method,
            json,
            typos,
            seed,
            tuned,
        } => {
            let encoder = nlu::load_encoder(&cfg)?;
            let cache_dir = cfg.in_data_dir(&cfg.kb.cache_dir);
            // The knowledge base's derived examples train whenever it is the training set.
            let on_kb = train.is_none() && data.is_none();
            let extra_train = if on_kb && cfg.classifier.derived_examples {
                nlu::load_kb(&cfg)?.derived_items()
            } else {
                Vec::new()
            };
            let mut setup = EvalSetup {
                encoder,
                cfg: cfg.classifier.clone(),
                prefix: cfg.model.query_prefix.clone(),
                cache_dir: Some(&cache_dir),
                extra_train,
                typos: typos.map(|r| (r, seed)),
                tune: None,
            };
            let kb_items =
                || -> Result<Vec<(String, String)>> { Ok(eval::kb_items(&nlu::load_kb(&cfg)?)) };
            type Run = (
                Vec<Vec<eval::Prediction>>,
                Classifier,
                Vec<(String, String)>,
            );
            let run = |setup: &EvalSetup| -> Result<Run> {
                Ok(match (&test, &train, &data) {
                    (Some(_), _, Some(_)) => {
                        bail!("use either --data (cross-validation) or --test")
                    }
                    (None, Some(_), _) => bail!("--train needs --test"),
                    (Some(test), train, None) => {
                        let train = match train {
                            Some(p) => eval::read_labelled(p)?,
                            None => kb_items()?,
                        };
                        let test = eval::read_labelled(test)?;
                        let (p, c) = setup.train_test(&train, &test, &method)?;
                        (p, c, test)
                    }
                    (None, None, data) => {
                        let items = match data {
                            Some(p) => eval::read_labelled(p)?,
                            None => kb_items()?,
                        };
                        let cv = setup.cross_validate(&items, folds, &method)?;
                        (cv.predictions, cv.last_classifier, cv.last_test)
                    }
                })
            };
            // The frozen encoder, then (--tuned) the tuned one; calibration
            // is for the last, the one a deployment with tuned layers runs.
            let mut all: Vec<(&str, Vec<eval::Report>)> = Vec::new();
            let mut cal = None;
            let paths: &[bool] = if tuned { &[false, true] } else { &[false] };
            for &with_tune in paths {
                setup.tune = with_tune.then(|| (cfg.tune.clone(), cfg.model.path.clone()));
                let (preds, clf, latency_texts) = run(&setup)?;
                let latency = eval::measure_latency(&clf, &latency_texts);
                let reports: Vec<eval::Report> = method
                    .iter()
                    .zip(&preds)
                    .map(|(m, p)| eval::report(*m, &clf, p, latency.clone()))
                    .collect();
                if calibrate {
                    cal = Some(eval::calibrate(&clf, &preds[0]));
                }
                all.push((if with_tune { "tuned" } else { "frozen" }, reports));
            }
            if json {
                let mut v: Vec<serde_json::Value> = Vec::new();
                for (path, reports) in &all {
                    for r in reports {
                        let mut j = serde_json::to_value(r)?;
                        j["encoder"] = serde_json::json!(path);
                        v.push(j);
                    }
                }
                if let (Some(c), Some(last)) = (&cal, v.last_mut()) {
                    last["calibration"] = serde_json::to_value(c)?;
                }
                println!(
                    "{}",
                    if v.len() == 1 {
                        v.remove(0)
                    } else {
                        serde_json::Value::Array(v)
                    }
                );
            } else {
                for (path, reports) in &all {
                    if tuned {
                        println!("== encoder: {path}");
                    }
                    for r in reports {
                        r.print();
                    }
                }
                if let Some(c) = cal {
                    println!("\nproposed weights and thresholds (put them in otklik.toml):\n[classifier]\nlinear_weight = {:.1}\nlexical_weight = {:.1}\nanswer_threshold = {:.2}\nanswer_margin = {:.2}\nconfirm_threshold = {:.2}\nalternatives_threshold = {:.2}", c.linear_weight, c.lexical_weight, c.answer_threshold, c.answer_margin, c.confirm_threshold, c.alternatives_threshold);
                }
            }
            Ok(())
        }
        Cmd::Train { json } => {
            let encoder = nlu::load_encoder(&cfg)?;
            let before = otklik::trainer::heldout::score(&cfg, encoder.clone())?;
            let (trained, path) = otklik::trainer::retrain::train(&cfg, &encoder, json)?;
            let after = otklik::trainer::heldout::score(&cfg, encoder)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"trained": trained, "weights": path, "heldout_before": before, "heldout_after": after})
                );
            } else {
                println!(
                    "trained {} top layer(s) on {} texts ({} held out for stopping) in {:.0} s: {} epoch(s), best {}; validation accuracy {:.2} % → {:.2} %",
                    cfg.tune.layers,
                    trained.examples,
                    trained.validation,
                    trained.seconds,
                    trained.epochs_run,
                    trained.best_epoch,
                    trained.validation_before * 100.0,
                    trained.validation_after * 100.0
                );
                println!("weights: {}", path.display());
                if let (Some(b), Some(a)) = (&before, &after) {
                    println!(
                        "held-out set: top-1 {:.2} % → {:.2} %, out of scope not answered {:.2} % → {:.2} %",
                        b.top1 * 100.0,
                        a.top1 * 100.0,
                        b.oos_rejected * 100.0,
                        a.oos_rejected * 100.0
                    );
                }
            }
            Ok(())
        }
    }
}

fn read_stdin() -> Result<String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read stdin")?;
    String::from_utf8(buf).map_err(|e| {
        anyhow::anyhow!(
            "the input is not valid UTF-8 (first bad byte at offset {}): send text in UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `otklik export`: the log's utterances, JSONL or `intent<TAB>text`.
fn export(cfg: &Config, since: Option<&str>, json: bool) -> Result<()> {
    let store = cfg.storage.open(&cfg.data_dir)?;
    let log = log_since(cfg, store.as_ref(), since)?;
    let mut o = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write;
    for u in otklik::analytics::export::utterances(&log) {
        if json {
            writeln!(o, "{}", serde_json::to_string(&u)?)?;
        } else if let Some(label) = &u.confirmed {
            writeln!(o, "{label}\t{}", u.text.replace(['\t', '\n'], " "))?;
        }
    }
    Ok(())
}

/// `otklik suggest`: proposals from the log (or an export) as YAML.
fn suggest(
    cfg: &Config,
    from: Option<PathBuf>,
    since: Option<&str>,
    out: Option<PathBuf>,
    opts: otklik::trainer::suggest::Options,
) -> Result<()> {
    let utterances = match &from {
        Some(path) => read_utterances(path)?,
        None => {
            let store = cfg.storage.open(&cfg.data_dir)?;
            otklik::analytics::export::utterances(&log_since(cfg, store.as_ref(), since)?)
        }
    };
    let nlu = Nlu::load(cfg, nlu::load_encoder(cfg)?)?;
    let started = std::time::Instant::now();
    let p = otklik::trainer::suggest::suggest(&utterances, &nlu.kb, &nlu.classifier, &opts)?;
    let yaml = serde_yaml::to_string(&p)?;
    match out {
        Some(path) => std::fs::write(&path, yaml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{yaml}"),
    }
    eprintln!(
        "{} utterances: {} example and {} new-intent proposals in {:.1} s",
        utterances.len(),
        p.items
            .iter()
            .filter(|i| i.kind == otklik::trainer::suggest::Kind::Example)
            .count(),
        p.items
            .iter()
            .filter(|i| i.kind == otklik::trainer::suggest::Kind::Intent)
            .count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `otklik accept`: the accepted proposals into the knowledge base.
fn accept(cfg: &Config, file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let p: otklik::trainer::suggest::Proposals =
        serde_yaml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let kb = nlu::load_kb(cfg)?;
    if p.kb_hash != kb.hash {
        eprintln!("note: the knowledge base changed since these proposals were made");
    }
    let encoder = nlu::load_encoder(cfg)?;
    let before = otklik::trainer::heldout::score(cfg, encoder.clone())?;
    let a = otklik::trainer::accept::apply(
        &cfg.kb.intents_dir,
        &kb,
        &p.items,
        cfg.kb.min_examples,
        &cfg.kb.segments,
    )?;
    println!(
        "added {} example(s) and {} new intent(s); {} already known; files: {}",
        a.examples,
        a.intents,
        a.duplicates,
        a.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(t) = otklik::trainer::retrain::retrain(cfg, &encoder) {
        println!(
            "encoder's top layers retrained in {:.0} s ({} epoch(s))",
            t.seconds, t.epochs_run
        );
    }
    if let (Some(b), Some(a)) = (before, otklik::trainer::heldout::score(cfg, encoder)?) {
        println!(
            "held-out ({}, {} texts): top-1 {:.2} % → {:.2} %, top-3 {:.2} % → {:.2} %",
            cfg.kb.heldout_file.display(),
            a.items,
            b.top1 * 100.0,
            a.top1 * 100.0,
            b.top3 * 100.0,
            a.top3 * 100.0
        );
    }
    println!("reload the server to use it: POST /api/v1/admin/reload");
    Ok(())
}

/// The analytics log from the start of `since` (a day in the hours' time zone).
fn log_since(
    cfg: &Config,
    store: &dyn otklik::store::Storage,
    since: Option<&str>,
) -> Result<Vec<otklik::analytics::LogEntry>> {
    let tz = otklik::services::hours::parse_tz(&cfg.hours.timezone)?;
    let (from, _) = otklik::analytics::indicators::bounds(since, None, &tz)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let from = from.unwrap_or(i64::MIN);
    let mut log = store.log_entries()?;
    log.retain(|e| e.ts >= from);
    Ok(log)
}

/// Utterances from an `export --json` file; bad lines are told by number.
fn read_utterances(path: &std::path::Path) -> Result<Vec<otklik::analytics::export::Utterance>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

fn chat(
    cfg: &Config,
    segment: Option<String>,
    channel: &str,
    user: &str,
    json: bool,
    now: Option<String>,
) -> Result<()> {
    use otklik::dialog::{Engine, Input, Turn};
    use otklik::services::{Clock, FixedClock, SystemClock};
    use std::io::{BufRead, Write};
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(FixedClock::new(
            t.parse::<jiff::Timestamp>()
                .with_context(|| format!("--now {t:?} is not an RFC 3339 time"))?,
        )),
        None => Arc::new(SystemClock),
    };
    let nlu = Arc::new(Nlu::load(cfg, nlu::load_encoder(cfg)?)?);
    let engine = Engine::new(cfg, nlu, clock)?;
    let stdout = std::io::stdout();
    let print = |t: &Turn| -> Result<()> {
        let mut o = stdout.lock();
        if json {
            writeln!(o, "{}", serde_json::to_string(t)?)?;
        } else {
            if !t.text.is_empty() {
                writeln!(o, "бот: {}", t.text)?;
            }
            for (i, c) in t.choices.iter().enumerate() {
                let key = c
                    .dtmf
                    .as_deref()
                    .map(|d| format!(" [{d}]"))
                    .unwrap_or_default();
                writeln!(o, "  #{} {}{key}", i + 1, c.label)?;
            }
            for l in &t.links {
                writeln!(o, "  ссылка: {} — {}", l.title, l.url)?;
            }
            if !t.actions.is_empty() {
                let a: Vec<String> = t
                    .actions
                    .iter()
                    .map(|a| {
                        serde_json::to_value(a)
                            .unwrap()
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect();
                writeln!(o, "  ({})", a.join(", "))?;
            }
        }
        o.flush()?;
        Ok(())
    };
    if let Some(seg) = segment {
        engine.handle(channel, user, Input::SetSegment(seg))?;
    }
    let mut last = match engine.resume(channel, user)? {
        Some(t) => t,
        None => engine.handle(channel, user, Input::Start)?,
    };
    print(&last)?;
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let raw = line.context("cannot read stdin")?;
        let line = match String::from_utf8(raw) {
            Ok(l) => l,
            Err(_) => {
                eprintln!(
                    "строка {}: не UTF-8, пропущена — отправьте текст в кодировке UTF-8",
                    n + 1
                );
                continue;
            }
        };
        let line = line.trim_end_matches('\r');
        let input = if let Some(cmd) = line.strip_prefix('#') {
            let (word, arg) = cmd
                .split_once(' ')
                .map(|(a, b)| (a, b.trim()))
                .unwrap_or((cmd, ""));
            match word {
                "dtmf" => Input::Dtmf(arg.to_string()),
                "silence" => Input::Silence,
                "start" => Input::Start,
                "segment" => Input::SetSegment(arg.to_string()),
                "attach" => Input::Attachment(if arg.is_empty() {
                    "file".into()
                } else {
                    arg.to_string()
                }),
                w => match w
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| last.choices.get(i.wrapping_sub(1)))
                {
                    Some(c) => Input::Choice(c.id.clone()),
                    None => {
                        eprintln!(
                            "строка {}: нет варианта {line:?}; варианты: #1…#{}",
                            n + 1,
                            last.choices.len()
                        );
                        continue;
                    }
                },
            }
        } else {
            Input::Text(line.to_string())
        };
        match engine.handle(channel, user, input) {
            Ok(t) => {
                print(&t)?;
                last = t;
            }
            Err(e) => eprintln!("строка {}: {e:#}", n + 1),
        }
    }
    Ok(())
}

/// `otklik serve`: the process set up for the internet (open files, memory
/// given back, private files), then the server until SIGTERM.
fn serve(cfg: Config, settings: &std::path::Path) -> Result<()> {
    raise_open_files_limit();
    tune_malloc();
    #[cfg(unix)]
    // SAFETY: umask only sets the mode mask for files created later: the
    // database and caches hold personal data, for the owner only.
    unsafe {
        libc::umask(0o077);
    }
    for f in [
        settings,
        cfg.operators.accounts_file.as_path(),
        cfg.api.keys_file.as_path(),
    ] {
        warn_if_shared(f);
    }
    let app = otklik::app::App::new(cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(otklik::app::serve(app))
}

/// Warns when a file of secrets can be read by others than its owner.
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o044 != 0 {
                tracing::warn!(
                    "{} can be read by other users; it holds secrets: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
        }
    }
}

/// Keeps memory given back to the system under floods of large short-lived
/// allocations (each operator sign-in runs argon2 in 19 MiB): glibc's
/// mmap threshold otherwise grows after the first such block is freed, so
/// later ones come from per-thread arenas and stay there. A fixed threshold
/// of 1 MiB maps every such block and unmaps it when freed; fewer arenas
/// bound what the blocking threads can keep.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Lets `serve` hold thousands of sockets: raises the soft limit of open
/// files to the hard one (the usual soft default, 1024, is too low).
fn raise_open_files_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// `otklik stats`: the indicators over the log in the database.
fn stats(
    cfg: &Config,
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    period: &str,
    json: bool,
) -> Result<()> {
    use otklik::analytics::indicators::{self as ind, Dimension, Period, Query};
    let tz = otklik::services::hours::parse_tz(&cfg.hours.timezone)?;
    let (since, until) =
        ind::bounds(since.as_deref(), until.as_deref(), &tz).map_err(|e| anyhow::anyhow!(e))?;
    let q = Query {
        since,
        until,
        by: by.as_deref().and_then(Dimension::parse),
        period: Period::parse(period).unwrap_or_default(),
    };
    let store = cfg.storage.open(&cfg.data_dir).context(
        "`otklik stats` reads the database itself: with sled, stop the server first, or use the /analytics page",
    )?;
    let log = store.log_entries()?;
    let r = ind::report(&log, &q, &cfg.analytics.stars, &tz);
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    print!("{}", ind::table(&r));
    Ok(())
}
