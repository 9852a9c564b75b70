//! The background worker: one thread that embeds, trains, predicts and
//! ranks on requests from the UI, and sends back progress and results.
//!
//! Requests coalesce as in gitui's `AsyncSingleJob`: one job runs, at most
//! one waits, and a newer request replaces the waiting one.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::learn::{self, Engine, EngineConfig, Scores, SelfTraining, Strategy};
use crate::model::finetune::{self, FinetuneConfig, Mode};
use crate::model::{self, Encoder, Head, Matrix};
use crate::store::{Prediction, Session, Settings, Source, Split};

/// The bundled assets folder: `LABELREST_ASSETS`, else `assets` beside the
/// current folder or above the executable, else the source tree's.
pub fn assets_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LABELREST_ASSETS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("assets");
    if here.join("models").is_dir() {
        return here;
    }
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            let a = anc.join("assets");
            if a.join("models").is_dir() {
                return a;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

pub const BUNDLED_MODEL: &str = "all-MiniLM-L6-v2";

/// The model folder a setting names ("" or "bundled" is the bundled encoder).
pub fn model_dir(setting: &str) -> PathBuf {
    if setting.is_empty() || setting == "bundled" {
        assets_dir().join("models").join(BUNDLED_MODEL)
    } else {
        PathBuf::from(setting)
    }
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Work in progress: stage ("embedding", "training", ...), done, total.
    Progress { stage: String, done: usize, total: usize },
    /// A new model's view of the pool.
    Update(Arc<Update>),
    /// The worker has nothing to do.
    Idle,
    /// A job failed; the last good model stays in use.
    Error(String),
    /// The encoder fine-tune behind the head refreshes: whether one runs,
    /// and its progress or outcome.
    FineTune { running: bool, text: String },
    /// Something the person should know (shown in the status line).
    Notice(String),
}

/// One iteration's results, ready for the UI.
#[derive(Debug)]
pub struct Update {
    /// Iteration id (0 for the zero-shot start).
    pub iteration: i64,
    pub n_labels: usize,
    pub scores: Scores,
    /// Pool indices, most useful first (unlabelled rows at the time).
    pub ranking: Vec<u32>,
    pub record: IterationRecord,
}

/// What the side panel shows of an iteration (also stored as JSON).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct IterationRecord {
    pub iteration: i64,
    pub labels: usize,
    pub per_class: Vec<usize>,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    pub macro_precision: Option<f64>,
    pub macro_recall: Option<f64>,
    pub test_per_class: Vec<(u32, f64, f64, f64, usize)>,
    /// Of the person's decisions on the previous model's predictions: how many kept the prediction.
    pub kept: Option<usize>,
    pub decided: Option<usize>,
    pub mean_entropy: f64,
    pub predicted_counts: Vec<usize>,
    pub pseudo_labels: usize,
    pub train_ms: f64,
    pub predict_ms: f64,
    pub rank_ms: f64,
    pub total_ms: f64,
    pub strategy: String,
    pub mode: String,
}

impl IterationRecord {
    pub fn kept_rate(&self) -> Option<f64> {
        match (self.kept, self.decided) {
            (Some(k), Some(d)) if d > 0 => Some(k as f64 / d as f64),
            _ => None,
        }
    }
}

/// A job for the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Train on the stored labels, predict, rank with this strategy.
    Retrain { strategy: Strategy },
    /// Fine-tune the encoder now (beside the head refreshes).
    FineTune,
    /// Cancel the running fine-tune.
    CancelFineTune,
}

#[derive(Default)]
struct Slot {
    pending: Option<Job>,
    shutdown: bool,
    /// A fine-tune was asked for.
    finetune: bool,
    /// A finished fine-tune, to be checked and maybe swapped in.
    candidate: Option<Candidate>,
}

/// A fine-tuned encoder with the pool embedded by it.
struct Candidate {
    dir: PathBuf,
    encoder: Encoder,
    emb: Matrix,
    labels: usize,
    mode: Mode,
}

