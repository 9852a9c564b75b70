//! The terminal: raw mode and the alternate screen, restored on every exit
//! (quit, SIGHUP, SIGTERM, errors and panics), and the event loop.

use anyhow::Result;
use crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use crossterm::{execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

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

/// The workstation's loop on a tokio runtime (one thread): terminal
/// events (crossterm's `EventStream`), the worker's events (forwarded onto
/// a tokio channel), and SIGHUP/SIGTERM/SIGINT in one `select!`. A frame is
/// drawn when something changed (a key, a worker event, a resize), never on
/// a timer. Training stays on the worker's OS threads.
pub fn run(app: App, worker: Worker, rx: std::sync::mpsc::Receiver<worker::Event>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(event_loop(app, worker, rx))
}

async fn event_loop(mut app: App, mut worker: Worker, rx: std::sync::mpsc::Receiver<worker::Event>) -> Result<()> {
    use futures::StreamExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
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
    terminal::enable_raw_mode()?;
    let _guard = Guard;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let theme = Theme::from_env();
    let mut keys = event::EventStream::new();
    let mut dirty = true;
    loop {
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
            dirty = false;
        }
        if app.quit {
            break;
        }
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if k.kind == KeyEventKind::Press {
                        let a = keymap(k, &app);
                        tracing::debug!("key {:?} -> {:?}", k.code, a);
                        app.handle(a);
                        dirty = true;
                    }
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
            Some(ev) = ev_rx.recv() => {
                app.on_event(ev);
                // Take what else the worker sent meanwhile before drawing.
                while let Ok(ev) = ev_rx.try_recv() {
                    app.on_event(ev);
                }
                dirty = true;
            }
            _ = hup.recv() => break,
            _ = term_sig.recv() => break,
            _ = int.recv() => break,
        }
        for job in app.outbox.drain(..) {
            worker.request(job);
        }
    }
    tracing::info!("leaving session {}", app.name);
    app.remember_position();
    // ratatui's Terminal prints to stderr from its Drop when it cannot show
    // the cursor, which panics when the terminal is gone (a killed SSH
    // session); `restore` (the guard) shows the cursor instead.
    std::mem::forget(term);
    // Quitting returns within a second, whatever the worker is doing.
    worker.shutdown_within(std::time::Duration::from_millis(800));
    Ok(())
}
