//! `otklik stats` over a large log: 100,000 synthetic turns (20,000
//! conversations of 5,000 clients over a year, three channels, five segments,
//! 40 intents) appended to a temporary sled database, then the log read and
//! the indicators computed — in total, by intent, by week — as `otklik
//! stats --by intent` and the dashboard do. Target: at most 2 s.
//!
//! `cargo test --bench analytics -- --bench` runs it; without `--bench`, a
//! small log checks that it works.

use otklik::analytics::indicators::{report, Dimension, Period, Query, StarThresholds};
use otklik::analytics::{Candidate, LogEntry, Rating};
use otklik::store::{Storage, Store};
use std::time::Instant;

const CHANNELS: [&str; 3] = ["web", "telegram", "voice"];
const SEGMENTS: [&str; 5] = ["universal", "senior", "family", "disability", "jobseeker"];

/// A small deterministic generator (xorshift), so that runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `turns` log entries, five to a conversation, oldest first.
fn synthetic(turns: usize) -> Vec<LogEntry> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let start = 1_767_225_600; // 2026-01-01
    let convs = turns / 5;
    let mut out = Vec::with_capacity(turns);
    for c in 0..convs {
        let ts = start + (c as i64 * 365 * 86_400) / convs as i64;
        let client = format!("{:024x}", r.below(5_000));
        let conversation = format!("{c:024x}");
        let channel = CHANNELS[r.below(3) as usize];
        let segment = SEGMENTS[r.below(5) as usize];
        let intent = format!("intent_{}", r.below(40));
        let base = LogEntry {
            ts,
            conversation,
            client,
            channel: channel.into(),
            segment: segment.into(),
            node: "ask".into(),
            text: "как получить пособие на ребёнка".into(),
            intent: Some(intent.clone()),
            situation: Some(format!("situation_{}", r.below(8))),
            answer_ms: Some(200 + r.below(3_000)),
            ..Default::default()
        };
        let turn = |k: i64, events: &[&str]| LogEntry {
            ts: ts + 30 * k,
            events: events.iter().map(|e| e.to_string()).collect(),
            ..base.clone()
        };
        let mut first = turn(0, &["decision:answer"]);
        first.scores = vec![
            Candidate {
                intent: intent.clone(),
                score: 0.8,
            },
            Candidate {
                intent: "intent_0".into(),
                score: 0.4,
            },
        ];
        if r.below(10) == 0 {
            first.events = vec!["decision:out_of_scope".into()];
        }
        out.push(first);
        out.push(turn(
            1,
            &[if r.below(4) == 0 {
                "solved_no"
            } else {
                "solved_yes"
            }],
        ));
        out.push(turn(
            2,
            &[if r.below(6) == 0 {
                "handoff"
            } else {
                "answered"
            }],
        ));
        out.push(turn(3, &["finish"]));
        let mut rated = turn(4, &["rating:2"]);
        rated.rating = Some(Rating {
            ease: 1 + r.below(4) as u8,
            satisfaction: Some(1 + r.below(5) as u8),
            nps: Some(r.below(11) as u8),
        });
        out.push(rated);
    }
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let turns = if full { 100_000 } else { 2_000 };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    for chunk in synthetic(turns).chunks(10_000) {
        store.log_append(chunk).unwrap();
    }
    eprintln!(
        "analytics: {turns} turns appended in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let stars = StarThresholds::default();
    let tz = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
    let mut runs = Vec::new();
    for _ in 0..if full { 5 } else { 1 } {
        let t = Instant::now();
        let log = store.log_entries().unwrap();
        let read = t.elapsed().as_secs_f64();
        let r = report(
            &log,
            &Query {
                by: Some(Dimension::Intent),
                period: Period::Week,
                ..Default::default()
            },
            &stars,
            &tz,
        );
        let all = t.elapsed().as_secs_f64();
        assert_eq!(r.total.turns as usize, turns);
        assert_eq!(r.groups.len(), 40);
        runs.push((all, read));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (all, read) = runs[runs.len() / 2];
    eprintln!(
        "analytics: stats over {turns} turns (read + indicators by intent and week), median of {}: {:.3} s (reading the log {:.3} s)",
        runs.len(),
        all,
        read
    );
    if full {
        assert!(
            all <= 2.0,
            "stats over 100,000 turns took {all:.2} s, more than 2 s"
        );
    }
}
