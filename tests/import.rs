//! Import: every format, and every kind of bad input refused with one line
//! that names the file, the line and the problem, leaving nothing behind.

mod common;
use common::*;
use labelrest::store::Session;

fn no_sessions_left(dir: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| !n.ends_with(".log")).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn imports_csv_with_gold_and_test() {
    let d = tempfile::tempdir().unwrap();
    let o = new_demo_session(d.path(), "bank");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2000 rows, 77 labels"), "{}", stdout(&o));
    let s = Session::open_read_only(d.path(), "bank").unwrap();
    let rows = s.rows().unwrap();
    assert_eq!(rows.iter().filter(|r| r.split == labelrest::store::Split::Test).count(), 500);
    assert!(rows.iter().all(|r| r.gold.is_some()));
    // Gold labels are not labels: nothing is labelled.
    assert!(s.labels().unwrap().is_empty());
    let sum = s.summary().unwrap();
    assert_eq!((sum.rows, sum.test_rows, sum.labelled), (2000, 500, 0));
}

#[test]
fn imports_seed_labels_tsv_jsonl_and_labels_file() {
    let d = tempfile::tempdir().unwrap();
    let tsv = write(d.path(), "x.tsv", b"label\ttext\nham\tI\x27m home \"soon\"\nspam\tWIN a prize now\nham\t   \n\tno label here\n");
    let o = labelrest(d.path(), &["new", "t", "--data", tsv.to_str().unwrap(), "--label-col", "label", "--labels", "ham,spam"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 seed labels"), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 empty text skipped (line 4)"), "{}", stdout(&o));
    let s = Session::open_read_only(d.path(), "t").unwrap();
    let rows = s.rows().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].text, "I'm home \"soon\"");
    assert_eq!(s.labels().unwrap().len(), 2);

    let jl = write(
        d.path(),
        "x.jsonl",
        "{\"body\": \"caf\u{e9} \u{92}ok\u{92}\", \"y\": \"a\"}\n\n{\"body\": \"second\", \"y\": null}\n".as_bytes(),
    );
    let lf = write(d.path(), "labels.txt", b"# comment\na\tthe first kind\nb\n");
    let o = labelrest(
        d.path(),
        &["new", "j", "--data", jl.to_str().unwrap(), "--text-col", "body", "--label-col", "y", "--labels-file", lf.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Session::open_read_only(d.path(), "j").unwrap();
    // Stored exactly as given, control characters included.
    assert_eq!(s.rows().unwrap()[0].text, "caf\u{e9} \u{92}ok\u{92}");
    let ls = s.label_set().unwrap();
    assert_eq!(ls[0].description.as_deref(), Some("the first kind"));
    assert_eq!(ls[1].name, "b");

    // --format overrides the extension.
    let txt = write(d.path(), "x.txt", b"text\nhello\nworld\n");
    let o = labelrest(d.path(), &["new", "f", "--data", txt.to_str().unwrap(), "--format", "csv", "--labels", "a,b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labelrest(d.path(), &["new", "g", "--data", txt.to_str().unwrap(), "--labels", "a,b"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--format"), "{}", stderr(&o));
}

fn refused(args: &[&str], files: &[(&str, &[u8])], want: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let sessions = d.path().join("sessions");
    for (name, content) in files {
        write(d.path(), name, content);
    }
    let args: Vec<String> = args.iter().map(|a| a.replace("DIR", d.path().to_str().unwrap())).collect();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = labelrest(&sessions, &args);
    assert!(!o.status.success(), "accepted: {args:?}");
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    for w in want {
        assert!(e.contains(w), "'{w}' not in: {e}");
    }
    no_sessions_left(&sessions);
}

#[test]
fn missing_file() {
    refused(&["new", "s", "--data", "DIR/nope.csv", "--labels", "a,b"], &[], &["nope.csv", "no such file"]);
}

#[test]
fn unknown_column_lists_columns() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--text-col", "body", "--labels", "a,b"],
        &[("a.csv", b"text,label\nhi,a\n")],
        &["a.csv:1", "no text column 'body'", "text, label"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "y"],
        &[("a.csv", b"text,label\nhi,a\n")],
        &["no label column 'y'", "text, label"],
    );
}

