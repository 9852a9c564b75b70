//! The synchronous learning pipeline: prepare a session (encoder, embedding
//! cache, engine), run one iteration (train, predict, rank, measure, store),
//! resume from the saved head. The worker thread and the headless commands
//! (`retrain`) both use it.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::learn::{self, Engine, EngineConfig, Scores, Strategy};
use crate::model::{self, Cache, Encoder, Head};
use crate::store::{Prediction, Session, Settings, Source, Split};

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
    /// False when nothing the model learns from had changed: ranked again, no new iteration.
    pub trained: bool,
    /// While a big pile is still being embedded: the session pool index of
    /// each pool index above (the rows embedded so far). None: every row.
    pub pool_index: Option<Arc<Vec<u32>>>,
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
    /// A digest of what the model learnt from (labels, label prompts,
    /// encoder, settings): an iteration is recorded only when it changes.
    #[serde(default)]
    pub inputs: String,
    /// What changed since the iteration before: labels, descriptions, encoder, settings.
    #[serde(default)]
    pub reason: String,
    /// The calibration temperature fitted on the labels (1: none yet).
    #[serde(default = "one")]
    pub temperature: f64,
    /// Expected calibration error of the calibrated probabilities on the
    /// held-out set (15 bins), when the session has one.
    #[serde(default)]
    pub ece: Option<f64>,
    /// The calibrated estimate of the model's labels on the unlabelled rows:
    /// how many rows, their expected accuracy, and per threshold (rows at or
    /// above it, their expected accuracy).
    #[serde(default)]
    pub estimate: Option<(usize, f64, Vec<(f32, usize, f64)>)>,
    /// The person's labels that a model trained without them disputes,
    /// most disputed first: (row id, given label, the model's label, its
    /// probability, the given label's probability).
    #[serde(default)]
    pub suspects: Vec<(i64, u32, u32, f32, f32)>,
    /// Cohen's kappa between this model's labels on every pool row and the
    /// previous iteration's (the stopping signal, `learn::stopping`).
    #[serde(default)]
    pub agreement: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl IterationRecord {
    /// Whether the stopping signal fires after `history` (oldest first).
    pub fn stable(history: &[IterationRecord]) -> bool {
        let h: Vec<(usize, Option<f64>)> = history.iter().map(|r| (r.labels, r.agreement)).collect();
        learn::stopping::fired(&h)
    }
    pub fn kept_rate(&self) -> Option<f64> {
        match (self.kept, self.decided) {
            (Some(k), Some(d)) if d > 0 => Some(k as f64 / d as f64),
            _ => None,
        }
    }
}

pub(crate) fn engine_config(settings: &Settings) -> Result<EngineConfig> {
    Ok(EngineConfig { self_training: settings.self_training, tunes: settings.mode.method().is_some(), ..Default::default() })
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
    /// Rows of the session not embedded yet (a big pile, after its first slice).
    pub pending: usize,
    /// While rows are pending: the session pool index of each pool index.
    pub pool_index: Option<Arc<Vec<u32>>>,
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
    prepare_first(session, usize::MAX, progress, cancel)
}

/// Pool rows a big pile embeds before its first ranking
/// (`LABELREST_FIRST_SLICE`, default 3,000): on sst2's 67k rows the first
/// batch is on screen in seconds, and the rest embeds behind it.
pub fn first_slice() -> usize {
    std::env::var("LABELREST_FIRST_SLICE").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or(3000)
}

