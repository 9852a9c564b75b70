//! Several annotators on one session at once (issue 15): the real binary,
//! headless `annotate` processes asking for batches and labelling them at
//! full speed, one of them killed with SIGKILL; and two workstations in
//! tmux where one's batch trains the model that both show.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One `labelrest annotate` process working as `annotator`.
struct Annotator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Annotator {
    fn start(sessions: &Path, name: &str, annotator: &str) -> Annotator {
        Annotator::start_with(sessions, name, annotator, &[])
    }

    /// `start` with more options first (`--store URL`).
    fn start_with(sessions: &Path, name: &str, annotator: &str, before: &[&str]) -> Annotator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .args(before)
            .arg("--sessions")
            .arg(sessions)
            .args(["annotate", name, "--annotator", annotator])
            .env_remove("LABELREST_STORE")
            .env("LABELREST_LOG", sessions.join("test.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Annotator { child, stdin, stdout }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        assert!(self.stdout.read_line(&mut l).unwrap() > 0, "annotate ended early");
        l.trim_end().to_string()
    }

    /// `next`: the rows it holds now.
    fn next(&mut self) -> Vec<i64> {
        writeln!(self.stdin, "next").unwrap();
        let mut rows = Vec::new();
        loop {
            let l = self.line();
            if l == "end" {
                return rows;
            }
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f[0], "row", "{l}");
            rows.push(f[1].parse().unwrap());
        }
    }

    /// Labels a row; returns once annotate says it is on disk.
    fn label(&mut self, row: i64, label: &str) {
        writeln!(self.stdin, "{row}\t{label}").unwrap();
        assert_eq!(self.line(), format!("ok {row}"));
    }
}

/// Gold label names by row id, and the pool's size.
fn gold(sessions: &Path, name: &str) -> HashMap<i64, String> {
    let s = labelrest::store::Session::open_read_only(sessions, name).unwrap();
    let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
    s.rows().unwrap().into_iter().filter_map(|r| r.gold.map(|g| (r.id, names[g as usize].clone()))).collect()
}

/// Every annotation ever stored (active or not): (row, annotator).
fn annotations(sessions: &Path, name: &str) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(sessions.join(name).join("session.db")).unwrap();
    let mut st = c.prepare("SELECT row_id, annotator FROM annotations ORDER BY id").unwrap();
    let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<Vec<_>>>().unwrap();
    v
}

/// `n` annotators `a0`.. on session `t`, each on its own thread at full
/// speed (`next`, label every row with its gold label, `next`...) until no
/// row is left: each one's batches, in order.
fn work_all(sessions: &Path, gold: &HashMap<i64, String>, n: usize) -> Vec<Vec<Vec<i64>>> {
    let gold = gold.clone();
    let who: Vec<usize> = (0..n).collect();
    work_all_answering(sessions, &who, std::sync::Arc::new(move |_, r| gold[&r].clone()))
}

