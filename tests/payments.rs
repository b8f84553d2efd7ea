//! Paying state fees (issue 16 ж): the payment QR code decoded back with a
//! QR decoder and compared field by field with the settings, amounts in
//! kopecks, exempt segments, the exactly-once confirmation (a payment,
//! its application, its status and one notice, with 8 confirmations at once
//! on a real sled store), and over a real server: the QR code reaching the
//! web chat, the gateway's webhook refused without a good signature and
//! confirming once, the admin confirmation behind the admin token, the
//! demo payment page.

mod common;

use base64::Engine as _;
use otklik::services::applications::{self, Application};
use otklik::services::notices::{self, Category, Notice};
use otklik::services::payments::{self, Confirmation, Offer, Payment, Payments};
use otklik::store::{AppStatus, Storage, Store};
use serde_json::{json, Value};
use std::sync::Arc;

const SECRET: &str = "test-webhook-secret";
const PUBLIC: &str = "https://bot.example.gov.ru";

fn payments() -> Payments {
    let cfg = common::config();
    Payments::new(&cfg.fees, &cfg.payments).unwrap()
}

/// The offer of fee `id` to a client of `segment`, which must be a payment.
fn pay(
    p: &Payments,
    id: &str,
    segment: &str,
    app: Option<&str>,
) -> (Payment, Vec<u8>, otklik::store::RecordOp) {
    let fee = p.fee(id).unwrap();
    match p
        .offer(
            fee,
            "web:client-1",
            segment,
            app.map(String::from),
            1_764_140_000,
        )
        .unwrap()
    {
        Offer::Pay(o) => (o.payment, o.png, o.op),
        Offer::Exempt(r) => panic!("{id} for {segment}: exempt ({r})"),
    }
}

#[test]
fn the_qr_code_decodes_to_the_settings_field_by_field() {
    let cfg = common::config();
    let p = payments();
    assert!(cfg.fees.service.len() >= 2, "the demo has fees");
    let want_sum = [
        ("certificate_duplicate", "35000"),
        ("archive_copy", "20050"),
        ("social_card_reissue", "15000"),
    ];
    for fee in &cfg.fees.service {
        let (payment, png, _) = pay(&p, &fee.id, "universal", None);
        let text = common::read_qr(&png);
        let (header, f) = common::qr_fields(&text);
        assert_eq!(header, "ST00012", "GOST R 56042-2014, UTF-8");
        let r = cfg.fees.recipient_of(fee);
        let expected = [
            ("Name", r.name.as_str()),
            ("PersonalAcc", &r.personal_acc),
            ("BankName", &r.bank_name),
            ("BIC", &r.bic),
            ("CorrespAcc", &r.corresp_acc),
            ("Purpose", &fee.purpose),
            ("PayeeINN", &r.inn),
            ("KPP", &r.kpp),
            ("CBC", &r.kbk),
            ("OKTMO", &r.oktmo),
        ];
        for (k, v) in expected {
            assert_eq!(f.get(k).map(String::as_str), Some(v), "{}: {k}", fee.id);
        }
        assert_eq!(f.len(), 11, "{}: no other fields: {f:?}", fee.id);
        // the amount in kopecks, as the settings' roubles say
        let sum = &f["Sum"];
        assert_eq!(sum, &payment.kopecks.to_string());
        if let Some((_, s)) = want_sum.iter().find(|(id, _)| *id == fee.id) {
            assert_eq!(sum, s, "{}", fee.id);
        }
        // the required fields come first, in the standard's order
        let keys: Vec<&str> = text
            .split('|')
            .skip(1)
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(
            &keys[..5],
            ["Name", "PersonalAcc", "BankName", "BIC", "CorrespAcc"]
        );
    }
    // the per-service recipient is used where one is set
    let card = cfg.fees.fee("social_card_reissue").unwrap();
    assert_ne!(cfg.fees.recipient_of(card), &cfg.fees.recipient);
}

