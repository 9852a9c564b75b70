//! Learning: probabilities to scores (entropy, margin), query strategies,
//! metrics, and one iteration (train, predict every row, rank).
//!
//! Entropy is in nats (natural log); its largest value is ln K.

pub use crate::settings::{SelfTraining, Strategy};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

pub mod agreement;
pub mod calibration;
pub mod review;
pub mod stopping;

use crate::model::cache::Matrix;
use crate::model::head::{Head, HeadConfig};

/// One-sided sign test: the chance of `worse` or more losses among
/// `worse + better` rows where two models disagree, if neither were better
/// (Binomial(n, 1/2) upper tail).
pub fn sign_test(worse: usize, better: usize) -> f64 {
    let n = worse + better;
    if n == 0 {
        return 1.0;
    }
    // sum_{k >= worse} C(n, k) / 2^n, in logs for large n.
    let ln_c = |k: usize| -> f64 { (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum() };
    let p: f64 = (worse..=n).map(|k| (ln_c(k) - n as f64 * std::f64::consts::LN_2).exp()).sum();
    p.min(1.0)
}

/// Per-row scores of the model over the pool.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub k: usize,
    /// n x k probabilities, row-major.
    pub probs: Vec<f32>,
    pub pred: Vec<u32>,
    pub prob: Vec<f32>,
    /// Entropy in nats.
    pub entropy: Vec<f32>,
    /// Top probability minus the second.
    pub margin: Vec<f32>,
}

impl Scores {
    pub fn from_probs(probs: Vec<f32>, k: usize) -> Scores {
        let n = probs.len().checked_div(k).unwrap_or(0);
        let mut pred = Vec::with_capacity(n);
        let mut prob = Vec::with_capacity(n);
        let mut entropy = Vec::with_capacity(n);
        let mut margin = Vec::with_capacity(n);
        for i in 0..n {
            let p = &probs[i * k..(i + 1) * k];
            let (mut b1, mut b2, mut i1) = (f32::NEG_INFINITY, f32::NEG_INFINITY, 0usize);
            let mut h = 0f32;
            for (j, &v) in p.iter().enumerate() {
                if v > b1 {
                    b2 = b1;
                    b1 = v;
                    i1 = j;
                } else if v > b2 {
                    b2 = v;
                }
                if v > 0.0 {
                    h -= v * v.ln();
                }
            }
            pred.push(i1 as u32);
            prob.push(b1);
            entropy.push(h.max(0.0));
            margin.push(if k > 1 { b1 - b2 } else { 1.0 });
        }
        Scores { k, probs, pred, prob, entropy, margin }
    }

    pub fn len(&self) -> usize {
        self.pred.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pred.is_empty()
    }

    /// The `n` most probable labels of row `i`, best first.
    pub fn top(&self, i: usize, n: usize) -> Vec<(u32, f32)> {
        let p = &self.probs[i * self.k..(i + 1) * self.k];
        let mut v: Vec<(u32, f32)> = p.iter().enumerate().map(|(j, &x)| (j as u32, x)).collect();
        v.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// Orders the eligible rows (indices into the scores) for asking the person,
/// most useful first.
pub fn rank(scores: &Scores, strategy: Strategy, eligible: &[bool], emb: Option<(&Matrix, &[usize])>, batch: usize, seed: u64) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..scores.len() as u32).filter(|&i| eligible.get(i as usize).copied().unwrap_or(false)).collect();
    let key = |i: u32| -> f32 {
        let i = i as usize;
        match strategy {
            Strategy::Entropy => -scores.entropy[i],
            Strategy::LeastConfidence => scores.prob[i],
            Strategy::Margin | Strategy::Diverse => scores.margin[i],
            Strategy::Random => 0.0,
        }
    };
    if strategy == Strategy::Random {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        return idx;
    }
    idx.sort_by(|&a, &b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    if strategy == Strategy::Diverse {
        if let Some((m, rows)) = emb {
            idx = spread_duplicates(idx, m, rows, batch.max(1), 0.9);
        }
    }
    idx
}

/// Greedy: fills each of the first batches from the ranked candidates,
/// deferring any candidate whose cosine similarity to one already in the
/// batch is above `threshold` (embeddings are unit length).
fn spread_duplicates(ranked: Vec<u32>, m: &Matrix, rows: &[usize], batch: usize, threshold: f32) -> Vec<u32> {
    let head_len = (batch * 10).min(ranked.len());
    let mut pending: std::collections::VecDeque<u32> = ranked[..head_len].iter().copied().collect();
    let mut out: Vec<u32> = Vec::with_capacity(ranked.len());
    let mut rest = ranked[head_len..].iter().copied();
    while !pending.is_empty() {
        let mut current: Vec<u32> = Vec::with_capacity(batch);
        let mut deferred = Vec::new();
        while current.len() < batch {
            let Some(c) = pending.pop_front().or_else(|| rest.next()) else { break };
            let v = m.row(rows[c as usize]);
            let dup = current.iter().any(|&o| {
                let w = m.row(rows[o as usize]);
                v.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() > threshold
            });
            if dup {
                deferred.push(c);
            } else {
                current.push(c);
            }
        }
        out.extend(current);
        // Deferred candidates go first in the next batch.
        for d in deferred.into_iter().rev() {
            pending.push_front(d);
        }
        if out.len() >= head_len {
            break;
        }
    }
    out.extend(pending);
    out.extend(rest);
    out
}

/// Classification metrics on gold labels.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    /// (label index, precision, recall, f1, support)
    pub per_class: Vec<(u32, f64, f64, f64, usize)>,
    /// Counts of (gold, predicted), row-major over the k labels: entry
    /// `g * k + p` is how many rows of label g were predicted p.
    #[serde(default)]
    pub confusion: Vec<usize>,
}

