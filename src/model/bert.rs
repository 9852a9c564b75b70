//! A BERT encoder that can be trained: the same architecture and weight
//! names as Hugging Face's `BertModel` (and candle-transformers'), but with
//! a LayerNorm that has a backward pass while training (candle-nn's
//! `layer_norm_slow`; the fused op otherwise) and real dropout.
//!
//! candle-transformers' module cannot be fine-tuned: its LayerNorm goes
//! through a fused op without a backward pass, so no gradient reaches the
//! encoder, and its dropout is a no-op.

use super::family::{self, Pooling};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Embedding, Linear, VarBuilder, VarMap};
use std::path::Path;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "drop")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "drop")]
    pub attention_probs_dropout_prob: f32,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}
fn drop() -> f32 {
    0.1
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Norm> {
        // Older checkpoints name them gamma and beta.
        let weight = vb.get(size, "weight").or_else(|_| vb.get(size, "gamma"))?;
        let bias = vb.get(size, "bias").or_else(|_| vb.get(size, "beta"))?;
        Ok(Norm { weight, bias, eps: eps as f32 })
    }
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(if train {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)?
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)?
        })
    }
}

fn dropout(x: &Tensor, p: f32, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        Ok(candle_nn::ops::dropout(x, p)?)
    } else {
        Ok(x.clone())
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

/// The trainable encoder.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    pub cfg: BertConfig,
    /// How token states become the sentence vector (the folder's, see `family::pooling`).
    pub pooling: Pooling,
    /// While training, the layers below this one (and the embeddings) run as
    /// frozen features: no dropout, and the gradient stops at their output, so
    /// the backward pass covers only the layers that learn (as on the CPU,
    /// where their states are cached). 0: every layer learns.
    pub frozen_below: usize,
}

impl Bert {
    pub fn new(vb: VarBuilder, cfg: &BertConfig) -> Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = cfg.hidden_size;
        let e = vb.pp("embeddings");
        let word = candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let position = candle_nn::embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let token_type = candle_nn::embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let emb_norm = Norm::load(e.pp("LayerNorm"), h, cfg.layer_norm_eps)?;
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: candle_nn::linear(h, h, a.pp("self.query"))?,
                key: candle_nn::linear(h, h, a.pp("self.key"))?,
                value: candle_nn::linear(h, h, a.pp("self.value"))?,
                attn_out: candle_nn::linear(h, h, a.pp("output.dense"))?,
                attn_norm: Norm::load(a.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
                inter: candle_nn::linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                out: candle_nn::linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: Norm::load(l.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        Ok(Bert { word, position, token_type, emb_norm, layers, cfg: cfg.clone(), pooling: Pooling::Mean, frozen_below: 0 })
    }

    /// Hidden states (b, len, hidden) for token ids and a 0/1 mask (b, len).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let dev = ids.device();
        let pos = Tensor::arange(0u32, len as u32, dev)?.unsqueeze(0)?.broadcast_as((b, len))?.contiguous()?;
        let types = ids.zeros_like()?;
        let x = (self.word.forward(ids)? + self.position.forward(&pos)?)?;
        let x = (x + self.token_type.forward(&types)?)?;
        let frozen = self.frozen_below.min(self.layers.len());
        let emb_train = train && frozen == 0;
        let mut x = dropout(&self.emb_norm.forward(&x, emb_train)?, self.cfg.hidden_dropout_prob, emb_train)?;
        // Additive attention mask: 0 where attended, a large negative number on padding.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(1)?.unsqueeze(1)?; // (b,1,1,len)
        let neg = ((m.ones_like()? - &m)? * -1e9f64)?;
        let heads = self.cfg.num_attention_heads;
        let hd = self.cfg.hidden_size / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, l) in self.layers.iter().enumerate() {
            let train = train && li >= frozen;
            if train && li == frozen && li > 0 {
                x = x.detach();
            }
            let split = |t: Tensor| -> Result<Tensor> { Ok(t.reshape((b, len, heads, hd))?.transpose(1, 2)?.contiguous()?) };
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&neg)?;
            // The fused softmax has no backward pass: the composed one while training.
            let probs = if train { candle_nn::ops::softmax(&scores, D::Minus1)? } else { candle_nn::ops::softmax_last_dim(&scores)? };
            let probs = dropout(&probs, self.cfg.attention_probs_dropout_prob, train)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, len, self.cfg.hidden_size))?;
            let a = dropout(&l.attn_out.forward(&ctx)?, self.cfg.hidden_dropout_prob, train)?;
            let x1 = l.attn_norm.forward(&(a + &x)?, train)?;
            let i = l.inter.forward(&x1)?.gelu_erf()?;
            let o = dropout(&l.out.forward(&i)?, self.cfg.hidden_dropout_prob, train)?;
            x = l.out_norm.forward(&(o + &x1)?, train)?;
        }
        Ok(x)
    }

    /// Sentence embeddings: the mean over real tokens or the first token,
    /// L2-normalised (b, hidden).
    pub fn embed(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.forward(ids, mask, train)?;
        let mean = match self.pooling {
            Pooling::Cls => h.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = h.broadcast_mul(&m)?.sum(1)?;
                let n = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&n)?
            }
        };
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?)
    }
}

/// Loads a model folder's weights as trainable variables (float32); any
/// family, read as BERT (see `family`).
pub fn load_trainable(dir: &Path, device: &Device) -> Result<(Bert, VarMap)> {
    let spec = family::spec(dir)?;
    let cfg: BertConfig = serde_json::from_value(spec.config.clone())
        .with_context(|| format!("{}: not a {} config", dir.join("config.json").display(), spec.family.name()))?;
    // Only the encoder is trained; the pooler and pre-training heads are left out.
    let tensors = family::bert_tensors(dir, &spec, device)?;
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, t) in tensors {
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let mut bert = Bert::new(vb, &cfg)?;
    bert.pooling = family::pooling(dir)?;
    Ok((bert, varmap))
}

/// Writes a model folder: the variables as safetensors (BERT's names) and
/// the base folder's config (as BERT), tokenizer and pooling files.
pub fn save_model_dir(varmap: &VarMap, base: &Path, out: &Path) -> Result<()> {
    let tmp = out.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    family::write_folder_files(base, &tmp)?;
    varmap.save(tmp.join("model.safetensors"))?;
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}
