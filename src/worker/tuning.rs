//! The encoder fine-tune behind the head: one job that owns its thread and
//! its cancel flag (as gitui's async jobs do), the schedule that decides
//! when the next one starts, and the check that decides whether its
//! encoder replaces the current one.
//!
//! Schedule: from `first_at` labels on, a fine-tune starts whenever none
//! is running (or waiting to be checked) and at least one batch of new
//! labels arrived since the last one started; so a slow device never
//! queues fine-tunes it cannot finish, and a fast one fine-tunes after
//! every batch. The head keeps refreshing after every batch meanwhile.
//!
//! Check: a fine-tuned encoder is judged on the labels the person gave
//! after it started (which it has not seen; at least `CHECK_LABELS` of
//! them), with a head trained on the labels it saw, against the current
//! encoder: it replaces the current one unless it is worse there beyond
//! chance (`REJECT_P`). Until enough such labels arrive it waits; one that
//! does worse on fewer than `CHECK_MORE` waits for that many. The
//! held-out test split is never used to decide.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::pipeline::{eligible, Prepared};
use super::{Event, Slot};
use crate::learn::Engine;
use crate::model::finetune::{self, FinetuneConfig, Mode};
use crate::model::states::States;
use crate::model::{self, train, Cache, Encoder, Head, Matrix};
use crate::store::Session;

/// Labels before the first fine-tune: at least 20, and one per class up to
/// `ONE_PER_CLASS_UP_TO` classes, two per class above (docs/RESULTS.md,
/// "When the first fine-tune starts": from one label a class, TREC fine's
/// 50 classes gained 3.4 points at 150 labels and 20 at 100; the 77 intents
/// of anote_banking lost 2 points at 150, as banking77 did before).
pub fn min_labels(classes: usize) -> usize {
    20.max(if classes <= ONE_PER_CLASS_UP_TO { classes } else { 2 * classes })
}
/// Label sets up to this size fine-tune from one label a class.
pub const ONE_PER_CLASS_UP_TO: usize = 50;
/// Labels before the first fine-tune: `--ft-from` where given, else `min_labels`.
pub fn first_at(classes: usize, o: &crate::store::FinetuneOverrides) -> usize {
    o.from.unwrap_or_else(|| min_labels(classes)).max(1)
}
/// Unseen labels a fine-tuned encoder is checked on.
pub const CHECK_LABELS: usize = 5;
/// Unseen labels a fine-tuned encoder that did worse on the first
/// `CHECK_LABELS` waits for before its verdict. (`simulate` judges at a
/// batch's end: with its default batch of ten, on ten or more, where this
/// changes nothing; a smaller `--batch` waits as the workstation does.)
pub const CHECK_MORE: usize = 10;
/// A fine-tuned encoder is kept out when the rows it gets wrong and the
/// current one right outnumber the reverse beyond chance (one-sided sign
/// test at this level). The newest labels are the hardest rows (the
/// strategy picked them), so accuracy on them is noisy: requiring the new
/// encoder to be strictly better there kept out most of those that help
/// (`simulate --swap-always` swaps every one in: scripts/results.sh part 3).
pub const REJECT_P: f64 = 0.05;

/// A fine-tuned encoder with every row embedded by it.
pub struct Candidate {
    pub dir: PathBuf,
    pub encoder: Encoder,
    pub emb: Matrix,
    /// The (pool index, label) pairs it learnt from.
    pub seen: Vec<(usize, u32)>,
    pub method: Mode,
    /// The person was told it waits for labels to be checked on.
    pub told: bool,
    /// Its engine and label prompts, once built for a check (kept while a
    /// `Doubt` waits for more labels: the embeddings moved into it).
    pub built: Option<(Engine, Vec<String>)>,
    /// It did worse on its first check (`Verdict::Doubt`): the next one
    /// waits for `CHECK_MORE` unseen labels.
    pub doubted: bool,
}

