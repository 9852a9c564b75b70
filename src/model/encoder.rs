//! The sentence encoder: a local Hugging Face folder (BERT, DistilBERT or
//! (XLM-)RoBERTa, read as BERT by `family`) run by our CPU BERT or
//! candle-transformers' on CUDA, pooled by the mean over real tokens or the
//! CLS token as the folder says, L2-normalised, as sentence-transformers
//! computes it.

use super::family::{Family, Pooling};
use crate::settings::DeviceSetting;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// The device a setting names: the CPU, CUDA device 0, or `auto` (CUDA
/// when this labelrest was built with `--features cuda` and device 0 opens,
/// else the CPU). With `auto`, a CUDA device that cannot open is logged and
/// the CPU used; see `choose_device` for the reason as text.
pub fn device(setting: DeviceSetting) -> Result<Device> {
    Ok(choose_device(setting)?.0)
}

/// The device for a setting, and when `auto` fell back to the CPU, why.
pub fn choose_device(setting: DeviceSetting) -> Result<(Device, Option<String>)> {
    match setting {
        DeviceSetting::Cpu => Ok((Device::Cpu, None)),
        DeviceSetting::Cuda => {
            if !cfg!(feature = "cuda") {
                bail!("this labelrest was built without CUDA; rebuild with `--features cuda` or use --device cpu");
            }
            Ok((Device::new_cuda(0).map_err(|e| anyhow!("cannot open CUDA device 0: {e}"))?, None))
        }
        DeviceSetting::Auto => Ok(auto_device(cfg!(feature = "cuda"), || Device::new_cuda(0).map_err(|e| anyhow!("{e}")))),
    }
}

/// `auto`: CUDA when the build has it and `open` succeeds, else the CPU
/// (with the reason when CUDA was there but did not open).
pub fn auto_device(have_cuda: bool, open: impl FnOnce() -> Result<Device>) -> (Device, Option<String>) {
    if !have_cuda {
        return (Device::Cpu, None);
    }
    match open() {
        Ok(d) => (d, None),
        Err(e) => {
            let why = format!("CUDA device 0 did not open ({e:#}); using the CPU");
            tracing::warn!("{why}");
            (Device::Cpu, Some(why))
        }
    }
}

/// A device's name as the screen shows it.
pub fn device_name(d: &Device) -> &'static str {
    match d {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        _ => "gpu",
    }
}

/// A content hash of a model folder (weights, config and tokenizer), used to
/// key the embedding cache: a different model never reads another's vectors.
pub fn model_hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let p = dir.join(f);
        let mut file = std::fs::File::open(&p).with_context(|| format!("model folder {}: cannot open {f}", dir.display()))?;
        h.update(f.as_bytes());
        std::io::copy(&mut file, &mut h)?;
    }
    if let Ok(s) = std::fs::read(dir.join("sentence_bert_config.json")) {
        h.update(&s);
    }
    // Pooling other than the mean changes every vector (mean keeps the
    // hashes of folders hashed before pooling was read), and so do RoBERTa's
    // positions (read from `pad_token_id + 1` since families were read;
    // before, such a folder ran as BERT: its old caches must not be reused).
    let pooling = super::family::pooling(dir)?;
    if pooling != Pooling::Mean {
        h.update(format!("pooling={}", pooling.name()).as_bytes());
    }
    let spec = super::family::spec(dir)?;
    if spec.pos_offset > 0 {
        h.update(format!("family={};pos_offset={}", spec.family.name(), spec.pos_offset).as_bytes());
    }
    let d = h.finalize();
    Ok(d.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// What runs the encoder: our CPU BERT (`cpu`) on the CPU, candle-transformers on CUDA.
enum Backend {
    Cpu(std::sync::Arc<super::cpu::Bert>),
    Candle(BertModel),
}

pub struct Encoder {
    model: Backend,
    tokenizer: Tokenizer,
    pub device: Device,
    pub dim: usize,
    pub max_len: usize,
    /// The architecture the folder's config names (run as BERT, see `family`).
    pub family: Family,
    pub pooling: Pooling,
    pub dir: PathBuf,
    pub hash: String,
    /// Largest number of tokens (sum over a batch, padding included) per forward pass.
    pub batch_tokens: usize,
}

fn required_files(dir: &Path) -> Result<()> {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        if !dir.join(f).exists() {
            bail!("model folder {} has no {f} (an encoder folder needs config.json, tokenizer.json and model.safetensors)", dir.display());
        }
    }
    Ok(())
}

/// Checks a model folder as `new` takes it, without reading the weights:
/// its files, an architecture and a pooling labelrest runs, a tokenizer
/// that loads. The error is one line naming the file.
pub fn check_folder(dir: &Path) -> Result<()> {
    required_files(dir)?;
    let spec = super::family::spec(dir)?;
    serde_json::from_value::<Config>(spec.config)
        .with_context(|| format!("{}: not a {} config", dir.join("config.json").display(), spec.family.name()))?;
    super::family::pooling(dir)?;
    load_tokenizer(dir, None)?;
    Ok(())
}

