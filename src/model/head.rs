//! The classifier head: a softmax regression on sentence embeddings,
//! trained with candle-nn's AdamW on a weighted cross-entropy.
//!
//! Its weights start from the label prompts' embeddings scaled by the
//! zero-shot temperature, so before any label (and for classes that have no
//! label yet) it scores a text by its cosine similarity to each label.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

#[derive(Debug, Clone, PartialEq)]
pub struct HeadConfig {
    pub epochs: usize,
    pub lr: f64,
    /// AdamW's decoupled weight decay. 1 by default: it keeps the weights
    /// small, so with few labels a class the head follows no single row
    /// (a wrong label least of all) as far as a fit run to a margin does.
    /// Chosen on development splits that never touch a test split
    /// (`scripts/dev_split.py`; docs/RESULTS.md, "The head's weight
    /// decay"): at 150 labels TREC coarse fine-tuned 0.846 to 0.904,
    /// BANKING77 0.789 to 0.800, anote_banking 0.688 to 0.707.
    pub weight_decay: f64,
    /// Zero-shot temperature: logits = cos / temperature.
    pub temperature: f32,
    /// Weight each class equally however many labels it has, over all rows
    /// given (the engine balances the person's labels itself and leaves this off).
    pub class_weights: bool,
    /// L2 pull of the weights back towards the starting (zero-shot) head.
    pub anchor: f64,
    /// How the pull fades as a class gets labels: class j's is
    /// `anchor / (1 + class_labels[j])^anchor_fade` (0: the same for every
    /// class, whatever its labels).
    pub anchor_fade: f64,
    /// The person's labels per class, for `anchor_fade` (the engine sets
    /// them for each fit; missing classes count 0).
    pub class_labels: Vec<usize>,
    /// Start from the zero-shot head (true) or from zero weights.
    pub prior_init: bool,
}

impl HeadConfig {
    /// Each class's L2 pull towards the starting head (`anchor`, faded by
    /// the class's labels with `anchor_fade`).
    fn pulls(&self, k: usize) -> Vec<f32> {
        (0..k)
            .map(|j| {
                let labels = self.class_labels.get(j).copied().unwrap_or(0) as f64;
                (self.anchor / (1.0 + labels).powf(self.anchor_fade)) as f32
            })
            .collect()
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            epochs: 100,
            lr: 0.1,
            weight_decay: 1.0,
            temperature: 0.05,
            class_weights: false,
            anchor: 0.0,
            anchor_fade: 0.0,
            class_labels: Vec::new(),
            prior_init: false,
        }
    }
}

/// Weights `w` (dim x k, row-major) and bias `b` (k).
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub k: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// The calibration temperature (1: none); `predict` ignores it,
    /// `predict_calibrated` applies it (`apply_temperature`; fitted by
    /// `learn::calibration`).
    pub temperature: f32,
}

impl Head {
    /// The zero-shot head: column j is label j's embedding over the temperature.
    pub fn zero_shot(label_emb: &[f32], dim: usize, k: usize, temperature: f32) -> Head {
        let mut w = vec![0f32; dim * k];
        for j in 0..k {
            for i in 0..dim {
                w[i * k + j] = label_emb[j * dim + i] / temperature;
            }
        }
        Head { dim, k, w, b: vec![0.0; k], temperature: 1.0 }
    }

