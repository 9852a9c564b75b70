//! The lock that marks a session as open for work by one process.

use super::*;

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
