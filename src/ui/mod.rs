//! The labeling workstation: ratatui and crossterm.
//!
//! `app` holds the state and applies actions, `render` draws it, `tui` owns
//! the terminal and the event loop.

pub mod action;
pub mod app;
pub mod keys;
pub mod layout;
pub mod render;
pub mod tui;

use anyhow::Result;
use std::path::Path;

use crate::store::Session;
use crate::worker::Worker;

/// Opens a session in the workstation.
pub fn run(sessions: &Path, name: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("`labelrest label` needs a terminal; for headless work see `labelrest annotate`, `retrain` and `export`");
    }
    let keys = keys::KeyMap::load(keys::KeyMap::path().as_deref())?;
    let session = Session::open(sessions, name)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = Worker::start(&session, tx)?;
    let mut app = app::App::load(session)?;
    app.keys = keys;
    tui::run(app, worker, rx)
}

/// Logs to a file, never to the terminal: `LABELREST_LOG`, else
/// `labelrest.log` in the platform cache folder. Level from `RUST_LOG`
/// (default info).
pub fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let path = match std::env::var_os("LABELREST_LOG") {
        Some(p) => std::path::PathBuf::from(p),
        None => directories::ProjectDirs::from("org", "labelrest", "labelrest")?.cache_dir().join("labelrest.log"),
    };
    let dir = path.parent()?.to_path_buf();
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()?;
    let (nb, guard) = tracing_appender::non_blocking(file);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(nb).with_ansi(false).with_env_filter(filter).try_init().ok()?;
    Some(guard)
}
