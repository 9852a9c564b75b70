//! Sessions: listing, removal, the lock, migration, export, and no label lost
//! when the process is killed.

mod common;
use common::*;
use labelrest::store::{self, Session};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn small_session(dir: &std::path::Path, name: &str) {
    let f = write(dir, &format!("{name}.csv"), demo_head(200).as_bytes());
    let o = labelrest(dir, &["new", name, "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn list_and_remove() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "one");
    small_session(d.path(), "two");
    let o = labelrest(d.path(), &["sessions"]);
    let out = stdout(&o);
    assert!(out.contains("one") && out.contains("two") && out.contains("200"), "{out}");
    // Without --yes it asks; "n" keeps it.
    let mut c = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["--sessions", d.path().to_str().unwrap(), "sessions", "rm", "one"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(store::exists(d.path(), "one").unwrap());
    // No answer at all (a script without --yes): kept, and an error that says how.
    let o = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["--sessions", d.path().to_str().unwrap(), "sessions", "rm", "one"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no answer") && stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(store::exists(d.path(), "one").unwrap());
    let o = labelrest(d.path(), &["sessions", "rm", "one", "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!store::exists(d.path(), "one").unwrap());
    let o = labelrest(d.path(), &["sessions", "rm", "one", "--yes"]);
    assert!(stderr(&o).contains("no session 'one'"));
}

#[test]
fn sessions_dir_resolution() {
    let d = tempfile::tempdir().unwrap();
    let explicit = d.path().join("x");
    assert_eq!(store::sessions_dir(Some(&explicit)).unwrap(), explicit);
    // The environment variable is read when no flag is given (checked through the binary).
    let f = write(d.path(), "a.csv", b"text\none\ntwo\n");
    let o = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["new", "viaenv", "--data", f.to_str().unwrap(), "--labels", "a,b"])
        .env("LABELREST_SESSIONS", d.path().join("envdir"))
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join("envdir/viaenv/session.db").exists());
    // ./sessions when it exists.
    std::fs::create_dir(d.path().join("sessions")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["new", "local", "--data", f.to_str().unwrap(), "--labels", "a,b"])
        .env_remove("LABELREST_SESSIONS")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join("sessions/local/session.db").exists());
}

#[test]
fn lock_refuses_a_second_process_and_stale_locks_are_taken_over() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "s");
    let held = Session::open(d.path(), "s").unwrap();
    let o = labelrest(d.path(), &["annotate", "s"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("open in another process") && e.contains(&format!("pid {}", std::process::id())), "{e}");
    // rm is refused too while it is open.
    assert!(!labelrest(d.path(), &["sessions", "rm", "s", "--yes"]).status.success());
    // In this process too: a second open is refused while the first holds it.
    assert!(Session::open(d.path(), "s").is_err());
    assert_eq!(labelrest::store::Lock::holder(&d.path().join("s")).map(|h| h.0), Some(std::process::id() as i32));
    drop(held);
    assert!(labelrest::store::Lock::holder(&d.path().join("s")).is_none(), "released on drop");
    // A lock file left by a dead process, or naming a live one (pid 1, a
    // reused pid), blocks nothing: only the OS lock counts.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    for pid in [dead, 1] {
        std::fs::write(d.path().join("s/lock"), format!("{pid}\nlabelrest label s\n")).unwrap();
        let s = Session::open(d.path(), "s").expect("a lock file nobody holds is free");
        drop(s);
    }
}

/// Schema 4 allowed two label sources and had no overlap rows: the
/// migration rebuilds the labels' table (ids and all kept) so that an
/// adjudicated label can be stored, and adds the overlap rows.
#[test]
fn schema_4_is_migrated_to_overlap_and_adjudication() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "s");
    {
        let s = Session::open_as(d.path(), "s", "alice").unwrap();
        s.add_label(1, 0, 0, None).unwrap();
        s.add_label(2, 1, 0, None).unwrap();
        s.undo_last().unwrap();
        s.add_label(2, 0, 0, None).unwrap();
    }
    let before: Vec<(i64, i64, i64, i64)> = {
        let c = rusqlite::Connection::open(d.path().join("s/session.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE old(id INTEGER PRIMARY KEY AUTOINCREMENT, row_id INTEGER NOT NULL REFERENCES rows(id), label INTEGER NOT NULL REFERENCES label_set(id),
               source TEXT NOT NULL CHECK (source IN ('seed','person')), iteration INTEGER NOT NULL, at TEXT NOT NULL, predicted INTEGER, replaces INTEGER,
               active INTEGER NOT NULL DEFAULT 1, undone INTEGER NOT NULL DEFAULT 0, annotator TEXT);
             INSERT INTO old SELECT * FROM annotations; DROP TABLE annotations; ALTER TABLE old RENAME TO annotations;
             CREATE INDEX annotations_active ON annotations(row_id) WHERE active = 1;
             DROP TABLE overlap; UPDATE meta SET value='4' WHERE key='schema_version';",
        )
        .unwrap();
        let e = c.execute("INSERT INTO annotations(row_id, label, source, iteration, at) VALUES (1, 0, 'adjudicated', 0, 'x')", []);
        assert!(e.is_err(), "schema 4 refuses the new source");
        let mut st = c.prepare("SELECT id, row_id, label, active FROM annotations ORDER BY id").unwrap();
        let v =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().collect::<rusqlite::Result<Vec<_>>>().unwrap();
        v
    };
    let s = Session::open_as(d.path(), "s", "carol").unwrap();
    assert_eq!(s.meta("schema_version").unwrap().as_deref(), Some("5"));
    s.check_integrity().unwrap();
    let c = rusqlite::Connection::open(d.path().join("s/session.db")).unwrap();
    let after: Vec<(i64, i64, i64, i64)> = c
        .prepare("SELECT id, row_id, label, active FROM annotations ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(s.labels().unwrap().iter().map(|l| (l.row_id, l.label)).collect::<Vec<_>>(), vec![(1, 0), (2, 0)]);
    // New labels go on numbering after the old ones.
    let id = s.add_label(3, 1, 0, None).unwrap();
    assert!(id > after.last().unwrap().0, "{id}");
    // The overlap rows and adjudications work on the migrated session.
    assert!(s.set_overlap(1.0).unwrap() > 0);
    let ov = s.overlap_rows().unwrap();
    assert!(!ov.contains(&1) && !ov.contains(&3) && ov.contains(&4), "labelled rows keep their one label: {ov:?}");
}

