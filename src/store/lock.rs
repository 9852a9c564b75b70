//! The locks that mark a session as open for work.
//!
//! Several processes may work on one session at once, one per annotator:
//! - `lock`: every working process holds it shared; removing a session or
//!   replacing it (`new --force`) holds it exclusive, so neither happens
//!   under anyone's feet.
//! - `locks/annotator-<hex of the name>.lock`: exclusive, one per
//!   annotator: the same annotator twice is refused, naming the process.
//! - `trainer.lock`: exclusive, taken by the one process that trains and
//!   fine-tunes for the session (the others pick up its iterations).
//!
//! All are OS locks (`flock`), so they are exclusive even when two
//! processes start at the same moment, and a crash (or `kill -9`) releases
//! them. An exclusive lock's file also holds its holder's process id and
//! command line, for messages only; lock files are never removed (removing
//! a locked file would let a second process lock a new one).

use super::*;

pub struct Lock {
    /// A lock file (a session in a SQLite file).
    file: Option<std::fs::File>,
    /// An exclusive holder clears its name from the file when it lets go.
    exclusive: bool,
    /// The connection that holds advisory locks (a session in PostgreSQL):
    /// closing it lets go of them.
    _pg: Option<super::db::Conn>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("file", &self.file).field("exclusive", &self.exclusive).field("store", &self._pg.is_some()).finish()
    }
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

/// Who holds a lock file, as it says: (pid, command line, annotator).
fn read_holder(path: &Path) -> (i32, String, String) {
    let content = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = content.lines();
    let pid: i32 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let cmd = data::display_safe(lines.next().unwrap_or(""));
    let who = data::display_safe(lines.next().unwrap_or(""));
    (pid, cmd, who)
}

/// The holder of a lock file that another process holds, waiting a moment
/// for it to write its name (it does just after taking the lock).
fn wait_holder(path: &Path) -> (i32, String, String) {
    let mut holder = read_holder(path);
    for _ in 0..50 {
        if holder.0 > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        holder = read_holder(path);
    }
    holder
}

