//! Hidden states of many rows where the fine-tuned layers start: the output
//! of the frozen lower layers of the base encoder, which never change. With
//! them, embedding every row again after a fine-tune runs only the top
//! layers. Kept as float16 (half the room; the embeddings they give differ
//! from float32's by a cosine under 1e-5), in memory or in a session's
//! folder:
//!
//! - `states-<model hash>-<layer>.f16`: every row's states, in row order;
//! - `states-<model hash>-<layer>.len`: each row's token count (u32 LE);
//! - `states-<model hash>-<layer>.done`: one byte a row, 1 once its states
//!   are on disk (a crash loses at most a chunk; the next run goes on).

use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cpu::{self, TopLayers};

pub struct States {
    pub from: usize,
    pub hidden: usize,
    data: Data,
    /// Row i's states are tokens offsets[i]..offsets[i+1].
    offsets: Vec<usize>,
}

enum Data {
    Owned(Vec<half::f16>),
    Mapped(Mmap),
}

/// Rows per chunk: about this many tokens.
const CHUNK_TOKENS: usize = 16384;

fn offsets_of(lens: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut o = vec![0usize];
    for l in lens {
        o.push(o.last().copied().unwrap_or(0) + l);
    }
    o
}

/// Computes the states of rows `a..b` into `dst` (f16), over `threads` threads.
fn compute_chunk(bert: &cpu::Bert, ids: &[Vec<u32>], from: usize, threads: usize, dst: &mut [half::f16]) {
    let h = bert.dims.hidden;
    let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let n = seqs.len();
    let threads = threads.max(1).min(n.max(1));
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|sc| {
        let mut rest: &mut [half::f16] = dst;
        for c in 0..threads {
            let (a, b) = ((c * per).min(n), ((c + 1) * per).min(n));
            if a >= b {
                break;
            }
            let tokens: usize = seqs[a..b].iter().map(|s| s.len()).sum();
            let (mine, tail) = rest.split_at_mut(tokens * h);
            rest = tail;
            let part = &seqs[a..b];
            sc.spawn(move || {
                let st = bert.states(part, from);
                for (d, s) in mine.iter_mut().zip(&st) {
                    *d = half::f16::from_f32(*s);
                }
            });
        }
    });
}

fn chunks(offsets: &[usize], rows: &[usize]) -> Vec<(usize, usize)> {
    // Consecutive runs of `rows` of about CHUNK_TOKENS tokens.
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        let mut tokens = offsets[rows[i] + 1] - offsets[rows[i]];
        while j < rows.len() && rows[j] == rows[j - 1] + 1 && tokens < CHUNK_TOKENS {
            tokens += offsets[rows[j] + 1] - offsets[rows[j]];
            j += 1;
        }
        out.push((rows[i], rows[j - 1] + 1));
        i = j;
    }
    out
}

impl States {
    /// Runs the frozen layers over every row (token ids), in memory.
    pub fn compute(bert: &cpu::Bert, ids: &[Vec<u32>], from: usize, threads: usize, progress: &mut dyn FnMut(usize, usize)) -> States {
        let h = bert.dims.hidden;
        let offsets = offsets_of(ids.iter().map(|s| s.len()));
        let mut data = vec![half::f16::ZERO; offsets[ids.len()] * h];
        let all: Vec<usize> = (0..ids.len()).collect();
        for (a, b) in chunks(&offsets, &all) {
            compute_chunk(bert, &ids[a..b], from, threads, &mut data[offsets[a] * h..offsets[b] * h]);
            progress(b, ids.len());
        }
        States { from, hidden: h, data: Data::Owned(data), offsets }
    }

    pub fn paths(dir: &Path, hash: &str, from: usize) -> (PathBuf, PathBuf, PathBuf) {
        let stem = format!("states-{hash}-{from}");
        (dir.join(format!("{stem}.f16")), dir.join(format!("{stem}.len")), dir.join(format!("{stem}.done")))
    }

