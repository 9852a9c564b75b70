//! Formats other tools read: Prodigy's JSONL in.

mod common;
use common::*;
use labelrest::store::{Session, Source};
use std::collections::HashMap;
use std::path::Path;

/// The labels of a session by row id: (label name, source).
fn labels_of(d: &Path, name: &str) -> HashMap<i64, (String, Source)> {
    let s = Session::open_read_only(d, name).unwrap();
    let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
    s.labels().unwrap().into_iter().map(|l| (l.row_id, (names[l.label as usize].clone(), l.source))).collect()
}

const PRODIGY: &str = r#"{"text":"my card has not arrived","label":"card_arrival","answer":"accept","meta":{"source":"tickets"},"_input_hash":1,"_task_hash":2}
{"text":"how do I top up","options":[{"id":"top_up","text":"Top up"},{"id":"card_arrival","text":"Card"}],"accept":["top_up","card_arrival"],"answer":"accept"}
{"text":"rejected: not about a card","label":"card_arrival","answer":"reject"}
{"text":"ignored","label":"top_up","answer":"ignore"}

{"text":"not answered yet","label":"top_up"}
{"text":"accepted with no choice","accept":[],"answer":"accept","meta":{"x":1}}
"#;

/// Prodigy's annotations in: told by the content of a `.jsonl` file, only
/// `accept` rows carry their label (the first of `accept`, else `label`),
/// `reject`/`ignore`/unanswered rows come in unlabelled, `meta` ignored.
#[test]
fn prodigy_import() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let f = write(d, "ann.jsonl", PRODIGY.as_bytes());
    let o = labelrest(d, &["new", "p", "--data", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("6 rows, 2 labels, 2 seed labels") && out.contains("1 rows with several accepted labels"), "{out}");
    let s = Session::open_read_only(d, "p").unwrap();
    let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, vec!["card_arrival", "top_up"]);
    drop(s);
    let labels = labels_of(d, "p");
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[&1], ("card_arrival".to_string(), Source::Seed));
    assert_eq!(labels[&2], ("top_up".to_string(), Source::Seed));
    // Gold labels for a held-out set from Prodigy's too; --format prodigy on any extension.
    let t = write(d, "test.txt", b"{\"text\":\"where is my card\",\"label\":\"card_arrival\",\"answer\":\"accept\"}\n");
    let o = labelrest(d, &["new", "p2", "--data", f.to_str().unwrap(), "--test", t.to_str().unwrap(), "--format", "prodigy"]);
    assert!(o.status.success() && stdout(&o).contains("1 held-out test rows"), "{}{}", stdout(&o), stderr(&o));
    // --format jsonl reads the file as plain JSONL: the label field, whatever the answer.
    let plain = write(d, "plain.jsonl", PRODIGY.lines().filter(|l| l.contains("\"label\"")).collect::<Vec<_>>().join("\n").as_bytes());
    let o = labelrest(d, &["new", "j", "--data", plain.to_str().unwrap(), "--format", "jsonl", "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(labels_of(d, "j").len(), 4);
    let o = labelrest(d, &["new", "j2", "--data", plain.to_str().unwrap(), "--labels", "card_arrival,top_up"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(labels_of(d, "j2").len(), 1, "detected: only the accepted one");
    // Plain JSONL is not taken for Prodigy's: the label column is needed.
    let f = write(d, "plain2.jsonl", b"{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"y\"}\n");
    let o = labelrest(d, &["new", "j3", "--data", f.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("no label set"), "{}", stderr(&o));
}

/// Bad Prodigy records: one line naming the file, the line and the problem.
#[test]
fn prodigy_errors_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    for (content, want) in [
        (
            &b"{\"text\":\"a\",\"label\":\"x\",\"answer\":\"accept\"}\n{\"text\":\"b\",\"label\":\"y\",\"answer\":\"maybe\"}\n"[..],
            "bad.jsonl:2: answer \"maybe\" is not",
        ),
        (
            b"{\"text\":\"a\",\"label\":\"x\",\"answer\":\"accept\"}\n{\"text\":\"b\",\"accept\":\"y\",\"answer\":\"accept\"}\n",
            "bad.jsonl:2: field 'accept' is not a list",
        ),
        (
            b"{\"text\":\"a\",\"label\":\"x\",\"answer\":\"accept\"}\n{\"text\":\"b\",\"accept\":[{\"id\":1}],\"answer\":\"accept\"}\n",
            "bad.jsonl:2: the first of 'accept' is not a label",
        ),
        (
            b"{\"text\":\"a\",\"label\":\"x\",\"answer\":\"accept\"}\n{\"text\":\"b\",\"label\":\"y\",\"answer\":\"accept\"\n",
            "bad.jsonl:2:",
        ),
        (
            b"{\"text\":\"a\",\"label\":\"x\",\"answer\":\"accept\"}\n{\"label\":\"y\",\"answer\":\"accept\"}\n",
            "bad.jsonl:2: no text field",
        ),
    ] {
        let f = write(d, "bad.jsonl", content);
        let o = labelrest(&d.join("sessions"), &["new", "b", "--data", f.to_str().unwrap(), "--labels", "x,y"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(want) && e.trim().lines().count() == 1, "want '{want}': {e}");
        assert!(!labelrest::store::exists(&d.join("sessions"), "b"));
    }
}
