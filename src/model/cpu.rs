//! BERT on the CPU without candle: the encoder's forward pass for
//! embedding, and the forward and backward passes of its top layers for
//! fine-tuning.
//!
//! Why our own: candle's CPU path pads every batch, runs each op across a
//! thread pool (threads spin at its barriers on matrices this small), has a
//! scalar `erf`, and composes LayerNorm and softmax from small ops when a
//! gradient is needed. Here sequences are never padded (the tokens of a
//! batch are concatenated; attention runs per sequence), each core runs its
//! own share of the sequences with single-threaded `gemm`, the element-wise
//! work (GELU, LayerNorm, softmax) is one vectorisable pass, and the
//! backward pass is written out. Tests check it against candle-transformers
//! (forward), sentence-transformers' reference embeddings, and candle's
//! autograd on our trainable module (gradients).
//!
//! Weights keep the Hugging Face layout: a linear layer's weight is
//! (out x in), y = x W^T + b.

use super::family::{self, Pooling};
use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// Shapes of a BERT encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dims {
    pub hidden: usize,
    pub heads: usize,
    pub inter: usize,
    pub layers: usize,
    pub eps: f32,
    pub max_pos: usize,
    /// How token states become the sentence vector.
    pub pool: Pooling,
}

impl Dims {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// One transformer layer's weights. `qkv_w` stacks the query, key and value
/// weights (3H x H) so that one product computes all three.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub qkv_w: Vec<f32>,
    pub qkv_b: Vec<f32>,
    pub o_w: Vec<f32>,
    pub o_b: Vec<f32>,
    pub ln1_w: Vec<f32>,
    pub ln1_b: Vec<f32>,
    pub i_w: Vec<f32>,
    pub i_b: Vec<f32>,
    pub f_w: Vec<f32>,
    pub f_b: Vec<f32>,
    pub ln2_w: Vec<f32>,
    pub ln2_b: Vec<f32>,
}

impl Layer {
    fn zeros(d: &Dims) -> Layer {
        let (h, i) = (d.hidden, d.inter);
        Layer {
            qkv_w: vec![0.0; 3 * h * h],
            qkv_b: vec![0.0; 3 * h],
            o_w: vec![0.0; h * h],
            o_b: vec![0.0; h],
            ln1_w: vec![0.0; h],
            ln1_b: vec![0.0; h],
            i_w: vec![0.0; i * h],
            i_b: vec![0.0; i],
            f_w: vec![0.0; h * i],
            f_b: vec![0.0; h],
            ln2_w: vec![0.0; h],
            ln2_b: vec![0.0; h],
        }
    }

    /// The parameter vectors, in a fixed order (for optimisers and sums).
    pub fn params_mut(&mut self) -> [&mut Vec<f32>; 12] {
        [
            &mut self.qkv_w,
            &mut self.qkv_b,
            &mut self.o_w,
            &mut self.o_b,
            &mut self.ln1_w,
            &mut self.ln1_b,
            &mut self.i_w,
            &mut self.i_b,
            &mut self.f_w,
            &mut self.f_b,
            &mut self.ln2_w,
            &mut self.ln2_b,
        ]
    }

    pub fn params(&self) -> [&Vec<f32>; 12] {
        [
            &self.qkv_w,
            &self.qkv_b,
            &self.o_w,
            &self.o_b,
            &self.ln1_w,
            &self.ln1_b,
            &self.i_w,
            &self.i_b,
            &self.f_w,
            &self.f_b,
            &self.ln2_w,
            &self.ln2_b,
        ]
    }
}

/// The whole encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Bert {
    pub dims: Dims,
    pub word: Vec<f32>,
    pub pos: Vec<f32>,
    pub token_type: Vec<f32>,
    pub eln_w: Vec<f32>,
    pub eln_b: Vec<f32>,
    pub layers: Vec<Layer>,
}

fn tensor_vec(map: &std::collections::HashMap<String, candle_core::Tensor>, names: &[String], want: usize) -> Result<Vec<f32>> {
    for n in names {
        if let Some(t) = map.get(n) {
            let v: Vec<f32> = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
            if v.len() != want {
                bail!("weight {n} has {} values, expected {want}", v.len());
            }
            return Ok(v);
        }
    }
    Err(anyhow!("no weight {}", names[0]))
}

