//! The trainers' loop end to end on a real server and its own copy of the
//! knowledge base: citizens in the web chat use a word the knowledge base
//! does not know («епка», the single allowance) and show what they meant
//! (an option chosen, or an operator who took the conversation tags it);
//! others ask, unanswered, about something the base has no topic for. The
//! trainer makes proposals on the review API, rejects an incomplete new
//! topic, accepts the examples, applies them (held-out top-1 before and
//! after, the engine reloaded) and the bot then understands the new word.
//! Then the file workflow on the same database with the command line:
//! export → suggest --from → accept.

mod common;

use common::{drain, is_bot, send, start_server, until, wait_ready, ws, Server, Ws};
use serde_json::{json, Value};

/// Conversations that teach: the single allowance by its slang name.
const TAUGHT: &[&str] = &[
    "как оформить епку",
    "епку продлить как",
    "отказали в епке что делать",
    "епку как получить",
    "на епку заявление где подать",
    "размер епки на ребенка",
    "епку оформить в мфц можно",
];

/// Questions the knowledge base has no topic for (one cluster).
const UNANSWERED: &[&str] = &[
    "выплата 450 тысяч на ипотеку многодетным",
    "450 тысяч многодетным на погашение ипотеки",
    "как получить 450000 на ипотеку многодетной семье",
    "многодетным 450 тысяч на ипотеку как оформить",
];

/// The test's held-out set: other sentences with the new word, never
/// trained on, and two the classifier already gets right.
const HELDOUT: &str = "child_allowance\tепка на второго ребенка положена\n\
child_allowance\tепку пересчитают если зарплата выросла\n\
child_allowance\tкак посчитать епку\n\
child_allowance\tподать на епку через госуслуги\n\
child_allowance\tепка на ребенка до 17 лет\n\
child_allowance\tможно ли получать епку и алименты\n";

