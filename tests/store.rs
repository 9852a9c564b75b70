//! The store suite: the same tests against both back ends, a SQLite file
//! and a PostgreSQL server (issue 15). The PostgreSQL run needs a server:
//! `LABELREST_TEST_PG` (a connection string; `.ci/run` starts a throwaway
//! one with `scripts/pg-throwaway.sh`). Without it the PostgreSQL half says
//! so and is skipped, except on CI (`CI` set), where it fails.

mod common;
use common::*;
use labelrest::store::{self, Adjudication, ImportSpec, LabelColIs, Prediction, Session, Settings, Source, Store};
use std::path::Path;

/// Each back end's store, with a local folder of its own under `dir`.
fn backends(dir: &Path) -> Vec<(&'static str, Store)> {
    let mut out = vec![("sqlite", Store { local: dir.join("sqlite"), pg: None })];
    if let Some(url) = test_pg("the PostgreSQL half of the store suite") {
        out.push(("postgres", Store { local: dir.join("pg"), pg: Some(url) }));
    }
    out
}

/// The same store, seen from another machine: another local folder.
fn elsewhere(s: &Store, dir: &Path) -> Store {
    match &s.pg {
        Some(_) => Store { local: dir.join("other-machine"), pg: s.pg.clone() },
        None => s.clone(),
    }
}

/// A session name no other test (nor an earlier run against the same server) uses.
fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// What `new` is given: a data file with gold labels, a test file.
fn spec(data: std::path::PathBuf, test: Option<std::path::PathBuf>) -> ImportSpec {
    ImportSpec {
        data,
        format: None,
        columns: labelrest::data::Columns { label: Some("label".into()), ..Default::default() },
        label_col_is: LabelColIs::Gold,
        labels: None,
        test,
        test_label_col: None,
        settings: Settings::default(),
    }
}

/// A session of 200 demo rows (gold labels) and 40 test rows.
fn make(store: &Store, dir: &Path, name: &str) {
    let data = write(dir, "data.csv", demo_head(200).as_bytes());
    let test = write(dir, "test.csv", demo_head(40).as_bytes());
    let r = Session::create(store, name, &spec(data, Some(test)), false).unwrap();
    assert_eq!((r.pool_rows, r.test_rows), (200, 40));
}

fn pool_ids(s: &Session) -> Vec<i64> {
    s.rows().unwrap().into_iter().filter(|r| r.split == store::Split::Pool).map(|r| r.id).collect()
}

