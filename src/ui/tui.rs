//! The terminal: raw mode and the alternate screen, restored on every exit
//! (quit, SIGHUP, SIGTERM, errors and panics), and the event loop.

use anyhow::Result;
use crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use crossterm::{execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::app::{Action, App, SETTLE};
use super::render::{self, Theme};
use crate::worker::{self, Worker};
use std::time::{Duration, Instant};

/// Longer than this without an answer (a frame after a key or the
/// worker's news), the screen the person was typing at is gone: keys
/// pressed meanwhile are left out (`App::ignored_keys`).
pub const STALL: Duration = SETTLE;

/// What woke the event loop.
enum Input {
    Term(Option<std::io::Result<TermEvent>>),
    Worker(worker::Event),
    /// A hang-up, SIGTERM or SIGINT.
    Gone,
    /// Time to keep the queue row under the cursor (`REST` after it moved).
    Rest,
    /// Ctrl-Z, or SIGTSTP from outside: suspend as a shell's job control expects.
    Suspend,
}

/// How soon the queue row under the cursor is kept after it changed: a
/// crash or `kill -9` reopens on the row left (quitting keeps it at once),
/// without a write for every key of a quick run down the queue.
const REST: Duration = Duration::from_millis(1000);

/// Writes the cursor's row to the session on a thread of its own, off the
/// UI thread (a store write can wait seconds: a busy SQLite, a PostgreSQL
/// server that does not answer); the newest position waiting wins.
struct Keeper {
    tx: Option<std::sync::mpsc::Sender<(String, String)>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    fn start(reopen: impl Fn() -> Result<crate::store::Session> + Send + 'static) -> Keeper {
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        let handle = std::thread::Builder::new()
            .name("labelrest-position".into())
            .spawn(move || {
                let mut session = None;
                while let Ok(mut entry) = rx.recv() {
                    while let Ok(newer) = rx.try_recv() {
                        entry = newer;
                    }
                    if session.is_none() {
                        session = reopen().map_err(|e| tracing::warn!("cannot keep the cursor: {e:#}")).ok();
                    }
                    if let Some(s) = &session {
                        if let Err(e) = s.set_meta(&entry.0, &entry.1) {
                            tracing::warn!("cannot remember the cursor: {e:#}");
                        }
                    }
                }
            })
            .map_err(|e| tracing::warn!("cannot start the cursor's writer: {e}"))
            .ok();
        Keeper { tx: handle.as_ref().map(|_| tx), handle }
    }

    fn keep(&self, entry: (String, String)) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(entry);
        }
    }

    /// Ends the thread once what was sent is written.
    fn finish(mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Said when Ctrl-Z cannot suspend (no shell with job control to `fg` from).
const NO_SUSPEND: &str = "not suspended (q quits): no shell with job control here to bring it back with fg";

/// What the terminal had already sent when it was read (keys typed ahead).
#[derive(Default)]
struct Pending {
    /// Key presses left out.
    keys: usize,
    resized: bool,
    /// A quit among them: kept (it puts nothing on disk).
    quit: bool,
}

/// Reads what the terminal has already sent and drops it, but for a quit.
fn pending_keys(app: &App) -> std::io::Result<Pending> {
    let mut p = Pending::default();
    // A short wait, not none: crossterm's own waiting thread may hold the
    // reader a moment as it hands an event over.
    while event::poll(Duration::from_millis(5))? {
        match event::read()? {
            TermEvent::Key(k) if k.kind == KeyEventKind::Press => match keymap(k, app) {
                Action::Quit => p.quit = true,
                _ => p.keys += 1,
            },
            TermEvent::Paste(_) => p.keys += 1,
            TermEvent::Resize(..) => p.resized = true,
            _ => {}
        }
    }
    Ok(p)
}

/// Maps a key to an action: the key table of the open overlay, else the views'.
pub fn keymap(k: KeyEvent, app: &App) -> Action {
    app.keys.action(app.key_mode(), &k)
}

/// Whether the terminal is in the workstation's hands (raw mode, the
/// alternate screen): only then has `restore` anything to undo.
static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leaves raw mode and the alternate screen, when the workstation entered
/// them; otherwise writes nothing (a panic in `annotate` or in a command
/// whose output a script reads must not add escape codes to it).
pub fn restore() {
    if !ENTERED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), event::DisableBracketedPaste, terminal::LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Ctrl-Z (or a SIGTSTP from outside, `kill -TSTP`): the terminal is handed
/// back as on leaving and the process stops as job control expects (the
/// shell says "Stopped"; the worker's threads stop with it); on `fg`
/// (SIGCONT) the workstation takes the terminal again and draws the whole
/// screen anew. The stop is SIGTSTP at its default action, which the
/// kernel discards where no shell with job control could continue the
/// process (a process group without one: `tmux new 'labelrest ...'`,
/// `ssh -t host labelrest ...`, `sh -c`): there the workstation goes on at
/// once and returns false, and the person is told. (In raw mode the
/// terminal sends Ctrl-Z as a key, not as a signal; tokio's handler for
/// SIGTSTP is set aside for the stop and put back after it.)
fn suspend(term: &mut Terminal<CrosstermBackend<std::io::Stdout>>) -> Result<bool> {
    tracing::info!("suspending (Ctrl-Z or SIGTSTP)");
    restore();
    let t = Instant::now();
    // SAFETY: sigaction and raise on this process's own SIGTSTP; the
    // handler in place before (tokio's) is put back right after.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        let mut before: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGTSTP, &dfl, &mut before);
        libc::raise(libc::SIGTSTP);
        libc::sigaction(libc::SIGTSTP, &before, std::ptr::null_mut());
    }
    // (Stopped, it comes back here on SIGCONT; discarded, at once.)
    let stopped = t.elapsed() > Duration::from_millis(100);
    tracing::info!("{}", if stopped { "continued" } else { "not suspended: no job control to come back with" });
    ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
    terminal::enable_raw_mode()?;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen, event::EnableBracketedPaste, crossterm::cursor::Hide)?;
    term.clear()?;
    Ok(stopped || is_orphan_free())
}

