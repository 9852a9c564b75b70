//! The terminal: raw mode and the alternate screen, restored on every exit
//! (quit, SIGHUP, SIGTERM, errors and panics), and the event loop.

use anyhow::Result;
use crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use crossterm::{execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::app::{Action, App};
use super::render::{self, Theme};
use crate::worker::{self, Worker};

/// Maps a key to an action: the key table of the open overlay, else the views'.
pub fn keymap(k: KeyEvent, app: &App) -> Action {
    app.keys.action(app.key_mode(), &k)
}

/// Leaves raw mode and the alternate screen (harmless when not in them).
pub fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Restores the terminal when dropped (normal return, `?` or unwinding).
struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

pub fn run(mut app: App, mut worker: Worker, rx: std::sync::mpsc::Receiver<worker::Event>) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    terminal::enable_raw_mode()?;
    let _guard = Guard;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let theme = Theme::from_env();
    // Keys are read on their own thread: when the terminal goes away
    // (SIGHUP), crossterm's reader can spin without returning, and the main
    // loop must still see the signal, save nothing more and exit.
    let (key_tx, key_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("labelrest-input".into()).spawn(move || loop {
        match event::read() {
            Ok(ev) => {
                if key_tx.send(ev).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    })?;
    loop {
        let size = term.size()?;
        app.set_geometry(render::geometry(ratatui::layout::Rect::new(0, 0, size.width, size.height)));
        if let Err(e) = term.draw(|f| render::draw(f, &app, theme)) {
            // The terminal is gone (SIGHUP, closed SSH): nothing to draw on.
            tracing::warn!("draw failed: {e}");
            break;
        }
        if app.quit || stop.load(Ordering::SeqCst) {
            break;
        }
        let mut next = key_rx.recv_timeout(Duration::from_millis(40)).ok();
        while let Some(ev) = next.take() {
            if let TermEvent::Key(k) = ev {
                if k.kind == KeyEventKind::Press {
                    let a = keymap(k, &app);
                    tracing::debug!("key {:?} -> {:?}", k.code, a);
                    app.handle(a);
                }
            }
            if app.quit || stop.load(Ordering::SeqCst) {
                break;
            }
            // Take keys that arrived together before drawing again.
            next = key_rx.try_recv().ok();
        }
        for ev in worker::drain(&rx) {
            app.on_event(ev);
        }
        for job in app.outbox.drain(..) {
            worker.request(job);
        }
    }
    tracing::info!("leaving session {}", app.name);
    // ratatui's Terminal prints to stderr from its Drop when it cannot show
    // the cursor, which panics when the terminal is gone (a killed SSH
    // session); `restore` (the guard) shows the cursor instead.
    std::mem::forget(term);
    // Quitting returns within a second, whatever the worker is doing.
    worker.shutdown_within(std::time::Duration::from_millis(800));
    Ok(())
}