#[test]
fn labels_undo_iterations_and_predictions() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("basics");
        make(&st, d.path(), &name);
        assert!(store::exists(&st, &name).unwrap(), "{kind}");
        let s = Session::open_as(&st, &name, "alice").unwrap();
        let sum = s.summary().unwrap();
        assert_eq!((sum.rows, sum.test_rows, sum.labelled, sum.iterations), (200, 40, 0, 0), "{kind}");
        let ids = pool_ids(&s);
        let k = s.label_set().unwrap().len() as u32;
        assert!(k >= 2, "{kind}");
        // Labels, a relabel, an undo that brings the old label back.
        let a = s.add_label(ids[0], 0, 0, Some(1)).unwrap();
        let b = s.add_label(ids[1], 1, 0, None).unwrap();
        assert!(b > a, "{kind}");
        s.add_label(ids[0], 1, 0, None).unwrap();
        assert_eq!(s.label_of(ids[0]).unwrap(), Some((1, Source::Person)), "{kind}");
        assert_eq!(s.undo_last().unwrap(), Some(ids[0]), "{kind}");
        assert_eq!(s.label_of(ids[0]).unwrap(), Some((0, Source::Person)), "{kind}");
        assert_eq!(s.labels().unwrap().len(), 2, "{kind}");
        assert_eq!(s.decisions_since(0).unwrap(), 2, "{kind}");
        assert_eq!(s.annotator_of(ids[1]).unwrap().as_deref(), Some("alice"), "{kind}");
        assert_eq!(s.labels_per_annotator().unwrap(), vec![(Some("alice".to_string()), Source::Person, 2)], "{kind}");
        // Bad input: named, nothing written.
        assert!(format!("{:#}", s.add_label(ids[2], k, 0, None).unwrap_err()).contains("not in the label set"), "{kind}");
        assert!(format!("{:#}", s.add_label(999_999, 0, 0, None).unwrap_err()).contains("no row 999999"), "{kind}");
        // An iteration and its predictions, in one transaction.
        let preds: Vec<Prediction> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Prediction { row_id: id, label: (i as u32) % k, prob: 0.5, entropy: 0.25, margin: 0.125, rank: Some(i as i64) })
            .collect();
        let it = s.record_iteration(2, |id| Ok::<_, std::io::Error>(serde_json::json!({ "id": id, "acc": 0.5 })), &preds).unwrap();
        assert_eq!(s.last_iteration().unwrap(), it, "{kind}");
        let got = s.predictions().unwrap();
        assert_eq!(got.len(), 200, "{kind}");
        assert_eq!(got[&ids[7]], preds[7], "{kind}");
        let its = s.iterations::<serde_json::Value>().unwrap();
        assert_eq!(its.len(), 1, "{kind}");
        assert_eq!(its[0].metrics.as_ref().unwrap()["id"], serde_json::json!(it), "{kind}");
        s.set_iteration_metrics(it, &serde_json::json!({ "acc": 0.75 })).unwrap();
        assert_eq!(s.iterations::<serde_json::Value>().unwrap()[0].metrics.as_ref().unwrap()["acc"], serde_json::json!(0.75), "{kind}");
        // Honest probabilities, settings and meta entries round-trip.
        s.set_honest_probs(&[(ids[0], &[0.25, 0.75][..]), (ids[1], &[1.0, 0.0][..])]).unwrap();
        s.set_honest_probs(&[(ids[0], &[0.5, 0.5][..])]).unwrap();
        let h = s.honest_probs().unwrap();
        assert_eq!((h[&ids[0]].clone(), h[&ids[1]].clone()), (vec![0.5, 0.5], vec![1.0, 0.0]), "{kind}");
        let mut set = s.settings().unwrap();
        set.batch = 7;
        s.save_settings(&set).unwrap();
        assert_eq!(s.settings().unwrap().batch, 7, "{kind}");
        s.set_meta("x", "1").unwrap();
        s.set_meta("x", "2").unwrap();
        assert_eq!(s.meta("x").unwrap().as_deref(), Some("2"), "{kind}");
        s.check_integrity().unwrap();
        // What a later process reads.
        drop(s);
        let r = Session::open_read_only(&st, &name).unwrap();
        assert_eq!(r.labels().unwrap().len(), 2, "{kind}");
        assert_eq!(r.summary().unwrap().iterations, 1, "{kind}");
        let listed = store::list(&st).unwrap();
        assert!(listed.iter().any(|l| l.name == name && l.summary.as_ref().map(|s| s.labelled) == Ok(2)), "{kind}");
    }
}

