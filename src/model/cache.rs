//! The embedding cache: every row embedded once per session and model.
//!
//! Two files beside the session, keyed by the model's content hash:
//! `emb-<hash>.f32` holds `rows * dim` little-endian floats at fixed
//! offsets, and `emb-<hash>.done` one byte a row, set to 1 only after that
//! row's vector is on disk. A crash mid-way loses at most the batch being
//! written; the next run embeds only the rows not done. A complete cache is
//! memory-mapped.

use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A matrix of row embeddings, `n * dim` floats, row-major.
pub enum Matrix {
    Mapped { map: Mmap, n: usize, dim: usize },
    Owned { data: Vec<f32>, n: usize, dim: usize },
}

impl Matrix {
    pub fn owned(data: Vec<f32>, dim: usize) -> Matrix {
        let n = data.len().checked_div(dim).unwrap_or(0);
        Matrix::Owned { data, n, dim }
    }
    pub fn as_slice(&self) -> &[f32] {
        match self {
            Matrix::Owned { data, .. } => data,
            Matrix::Mapped { map, n, dim } => {
                let bytes = &map[..n * dim * 4];
                // SAFETY: the map is page-aligned, so aligned for f32, and
                // holds exactly n*dim little-endian f32 values (checked on open).
                unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, n * dim) }
            }
        }
    }
    pub fn dim(&self) -> usize {
        match self {
            Matrix::Owned { dim, .. } | Matrix::Mapped { dim, .. } => *dim,
        }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.as_slice()[i * d..(i + 1) * d]
    }
}

pub struct Cache {
    data_path: PathBuf,
    data: File,
    done_file: File,
    done: Vec<u8>,
    pub n: usize,
    pub dim: usize,
    /// Rows marked done whose vectors were damaged (not finite, or not of
    /// unit length), or whose done mark was neither 0 nor 1: to embed again.
    pub repaired: usize,
}

/// Whether a stored vector can be trusted: finite and, for an encoder that
/// L2-normalises, of length 1 (within float error).
fn vector_ok(v: &[f32], unit_norm: bool) -> bool {
    if !v.iter().all(|x| x.is_finite()) {
        return false;
    }
    if unit_norm {
        let n2: f32 = v.iter().map(|x| x * x).sum();
        return (n2 - 1.0).abs() < 1e-2;
    }
    true
}

impl Cache {
    pub fn paths(dir: &Path, hash: &str) -> (PathBuf, PathBuf) {
        (dir.join(format!("emb-{hash}.f32")), dir.join(format!("emb-{hash}.done")))
    }