impl Bert {
    /// Loads a Hugging Face encoder folder (`config.json`,
    /// `model.safetensors`, float32 or float16; BERT, DistilBERT or
    /// (XLM-)RoBERTa, read as BERT by `family`) as float32, pooled as its
    /// sentence-transformers files say.
    pub fn load(dir: &Path) -> Result<Bert> {
        let spec = family::spec(dir)?;
        let pool = family::pooling(dir)?;
        let cfg = &spec.config;
        let get = |k: &str| -> Result<usize> {
            cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as usize).ok_or_else(|| anyhow!("{}: no {k}", dir.join("config.json").display()))
        };
        let dims = Dims {
            hidden: get("hidden_size")?,
            heads: get("num_attention_heads")?,
            inter: get("intermediate_size")?,
            layers: get("num_hidden_layers")?,
            eps: cfg.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-12) as f32,
            max_pos: get("max_position_embeddings")?,
            pool,
        };
        if dims.heads == 0 || !dims.hidden.is_multiple_of(dims.heads) {
            bail!("{}: hidden size {} is not a multiple of {} heads", dir.join("config.json").display(), dims.hidden, dims.heads);
        }
        let vocab = get("vocab_size")?;
        let types = cfg.get("type_vocab_size").and_then(|v| v.as_u64()).unwrap_or(2) as usize;
        let map = family::bert_tensors(dir, &spec, &candle_core::Device::Cpu)?;
        let names = |n: &str| -> Vec<String> { vec![n.to_string()] };
        let h = dims.hidden;
        let t = |n: &str, want: usize| tensor_vec(&map, &names(n), want);
        let mut layers = Vec::with_capacity(dims.layers);
        for l in 0..dims.layers {
            let p = format!("encoder.layer.{l}.");
            let mut qkv_w = t(&format!("{p}attention.self.query.weight"), h * h)?;
            qkv_w.extend(t(&format!("{p}attention.self.key.weight"), h * h)?);
            qkv_w.extend(t(&format!("{p}attention.self.value.weight"), h * h)?);
            let mut qkv_b = t(&format!("{p}attention.self.query.bias"), h)?;
            qkv_b.extend(t(&format!("{p}attention.self.key.bias"), h)?);
            qkv_b.extend(t(&format!("{p}attention.self.value.bias"), h)?);
            layers.push(Layer {
                qkv_w,
                qkv_b,
                o_w: t(&format!("{p}attention.output.dense.weight"), h * h)?,
                o_b: t(&format!("{p}attention.output.dense.bias"), h)?,
                ln1_w: t(&format!("{p}attention.output.LayerNorm.weight"), h)?,
                ln1_b: t(&format!("{p}attention.output.LayerNorm.bias"), h)?,
                i_w: t(&format!("{p}intermediate.dense.weight"), dims.inter * h)?,
                i_b: t(&format!("{p}intermediate.dense.bias"), dims.inter)?,
                f_w: t(&format!("{p}output.dense.weight"), h * dims.inter)?,
                f_b: t(&format!("{p}output.dense.bias"), h)?,
                ln2_w: t(&format!("{p}output.LayerNorm.weight"), h)?,
                ln2_b: t(&format!("{p}output.LayerNorm.bias"), h)?,
            });
        }
        Ok(Bert {
            dims,
            word: t("embeddings.word_embeddings.weight", vocab * h)?,
            pos: t("embeddings.position_embeddings.weight", dims.max_pos * h)?,
            token_type: t("embeddings.token_type_embeddings.weight", types * h)?,
            eln_w: t("embeddings.LayerNorm.weight", h)?,
            eln_b: t("embeddings.LayerNorm.bias", h)?,
            layers,
        })
    }

    /// Writes the weights as float32 safetensors with Hugging Face names.
    pub fn save(&self, path: &Path) -> Result<()> {
        use candle_core::Tensor;
        let dev = candle_core::Device::Cpu;
        let h = self.dims.hidden;
        let mut m: std::collections::HashMap<String, Tensor> = std::collections::HashMap::new();
        let mut put = |n: String, v: &[f32], shape: &[usize]| -> Result<()> {
            m.insert(n, Tensor::from_slice(v, shape, &dev)?);
            Ok(())
        };
        put("embeddings.word_embeddings.weight".into(), &self.word, &[self.word.len() / h, h])?;
        put("embeddings.position_embeddings.weight".into(), &self.pos, &[self.pos.len() / h, h])?;
        put("embeddings.token_type_embeddings.weight".into(), &self.token_type, &[self.token_type.len() / h, h])?;
        put("embeddings.LayerNorm.weight".into(), &self.eln_w, &[h])?;
        put("embeddings.LayerNorm.bias".into(), &self.eln_b, &[h])?;
        for (l, w) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{l}.");
            for (j, n) in ["query", "key", "value"].iter().enumerate() {
                put(format!("{p}attention.self.{n}.weight"), &w.qkv_w[j * h * h..(j + 1) * h * h], &[h, h])?;
                put(format!("{p}attention.self.{n}.bias"), &w.qkv_b[j * h..(j + 1) * h], &[h])?;
            }
            put(format!("{p}attention.output.dense.weight"), &w.o_w, &[h, h])?;
            put(format!("{p}attention.output.dense.bias"), &w.o_b, &[h])?;
            put(format!("{p}attention.output.LayerNorm.weight"), &w.ln1_w, &[h])?;
            put(format!("{p}attention.output.LayerNorm.bias"), &w.ln1_b, &[h])?;
            put(format!("{p}intermediate.dense.weight"), &w.i_w, &[self.dims.inter, h])?;
            put(format!("{p}intermediate.dense.bias"), &w.i_b, &[self.dims.inter])?;
            put(format!("{p}output.dense.weight"), &w.f_w, &[h, self.dims.inter])?;
            put(format!("{p}output.dense.bias"), &w.f_b, &[h])?;
            put(format!("{p}output.LayerNorm.weight"), &w.ln2_w, &[h])?;
            put(format!("{p}output.LayerNorm.bias"), &w.ln2_b, &[h])?;
        }
        candle_core::safetensors::save(&m, path)?;
        Ok(())
    }

    /// The embedding layer's output for concatenated sequences (T x H).
    pub fn embeddings(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let h = self.dims.hidden;
        let t: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; t * h];
        let mut row = 0;
        for s in seqs {
            for (p, &id) in s.iter().enumerate() {
                let dst = &mut x[row * h..(row + 1) * h];
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let pe = &self.pos[p.min(self.dims.max_pos - 1) * h..(p.min(self.dims.max_pos - 1) + 1) * h];
                let te = &self.token_type[..h];
                for j in 0..h {
                    dst[j] = w[j] + pe[j] + te[j];
                }
                row += 1;
            }
        }
        kernels::layer_norm_rows(&mut x, h, &self.eln_w, &self.eln_b, self.dims.eps, None);
        x
    }

    /// Runs layers `from..to` over hidden states (T x H) of sequences of
    /// lengths `lens`, in place.
    pub fn run_layers(&self, x: &mut Vec<f32>, lens: &[usize], from: usize, to: usize) {
        let mut scratch = Scratch::default();
        for l in &self.layers[from..to] {
            layer_forward(&self.dims, l, x, lens, &mut scratch, None, None);
        }
    }

    /// Sentence embeddings of token sequences (mean pooling, L2-normalised),
    /// `seqs.len() * hidden` floats, on `threads` threads.
    pub fn embed(&self, seqs: &[&[u32]], threads: usize) -> Vec<f32> {
        let h = self.dims.hidden;
        let mut out = vec![0f32; seqs.len() * h];
        parallel_chunks(seqs, &mut out, h, threads, |part, dst| {
            let lens: Vec<usize> = part.iter().map(|s| s.len()).collect();
            let mut x = self.embeddings(part);
            self.run_layers(&mut x, &lens, 0, self.dims.layers);
            pool(&x, &lens, h, self.dims.pool, dst);
        });
        out
    }

    /// Hidden states after layer `upto` (0: the embedding layer's output)
    /// for each sequence, concatenated (T x H).
    pub fn states(&self, seqs: &[&[u32]], upto: usize) -> Vec<f32> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut x = self.embeddings(seqs);
        self.run_layers(&mut x, &lens, 0, upto);
        x
    }

    /// Sentence embeddings from hidden states after layer `from` (as
    /// `states` gives them): the remaining layers, then pooling.
    pub fn embed_from_states(&self, states: &[f32], lens: &[usize], from: usize) -> Vec<f32> {
        let h = self.dims.hidden;
        let mut x = states.to_vec();
        self.run_layers(&mut x, lens, from, self.dims.layers);
        let mut out = vec![0f32; lens.len() * h];
        pool(&x, lens, h, self.dims.pool, &mut out);
        out
    }
}

