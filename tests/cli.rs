//! The `otklik` binary: classify (text, stdin, JSON), eval's JSON report, lint,
//! and clear errors for bad input and a broken knowledge base.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn otklik(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otklik"))
        .env("OTKLIK_TUNE_DIR", common::tune_dir())
        .args(args)
        .env("OTKLIK_DATA_DIR", common::test_data_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        input.write_all(b).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn classify_json_has_the_decision_and_top_intents() {
    let out = otklik(
        &["classify", "--json", "как встать на учёт по безработице"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "unemployment_registration");
    assert!(["answer", "confirm", "alternatives", "out_of_scope"]
        .contains(&v["decision"].as_str().unwrap()));
    assert!(v["top"].as_array().unwrap().len() >= 3);
    assert!(v["top"][0]["score"].as_f64().unwrap() > v["top"][1]["score"].as_f64().unwrap());
}

#[test]
fn classify_reads_stdin_and_rejects_invalid_utf8() {
    let out = otklik(
        &["classify", "--json"],
        Some("хочу записаться на приём".as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "appointment_booking");

    let out = otklik(&["classify"], Some(&[0xd0, 0x9f, 0xff, 0xfe, b'a']));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid UTF-8") && err.contains("offset 2"),
        "{err}"
    );
}

#[test]
fn classify_empty_text_is_a_clear_error() {
    let out = otklik(&["classify", "   "], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Сообщение пустое"));
}

#[test]
fn eval_json_report_has_the_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.tsv");
    let mut s = String::new();
    for (i, t) in [
        "как оформить пенсию",
        "пенсия по старости",
        "когда выходить на пенсию",
        "пенсию назначить",
        "оформление пенсии",
    ]
    .iter()
    .enumerate()
    {
        s += &format!("pension\t{t}\npassport\tзамена паспорта номер {i}\nout_of_scope\tпогода на завтра {i}\n");
    }
    std::fs::write(&data, s).unwrap();
    let out = otklik(
        &[
            "eval",
            "--data",
            data.to_str().unwrap(),
            "--folds",
            "2",
            "--json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "top1",
        "top3",
        "macro_f1",
        "oos_rejected",
        "in_scope_rejected",
        "decisions",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert!(v["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["latency_ms"]["p95"].as_f64().unwrap() >= v["latency_ms"]["p50"].as_f64().unwrap());
    assert!(v["top1"].as_f64().unwrap() > 0.5);

    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "pension\tok\nno tab here\n").unwrap();
    let out = otklik(&["eval", "--data", bad.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.tsv:2: expected `intent<TAB>text`"));
}

#[test]
fn a_broken_knowledge_base_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.yaml"), "intents:\n  - id: a\n    title: A\n    examples: [раз, два]\n    answer:\n      senior: x\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otklik"));
    cmd.env("OTKLIK_TUNE_DIR", common::tune_dir());
    let out = cmd
        .args(["check"])
        .env("OTKLIK_KB_INTENTS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.yaml:2: intent `a` has no `answer.universal`"),
        "{err}"
    );
    assert!(
        err.contains("x.yaml:2: intent `a` has 2 example(s); add at least 15"),
        "{err}"
    );
}

/// `otklik stats` over a database with two conversations: the table, a
/// breakdown, one JSON object, the period's dates, and a clear error while
/// another process holds the database.
#[test]
fn stats_prints_the_indicators_of_the_log() {
    use otklik::analytics::{LogEntry, Rating};
    use otklik::store::Storage;
    let data = tempfile::tempdir().unwrap();
    let day = 1_796_080_800; // 2026-12-01, 02:20 in Moscow
    let entry =
        |ts: i64, conv: &str, channel: &str, events: &[&str], rating: Option<Rating>| LogEntry {
            ts,
            conversation: conv.into(),
            client: conv.into(),
            channel: channel.into(),
            segment: "universal".into(),
            intent: Some("pension_application".into()),
            events: events.iter().map(|e| e.to_string()).collect(),
            answer_ms: Some(400),
            rating,
            ..Default::default()
        };
    let log = vec![
        entry(day, "a", "web", &["decision:answer"], None),
        entry(day + 10, "a", "web", &["solved_yes"], None),
        entry(
            day + 20,
            "a",
            "web",
            &["rating:1"],
            Some(Rating {
                ease: 1,
                satisfaction: Some(4),
                nps: Some(9),
            }),
        ),
        entry(day + 86_400, "b", "voice", &["decision:answer"], None),
        entry(day + 86_400 + 10, "b", "voice", &["solved_no"], None),
    ];
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_otklik"))
            .env("OTKLIK_TUNE_DIR", common::tune_dir())
            .args(args)
            .env("OTKLIK_DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    {
        let st = otklik::store::Store::open(data.path()).unwrap();
        st.log_append(&log).unwrap();
        let out = run(&["stats"]);
        assert!(!out.status.success(), "the database is held");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("stop the server"), "{err}");
    }
    let out = run(&["stats", "--by", "channel"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("2026-12-01 … 2026-12-02: 5 turns, 2 conversations"),
        "{text}"
    );
    assert!(
        text.contains("resolution") && text.contains("50.0 %"),
        "{text}"
    );
    assert!(text.contains("nps") && text.contains("+100"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("voice") && l.contains("0.0 %")),
        "{text}"
    );
    let out = run(&[
        "stats",
        "--json",
        "--since",
        "2026-12-02",
        "--until",
        "2026-12-02",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["conversations"], 1);
    assert_eq!(v["total"]["resolution"]["value"], 0.0);
    assert_eq!(v["total"]["resolution"]["stars"], 1);
    let out = run(&["stats", "--since", "1 декабря"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}

#[test]
fn lint_passes_the_demo_and_reports_json() {
    let out = otklik(&["lint", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["errors"], 0, "{}", v["findings"]);
    let scores = v["scores"].as_array().unwrap();
    assert!(scores.len() > 100, "{}", scores.len());
    let s = scores
        .iter()
        .find(|s| s["place"] == "intent pension_application / senior")
        .unwrap();
    assert_eq!(s["segment"], "senior");
    assert_eq!(s["limits"]["max_sentence_words"], 15);
    assert!(
        s["fre"].as_f64().unwrap() > 0.0 && s["grade"].is_string(),
        "{s}"
    );
}

#[test]
fn lint_fails_on_errors_with_file_line_rule_and_fragment() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir("intents").unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("zz.yaml"),
        "intents:\n  - id: zz_test\n    title: Тест\n    examples: [первый пример линтера, второй пример линтера]\n    answer:\n      universal: В связи с ремонтом обратитесь в МФЦ.\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otklik"))
        .env("OTKLIK_TUNE_DIR", common::tune_dir())
        .args(["lint"])
        .env("OTKLIK_KB_INTENTS_DIR", dir.path())
        .env("OTKLIK_KB_MIN_EXAMPLES", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "zz.yaml:6: error [bureaucratic_preposition] intent zz_test / universal: «в связи с»"
        ),
        "{text}"
    );
    assert!(
        text.contains("zz.yaml:6: error [abbreviation] intent zz_test / universal: «МФЦ»"),
        "{text}"
    );
    assert!(
        text.contains("\n    «В связи с ремонтом обратитесь в МФЦ.»"),
        "{text}"
    );
    // The summary: the demo's texts and the one added, two errors.
    let demo: usize = {
        let out = Command::new(env!("CARGO_BIN_EXE_otklik"))
            .env("OTKLIK_TUNE_DIR", common::tune_dir())
            .args(["lint", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["scores"].as_array().unwrap().len()
    };
    assert!(
        text.contains(&format!("lint: {} texts, 2 error(s)", demo + 2)),
        "{text}"
    );
}
