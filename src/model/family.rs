//! Encoder families read as one layout. BERT, DistilBERT and (XLM-)RoBERTa
//! are the same post-LayerNorm transformer under different weight names
//! and configs: DistilBERT names its layers otherwise and has no token
//! types; RoBERTa numbers positions from `pad_token_id + 1`. A folder of any
//! of them is read here into BERT's names and config (DistilBERT gets a
//! zero token-type row; RoBERTa's position table loses the rows before its
//! first position), so one forward pass, one fine-tune and one saved format
//! serve all three. Tests check the result against candle-transformers' own
//! DistilBERT and XLM-RoBERTa on random weights.
//!
//! How a sentence-transformers folder pools (`modules.json`,
//! `1_Pooling/config.json`) is read here too.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The architecture a folder's `config.json` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    DistilBert,
    /// RoBERTa, XLM-RoBERTa and CamemBERT (RoBERTa's layout).
    Roberta,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "BERT",
            Family::DistilBert => "DistilBERT",
            Family::Roberta => "(XLM-)RoBERTa",
        }
    }
}

/// How token states become a sentence vector (then L2-normalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The mean over the sequence's tokens (sentence-transformers' default).
    #[default]
    Mean,
    /// The first token's state ([CLS] or `<s>`), as BGE models pool.
    Cls,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "CLS",
        }
    }
}

/// A model folder's architecture as BERT: the family it came from and a
/// `config.json` in BERT's keys.
#[derive(Debug, Clone)]
pub struct Spec {
    pub family: Family,
    /// BERT's config keys (`hidden_size`, `num_hidden_layers`, ...).
    pub config: serde_json::Value,
    /// Rows of the position table before the first position (RoBERTa: `pad_token_id + 1`).
    pub pos_offset: usize,
}

fn config_path(dir: &Path) -> std::path::PathBuf {
    dir.join("config.json")
}

/// Reads `config.json` and says what it is, in BERT's terms.
pub fn spec(dir: &Path) -> Result<Spec> {
    let path = config_path(dir);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not a JSON config", path.display()))?;
    let kind = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("bert").to_ascii_lowercase();
    let num = |k: &str| raw.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let need = |k: &str| num(k).ok_or_else(|| anyhow!("{}: no {k}", path.display()));
    let float = |k: &str, d: f64| raw.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let (family, act_key) = match kind.as_str() {
        "bert" => (Family::Bert, "hidden_act"),
        "distilbert" => (Family::DistilBert, "activation"),
        "roberta" | "xlm-roberta" | "camembert" => (Family::Roberta, "hidden_act"),
        other => bail!(
            "{}: model type '{other}' is not supported; labelrest runs BERT, DistilBERT, RoBERTa and XLM-RoBERTa encoders",
            path.display()
        ),
    };
    let act = raw.get(act_key).and_then(|v| v.as_str()).unwrap_or("gelu");
    if act != "gelu" {
        bail!("{}: activation '{act}' is not supported (only gelu)", path.display());
    }
    let (config, pos_offset) = match family {
        Family::Bert => (raw.clone(), 0),
        Family::DistilBert => {
            if raw.get("sinusoidal_pos_embds").and_then(|v| v.as_bool()) == Some(true) {
                tracing::info!("{}: sinusoidal position embeddings, read from the weights file", path.display());
            }
            let hidden = need("dim")?;
            (
                serde_json::json!({
                    "model_type": "bert",
                    "architectures": ["BertModel"],
                    "vocab_size": need("vocab_size")?,
                    "hidden_size": hidden,
                    "num_hidden_layers": need("n_layers")?,
                    "num_attention_heads": need("n_heads")?,
                    "intermediate_size": need("hidden_dim")?,
                    "hidden_act": "gelu",
                    "hidden_dropout_prob": float("dropout", 0.1),
                    "attention_probs_dropout_prob": float("attention_dropout", 0.1),
                    "max_position_embeddings": need("max_position_embeddings")?,
                    "type_vocab_size": 1,
                    "initializer_range": float("initializer_range", 0.02),
                    "layer_norm_eps": 1e-12,
                    "pad_token_id": num("pad_token_id").unwrap_or(0),
                }),
                0,
            )
        }
        Family::Roberta => {
            let pad = num("pad_token_id").unwrap_or(1);
            let offset = pad + 1;
            let max_pos = need("max_position_embeddings")?;
            if max_pos <= offset {
                bail!("{}: max_position_embeddings {max_pos} leaves no position after the padding index {pad}", path.display());
            }
            let mut c = raw.clone();
            c["model_type"] = "bert".into();
            c["architectures"] = serde_json::json!(["BertModel"]);
            c["max_position_embeddings"] = (max_pos - offset).into();
            c["type_vocab_size"] = num("type_vocab_size").unwrap_or(1).into();
            (c, offset)
        }
    };
    // Keys candle-transformers' BERT config requires, with BERT's defaults.
    let mut config = config;
    for (k, v) in [
        ("hidden_dropout_prob", serde_json::json!(0.1)),
        ("attention_probs_dropout_prob", serde_json::json!(0.1)),
        ("type_vocab_size", serde_json::json!(2)),
        ("initializer_range", serde_json::json!(0.02)),
        ("layer_norm_eps", serde_json::json!(1e-12)),
        ("pad_token_id", serde_json::json!(0)),
        ("hidden_act", serde_json::json!("gelu")),
    ] {
        if config.get(k).is_none_or(|x| x.is_null()) {
            config[k] = v;
        }
    }
    for k in ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings"] {
        if config.get(k).and_then(|v| v.as_u64()).is_none() {
            bail!("{}: no {k}", path.display());
        }
    }
    Ok(Spec { family, config, pos_offset })
}