/// Splits `items` into `threads` contiguous parts with about the same work
/// (tokens), runs `f(part, out_rows)` on each on its own thread.
pub fn parallel_chunks<F>(seqs: &[&[u32]], out: &mut [f32], width: usize, threads: usize, f: F)
where
    F: Fn(&[&[u32]], &mut [f32]) + Sync,
{
    let threads = threads.max(1).min(seqs.len().max(1));
    if threads <= 1 {
        f(seqs, out);
        return;
    }
    let total: usize = seqs.iter().map(|s| s.len() + 8).sum();
    let mut bounds = vec![0usize];
    let mut acc = 0usize;
    for (i, s) in seqs.iter().enumerate() {
        acc += s.len() + 8;
        if acc * threads >= total * bounds.len() && bounds.len() < threads {
            bounds.push(i + 1);
        }
    }
    bounds.push(seqs.len());
    bounds.dedup();
    std::thread::scope(|sc| {
        let mut rest = out;
        let mut handles = Vec::new();
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (mine, tail) = rest.split_at_mut((b - a) * width);
            rest = tail;
            let part = &seqs[a..b];
            let f = &f;
            handles.push(sc.spawn(move || f(part, mine)));
        }
        for h in handles {
            let _ = h.join();
        }
    });
}

/// Each sequence's vector (the mean over its tokens, or its first token),
/// then L2 normalisation.
pub fn pool(x: &[f32], lens: &[usize], h: usize, how: Pooling, out: &mut [f32]) {
    let mut row = 0;
    for (s, &len) in lens.iter().enumerate() {
        let dst = &mut out[s * h..(s + 1) * h];
        pooled(x, row, len, h, how, dst);
        let ss: f32 = dst.iter().map(|v| v * v).sum();
        let norm = ss.sqrt().max(1e-12);
        dst.iter_mut().for_each(|v| *v /= norm);
        row += len;
    }
}

/// The pooled vector (before normalisation) of the sequence whose `len`
/// tokens start at `row`; returns the number of tokens it averages.
fn pooled(x: &[f32], row: usize, len: usize, h: usize, how: Pooling, dst: &mut [f32]) -> usize {
    dst.iter_mut().for_each(|v| *v = 0.0);
    let take = match how {
        Pooling::Mean => len,
        Pooling::Cls => len.min(1),
    };
    for t in 0..take {
        let src = &x[(row + t) * h..(row + t + 1) * h];
        for j in 0..h {
            dst[j] += src[j];
        }
    }
    let n = take.max(1);
    if n > 1 {
        dst.iter_mut().for_each(|v| *v /= n as f32);
    }
    n
}

/// Buffers reused from layer to layer.
#[derive(Default)]
pub struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    probs: Vec<f32>,
    kt: Vec<f32>,
}

/// What the backward pass needs of one layer's forward pass.
#[derive(Default, Clone)]
pub struct LayerCache {
    x_in: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention probabilities before dropout, per sequence and head.
    probs: Vec<f32>,
    /// After dropout (what multiplied the values).
    probs_d: Vec<f32>,
    ctx: Vec<f32>,
    ln1_xhat: Vec<f32>,
    ln1_rstd: Vec<f32>,
    x1: Vec<f32>,
    i_pre: Vec<f32>,
    gelu: Vec<f32>,
    ln2_xhat: Vec<f32>,
    ln2_rstd: Vec<f32>,
    /// Dropout keep-masks (scaled by 1/(1-p)) for the attention output and the FFN output.
    mask_a: Vec<f32>,
    mask_f: Vec<f32>,
}

/// Dropout while training: probability and the seed of this layer's masks.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    pub hidden: f32,
    pub attention: f32,
    pub seed: u64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keep-mask scaled by 1/(1-p): element `i` of stream `site` under `seed`.
fn fill_mask(mask: &mut Vec<f32>, n: usize, p: f32, seed: u64, site: u64) {
    mask.resize(n, 0.0);
    let keep = 1.0 / (1.0 - p);
    let base = splitmix(seed ^ site.wrapping_mul(0x2545_f491_4f6c_dd1d));
    for (i, m) in mask.iter_mut().enumerate() {
        let r = splitmix(base.wrapping_add(i as u64));
        let u = (r >> 40) as f32 / (1u64 << 24) as f32;
        *m = if u >= p { keep } else { 0.0 };
    }
}

