//! Files the program writes for the person (exports, predictions): written
//! to a temporary file beside the target, opened with create-new semantics
//! (a planted symlink at a temporary name is never followed), and renamed
//! over the target only when complete. A failed or interrupted run leaves
//! the target as it was and no temporary file behind (but after `kill -9`,
//! which removes nothing).

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

/// A file being written: a temporary file beside `target` until `commit`.
pub struct AtomicFile {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
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
        Ok(AtomicFile { target: target.to_path_buf(), tmp })
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Makes the file durable and puts it at its target.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        self.tmp.as_file().sync_all().with_context(|| format!("cannot write {}", target.display()))?;
        self.tmp.persist(&target).map_err(|e| e.error).with_context(|| format!("cannot write {}", target.display()))?;
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