#[test]
fn annotators_reserve_apart_and_one_trains() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("team");
        make(&st, d.path(), &name);
        let far = elsewhere(&st, d.path());
        let alice = Session::open_as(&st, &name, "alice").unwrap();
        let bob = Session::open_as(&far, &name, "bob").unwrap();
        // The same annotator twice is refused, naming the process.
        let e = Session::open_as(&far, &name, "alice").err().expect("alice twice").to_string();
        assert!(e.contains("as annotator 'alice'") && e.contains(&format!("pid {}", std::process::id())), "{kind}: {e}");
        let ids = pool_ids(&alice);
        let a = alice.reserve(&ids[..20], 10).unwrap();
        let (b, passed) = bob.reserve_seeing(&ids[..30], 10).unwrap();
        assert_eq!(a, ids[..10].to_vec(), "{kind}");
        assert_eq!(b, ids[10..20].to_vec(), "{kind}");
        assert_eq!(passed, ids[..10].to_vec(), "{kind}");
        assert_eq!(bob.reserved_by_others().unwrap(), a.iter().copied().collect(), "{kind}");
        assert_eq!(bob.held_by_other(a[0]).unwrap().as_deref(), Some("alice"), "{kind}");
        // A label on a row in another's batch is refused in the label's own
        // transaction (a look before it can be overtaken), nothing written.
        let e = bob.add_label(a[1], 1, 0, None).unwrap_err();
        assert_eq!(
            e.downcast_ref::<labelrest::store::Refused>(),
            Some(&labelrest::store::Refused::Held { row: a[1], by: "alice".into() }),
            "{kind}: {e:#}"
        );
        assert!(bob.labels().unwrap().iter().all(|l| l.row_id != a[1]), "{kind}");
        // A label moves the marks another process polls, and frees its row.
        let before = bob.marks().unwrap();
        alice.add_label(a[0], 1, 0, None).unwrap();
        let after = bob.marks().unwrap();
        assert_ne!(before.labels_mark(), after.labels_mark(), "{kind}");
        assert_eq!(after.labels, 1, "{kind}");
        assert_eq!(bob.held_by_other(a[0]).unwrap(), None, "{kind}");
        alice.ask_retrain().unwrap();
        alice.ask_retrain().unwrap();
        assert_eq!(bob.marks().unwrap().retrain_asked, 2, "{kind}");
        // Letting go (or ending) frees the rest.
        alice.release_reservations().unwrap();
        assert!(bob.reserved_by_others().unwrap().is_empty(), "{kind}");
        let again = alice.reserve(&ids[..30], 10).unwrap();
        assert!(again.iter().all(|id| !b.contains(id) && *id != a[0]), "{kind}");
        drop(alice);
        assert!(bob.reserved_by_others().unwrap().is_empty(), "{kind}");
        // One trainer at a time; the lock goes with its holder.
        let t1 = bob.trainer_lock().unwrap();
        assert!(t1.is_some(), "{kind}");
        let other = Session::open_as(&st, &name, "carol").unwrap();
        assert!(other.trainer_lock().unwrap().is_none(), "{kind}");
        assert_eq!(other.trainer_holder().map(|h| h.0), Some(std::process::id() as i32), "{kind}");
        drop(t1);
        assert!(other.trainer_lock().unwrap().is_some(), "{kind}");
        // Removing it while someone works on it is refused.
        let e = store::remove(&st, &name).unwrap_err().to_string();
        assert!(e.contains("open in another process"), "{kind}: {e}");
        drop((bob, other));
        store::remove(&st, &name).unwrap();
        assert!(!store::exists(&st, &name).unwrap(), "{kind}");
    }
}

#[test]
fn overlap_rows_disputes_and_adjudication() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("overlap");
        make(&st, d.path(), &name);
        let alice = Session::open_as(&st, &name, "alice").unwrap();
        let bob = Session::open_as(&st, &name, "bob").unwrap();
        let carol = Session::open_as(&st, &name, "carol").unwrap();
        let n = alice.set_overlap(1.0).unwrap();
        assert_eq!(n, 200, "{kind}");
        let ids = pool_ids(&alice);
        alice.add_label(ids[0], 0, 0, None).unwrap();
        bob.add_label(ids[0], 0, 0, None).unwrap();
        alice.add_label(ids[1], 0, 0, None).unwrap();
        bob.add_label(ids[1], 1, 0, None).unwrap();
        // A third annotator does not label a row two labelled.
        assert!(format!("{:#}", carol.add_label(ids[1], 0, 0, None).unwrap_err()).contains("not yours to label"), "{kind}");
        let r = alice.resolved().unwrap();
        assert_eq!(r.labels.iter().map(|l| (l.row_id, l.annotator.clone())).collect::<Vec<_>>(), vec![(ids[0], Some("alice+bob".into()))]);
        assert_eq!(r.disputes.iter().map(|x| x.row_id).collect::<Vec<_>>(), vec![ids[1]], "{kind}");
        assert_eq!(alice.adjudicate(ids[1], 1, 0, None).unwrap(), Adjudication::Yours, "{kind}");
        assert_eq!(carol.adjudicate(ids[0], 1, 0, None).unwrap(), Adjudication::NotDisputed, "{kind}");
        assert_eq!(carol.adjudicate(ids[1], 1, 0, None).unwrap(), Adjudication::Done, "{kind}");
        assert_eq!(bob.adjudicate(ids[1], 0, 0, None).unwrap(), Adjudication::Settled("carol".into()), "{kind}");
        assert_eq!(alice.label_of(ids[1]).unwrap(), Some((1, Source::Adjudicated)), "{kind}");
        assert_eq!(carol.adjudicated_by(ids[1]).unwrap(), Some(("carol".into(), 1)), "{kind}");
        assert_eq!(carol.undo_last().unwrap(), Some(ids[1]), "{kind}");
        assert_eq!(alice.resolved().unwrap().disputes.len(), 1, "{kind}");
        alice.check_integrity().unwrap();
    }
}