/// One layer, in place on `x` (T x H). With `cache`, keeps what the
/// backward pass needs; with `drop`, applies dropout (training).
pub fn layer_forward(
    d: &Dims,
    l: &Layer,
    x: &mut Vec<f32>,
    lens: &[usize],
    s: &mut Scratch,
    mut cache: Option<&mut LayerCache>,
    drop: Option<Dropout>,
) {
    let h = d.hidden;
    let t: usize = lens.iter().sum();
    debug_assert_eq!(x.len(), t * h);
    if let Some(c) = cache.as_deref_mut() {
        c.x_in.clone_from(x);
    }
    // q, k, v in one product.
    s.qkv.resize(t * 3 * h, 0.0);
    kernels::linear(&mut s.qkv, x, &l.qkv_w, &l.qkv_b, t, h, 3 * h);
    // Attention, per sequence and head.
    s.ctx.resize(t * h, 0.0);
    let hd = d.head_dim();
    let scale = 1.0 / (hd as f32).sqrt();
    let probs_len: usize = lens.iter().map(|&n| n * n * d.heads).sum();
    s.probs.resize(probs_len, 0.0);
    let mut row = 0;
    let mut poff = 0;
    for &n in lens {
        s.kt.resize(hd * n, 0.0);
        for head in 0..d.heads {
            let p = &mut s.probs[poff..poff + n * n];
            kernels::attention_scores(p, &mut s.kt[..hd * n], &s.qkv, row, n, 3 * h, head * hd, h + head * hd, hd, scale);
            kernels::softmax_rows(p, n);
            poff += n * n;
        }
        row += n;
    }
    let att_p = drop.map(|dr| dr.attention).unwrap_or(0.0);
    let mut mask_p: Vec<f32> = Vec::new();
    if let Some(c) = cache.as_deref_mut() {
        c.probs.clone_from(&s.probs);
    }
    if att_p > 0.0 {
        if let Some(dr) = drop {
            fill_mask(&mut mask_p, probs_len, att_p, dr.seed, 1);
            for (v, m) in s.probs.iter_mut().zip(&mask_p) {
                *v *= m;
            }
        }
    }
    if let Some(c) = cache.as_deref_mut() {
        c.probs_d.clone_from(&s.probs);
    }
    let mut row = 0;
    let mut poff = 0;
    for &n in lens {
        for head in 0..d.heads {
            let p = &s.probs[poff..poff + n * n];
            kernels::attention_context(&mut s.ctx, p, &s.qkv, row, n, 3 * h, 2 * h + head * hd, h, head * hd, hd);
            poff += n * n;
        }
        row += n;
    }
    if let Some(c) = cache.as_deref_mut() {
        c.qkv.clone_from(&s.qkv);
        c.ctx.clone_from(&s.ctx);
    }
    // Output projection, dropout, residual, LayerNorm.
    s.tmp.resize(t * h, 0.0);
    kernels::linear(&mut s.tmp, &s.ctx, &l.o_w, &l.o_b, t, h, h);
    if let (Some(dr), true) = (drop, drop.map(|d| d.hidden > 0.0).unwrap_or(false)) {
        let mut m = Vec::new();
        fill_mask(&mut m, t * h, dr.hidden, dr.seed, 2);
        for (v, k) in s.tmp.iter_mut().zip(&m) {
            *v *= k;
        }
        if let Some(c) = cache.as_deref_mut() {
            c.mask_a = m;
        }
    }
    for (a, b) in s.tmp.iter_mut().zip(x.iter()) {
        *a += b;
    }
    match cache.as_deref_mut() {
        Some(c) => {
            kernels::layer_norm_rows(&mut s.tmp, h, &l.ln1_w, &l.ln1_b, d.eps, Some((&mut c.ln1_xhat, &mut c.ln1_rstd)));
            c.x1.clone_from(&s.tmp);
        }
        None => kernels::layer_norm_rows(&mut s.tmp, h, &l.ln1_w, &l.ln1_b, d.eps, None),
    }
    // Feed-forward.
    s.inter.resize(t * d.inter, 0.0);
    kernels::linear(&mut s.inter, &s.tmp, &l.i_w, &l.i_b, t, h, d.inter);
    if let Some(c) = cache.as_deref_mut() {
        c.i_pre.clone_from(&s.inter);
    }
    kernels::gelu(&mut s.inter);
    if let Some(c) = cache.as_deref_mut() {
        c.gelu.clone_from(&s.inter);
    }
    kernels::linear(x, &s.inter, &l.f_w, &l.f_b, t, d.inter, h);
    if let (Some(dr), true) = (drop, drop.map(|d| d.hidden > 0.0).unwrap_or(false)) {
        let mut m = Vec::new();
        fill_mask(&mut m, t * h, dr.hidden, dr.seed, 3);
        for (v, k) in x.iter_mut().zip(&m) {
            *v *= k;
        }
        if let Some(c) = cache.as_deref_mut() {
            c.mask_f = m;
        }
    }
    for (a, b) in x.iter_mut().zip(s.tmp.iter()) {
        *a += b;
    }
    match cache {
        Some(c) => kernels::layer_norm_rows(x, h, &l.ln2_w, &l.ln2_b, d.eps, Some((&mut c.ln2_xhat, &mut c.ln2_rstd))),
        None => kernels::layer_norm_rows(x, h, &l.ln2_w, &l.ln2_b, d.eps, None),
    }
}