/// The UI's handle on the worker thread.
pub struct Worker {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    cancel: Arc<AtomicBool>,
    finetune_cancel: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker on a session: it opens its own connection, loads
    /// the encoder, embeds what the cache lacks, then sends the model's view
    /// (the saved head's, or zero-shot) and waits for jobs.
    pub fn start(session: &Session, events: Sender<Event>) -> Result<Worker> {
        let conn = session.reopen_shared()?;
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let cancel = Arc::new(AtomicBool::new(false));
        let finetune_cancel = Arc::new(AtomicBool::new(false));
        let (s2, c2, f2) = (slot.clone(), cancel.clone(), finetune_cancel.clone());
        let handle = std::thread::Builder::new().name("labelrest-worker".into()).spawn(move || {
            if let Err(e) = run(conn, s2, c2, f2, &events) {
                tracing::error!("worker: {e:#}");
                let _ = events.send(Event::Error(format!("{e:#}")));
            }
        })?;
        Ok(Worker { slot, cancel, finetune_cancel, handle: Some(handle) })
    }

    /// Asks for an encoder fine-tune now (it runs beside the head refreshes).
    pub fn request_finetune(&self) {
        let (m, cv) = &*self.slot;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        self.finetune_cancel.store(false, Ordering::SeqCst);
        s.finetune = true;
        cv.notify_one();
    }

    /// Cancels a running fine-tune; labels are untouched and the current model stays.
    pub fn cancel_finetune(&self) {
        self.finetune_cancel.store(true, Ordering::SeqCst);
    }

    /// Asks for a job; a retrain replaces any retrain still waiting.
    pub fn request(&self, job: Job) {
        match job {
            Job::FineTune => return self.request_finetune(),
            Job::CancelFineTune => return self.cancel_finetune(),
            Job::Retrain { .. } => {}
        }
        let (m, cv) = &*self.slot;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.pending = Some(job);
        cv.notify_one();
    }

