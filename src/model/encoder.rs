//! The sentence encoder: a local Hugging Face BERT-family folder run with
//! candle-transformers' BERT, mean pooling over real tokens, L2-normalised,
//! as sentence-transformers computes it.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// Which device to run on: `cpu`, `cuda`, or `auto` (CUDA when this
/// labelrest was built with `--features cuda` and device 0 opens, else the
/// CPU). With `auto`, a CUDA device that cannot open is logged and the CPU
/// used; see `choose_device` for the reason as text.
pub fn device(name: &str) -> Result<Device> {
    Ok(choose_device(name)?.0)
}

/// The device for a setting, and when `auto` fell back to the CPU, why.
pub fn choose_device(name: &str) -> Result<(Device, Option<String>)> {
    match name {
        "cpu" => Ok((Device::Cpu, None)),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                bail!("this labelrest was built without CUDA; rebuild with `--features cuda` or use --device cpu");
            }
            Ok((Device::new_cuda(0).map_err(|e| anyhow!("cannot open CUDA device 0: {e}"))?, None))
        }
        "auto" | "" => Ok(auto_device(cfg!(feature = "cuda"), || Device::new_cuda(0).map_err(|e| anyhow!("{e}")))),
        other => bail!("unknown device '{other}'; use auto, cpu or cuda"),
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
    pub dir: PathBuf,
    pub hash: String,
    /// Largest number of tokens (sum over a batch, padding included) per forward pass.
    pub batch_tokens: usize,
}

/// What a sentence-transformers folder says about how it turns token states
/// into a sentence vector (`modules.json`, `1_Pooling/config.json`).
/// labelrest mean-pools over real tokens and L2-normalises: a folder that
/// pools otherwise (the CLS token, as BGE models do; max; mean divided by
/// the square root of the length) or adds a layer after pooling (Dense) is
/// refused with one line rather than embedded differently from what its
/// authors meant. A folder without `modules.json` (a plain Hugging Face
/// BERT) is mean-pooled. A missing `Normalize` module is noted in the log:
/// the vectors are normalised anyway, which keeps their directions (what
/// the head and the label prompts use).
pub fn check_sentence_transformers(dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else { return Ok(()) };
    let path = dir.join("modules.json");
    let modules: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| format!("{}: not a module list", path.display()))?;
    let mut normalises = false;
    for m in &modules {
        let kind = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let short = kind.rsplit('.').next().unwrap_or(kind);
        match short {
            "Transformer" => {}
            "Normalize" => normalises = true,
            "Pooling" => {
                let sub = m.get("path").and_then(|p| p.as_str()).unwrap_or("1_Pooling");
                let cfg_path = dir.join(sub).join("config.json");
                let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
                    Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}: not a pooling config", cfg_path.display()))?,
                    // No config: sentence-transformers' default, mean pooling.
                    Err(_) => continue,
                };
                let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
                let other: Vec<&str> = [
                    ("pooling_mode_cls_token", "the CLS token"),
                    ("pooling_mode_max_tokens", "max"),
                    ("pooling_mode_mean_sqrt_len_tokens", "mean over the square root of the length"),
                    ("pooling_mode_weightedmean_tokens", "weighted mean"),
                    ("pooling_mode_lasttoken", "the last token"),
                ]
                .iter()
                .filter(|(k, _)| on(k))
                .map(|(_, n)| *n)
                .collect();
                if !other.is_empty() || !on("pooling_mode_mean_tokens") {
                    bail!(
                        "model {} pools by {} ({}); labelrest supports mean pooling only",
                        dir.display(),
                        if other.is_empty() { "no mode it names".to_string() } else { other.join(" and ") },
                        cfg_path.display()
                    );
                }
            }
            _ => bail!(
                "model {} has a {} module after the transformer ({}), which labelrest does not run; it supports Transformer, mean Pooling and Normalize",
                dir.display(),
                if short.is_empty() { "nameless" } else { short },
                path.display()
            ),
        }
    }
    if !normalises {
        tracing::info!("model {}: no Normalize module; labelrest normalises its embeddings (directions unchanged)", dir.display());
    }
    Ok(())
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
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(f).exists() {
                bail!(
                    "model folder {} has no {f} (a Hugging Face BERT folder needs config.json, tokenizer.json and model.safetensors)",
                    dir.display()
                );
            }
        }
        check_sentence_transformers(dir)?;
        let cfg_text = std::fs::read_to_string(dir.join("config.json"))?;
        let config: Config =
            serde_json::from_str(&cfg_text).with_context(|| format!("{}: not a BERT config", dir.join("config.json").display()))?;
        let raw: serde_json::Value = serde_json::from_str(&cfg_text)?;
        let max_pos = raw.get("max_position_embeddings").and_then(|v| v.as_u64()).unwrap_or(512) as usize;
        let max_len = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .map(|m| m as usize)
            .unwrap_or(256)
            .min(max_pos);
        let dim = config.hidden_size;
        let model = match device {
            Device::Cpu if !candle => Backend::Cpu(std::sync::Arc::new(
                super::cpu::Bert::load(dir).with_context(|| format!("cannot load BERT weights from {}", dir.display()))?,
            )),
            _ => {
                // SAFETY: the weights file is memory-mapped read-only; it must not be
                // changed while labelrest runs.
                let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, device)? };
                Backend::Candle(BertModel::load(vb, &config).with_context(|| format!("cannot load BERT weights from {}", dir.display()))?)
            }
        };
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| anyhow!("{}: {e}", dir.join("tokenizer.json").display()))?;
        // The bundled tokenizer.json pads to 128; we pad per batch ourselves.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(|e| anyhow!("{e}"))?;
        let hash = model_hash(dir)?;
        // Tokens per forward pass (padding included with candle); LABELREST_BATCH_TOKENS overrides.
        let default_tokens = if matches!(model, Backend::Cpu(_)) { 4096 } else { 1024 };
        let batch_tokens = std::env::var("LABELREST_BATCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_tokens);
        Ok(Encoder { model, tokenizer, device: device.clone(), dim, max_len, dir: dir.to_path_buf(), hash, batch_tokens })
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
        let maskf = mask_t.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (b, d)
        let counts = maskf.sum(1)?.clamp(1e-9, f64::MAX)?; // (b, 1)
        let mean = summed.broadcast_div(&counts)?;
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
        // And the setting names: auto here is the CPU (this build or this machine).
        assert!(matches!(choose_device("auto").unwrap().0, Device::Cpu) || cfg!(feature = "cuda"));
        assert!(choose_device("tpu").unwrap_err().to_string().contains("use auto, cpu or cuda"));
    }
    #[test]
    fn prompts_read_as_words() {
        assert_eq!(label_prompt("card_arrival", None), "card arrival");
        assert_eq!(label_prompt("NUM", Some("number or quantity")), "NUM: number or quantity");
    }
}