/// Backward pass of one layer: from dL/d(output) `dy` (T x H), adds the
/// weight gradients to `g` and returns dL/d(input) in `dy` when `need_dx`.
pub fn layer_backward(d: &Dims, l: &Layer, c: &LayerCache, lens: &[usize], dy: &mut Vec<f32>, g: &mut Layer, need_dx: bool) {
    let h = d.hidden;
    let t: usize = lens.iter().sum();
    let hd = d.head_dim();
    let scale = 1.0 / (hd as f32).sqrt();
    // LayerNorm 2: ds2 = d(residual sum).
    let mut ds2 = vec![0f32; t * h];
    kernels::layer_norm_backward(&mut ds2, dy, &c.ln2_xhat, &c.ln2_rstd, &l.ln2_w, &mut g.ln2_w, &mut g.ln2_b, h);
    // s2 = drop(f) + x1: dx1 starts as ds2; df = ds2 * mask.
    let mut df = ds2.clone();
    if !c.mask_f.is_empty() {
        for (v, m) in df.iter_mut().zip(&c.mask_f) {
            *v *= m;
        }
    }
    // f = gelu Wf^T + bf.
    kernels::linear_backward_weights(&mut g.f_w, &mut g.f_b, &df, &c.gelu, t, d.inter, h);
    let mut dgelu = vec![0f32; t * d.inter];
    kernels::linear_backward_input(&mut dgelu, &df, &l.f_w, t, d.inter, h);
    kernels::gelu_backward(&mut dgelu, &c.i_pre);
    // i = x1 Wi^T + bi.
    kernels::linear_backward_weights(&mut g.i_w, &mut g.i_b, &dgelu, &c.x1, t, h, d.inter);
    let mut dx1 = ds2;
    kernels::linear_backward_input_acc(&mut dx1, &dgelu, &l.i_w, t, h, d.inter);
    // LayerNorm 1.
    let mut ds1 = vec![0f32; t * h];
    kernels::layer_norm_backward(&mut ds1, &dx1, &c.ln1_xhat, &c.ln1_rstd, &l.ln1_w, &mut g.ln1_w, &mut g.ln1_b, h);
    let mut da = ds1.clone();
    if !c.mask_a.is_empty() {
        for (v, m) in da.iter_mut().zip(&c.mask_a) {
            *v *= m;
        }
    }
    // a = ctx Wo^T + bo.
    kernels::linear_backward_weights(&mut g.o_w, &mut g.o_b, &da, &c.ctx, t, h, h);
    let mut dctx = vec![0f32; t * h];
    kernels::linear_backward_input(&mut dctx, &da, &l.o_w, t, h, h);
    // Attention.
    let mut dqkv = vec![0f32; t * 3 * h];
    let mut row = 0;
    let mut poff = 0;
    let mut dp = Vec::new();
    for &n in lens {
        for head in 0..d.heads {
            let p = &c.probs[poff..poff + n * n];
            let pd = &c.probs_d[poff..poff + n * n];
            dp.resize(n * n, 0.0);
            // ctx_i = sum_j pd_ij v_j: dpd_ij = dctx_i . v_j; dv_j += sum_i pd_ij dctx_i.
            for i in 0..n {
                let dci = &dctx[(row + i) * h + head * hd..(row + i) * h + head * hd + hd];
                for j in 0..n {
                    let vj = &c.qkv[(row + j) * 3 * h + 2 * h + head * hd..(row + j) * 3 * h + 2 * h + head * hd + hd];
                    dp[i * n + j] = kernels::dot(dci, vj);
                }
            }
            for j in 0..n {
                let dvj_off = (row + j) * 3 * h + 2 * h + head * hd;
                for i in 0..n {
                    let w = pd[i * n + j];
                    if w != 0.0 {
                        let dci = &dctx[(row + i) * h + head * hd..(row + i) * h + head * hd + hd];
                        let dvj = &mut dqkv[dvj_off..dvj_off + hd];
                        kernels::axpy(dvj, w, dci);
                    }
                }
            }
            // Through dropout: pd = p * mask, so dp = dpd * (pd / p) where p > 0.
            if !std::ptr::eq(p, pd) {
                for k in 0..n * n {
                    let r = if p[k] > 0.0 { pd[k] / p[k] } else { 0.0 };
                    dp[k] *= r;
                }
            }
            // Softmax: ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik), then the scale.
            for i in 0..n {
                let pr = &p[i * n..(i + 1) * n];
                let dr = &mut dp[i * n..(i + 1) * n];
                let s: f32 = kernels::dot(pr, dr);
                for k in 0..n {
                    dr[k] = pr[k] * (dr[k] - s) * scale;
                }
            }
            // scores_ij = q_i . k_j: dq_i = sum_j ds_ij k_j; dk_j = sum_i ds_ij q_i.
            for i in 0..n {
                let dq_off = (row + i) * 3 * h + head * hd;
                for j in 0..n {
                    let w = dp[i * n + j];
                    let kj = &c.qkv[(row + j) * 3 * h + h + head * hd..(row + j) * 3 * h + h + head * hd + hd];
                    kernels::axpy(&mut dqkv[dq_off..dq_off + hd], w, kj);
                }
            }
            for j in 0..n {
                let dk_off = (row + j) * 3 * h + h + head * hd;
                for i in 0..n {
                    let w = dp[i * n + j];
                    let qi = &c.qkv[(row + i) * 3 * h + head * hd..(row + i) * 3 * h + head * hd + hd];
                    kernels::axpy(&mut dqkv[dk_off..dk_off + hd], w, qi);
                }
            }
            poff += n * n;
        }
        row += n;
    }
    // qkv = x Wqkv^T + b.
    kernels::linear_backward_weights(&mut g.qkv_w, &mut g.qkv_b, &dqkv, &c.x_in, t, h, 3 * h);
    if need_dx {
        // Residual into the attention block: dx = ds1 + dqkv Wqkv.
        let mut dx = ds1;
        kernels::linear_backward_input_acc(&mut dx, &dqkv, &l.qkv_w, t, h, 3 * h);
        *dy = dx;
    }
}