fn choices(v: &Value) -> Vec<String> {
    v["choices"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The bot's last message after `msg`, once it has nothing more to say.
async fn say(w: &mut Ws, msg: Value) -> Value {
    send(w, msg).await;
    let mut got = until(w, is_bot).await;
    got.extend(drain(w, 1).await);
    got.into_iter().rev().find(is_bot).unwrap()
}

fn conv(s: &Server, session: &str, action: &str) -> String {
    format!(
        "{}/api/v1/operator/conversations/{session}/{action}",
        s.base
    )
}

/// A citizen asks `text` and leads the bot to the single allowance: picks
/// it among the options, or asks for an operator, who tags it. Returns
/// whether an operator tagged it.
async fn teach(s: &Server, op: &reqwest::Client, n: &str, text: &str) -> bool {
    let name = format!("trainee-{n}");
    let mut w = ws(&s.base, &name).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    let mut last = say(&mut w, json!({"type": "text", "id": "q", "text": text})).await;
    for step in 0..4 {
        let cs = choices(&last);
        let id = format!("c{step}");
        if cs.iter().any(|c| c == "child_allowance") {
            let answer = say(
                &mut w,
                json!({"type": "choice", "id": id, "choice": "child_allowance"}),
            )
            .await;
            assert!(
                answer["text"].as_str().unwrap().contains("Единое пособие"),
                "{answer}"
            );
            say(
                &mut w,
                json!({"type": "choice", "id": "solved", "choice": "yes"}),
            )
            .await;
            return false;
        }
        if cs.iter().any(|c| c == "operator") {
            send(
                &mut w,
                json!({"type": "choice", "id": id, "choice": "operator"}),
            )
            .await;
            until(&mut w, |v| {
                is_bot(v)
                    && v["actions"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!("handoff")))
            })
            .await;
            let session = format!("web:{}", common::issued(&name));
            let tag = |intent: &'static str| {
                op.post(conv(s, &session, "tag"))
                    .json(&json!({ "intent": intent }))
                    .send()
            };
            // Not the operator's conversation yet: no tag.
            let r = tag("child_allowance").await.unwrap();
            assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
            let r = op.post(conv(s, &session, "take")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{text}: {}", r.text().await.unwrap());
            assert_eq!(tag("no_such_topic").await.unwrap().status(), 422);
            let r = tag("child_allowance").await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            let r = op.post(conv(s, &session, "release")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            return true;
        }
        assert!(cs.iter().any(|c| c == "no"), "a way on: {last}");
        last = say(&mut w, json!({"type": "choice", "id": id, "choice": "no"})).await;
    }
    panic!("the bot never offered the allowance or an operator for {text:?}");
}

/// A citizen asks what the bot cannot answer: says an answer did not
/// help, or that none of the options fits.
async fn unanswered(s: &Server, n: &str, text: &str) {
    let mut w = ws(&s.base, &format!("asker-{n}")).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    let last = say(&mut w, json!({"type": "text", "id": "q", "text": text})).await;
    let cs = choices(&last);
    let give_up = if cs.iter().any(|c| c == "other") {
        "other"
    } else {
        "no"
    };
    assert!(cs.iter().any(|c| c == give_up), "{last}");
    say(
        &mut w,
        json!({"type": "choice", "id": "c", "choice": give_up}),
    )
    .await;
}

async fn top1(s: &Server, text: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/classify", s.base))
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["intent"].as_str().unwrap_or_default().to_string()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Runs a command to its end; it must succeed (its stderr tells why not).
fn run_ok(c: &mut std::process::Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn otklik(data: &std::path::Path, intents: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_otklik"));
    c.env("OTKLIK_TUNE_DIR", common::tune_dir());
    c.env("OTKLIK_DATA_DIR", data)
        .env("OTKLIK_KB_HELDOUT_FILE", intents.join("heldout.tsv.test"))
        .env("OTKLIK_KB_INTENTS_DIR", intents)
        .env("OTKLIK_KB_CACHE_DIR", common::test_data_dir().join("cache"))
        .env("OTKLIK_TUNE_AFTER_ACCEPT", "false")
        .env("RUST_LOG", "warn");
    c
}

/// A server on its own copy of the knowledge base, with the test's held-out set.
async fn server_on_copy() -> (Server, tempfile::TempDir) {
    let kb = tempfile::tempdir().unwrap();
    copy_dir(std::path::Path::new("intents"), kb.path());
    let heldout = kb.path().join("heldout.tsv.test");
    std::fs::write(&heldout, HELDOUT).unwrap();
    let s = start_server(&[
        ("OTKLIK_KB_INTENTS_DIR", kb.path().display().to_string()),
        ("OTKLIK_KB_HELDOUT_FILE", heldout.display().to_string()),
        // The loop retrains the encoder after applying; one short epoch
        // here (the tests' time), the real settings in otklik.toml.
        ("OTKLIK_TUNE_EPOCHS", "1".into()),
        ("OTKLIK_TUNE_TYPO_COPIES", "0".into()),
    ]);
    wait_ready(&s.base).await;
    (s, kb)
}

/// The review page in Chromium (`tests/browser/trainer.mjs`), on a log of
/// a few conversations; screenshots in `target/browser-artifacts/`.
#[tokio::test]
async fn the_review_page_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run `make test` (it installs both)"
    );
    let (s, kb) = server_on_copy().await;
    let op = common::operator(&s, "op1").await;
    // Names of their own: the tests' clients share one map of identities.
    for (n, t) in TAUGHT.iter().take(3).enumerate() {
        teach(&s, &op, &format!("page-{n}"), t).await;
    }
    for (n, t) in UNANSWERED.iter().enumerate() {
        unanswered(&s, &format!("page-{n}"), t).await;
    }
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-artifacts");
    let status = std::process::Command::new("node")
        .args([
            "tests/browser/trainer.mjs",
            &s.base,
            "tr1",
            common::OPERATOR_PASSWORD,
        ])
        .arg(&artifacts)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed (screenshot: /tmp/otklik-trainer-failure.png)"
    );
    let written = std::fs::read_to_string(kb.path().join("family.yaml")).unwrap();
    assert!(
        written.contains("- как оформить епку на ребенка"),
        "the edited example is in the file"
    );
}

#[tokio::test]
async fn conversations_export_suggest_accept_eval_gain_and_reload() {
    let (s, kb) = server_on_copy().await;
    assert_ne!(
        top1(&s, "епка на второго ребенка положена").await,
        "child_allowance"
    );
    let op = common::operator(&s, "op1").await;

    // 1. The demo log: conversations in the web chat.
    let mut tagged = 0;
    for (n, t) in TAUGHT.iter().enumerate() {
        tagged += usize::from(teach(&s, &op, &format!("loop-{n}"), t).await);
    }
    for (n, t) in UNANSWERED.iter().enumerate() {
        unanswered(&s, &format!("loop-{n}"), t).await;
    }
    eprintln!(
        "{tagged} of {} taught through an operator's tag",
        TAUGHT.len()
    );

    // 2. Proposals on the review API: for trainers only.
    let anon = reqwest::Client::new()
        .post(format!("{}/api/v1/trainer/suggest", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let r = op
        .post(format!("{}/api/v1/trainer/suggest", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an operator is no trainer");
    let trainer = common::operator(&s, "tr1").await;
    let r = trainer
        .post(format!("{}/api/v1/trainer/suggest", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    let items = p["items"].as_array().unwrap().clone();
    let examples: Vec<&Value> = items.iter().filter(|i| i["kind"] == "example").collect();
    let taught: Vec<&str> = examples
        .iter()
        .filter(|i| i["intent"] == "child_allowance")
        .map(|i| i["texts"][0].as_str().unwrap())
        .collect();
    assert!(
        taught.len() >= 5,
        "most taught sentences are proposed: {taught:?}"
    );
    assert!(taught.iter().all(|t| TAUGHT.contains(t)), "{taught:?}");
    let new = items
        .iter()
        .find(|i| i["kind"] == "intent")
        .unwrap_or_else(|| panic!("a new topic from the unanswered questions: {items:?}"));
    let texts: Vec<&str> = new["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        texts.len() >= 3 && texts.iter().all(|t| t.contains("ипотек")),
        "{new}"
    );

    // 3. The trainer's verdicts: a new topic with too few examples cannot
    // be applied (nothing is written), so it is rejected; examples accepted.
    let edit = |id: &str, body: Value| {
        let (c, url) = (
            trainer.clone(),
            format!("{}/api/v1/trainer/proposals/{id}", s.base),
        );
        async move { c.post(url).json(&body).send().await.unwrap() }
    };
    let bad = edit(
        new["id"].as_str().unwrap(),
        json!({"status": "accept", "intent": "Ипотека!"}),
    )
    .await;
    assert_eq!(bad.status(), 422, "ids are snake_case");
    let r = edit(
        new["id"].as_str().unwrap(),
        json!({"status": "accept", "intent": "large_family_mortgage", "title": "Выплата 450 тысяч на ипотеку", "answer": "Многодетные семьи могут погасить ипотеку за счёт государства."}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = trainer
        .post(format!("{}/api/v1/trainer/apply", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("Изменения не записаны"), "{msg}");
    assert!(!kb.path().join("suggested.yaml").exists());
    edit(new["id"].as_str().unwrap(), json!({"status": "reject"})).await;
    for e in &examples {
        let r = edit(e["id"].as_str().unwrap(), json!({"status": "accept"})).await;
        assert_eq!(r.status(), 200);
    }

    // 4. Apply: written, scored before and after, reloaded.
    let r = trainer
        .post(format!("{}/api/v1/trainer/apply", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    eprintln!("apply: {done}");
    assert_eq!(done["applied"]["examples"], examples.len());
    let (before, after) = (
        done["before"]["top1"].as_f64().unwrap(),
        done["after"]["top1"].as_f64().unwrap(),
    );
    assert!(after > before, "held-out top-1 {before} → {after}");
    assert_eq!(done["tuned"]["epochs_run"], 1, "the encoder was retrained");
    assert_eq!(done["after"]["tuned"], true, "and the score after uses it");
    let key = done["tuned"]["key"].as_str().unwrap();
    assert!(
        std::fs::read_dir(common::tune_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(key)),
        "the weights file is written"
    );
    let written = std::fs::read_to_string(kb.path().join("family.yaml")).unwrap();
    assert!(written.contains("- епку продлить как"), "{written}");
    assert_eq!(
        top1(&s, "епка на второго ребенка положена").await,
        "child_allowance",
        "the reloaded classifier knows the word"
    );
    let left: Value = trainer
        .get(format!("{}/api/v1/trainer/proposals", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        left["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "pending"),
        "applied and rejected leave the list: {left}"
    );

    // 5. The file workflow with the command line, on the stopped server's
    // database: export → suggest --from → accept.
    let data = s.data_path().to_path_buf();
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let out = run_ok(otklik(&data, kb.path()).args(["export", "--json"]));
    let jsonl = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        TAUGHT.len() + UNANSWERED.len(),
        "one line per client utterance: {jsonl}"
    );
    assert!(lines
        .iter()
        .all(|l| l["text"].is_string() && l["channel"] == "web"));
    let labelled = lines
        .iter()
        .filter(|l| l["confirmed"] == "child_allowance")
        .count();
    assert_eq!(labelled, TAUGHT.len(), "{jsonl}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["label_source"] == "operator")
            .count(),
        tagged
    );
    let export = kb.path().join("export.jsonl.test");
    std::fs::write(&export, &jsonl).unwrap();
    let proposals = kb.path().join("proposals.yaml.test");
    run_ok(
        otklik(&data, kb.path())
            .args(["suggest", "--from"])
            .arg(&export)
            .arg("--out")
            .arg(&proposals),
    );
    let mut p: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&proposals).unwrap()).unwrap();
    let items = p["items"].as_sequence_mut().unwrap();
    assert!(
        items.iter().all(|i| i["kind"] == "intent"),
        "the examples are in the knowledge base now: {items:?}"
    );
    // The trainer names the new topic in the file and gives it examples.
    let item = &mut items[0];
    item["status"] = "accept".into();
    item["intent"] = "large_family_mortgage".into();
    item["title"] = "Выплата 450 тысяч на ипотеку".into();
    item["answer"] = "Многодетные семьи могут погасить до 450 тысяч рублей ипотеки за счёт государства. Заявление подают в банк.".into();
    let more: Vec<serde_yaml::Value> = (1..=15)
        .map(|i| format!("450 тысяч на ипотеку многодетным вопрос {i}").into())
        .collect();
    item["texts"].as_sequence_mut().unwrap().extend(more);
    std::fs::write(&proposals, serde_yaml::to_string(&p).unwrap()).unwrap();
    let out = run_ok(otklik(&data, kb.path()).arg("accept").arg(&proposals));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("added 0 example(s) and 1 new intent(s)") && said.contains("top-1"),
        "{said}"
    );
    let suggested = std::fs::read_to_string(kb.path().join("suggested.yaml")).unwrap();
    assert!(
        suggested.contains("id: large_family_mortgage"),
        "{suggested}"
    );
    // the demo's intents and the new one
    let count = |dir: &std::path::Path| -> usize {
        let out = otklik(&data, dir).arg("check").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = said
            .split_once(" intents")
            .and_then(|(a, _)| a.rsplit(' ').next()?.parse().ok());
        n.unwrap_or_else(|| panic!("no intent count in: {said}"))
    };
    assert_eq!(count(kb.path()), count(std::path::Path::new("intents")) + 1);
}