#[test]
fn new_force_replaces_only_a_session_nobody_works_on() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("force");
        make(&st, d.path(), &name);
        let spec = spec(write(d.path(), "small.csv", demo_head(30).as_bytes()), None);
        let e = Session::create(&st, &name, &spec, false).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{kind}: {e}");
        let open = Session::open_as(&st, &name, "alice").unwrap();
        open.add_label(pool_ids(&open)[0], 0, 0, None).unwrap();
        let e = Session::create(&st, &name, &spec, true).unwrap_err().to_string();
        assert!(e.contains("open in another process"), "{kind}: {e}");
        assert_eq!(open.labels().unwrap().len(), 1, "{kind}: the old session is whole");
        drop(open);
        Session::create(&st, &name, &spec, true).unwrap();
        let s = Session::open_read_only(&st, &name).unwrap();
        assert_eq!((s.summary().unwrap().rows, s.labels().unwrap().len()), (30, 0), "{kind}");
        // A bad data file leaves nothing behind.
        let bad = write(d.path(), "bad.csv", b"text,label\nfine,a\n");
        let spec = ImportSpec {
            data: bad,
            labels: Some(vec![
                labelrest::data::LabelDef { name: "b".into(), description: None },
                labelrest::data::LabelDef { name: "c".into(), description: None },
            ]),
            ..spec
        };
        let other = unique("bad");
        assert!(Session::create(&st, &other, &spec, false).unwrap_err().to_string().contains("not in the label set"), "{kind}");
        assert!(!store::exists(&st, &other).unwrap(), "{kind}");
    }
}

/// The trained head and a fine-tuned encoder reach a process whose local
/// folder is elsewhere (another machine, for PostgreSQL).
#[test]
fn model_files_reach_other_machines() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("files");
        make(&st, d.path(), &name);
        let far = elsewhere(&st, d.path());
        let trainer = Session::open_as(&st, &name, "alice").unwrap();
        let reader = Session::open_as(&far, &name, "bob").unwrap();
        let head = trainer.head_path("abc");
        std::fs::write(&head, b"first head").unwrap();
        trainer.share_file(&head).unwrap();
        assert_eq!(std::fs::read(reader.head_path("abc")).unwrap(), b"first head", "{kind}");
        std::fs::write(&head, b"second head").unwrap();
        trainer.share_file(&head).unwrap();
        assert_eq!(std::fs::read(reader.head_path("abc")).unwrap(), b"second head", "{kind}");
        // A fine-tuned encoder: its folder, whole, under the same name.
        let enc = store::new_encoder_dir(&trainer.dir, "test");
        std::fs::create_dir_all(&enc).unwrap();
        std::fs::write(enc.join("config.json"), b"{}").unwrap();
        std::fs::write(enc.join("model.safetensors"), vec![7u8; 100_000]).unwrap();
        let ids = pool_ids(&trainer);
        assert_eq!(trainer.use_tuned_encoder(&enc, &ids[..3]).unwrap(), None, "{kind}");
        let (dir, n) = reader.tuned_encoder().unwrap().unwrap();
        assert_eq!(n, Some(3), "{kind}");
        assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), vec![7u8; 100_000], "{kind}");
        assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{}", "{kind}");
        assert_eq!(reader.tuned_encoder_rows().unwrap().unwrap().len(), 3, "{kind}");
    }
}

/// A store address that is empty, cannot be reached or holds a password:
/// one line, the right exit status, the password never printed.
#[test]
fn bad_store_addresses_are_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let run = |store: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .args(["--sessions", d.path().to_str().unwrap(), "--store", store, "sessions"])
            .env_remove("LABELREST_STORE")
            .output()
            .unwrap()
    };
    let o = run("");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--store is empty"), "{}", stderr(&o));
    let o = run("nonsense");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run("host=/nonexistent/socket/dir user=ann password=hunter2 dbname=x");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cannot connect to the store") && e.contains("password=***") && !e.contains("hunter2"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let o = run("postgres://ann:hunter2@127.0.0.1:1/x");
    assert!(!stderr(&o).contains("hunter2") && stderr(&o).contains("ann:***@"), "{}", stderr(&o));
    // An empty LABELREST_STORE is unset: the sessions folder (SQLite).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["--sessions", d.path().to_str().unwrap(), "sessions"])
        .env("LABELREST_STORE", "")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A server restart closes every connection: the next call opens a new one
