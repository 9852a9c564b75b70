//! Hardening: what must hold when things go wrong. Sessions replaced by
//! `new --force` are never lost, whatever step a crash hits; the session
//! lock is exclusive under concurrent starts; outputs never overwrite their
//! input or follow a planted link, and a failed run leaves nothing half
//! written; a damaged embedding cache is rebuilt, never used; an empty
//! label is refused everywhere.

mod common;
use common::*;
use labelrest::store::{self, Session};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn csv_of(n: usize, tag: &str) -> Vec<u8> {
    let mut s = String::from("text,label\n");
    for i in 0..n {
        s.push_str(&format!("{tag} text number {i},{}\n", if i % 2 == 0 { "a" } else { "b" }));
    }
    s.into_bytes()
}

fn leftovers(sessions: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(sessions)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// `new --force` killed at every step of the replace, on both paths (an
/// atomic exchange, and two renames where the file system has no exchange):
/// exactly one complete session is under the name afterwards (the old one
/// or the new one), and what the crash left is cleaned up by the next run.
#[test]
fn new_force_killed_at_every_step_keeps_exactly_one_session() {
    for no_exchange in [false, true] {
        let steps: &[&str] =
            if no_exchange { &["built", "locked", "aside", "exchanged", "removed"] } else { &["built", "locked", "exchanged", "removed"] };
        for step in steps {
            let d = tempfile::tempdir().unwrap();
            let old = write(d.path(), "old.csv", &csv_of(5, "old"));
            let new = write(d.path(), "new.csv", &csv_of(8, "new"));
            let sessions = d.path().join("sessions");
            assert!(labelrest(&sessions, &["new", "s", "--data", old.to_str().unwrap(), "--label-col", "label"]).status.success());
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_labelrest"));
            cmd.arg("--sessions").arg(&sessions).args(["new", "s", "--force", "--label-col", "label", "--data", new.to_str().unwrap()]);
            cmd.env("LABELREST_CRASH_AT", step).env("LABELREST_LOG", d.path().join("log"));
            if no_exchange {
                cmd.env("LABELREST_NO_EXCHANGE", "1");
            }
            let o = cmd.output().unwrap();
            assert!(!o.status.success(), "step {step}: the crash point was not reached");
            // What a later run finds (every `new` cleans up first).
            store::clean_stale(&sessions);
            let s = Session::open(&sessions, "s").unwrap_or_else(|e| panic!("step {step} (no_exchange {no_exchange}): no session: {e:#}"));
            let n = s.rows().unwrap().len();
            assert!(n == 5 || n == 8, "step {step}: a complete session, old or new ({n} rows)");
            if ["exchanged", "removed"].contains(step) {
                assert_eq!(n, 8, "step {step}: the new session is in place");
            } else {
                assert_eq!(n, 5, "step {step}: the old session is still in place");
            }
            s.check_integrity().unwrap();
            drop(s);
            assert!(leftovers(&sessions).is_empty(), "step {step}: left behind {:?}", leftovers(&sessions));
        }
    }
}

/// Four processes start on one session at the same moment, a hundred times:
/// never two holders of its lock.
#[test]
fn the_lock_is_exclusive_under_concurrent_starts() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", &csv_of(4, "x"));
    assert!(labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--label-col", "label"]).status.success());
    for round in 0..100 {
        let mut kids: Vec<_> = (0..4)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_labelrest"))
                    .arg("--sessions")
                    .arg(d.path())
                    .args(["annotate", "s"])
                    .env("LABELREST_LOG", d.path().join("log"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // A holder waits on its standard input; the others are refused and end.
        let start = Instant::now();
        let mut ended = [None; 4];
        while ended.iter().filter(|e| e.is_some()).count() < 3 && start.elapsed() < Duration::from_secs(60) {
            for (k, kid) in kids.iter_mut().enumerate() {
                if ended[k].is_none() {
                    ended[k] = kid.try_wait().unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let running = ended.iter().filter(|e| e.is_none()).count();
        assert_eq!(running, 1, "round {round}: {running} processes hold the session");
        for (k, kid) in kids.iter_mut().enumerate() {
            if let Some(st) = ended[k] {
                assert!(!st.success());
                let mut e = String::new();
                use std::io::Read;
                kid.stderr.take().unwrap().read_to_string(&mut e).unwrap();
                assert!(e.contains("open in another process (pid"), "round {round}: {e}");
            }
        }
        for kid in kids.iter_mut() {
            drop(kid.stdin.take());
            let _ = kid.wait();
        }
    }
}

/// `predict` and `export` write through a temporary file: never over their
/// input, never through a link, never half a file under the final name.
#[test]
fn outputs_never_clobber_their_input_or_follow_links() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("sessions");
    // A session with a model (two labels, one retrain).
    let f = write(d.path(), "a.csv", demo_head(60).as_bytes());
    let o = labelrest(&s, &["new", "p", "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .arg("--sessions")
        .arg(&s)
        .args(["annotate", "p"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let names: Vec<String> = Session::open_read_only(&s, "p").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    writeln!(child.stdin.as_mut().unwrap(), "1\t{}\n2\t{}", names[0], names[1]).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(labelrest(&s, &["retrain", "p"]).status.success());

    // predict --out equal to --input (or a link to it): refused, input intact.
    let input = write(d.path(), "in.csv", demo_head(30).as_bytes());
    let before = std::fs::read(&input).unwrap();
    let o = labelrest(&s, &["predict", "p", "--input", input.to_str().unwrap(), "--out", input.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is the input file"), "{}", stderr(&o));
    let link = d.path().join("link.csv");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let o = labelrest(&s, &["predict", "p", "--input", input.to_str().unwrap(), "--out", link.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input was not touched");

    // A run that fails part-way leaves neither a partial output nor a temporary file.
    let mut big = demo_head(1500).into_bytes();
    big.extend_from_slice(b"broken \xff utf8,x\n");
    let bad = write(d.path(), "bad.csv", &big);
    let out_dir = d.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("pred.csv");
    let o = labelrest(&s, &["predict", "p", "--input", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid UTF-8"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "nothing left in the output folder");

    // export over a symlink replaces the link, never writes through it; a
    // link planted at the old temporary name is not followed either.
    let victim = d.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let target = out_dir.join("labels.csv");
    std::os::unix::fs::symlink(&victim, &target).unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("labels.csv.part")).unwrap();
    let o = labelrest(&s, &["export", "p", "--out", target.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("id,text,label"));
    // An unwritable output names the output, not a temporary file.
    let o = labelrest(&s, &["export", "p", "--out", "/nonexistent-folder/labels.csv"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("cannot write /nonexistent-folder/labels.csv") && !e.contains(".part"), "{e}");
    // An export that fails (the target is a folder) names the target and leaves no temporary file.
    let o = labelrest(&s, &["export", "p", "--out", out_dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(!e.contains(".part"), "{e}");
    let hidden: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");

    // /dev/stdout (a link to a descriptor) is written through, never
    // replaced by a file (as root it could be); a named pipe too. predict,
    // which writes a file it can resume, refuses them; a missing folder is named.
    let kind = |p: &str| std::fs::symlink_metadata(p).map(|m| m.file_type());
    let before = kind("/dev/stdout").ok();
    // (Without -q: the summary goes to standard error, the rows alone to standard output.)
    let o = labelrest(&s, &["export", "p", "--out", "/dev/stdout", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("id,text,label") && out.lines().count() == 61, "{out}");
    assert!(stderr(&o).contains("wrote"), "{}", stderr(&o));
    assert_eq!(kind("/dev/stdout").ok(), before, "/dev/stdout is as it was");
    // Standard output sent to a file (`> file`): the file holds the rows, whole.
    let file = out_dir.join("redirected.csv");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --sessions {} export p --out /dev/stdout --format csv > {}",
            env!("CARGO_BIN_EXE_labelrest"),
            s.display(),
            file.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = std::fs::read_to_string(&file).unwrap();
    assert!(got.starts_with("id,text,label") && got.lines().count() == 61 && !got.contains("wrote"), "{got}");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(kind("/dev/stdout").ok(), before, "/dev/stdout is as it was");
    let o = labelrest(&s, &["predict", "p", "--input", input.to_str().unwrap(), "--out", "/dev/stdout"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a file (a device, a pipe or a descriptor"), "{}", stderr(&o));
    let fifo = out_dir.join("pipe.csv");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = labelrest(&s, &["predict", "p", "--input", input.to_str().unwrap(), "--out", fifo.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a file (a device, a pipe"), "{}", stderr(&o));
    let o = labelrest(&s, &["predict", "p", "--input", input.to_str().unwrap(), "--out", out_dir.join("no/x.csv").to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("the folder") && e.contains("does not exist") && !e.contains(".lock"), "{e}");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let o = labelrest(&s, &["export", "p", "--out", fifo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(reader.join().unwrap().starts_with("id,text,label"));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a pipe");
}

/// An empty label given headlessly is refused and nothing is stored.
#[test]
fn annotate_refuses_an_empty_label() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", &csv_of(4, "x"));
    assert!(labelrest(d.path(), &["new", "s", "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold"])
        .status
        .success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .arg("--sessions")
        .arg(d.path())
        .args(["annotate", "s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"1\t \n").unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("<stdin>:1: the label is empty"), "{}", stderr(&o));
    assert!(Session::open_read_only(d.path(), "s").unwrap().labels().unwrap().is_empty());
}

fn labelled_session(d: &std::path::Path) -> std::path::PathBuf {
    let f = write(d, "a.csv", b"text,label\n=SUM(A1),a\nplain text,b\n-minus sign,a\n@mention,b\nmore,a\n");
    let o = labelrest(d, &["new", "s", "--data", f.to_str().unwrap(), "--label-col", "label"]);
    assert!(o.status.success(), "{}", stderr(&o));
    d.join("s/session.db")
}

/// A damaged database gives a clear error naming the session, the file
/// and the row, never a panic: a label index outside the label set,
/// damaged settings.
#[test]
fn a_damaged_database_is_named_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let db = labelled_session(d.path());
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "foreign_keys", false).unwrap();
        c.execute("UPDATE annotations SET label = 99 WHERE row_id = 2", []).unwrap();
    }
    for args in [vec!["export", "s", "--out", d.path().join("x.csv").to_str().unwrap()], vec!["retrain", "s"]] {
        let o = labelrest(d.path(), &args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(!e.contains("panicked") && e.contains("session 's'") && e.contains("row 2") && e.contains("label 99"), "{args:?}: {e}");
        assert!(e.contains("session.db"), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    // The workstation's state refuses to load it the same way.
    let e = labelrest::ui::app::App::load(Session::open(d.path(), "s").unwrap()).err().unwrap().to_string();
    assert!(e.contains("row 2") && e.contains("damaged"), "{e}");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE annotations SET label = 0 WHERE row_id = 2", []).unwrap();
        c.execute("UPDATE meta SET value = '{\"model\": 3' WHERE key = 'settings'", []).unwrap();
    }
    let e = stderr(&labelrest(d.path(), &["retrain", "s"]));
    assert!(e.contains("session 's'") && e.contains("settings are damaged") && e.contains("session.db"), "{e}");
}

/// `sessions` lists what it cannot read, with the reason; reading a
/// session for export or listing never writes to it.
#[test]
fn sessions_lists_damaged_ones_and_reading_never_writes() {
    let d = tempfile::tempdir().unwrap();
    labelled_session(d.path());
    let f = write(d.path(), "b.csv", b"text\none\ntwo\n");
    assert!(labelrest(d.path(), &["new", "t", "--data", f.to_str().unwrap(), "--labels", "a,b"]).status.success());
    assert!(labelrest(d.path(), &["new", "u", "--data", f.to_str().unwrap(), "--labels", "a,b"]).status.success());
    // t: not a database any more; u: written by a newer labelrest.
    std::fs::write(d.path().join("t/session.db"), b"this is not a database at all, it was truncated").unwrap();
    {
        let c = rusqlite::Connection::open(d.path().join("u/session.db")).unwrap();
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
    }
    let o = labelrest(d.path(), &["sessions"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("s ") && l.contains(" 5 ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("t ") && l.contains("cannot be read")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("u ") && l.contains("newer labelrest")), "{out}");
    // Names wider than the column, or of wide characters, keep the columns
    // in line: every row's count of rows ends in the same terminal column.
    for name in ["a-session-name-much-longer-than-twenty", "日本語の銀行"] {
        assert!(labelrest(d.path(), &["new", name, "--data", f.to_str().unwrap(), "--labels", "a,b"]).status.success());
    }
    let out = stdout(&labelrest(d.path(), &["sessions"]));
    let ends: Vec<usize> = out
        .lines()
        .filter(|l| !l.contains("cannot be read") && !l.contains("newer"))
        .map(|l| {
            // The end of the header's "rows", or of a row's first number.
            let at = if l.starts_with("name") {
                l.find(" rows").unwrap() + 5
            } else {
                let start = l.find(|c: char| c.is_ascii_digit()).unwrap();
                start + l[start..].find(|c: char| !c.is_ascii_digit()).unwrap()
            };
            unicode_width::UnicodeWidthStr::width(&l[..at])
        })
        .collect();
    assert!(ends.len() == 4 && ends.iter().all(|&e| e == ends[0]), "{ends:?}\n{out}");
    // Read-only means read-only.
    let s = Session::open_read_only(d.path(), "s").unwrap();
    let e = s.add_label(1, 0, 0, None).unwrap_err();
    assert!(format!("{e:#}").contains("readonly"), "{e:#}");
}

/// Cells that a spreadsheet would run as formulas: exact by default with a
/// note that counts them; neutralised with --spreadsheet-safe.
#[test]
fn exports_and_formula_cells() {
    let d = tempfile::tempdir().unwrap();
    labelled_session(d.path());
    let out = d.path().join("e.csv");
    let o = labelrest(d.path(), &["export", "s", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("note: 3 cells start with"), "{}", stdout(&o));
    let t = std::fs::read_to_string(&out).unwrap();
    assert!(t.contains("\n1,=SUM(A1),a,"), "texts stay exact: {t}");
    let o = labelrest(d.path(), &["export", "s", "--out", out.to_str().unwrap(), "--spreadsheet-safe"]);
    assert!(o.status.success());
    let t = std::fs::read_to_string(&out).unwrap();
    assert!(t.contains("\n1,'=SUM(A1),a,") && t.contains("'-minus sign") && t.contains("'@mention"), "{t}");
    assert!(t.contains("plain text"));
}

/// Label names that hold escape sequences (an older or damaged session)
/// are drawn inert.
#[test]
fn label_names_are_drawn_inert() {
    let d = tempfile::tempdir().unwrap();
    let db = labelled_session(d.path());
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE label_set SET name = ?1 WHERE id = 0", ["\u{1b}]0;PWN\u{7}"]).unwrap();
    }
    let app = labelrest::ui::app::App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert!(app.label_names.iter().all(|n| !n.chars().any(|c| c.is_control())), "{:?}", app.label_names);
}

/// Fine-tunes that ended without a verdict (a crash mid-way, a quit while a
/// candidate waited) leave ~90 MB folders: the trainer removes them, with
/// their caches and heads, when it starts; the encoders in use keep theirs,
/// and a folder another live process is still bringing in stays.
#[test]
fn fine_tunes_left_behind_are_swept_when_the_trainer_starts() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "s", 60);
    let dir = d.path().join("s");
    let base = root().join("assets/models/all-MiniLM-L6-v2");
    let base_hash = labelrest::model::model_hash(&base).unwrap();
    // A whole folder left behind (other weights: another hash), with its cache and head.
    let whole = dir.join("encoder-contrastive-20260101000000000");
    std::fs::create_dir_all(&whole).unwrap();
    for f in std::fs::read_dir(&base).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), whole.join(f.file_name())).unwrap();
        }
    }
    let mut cfg = std::fs::read_to_string(whole.join("config.json")).unwrap();
    cfg.push('\n');
    std::fs::write(whole.join("config.json"), cfg).unwrap();
    let h = labelrest::model::model_hash(&whole).unwrap();
    assert_ne!(h, base_hash);
    let planted = [format!("emb-{h}.f32"), format!("emb-{h}.done"), format!("head-{h}.safetensors")];
    for f in &planted {
        std::fs::write(dir.join(f), b"x").unwrap();
    }
    // One stopped before its weights were written; parts being brought in
    // by a process that is gone, and by one that is alive (this one).
    let cut = dir.join("encoder-contrastive-20260101000000001");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("config.json"), b"{}").unwrap();
    let gone = dir.join(".encoder-x.part-2147483000");
    let alive = dir.join(format!(".encoder-y.part-{}", std::process::id()));
    std::fs::create_dir_all(&gone).unwrap();
    std::fs::create_dir_all(&alive).unwrap();

    let s = Session::open(d.path(), "s").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("the worker answers") {
            labelrest::worker::Event::Update(_) => break,
            labelrest::worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    // (The sweep runs before the worker takes its first job.)
    let start = Instant::now();
    while whole.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    w.shutdown();
    assert!(!whole.exists() && !cut.exists() && !gone.exists(), "left behind: swept");
    assert!(planted.iter().all(|f| !dir.join(f).exists()), "its cache and head went with it");
    assert!(alive.exists(), "a live process's part stays");
    // The base encoder's cache is untouched.
    assert!(dir.join(format!("emb-{base_hash}.f32")).exists());
}
