//! The standard's indicators over the anonymised log: resolution, ease,
//! satisfaction, NPS, repeat requests, handoffs, fallbacks, transfers and
//! the time to answer; in total, by a dimension (channel, segment, intent,
//! life situation) and by period (day, week, month) for the trend; each
//! with a 1–5 star level from thresholds in `[analytics.stars]`; and the
//! intents with the most fallbacks, «не решён» and handoffs.
//!
//! Pure functions over `&[LogEntry]`: the caller reads the log and chooses
//! the period. Rates of handoffs, fallbacks and transfers are shares of
//! conversations; resolution is the share of «решён» among the answers to
//! «Ваш вопрос решён?»; the time to answer is the engine's own turns
//! (an operator's first reply, event `operator_reply`, is left out).

use super::LogEntry;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// `[analytics.stars]`: for each indicator, the values that earn 2, 3, 4
/// and 5 stars (below the first: 1 star). Rising thresholds mean more is
/// better (a value reaching a threshold earns it), falling ones mean less
/// is better (a value at or below it earns it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StarThresholds {
    /// Share of «решён», 0–1.
    pub resolution: [f64; 4],
    /// Mean ease, 1 = «Легко» … 4 = «Сложно» (less is better).
    pub ease: [f64; 4],
    /// Share of «Легко» and «Скорее легко», 0–1.
    pub easy_share: [f64; 4],
    /// Mean satisfaction, 1–5.
    pub satisfaction: [f64; 4],
    /// NPS, −100…100.
    pub nps: [f64; 4],
    /// Share of repeat requests, 0–1 (less is better).
    pub repeat: [f64; 4],
    /// Shares of conversations with a handoff, a fallback, a transfer.
    pub handoff: [f64; 4],
    pub fallback: [f64; 4],
    pub transfer: [f64; 4],
    /// Time to answer, milliseconds (less is better).
    pub answer_p50_ms: [f64; 4],
    pub answer_p90_ms: [f64; 4],
}

impl Default for StarThresholds {
    fn default() -> Self {
        Self {
            resolution: [0.5, 0.65, 0.8, 0.9],
            ease: [3.0, 2.5, 2.0, 1.5],
            easy_share: [0.5, 0.65, 0.8, 0.9],
            satisfaction: [3.0, 3.5, 4.0, 4.5],
            nps: [-20.0, 0.0, 30.0, 50.0],
            repeat: [0.3, 0.2, 0.1, 0.05],
            handoff: [0.4, 0.3, 0.2, 0.1],
            fallback: [0.3, 0.2, 0.1, 0.05],
            transfer: [0.2, 0.1, 0.05, 0.02],
            answer_p50_ms: [3000.0, 2000.0, 1000.0, 500.0],
            answer_p90_ms: [6000.0, 4000.0, 2500.0, 1500.0],
        }
    }
}

impl StarThresholds {
    /// Each indicator's thresholds rise or fall throughout.
    pub fn check(&self) -> anyhow::Result<()> {
        let all = [
            ("resolution", &self.resolution),
            ("ease", &self.ease),
            ("easy_share", &self.easy_share),
            ("satisfaction", &self.satisfaction),
            ("nps", &self.nps),
            ("repeat", &self.repeat),
            ("handoff", &self.handoff),
            ("fallback", &self.fallback),
            ("transfer", &self.transfer),
            ("answer_p50_ms", &self.answer_p50_ms),
            ("answer_p90_ms", &self.answer_p90_ms),
        ];
        for (name, t) in all {
            let rising = t.windows(2).all(|w| w[0] <= w[1]);
            let falling = t.windows(2).all(|w| w[0] >= w[1]);
            if !(rising || falling) {
                anyhow::bail!(
                    "[analytics.stars] {name}: the thresholds for 2, 3, 4 and 5 stars must rise or fall throughout, not {t:?}"
                );
            }
        }
        Ok(())
    }
}

/// A request for the same intent within this many days after a «решён»
/// answer, in another conversation, is a repeat request.
pub const REPEAT_DAYS: i64 = 28;

/// What the figures are broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Channel,
    Segment,
    Intent,
    Situation,
}

impl Dimension {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "channel" => Self::Channel,
            "segment" => Self::Segment,
            "intent" => Self::Intent,
            "situation" => Self::Situation,
            _ => return None,
        })
    }

    fn key(self, e: &LogEntry) -> String {
        let v = match self {
            Self::Channel => Some(&e.channel),
            Self::Segment => Some(&e.segment),
            Self::Intent => e.intent.as_ref(),
            Self::Situation => e.situation.as_ref(),
        };
        v.filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| NONE.into())
    }
}

