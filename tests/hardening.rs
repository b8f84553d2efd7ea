//! `otklik serve` attacked the way a stranger on the internet would, on
//! loopback: a sign-in flood, password guessing, login enumeration by timing.

mod common;

use common::{start_server, wait_ready, OPERATOR_PASSWORD};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn rss_mb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

async fn sign_in(c: &reqwest::Client, base: &str, login: &str, password: &str) -> (u16, Value) {
    let r = c
        .post(format!("{base}/api/v1/operator/login"))
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// 500 wrong passwords, 64 at a time: the password checks queue on a pool
/// of one per core and their memory goes back (the server once grew to
/// 12.7 GB and stayed there).
#[tokio::test]
async fn a_sign_in_flood_keeps_memory_bounded() {
    let s = start_server(&[
        ("OTKLIK_OPERATORS_LOCK_AFTER_FAILURES", "100000".into()),
        (
            "OTKLIK_OPERATORS_LOCK_ADDRESS_AFTER_FAILURES",
            "100000".into(),
        ),
        // A short wait for a hashing place, so that the flood overflows it.
        ("OTKLIK_OPERATORS_HASHING_WAIT_MS", "100".into()),
        // The speech recogniser (Whisper, about 150 MB, loading in the
        // background) is not what this measures.
        ("OTKLIK_SPEECH_ENGINE", "none".into()),
    ]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let before = rss_mb(s.child.id());
    let codes: Vec<u16> = futures_util::stream::iter(0..500)
        .map(|i| {
            let (c, base) = (c.clone(), s.base.clone());
            async move { sign_in(&c, &base, &format!("op{}", i % 3), "wrong").await.0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        codes.iter().all(|c| *c == 401 || *c == 429),
        "only refusals: {codes:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mb(s.child.id());
    let busy = codes.iter().filter(|c| **c == 429).count();
    eprintln!("sign-in flood: RSS {before} MB before, {after} MB after; {busy} of 500 got 429");
    assert!(busy > 0, "the flood overflowed the hashing pool: 429 busy");
    assert!(busy < 500, "some were checked");
    assert!(
        after < 400,
        "RSS {before} MB before, {after} MB after the flood"
    );
    let m = common::metrics(&s.base).await;
    for reason in ["bad_credentials", "busy"] {
        let line = format!("otklik_signin_refusals_total{{reason=\"{reason}\"}}");
        assert!(m.contains(&line), "{m}");
    }
    // The right password still works after the flood.
    assert_eq!(sign_in(&c, &s.base, "op1", OPERATOR_PASSWORD).await.0, 200);
}

/// Guessing locks the account (even the right password waits), then the
/// address; an unknown login costs as long as a known one.
#[tokio::test]
async fn guessing_locks_the_account_then_the_address_and_timing_tells_nothing() {
    let s = start_server(&[("OTKLIK_OPERATORS_LOCK_ADDRESS_AFTER_FAILURES", "16".into())]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let timed = |login: &'static str| {
        let (c, base) = (c.clone(), s.base.clone());
        async move {
            let t0 = Instant::now();
            let (status, _) = sign_in(&c, &base, login, "wrong").await;
            (status, t0.elapsed())
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let (st, t) = timed("op2").await;
        assert_eq!(st, 401);
        known.push(t);
        let (st, t) = timed("ghost").await;
        assert_eq!(st, 401);
        unknown.push(t);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2], unknown[2]);
    assert!(
        u * 2 >= k && k * 2 >= u,
        "an unknown login answers in {u:?}, a known one in {k:?}"
    );
    // op1: five failures, then even the right password is refused for a while.
    for _ in 0..5 {
        assert_eq!(sign_in(&c, &s.base, "op1", "wrong").await.0, 401);
    }
    let r = c
        .post(format!("{}/api/v1/operator/login", s.base))
        .json(&json!({"login": "op1", "password": OPERATOR_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "locked");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Попробуйте через"));
    // Another account is not locked by op1's failures…
    assert_eq!(sign_in(&c, &s.base, "op2", OPERATOR_PASSWORD).await.0, 200);
    // …until the address has failed too often: 4 + 4 + 5 failures so far.
    for _ in 0..4 {
        sign_in(&c, &s.base, "nobody", "wrong").await;
    }
    let (st, e) = sign_in(&c, &s.base, "op2", OPERATOR_PASSWORD).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (429, Some("locked")),
        "{e}"
    );
    let m = common::metrics(&s.base).await;
    assert!(
        m.contains("otklik_signin_refusals_total{reason=\"locked\"}"),
        "{m}"
    );
}

/// Operator op1 signs in, then opens the console's socket (from `origin`).
async fn operator_socket(
    base: &str,
    origin: Option<String>,
) -> Result<common::Stream, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/operator/login"))
        .json(&json!({"login": "op1", "password": OPERATOR_PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let mut req = format!("{}/ws/operator", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(w, _)| w)
}

async fn ws_with_origin(
    base: &str,
    path: &str,
    origin: &str,
) -> Result<common::Stream, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}{path}", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.map(|(w, _)| w)
}

/// Pages carry a CSP without inline scripts, nosniff and a referrer policy;
/// the console may not be framed, and only the chat's page may use the
/// microphone; sockets check their page's origin; an oversized message gets
/// a clear error and close code 1009; a huge `last_seq` replays nothing;
/// metrics need the token when one is set; the database is the owner's alone.
#[tokio::test]
async fn headers_origins_big_messages_metrics_and_file_modes() {
    let s = start_server(&[
        (
            "OTKLIK_HTTP_ALLOWED_ORIGINS",
            "https://minsoc.example.ru".into(),
        ),
        ("OTKLIK_HTTP_METRICS_TOKEN", "metrics-secret".into()),
    ]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    for (path, frames, microphone) in [
        ("/", "frame-ancestors 'self'", "microphone=(self)"),
        ("/operator", "frame-ancestors 'none'", "microphone=()"),
    ] {
        let r = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(csp.contains(frames), "{path}: {csp}");
        // The chat's page may use the microphone (its voice button), the console not.
        let permissions = h["permissions-policy"].to_str().unwrap();
        assert!(permissions.contains(microphone), "{path}: {permissions}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("referrer-policy"));
    }
    let r = c.get(format!("{}/widget.js", s.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // Origins: the configured site and the server's own pages, nobody else.
    let host = s.base.replace("http://", "");
    assert!(
        ws_with_origin(&s.base, "/ws/chat", "https://minsoc.example.ru")
            .await
            .is_ok()
    );
    assert!(
        ws_with_origin(&s.base, "/ws/chat", &format!("http://{host}"))
            .await
            .is_ok()
    );
    let err = ws_with_origin(&s.base, "/ws/chat", "https://evil.example")
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            assert_eq!(r.status(), 403);
            let body = String::from_utf8(r.body().clone().unwrap_or_default()).unwrap();
            assert!(
                body.contains("bad_origin") && body.contains("allowed_origins"),
                "{body}"
            );
        }
        e => panic!("expected 403, got {e}"),
    }

    // The console's socket: its own page only, even with an operator's cookie.
    let console = |origin: String| operator_socket(&s.base, Some(origin));
    assert!(console(format!("http://{host}")).await.is_ok());
    match console("https://minsoc.example.ru".into())
        .await
        .unwrap_err()
    {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 403),
        e => panic!("expected 403, got {e}"),
    }

    // A message over the limit: the error, then close code 1009.
    let mut w = common::ws(&s.base, "big-message-1").await;
    common::send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    common::until(&mut w, common::is_bot).await;
    common::send(&mut w, json!({"type": "hello", "last_seq": u64::MAX})).await;
    let replay = common::drain(&mut w, 2).await;
    assert_eq!(
        replay.len(),
        1,
        "a huge last_seq replays nothing: {replay:?}"
    );
    assert_eq!(replay[0]["type"], "welcome");
    let big = "я".repeat(10_000); // 20,000 bytes
    common::send(&mut w, json!({"type": "text", "id": "b1", "text": big})).await;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut got_error = false;
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        match m {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                got_error |= v["code"] == "too_large";
            }
            Ok(Message::Close(f)) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            _ => break,
        }
    }
    assert!(got_error, "a clear error first");
    assert_eq!(close, Some(1009));

    // Metrics with a token set: only with it.
    let m = |token: Option<&str>| {
        let mut r = c.get(format!("{}/metrics", s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(m(None).await.unwrap().status(), 401);
    assert_eq!(m(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(m(Some("metrics-secret")).await.unwrap().status(), 200);

    // The database: 0700 folders, 0600 files.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.data_path()), 0o700);
    let db = s.data_path().join("db");
    assert_eq!(mode(&db), 0o700);
    for e in std::fs::read_dir(&db).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

/// One address cannot multiply the conversation's limit by opening many
/// conversations, nor replay a conversation over and over.
#[tokio::test]
async fn limits_hold_per_address_and_hellos_are_limited() {
    let s = start_server(&[
        ("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "100".into()),
        ("OTKLIK_HTTP_MESSAGES_PER_ADDRESS_PER_MINUTE", "6".into()),
        ("OTKLIK_HTTP_HELLOS_PER_MINUTE", "3".into()),
    ]);
    wait_ready(&s.base).await;
    let (mut accepted, mut limited) = (0, 0);
    for client in ["addr-limit-1", "addr-limit-2", "addr-limit-3"] {
        let mut w = common::ws(&s.base, client).await;
        common::send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
        common::until(&mut w, common::is_bot).await;
        for i in 0..4 {
            common::send(
                &mut w,
                json!({"type": "text", "id": format!("m{i}"), "text": "пенсия"}),
            )
            .await;
        }
        for m in common::drain(&mut w, 3).await {
            if m["from"] == "client" {
                accepted += 1;
            }
            if m["code"] == "rate_limited" {
                limited += 1;
            }
        }
    }
    // 12 questions from one address, 4 per conversation: 6 pass.
    assert_eq!((accepted, limited), (6, 6), "per-address limit");
    let mut w = common::ws(&s.base, "addr-limit-1").await;
    let mut refused = 0;
    for _ in 0..5 {
        common::send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
        refused += common::drain(&mut w, 1)
            .await
            .iter()
            .filter(|m| m["code"] == "rate_limited")
            .count();
    }
    // Three hellos a minute per conversation: it had one, two more pass.
    assert_eq!(refused, 3, "hellos are limited");
}

/// Idle sockets and half-sent requests do not hold places for long, and the
/// operators' share of connections stays theirs when chat sockets fill the rest.
#[tokio::test]
async fn idle_connections_are_closed_and_operators_keep_their_share() {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = start_server(&[
        ("OTKLIK_HTTP_MAX_CONNECTIONS", "3".into()),
        ("OTKLIK_HTTP_OPERATOR_RESERVED_CONNECTIONS", "1".into()),
        ("OTKLIK_HTTP_WS_IDLE_TIMEOUT_S", "2".into()),
        ("OTKLIK_HTTP_HEADER_READ_TIMEOUT_S", "2".into()),
    ]);
    wait_ready(&s.base).await;
    // Half a request: the server hangs up instead of waiting for ever.
    let mut tcp = tokio::net::TcpStream::connect(s.base.replace("http://", ""))
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(8), tcp.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the half-sent request was still open after 8 s");
    assert!(t0.elapsed() < Duration::from_secs(8));

    // Two chat sockets take the chat's share; a third is refused…
    let mut a = common::ws(&s.base, "share-chat-1").await;
    let _b = common::ws(&s.base, "share-chat-2").await;
    let url = format!("{}/ws/chat", s.base.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(url).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 503),
        e => panic!("expected 503, got {e}"),
    }
    // …while an operator still gets in.
    assert!(
        operator_socket(&s.base, None).await.is_ok(),
        "the operator is let in"
    );

    // A socket that answers nothing (not even pings) is closed as idle: by
    // the time the client reads, the server has said 1001 and hung up (the
    // client's late pong may fail first, which ends the stream too).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut ended = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), a.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1001), "closed as idle");
                ended = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(ended, "an idle socket was still open after 11 s");
}

/// The web chat's identity is the server's: a first hello gets 128 random
/// bits; an id the server never issued (weak or guessed) is not honoured: it
/// gets a new identity and none of anyone's conversation.
#[tokio::test]
async fn web_chat_identities_are_issued_by_the_server() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let mut a = common::ws(&s.base, "identity-a").await;
    common::send(&mut a, json!({"type": "hello", "last_seq": 0})).await;
    common::until(&mut a, common::is_bot).await;
    let id = common::issued("identity-a");
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    common::send(
        &mut a,
        json!({"type": "text", "id": "q1", "text": "пенсия"}),
    )
    .await;
    common::until(&mut a, common::is_bot).await;
    for claimed in ["________", "12345678", "00000000000000000000000000000000"] {
        let mut b = common::ws(&s.base, &format!("identity-{claimed}")).await;
        common::send(
            &mut b,
            json!({"type": "hello", "last_seq": 0, "client": claimed}),
        )
        .await;
        let got = common::until(&mut b, common::is_bot).await;
        let welcome = &got[0];
        assert_eq!(welcome["type"], "welcome");
        assert_ne!(welcome["client"], claimed, "an unissued id is not honoured");
        assert!(
            got.iter().all(|m| m["text"] != "пенсия"),
            "a new conversation, nobody's history: {got:?}"
        );
    }
    // The issued identity brings its own conversation back.
    let mut again = common::ws(&s.base, "identity-a").await;
    common::send(&mut again, json!({"type": "hello", "last_seq": 0})).await;
    let replay = common::drain(&mut again, 2).await;
    assert_eq!(replay[0]["client"], id.as_str());
    assert!(replay.iter().any(|m| m["text"] == "пенсия"), "{replay:?}");
}