    /// Trains from `init` on rows `x` (n x dim) with labels `y` and per-row
    /// weights (1 for a person's label; less for pseudo-labels and priors).
    /// Full-batch and deterministic: the same inputs give the same head.
    ///
    /// This is the fast path: the gradient of the weighted cross-entropy is
    /// written out by hand and the update is AdamW exactly as candle-nn does
    /// it, on single-threaded matrix products, because candle's per-op
    /// overhead (thread-pool barriers on tensors this small) made each epoch
    /// cost milliseconds. `train_candle` is the same training through
    /// candle's autograd and candle-nn's AdamW; a test checks they agree.
    pub fn train(init: &Head, x: &[f32], y: &[u32], row_weight: &[f32], cfg: &HeadConfig) -> Result<Head> {
        let (dim, k) = (init.dim, init.k);
        let n = y.len();
        if n == 0 {
            return Ok(init.clone());
        }
        let weights = normalised_weights(init, x, y, row_weight, cfg)?;
        let pulls = cfg.pulls(k);
        let mut w = if cfg.prior_init { init.w.clone() } else { vec![0f32; dim * k] };
        let mut b = if cfg.prior_init { init.b.clone() } else { vec![0f32; k] };
        let (mut mw, mut vw) = (vec![0f32; dim * k], vec![0f32; dim * k]);
        let (mut mb, mut vb) = (vec![0f32; k], vec![0f32; k]);
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let lr = cfg.lr as f32;
        let wd = cfg.weight_decay as f32;
        let mut logits = vec![0f32; n * k];
        let mut gw = vec![0f32; dim * k];
        let mut gb = vec![0f32; k];
        for epoch in 0..cfg.epochs {
            // logits = x w + b
            matmul(&mut logits, x, &w, n, dim, k, false);
            let mut loss = 0f64;
            for i in 0..n {
                let row = &mut logits[i * k..(i + 1) * k];
                let mut mx = f32::NEG_INFINITY;
                for (j, v) in row.iter_mut().enumerate() {
                    *v += b[j];
                    mx = mx.max(*v);
                }
                let mut sum = 0f32;
                for v in row.iter_mut() {
                    *v = (*v - mx).exp();
                    sum += *v;
                }
                let yi = y[i] as usize;
                loss -= weights[i] as f64 * ((row[yi] / sum).max(1e-30) as f64).ln();
                // Gradient of the weighted loss w.r.t. the logits: w_i (p - onehot).
                for (j, v) in row.iter_mut().enumerate() {
                    *v = weights[i] * (*v / sum - if j == yi { 1.0 } else { 0.0 });
                }
            }
            if (epoch == 0 || epoch + 1 == cfg.epochs) && !loss.is_finite() {
                bail!("training diverged: the loss is {loss} at epoch {epoch}");
            }
            // gw = x^T g; gb = column sums of g.
            matmul(&mut gw, x, &logits, dim, n, k, true);
            gb.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..n {
                for j in 0..k {
                    gb[j] += logits[i * k + j];
                }
            }
            if cfg.anchor > 0.0 {
                // Row-major (dim x k): the element at i * k + j is class j's.
                for (idx, ((g, wv), w0)) in gw.iter_mut().zip(&w).zip(&init.w).enumerate() {
                    *g += 2.0 * pulls[idx % k] * (wv - w0);
                }
            }
            // AdamW, as candle-nn: decay, moments, bias correction, step.
            let t = (epoch + 1) as i32;
            let c1 = (1.0 - b1.powi(t)) as f32;
            let c2 = (1.0 - b2.powi(t)) as f32;
            let adam = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                for i in 0..p.len() {
                    p[i] *= 1.0 - lr * wd;
                    m[i] = b1 as f32 * m[i] + (1.0 - b1 as f32) * g[i];
                    v[i] = b2 as f32 * v[i] + (1.0 - b2 as f32) * g[i] * g[i];
                    let mh = m[i] / c1;
                    let vh = v[i] / c2;
                    p[i] -= lr * mh / (vh.sqrt() + eps as f32);
                }
            };
            adam(&mut w, &gw, &mut mw, &mut vw);
            adam(&mut b, &gb, &mut mb, &mut vb);
        }
        if w.iter().chain(b.iter()).any(|v| !v.is_finite()) {
            bail!("training diverged: the head has non-finite weights");
        }
        Ok(Head { dim, k, w, b, temperature: init.temperature })
    }

    /// The same training as `train`, through candle's autograd and
    /// candle-nn's AdamW (the reference the fast path is tested against).
    pub fn train_candle(init: &Head, x: &[f32], y: &[u32], row_weight: &[f32], cfg: &HeadConfig) -> Result<Head> {
        let (dim, k) = (init.dim, init.k);
        let n = y.len();
        if n == 0 {
            return Ok(init.clone());
        }
        let weights = normalised_weights(init, x, y, row_weight, cfg)?;
        let dev = Device::Cpu;
        let xt = Tensor::from_slice(x, (n, dim), &dev)?;
        let yt = Tensor::from_slice(y, (n, 1), &dev)?;
        let wt = Tensor::from_vec(weights, n, &dev)?;
        let w0 = Tensor::from_slice(&init.w, (dim, k), &dev)?;
        let b0 = Tensor::from_slice(&init.b, k, &dev)?;
        let (w, b) = if cfg.prior_init {
            (Var::from_tensor(&w0)?, Var::from_tensor(&b0)?)
        } else {
            (Var::zeros((dim, k), DType::F32, &dev)?, Var::zeros(k, DType::F32, &dev)?)
        };
        let mut opt =
            AdamW::new(vec![w.clone(), b.clone()], ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
        for epoch in 0..cfg.epochs {
            let logits = xt.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let nll = logp.gather(&yt, 1)?.squeeze(1)?.neg()?;
            let mut loss = (nll * &wt)?.sum_all()?;
            if cfg.anchor > 0.0 {
                let pulls = Tensor::from_vec(cfg.pulls(k), (1, k), &dev)?;
                let pull = (w.as_tensor() - &w0)?.sqr()?.broadcast_mul(&pulls)?.sum_all()?;
                loss = (loss + pull)?;
            }
            if epoch + 1 == cfg.epochs || epoch == 0 {
                let l = loss.to_scalar::<f32>()?;
                if !l.is_finite() {
                    bail!("training diverged: the loss is {l} at epoch {epoch}");
                }
            }
            opt.backward_step(&loss)?;
        }
        let w = w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let b = b.as_tensor().to_vec1::<f32>()?;
        if w.iter().chain(b.iter()).any(|v| !v.is_finite()) {
            bail!("training diverged: the head has non-finite weights");
        }
        Ok(Head { dim, k, w, b, temperature: init.temperature })
    }

    /// Class probabilities for the rows of `x` (a tensor n x dim on the CPU):
    /// n x k floats, row-major.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<f32>> {
        let dev = x.device();
        let w = Tensor::from_slice(&self.w, (self.dim, self.k), dev)?;
        let b = Tensor::from_slice(&self.b, self.k, dev)?;
        let logits = x.matmul(&w)?.broadcast_add(&b)?;
        let p = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
        Ok(p.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Calibrated class probabilities: `predict` at the head's temperature.
    pub fn predict_calibrated(&self, x: &Tensor) -> Result<Vec<f32>> {
        let mut p = self.predict(x)?;
        apply_temperature(&mut p, self.k, self.temperature);
        Ok(p)
    }

    /// Saves the head as safetensors.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let dev = Device::Cpu;
        let mut m = std::collections::HashMap::new();
        m.insert("head.weight".to_string(), Tensor::from_slice(&self.w, (self.dim, self.k), &dev)?);
        m.insert("head.bias".to_string(), Tensor::from_slice(&self.b, self.k, &dev)?);
        m.insert("head.temperature".to_string(), Tensor::from_slice(&[self.temperature], 1, &dev)?);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&m, &tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Head> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Head::from_bytes(&bytes, path)
    }

    /// A head from the bytes of its safetensors file (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &std::path::Path) -> Result<Head> {
        let m = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .with_context(|| format!("{}: not a saved model head (damaged?)", path.display()))?;
        let w = m.get("head.weight").ok_or_else(|| anyhow::anyhow!("{}: no head.weight", path.display()))?;
        let b = m.get("head.bias").ok_or_else(|| anyhow::anyhow!("{}: no head.bias", path.display()))?;
        let (dim, k) = w.dims2()?;
        // Heads saved before calibration have no temperature: 1.
        let temperature = match m.get("head.temperature") {
            Some(t) => t.to_vec1::<f32>()?.first().copied().filter(|t| t.is_finite() && *t > 0.0).unwrap_or(1.0),
            None => 1.0,
        };
        Ok(Head { dim, k, w: w.flatten_all()?.to_vec1()?, b: b.to_vec1()?, temperature })
    }
}

