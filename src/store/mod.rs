//! The session store: one SQLite database (WAL, synchronous=FULL) per session
//! in its own folder, or one schema per session in a PostgreSQL database
//! (`--store`, `pg`), with the rows, every label with who gave it and when,
//! the iterations and their metrics, the latest predictions and the settings.
//!
//! Layout of a session folder `SESSIONS/NAME/`:
//! - `session.db` (+ `-wal`, `-shm`): the database;
//! - `lock`: the process id of the process that has the session open for work;
//! - `emb-<model hash>.f32` and `.done`: the embedding cache (see `model::cache`).
//!
//! A session in PostgreSQL keeps only this machine's caches and copies of
//! the shared model files in `SESSIONS/NAME/` (see `pg`).
//!
//! By concern: `db` (the two back ends behind one interface), `pg`, `create` (import into a new session, `--force`'s swap, the
//! clean-up of crashed runs), `lock`, `schema` (and migration), `queries`
//! (everything read and written once a session is open); here, the types,
//! the folder of sessions, and opening one.

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::{self, Columns, DataError, Format, LabelDef};
pub use crate::settings::{FinetuneOverrides, Settings};

mod create;
pub(crate) mod db;
mod lock;
mod overlap;
mod pg;
mod queries;
mod schema;
mod team;

pub use create::{clean_stale, ImportReport, ImportSpec, LabelColIs};
use db::{p, Db};
pub use lock::{pid_alive, Lock};
pub use overlap::{in_overlap_share, resolve, Adjudication, ClosedBy, Dispute, Resolved};
pub use pg::display_url;
pub use queries::Refused;
use schema::{configure, SCHEMA};
pub use team::{host_name, Marks, RESERVATION_TTL};

pub const SCHEMA_VERSION: i64 = 5;
const DB_FILE: &str = "session.db";
/// Meta keys of the fine-tuned encoder in use (a folder of the session) and
/// of the number of labels it learnt from.
const TUNED_ENCODER: &str = "encoder";
const TUNED_ENCODER_LABELS: &str = "encoder_labels";
/// Meta key of the rows whose labels it learnt from (JSON array of row ids).
const TUNED_ENCODER_ROWS: &str = "encoder_rows";
/// Meta key of the labels the person kept after review.
const KEPT_REVIEWS: &str = "review_kept";

/// Where sessions are kept: a folder of SQLite sessions, or a PostgreSQL
/// database (`pg`), with the folder then holding what stays on this machine
/// (the embedding cache, copies of the shared model files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub local: PathBuf,
    pub pg: Option<String>,
}

impl Store {
    /// Where the sessions are, for messages.
    pub fn describe(&self) -> String {
        match &self.pg {
            Some(url) => format!("the store {}", display_url(url)),
            None => self.local.display().to_string(),
        }
    }
}

/// What names a place of sessions: a folder (SQLite), or a `Store`.
pub trait Sessions {
    fn store(&self) -> Store;
}
impl Sessions for Path {
    fn store(&self) -> Store {
        Store { local: self.to_path_buf(), pg: None }
    }
}
impl Sessions for PathBuf {
    fn store(&self) -> Store {
        self.as_path().store()
    }
}
impl Sessions for Store {
    fn store(&self) -> Store {
        self.clone()
    }
}

/// Who gave a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Seed,
    Person,
    /// The adjudicator's label on a row where two annotators disagreed.
    Adjudicated,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::Person => "person",
            Source::Adjudicated => "adjudicated",
        }
    }
    fn parse(s: &str) -> Result<Source> {
        match s {
            "seed" => Ok(Source::Seed),
            "person" => Ok(Source::Person),
            "adjudicated" => Ok(Source::Adjudicated),
            other => bail!("unknown label source '{other}' in the session"),
        }
    }
}

/// Where a row's label comes from, as shown and exported: the person's
/// or a seed label, else the model's prediction, else none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSource {
    Person,
    Seed,
    /// The adjudicator settled the annotators' disagreement.
    Adjudicated,
    Model,
    /// Annotators disagree and nobody adjudicated yet: no label.
    Disputed,
    None,
}

