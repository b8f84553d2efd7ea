//! The web chat and the operator console in a real browser: Debian's
//! headless Chromium driven by playwright-core (`tests/browser/e2e.mjs`)
//! against `otklik serve` — a citizen asks, says it is not solved, picks an
//! option, types an XSS payload and asks for an operator; an operator signs in
//! in a second browser context, takes the conversation and replies; reloads
//! and a network drop lose and duplicate nothing; on a desktop and on a phone
//! (390×844) the panel has the right size with both text sizes. Screenshots of
//! the widget are kept in `target/browser-artifacts/`. `make test` installs
//! chromium and playwright-core.

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
    let s = common::start_server(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&s.base));
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
        .arg(&artifacts)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed (screenshot: /tmp/otklik-e2e-failure.png)"
    );
}