    /// Stops the worker (cancelling long work) and waits for it.
    pub fn shutdown(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.finetune_cancel.store(true, Ordering::SeqCst);
        {
            let (m, cv) = &*self.slot;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            s.shutdown = true;
            cv.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn engine_config(settings: &Settings) -> Result<EngineConfig> {
    Ok(EngineConfig { self_training: SelfTraining::parse(&settings.self_training)?, ..Default::default() })
}

/// Everything the worker keeps between jobs.
pub struct Prepared {
    pub engine: Engine,
    /// Pool row ids in pool order.
    pub pool_ids: Vec<i64>,
    pub id_to_pool: HashMap<i64, usize>,
    pub model_hash: String,
    pub encoder: Encoder,
    /// The label prompts whose embeddings the engine holds.
    pub prompts: Vec<String>,
    /// Damaged rows found in the embedding cache and embedded again.
    pub repaired: usize,
}

impl Prepared {
    /// Re-embeds the label prompts when a label's description changed.
    pub fn refresh_prompts(&mut self, session: &Session) -> Result<bool> {
        let labels = session.label_set()?;
        let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
        if prompts == self.prompts {
            return Ok(false);
        }
        self.engine.label_emb = self.encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
        self.prompts = prompts;
        Ok(true)
    }
}

/// Loads the encoder, fills the embedding cache (only the missing rows),
/// maps it, and builds the learning engine for a session.
pub fn prepare(session: &Session, progress: &mut dyn FnMut(&str, usize, usize), cancel: &AtomicBool) -> Result<Prepared> {
    let settings = session.settings()?;
    let dir = encoder_dir(session)?;
    let dev = model::device(&settings.device)?;
    progress("loading model", 0, 1);
    let encoder = Encoder::load(&dir, &dev).with_context(|| format!("loading the encoder from {}", dir.display()))?;
    let rows = session.rows()?;
    let labels = session.label_set()?;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let (emb, repaired) = model::embed_cached(&session.dir, &encoder.hash, &encoder, &texts, progress, cancel)?;
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    let label_emb = encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let mut pool_rows = Vec::new();
    let mut pool_ids = Vec::new();
    let mut test_rows = Vec::new();
    let mut test_gold = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match r.split {
            Split::Pool => {
                pool_rows.push(i);
                pool_ids.push(r.id);
            }
            Split::Test => {
                if let Some(g) = r.gold {
                    test_rows.push(i);
                    test_gold.push(g);
                }
            }
        }
    }
    let id_to_pool = pool_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let engine = Engine::new(Arc::new(emb), pool_rows, test_rows, test_gold, label_emb, labels.len(), engine_config(&settings)?)?;
    Ok(Prepared { engine, pool_ids, id_to_pool, model_hash: encoder.hash.clone(), encoder, prompts, repaired })
}

/// The encoder a session uses: its fine-tuned one when a fine-tune was
/// swapped in (and is still there), else the model of its settings.
pub fn encoder_dir(session: &Session) -> Result<PathBuf> {
    if let Some(name) = session.meta("encoder")? {
        let d = session.dir.join(&name);
        if d.join("model.safetensors").exists() {
            return Ok(d);
        }
        tracing::warn!("fine-tuned encoder {} is missing; using the base model", d.display());
    }
    Ok(model_dir(&session.settings()?.model))
}

fn run(
    session: Session,
    slot: Arc<(Mutex<Slot>, Condvar)>,
    cancel: Arc<AtomicBool>,
    finetune_cancel: Arc<AtomicBool>,
    events: &Sender<Event>,
) -> Result<()> {
    let t = Instant::now();
    let mut progress = |stage: &str, done: usize, total: usize| {
        let _ = events.send(Event::Progress { stage: stage.to_string(), done, total });
    };
    let mut prepared = match prepare(&session, &mut progress, &cancel) {
        Ok(p) => p,
        Err(e) if cancel.load(Ordering::SeqCst) => {
            tracing::info!("worker cancelled while preparing: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    tracing::info!("worker ready in {:?}", t.elapsed());
    if prepared.repaired > 0 {
        let _ = events.send(Event::Notice(format!("the embedding cache had {} damaged rows: embedded them again", prepared.repaired)));
    }
    // The first view: the saved head's when there is one, else a fresh iteration.
    let settings = session.settings()?;
    let strategy = Strategy::parse(&settings.strategy).unwrap_or(Strategy::Margin);
    let mut head_path = session.dir.join(format!("head-{}.safetensors", prepared.model_hash));
    let first = match Head::load(&head_path) {
        Ok(h) if h.k == prepared.engine.k && h.dim == prepared.engine.dim => resume_update(&session, &prepared, &h, strategy),
        _ => iterate(&session, &prepared, strategy, &head_path, &mut progress),
    };
    match first {
        Ok(u) => {
            let _ = events.send(Event::Update(Arc::new(u)));
        }
        Err(e) => {
            let _ = events.send(Event::Error(format!("{e:#}")));
        }
    }
    let _ = events.send(Event::Idle);
    let mut finetuning: Option<std::thread::JoinHandle<()>> = None;
    // True from the start of a fine-tune until its outcome is known.
    let finetune_active = Arc::new(AtomicBool::new(false));
    let mut last_finetune_labels = 0usize;
    loop {
        let (job, want_finetune, candidate) = {
            let (m, cv) = &*slot;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            while s.pending.is_none() && !s.finetune && s.candidate.is_none() && !s.shutdown {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.shutdown {
                drop(s);
                if let Some(h) = finetuning.take() {
                    let _ = h.join();
                }
                return Ok(());
            }
            (s.pending.take(), std::mem::take(&mut s.finetune), s.candidate.take())
        };
        if let Some(c) = candidate {
            finetuning.take().map(|h| h.join());
            finetune_active.store(false, Ordering::SeqCst);
            match swap_in(&session, &mut prepared, c, strategy_of(&session), &mut progress) {
                Ok((msg, update)) => {
                    let _ = events.send(Event::FineTune { running: false, text: msg });
                    if let Some(u) = update {
                        head_path = session.dir.join(format!("head-{}.safetensors", prepared.model_hash));
                        let _ = events.send(Event::Update(Arc::new(u)));
                    }
                }
                Err(e) => {
                    tracing::error!("fine-tune check failed: {e:#}");
                    let _ = events.send(Event::Error(format!("fine-tune check failed: {e:#}")));
                }
            }
        }
        let mut start_finetune = want_finetune;
        if let Some(Job::Retrain { strategy }) = job {
            match prepared.refresh_prompts(&session).and_then(|_| iterate(&session, &prepared, strategy, &head_path, &mut progress)) {
                Ok(u) => {
                    // In a fine-tuning mode, a fine-tune follows every 50 new labels (from 20 on).
                    let mode = Mode::parse(&session.settings()?.mode).unwrap_or(Mode::Head);
                    if mode != Mode::Head && u.n_labels >= 20 && u.n_labels >= last_finetune_labels + 50 {
                        start_finetune = true;
                    }
                    let _ = events.send(Event::Update(Arc::new(u)));
                }
                Err(e) => {
                    tracing::error!("retrain failed: {e:#}");
                    let _ = events.send(Event::Error(format!("retrain failed: {e:#}")));
                }
            }
        }
        if start_finetune {
            if finetune_active.load(Ordering::SeqCst) {
                let _ = events.send(Event::FineTune { running: true, text: "a fine-tune is already running".into() });
            } else {
                // A finished fine-tune's thread may still be on its way out.
                finetuning.take().map(|h| h.join());
                finetune_active.store(true, Ordering::SeqCst);
                match start_finetune_thread(
                    &session,
                    &prepared,
                    slot.clone(),
                    finetune_cancel.clone(),
                    finetune_active.clone(),
                    events.clone(),
                ) {
                    Ok((h, n)) => {
                        last_finetune_labels = n;
                        finetuning = Some(h);
                    }
                    Err(e) => {
                        finetune_active.store(false, Ordering::SeqCst);
                        let _ = events.send(Event::FineTune { running: false, text: format!("no fine-tune: {e:#}") });
                    }
                }
            }
        }
        let _ = events.send(Event::Idle);
    }
}

fn strategy_of(session: &Session) -> Strategy {
    session.settings().ok().and_then(|s| Strategy::parse(&s.strategy).ok()).unwrap_or(Strategy::Margin)
}

/// Starts a fine-tune of the base encoder on the labels so far, on its own
/// thread; when done, it leaves a `Candidate` in the slot. Returns the thread
/// and the number of labels it learns from.
fn start_finetune_thread(
    session: &Session,
    p: &Prepared,
    slot: Arc<(Mutex<Slot>, Condvar)>,
    cancel: Arc<AtomicBool>,
    active: Arc<AtomicBool>,
    events: Sender<Event>,
) -> Result<(std::thread::JoinHandle<()>, usize)> {
    let settings = session.settings()?;
    let mode = match Mode::parse(&settings.mode)? {
        Mode::Head => Mode::Finetune,
        m => m,
    };
    let (pairs, _, _) = eligible(session, p)?;
    if pairs.len() < 2 {
        anyhow::bail!("label a few rows first");
    }
    let rows = session.rows()?;
    let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
    let train_texts: Vec<String> = pairs.iter().map(|&(i, _)| texts[p.engine.pool_rows[i]].clone()).collect();
    let train_labels: Vec<u32> = pairs.iter().map(|&(_, l)| l).collect();
    let head = match Head::load(&session.dir.join(format!("head-{}.safetensors", p.model_hash))) {
        Ok(h) => h,
        Err(_) => p.engine.zero_shot_head(),
    };
    let base = model_dir(&settings.model);
    let device = model::device(&settings.device)?;
    let dir = session.dir.clone();
    let overrides = settings.finetune.clone();
    let n = pairs.len();
    let h = std::thread::Builder::new().name("labelrest-finetune".into()).spawn(move || {
        let t0 = Instant::now();
        let result = (|| -> Result<Candidate> {
            let tokenizer = Encoder::load(&base, &device)?;
            let cfg = FinetuneConfig::for_mode(mode).with(&overrides);
            let lt: Vec<&str> = train_texts.iter().map(|s| s.as_str()).collect();
            let vars = finetune::finetune(
                &base,
                &device,
                &tokenizer,
                &lt,
                &train_labels,
                &head,
                mode,
                &cfg,
                &mut |step, steps, loss| {
                    let left = t0.elapsed().as_secs_f64() / step as f64 * (steps - step) as f64;
                    let _ = events
                        .send(Event::FineTune { running: true, text: format!("fine-tune {step}/{steps} loss {loss:.3} ~{left:.0}s left") });
                },
                &cancel,
            )?;
            let name = format!("encoder-{}-{}", mode.name(), chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let out = dir.join(&name);
            model::bert::save_model_dir(&vars, &base, &out)?;
            let encoder = Encoder::load(&out, &device)?;
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let (emb, _) = model::embed_cached(
                &dir,
                &encoder.hash,
                &encoder,
                &refs,
                &mut |_, done, total| {
                    if done % 512 < 64 || done == total {
                        let _ = events.send(Event::FineTune {
                            running: true,
                            text: format!("re-embedding with the fine-tuned encoder {done}/{total}"),
                        });
                    }
                },
                &cancel,
            )?;
            Ok(Candidate { dir: out, encoder, emb, labels: n, mode })
        })();
        match result {
            Ok(c) => {
                let (m, cv) = &*slot;
                let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                s.candidate = Some(c);
                cv.notify_one();
            }
            Err(e) => {
                let msg = if cancel.load(Ordering::SeqCst) {
                    "fine-tune cancelled; the current model stays".to_string()
                } else {
                    format!("fine-tune failed: {e:#}")
                };
                tracing::warn!("{msg}");
                active.store(false, Ordering::SeqCst);
                let _ = events.send(Event::FineTune { running: false, text: msg });
            }
        }
    })?;
    Ok((h, n))
}

/// Checks a fine-tuned encoder against the current one and swaps it in
/// when it is better: on the held-out set when the session has one, else on
/// the person's most recent labels held out (a fifth of them, 5 to 50).
fn swap_in(
    session: &Session,
    p: &mut Prepared,
    c: Candidate,
    strategy: Strategy,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(String, Option<Update>)> {
    progress("checking the fine-tuned encoder", 0, 1);
    let labels = session.label_set()?;
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    let label_emb = c.encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let e = &p.engine;
    let new_engine =
        Engine::new(Arc::new(c.emb), e.pool_rows.clone(), e.test_rows.clone(), e.test_gold.clone(), label_emb, e.k, e.cfg.clone())?;
    let (pairs, _, _) = eligible(session, p)?;
    let (old_acc, new_acc, on) = if !e.test_rows.is_empty() {
        let a = e.iterate(&pairs)?.test.map(|m| m.accuracy).unwrap_or(0.0);
        let b = new_engine.iterate(&pairs)?.test.map(|m| m.accuracy).unwrap_or(0.0);
        (a, b, "held-out set")
    } else {
        let held = (pairs.len() / 5).clamp(5, 50);
        if pairs.len() < held + 5 {
            let _ = std::fs::remove_dir_all(&c.dir);
            return Ok((format!("fine-tuned on {} labels, but too few labels to check it; kept the current model", c.labels), None));
        }
        let (train, test) = pairs.split_at(pairs.len() - held);
        let acc = |eng: &Engine| -> Result<f64> {
            let s = eng.score_with(&eng.iterate(train)?.head)?;
            Ok(test.iter().filter(|&&(i, l)| s.pred[i] == l).count() as f64 / test.len() as f64)
        };
        (acc(e)?, acc(&new_engine)?, "your latest labels")
    };
    if new_acc <= old_acc {
        let _ = std::fs::remove_dir_all(&c.dir);
        return Ok((
            format!(
                "{} encoder not better on {on} ({:.1}% vs {:.1}%): kept the current one",
                c.mode.name(),
                new_acc * 100.0,
                old_acc * 100.0
            ),
            None,
        ));
    }
    // Swap: the new encoder, its embeddings, its head; the old fine-tuned folder goes.
    let old_dir = session.meta("encoder")?;
    let name = c.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    session.set_meta("encoder", &name)?;
    if let Some(old) = old_dir.filter(|o| *o != name) {
        let _ = std::fs::remove_dir_all(session.dir.join(old));
    }
    p.engine = new_engine;
    p.model_hash = c.encoder.hash.clone();
    p.encoder = c.encoder;
    p.prompts = prompts;
    let mut s = session.settings()?;
    if s.mode == "head" {
        s.mode = c.mode.name().into();
        session.save_settings(&s)?;
    }
    let head_path = session.dir.join(format!("head-{}.safetensors", p.model_hash));
    let u = iterate(session, p, strategy, &head_path, progress)?;
    Ok((format!("{} encoder swapped in: {:.1}% vs {:.1}% on {on}", c.mode.name(), new_acc * 100.0, old_acc * 100.0), Some(u)))
}

fn eligible(session: &Session, p: &Prepared) -> Result<(Vec<(usize, u32)>, Vec<bool>, Vec<crate::store::Label>)> {
    let labels = session.labels()?;
    let mut pairs = Vec::with_capacity(labels.len());
    let mut elig = vec![true; p.pool_ids.len()];
    for l in &labels {
        if let Some(&i) = p.id_to_pool.get(&l.row_id) {
            pairs.push((i, l.label));
            elig[i] = false;
        }
    }
    Ok((pairs, elig, labels))
}

fn resume_update(session: &Session, p: &Prepared, head: &Head, strategy: Strategy) -> Result<Update> {
    let (pairs, elig, _) = eligible(session, p)?;
    let scores = p.engine.score_with(head)?;
    let its = session.iterations()?;
    let (iteration, record) = match its.last() {
        Some((id, _, m)) => (*id, serde_json::from_value(m.clone()).unwrap_or_default()),
        None => (0, IterationRecord::default()),
    };
    let settings = session.settings()?;
    let ranking =
        learn::rank(&scores, strategy, &elig, Some((&p.engine.emb, &p.engine.pool_rows)), settings.batch, settings.seed ^ iteration as u64);
    Ok(Update { iteration, n_labels: pairs.len(), scores, ranking, record })
}

/// One iteration on the stored labels: train, predict, rank, measure, store.
pub fn iterate(
    session: &Session,
    p: &Prepared,
    strategy: Strategy,
    head_path: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Update> {
    let t0 = Instant::now();
    let settings = session.settings()?;
    let (pairs, elig, labels) = eligible(session, p)?;
    progress("training", 0, 1);
    let it = p.engine.iterate(&pairs)?;
    progress("ranking", 0, 1);
    let t1 = Instant::now();
    let prev_iteration: i64 = session.iterations()?.last().map(|x| x.0).unwrap_or(0);
    let ranking = learn::rank(
        &it.scores,
        strategy,
        &elig,
        Some((&p.engine.emb, &p.engine.pool_rows)),
        settings.batch,
        settings.seed ^ (prev_iteration as u64 + 1),
    );
    let rank_ms = t1.elapsed().as_secs_f64() * 1e3;
    // The person's decisions on the previous model's predictions.
    let decided: Vec<_> =
        labels.iter().filter(|l| l.source == Source::Person && l.iteration == prev_iteration && l.predicted.is_some()).collect();
    let kept = decided.iter().filter(|l| l.predicted == Some(l.label)).count();
    let k = p.engine.k;
    let mut per_class = vec![0usize; k];
    for &(_, l) in &pairs {
        per_class[l as usize] += 1;
    }
    let mut predicted_counts = vec![0usize; k];
    for &c in &it.scores.pred {
        predicted_counts[c as usize] += 1;
    }
    let mean_entropy =
        if it.scores.is_empty() { 0.0 } else { it.scores.entropy.iter().map(|&e| e as f64).sum::<f64>() / it.scores.len() as f64 };
    let mut record = IterationRecord {
        iteration: 0,
        labels: pairs.len(),
        per_class,
        accuracy: it.test.as_ref().map(|m| m.accuracy),
        macro_f1: it.test.as_ref().map(|m| m.macro_f1),
        macro_precision: it.test.as_ref().map(|m| m.macro_precision),
        macro_recall: it.test.as_ref().map(|m| m.macro_recall),
        test_per_class: it.test.as_ref().map(|m| m.per_class.clone()).unwrap_or_default(),
        kept: if decided.is_empty() { None } else { Some(kept) },
        decided: if decided.is_empty() { None } else { Some(decided.len()) },
        mean_entropy,
        predicted_counts,
        pseudo_labels: it.pseudo_labels,
        train_ms: it.train_ms,
        predict_ms: it.predict_ms,
        rank_ms,
        total_ms: 0.0,
        strategy: strategy.name().to_string(),
        mode: settings.mode.clone(),
    };
    record.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    // The head first (written whole, then renamed), then the iteration with
    // its predictions in one transaction: a failure leaves the last
    // iteration as it was.
    it.head.save(head_path).with_context(|| format!("cannot save the model to {}", head_path.display()))?;
    let mut rank_of = vec![None; p.pool_ids.len()];
    for (r, &i) in ranking.iter().enumerate() {
        rank_of[i as usize] = Some(r as i64);
    }
    let preds: Vec<Prediction> = (0..p.pool_ids.len())
        .map(|i| Prediction {
            row_id: p.pool_ids[i],
            label: it.scores.pred[i],
            prob: it.scores.prob[i],
            entropy: it.scores.entropy[i],
            margin: it.scores.margin[i],
            rank: rank_of[i],
        })
        .collect();
    let id = session.record_iteration(
        pairs.len() as i64,
        |id| {
            record.iteration = id;
            serde_json::to_value(&record)
        },
        &preds,
    )?;
    Ok(Update { iteration: id, n_labels: pairs.len(), scores: it.scores, ranking, record })
}

/// Headless: prepares a session and runs one iteration (used by
/// `labelrest retrain` and tests).
pub fn retrain_headless(session: &Session, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<Update> {
    let cancel = AtomicBool::new(false);
    let p = prepare(session, progress, &cancel)?;
    let settings = session.settings()?;
    let strategy = Strategy::parse(&settings.strategy)?;
    let head_path = session.dir.join(format!("head-{}.safetensors", p.model_hash));
    iterate(session, &p, strategy, &head_path, progress)
}

/// Drains pending events without waiting.
pub fn drain(rx: &Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}