#[test]
fn exempt_segments_pay_nothing_and_hear_why() {
    let p = payments();
    let dup = p.fee("certificate_duplicate").unwrap();
    for seg in ["senior", "disability"] {
        match p.offer(dup, "web:x", seg, None, 0).unwrap() {
            Offer::Exempt(reason) => assert!(reason.contains("бесплатно"), "{reason}"),
            Offer::Pay(_) => panic!("{seg} must pay nothing"),
        }
    }
    for seg in ["universal", "family", "jobseeker"] {
        let (payment, _, _) = pay(&p, "certificate_duplicate", seg, None);
        assert_eq!(payment.kopecks, 35_000, "{seg}");
    }
    // another fee, other exemptions
    let card = p.fee("social_card_reissue").unwrap();
    assert!(matches!(
        p.offer(card, "web:x", "family", None, 0).unwrap(),
        Offer::Exempt(_)
    ));
}

#[test]
fn a_confirmation_happens_once_with_its_application_status_and_notice() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Storage> = Arc::new(Store::open(dir.path()).unwrap());
    let p = payments();
    let (payment, _, op) = pay(&p, "certificate_duplicate", "universal", Some("7654321"));
    let app = Application {
        number: "7654321".into(),
        user: "web:client-1".into(),
        service: "certificate_duplicate".into(),
        fields: Default::default(),
        created: 1_764_000_000,
        paid_at: None,
    };
    store
        .write_records(vec![
            op,
            otklik::store::RecordOp::put(applications::KIND, "7654321", &app).unwrap(),
        ])
        .unwrap()
        .unwrap();

    // 8 confirmations at once (a webhook sent twice, an admin's click…): one wins
    let results: Vec<Confirmation> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (store, id) = (store.clone(), payment.id.clone());
                sc.spawn(move || {
                    payments::confirm(store.as_ref(), &id, 1_764_150_000 + i, "gateway").unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let confirmed: Vec<&Confirmation> = results
        .iter()
        .filter(|c| matches!(c, Confirmation::Confirmed(_)))
        .collect();
    assert_eq!(confirmed.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .all(|c| matches!(c, Confirmation::Confirmed(_) | Confirmation::AlreadyPaid(_))));
    let Confirmation::Confirmed(paid) = confirmed[0] else {
        unreachable!()
    };

    let stored: Payment = store
        .record_of(payments::KIND, &payment.id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.paid_at, paid.paid_at);
    assert_eq!(stored.confirmed_by.as_deref(), Some("gateway"));
    let a: Application = store
        .record_of(applications::KIND, "7654321")
        .unwrap()
        .unwrap();
    assert_eq!(a.paid_at, paid.paid_at, "the application is marked paid");
    let st: AppStatus = store.record_of("status", "7654321").unwrap().unwrap();
    assert!(st.details.contains("Госпошлина оплачена"), "{st:?}");
    let sent: Vec<(String, Notice)> = store.records_of(notices::KIND, "").unwrap();
    assert_eq!(sent.len(), 1, "one notice: {sent:?}");
    let n = &sent[0].1;
    assert_eq!(n.category, Category::Payment);
    assert_eq!(n.user, "web:client-1");
    assert!(
        n.text.contains("350 рублей") && n.text.contains("Заявление 7654321"),
        "{}",
        n.text
    );
    assert!(n.reason.contains(&payment.id));

    // again: nothing changes
    let again = payments::confirm(store.as_ref(), &payment.id, 1_764_160_000, "admin").unwrap();
    assert!(matches!(again, Confirmation::AlreadyPaid(ref x) if x.paid_at == paid.paid_at));
    assert_eq!(store.records(notices::KIND, "").unwrap().len(), 1);
    assert_eq!(
        payments::confirm(store.as_ref(), &payments::new_id(), 0, "admin").unwrap(),
        Confirmation::NotFound
    );
}

/// A web chat client pays for a duplicate: the bot's turn with the QR code
/// (the message as the widget receives it).
async fn web_payment(base: &str, client: &str) -> Value {
    use common::{is_bot, send, until, ws};
    let mut w = ws(base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    for (i, text) in ["сколько стоит дубликат удостоверения", "да", "пропустить"]
        .iter()
        .enumerate()
    {
        send(
            &mut w,
            json!({"type": "text", "id": format!("m{i}"), "text": text}),
        )
        .await;
        let got = until(&mut w, is_bot).await;
        if i == 2 {
            return got.last().unwrap().clone();
        }
    }
    unreachable!()
}

/// The payment id in a turn's link to the demo payment page.
fn payment_id(msg: &Value) -> String {
    let links = msg["links"].as_array().expect("links");
    let url = links
        .iter()
        .filter_map(|l| l["url"].as_str())
        .find(|u| u.starts_with(&format!("{PUBLIC}/pay/")))
        .unwrap_or_else(|| panic!("a payment link in {msg}"));
    let id = url.rsplit('/').next().unwrap().to_string();
    assert!(payments::valid_id(&id), "{id}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_admin_confirm_over_http_and_the_qr_in_the_web_chat() {
    let s = common::start_server(&[
        ("OTKLIK_PAYMENTS_WEBHOOK_SECRET", SECRET.to_string()),
        ("OTKLIK_PAYMENTS_PUBLIC_URL", PUBLIC.to_string()),
    ]);
    common::wait_ready(&s.base).await;

    // The QR code reaches the web client as a PNG it can show.
    let msg = web_payment(&s.base, "payer-0001").await;
    assert!(
        msg["text"].as_str().unwrap().contains("350 рублей"),
        "{msg}"
    );
    assert_eq!(msg["image"]["mime"], "image/png");
    assert!(msg["image"]["alt"].as_str().unwrap().contains("QR-код"));
    // the picture right after «наведите камеру на QR-код», before what follows
    let paragraphs: Vec<&str> = msg["text"].as_str().unwrap().split("\n\n").collect();
    let at = msg["image"]["at"].as_u64().expect("the image's place") as usize;
    assert!(
        paragraphs[at - 1].contains("QR-код") && at < paragraphs.len(),
        "{at}: {paragraphs:?}"
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(msg["image"]["base64"].as_str().unwrap())
        .unwrap();
    let (header, f) = common::qr_fields(&common::read_qr(&png));
    assert_eq!((header.as_str(), f["Sum"].as_str()), ("ST00012", "35000"));
    let id = payment_id(&msg);

    let http = reqwest::Client::new();
    let hook = format!("{}/api/v1/events/payment", s.base);
    let body = json!({"id": id, "status": "paid"}).to_string();
    let post = |sig: Option<String>, body: String| {
        let mut r = http
            .post(&hook)
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = sig {
            r = r.header("X-Signature", sig);
        }
        r.send()
    };
    // no signature, a wrong one, one made with another key: refused, nothing paid
    for sig in [
        None,
        Some("deadbeef".to_string()),
        Some(otklik::http::payments::sign(
            "another-secret",
            body.as_bytes(),
        )),
        Some(otklik::http::payments::sign(
            SECRET,
            b"{\"id\": \"other\", \"status\": \"paid\"}",
        )),
    ] {
        let r = post(sig.clone(), body.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "signature {sig:?}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains("Подпись"),
            "{e}"
        );
    }
    let page = format!("{}/pay/{id}", s.base);
    let t = reqwest::get(&page).await.unwrap().text().await.unwrap();
    assert!(
        t.contains("ещё не поступила"),
        "unpaid after refused webhooks: {t}"
    );

    // a good signature confirms once; a repeat changes nothing
    let good = otklik::http::payments::sign(SECRET, body.as_bytes());
    let r = post(Some(good.clone()), body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "confirmed", "{v}");
    let paid_at = v["paid_at"].clone();
    let r = post(Some(format!("sha256={good}")), body.clone())
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].as_str(), &v["paid_at"]),
        (Some("already_paid"), &paid_at),
        "{v}"
    );
    let t = reqwest::get(&page).await.unwrap().text().await.unwrap();
    assert!(t.contains("Оплата получена"), "{t}");

    // an unknown payment, a bad body, a body over the limit
    let unknown = json!({"id": payments::new_id(), "status": "paid"}).to_string();
    let r = post(
        Some(otklik::http::payments::sign(SECRET, unknown.as_bytes())),
        unknown,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let bad = "not json".to_string();
    let r = post(
        Some(otklik::http::payments::sign(SECRET, bad.as_bytes())),
        bad,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let huge = format!(
        "{{\"id\": \"{id}\", \"status\": \"paid\", \"pad\": \"{}\"}}",
        "x".repeat(20_000)
    );
    let r = post(
        Some(otklik::http::payments::sign(SECRET, huge.as_bytes())),
        huge,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 413, "the webhook's body is bounded");
    assert_eq!(
        reqwest::get(format!("{}/pay/{}", s.base, payments::new_id()))
            .await
            .unwrap()
            .status(),
        404
    );

    // The demo provider's admin confirmation needs the admin token.
    let msg = web_payment(&s.base, "payer-0002").await;
    let id2 = payment_id(&msg);
    assert_ne!(id, id2);
    let confirm = format!("{}/api/v1/admin/payments/{id2}/confirm", s.base);
    let r = http.post(&confirm).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&confirm)
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let t = reqwest::get(format!("{}/pay/{id2}", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(t.contains("ещё не поступила"), "{t}");
    let r = http
        .post(&confirm)
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "confirmed");
    let r = http
        .post(&confirm)
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "already_paid");

    // What the server stored: two paid payments and one notice each.
    let data = s.data_path().to_path_buf();
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let st: Arc<dyn Storage> = Arc::new(Store::open(&data).unwrap());
    let paid: Vec<(String, Payment)> = st.records_of(payments::KIND, "").unwrap();
    assert_eq!(paid.len(), 2);
    assert!(paid.iter().all(|(_, p)| p.paid_at.is_some()));
    let sent: Vec<(String, Notice)> = st.records_of(notices::KIND, "").unwrap();
    assert_eq!(sent.len(), 2, "one notice per payment: {sent:?}");
    assert!(sent
        .iter()
        .all(|(_, n)| n.category == Category::Payment && n.user.starts_with("web:")));
}

/// The http provider against a gateway double on loopback: the payment is
/// created there (amount in kopecks, our id) and its link comes back; a
/// gateway that does not answer leaves the QR code and no link.
#[test]
fn the_http_provider_creates_the_payment_at_the_gateway() {
    use axum::routing::post;
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/payments",
        post(move |axum::Json(v): axum::Json<Value>| {
            let s2 = s2.clone();
            async move {
                let url = format!(
                    "https://pay.example.ru/checkout/{}",
                    v["id"].as_str().unwrap()
                );
                s2.lock().unwrap().push(v);
                axum::Json(json!({"url": url}))
            }
        }),
    );
    let addr = common::serve_in_background(app);
    let mut cfg = common::config();
    cfg.payments.provider = "http".into();
    cfg.payments.url = format!("http://{addr}/payments");
    let p = Payments::new(&cfg.fees, &cfg.payments).unwrap();
    let (payment, png, _) = pay(&p, "archive_copy", "universal", None);
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], payment.id.as_str());
    assert_eq!(sent[0]["amount"], 20_050);
    assert_eq!(sent[0]["currency"], "RUB");
    assert_eq!(
        payment.link.as_deref(),
        Some(format!("https://pay.example.ru/checkout/{}", payment.id).as_str())
    );
    assert!(common::read_qr(&png).contains("|Sum=20050|"));

    // the gateway is down: no link, the QR code still serves
    cfg.payments.url = format!("http://127.0.0.1:{}/payments", common::free_port());
    let p = Payments::new(&cfg.fees, &cfg.payments).unwrap();
    let (payment, png, _) = pay(&p, "archive_copy", "universal", None);
    assert_eq!(payment.link, None);
    assert!(common::read_qr(&png).starts_with("ST00012|"));
}