/// The gradient of the pooled, normalised embeddings back to the last
/// hidden states: `de` (S x H) to (T x H).
pub fn pool_backward(x: &[f32], lens: &[usize], h: usize, how: Pooling, emb: &[f32], de: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; x.len()];
    let mut row = 0;
    let mut v = vec![0f32; h];
    for (s, &len) in lens.iter().enumerate() {
        let e = &emb[s * h..(s + 1) * h];
        let g = &de[s * h..(s + 1) * h];
        // The norm of the pooled vector, again.
        let n = pooled(x, row, len, h, how, &mut v);
        let norm = v.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        let eg = kernels::dot(e, g);
        let dm: Vec<f32> = (0..h).map(|j| (g[j] - e[j] * eg) / norm / n as f32).collect();
        let take = match how {
            Pooling::Mean => len,
            Pooling::Cls => len.min(1),
        };
        for t in 0..take {
            dx[(row + t) * h..(row + t + 1) * h].copy_from_slice(&dm);
        }
        row += len;
    }
    dx
}

/// The top `n` layers of an encoder, trained on hidden states that enter
/// them (the output of the frozen layers below, computed once).
pub struct TopLayers {
    pub dims: Dims,
    /// Index of the first trained layer.
    pub from: usize,
    pub layers: Vec<Layer>,
}

impl TopLayers {
    pub fn of(bert: &Bert, n: usize) -> TopLayers {
        let n = n.clamp(1, bert.dims.layers);
        let from = bert.dims.layers - n;
        TopLayers { dims: bert.dims, from, layers: bert.layers[from..].to_vec() }
    }

    pub fn zero_grads(&self) -> Vec<Layer> {
        self.layers.iter().map(|_| Layer::zeros(&self.dims)).collect()
    }

    /// Forward through the trained layers from `states` (T x H, the input of
    /// layer `from`), keeping caches; returns the embeddings and the last
    /// hidden states.
    pub fn forward_train(
        &self,
        states: &[f32],
        lens: &[usize],
        drop: Option<Dropout>,
        caches: &mut Vec<LayerCache>,
    ) -> (Vec<f32>, Vec<f32>) {
        let h = self.dims.hidden;
        let mut x = states.to_vec();
        caches.resize(self.layers.len(), LayerCache::default());
        let mut s = Scratch::default();
        for (k, (l, c)) in self.layers.iter().zip(caches.iter_mut()).enumerate() {
            let dr = drop.map(|d| Dropout { seed: splitmix(d.seed ^ (k as u64 + 1)), ..d });
            layer_forward(&self.dims, l, &mut x, lens, &mut s, Some(c), dr);
        }
        let mut emb = vec![0f32; lens.len() * h];
        pool(&x, lens, h, self.dims.pool, &mut emb);
        (emb, x)
    }

    /// Backward from dL/d(embeddings) through the trained layers; adds to `grads`.
    pub fn backward(&self, last: &[f32], lens: &[usize], emb: &[f32], de: &[f32], caches: &[LayerCache], grads: &mut [Layer]) {
        let h = self.dims.hidden;
        let mut dy = pool_backward(last, lens, h, self.dims.pool, emb, de);
        for k in (0..self.layers.len()).rev() {
            layer_backward(&self.dims, &self.layers[k], &caches[k], lens, &mut dy, &mut grads[k], k > 0);
        }
    }

    /// Embeddings (no dropout, no caches) from input states, on `threads` threads.
    pub fn embed(&self, states: &[f32], lens: &[usize], threads: usize) -> Vec<f32> {
        let h = self.dims.hidden;
        let n = lens.len();
        let mut out = vec![0f32; n * h];
        if n == 0 {
            return out;
        }
        let threads = threads.max(1).min(n);
        let per = n.div_ceil(threads);
        let mut offsets = vec![0usize; n + 1];
        for i in 0..n {
            offsets[i + 1] = offsets[i] + lens[i];
        }
        std::thread::scope(|sc| {
            let mut rest: &mut [f32] = &mut out;
            for c in 0..threads {
                let a = c * per;
                let b = ((c + 1) * per).min(n);
                if a >= b {
                    break;
                }
                let (mine, tail) = rest.split_at_mut((b - a) * h);
                rest = tail;
                let st = &states[offsets[a] * h..offsets[b] * h];
                let ln = &lens[a..b];
                sc.spawn(move || {
                    let mut x = st.to_vec();
                    let mut s = Scratch::default();
                    for l in &self.layers {
                        layer_forward(&self.dims, l, &mut x, ln, &mut s, None, None);
                    }
                    pool(&x, ln, h, self.dims.pool, mine);
                });
            }
        });
        out
    }
}

/// AdamW over lists of parameter vectors (candle-nn's update rule).
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    t: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl AdamW {
    pub fn new(lr: f32, weight_decay: f32) -> AdamW {
        AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, t: 0, m: Vec::new(), v: Vec::new() }
    }

    /// One update of `params` with `grads` (same shapes, same order).
    pub fn step(&mut self, params: &mut [&mut Vec<f32>], grads: &[&Vec<f32>]) {
        if self.m.is_empty() {
            self.m = params.iter().map(|p| vec![0.0; p.len()]).collect();
            self.v = params.iter().map(|p| vec![0.0; p.len()]).collect();
        }
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let lr = self.lr;
        let decay = 1.0 - lr * self.weight_decay;
        for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = (&mut self.m[k], &mut self.v[k]);
            for i in 0..p.len() {
                let gi = g[i];
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let mh = m[i] / c1;
                let vh = v[i] / c2;
                p[i] = p[i] * decay - lr * mh / (vh.sqrt() + self.eps);
            }
        }
    }
}

