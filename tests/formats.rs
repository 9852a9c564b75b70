//! Formats other tools read: Prodigy's JSONL in and out, Label Studio's
//! tasks, a Hugging Face `datasets` folder; each exported, then read back
//! (by `labelrest new` or serde_json) and checked field by field.

mod common;
use common::*;
use labelrest::store::{Session, Source};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// A row of the CSV export, the reference the other formats are checked against.
#[derive(Debug)]
struct Ref {
    id: i64,
    text: String,
    label: String,
    source: String,
    prob: Option<f64>,
}

/// A session of 60 demo rows, two labelled by the person, one retrain:
/// person and model labels with probabilities.
fn session_with_model(d: &Path) {
    small_demo_session(d, "s", 60);
    let s = Session::open(d, "s").unwrap();
    s.add_label(1, 0, 0, None).unwrap();
    s.add_label(2, 1, 0, None).unwrap();
    drop(s);
    let o = labelrest(d, &["retrain", "s"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn reference(d: &Path, extra: &[&str]) -> Vec<Ref> {
    let out = d.join("ref.csv");
    let mut args = vec!["export", "s", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = labelrest(d, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    csv::Reader::from_path(&out)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            Ref {
                id: r[0].parse().unwrap(),
                text: r[1].to_string(),
                label: r[2].to_string(),
                source: r[3].to_string(),
                prob: r[4].parse().ok(),
            }
        })
        .collect()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

/// The labels of a session by row id: (label name, source).
fn labels_of(d: &Path, name: &str) -> HashMap<i64, (String, Source)> {
    let s = Session::open_read_only(d, name).unwrap();
    let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
    s.labels().unwrap().into_iter().map(|l| (l.row_id, (names[l.label as usize].clone(), l.source))).collect()
}

fn close(a: &Value, b: Option<f64>) -> bool {
    match (a.as_f64(), b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-5,
        _ => false,
    }
}

/// Prodigy out and back in: the person's labels `accept`ed with their
/// meta; the model's labels and rows left without one are tasks with no
/// answer (Prodigy would store an `accept` or an `ignore` as an annotator's
/// decision); `labelrest new` recognises the file by its content, takes the
/// answered labels as seed labels and the tasks unlabelled.
#[test]
fn prodigy_export_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    session_with_model(d);
    let refs = reference(d, &[]);
    assert_eq!(refs.len(), 60);
    let p = d.join("prodigy.jsonl");
    let o = labelrest(d, &["export", "s", "--out", p.to_str().unwrap(), "--format", "prodigy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("as prodigy (2 person, 0 seed, 58 model"), "{}", stdout(&o));
    assert!(stdout(&o).contains("the model's 58 labels are tasks to review, with no answer"), "{}", stdout(&o));
    let lines = jsonl(&p);
    assert_eq!(lines.len(), 60);
    for (l, r) in lines.iter().zip(&refs) {
        assert_eq!(l["text"], r.text.as_str());
        assert_eq!(l["label"], r.label.as_str());
        assert_eq!(l["meta"]["id"], r.id);
        assert_eq!(l["meta"]["source"], r.source.as_str());
        if r.source == "model" {
            assert!(l.get("answer").is_none(), "a model's label is no answer: {l}");
            assert!(close(&l["meta"]["probability"], r.prob), "{l} vs {r:?}");
        } else {
            assert_eq!(l["answer"], "accept");
        }
    }
    // Back in, told by its content: the answered rows with their labels, as
    // seed labels; the model's guesses unlabelled.
    let o = labelrest(d, &["new", "back", "--data", p.to_str().unwrap(), "--labels-file", demo_labels(d).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("60 rows") && stdout(&o).contains("2 seed labels"), "{}", stdout(&o));
    let back = labels_of(d, "back");
    assert_eq!(back.len(), 2);
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(back.get(&(i as i64 + 1)), (r.source == "person").then(|| (r.label.clone(), Source::Seed)).as_ref(), "row {}", i + 1);
    }

    // Below --min-confidence: a task without a label or an answer, back unlabelled.
    let mut probs: Vec<f64> = refs.iter().filter(|r| r.source == "model").filter_map(|r| r.prob).collect();
    probs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let t = format!("{:.4}", probs[probs.len() / 2]);
    let refs = reference(d, &["--min-confidence", &t]);
    let unlabelled = refs.iter().filter(|r| r.source == "none").count();
    assert!(unlabelled > 0 && unlabelled < 58, "{unlabelled}");
    let o = labelrest(d, &["export", "s", "--out", p.to_str().unwrap(), "--format", "prodigy", "--min-confidence", &t]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = jsonl(&p);
    for (l, r) in lines.iter().zip(&refs) {
        if r.source == "none" {
            assert!(l.get("answer").is_none() && l.get("label").is_none(), "{l}");
        } else {
            assert_eq!(l["label"], r.label.as_str());
        }
    }
    let o = labelrest(d, &["new", "back2", "--data", p.to_str().unwrap(), "--labels-file", demo_labels(d).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = labels_of(d, "back2");
    assert_eq!(back.len(), 2);
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(back.get(&(i as i64 + 1)).map(|x| x.0.as_str()), (r.source == "person").then_some(r.label.as_str()));
    }
    // An export of an older labelrest (the model's labels `accept`ed, with
    // `meta.source` model) comes back in with them unlabelled too.
    let old = d.join("old.jsonl");
    std::fs::write(
        &old,
        "{\"text\":\"a\",\"label\":\"card_arrival\",\"answer\":\"accept\",\"meta\":{\"id\":1,\"source\":\"person\"}}\n\
         {\"text\":\"b\",\"label\":\"top_up_failed\",\"answer\":\"accept\",\"meta\":{\"id\":2,\"source\":\"seed\"}}\n\
         {\"text\":\"c\",\"label\":\"card_arrival\",\"answer\":\"accept\",\"meta\":{\"id\":3,\"source\":\"model\",\"probability\":0.4}}\n",
    )
    .unwrap();
    let o = labelrest(d, &["new", "old", "--data", old.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 seed labels") && stdout(&o).contains("1 rows with labelrest's model's label read unlabelled"),
        "{}",
        stdout(&o)
    );
    // The same rows after a person answered them in Prodigy (`db-out` adds
    // its `_` fields): every accept is a label.
    let dbout = d.join("dbout.jsonl");
    std::fs::write(
        &dbout,
        "{\"text\":\"a\",\"label\":\"card_arrival\",\"answer\":\"accept\",\"meta\":{\"id\":1,\"source\":\"person\"},\"_task_hash\":1}\n\
         {\"text\":\"c\",\"label\":\"top_up_failed\",\"answer\":\"accept\",\"meta\":{\"id\":3,\"source\":\"model\"},\"_task_hash\":2,\"_annotator_id\":\"x\"}\n",
    )
    .unwrap();
    let o = labelrest(d, &["new", "dbout", "--data", dbout.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 seed labels") && !stdout(&o).contains("read unlabelled"), "{}", stdout(&o));
    // An export whose first row is the model's (a task, no answer) is told by its content too.
    let first = d.join("first.jsonl");
    std::fs::write(
        &first,
        "{\"text\":\"c\",\"label\":\"card_arrival\",\"meta\":{\"id\":3,\"source\":\"model\",\"probability\":0.4}}\n\
         {\"text\":\"a\",\"label\":\"card_arrival\",\"answer\":\"accept\",\"meta\":{\"id\":1,\"source\":\"person\"}}\n\
         {\"text\":\"b\",\"label\":\"top_up_failed\",\"answer\":\"accept\",\"meta\":{\"id\":2,\"source\":\"seed\"}}\n",
    )
    .unwrap();
    let o = labelrest(d, &["new", "first", "--data", first.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 rows, 2 labels, 2 seed labels"), "{}", stdout(&o));
}

/// Label Studio's tasks: one JSON array (chosen by `.json`), the text in
/// `data`, the model's labels as predictions with their score, the
/// person's as annotations, both as `choices` results.
#[test]
fn label_studio_tasks() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    session_with_model(d);
    let refs = reference(d, &[]);
    let out = d.join("tasks.json");
    let o = labelrest(d, &["export", "s", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("as label-studio") && stdout(&o).contains(r#"<Choices name="label" toName="text">"#), "{}", stdout(&o));
    let tasks: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(tasks.len(), 60);
    let result = |label: &str| json!([{ "from_name": "label", "to_name": "text", "type": "choices", "value": { "choices": [label] } }]);
    for (t, r) in tasks.iter().zip(&refs) {
        assert_eq!(t["data"]["text"], r.text.as_str());
        assert_eq!(t["data"]["row_id"], r.id);
        if r.source == "person" {
            assert_eq!(t["annotations"][0]["result"], result(&r.label), "{t}");
            assert!(t.get("predictions").is_none());
            // Label Studio credits imports to the importer: who gave it is in the data.
            assert!(t["data"]["annotator"].as_str().is_some_and(|a| !a.is_empty()), "{t}");
        } else {
            assert_eq!(r.source, "model");
            let p = &t["predictions"][0];
            assert_eq!(p["result"], result(&r.label), "{t}");
            assert!(close(&p["score"], r.prob), "{t} vs {r:?}");
            assert_eq!(p["model_version"], "labelrest s iteration 1");
            assert!(t.get("annotations").is_none());
            assert!(t["data"].get("annotator").is_none(), "{t}");
        }
    }
    // --format wins over the extension.
    let out2 = d.join("only-mine.txt");
    let o = labelrest(d, &["export", "s", "--out", out2.to_str().unwrap(), "--format", "label-studio", "--only-labelled"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tasks: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out2).unwrap()).unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t["data"]["source"] == "person" && t["annotations"].is_array()));
}

/// A `datasets` folder: data.jsonl (text, label, label_id), the features
/// with `label` a ClassLabel of the session's names, a card whose header
/// names them too; read back by `labelrest new` as plain JSONL.
#[test]
fn hugging_face_folder() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    session_with_model(d);
    let refs = reference(d, &[]);
    let names: Vec<String> = Session::open_read_only(d, "s").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let dir = d.join("hf");
    let o = labelrest(d, &["export", "s", "--out", dir.to_str().unwrap(), "--format", "hf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("dataset_info.json"), "{}", stdout(&o));
    let info: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dataset_info.json")).unwrap()).unwrap();
    let f = &info["features"];
    assert_eq!(f["text"], json!({ "dtype": "string", "_type": "Value" }));
    assert_eq!(f["label"]["_type"], "ClassLabel");
    assert_eq!(f["label"]["names"], json!(names));
    assert_eq!(f["label"]["num_classes"], names.len());
    assert_eq!(f["label_id"], json!({ "dtype": "int64", "_type": "Value" }));
    let rows = jsonl(&dir.join("data.jsonl"));
    assert_eq!(rows.len(), 60);
    for (row, r) in rows.iter().zip(&refs) {
        assert_eq!(row["text"], r.text.as_str());
        assert_eq!(row["label"], r.label.as_str());
        assert_eq!(names[row["label_id"].as_u64().unwrap() as usize], r.label);
        assert_eq!(row["source"], r.source.as_str());
        if r.source == "model" {
            assert!(close(&row["probability"], r.prob));
        }
        // Every field is a feature, every feature a field.
        let mut keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        let mut feats: Vec<&String> = f.as_object().unwrap().keys().collect();
        keys.sort();
        feats.sort();
        assert_eq!(keys, feats);
    }
    // The card's header: the class names in order, and the data file.
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(card.starts_with("---\ndataset_info:\n") && card.contains("class_label:"), "{card}");
    // No `configs:` block: `datasets` would key its cache on the card alone,
    // and a folder exported again would load as it was the first time.
    assert!(!card.contains("configs:"), "{card}");
    for (i, n) in names.iter().enumerate() {
        assert!(card.contains(&format!("'{i}': {}\n", serde_json::to_string(n).unwrap())), "{n} in {card}");
    }
    // Back in as plain JSONL (no answer field: not taken for Prodigy's).
    let o = labelrest(d, &["new", "hfback", "--data", dir.join("data.jsonl").to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = labels_of(d, "hfback");
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(back[&(i as i64 + 1)].0, r.label);
    }
    // Another data file in the folder: `load_dataset` would read it too, and export says so.
    std::fs::write(dir.join("notes.csv"), "a,b\n").unwrap();
    let o = labelrest(d, &["export", "s", "--out", dir.to_str().unwrap(), "--format", "hf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("holds other data files (notes.csv)"), "{}", stdout(&o));
    std::fs::remove_file(dir.join("notes.csv")).unwrap();
    // Rows left without a label: null and -1.
    let o = labelrest(d, &["export", "s", "--out", dir.to_str().unwrap(), "--format", "hf", "--min-confidence", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = jsonl(&dir.join("data.jsonl"));
    let none: Vec<&Value> = rows.iter().filter(|r| r["source"] == "none").collect();
    // In our JSONL too, a row without a label has `label: null`, not "" (a
    // class of its own to `datasets` and pandas).
    let jl = d.join("none.jsonl");
    let o = labelrest(d, &["export", "s", "--out", jl.to_str().unwrap(), "--min-confidence", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = jsonl(&jl);
    assert!(plain.iter().any(|r| r["source"] == "none"));
    assert!(plain.iter().filter(|r| r["source"] == "none").all(|r| r["label"].is_null()), "{plain:?}");
    assert!(plain.iter().filter(|r| r["source"] != "none").all(|r| r["label"].is_string()));
    assert_eq!(none.len(), 58);
    assert!(none.iter().all(|r| r["label"].is_null() && r["label_id"] == -1 && r["probability"].is_null()));
    // A file where the folder should be: one line, exit 1, the file untouched.
    let f = write(d, "taken", b"keep me");
    let o = labelrest(d, &["export", "s", "--out", f.to_str().unwrap(), "--format", "hf"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("taken") && stderr(&o).contains("folder") && stderr(&o).trim().lines().count() == 1, "{}", stderr(&o));
    assert_eq!(std::fs::read(&f).unwrap(), b"keep me");
    assert!(stderr(&o).contains("it is a file"), "{}", stderr(&o));
    // A device says what it is.
    let o = labelrest(d, &["export", "s", "--out", "/dev/null", "--format", "hf"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/dev/null: it is a device"), "{}", stderr(&o));
    // A folder with a README.md of its own (a repository's): refused,
    // nothing written, the README kept.
    let repo = d.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let readme = write(&repo, "README.md", b"# my project\n");
    let o = labelrest(d, &["export", "s", "--out", repo.to_str().unwrap(), "--format", "hf"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("README.md that labelrest did not write") && stderr(&o).trim().lines().count() == 1, "{}", stderr(&o));
    assert_eq!(std::fs::read(&readme).unwrap(), b"# my project\n");
    assert!(!repo.join("data.jsonl").exists() && !repo.join("dataset_info.json").exists());
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
    assert!(out.contains("6 rows, 2 labels, 2 seed labels") && out.contains("1 row with several accepted labels"), "{out}");
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
        assert!(!labelrest::store::exists(&d.join("sessions"), "b").unwrap());
    }
}

/// The export's format: --format, else the extension; one that cannot be
/// told is a usage error (exit 2); --quiet prints nothing.
#[test]
fn export_format_choice() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    small_demo_session(d, "s", 12);
    {
        let s = Session::open(d, "s").unwrap();
        s.add_label(1, 0, 0, None).unwrap();
    }
    for (file, format, first) in
        [("a.csv", None, "id,text"), ("a.ndjson", None, "{\"id\":1,"), ("a.json", None, "[\n{"), ("a.out", Some("prodigy"), "{")]
    {
        let out = d.join(file);
        let mut args = vec!["export", "s", "--out", out.to_str().unwrap(), "--only-labelled", "-q"];
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        let o = labelrest(d, &args);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "--quiet");
        let t = std::fs::read_to_string(&out).unwrap();
        assert!(t.starts_with(first), "{file}: {t}");
        if format.is_some() {
            assert!(t.contains("\"answer\":\"accept\""), "{t}");
        }
    }
    // Nothing to export: still one JSON array.
    small_demo_session(d, "e", 5);
    let out = d.join("e.json");
    let o = labelrest(d, &["export", "e", "--out", out.to_str().unwrap(), "--only-labelled"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "[]\n");
    let o = labelrest(d, &["export", "s", "--out", d.join("a.out").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--format csv|jsonl|prodigy|label-studio|hf"), "{}", stderr(&o));
    let o = labelrest(d, &["export", "s", "--out", "x.csv", "--format", "parquet"]);
    assert_eq!(o.status.code(), Some(2));
}