/// Accuracy and macro scores over the labels present in gold or predictions
/// (as scikit-learn does by default).
pub fn evaluate(pred: &[u32], gold: &[u32], k: usize) -> Metrics {
    let n = pred.len().min(gold.len());
    if n == 0 {
        return Metrics::default();
    }
    let mut tp = vec![0usize; k];
    let mut fp = vec![0usize; k];
    let mut fnn = vec![0usize; k];
    let mut correct = 0;
    let mut confusion = vec![0usize; k * k];
    for i in 0..n {
        let (p, g) = (pred[i] as usize, gold[i] as usize);
        confusion[g * k + p] += 1;
        if p == g {
            tp[p] += 1;
            correct += 1;
        } else {
            fp[p] += 1;
            fnn[g] += 1;
        }
    }
    let mut per_class = Vec::new();
    let (mut sp, mut sr, mut sf) = (0.0, 0.0, 0.0);
    for c in 0..k {
        let support = tp[c] + fnn[c];
        if support == 0 && fp[c] == 0 {
            continue;
        }
        let p = if tp[c] + fp[c] > 0 { tp[c] as f64 / (tp[c] + fp[c]) as f64 } else { 0.0 };
        let r = if support > 0 { tp[c] as f64 / support as f64 } else { 0.0 };
        let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        sp += p;
        sr += r;
        sf += f;
        per_class.push((c as u32, p, r, f, support));
    }
    let m = per_class.len().max(1) as f64;
    Metrics {
        n,
        accuracy: correct as f64 / n as f64,
        macro_f1: sf / m,
        macro_precision: sp / m,
        macro_recall: sr / m,
        per_class,
        confusion,
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub head: HeadConfig,
    /// Weight of the one pseudo-example per class made from the label
    /// prompt (0 turns the prior off).
    pub prior_weight: f32,
    pub self_training: SelfTraining,
    /// Pseudo-labels per predicted class when self-training.
    pub pseudo_per_class: usize,
    pub pseudo_weight: f32,
    /// Besides its label prompt, each class's prior is carried by this
    /// many pool rows the zero-shot head is surest belong to it (the
    /// prompt's weight shared among them; 0: the prompt alone).
    pub prior_rows: usize,
    /// The encoder is fine-tuned in this session (mode other than `head`):
    /// self-training `auto` is then on with fewer classes too.
    pub tunes: bool,
    /// Prior log-odds of the zero-shot head against the head trained on
    /// the labels: the model is the two heads' weights mixed by the
    /// zero-shot head's posterior weight (`Engine::zero_shot_share`), so
    /// it leaves the zero-shot start only as far as the labels, held out
    /// by cross-validation, show the trained head better. 0 turns the mix
    /// off (the trained head alone).
    pub zero_shot_odds: f32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            head: HeadConfig::default(),
            prior_weight: 5.0,
            self_training: SelfTraining::Auto,
            pseudo_per_class: 50,
            pseudo_weight: 0.3,
            prior_rows: 0,
            tunes: true,
            zero_shot_odds: ZERO_SHOT_ODDS,
        }
    }
}

/// The learning state of one session or simulation: the embeddings of the
/// pool and the held-out rows, and the label prompts' embeddings.
pub struct Engine {
    pub k: usize,
    pub dim: usize,
    pub emb: Arc<Matrix>,
    /// Rows of `emb` that make the pool, in pool order.
    pub pool_rows: Vec<usize>,
    /// Rows of `emb` that make the held-out set, and their gold labels.
    pub test_rows: Vec<usize>,
    pub test_gold: Vec<u32>,
    /// k x dim label-prompt embeddings.
    pub label_emb: Vec<f32>,
    x_pool: Tensor,
    x_test: Option<Tensor>,
    pub cfg: EngineConfig,
}

