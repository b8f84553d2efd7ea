//! Eligibility rules of measures of support: the optional `eligibility:`
//! block of an intent, over the facts of the client's profile (age,
//! children and their ages, disability group, employment, income level,
//! region). This module owns the rules' syntax and checks (problems with
//! file:line), their evaluation over known and unknown facts, the pure
//! `KnowledgeBase::eligible` the notifications use, and the interview's
//! planner (`next_question`): which fact splits the remaining candidates
//! best, never more than `MAX_QUESTIONS`.
//!
//! ```yaml
//! eligibility:                 # every condition must hold
//!   youngest_child_age: {max: 16}
//!   income: low                # one value or a list: [low]
//! eligibility:
//!   any:                       # or: one of these blocks must hold
//!     - age: {min: 65}
//!     - disability: [1, 2]
//! ```

use super::source::{find_line, Problem};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The most questions the interview asks.
pub const MAX_QUESTIONS: usize = 5;

/// A fact of the profile a rule may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    /// Years, a number.
    Age,
    /// How many children, a number (0: none).
    Children,
    /// The youngest child's age in years.
    YoungestChildAge,
    /// The oldest child's age in years.
    OldestChildAge,
    /// `none`, `1`, `2` or `3`.
    Disability,
    /// `employed`, `unemployed`, `retired`, `student`, `self_employed`.
    Employment,
    /// `low` (below the regional subsistence minimum per person) or `normal`.
    Income,
    /// The region's name, as the client says it (normalised).
    Region,
}

impl Fact {
    pub const ALL: [Fact; 8] = [
        Fact::Age,
        Fact::Children,
        Fact::YoungestChildAge,
        Fact::OldestChildAge,
        Fact::Disability,
        Fact::Employment,
        Fact::Income,
        Fact::Region,
    ];

    /// The fact's name in rules and in `Profile::facts`.
    pub fn name(self) -> &'static str {
        match self {
            Fact::Age => "age",
            Fact::Children => "children",
            Fact::YoungestChildAge => "youngest_child_age",
            Fact::OldestChildAge => "oldest_child_age",
            Fact::Disability => "disability",
            Fact::Employment => "employment",
            Fact::Income => "income",
            Fact::Region => "region",
        }
    }

    pub fn from_name(name: &str) -> Option<Fact> {
        Fact::ALL.into_iter().find(|f| f.name() == name)
    }

    /// A number (tested by `{min, max}`), not a value from a list.
    pub fn numeric(self) -> bool {
        matches!(
            self,
            Fact::Age | Fact::Children | Fact::YoungestChildAge | Fact::OldestChildAge
        )
    }

    /// A child's age: undefined (so no rule on it holds) without children.
    pub fn of_child(self) -> bool {
        matches!(self, Fact::YoungestChildAge | Fact::OldestChildAge)
    }

    /// The values a list fact takes (empty: any text, the region).
    pub fn values(self) -> &'static [&'static str] {
        match self {
            Fact::Disability => &["none", "1", "2", "3"],
            Fact::Employment => &[
                "employed",
                "unemployed",
                "retired",
                "student",
                "self_employed",
            ],
            Fact::Income => &["low", "normal"],
            _ => &[],
        }
    }
}

/// One condition on one fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// A number within the bounds (inclusive).
    Range { min: Option<u32>, max: Option<u32> },
    /// One of these values.
    OneOf(Vec<String>),
}

impl Cond {
    fn holds(&self, value: &str) -> Option<bool> {
        match self {
            Cond::Range { min, max } => {
                let v: u32 = value.trim().parse().ok()?;
                Some(min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
            }
            Cond::OneOf(vs) => {
                let v = norm_value(value);
                Some(vs.contains(&v))
            }
        }
    }
}

/// Whether a rule holds: yes, no, or not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    Unknown,
}

/// Conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    pub conds: Vec<(Fact, Cond)>,
}

/// The value of `fact` among `facts`, as a condition sees it: a child's
/// age of a client with no children holds no condition.
fn cond_on(fact: Fact, cond: &Cond, facts: &BTreeMap<String, String>) -> Tri {
    if fact.of_child() && facts.get(Fact::Children.name()).map(|c| c.trim()) == Some("0") {
        return Tri::No;
    }
    match facts.get(fact.name()).and_then(|v| cond.holds(v)) {
        Some(true) => Tri::Yes,
        Some(false) => Tri::No,
        None => Tri::Unknown,
    }
}

