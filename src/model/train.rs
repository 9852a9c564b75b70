//! Fine-tuning on the CPU with our own BERT (`cpu`): only the top layers
//! learn, from the hidden states that the frozen layers below give the
//! labelled texts (computed once). Each step runs the forward and backward
//! passes of the trained layers on two halves of the batch at once (one
//! thread each), sums the gradients and takes an AdamW step.

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::atomic::{AtomicBool, Ordering};

use super::cpu::{self, AdamW, Dropout, LayerCache, TopLayers};
use super::finetune::{contrastive_pairs, FinetuneConfig, Mode, Progress};
use super::states::States;
use super::Head;

/// Hidden states of the labelled texts where the trained layers start.
pub struct Inputs {
    /// Per text: its states (len x H).
    pub states: Vec<Vec<f32>>,
    pub lens: Vec<usize>,
}

impl Inputs {
    /// The states of some rows, taken from a `States` store.
    pub fn from_states(states: &States, rows: &[usize]) -> Inputs {
        let h = states.hidden;
        let mut v = Vec::with_capacity(rows.len());
        let mut lens = Vec::with_capacity(rows.len());
        for &r in rows {
            let (st, l) = states.gather(&[r]);
            debug_assert_eq!(st.len(), l[0] * h);
            v.push(st);
            lens.push(l[0]);
        }
        Inputs { states: v, lens }
    }

    /// Runs the frozen layers over the texts (on `threads` threads).
    pub fn compute(bert: &cpu::Bert, ids: &[Vec<u32>], from: usize, threads: usize) -> Inputs {
        let h = bert.dims.hidden;
        let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        // Per-text outputs of different sizes: compute in parallel groups.
        let n = seqs.len();
        let threads = threads.max(1).min(n.max(1));
        let per = n.div_ceil(threads.max(1)).max(1);
        let mut parts: Vec<Vec<f32>> = vec![Vec::new(); threads];
        std::thread::scope(|sc| {
            for (c, out) in parts.iter_mut().enumerate() {
                let (a, b) = ((c * per).min(n), ((c + 1) * per).min(n));
                let s = &seqs[a..b];
                sc.spawn(move || *out = bert.states(s, from));
            }
        });
        let mut states = Vec::with_capacity(n);
        let mut c = 0;
        let mut off = 0;
        for (i, &len) in lens.iter().enumerate() {
            while i >= ((c + 1) * per).min(n) {
                c += 1;
                off = 0;
            }
            states.push(parts[c][off * h..(off + len) * h].to_vec());
            off += len;
        }
        Inputs { states, lens }
    }
}

/// The trained layers' parameters and gradients, as flat lists.
fn flat_params(layers: &mut [cpu::Layer]) -> Vec<&mut Vec<f32>> {
    layers.iter_mut().flat_map(|l| l.params_mut().into_iter()).collect()
}

fn flat_grads(layers: &[cpu::Layer]) -> Vec<&Vec<f32>> {
    layers.iter().flat_map(|l| l.params().into_iter()).collect()
}