/// The outcome of one iteration.
pub struct Iteration {
    /// The head, its calibration temperature set.
    pub head: Head,
    /// Calibrated: what is shown, stored and exported.
    pub scores: Scores,
    /// The model's own probabilities: what the strategies rank by.
    pub raw: Scores,
    /// The person's labels that a model trained without them disputes,
    /// most disputed first (`at` indexes the labels given to `iterate`).
    pub suspects: Vec<review::Suspect>,
    pub test: Option<Metrics>,
    pub pseudo_labels: usize,
    pub train_ms: f64,
    pub predict_ms: f64,
    /// Per label (in the order given): its honest probabilities, from this
    /// model where the encoder had not seen it, else the earlier ones
    /// (`Honesty::earlier`); None where there are none (fewer than
    /// `calibration::MIN_LABELS` labels, or none recorded).
    pub honest: Vec<Option<Vec<f32>>>,
    /// The zero-shot head's share of the model (`Engine::zero_shot_share`).
    pub zero_shot_share: f32,
    /// The held-out accuracy of the trained head alone (the model without
    /// the mix; the same as `test`'s when the share is 0).
    pub trained_accuracy: Option<f64>,
}

/// The zero-shot head's prior log-odds against the trained head: 0, the mix
/// is off by default (docs/RESULTS.md, "The zero-shot head mixed in by its
/// evidence", measures `simulate --zero-shot-odds 3`, a share of 0.95
/// before the labels say anything).
pub const ZERO_SHOT_ODDS: f32 = 0.0;

/// The head whose weights are `share` of `zero_shot`'s and the rest of
/// `trained`'s: its logits are the same mix of the two heads' logits.
pub fn mix_heads(trained: &Head, zero_shot: &Head, share: f32) -> Head {
    let mut h = trained.clone();
    if share > 0.0 {
        for (w, z) in h.w.iter_mut().zip(&zero_shot.w) {
            *w = (1.0 - share) * *w + share * z;
        }
        for (b, z) in h.b.iter_mut().zip(&zero_shot.b) {
            *b = (1.0 - share) * *b + share * z;
        }
    }
    h
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rows of `k` probabilities of two models mixed as `mix_heads` mixes
/// their heads: the softmax of the same mix of their log-probabilities.
fn mix_probs(trained: &[f32], zero_shot: &[f32], k: usize, share: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(trained.len());
    for (t, z) in trained.chunks(k).zip(zero_shot.chunks(k)) {
        let logits: Vec<f32> = t.iter().zip(z).map(|(&a, &b)| (1.0 - share) * a.max(1e-30).ln() + share * b.max(1e-30).ln()).collect();
        let mx = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - mx).exp()).collect();
        let sum: f32 = e.iter().sum();
        out.extend(e.iter().map(|v| v / sum));
    }
    out
}

/// What the calibration knows of each label beyond the cross-validation
/// (both in the order of the labels given to `iterate_with`).
#[derive(Debug, Clone, Default)]
pub struct Honesty {
    /// The encoder in use was fine-tuned on this label.
    pub seen: Vec<bool>,
    /// The label's probabilities under the newest earlier model whose
    /// encoder had not seen it (cross-validated: the head had not either).
    pub earlier: Vec<Option<Vec<f32>>>,
}

fn gather(m: &Matrix, rows: &[usize]) -> Vec<f32> {
    let d = m.dim();
    let mut v = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        v.extend_from_slice(m.row(r));
    }
    v
}

impl Engine {
    pub fn new(
        emb: Arc<Matrix>,
        pool_rows: Vec<usize>,
        test_rows: Vec<usize>,
        test_gold: Vec<u32>,
        label_emb: Vec<f32>,
        k: usize,
        cfg: EngineConfig,
    ) -> Result<Engine> {
        let dim = emb.dim();
        if label_emb.len() != k * dim {
            bail!("label embeddings: {} floats for {k} labels of {dim}", label_emb.len());
        }
        let x_pool = Tensor::from_vec(gather(&emb, &pool_rows), (pool_rows.len(), dim), &Device::Cpu)?;
        let x_test = if test_rows.is_empty() {
            None
        } else {
            Some(Tensor::from_vec(gather(&emb, &test_rows), (test_rows.len(), dim), &Device::Cpu)?)
        };
        Ok(Engine { k, dim, emb, pool_rows, test_rows, test_gold, label_emb, x_pool, x_test, cfg })
    }

    pub fn pool_len(&self) -> usize {
        self.pool_rows.len()
    }

    /// The held-out rows' calibrated probabilities under `head` (None
    /// without a held-out set).
    pub fn predict_test(&self, head: &Head) -> Result<Option<Scores>> {
        match &self.x_test {
            Some(xt) => Ok(Some(Scores::from_probs(head.predict_calibrated(xt)?, self.k))),
            None => Ok(None),
        }
    }

    pub fn zero_shot_head(&self) -> Head {
        Head::zero_shot(&self.label_emb, self.dim, self.k, self.cfg.head.temperature)
    }

    /// Trains on `labels` (pool index, label), predicts every pool row and
    /// scores the held-out set. With no labels, the head is the zero-shot one.
    /// The head's temperature is fitted on cross-validated predictions of
    /// the labels (`cross_validated`), which also give the review its suspects.
    pub fn iterate(&self, labels: &[(usize, u32)]) -> Result<Iteration> {
        self.iterate_with(labels, &Honesty::default())
    }

