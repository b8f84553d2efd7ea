//! `otklik serve` as a real process on loopback: health, classify, and clear
//! JSON errors for malformed, unknown-field, empty and oversized requests.

mod common;

#[tokio::test]
async fn serve_answers_health_and_classify() {
    let server = common::start_server(&[("OTKLIK_HTTP_MAX_BODY_BYTES", "4096".into())]);
    let client = reqwest::Client::new();
    common::wait_ready(&server.base).await;
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
