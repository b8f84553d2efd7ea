//! `[fees]` and `[payments]` in otklik.toml: the state fees a client can pay
//! through the bot (amount, purpose, the recipient's bank details, the
//! segments that pay nothing and why), and the payment provider that makes
//! a payment link and takes its confirmation.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// `[fees]`: the fees by service, and the recipient they are paid to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeesConfig {
    /// The recipient of every fee that names none of its own.
    pub recipient: Recipient,
    /// `[[fees.service]]`, in the order they are offered.
    pub service: Vec<Fee>,
}

/// A payment's recipient, as the payment documents' QR code
/// (GOST R 56042-2014) names its fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipient {
    /// Name: the recipient (for the treasury: «УФК по … (ministry)»).
    pub name: String,
    /// PersonalAcc: the recipient's account, 20 digits.
    pub personal_acc: String,
    /// BankName: the recipient's bank.
    pub bank_name: String,
    /// BIC: the bank's identification code, 9 digits.
    pub bic: String,
    /// CorrespAcc: the bank's correspondent account, 20 digits (or "0").
    pub corresp_acc: String,
    /// PayeeINN: the recipient's taxpayer number, 10 digits.
    pub inn: String,
    /// KPP: the recipient's registration reason code, 9 digits.
    pub kpp: String,
    /// CBC (КБК): the budget classification code, 20 digits.
    pub kbk: String,
    /// OKTMO: the municipality code, 8 or 11 digits.
    pub oktmo: String,
}

/// `[[fees.service]]`: one service with a fee.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fee {
    /// A stable id (the choice's id, the payment's `service`).
    pub id: String,
    /// What the client picks (Russian).
    pub name: String,
    /// Roubles, written with a point: "350" or "350.50" (no floats: exact).
    pub amount: String,
    /// Purpose: what the payment is for, as the bank shows it.
    pub purpose: String,
    /// Segments that pay nothing («льготникам бесплатно»).
    pub exempt: Vec<String>,
    /// Why they pay nothing, said to them (Russian, plain words).
    pub exempt_reason: String,
    /// The recipient when it is not `[fees] recipient`.
    pub recipient: Option<Recipient>,
}

impl Fee {
    /// The amount in kopecks.
    pub fn kopecks(&self) -> Result<u64> {
        parse_kopecks(&self.amount)
    }

    /// Whether a client of `segment` pays nothing.
    pub fn is_exempt(&self, segment: &str) -> bool {
        self.exempt.iter().any(|s| s == segment)
    }
}

impl FeesConfig {
    pub fn fee(&self, id: &str) -> Option<&Fee> {
        self.service.iter().find(|f| f.id == id)
    }

    /// The recipient of `fee`.
    pub fn recipient_of<'a>(&'a self, fee: &'a Fee) -> &'a Recipient {
        fee.recipient.as_ref().unwrap_or(&self.recipient)
    }

    /// Every fee's amount, recipient and exemptions are checked at start,
    /// so a typo is an error with the service's id, not a wrong QR code.
    pub fn validate(&self, segments: &[String]) -> Result<()> {
        let mut ids = std::collections::BTreeSet::new();
        for f in &self.service {
            let at = format!("fees.service `{}`", f.id);
            if f.id.is_empty() || !f.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("{at}: id must be letters, digits and _");
            }
            if !ids.insert(&f.id) {
                bail!("{at}: the id appears twice");
            }
            if f.name.trim().is_empty() || f.purpose.trim().is_empty() {
                bail!("{at}: name and purpose are required");
            }
            let k = f
                .kopecks()
                .map_err(|e| anyhow::anyhow!("{at}: amount {:?}: {e}", f.amount))?;
            if k == 0 {
                bail!("{at}: amount must be above zero (a free service needs no fee)");
            }
            if let Some(bad) = f.exempt.iter().find(|s| !segments.contains(s)) {
                bail!("{at}: exempt segment `{bad}` is not in kb.segments");
            }
            if !f.exempt.is_empty() && f.exempt_reason.trim().is_empty() {
                bail!("{at}: exempt segments need exempt_reason (said to the client)");
            }
            check_recipient(self.recipient_of(f)).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            for text in [&f.name, &f.purpose, &f.exempt_reason] {
                if text.contains('|') {
                    bail!("{at}: `|` separates the QR code's fields, use another sign");
                }
            }
        }
        Ok(())
    }
}

