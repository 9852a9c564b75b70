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
}

#[derive(Default)]
struct Slot {
    pending: Option<Job>,
    shutdown: bool,
}

/// The UI's handle on the worker thread.
pub struct Worker {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    cancel: Arc<AtomicBool>,
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
        let (s2, c2) = (slot.clone(), cancel.clone());
        let handle = std::thread::Builder::new().name("labelrest-worker".into()).spawn(move || {
            if let Err(e) = run(conn, s2, c2, &events) {
                tracing::error!("worker: {e:#}");
                let _ = events.send(Event::Error(format!("{e:#}")));
            }
        })?;
        Ok(Worker { slot, cancel, handle: Some(handle) })
    }

    /// Asks for a job; replaces any job still waiting.
    pub fn request(&self, job: Job) {
        let (m, cv) = &*self.slot;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.pending = Some(job);
        cv.notify_one();
    }

    /// Stops the worker (cancelling long work) and waits for it.
    pub fn shutdown(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
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
    let dir = model_dir(&settings.model);
    let dev = model::device(&settings.device)?;
    progress("loading model", 0, 1);
    let encoder = Encoder::load(&dir, &dev).with_context(|| format!("loading the encoder from {}", dir.display()))?;
    let rows = session.rows()?;
    let labels = session.label_set()?;
    let emb = embed_rows(&session.dir, &encoder, &rows.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), progress, cancel)?;
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
    Ok(Prepared { engine, pool_ids, id_to_pool, model_hash: encoder.hash.clone(), encoder, prompts })
}

/// Embeds `texts` through the session's cache, keyed by the model hash.
pub fn embed_rows(
    dir: &Path,
    encoder: &Encoder,
    texts: &[&str],
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<Matrix> {
    model::embed_cached(dir, &encoder.hash, encoder, texts, progress, cancel)
}

fn run(session: Session, slot: Arc<(Mutex<Slot>, Condvar)>, cancel: Arc<AtomicBool>, events: &Sender<Event>) -> Result<()> {
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
    // The first view: the saved head's when there is one, else a fresh iteration.
    let settings = session.settings()?;
    let strategy = Strategy::parse(&settings.strategy).unwrap_or(Strategy::Margin);
    let head_path = session.dir.join(format!("head-{}.safetensors", prepared.model_hash));
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
    loop {
        let job = {
            let (m, cv) = &*slot;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            while s.pending.is_none() && !s.shutdown {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.shutdown {
                return Ok(());
            }
            s.pending.take()
        };
        match job {
            Some(Job::Retrain { strategy }) => {
                match prepared.refresh_prompts(&session).and_then(|_| iterate(&session, &prepared, strategy, &head_path, &mut progress)) {
                    Ok(u) => {
                        let _ = events.send(Event::Update(Arc::new(u)));
                    }
                    Err(e) => {
                        tracing::error!("retrain failed: {e:#}");
                        let _ = events.send(Event::Error(format!("retrain failed: {e:#}")));
                    }
                }
            }
            None => {}
        }
        let _ = events.send(Event::Idle);
    }
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
    let seed = session.settings()?.seed ^ iteration as u64;
    let ranking = learn::rank(&scores, strategy, &elig, Some((&p.engine.emb, &p.engine.pool_rows)), 10, seed);
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
    let id = session.add_iteration(pairs.len() as i64, &serde_json::to_value(&record)?)?;
    record.iteration = id;
    // Store the predictions (for export and resume) and the head.
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
    session.save_predictions(id, &preds)?;
    it.head.save(head_path)?;
    session.conn().execute("UPDATE iterations SET metrics = ?1 WHERE id = ?2", rusqlite::params![serde_json::to_string(&record)?, id])?;
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