/// What became of a candidate.
#[derive(Debug)]
pub enum Verdict {
    /// Better or as good on labels it has not seen: it replaces the encoder.
    Swap { new: f64, old: f64, on: usize },
    /// Worse: deleted.
    Keep { new: f64, old: f64, on: usize },
    /// Too few unseen labels yet to check it.
    Wait { have: usize },
    /// Worse on the few unseen labels there are (fewer than `CHECK_MORE`),
    /// not beyond chance: judged again once `CHECK_MORE` have come, rather
    /// than swapped in on labels that say it is worse.
    Doubt { new: f64, old: f64, on: usize },
}

/// The fine-tune job of a worker.
pub struct Tuner {
    handle: Option<std::thread::JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
    /// True from a start until the thread has ended (with a candidate or not).
    running: Arc<AtomicBool>,
    /// Labels when the last fine-tune started.
    pub last_start: usize,
    /// A finished fine-tune waiting for enough unseen labels to be checked.
    pub waiting: Option<Candidate>,
}

/// A worker that stops (an error: it starts again with a new `Tuner`)
/// stops its fine-tune too: never two at once, nor one whose end no one waits for.
impl Drop for Tuner {
    fn drop(&mut self) {
        self.cancel();
        self.join();
    }
}

impl Default for Tuner {
    fn default() -> Self {
        Tuner {
            handle: None,
            cancel: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicBool::new(false)),
            last_start: 0,
            waiting: None,
        }
    }
}

impl Tuner {
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Busy: running, or a candidate waits to be checked.
    pub fn busy(&self) -> bool {
        self.running() || self.waiting.is_some()
    }

    /// The schedule: whether a fine-tune should start with `labels` labels,
    /// the first from `first` labels on (`first_at`).
    pub fn due(&self, labels: usize, batch: usize, first: usize) -> bool {
        !self.busy() && labels >= first && labels >= self.last_start + batch.max(1)
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Waits for the thread (after a cancel, or when it has finished).
    pub fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    /// Starts a fine-tune of the base encoder on the labels so far, on its
    /// own thread; its encoder arrives in the slot as a `Candidate`.
    pub(crate) fn start(
        &mut self,
        session: &Session,
        p: &Prepared,
        slot: Arc<(Mutex<Slot>, Condvar)>,
        events: Sender<Event>,
    ) -> Result<usize> {
        if self.running() {
            bail!("a fine-tune is already running");
        }
        self.join();
        let settings = session.settings()?;
        let method = settings.mode.method().unwrap_or(Mode::Auto.method().unwrap_or(Mode::Contrastive));
        let (pairs, _, _) = eligible(session, p)?;
        let classes: HashSet<u32> = pairs.iter().map(|p| p.1).collect();
        if pairs.len() < 2 || (method == Mode::Contrastive && classes.len() < 2) {
            bail!("label a few rows of at least two labels first");
        }
        let rows = session.rows()?;
        let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
        let pool_rows = p.engine.pool_rows.clone();
        let head = Head::load(&session.head_path(&p.model_hash)).unwrap_or_else(|e| {
            tracing::warn!("the fine-tune starts from the zero-shot head: the saved model cannot be read ({e:#})");
            p.engine.zero_shot_head()
        });
        let base_dir = model::assets::model_dir(&settings.model);
        let (device, _) = model::choose_device(settings.device)?;
        let dir = session.dir.clone();
        let mut cfg = FinetuneConfig::for_mode(method).with(&settings.finetune);
        cfg.seed = settings.seed ^ pairs.len() as u64;
        let n = pairs.len();
        self.cancel = Arc::new(AtomicBool::new(false));
        self.running.store(true, Ordering::SeqCst);
        self.last_start = n;
        let (cancel, running) = (self.cancel.clone(), self.running.clone());
        let h = std::thread::Builder::new().name("labelrest-finetune".into()).spawn(move || {
            let say = |text: String| {
                let _ = events.send(Event::FineTune { running: true, text });
            };
            // A panic (a bug) ends it as a failure: the person is told, and
            // the next fine-tune can start.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::panic_at("finetune");
                run_finetune(&dir, &base_dir, &device, &texts, &pool_rows, &pairs, &head, method, &cfg, &say, &cancel)
            }))
            .unwrap_or_else(|p| Err(anyhow::anyhow!("internal error: {} (the log has the details)", super::panic_text(&p))));
            match result {
                Ok(c) => {
                    let (m, cv) = &*slot;
                    let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                    s.candidate = Some(c);
                    running.store(false, Ordering::SeqCst);
                    cv.notify_one();
                }
                Err(e) => {
                    let msg = if cancel.load(Ordering::SeqCst) {
                        "fine-tune cancelled; the current model stays".to_string()
                    } else {
                        format!("fine-tune failed: {e:#}")
                    };
                    tracing::warn!("{msg}");
                    running.store(false, Ordering::SeqCst);
                    let _ = events.send(Event::FineTune { running: false, text: msg });
                }
            }
        })?;
        self.handle = Some(h);
        Ok(n)
    }
}