/// The group of entries without an intent or a situation.
pub const NONE: &str = "-";

/// The buckets of the trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Day,
    /// Weeks from Monday.
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => Self::Day,
            "week" => Self::Week,
            "month" => Self::Month,
            _ => return None,
        })
    }

    /// The first day of the bucket holding `d`.
    fn start(self, d: Date) -> Date {
        match self {
            Self::Day => d,
            Self::Week => d
                .checked_sub(jiff::Span::new().days(d.weekday().to_monday_zero_offset() as i64))
                .unwrap_or(d),
            Self::Month => d.first_of_month(),
        }
    }
}

/// What to compute: entries with `since <= ts < until` (Unix seconds).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub by: Option<Dimension>,
    pub period: Period,
}

/// One indicator: its value (none without data), how many items it is
/// computed over (answers, ratings, conversations, turns) and its level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Indicator {
    pub value: Option<f64>,
    pub n: u64,
    pub stars: Option<u8>,
}

impl Indicator {
    fn new(value: Option<f64>, n: u64, t: &[f64; 4]) -> Self {
        Self {
            value,
            n,
            stars: value.map(|v| stars(v, t)),
        }
    }
}

/// The 1–5 level of `v`: one star plus one for each threshold it reaches.
/// Thresholds go from the 2-star one to the 5-star one; rising means more
/// is better (`v >= t`), falling means less is better (`v <= t`).
pub fn stars(v: f64, t: &[f64; 4]) -> u8 {
    let rising = t[3] >= t[0];
    1 + t
        .iter()
        .filter(|&&x| if rising { v >= x } else { v <= x })
        .count() as u8
}

/// The indicators of a set of turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub turns: u64,
    pub conversations: u64,
    /// Share of «решён» among the answers to «Ваш вопрос решён?».
    pub resolution: Indicator,
    /// Mean of the ease scale, 1 = «Легко» … 4 = «Сложно».
    pub ease: Indicator,
    /// Share of «Легко» and «Скорее легко» among the ease ratings.
    pub easy_share: Indicator,
    /// Mean satisfaction, 1–5.
    pub satisfaction: Indicator,
    /// Net promoter score: % of 9–10 minus % of 0–6, from −100 to 100.
    pub nps: Indicator,
    /// Share of requests that repeat a «решён» question within 28 days.
    pub repeat: Indicator,
    /// Shares of conversations with a handoff, a fallback, a transfer.
    pub handoff: Indicator,
    pub fallback: Indicator,
    pub transfer: Indicator,
    /// The engine's time to answer, milliseconds.
    pub answer_p50_ms: Indicator,
    pub answer_p90_ms: Indicator,
}

/// The figures of one group or one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// An intent and how often something went wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub intent: String,
    pub count: u64,
}

/// The intents with the most fallbacks (by the classifier's nearest
/// intent), the most «не решён» and the most handoffs, five each.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Worst {
    pub fallbacks: Vec<Count>,
    pub unsolved: Vec<Count>,
    pub handoffs: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The first and last day with data in the period (none: no data).
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    pub total: Figures,
    pub by: Option<Dimension>,
    pub groups: Vec<Group>,
    pub period: Period,
    /// One group per bucket, its key the bucket's first day.
    pub trend: Vec<Group>,
    pub worst: Worst,
}

fn has(e: &LogEntry, ev: &str) -> bool {
    e.events.iter().any(|x| x == ev)
}

fn is_handoff(e: &LogEntry) -> bool {
    has(e, "handoff")
}

/// Out of scope, or not understood at all.
fn is_fallback(e: &LogEntry) -> bool {
    has(e, "decision:out_of_scope") || has(e, "not_understood")
}

/// A conversation passed from one operator to another.
fn is_transfer(e: &LogEntry) -> bool {
    has(e, "transfer") || has(e, "operator_transferred")
}

/// The intent a turn asked about: the one the client confirmed, or the one
/// the classifier answered or guessed.
fn requested(e: &LogEntry) -> Option<&str> {
    if let Some(c) = &e.confirmed {
        return Some(c);
    }
    if has(e, "decision:answer") || has(e, "decision:confirm") {
        return e.intent.as_deref();
    }
    None
}