#[test]
fn unbalanced_quote() {
    // In the middle: the record swallows the next lines and has too few fields.
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"text,label\nfine,a\n\"broken,a\nmore,b\nlast,a\n")],
        &["a.csv:3", "malformed CSV: a quoted field opened here is never closed"],
    );
    // A record short of fields with no quote open: that, in the singular.
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"text,label\nfine,a\nshort\n")],
        &["a.csv:3", "has 1 field where"],
    );
    // At the end: the quote runs to the end of the file.
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b"],
        &[("a.csv", b"text,label\nfine,a\nbad,\"a\n\n")],
        &["a.csv:3", "unbalanced quote"],
    );
}

#[test]
fn malformed_jsonl() {
    refused(
        &["new", "s", "--data", "DIR/a.jsonl", "--labels", "a,b"],
        &[("a.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"oops\n")],
        &["a.jsonl:2:", "malformed JSON"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.jsonl", "--labels", "a,b"],
        &[("a.jsonl", b"{\"txt\": \"ok\"}\n")],
        &["a.jsonl:1", "no text field 'text'", "txt"],
    );
}

#[test]
fn invalid_utf8_names_line_and_offset() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"text,label\nfine,a\nbad \xff here,b\n")],
        &["a.csv:3", "invalid UTF-8 at byte offset 22"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.jsonl", "--labels", "a,b"],
        &[("a.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"b\xc3\"}\n")],
        &["a.jsonl:2", "invalid UTF-8 at byte offset 26"],
    );
}

/// A header or a labels file that is not UTF-8 is named as such, with its
/// place; the label column cannot be the text column; a test file's
/// missing label column names the test file's own flag.
#[test]
fn encodings_and_columns_named() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"te\xffxt,label\nhi,a\n")],
        &["a.csv:1", "invalid UTF-8 in the header at byte offset 2 (field 1)"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels-file", "DIR/l.txt"],
        &[("a.csv", b"text\nhi\n"), ("l.txt", b"a\nb\xff\n")],
        &["l.txt:2", "invalid UTF-8 at byte offset 3"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "text"],
        &[("a.csv", b"text,label\nhi,a\n")],
        &["--label-col and --text-col name the same column 'text'"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "y", "--test", "DIR/t.csv"],
        &[("a.csv", b"text,y\nhi,a\nho,b\n"), ("t.csv", b"text,gold\nhi,a\n")],
        &["t.csv:1", "no label column 'y'", "--test-label-col"],
    );
}

