//! Fine-tuning the encoder on the person's labels.
//!
//! - `finetune`: the whole encoder with a softmax head on its sentence
//!   embeddings, cross-entropy, AdamW (the encoder at a small learning rate,
//!   the head at a larger one).
//! - `contrastive`: SetFit's recipe: pairs drawn from the labelled rows,
//!   the cosine of their embeddings pulled to 1 for the same label and to 0
//!   for different labels (mean squared error); the head is then fitted on
//!   the new embeddings as usual.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::bert;
use super::{Encoder, Head};

pub use crate::settings::Mode;

#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneConfig {
    /// Passes over the labelled rows (finetune) or over the pairs (contrastive).
    pub epochs: usize,
    /// Texts per step (finetune) or pairs per step (contrastive).
    pub batch: usize,
    /// Encoder learning rate.
    pub lr: f64,
    /// Head learning rate (finetune).
    pub head_lr: f64,
    /// Contrastive: rounds of one positive and one negative pair per labelled row (SetFit's num_iterations).
    pub pair_rounds: usize,
    pub seed: u64,
    /// How many of the top layers learn (the rest stay frozen; CPU path).
    pub train_layers: usize,
    /// Dropout while training (CPU path; the candle path takes the model's config).
    pub dropout: f32,
}

impl FinetuneConfig {
    /// Defaults for 10 to 200 labels.
    pub fn for_mode(mode: Mode) -> FinetuneConfig {
        match mode {
            Mode::Contrastive => {
                FinetuneConfig { epochs: 1, batch: 16, lr: 1e-4, head_lr: 0.0, pair_rounds: 5, seed: 0, train_layers: 2, dropout: 0.1 }
            }
            _ => FinetuneConfig { epochs: 8, batch: 16, lr: 2e-4, head_lr: 5e-3, pair_rounds: 0, seed: 0, train_layers: 3, dropout: 0.1 },
        }
    }
}

impl FinetuneConfig {
    /// The mode's defaults with a session's (or the command line's) changes.
    pub fn with(mut self, o: &crate::store::FinetuneOverrides) -> FinetuneConfig {
        if let Some(v) = o.epochs {
            self.epochs = v.max(1);
        }
        if let Some(v) = o.lr {
            self.lr = v;
        }
        if let Some(v) = o.batch {
            self.batch = v.max(1);
        }
        if let Some(v) = o.pair_rounds {
            self.pair_rounds = v.max(1);
        }
        if let Some(v) = o.layers {
            self.train_layers = v.max(1);
        }
        self
    }
}

fn pad_batch(ids: &[&[u32]], device: &Device) -> Result<(Tensor, Tensor)> {
    let len = ids.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut flat = vec![0u32; ids.len() * len];
    let mut mask = vec![0u32; ids.len() * len];
    for (i, s) in ids.iter().enumerate() {
        flat[i * len..i * len + s.len()].copy_from_slice(s);
        mask[i * len..i * len + s.len()].iter_mut().for_each(|m| *m = 1);
    }
    Ok((Tensor::from_vec(flat, (ids.len(), len), device)?, Tensor::from_vec(mask, (ids.len(), len), device)?))
}

/// Progress of a fine-tune: (step, steps, loss).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f32);

