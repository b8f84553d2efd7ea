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
//! without getUserMedia has no microphone button. Screenshots of the widget
//! are kept in `target/browser-artifacts/`. `make test` installs chromium,
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
