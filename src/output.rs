//! Files the program writes for the person (exports, predictions): written
//! to a temporary file beside the target, opened with create-new semantics
//! (a planted symlink at a temporary name is never followed), and renamed
//! over the target only when complete. A failed or interrupted run leaves
//! the target as it was and no temporary file behind (but after `kill -9`,
//! which removes nothing).
//!
//! A target that is not a file (a device, a pipe, a socket: `/dev/null`,
//! a named pipe) or that names a descriptor (`/dev/stdout`, `/dev/fd/1`,
//! `/proc/self/fd/N`: links into `/proc`) is written through, as it is:
//! renamed over, it would be replaced by a file (as root, `/dev/stdout`
//! itself). A link to a regular file elsewhere is replaced, not followed.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// True when two paths name the same file (after following links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Refuses an output path that is one of the inputs.
pub fn check_not_input(out: &Path, inputs: &[&Path]) -> Result<()> {
    for i in inputs {
        if same_file(out, i) {
            bail!("--out {} is the input file {}: write to another file", out.display(), i.display());
        }
    }
    Ok(())
}

/// The process's umask (read by setting it and putting it back).
fn current_umask() -> u32 {
    // SAFETY: umask only swaps a process-wide integer; set and restored at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// True when `target` is written through rather than replaced: it exists
/// and is neither a file nor a folder (following links), or a link on the
/// way to it leads into `/proc` (a descriptor of this process, whatever it
/// is open on: `/dev/stdout` redirected to a file too).
pub fn written_through(target: &Path) -> bool {
    through(target).is_some()
}

/// What the thing at `path` is, in words, for a message that refuses it
/// ("a file", "a pipe", ...), following links.
pub fn what_is(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path).map(|m| m.file_type()) {
        Ok(t) if t.is_dir() => "a folder",
        Ok(t) if t.is_file() => "a file",
        Ok(t) if t.is_fifo() => "a pipe",
        Ok(t) if t.is_char_device() || t.is_block_device() => "a device",
        Ok(t) if t.is_socket() => "a socket",
        _ => "not a folder",
    }
}

/// This process's descriptor that `target` names (`/dev/stdout` is 1,
/// `/dev/fd/N` and `/proc/self/fd/N` are N), if it names one.
pub fn own_descriptor(target: &Path) -> Option<i32> {
    through(target).flatten()
}

/// `Some` when `target` is written through (see `written_through`), with
/// the descriptor of this process it names, if any.
fn through(target: &Path) -> Option<Option<i32>> {
    let mut p = target.to_path_buf();
    // (A bounded walk: a loop of links ends it.)
    for _ in 0..40 {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (Ok(dir), Some(name)) = (parent.canonicalize(), p.file_name().map(|n| n.to_owned())) else { break };
        p = dir.join(&name);
        if p.starts_with("/proc") {
            let own = Path::new("/proc").join(std::process::id().to_string()).join("fd");
            let fd = if dir == own { name.to_str().and_then(|n| n.parse::<i32>().ok()) } else { None };
            return Some(fd);
        }
        match std::fs::read_link(&p) {
            Ok(next) => p = if next.is_absolute() { next } else { dir.join(next) },
            Err(_) => break,
        }
    }
    match std::fs::metadata(target) {
        Ok(m) if !m.file_type().is_file() && !m.file_type().is_dir() => Some(None),
        _ => None,
    }
}

/// A file being written: a temporary file beside `target` until `commit`
/// (or, for a target `written_through`, the target itself).
pub struct AtomicFile {
    target: PathBuf,
    tmp: Dest,
}