/// For each entry, whether it starts a request (the first turn of a
/// conversation asking about an intent) and, if so, whether that request
/// repeats one answered «решён» in another conversation of the same client
/// within `REPEAT_DAYS`. Over the whole log, so that a «решён» before the
/// period counts. Entries are taken in time order.
pub fn repeats(log: &[LogEntry]) -> Vec<Option<bool>> {
    let window = REPEAT_DAYS * 86_400;
    let mut order: Vec<usize> = (0..log.len()).collect();
    order.sort_by_key(|&i| log[i].ts);
    // (client, intent) → the «решён» answers: (ts, conversation)
    let mut solved: HashMap<(&str, &str), Vec<(i64, &str)>> = HashMap::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut out = vec![None; log.len()];
    for i in order {
        let e = &log[i];
        if let Some(intent) = requested(e) {
            if seen.insert((e.conversation.as_str(), intent)) {
                let again = !e.client.is_empty()
                    && solved.get(&(e.client.as_str(), intent)).is_some_and(|v| {
                        v.iter().any(|&(ts, conv)| {
                            conv != e.conversation && ts <= e.ts && e.ts - ts <= window
                        })
                    });
                out[i] = Some(again);
            }
        }
        if has(e, "solved_yes") && !e.client.is_empty() {
            if let Some(intent) = e.intent.as_deref() {
                let v = solved.entry((e.client.as_str(), intent)).or_default();
                v.retain(|&(ts, _)| e.ts - ts <= window);
                v.push((e.ts, e.conversation.as_str()));
            }
        }
    }
    out
}

/// The `q`-quantile (0–1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64)
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The indicators of `items`: indices into `log`, with `rep` from `repeats`.
pub fn figures(
    log: &[LogEntry],
    rep: &[Option<bool>],
    items: &[usize],
    t: &StarThresholds,
) -> Figures {
    let (mut yes, mut no) = (0u64, 0u64);
    let (mut ease_sum, mut ease_n, mut easy) = (0u64, 0u64, 0u64);
    let (mut sat_sum, mut sat_n) = (0u64, 0u64);
    let (mut promoters, mut detractors, mut nps_n) = (0u64, 0u64, 0u64);
    let (mut requests, mut repeated) = (0u64, 0u64);
    let mut times = Vec::new();
    // conversation → (handoff, fallback, transfer)
    let mut convs: HashMap<&str, (bool, bool, bool)> = HashMap::new();
    for &i in items {
        let e = &log[i];
        yes += has(e, "solved_yes") as u64;
        no += has(e, "solved_no") as u64;
        if let Some(r) = e.rating {
            if (1..=4).contains(&r.ease) {
                ease_sum += r.ease as u64;
                ease_n += 1;
                easy += (r.ease <= 2) as u64;
            }
            if let Some(s) = r.satisfaction.filter(|s| (1..=5).contains(s)) {
                sat_sum += s as u64;
                sat_n += 1;
            }
            if let Some(n) = r.nps.filter(|n| *n <= 10) {
                nps_n += 1;
                promoters += (n >= 9) as u64;
                detractors += (n <= 6) as u64;
            }
        }
        if let Some(again) = rep.get(i).copied().flatten() {
            requests += 1;
            repeated += again as u64;
        }
        if let Some(ms) = e.answer_ms.filter(|_| !has(e, "operator_reply")) {
            times.push(ms);
        }
        let c = convs.entry(e.conversation.as_str()).or_default();
        c.0 |= is_handoff(e);
        c.1 |= is_fallback(e);
        c.2 |= is_transfer(e);
    }
    times.sort_unstable();
    let n = convs.len() as u64;
    let count = |f: fn(&(bool, bool, bool)) -> bool| convs.values().filter(|c| f(c)).count() as u64;
    Figures {
        turns: items.len() as u64,
        conversations: n,
        resolution: Indicator::new(share(yes, yes + no), yes + no, &t.resolution),
        ease: Indicator::new(
            (ease_n > 0).then(|| ease_sum as f64 / ease_n as f64),
            ease_n,
            &t.ease,
        ),
        easy_share: Indicator::new(share(easy, ease_n), ease_n, &t.easy_share),
        satisfaction: Indicator::new(
            (sat_n > 0).then(|| sat_sum as f64 / sat_n as f64),
            sat_n,
            &t.satisfaction,
        ),
        nps: Indicator::new(
            (nps_n > 0).then(|| 100.0 * (promoters as f64 - detractors as f64) / nps_n as f64),
            nps_n,
            &t.nps,
        ),
        repeat: Indicator::new(share(repeated, requests), requests, &t.repeat),
        handoff: Indicator::new(share(count(|c| c.0), n), n, &t.handoff),
        fallback: Indicator::new(share(count(|c| c.1), n), n, &t.fallback),
        transfer: Indicator::new(share(count(|c| c.2), n), n, &t.transfer),
        answer_p50_ms: Indicator::new(quantile(&times, 0.5), times.len() as u64, &t.answer_p50_ms),
        answer_p90_ms: Indicator::new(quantile(&times, 0.9), times.len() as u64, &t.answer_p90_ms),
    }
}