/// `suspend`, and where it could not stop, the person told why; false
/// when the terminal could not be taken back (the loop then ends).
fn suspend_or_say(term: &mut Terminal<CrosstermBackend<std::io::Stdout>>, app: &mut App) -> bool {
    match suspend(term) {
        Ok(stopped) => {
            if !stopped {
                app.message = Some(NO_SUSPEND.into());
            }
            true
        }
        Err(e) => {
            tracing::warn!("taking the terminal back failed: {e}");
            false
        }
    }
}

/// Whether this process's group has a job-control parent (a shell that
/// put it in its own group: the group differs from the parent's, in the
/// same session): only then can Ctrl-Z stop it and `fg` bring it back.
fn is_orphan_free() -> bool {
    // SAFETY: plain reads of this process's ids.
    unsafe {
        let parent = libc::getppid();
        libc::getpgid(parent) != libc::getpgrp() && libc::getsid(parent) == libc::getsid(0)
    }
}

/// Restores the terminal when dropped (normal return, `?` or unwinding).
struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// The workstation's loop on a tokio runtime (one thread): terminal
/// events (crossterm's `EventStream`), the worker's events (forwarded onto
/// a tokio channel), and SIGHUP/SIGTERM/SIGINT in one `select!`. A frame is
/// drawn when something changed (a key, a worker event, a resize), never on
/// a timer. Training stays on the worker's OS threads.
pub fn run(app: App, mut worker: Worker, rx: std::sync::mpsc::Receiver<worker::Event>) -> Result<()> {
    let ran = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(event_loop(app, &worker, rx)));
    // Quitting (or an error) returns within a second, whatever the worker is doing.
    worker.shutdown_within(Duration::from_millis(800));
    ran
}

