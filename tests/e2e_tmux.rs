//! End to end: the real binary in tmux. Label a batch of ten on real demo
//! data, see the ranking refresh and an iteration appear in the panel, quit,
//! resume, find everything there; then a hang-up (SIGHUP) loses nothing.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn label_a_batch_quit_resume_hangup() {
    let d = tempfile::tempdir().unwrap();
    let o = new_demo_session(d.path(), "e2e");
    assert!(o.status.success(), "{}", stderr(&o));
    let Some(tm) = Tmux::new(d.path()) else { return };
    let name = format!("lr-e2e-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_labelrest");
    let cmd = format!(
        "LABELREST_LOG={}/log NO_COLOR=1 {bin} --sessions {} label e2e; echo EXITED $?; sleep 60",
        d.path().display(),
        d.path().display()
    );
    let run = |cmd: &str| tm.start(&name, 100, 30, cmd);
    let t = |args: &[&str]| tm.cmd(args);
    let cap = || tm.screen(&name);
    let wait = |what: &[&str], secs: u64| tm.wait(&name, what, secs);

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
    // A paste is one event, not keys (the workstation asks the terminal
    // for bracketed paste, and tmux brackets it): none of its `a`s, digits
    // or line breaks labels a row.
    t(&["set-buffer", "-b", "lr", "a\na2\naaaa\n"]);
    t(&["paste-buffer", "-p", "-b", "lr", "-t", &name]);
    let s = wait(&["pasted text not applied"], 10);
    assert!(s.contains("12 labelled"), "{s}");
    t(&["send-keys", "-t", &name, "q"]);
    let s = wait(&["EXITED 0"], 20);
    assert!(!s.contains("Queue"), "terminal restored (alternate screen left): {s}");
    t(&["kill-session", "-t", &name]);

    // Resume: same labels, same iteration, no re-embedding.
    run(&cmd);
    let s = wait(&["it 2 ", "12 labelled / 2,000", "ready"], 60);
    assert!(s.contains("batch 2/10"), "the batch count resumes: {s}");
    // (The row shown on opening was not read yet: keys wait their moment.)
    std::thread::sleep(labelrest::ui::app::SETTLE + Duration::from_millis(300));
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
    tm.start(&name, 80, 24, &cmd);
    let s = wait(&["13 labelled / 2,000", "ready"], 60);
    let footer = s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    assert!(footer.contains("? help") && footer.contains("q quit"), "{footer}\n{s}");

    // Ctrl-Z where no shell with job control could bring it back (`sh -c`,
    // as here): it does not stop (nothing could continue it), and says so.
    let (pid, _) = labelrest::store::Lock::holder(&dir).expect("the workstation holds the session");
    let state = move || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()))
    };
    t(&["send-keys", "-t", &name, "C-z"]);
    let s = wait(&["not suspended (q quits)", "13 labelled / 2,000"], 10);
    assert!(s.contains("Queue"), "{s}");
    assert_ne!(state(), Some('T'), "not stopped");

    // A crash (kill -9) after the cursor moved down the batch: reopened,
    // the cursor is on the row it was left on (kept a moment after it moved).
    t(&["send-keys", "-t", &name, "j"]);
    t(&["send-keys", "-t", &name, "j"]);
    std::thread::sleep(Duration::from_millis(300));
    let cursor_row = |s: &str| s.lines().find(|l| l.contains('▶')).map(|l| l.split('▶').nth(1).unwrap_or("").trim().to_string());
    let left_on = cursor_row(&cap()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (pid, _) = labelrest::store::Lock::holder(&dir).expect("the workstation holds the session");
    // SAFETY: kill on the pid of the workstation this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // (Killed, it left the terminal as it was: no screen to wait for.)
    let start = Instant::now();
    while labelrest::store::Lock::holder(&dir).is_some() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    t(&["kill-session", "-t", &name]);
    tm.start(&name, 80, 24, &cmd);
    let s = wait(&["13 labelled / 2,000", "ready"], 60);
    assert_eq!(cursor_row(&s).as_deref(), Some(left_on.as_str()), "{s}");
    t(&["send-keys", "-t", &name, "q"]);
    wait(&["EXITED 0"], 20);
    t(&["kill-session", "-t", &name]);

    // From an interactive shell (job control): Ctrl-Z hands the terminal
    // back and stops the process; `fg` takes it again and draws it all.
    tm.start(&name, 80, 24, "bash --norc --noprofile -i");
    std::thread::sleep(Duration::from_millis(500));
    let line = format!("LABELREST_LOG={}/log NO_COLOR=1 {bin} --sessions {} label e2e", d.path().display(), d.path().display());
    t(&["send-keys", "-t", &name, &line, "Enter"]);
    wait(&["13 labelled / 2,000", "ready"], 60);
    let (pid, _) = labelrest::store::Lock::holder(&dir).expect("the workstation holds the session");
    let state = move || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()))
    };
    t(&["send-keys", "-t", &name, "C-z"]);
    let s = wait(&["Stopped"], 10);
    assert!(!s.contains("Queue"), "the alternate screen was left: {s}");
    assert_eq!(state(), Some('T'), "stopped");
    t(&["send-keys", "-t", &name, "fg", "Enter"]);
    let s = wait(&["13 labelled / 2,000", "Queue", "ready"], 20);
    assert!(s.contains("? help"), "the whole screen drawn again: {s}");
    t(&["send-keys", "-t", &name, "q"]);
    let start = Instant::now();
    while labelrest::store::Lock::holder(&dir).is_some() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    t(&["kill-session", "-t", &name]);
}