/// The encoder's weights from `model.safetensors` under BERT's names
/// (`embeddings.*`, `encoder.layer.N.*`, no model prefix), float32 on
/// `device`. Pre-training heads, poolers and buffers are left out.
pub fn bert_tensors(dir: &Path, spec: &Spec, device: &Device) -> Result<HashMap<String, Tensor>> {
    let path = dir.join("model.safetensors");
    let raw = candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = HashMap::new();
    for (name, t) in raw {
        if matches!(t.dtype(), DType::I64 | DType::U32 | DType::U8) {
            continue; // buffers such as position_ids
        }
        let Some(bert) = bert_name(&name, spec.family) else { continue };
        out.insert(bert, t.to_dtype(DType::F32)?);
    }
    let hidden = spec.config["hidden_size"].as_u64().unwrap_or(0) as usize;
    if spec.family == Family::DistilBert && !out.contains_key("embeddings.token_type_embeddings.weight") {
        out.insert("embeddings.token_type_embeddings.weight".into(), Tensor::zeros((1, hidden), DType::F32, &Device::Cpu)?);
    }
    if spec.pos_offset > 0 {
        let key = "embeddings.position_embeddings.weight";
        let t = out.get(key).ok_or_else(|| anyhow!("{}: no weight {key}", path.display()))?;
        let rows = t.dim(0)?;
        if rows <= spec.pos_offset {
            bail!("{}: {key} has {rows} rows, fewer than the first position {}", path.display(), spec.pos_offset);
        }
        let shifted = t.narrow(0, spec.pos_offset, rows - spec.pos_offset)?.contiguous()?;
        out.insert(key.into(), shifted);
    }
    if !out.contains_key("embeddings.word_embeddings.weight") {
        bail!("{}: no word embeddings under any name labelrest knows (is it a {} model?)", path.display(), spec.family.name());
    }
    if device.same_device(&Device::Cpu) {
        return Ok(out);
    }
    out.into_iter().map(|(k, v)| Ok((k, v.to_device(device)?))).collect()
}

/// A weight's BERT name, or None when it is not part of the encoder.
fn bert_name(name: &str, family: Family) -> Option<String> {
    let mut n = name;
    for p in ["bert.", "roberta.", "distilbert.", "model.", "0.auto_model."] {
        if let Some(s) = n.strip_prefix(p) {
            n = s;
        }
    }
    // Older checkpoints name LayerNorm's weight and bias gamma and beta.
    let n = n.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias");
    match family {
        Family::Bert | Family::Roberta => (n.starts_with("embeddings.") || n.starts_with("encoder.")).then_some(n),
        Family::DistilBert => {
            if n.starts_with("embeddings.") {
                return Some(n);
            }
            let rest = n.strip_prefix("transformer.layer.")?;
            let (layer, tail) = rest.split_once('.')?;
            let mapped = [
                ("attention.q_lin.", "attention.self.query."),
                ("attention.k_lin.", "attention.self.key."),
                ("attention.v_lin.", "attention.self.value."),
                ("attention.out_lin.", "attention.output.dense."),
                ("sa_layer_norm.", "attention.output.LayerNorm."),
                ("ffn.lin1.", "intermediate.dense."),
                ("ffn.lin2.", "output.dense."),
                ("output_layer_norm.", "output.LayerNorm."),
            ]
            .iter()
            .find_map(|(from, to)| tail.strip_prefix(from).map(|w| format!("{to}{w}")))?;
            Some(format!("encoder.layer.{layer}.{mapped}"))
        }
    }
}

