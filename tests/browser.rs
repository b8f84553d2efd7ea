//! The web chat and the operator console in a real browser: Debian's
//! headless Chromium driven by playwright-core (`tests/browser/e2e.mjs`)
//! against `otklik serve` — a citizen asks, says it is not solved, picks an
//! option, types an XSS payload and asks for an operator; an operator signs in
//! in a second browser context, takes the conversation and replies; reloads
//! and a network drop lose and duplicate nothing; on a desktop and on a phone
//! (390×844) the panel has the right size with both text sizes; the
//! microphone button records a citizen (Chromium's fake microphone plays
//! festival's «Хочу записаться на приём»), the server's Whisper recognises
//! it, and the words and the booking flow's answer appear, on a desktop from
//! the keyboard and on a phone with large text, where the recording stops by
//! itself at the limit; a refused microphone is explained, and a page
//! without getUserMedia has no microphone button. A second test opens the
//! analysts' dashboard (`tests/browser/analytics.mjs`). Screenshots of the
//! widget and the dashboard are kept in `target/browser-artifacts/`. `make test` installs chromium,
//! playwright-core and festival.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn web_chat_and_operator_console_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && Path::new("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run `make test` (it installs both)"
    );
    // A short limit, so that the phone's recording stops by itself soon.
    let s = common::start_server(&[("OTKLIK_HTTP_VOICE_MAX_SECONDS", "7".into())]);
    // The fake microphone's sound: a second of silence, the phrase, five
    // seconds of silence (Chromium plays it in a loop).
    let phrase = common::festival_16k("Хочу записаться на приём.");
    let mut samples = vec![0i16; 16_000];
    samples.extend(&phrase.samples);
    samples.extend(vec![0i16; 5 * 16_000]);
    let wav = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-microphone.wav");
    std::fs::write(
        &wav,
        otklik::speech::audio::write_wav(&otklik::speech::audio::Pcm {
            rate: 16_000,
            samples,
        }),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&s.base));
    rt.block_on(common::speech_ready(&s.base));
    // target/browser-artifacts: screenshots of the widget on a desktop and a phone.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-artifacts");
    let status = Command::new("node")
        .args([
            "tests/browser/e2e.mjs",
            &s.base,
            "op1",
            common::OPERATOR_PASSWORD,
            "op2",
        ])
        .arg(&wav)
        .arg(&artifacts)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed (screenshot: /tmp/otklik-e2e-failure.png)"
    );
}

/// One conversation of the seeded log: `(events, intent, rating)` per turn.
type Turns<'a> = &'a [(&'a [&'a str], Option<&'a str>, Option<(u8, u8, u8)>)];

fn seeded(
    days_ago: i64,
    conv: &str,
    channel: &str,
    turns: Turns,
) -> Vec<otklik::analytics::LogEntry> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    turns
        .iter()
        .enumerate()
        .map(
            |(i, (events, intent, rating))| otklik::analytics::LogEntry {
                ts: now - days_ago * 86_400 + i as i64 * 20,
                conversation: format!("seed-{conv}"),
                client: format!("client-{conv}"),
                channel: channel.into(),
                segment: "universal".into(),
                node: "ask".into(),
                intent: intent.map(String::from),
                decision: None,
                scores: if events.contains(&"decision:out_of_scope") {
                    vec![otklik::analytics::Candidate {
                        intent: "pension_application".into(),
                        score: 0.3,
                    }]
                } else {
                    Vec::new()
                },
                answer_ms: Some(300),
                rating: rating.map(|(ease, s, nps)| otklik::analytics::Rating {
                    ease,
                    satisfaction: Some(s),
                    nps: Some(nps),
                }),
                events: events.iter().map(|e| e.to_string()).collect(),
                ..Default::default()
            },
        )
        .collect()
}