/// Fine-tunes the encoder in `base` on labelled texts; returns its variables
/// (save them with `bert::save_model_dir`). `head` starts the classifier
/// in finetune mode. Stops with an error when `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    base: &Path,
    device: &Device,
    tokenizer: &Encoder,
    texts: &[&str],
    labels: &[u32],
    head: &Head,
    mode: Mode,
    cfg: &FinetuneConfig,
    progress: Progress,
    cancel: &AtomicBool,
) -> Result<VarMap> {
    if texts.len() != labels.len() || texts.is_empty() {
        bail!("fine-tuning needs labelled texts ({} texts, {} labels)", texts.len(), labels.len());
    }
    if mode == Mode::Head {
        bail!("mode 'head' does not fine-tune the encoder");
    }
    let ids = tokenizer.tokenize(texts)?;
    let (mut model, vars) = bert::load_trainable(base, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    // Only the top `train_layers` layers learn, as on the CPU: the ones below
    // run as frozen features, and the backward pass stops above them.
    let layers = model.cfg.num_hidden_layers;
    let first = layers - cfg.train_layers.clamp(1, layers);
    model.frozen_below = first;
    let trained: Vec<Var> = {
        let data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| (first..layers).any(|l| n.contains(&format!("encoder.layer.{l}."))))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|x| x.1).collect()
    };
    let mut opt = AdamW::new(trained, ParamsAdamW { lr: cfg.lr, weight_decay: 0.01, ..Default::default() })?;
    let mode = mode.method().ok_or_else(|| anyhow::anyhow!("mode 'head' does not fine-tune the encoder"))?;
    match mode {
        Mode::Finetune => {
            let w = Var::from_tensor(&Tensor::from_slice(&head.w, (head.dim, head.k), device)?)?;
            let b = Var::from_tensor(&Tensor::from_slice(&head.b, head.k, device)?)?;
            let mut head_opt =
                AdamW::new(vec![w.clone(), b.clone()], ParamsAdamW { lr: cfg.head_lr, weight_decay: 0.0, ..Default::default() })?;
            let mut order: Vec<usize> = (0..texts.len()).collect();
            let per_epoch = texts.len().div_ceil(cfg.batch);
            let steps = per_epoch * cfg.epochs;
            let mut step = 0;
            for _ in 0..cfg.epochs {
                order.shuffle(&mut rng);
                for chunk in order.chunks(cfg.batch) {
                    if cancel.load(Ordering::SeqCst) {
                        bail!("fine-tuning cancelled");
                    }
                    let (t, m) = pad_batch(&chunk.iter().map(|&i| ids[i].as_slice()).collect::<Vec<_>>(), device)?;
                    let y = Tensor::from_vec(chunk.iter().map(|&i| labels[i]).collect::<Vec<u32>>(), chunk.len(), device)?;
                    let e = model.embed(&t, &m, true)?;
                    let logits = e.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                    let l = loss.to_scalar::<f32>()?;
                    if !l.is_finite() {
                        bail!("fine-tuning diverged: loss {l} at step {step}");
                    }
                    let grads = loss.backward()?;
                    opt.step(&grads)?;
                    head_opt.step(&grads)?;
                    step += 1;
                    progress(step, steps, l);
                }
            }
        }
        Mode::Contrastive => {
            let pairs = contrastive_pairs(labels, cfg.pair_rounds.max(1), &mut rng);
            if pairs.is_empty() {
                bail!("contrastive fine-tuning needs labels of at least two classes");
            }
            let steps = pairs.len().div_ceil(cfg.batch) * cfg.epochs;
            let mut step = 0;
            for _ in 0..cfg.epochs {
                for chunk in pairs.chunks(cfg.batch) {
                    if cancel.load(Ordering::SeqCst) {
                        bail!("fine-tuning cancelled");
                    }
                    let seqs: Vec<&[u32]> = chunk.iter().flat_map(|p| [ids[p.0].as_slice(), ids[p.1].as_slice()]).collect();
                    let (t, m) = pad_batch(&seqs, device)?;
                    let e = model.embed(&t, &m, true)?; // (2n, d): a0 b0 a1 b1 ...
                    let n = chunk.len();
                    let e = e.reshape((n, 2, head.dim))?;
                    let a = e.narrow(1, 0, 1)?.squeeze(1)?;
                    let bb = e.narrow(1, 1, 1)?.squeeze(1)?;
                    let cos = (a * bb)?.sum(1)?;
                    let target = Tensor::from_vec(chunk.iter().map(|p| p.2).collect::<Vec<f32>>(), n, device)?;
                    let loss = (cos - target)?.sqr()?.mean_all()?;
                    let l = loss.to_scalar::<f32>()?;
                    if !l.is_finite() {
                        bail!("fine-tuning diverged: loss {l} at step {step}");
                    }
                    opt.backward_step(&loss)?;
                    step += 1;
                    progress(step, steps, l);
                }
            }
        }
        Mode::Head | Mode::Auto => unreachable!("method() gives finetune or contrastive"),
    }
    Ok(vars)
}

/// SetFit's pair sampling: for each round and each labelled row, one pair
/// with another row of its label (target 1) and one with a row of another
/// label (target 0), where such rows exist.
pub fn contrastive_pairs(labels: &[u32], rounds: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<(usize, usize, f32)> {
    use rand::Rng;
    let n = labels.len();
    let mut pairs = Vec::new();
    for _ in 0..rounds {
        for i in 0..n {
            let same: Vec<usize> = (0..n).filter(|&j| j != i && labels[j] == labels[i]).collect();
            let diff: Vec<usize> = (0..n).filter(|&j| labels[j] != labels[i]).collect();
            if let Some(&j) = same.choose(rng) {
                pairs.push((i, j, 1.0));
            }
            if !diff.is_empty() {
                pairs.push((i, diff[rng.gen_range(0..diff.len())], 0.0));
            }
        }
    }
    pairs.shuffle(rng);
    pairs
}