/// (outside a transaction, a call that failed on the closed one runs again)
/// and no label is lost or doubled. On a server of the test's own
/// (`scripts/pg-throwaway.sh`), so that the restart disturbs no other test.
#[test]
fn work_goes_on_after_a_server_restart() {
    if test_pg("this test").is_none() {
        return;
    }
    let script = root().join("scripts/pg-throwaway.sh");
    let o = std::process::Command::new(&script).arg("start").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let var =
        |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("export {k}='"))).map(|v| v.trim_end_matches('\'').to_string()).unwrap();
    let (dir, url) = (var("PG_THROWAWAY"), var("LABELREST_TEST_PG"));
    struct Stop(std::path::PathBuf, String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0).args(["stop", &self.1]).output();
        }
    }
    let _stop = Stop(script.clone(), dir.clone());
    let d = tempfile::tempdir().unwrap();
    let st = Store { local: d.path().join("s"), pg: Some(url) };
    make(&st, d.path(), "restart");
    let s = Session::open_as(&st, "restart", "alice").unwrap();
    let ids = pool_ids(&s);
    s.add_label(ids[0], 0, 0, None).unwrap();
    let o = std::process::Command::new(&script).args(["restart", &dir]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The first call after the restart meets the closed connection.
    s.add_label(ids[1], 1, 0, None).unwrap();
    assert_eq!(s.reserve(&ids[2..], 10).unwrap().len(), 10);
    s.add_label(ids[2], 1, 0, None).unwrap();
    let r = Session::open_read_only(&st, "restart").unwrap();
    assert_eq!(r.labels().unwrap().iter().map(|l| l.row_id).collect::<Vec<_>>(), ids[..3].to_vec());
    assert_eq!(r.annotations_since(0).unwrap(), 3, "no label stored twice");
    // A server that stops answering (every process of it stopped): a call
    // fails after its time with one line, the next at once while it still
    // hangs, none of them writes; once it answers again, work goes on.
    let pm = std::fs::read_to_string(format!("{dir}/data/postmaster.pid")).unwrap().lines().next().unwrap().trim().to_string();
    let signal = |sig: &str| {
        std::process::Command::new("pkill").args([sig, "-P", &pm]).status().unwrap();
        std::process::Command::new("kill").args([sig, &pm]).status().unwrap();
    };
    signal("-STOP");
    let e = format!("{:#}", s.add_label(ids[3], 0, 0, None).unwrap_err());
    assert!(e.contains("did not answer within") && e.contains("was not saved"), "{e}");
    let e = format!("{:#}", s.add_label(ids[3], 0, 0, None).unwrap_err());
    assert!(e.contains("has not answered"), "{e}");
    signal("-CONT");
    let t = std::time::Instant::now();
    while s.add_label(ids[4], 0, 0, None).is_err() {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "the store answers again");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The label that timed out may have been written once the server went on
    // (its transaction was under way); never twice.
    let rows: Vec<i64> = r.labels().unwrap().iter().map(|l| l.row_id).collect();
    assert!(rows == [ids[0], ids[1], ids[2], ids[4]] || rows == [ids[0], ids[1], ids[2], ids[3], ids[4]], "{rows:?}");
    // The locks come back with the connections that held them (within a few
    // seconds): the same annotator twice, a second trainer, removing the
    // session are refused again.
    let trainer = s.trainer_lock().unwrap().expect("free");
    let o = std::process::Command::new(&script).args(["restart", &dir]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(Session::open_as(&st, "restart", "alice").is_err(), "alice's lock was taken again");
    assert!(s.trainer_lock().unwrap().is_none(), "the trainer lock was taken again");
    assert!(store::remove(&st, "restart").is_err());
    drop(trainer);
    // Another process that takes alice's lock first, right after a restart:
    // never two at work as alice, and the one that lost it cannot write.
    let o = std::process::Command::new(&script).args(["restart", &dir]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let second = Session::open_as(&st, "restart", "alice");
    std::thread::sleep(std::time::Duration::from_secs(5));
    match second {
        Ok(second) => {
            eprintln!("the second process took alice's lock after the restart");
            let e = format!("{:#}", s.add_label(ids[5], 0, 0, None).unwrap_err());
            assert!(e.contains("lost its hold on session 'restart'"), "{e}");
            second.add_label(ids[6], 0, 0, None).unwrap();
            // Nor undo (it would take back the second's label) nor keep
            // alice's place in the batch over the second's.
            let e = format!("{:#}", s.undo_last().unwrap_err());
            assert!(e.contains("lost its hold"), "{e}");
            assert!(s.set_meta("batch_rows:alice", "1").is_err());
            assert_eq!(second.labels().unwrap().iter().filter(|l| l.row_id == ids[6]).count(), 1, "the second's label stays");
        }
        // The first took its lock back before the second asked.
        Err(e) => {
            eprintln!("the first process took alice's lock back first");
            assert!(e.to_string().contains("as annotator 'alice'"), "{e}");
            s.add_label(ids[5], 0, 0, None).unwrap();
        }
    }
}

/// A snapshot (what `export` reads through) sees the session as at its
/// first read: labels another annotator commits meanwhile are not half in
/// it; once it ends, they are read.
#[test]
fn a_snapshot_reads_one_moment() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()) {
        let name = unique("snap");
        make(&st, d.path(), &name);
        let far = elsewhere(&st, d.path());
        let alice = Session::open_as(&st, &name, "alice").unwrap();
        let bob = Session::open_as(&far, &name, "bob").unwrap();
        let ids = pool_ids(&alice);
        alice.add_label(ids[0], 1, 0, None).unwrap();
        {
            let _snap = alice.snapshot().unwrap();
            assert_eq!(alice.labels().unwrap().len(), 1, "{kind}");
            bob.add_label(ids[1], 2, 0, None).unwrap();
            assert_eq!(alice.labels().unwrap().len(), 1, "{kind}: the snapshot does not see bob's label");
            assert_eq!(alice.resolved().unwrap().labels.len(), 1, "{kind}");
        }
        assert_eq!(alice.labels().unwrap().len(), 2, "{kind}: after it, it does");
        // Writing goes on as before once it ended.
        alice.add_label(ids[2], 0, 0, None).unwrap();
        assert_eq!(bob.labels().unwrap().len(), 3, "{kind}");
    }
}