async fn event_loop(mut app: App, worker: &Worker, rx: std::sync::mpsc::Receiver<worker::Event>) -> Result<()> {
    use futures::StreamExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tstp = signal(SignalKind::from_raw(libc::SIGTSTP))?;
    // The worker sends on a std channel (its thread is not async); one
    // thread moves its events onto the loop's channel as they come.
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new().name("labelrest-events".into()).spawn(move || {
        while let Ok(ev) = rx.recv() {
            if ev_tx.send(ev).is_err() {
                break;
            }
        }
    })?;
    ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
    terminal::enable_raw_mode()?;
    let _guard = Guard;
    // Bracketed paste: a paste comes as one event, not as keys (`App::paste`).
    execute!(std::io::stdout(), terminal::EnterAlternateScreen, event::EnableBracketedPaste)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let theme = Theme::from_env();
    let mut keys = event::EventStream::new();
    let mut dirty = true;
    // When the loop last took up work the person waits on (a key, the
    // worker's events), and whether the first frame is still to come.
    let mut woke = Instant::now();
    let mut before_first_frame = true;
    let mut first_model = true;
    // The queue row last kept, and when to keep the one under the cursor
    // (written by `keeper`'s thread: a store write may wait seconds).
    let mut kept = app.position();
    let mut rest: Option<tokio::time::Instant> = None;
    let keeper = Keeper::start(app.session.reopener());
    loop {
        if before_first_frame {
            crate::pause_at("ui-first-frame");
        }
        if dirty {
            // The terminal is gone (SIGHUP, closed SSH): leave as on a hang-up
            // (the place is kept, the worker stopped within its limit).
            let size = match term.size() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("the terminal's size cannot be read: {e}");
                    break;
                }
            };
            app.set_geometry(render::geometry(ratatui::layout::Rect::new(0, 0, size.width, size.height)));
            if let Err(e) = term.draw(|f| render::draw(f, &app, theme)) {
                // The terminal is gone (SIGHUP, closed SSH): nothing to draw on.
                tracing::warn!("draw failed: {e}");
                break;
            }
            if before_first_frame {
                app.first_shown(Instant::now());
            } else {
                app.shown(Instant::now());
            }
            dirty = false;
        }
        // Keys pressed before the first frame, or while the screen did not
        // answer for longer than `STALL`, were pressed at a screen that is
        // not there any more: they are left out, and the person told.
        let busy = woke.elapsed();
        if before_first_frame || busy > STALL {
            let first = std::mem::replace(&mut before_first_frame, false);
            match pending_keys(&app) {
                Ok(p) => {
                    if p.keys > 0 {
                        tracing::info!(
                            "{} keys pressed {} left out",
                            p.keys,
                            if first { "before the first frame" } else { "during a stall" }
                        );
                        app.ignored_keys(p.keys, (!first).then_some(busy));
                    }
                    if p.quit {
                        app.handle(Action::Quit);
                    }
                    dirty |= p.keys > 0 || p.resized || p.quit;
                }
                Err(e) => {
                    tracing::warn!("reading the terminal failed: {e}");
                    break;
                }
            }
            woke = Instant::now();
            if dirty {
                continue;
            }
        }
        if app.quit {
            break;
        }
        let input = tokio::select! {
            ev = keys.next() => Input::Term(ev),
            Some(ev) = ev_rx.recv() => Input::Worker(ev),
            _ = hup.recv() => Input::Gone,
            _ = term_sig.recv() => Input::Gone,
            _ = int.recv() => Input::Gone,
            _ = tstp.recv() => Input::Suspend,
            _ = tokio::time::sleep_until(rest.unwrap_or_else(tokio::time::Instant::now)), if rest.is_some() => Input::Rest,
        };
        woke = Instant::now();
        match input {
            Input::Term(ev) => match ev {
                Some(Ok(TermEvent::Key(k)))
                    if k.kind == KeyEventKind::Press
                        && k.code == event::KeyCode::Char('z')
                        && k.modifiers.contains(event::KeyModifiers::CONTROL) =>
                {
                    if !suspend_or_say(&mut term, &mut app) {
                        break;
                    }
                    woke = Instant::now();
                    dirty = true;
                }
                Some(Ok(TermEvent::Key(k))) => {
                    if k.kind == KeyEventKind::Press {
                        let a = keymap(k, &app);
                        tracing::debug!("key {:?} -> {:?}", k.code, a);
                        app.handle(a);
                        dirty = true;
                    }
                }
                Some(Ok(TermEvent::Paste(text))) => {
                    tracing::debug!("paste of {} bytes", text.len());
                    app.paste(&text);
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                // The terminal went away: as a hang-up.
                Some(Err(e)) => {
                    tracing::warn!("reading the terminal failed: {e}");
                    break;
                }
                None => break,
            },
            Input::Worker(ev) => {
                let mut model = matches!(ev, worker::Event::Update(_));
                app.on_event(ev);
                // Take what else the worker sent meanwhile before drawing.
                while let Ok(ev) = ev_rx.try_recv() {
                    model |= matches!(ev, worker::Event::Update(_));
                    app.on_event(ev);
                }
                dirty = true;
                if model && std::mem::take(&mut first_model) {
                    crate::pause_at("ui-first-model");
                }
            }
            Input::Gone => break,
            Input::Suspend => {
                if !suspend_or_say(&mut term, &mut app) {
                    break;
                }
                woke = Instant::now();
                dirty = true;
            }
            Input::Rest => {
                rest = None;
                kept = app.position();
                if let Some(entry) = app.position_entry() {
                    keeper.keep(entry);
                }
            }
        }
        // The row under the cursor changed: kept `REST` later (at most once a `REST`).
        if rest.is_none() && app.position() != kept {
            rest = Some(tokio::time::Instant::now() + REST);
        }
        if app.outbox.iter().any(|j| matches!(j, worker::Job::Retrain { .. })) {
            crate::pause_at("ui-retrain");
        }
        for job in app.outbox.drain(..) {
            worker.request(job);
        }
    }
    tracing::info!("leaving session {}", app.name);
    // (Its last write first: the position on leaving is the one that stays.)
    keeper.finish();
    app.remember_position();
    // ratatui's Terminal prints to stderr from its Drop when it cannot show
    // the cursor, which panics when the terminal is gone (a killed SSH
    // session); `restore` (the guard) shows the cursor instead.
    std::mem::forget(term);
    Ok(())
}