/// The five intents with the highest counts, most first (ties by name).
fn top(counts: HashMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = counts
        .into_iter()
        .map(|(intent, count)| Count { intent, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.intent.cmp(&b.intent)));
    v.truncate(5);
    v
}

/// The day of `ts` in `tz`.
pub fn day_of(ts: i64, tz: &TimeZone) -> Option<Date> {
    Timestamp::from_second(ts)
        .ok()
        .map(|t| t.to_zoned(tz.clone()).date())
}

/// Everything the dashboard and `otklik stats` show, over the entries of
/// `log` in the query's period; days are days in `tz`.
pub fn report(log: &[LogEntry], q: &Query, t: &StarThresholds, tz: &TimeZone) -> Report {
    let rep = repeats(log);
    let items: Vec<usize> = (0..log.len())
        .filter(|&i| {
            let ts = log[i].ts;
            q.since.is_none_or(|s| ts >= s) && q.until.is_none_or(|u| ts < u)
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut buckets: BTreeMap<Date, Vec<usize>> = BTreeMap::new();
    let (mut fallbacks, mut unsolved, mut handoffs) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let (mut first, mut last) = (None::<Date>, None::<Date>);
    // Consecutive entries mostly share a day: one time-zone lookup per day.
    let mut day_cache: Option<(i64, i64, Date)> = None;
    for &i in &items {
        let e = &log[i];
        if let Some(by) = q.by {
            groups.entry(by.key(e)).or_default().push(i);
        }
        let day = match day_cache {
            Some((from, to, d)) if e.ts >= from && e.ts < to => Some(d),
            _ => day_of(e.ts, tz).inspect(|&d| {
                let from = tz
                    .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                    .map_or(e.ts, |t| t.as_second());
                let to = d
                    .tomorrow()
                    .ok()
                    .and_then(|n| {
                        tz.to_timestamp(n.to_datetime(jiff::civil::Time::midnight()))
                            .ok()
                    })
                    .map_or(e.ts + 1, |t| t.as_second());
                day_cache = Some((from, to, d));
            }),
        };
        if let Some(d) = day {
            first = Some(first.map_or(d, |f| f.min(d)));
            last = Some(last.map_or(d, |l| l.max(d)));
            buckets.entry(q.period.start(d)).or_default().push(i);
        }
        let intent = || e.intent.clone().unwrap_or_else(|| NONE.into());
        if is_fallback(e) {
            let near = e
                .scores
                .first()
                .map(|c| c.intent.clone())
                .unwrap_or_else(intent);
            *fallbacks.entry(near).or_insert(0) += 1;
        }
        if has(e, "solved_no") {
            *unsolved.entry(intent()).or_insert(0) += 1;
        }
        if is_handoff(e) {
            *handoffs.entry(intent()).or_insert(0) += 1;
        }
    }
    let group = |key: String, idx: &[usize]| Group {
        key,
        figures: figures(log, &rep, idx, t),
    };
    Report {
        first_day: first.map(|d| d.to_string()),
        last_day: last.map(|d| d.to_string()),
        total: figures(log, &rep, &items, t),
        by: q.by,
        groups: groups.iter().map(|(k, v)| group(k.clone(), v)).collect(),
        period: q.period,
        trend: buckets
            .iter()
            .map(|(d, v)| group(d.to_string(), v))
            .collect(),
        worst: Worst {
            fallbacks: top(fallbacks),
            unsolved: top(unsolved),
            handoffs: top(handoffs),
        },
    }
}

/// The Unix seconds of a period given as days `YYYY-MM-DD` in `tz`: from
/// the start of `since` to the end of `until` (both included).
pub fn bounds(
    since: Option<&str>,
    until: Option<&str>,
    tz: &TimeZone,
) -> Result<(Option<i64>, Option<i64>), String> {
    let start = |s: &str, next: bool| -> Result<i64, String> {
        let d: Date = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a date YYYY-MM-DD"))?;
        let d = if next {
            d.tomorrow().map_err(|e| e.to_string())?
        } else {
            d
        };
        tz.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map(|t| t.as_second())
            .map_err(|e| e.to_string())
    };
    let since = since
        .filter(|s| !s.is_empty())
        .map(|s| start(s, false))
        .transpose()?;
    let until = until
        .filter(|s| !s.is_empty())
        .map(|s| start(s, true))
        .transpose()?;
    if let (Some(a), Some(b)) = (since, until) {
        if a >= b {
            return Err("the first day is after the last".into());
        }
    }
    Ok((since, until))
}

/// The indicators in the order they are shown, with their names.
pub fn named(f: &Figures) -> [(&'static str, Indicator); 11] {
    [
        ("resolution", f.resolution),
        ("ease", f.ease),
        ("easy_share", f.easy_share),
        ("satisfaction", f.satisfaction),
        ("nps", f.nps),
        ("repeat", f.repeat),
        ("handoff", f.handoff),
        ("fallback", f.fallback),
        ("transfer", f.transfer),
        ("answer_p50_ms", f.answer_p50_ms),
        ("answer_p90_ms", f.answer_p90_ms),
    ]
}

/// An indicator's value as text: shares in %, NPS signed, times in ms.
pub fn show(name: &str, i: &Indicator) -> String {
    let Some(v) = i.value else {
        return "-".into();
    };
    match name {
        "ease" | "satisfaction" => format!("{v:.2}"),
        "nps" => format!("{v:+.0}"),
        n if n.ends_with("_ms") => format!("{v:.0} ms"),
        _ => format!("{:.1} %", v * 100.0),
    }
}

/// `otklik stats`'s table: the totals with their stars, then the groups.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let days = match (&r.first_day, &r.last_day) {
        (Some(a), Some(b)) => format!("{a} … {b}"),
        _ => "no data".into(),
    };
    let _ = writeln!(
        out,
        "{days}: {} turns, {} conversations\n",
        r.total.turns, r.total.conversations
    );
    let _ = writeln!(out, "{:<15} {:>10} {:>7}  stars", "indicator", "value", "n");
    for (name, i) in named(&r.total) {
        let stars = i
            .stars
            .map(|s| "*".repeat(s as usize) + &".".repeat(5 - s as usize))
            .unwrap_or_default();
        let _ = writeln!(out, "{name:<15} {:>10} {:>7}  {stars}", show(name, &i), i.n);
    }
    if let Some(by) = r.by {
        let by = serde_json::to_value(by)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = write!(out, "\n{by:<24} {:>6} {:>6}", "turns", "conv");
        let names = named(&r.total).map(|(n, _)| n);
        for n in names {
            let _ = write!(out, " {:>13}", n);
        }
        out.push('\n');
        for g in &r.groups {
            let key: String = g.key.chars().take(24).collect();
            let _ = write!(
                out,
                "{key:<24} {:>6} {:>6}",
                g.figures.turns, g.figures.conversations
            );
            for (n, i) in named(&g.figures) {
                let _ = write!(out, " {:>13}", show(n, &i));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{Candidate, Rating};

    const DAY: i64 = 86_400;

    /// 2026-11-02, a Monday, midnight UTC.
    fn d0() -> i64 {
        jiff::civil::date(2026, 11, 2)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn entry(
        ts: i64,
        conv: &str,
        client: &str,
        channel: &str,
        intent: Option<&str>,
        events: &[&str],
        ms: u64,
    ) -> LogEntry {
        LogEntry {
            ts,
            conversation: conv.into(),
            client: client.into(),
            channel: channel.into(),
            segment: if channel == "voice" {
                "senior"
            } else {
                "universal"
            }
            .into(),
            node: "n".into(),
            intent: intent.map(String::from),
            situation: intent.map(|i| format!("s_{i}")),
            events: events.iter().map(|e| e.to_string()).collect(),
            answer_ms: Some(ms),
            ..Default::default()
        }
    }

    fn rated(mut e: LogEntry, ease: u8, satisfaction: Option<u8>, nps: Option<u8>) -> LogEntry {
        e.rating = Some(Rating {
            ease,
            satisfaction,
            nps,
        });
        e
    }

    /// Four conversations: A (client 1) answered and «решён», rated 1/5/10;
    /// B (client 1, three days later) confirms the same intent — a repeat
    /// request — «не решён», handoff; C (client 2, voice, day 8) out of
    /// scope first, then answered, «решён», rated 3/–/6; D (client 1, day
    /// 40: too late to be a repeat) answered, then an operator's first reply
    /// (left out of the time to answer) and a transfer.
    fn log() -> Vec<LogEntry> {
        let (a, b, c, d) = (d0(), d0() + 3 * DAY, d0() + 8 * DAY, d0() + 40 * DAY);
        let p = Some("pension");
        let ch = Some("child_allowance");
        let mut confirmed = entry(b + 100, "B", "c1", "web", p, &["confirm_yes"], 400);
        confirmed.confirmed = Some("pension".into());
        let mut oos = entry(
            c + 100,
            "C",
            "c2",
            "voice",
            None,
            &["decision:out_of_scope"],
            700,
        );
        oos.scores = vec![Candidate {
            intent: "child_allowance".into(),
            score: 0.3,
        }];
        vec![
            entry(
                a + 100,
                "A",
                "c1",
                "web",
                p,
                &["decision:answer", "intent:pension"],
                100,
            ),
            entry(a + 200, "A", "c1", "web", p, &["solved_yes"], 200),
            rated(
                entry(a + 300, "A", "c1", "web", p, &["rating:1"], 300),
                1,
                Some(5),
                Some(10),
            ),
            confirmed,
            entry(b + 200, "B", "c1", "web", p, &["solved_no"], 500),
            entry(b + 300, "B", "c1", "web", p, &["handoff"], 600),
            oos,
            entry(c + 200, "C", "c2", "voice", ch, &["decision:answer"], 800),
            entry(c + 300, "C", "c2", "voice", ch, &["solved_yes"], 900),
            rated(
                entry(c + 400, "C", "c2", "voice", ch, &["rating:3"], 1000),
                3,
                None,
                Some(6),
            ),
            entry(d + 100, "D", "c1", "web", p, &["decision:answer"], 50),
            entry(
                d + 200,
                "D",
                "c1",
                "web",
                None,
                &["operator_reply", "transfer"],
                90_000,
            ),
        ]
    }

    fn run(q: &Query) -> Report {
        report(&log(), q, &StarThresholds::default(), &TimeZone::UTC)
    }

    fn v(i: Indicator) -> (f64, u64, u8) {
        (
            (i.value.unwrap() * 1000.0).round() / 1000.0,
            i.n,
            i.stars.unwrap(),
        )
    }

    #[test]
    fn totals_by_hand() {
        let r = run(&Query::default());
        let t = &r.total;
        assert_eq!((t.turns, t.conversations), (12, 4));
        assert_eq!(v(t.resolution), (0.667, 3, 3), "2 of 3 answers");
        assert_eq!(v(t.ease), (2.0, 2, 4), "(1 + 3) / 2");
        assert_eq!(v(t.easy_share), (0.5, 2, 2));
        assert_eq!(v(t.satisfaction), (5.0, 1, 5), "one skipped");
        assert_eq!(v(t.nps), (0.0, 2, 3), "one promoter, one detractor");
        assert_eq!(v(t.repeat), (0.25, 4, 2), "B of A, B, C, D");
        assert_eq!(v(t.handoff), (0.25, 4, 3));
        assert_eq!(v(t.fallback), (0.25, 4, 2));
        assert_eq!(v(t.transfer), (0.25, 4, 1));
        // 50, 100, 200 … 1000 (the operator's 90 s left out): 11 values
        assert_eq!(v(t.answer_p50_ms), (500.0, 11, 5));
        assert_eq!(v(t.answer_p90_ms), (900.0, 11, 5));
        assert_eq!(r.first_day.as_deref(), Some("2026-11-02"));
        assert_eq!(r.last_day.as_deref(), Some("2026-12-12"));
        let w = &r.worst;
        let c = |x: &[Count]| {
            x.iter()
                .map(|c| (c.intent.clone(), c.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(c(&w.fallbacks), [("child_allowance".to_string(), 1)]);
        assert_eq!(c(&w.unsolved), [("pension".to_string(), 1)]);
        assert_eq!(c(&w.handoffs), [("pension".to_string(), 1)]);
    }

    #[test]
    fn groups_and_weekly_trend() {
        let r = run(&Query {
            by: Some(Dimension::Channel),
            period: Period::Week,
            ..Default::default()
        });
        let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["voice", "web"]);
        let web = &r.groups[1].figures;
        assert_eq!((web.turns, web.conversations), (8, 3));
        assert_eq!(v(web.resolution), (0.5, 2, 2));
        assert_eq!(v(web.repeat), (0.333, 3, 1));
        let voice = &r.groups[0].figures;
        assert_eq!(v(voice.resolution), (1.0, 1, 5));
        assert_eq!(v(voice.fallback), (1.0, 1, 1));
        let weeks: Vec<(&str, u64)> = r
            .trend
            .iter()
            .map(|g| (g.key.as_str(), g.figures.turns))
            .collect();
        assert_eq!(
            weeks,
            [("2026-11-02", 6), ("2026-11-09", 4), ("2026-12-07", 2)]
        );
        let by_intent = run(&Query {
            by: Some(Dimension::Intent),
            ..Default::default()
        });
        let keys: Vec<&str> = by_intent.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["-", "child_allowance", "pension"]);
        let months = run(&Query {
            period: Period::Month,
            ..Default::default()
        });
        let keys: Vec<&str> = months.trend.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["2026-11-01", "2026-12-01"]);
    }

    #[test]
    fn a_period_still_sees_the_solved_answer_before_it() {
        let r = run(&Query {
            since: Some(d0() + 3 * DAY),
            until: Some(d0() + 9 * DAY),
            ..Default::default()
        });
        let t = &r.total;
        assert_eq!((t.turns, t.conversations), (7, 2));
        assert_eq!(v(t.resolution), (0.5, 2, 2));
        assert_eq!(
            v(t.repeat),
            (0.5, 2, 1),
            "B repeats A, which is before the period"
        );
        let days: Vec<&str> = r.trend.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(days, ["2026-11-05", "2026-11-10"]);
    }

    #[test]
    fn a_repeat_needs_the_same_client_another_conversation_and_28_days() {
        let day = d0();
        let p = Some("pension");
        let log = vec![
            entry(day, "A", "c1", "web", p, &["decision:answer"], 1),
            entry(day + 1, "A", "c1", "web", p, &["solved_yes"], 1),
            // the same conversation: not a repeat, and only one request
            entry(day + 2, "A", "c1", "web", p, &["decision:answer"], 1),
            // another client
            entry(day + 3, "B", "c2", "web", p, &["decision:answer"], 1),
            // the same client on day 28: a repeat; asked twice, one request
            entry(
                day + 28 * DAY,
                "C",
                "c1",
                "web",
                p,
                &["decision:confirm"],
                1,
            ),
            entry(day + 28 * DAY + 5, "C", "c1", "web", p, &["confirm_yes"], 1),
            // an unlinked client (consent withdrawn) is never a repeat
            entry(day + 5, "E", "", "web", p, &["decision:answer"], 1),
        ];
        let mut log = log;
        log[5].confirmed = Some("pension".into());
        assert_eq!(
            repeats(&log),
            [
                Some(false),
                None,
                None,
                Some(false),
                Some(true),
                None,
                Some(false)
            ]
        );
        let mut late = log.clone();
        late[4].ts += 2;
        late[5].ts += 2;
        assert_eq!(repeats(&late)[4], Some(false), "28 days and a second");
    }

    #[test]
    fn stars_rise_or_fall_with_the_thresholds() {
        let up = [0.5, 0.65, 0.8, 0.9];
        assert_eq!(
            [0.0, 0.5, 0.7, 0.8, 0.95].map(|x| stars(x, &up)),
            [1, 2, 3, 4, 5]
        );
        let down = [0.4, 0.3, 0.2, 0.1];
        assert_eq!(
            [0.5, 0.4, 0.25, 0.15, 0.1].map(|x| stars(x, &down)),
            [1, 2, 3, 4, 5]
        );
        assert!(StarThresholds::default().check().is_ok());
        let bad = StarThresholds {
            nps: [0.0, 50.0, 30.0, 60.0],
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("nps"));
        let empty = report(
            &[],
            &Query::default(),
            &StarThresholds::default(),
            &TimeZone::UTC,
        );
        assert_eq!(empty.total.resolution, Indicator::default());
        assert!(empty.trend.is_empty() && empty.first_day.is_none());
    }
}