/// `work_all` for annotators `a{k}` for k in `who`, where `a{k}` gives row
/// `r` the label `answer(k, r)`.
fn work_all_answering(
    sessions: &Path,
    who: &[usize],
    answer: std::sync::Arc<dyn Fn(usize, i64) -> String + Send + Sync>,
) -> Vec<Vec<Vec<i64>>> {
    let handles: Vec<_> = who
        .iter()
        .map(|&k| {
            let (dir, answer) = (sessions.to_path_buf(), answer.clone());
            std::thread::spawn(move || {
                let mut a = Annotator::start(&dir, "t", &format!("a{k}"));
                let mut batches = Vec::new();
                loop {
                    let rows = a.next();
                    if rows.is_empty() {
                        break;
                    }
                    for &r in &rows {
                        a.label(r, &answer(k, r));
                    }
                    batches.push(rows);
                }
                drop(a.stdin);
                assert!(a.child.wait().unwrap().success());
                batches
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn concurrent_annotators_never_share_a_row_and_lose_nothing_under_kill() {
    for n in [2usize, 4] {
        let d = tempfile::tempdir().unwrap();
        small_demo_session(d.path(), "t", 160);
        let gold = gold(d.path(), "t");
        // Each annotator on its own thread, at full speed: next, label all, next...
        let batches = work_all(d.path(), &gold, n);
        let all: Vec<i64> = batches.iter().flatten().flatten().copied().collect();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "{n} annotators: a row was in two batches");
        assert_eq!(unique.len(), gold.len(), "{n} annotators: every row was offered once");
        // One annotation per row, by the annotator whose batch had it.
        let owner: HashMap<i64, String> =
            batches.iter().enumerate().flat_map(|(k, b)| b.iter().flatten().map(move |&r| (r, format!("a{k}")))).collect();
        let stored = annotations(d.path(), "t");
        assert_eq!(stored.len(), gold.len(), "{n} annotators: no label lost or duplicated");
        for (r, who) in stored {
            assert_eq!(owner[&r], who);
        }
    }

    // kill -9 among three: the killed one's acknowledged labels stay, its
    // held rows go to the others, no row is labelled twice.
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "t", 120);
    let gold = gold(d.path(), "t");
    let mut victim = Annotator::start(d.path(), "t", "victim");
    let held = victim.next();
    assert_eq!(held.len(), 10, "a batch is the session's batch size");
    for &r in &held[..3] {
        victim.label(r, &gold[&r]);
    }
    // A label written but not acknowledged may or may not be there; one acknowledged must.
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let others: Vec<i64> = work_all(d.path(), &gold, 2).into_iter().flatten().flatten().collect();
    let stored = annotations(d.path(), "t");
    let rows: Vec<i64> = stored.iter().map(|s| s.0).collect();
    let unique: HashSet<i64> = rows.iter().copied().collect();
    assert_eq!(rows.len(), unique.len(), "no row labelled twice");
    assert_eq!(unique.len(), gold.len(), "every row labelled");
    for &r in &held[..3] {
        assert!(stored.contains(&(r, "victim".to_string())), "acknowledged label of row {r} kept");
    }
    for &r in &held[3..] {
        assert!(others.contains(&r), "row {r}, held by the killed process, went to another annotator");
    }
}

#[test]
fn same_annotator_twice_is_refused_others_work_beside() {
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "t", 40);
    let mut a = Annotator::start(d.path(), "t", "ann");
    let rows = a.next();
    assert_eq!(rows.len(), 10);
    // The same annotator again: refused, naming the process.
    let o = annotate(d.path(), "t", &["--annotator", "ann"], &[], "");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("open in another process (pid") && e.contains(&a.child.id().to_string()) && e.contains("'ann'"), "{e}");
    // Another annotator works beside it and is never given its rows.
    let o = annotate(d.path(), "t", &["--annotator", "bea"], &[], "next\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let theirs: Vec<i64> =
        stdout(&o).lines().filter_map(|l| l.strip_prefix("row\t")).map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert_eq!(theirs.len(), 10);
    assert!(theirs.iter().all(|r| !rows.contains(r)), "{theirs:?} vs {rows:?}");
    // A row in another annotator's batch is not labelled by id either.
    let o = annotate(d.path(), "t", &["--annotator", "bea"], &[], &format!("{}\tcard_arrival\n", rows[1]));
    assert_eq!(stdout(&o).trim(), format!("held {} ann", rows[1]));
    // bea ended: her rows are free again.
    let o = annotate(d.path(), "t", &["--annotator", "cy"], &[], "next 30\n");
    let free: Vec<i64> =
        stdout(&o).lines().filter_map(|l| l.strip_prefix("row\t")).map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert_eq!(free.len(), 30, "the 40 rows less ann's 10");
    assert!(free.iter().all(|r| !rows.contains(r)));
    // Removing the session is refused while anyone works on it.
    let o = labelrest(d.path(), &["sessions", "rm", "t", "--yes"]);
    assert!(!o.status.success() && stderr(&o).contains("open in another process"), "{}", stderr(&o));
    // While it works, `sessions` says so.
    let o = labelrest(d.path(), &["sessions"]);
    assert!(stdout(&o).contains(&format!("pid {}", a.child.id())), "{}", stdout(&o));
    a.label(rows[0], "card_arrival");
    drop(a.stdin);
    a.child.wait().unwrap();
}

fn tmux(sock: &str, args: &[&str]) -> String {
    let o = Command::new("tmux").arg("-S").arg(sock).args(args).output().expect("tmux");
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Two workstations in tmux: bob's batch is learnt by alice's process (the
/// first one open trains) and both show the iteration it made; when alice
/// quits, bob's process takes over the training.
#[test]
fn two_workstations_share_one_model() {
    two_workstations(None);
}

/// The same with the session in PostgreSQL and each workstation on its own
/// sessions folder (two machines): the model one trains reaches the other.
#[test]
fn two_workstations_on_two_machines_share_one_postgres_session() {
    let Some(url) = test_pg("this test") else {
        return;
    };
    two_workstations(Some(&url));
}

fn two_workstations(store: Option<&str>) {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing on CI: .ci/run installs it");
        eprintln!("tmux not installed; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let name = match store {
        Some(_) => format!("ws{}", std::process::id()),
        None => "t".to_string(),
    };
    let name = name.as_str();
    // Each workstation's sessions folder: one for both, or one per machine.
    let folder = |who: &str| match store {
        Some(_) => d.path().join(who),
        None => d.path().to_path_buf(),
    };
    match store {
        None => small_demo_session(d.path(), name, 300),
        Some(url) => {
            let f = write(d.path(), "data.csv", demo_head(300).as_bytes());
            let o = Command::new(env!("CARGO_BIN_EXE_labelrest"))
                .args(["--store", url, "--sessions"])
                .arg(d.path().join("maker"))
                .args(["new", name, "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--force"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
    }
    let store_arg = store.map(|u| format!("--store '{u}' ")).unwrap_or_default();
    let sock = d.path().join("tmux.sock").to_str().unwrap().to_string();
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux").args(["-S", &self.0, "kill-server"]).output();
        }
    }
    let _kill = Kill(sock.clone());
    let bin = env!("CARGO_BIN_EXE_labelrest");
    let start = |who: &str| {
        let cmd = format!(
            "LABELREST_LOG={log}/{who}.log NO_COLOR=1 {bin} {store_arg}--sessions {dir} label {name} --annotator {who}; echo EXITED $?; sleep 60",
            log = d.path().display(),
            dir = folder(who).display()
        );
        let st = Command::new("tmux").args(["-S", &sock, "new-session", "-d", "-s", who, "-x", "80", "-y", "24", &cmd]).status().unwrap();
        assert!(st.success());
    };
    let cap = |who: &str| tmux(&sock, &["capture-pane", "-p", "-t", who]);
    let wait = |who: &str, what: &[&str], secs: u64| -> String {
        let t = Instant::now();
        loop {
            let s = cap(who);
            if what.iter().all(|w| s.contains(w)) {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(secs), "{who}: waited {secs}s for {what:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Labels `n` rows with `key`, one at a time: a key that comes while the
    // row under the cursor just changed is refused (`SETTLE`), so each
    // decision is checked in the header's count.
    let label = |who: &str, key: &str, from: usize, n: usize| {
        for k in from + 1..=from + n {
            let t = Instant::now();
            loop {
                tmux(&sock, &["send-keys", "-t", who, key]);
                std::thread::sleep(Duration::from_millis(250));
                // Taken, or refused (the row just came: "press again"); a
                // slow store gets a while before the key is sent again.
                let t2 = Instant::now();
                while labelled_count(&cap(who)).unwrap_or(0) < k
                    && !cap(who).contains("press again")
                    && t2.elapsed() < Duration::from_secs(8)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if labelled_count(&cap(who)).unwrap_or(0) >= k {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
                assert!(t.elapsed() < Duration::from_secs(30), "{who}: label {k} not taken:\n{}", cap(who));
            }
        }
    };
    start("alice");
    wait("alice", &["it 1 ", "ready"], 120);
    start("bob");
    let s = wait("bob", &["it 1 ", "ready"], 60);
    // Neither is shown the other's batch: each queue lacks the other's ten rows.
    assert!(s.contains("Queue (margin, 289 rows)") || s.contains("Queue (margin, 290 rows)"), "{s}");
    // The mode is the team's: bob's change reaches alice's panel. (Each `m`
    // as a person presses it: again only where his panel does not show it
    // taken, since a key that acts waits its moment after a new model.)
    let press = |key: &str, shown: &str| {
        for _ in 0..20 {
            tmux(&sock, &["send-keys", "-t", "bob", key]);
            std::thread::sleep(Duration::from_millis(500));
            if cap("bob").contains(shown) {
                return;
            }
            std::thread::sleep(labelrest::ui::app::SETTLE);
        }
        panic!("bob's {key} never showed {shown}:\n{}", cap("bob"));
    };
    press("m", "mode head");
    wait("alice", &["mode head"], 20);
    press("m", "mode finetune");
    press("m", "mode contrastive");
    press("m", "mode auto");
    wait("alice", &["mode auto"], 20);
    std::thread::sleep(Duration::from_millis(1500));
    label("bob", "Enter", 0, 10);
    // Alice's process trains on bob's batch; both show the new iteration.
    wait("alice", &["it 2 ", "10 labelled"], 60);
    wait("bob", &["it 2 ", "10 labelled"], 30);
    // Alice labels three; bob's workstation counts them.
    std::thread::sleep(Duration::from_millis(1500));
    label("alice", "Enter", 10, 3);
    wait("bob", &["13 labelled"], 30);
    // Alice quits: bob's process takes over the training, learns what it
    // has not (alice's three), and retrains after bob's next batch.
    tmux(&sock, &["send-keys", "-t", "alice", "q"]);
    wait("alice", &["EXITED 0"], 20);
    wait("bob", &["it 3 ", "13 labelled"], 30);
    std::thread::sleep(Duration::from_millis(1500));
    label("bob", "1", 13, 10);
    wait("bob", &["it 4 ", "23 labelled"], 60);
    let log = std::fs::read_to_string(d.path().join("bob.log")).unwrap_or_default();
    assert!(log.contains(&format!("this process trains session {name}")), "{log}");
    assert!(!log.contains("panic"), "{log}");
    let where_ = labelrest::store::Store { local: folder("bob"), pg: store.map(str::to_string) };
    let s = labelrest::store::Session::open_read_only(&where_, name).unwrap();
    let by: Vec<Option<String>> = s.labels().unwrap().into_iter().map(|l| l.annotator).collect();
    assert_eq!(by.iter().filter(|a| a.as_deref() == Some("alice")).count(), 3);
    assert_eq!(by.iter().filter(|a| a.as_deref() == Some("bob")).count(), 20);
}

/// `--overlap`: a share of the rows goes to two annotators (never twice to
/// one, never both at once), agreement per pair in `stats`, disagreements
/// kept out of training until the adjudicator settles them (headless), and
/// export saying which rows are which.
#[test]
fn overlap_rows_go_to_two_annotators_and_disagreements_wait_for_the_adjudicator() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "t.csv", demo_head(100).as_bytes());
    let o = labelrest(
        d.path(),
        &["new", "t", "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--overlap", "0.3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bad = labelrest(d.path(), &["new", "u", "--data", f.to_str().unwrap(), "--overlap", "1.5"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("from 0 to 1"), "{}", stderr(&bad));
    let gold = gold(d.path(), "t");
    let names: Vec<String> = {
        let s = labelrest::store::Session::open_read_only(d.path(), "t").unwrap();
        s.label_set().unwrap().into_iter().map(|l| l.name).collect()
    };
    let overlap: HashSet<i64> = {
        let c = rusqlite::Connection::open(d.path().join("t/session.db")).unwrap();
        let mut st = c.prepare("SELECT row_id FROM overlap").unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<HashSet<i64>>>().unwrap();
        v
    };
    assert!((15..=45).contains(&overlap.len()), "about 30 of 100 rows: {}", overlap.len());
    // a1 gives every fourth row another label than a0 (who gives the gold one).
    let other = |g: &str| -> String { names.iter().find(|n| n.as_str() != g).unwrap().clone() };
    let (g2, names2) = (gold.clone(), names.clone());
    let answer = std::sync::Arc::new(move |k: usize, r: i64| {
        let g = g2[&r].clone();
        if k == 1 && r % 4 == 0 {
            names2.iter().find(|n| **n != g).unwrap().clone()
        } else {
            g
        }
    });
    // Both at full speed, then each alone (a row the other held when one
    // ran out of rows comes back to it then).
    let mut batches = work_all_answering(d.path(), &[0, 1], answer.clone());
    for k in [0, 1] {
        let b = work_all_answering(d.path(), &[k], answer.clone()).remove(0);
        batches[k].extend(b);
    }
    for (k, b) in batches.iter().enumerate() {
        let rows: Vec<i64> = b.iter().flatten().copied().collect();
        let unique: HashSet<i64> = rows.iter().copied().collect();
        assert_eq!(rows.len(), unique.len(), "a{k} was given a row twice");
    }
    let stored = annotations(d.path(), "t");
    let mut per_row: HashMap<i64, Vec<String>> = HashMap::new();
    for (r, who) in &stored {
        per_row.entry(*r).or_default().push(who.clone());
    }
    assert_eq!(per_row.len(), gold.len(), "every row labelled");
    for (r, who) in &per_row {
        if overlap.contains(r) {
            let mut w = who.clone();
            w.sort();
            assert_eq!(w, vec!["a0", "a1"], "overlap row {r}: one label from each");
        } else {
            assert_eq!(who.len(), 1, "row {r}: one label");
        }
    }
    // Agreement and disputes as stats says them.
    let disputed: HashSet<i64> = overlap.iter().copied().filter(|r| r % 4 == 0).collect();
    assert!(!disputed.is_empty());
    let o = labelrest(d.path(), &["stats", "t", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["overlap_rows"], overlap.len());
    assert_eq!(v["disputes"], disputed.len());
    assert_eq!(v["waiting"], 0);
    let pair = &v["agreement"][0];
    assert_eq!((pair["a"].as_str(), pair["b"].as_str(), pair["rows"].as_u64()), (Some("a0"), Some("a1"), Some(overlap.len() as u64)));
    let raw = 1.0 - disputed.len() as f64 / overlap.len() as f64;
    assert!((pair["raw"].as_f64().unwrap() - raw).abs() < 1e-9, "{pair}");
    let mut rows: Vec<i64> = overlap.iter().copied().collect();
    rows.sort_unstable();
    let idx = |n: &str| names.iter().position(|x| x == n).unwrap() as u32;
    let a: Vec<u32> = rows.iter().map(|r| idx(&gold[r])).collect();
    let b: Vec<u32> = rows.iter().map(|r| if r % 4 == 0 { idx(&other(&gold[r])) } else { idx(&gold[r]) }).collect();
    let kappa = labelrest::learn::stopping::kappa(&a, &b, names.len());
    assert!((pair["kappa"].as_f64().unwrap() - kappa).abs() < 1e-9 && kappa < 1.0, "{pair} vs {kappa}");
    let table = stdout(&labelrest(d.path(), &["stats", "t"]));
    assert!(table.contains(&format!("{} disputed", disputed.len())) && table.contains("kappa"), "{table}");
    // Disagreements are kept out of training.
    {
        let s = labelrest::store::Session::open_read_only(d.path(), "t").unwrap();
        let learnt: HashSet<i64> = s.labels().unwrap().into_iter().map(|l| l.row_id).collect();
        assert_eq!(learnt.len(), gold.len() - disputed.len());
        assert!(disputed.iter().all(|r| !learnt.contains(r)));
    }
    // A third annotator does not add a label to a row two agreed on.
    let agreed0 = *overlap.iter().find(|r| *r % 4 != 0).unwrap();
    let o = annotate(d.path(), "t", &["--annotator", "zed"], &[], &format!("{agreed0}\t{}\n", other(&gold[&agreed0])));
    assert_eq!(stdout(&o).trim(), format!("labelled {agreed0} a0,a1"));
    // Only the adjudicator settles them.
    let o = annotate(d.path(), "t", &["--annotator", "carol"], &[], "disputes\n");
    assert!(!o.status.success() && stderr(&o).contains("--adjudicator"), "{}", stderr(&o));
    let o = annotate(d.path(), "t", &["--annotator", "carol", "--adjudicator"], &[], "disputes\n");
    let listed: Vec<(i64, String)> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("dispute\t"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            // ID, then annotator and label pairs, then the text.
            let pairs: Vec<String> = f[1..f.len() - 1].chunks(2).map(|p| format!("{}={}", p[0], p[1])).collect();
            (f[0].parse().unwrap(), pairs.join(","))
        })
        .collect();
    assert_eq!(listed.iter().map(|x| x.0).collect::<HashSet<_>>(), disputed);
    for (r, said) in &listed {
        let mut said: Vec<&str> = said.split(',').collect();
        said.sort();
        assert_eq!(said.join(","), format!("a0={},a1={}", gold[r], other(&gold[r])), "row {r}");
    }
    let settle: Vec<i64> = listed.iter().map(|x| x.0).take(listed.len().div_ceil(2)).collect();
    let agreed = *overlap.iter().find(|r| *r % 4 != 0).unwrap();
    let mut lines: String = settle.iter().map(|r| format!("adjudicate {r}\t{}\n", gold[r])).collect();
    lines.push_str(&format!("adjudicate {agreed}\t{}\n", gold[&agreed]));
    let o = annotate(d.path(), "t", &["--annotator", "carol", "--adjudicator"], &[], &lines);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut want: Vec<String> = settle.iter().map(|r| format!("ok {r}")).collect();
    want.push(format!("not-disputed {agreed}"));
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), want);
    // Again: settled. One of a dispute's annotators may not settle it; a
    // label by id on an adjudicated row is refused; a row that is not there
    // is an error.
    let r0 = settle[0];
    let o = annotate(d.path(), "t", &["--annotator", "carol", "--adjudicator"], &[], &format!("adjudicate {r0}\t{}\n", gold[&r0]));
    assert_eq!(stdout(&o).trim(), format!("settled {r0}"));
    let open = *listed.iter().map(|x| &x.0).find(|r| !settle.contains(r)).expect("a dispute left open");
    let o =
        annotate(d.path(), "t", &["--annotator", "a0", "--adjudicator"], &[], &format!("disputes\nadjudicate {open}\t{}\n", gold[&open]));
    assert_eq!(stdout(&o).trim(), format!("end\nyours {open}"), "a0's own disputes are not listed to a0");
    let o = annotate(d.path(), "t", &["--annotator", "a0"], &[], &format!("{r0}\t{}\n", other(&gold[&r0])));
    assert_eq!(stdout(&o).trim(), format!("adjudicated {r0} carol"));
    let o = annotate(d.path(), "t", &["--annotator", "carol", "--adjudicator"], &[], &format!("adjudicate 99999\t{}\n", names[0]));
    assert!(!o.status.success() && stderr(&o).starts_with("error: <stdin>:1: ") && stderr(&o).contains("no row 99999"), "{}", stderr(&o));
    // The adjudicated label is the row's, for training and export.
    let s = labelrest::store::Session::open_read_only(d.path(), "t").unwrap();
    let learnt: HashMap<i64, (u32, labelrest::store::Source)> =
        s.labels().unwrap().into_iter().map(|l| (l.row_id, (l.label, l.source))).collect();
    for r in &settle {
        assert_eq!(learnt[r], (idx(&gold[r]), labelrest::store::Source::Adjudicated));
    }
    s.check_integrity().unwrap();
    // What the export's note on calibration counts: the labels the model
    // learns from (adjudicated ones too, no dispute).
    let rep = labelrest::export::export(&s, &d.path().join("t.counted.csv"), &Default::default()).unwrap();
    assert_eq!(rep.learnt_from, learnt.len());
    drop(s);
    let out = d.path().join("t.out.csv");
    let o = labelrest(d.path(), &["export", "t", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let left = disputed.len() - settle.len();
    assert!(stdout(&o).contains(&format!("{} adjudicated, {left} disputed", settle.len())), "{}", stdout(&o));
    let mut rd = csv::Reader::from_path(&out).unwrap();
    for rec in rd.records() {
        let rec = rec.unwrap();
        let r: i64 = rec[0].parse().unwrap();
        let (label, source, annotator) = (&rec[2], &rec[3], &rec[6]);
        if settle.contains(&r) {
            assert_eq!((label, source, annotator), (gold[&r].as_str(), "adjudicated", "carol"), "row {r}");
        } else if disputed.contains(&r) {
            assert_eq!((label, source, annotator), ("", "disputed", "a0,a1"), "row {r}");
        } else if overlap.contains(&r) {
            assert_eq!((label, source), (gold[&r].as_str(), "person"), "row {r}");
            assert_eq!(annotator, "a0+a1", "row {r}");
        }
    }
}

/// Annotators on different machines share one session in PostgreSQL: each
/// process with a sessions folder of its own (its own caches), at full
/// speed, one killed with SIGKILL; the model one machine trains is the one
/// another predicts with.
#[test]
fn processes_with_separate_folders_share_one_postgres_session() {
    let Some(url) = test_pg("this test") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let name = format!("shared-{}", std::process::id());
    let machine = |m: &str| d.path().join(m);
    let run = |m: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .args(["--store", &url, "--sessions"])
            .arg(machine(m))
            .args(args)
            .env_remove("LABELREST_STORE")
            .env("LABELREST_LOG", d.path().join(format!("{m}.log")))
            .output()
            .unwrap()
    };
    let data = write(d.path(), "data.csv", demo_head(120).as_bytes());
    let o = run("a", &["new", &name, "--data", data.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run("b", &["sessions"]);
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));
    let reader = labelrest::store::Store { local: machine("a"), pg: Some(url.clone()) };
    let gold: HashMap<i64, String> = {
        let s = labelrest::store::Session::open_read_only(&reader, &name).unwrap();
        let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
        s.rows().unwrap().into_iter().filter_map(|r| r.gold.map(|g| (r.id, names[g as usize].clone()))).collect()
    };
    let store_args = ["--store", url.as_str()];
    let mut victim = Annotator::start_with(&machine("v"), &name, "victim", &store_args);
    let held = victim.next();
    assert_eq!(held.len(), 10);
    for &r in &held[..3] {
        victim.label(r, &gold[&r]);
    }
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let handles: Vec<_> = ["b", "c"]
        .iter()
        .map(|m| {
            let (dir, gold, name, url) = (machine(m), gold.clone(), name.clone(), url.clone());
            let who = format!("on-{m}");
            std::thread::spawn(move || {
                let mut a = Annotator::start_with(&dir, &name, &who, &["--store", &url]);
                let mut rows = Vec::new();
                loop {
                    let batch = a.next();
                    if batch.is_empty() {
                        break;
                    }
                    for &r in &batch {
                        a.label(r, &gold[&r]);
                    }
                    rows.extend(batch);
                }
                drop(a.stdin);
                assert!(a.child.wait().unwrap().success());
                rows
            })
        })
        .collect();
    let got: Vec<Vec<i64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(got.iter().all(|g| !g.is_empty()), "both machines were given rows");
    let all: Vec<i64> = got.iter().flatten().copied().collect();
    assert_eq!(all.len(), all.iter().collect::<HashSet<_>>().len(), "a row was in two batches");
    for &r in &held[3..] {
        assert!(all.contains(&r), "row {r}, held by the killed process, went to another annotator");
    }
    let s = labelrest::store::Session::open_read_only(&reader, &name).unwrap();
    let labels = s.active_labels().unwrap();
    assert_eq!(labels.len(), gold.len(), "every row labelled once");
    assert_eq!(s.annotations_since(0).unwrap() as usize, gold.len(), "no label stored twice");
    for &r in &held[..3] {
        assert!(labels.iter().any(|l| l.row_id == r && l.annotator.as_deref() == Some("victim")), "acknowledged label of row {r} kept");
    }
    // Machine b trains; machine c, which never trained, predicts with b's model.
    let o = run("b", &["retrain", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = write(d.path(), "in.csv", demo_head(30).as_bytes());
    let (out_b, out_c) = (d.path().join("b.csv"), d.path().join("c.csv"));
    for (m, out) in [("b", &out_b), ("c", &out_c)] {
        let o = run(m, &["predict", &name, "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{m}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read_to_string(&out_b).unwrap(), std::fs::read_to_string(&out_c).unwrap());
    assert!(!machine("c").join(&name).join("session.db").exists(), "nothing of the session's database on a machine");
    let o = run("c", &["sessions", "rm", &name, "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A store that stops answering for longer than a call may wait: the
/// workstation's training thread fails, starts again once the server
/// answers, and the next batch still makes an iteration. On a server of the
/// test's own (stopping the shared one would stall the other tests).
#[test]
fn training_starts_again_after_the_store_stalled() {
    if test_pg("this test").is_none() {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing on CI: .ci/run installs it");
        return;
    }
    let script = root().join("scripts/pg-throwaway.sh");
    let o = Command::new(&script).arg("start").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let var =
        |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("export {k}='"))).map(|v| v.trim_end_matches('\'').to_string()).unwrap();
    let (dir, url) = (var("PG_THROWAWAY"), var("LABELREST_TEST_PG"));
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("tmux.sock").to_str().unwrap().to_string();
    struct Cleanup(std::path::PathBuf, String, String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // (Resumed first: a stopped server does not stop.)
            let _ = Command::new("kill").args(["-CONT", &self.3]).status();
            let _ = Command::new("pkill").args(["-CONT", "-P", &self.3]).status();
            let _ = Command::new("tmux").args(["-S", &self.2, "kill-server"]).output();
            let _ = Command::new(&self.0).args(["stop", &self.1]).output();
        }
    }
    let pm = std::fs::read_to_string(format!("{dir}/data/postmaster.pid")).unwrap().lines().next().unwrap().trim().to_string();
    let _cleanup = Cleanup(script.clone(), dir.clone(), sock.clone(), pm.clone());
    let f = write(d.path(), "data.csv", demo_head(200).as_bytes());
    let o = Command::new(env!("CARGO_BIN_EXE_labelrest"))
        .args(["--store", &url, "--sessions"])
        .arg(d.path())
        .args(["new", "st", "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = d.path().join("ws.log");
    let cmd = format!(
        "LABELREST_LOG={} NO_COLOR=1 {} --store '{url}' --sessions {} label st --annotator al; sleep 60",
        log.display(),
        env!("CARGO_BIN_EXE_labelrest"),
        d.path().display()
    );
    assert!(Command::new("tmux")
        .args(["-S", &sock, "new-session", "-d", "-s", "w", "-x", "80", "-y", "24", &cmd])
        .status()
        .unwrap()
        .success());
    let cap = || tmux(&sock, &["capture-pane", "-p", "-t", "w"]);
    let wait = |what: &str, secs: u64| {
        let t = Instant::now();
        while !cap().contains(what) {
            assert!(t.elapsed() < Duration::from_secs(secs), "waited {secs}s for {what:?}:\n{}", cap());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("it 1 ", 120);
    wait("ready", 60);
    let signal = |sig: &str| {
        Command::new("pkill").args([sig, "-P", &pm]).status().unwrap();
        Command::new("kill").args([sig, &pm]).status().unwrap();
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(30));
    signal("-CONT");
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("worker: starting again") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the worker did not start again:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A batch of ten (a key again while the count has not moved: a row that
    // just changed takes none; a slow store may take two at once).
    let t = Instant::now();
    while labelled_count(&cap()).unwrap_or(0) < 10 {
        let before = labelled_count(&cap());
        tmux(&sock, &["send-keys", "-t", "w", "Enter"]);
        std::thread::sleep(Duration::from_millis(250));
        let t2 = Instant::now();
        while labelled_count(&cap()) == before && !cap().contains("press again") && t2.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(120), "the batch is not taken:\n{}", cap());
    }
    wait("it 2 ", 60);
}

/// Two workstations label the same free row (in neither's batch) at the
/// same moment, each having seen it unlabelled: the first label stands and
/// the second is refused in its write transaction, naming who labelled it,
/// rather than replacing a label whose annotator believes it stands. A
/// relabel (a label seen) still replaces, and a row sent to two keeps both.
#[test]
fn a_free_row_labelled_by_two_at_once_keeps_the_first_label() {
    use labelrest::store::{Refused, Session};
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "t.csv", demo_head(60).as_bytes());
    let o = labelrest(
        d.path(),
        &["new", "t", "--data", f.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--overlap", "0.5"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let overlap: HashSet<i64> = {
        let c = rusqlite::Connection::open(d.path().join("t/session.db")).unwrap();
        let mut st = c.prepare("SELECT row_id FROM overlap").unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<HashSet<i64>>>().unwrap();
        v
    };
    let alice = Session::open_as(d.path(), "t", "alice").unwrap();
    let bob = Session::open_as(d.path(), "t", "bob").unwrap();
    let rows: Vec<i64> = alice.rows().unwrap().iter().map(|r| r.id).collect();
    let free = *rows.iter().find(|r| !overlap.contains(r)).unwrap();
    let shared = *rows.iter().find(|r| overlap.contains(r)).unwrap();
    let active = |row: i64| active_labels(d.path(), "t", row);
    alice.add_label_unlabelled(free, 0, 0, None).unwrap();
    let e = bob.add_label_unlabelled(free, 1, 0, None).unwrap_err();
    assert!(matches!(e.downcast_ref::<Refused>(), Some(Refused::Taken { by, .. }) if by == "alice"), "{e:#}");
    assert!(format!("{e:#}").contains("was just labelled by alice"), "{e:#}");
    assert_eq!(active(free), [(0, "alice".to_string())], "the first label stands");
    // Alice changing her own label, and bob relabelling a label he saw, replace it.
    alice.add_label_unlabelled(free, 2, 0, None).unwrap();
    assert_eq!(active(free), [(2, "alice".to_string())]);
    bob.add_label(free, 1, 0, None).unwrap();
    assert_eq!(active(free), [(1, "bob".to_string())]);
    // A row sent to two: each annotator's label is kept.
    alice.add_label_unlabelled(shared, 0, 0, None).unwrap();
    bob.add_label_unlabelled(shared, 1, 0, None).unwrap();
    assert_eq!(active(shared), [(0, "alice".to_string()), (1, "bob".to_string())]);
}
