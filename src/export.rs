//! Export: every pool row with a label, the person's where there is one
//! (or a seed label), the model's (with its confidence) everywhere else.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

use crate::output::AtomicWriter;
use crate::store::{Session, Source, Split};

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only rows a person (or a seed) labelled.
    pub only_labelled: bool,
    /// Model labels below this (calibrated) probability are left empty
    /// (source `none`), or the rows dropped with `drop_below`.
    pub min_confidence: Option<f32>,
    pub drop_below: bool,
    /// CSV: neutralise cells a spreadsheet would run as a formula (OWASP:
    /// a leading quote before `=`, `+`, `-`, `@`, tab, carriage return).
    pub spreadsheet_safe: bool,
}

/// Whether a cell would start a formula in a spreadsheet (OWASP's list).
pub fn formula_like(cell: &str) -> bool {
    matches!(cell.chars().next(), Some('=' | '+' | '-' | '@' | '\t' | '\r'))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportReport {
    pub rows: usize,
    pub person: usize,
    pub seed: usize,
    pub model: usize,
    pub none: usize,
    /// CSV cells that start like a formula (neutralised with `spreadsheet_safe`).
    pub formula_cells: usize,
    /// Model labels left empty (or rows dropped) below `min_confidence`.
    pub below: usize,
    /// Expected accuracy of the model's labels written (the mean of their
    /// calibrated probabilities); None when none were written.
    pub model_expected: Option<f64>,
}

/// A CSV or JSONL writer of serialisable records, to a temporary file that
/// `finish` puts at the target (see `output`).
pub(crate) enum Out {
    Csv(csv::Writer<AtomicWriter>),
    Json(AtomicWriter),
}

impl Out {
    pub(crate) fn create(path: &Path, jsonl: bool) -> Result<Out> {
        let w = AtomicWriter::create(path)?;
        Ok(if jsonl { Out::Json(w) } else { Out::Csv(csv::Writer::from_writer(w)) })
    }
    pub(crate) fn write<T: serde::Serialize>(&mut self, v: &T) -> Result<()> {
        let r: Result<()> = match self {
            Out::Csv(c) => c.serialize(v).map_err(Into::into),
            Out::Json(w) => serde_json::to_writer(&mut *w, v).map_err(Into::into).and_then(|_| w.write_all(b"\n").map_err(Into::into)),
        };
        r.with_context(|| format!("cannot write {}", self.target().display()))
    }
    fn target(&self) -> &Path {
        match self {
            Out::Csv(c) => c.get_ref().target(),
            Out::Json(w) => w.target(),
        }
    }
    pub(crate) fn finish(self) -> Result<()> {
        let w = match self {
            Out::Csv(c) => {
                let t = c.get_ref().target().to_path_buf();
                c.into_inner().map_err(|e| anyhow::anyhow!("cannot write {}: {}", t.display(), e.error()))?
            }
            Out::Json(w) => w,
        };
        w.commit()
    }
}

#[derive(serde::Serialize)]
struct OutRow<'a> {
    id: i64,
    text: &'a str,
    label: &'a str,
    source: &'a str,
    probability: Option<f32>,
    entropy: Option<f32>,
}

pub fn export(session: &Session, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    if let Some(p) = opts.min_confidence {
        if !(0.0..=1.0).contains(&p) {
            return Err(crate::term::usage(format!("--min-confidence must be between 0 and 1, not {p}")));
        }
    }
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let jsonl = match ext.as_str() {
        "csv" => false,
        "jsonl" | "ndjson" => true,
        other => {
            return Err(crate::term::usage(format!("{}: cannot tell the export format from '.{other}'; use .csv or .jsonl", out.display())))
        }
    };
    crate::output::check_not_input(out, &[&session.db_path()])?;
    let names: Vec<String> = session.label_set()?.into_iter().map(|l| l.name).collect();
    let labels: std::collections::HashMap<i64, (u32, Source)> =
        session.labels()?.into_iter().map(|l| (l.row_id, (l.label, l.source))).collect();
    let preds = session.predictions()?;
    let mut sink = Out::create(out, jsonl)?;
    let mut report = ExportReport::default();
    let mut model_prob_sum = 0f64;
    for row in session.rows()? {
        if row.split != Split::Pool {
            continue;
        }
        let pred = preds.get(&row.id);
        let (label, source) = match labels.get(&row.id) {
            Some((l, s)) => (names[*l as usize].as_str(), s.as_str()),
            None => match pred {
                Some(p) => (names[p.label as usize].as_str(), "model"),
                None => ("", "none"),
            },
        };
        if opts.only_labelled && (source == "model" || source == "none") {
            continue;
        }
        let (label, source) = match (opts.min_confidence, source) {
            (Some(min), "model") if pred.map(|p| p.prob < min).unwrap_or(true) => {
                report.below += 1;
                if opts.drop_below {
                    continue;
                }
                ("", "none")
            }
            _ => (label, source),
        };
        if source == "model" {
            model_prob_sum += pred.map(|p| p.prob as f64).unwrap_or(0.0);
        }
        match source {
            "person" => report.person += 1,
            "seed" => report.seed += 1,
            "model" => report.model += 1,
            _ => report.none += 1,
        }
        report.rows += 1;
        let (mut text, mut label) = (std::borrow::Cow::from(row.text.as_str()), std::borrow::Cow::from(label));
        if !jsonl {
            for cell in [&mut text, &mut label] {
                if formula_like(cell) {
                    report.formula_cells += 1;
                    if opts.spreadsheet_safe {
                        *cell = std::borrow::Cow::Owned(format!("'{cell}"));
                    }
                }
            }
        }
        let o =
            OutRow { id: row.id, text: &text, label: &label, source, probability: pred.map(|p| p.prob), entropy: pred.map(|p| p.entropy) };
        sink.write(&o)?;
    }
    sink.finish()?;
    report.model_expected = if report.model > 0 { Some(model_prob_sum / report.model as f64) } else { None };
    Ok(report)
}