impl RowSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            RowSource::Person => "person",
            RowSource::Seed => "seed",
            RowSource::Adjudicated => "adjudicated",
            RowSource::Model => "model",
            RowSource::Disputed => "disputed",
            RowSource::None => "none",
        }
    }
}

impl From<Source> for RowSource {
    fn from(s: Source) -> RowSource {
        match s {
            Source::Person => RowSource::Person,
            Source::Seed => RowSource::Seed,
            Source::Adjudicated => RowSource::Adjudicated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Pool,
    Test,
}

/// One row of text as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub split: Split,
    pub text: String,
    /// Gold label (index into the label set), never shown to the model.
    pub gold: Option<u32>,
}

/// The current label of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub row_id: i64,
    pub label: u32,
    pub source: Source,
    pub iteration: i64,
    /// The model's prediction when the person decided, if there was one.
    pub predicted: Option<u32>,
    /// Who gave it (None for seed labels and sessions from before it was
    /// recorded; two annotators who agreed on an overlap row: `a+b`).
    pub annotator: Option<String>,
    /// When it was given, as an order (the annotation's id).
    pub seq: i64,
}

/// A stored prediction of the model for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub row_id: i64,
    pub label: u32,
    pub prob: f32,
    pub entropy: f32,
    pub margin: f32,
    pub rank: Option<i64>,
}

/// A summary of a session for `labelrest sessions`.
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    pub rows: i64,
    pub test_rows: i64,
    pub labelled: i64,
    pub iterations: i64,
    /// When it was last opened to work on; None if never since `new`.
    pub last_opened: Option<String>,
    pub path: PathBuf,
}

/// Checks a session name: no path separators, no leading dot, not empty.
/// A bad name is a usage error (exit 2): it came from the command line.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |m: String| Err(crate::term::usage(m));
    if name.is_empty() {
        return bad("the session name is empty".into());
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return bad(format!("session name '{}' contains a path separator; use a plain name like 'banking'", data::display_safe(name)));
    }
    // (Invisible format characters too: a bidirectional override would
    // reorder every line that names the session.)
    if name.chars().any(|c| c.is_control() || ('\u{80}'..'\u{a0}').contains(&c) || data::is_invisible(c)) {
        return bad(format!(
            "session name '{}' holds control or invisible characters; use a plain name like 'banking'",
            data::display_safe(name)
        ));
    }
    if name.starts_with('.') {
        return bad(format!("session name '{name}' starts with a dot; use a plain name like 'banking'"));
    }
    if name.len() > 100 {
        return bad(format!("session name '{name}' is longer than 100 bytes"));
    }
    Ok(())
}

/// A name for a new session: as `validate_name`, and neither blank nor
/// with spaces at its ends (`sessions` would list 'x ' as 'x', which
/// then names no session). Sessions made before this rule open as before.
pub fn validate_new_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if name.trim().is_empty() {
        return Err(crate::term::usage("the session name is blank; use a plain name like 'banking'"));
    }
    if name.trim() != name {
        return Err(crate::term::usage(format!(
            "session name '{}' starts or ends with a space; use a plain name like 'banking'",
            data::display_safe(name)
        )));
    }
    Ok(())
}

pub fn session_dir(sessions: &Path, name: &str) -> PathBuf {
    sessions.join(name)
}

/// Whether the session is there; a store that cannot be asked is an error
/// (not a "no").
pub fn exists(sessions: &(impl Sessions + ?Sized), name: &str) -> Result<bool> {
    let store = sessions.store();
    match &store.pg {
        Some(url) => pg::connect(url).and_then(|c| pg::schema_exists(&c, &pg::schema_of(name))),
        None => Ok(session_dir(&store.local, name).join(DB_FILE).exists()),
    }
}

/// Lists the sessions in a sessions folder, sorted by name.
/// A session found in a sessions folder: its summary, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub path: PathBuf,
    pub summary: std::result::Result<Summary, String>,
    /// The process working on it, if any (pid, command): the first of `at_work`.
    pub open_by: Option<(i32, String)>,
    /// Every process working on it: (pid, command, annotator).
    pub at_work: Vec<(i32, String, String)>,
}