/// The fine-tune itself (on its thread): train, embed every row with the
/// new encoder, save it as a model folder with its embedding cache.
#[allow(clippy::too_many_arguments)]
fn run_finetune(
    dir: &std::path::Path,
    base_dir: &std::path::Path,
    device: &candle_core::Device,
    texts: &[String],
    pool_rows: &[usize],
    pairs: &[(usize, u32)],
    head: &Head,
    method: Mode,
    cfg: &FinetuneConfig,
    say: &dyn Fn(String),
    cancel: &AtomicBool,
) -> Result<Candidate> {
    let t0 = Instant::now();
    let base = Encoder::load(base_dir, device).with_context(|| format!("loading the encoder from {}", base_dir.display()))?;
    let out = crate::store::new_encoder_dir(dir, method.name());
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let y: Vec<u32> = pairs.iter().map(|&(_, l)| l).collect();
    let threads = model::threads();
    let (encoder, emb) = match base.cpu_bert() {
        Some(bert) => {
            // CPU: the frozen layers' states of every row (computed once per
            // session and kept), then only the top layers train and run.
            let from = bert.dims.layers - cfg.train_layers.clamp(1, bert.dims.layers);
            let ids = base.tokenize(&refs)?;
            let states = States::cached(
                dir,
                &base.hash,
                bert,
                &ids,
                from,
                threads,
                &mut |d, n| say(format!("fine-tune: preparing {d}/{n}")),
                cancel,
            )?;
            let rows: Vec<usize> = pairs.iter().map(|&(i, _)| pool_rows[i]).collect();
            let inp = train::Inputs::from_states(&states, &rows);
            let t_train = Instant::now();
            let (tuned, _) = train::finetune_from(
                bert,
                inp,
                &y,
                head,
                method,
                cfg,
                threads,
                &mut |step, steps, loss| {
                    let left = t_train.elapsed().as_secs_f64() / step as f64 * (steps - step) as f64;
                    say(format!("fine-tune {step}/{steps} ~{left:.0}s · loss {loss:.3}, then re-embedding"))
                },
                cancel,
            )?;
            let t_emb = Instant::now();
            let emb = states.embed_all(
                &tuned,
                threads,
                &mut |d, n| {
                    let left = t_emb.elapsed().as_secs_f64() / d.max(1) as f64 * (n - d) as f64;
                    say(format!("fine-tune: re-embedding {d}/{n} ~{left:.0}s"))
                },
                cancel,
            )?;
            // Saved as a model folder (for resume and `predict`) with its cache.
            std::fs::create_dir_all(&out)?;
            model::family::write_folder_files(base_dir, &out)?;
            let tmp = out.join("model.safetensors.tmp");
            tuned.save(&tmp)?;
            std::fs::rename(&tmp, out.join("model.safetensors"))?;
            let hash = model::model_hash(&out)?;
            let mut cache = Cache::open(dir, &hash, texts.len(), tuned.dims.hidden, true)?;
            let all: Vec<usize> = (0..texts.len()).collect();
            cache.write(&all, &emb)?;
            let m = cache.load()?;
            (Encoder::from_cpu(tuned, &base, &out, hash), m)
        }
        None => {
            // CUDA: candle's trainable BERT, then the whole encoder embeds again.
            let lt: Vec<&str> = pairs.iter().map(|&(i, _)| refs[pool_rows[i]]).collect();
            let vars = finetune::finetune(
                base_dir,
                device,
                &base,
                &lt,
                &y,
                head,
                method,
                cfg,
                &mut |step, steps, loss| {
                    let left = t0.elapsed().as_secs_f64() / step as f64 * (steps - step) as f64;
                    say(format!("fine-tune {step}/{steps} ~{left:.0}s · loss {loss:.3}, then re-embedding"))
                },
                cancel,
            )?;
            model::bert::save_model_dir(&vars, base_dir, &out)?;
            let encoder = Encoder::load(&out, device)?;
            let (m, _) = model::embed_cached(
                dir,
                &encoder.hash.clone(),
                &encoder,
                &refs,
                &mut |_, d, n| say(format!("fine-tune: re-embedding {d}/{n}")),
                cancel,
            )?;
            (encoder, m)
        }
    };
    tracing::info!("fine-tune ({}) on {} labels: {:.1}s", method.name(), pairs.len(), t0.elapsed().as_secs_f64());
    Ok(Candidate { dir: out, encoder, emb, seen: pairs.to_vec(), method, told: false, built: None, doubted: false })
}

