//! Paying a state fee in the dialog (the form action `pay_fee`): the fee of
//! the chosen service for the client's segment, or why it is free for them;
//! the recipient's details (written, or dictated on voice: digits in groups,
//! the amount in words), the payment's QR code as the turn's image, and the
//! payment link. The payment record is committed with the turn.

use anyhow::{Context, Result};
use base64::Engine as _;

use super::graph::Node;
use super::session::Session;
use super::turn::Image;
use super::{fill, Engine, Out};
use crate::nlu::kb::Link;
use crate::services::payments::{dictated, rubles, Offer, PayOffer};

impl Engine {
    /// The services with a fee, as a form field's choices (id, name).
    pub(super) fn fee_choices(&self) -> Vec<(String, String)> {
        self.pay
            .fees
            .service
            .iter()
            .map(|f| (f.id.clone(), f.name.clone()))
            .collect()
    }

    pub(super) fn pay_fee(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        let next = node.next.clone().context("form without next")?;
        let id = s.slots.get("service").cloned().unwrap_or_default();
        let Some(fee) = self.pay.fee(&id) else {
            // the settings changed since the choice: ask again from the start
            out.say(node.empty.clone().unwrap_or_else(|| self.p("choose_one")));
            self.clear_form(s);
            return self.enter(s, &next, out);
        };
        let application = s.slots.get("number").cloned();
        let offer = self
            .pay
            .offer(fee, &s.key(), &s.segment, application, self.now())?;
        let style_of = s.style.clone().unwrap_or_else(|| s.channel.clone());
        let spoken = self.graph.channel(&style_of).spoken;
        match offer {
            Offer::Exempt(reason) => {
                out.events.push("fee_exempt".into());
                out.say(fill(
                    &self.p("fee_free"),
                    &[("service", fee.name.clone()), ("reason", reason)],
                ));
            }
            Offer::Pay(offer) => {
                let PayOffer {
                    payment,
                    recipient: r,
                    png,
                    op,
                    ..
                } = *offer;
                out.events.push("payment_created".into());
                let amount = rubles(payment.kopecks);
                out.say(fill(
                    &self.p("fee_amount"),
                    &[("service", fee.name.clone()), ("amount", amount.clone())],
                ));
                // digits dictated in groups on voice, as written elsewhere
                let d = |v: &str| if spoken { dictated(v) } else { v.to_string() };
                let vars = [
                    ("name", r.name.clone()),
                    ("inn", d(&r.inn)),
                    ("kpp", d(&r.kpp)),
                    ("account", d(&r.personal_acc)),
                    ("bank", r.bank_name.clone()),
                    ("bic", d(&r.bic)),
                    ("corr", d(&r.corresp_acc)),
                    ("kbk", d(&r.kbk)),
                    ("oktmo", d(&r.oktmo)),
                    ("purpose", payment.purpose.clone()),
                    ("amount", amount.clone()),
                ];
                let details = if spoken {
                    "fee_details_spoken"
                } else {
                    "fee_details"
                };
                out.say(fill(&self.p(details), &vars));
                if !spoken {
                    out.say(self.p("fee_qr"));
                    out.show(Image {
                        mime: "image/png".into(),
                        base64: base64::engine::general_purpose::STANDARD.encode(&png),
                        alt: format!("QR-код для оплаты: {}, {amount}", fee.name),
                        at: None,
                    });
                }
                if let Some(url) = &payment.link {
                    out.say(self.p("fee_link"));
                    out.links.push(Link {
                        title: "Оплатить онлайн".into(),
                        url: url.clone(),
                    });
                }
                out.say(self.p("fee_paid_later"));
                out.writes.records.push(op);
            }
        }
        self.clear_form(s);
        self.enter(s, &next, out)
    }
}