    /// `iterate` when the encoder in use was fine-tuned on some of the
    /// labels: the cross-validation holds each label out of the head but
    /// not out of the encoder, so on those labels it looks surer than the
    /// model is on new rows. The temperature is then the geometric mean of
    /// two fits that bracket the truth: on the cross-validation (too sure),
    /// and on each label's honest probabilities (`Honesty`; from models that
    /// knew fewer labels, so not sure enough). `Iteration::honest` carries
    /// the honest probabilities on to the next iteration.
    pub fn iterate_with(&self, labels: &[(usize, u32)], honesty: &Honesty) -> Result<Iteration> {
        let t0 = Instant::now();
        let (trained, pseudo_labels) = self.fit(labels, true)?;
        let cv = self.cross_validated(labels)?;
        let zero_shot_share = self.zero_shot_share(labels, cv.as_deref())?;
        let mut head = mix_heads(&trained, &self.zero_shot_head(), zero_shot_share);
        // `raw`, which `simulate` ranks by, is the trained head's: which rows
        // are asked does not depend on the mix (ranked by the mix, its
        // evidence would favour whichever head did not choose the rows);
        // only what is shown, stored and exported does. (The workstation
        // never sets `zero_shot_odds`; it re-ranks from the stored head,
        // which would be the mix.)
        let raw = Scores::from_probs(trained.predict(&self.x_pool)?, self.k);
        let probs = if zero_shot_share > 0.0 { head.predict(&self.x_pool)? } else { raw.probs.clone() };
        let gold: Vec<u32> = labels.iter().map(|l| l.1).collect();
        let mut honest = vec![None; labels.len()];
        let (temperature, suspects) = match cv {
            Some(own) => {
                // The review weighs each label against the trained head
                // (which never saw it); the calibration, against the model.
                let suspects = review::suspects(&own, self.k, &gold);
                let p = if zero_shot_share > 0.0 { mix_probs(&own, &self.zero_shot_probs(labels)?, self.k, zero_shot_share) } else { own };
                let k = self.k;
                let (mut hp, mut hg) = (Vec::new(), Vec::new());
                let mut leaked = false;
                for (j, &(_, l)) in labels.iter().enumerate() {
                    let h = if honesty.seen.get(j).copied().unwrap_or(false) {
                        leaked = true;
                        honesty.earlier.get(j).cloned().flatten().filter(|v| v.len() == k)
                    } else {
                        Some(p[j * k..(j + 1) * k].to_vec())
                    };
                    if let Some(v) = &h {
                        hp.extend_from_slice(v);
                        hg.push(l);
                    }
                    honest[j] = h;
                }
                let t_cv = calibration::fit_temperature(&p, k, &gold);
                let t = if leaked && hg.len() >= calibration::MIN_LABELS {
                    (t_cv * calibration::fit_temperature(&hp, k, &hg)).sqrt()
                } else {
                    t_cv
                };
                (t, suspects)
            }
            None => (1.0, Vec::new()),
        };
        head.temperature = temperature;
        let train_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let mut shown = probs;
        calibration::apply(&mut shown, self.k, head.temperature);
        let scores = Scores::from_probs(shown, self.k);
        let test = match &self.x_test {
            Some(xt) => {
                let s = Scores::from_probs(head.predict(xt)?, self.k);
                Some(evaluate(&s.pred, &self.test_gold, self.k))
            }
            None => None,
        };
        let trained_accuracy = match (&self.x_test, &test) {
            (Some(xt), Some(_)) if zero_shot_share > 0.0 => {
                let s = Scores::from_probs(trained.predict(xt)?, self.k);
                Some(evaluate(&s.pred, &self.test_gold, self.k).accuracy)
            }
            (_, Some(m)) => Some(m.accuracy),
            _ => None,
        };
        let predict_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(Iteration { head, scores, raw, suspects, test, pseudo_labels, train_ms, predict_ms, honest, zero_shot_share, trained_accuracy })
    }

    /// The zero-shot head's probabilities for the labelled rows (rows of
    /// `k`, in the order of `labels`). It never saw a label, so they are
    /// held out however many labels there are.
    fn zero_shot_probs(&self, labels: &[(usize, u32)]) -> Result<Vec<f32>> {
        let rows: Vec<usize> = labels.iter().map(|&(i, _)| self.pool_rows[i]).collect();
        let x = Tensor::from_vec(gather(&self.emb, &rows), (rows.len(), self.dim), &Device::Cpu)?;
        self.zero_shot_head().predict(&x)
    }