/// The longest sequence (in tokens, special tokens included) a folder's
/// model reads: `sentence_bert_config.json`'s `max_seq_length` (else 256),
/// at most its position embeddings.
fn max_len(dir: &Path, max_pos: usize) -> usize {
    std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
        .map(|m| m as usize)
        .unwrap_or(256)
        .min(max_pos)
}

/// A folder's tokenizer without padding, truncating at `truncate` tokens.
fn load_tokenizer(dir: &Path, truncate: Option<usize>) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // The bundled tokenizer.json pads to 128; we pad per batch ourselves.
    tokenizer.with_padding(None);
    let params = truncate.map(|max_length| TruncationParams { max_length, ..Default::default() });
    tokenizer.with_truncation(params).map_err(|e| anyhow!("{e}"))?;
    Ok(tokenizer)
}

/// How many of `texts` are longer than the model in `dir` reads (they are
/// truncated to their first tokens when embedded), and that length. Reads
/// the tokenizer and config only, not the weights.
pub fn count_truncated(dir: &Path, texts: &[&str]) -> Result<(usize, usize)> {
    let spec = super::family::spec(dir)?;
    let max_pos = spec.config["max_position_embeddings"].as_u64().unwrap_or(512) as usize;
    let limit = max_len(dir, max_pos);
    let tokenizer = load_tokenizer(dir, None)?;
    // Each token covers at least one byte of the text, and a word-start
    // marker (SentencePiece's ▁) comes at most once a byte: a text of few
    // bytes cannot be too long, and is not tokenised here (most of a big
    // pile of short texts).
    let texts: Vec<&str> = texts.iter().copied().filter(|t| t.len() * 2 + 2 > limit).collect();
    let mut long = 0;
    for chunk in texts.chunks(4096) {
        let enc = tokenizer.encode_batch(chunk.to_vec(), true).map_err(|e| anyhow!("tokenizer: {e}"))?;
        long += enc.iter().filter(|e| e.len() > limit).count();
    }
    Ok((long, limit))
}

impl Encoder {
    /// Loads a BERT-family folder: `config.json`, `tokenizer.json`,
    /// `model.safetensors`, and `sentence_bert_config.json` for the maximum
    /// length when present (else 256, capped by the position embeddings).
    pub fn load(dir: &Path, device: &Device) -> Result<Encoder> {
        Self::load_with(dir, device, false)
    }

    /// Loads with candle-transformers' BERT whatever the device (the
    /// reference our CPU BERT is checked against, and the CUDA path).
    pub fn load_candle(dir: &Path, device: &Device) -> Result<Encoder> {
        Self::load_with(dir, device, true)
    }