/// Small numeric kernels, written to vectorise (AVX2 and FMA where the
/// CPU has them, chosen at run time).
pub mod kernels {
    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Runs `$body` compiled for AVX2+FMA when the CPU has them.
    macro_rules! dispatch {
        ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast($($arg: $ty),*) { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { fast($($arg),*) };
                    return;
                }
            }
            body($($arg),*)
        };
    }

    /// Dot product with eight partial sums (vectorises without fast-math).
    #[inline(always)]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [0f32; 8];
        let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for k in 0..8 {
                acc[k] += x[k] * y[k];
            }
        }
        let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
        for (x, y) in ra.iter().zip(rb) {
            s += x * y;
        }
        s
    }

    #[inline(always)]
    pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv += a * xv;
        }
    }

    /// exp(x) to about 2 ulp: range reduction to [-ln2/2, ln2/2] and a
    /// degree-6 polynomial; branch-free, so loops of it vectorise.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        let x = x.clamp(-87.0, 88.0);
        let n = (x * std::f32::consts::LOG2_E).round();
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
        let bits = ((n as i32 + 127) as u32) << 23;
        p * f32::from_bits(bits)
    }

    /// erf(x), Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
    #[inline(always)]
    pub fn erf(x: f32) -> f32 {
        let a = x.abs();
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let y = 1.0 - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t * exp(-a * a);
        y.copysign(x)
    }

    /// GELU (the erf form BERT uses), in place.
    pub fn gelu(v: &mut [f32]) {
        dispatch!(gelu_impl(v: &mut [f32]) {
            for x in v.iter_mut() {
                *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
            }
        });
    }

    /// dL/dx of GELU at `x`, times the incoming gradient (in place on `g`).
    pub fn gelu_backward(g: &mut [f32], x: &[f32]) {
        dispatch!(gelu_bwd(g: &mut [f32], x: &[f32]) {
            const INV_SQRT_2PI: f32 = 0.398_942_3;
            for (gv, &xv) in g.iter_mut().zip(x) {
                let cdf = 0.5 * (1.0 + erf(xv * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = INV_SQRT_2PI * exp(-0.5 * xv * xv);
                *gv *= cdf + xv * pdf;
            }
        });
    }

    /// Softmax of each row of an n x n matrix, in place.
    pub fn softmax_rows(p: &mut [f32], n: usize) {
        dispatch!(softmax_impl(p: &mut [f32], n: usize) {
            for row in p.chunks_exact_mut(n) {
                let mut mx = f32::NEG_INFINITY;
                for &v in row.iter() {
                    mx = mx.max(v);
                }
                let mut sum = 0f32;
                for v in row.iter_mut() {
                    *v = exp(*v - mx);
                    sum += *v;
                }
                let inv = 1.0 / sum;
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
        });
    }

    /// Attention scores of one head of one sequence: p[i][j] = scale *
    /// q_i . k_j, where q_i and k_j are `hd` floats at columns `qc` and `kc`
    /// of rows `row + i` and `row + j` of `qkv` (row width `w`). The keys
    /// are laid out transposed first, so that each row of scores is built
    /// by axpys along j (vectorised) rather than n short dot products.
    /// `kt` is scratch room (hd x n floats).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_scores(
        p: &mut [f32],
        kt: &mut [f32],
        qkv: &[f32],
        row: usize,
        n: usize,
        w: usize,
        qc: usize,
        kc: usize,
        hd: usize,
        scale: f32,
    ) {
        dispatch!(scores_impl(p: &mut [f32], kt: &mut [f32], qkv: &[f32], row: usize, n: usize, w: usize, qc: usize, kc: usize, hd: usize, scale: f32) {
            for j in 0..n {
                let k = &qkv[(row + j) * w + kc..(row + j) * w + kc + hd];
                for d in 0..hd {
                    kt[d * n + j] = k[d];
                }
            }
            for i in 0..n {
                let q = &qkv[(row + i) * w + qc..(row + i) * w + qc + hd];
                let out = &mut p[i * n..(i + 1) * n];
                out.iter_mut().for_each(|v| *v = 0.0);
                for d in 0..hd {
                    axpy(out, q[d] * scale, &kt[d * n..(d + 1) * n]);
                }
            }
        });
    }

    /// ctx rows `row..row+n`, columns `cc..cc+hd` = p (n x n) times the
    /// values at column `vc` of `qkv`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_context(
        ctx: &mut [f32],
        p: &[f32],
        qkv: &[f32],
        row: usize,
        n: usize,
        w: usize,
        vc: usize,
        cw: usize,
        cc: usize,
        hd: usize,
    ) {
        dispatch!(context_impl(ctx: &mut [f32], p: &[f32], qkv: &[f32], row: usize, n: usize, w: usize, vc: usize, cw: usize, cc: usize, hd: usize) {
            for i in 0..n {
                let dst = &mut ctx[(row + i) * cw + cc..(row + i) * cw + cc + hd];
                dst.iter_mut().for_each(|v| *v = 0.0);
                for j in 0..n {
                    let a = p[i * n + j];
                    let v = &qkv[(row + j) * w + vc..(row + j) * w + vc + hd];
                    axpy(dst, a, v);
                }
            }
        });
    }

    /// LayerNorm of each row of width `h`, in place; keeps x-hat and
    /// 1/std when asked (for the backward pass).
    pub fn layer_norm_rows(x: &mut [f32], h: usize, w: &[f32], b: &[f32], eps: f32, keep: Option<(&mut Vec<f32>, &mut Vec<f32>)>) {
        let rows = x.len() / h;
        match keep {
            Some((xhat, rstd)) => {
                xhat.resize(x.len(), 0.0);
                rstd.resize(rows, 0.0);
                ln_impl(x, h, w, b, eps, xhat, rstd, true);
            }
            None => {
                let (mut a, mut r) = (Vec::new(), Vec::new());
                ln_impl(x, h, w, b, eps, &mut a, &mut r, false);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ln_impl(x: &mut [f32], h: usize, w: &[f32], b: &[f32], eps: f32, xhat: &mut [f32], rstd: &mut [f32], keep: bool) {
        dispatch!(ln_fast(x: &mut [f32], h: usize, w: &[f32], b: &[f32], eps: f32, xhat: &mut [f32], rstd: &mut [f32], keep: bool) {
            for (r, row) in x.chunks_exact_mut(h).enumerate() {
                let mut acc = [0f32; 8];
                for c in row.chunks_exact(8) {
                    for k in 0..8 {
                        acc[k] += c[k];
                    }
                }
                let mut s: f32 = acc.iter().sum();
                for v in row.chunks_exact(8).remainder() {
                    s += v;
                }
                let mean = s / h as f32;
                let mut acc = [0f32; 8];
                for c in row.chunks_exact(8) {
                    for k in 0..8 {
                        let d = c[k] - mean;
                        acc[k] += d * d;
                    }
                }
                let mut var: f32 = acc.iter().sum();
                for v in row.chunks_exact(8).remainder() {
                    var += (v - mean) * (v - mean);
                }
                let rs = 1.0 / (var / h as f32 + eps).sqrt();
                if keep {
                    rstd[r] = rs;
                    let xh = &mut xhat[r * h..(r + 1) * h];
                    for j in 0..h {
                        let v = (row[j] - mean) * rs;
                        xh[j] = v;
                        row[j] = v * w[j] + b[j];
                    }
                } else {
                    for j in 0..h {
                        row[j] = (row[j] - mean) * rs * w[j] + b[j];
                    }
                }
            }
        });
    }

    /// LayerNorm backward: dx from dy, x-hat and 1/std; adds the weight
    /// and bias gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward(
        dx: &mut [f32],
        dy: &[f32],
        xhat: &[f32],
        rstd: &[f32],
        w: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        h: usize,
    ) {
        dispatch!(lnb(dx: &mut [f32], dy: &[f32], xhat: &[f32], rstd: &[f32], w: &[f32], gw: &mut [f32], gb: &mut [f32], h: usize) {
            let rows = dy.len() / h;
            for r in 0..rows {
                let dyr = &dy[r * h..(r + 1) * h];
                let xh = &xhat[r * h..(r + 1) * h];
                let mut s1 = 0f32;
                let mut s2 = 0f32;
                for j in 0..h {
                    let g = dyr[j] * w[j];
                    s1 += g;
                    s2 += g * xh[j];
                    gw[j] += dyr[j] * xh[j];
                    gb[j] += dyr[j];
                }
                let (m1, m2) = (s1 / h as f32, s2 / h as f32);
                let dxr = &mut dx[r * h..(r + 1) * h];
                for j in 0..h {
                    dxr[j] = rstd[r] * (dyr[j] * w[j] - m1 - xh[j] * m2);
                }
            }
        });
    }

    /// y (t x out) = x (t x in) W^T + b, with W (out x in).
    pub fn linear(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], t: usize, din: usize, dout: usize) {
        debug_assert!(y.len() >= t * dout && x.len() >= t * din && w.len() >= dout * din);
        // SAFETY: sizes checked above; strides describe row-major x, W^T, y.
        unsafe {
            gemm::gemm(
                t,
                dout,
                din,
                y.as_mut_ptr(),
                1,
                dout as isize,
                false,
                x.as_ptr(),
                1,
                din as isize,
                w.as_ptr(),
                din as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for row in y[..t * dout].chunks_exact_mut(dout) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }

    /// dX (t x in) = dY (t x out) W (out x in).
    pub fn linear_backward_input(dx: &mut [f32], dy: &[f32], w: &[f32], t: usize, din: usize, dout: usize) {
        gemm_acc(dx, dy, w, t, din, dout, false);
    }

    /// dX += dY W.
    pub fn linear_backward_input_acc(dx: &mut [f32], dy: &[f32], w: &[f32], t: usize, din: usize, dout: usize) {
        gemm_acc(dx, dy, w, t, din, dout, true);
    }

    fn gemm_acc(dx: &mut [f32], dy: &[f32], w: &[f32], t: usize, din: usize, dout: usize, acc: bool) {
        debug_assert!(dx.len() >= t * din && dy.len() >= t * dout && w.len() >= dout * din);
        // SAFETY: sizes checked above; row-major dY (t x out), W (out x in), dX (t x in).
        unsafe {
            gemm::gemm(
                t,
                din,
                dout,
                dx.as_mut_ptr(),
                1,
                din as isize,
                acc,
                dy.as_ptr(),
                1,
                dout as isize,
                w.as_ptr(),
                1,
                din as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// dW (out x in) += dY^T X; db += column sums of dY.
    pub fn linear_backward_weights(gw: &mut [f32], gb: &mut [f32], dy: &[f32], x: &[f32], t: usize, din: usize, dout: usize) {
        debug_assert!(gw.len() >= dout * din && dy.len() >= t * dout && x.len() >= t * din);
        // SAFETY: sizes checked above; dY^T is (out x t) with strides (1, out).
        unsafe {
            gemm::gemm(
                dout,
                din,
                t,
                gw.as_mut_ptr(),
                1,
                din as isize,
                true,
                dy.as_ptr(),
                dout as isize,
                1,
                x.as_ptr(),
                1,
                din as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for row in dy[..t * dout].chunks_exact(dout) {
            for (g, v) in gb.iter_mut().zip(row) {
                *g += v;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exp_and_erf_are_accurate() {
            let mut worst_exp = 0f32;
            let mut worst_erf = 0f64;
            for i in -2000..2000 {
                let x = i as f32 * 0.01;
                let e = exp(x);
                worst_exp = worst_exp.max(((e - x.exp()) / x.exp()).abs());
                let want = libm_erf(x as f64);
                worst_erf = worst_erf.max((erf(x) as f64 - want).abs());
            }
            assert!(worst_exp < 1e-6, "exp: {worst_exp}");
            assert!(worst_erf < 5e-7, "erf: {worst_erf}");
        }

        // erf by its series / continued fraction, in f64, for the test.
        fn libm_erf(x: f64) -> f64 {
            // Taylor series converges fine on |x| <= 3; beyond that erf is 1 to 1e-5.
            if x.abs() > 4.0 {
                return x.signum();
            }
            let mut sum: f64 = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 5.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
    }
}
