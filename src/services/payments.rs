//! Paying state fees: the payment documents' QR code (GOST R 56042-2014) and
//! its PNG, the payment record (kind "payment", an unguessable id), the
//! providers that make a payment link (demo: this server's page; http: a
//! payment gateway), and the confirmation, exactly once: the payment marked
//! paid, its application updated and a notice queued, in one commit. Card
//! data never passes through here: the client pays at the bank or gateway.

use crate::config::{Fee, FeesConfig, PaymentsConfig, Recipient};
use crate::services::{applications, notices, status};
use crate::store::{AppStatus, Conflict, RecordOp, Storage};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The record kind of payments (key: the payment's id).
pub const KIND: &str = "payment";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// 32 hex digits from a CSPRNG: a link with it cannot be guessed.
    pub id: String,
    /// The client: `channel:user`.
    pub user: String,
    /// The fee's id (`[[fees.service]] id`).
    pub service: String,
    /// The fee's name, as the client chose it.
    pub name: String,
    pub purpose: String,
    pub kopecks: u64,
    /// The application the fee is for, when the client named one.
    #[serde(default)]
    pub application: Option<String>,
    /// Where the client can pay online (the provider's link).
    #[serde(default)]
    pub link: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the confirmation; None while unpaid.
    #[serde(default)]
    pub paid_at: Option<i64>,
    /// Who confirmed it: "admin" or "gateway".
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

/// A new payment id: 128 random bits, hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `id` looks like one of ours (32 lower-case hex digits).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// The QR code's text for paying `kopecks` to `r` for `purpose`: the
/// payment documents' format of GOST R 56042-2014, `ST0001` + `2` (UTF-8),
/// then `|Key=Value` pairs, the required ones (Name, PersonalAcc, BankName,
/// BIC, CorrespAcc) first; Sum in kopecks.
pub fn qr_payload(r: &Recipient, kopecks: u64, purpose: &str) -> String {
    let fields: [(&str, String); 11] = [
        ("Name", r.name.clone()),
        ("PersonalAcc", r.personal_acc.clone()),
        ("BankName", r.bank_name.clone()),
        ("BIC", r.bic.clone()),
        ("CorrespAcc", r.corresp_acc.clone()),
        ("Sum", kopecks.to_string()),
        ("Purpose", purpose.to_string()),
        ("PayeeINN", r.inn.clone()),
        ("KPP", r.kpp.clone()),
        ("CBC", r.kbk.clone()),
        ("OKTMO", r.oktmo.clone()),
    ];
    let mut s = String::from("ST00012");
    for (k, v) in fields {
        // `|` separates fields; the settings refuse it, and it never gets here.
        s.push('|');
        s.push_str(k);
        s.push('=');
        s.push_str(&v.replace('|', " "));
    }
    s
}

/// Pixels per module and the quiet zone around the code (modules).
const SCALE: usize = 6;
const QUIET: usize = 4;

/// The QR code of `text` as a greyscale PNG (error correction M, which bank
/// apps read from a screen).
pub fn qr_png(text: &str) -> Result<Vec<u8>> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .context("the payment's QR code")?;
    let w = code.width();
    let colors = code.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut px = vec![255u8; side * side];
    for y in 0..w {
        for x in 0..w {
            if colors[y * w + x] == qrcode::Color::Dark {
                for dy in 0..SCALE {
                    let row = (y + QUIET) * SCALE + dy;
                    let from = row * side + (x + QUIET) * SCALE;
                    px[from..from + SCALE].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(&px)?;
    }
    Ok(out)
}

/// The form of a counted noun: 1 → one, 2–4 → few, else many.
fn plural<'a>(n: u64, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    let (d, h) = (n % 10, n % 100);
    if (11..=14).contains(&h) {
        many
    } else if d == 1 {
        one
    } else if (2..=4).contains(&d) {
        few
    } else {
        many
    }
}

/// An amount as people say it: «350 рублей», «200 рублей 50 копеек»
/// (the voice robot reads the numbers as words).
pub fn rubles(kopecks: u64) -> String {
    let (r, k) = (kopecks / 100, kopecks % 100);
    let mut s = format!("{r} {}", plural(r, "рубль", "рубля", "рублей"));
    if k > 0 {
        s.push_str(&format!(
            " {k} {}",
            plural(k, "копейка", "копейки", "копеек")
        ));
    }
    s
}

/// Digits in groups of three, separated so that each is heard and can be
/// written down («031, 006, 430, …»).
pub fn dictated(digits: &str) -> String {
    let d: Vec<char> = digits.chars().collect();
    // no lone digit at the end: 3…3 2 2 instead of 3…3 1
    let tail = if d.len() % 3 == 1 && d.len() >= 4 {
        4
    } else {
        0
    };
    let (head, rest) = d.split_at(d.len() - tail);
    head.chunks(3)
        .chain(rest.chunks(2))
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment gateway did not answer: {0}")]
    Unavailable(String),
}

/// Makes a payment link (the payment record itself is the caller's).
pub trait PaymentProvider: Send + Sync {
    /// The link where the client pays `p` online, if there is one.
    fn create(&self, p: &Payment) -> Result<Option<String>, PaymentError>;
}

/// The demo provider: the link is this server's page of the payment; an
/// administrator confirms it.
pub struct DemoPayments {
    public_url: String,
}

impl PaymentProvider for DemoPayments {
    fn create(&self, p: &Payment) -> Result<Option<String>, PaymentError> {
        Ok((!self.public_url.is_empty())
            .then(|| format!("{}/pay/{}", self.public_url.trim_end_matches('/'), p.id)))
    }
}

/// A payment gateway: `POST {url}` with
/// `{"id", "amount" (kopecks), "currency": "RUB", "purpose", "service"}`
/// answers `{"url": …}`, the page where the client pays; the gateway then
/// calls the signed webhook with `{"id", "status": "paid"}`.
pub struct HttpPayments {
    url: String,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Created {
    url: String,
}

impl PaymentProvider for HttpPayments {
    fn create(&self, p: &Payment) -> Result<Option<String>, PaymentError> {
        let unavailable = |e: String| PaymentError::Unavailable(e);
        let body = serde_json::json!({
            "id": p.id,
            "amount": p.kopecks,
            "currency": "RUB",
            "purpose": p.purpose,
            "service": p.service,
        });
        let mut resp = self
            .agent
            .post(&self.url)
            .send_json(&body)
            .map_err(|e| unavailable(e.to_string()))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            return Err(unavailable(format!("{} answered HTTP {code}", self.url)));
        }
        let c: Created = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_json()
            .map_err(|e| unavailable(format!("bad JSON from {}: {e}", self.url)))?;
        if !c.url.starts_with("https://") && !c.url.starts_with("http://") {
            return Err(unavailable(format!(
                "the gateway's link is no web address: {:?}",
                c.url
            )));
        }
        Ok(Some(c.url))
    }
}

pub fn provider(cfg: &PaymentsConfig) -> Result<Box<dyn PaymentProvider>> {
    cfg.validate()?;
    Ok(match cfg.provider.as_str() {
        "http" => Box::new(HttpPayments {
            url: cfg.url.clone(),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
                .http_status_as_error(false)
                .build()
                .into(),
        }),
        _ => Box::new(DemoPayments {
            public_url: cfg.public_url.clone(),
        }),
    })
}

/// The fees and the provider the dialog uses.
pub struct Payments {
    pub fees: FeesConfig,
    pub provider: Box<dyn PaymentProvider>,
}

/// What the dialog offers a client for a fee.
pub enum Offer {
    /// The client's segment pays nothing; the reason.
    Exempt(String),
    Pay(Box<PayOffer>),
}

/// A payment made (not yet stored: its record is `op`), its recipient, and
/// its QR code's text and PNG.
pub struct PayOffer {
    pub payment: Payment,
    pub recipient: Recipient,
    pub qr_text: String,
    pub png: Vec<u8>,
    pub op: RecordOp,
}

impl Payments {
    pub fn new(fees: &FeesConfig, cfg: &PaymentsConfig) -> Result<Self> {
        Ok(Self {
            fees: fees.clone(),
            provider: provider(cfg)?,
        })
    }

    pub fn fee(&self, id: &str) -> Option<&Fee> {
        self.fees.fee(id)
    }

    /// The offer of `fee` to `user` of `segment`: nothing to pay, or a new
    /// payment with its QR code. A gateway that does not answer leaves the
    /// payment without a link (the QR code and details still serve).
    pub fn offer(
        &self,
        fee: &Fee,
        user: &str,
        segment: &str,
        application: Option<String>,
        now: i64,
    ) -> Result<Offer> {
        if fee.is_exempt(segment) {
            return Ok(Offer::Exempt(fee.exempt_reason.clone()));
        }
        let kopecks = fee.kopecks()?;
        let recipient = self.fees.recipient_of(fee).clone();
        let mut payment = Payment {
            id: new_id(),
            user: user.to_string(),
            service: fee.id.clone(),
            name: fee.name.clone(),
            purpose: fee.purpose.clone(),
            kopecks,
            application: application.filter(|a| !a.is_empty()),
            link: None,
            created: now,
            paid_at: None,
            confirmed_by: None,
        };
        match self.provider.create(&payment) {
            Ok(link) => payment.link = link,
            Err(e) => tracing::warn!("payments: {e}; the client gets the QR code only"),
        }
        let qr_text = qr_payload(&recipient, kopecks, &fee.purpose);
        let png = qr_png(&qr_text)?;
        let op = RecordOp::put(KIND, &payment.id, &payment)?;
        Ok(Offer::Pay(Box::new(PayOffer {
            payment,
            recipient,
            qr_text,
            png,
            op,
        })))
    }
}

/// What a confirmation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// Marked paid now (with its application and notice).
    Confirmed(Payment),
    /// Paid before: nothing changed.
    AlreadyPaid(Payment),
    NotFound,
}

/// The client's notice of a confirmed payment (Russian).
pub fn paid_text(p: &Payment) -> String {
    let mut t = format!("Оплата получена: {}, {}.", p.name, rubles(p.kopecks));
    if let Some(a) = &p.application {
        t.push_str(&format!(" Заявление {a}: госпошлина оплачена."));
    }
    t
}

/// Confirms payment `id` exactly once: the payment marked paid (a swap over
/// the record as read, so two confirmations at once make one), its
/// application's `paid_at` and status, and the client's notice of category
/// Payment, all in one commit. `by`: "admin" or "gateway".
pub fn confirm(
    store: &(dyn Storage + 'static),
    id: &str,
    now: i64,
    by: &str,
) -> Result<Confirmation> {
    for _ in 0..5 {
        let Some(raw) = store.record(KIND, id)? else {
            return Ok(Confirmation::NotFound);
        };
        let mut p: Payment = serde_json::from_slice(&raw).context("a payment record")?;
        if p.paid_at.is_some() {
            return Ok(Confirmation::AlreadyPaid(p));
        }
        p.paid_at = Some(now);
        p.confirmed_by = Some(by.to_string());
        let mut ops = vec![RecordOp::Swap {
            kind: KIND.into(),
            key: id.into(),
            expected: Some(raw),
            value: Some(serde_json::to_vec(&p)?),
        }];
        if let Some(number) = &p.application {
            if let Some(mut a) =
                store.record_of::<applications::Application>(applications::KIND, number)?
            {
                a.paid_at = Some(now);
                ops.push(RecordOp::put(applications::KIND, number, &a)?);
            }
            let current = match store.record_of::<AppStatus>(status::STATUS_KIND, number)? {
                Some(s) => Some(s),
                None => store.status(number)?,
            };
            let st = AppStatus {
                status: current
                    .map(|s| s.status)
                    .unwrap_or_else(|| "на рассмотрении".into()),
                details: "Госпошлина оплачена.".into(),
            };
            ops.push(status::set_status(number, &st)?);
        }
        ops.extend(notices::enqueue(
            store,
            now,
            &p.user,
            notices::Category::Payment,
            &paid_text(&p),
            &format!("payment {id} confirmed by {by}"),
        )?);
        match store.write_records(ops)? {
            Ok(()) => return Ok(Confirmation::Confirmed(p)),
            // changed meanwhile (confirmed by another call): read it again
            Err(Conflict::Changed) => continue,
            Err(e) => anyhow::bail!("confirming payment {id}: {e}"),
        }
    }
    anyhow::bail!("confirming payment {id}: the record keeps changing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_digits_are_said_plainly() {
        assert_eq!(rubles(35_000), "350 рублей");
        assert_eq!(rubles(20_050), "200 рублей 50 копеек");
        assert_eq!(rubles(2_101), "21 рубль 1 копейка");
        assert_eq!(rubles(2_202), "22 рубля 2 копейки");
        assert_eq!(rubles(1_100), "11 рублей");
        assert_eq!(
            dictated("40102810545370000081"),
            "401, 028, 105, 453, 700, 000, 81"
        );
        assert_eq!(dictated("5024000010"), "502, 400, 00, 10");
        assert_eq!(dictated("46000000"), "460, 000, 00");
    }

    #[test]
    fn ids_are_unguessable_hex() {
        let (a, b) = (new_id(), new_id());
        assert!(valid_id(&a) && valid_id(&b) && a != b);
        assert!(!valid_id("../etc") && !valid_id(&a.to_uppercase()));
    }
}