#[test]
fn older_schema_is_migrated_newer_refused() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "s");
    {
        let c = rusqlite::Connection::open(d.path().join("s/session.db")).unwrap();
        c.execute_batch("DROP INDEX annotations_active; ALTER TABLE annotations DROP COLUMN predicted; ALTER TABLE annotations DROP COLUMN annotator; DROP TABLE reservations; DROP TABLE honest; DROP TABLE overlap; CREATE INDEX annotations_active ON annotations(row_id) WHERE active = 1; UPDATE meta SET value='1' WHERE key='schema_version';").unwrap();
    }
    // Reading without migrating is refused with a clear message.
    let e = format!("{:#}", Session::open_read_only(d.path(), "s").err().unwrap());
    assert!(e.contains("older schema 1"), "{e}");
    let s = Session::open(d.path(), "s").unwrap();
    s.add_label(1, 0, 0, Some(0)).unwrap();
    assert_eq!(s.labels().unwrap()[0].predicted, Some(0));
    assert_eq!(s.labels().unwrap()[0].annotator.as_deref(), Some(s.annotator()));
    assert_eq!(s.meta("schema_version").unwrap().as_deref(), Some("5"));
    // Schema 4's tables came with the migration.
    assert_eq!(s.reserve(&[1, 2], 1).unwrap(), vec![2], "row 1 is labelled");
    drop(s);
    {
        let c = rusqlite::Connection::open(d.path().join("s/session.db")).unwrap();
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'", []).unwrap();
    }
    let e = format!("{:#}", Session::open(d.path(), "s").err().unwrap());
    assert!(e.contains("newer labelrest") && e.contains("99"), "{e}");
    // Not a session at all.
    std::fs::create_dir(d.path().join("junk")).unwrap();
    rusqlite::Connection::open(d.path().join("junk/session.db")).unwrap().execute_batch("CREATE TABLE x(y);").unwrap();
    let e = format!("{:#}", Session::open(d.path(), "junk").err().unwrap());
    assert!(e.contains("not a labelrest session"), "{e}");
}

#[test]
fn labels_undo_and_history() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "s");
    let s = Session::open(d.path(), "s").unwrap();
    s.add_label(1, 3, 1, Some(3)).unwrap();
    s.add_label(2, 4, 1, Some(5)).unwrap();
    s.add_label(1, 7, 1, Some(3)).unwrap(); // relabel
    let now: Vec<(i64, u32)> = s.labels().unwrap().iter().map(|l| (l.row_id, l.label)).collect();
    assert_eq!(now, vec![(2, 4), (1, 7)]);
    assert_eq!(s.undo_last().unwrap(), Some(1));
    let now: Vec<(i64, u32)> = s.labels().unwrap().iter().map(|l| (l.row_id, l.label)).collect();
    assert_eq!(now, vec![(1, 3), (2, 4)], "the earlier label comes back");
    assert_eq!(s.label_of(1).unwrap(), Some((3, labelrest::store::Source::Person)));
    assert_eq!(s.undo_last().unwrap(), Some(2));
    assert_eq!(s.undo_last().unwrap(), Some(1));
    assert_eq!(s.undo_last().unwrap(), None);
    assert!(s.labels().unwrap().is_empty());
    assert_eq!(s.label_of(1).unwrap(), None);
    // Bad rows and labels are refused.
    assert!(s.add_label(99999, 0, 0, None).is_err());
    assert!(s.add_label(1, 500, 0, None).is_err());
    s.check_integrity().unwrap();
}

