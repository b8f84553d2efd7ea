//! Load: N concurrent web chat sessions over real WebSockets on loopback
//! against `otklik serve` (a real process). Each session says hello, then
//! asks questions from the held-out set one after another, waiting for each
//! answer. Prints turns/s, p50/p99 turn latency and the server's RSS for
//! N = 100 and 1000 (`make load`); under `cargo test --benches` it runs a
//! small smoke round.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn rss_mb(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

async fn session(base: String, id: usize, questions: Vec<String>, turns: usize) -> Vec<f64> {
    // Each session is a new visitor: the server issues its identity.
    let url = format!("{}/ws/chat", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::Text(
        json!({"type": "hello", "last_seq": 0}).to_string().into(),
    ))
    .await
    .unwrap();
    wait_bot(&mut ws).await;
    let mut lat = Vec::new();
    for t in 0..turns {
        let q = &questions[(id * 7 + t * 13) % questions.len()];
        let t0 = Instant::now();
        let m = json!({"type": "text", "id": format!("{id}-{t}"), "text": q});
        ws.send(Message::Text(m.to_string().into())).await.unwrap();
        wait_bot(&mut ws).await;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat
}

async fn wait_bot<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(300), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "msg" && v["from"] == "bot" {
                    return;
                }
                assert_ne!(v["type"], "error", "server error: {v}");
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    raise_nofile();
    let questions: Vec<String> = std::fs::read_to_string("tests/data/heldout.tsv")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(i, _)| *i != "out_of_scope" && *i != "operator_request")
        // a handoff makes the bot silent (a person answers), which this load does not model
        .filter(|(_, t)| {
            !["оператор", "человек", "специалист", "сотрудник"]
                .iter()
                .any(|w| t.to_lowercase().contains(w))
        })
        .map(|(_, t)| t.to_string())
        .collect();
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otklik"))
        .arg("serve")
        .env("OTKLIK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("OTKLIK_DATA_DIR", data.path())
        .env(
            "OTKLIK_KB_CACHE_DIR",
            std::env::temp_dir().join("otklik-bench-data/cache"),
        )
        // Every simulated citizen comes from this one address: lift the
        // per-conversation and per-address limits.
        .env("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "100000")
        .env("OTKLIK_HTTP_MESSAGES_PER_ADDRESS_PER_MINUTE", "1000000")
        .env("OTKLIK_HTTP_HELLOS_PER_ADDRESS_PER_MINUTE", "1000000")
        .env("OTKLIK_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if c.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(300), "server not ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    println!("server ready, RSS {:.0} MB", rss_mb(pid, "VmRSS:"));
    // LOAD_ROUNDS="100x5,1000x3" (sessions x turns) overrides the rounds.
    let rounds: Vec<(usize, usize)> = match std::env::var("LOAD_ROUNDS") {
        Ok(r) => r
            .split(',')
            .filter_map(|x| x.split_once('x'))
            .map(|(n, t)| (n.trim().parse().unwrap(), t.trim().parse().unwrap()))
            .collect(),
        Err(_) if full => vec![(100, 5), (1000, 3)],
        Err(_) => vec![(5, 2)],
    };
    let mut offset = 0;
    for (n, turns) in rounds {
        let t0 = Instant::now();
        let mut all: Vec<f64> = rt.block_on(async {
            let hs: Vec<_> = (0..n)
                .map(|i| tokio::spawn(session(base.clone(), offset + i, questions.clone(), turns)))
                .collect();
            let mut all = Vec::new();
            for h in hs {
                all.extend(h.await.unwrap());
            }
            all
        });
        offset += n;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{n:5} concurrent sessions × {turns} turns: {:.0} turns/s, p50 {:.0} ms, p99 {:.0} ms; server RSS {:.0} MB (peak {:.0} MB)",
            all.len() as f64 / secs,
            pct(&mut all, 0.5),
            pct(&mut all, 0.99),
            rss_mb(pid, "VmRSS:"),
            rss_mb(pid, "VmHWM:")
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