impl Rule {
    pub fn eval(&self, facts: &BTreeMap<String, String>) -> Tri {
        let mut all = Tri::Yes;
        for (f, c) in &self.conds {
            match cond_on(*f, c, facts) {
                Tri::No => return Tri::No,
                Tri::Unknown => all = Tri::Unknown,
                Tri::Yes => {}
            }
        }
        all
    }
}

/// An intent's rules: it fits when any of `any` holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Eligibility {
    pub any: Vec<Rule>,
}

impl Eligibility {
    pub fn eval(&self, facts: &BTreeMap<String, String>) -> Tri {
        let mut r = Tri::No;
        for rule in &self.any {
            match rule.eval(facts) {
                Tri::Yes => return Tri::Yes,
                Tri::Unknown => r = Tri::Unknown,
                Tri::No => {}
            }
        }
        r
    }

    /// Whether the facts fit (unknown facts fit nothing).
    pub fn matches(&self, facts: &BTreeMap<String, String>) -> bool {
        self.eval(facts) == Tri::Yes
    }

    /// How many conditions the first rule that holds has: a measure with
    /// more of them is more particular to the client.
    pub fn matched_conditions(&self, facts: &BTreeMap<String, String>) -> usize {
        self.any
            .iter()
            .filter(|r| r.eval(facts) == Tri::Yes)
            .map(|r| r.conds.len())
            .max()
            .unwrap_or(0)
    }

    /// Every fact any rule tests.
    pub fn facts(&self) -> BTreeSet<Fact> {
        self.any
            .iter()
            .flat_map(|r| r.conds.iter().map(|(f, _)| *f))
            .collect()
    }

    /// Reads an `eligibility:` block; problems name `file` and the line
    /// (found from `from`, the intent's line, in `lines`).
    pub fn parse(
        v: &Value,
        intent: &str,
        file: &Path,
        lines: &[&str],
        from: usize,
        problems: &mut Vec<Problem>,
    ) -> Option<Eligibility> {
        let at = find_line(lines, from, "eligibility:");
        let before = problems.len();
        let mut err = |key: &str, message: String| {
            let line = if key.is_empty() {
                at
            } else {
                find_line(lines, at, &format!("{key}:"))
            };
            problems.push(Problem {
                file: file.to_path_buf(),
                line,
                message: format!("intent `{intent}`: eligibility: {message}"),
            });
        };
        let Value::Mapping(m) = v else {
            err("", "expected a block of conditions (`age: {min: 60}`) or `any:` with a list of such blocks".into());
            return None;
        };
        let mut out = Eligibility::default();
        if let Some(any) = m.get("any") {
            if m.len() > 1 {
                err(
                    "any",
                    "`any:` stands alone: put the other conditions inside its blocks".into(),
                );
            }
            match any {
                Value::Sequence(items) if !items.is_empty() => {
                    for item in items {
                        if let Some(r) = parse_rule(item, &mut err) {
                            out.any.push(r);
                        }
                    }
                }
                _ => err(
                    "any",
                    "`any:` needs a list of blocks of conditions, e.g. `- age: {min: 65}`".into(),
                ),
            }
        } else if let Some(r) = parse_rule(v, &mut err) {
            out.any.push(r);
        }
        (problems.len() == before && !out.any.is_empty()).then_some(out)
    }
}

