//! Malformed CSV, TSV and JSONL, generated: every import either succeeds
//! or fails with one line that names the file (and the line, when the
//! problem is in the data); never a panic, and nothing left behind.

use labelrest::data::{Columns, DataError, Format};
use labelrest::store::{ImportSpec, LabelColIs, Session, Settings};
use proptest::prelude::*;

const CSV: &str = "text,label\nhello there,a\n\"quoted, with comma\",b\nplain row,a\n\"multi\nline\",b\nlast one,a\n";
const TSV: &str = "text\tlabel\nhello there\ta\nsecond\tb\nthird\ta\n";
const JSONL: &str =
    "{\"text\": \"hello\", \"label\": \"a\"}\n{\"text\": \"second\", \"label\": \"b\"}\n{\"text\": \"third\", \"label\": \"a\"}\n";

/// One edit of a valid file: insert a byte from a set of troublemakers,
/// delete a byte, or cut the file.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Cut(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let byte = prop::sample::select(vec![b'"', b',', b'\t', b'\n', b'\r', b'{', b'}', b':', 0xff, 0xc3, 0, b'\\']);
    let edit = prop_oneof![
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Cut),
    ];
    prop::collection::vec(edit, 1..5)
}

fn apply(base: &str, edits: &[Edit]) -> Vec<u8> {
    let mut v = base.as_bytes().to_vec();
    for e in edits {
        let n = v.len().max(1);
        match *e {
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Delete(i) => {
                if !v.is_empty() {
                    v.remove(i % n);
                }
            }
            Edit::Cut(i) => v.truncate(i % n),
        }
    }
    v
}

fn check(ext: &str, format: Format, bytes: &[u8]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join(format!("data.{ext}"));
    std::fs::write(&file, bytes).unwrap();
    let sessions = d.path().join("sessions");
    let spec = ImportSpec {
        data: file.clone(),
        format: Some(format),
        columns: Columns::new("text", Some("label")),
        label_col_is: LabelColIs::Seed,
        labels: Some(labelrest::data::parse_label_list("a,b").unwrap()),
        test: None,
        test_label_col: None,
        settings: Settings::default(),
    };
    match Session::create(&sessions, "s", &spec, false) {
        Ok(_) => prop_assert!(sessions.join("s/session.db").exists()),
        Err(e) => {
            let msg = format!("{e:#}");
            let shown = labelrest::data::display_safe(&msg);
            prop_assert_eq!(shown.lines().count(), 1, "one line: {:?}", msg);
            if let Some(de) = e.downcast_ref::<DataError>() {
                prop_assert!(msg.contains("data."), "names the file: {}", msg);
                // Problems in the data name their line (a missing or empty file has none).
                let whole_file = ["no such file", "empty", "no rows"].iter().any(|w| de.message.contains(w));
                prop_assert!(de.line.is_some() || whole_file, "names the line: {}", msg);
            }
            let left: Vec<String> = std::fs::read_dir(&sessions)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
                .unwrap_or_default();
            prop_assert!(left.is_empty(), "left behind: {:?}", left);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn malformed_csv(e in edits()) {
        check("csv", Format::Csv, &apply(CSV, &e))?;
    }

    #[test]
    fn malformed_tsv(e in edits()) {
        check("tsv", Format::Tsv, &apply(TSV, &e))?;
    }

    #[test]
    fn malformed_jsonl(e in edits()) {
        check("jsonl", Format::Jsonl, &apply(JSONL, &e))?;
    }

    /// A stray quote anywhere in the middle of a CSV.
    #[test]
    fn stray_quote_mid_csv(at in 12usize..80) {
        let mut v = CSV.as_bytes().to_vec();
        let at = at.min(v.len() - 1);
        v.insert(at, b'"');
        check("csv", Format::Csv, &v)?;
    }
}