/// On voice the robot reads the details aloud: the amount in words with
/// roubles and kopecks, each code named, its digits in groups (through the
/// voice channel's own rendering, as the synthesiser gets it).
#[test]
fn voice_reads_the_amount_in_words_and_dictates_the_details() {
    use otklik::dialog::Input;
    let dir = tempfile::tempdir().unwrap();
    let (e, _clock) = common::engine_at(dir.path(), common::WORKDAY);
    for t in ["сколько стоит копия документа из личного дела", "да"]
    {
        e.handle("voice", "caller", Input::Text(t.into())).unwrap();
    }
    let turn = e
        .handle("voice", "caller", Input::Text("пропустить".into()))
        .unwrap();
    assert!(turn.image.is_none(), "no picture on voice");
    let spoken = otklik::channels::voice::say::speakable(&turn.text);
    for want in [
        "двести рублей пятьдесят копеек",
        "код банка, бэ и ка, ноль один четыре, пятьсот двадцать пять, ноль ноль ноль",
        "счёт получателя ноль три один, ноль ноль шесть",
    ] {
        assert!(
            spoken.to_lowercase().contains(want),
            "{want:?} not in {spoken:?}"
        );
    }
    assert!(
        !spoken.chars().any(|c| c.is_ascii_digit()),
        "all in words: {spoken}"
    );
}