    /// How much of the zero-shot head the model keeps: its posterior weight
    /// against the head trained on the labels, from the prior odds
    /// `zero_shot_odds` and the evidence of the labels, each predicted by
    /// both without having seen it (the trained head cross-validated, as
    /// `cv` holds it): sigmoid(odds - sum over labels of ln p_trained(label)
    /// - ln p_zero_shot(label)). With fewer labels than the cross-validation
    /// needs it is the prior's; as the labels show the trained head better
    /// it falls to 0. 0 with no labels (the trained head is then the
    /// zero-shot one) or with the mix off. The rows are ranked by the
    /// trained head (`iterate_with`), so the labels are rows it was unsure
    /// of: the evidence leans towards the zero-shot head, and the mix lets
    /// go later than it would on rows drawn at random.
    pub fn zero_shot_share(&self, labels: &[(usize, u32)], cv: Option<&[f32]>) -> Result<f32> {
        let odds = self.cfg.zero_shot_odds as f64;
        if labels.is_empty() || !(odds > 0.0) {
            return Ok(0.0);
        }
        let Some(p) = cv else {
            return Ok(sigmoid(odds) as f32);
        };
        if p.len() != labels.len() * self.k {
            bail!("{} cross-validated probabilities for {} labels of {} classes", p.len(), labels.len(), self.k);
        }
        let z = self.zero_shot_probs(labels)?;
        let k = self.k;
        // A label whose class had no other label in the folds its trained
        // head learnt from says nothing of the head trained on every label
        // (which has it): it is left out of the evidence.
        let folds = calibration::FOLDS.min(labels.len());
        let mut per_fold = vec![0usize; folds * k];
        let mut per_class = vec![0usize; k];
        for (j, &(_, l)) in labels.iter().enumerate() {
            per_fold[(j % folds) * k + l as usize] += 1;
            per_class[l as usize] += 1;
        }
        let evidence: f64 = labels
            .iter()
            .enumerate()
            .filter(|&(j, &(_, l))| per_class[l as usize] > per_fold[(j % folds) * k + l as usize])
            .map(|(j, &(_, l))| {
                let at = j * k + l as usize;
                (p[at].max(1e-12) as f64).ln() - (z[at].max(1e-12) as f64).ln()
            })
            .sum();
        Ok(sigmoid(odds - evidence) as f32)
    }

    /// The head trained on `labels` (with the label-prompt prior, and
    /// self-training when `self_train` and the configuration say so), and
    /// the number of pseudo-labels it used.
    fn fit(&self, labels: &[(usize, u32)], self_train: bool) -> Result<(Head, usize)> {
        let init = self.zero_shot_head();
        let mut head = init.clone();
        let mut pseudo_labels = 0;
        if labels.is_empty() {
            return Ok((head, 0));
        }
        let (mut x, mut y, mut w) = (Vec::new(), Vec::new(), Vec::new());
        // The person's labels, balanced over the classes present (mean weight 1).
        let mut counts = vec![0usize; self.k];
        for &(_, l) in labels {
            counts[l as usize] += 1;
        }
        let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f32;
        for &(i, l) in labels {
            x.extend_from_slice(self.emb.row(self.pool_rows[i]));
            y.push(l);
            w.push(labels.len() as f32 / (present * counts[l as usize] as f32));
        }
        // One pseudo-example per class from its label prompt, fading as
        // the class gets labels of its own.
        if self.cfg.prior_weight > 0.0 {
            let (exemplars, trust) = self.prior_exemplars(labels)?;
            for j in 0..self.k {
                let prior = self.cfg.prior_weight / (1.0 + counts[j] as f32);
                // The prompt keeps what the exemplars do not take: they take
                // as much as the zero-shot head is trusted.
                let n = exemplars[j].len().max(1) as f32;
                let to_rows = if exemplars[j].is_empty() { 0.0 } else { prior * trust };
                x.extend_from_slice(&self.label_emb[j * self.dim..(j + 1) * self.dim]);
                y.push(j as u32);
                w.push(prior - to_rows);
                for &i in &exemplars[j] {
                    x.extend_from_slice(self.emb.row(self.pool_rows[i]));
                    y.push(j as u32);
                    w.push(to_rows / n);
                }
            }
        }
        // The head's pull towards the zero-shot head (when set) fades with each class's labels.
        let mut hcfg = self.cfg.head.clone();
        hcfg.class_labels = counts.clone();
        head = Head::train(&init, &x, &y, &w, &hcfg)?;
        if self_train && self.cfg.self_training.enabled(self.k, self.pool_len(), self.cfg.tunes) {
            let probs = head.predict(&self.x_pool)?;
            let s = Scores::from_probs(probs, self.k);
            let mut labelled = vec![false; self.pool_len()];
            for &(i, _) in labels {
                labelled[i] = true;
            }
            let mut by_class: Vec<Vec<(f32, usize)>> = vec![Vec::new(); self.k];
            for i in 0..s.len() {
                if !labelled[i] {
                    by_class[s.pred[i] as usize].push((s.prob[i], i));
                }
            }
            for (c, mut v) in by_class.into_iter().enumerate() {
                v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
                for &(_, i) in v.iter().take(self.cfg.pseudo_per_class) {
                    x.extend_from_slice(self.emb.row(self.pool_rows[i]));
                    y.push(c as u32);
                    w.push(self.cfg.pseudo_weight);
                    pseudo_labels += 1;
                }
            }
            let mut cfg = hcfg.clone();
            cfg.epochs = (cfg.epochs / 2).max(1);
            head = Head::train(&head, &x, &y, &w, &cfg)?;
        }
        Ok((head, pseudo_labels))
    }

