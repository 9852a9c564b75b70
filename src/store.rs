//! The session store: one SQLite database (WAL, synchronous=FULL) per session
//! in its own folder, with the rows, every label with who gave it and when,
//! the iterations and their metrics, the latest predictions and the settings.
//!
//! Layout of a session folder `SESSIONS/NAME/`:
//! - `session.db` (+ `-wal`, `-shm`): the database;
//! - `lock`: the process id of the process that has the session open for work;
//! - `emb-<model hash>.f32` and `.done`: the embedding cache (see `model::cache`).

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::{self, Columns, DataError, Format, LabelDef};
pub use crate::settings::{FinetuneOverrides, Settings};

pub const SCHEMA_VERSION: i64 = 3;
const DB_FILE: &str = "session.db";
/// Meta key of the labels the person kept after review.
const KEPT_REVIEWS: &str = "review_kept";

/// Who gave a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Seed,
    Person,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::Person => "person",
        }
    }
    fn parse(s: &str) -> Result<Source> {
        match s {
            "seed" => Ok(Source::Seed),
            "person" => Ok(Source::Person),
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
    Model,
    None,
}

impl RowSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            RowSource::Person => "person",
            RowSource::Seed => "seed",
            RowSource::Model => "model",
            RowSource::None => "none",
        }
    }
}

impl From<Source> for RowSource {
    fn from(s: Source) -> RowSource {
        match s {
            Source::Person => RowSource::Person,
            Source::Seed => RowSource::Seed,
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
    /// Who gave it (None for seed labels and sessions from before it was recorded).
    pub annotator: Option<String>,
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
    pub last_opened: String,
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
    if name.chars().any(|c| c.is_control() || ('\u{80}'..'\u{a0}').contains(&c)) {
        return bad(format!("session name '{}' holds control characters; use a plain name like 'banking'", data::display_safe(name)));
    }
    if name.starts_with('.') {
        return bad(format!("session name '{name}' starts with a dot; use a plain name like 'banking'"));
    }
    if name.len() > 100 {
        return bad(format!("session name '{name}' is longer than 100 bytes"));
    }
    Ok(())
}

pub fn session_dir(sessions: &Path, name: &str) -> PathBuf {
    sessions.join(name)
}

pub fn exists(sessions: &Path, name: &str) -> bool {
    session_dir(sessions, name).join(DB_FILE).exists()
}

/// Lists the sessions in a sessions folder, sorted by name.
/// A session found in a sessions folder: its summary, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub path: PathBuf,
    pub summary: std::result::Result<Summary, String>,
    /// The process working on it, if any (pid, command).
    pub open_by: Option<(i32, String)>,
}

/// Lists the sessions in a sessions folder, sorted by name; a session that
/// cannot be read is listed with the reason.
pub fn list(sessions: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
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
        let open_by = Lock::holder(&path);
        out.push(Listed { name: data::display_safe(&name), path, summary, open_by });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes a session folder. Refused while another process has it open.
pub fn remove(sessions: &Path, name: &str) -> Result<()> {
    validate_name(name)?;
    let dir = session_dir(sessions, name);
    if !dir.join(DB_FILE).exists() {
        bail!("no session '{name}' in {}", sessions.display());
    }
    // Held until the folder is gone: nobody opens it meanwhile.
    let _lock = Lock::acquire(&dir, name)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// The lock that marks a session as open for work by one process: an OS
/// lock (`flock`) on the file `lock` in the session folder, so it is
/// exclusive even when two processes start at the same moment, and a crash
/// (or `kill -9`) releases it. The file also holds the holder's process id
/// and command line, for the message that names it; it is never removed
/// (removing a locked file would let a second process lock a new one).
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
}

pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    if r == 0 {
        // A zombie still answers; treat it as dead.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(after) = stat.rsplit_once(") ") {
                return !after.1.starts_with('Z');
            }
        }
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Who holds a lock file, as it says: (pid, command line).
fn read_holder(path: &Path) -> (i32, String) {
    let content = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = content.lines();
    let pid: i32 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (pid, data::display_safe(lines.next().unwrap_or("")))
}

impl Lock {
    /// Takes the lock of the session in `dir`, or says who holds it.
    pub fn acquire(dir: &Path, name: &str) -> Result<Lock> {
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes its pid just after taking the lock: give it a moment.
                let mut holder = read_holder(&path);
                for _ in 0..50 {
                    if holder.0 > 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    holder = read_holder(&path);
                }
                let (pid, cmd) = holder;
                if pid > 0 {
                    bail!(
                        "session '{}' is open in another process (pid {pid}{}); close it there first",
                        data::display_safe(name),
                        if cmd.is_empty() { String::new() } else { format!(": {cmd}") }
                    );
                }
                bail!("session '{}' is open in another process; close it there first", data::display_safe(name));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        let mut lock = Lock { file };
        lock.write_holder().with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(lock)
    }