/// Like `prepare`, but when more than `slice` rows are missing from the
/// cache, embeds only a first slice: every held-out row, every labelled
/// row, and `slice` pool rows spread evenly over the pile (a sample of all
/// of it, not its first lines). The engine holds the rows embedded so far;
/// `grow` embeds more.
pub fn prepare_first(
    session: &Session,
    slice: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<Prepared> {
    let settings = session.settings()?;
    let dir = encoder_dir(session)?;
    let dev = model::device(settings.device)?;
    progress("loading model", 0, 1);
    let encoder = Encoder::load(&dir, &dev).with_context(|| format!("loading the encoder from {}", dir.display()))?;
    let rows = session.rows()?;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    // Several annotators' processes share the cache: one writes at a time.
    let _embedding = crate::store::Lock::embedding(&session.dir)?;
    let mut cache = Cache::open(&session.dir, &encoder.hash, texts.len(), encoder.dim, true)?;
    let repaired = cache.repaired;
    let missing = cache.missing();
    let first: Vec<usize> = if missing.len() <= slice {
        missing
    } else {
        let labelled: std::collections::HashSet<i64> = session.labels()?.iter().map(|l| l.row_id).collect();
        let pool_missing: Vec<usize> =
            missing.iter().copied().filter(|&i| rows[i].split == Split::Pool && !labelled.contains(&rows[i].id)).collect();
        let step = pool_missing.len() as f64 / slice.max(1) as f64;
        let mut first: Vec<usize> = (0..slice.min(pool_missing.len())).map(|j| pool_missing[(j as f64 * step) as usize]).collect();
        first.extend(missing.iter().copied().filter(|&i| rows[i].split == Split::Test || labelled.contains(&rows[i].id)));
        first.sort_unstable();
        first.dedup();
        tracing::info!("{} rows to embed: {} first, the rest behind the first ranking", missing.len(), first.len());
        first
    };
    model::embed_rows(&mut cache, &encoder, &texts, &first, progress, cancel)?;
    let parts = build(session, &encoder, &rows, &cache, &settings)?;
    Ok(Prepared {
        engine: parts.engine,
        pool_ids: parts.pool_ids,
        id_to_pool: parts.id_to_pool,
        model_hash: encoder.hash.clone(),
        prompts: parts.prompts,
        repaired,
        pending: parts.pending,
        pool_index: parts.pool_index,
        encoder,
    })
}

/// Embeds up to `n` more of the rows not embedded yet and rebuilds the
/// engine over every row embedded so far.
pub fn grow(
    session: &Session,
    p: &mut Prepared,
    n: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<()> {
    let settings = session.settings()?;
    let rows = session.rows()?;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let _embedding = crate::store::Lock::embedding(&session.dir)?;
    let mut cache = Cache::open(&session.dir, &p.encoder.hash, texts.len(), p.encoder.dim, true)?;
    let next: Vec<usize> = cache.missing().into_iter().take(n).collect();
    model::embed_rows(&mut cache, &p.encoder, &texts, &next, progress, cancel)?;
    let parts = build(session, &p.encoder, &rows, &cache, &settings)?;
    p.engine = parts.engine;
    p.pool_ids = parts.pool_ids;
    p.id_to_pool = parts.id_to_pool;
    p.prompts = parts.prompts;
    p.pending = parts.pending;
    p.pool_index = parts.pool_index;
    Ok(())
}

struct Parts {
    engine: Engine,
    pool_ids: Vec<i64>,
    id_to_pool: HashMap<i64, usize>,
    prompts: Vec<String>,
    pending: usize,
    pool_index: Option<Arc<Vec<u32>>>,
}

/// The engine over the rows of the cache that are embedded.
fn build(session: &Session, encoder: &Encoder, rows: &[crate::store::Row], cache: &Cache, settings: &Settings) -> Result<Parts> {
    let labels = session.label_set()?;
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    let label_emb = encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let complete = cache.complete();
    let emb = if complete { cache.load()? } else { cache.load_done()? };
    let mut pool_rows = Vec::new();
    let mut pool_ids = Vec::new();
    let mut pool_index = Vec::new();
    let mut test_rows = Vec::new();
    let mut test_gold = Vec::new();
    let mut pool_n = 0u32;
    for (i, r) in rows.iter().enumerate() {
        match r.split {
            Split::Pool => {
                if cache.is_done(i) {
                    pool_rows.push(i);
                    pool_ids.push(r.id);
                    pool_index.push(pool_n);
                }
                pool_n += 1;
            }
            Split::Test => {
                if let (Some(g), true) = (r.gold, cache.is_done(i)) {
                    test_rows.push(i);
                    test_gold.push(g);
                }
            }
        }
    }
    let id_to_pool = pool_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let engine = Engine::new(Arc::new(emb), pool_rows, test_rows, test_gold, label_emb, labels.len(), engine_config(settings)?)?;
    let pending = cache.missing().len();
    Ok(Parts { engine, pool_ids, id_to_pool, prompts, pending, pool_index: if complete { None } else { Some(Arc::new(pool_index)) } })
}

/// The encoder a session uses: its fine-tuned one when a fine-tune was
/// swapped in (and is still there), else the model of its settings.
pub fn encoder_dir(session: &Session) -> Result<PathBuf> {
    if let Some((d, _)) = session.tuned_encoder()? {
        if d.join("model.safetensors").exists() {
            return Ok(d);
        }
        tracing::warn!("fine-tuned encoder {} is missing; using the base model", d.display());
    }
    Ok(model::assets::model_dir(&session.settings()?.model))
}

pub(crate) fn eligible(session: &Session, p: &Prepared) -> Result<(Vec<(usize, u32)>, Vec<bool>, Vec<crate::store::Label>)> {
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

pub(crate) fn resume_update(session: &Session, p: &Prepared, head: &Head, strategy: Strategy) -> Result<Update> {
    let (pairs, elig, _) = eligible(session, p)?;
    let (raw, scores) = p.engine.score_with(head)?;
    let (iteration, record) = match session.iterations::<IterationRecord>()?.pop() {
        Some(it) => (
            it.id,
            it.metrics.unwrap_or_else(|e| {
                tracing::warn!("{e}; the panel shows it empty");
                IterationRecord::default()
            }),
        ),
        None => (0, IterationRecord::default()),
    };
    let settings = session.settings()?;
    let ranking =
        learn::rank(&raw, strategy, &elig, Some((&p.engine.emb, &p.engine.pool_rows)), settings.batch, settings.seed ^ iteration as u64);
    Ok(Update { iteration, n_labels: pairs.len(), scores, ranking, record, trained: false, pool_index: p.pool_index.clone() })
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
    crate::panic_at("iterate");
    let settings = session.settings()?;
    let (pairs, elig, labels) = eligible(session, p)?;
    // Nothing the model learns from changed: rank again (a new strategy), record nothing.
    let digest = Digest::of(&labels, &p.prompts, &p.model_hash, &p.engine.cfg);
    let last: Option<(i64, IterationRecord)> = session.iterations::<IterationRecord>()?.pop().map(|it| {
        let rec = it.metrics.unwrap_or_else(|e| {
            tracing::warn!("{e}; training again");
            IterationRecord::default()
        });
        (it.id, rec)
    });
    if let Some((id, rec)) = &last {
        // (While a big pile is embedded, labelled rows can become usable: then it trains.)
        if rec.inputs == digest.all() && rec.labels == pairs.len() {
            if let Ok(head) = Head::load(head_path) {
                if head.k == p.engine.k && head.dim == p.engine.dim {
                    return rerank(session, p, &head, strategy, *id, rec.clone(), &elig, pairs.len());
                }
            }
        }
    }
    progress("training", 0, 1);
    // The calibration's honesty: which labels a fine-tuned encoder learnt
    // from, and each label's honest probabilities from before.
    let tuned_rows = session.tuned_encoder_rows()?;
    let earlier = session.honest_probs()?;
    let label_rows: Vec<i64> = pairs.iter().map(|&(i, _)| p.pool_ids[i]).collect();
    let honesty = learn::Honesty {
        seen: label_rows.iter().map(|id| tuned_rows.as_ref().is_some_and(|r| r.contains(id))).collect(),
        earlier: label_rows.iter().map(|id| earlier.get(id).cloned()).collect(),
    };
    let it = p.engine.iterate_with(&pairs, &honesty)?;
    progress("ranking", 0, 1);
    let t1 = Instant::now();
    let prev_iteration = session.last_iteration()?;
    let ranking = learn::rank(
        &it.raw,
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
    let est = learn::calibration::Estimate::of(&it.scores.prob, |i| elig[i]);
    let ece = match p.engine.test_probs(&it.head)? {
        Some((_, tp)) => {
            let s = Scores::from_probs(tp, k);
            let right: Vec<bool> = s.pred.iter().zip(&p.engine.test_gold).map(|(a, b)| a == b).collect();
            Some(learn::calibration::ece(&s.prob, &right, learn::calibration::ECE_BINS))
        }
        None => None,
    };
    // How much the model's mind changed since the last iteration.
    let before = session.predictions()?;
    let (was, now): (Vec<u32>, Vec<u32>) =
        p.pool_ids.iter().enumerate().filter_map(|(i, id)| before.get(id).map(|x| (x.label, it.scores.pred[i]))).unzip();
    let agreement = if last.is_none() || was.is_empty() { None } else { Some(learn::stopping::kappa(&was, &now, k)) };
    let mut record = IterationRecord {
        agreement,
        temperature: it.head.temperature as f64,
        ece,
        estimate: Some((est.rows, est.accuracy, est.at)),
        suspects: it
            .suspects
            .iter()
            .map(|x| (p.pool_ids[pairs[x.at].0], pairs[x.at].1, x.model_label, x.model_prob, x.given_prob))
            .collect(),
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
        mode: settings.mode.name().into(),
        inputs: digest.all(),
        reason: match &last {
            Some((_, rec)) => digest.reason(&rec.inputs),
            None => "start".into(),
        },
    };
    record.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    // The head first (written whole, then renamed), then the iteration with
    // its predictions in one transaction: a failure leaves the last
    // iteration as it was.
    it.head.save(head_path).with_context(|| format!("cannot save the model to {}", head_path.display()))?;
    // (A session in PostgreSQL: the other machines' processes load it from there.)
    session.share_file(head_path)?;
    let honest: Vec<(i64, &[f32])> = label_rows.iter().zip(&it.honest).filter_map(|(&id, h)| h.as_deref().map(|h| (id, h))).collect();
    session.set_honest_probs(&honest)?;
    let preds = predictions(&p.pool_ids, &it.scores, &ranking);
    let id = session.record_iteration(
        pairs.len() as i64,
        |id| {
            record.iteration = id;
            serde_json::to_value(&record)
        },
        &preds,
    )?;
    Ok(Update { iteration: id, n_labels: pairs.len(), scores: it.scores, ranking, record, trained: true, pool_index: p.pool_index.clone() })
}

/// The parts of what a model learns from, each digested (sha256, short).
struct Digest {
    labels: String,
    prompts: String,
    encoder: String,
    settings: String,
}

fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The labels' part of an iteration's `inputs`.
fn labels_digest(labels: &[crate::store::Label]) -> String {
    let mut l: Vec<(i64, u32)> = labels.iter().map(|x| (x.row_id, x.label)).collect();
    l.sort_unstable();
    let lb: Vec<u8> = l.iter().flat_map(|(r, x)| r.to_le_bytes().into_iter().chain(x.to_le_bytes())).collect();
    short_hash(&lb)
}

/// The model in use and the labels now: its iteration, how many labels it
/// learnt from, how many the model learns from now, and whether they
/// changed since (a retrain that had not run when the workstation closed,
/// labels that `annotate` gave with no trainer at work). None before the
/// first iteration.
pub fn model_and_labels(session: &Session) -> Result<Option<(i64, usize, usize, bool)>> {
    let Some(it) = session.iterations::<IterationRecord>()?.pop() else { return Ok(None) };
    let Ok(rec) = it.metrics else { return Ok(None) };
    let labels = session.labels()?;
    let changed = rec.inputs.split(':').next() != Some(labels_digest(&labels).as_str());
    Ok(Some((it.id, rec.labels, labels.len(), changed)))
}

impl Digest {
    fn of(labels: &[crate::store::Label], prompts: &[String], encoder: &str, cfg: &learn::EngineConfig) -> Digest {
        Digest {
            labels: labels_digest(labels),
            prompts: short_hash(prompts.join("\u{1f}").as_bytes()),
            encoder: encoder.to_string(),
            settings: short_hash(format!("{cfg:?}").as_bytes()),
        }
    }
    fn all(&self) -> String {
        format!("{}:{}:{}:{}", self.labels, self.prompts, self.encoder, self.settings)
    }
    /// What differs from an earlier digest.
    fn reason(&self, before: &str) -> String {
        let b: Vec<&str> = before.split(':').collect();
        if b.len() != 4 {
            return "labels".into();
        }
        let mut v = Vec::new();
        if b[0] != self.labels {
            v.push("labels");
        }
        if b[1] != self.prompts {
            v.push("descriptions");
        }
        if b[2] != self.encoder {
            v.push("encoder");
        }
        if b[3] != self.settings {
            v.push("settings");
        }
        v.join("+")
    }
}

/// Ranks again with the saved head (no training, no new iteration): the
/// strategy changed, or nothing did.
#[allow(clippy::too_many_arguments)]
fn rerank(
    session: &Session,
    p: &Prepared,
    head: &Head,
    strategy: Strategy,
    id: i64,
    mut record: IterationRecord,
    elig: &[bool],
    n_labels: usize,
) -> Result<Update> {
    let settings = session.settings()?;
    let (raw, scores) = p.engine.score_with(head)?;
    let ranking = learn::rank(&raw, strategy, elig, Some((&p.engine.emb, &p.engine.pool_rows)), settings.batch, settings.seed ^ id as u64);
    let preds = predictions(&p.pool_ids, &scores, &ranking);
    session.replace_predictions(id, &preds)?;
    record.iteration = id;
    // The same model over other rows (a big pile's rows embedded since): the
    // estimate of the rest is of the rows ranked now.
    let est = learn::calibration::Estimate::of(&scores.prob, |i| elig[i]);
    let estimate = Some((est.rows, est.accuracy, est.at));
    if record.estimate != estimate {
        record.estimate = estimate;
        if let Err(e) = session.set_iteration_metrics(id, &record) {
            tracing::warn!("cannot store the estimate of iteration {id} again: {e:#}");
        }
    }
    Ok(Update { iteration: id, n_labels, scores, ranking, record, trained: false, pool_index: p.pool_index.clone() })
}

/// Headless: prepares a session and runs one iteration (used by
/// `labelrest retrain` and tests).
pub fn retrain_headless(session: &Session, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<Update> {
    // One process trains a session at a time.
    let _trainer = session.trainer_lock()?.ok_or_else(|| {
        let who = session.trainer_holder().map(|(pid, _)| format!(" (pid {pid})")).unwrap_or_default();
        anyhow::anyhow!(
            "session '{}' is trained by another process{who}: it retrains after every batch already; its iterations are in the session",
            crate::data::display_safe(&session.name)
        )
    })?;
    crate::pause_at("retrain-locked");
    let cancel = AtomicBool::new(false);
    let p = prepare(session, progress, &cancel)?;
    let settings = session.settings()?;
    let strategy = settings.strategy;
    let head_path = session.head_path(&p.model_hash);
    iterate(session, &p, strategy, &head_path, progress)
}

/// Every pool row's prediction (as shown: calibrated) with its rank in
/// `ranking` (None for rows the ranking leaves out), as the store keeps them.
fn predictions(pool_ids: &[i64], scores: &Scores, ranking: &[u32]) -> Vec<Prediction> {
    let mut rank_of = vec![None; pool_ids.len()];
    for (r, &i) in ranking.iter().enumerate() {
        rank_of[i as usize] = Some(r as i64);
    }
    (0..pool_ids.len())
        .map(|i| Prediction {
            row_id: pool_ids[i],
            label: scores.pred[i],
            prob: scores.prob[i],
            entropy: scores.entropy[i],
            margin: scores.margin[i],
            rank: rank_of[i],
        })
        .collect()
}

/// What `labelrest new` does: refuses a model folder labelrest cannot run
/// before anything is made, imports, and counts the texts longer than the
/// model reads.
pub fn create_session(
    sessions: &(impl crate::store::Sessions + ?Sized),
    name: &str,
    spec: &crate::store::ImportSpec,
    force: bool,
) -> Result<(crate::store::ImportReport, Option<(usize, usize)>)> {
    crate::model::encoder::check_folder(&crate::model::assets::model_dir(&spec.settings.model))?;
    let r = Session::create(sessions, name, spec, force)?;
    Ok((r, truncated_texts(sessions, name, &spec.settings.model)))
}

/// How many of a new session's texts (pool and test) are longer than its
/// model reads, and that length; noted in the log. None (logged) when the
/// count could not be made: the session is made either way.
fn truncated_texts(sessions: &(impl crate::store::Sessions + ?Sized), name: &str, model: &str) -> Option<(usize, usize)> {
    let count = || -> Result<(usize, usize)> {
        let rows = Session::open_read_only(sessions, name)?.rows()?;
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        crate::model::encoder::count_truncated(&crate::model::assets::model_dir(model), &texts)
    };
    match count() {
        Ok((n, limit)) => {
            if n > 0 {
                tracing::info!(
                    "session '{name}': {n} {} longer than the model's {limit} tokens; each is embedded from its first {limit}",
                    if n == 1 { "text" } else { "texts" }
                );
            }
            Some((n, limit))
        }
        Err(e) => {
            tracing::warn!("session '{name}': cannot count texts longer than the model reads: {e:#}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Mode, SelfTraining};

    #[test]
    fn self_training_auto_knows_whether_the_session_fine_tunes() {
        let tuned = engine_config(&Settings::default()).unwrap();
        assert!(tuned.tunes && tuned.self_training == SelfTraining::Auto);
        assert!(tuned.self_training.enabled(6, 5000, tuned.tunes), "a fine-tuned six-class session self-trains");
        let head = engine_config(&Settings { mode: Mode::Head, ..Default::default() }).unwrap();
        assert!(!head.tunes && !head.self_training.enabled(6, 5000, head.tunes), "the head alone does not below 20 classes");
        let off = engine_config(&Settings { self_training: SelfTraining::Off, ..Default::default() }).unwrap();
        assert!(!off.self_training.enabled(6, 5000, off.tunes));
    }
}