/// A list value as rules and profiles compare it: lower case, words
/// joined by `_` («self employed» → `self_employed`).
pub fn norm_value(s: &str) -> String {
    super::source::normalize_text(s).replace(' ', "_")
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(norm_value(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_rule(v: &Value, err: &mut impl FnMut(&str, String)) -> Option<Rule> {
    let Value::Mapping(m) = v else {
        err(
            "",
            "a block of conditions must map facts to conditions, e.g. `age: {min: 60}`".into(),
        );
        return None;
    };
    if m.is_empty() {
        err(
            "",
            "an empty block of conditions: name at least one fact".into(),
        );
        return None;
    }
    let mut rule = Rule::default();
    let mut ok = true;
    for (k, c) in m {
        let key = k.as_str().unwrap_or_default();
        let Some(fact) = Fact::from_name(key) else {
            let known: Vec<&str> = Fact::ALL.iter().map(|f| f.name()).collect();
            err(
                key,
                format!("unknown fact `{key}`; known facts: {}", known.join(", ")),
            );
            ok = false;
            continue;
        };
        let cond = if fact.numeric() {
            parse_range(key, c, err)
        } else {
            parse_values(fact, key, c, err)
        };
        match cond {
            Some(c) => rule.conds.push((fact, c)),
            None => ok = false,
        }
    }
    ok.then_some(rule)
}

fn parse_range(key: &str, v: &Value, err: &mut impl FnMut(&str, String)) -> Option<Cond> {
    let bad = |err: &mut dyn FnMut(&str, String)| {
        err(key, format!("`{key}` is a number: write `{{min: N}}`, `{{max: N}}` or both, whole numbers from 0"));
        None
    };
    let Value::Mapping(m) = v else {
        return bad(err);
    };
    let mut min = None;
    let mut max = None;
    for (k, n) in m {
        let n = match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => return bad(err),
        };
        match k.as_str() {
            Some("min") => min = Some(n),
            Some("max") => max = Some(n),
            _ => return bad(err),
        }
    }
    if min.is_none() && max.is_none() {
        return bad(err);
    }
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            err(
                key,
                format!("`{key}`: min {a} is above max {b}, so nobody fits"),
            );
            return None;
        }
    }
    Some(Cond::Range { min, max })
}

fn parse_values(
    fact: Fact,
    key: &str,
    v: &Value,
    err: &mut impl FnMut(&str, String),
) -> Option<Cond> {
    let items: Vec<&Value> = match v {
        Value::Sequence(s) => s.iter().collect(),
        other => vec![other],
    };
    let mut vals = Vec::new();
    for it in items {
        let Some(s) = scalar(it).filter(|s| !s.is_empty()) else {
            err(key, format!("`{key}` takes a value or a list of values"));
            return None;
        };
        let allowed = fact.values();
        if !allowed.is_empty() && !allowed.contains(&s.as_str()) {
            err(
                key,
                format!("`{key}`: unknown value `{s}`; use {}", allowed.join(", ")),
            );
            return None;
        }
        vals.push(s);
    }
    if vals.is_empty() {
        err(key, format!("`{key}`: an empty list: nobody fits"));
        return None;
    }
    Some(Cond::OneOf(vals))
}

/// Values of `fact` that fall on every side of the rules' bounds among
/// `rules`, one per interval (numbers) or every value (lists): the answers
/// the planner weighs.
fn answers(fact: Fact, rules: &[&Eligibility]) -> Vec<String> {
    if fact.numeric() {
        let mut cuts = BTreeSet::new();
        for e in rules {
            for r in &e.any {
                for (f, c) in &r.conds {
                    if let (true, Cond::Range { min, max }) = (*f == fact, c) {
                        if let Some(m) = min {
                            cuts.insert(*m);
                        }
                        if let Some(m) = max {
                            cuts.insert(m + 1);
                        }
                    }
                }
            }
        }
        let mut out: Vec<String> = Vec::new();
        if let Some(first) = cuts.first() {
            if *first > 0 {
                out.push((first - 1).to_string());
            }
        }
        out.extend(cuts.iter().map(|c| c.to_string()));
        if out.is_empty() {
            out.push("0".into());
        }
        return out;
    }
    let mut vals: BTreeSet<String> = fact.values().iter().map(|s| s.to_string()).collect();
    if vals.is_empty() {
        for e in rules {
            for r in &e.any {
                for (f, c) in &r.conds {
                    if let (true, Cond::OneOf(vs)) = (*f == fact, c) {
                        vals.extend(vs.iter().cloned());
                    }
                }
            }
        }
        // and a region no rule names
        vals.insert(String::new());
    }
    vals.into_iter().collect()
}