    /// Per class, the `prior_rows` unlabelled pool rows the zero-shot head
    /// gives that class the highest probability (and predicts it for), and
    /// how far the zero-shot head is trusted: its accuracy on the labels
    /// (which it never saw) above chance, as a share of the way from chance
    /// to 1 (0 with no labels, or none above chance).
    fn prior_exemplars(&self, labels: &[(usize, u32)]) -> Result<(Vec<Vec<usize>>, f32)> {
        let mut out = vec![Vec::new(); self.k];
        if self.cfg.prior_rows == 0 || labels.is_empty() {
            return Ok((out, 0.0));
        }
        let p = self.zero_shot_head().predict(&self.x_pool)?;
        let s = Scores::from_probs(p, self.k);
        let right = labels.iter().filter(|&&(i, l)| s.pred[i] == l).count() as f32 / labels.len() as f32;
        let chance = 1.0 / self.k as f32;
        let trust = ((right - chance) / (1.0 - chance)).clamp(0.0, 1.0);
        let labelled: std::collections::HashSet<usize> = labels.iter().map(|l| l.0).collect();
        let mut by_class: Vec<Vec<(f32, usize)>> = vec![Vec::new(); self.k];
        for i in 0..s.len() {
            if !labelled.contains(&i) {
                by_class[s.pred[i] as usize].push((s.prob[i], i));
            }
        }
        for (j, mut v) in by_class.into_iter().enumerate() {
            v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
            out[j] = v.into_iter().take(self.cfg.prior_rows).map(|x| x.1).collect();
        }
        Ok((out, trust))
    }

    /// Each label predicted by a head trained without it: `FOLDS` folds,
    /// interleaved in the order the labels were given, each fold's head
    /// trained as the model is (prior and self-training included). Rows of
    /// `k` probabilities in the order of `labels`; None with fewer than
    /// `calibration::MIN_LABELS` labels. The calibration temperature is
    /// fitted on them and the review ranks the labels they dispute.
    pub fn cross_validated(&self, labels: &[(usize, u32)]) -> Result<Option<Vec<f32>>> {
        if labels.len() < calibration::MIN_LABELS {
            return Ok(None);
        }
        let folds = calibration::FOLDS.min(labels.len());
        let mut probs = vec![0f32; labels.len() * self.k];
        for f in 0..folds {
            let train: Vec<(usize, u32)> = labels.iter().enumerate().filter(|(i, _)| i % folds != f).map(|(_, &p)| p).collect();
            let held: Vec<usize> = (0..labels.len()).filter(|i| i % folds == f).collect();
            let (head, _) = self.fit(&train, true)?;
            let rows: Vec<usize> = held.iter().map(|&i| self.pool_rows[labels[i].0]).collect();
            let x = Tensor::from_vec(gather(&self.emb, &rows), (rows.len(), self.dim), &Device::Cpu)?;
            let p = head.predict(&x)?;
            for (r, &i) in held.iter().enumerate() {
                probs[i * self.k..(i + 1) * self.k].copy_from_slice(&p[r * self.k..(r + 1) * self.k]);
            }
        }
        Ok(Some(probs))
    }

