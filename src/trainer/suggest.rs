//! `otklik suggest`: proposals for the trainer from the anonymised
//! utterances. New examples come from utterances the classifier was unsure
//! of (or wrong about) whose intent the client confirmed or an operator
//! tagged; new intents come from clusters of questions the bot could not
//! answer, each with its most typical utterances.

use crate::analytics::export::Utterance;
use crate::nlu::classifier::Classifier;
use crate::nlu::index::EmbeddingCache;
use crate::nlu::kb::{normalize_text, KnowledgeBase};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// What a proposal adds to the knowledge base.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// New examples for an existing intent.
    Example,
    /// A new intent (the trainer writes its id, title and answer).
    Intent,
}

/// The trainer's verdict.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Pending,
    Accept,
    Reject,
}

/// One proposal. In the file workflow the trainer edits `status` (and, for
/// a new intent, `intent`, `title`, `answer` and `texts`) and runs
/// `otklik accept FILE`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Proposal {
    /// Stable across runs for the same content.
    pub id: String,
    pub kind: Kind,
    #[serde(default)]
    pub status: Status,
    /// The intent the examples go to; for a new intent, a placeholder id
    /// (`new_…`) for the trainer to rename.
    pub intent: String,
    /// A new intent's title (the trainer writes it).
    #[serde(default)]
    pub title: String,
    /// A new intent's universal answer (the trainer writes it).
    #[serde(default)]
    pub answer: String,
    /// The example(s) to add: one for `example`; a new intent's typical
    /// utterances, most typical first.
    pub texts: Vec<String>,
    /// Utterances behind the proposal.
    pub count: usize,
    /// A new intent's closest existing intent, or what the classifier
    /// predicted for the example.
    #[serde(default)]
    pub nearest: Option<String>,
    /// Why it is proposed, for the trainer (in Russian, with the topics' titles).
    pub why: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Proposals {
    /// The knowledge base the proposals were made against.
    pub kb_hash: String,
    pub items: Vec<Proposal>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Cosine similarity for two unanswered questions to share a cluster.
    pub similarity: f32,
    /// Utterances a cluster needs to become a proposal.
    pub min_cluster: usize,
    /// Typical utterances shown (and proposed as examples) per new intent.
    pub typical: usize,
    /// Different unanswered questions embedded at most, the most frequent
    /// first: bounds the time of a run (about 9 ms a question on 2 cores),
    /// which the review page starts on the server.
    pub max_questions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            similarity: 0.9,
            min_cluster: 3,
            typical: 15,
            max_questions: 5000,
        }
    }
}

fn short_id(parts: &[&str]) -> String {
    crate::nlu::index::short_hash(&parts.iter().map(|p| p.as_bytes()).collect::<Vec<_>>())[..10]
        .to_string()
}

/// Whether a scrubbed text is worth learning from: some words left besides
/// the placeholders («[ФИО]», «[телефон]» …).
fn learnable(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let placeholders = words.iter().filter(|w| w.contains('[')).count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 4 && placeholders * 2 < words.len().max(1)
}

/// Examples to add: utterances with a known intent the classifier did not
/// answer right away, not already examples, most frequent first.
pub fn examples(utterances: &[Utterance], kb: &KnowledgeBase) -> Vec<Proposal> {
    let known = kb.normalized_examples();
    // normalised text → intent → (count, a spelling, predicted)
    type Seen = BTreeMap<String, (usize, String, Option<String>)>;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for u in utterances {
        let Some(label) = &u.confirmed else { continue };
        let unsure = u.decision.as_deref() != Some("answer");
        let wrong = u.predicted.as_deref() != Some(label.as_str());
        if !(unsure || wrong) || kb.intent(label).is_none() || !learnable(&u.text) {
            continue;
        }
        let norm = normalize_text(&u.text);
        if known.contains(&norm) {
            continue;
        }
        let e = seen
            .entry(norm)
            .or_default()
            .entry(label.clone())
            .or_insert((0, u.text.clone(), u.predicted.clone()));
        e.0 += 1;
    }
    let title = |id: &str| {
        kb.intent(id)
            .map(|i| format!("«{}»", i.title))
            .unwrap_or_else(|| "ничего".into())
    };
    let mut out: Vec<Proposal> = Vec::new();
    for (norm, labels) in seen {
        // The label most utterances agree on; disagreement is told.
        let total: usize = labels.values().map(|x| x.0).sum();
        let (label, (n, text, predicted)) = labels
            .iter()
            .max_by_key(|(l, x)| (x.0, std::cmp::Reverse((*l).clone())))
            .unwrap();
        let mut why = format!(
            "Классификатор выбрал {}, а клиент подтвердил {}",
            title(predicted.as_deref().unwrap_or_default()),
            title(label)
        );
        if *n < total {
            why += &format!(" ({n} из {total} раз; другие темы: {})", {
                let others: Vec<String> = labels
                    .keys()
                    .filter(|l| *l != label)
                    .map(|l| title(l))
                    .collect();
                others.join(", ")
            });
        }
        out.push(Proposal {
            id: short_id(&["example", label, &norm]),
            kind: Kind::Example,
            status: Status::Pending,
            intent: label.clone(),
            title: String::new(),
            answer: String::new(),
            texts: vec![text.clone()],
            count: *n,
            nearest: predicted.clone(),
            why,
        });
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.intent.cmp(&b.intent)));
    out
}