fn check_recipient(r: &Recipient) -> Result<()> {
    let digits = |what: &str, v: &str, lens: &[usize]| -> Result<()> {
        if !lens.contains(&v.len()) || !v.chars().all(|c| c.is_ascii_digit()) {
            bail!("recipient {what} must be {lens:?} digits, got {v:?}");
        }
        Ok(())
    };
    if r.name.trim().is_empty() || r.bank_name.trim().is_empty() {
        bail!("recipient name and bank_name are required");
    }
    if [&r.name, &r.bank_name].iter().any(|t| t.contains('|')) {
        bail!("recipient: `|` separates the QR code's fields, use another sign");
    }
    digits("personal_acc", &r.personal_acc, &[20])?;
    digits("bic", &r.bic, &[9])?;
    if r.corresp_acc != "0" {
        digits("corresp_acc", &r.corresp_acc, &[20])?;
    }
    digits("inn", &r.inn, &[10, 12])?;
    digits("kpp", &r.kpp, &[9])?;
    digits("kbk", &r.kbk, &[20])?;
    digits("oktmo", &r.oktmo, &[8, 11])?;
    Ok(())
}

/// "350", "350.5", "350.50" or "350,50" roubles → kopecks.
pub fn parse_kopecks(s: &str) -> Result<u64> {
    let s = s.trim().replace(',', ".");
    let (r, k) = s.split_once('.').unwrap_or((&s, ""));
    if r.is_empty()
        || r.len() > 9
        || k.len() > 2
        || !r.chars().chain(k.chars()).all(|c| c.is_ascii_digit())
    {
        bail!("write roubles with at most two digits of kopecks, e.g. 350 or 350.50");
    }
    let kop = match k.len() {
        0 => 0,
        1 => k.parse::<u64>()? * 10,
        _ => k.parse::<u64>()?,
    };
    Ok(r.parse::<u64>()? * 100 + kop)
}

/// `[payments]`: the provider of payment links and confirmations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// "demo" (an administrator confirms: `POST /api/v1/admin/payments/{id}/confirm`)
    /// or "http" (a payment gateway: it makes the link, a signed webhook confirms).
    pub provider: String,
    /// http: where a payment is created (`POST`, JSON).
    pub url: String,
    /// http: how long to wait for the gateway, milliseconds.
    pub timeout_ms: u64,
    /// The key of the webhook's HMAC-SHA-256 signature
    /// (OTKLIK_PAYMENTS_WEBHOOK_SECRET); empty: the webhook refuses everyone.
    pub webhook_secret: String,
    /// The largest webhook body, bytes.
    pub webhook_max_bytes: usize,
    /// demo: the address of this server as clients see it; the payment
    /// link is `{public_url}/pay/{id}`. Empty: no link, only the QR code.
    pub public_url: String,
    /// Payment events (webhooks, admin confirmations) per caller address and minute.
    pub per_address_per_minute: u32,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            provider: "demo".into(),
            url: String::new(),
            timeout_ms: 5000,
            webhook_secret: String::new(),
            webhook_max_bytes: 16 * 1024,
            public_url: String::new(),
            per_address_per_minute: 120,
        }
    }
}

impl PaymentsConfig {
    pub fn validate(&self) -> Result<()> {
        match self.provider.as_str() {
            "demo" => {}
            "http" => {
                if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                    bail!("payments.url must start with http:// or https:// for the http provider, got {:?}", self.url);
                }
            }
            other => bail!("payments.provider must be \"demo\" or \"http\", got {other:?}"),
        }
        if self.webhook_max_bytes == 0 || self.per_address_per_minute == 0 {
            bail!(
                "payments.webhook_max_bytes and payments.per_address_per_minute must be positive"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_kopecks() {
        assert_eq!(parse_kopecks("350").unwrap(), 35_000);
        assert_eq!(parse_kopecks("350.5").unwrap(), 35_050);
        assert_eq!(parse_kopecks("200,05").unwrap(), 20_005);
        assert!(parse_kopecks("1.234").is_err());
        assert!(parse_kopecks("-5").is_err());
        assert!(parse_kopecks("").is_err());
    }
}