/// Forward and backward for a batch of texts (indices into `inp`), the loss
/// computed from all their embeddings by `loss_grad(emb) -> (loss, d emb)`.
/// The texts are split over `threads` threads. Returns the loss and the
/// summed gradients.
fn step_grads(
    top: &TopLayers,
    inp: &Inputs,
    texts: &[usize],
    drop: Option<Dropout>,
    threads: usize,
    loss_grad: &mut dyn FnMut(&[f32]) -> (f32, Vec<f32>),
) -> (f32, Vec<cpu::Layer>) {
    let h = top.dims.hidden;
    let threads = threads.max(1).min(texts.len().max(1));
    let per = texts.len().div_ceil(threads);
    let groups: Vec<&[usize]> = texts.chunks(per.max(1)).collect();
    struct Part {
        lens: Vec<usize>,
        emb: Vec<f32>,
        last: Vec<f32>,
        caches: Vec<LayerCache>,
    }
    // Forward on each group.
    let mut parts: Vec<Option<Part>> = (0..groups.len()).map(|_| None).collect();
    std::thread::scope(|sc| {
        for (g, slot) in groups.iter().zip(parts.iter_mut()) {
            sc.spawn(move || {
                let lens: Vec<usize> = g.iter().map(|&i| inp.lens[i]).collect();
                let mut st = Vec::with_capacity(lens.iter().sum::<usize>() * h);
                for &i in g.iter() {
                    st.extend_from_slice(&inp.states[i]);
                }
                // A per-text dropout seed would make masks independent of the
                // split; per group is enough here (the split is fixed by the batch).
                let mut caches = Vec::new();
                let (emb, last) = top.forward_train(&st, &lens, drop, &mut caches);
                *slot = Some(Part { lens, emb, last, caches });
            });
        }
    });
    let parts: Vec<Part> = parts.into_iter().map(|p| p.expect("forward ran")).collect();
    let emb: Vec<f32> = parts.iter().flat_map(|p| p.emb.iter().copied()).collect();
    let (loss, de) = loss_grad(&emb);
    // Backward on each group.
    let mut grads: Vec<Vec<cpu::Layer>> = (0..parts.len()).map(|_| top.zero_grads()).collect();
    std::thread::scope(|sc| {
        let mut off = 0;
        for (p, g) in parts.iter().zip(grads.iter_mut()) {
            let n = p.lens.len();
            let de_part = &de[off * h..(off + n) * h];
            off += n;
            sc.spawn(move || top.backward(&p.last, &p.lens, &p.emb, de_part, &p.caches, g));
        }
    });
    let mut total = grads.pop().unwrap_or_else(|| top.zero_grads());
    for g in grads {
        for (a, b) in flat_params(&mut total).into_iter().zip(flat_grads(&g)) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
    }
    (loss, total)
}

/// Fine-tunes the top `cfg.train_layers` layers of `bert` on labelled texts
/// (token ids). Returns the tuned encoder. In mode `finetune` the head
/// learns with it (cross-entropy) and is returned too.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    bert: &cpu::Bert,
    ids: &[Vec<u32>],
    labels: &[u32],
    head: &Head,
    mode: Mode,
    cfg: &FinetuneConfig,
    threads: usize,
    progress: Progress,
    cancel: &AtomicBool,
) -> Result<(cpu::Bert, Head)> {
    let from = bert.dims.layers - cfg.train_layers.clamp(1, bert.dims.layers);
    let inp = Inputs::compute(bert, ids, from, threads);
    finetune_from(bert, inp, labels, head, mode, cfg, threads, progress, cancel)
}