/// The engine a candidate's encoder gives (same rows, label prompts embedded by it).
pub fn candidate_engine(session: &Session, p: &Prepared, c: &mut Candidate) -> Result<(Engine, Vec<String>)> {
    let labels = session.label_set()?;
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    if let Some((mut engine, built)) = c.built.take() {
        // Built for an earlier check: a description edited since is embedded again.
        if built != prompts {
            engine.label_emb = c.encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
        }
        return Ok((engine, prompts));
    }
    let label_emb = c.encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let e = &p.engine;
    let emb = std::mem::replace(&mut c.emb, Matrix::owned(Vec::new(), e.dim));
    Ok((Engine::new(Arc::new(emb), e.pool_rows.clone(), e.test_rows.clone(), e.test_gold.clone(), label_emb, e.k, e.cfg.clone())?, prompts))
}

/// Judges a candidate engine against the current one on the labels given
/// since the candidate started (`now` are the current labels).
pub fn judge(current: &Engine, candidate: &Engine, seen: &[(usize, u32)], now: &[(usize, u32)]) -> Result<Verdict> {
    let seen_rows: HashSet<usize> = seen.iter().map(|p| p.0).collect();
    let unseen: Vec<(usize, u32)> = now.iter().filter(|p| !seen_rows.contains(&p.0)).copied().collect();
    // What it learnt from, with the labels as they are now (a relabel counts).
    let train: Vec<(usize, u32)> = now.iter().filter(|p| seen_rows.contains(&p.0)).copied().collect();
    if unseen.len() < CHECK_LABELS {
        return Ok(Verdict::Wait { have: unseen.len() });
    }
    let old_right = current.holdout_right(&train, &unseen)?;
    let new_right = candidate.holdout_right(&train, &unseen)?;
    let acc = |v: &[bool]| v.iter().filter(|&&r| r).count() as f64 / v.len() as f64;
    let (old, new) = (acc(&old_right), acc(&new_right));
    // Where the two disagree: rows only the current one gets right, and rows only the new one does.
    let worse = old_right.iter().zip(&new_right).filter(|(o, n)| **o && !**n).count();
    let better = old_right.iter().zip(&new_right).filter(|(o, n)| !**o && **n).count();
    Ok(verdict(worse, better, new, old, unseen.len()))
}