    fn load_with(dir: &Path, device: &Device, candle: bool) -> Result<Encoder> {
        required_files(dir)?;
        let pooling = super::family::pooling(dir)?;
        let spec = super::family::spec(dir)?;
        let config: Config = serde_json::from_value(spec.config.clone())
            .with_context(|| format!("{}: not a {} config", dir.join("config.json").display(), spec.family.name()))?;
        let max_len = max_len(dir, config.max_position_embeddings);
        let dim = config.hidden_size;
        let model = match device {
            Device::Cpu if !candle => Backend::Cpu(std::sync::Arc::new(
                super::cpu::Bert::load(dir)
                    .with_context(|| format!("cannot load {} weights from {}", spec.family.name(), dir.display()))?,
            )),
            _ => {
                // Any family's weights under BERT's names (see `family`).
                let tensors = super::family::bert_tensors(dir, &spec, device)?;
                let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
                Backend::Candle(
                    BertModel::load(vb, &config)
                        .with_context(|| format!("cannot load {} weights from {}", spec.family.name(), dir.display()))?,
                )
            }
        };
        let tokenizer = load_tokenizer(dir, Some(max_len))?;
        let hash = model_hash(dir)?;
        // Tokens per forward pass (padding included with candle); LABELREST_BATCH_TOKENS overrides.
        // A GPU wants wide batches (at most 256 texts each, below); candle on the CPU small ones.
        let default_tokens = match (&model, device) {
            (Backend::Cpu(_), _) => 4096,
            (_, Device::Cpu) => 1024,
            _ => 16384,
        };
        let batch_tokens = std::env::var("LABELREST_BATCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_tokens);
        Ok(Encoder {
            model,
            tokenizer,
            device: device.clone(),
            dim,
            max_len,
            family: spec.family,
            pooling,
            dir: dir.to_path_buf(),
            hash,
            batch_tokens,
        })
    }

    /// An encoder from CPU weights (a fine-tune's result) with the
    /// tokenizer and settings of `like`, stored at `dir` (hash `hash`).
    pub fn from_cpu(bert: super::cpu::Bert, like: &Encoder, dir: &Path, hash: String) -> Encoder {
        Encoder {
            model: Backend::Cpu(std::sync::Arc::new(bert)),
            tokenizer: like.tokenizer.clone(),
            device: Device::Cpu,
            dim: like.dim,
            max_len: like.max_len,
            family: like.family,
            pooling: like.pooling,
            dir: dir.to_path_buf(),
            hash,
            batch_tokens: like.batch_tokens,
        }
    }

    /// The CPU model's weights (None on CUDA).
    pub fn cpu_bert(&self) -> Option<&std::sync::Arc<super::cpu::Bert>> {
        match &self.model {
            Backend::Cpu(b) => Some(b),
            Backend::Candle(_) => None,
        }
    }

    /// Token ids of each text (truncated, with [CLS] and [SEP]).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow!("tokenizer: {e}"))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Embeds texts; the result is `texts.len() * dim` floats in input order.
    /// `progress(done, total)` is called after every batch.
    pub fn embed(&self, texts: &[&str], mut progress: impl FnMut(usize, usize)) -> Result<Vec<f32>> {
        let ids = self.tokenize(texts)?;
        let mut out = vec![0f32; texts.len() * self.dim];
        let mut done = 0;
        self.embed_ids(&ids, |idx, vecs| {
            for (j, &i) in idx.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim].copy_from_slice(&vecs[j * self.dim..(j + 1) * self.dim]);
            }
            done += idx.len();
            progress(done, texts.len());
            Ok(())
        })?;
        Ok(out)
    }

    /// Embeds tokenised texts in batches of similar length (little padding)
    /// and hands each batch to `sink(indices, vectors)`.
    pub fn embed_ids(&self, ids: &[Vec<u32>], mut sink: impl FnMut(&[usize], &[f32]) -> Result<()>) -> Result<()> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        if let Backend::Cpu(bert) = &self.model {
            // No padding: batches of about `batch_tokens` tokens, split over the cores.
            let threads = super::threads();
            let mut start = 0;
            while start < order.len() {
                let mut end = start;
                let mut tokens = 0;
                while end < order.len() && (end == start || tokens + ids[order[end]].len() <= self.batch_tokens) {
                    tokens += ids[order[end]].len();
                    end += 1;
                }
                let batch = &order[start..end];
                let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
                let vecs = bert.embed(&seqs, threads);
                sink(batch, &vecs)?;
                start = end;
            }
            return Ok(());
        }
        let mut start = 0;
        while start < order.len() {
            let longest = ids[order[start]].len().max(1);
            let n = (self.batch_tokens / longest).clamp(1, 256).min(order.len() - start);
            let batch = &order[start..start + n];
            let vecs = self.forward_batch(batch.iter().map(|&i| ids[i].as_slice()).collect::<Vec<_>>().as_slice())?;
            sink(batch, &vecs)?;
            start += n;
        }
        Ok(())
    }

    fn forward_batch(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let b = seqs.len();
        let mut input = vec![0u32; b * len];
        let mut mask = vec![0u32; b * len];
        for (i, s) in seqs.iter().enumerate() {
            input[i * len..i * len + s.len()].copy_from_slice(s);
            for m in &mut mask[i * len..i * len + s.len()] {
                *m = 1;
            }
        }
        let input_t = Tensor::from_vec(input, (b, len), &self.device)?;
        let mask_t = Tensor::from_vec(mask, (b, len), &self.device)?;
        let types = input_t.zeros_like()?;
        let Backend::Candle(model) = &self.model else { unreachable!("the CPU backend embeds in embed_ids") };
        let hidden = model.forward(&input_t, &types, Some(&mask_t))?; // (b, len, d)
        let mean = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?, // (b, d)
            Pooling::Mean => {
                let maskf = mask_t.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
                let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (b, d)
                let counts = maskf.sum(1)?.clamp(1e-9, f64::MAX)?; // (b, 1)
                summed.broadcast_div(&counts)?
            }
        };
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let normed = mean.broadcast_div(&norm)?;
        Ok(normed.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Makes a label name read as words: `card_arrival` -> "card arrival".
pub fn label_prompt(name: &str, description: Option<&str>) -> String {
    let words: String = name
        .chars()
        .map(|c| if c == '_' || c == '-' || c == '.' || c == ':' { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match description {
        Some(d) if !d.trim().is_empty() => format!("{words}: {}", d.trim()),
        _ => words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_the_cpu_with_a_reason() {
        let (d, why) = auto_device(true, || Err(anyhow!("no CUDA-capable device is detected")));
        assert!(matches!(d, Device::Cpu));
        let why = why.unwrap();
        assert!(why.contains("did not open") && why.contains("no CUDA-capable device") && why.contains("CPU"), "{why}");
        // A build without CUDA: the CPU, nothing to say.
        let (d, why) = auto_device(false, || panic!("not tried without CUDA"));
        assert!(matches!(d, Device::Cpu) && why.is_none());
        // And the settings: auto here is the CPU (this build or this machine).
        assert!(matches!(choose_device(DeviceSetting::Auto).unwrap().0, Device::Cpu) || cfg!(feature = "cuda"));
        if !cfg!(feature = "cuda") {
            assert!(choose_device(DeviceSetting::Cuda).unwrap_err().to_string().contains("built without CUDA"));
        }
    }
    #[test]
    fn prompts_read_as_words() {
        assert_eq!(label_prompt("card_arrival", None), "card arrival");
        assert_eq!(label_prompt("NUM", Some("number or quantity")), "NUM: number or quantity");
    }
}