/// `finetune` from the trained layers' input states (see `Inputs`), which
/// must come from layer `layers - cfg.train_layers` of `bert`.
#[allow(clippy::too_many_arguments)]
pub fn finetune_from(
    bert: &cpu::Bert,
    inp: Inputs,
    labels: &[u32],
    head: &Head,
    mode: Mode,
    cfg: &FinetuneConfig,
    threads: usize,
    progress: Progress,
    cancel: &AtomicBool,
) -> Result<(cpu::Bert, Head)> {
    if inp.lens.len() != labels.len() || labels.is_empty() {
        bail!("fine-tuning needs labelled texts ({} texts, {} labels)", inp.lens.len(), labels.len());
    }
    let mut top = TopLayers::of(bert, cfg.train_layers);
    let h = bert.dims.hidden;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut opt = AdamW::new(cfg.lr as f32, 0.01);
    let mut head = head.clone();
    let mut head_opt = AdamW::new(cfg.head_lr as f32, 0.0);
    let drop = |step: usize| {
        if cfg.dropout > 0.0 {
            Some(Dropout { hidden: cfg.dropout, attention: cfg.dropout, seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64) })
        } else {
            None
        }
    };
    let Some(mode) = mode.method() else { bail!("mode 'head' does not fine-tune the encoder") };
    match mode {
        Mode::Head | Mode::Auto => unreachable!("method() gives finetune or contrastive"),
        Mode::Contrastive => {
            let pairs = contrastive_pairs(labels, cfg.pair_rounds.max(1), &mut rng);
            if pairs.is_empty() {
                bail!("contrastive fine-tuning needs labels of at least two classes");
            }
            let per_epoch = pairs.len().div_ceil(cfg.batch);
            let steps = per_epoch * cfg.epochs;
            let mut step = 0;
            for _ in 0..cfg.epochs {
                for chunk in pairs.chunks(cfg.batch) {
                    if cancel.load(Ordering::SeqCst) {
                        bail!("fine-tuning cancelled");
                    }
                    // The distinct texts of the batch, and each pair's places among them.
                    let mut texts: Vec<usize> = chunk.iter().flat_map(|p| [p.0, p.1]).collect();
                    texts.sort_unstable();
                    texts.dedup();
                    let at = |i: usize| texts.binary_search(&i).expect("text in batch");
                    let idx: Vec<(usize, usize, f32)> = chunk.iter().map(|p| (at(p.0), at(p.1), p.2)).collect();
                    let n = idx.len() as f32;
                    let (loss, grads) = step_grads(&top, &inp, &texts, drop(step), threads, &mut |emb| {
                        let mut de = vec![0f32; emb.len()];
                        let mut loss = 0f32;
                        for &(a, b, target) in &idx {
                            let (ea, eb) = (&emb[a * h..(a + 1) * h], &emb[b * h..(b + 1) * h]);
                            let c = cpu::kernels::dot(ea, eb);
                            loss += (c - target) * (c - target) / n;
                            let g = 2.0 * (c - target) / n;
                            for j in 0..h {
                                de[a * h + j] += g * eb[j];
                                de[b * h + j] += g * ea[j];
                            }
                        }
                        (loss, de)
                    });
                    if !loss.is_finite() {
                        bail!("fine-tuning diverged: loss {loss} at step {step}");
                    }
                    let g = flat_grads(&grads);
                    opt.step(&mut flat_params(&mut top.layers), &g);
                    step += 1;
                    progress(step, steps, loss);
                }
            }
        }
        Mode::Finetune => {
            let k = head.k;
            let mut order: Vec<usize> = (0..labels.len()).collect();
            let steps = labels.len().div_ceil(cfg.batch) * cfg.epochs;
            let mut step = 0;
            for _ in 0..cfg.epochs {
                order.shuffle(&mut rng);
                for chunk in order.chunks(cfg.batch) {
                    if cancel.load(Ordering::SeqCst) {
                        bail!("fine-tuning cancelled");
                    }
                    let texts = chunk.to_vec();
                    let n = texts.len() as f32;
                    let mut gw = vec![0f32; h * k];
                    let mut gb = vec![0f32; k];
                    let hd = &head;
                    let (loss, grads) = step_grads(&top, &inp, &texts, drop(step), threads, &mut |emb| {
                        let mut de = vec![0f32; emb.len()];
                        let mut loss = 0f32;
                        for (r, &t) in texts.iter().enumerate() {
                            let e = &emb[r * h..(r + 1) * h];
                            let mut logits: Vec<f32> = hd.b.clone();
                            for i in 0..h {
                                for j in 0..k {
                                    logits[j] += e[i] * hd.w[i * k + j];
                                }
                            }
                            let mx = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                            let mut sum = 0f32;
                            for v in logits.iter_mut() {
                                *v = (*v - mx).exp();
                                sum += *v;
                            }
                            let y = labels[t] as usize;
                            loss -= (logits[y] / sum).max(1e-30).ln() / n;
                            for j in 0..k {
                                let d = (logits[j] / sum - if j == y { 1.0 } else { 0.0 }) / n;
                                gb[j] += d;
                                for i in 0..h {
                                    gw[i * k + j] += e[i] * d;
                                    de[r * h + i] += d * hd.w[i * k + j];
                                }
                            }
                        }
                        (loss, de)
                    });
                    if !loss.is_finite() {
                        bail!("fine-tuning diverged: loss {loss} at step {step}");
                    }
                    let g = flat_grads(&grads);
                    opt.step(&mut flat_params(&mut top.layers), &g);
                    let (mut w, mut b) = (std::mem::take(&mut head.w), std::mem::take(&mut head.b));
                    head_opt.step(&mut [&mut w, &mut b], &[&gw, &gb]);
                    head.w = w;
                    head.b = b;
                    step += 1;
                    progress(step, steps, loss);
                }
            }
        }
    }
    let mut tuned = bert.clone();
    let from = top.from;
    for (k, l) in top.layers.into_iter().enumerate() {
        tuned.layers[from + k] = l;
    }
    Ok((tuned, head))
}