enum Dest {
    Temp(tempfile::NamedTempFile),
    Through(std::fs::File),
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        match through(target) {
            // One of this process's descriptors (`/dev/stdout`): written
            // through a copy of it, which shares its offset (opened anew, a
            // file behind it would be written from its start, over what
            // the process writes there itself).
            Some(Some(fd)) => {
                use std::os::unix::io::FromRawFd;
                // SAFETY: dup of a descriptor this process holds; the copy is owned by the File.
                let copy = unsafe { libc::dup(fd) };
                if copy < 0 {
                    return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot write {}", target.display()));
                }
                // SAFETY: `copy` is a fresh descriptor nothing else owns.
                let f = unsafe { std::fs::File::from_raw_fd(copy) };
                return Ok(AtomicFile { target: target.to_path_buf(), tmp: Dest::Through(f) });
            }
            // A device or a pipe: opened as it is (appending, for a file a
            // descriptor of another process is open on).
            Some(None) => {
                let f =
                    std::fs::OpenOptions::new().append(true).open(target).with_context(|| format!("cannot write {}", target.display()))?;
                return Ok(AtomicFile { target: target.to_path_buf(), tmp: Dest::Through(f) });
            }
            None => {}
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if target.is_dir() {
            bail!("cannot write {}: it is a folder", target.display());
        }
        let fname = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = tempfile::Builder::new().prefix(&format!(".{fname}.")).suffix(".part").tempfile_in(&dir).map_err(|e| {
            // Name the target, not the temporary file tempfile's message adds ("at path ...").
            let m = e.to_string();
            let m = m.split(" at path ").next().unwrap_or(&m).to_string();
            anyhow!("cannot write {}: {m}", target.display())
        })?;
        // A temporary file is private (0600); what is written for the
        // person is an ordinary file (0644, less the umask), as `predict`'s.
        {
            use std::os::unix::fs::PermissionsExt;
            let mask = current_umask();
            let _ = tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644 & !mask));
        }
        Ok(AtomicFile { target: target.to_path_buf(), tmp: Dest::Temp(tmp) })
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        match &mut self.tmp {
            Dest::Temp(t) => t.as_file_mut(),
            Dest::Through(f) => f,
        }
    }

    /// Makes the file durable and puts it at its target.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        match self.tmp {
            Dest::Temp(tmp) => {
                tmp.as_file().sync_all().with_context(|| format!("cannot write {}", target.display()))?;
                tmp.persist(&target).map_err(|e| e.error).with_context(|| format!("cannot write {}", target.display()))?;
            }
            // (A pipe or a terminal cannot be synced; what was written is theirs.)
            Dest::Through(mut f) => f.flush().with_context(|| format!("cannot write {}", target.display()))?,
        }
        Ok(())
    }
}

/// A buffered writer on an `AtomicFile`.
pub struct AtomicWriter {
    inner: std::io::BufWriter<AtomicFileWrite>,
}

struct AtomicFileWrite(AtomicFile);

impl Write for AtomicFileWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.file().flush()
    }
}

impl AtomicWriter {
    pub fn create(target: &Path) -> Result<AtomicWriter> {
        Ok(AtomicWriter { inner: std::io::BufWriter::with_capacity(1 << 16, AtomicFileWrite(AtomicFile::create(target)?)) })
    }

    pub fn target(&self) -> &Path {
        &self.inner.get_ref().0.target
    }

    pub fn commit(self) -> Result<()> {
        let target = self.target().to_path_buf();
        let inner = self.inner.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", target.display()))?;
        inner.0.commit()
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("out.csv");
        std::fs::write(&t, "old").unwrap();
        {
            let mut w = AtomicWriter::create(&t).unwrap();
            w.write_all(b"half").unwrap();
            // dropped without commit: a failed run
        }
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left");
        let mut w = AtomicWriter::create(&t).unwrap();
        w.write_all(b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "new");
    }

    /// A named pipe (and a link to one) is written into, not replaced by
    /// a file; so is a descriptor reached through `/proc` (as `/dev/stdout`
    /// is), also one open on a file.
    #[test]
    fn pipes_and_descriptors_are_written_through() {
        use std::os::unix::io::AsRawFd;
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = d.path().join("to-fifo.csv");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for t in [&fifo, &link] {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
            };
            assert!(written_through(t));
            let mut w = AtomicWriter::create(t).unwrap();
            w.write_all(b"through").unwrap();
            w.commit().unwrap();
            assert_eq!(reader.join().unwrap(), "through");
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // A descriptor open on a file, by a link as `/dev/stdout` is one.
        let file = d.path().join("stdout.txt");
        let held = std::fs::File::create(&file).unwrap();
        let fd = d.path().join("stdout");
        std::os::unix::fs::symlink(format!("/proc/self/fd/{}", held.as_raw_fd()), &fd).unwrap();
        assert!(written_through(&fd));
        let mut w = AtomicWriter::create(&fd).unwrap();
        w.write_all(b"rows").unwrap();
        w.commit().unwrap();
        assert!(std::fs::symlink_metadata(&fd).unwrap().file_type().is_symlink(), "the link stays");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "rows");
        assert!(!written_through(&d.path().join("new.csv")) && !written_through(&file));
        assert_eq!((what_is(&file), what_is(&fifo), what_is(d.path())), ("a file", "a pipe", "a folder"));
        assert_eq!(what_is(Path::new("/dev/null")), "a device");
        assert_eq!(own_descriptor(&fd), Some(held.as_raw_fd()));
        assert_eq!(own_descriptor(Path::new("/dev/stdout")), Some(1));
        assert_eq!(own_descriptor(&fifo), None);
    }

    #[test]
    fn a_symlinked_target_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let t = d.path().join("out.csv");
        std::os::unix::fs::symlink(&victim, &t).unwrap();
        let mut w = AtomicWriter::create(&t).unwrap();
        w.write_all(b"export").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "export");
        assert!(!std::fs::symlink_metadata(&t).unwrap().file_type().is_symlink());
        assert!(check_not_input(&victim, &[&victim]).is_err());
    }
}