/// `--format` is the data's: a held-out file named .csv is read as CSV
/// beside TSV data given as `--format tsv`; one whose name names no format
/// is refused with a hint that says where `--format` applies.
#[test]
fn the_held_out_file_keeps_its_own_format() {
    let d = tempfile::tempdir().unwrap();
    let data = write(d.path(), "a.txt", b"text\tlabel\nhi there\ta\nbye now\tb\n");
    let test = write(d.path(), "t.csv", b"text,label\n\"hello, you\",a\nfarewell,b\n");
    let o = labelrest(
        d.path(),
        &["new", "s", "--data", data.to_str().unwrap(), "--format", "tsv", "--label-col", "label", "--test", test.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 held-out test rows"), "{}", stdout(&o));
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b", "--test", "DIR/t"],
        &[("a.csv", b"text\nhi\n"), ("t", b"text,label\nhi,a\n")],
        &["t: cannot tell the held-out file's format", "name it .csv, .tsv or .jsonl", "applies to --data too"],
    );
}

/// A text that comes again with another seed label is told (the model
/// learns both).
#[test]
fn conflicting_seed_labels_are_told() {
    let d = tempfile::tempdir().unwrap();
    let data = write(d.path(), "a.csv", b"text,label\nhello,a\nbye,b\nhello ,b\nbye,b\nhello,a\n");
    let o = labelrest(d.path(), &["new", "s", "--data", data.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("note: 1 seed label is on a text that came earlier with another label (the first at"), "{}", stdout(&o));
    assert!(stdout(&o).contains("a.csv:4)"), "{}", stdout(&o));
    let data = write(d.path(), "b.csv", b"text,label\nhello,a\nbye,b\nhello,a\n");
    let o = labelrest(d.path(), &["new", "t", "--data", data.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("another label"), "{}", stdout(&o));
}

/// Test rows that are also pool rows are counted and named: held-out
/// scores would count them as unseen.
#[test]
fn test_rows_in_the_pool_are_told() {
    let d = tempfile::tempdir().unwrap();
    let data = write(d.path(), "a.csv", b"text,label\nthe card is lost,a\nhello there,b\nmy refund,a\n");
    let test = write(d.path(), "t.csv", b"text,label\nsomething new,a\n hello there ,b\n");
    let o = labelrest(
        d.path(),
        &["new", "s", "--data", data.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--test", test.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("note: 1 of the 2 test rows have the same text as a pool row (the first at"), "{}", stdout(&o));
    assert!(stdout(&o).contains("t.csv:3)"), "{}", stdout(&o));
    let test2 = write(d.path(), "t2.csv", b"text,label\nsomething new,a\n");
    let o = labelrest(
        d.path(),
        &[
            "new",
            "s2",
            "--data",
            data.to_str().unwrap(),
            "--label-col",
            "label",
            "--label-col-is",
            "gold",
            "--test",
            test2.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("same text as a pool row"), "{}", stdout(&o));
}

/// TSV as pandas and Python's csv module write it (a field holding a
/// quote or a tab in quotes, its quotes doubled) reads back the texts
/// written; plain TSV, where a text may start with a quote, is read as
/// written.
#[test]
fn tsv_quoted_as_pandas_writes_it() {
    let d = tempfile::tempdir().unwrap();
    let pd =
        write(d.path(), "pd.tsv", b"text\tlabel\n\"Wow. happy about \"\"the cave\"\". sorry\"\tham\n\"a\tb\"\tspam\nplain text\tham\r\n");
    let o = labelrest(d.path(), &["new", "pd", "--data", pd.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Session::open_read_only(d.path(), "pd").unwrap();
    let texts: Vec<String> = s.rows().unwrap().into_iter().map(|r| r.text).collect();
    assert_eq!(texts, ["Wow. happy about \"the cave\". sorry", "a\tb", "plain text"]);
    // A stray quote in plain TSV (a text that opens with one, and a later
    // one that ends with one) is no quoted field running over records.
    let merge =
        write(d.path(), "merge.tsv", b"text\tlabel\n\"Best pizza in town\tpos\nok service\tneg\nordered the 12\"\tneg\nanother row\tpos\n");
    let o = labelrest(d.path(), &["new", "merge", "--data", merge.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 rows"), "{}", stdout(&o));
    // A quoted text over lines with a tab in them (indented code) reads
    // as written where texts may span lines.
    let code = write(d.path(), "code.tsv", b"text\tlabel\n\"def f():\n\treturn 1\"\tcode\r\nplain\tprose\r\n");
    let o = labelrest(d.path(), &["new", "code", "--data", code.to_str().unwrap(), "--label-col", "label", "--allow-multiline"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Session::open_read_only(d.path(), "code").unwrap();
    assert_eq!(s.rows().unwrap()[0].text, "def f():\n\treturn 1");
    let plain = write(d.path(), "plain.tsv", b"text\tlabel\n\"Hi\" she said\tham\n\"\"\"\tspam\nok \"quoted\" inside\tham\n");
    let o = labelrest(d.path(), &["new", "plain", "--data", plain.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Session::open_read_only(d.path(), "plain").unwrap();
    let texts: Vec<String> = s.rows().unwrap().into_iter().map(|r| r.text).collect();
    assert_eq!(texts, ["\"Hi\" she said", "\"\"\"", "ok \"quoted\" inside"]);
}

/// A file saved as UTF-16 (Excel's "Unicode text") is named as such.
#[test]
fn utf16_is_named() {
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain("text,label\nhi,a\n".encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
    refused(&["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"], &[("a.csv", &utf16)], &["a.csv:1", "UTF-16", "save it as UTF-8"]);
}

/// Files with CRLF line ends (Windows, Python's csv module) name the same
/// lines and bytes as with LF ones, and so do records after blank lines
/// (the csv crate reports a record after a `\r\n` a line early, rust-csv
/// issue 395, and one after blank lines at the first of them).
#[test]
fn crlf_files_name_the_right_line_and_byte() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b"],
        &[("a.csv", b"text,label\r\nq1,a\r\nq2,b\r\nq3,zzz\r\n")],
        &["a.csv:4: label 'zzz' is not in the label set"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b", "--test", "DIR/t.csv"],
        &[("a.csv", b"text\r\none\r\n"), ("t.csv", b"text,label\r\nx,zzz\r\n")],
        &["t.csv:2: label 'zzz'"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"text,label\r\nfine,a\r\n\"broken,a\r\nmore,b\r\nlast,a\r\n")],
        &["a.csv:3: malformed CSV"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"text,label\r\nfine,a\r\nbad \xff here,b\r\n")],
        &["a.csv:3:1: invalid UTF-8 at byte offset 24"],
    );
    // After blank lines (which the crate skips), in either kind of file, and
    // rows in CRLF under a header in LF.
    for data in [&b"text,label\nq1,a\n\nq2,zzz\n"[..], b"text,label\r\nq1,a\r\n\r\nq2,zzz\r\n", b"text,label\nq1,a\r\n\r\nq2,zzz\r\n"] {
        refused(
            &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b"],
            &[("a.csv", data)],
            &["a.csv:4: label 'zzz'"],
        );
    }
    // More blank lines than one read at the reported byte holds.
    let mut many = b"text,label\r\nq1,a\r\n".to_vec();
    many.extend(b"\r\n".repeat(100));
    many.extend(b"q2,zzz\r\n");
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b"],
        &[("a.csv", &many)],
        &["a.csv:103: label 'zzz'"],
    );
}

#[test]
fn seed_label_not_in_set() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b"],
        &[("a.csv", b"text,label\none,a\ntwo,c\n")],
        &["a.csv:3", "label 'c' is not in the label set"],
    );
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b", "--test", "DIR/t.csv"],
        &[("a.csv", b"text\none\n"), ("t.csv", b"text,label\nx,a\ny,zzz\n")],
        &["t.csv:3", "label 'zzz'"],
    );
}

#[test]
fn fewer_than_two_labels() {
    refused(&["new", "s", "--data", "DIR/a.csv", "--labels", "only"], &[("a.csv", b"text\none\n")], &["1 label", "at least two"]);
    refused(&["new", "s", "--data", "DIR/a.csv", "--label-col", "label"], &[("a.csv", b"text,label\none,a\ntwo,a\n")], &["at least two"]);
}

#[test]
fn session_names() {
    refused(&["new", "a/b", "--data", "DIR/a.csv", "--labels", "a,b"], &[("a.csv", b"text\none\n")], &["path separator"]);
    refused(&["new", "..", "--data", "DIR/a.csv", "--labels", "a,b"], &[("a.csv", b"text\none\n")], &["starts with a dot"]);
    refused(&["new", "a\u{202e}b", "--data", "DIR/a.csv", "--labels", "a,b"], &[("a.csv", b"text\none\n")], &["invisible characters"]);
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", b"text\none\ntwo\n");
    let o = labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--labels", "a,b"]);
    assert!(o.status.success());
    let o = labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--labels", "x,y"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists already") && stderr(&o).contains("--force"), "{}", stderr(&o));
    // The old one is untouched; --force replaces it.
    assert_eq!(Session::open_read_only(d.path(), "s").unwrap().label_set().unwrap()[0].name, "a");
    let o = labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--labels", "x,y", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Session::open_read_only(d.path(), "s").unwrap().label_set().unwrap()[0].name, "x");
    // Two `new` of one name at once, without --force: the one that finishes
    // second does not replace the first's session (nor the labels given in it).
    let slow = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .arg("--sessions")
        .arg(d.path())
        .args(["new", "race", "--data", f.to_str().unwrap(), "--labels", "slow,one"])
        .env("LABELREST_PAUSE_AT", "built")
        .env("LABELREST_LOG", d.path().join("log"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let o = labelrest(d.path(), &["new", "race", "--data", f.to_str().unwrap(), "--labels", "fast,one"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Session::open(d.path(), "race").unwrap();
    let row = s.rows().unwrap()[0].id;
    s.add_label(row, 0, 0, None).unwrap();
    drop(s);
    let o = slow.wait_with_output().unwrap();
    // (Refused at the swap; or at its start, on a machine so loaded that the
    // first one finished before the second looked.)
    assert!(!o.status.success() && stderr(&o).contains("exists already"), "{}", stderr(&o));
    let s = Session::open_read_only(d.path(), "race").unwrap();
    assert_eq!(s.label_set().unwrap()[0].name, "fast");
    assert_eq!(s.labels().unwrap().len(), 1, "the label given meanwhile is there");
}

#[test]
fn a_failed_import_keeps_the_old_session() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "a.csv", b"text\none\ntwo\n");
    let bad = write(d.path(), "b.csv", b"text\none\n\"two\n");
    assert!(labelrest(d.path(), &["new", "s", "--data", good.to_str().unwrap(), "--labels", "a,b"]).status.success());
    let o = labelrest(d.path(), &["new", "s", "--data", bad.to_str().unwrap(), "--labels", "a,b", "--force"]);
    assert!(!o.status.success());
    assert_eq!(Session::open_read_only(d.path(), "s").unwrap().rows().unwrap().len(), 2);
}

/// A stray quote in the middle of a CSV must not silently merge rows: the
/// quoted field that takes in lines that look like records is refused,
/// with the line where the quote opened.
#[test]
fn a_stray_quote_mid_file_is_refused() {
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--label-col", "label", "--labels", "a,b,c,d,e,f"],
        &[("a.csv", b"text,label\nrow one,a\n\"row two has a stray quote,b\nrow three,c\nrow four,d\nrow five,e\n\"row six\",f\n")],
        &["a.csv:3", "stray quote", "--allow-multiline"],
    );
    // Texts that really span lines import, with or without the flag when
    // nothing looks like a record, and with --allow-multiline in any case.
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.csv", b"text,label\n\"first line\nsecond line\",a\n\"an address: 1 Main St\nSpringfield, IL\",b\nplain,a\n");
    let o = labelrest(d.path(), &["new", "m", "--data", f.to_str().unwrap(), "--label-col", "label"]);
    assert!(!o.status.success(), "the second text has a record-like line");
    let o = labelrest(d.path(), &["new", "m", "--data", f.to_str().unwrap(), "--label-col", "label", "--allow-multiline"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = Session::open_read_only(d.path(), "m").unwrap().rows().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].text, "first line\nsecond line");
    let g = write(d.path(), "g.csv", b"text,label\n\"first line\nsecond line\",a\nplain,b\n");
    let o = labelrest(d.path(), &["new", "g", "--data", g.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Empty label names and names with control characters are refused
/// wherever a label set comes from; a label given twice is named.
#[test]
fn label_names_empty_twice_or_with_control_characters() {
    let data: &[(&str, &[u8])] = &[("a.csv", b"text,label\none,a\ntwo,b\n")];
    refused(&["new", "s", "--data", "DIR/a.csv", "--labels", "a,,b"], data, &["empty label name"]);
    refused(&["new", "s", "--data", "DIR/a.csv", "--labels", "billing,bug,billing"], data, &["'billing' is given twice"]);
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels-file", "DIR/l.txt"],
        &[("a.csv", b"text\none\n"), ("l.txt", b"a\n\tdescription of nothing\nb\n")],
        &["l.txt:2", "empty label name"],
    );
    // A hostile label value in the data: refused, and no escape byte reaches the terminal.
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.csv", b"text,label\none,a\ntwo,\x1b]0;PWN\x07\n");
    let o = labelrest(d.path(), &["new", "h", "--data", f.to_str().unwrap(), "--label-col", "label"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("h.csv:3") && e.contains("control characters"), "{e}");
    assert!(!o.stderr.contains(&0x1b) && !o.stderr.contains(&0x07), "raw control bytes printed: {e:?}");
    let o = labelrest(d.path(), &["new", "bad\x1b[31mname", "--data", f.to_str().unwrap(), "--labels", "a,b"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("control or invisible characters") && !o.stderr.contains(&0x1b), "{}", stderr(&o));
}

/// Messages that say what went wrong and how to fix it.
#[test]
fn messages_that_help() {
    // A TSV given as .csv: the hint, and no raw tab in the message.
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", b"text\tlabel\nhello\ta\n");
    let o = labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--labels", "a,b"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("--format tsv") && !e.contains('\t'), "{e:?}");
    // A broken JSONL line: one line number, its own.
    refused(
        &["new", "s", "--data", "DIR/b.jsonl", "--labels", "a,b"],
        &[("b.jsonl", b"{\"text\": \"ok\"}\n{\"text\": oops}\n")],
        &["b.jsonl:2:"],
    );
    let f = write(d.path(), "b.jsonl", b"{\"text\": \"ok\"}\n{\"text\": oops}\n");
    let e = stderr(&labelrest(d.path(), &["new", "t", "--data", f.to_str().unwrap(), "--labels", "a,b"]));
    assert!(!e.contains("at line"), "{e}");
    // A missing column names the flag that chooses it.
    refused(
        &["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"],
        &[("a.csv", b"body,label\nhi,a\n")],
        &["no text column 'text'", "--text-col"],
    );
    // A header that names a column twice.
    refused(&["new", "s", "--data", "DIR/a.csv", "--labels", "a,b"], &[("a.csv", b"text,text\nhi,there\n")], &["a.csv:1:2", "given twice"]);
    // JSONL with a byte-order mark reads as CSV with one does.
    let f = write(d.path(), "bom.jsonl", "\u{feff}{\"text\": \"hello\"}\n".as_bytes());
    let o = labelrest(d.path(), &["new", "bom", "--data", f.to_str().unwrap(), "--labels", "a,b"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