/// The verdict on a candidate from the check labels (`on` of them) where
/// the two encoders disagree: `worse` rows only the current one gets right,
/// `better` rows only the candidate does; `new` and `old` their accuracies.
fn verdict(worse: usize, better: usize, new: f64, old: f64, on: usize) -> Verdict {
    if crate::learn::sign_test(worse, better) < REJECT_P {
        Verdict::Keep { new, old, on }
    } else if worse > better && on < CHECK_MORE {
        Verdict::Doubt { new, old, on }
    } else {
        Verdict::Swap { new, old, on }
    }
}

/// The file in a waiting candidate's folder that lets the session, opened
/// again, judge it rather than throw it away.
pub(crate) const WAITING: &str = "waiting.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Waiting {
    /// The (row id, label) pairs it learnt from.
    seen: Vec<(i64, u32)>,
    method: Mode,
    doubted: bool,
    /// The base encoder it was tuned from.
    base: String,
}

/// Notes in its folder that `c` waits to be judged (and whether it was
/// doubted), so that quitting meanwhile does not lose it. Best effort: a
/// candidate that cannot be noted is only lost on quitting, as before.
pub fn remember(session: &Session, p: &Prepared, c: &Candidate) {
    let r = (|| -> Result<()> {
        let base = model::model_hash(&model::assets::model_dir(&session.settings()?.model))?;
        let w = Waiting { seen: c.seen.iter().map(|&(i, l)| (p.pool_ids[i], l)).collect(), method: c.method, doubted: c.doubted, base };
        let tmp = c.dir.join(format!("{WAITING}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(&w)?)?;
        std::fs::rename(&tmp, c.dir.join(WAITING))?;
        Ok(())
    })();
    if let Err(e) = r {
        tracing::warn!("cannot note the fine-tuned encoder waiting in {}: {e:#}", c.dir.display());
    }
}

/// The candidate that a closed session left waiting for its check, the
/// one that learnt from the most labels, if it is whole and still fits:
/// tuned from this base encoder, on more labels than the encoder in use,
/// its embeddings of every row in its cache. `sweep` removes the others.
pub fn adopt(session: &Session, p: &Prepared) -> Option<Candidate> {
    if p.pending > 0 {
        return None;
    }
    let settings = session.settings().ok()?;
    let base = model::model_hash(&model::assets::model_dir(&settings.model)).ok()?;
    let (in_use, in_use_labels) = match session.tuned_encoder().ok()? {
        Some((d, n)) => (Some(d), n.unwrap_or(0)),
        None => (None, 0),
    };
    let rows = session.rows().ok()?.len();
    let mut found: Vec<(PathBuf, Waiting)> = std::fs::read_dir(&session.dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.is_dir() && Some(d) != in_use.as_ref())
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("encoder-")))
        .filter_map(|d| {
            let w: Waiting = serde_json::from_slice(&std::fs::read(d.join(WAITING)).ok()?).ok()?;
            (w.base == base && w.seen.len() > in_use_labels).then_some((d, w))
        })
        .collect();
    found.sort_by_key(|(_, w)| std::cmp::Reverse(w.seen.len()));
    let (dir, w) = found.into_iter().next()?;
    let r = (|| -> Result<Candidate> {
        let (device, _) = model::choose_device(settings.device)?;
        let encoder = Encoder::load(&dir, &device)?;
        if encoder.dim != p.engine.dim {
            bail!("{} dimensions, not {}", encoder.dim, p.engine.dim);
        }
        let emb = Cache::open(&session.dir, &encoder.hash, rows, encoder.dim, true)?.load()?;
        // Rows gone since (none are, today) are left out of what it saw.
        let seen: Vec<(usize, u32)> = w.seen.iter().filter_map(|(id, l)| p.id_to_pool.get(id).map(|&i| (i, *l))).collect();
        Ok(Candidate { dir: dir.clone(), encoder, emb, seen, method: w.method, told: false, built: None, doubted: w.doubted })
    })();
    match r {
        Ok(c) => {
            tracing::info!("{} waits for its check since the session was closed: judged as before", dir.display());
            Some(c)
        }
        Err(e) => {
            tracing::warn!("the fine-tuned encoder left waiting in {} cannot be used ({e:#}): removed", dir.display());
            None
        }
    }
}