/// Lists the sessions in a sessions folder, sorted by name; a session that
/// cannot be read is listed with the reason.
pub fn list(sessions: &(impl Sessions + ?Sized)) -> Result<Vec<Listed>> {
    let store = sessions.store();
    let mut out = Vec::new();
    if let Some(url) = &store.pg {
        for (name, at_work) in pg::list(url)? {
            let summary = Session::open_read_only(&store, &name).and_then(|s| s.summary()).map_err(|e| {
                tracing::warn!("cannot read session {name}: {e:#}");
                data::display_safe(&format!("{e:#}"))
            });
            let open_by = at_work.first().map(|(pid, cmd, _)| (*pid, cmd.clone()));
            let path = PathBuf::from(format!("{}#{}", display_url(url), data::display_safe(&name)));
            out.push(Listed { name: data::display_safe(&name), path, summary, open_by, at_work });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(out);
    }
    let sessions = store.local.as_path();
    let rd = match std::fs::read_dir(sessions) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read sessions folder {}", sessions.display())),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().join(DB_FILE).exists() {
            continue;
        }
        let summary = Session::open_read_only(sessions, &name).and_then(|s| s.summary()).map_err(|e| {
            tracing::warn!("cannot read session {name}: {e:#}");
            data::display_safe(&format!("{e:#}"))
        });
        let path = entry.path();
        let at_work = Lock::holders(&path);
        let open_by = at_work.first().map(|(pid, cmd, _)| (*pid, cmd.clone()));
        out.push(Listed { name: data::display_safe(&name), path, summary, open_by, at_work });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A new folder, in the session folder `dir`, for an encoder fine-tuned by
/// `method` (named by the method and the time, to the millisecond).
pub fn new_encoder_dir(dir: &Path, method: &str) -> PathBuf {
    dir.join(format!("encoder-{method}-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f")))
}

/// See `Session::snapshot`.
pub struct Snapshot<'a>(#[allow(dead_code)] db::Tx<'a>);

