//! `labelrest predict`: the session's model put to work on a new file,
//! streamed in chunks, with probability and entropy columns.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

use crate::data::{self, Columns, Format};
use crate::learn::Scores;
use crate::model::{self, Encoder, Head};
use crate::store::Session;

#[derive(serde::Serialize)]
struct Out<'a> {
    line: u64,
    text: &'a str,
    label: &'a str,
    probability: f32,
    entropy: f32,
}

/// Whether `predict` writes JSONL (`.jsonl`, `.ndjson`) or CSV (`.csv`) to
/// `out`; another extension is a usage error.
pub fn output_is_jsonl(out: &Path) -> Result<bool> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(false),
        "jsonl" | "ndjson" => Ok(true),
        other => Err(crate::term::usage(format!("{}: cannot tell the output format from '.{other}'; use .csv or .jsonl", out.display()))),
    }
}

/// Labels every record of `input` and writes CSV or JSONL to `out`; returns the row count.
pub fn predict_file(session: &Session, input: &Path, format: Option<Format>, text_col: &str, out: &Path) -> Result<usize> {
    crate::output::check_not_input(out, &[input, &session.db_path()])?;
    let settings = session.settings()?;
    let names: Vec<String> = session.label_set()?.into_iter().map(|l| l.name).collect();
    let dir = crate::worker::encoder_dir(session)?;
    let encoder = Encoder::load(&dir, &model::device(&settings.device)?)?;
    let head_path = session.dir.join(format!("head-{}.safetensors", encoder.hash));
    if !head_path.exists() {
        bail!("session '{}' has no trained model yet; label some rows or run `labelrest retrain {}` first", session.name, session.name);
    }
    let head = Head::load(&head_path)?;
    if head.k != names.len() {
        bail!("the saved model has {} labels but the session has {}", head.k, names.len());
    }
    let format = match format {
        Some(f) => f,
        None => Format::detect(input).map_err(|e| crate::term::usage(e.to_string()))?,
    };
    let jsonl = output_is_jsonl(out)?;
    let mut w = crate::export::Out::create(out, jsonl)?;
    let mut chunk: Vec<(u64, String)> = Vec::new();
    let mut total = 0usize;
    let mut flush = |chunk: &mut Vec<(u64, String)>, w: &mut crate::export::Out| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = chunk.iter().map(|c| c.1.as_str()).collect();
        let emb = encoder.embed(&texts, |_, _| {})?;
        let x = Tensor::from_vec(emb, (texts.len(), encoder.dim), &Device::Cpu)?;
        let s = Scores::from_probs(head.predict_calibrated(&x)?, head.k);
        for (i, (line, text)) in chunk.iter().enumerate() {
            let o = Out { line: *line, text, label: &names[s.pred[i] as usize], probability: s.prob[i], entropy: s.entropy[i] };
            w.write(&o)?;
        }
        total += chunk.len();
        chunk.clear();
        Ok(())
    };
    let mut err: Option<anyhow::Error> = None;
    data::read_records(input, format, &Columns::new(text_col, None), |r| {
        chunk.push((r.line, r.text));
        if chunk.len() >= 1024 {
            if let Err(e) = flush(&mut chunk, &mut w) {
                err = Some(e);
                return Err(data::DataError::new(input, Some(r.line), None, "prediction failed"));
            }
        }
        Ok(())
    })
    .map_err(|e| match err.take() {
        Some(inner) => inner,
        None => e.into(),
    })?;
    flush(&mut chunk, &mut w)?;
    w.finish()?;
    Ok(total)
}