/// Keys pressed at a screen that did not answer (before its first frame,
/// or during a stall as a batch ends) never act: they are left out and the
/// person is told; keys pressed after it act as usual.
#[test]
fn keys_pressed_while_the_screen_stalls_do_not_act() {
    let d = tempfile::tempdir().unwrap();
    let Some(tm) = Tmux::new(d.path()) else { return };
    small_demo_session(d.path(), "stall", 150);
    let bin = env!("CARGO_BIN_EXE_labelrest");
    let cmd = |pause: &str| {
        format!(
            "LABELREST_LOG={dir}/log NO_COLOR=1 LABELREST_PAUSE_AT={pause} {bin} --sessions {dir} label stall; echo EXITED $?; sleep 60",
            dir = d.path().display()
        )
    };
    let labels = || labelrest::store::Session::open_shared(d.path(), "stall").unwrap().labels().unwrap().len();
    let log = d.path().join("log");
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // Starts `name` pausing at `step`; returns once the pause has begun.
    let start_paused = |name: &str, step: &str, then: &dyn Fn()| {
        let pauses = logged().matches(&format!("pausing at {step}")).count();
        tm.start(name, 100, 30, &cmd(step));
        then();
        let start = Instant::now();
        while logged().matches(&format!("pausing at {step}")).count() == pauses {
            assert!(start.elapsed() < Duration::from_secs(120), "no pause at {step} in the log:\n{}", logged());
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Before the first frame (the screen held back 5 s): three keys typed ahead.
    start_paused("a", "ui-first-frame", &|| {});
    for k in ["Enter", "a", "j"] {
        tm.keys("a", k);
    }
    let s = tm.wait("a", &["3 keys pressed before the screen showed: not applied"], 30);
    assert!(s.contains("0 labelled"), "{s}");
    tm.wait("a", &["ready"], 120);
    tm.keys("a", "q");
    tm.wait("a", &["EXITED 0"], 20);
    tm.cmd(&["kill-session", "-t", "a"]);
    assert_eq!(labels(), 0);

    // The key that ends a batch stalls the screen 5 s: keys pressed meanwhile do nothing.
    start_paused("b", "ui-retrain", &|| {
        tm.wait("b", &["ready", "it 1 "], 120);
        std::thread::sleep(labelrest::ui::app::SETTLE + Duration::from_millis(300));
        for _ in 0..10 {
            tm.keys("b", "Enter");
        }
    });
    for k in ["Enter", "Enter", "2"] {
        tm.keys("b", k);
    }
    let s = tm.wait("b", &["3 keys pressed meanwhile not applied"], 30);
    assert!(s.contains("10 labelled"), "{s}");
    assert_eq!(labels(), 10);
    // Once the new batch has been on screen a moment, a key labels again.
    tm.wait("b", &["it 2 ", "ready"], 60);
    std::thread::sleep(labelrest::ui::app::SETTLE + Duration::from_millis(300));
    tm.keys("b", "Enter");
    tm.wait("b", &["11 labelled"], 20);
    tm.keys("b", "q");
    tm.wait("b", &["EXITED 0"], 20);
    assert_eq!(labels(), 11);
    tm.cmd(&["kill-session", "-t", "b"]);

    // The worker's first model woke the loop, which stalls 5 s on it: keys
    // pressed meanwhile are left out, but a quit among them still quits.
    start_paused("c", "ui-first-model", &|| {});
    for k in ["Enter", "2", "q"] {
        tm.keys("c", k);
    }
    tm.wait("c", &["EXITED 0"], 30);
    assert!(logged().contains("2 keys pressed during a stall left out"), "{}", logged());
    assert_eq!(labels(), 11);
    tm.cmd(&["kill-session", "-t", "c"]);

    // Opening on a stored model: the row the first frame shows was not read
    // yet, so a key the moment it appears labels nothing (left out before
    // the frame, or refused after it).
    tm.start(
        "d",
        100,
        30,
        &format!(
            "LABELREST_LOG={dir}/log NO_COLOR=1 {bin} --sessions {dir} label stall; echo EXITED $?; sleep 60",
            dir = d.path().display()
        ),
    );
    tm.wait("d", &["labelrest · stall"], 30);
    tm.keys("d", "Enter");
    let s = tm.wait("d", &["press again"], 10);
    assert!(s.contains("11 labelled"), "{s}");
    tm.keys("d", "q");
    tm.wait("d", &["EXITED 0"], 20);
    assert_eq!(labels(), 11);
}

/// A bug in training (a panic, injected once with `LABELREST_PANIC_AT`)
/// is told on the status line and training goes on: the workstation keeps
/// the terminal, the worker starts again, a fine-tune that panicked ends as
/// a failure and the next one runs.
#[test]
fn a_panic_in_training_is_told_and_training_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let Some(tm) = Tmux::new(d.path()) else { return };
    // (77 intents: a fine-tune from 20 labels, one epoch, so that one runs here.)
    small_demo_session_with(d.path(), "p", 150, &["--ft-from", "20", "--ft-epochs", "1"]);
    let bin = env!("CARGO_BIN_EXE_labelrest");
    let cmd = |at: &str| {
        format!(
            "LABELREST_LOG={dir}/log NO_COLOR=1 LABELREST_PANIC_AT={at} {bin} --sessions {dir} label p; echo EXITED $?; sleep 60",
            dir = d.path().display()
        )
    };
    // The first retrain panics: said, then the worker starts again (after 5 s) and ranks.
    tm.start("a", 100, 30, &cmd("iterate"));
    let s = tm.wait("a", &["internal error: LABELREST_PANIC_AT=iterate"], 120);
    assert!(s.contains("labelrest · p"), "the workstation is still on screen: {s}");
    tm.wait("a", &["it 1 ", "the model's first ranking"], 60);
    std::thread::sleep(labelrest::ui::app::SETTLE + Duration::from_millis(300));
    tm.keys("a", "Enter");
    tm.wait("a", &["1 labelled"], 20);
    tm.keys("a", "q");
    tm.wait("a", &["EXITED 0"], 20);
    tm.cmd(&["kill-session", "-t", "a"]);

    // Enough labels for the fine-tune that opening starts: it panics, ends
    // as a failure, and `F` starts the next one, which runs.
    {
        let s = labelrest::store::Session::open(d.path(), "p").unwrap();
        let pool: Vec<_> = s.rows().unwrap().into_iter().filter(|r| s.labels().unwrap().iter().all(|l| l.row_id != r.id)).collect();
        for r in pool.iter().take(29) {
            s.add_label(r.id, r.gold.unwrap(), 1, None).unwrap();
        }
    }
    tm.start("b", 100, 30, &cmd("finetune"));
    let log = || std::fs::read_to_string(d.path().join("log")).unwrap_or_default();
    let until = |what: &str, n: usize| {
        let start = Instant::now();
        while log().matches(what).count() < n {
            assert!(start.elapsed() < Duration::from_secs(180), "waited for {what:?} in the log:\n{}\n{}", tm.screen("b"), log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until("fine-tune failed: internal error: LABELREST_PANIC_AT=finetune", 1);
    assert!(tm.screen("b").contains("labelrest · p"), "the workstation is still on screen");
    // `F` as a person presses it: again when the screen says the row under
    // the cursor just changed (a new model after the failure) and asks to.
    // (Only an `F` the header does not show taken is pressed again: a second
    // one that was taken would cancel the fine-tune.)
    for _ in 0..20 {
        tm.keys("b", "F");
        std::thread::sleep(Duration::from_millis(800));
        if tm.screen("b").lines().next().is_some_and(|h| h.contains("fine-tun")) {
            break;
        }
        std::thread::sleep(labelrest::ui::app::SETTLE);
    }
    until("fine-tune (", 1);
    tm.keys("b", "q");
    tm.wait("b", &["EXITED 0"], 20);
    let log = log();
    assert_eq!(log.matches("ERROR labelrest: panic: ").count(), 2, "each panic logged once, with its backtrace: {log}");
    let s = labelrest::store::Session::open_shared(d.path(), "p").unwrap();
    assert_eq!(s.labels().unwrap().len(), 30, "no label lost");
}