/// Deletes a session folder. Refused while another process has it open.
pub fn remove(sessions: &(impl Sessions + ?Sized), name: &str) -> Result<()> {
    validate_name(name)?;
    let store = sessions.store();
    let dir = session_dir(&store.local, name);
    if let Some(url) = &store.pg {
        pg::remove(url, name)?;
        // This machine's copies and caches go too (other machines keep theirs
        // until they open a session of that name again).
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        return Ok(());
    }
    let sessions = store.local.as_path();
    if !dir.join(DB_FILE).exists() {
        bail!("no session '{name}' in {}", sessions.display());
    }
    // Held until the folder is gone: nobody opens it meanwhile.
    let _lock = Lock::acquire(&dir, name)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One stored iteration: its id, how many labels it learnt from, and its
/// metrics (or why they could not be read).
#[derive(Debug, Clone)]
pub struct Iteration<M> {
    pub id: i64,
    pub n_labels: i64,
    pub metrics: std::result::Result<M, String>,
}

/// An open session.
pub struct Session {
    pub name: String,
    /// The session's folder on this machine: the whole session (SQLite), or
    /// what stays on this machine (PostgreSQL: caches, copies of shared files).
    pub dir: PathBuf,
    db: Db,
    /// The store's address when the session is kept in PostgreSQL.
    pg: Option<String>,
    /// The session's shared lock and the annotator's (none for a read-only
    /// or second connection).
    _locks: Vec<Lock>,
    /// This handle holds its annotator's lock (it reserves and releases batches).
    works_as_annotator: bool,
    /// Who the labels given through this handle are recorded as.
    annotator: String,
    /// (PostgreSQL) the version of each shared file this process has here.
    files_seen: std::cell::RefCell<HashMap<String, i64>>,
    /// When this process last renewed its reservations.
    renewed: std::cell::Cell<Option<std::time::Instant>>,
}

/// The annotator when none is named: the login name (`USER`, `LOGNAME`),
/// else `unknown`.
pub fn default_annotator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .chain(login_name())
        .find(|v| validate_annotator(v).is_ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The name of the user this process runs as, from the password database
/// (where USER and LOGNAME are not set: containers, cron, some SSH set-ups).
fn login_name() -> Option<String> {
    // SAFETY: getpwuid_r writes into our buffer and record; the name is
    // copied out before they go.
    unsafe {
        let mut rec: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 1024];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(libc::getuid(), &mut rec, buf.as_mut_ptr(), buf.len(), &mut out) != 0 || out.is_null() || rec.pw_name.is_null()
        {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(rec.pw_name).to_string_lossy().into_owned())
    }
}

/// An annotator name: 1 to 64 characters, no control characters.
pub fn validate_annotator(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(|c| c.is_control() || data::is_invisible(c)) {
        bail!("annotator name '{}': use 1 to 64 printable characters", data::display_safe(name));
    }
    // Exports join two annotators' names with `+` (agreed) or `,` (disputed).
    if let Some(c) = name.chars().find(|c| matches!(c, '+' | ',')) {
        bail!("annotator name '{}': no '{c}' (exports join two names with + and ,)", data::display_safe(name));
    }
    Ok(())
}

impl Session {
    /// Opens a session for work as the default annotator (the login name):
    /// see `open_as`.
    pub fn open(sessions: &(impl Sessions + ?Sized), name: &str) -> Result<Session> {
        Session::open_as(sessions, name, &default_annotator())
    }

    /// Opens a session for work, recording labels as `annotator`'s: takes
    /// the session's shared lock and the annotator's own (another process
    /// working as the same annotator is refused, naming it; other
    /// annotators work beside it), migrates an older schema.
    pub fn open_as(sessions: &(impl Sessions + ?Sized), name: &str, annotator: &str) -> Result<Session> {
        validate_name(name)?;
        validate_annotator(annotator)?;
        let annotator = annotator.trim();
        let store = sessions.store();
        let dir = session_dir(&store.local, name);
        if let Some(url) = &store.pg {
            let lock = pg::lock_work(url, name, Some(annotator))?;
            return Session::open_locked(&store, name, dir, vec![lock], Some(annotator));
        }
        if !dir.join(DB_FILE).exists() {
            bail!("no session '{name}' in {} (see `labelrest sessions`)", store.local.display());
        }
        let shared = Lock::share(&dir, name)?;
        let own = Lock::annotator(&dir, name, annotator)?;
        Session::open_locked(&store, name, dir, vec![own, shared], Some(annotator))
    }

    /// Opens a session for work that gives no labels (`retrain`): its
    /// shared lock only, beside any annotator.
    pub fn open_shared(sessions: &(impl Sessions + ?Sized), name: &str) -> Result<Session> {
        validate_name(name)?;
        let store = sessions.store();
        let dir = session_dir(&store.local, name);
        if let Some(url) = &store.pg {
            let lock = pg::lock_work(url, name, None)?;
            return Session::open_locked(&store, name, dir, vec![lock], None);
        }
        if !dir.join(DB_FILE).exists() {
            bail!("no session '{name}' in {} (see `labelrest sessions`)", store.local.display());
        }
        let shared = Lock::share(&dir, name)?;
        Session::open_locked(&store, name, dir, vec![shared], None)
    }

    fn with_db(name: &str, dir: PathBuf, db: Db, pg: Option<String>, locks: Vec<Lock>, annotator: Option<&str>) -> Session {
        Session {
            name: name.to_string(),
            dir,
            db,
            pg,
            _locks: locks,
            works_as_annotator: annotator.is_some(),
            annotator: annotator.map(str::to_string).unwrap_or_else(default_annotator),
            files_seen: Default::default(),
            renewed: Default::default(),
        }
    }

    fn open_locked(store: &Store, name: &str, dir: PathBuf, locks: Vec<Lock>, annotator: Option<&str>) -> Result<Session> {
        let db = match &store.pg {
            Some(url) => pg::open_db(url, name, false)?,
            None => {
                // Removed while this process waited for its locks: stays removed.
                let db = dir.join(DB_FILE);
                if !db.exists() {
                    bail!("no session '{name}' in {} (see `labelrest sessions`)", store.local.display());
                }
                let conn = Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("cannot open {}", db.display()))?;
                configure(&conn)?;
                Db::Sqlite(conn)
            }
        };
        let s = Session::with_db(name, dir, db, store.pg.clone(), locks, annotator);
        s.check_schema(true)?;
        s.local_folder(true)?;
        s.db.exec("UPDATE meta SET value = ?1 WHERE key = 'last_opened'", p![now()])?;
        Ok(s)
    }

    /// (PostgreSQL) makes this machine's folder of the session, emptied when
    /// it held another session of that name (one `new --force` replaced).
    /// A read-only look makes no folder (`sessions` lists without leaving
    /// one per session behind); what it writes (`predict`'s caches) does.
    fn local_folder(&self, make: bool) -> Result<()> {
        if self.pg.is_none() || (!make && !self.dir.exists()) {
            return Ok(());
        }
        let id = format!("{} {}", pg::schema_of(&self.name), self.meta("created")?.unwrap_or_default());
        let marker = self.dir.join("store-session");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(id.as_str()) {
            if self.dir.exists() {
                tracing::info!("{} held another session of that name: emptied", self.dir.display());
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot make {}", self.dir.display()))?;
            std::fs::write(&marker, &id).with_context(|| format!("cannot write {}", marker.display()))?;
        }
        Ok(())
    }

    /// Opens a session to read it (listing, export, predict) without taking
    /// the lock and without writing: read-only, so it also works on
    /// read-only storage (where SQLite cannot make the WAL's shared-memory
    /// file, the database is opened as immutable).
    pub fn open_read_only(sessions: &(impl Sessions + ?Sized), name: &str) -> Result<Session> {
        validate_name(name)?;
        let store = sessions.store();
        let dir = session_dir(&store.local, name);
        if let Some(url) = &store.pg {
            let s = Session::with_db(name, dir, pg::open_db(url, name, true)?, store.pg.clone(), Vec::new(), None);
            s.check_schema(false)?;
            s.local_folder(false)?;
            return Ok(s);
        }
        let db = dir.join(DB_FILE);
        if !db.exists() {
            bail!("no session '{name}' in {} (see `labelrest sessions`)", store.local.display());
        }
        use rusqlite::OpenFlags as F;
        let open = |conn: Connection| -> Result<Session> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let s = Session::with_db(name, dir.clone(), Db::Sqlite(conn), None, Vec::new(), None);
            s.check_schema(false)?;
            Ok(s)
        };
        let first = Connection::open_with_flags(&db, F::SQLITE_OPEN_READ_ONLY | F::SQLITE_OPEN_NO_MUTEX)
            .map_err(anyhow::Error::from)
            .and_then(&open);
        match first {
            Ok(s) => Ok(s),
            Err(e) => {
                // Read-only storage: no -shm can be made; the file is read as it is.
                let uri = format!("file:{}?immutable=1", db.display());
                match Connection::open_with_flags(&uri, F::SQLITE_OPEN_READ_ONLY | F::SQLITE_OPEN_URI | F::SQLITE_OPEN_NO_MUTEX) {
                    Ok(c) => open(c).with_context(|| format!("session '{name}' ({})", db.display())),
                    Err(_) => Err(e).with_context(|| format!("session '{name}' ({})", db.display())),
                }
            }
        }
    }

    /// A second connection to the same database for another thread (no lock of its own).
    pub fn reopen_shared(&self) -> Result<Session> {
        self.reopener()()
    }

    /// What opens such a second connection later, holding none meanwhile
    /// (the worker starts again from it after an error).
    pub fn reopener(&self) -> impl Fn() -> Result<Session> + Send + 'static {
        let (name, dir, pg, annotator) = (self.name.clone(), self.dir.clone(), self.pg.clone(), self.annotator.clone());
        move || {
            let db = match &pg {
                Some(url) => pg::open_db(url, &name, false)?,
                None => {
                    let conn = Connection::open(dir.join(DB_FILE))?;
                    configure(&conn)?;
                    Db::Sqlite(conn)
                }
            };
            let mut s = Session::with_db(&name, dir.clone(), db, pg.clone(), Vec::new(), None);
            s.annotator = annotator.clone();
            Ok(s)
        }
    }

    /// Where the session's database is, for messages: its file, or its
    /// schema in the store.
    pub fn location(&self) -> String {
        match &self.pg {
            Some(url) => format!("{} schema {}", display_url(url), pg::schema_of(&self.name)),
            None => self.dir.join(DB_FILE).display().to_string(),
        }
    }

    /// Refuses to write for an annotator whose hold on the session was lost
    /// (the store restarted and another process took it meanwhile).
    pub(super) fn check_held(&self) -> Result<()> {
        if self._locks.iter().any(Lock::lost) {
            bail!(
                "this process lost its hold on session '{}' when the store restarted (another process took it); quit and open it again",
                self.name
            );
        }
        Ok(())
    }

    /// Until the guard is dropped, every read of this session sees it as at
    /// the first read (one snapshot; others' commits meanwhile are not
    /// seen): for outputs that read it in several queries (`export`).
    /// Nothing may be written through this session meanwhile.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        Ok(Snapshot(self.ctx(self.db.read_tx())?))
    }

    /// Whether the session is kept in PostgreSQL.
    pub fn in_store(&self) -> bool {
        self.pg.is_some()
    }

    /// The session's trainer lock, when no other process holds it.
    pub fn trainer_lock(&self) -> Result<Option<Lock>> {
        match &self.pg {
            Some(url) => pg::trainer(url, &pg::schema_of(&self.name)),
            None => Lock::trainer(&self.dir),
        }
    }

    /// Who holds the session's trainer lock (pid, command), if anyone.
    pub fn trainer_holder(&self) -> Option<(i32, String)> {
        match &self.pg {
            Some(_) => pg::trainer_holder(&self.db),
            None => Lock::trainer_holder(&self.dir),
        }
    }

    /// The name of a file of the session folder, as shared in the store.
    fn shared_name(&self, path: &Path) -> Result<String> {
        let rel = path.strip_prefix(&self.dir).map_err(|_| anyhow!("{} is not in the session folder", path.display()))?;
        Ok(rel.to_string_lossy().replace('\\', "/"))
    }

    /// (PostgreSQL) shares a file of the session folder (the trained head)
    /// with the other machines; nothing to do for a SQLite session.
    pub fn share_file(&self, path: &Path) -> Result<()> {
        if self.pg.is_none() {
            return Ok(());
        }
        let name = self.shared_name(path)?;
        let v = self.ctx(pg::put_file(&self.db, &name, path))?;
        self.files_seen.borrow_mut().insert(name, v);
        Ok(())
    }

    /// (PostgreSQL) brings the store's newer copy of a shared file into the
    /// session folder, if there is one.
    pub fn fetch_file(&self, path: &Path) -> Result<()> {
        if self.pg.is_none() {
            return Ok(());
        }
        let name = self.shared_name(path)?;
        let Some(v) = self.ctx(pg::file_version(&self.db, &name))? else { return Ok(()) };
        let seen = self.files_seen.borrow().get(&name).copied();
        if seen == Some(v) && path.exists() {
            return Ok(());
        }
        if let Some(v) = self.ctx(pg::get_file(&self.db, &name, path))? {
            self.files_seen.borrow_mut().insert(name, v);
        }
        Ok(())
    }
}

/// Where sessions live: `--sessions DIR`, else `LABELREST_SESSIONS`, else
/// `./sessions` when it exists, else the platform data folder.
pub fn sessions_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("LABELREST_SESSIONS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let local = PathBuf::from("sessions");
    if local.is_dir() {
        return Ok(local);
    }
    let dirs = directories::ProjectDirs::from("org", "labelrest", "labelrest")
        .ok_or_else(|| anyhow!("no home folder to keep sessions in; give --sessions DIR"))?;
    Ok(dirs.data_dir().join("sessions"))
}