fn open_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Tries a lock a few times over 200 ms: another process only looking
/// (`holders`, `sessions`) holds one for an instant.
fn try_lock(file: &std::fs::File, path: &Path, shared: bool) -> Result<bool> {
    for attempt in 0..20 {
        let r = if shared { file.try_lock_shared() } else { file.try_lock() };
        match r {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if attempt < 19 => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
    Ok(false)
}

/// The lock file of an annotator: named by a digest of the name (any name
/// makes a safe, short file name then; the file holds the name itself).
fn annotator_file(dir: &Path, annotator: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(annotator.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join("locks").join(format!("annotator-{hex}.lock"))
}

fn pid_text(pid: i32, cmd: &str) -> String {
    format!("pid {pid}{}", if cmd.is_empty() { String::new() } else { format!(": {cmd}") })
}

impl Lock {
    /// Takes the session in `dir` for this process alone (removing or
    /// replacing it), or says who works on it.
    pub fn acquire(dir: &Path, name: &str) -> Result<Lock> {
        let path = dir.join("lock");
        let file = open_file(&path)?;
        if !try_lock(&file, &path, false)? {
            let who = Lock::holders(dir);
            let (pid, cmd) = match who.first() {
                Some((pid, cmd, _)) => (*pid, cmd.clone()),
                None => {
                    let (pid, cmd, _) = wait_holder(&path);
                    (pid, cmd)
                }
            };
            if pid > 0 {
                bail!("session '{}' is open in another process ({}); close it there first", data::display_safe(name), pid_text(pid, &cmd));
            }
            bail!("session '{}' is open in another process; close it there first", data::display_safe(name));
        }
        let mut lock = Lock { file: Some(file), exclusive: true, _pg: None };
        lock.write_holder("").with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(lock)
    }

    /// Takes the session in `dir` for work beside other annotators' processes
    /// (shared), or says who is removing or replacing it.
    pub fn share(dir: &Path, name: &str) -> Result<Lock> {
        let path = dir.join("lock");
        let file = open_file(&path)?;
        if !try_lock(&file, &path, true)? {
            let (pid, cmd, _) = wait_holder(&path);
            bail!(
                "session '{}' is being removed or replaced by another process{}; try again when it is done",
                data::display_safe(name),
                if pid > 0 { format!(" ({})", pid_text(pid, &cmd)) } else { String::new() }
            );
        }
        Ok(Lock { file: Some(file), exclusive: false, _pg: None })
    }

    /// Takes the annotator `annotator`'s lock on the session in `dir`, or
    /// says which process works on it as that annotator.
    pub fn annotator(dir: &Path, name: &str, annotator: &str) -> Result<Lock> {
        let path = annotator_file(dir, annotator);
        if let Some(parent) = path.parent() {
            // (Not `create_dir_all`: a session removed meanwhile stays removed.)
            match std::fs::create_dir(parent) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("cannot make {}", parent.display())),
            }
        }
        let file = open_file(&path)?;
        if !try_lock(&file, &path, false)? {
            let (pid, cmd, _) = wait_holder(&path);
            let what = if pid > 0 { format!(" ({})", pid_text(pid, &cmd)) } else { String::new() };
            bail!(
                "session '{}' is open in another process{what} as annotator '{}'; close it there first, or work as another annotator (--annotator NAME)",
                data::display_safe(name),
                data::display_safe(annotator)
            );
        }
        let mut lock = Lock { file: Some(file), exclusive: true, _pg: None };
        lock.write_holder(annotator).with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(lock)
    }

    /// The session's trainer lock, when no other process holds it.
    pub fn trainer(dir: &Path) -> Result<Option<Lock>> {
        let path = dir.join("trainer.lock");
        let file = open_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        let mut lock = Lock { file: Some(file), exclusive: true, _pg: None };
        lock.write_holder("").with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(Some(lock))
    }

    /// The session's embedding lock, waiting for it: one process at a time
    /// writes the shared embedding cache (the others find the rows done).
    pub fn embedding(dir: &Path) -> Result<Lock> {
        let path = dir.join("embedding.lock");
        let file = open_file(&path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Lock { file: Some(file), exclusive: false, _pg: None })
    }

    /// Who holds the session's trainer lock (pid, command), as its file
    /// says, if that process lives (read without locking: a look never
    /// stands in the way of a process taking it).
    pub fn trainer_holder(dir: &Path) -> Option<(i32, String)> {
        let (pid, cmd, _) = read_holder(&dir.join("trainer.lock"));
        pid_alive(pid).then_some((pid, cmd))
    }

    /// Whether this lock was lost: the store restarted and another process
    /// took it before this one could again (a lock file is never lost).
    pub fn lost(&self) -> bool {
        self._pg.as_ref().is_some_and(|c| c.lost())
    }

    /// A lock held by a connection to the store.
    pub(super) fn pg(conn: super::db::Conn) -> Lock {
        Lock { file: None, exclusive: false, _pg: Some(conn) }
    }

    fn write_holder(&mut self, annotator: &str) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        // (args_os: a path that is not UTF-8 is a file name like any other.)
        let cmd = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        writeln!(file, "{}\n{cmd}\n{annotator}", std::process::id())?;
        file.sync_all()
    }

    /// Whether the session in `dir` is open for work now, and by whom (pid,
    /// command): the first of `holders`.
    pub fn holder(dir: &Path) -> Option<(i32, String)> {
        Lock::holders(dir).into_iter().next().map(|(pid, cmd, _)| (pid, cmd))
    }

    /// Every process working on the session in `dir`: (pid, command,
    /// annotator), by annotator; a process removing or replacing it first.
    pub fn holders(dir: &Path) -> Vec<(i32, String, String)> {
        let mut out = Vec::new();
        let main = dir.join("lock");
        // Held exclusive (a remove or a replace): its holder wrote its name.
        if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&main) {
            if let Err(std::fs::TryLockError::WouldBlock) = f.try_lock_shared() {
                out.push(read_holder(&main));
            }
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("locks"))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "lock")).collect())
            .unwrap_or_default();
        files.sort();
        for p in files {
            if probe(&p) {
                out.push(read_holder(&p));
            }
        }
        out.retain(|h| h.0 > 0);
        out
    }
}

/// Whether another process holds the exclusive lock on `path` (looked at
/// with a shared lock for an instant).
fn probe(path: &Path) -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Clear the holder's name while still holding it, then release the
        // OS lock explicitly: closing our descriptor alone would leave it
        // held while a child process forked meanwhile (by another thread)
        // still shares the open file, until that child execs.
        // Let go of the advisory locks before the connection closes, so that
        // another process may take them as soon as this returns.
        if let Some(conn) = &self._pg {
            // (Not for long: a store that does not answer lets go of them
            // when the connection closes.)
            let _ =
                conn.run_within(std::time::Duration::from_secs(1), |st| Ok(st.client.batch_execute("SELECT pg_advisory_unlock_all()")?));
        }
        if let Some(file) = &self.file {
            if self.exclusive {
                let _ = file.set_len(0);
            }
            let _ = file.unlock();
        }
    }
}
