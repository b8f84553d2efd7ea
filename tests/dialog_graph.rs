//! Loading the dialog graph: the project's own graph loads, and every kind of
//! mistake is reported with its file and line.

use otklik::dialog::graph::Graph;
use std::path::PathBuf;

fn kb_ids() -> Vec<String> {
    let kb = otklik::nlu::kb::KnowledgeBase::load_dir(
        "intents".as_ref(),
        15,
        &[
            "universal".into(),
            "senior".into(),
            "family".into(),
            "disability".into(),
            "jobseeker".into(),
        ],
    )
    .unwrap();
    kb.intents.iter().map(|i| i.id.clone()).collect()
}

#[test]
fn the_project_graph_loads() {
    let g = Graph::load_dir("dialogs".as_ref(), &kb_ids()).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        (g.start.as_str(), g.classify.as_str(), g.operator.as_str()),
        ("start", "ask", "operator")
    );
    for n in [
        "answer", "solved", "rating", "book", "callback", "status", "withdraw", "goodbye",
    ] {
        assert!(g.nodes.contains_key(n), "node {n} missing");
    }
}

/// The project's graph with `edit` applied to its text.
fn broken(edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string("dialogs/main.yaml").unwrap();
    let changed = edit(text.clone());
    assert_ne!(changed, text, "the edit did not apply");
    let err = Graph::from_sources(&[(PathBuf::from("dialogs/main.yaml"), changed)], &kb_ids())
        .unwrap_err();
    err.to_string()
}

fn line_of(needle: &str) -> usize {
    let text = std::fs::read_to_string("dialogs/main.yaml").unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn unknown_node_is_reported_with_its_line() {
    let e = broken(|t| {
        t.replace(
            "    next: solved\n\n  solved:",
            "    next: solvd\n\n  solved:",
        )
    });
    assert!(e.contains("leads to unknown node `solvd`"), "{e}");
    assert!(
        e.contains(&format!("dialogs/main.yaml:{}", line_of("  answer:"))),
        "{e}"
    );
}

#[test]
fn unreachable_node_is_reported() {
    let e = broken(|t| {
        t.replace("  greet:\n", "  orphan:\n    kind: say\n    text: \"никто сюда не придёт\"\n    next: ask\n\n  greet:\n")
    });
    assert!(e.contains("node `orphan` is unreachable"), "{e}");
}

#[test]
fn dead_end_and_missing_prompt_are_reported() {
    let e = broken(|t| {
        t.replace(
            "  bye:\n    kind: say\n    text: \"Рада была помочь!\"\n    next: rating",
            "  bye:\n    kind: say\n    text: \"\"",
        )
    });
    assert!(e.contains("node `bye`: missing prompt"), "{e}");
    assert!(e.contains("node `bye`: dead end"), "{e}");
}

#[test]
fn missing_builtin_prompt_and_bad_pattern_are_reported() {
    let e = broken(|t| {
        t.replace("  slot_taken:", "  slot_takn:")
            .replace("\"неа\"", "\"не(а\"")
    });
    assert!(e.contains("missing prompt `prompts.slot_taken`"), "{e}");
    assert!(e.contains("lexicon.no: bad pattern"), "{e}");
}

#[test]
fn a_loop_that_never_waits_is_reported() {
    let e = broken(|t| {
        t.replace(
            "  bye:\n    kind: say\n    text: \"Рада была помочь!\"\n    next: rating",
            "  bye:\n    kind: say\n    text: \"Рада была помочь!\"\n    next: bye",
        )
    });
    assert!(
        e.contains("node `bye` starts a loop that never waits"),
        "{e}"
    );
}

#[test]
fn routes_to_unknown_intents_and_yaml_errors_are_reported() {
    let e = broken(|t| t.replace("      greeting: greet", "      greting: greet"));
    assert!(e.contains("route for unknown intent `greting`"), "{e}");
    let e = broken(|t| t.replace("start: start", "start: [start"));
    assert!(e.contains("cannot parse"), "{e}");
}