    /// Opens (or creates) the cache for `n` rows of `dim` floats. Every row
    /// marked done is checked (finite; of unit length when `unit_norm`) and
    /// marked missing again when it fails, as is a done mark other than 0 or
    /// 1: a damaged cache is rebuilt where it is damaged, never used.
    pub fn open(dir: &Path, hash: &str, n: usize, dim: usize, unit_norm: bool) -> Result<Cache> {
        let (data_path, done_path) = Self::paths(dir, hash);
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .with_context(|| format!("cannot open embedding cache {}", data_path.display()))?;
        let want = (n * dim * 4) as u64;
        let have = data.metadata()?.len();
        let mut done_file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&done_path)?;
        let mut done = std::fs::read(&done_path)?;
        if have != want || done.len() != n {
            // A cache of another shape (the session changed?) is started anew.
            if have != 0 || !done.is_empty() {
                tracing::warn!("embedding cache {} has the wrong size; rebuilding", data_path.display());
            }
            data.set_len(0)?;
            data.set_len(want)?;
            done = vec![0u8; n];
            done_file.set_len(0)?;
            use std::io::Write;
            done_file.write_all(&done)?;
            done_file.sync_all()?;
        }
        // Check what is marked done.
        let mut repaired = 0usize;
        let mut bad: Vec<usize> = Vec::new();
        let mut buf = vec![0u8; dim * 4];
        let mut v = vec![0f32; dim];
        for (i, d) in done.iter_mut().enumerate() {
            match *d {
                0 => continue,
                1 => {}
                _ => {
                    *d = 0;
                    bad.push(i);
                    continue;
                }
            }
            data.read_exact_at(&mut buf, (i * dim * 4) as u64)?;
            for (k, x) in v.iter_mut().enumerate() {
                *x = f32::from_le_bytes([buf[k * 4], buf[k * 4 + 1], buf[k * 4 + 2], buf[k * 4 + 3]]);
            }
            if !vector_ok(&v, unit_norm) {
                *d = 0;
                bad.push(i);
            }
        }
        if !bad.is_empty() {
            repaired = bad.len();
            tracing::warn!("embedding cache {}: {repaired} damaged rows; embedding them again", data_path.display());
            for &i in &bad {
                done_file.write_all_at(&[0], i as u64)?;
            }
            done_file.sync_data()?;
        }
        Ok(Cache { data_path, data, done_file, done, n, dim, repaired })
    }

    /// Rows not embedded yet.
    pub fn missing(&self) -> Vec<usize> {
        self.done.iter().enumerate().filter(|(_, &d)| d == 0).map(|(i, _)| i).collect()
    }

    /// The rows embedded so far, as an owned matrix: the rows not done yet
    /// are zeros (read while the rest of the cache is still being written).
    pub fn load_done(&self) -> Result<Matrix> {
        let mut data = vec![0f32; self.n * self.dim];
        let mut buf = vec![0u8; self.dim * 4];
        for (r, &d) in self.done.iter().enumerate() {
            if d == 1 {
                self.data.read_exact_at(&mut buf, (r * self.dim * 4) as u64)?;
                for (k, v) in data[r * self.dim..(r + 1) * self.dim].iter_mut().enumerate() {
                    *v = f32::from_le_bytes([buf[k * 4], buf[k * 4 + 1], buf[k * 4 + 2], buf[k * 4 + 3]]);
                }
            }
        }
        Ok(Matrix::Owned { data, n: self.n, dim: self.dim })
    }

    /// Whether row `i` is embedded.
    pub fn is_done(&self, i: usize) -> bool {
        self.done.get(i) == Some(&1)
    }

    pub fn complete(&self) -> bool {
        self.done.iter().all(|&d| d == 1)
    }

    /// Writes the vectors of some rows: data first (synced), then their done marks.
    pub fn write(&mut self, rows: &[usize], vecs: &[f32]) -> Result<()> {
        if vecs.len() != rows.len() * self.dim {
            bail!("embedding batch has {} floats for {} rows of {}", vecs.len(), rows.len(), self.dim);
        }
        let mut buf = vec![0u8; self.dim * 4];
        for (j, &r) in rows.iter().enumerate() {
            for (k, v) in vecs[j * self.dim..(j + 1) * self.dim].iter().enumerate() {
                buf[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            self.data.write_all_at(&buf, (r * self.dim * 4) as u64)?;
        }
        self.data.sync_data()?;
        for &r in rows {
            self.done[r] = 1;
            self.done_file.write_all_at(&[1], r as u64)?;
        }
        self.done_file.sync_data()?;
        Ok(())
    }

    /// Memory-maps the complete cache.
    pub fn load(&self) -> Result<Matrix> {
        if !self.complete() {
            bail!("embedding cache {} is incomplete ({} rows missing)", self.data_path.display(), self.missing().len());
        }
        let f = File::open(&self.data_path)?;
        // SAFETY: the file is ours and is not written while mapped.
        let map = unsafe { Mmap::map(&f)? };
        if map.len() != self.n * self.dim * 4 {
            bail!("embedding cache {} has the wrong size", self.data_path.display());
        }
        if cfg!(target_endian = "big") {
            bail!("the embedding cache is little-endian");
        }
        Ok(Matrix::Mapped { map, n: self.n, dim: self.dim })
    }
}
