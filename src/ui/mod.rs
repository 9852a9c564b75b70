//! The labeling workstation: ratatui and crossterm.
//!
//! `app` holds the state and applies actions, `render` draws it, `tui` owns
//! the terminal and the event loop.

pub mod action;
pub mod app;
pub mod keys;
pub mod layout;
pub mod picker;
pub mod render;
pub mod style;
pub mod tui;

use anyhow::Result;

use crate::store::Session;
use crate::worker::Worker;

/// Opens a session in the workstation.
/// Who opens a session and in what role (`label`, `demo`, `annotate`).
pub struct Role<'a> {
    /// `--annotator` (default the login name).
    pub annotator: Option<&'a str>,
    /// `--adjudicator`: settles the annotators' disagreements.
    pub adjudicator: bool,
    /// `--overlap F`: the share of rows sent to two annotators from now on.
    pub overlap: Option<f64>,
}

impl Role<'_> {
    /// Opens the session as this annotator (and sets the overlap, when given).
    pub fn open(&self, sessions: &crate::store::Store, name: &str) -> Result<Session> {
        if let Some(a) = self.annotator {
            crate::store::validate_annotator(a).map_err(|e| crate::term::usage(format!("--annotator: {e:#}")))?;
        }
        let session = match self.annotator {
            Some(a) => Session::open_as(sessions, name, a)?,
            None => Session::open(sessions, name)?,
        };
        if let Some(f) = self.overlap {
            let n = session.set_overlap(f)?;
            tracing::info!("overlap of {name} set to {f}: {n} rows sent to two annotators");
        }
        Ok(session)
    }
}

pub fn run(sessions: &crate::store::Store, name: &str, role: &Role) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        // A name that names nothing is the first thing to say.
        let store = crate::store::Sessions::store(sessions);
        if store.pg.is_none() && !crate::store::exists(sessions, name)? {
            anyhow::bail!("no session '{name}' in {} (see `labelrest sessions`)", store.local.display());
        }
        anyhow::bail!("`labelrest label` needs a terminal; for headless work see `labelrest annotate`, `retrain` and `export`");
    }
    let keys = keys::KeyMap::load(keys::KeyMap::path().as_deref())?;
    let session = role.open(sessions, name)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut worker = Worker::start(&session, tx)?;
    let mut app = match app::App::load(session) {
        Ok(app) => app,
        Err(e) => {
            // The error is said at once, whatever the worker is doing.
            worker.shutdown_within(std::time::Duration::from_millis(800));
            return Err(e);
        }
    };
    app.keys = keys;
    app.adjudicator = role.adjudicator;
    app.refresh_panel_team();
    tui::run(app, worker, rx)
}

/// Logs to a file: `LABELREST_LOG`, else `labelrest.log` in the platform
/// cache folder. Level from `RUST_LOG` (default info; with `--verbose`,
/// labelrest's own lines from debug on). With `to_stderr` (`--verbose`
/// outside the workstation) the same lines also go to standard error,
/// coloured as `term::color` says; the workstation never logs to the screen.
pub fn init_logging(to_stderr: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let verbose = crate::term::verbosity() == crate::term::Verbosity::Verbose;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if verbose { "info,labelrest=debug" } else { "info" }))
    };
    let stderr_layer = to_stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(crate::term::color(crate::term::Stream::Stderr))
            .with_target(false)
            .with_filter(filter())
    });
    let path = match std::env::var_os("LABELREST_LOG") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => directories::ProjectDirs::from("org", "labelrest", "labelrest").map(|d| d.cache_dir().join("labelrest.log")),
    };
    let file = path.and_then(|path| {
        let dir = path.parent()?.to_path_buf();
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()
    });
    let (file_layer, guard) = match file {
        Some(f) => {
            let (nb, guard) = tracing_appender::non_blocking(f);
            (Some(tracing_subscriber::fmt::layer().with_writer(nb).with_ansi(false).with_filter(filter())), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(file_layer).with(stderr_layer).try_init().ok()?;
    guard
}