/// Checks the training data and returns the per-row weights: the given
/// weight, times the class weight when `class_weights` (balanced over the
/// classes present), normalised to sum to one.
fn normalised_weights(init: &Head, x: &[f32], y: &[u32], row_weight: &[f32], cfg: &HeadConfig) -> Result<Vec<f32>> {
    let (dim, k) = (init.dim, init.k);
    let n = y.len();
    if x.len() != n * dim || row_weight.len() != n {
        bail!("training data has {} floats and {} weights for {n} rows of {dim}", x.len(), row_weight.len());
    }
    if let Some(bad) = y.iter().find(|&&l| l as usize >= k) {
        bail!("label {bad} is outside the label set of {k}");
    }
    let mut wsum = vec![0f32; k];
    for (&l, &rw) in y.iter().zip(row_weight) {
        wsum[l as usize] += rw;
    }
    let present = wsum.iter().filter(|&&c| c > 0.0).count().max(1) as f32;
    let total: f32 = wsum.iter().sum();
    let mut weights: Vec<f32> =
        y.iter().zip(row_weight).map(|(&l, &rw)| if cfg.class_weights { rw * total / (present * wsum[l as usize]) } else { rw }).collect();
    let s: f32 = weights.iter().sum();
    if !(s > 0.0) || !s.is_finite() {
        bail!("the training rows have no weight");
    }
    for w in &mut weights {
        *w /= s;
    }
    Ok(weights)
}

