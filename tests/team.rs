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
        let mut child = Command::new(env!("CARGO_BIN_EXE_labelrest"))
            .arg("--sessions")
            .arg(sessions)
            .args(["annotate", name, "--annotator", annotator])
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
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let (dir, gold) = (sessions.to_path_buf(), gold.clone());
            std::thread::spawn(move || {
                let mut a = Annotator::start(&dir, "t", &format!("a{k}"));
                let mut batches = Vec::new();
                loop {
                    let rows = a.next();
                    if rows.is_empty() {
                        break;
                    }
                    for &r in &rows {
                        a.label(r, &gold[&r]);
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
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing on CI: .ci/run installs it");
        eprintln!("tmux not installed; skipping");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "t", 300);
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
            "LABELREST_LOG={dir}/{who}.log NO_COLOR=1 {bin} --sessions {dir} label t --annotator {who}; echo EXITED $?; sleep 60",
            dir = d.path().display()
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
            let want = format!("· {k} labelled");
            let t = Instant::now();
            loop {
                tmux(&sock, &["send-keys", "-t", who, key]);
                let t2 = Instant::now();
                while !cap(who).contains(&want) && t2.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if cap(who).contains(&want) {
                    break;
                }
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
    assert!(log.contains("this process trains session t"), "{log}");
    assert!(!log.contains("panic"), "{log}");
    let s = labelrest::store::Session::open_read_only(d.path(), "t").unwrap();
    let by: Vec<Option<String>> = s.labels().unwrap().into_iter().map(|l| l.annotator).collect();
    assert_eq!(by.iter().filter(|a| a.as_deref() == Some("alice")).count(), 3);
    assert_eq!(by.iter().filter(|a| a.as_deref() == Some("bob")).count(), 20);
}
