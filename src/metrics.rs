//! Prometheus metrics at `/metrics`: conversation turns, classifier
//! decisions, handoffs to people and turn latency per channel, plus HTTP
//! requests by route and status. The channels' turn service and the HTTP
//! middleware record here; `/metrics` renders it.

use crate::dialog::Turn;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Channel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    signins: Family<ReasonLabel, Counter>,
    turns: Family<Channel, Counter>,
    decisions: Family<DecisionLabel, Counter>,
    handoffs: Family<Channel, Counter>,
    latency: Family<Channel, Histogram>,
    requests: Family<RouteLabel, Counter>,
    voice_calls: Gauge,
    ari_connected: Gauge,
    speech_ready: Gauge,
    prompts_ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("otklik");
        let turns = Family::<Channel, Counter>::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        let handoffs = Family::<Channel, Counter>::default();
        let latency = Family::<Channel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.002, 2.0, 12))
        });
        let requests = Family::<RouteLabel, Counter>::default();
        let signins = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "signin_refusals",
            "Operator sign-ins refused, by reason (bad_credentials, locked, busy)",
            signins.clone(),
        );
        registry.register("turns", "Conversation turns answered", turns.clone());
        registry.register(
            "decisions",
            "Classifier decisions on citizens' questions",
            decisions.clone(),
        );
        registry.register(
            "handoffs",
            "Conversations handed to a person",
            handoffs.clone(),
        );
        registry.register(
            "turn_latency_seconds",
            "Time to answer a turn",
            latency.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let voice_calls = Gauge::default();
        let ari_connected = Gauge::default();
        let speech_ready = Gauge::default();
        let prompts_ready = Gauge::default();
        registry.register(
            "voice_prompts_ready",
            "1 once the graph's fixed prompts are synthesised",
            prompts_ready.clone(),
        );
        registry.register(
            "speech_ready",
            "1 once the speech recogniser is loaded",
            speech_ready.clone(),
        );
        registry.register(
            "voice_calls",
            "Voice calls in progress (call tasks running)",
            voice_calls.clone(),
        );
        registry.register(
            "voice_ari_connected",
            "1 while the events socket to Asterisk's ARI is connected",
            ari_connected.clone(),
        );
        Self {
            registry,
            voice_calls,
            ari_connected,
            speech_ready,
            prompts_ready,
            signins,
            turns,
            decisions,
            handoffs,
            latency,
            requests,
        }
    }
}

impl Metrics {
    pub fn turn(&self, channel: &str, t: &Turn, seconds: f64) {
        let ch = Channel {
            channel: channel.to_string(),
        };
        self.turns.get_or_create(&ch).inc();
        self.latency.get_or_create(&ch).observe(seconds);
        for e in &t.events {
            if e == "handoff" {
                self.handoffs.get_or_create(&ch).inc();
            } else if let Some(d) = e.strip_prefix("decision:") {
                self.decisions
                    .get_or_create(&DecisionLabel {
                        decision: d.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Counts a refused operator sign-in.
    pub fn signin_refused(&self, reason: &str) {
        self.signins
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts an HTTP request by its matched route and status.
    pub fn request(&self, route: String, status: u16) {
        self.requests
            .get_or_create(&RouteLabel { route, status })
            .inc();
    }

    /// The voice calls in progress.
    pub fn voice_calls(&self, n: usize) {
        self.voice_calls.set(n as i64);
    }

    /// The speech recogniser is loaded.
    pub fn ari_connected(&self, up: bool) {
        self.ari_connected.set(up as i64);
    }

    pub fn speech_ready(&self) {
        self.speech_ready.set(1);
    }

    /// The voice robot's fixed prompts are synthesised.
    pub fn prompts_ready(&self) {
        self.prompts_ready.set(1);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).unwrap_or_default();
        s
    }
}