/// Utterances the bot could not answer: no intent confirmed or tagged, and
/// not answered right away (out of scope, options or a guess the client
/// did not take), or answered but «не решён», or handed off.
fn unanswered(u: &Utterance) -> bool {
    u.confirmed.is_none()
        && (u.decision.as_deref() != Some("answer") || u.solved == Some(false) || u.handed_off)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// New intents: clusters of unanswered questions. Unique texts are embedded
/// (in batches) and grouped by leader clustering in order of frequency: a
/// text joins the closest cluster whose centroid is within `similarity`,
/// or starts one. Each cluster lists its utterances closest to its centroid.
pub fn new_intents(
    utterances: &[Utterance],
    kb: &KnowledgeBase,
    clf: &Classifier,
    opts: &Options,
) -> Result<Vec<Proposal>> {
    let mut counts: HashMap<String, (usize, String)> = HashMap::new();
    for u in utterances
        .iter()
        .filter(|u| unanswered(u) && learnable(&u.text))
    {
        counts
            .entry(normalize_text(&u.text))
            .or_insert((0, u.text.clone()))
            .0 += 1;
    }
    let mut texts: Vec<(String, usize, String)> = counts
        .into_iter()
        .map(|(norm, (n, text))| (norm, n, text))
        .collect();
    texts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if texts.len() > opts.max_questions {
        tracing::info!(
            "suggest: the {} most frequent of {} different unanswered questions are clustered",
            opts.max_questions,
            texts.len()
        );
        texts.truncate(opts.max_questions);
    }
    let prefixed: Vec<String> = texts
        .iter()
        .map(|(_, _, t)| format!("{}{t}", clf.prefix()))
        .collect();
    let mut cache = EmbeddingCache::open(None, "suggest");
    let vectors = cache.embed_all(clf.embedder(), &prefixed, "embedding questions")?;
    struct Cluster {
        sum: Vec<f32>,
        centroid: Vec<f32>,
        members: Vec<usize>,
        count: usize,
    }
    let mut clusters: Vec<Cluster> = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let best = clusters
            .iter()
            .enumerate()
            .map(|(c, cl)| (c, dot(&cl.centroid, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let c = match best {
            Some((c, s)) if s >= opts.similarity => c,
            _ => {
                clusters.push(Cluster {
                    sum: vec![0.0; v.len()],
                    centroid: v.clone(),
                    members: Vec::new(),
                    count: 0,
                });
                clusters.len() - 1
            }
        };
        let cl = &mut clusters[c];
        for (s, x) in cl.sum.iter_mut().zip(v) {
            *s += x;
        }
        let norm = cl.sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        cl.centroid = cl.sum.iter().map(|x| x / norm).collect();
        cl.members.push(i);
        cl.count += texts[i].1;
    }
    clusters.retain(|c| c.count >= opts.min_cluster);
    clusters.sort_by_key(|c| std::cmp::Reverse(c.count));
    let mut out = Vec::new();
    for (k, cl) in clusters.iter().enumerate() {
        let mut members = cl.members.clone();
        members.sort_by(|&a, &b| {
            dot(&cl.centroid, &vectors[b]).total_cmp(&dot(&cl.centroid, &vectors[a]))
        });
        let typical: Vec<String> = members
            .iter()
            .take(opts.typical)
            .map(|&i| texts[i].2.clone())
            .collect();
        let scores = clf.scores(None, &cl.centroid, crate::nlu::classifier::Method::Blend);
        let nearest = clf.decide(&scores).top.first().map(|t| t.intent.clone());
        let keys: Vec<&str> = members.iter().map(|&i| texts[i].0.as_str()).collect();
        let id = short_id(&[&["intent"], &keys[..keys.len().min(3)]].concat());
        out.push(Proposal {
            intent: format!("new_{}", k + 1),
            id,
            kind: Kind::Intent,
            status: Status::Pending,
            title: String::new(),
            answer: String::new(),
            why: format!(
                "Вопросы без ответа: {} (разных: {}); ближе всего тема {}",
                cl.count,
                cl.members.len(),
                nearest
                    .as_deref()
                    .and_then(|i| kb.intent(i))
                    .map(|i| format!("«{}»", i.title))
                    .unwrap_or_else(|| "не найдена".into())
            ),
            texts: typical,
            count: cl.count,
            nearest,
        });
    }
    Ok(out)
}

/// Every proposal: examples first, then new intents.
pub fn suggest(
    utterances: &[Utterance],
    kb: &KnowledgeBase,
    clf: &Classifier,
    opts: &Options,
) -> Result<Proposals> {
    let mut items = examples(utterances, kb);
    items.extend(new_intents(utterances, kb, clf, opts)?);
    Ok(Proposals {
        kb_hash: kb.hash.clone(),
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_alone_teach_nothing() {
        assert!(learnable("как оформить пособие на ребёнка"));
        assert!(!learnable("[ФИО] [телефон]"));
        assert!(!learnable("да"));
        assert!(learnable("меня зовут [ФИО], нужна справка"));
    }
}