/// The interview's next question: among the facts not known and not
/// skipped that the undecided candidates test, the one that leaves the
/// fewest candidates undecided on average over its answers (ties: the one
/// more candidates test, then the order of `Fact::ALL`). None when every
/// candidate is decided or nothing more can be asked.
pub fn next_question(
    candidates: &[&Eligibility],
    facts: &BTreeMap<String, String>,
    skipped: &BTreeSet<Fact>,
) -> Option<Fact> {
    let open: Vec<&Eligibility> = candidates
        .iter()
        .copied()
        .filter(|e| e.eval(facts) == Tri::Unknown)
        .collect();
    let mut best: Option<(Fact, f64, usize)> = None;
    for fact in Fact::ALL {
        if facts.contains_key(fact.name()) || skipped.contains(&fact) {
            continue;
        }
        // a child's age says nothing once there are no children
        if fact.of_child() && facts.get(Fact::Children.name()).map(|c| c.trim()) == Some("0") {
            continue;
        }
        let testing: Vec<&Eligibility> = open
            .iter()
            .copied()
            .filter(|e| e.facts().contains(&fact))
            .collect();
        if testing.is_empty() {
            continue;
        }
        let vals = answers(fact, &testing);
        let mut left = 0usize;
        for v in &vals {
            let mut f2 = facts.clone();
            f2.insert(fact.name().to_string(), v.clone());
            left += open.iter().filter(|e| e.eval(&f2) == Tri::Unknown).count();
        }
        let expected = left as f64 / vals.len() as f64;
        let better = match best {
            None => true,
            Some((_, e, n)) => {
                expected < e - 1e-9 || (expected - e).abs() < 1e-9 && testing.len() > n
            }
        };
        if better {
            best = Some((fact, expected, testing.len()));
        }
    }
    best.map(|(f, _, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(yaml: &str) -> (Option<Eligibility>, Vec<Problem>) {
        let text = format!("intents:\n  - id: x\n    eligibility:\n{yaml}");
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let v = &doc["intents"][0]["eligibility"];
        let lines: Vec<&str> = text.lines().collect();
        let mut p = Vec::new();
        let e = Eligibility::parse(v, "x", Path::new("f.yaml"), &lines, 2, &mut p);
        (e, p)
    }

    #[test]
    fn rules_hold_fail_or_wait_for_facts() {
        let (e, p) = parse("      youngest_child_age: {max: 16}\n      income: low\n");
        assert!(p.is_empty(), "{p:?}");
        let e = e.unwrap();
        assert_eq!(e.eval(&facts(&[])), Tri::Unknown);
        assert_eq!(e.eval(&facts(&[("income", "normal")])), Tri::No);
        assert_eq!(
            e.eval(&facts(&[("income", "low"), ("youngest_child_age", "5")])),
            Tri::Yes
        );
        assert_eq!(
            e.eval(&facts(&[("income", "low"), ("youngest_child_age", "17")])),
            Tri::No
        );
        // no children: no child's age holds
        assert_eq!(e.eval(&facts(&[("children", "0")])), Tri::No);
        let (any, p) =
            parse("      any:\n        - age: {min: 65}\n        - disability: [1, 2]\n");
        assert!(p.is_empty(), "{p:?}");
        let any = any.unwrap();
        assert!(any.matches(&facts(&[("disability", "2")])));
        assert!(any.matches(&facts(&[("age", "70"), ("disability", "none")])));
        assert_eq!(any.eval(&facts(&[("age", "40")])), Tri::Unknown);
        assert_eq!(
            any.eval(&facts(&[("age", "40"), ("disability", "3")])),
            Tri::No
        );
    }

    #[test]
    fn bad_rules_are_reported_at_their_line() {
        let (e, p) = parse("      age: {min: 70, max: 60}\n      pets: [cat]\n      income: rich\n      disability: {min: 1}\n");
        assert!(e.is_none());
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter().any(|t| t
                .starts_with("f.yaml:4: intent `x`: eligibility: `age`: min 70 is above max 60")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("f.yaml:5: intent `x`: eligibility: unknown fact `pets`")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.starts_with("f.yaml:6: intent `x`: eligibility: `income`: unknown value `rich`; use low, normal")), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("f.yaml:7: intent `x`: eligibility: `disability` takes a value")),
            "{text:?}"
        );
        let (_, p) = parse("      any: []\n");
        assert!(p[0].to_string().starts_with("f.yaml:4:"), "{p:?}");
    }

    #[test]
    fn the_planner_asks_what_splits_the_candidates() {
        let (a, _) = parse("      income: low\n");
        let (b, _) = parse("      income: low\n      age: {min: 60}\n");
        let (c, _) = parse("      disability: [1, 2, 3]\n");
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        let all = [&a, &b, &c];
        assert_eq!(
            next_question(&all, &facts(&[]), &BTreeSet::new()),
            Some(Fact::Income)
        );
        let known = facts(&[("income", "normal")]);
        assert_eq!(
            next_question(&all, &known, &BTreeSet::new()),
            Some(Fact::Disability)
        );
        let skipped = BTreeSet::from([Fact::Income]);
        assert_eq!(
            next_question(&all, &facts(&[("disability", "none")]), &skipped),
            Some(Fact::Age)
        );
    }
}