/// How a sentence-transformers folder pools (`modules.json`,
/// `1_Pooling/config.json`): the mean or the CLS token, then L2-normalised.
/// Other modes (max; mean over the square root of the length; weighted
/// mean; last token) and layers after pooling (Dense) are refused with one
/// line rather than embedded differently from what the model's authors
/// meant. A folder without `modules.json` (a plain Hugging Face model) is
/// mean-pooled. A missing `Normalize` module is noted in the log: the
/// vectors are normalised anyway, which keeps their directions (what the
/// head and the label prompts use).
pub fn pooling(dir: &Path) -> Result<Pooling> {
    let path = dir.join("modules.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Pooling::Mean) };
    let modules: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| format!("{}: not a module list", path.display()))?;
    let mut normalises = false;
    let mut pooling = Pooling::Mean;
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
                let modes: Vec<(Option<Pooling>, &str)> = [
                    ("pooling_mode_mean_tokens", Some(Pooling::Mean), "the mean"),
                    ("pooling_mode_cls_token", Some(Pooling::Cls), "the CLS token"),
                    ("pooling_mode_max_tokens", None, "max"),
                    ("pooling_mode_mean_sqrt_len_tokens", None, "mean over the square root of the length"),
                    ("pooling_mode_weightedmean_tokens", None, "weighted mean"),
                    ("pooling_mode_lasttoken", None, "the last token"),
                ]
                .iter()
                .filter(|(k, _, _)| on(k))
                .map(|(_, p, n)| (*p, *n))
                .collect();
                match modes.as_slice() {
                    [(Some(p), _)] => pooling = *p,
                    _ => bail!(
                        "model {} pools by {} ({}); labelrest supports one of mean or CLS-token pooling",
                        dir.display(),
                        if modes.is_empty() { "no mode it names".to_string() } else { modes.iter().map(|m| m.1).collect::<Vec<_>>().join(" and ") },
                        cfg_path.display()
                    ),
                }
            }
            _ => bail!(
                "model {} has a {} module after the transformer ({}), which labelrest does not run; it supports Transformer, mean or CLS Pooling and Normalize",
                dir.display(),
                if short.is_empty() { "nameless" } else { short },
                path.display()
            ),
        }
    }
    if !normalises {
        tracing::info!("model {}: no Normalize module; labelrest normalises its embeddings (directions unchanged)", dir.display());
    }
    Ok(pooling)
}

/// Writes everything of a model folder but its weights into `out`: the
/// config in BERT's terms (the weights saved beside it carry BERT's names)
/// and the base folder's tokenizer and sentence-transformers files, so that
/// a fine-tuned encoder loads, pools and tokenises as its base did.
pub fn write_folder_files(base: &Path, out: &Path) -> Result<()> {
    let s = spec(base)?;
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&s.config)?)?;
    for f in [
        "tokenizer.json",
        "sentence_bert_config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "sentencepiece.bpe.model",
        "modules.json",
        "config_sentence_transformers.json",
    ] {
        if base.join(f).exists() {
            std::fs::copy(base.join(f), out.join(f))?;
        }
    }
    // The module folders modules.json names (pooling, normalisation), wherever they are.
    let mut subs: Vec<String> = vec!["1_Pooling".into(), "2_Normalize".into()];
    if let Ok(text) = std::fs::read_to_string(base.join("modules.json")) {
        let modules: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        for m in modules {
            if let Some(p) = m.get("path").and_then(|p| p.as_str()) {
                let ok = !p.is_empty() && Path::new(p).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if ok && !subs.iter().any(|s| s == p) {
                    subs.push(p.to_string());
                }
            }
        }
    }
    for sub in &subs {
        let from = base.join(sub);
        if from.is_dir() {
            std::fs::create_dir_all(out.join(sub))?;
            for e in std::fs::read_dir(&from)? {
                let e = e?;
                if e.file_type()?.is_file() {
                    std::fs::copy(e.path(), out.join(sub).join(e.file_name()))?;
                }
            }
        }
    }
    Ok(())
}