    /// Probabilities of the held-out rows under `head` (n x k), the model's
    /// own and calibrated, for the calibration error; None without a
    /// held-out set.
    pub fn test_probs(&self, head: &Head) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        match &self.x_test {
            Some(xt) => {
                let raw = head.predict(xt)?;
                let mut cal = raw.clone();
                calibration::apply(&mut cal, self.k, head.temperature);
                Ok(Some((raw, cal)))
            }
            None => Ok(None),
        }
    }

    /// Accuracy on `test` (pool index, label) of the head trained on
    /// `train`: how an encoder is judged on labels it has not seen.
    pub fn holdout_accuracy(&self, train: &[(usize, u32)], test: &[(usize, u32)]) -> Result<f64> {
        let right = self.holdout_right(train, test)?;
        Ok(right.iter().filter(|&&r| r).count() as f64 / right.len() as f64)
    }

    /// Per row of `test`: whether the head trained on `train` gets it right.
    pub fn holdout_right(&self, train: &[(usize, u32)], test: &[(usize, u32)]) -> Result<Vec<bool>> {
        if test.is_empty() {
            bail!("no labels to check on");
        }
        let (s, _) = self.score_with(&self.fit(train, true)?.0)?;
        Ok(test.iter().map(|&(i, l)| s.pred[i] == l).collect())
    }

    /// Scores of the pool under a given head: the model's own (for
    /// ranking) and calibrated (for everything else).
    pub fn score_with(&self, head: &Head) -> Result<(Scores, Scores)> {
        let probs = head.predict(&self.x_pool)?;
        let raw = Scores::from_probs(probs.clone(), self.k);
        let mut shown = probs;
        calibration::apply(&mut shown, self.k, head.temperature);
        Ok((raw, Scores::from_probs(shown, self.k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prior_rows`: the rows the zero-shot head is surest of per class,
    /// never a labelled one, weighted by how far the zero-shot head is right
    /// on the labels above chance; where it is no better than chance, the
    /// head is the prompts-alone head exactly.
    #[test]
    fn prior_rows_follow_the_zero_shot_head_as_far_as_it_is_trusted() {
        // Two classes along the axes; rows 0-3 lean to class 0, 4-7 to class 1.
        let rows: Vec<f32> = (0..8)
            .flat_map(|i| {
                let t = 0.1 + 0.1 * (i % 4) as f32;
                let v = if i < 4 { [1.0, t] } else { [t, 1.0] };
                let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
                [v[0] / n, v[1] / n]
            })
            .collect();
        let engine = |prior_rows: usize| {
            let cfg = EngineConfig { prior_rows, self_training: SelfTraining::Off, ..Default::default() };
            Engine::new(Arc::new(Matrix::owned(rows.clone(), 2)), (0..8).collect(), vec![], vec![], vec![1.0, 0.0, 0.0, 1.0], 2, cfg)
                .unwrap()
        };
        let e = engine(2);
        assert_eq!(e.prior_exemplars(&[]).unwrap(), (vec![vec![], vec![]], 0.0));
        // The zero-shot head is right on both labels: trusted fully; the
        // surest rows of each class, the labelled row 0 not among them.
        let (ex, trust) = e.prior_exemplars(&[(0, 0), (4, 1)]).unwrap();
        assert_eq!(trust, 1.0);
        assert_eq!(ex, vec![vec![1, 2], vec![5, 6]]);
        // Wrong on both: no trust, and the head is the prompts-alone one.
        let wrong = [(0, 1), (4, 0)];
        assert_eq!(e.prior_exemplars(&wrong).unwrap().1, 0.0);
        assert_eq!(e.fit(&wrong, false).unwrap().0, engine(0).fit(&wrong, false).unwrap().0);
        // Trusted, the rows change the head.
        let right = [(0, 0), (4, 1)];
        assert_ne!(e.fit(&right, false).unwrap().0, engine(0).fit(&right, false).unwrap().0);
    }

    /// Rows near the axes of `k` dimensions (row i leans to axis i % k), and
    /// an engine whose label prompts are the axes.
    fn axes_engine(k: usize, n: usize, odds: f32) -> Engine {
        let rows: Vec<f32> = (0..n)
            .flat_map(|i| {
                let mut v: Vec<f32> = (0..k).map(|j| if j == i % k { 1.0 } else { 0.05 * ((i * 7 + j * 3) % 5) as f32 }).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect();
        let prompts: Vec<f32> = (0..k * k).map(|i| if i / k == i % k { 1.0 } else { 0.0 }).collect();
        let cfg = EngineConfig { self_training: SelfTraining::Off, zero_shot_odds: odds, ..Default::default() };
        Engine::new(Arc::new(Matrix::owned(rows, k)), (0..n).collect(), vec![], vec![], prompts, k, cfg).unwrap()
    }

    /// The zero-shot head's share: the prior's before the cross-validation
    /// has labels enough, near 0 once the labels (held out) show the trained
    /// head better, the prior's again where no label has a class-mate to
    /// learn it from; off, the model is the trained head exactly.
    #[test]
    fn the_zero_shot_share_follows_the_labels_evidence() {
        let prior = (1.0 / (1.0 + (-3.0f64).exp())) as f32;
        let e = axes_engine(2, 40, 3.0);
        assert_eq!(e.iterate(&[]).unwrap().zero_shot_share, 0.0);
        // Four labels: no cross-validation yet, the prior alone.
        let few: Vec<(usize, u32)> = (0..4).map(|i| (i, (i % 2) as u32)).collect();
        let it = e.iterate(&few).unwrap();
        assert!((it.zero_shot_share - prior).abs() < 1e-6, "{}", it.zero_shot_share);
        // Twenty labels, each the opposite of what the zero-shot head says:
        // the trained head predicts them held out, the mix lets go.
        let flipped: Vec<(usize, u32)> = (0..20).map(|i| (i, (1 - i % 2) as u32)).collect();
        let it = e.iterate(&flipped).unwrap();
        assert!(it.zero_shot_share < 0.01, "{}", it.zero_shot_share);
        assert!((20..40).all(|i| it.scores.pred[i] == (1 - i % 2) as u32), "{:?}", &it.scores.pred[20..]);
        // Off: the trained head itself, shown and ranked.
        let off = axes_engine(2, 40, 0.0).iterate(&few).unwrap();
        assert_eq!(off.zero_shot_share, 0.0);
        assert_eq!(off.head, axes_engine(2, 40, 0.0).fit(&few, true).unwrap().0);
        // On, the ranking is the trained head's whatever the share.
        let on = e.iterate(&few).unwrap();
        assert_eq!(on.raw.probs, off.raw.probs);
        assert_ne!(on.scores.probs, off.scores.probs);
        // Ten classes, one label each: no label has a class-mate in the
        // other folds, so none is evidence; the share stays the prior's.
        let e10 = axes_engine(10, 40, 3.0);
        let singles: Vec<(usize, u32)> = (0..10).map(|i| (i, i as u32)).collect();
        let it = e10.iterate(&singles).unwrap();
        assert!((it.zero_shot_share - prior).abs() < 1e-6, "{}", it.zero_shot_share);
    }

    /// Mixing two heads' weights mixes their log-probabilities: the mixed
    /// head's probabilities are `mix_probs` of the two heads'.
    #[test]
    fn mixed_heads_mix_log_probabilities() {
        let a = Head { dim: 2, k: 3, w: vec![1.0, -2.0, 0.5, 0.3, 0.0, -1.0], b: vec![0.1, 0.0, -0.2], temperature: 1.0 };
        let z = Head { dim: 2, k: 3, w: vec![-0.5, 1.0, 2.0, 1.5, -1.0, 0.0], b: vec![0.0; 3], temperature: 1.0 };
        let x = Tensor::from_slice(&[0.6f32, 0.8, -1.0, 0.2], (2, 2), &Device::Cpu).unwrap();
        let (pa, pz) = (a.predict(&x).unwrap(), z.predict(&x).unwrap());
        for share in [0.0f32, 0.3, 1.0] {
            let m = mix_heads(&a, &z, share).predict(&x).unwrap();
            let want = mix_probs(&pa, &pz, 3, share);
            assert!(m.iter().zip(&want).all(|(p, q)| (p - q).abs() < 1e-5), "{share}: {m:?} {want:?}");
        }
        assert_eq!(mix_heads(&a, &z, 1.0).predict(&x).unwrap(), pz);
    }

    #[test]
    fn scores_entropy_and_margin() {
        let s = Scores::from_probs(vec![0.5, 0.5, 0.0, 1.0, 0.0, 0.0, 0.2, 0.3, 0.5], 3);
        assert_eq!(s.pred, vec![0, 0, 2]);
        assert!((s.entropy[0] - std::f32::consts::LN_2).abs() < 1e-6);
        assert_eq!(s.entropy[1], 0.0);
        assert!((s.margin[2] - 0.2).abs() < 1e-6);
        assert_eq!(s.top(2, 2), vec![(2, 0.5), (1, 0.3)]);
    }

    #[test]
    fn strategies_order() {
        let s = Scores::from_probs(vec![0.9, 0.1, 0.5, 0.5, 0.7, 0.3], 2);
        let all = vec![true; 3];
        assert_eq!(rank(&s, Strategy::Margin, &all, None, 10, 0), vec![1, 2, 0]);
        assert_eq!(rank(&s, Strategy::Entropy, &all, None, 10, 0), vec![1, 2, 0]);
        assert_eq!(rank(&s, Strategy::LeastConfidence, &all, None, 10, 0), vec![1, 2, 0]);
        assert_eq!(rank(&s, Strategy::Margin, &[true, false, true], None, 10, 0), vec![2, 0]);
        let r1 = rank(&s, Strategy::Random, &all, None, 10, 7);
        assert_eq!(r1, rank(&s, Strategy::Random, &all, None, 10, 7));
    }

    #[test]
    fn diverse_spreads_duplicates() {
        // Rows 0 and 1 identical, both most uncertain; batch of 2.
        let m = Matrix::owned(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0], 2);
        let s = Scores::from_probs(vec![0.5, 0.5, 0.51, 0.49, 0.6, 0.4], 2);
        let r = rank(&s, Strategy::Diverse, &[true; 3], Some((&m, &[0, 1, 2])), 2, 0);
        assert_eq!(r, vec![0, 2, 1]);
    }

    #[test]
    fn sign_test_tail() {
        assert!((sign_test(0, 0) - 1.0).abs() < 1e-12);
        assert!((sign_test(5, 0) - 1.0 / 32.0).abs() < 1e-12);
        assert!((sign_test(7, 1) - 9.0 / 256.0).abs() < 1e-12);
        assert!((sign_test(1, 1) - 0.75).abs() < 1e-12);
        assert!(sign_test(60, 40) < 0.05 && sign_test(55, 45) > 0.05);
    }

    #[test]
    fn metrics_match_hand_computation() {
        let m = evaluate(&[0, 0, 1, 2], &[0, 1, 1, 1], 3);
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        // class0: p=1/2 r=1 f=2/3; class1: p=1 r=1/3 f=0.5; class2: p=0 r=0 f=0
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        // gold-major: class 1's rows went to 0, 1 and 2 once each.
        assert_eq!(m.confusion, vec![1, 0, 0, 1, 1, 1, 0, 0, 0]);
    }
}