    fn write_holder(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let cmd = std::env::args().collect::<Vec<_>>().join(" ");
        self.file.set_len(0)?;
        self.file.seek(std::io::SeekFrom::Start(0))?;
        writeln!(self.file, "{}\n{cmd}", std::process::id())?;
        self.file.sync_all()
    }

    /// Whether the session in `dir` is locked now, and by whom (pid, command).
    pub fn holder(dir: &Path) -> Option<(i32, String)> {
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).ok()?;
        match file.try_lock() {
            Ok(()) => None,
            Err(_) => Some(read_holder(&path)),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Clear the holder's name while still holding it, then release the
        // OS lock explicitly: closing our descriptor alone would leave it
        // held while a child process forked meanwhile (by another thread)
        // still shares the open file, until that child execs.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Exchanges two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).
/// Returns false where the system or the file system cannot.
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    // For the crash tests of the fallback (two renames) path.
    if std::env::var_os("LABELREST_NO_EXCHANGE").is_some() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths, relative to the current folder.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e).with_context(|| format!("cannot put {} in place of {}", a.display(), b.display())),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// For crash tests: `LABELREST_CRASH_AT=STEP` makes the process abort at
/// that step of replacing a session, as a `kill -9` there would.
fn crash_point(step: &str) {
    if std::env::var("LABELREST_CRASH_AT").map(|s| s == step).unwrap_or(false) {
        std::process::abort();
    }
}

/// Removes what crashed runs of `new` left in a sessions folder: folders
/// `.NAME.new-PID` and `.NAME.old-PID` whose lock no process holds. An old
/// session set aside by a replace that did not finish is put back first.
pub fn clean_stale(sessions: &Path) {
    let Ok(rd) = std::fs::read_dir(sessions) else { return };
    for entry in rd.flatten() {
        let fname = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = fname.strip_prefix('.') else { continue };
        let (name, kind, pid) = match (rest.rsplit_once(".new-"), rest.rsplit_once(".old-")) {
            (Some((n, pid)), _) if pid.parse::<i32>().is_ok() => (n.to_string(), "new", pid.parse::<i32>().unwrap_or(0)),
            (_, Some((n, pid))) if pid.parse::<i32>().is_ok() => (n.to_string(), "old", pid.parse::<i32>().unwrap_or(0)),
            _ => continue,
        };
        let path = entry.path();
        if Lock::holder(&path).is_some() || pid_alive(pid) {
            continue; // a run of `new` is still building or replacing it
        }
        if kind == "old" && !exists(sessions, &name) && path.join(DB_FILE).exists() {
            // The replace stopped between setting the old one aside and putting the new one in.
            match std::fs::rename(&path, session_dir(sessions, &name)) {
                Ok(()) => {
                    tracing::warn!("put session {name} back from {}", path.display());
                    continue;
                }
                Err(e) => tracing::warn!("cannot put {} back: {e}", path.display()),
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!("removed {}, left by a run of `new` that did not finish", path.display()),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// What a session is made from.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub data: PathBuf,
    pub format: Option<Format>,
    pub columns: Columns,
    /// What the label column means, when there is one.
    pub label_col_is: LabelColIs,
    pub labels: Option<Vec<LabelDef>>,
    pub test: Option<PathBuf>,
    /// Label column of the test file (default: the same as the data's, else `label`).
    pub test_label_col: Option<String>,
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelColIs {
    Seed,
    Gold,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub pool_rows: u64,
    pub test_rows: u64,
    pub seed_labels: u64,
    pub gold_labels: u64,
    pub skipped_empty: u64,
    pub labels: usize,
    /// Prodigy: accepted rows with several labels in `accept` (the first taken).
    pub multi_label: u64,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE label_set(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT);
CREATE TABLE rows(
  id INTEGER PRIMARY KEY,
  split TEXT NOT NULL CHECK (split IN ('pool','test')),
  text TEXT NOT NULL,
  gold INTEGER REFERENCES label_set(id),
  source_line INTEGER NOT NULL
);
CREATE TABLE annotations(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  row_id INTEGER NOT NULL REFERENCES rows(id),
  label INTEGER NOT NULL REFERENCES label_set(id),
  source TEXT NOT NULL CHECK (source IN ('seed','person')),
  iteration INTEGER NOT NULL,
  at TEXT NOT NULL,
  predicted INTEGER,
  replaces INTEGER,
  active INTEGER NOT NULL DEFAULT 1,
  undone INTEGER NOT NULL DEFAULT 0,
  annotator TEXT
);
CREATE INDEX annotations_active ON annotations(row_id) WHERE active = 1;
CREATE TABLE iterations(
  id INTEGER PRIMARY KEY,
  n_labels INTEGER NOT NULL,
  at TEXT NOT NULL,
  metrics TEXT NOT NULL
);
CREATE TABLE predictions(
  row_id INTEGER PRIMARY KEY REFERENCES rows(id),
  label INTEGER NOT NULL,
  prob REAL NOT NULL,
  entropy REAL NOT NULL,
  margin REAL NOT NULL,
  rank INTEGER,
  iteration INTEGER NOT NULL
);
";

/// An open session.
pub struct Session {
    pub name: String,
    pub dir: PathBuf,
    conn: Connection,
    _lock: Option<Lock>,
    /// Who the labels given through this handle are recorded as.
    annotator: String,
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
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        bail!("annotator name '{}': use 1 to 64 printable characters", data::display_safe(name));
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it returns, also in WAL mode.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Session {
    /// Creates a session from a data file. Nothing is left behind on error:
    /// the session is built in a temporary folder and moved into place at the end.
    pub fn create(sessions: &Path, name: &str, spec: &ImportSpec, force: bool) -> Result<ImportReport> {
        validate_name(name)?;
        let final_dir = session_dir(sessions, name);
        if final_dir.join(DB_FILE).exists() && !force {
            bail!("session '{name}' exists already in {}; use --force to replace it, or another name", sessions.display());
        }
        std::fs::create_dir_all(sessions).with_context(|| format!("cannot create sessions folder {}", sessions.display()))?;
        clean_stale(sessions);
        let tmp = sessions.join(format!(".{name}.new-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        // The new session is locked while it is built: `clean_stale` leaves it alone.
        let new_lock = match Lock::acquire(&tmp, name) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let res = Self::build(&tmp, spec).and_then(|report| {
            crash_point("built");
            Self::put_in_place(&tmp, &final_dir, name).map(|_| report)
        });
        drop(new_lock);
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    /// Puts the session built in `tmp` at `final_dir`, replacing the one
    /// there (under its lock: refused while someone works in it). At every
    /// moment exactly one complete session is under the name, or, where the
    /// file system cannot exchange two folders atomically, the old one is
    /// set aside and put back by `clean_stale` if the process dies between
    /// the two renames.
    fn put_in_place(tmp: &Path, final_dir: &Path, name: &str) -> Result<()> {
        if !final_dir.exists() {
            std::fs::rename(tmp, final_dir).with_context(|| format!("cannot create {}", final_dir.display()))?;
            return Ok(());
        }
        // --force: the old session's lock is held until it is gone.
        let old_lock = Lock::acquire(final_dir, name)?;
        crash_point("locked");
        if exchange(tmp, final_dir)? {
            // `tmp` now holds the old session.
            crash_point("exchanged");
            drop(old_lock);
            std::fs::remove_dir_all(tmp).with_context(|| format!("cannot remove the old session, now at {}", tmp.display()))?;
            crash_point("removed");
            return Ok(());
        }
        let parent = final_dir.parent().unwrap_or(Path::new("."));
        let aside = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(final_dir, &aside).with_context(|| format!("cannot move {} aside", final_dir.display()))?;
        crash_point("aside");
        if let Err(e) = std::fs::rename(tmp, final_dir) {
            let _ = std::fs::rename(&aside, final_dir);
            return Err(e).with_context(|| format!("cannot create {}", final_dir.display()));
        }
        crash_point("exchanged");
        drop(old_lock);
        std::fs::remove_dir_all(&aside).with_context(|| format!("cannot remove the old session, now at {}", aside.display()))?;
        crash_point("removed");
        Ok(())
    }

    fn build(dir: &Path, spec: &ImportSpec) -> Result<ImportReport> {
        let data_format = match spec.format {
            Some(f) => f,
            None => Format::detect(&spec.data)?,
        };
        // Prodigy's records carry their labels (accepted answers): read
        // them without being asked for a label column.
        let mut spec = std::borrow::Cow::Borrowed(spec);
        if data_format == Format::Prodigy && spec.columns.label.is_none() {
            spec.to_mut().columns.label = Some("label".into());
        }
        let spec = spec.as_ref();
        if !spec.data.exists() {
            return Err(DataError::new(&spec.data, None, None, "no such file").into());
        }
        if let Some(t) = &spec.test {
            if !t.exists() {
                return Err(DataError::new(t, None, None, "no such file").into());
            }
        }
        let labels: Vec<LabelDef> = match &spec.labels {
            Some(l) => l.clone(),
            None => match &spec.columns.label {
                Some(_) => data::labels_from_column(&spec.data, data_format, &spec.columns)?,
                None => bail!("no label set: give --labels a,b,c, --labels-file FILE, or a --label-col to take them from"),
            },
        };
        if labels.len() < 2 {
            bail!("the label set has {} label{}; a classifier needs at least two", labels.len(), if labels.len() == 1 { "" } else { "s" });
        }
        let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.name.as_str(), i as u32)).collect();

        let conn = Connection::open(dir.join(DB_FILE))?;
        configure(&conn)?;
        // The import itself is one transaction: durable once, fast.
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.execute_batch(SCHEMA)?;
        let tx = conn.unchecked_transaction()?;
        {
            let mut ins = tx.prepare("INSERT INTO label_set(id, name, description) VALUES (?1, ?2, ?3)")?;
            for (i, l) in labels.iter().enumerate() {
                ins.execute(params![i as i64, l.name, l.description])?;
            }
        }
        let mut report = ImportReport { labels: labels.len(), ..Default::default() };
        let t = now();
        {
            let mut ins_row = tx.prepare("INSERT INTO rows(split, text, gold, source_line) VALUES (?1, ?2, ?3, ?4)")?;
            let mut ins_ann = tx.prepare("INSERT INTO annotations(row_id, label, source, iteration, at) VALUES (?1, ?2, 'seed', 0, ?3)")?;
            let file = spec.data.clone();
            let stats = data::read_records(&spec.data, data_format, &spec.columns, |r| {
                let label = match r.label.as_deref() {
                    None | Some("") => None,
                    Some(l) => Some(*index.get(l).ok_or_else(|| {
                        DataError::new(
                            &file,
                            Some(r.line),
                            None,
                            format!("label '{}' is not in the label set ({})", data::display_safe(l), preview_labels(&labels)),
                        )
                    })?),
                };
                let gold = if spec.label_col_is == LabelColIs::Gold { label } else { None };
                ins_row
                    .execute(params!["pool", r.text, gold, r.line as i64])
                    .map_err(|e| DataError::new(&file, Some(r.line), None, format!("cannot store: {e}")))?;
                let id = tx.last_insert_rowid();
                if spec.label_col_is == LabelColIs::Seed {
                    if let Some(l) = label {
                        ins_ann
                            .execute(params![id, l, t])
                            .map_err(|e| DataError::new(&file, Some(r.line), None, format!("cannot store: {e}")))?;
                        report.seed_labels += 1;
                    }
                } else if label.is_some() {
                    report.gold_labels += 1;
                }
                report.pool_rows += 1;
                Ok(())
            })?;
            report.skipped_empty += stats.skipped_empty;
            report.multi_label += stats.multi_label;
            if report.pool_rows == 0 {
                return Err(DataError::new(&spec.data, None, None, "no rows with text").into());
            }
            if let Some(test) = &spec.test {
                let tf = match spec.format {
                    Some(f) => f,
                    None => Format::detect(test)?,
                };
                let tcols = Columns {
                    text: spec.columns.text.clone(),
                    label: Some(spec.test_label_col.clone().or_else(|| spec.columns.label.clone()).unwrap_or_else(|| "label".into())),
                    allow_multiline: spec.columns.allow_multiline,
                };
                let stats = data::read_records(test, tf, &tcols, |r| {
                    let l = r.label.unwrap_or_default();
                    if l.is_empty() {
                        return Err(DataError::new(test, Some(r.line), None, "a test row needs a gold label"));
                    }
                    let gold = *index.get(l.as_str()).ok_or_else(|| {
                        DataError::new(
                            test,
                            Some(r.line),
                            None,
                            format!("label '{}' is not in the label set ({})", data::display_safe(&l), preview_labels(&labels)),
                        )
                    })?;
                    ins_row
                        .execute(params!["test", r.text, gold, r.line as i64])
                        .map_err(|e| DataError::new(test, Some(r.line), None, format!("cannot store: {e}")))?;
                    report.test_rows += 1;
                    Ok(())
                })?;
                report.skipped_empty += stats.skipped_empty;
            }
        }
        let mut settings = spec.settings.clone();
        if settings.batch == 0 {
            settings.batch = 10;
        }
        tx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1)", params![SCHEMA_VERSION.to_string()])?;
        tx.execute("INSERT INTO meta(key, value) VALUES ('created', ?1)", params![now()])?;
        tx.execute("INSERT INTO meta(key, value) VALUES ('last_opened', ?1)", params![now()])?;
        tx.execute("INSERT INTO meta(key, value) VALUES ('settings', ?1)", params![serde_json::to_string(&settings)?])?;
        tx.execute("INSERT INTO meta(key, value) VALUES ('source', ?1)", params![spec.data.display().to_string()])?;
        tx.commit()?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(report)
    }

    /// Opens a session for work: takes its lock, migrates an older schema.
    pub fn open(sessions: &Path, name: &str) -> Result<Session> {
        validate_name(name)?;
        let dir = session_dir(sessions, name);
        if !dir.join(DB_FILE).exists() {
            bail!("no session '{name}' in {} (see `labelrest sessions`)", sessions.display());
        }
        let lock = Lock::acquire(&dir, name)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        configure(&conn)?;
        let s = Session { name: name.to_string(), dir, conn, _lock: Some(lock), annotator: default_annotator() };
        s.check_schema(true)?;
        s.conn.execute("UPDATE meta SET value = ?1 WHERE key = 'last_opened'", params![now()])?;
        Ok(s)
    }

    /// Opens a session to read it (listing, export, predict) without taking
    /// the lock and without writing: read-only, so it also works on
    /// read-only storage (where SQLite cannot make the WAL's shared-memory
    /// file, the database is opened as immutable).
    pub fn open_read_only(sessions: &Path, name: &str) -> Result<Session> {
        validate_name(name)?;
        let dir = session_dir(sessions, name);
        let db = dir.join(DB_FILE);
        if !db.exists() {
            bail!("no session '{name}' in {} (see `labelrest sessions`)", sessions.display());
        }
        use rusqlite::OpenFlags as F;
        let open = |conn: Connection| -> Result<Session> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let s = Session { name: name.to_string(), dir: dir.clone(), conn, _lock: None, annotator: default_annotator() };
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
        let conn = Connection::open(self.dir.join(DB_FILE))?;
        configure(&conn)?;
        Ok(Session { name: self.name.clone(), dir: self.dir.clone(), conn, _lock: None, annotator: self.annotator.clone() })
    }

    fn check_schema(&self, migrate: bool) -> Result<()> {
        let has_meta: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", [], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .with_context(|| format!("{} is not a labelrest session database", self.dir.join(DB_FILE).display()))?;
        if !has_meta {
            bail!("{} is not a labelrest session (no meta table)", self.dir.join(DB_FILE).display());
        }
        let v: Option<String> = self.conn.query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0)).optional()?;
        let v: i64 = v
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("session '{}' has no schema version; it is not a labelrest session", self.name))?;
        if v > SCHEMA_VERSION {
            bail!(
                "session '{}' was written by a newer labelrest (schema {v}, this one reads up to {SCHEMA_VERSION}); upgrade labelrest to open it",
                self.name
            );
        }
        if v < SCHEMA_VERSION {
            if !migrate {
                bail!("session '{}' has the older schema {v}; open it once with `labelrest label` to migrate it", self.name);
            }
            self.migrate(v)?;
        }
        Ok(())
    }

    /// Migrates from an older schema, step by step, in one transaction.
    fn migrate(&self, from: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let mut v = from;
        while v < SCHEMA_VERSION {
            match v {
                // Schema 1 had no record of what the model predicted when a
                // person decided, so no kept-prediction rate.
                1 => {
                    tx.execute_batch("ALTER TABLE annotations ADD COLUMN predicted INTEGER;")?;
                }
                // Schema 2 did not record who gave a label (`stats` says "not recorded").
                2 => {
                    tx.execute_batch("ALTER TABLE annotations ADD COLUMN annotator TEXT;")?;
                }
                other => bail!("session '{}' has schema {other}, which this labelrest cannot migrate", self.name),
            }
            v += 1;
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", params![SCHEMA_VERSION.to_string()])?;
        tx.commit()?;
        tracing::info!("migrated session {} from schema {from} to {SCHEMA_VERSION}", self.name);
        Ok(())
    }

    /// Names the session and its file in an error from the database.
    fn ctx<T, E: Into<anyhow::Error>>(&self, r: std::result::Result<T, E>) -> Result<T> {
        r.map_err(Into::into).with_context(|| format!("session '{}' ({})", self.name, self.dir.join(DB_FILE).display()))
    }

    /// The number of labels in the label set (labels stored must be below it).
    fn n_labels(&self) -> Result<u32> {
        self.ctx(self.conn.query_row("SELECT count(*) FROM label_set", [], |r| r.get::<_, i64>(0)).map(|n| n as u32))
    }

    fn check_label(&self, what: &str, row_id: i64, label: i64, k: u32) -> Result<u32> {
        if label < 0 || label as u64 >= k as u64 {
            bail!(
                "session '{}' ({}): {what} of row {row_id} is label {label}, but the label set has {k} labels: the database is damaged",
                self.name,
                self.dir.join(DB_FILE).display()
            );
        }
        Ok(label as u32)
    }

    pub fn summary(&self) -> Result<Summary> {
        let rows: i64 = self.conn.query_row("SELECT count(*) FROM rows WHERE split='pool'", [], |r| r.get(0))?;
        let test_rows: i64 = self.conn.query_row("SELECT count(*) FROM rows WHERE split='test'", [], |r| r.get(0))?;
        let labelled: i64 = self.conn.query_row("SELECT count(*) FROM annotations WHERE active=1", [], |r| r.get(0))?;
        let iterations: i64 = self.conn.query_row("SELECT count(*) FROM iterations", [], |r| r.get(0))?;
        let last_opened: String =
            self.conn.query_row("SELECT value FROM meta WHERE key='last_opened'", [], |r| r.get(0)).optional()?.unwrap_or_default();
        Ok(Summary { name: self.name.clone(), rows, test_rows, labelled, iterations, last_opened, path: self.dir.clone() })
    }

    pub fn settings(&self) -> Result<Settings> {
        let s: String = self.ctx(self.conn.query_row("SELECT value FROM meta WHERE key='settings'", [], |r| r.get(0)))?;
        serde_json::from_str(&s)
            .with_context(|| format!("session '{}' ({}): the settings are damaged", self.name, self.dir.join(DB_FILE).display()))
    }

    pub fn save_settings(&self, s: &Settings) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('settings', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![serde_json::to_string(s)?],
        )?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key=?1", params![key], |r| r.get(0)).optional()?)
    }

    /// The (row id, label) pairs the person kept after the review disputed
    /// them: not listed again while the row keeps that label.
    pub fn kept_reviews(&self) -> Result<std::collections::HashSet<(i64, u32)>> {
        Ok(match self.meta(KEPT_REVIEWS)? {
            Some(v) => self.ctx(serde_json::from_str(&v).context("the labels kept after review are damaged"))?,
            None => Default::default(),
        })
    }

    /// Records that the person kept `label` on `row_id` after review.
    pub fn keep_review(&self, row_id: i64, label: u32) -> Result<()> {
        let mut kept = self.kept_reviews()?;
        kept.insert((row_id, label));
        self.set_meta(KEPT_REVIEWS, &serde_json::to_string(&kept)?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn label_set(&self) -> Result<Vec<LabelDef>> {
        self.ctx((|| {
            let mut st = self.conn.prepare("SELECT name, description FROM label_set ORDER BY id")?;
            let v = st.query_map([], |r| Ok(LabelDef { name: r.get(0)?, description: r.get(1)? }))?.collect::<rusqlite::Result<Vec<_>>>();
            v
        })())
    }

    pub fn set_label_description(&self, label: u32, description: Option<&str>) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE label_set SET description = ?1 WHERE id = ?2",
            params![description.filter(|d| !d.trim().is_empty()), label as i64],
        )?;
        if n != 1 {
            bail!("no label {label} in the label set");
        }
        Ok(())
    }

    /// All rows in id order (pool rows first, then test rows).
    pub fn rows(&self) -> Result<Vec<Row>> {
        let k = self.n_labels()?;
        let raw: Vec<(i64, String, String, Option<i64>)> = self.ctx((|| {
            let mut st = self.conn.prepare("SELECT id, split, text, gold FROM rows ORDER BY id")?;
            let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<Vec<_>>>();
            v
        })())?;
        raw.into_iter()
            .map(|(id, split, text, gold)| {
                Ok(Row {
                    id,
                    split: if split == "test" { Split::Test } else { Split::Pool },
                    text,
                    gold: gold.map(|g| self.check_label("the gold label", id, g, k)).transpose()?,
                })
            })
            .collect()
    }

    /// The current label of every labelled row.
    pub fn labels(&self) -> Result<Vec<Label>> {
        let k = self.n_labels()?;
        type Raw = (i64, i64, String, i64, Option<i64>, Option<String>);
        let rows: Vec<Raw> = self.ctx((|| {
            let mut st = self
                .conn
                .prepare("SELECT row_id, label, source, iteration, predicted, annotator FROM annotations WHERE active=1 ORDER BY id")?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                .collect::<rusqlite::Result<Vec<_>>>();
            v
        })())?;
        rows.into_iter()
            .map(|(row_id, label, source, iteration, predicted, annotator)| {
                Ok(Label {
                    row_id,
                    label: self.check_label("the label", row_id, label, k)?,
                    source: self.ctx(Source::parse(&source))?,
                    iteration,
                    // A prediction out of range only loses the kept-rate figure.
                    predicted: predicted.filter(|&p| p >= 0 && (p as u64) < k as u64).map(|p| p as u32),
                    annotator,
                })
            })
            .collect()
    }

    /// One row's text.
    pub fn text_of(&self, row_id: i64) -> Result<String> {
        self.ctx(self.conn.query_row("SELECT text FROM rows WHERE id=?1", params![row_id], |r| r.get(0)))
    }

    /// The current label of one row, if it has one.
    pub fn label_of(&self, row_id: i64) -> Result<Option<(u32, Source)>> {
        let r: Option<(i64, String)> = self
            .conn
            .query_row("SELECT label, source FROM annotations WHERE row_id=?1 AND active=1", params![row_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let k = self.n_labels()?;
        r.map(|(l, s)| Ok((self.check_label("the label", row_id, l, k)?, Source::parse(&s)?))).transpose()
    }

    /// Records a person's label for a row; returns when it is on disk.
    /// A row labelled before gets the new label; the old one is kept in the
    /// history and comes back on undo.
    /// Where the head trained on the encoder with content hash `model_hash` is saved.
    pub fn head_path(&self, model_hash: &str) -> PathBuf {
        self.dir.join(format!("head-{model_hash}.safetensors"))
    }

    /// Labels given through this handle are recorded as `name`'s.
    pub fn set_annotator(&mut self, name: &str) -> Result<()> {
        validate_annotator(name)?;
        self.annotator = name.trim().to_string();
        Ok(())
    }

    pub fn annotator(&self) -> &str {
        &self.annotator
    }

    /// The labels in use per annotator and source, most first: (annotator
    /// (None: not recorded), source, count).
    pub fn labels_per_annotator(&self) -> Result<Vec<(Option<String>, Source, i64)>> {
        let raw: Vec<(Option<String>, String, i64)> = self.ctx((|| {
            let mut st = self.conn.prepare(
                "SELECT annotator, source, count(*) FROM annotations WHERE active=1 GROUP BY annotator, source ORDER BY count(*) DESC, annotator",
            )?;
            let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<Vec<_>>>();
            v
        })())?;
        raw.into_iter().map(|(a, s, n)| Ok((a, self.ctx(Source::parse(&s))?, n))).collect()
    }

    pub fn add_label(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<i64> {
        self.add_label_tx(row_id, label, iteration, predicted)
            .with_context(|| format!("the label of row {row_id} was not saved to {}", self.dir.join(DB_FILE).display()))
    }

    fn add_label_tx(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<i64> {
        let tx = self.conn.unchecked_transaction()?;
        let split: Option<String> = tx.query_row("SELECT split FROM rows WHERE id=?1", params![row_id], |r| r.get(0)).optional()?;
        match split.as_deref() {
            None => bail!("no row {row_id} in session '{}'", self.name),
            Some("test") => bail!("row {row_id} is in the held-out test set and cannot be labelled"),
            _ => {}
        }
        let nlabels: i64 = tx.query_row("SELECT count(*) FROM label_set", [], |r| r.get(0))?;
        if label as i64 >= nlabels {
            bail!("label {label} is not in the label set of session '{}'", self.name);
        }
        let prev: Option<i64> =
            tx.query_row("SELECT id FROM annotations WHERE row_id=?1 AND active=1", params![row_id], |r| r.get(0)).optional()?;
        if let Some(p) = prev {
            tx.execute("UPDATE annotations SET active=0 WHERE id=?1", params![p])?;
        }
        tx.execute(
            "INSERT INTO annotations(row_id, label, source, iteration, at, predicted, replaces, annotator) VALUES (?1, ?2, 'person', ?3, ?4, ?5, ?6, ?7)",
            params![row_id, label as i64, iteration, now(), predicted.map(|p| p as i64), prev, self.annotator],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Undoes the person's most recent decision that is not undone yet.
    /// Returns the row it was about, or None when there is nothing to undo.
    pub fn undo_last(&self) -> Result<Option<i64>> {
        let tx = self.conn.unchecked_transaction()?;
        let last: Option<(i64, i64, Option<i64>)> = tx
            .query_row(
                "SELECT id, row_id, replaces FROM annotations WHERE source='person' AND undone=0 AND active=1 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, row_id, replaces)) = last else { return Ok(None) };
        tx.execute("UPDATE annotations SET active=0, undone=1 WHERE id=?1", params![id])?;
        if let Some(p) = replaces {
            tx.execute("UPDATE annotations SET active=1 WHERE id=?1", params![p])?;
        }
        tx.commit()?;
        Ok(Some(row_id))
    }

    /// Number of person decisions (not undone) made at a given iteration.
    pub fn decisions_since(&self, iteration: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM annotations WHERE source='person' AND active=1 AND iteration >= ?1",
            params![iteration],
            |r| r.get(0),
        )?)
    }

    pub fn iterations(&self) -> Result<Vec<(i64, i64, serde_json::Value)>> {
        let mut st = self.conn.prepare("SELECT id, n_labels, metrics FROM iterations ORDER BY id")?;
        let v = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        v.into_iter().map(|(i, n, m)| Ok((i, n, serde_json::from_str(&m)?))).collect()
    }

    /// Records an iteration and replaces the stored predictions with its
    /// own, in one transaction. `metrics` gets the new iteration's id.
    pub fn record_iteration<E>(
        &self,
        n_labels: i64,
        metrics: impl FnOnce(i64) -> Result<serde_json::Value, E>,
        preds: &[Prediction],
    ) -> Result<i64>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("INSERT INTO iterations(n_labels, at, metrics) VALUES (?1, ?2, '{}')", params![n_labels, now()])?;
        let id = tx.last_insert_rowid();
        let m = metrics(id)?;
        tx.execute("UPDATE iterations SET metrics = ?1 WHERE id = ?2", params![serde_json::to_string(&m)?, id])?;
        insert_predictions(&tx, id, preds)?;
        tx.commit()?;
        Ok(id)
    }

    /// Replaces the stored predictions of the current iteration (a new ranking, no new model).
    pub fn replace_predictions(&self, iteration: i64, preds: &[Prediction]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        insert_predictions(&tx, iteration, preds)?;
        tx.commit()?;
        Ok(())
    }

    pub fn predictions(&self) -> Result<HashMap<i64, Prediction>> {
        let k = self.n_labels()?;
        type Raw = (i64, i64, f64, f64, f64, Option<i64>);
        let v: Vec<Raw> = self.ctx((|| {
            let mut st = self.conn.prepare("SELECT row_id, label, prob, entropy, margin, rank FROM predictions")?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                .collect::<rusqlite::Result<Vec<_>>>();
            v
        })())?;
        v.into_iter()
            .map(|(row_id, label, prob, entropy, margin, rank)| {
                let label = self.check_label("the stored prediction", row_id, label, k)?;
                Ok((row_id, Prediction { row_id, label, prob: prob as f32, entropy: entropy as f32, margin: margin as f32, rank }))
            })
            .collect()
    }

    /// `PRAGMA integrity_check` and foreign-key check; Ok when consistent.
    pub fn check_integrity(&self) -> Result<()> {
        let r: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if r != "ok" {
            bail!("integrity check failed: {r}");
        }
        let bad: i64 = self.conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
        if bad > 0 {
            bail!("{bad} foreign key violations");
        }
        let dup: i64 = self.conn.query_row(
            "SELECT count(*) FROM (SELECT row_id FROM annotations WHERE active=1 GROUP BY row_id HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )?;
        if dup > 0 {
            bail!("{dup} rows have more than one active label");
        }
        Ok(())
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }
}

/// Replaces every stored prediction with `preds` (inside a transaction).
fn insert_predictions(tx: &rusqlite::Transaction, iteration: i64, preds: &[Prediction]) -> Result<()> {
    tx.execute("DELETE FROM predictions", [])?;
    let mut st =
        tx.prepare("INSERT INTO predictions(row_id, label, prob, entropy, margin, rank, iteration) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
    for p in preds {
        st.execute(params![p.row_id, p.label as i64, p.prob as f64, p.entropy as f64, p.margin as f64, p.rank, iteration])?;
    }
    Ok(())
}

fn preview_labels(labels: &[LabelDef]) -> String {
    let names: Vec<&str> = labels.iter().take(8).map(|l| l.name.as_str()).collect();
    if labels.len() > 8 {
        format!("{}, ... {} in all", names.join(", "), labels.len())
    } else {
        names.join(", ")
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