/// Removes what fine-tunes that ended without a verdict left in the session
/// folder (a crash, a kill, an older candidate left waiting): `encoder-*`
/// folders other than the one in use and the one `waiting` (`adopt`'s), with their
/// embedding caches and heads, and `.encoder-*.part-PID` folders of
/// processes that are gone. Only the trainer calls it, when its run
/// starts and no fine-tune of its own is under way; followers use only the
/// folder in use. Returns the folders removed.
pub fn sweep(session: &Session, waiting: Option<&std::path::Path>) -> Result<Vec<std::path::PathBuf>> {
    let in_use = session.tuned_encoder()?.map(|(d, _)| d);
    // The caches and heads of the encoders in use are never touched (a
    // folder left behind with the same weights shares their hash).
    let mut keep: Vec<String> = Vec::new();
    let kept = |h: &str, keep: &mut Vec<String>| -> Result<bool> {
        if keep.is_empty() {
            keep.push(model::model_hash(&model::assets::model_dir(&session.settings()?.model))?);
            if let Some(d) = &in_use {
                keep.extend(model::model_hash(d).ok());
            }
        }
        Ok(keep.iter().any(|k| k == h))
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(&session.dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if !path.is_dir() || Some(&path) == in_use.as_ref() || Some(path.as_path()) == waiting {
            continue;
        }
        if name.starts_with("encoder-") {
            match model::model_hash(&path) {
                Ok(h) if !kept(&h, &mut keep)? => {
                    let _ = std::fs::remove_file(session.dir.join(format!("head-{h}.safetensors")));
                    discard(&session.dir, &path, &h);
                }
                Ok(_) => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                // Stopped before its weights were whole: nothing was cached for it.
                Err(_) => {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        } else if let Some(pid) =
            name.strip_prefix(".encoder-").and_then(|n| n.rsplit_once(".part-")).and_then(|(_, p)| p.parse::<i32>().ok())
        {
            if crate::store::pid_alive(pid) {
                continue;
            }
            let _ = std::fs::remove_dir_all(&path);
        } else {
            continue;
        }
        if path.exists() {
            tracing::warn!("cannot remove {}", path.display());
        } else {
            tracing::info!("removed {} (a fine-tune that ended without a verdict)", path.display());
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Removes a fine-tuned encoder's folder and its embedding cache.
pub fn discard(session_dir: &std::path::Path, dir: &std::path::Path, hash: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let (a, b) = Cache::paths(session_dir, hash);
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_worse_on_few_labels_waits_for_more() {
        let v = |worse, better, on| verdict(worse, better, 0.0, 0.0, on);
        // Worse on 5 (the first check), not beyond chance: judged again at 10.
        assert!(matches!(v(2, 0, 5), Verdict::Doubt { on: 5, .. }));
        assert!(matches!(v(3, 2, 9), Verdict::Doubt { .. }));
        // As good or better on the first 5: in use at once.
        assert!(matches!(v(1, 1, 5), Verdict::Swap { .. }));
        assert!(matches!(v(0, 3, 5), Verdict::Swap { .. }));
        // From 10 on, the sign test alone: swapped in unless worse beyond chance.
        assert!(matches!(v(3, 1, 10), Verdict::Swap { .. }));
        assert!(matches!(v(5, 0, 10), Verdict::Keep { .. }));
        assert!(matches!(v(5, 0, 5), Verdict::Keep { .. }), "beyond chance on 5 already");
    }

    /// `judge` with real engines on two classes along the axes: the
    /// candidate's embeddings put some unseen rows in the other class.
    /// Worse on 2 of 6 unseen labels: a doubt (judged again at 10); on 2 of
    /// 10: swapped in; on 5 of 6: kept out.
    #[test]
    fn judge_doubts_a_candidate_worse_on_few_labels() {
        use crate::learn::{EngineConfig, SelfTraining};
        let rows = |flipped: &[usize]| -> Vec<f32> {
            (0..30)
                .flat_map(|i| {
                    let t = 0.1 + 0.02 * (i % 5) as f32;
                    let class0 = (i % 2 == 0) != flipped.contains(&i);
                    let v = if class0 { [1.0, t] } else { [t, 1.0] };
                    let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
                    [v[0] / n, v[1] / n]
                })
                .collect()
        };
        let engine = |flipped: &[usize]| {
            let cfg = EngineConfig { self_training: SelfTraining::Off, ..Default::default() };
            Engine::new(Arc::new(Matrix::owned(rows(flipped), 2)), (0..30).collect(), vec![], vec![], vec![1.0, 0.0, 0.0, 1.0], 2, cfg)
                .unwrap()
        };
        let gold = |i: usize| (i, (i % 2) as u32);
        let seen: Vec<(usize, u32)> = (0..10).map(gold).collect();
        let now = |n: usize| -> Vec<(usize, u32)> { (0..10 + n).map(gold).collect() };
        let current = engine(&[]);
        let v = judge(&current, &engine(&[10, 12]), &seen, &now(6)).unwrap();
        assert!(matches!(v, Verdict::Doubt { on: 6, .. }), "{v:?}");
        let v = judge(&current, &engine(&[10, 12]), &seen, &now(10)).unwrap();
        assert!(matches!(v, Verdict::Swap { on: 10, .. }), "{v:?}");
        let v = judge(&current, &engine(&[10, 11, 12, 13, 14]), &seen, &now(6)).unwrap();
        assert!(matches!(v, Verdict::Keep { on: 6, .. }), "{v:?}");
        let v = judge(&current, &engine(&[]), &seen, &now(5)).unwrap();
        assert!(matches!(v, Verdict::Swap { on: 5, .. }), "as good: in use at once: {v:?}");
    }

    #[test]
    fn the_schedule_never_queues_a_fine_tune_behind_another() {
        let mut t = Tuner::default();
        let first = |k: usize| first_at(k, &Default::default());
        assert!(!t.due(19, 10, first(6)), "not before 20 labels");
        assert!(t.due(20, 10, first(6)));
        assert!(!t.due(100, 10, first(77)) && t.due(154, 10, first(77)), "two labels a class first on many classes");
        assert!(!t.due(49, 10, first(50)) && t.due(50, 10, first(50)), "one a class up to 50 classes");
        assert!(t.due(20, 10, first(11)) && !t.due(20, 10, first(21)), "and never before 20");
        let from = |n: usize| crate::store::FinetuneOverrides { from: Some(n), ..Default::default() };
        assert!(t.due(100, 10, first_at(77, &from(100))) && !t.due(39, 10, first_at(6, &from(40))), "--ft-from");
        // One runs: nothing else starts, however many labels arrive.
        t.running.store(true, Ordering::SeqCst);
        t.last_start = 20;
        assert!(!t.due(30, 10, first(6)) && !t.due(200, 10, first(6)));
        // It ended: the next starts once a batch has arrived since the last start.
        t.running.store(false, Ordering::SeqCst);
        assert!(!t.due(29, 10, first(6)));
        assert!(t.due(30, 10, first(6)));
        // A batch of one (a GPU's every batch) starts on every new label.
        assert!(t.due(21, 1, first(6)));
    }
}
