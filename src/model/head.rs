//! The classifier head: a softmax regression on sentence embeddings,
//! trained with candle-nn's AdamW on a weighted cross-entropy.
//!
//! Its weights start from the label prompts' embeddings scaled by the
//! zero-shot temperature, so before any label (and for classes that have no
//! label yet) it scores a text by its cosine similarity to each label.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

#[derive(Debug, Clone, PartialEq)]
pub struct HeadConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Zero-shot temperature: logits = cos / temperature.
    pub temperature: f32,
    /// Weight each class equally however many labels it has, over all rows
    /// given (the engine balances the person's labels itself and leaves this off).
    pub class_weights: bool,
    /// L2 pull of the weights back towards the starting (zero-shot) head.
    pub anchor: f64,
    /// Start from the zero-shot head (true) or from zero weights.
    pub prior_init: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig { epochs: 100, lr: 0.1, weight_decay: 0.0, temperature: 0.05, class_weights: false, anchor: 0.0, prior_init: false }
    }
}

/// Weights `w` (dim x k, row-major) and bias `b` (k).
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub k: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
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
        Head { dim, k, w, b: vec![0.0; k] }
    }

    /// Trains from `init` on rows `x` (n x dim) with labels `y` and per-row
    /// weights (1 for a person's label; less for pseudo-labels and priors).
    /// Full-batch and deterministic: the same inputs give the same head.
    pub fn train(init: &Head, x: &[f32], y: &[u32], row_weight: &[f32], cfg: &HeadConfig) -> Result<Head> {
        let (dim, k) = (init.dim, init.k);
        let n = y.len();
        if n == 0 {
            return Ok(init.clone());
        }
        if x.len() != n * dim || row_weight.len() != n {
            bail!("training data has {} floats and {} weights for {n} rows of {dim}", x.len(), row_weight.len());
        }
        if let Some(bad) = y.iter().find(|&&l| l as usize >= k) {
            bail!("label {bad} is outside the label set of {k}");
        }
        // Per-row weight: the given weight times the class weight (balanced
        // over the classes present), normalised to sum to one.
        let mut wsum = vec![0f32; k];
        for (&l, &rw) in y.iter().zip(row_weight) {
            wsum[l as usize] += rw;
        }
        let present = wsum.iter().filter(|&&c| c > 0.0).count().max(1) as f32;
        let total: f32 = wsum.iter().sum();
        let mut weights: Vec<f32> = y
            .iter()
            .zip(row_weight)
            .map(|(&l, &rw)| if cfg.class_weights { rw * total / (present * wsum[l as usize]) } else { rw })
            .collect();
        let s: f32 = weights.iter().sum();
        for w in &mut weights {
            *w /= s;
        }
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
        let mut opt = AdamW::new(
            vec![w.clone(), b.clone()],
            ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() },
        )?;
        for epoch in 0..cfg.epochs {
            let logits = xt.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let nll = logp.gather(&yt, 1)?.squeeze(1)?.neg()?;
            let mut loss = (nll * &wt)?.sum_all()?;
            if cfg.anchor > 0.0 {
                let pull = (w.as_tensor() - &w0)?.sqr()?.sum_all()?.affine(cfg.anchor, 0.0)?;
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
        Ok(Head { dim, k, w, b })
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

    /// Saves the head as safetensors.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let dev = Device::Cpu;
        let mut m = std::collections::HashMap::new();
        m.insert("head.weight".to_string(), Tensor::from_slice(&self.w, (self.dim, self.k), &dev)?);
        m.insert("head.bias".to_string(), Tensor::from_slice(&self.b, self.k, &dev)?);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&m, &tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Head> {
        let m = candle_core::safetensors::load(path, &Device::Cpu)?;
        let w = m.get("head.weight").ok_or_else(|| anyhow::anyhow!("{}: no head.weight", path.display()))?;
        let b = m.get("head.bias").ok_or_else(|| anyhow::anyhow!("{}: no head.bias", path.display()))?;
        let (dim, k) = w.dims2()?;
        Ok(Head { dim, k, w: w.flatten_all()?.to_vec1()?, b: b.to_vec1()? })
    }
}