/// A real labelrest process writes labels and acknowledges each; it is
/// killed with SIGKILL at a random moment; every acknowledged label is there.
#[test]
fn sigkill_loses_no_acknowledged_label() {
    let d = tempfile::tempdir().unwrap();
    small_session(d.path(), "s");
    let names: Vec<String> = Session::open_read_only(d.path(), "s").unwrap().label_set().unwrap().into_iter().map(|l| l.name).collect();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    for round in 0..3u64 {
        let kill_after = 5 + ((seed >> (round * 5)) % 60) as usize;
        let mut c = Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .args(["--sessions", d.path().to_str().unwrap(), "annotate", "s"])
            .env("LABELREST_LOG", d.path().join("test.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let stdout = c.stdout.take().unwrap();
        // Feed labels from a thread so the child always has work.
        let names2 = names.clone();
        let feeder = std::thread::spawn(move || {
            for i in 0..200u64 {
                let row = 1 + (i * 7 + round * 13) % 200;
                let label = &names2[((i + round) % names2.len() as u64) as usize];
                if writeln!(stdin, "{row}\t{label}").is_err() {
                    break;
                }
            }
        });
        let mut acked: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut n = 0;
        while n < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // `ok ID`, or `ok ID<TAB>replaced<TAB>OLD<TAB>ANNOTATOR` when
            // the row already had a label from an earlier round.
            let rest = line.trim_end().strip_prefix("ok ").unwrap_or_else(|| panic!("round {round}: {line:?}"));
            let id: i64 = rest.split('\t').next().unwrap().parse().unwrap();
            n += 1;
            acked.insert(id, String::new());
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let _ = feeder.join();
        // Recompute what each acknowledged row's last acknowledged label was.
        let mut expect = std::collections::HashMap::new();
        for i in 0..n as u64 {
            let row = 1 + (i * 7 + round * 13) % 200;
            expect.insert(row as i64, ((i + round) % names.len() as u64) as u32);
        }
        let s = Session::open(d.path(), "s").expect("reopens after SIGKILL (stale lock taken over)");
        s.check_integrity().unwrap();
        let got: std::collections::HashMap<i64, u32> = s.labels().unwrap().into_iter().map(|l| (l.row_id, l.label)).collect();
        for (row, label) in &expect {
            let g = got.get(row).copied();
            // A later, unacknowledged write to the same row may have landed too.
            assert!(g.is_some(), "round {round}: acknowledged row {row} lost (killed after {n})");
            if g != Some(*label) {
                let later: Vec<u32> = (n as u64..200)
                    .filter(|i| 1 + (i * 7 + round * 13) % 200 == *row as u64)
                    .map(|i| ((i + round) % names.len() as u64) as u32)
                    .collect();
                assert!(later.contains(&g.unwrap()), "round {round}: row {row} has {g:?}, acknowledged {label}");
            }
        }
    }
}

/// Iterations read typed: damaged metrics are the error of that iteration
/// alone, naming it; `review` (which needs the last one) says so in one
/// line; the last id reads without the metrics.
#[test]
fn damaged_iteration_metrics_are_named() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "it", 10);
    {
        let s = Session::open(d.path(), "it").unwrap();
        assert_eq!(s.last_iteration().unwrap(), 0);
        for n in [3, 5] {
            s.record_iteration(n, |id| Ok::<_, std::io::Error>(serde_json::json!({ "iteration": id, "n_labels": n })), &[]).unwrap();
        }
        let its = s.iterations::<serde_json::Value>().unwrap();
        assert_eq!(its.iter().map(|i| (i.id, i.n_labels)).collect::<Vec<_>>(), vec![(1, 3), (2, 5)]);
        assert_eq!(its[1].metrics.as_ref().unwrap()["n_labels"], 5);
        rusqlite::Connection::open(s.db_path()).unwrap().execute("UPDATE iterations SET metrics = '{broken' WHERE id = 2", []).unwrap();
        let its = s.iterations::<serde_json::Value>().unwrap();
        assert!(its[0].metrics.is_ok());
        let e = its[1].metrics.as_ref().unwrap_err();
        assert!(e.contains("iteration 2") && e.contains("damaged") && e.contains("session.db"), "{e}");
        assert_eq!(s.last_iteration().unwrap(), 2);
    }
    let o = labelrest(d.path(), &["review", "it"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("iteration 2") && e.contains("damaged") && e.trim().lines().count() == 1, "{e}");
}