/// The analysts' dashboard: three conversations are put into the log before
/// the server starts (one «не решён» and handed to an operator, one out of
/// scope first, one rated badly), a fourth is a real one through the web
/// chat (answered, «решён», rated «Легко», 5 and 10); an analyst signs in at
/// `/analytics` in Chromium and sees the figures computed by hand, the
/// chart and the breakdown by topic; an operator without the role is
/// refused there, and an analyst without the operator's role at the queue.
/// Screenshots: `target/browser-artifacts/analytics-*.png`.
#[test]
fn analytics_dashboard_in_chromium() {
    use common::{is_bot, send, until, ws, OPERATOR_PASSWORD};
    use serde_json::json;
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && Path::new("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run `make test` (it installs both)"
    );
    let data = tempfile::tempdir().unwrap();
    {
        let st = otklik::store::Store::open(data.path()).unwrap();
        let p = Some("pension_application");
        let mut log = seeded(
            4,
            "s1",
            "web",
            &[
                (&["decision:answer"], p, None),
                (&["solved_no"], p, None),
                (&["handoff"], p, None),
            ],
        );
        log.extend(seeded(
            2,
            "s2",
            "telegram",
            &[
                (&["decision:out_of_scope"], None, None),
                (&["decision:answer"], p, None),
                (&["solved_yes"], p, None),
                (&["rating:2"], p, Some((2, 4, 8))),
            ],
        ));
        log.extend(seeded(
            1,
            "s3",
            "voice",
            &[
                (&["decision:answer"], p, None),
                (&["solved_yes"], p, None),
                (&["rating:4"], p, Some((4, 2, 3))),
            ],
        ));
        otklik::store::Storage::log_append(&st, &log).unwrap();
    }
    let hash = otklik::operator::console::hash_password(OPERATOR_PASSWORD).unwrap();
    let accounts = data.path().join("accounts-analytics.toml");
    std::fs::write(
        &accounts,
        format!(
            "[[operator]]\nlogin = \"an1\"\nname = \"Вера\"\npassword_hash = \"{hash}\"\nroles = [\"operator\", \"analyst\"]\n\n\
             [[operator]]\nlogin = \"an2\"\nname = \"Глеб\"\npassword_hash = \"{hash}\"\nroles = [\"analyst\"]\n\n\
             [[operator]]\nlogin = \"op1\"\nname = \"Анна\"\npassword_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let s = common::start_server_in(
        data,
        &[(
            "OTKLIK_OPERATORS_ACCOUNTS_FILE",
            accounts.display().to_string(),
        )],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        common::wait_ready(&s.base).await;
        // A real conversation through the web chat, rated to the end.
        let mut w = ws(&s.base, "analytics-citizen").await;
        send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
        until(&mut w, is_bot).await;
        send(
            &mut w,
            json!({"type": "text", "id": "m1", "text": "как оформить единое пособие на ребенка"}),
        )
        .await;
        let got = until(&mut w, is_bot).await;
        let answer = got.last().unwrap()["text"].as_str().unwrap().to_string();
        assert!(answer.contains("Единое пособие"), "{answer}");
        for (id, choice, expect) in [
            ("m2", "yes", "new_question"),
            ("m3", "finish", "easy"),
            ("m4", "easy", "5"),
            ("m5", "5", "10"),
        ] {
            send(
                &mut w,
                json!({"type": "choice", "id": id, "choice": choice}),
            )
            .await;
            let got = until(&mut w, is_bot).await;
            let last = got.last().unwrap();
            assert!(
                last["choices"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["id"] == expect)),
                "after {choice}: {last}"
            );
        }
        send(
            &mut w,
            json!({"type": "choice", "id": "m6", "choice": "10"}),
        )
        .await;
        let got = until(&mut w, is_bot).await;
        let last = got.last().unwrap()["text"].as_str().unwrap().to_string();
        assert!(last.contains("Спасибо за оценку"), "{last}");

        // The roles over HTTP: the API refuses an operator in Russian, the
        // queue an analyst who is not an operator; the page has the CSP.
        let op = common::operator(&s, "op1").await;
        let r = op
            .get(format!("{}/api/v1/analytics/indicators", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body = r.text().await.unwrap();
        assert!(body.contains("только аналитики"), "{body}");
        let an2 = common::operator(&s, "an2").await;
        let r = an2
            .get(format!("{}/api/v1/operator/queue", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "an analyst only is no operator");
        let r = an2
            .get(format!(
                "{}/api/v1/analytics/indicators?since=2020-01-01",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "longer than max_days");
        let page = reqwest::get(format!("{}/analytics", s.base)).await.unwrap();
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
    });
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-artifacts");
    let status = Command::new("node")
        .args([
            "tests/browser/analytics.mjs",
            &s.base,
            "an1",
            "op1",
            OPERATOR_PASSWORD,
        ])
        .arg(&artifacts)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the dashboard's browser test failed (screenshot: /tmp/otklik-analytics-failure.png)"
    );
}
