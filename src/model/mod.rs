//! The model: the candle encoder, the embedding cache, the classifier head.

pub mod assets;
pub mod bert;
pub mod cache;
pub mod cpu;
pub mod encoder;
pub mod family;
pub mod finetune;
pub mod head;
pub mod states;
pub mod train;

pub use cache::{Cache, Matrix};
pub use encoder::{choose_device, device, device_name, label_prompt, model_hash, Encoder};
pub use head::{Head, HeadConfig};

use anyhow::{anyhow, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Threads for CPU work: `LABELREST_THREADS`, else the machine's cores.
pub fn threads() -> usize {
    std::env::var("LABELREST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Embeds `texts` through the cache `emb-<key>` in `dir`: rows already
/// there are not embedded again, and a crash loses at most one batch.
/// `progress(stage, done, total)` follows the work; `cancel` stops it.
/// Returns the embeddings and the number of damaged cached rows that were
/// embedded again (see `Cache::open`).
pub fn embed_cached(
    dir: &Path,
    key: &str,
    encoder: &Encoder,
    texts: &[&str],
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<(Matrix, usize)> {
    // The encoder L2-normalises every vector (see `encoder`).
    let mut cache = Cache::open(dir, key, texts.len(), encoder.dim, true)?;
    let repaired = cache.repaired;
    let missing = cache.missing();
    embed_rows(&mut cache, encoder, texts, &missing, progress, cancel)?;
    Ok((cache.load()?, repaired))
}

/// Embeds the rows `rows` of `texts` into an open cache, a chunk at a time
/// so that progress and the cache advance together; `progress` counts
/// every row of the cache that is done.
pub fn embed_rows(
    cache: &mut Cache,
    encoder: &Encoder,
    texts: &[&str],
    rows: &[usize],
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<()> {
    let todo: Vec<usize> = rows.iter().copied().filter(|&i| !cache.is_done(i)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let total = texts.len();
    let mut done = total - cache.missing().len();
    progress("embedding", done, total);
    for chunk in todo.chunks(2048) {
        let sub: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let ids = encoder.tokenize(&sub)?;
        encoder.embed_ids(&ids, |idx, vecs| {
            if cancel.load(Ordering::SeqCst) {
                return Err(anyhow!("cancelled"));
            }
            let rows: Vec<usize> = idx.iter().map(|&j| chunk[j]).collect();
            cache.write(&rows, vecs)?;
            done += rows.len();
            progress("embedding", done, total);
            Ok(())
        })?;
    }
    Ok(())
}
