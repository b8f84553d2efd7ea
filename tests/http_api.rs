//! `otklik serve` as a real process on loopback: health, classify, and clear
//! JSON errors for malformed, unknown-field, empty and oversized requests.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_otklik"))
        .arg("serve")
        .env("OTKLIK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("OTKLIK_DATA_DIR", common::test_data_dir())
        .env("OTKLIK_HTTP_MAX_BODY_BYTES", "4096")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("server did not become healthy");
}

#[tokio::test]
async fn serve_answers_health_and_classify() {
    let server = start();
    let client = reqwest::Client::new();
    wait_ready(&client, &server.base).await;
    let url = format!("{}/api/v1/classify", server.base);

    let r = client
        .post(&url)
        .json(&serde_json::json!({"text": "подскажите часы работы мфц"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["intent"], "working_hours");
    assert!(v["decision"].is_string() && v["top"].is_array());

    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Неверный запрос"));

    let r = client
        .post(&url)
        .json(&serde_json::json!({"text": "пенсия", "extra": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = client
        .post(&url)
        .json(&serde_json::json!({"text": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "empty_text");

    let r = client
        .post(&url)
        .json(&serde_json::json!({"text": "а".repeat(10_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Still serving after bad requests.
    let r = client
        .post(&url)
        .json(&serde_json::json!({"text": "спасибо до свидания"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
