//! End to end: the real binary in tmux. Label a batch of ten on real demo
//! data, see the ranking refresh and an iteration appear in the panel, quit,
//! resume, find everything there; then a hang-up (SIGHUP) loses nothing.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn label_a_batch_quit_resume_hangup() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing on CI: .ci/run installs it");
        eprintln!("tmux not installed; skipping the end-to-end test");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let o = new_demo_session(d.path(), "e2e");
    assert!(o.status.success(), "{}", stderr(&o));
    let name = format!("lr-e2e-{}", std::process::id());
    let sock = d.path().join("tmux.sock");
    let sock = sock.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_labelrest");
    let cmd = format!(
        "LABELREST_LOG={}/log NO_COLOR=1 {bin} --sessions {} label e2e; echo EXITED $?; sleep 60",
        d.path().display(),
        d.path().display()
    );
    let run = |cmd: &str| {
        let st = Command::new("tmux").args(["-S", sock, "new-session", "-d", "-s", &name, "-x", "100", "-y", "30", cmd]).status().unwrap();
        assert!(st.success());
    };
    let t = |args: &[&str]| {
        let mut a = vec!["-S", sock];
        a.extend_from_slice(args);
        tmux(&a)
    };
    // Whatever happens, the tmux server (and the labelrest in it) goes away.
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux").args(["-S", &self.0, "kill-server"]).output();
        }
    }
    let _kill = Kill(sock.to_string());
    let cap = || t(&["capture-pane", "-p", "-t", &name]);
    let wait = |what: &[&str], secs: u64| -> String {
        let start = Instant::now();
        loop {
            let s = cap();
            if what.iter().all(|w| s.contains(w)) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("waited {secs}s for {what:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    run(&cmd);
    // The worker embeds the 2,500 rows, then shows the zero-shot ranking.
    let s = wait(&["it 1 ", "ready", "Queue (margin, 2,000 rows)"], 240);
    assert!(s.contains("0 labelled / 2,000"), "{s}");
    // The first ranking put the cursor on its top row: keys wait a moment
    // (`app::SETTLE`) before they may label it.
    std::thread::sleep(Duration::from_millis(1500));
    let s = cap();
    let first_row = s.lines().find(|l| l.contains('▶')).unwrap().to_string();
    for _ in 0..10 {
        t(&["send-keys", "-t", &name, "Enter"]);
    }
    let s = wait(&["it 2 ", "10 labelled / 2,000", "ready"], 60);
    assert!(s.contains("Queue (margin, 1,990 rows)"), "{s}");
    // The panel has the new iteration: 10 labels, all kept.
    assert!(s.lines().any(|l| l.contains("  2  10") && l.contains("100%")), "{s}");
    assert_ne!(s.lines().find(|l| l.contains('▶')).unwrap(), first_row, "ranking refreshed");
    // The new batch moved the cursor to another row: a person reads it before
    // deciding (keys that label it are refused for a moment, `app::SETTLE`).
    std::thread::sleep(labelrest::ui::app::SETTLE + Duration::from_millis(300));
    // Two more decisions, then quit.
    t(&["send-keys", "-t", &name, "2"]);
    t(&["send-keys", "-t", &name, "Enter"]);
    wait(&["12 labelled"], 10);
    t(&["send-keys", "-t", &name, "q"]);
    let s = wait(&["EXITED 0"], 20);
    assert!(!s.contains("Queue"), "terminal restored (alternate screen left): {s}");
    t(&["kill-session", "-t", &name]);

    // Resume: same labels, same iteration, no re-embedding.
    run(&cmd);
    let s = wait(&["it 2 ", "12 labelled / 2,000", "ready"], 60);
    assert!(s.contains("batch 2/10"), "the batch count resumes: {s}");
    // A hang-up (what a dropped SSH connection sends) ends it cleanly.
    t(&["send-keys", "-t", &name, "Enter"]);
    wait(&["13 labelled"], 10);
    t(&["kill-session", "-t", &name]);
    let start = Instant::now();
    let dir = d.path().join("e2e");
    while labelrest::store::Lock::holder(&dir).is_some() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(labelrest::store::Lock::holder(&dir).is_none(), "the process ended and released its lock");
    let s = labelrest::store::Session::open(d.path(), "e2e").unwrap();
    assert_eq!(s.labels().unwrap().len(), 13);
    s.check_integrity().unwrap();
    drop(s);
    // The killed terminal left no panic in the log.
    let log = std::fs::read_to_string(d.path().join("log")).unwrap_or_default();
    assert!(!log.contains("panic"), "{log}");

    // At 80x24 the essentials show: the footer keeps help and quit.
    let st = Command::new("tmux").args(["-S", sock, "new-session", "-d", "-s", &name, "-x", "80", "-y", "24", &cmd]).status().unwrap();
    assert!(st.success());
    let s = wait(&["13 labelled / 2,000", "ready"], 60);
    let footer = s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    assert!(footer.contains("? help") && footer.contains("q quit"), "{footer}\n{s}");
    t(&["send-keys", "-t", &name, "q"]);
    wait(&["EXITED 0"], 20);
    let _ = t(&["kill-server"]);
}