/// (PostgreSQL, where a lock can be lost) What only the trainer writes
/// (an iteration, the predictions, the encoder in use) is refused in its
/// transaction while another live process holds the trainer lock: a
/// process that lost the lock when the server restarted cannot write its
/// model over the new trainer's.
#[test]
fn only_the_trainer_stores_a_model() {
    let d = tempfile::tempdir().unwrap();
    for (kind, st) in backends(d.path()).into_iter().filter(|(_, st)| st.pg.is_some()) {
        let name = unique("trainer");
        make(&st, d.path(), &name);
        let s = Session::open_as(&st, &name, "alice").unwrap();
        let mut args = vec!["--sessions".to_string(), st.local.to_str().unwrap().to_string()];
        if let Some(url) = &st.pg {
            args.extend(["--store".to_string(), url.clone()]);
        }
        args.extend(["retrain".to_string(), name.clone()]);
        // Another process takes the trainer lock and holds it (5 s).
        let mut other = std::process::Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .args(&args)
            .env("LABELREST_PAUSE_AT", "retrain-locked")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while s.trainer_holder().is_none() {
            assert!(t.elapsed() < std::time::Duration::from_secs(30), "{kind}: the other process took the trainer lock");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let preds = vec![Prediction { row_id: pool_ids(&s)[0], label: 1, prob: 0.5, entropy: 1.0, margin: 0.1, rank: None }];
        let e = format!("{:#}", s.record_iteration(1, |id| Ok::<_, std::io::Error>(serde_json::json!({ "id": id })), &preds).unwrap_err());
        assert!(e.contains("another process (pid") && e.contains("trains session"), "{kind}: {e}");
        assert!(s.replace_predictions(0, &preds).is_err(), "{kind}");
        assert!(s.iterations::<serde_json::Value>().unwrap().is_empty(), "{kind}: nothing stored");
        assert!(other.wait().unwrap().success(), "{kind}");
        // The other process's iteration is there; this one stores once it trains.
        assert_eq!(s.iterations::<serde_json::Value>().unwrap().len(), 1, "{kind}");
        let _lock = s.trainer_lock().unwrap().expect("free now");
        s.record_iteration(1, |id| Ok::<_, std::io::Error>(serde_json::json!({ "id": id })), &preds).unwrap();
    }
}