/// dst (m x n) = a (m x k) b (k x n), row-major; with `a_t`, `a` is given
/// as its transpose (k x m). Single-threaded: these matrices are small.
fn matmul(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, a_t: bool) {
    let (a_cs, a_rs) = if a_t { (m as isize, 1isize) } else { (1isize, k as isize) };
    // SAFETY: the slices hold m*k, k*n and m*n floats at the strides given.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Applies temperature `t` to rows of `k` probabilities, in place: p_T ∝
/// p^(1/T), so the predicted label never changes (`learn::calibration`
/// fits T).
pub fn apply_temperature(probs: &mut [f32], k: usize, t: f32) {
    if k == 0 || (t - 1.0).abs() < 1e-6 || !t.is_finite() || t <= 0.0 {
        return;
    }
    let inv = 1.0 / t as f64;
    for row in probs.chunks_mut(k) {
        // Work in logs relative to the largest entry: no underflow to 0/0.
        let m = row.iter().cloned().fold(f32::MIN_POSITIVE, f32::max) as f64;
        let mut sum = 0f64;
        for v in row.iter_mut() {
            let l = ((*v as f64).max(1e-30) / m).ln() * inv;
            let e = l.exp();
            *v = e as f32;
            sum += e;
        }
        for v in row.iter_mut() {
            *v = (*v as f64 / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pull towards the starting head, faded per class: a class with
    /// no labels keeps its starting column, one with many learns freely.
    #[test]
    fn the_anchor_fades_with_each_class_labels() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (n, dim, k) = (60, 8, 3);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // Classes 0 and 1 have all the rows; class 2 none.
        let y: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let rw = vec![1.0; n];
        let init = Head { dim, k, w: (0..dim * k).map(|_| rng.gen_range(-2.0..2.0)).collect(), b: vec![0.0; k], temperature: 1.0 };
        let moved = |h: &Head, j: usize| -> f32 { (0..dim).map(|i| (h.w[i * k + j] - init.w[i * k + j]).powi(2)).sum::<f32>().sqrt() };
        let base = HeadConfig { prior_init: true, weight_decay: 0.0, epochs: 200, ..Default::default() };
        let free = Head::train(&init, &x, &y, &rw, &base).unwrap();
        let faded =
            Head::train(&init, &x, &y, &rw, &HeadConfig { anchor: 1.0, anchor_fade: 2.0, class_labels: vec![30, 0, 0], ..base.clone() })
                .unwrap();
        // Class 1 (no labels counted) is held near its start; class 0 (30) moves as freely as without the pull.
        assert!(moved(&faded, 1) < 0.5 * moved(&free, 1), "{} against {}", moved(&faded, 1), moved(&free, 1));
        assert!(moved(&faded, 0) > 0.8 * moved(&free, 0), "{} against {}", moved(&faded, 0), moved(&free, 0));
        // Without fading every class is held alike.
        let flat = Head::train(&init, &x, &y, &rw, &HeadConfig { anchor: 1.0, class_labels: vec![30, 0, 0], ..base }).unwrap();
        assert!(moved(&flat, 0) < 0.5 * moved(&free, 0));
    }

    #[test]
    fn matmul_matches_naive() {
        let a: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 2x3
        let b: Vec<f32> = (0..12).map(|v| (v as f32) * 0.5).collect(); // 3x4
        let mut d = vec![0f32; 8];
        matmul(&mut d, &a, &b, 2, 3, 4, false);
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3).map(|t| a[i * 3 + t] * b[t * 4 + j]).sum();
                assert_eq!(d[i * 4 + j], want);
            }
        }
        // a given transposed: at is 3x2 holding a^T.
        let at: Vec<f32> = (0..3).flat_map(|t| (0..2).map(move |i| (i * 3 + t) as f32)).collect();
        let mut d2 = vec![0f32; 8];
        matmul(&mut d2, &at, &b, 2, 3, 4, true);
        assert_eq!(d, d2);
    }

    #[test]
    fn fast_training_matches_candle_autograd() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, dim, k) = (40, 16, 5);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let y: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
        let rw: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.5 } else { 1.0 }).collect();
        let init = Head { dim, k, w: (0..dim * k).map(|_| rng.gen_range(-0.5..0.5)).collect(), b: vec![0.1; k], temperature: 1.0 };
        for cfg in [
            HeadConfig { epochs: 30, ..Default::default() },
            HeadConfig {
                epochs: 30,
                prior_init: true,
                weight_decay: 0.01,
                anchor: 0.05,
                class_weights: true,
                lr: 0.05,
                ..Default::default()
            },
            HeadConfig { epochs: 30, anchor: 0.5, anchor_fade: 2.0, class_labels: vec![0, 3, 9, 1], ..Default::default() },
        ] {
            let fast = Head::train(&init, &x, &y, &rw, &cfg).unwrap();
            let slow = Head::train_candle(&init, &x, &y, &rw, &cfg).unwrap();
            let d = fast.w.iter().chain(&fast.b).zip(slow.w.iter().chain(&slow.b)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d < 2e-3, "fast and candle training differ by {d}");
            assert_ne!(fast.w, init.w);
        }
    }
}