    /// The states of every row in a session folder's cache, computing (and
    /// storing) what is missing; a damaged or mismatched cache is rebuilt.
    #[allow(clippy::too_many_arguments)]
    pub fn cached(
        dir: &Path,
        hash: &str,
        bert: &cpu::Bert,
        ids: &[Vec<u32>],
        from: usize,
        threads: usize,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<States> {
        let h = bert.dims.hidden;
        let n = ids.len();
        let (data_p, len_p, done_p) = Self::paths(dir, hash, from);
        let lens: Vec<u32> = ids.iter().map(|s| s.len() as u32).collect();
        let offsets = offsets_of(lens.iter().map(|&l| l as usize));
        let want_bytes = (offsets[n] * h * 2) as u64;
        let len_bytes: Vec<u8> = lens.iter().flat_map(|l| l.to_le_bytes()).collect();
        let open = |p: &Path| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p);
        let data = open(&data_p).with_context(|| format!("cannot open {}", data_p.display()))?;
        let done_f = open(&done_p).with_context(|| format!("cannot open {}", done_p.display()))?;
        let mut done = std::fs::read(&done_p)?;
        let same = std::fs::read(&len_p).map(|b| b == len_bytes).unwrap_or(false)
            && data.metadata()?.len() == want_bytes
            && done.len() == n
            && done.iter().all(|&d| d <= 1);
        if !same {
            if data.metadata()?.len() != 0 {
                tracing::warn!("states cache {} does not match the rows; rebuilding", data_p.display());
            }
            data.set_len(0)?;
            data.set_len(want_bytes)?;
            done = vec![0u8; n];
            done_f.set_len(0)?;
            done_f.write_all_at(&done, 0)?;
            done_f.sync_all()?;
            std::fs::write(&len_p, &len_bytes)?;
        }
        let missing: Vec<usize> = (0..n).filter(|&i| done[i] == 0).collect();
        let mut finished = n - missing.len();
        if !missing.is_empty() {
            progress(finished, n);
        }
        for (a, b) in chunks(&offsets, &missing) {
            if cancel.load(Ordering::SeqCst) {
                bail!("cancelled");
            }
            let mut buf = vec![half::f16::ZERO; (offsets[b] - offsets[a]) * h];
            compute_chunk(bert, &ids[a..b], from, threads, &mut buf);
            let bytes: Vec<u8> = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
            data.write_all_at(&bytes, (offsets[a] * h * 2) as u64)?;
            data.sync_data()?;
            done_f.write_all_at(&vec![1u8; b - a], a as u64)?;
            done_f.sync_data()?;
            finished += b - a;
            progress(finished, n);
        }
        // SAFETY: the file is ours, complete, and not written while mapped.
        let map = unsafe { Mmap::map(&File::open(&data_p)?)? };
        if map.len() as u64 != want_bytes {
            bail!("states cache {} has the wrong size", data_p.display());
        }
        if cfg!(target_endian = "big") {
            bail!("the states cache is little-endian");
        }
        Ok(States { from, hidden: h, data: Data::Mapped(map), offsets })
    }

    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn len_of(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    fn raw(&self) -> &[half::f16] {
        match &self.data {
            Data::Owned(v) => v,
            Data::Mapped(m) => {
                // SAFETY: the map holds offsets[n] * hidden f16 values (checked when mapped) and is page-aligned.
                unsafe { std::slice::from_raw_parts(m.as_ptr() as *const half::f16, self.offsets[self.rows()] * self.hidden) }
            }
        }
    }

    /// The states of some rows, concatenated, as float32, with their lengths.
    pub fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let h = self.hidden;
        let raw = self.raw();
        let lens: Vec<usize> = rows.iter().map(|&i| self.len_of(i)).collect();
        let mut out = Vec::with_capacity(lens.iter().sum::<usize>() * h);
        for &i in rows {
            out.extend(raw[self.offsets[i] * h..self.offsets[i + 1] * h].iter().map(|v| v.to_f32()));
        }
        (out, lens)
    }

    /// Embeddings of every row with the top layers of `tuned`, in chunks,
    /// on `threads` threads.
    pub fn embed_all(
        &self,
        tuned: &cpu::Bert,
        threads: usize,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<Vec<f32>> {
        let top = TopLayers::of(tuned, tuned.dims.layers - self.from);
        let h = self.hidden;
        let n = self.rows();
        let mut out = vec![0f32; n * h];
        let all: Vec<usize> = (0..n).collect();
        for (a, b) in chunks(&self.offsets, &all) {
            if cancel.load(Ordering::SeqCst) {
                bail!("cancelled");
            }
            let rows: Vec<usize> = (a..b).collect();
            let (st, lens) = self.gather(&rows);
            let e = top.embed(&st, &lens, threads);
            out[a * h..b * h].copy_from_slice(&e);
            progress(b, n);
        }
        Ok(out)
    }
}
