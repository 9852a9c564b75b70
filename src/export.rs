//! Export: every pool row with a label, the person's where there is one
//! (or a seed label), the model's (with its confidence) everywhere else.
//! Formats: our CSV and JSONL, Prodigy's JSONL, Label Studio's tasks and a
//! Hugging Face `datasets` folder.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::output::AtomicWriter;
use crate::store::{RowSource, Session, Split};

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `id,text,label,source,probability,entropy,annotator` (`.csv`).
    Csv,
    /// The same fields, one JSON object a line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// Prodigy's JSONL: `text`, `label`, `answer` (`accept`, on the
    /// person's and seed labels only: the model's labels and rows without
    /// one are tasks to review, with no answer) and `meta` (`id`, `source`,
    /// `probability`, `annotator`).
    Prodigy,
    /// Label Studio's tasks, one JSON array (`.json`): `data.text`, the
    /// model's labels as `predictions`, the person's (and seed labels) as
    /// `annotations`, for a `<Choices name="label" toName="text">`.
    LabelStudio,
    /// A folder for Hugging Face `datasets`: `data.jsonl` (`text`, `label`,
    /// `label_id`, `source`, `probability`), `dataset_info.json` (the
    /// features, `label` a `ClassLabel` with the label names) and a
    /// `README.md` whose header `load_dataset(FOLDER)` reads.
    Hf,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Prodigy => "prodigy",
            ExportFormat::LabelStudio => "label-studio",
            ExportFormat::Hf => "hf",
        }
    }

    /// The format named by the output's extension: `.csv`, `.jsonl` or
    /// `.ndjson` (ours), `.json` (Label Studio's tasks). The others are
    /// chosen with `--format`.
    pub fn from_path(out: &Path) -> std::result::Result<ExportFormat, String> {
        let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "json" => Ok(ExportFormat::LabelStudio),
            other => Err(format!(
                "{}: cannot tell the export format from {}; use .csv or .jsonl (or .json for Label Studio), \
                 or --format csv|jsonl|prodigy|label-studio|hf",
                out.display(),
                if other.is_empty() { "a name with no extension".to_string() } else { format!("'.{other}'") }
            )),
        }
    }

    /// `given`, else the format from the extension.
    pub fn resolve(out: &Path, given: Option<ExportFormat>) -> std::result::Result<ExportFormat, String> {
        match given {
            Some(f) => Ok(f),
            None => ExportFormat::from_path(out),
        }
    }
}

/// The Label Studio control and object names the tasks refer to.
pub const LABEL_STUDIO_FROM: &str = "label";
pub const LABEL_STUDIO_TO: &str = "text";

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The format; None: from the output's extension.
    pub format: Option<ExportFormat>,
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
    /// Rows two annotators disagreed on, settled by the adjudicator.
    pub adjudicated: usize,
    /// Rows two annotators disagree on, not adjudicated yet (no label).
    pub disputed: usize,
    /// CSV cells that start like a formula (neutralised with `spreadsheet_safe`).
    pub formula_cells: usize,
    /// Model labels left empty (or rows dropped) below `min_confidence`.
    pub below: usize,
    /// The labels the model learns from (resolved across annotators: not
    /// an overlap row's first label, nor a dispute).
    pub learnt_from: usize,
    /// How many labels of the set those labels use, and the set's size: a
    /// label nobody gave yet is one whose rows the calibration cannot check.
    pub labels_used: usize,
    pub label_set: usize,
    /// hf: other data files in the folder, which `load_dataset(FOLDER)`
    /// reads too (the first few).
    pub other_data_files: Vec<String>,
    /// Expected accuracy of the model's labels written (the mean of their
    /// calibrated probabilities); None when none were written.
    pub model_expected: Option<f64>,
}

/// A CSV, JSONL or JSON-array writer of serialisable records, to a
/// temporary file that `finish` puts at the target (see `output`).
pub(crate) enum Out {
    /// CSV, its header (written at the end if no row was: the csv crate
    /// writes it with the first row) and whether a row was written.
    Csv(Box<csv::Writer<AtomicWriter>>, &'static [&'static str], bool),
    Json(AtomicWriter),
    /// One JSON array, an element a line; `bool`: an element was written.
    Array(AtomicWriter, bool),
}

impl Out {
    /// JSONL, or CSV with `header` (the fields of the rows written).
    pub(crate) fn create(path: &Path, jsonl: bool, header: &'static [&'static str]) -> Result<Out> {
        let w = AtomicWriter::create(path)?;
        Ok(if jsonl { Out::Json(w) } else { Out::Csv(Box::new(csv::Writer::from_writer(w)), header, false) })
    }
    pub(crate) fn create_array(path: &Path) -> Result<Out> {
        Ok(Out::Array(AtomicWriter::create(path)?, false))
    }
    pub(crate) fn write<T: serde::Serialize>(&mut self, v: &T) -> Result<()> {
        let r: Result<()> = match self {
            Out::Csv(c, _, wrote) => {
                *wrote = true;
                c.serialize(v).map_err(Into::into)
            }
            Out::Json(w) => serde_json::to_writer(&mut *w, v).map_err(Into::into).and_then(|_| w.write_all(b"\n").map_err(Into::into)),
            Out::Array(w, started) => {
                let sep: &[u8] = if *started { b",\n" } else { b"[\n" };
                *started = true;
                w.write_all(sep).map_err(Into::into).and_then(|_| serde_json::to_writer(&mut *w, v).map_err(Into::into))
            }
        };
        r.with_context(|| format!("cannot write {}", self.target().display()))
    }
    fn target(&self) -> &Path {
        match self {
            Out::Csv(c, _, _) => c.get_ref().target(),
            Out::Json(w) | Out::Array(w, _) => w.target(),
        }
    }
    pub(crate) fn finish(self) -> Result<()> {
        let w = match self {
            Out::Csv(mut c, header, wrote) => {
                let t = c.get_ref().target().to_path_buf();
                if !wrote {
                    c.write_record(header).with_context(|| format!("cannot write {}", t.display()))?;
                }
                c.into_inner().map_err(|e| anyhow::anyhow!("cannot write {}: {}", t.display(), e.error()))?
            }
            Out::Json(w) => w,
            Out::Array(mut w, started) => {
                let end: &[u8] = if started { b"\n]\n" } else { b"[]\n" };
                w.write_all(end).with_context(|| format!("cannot write {}", w.target().display()))?;
                w
            }
        };
        w.commit()
    }
}

/// `OutRow`'s fields, the header of a CSV export.
const OUT_ROW_FIELDS: &[&str] = &["id", "text", "label", "source", "probability", "entropy", "annotator"];

#[derive(serde::Serialize)]
struct OutRow<'a> {
    id: i64,
    text: &'a str,
    /// None: no label (an empty CSV cell, JSON null).
    label: Option<&'a str>,
    source: &'a str,
    probability: Option<f32>,
    entropy: Option<f32>,
    /// Who gave the label (the person's labels only).
    annotator: Option<&'a str>,
}

/// One exported row, before it is written in a format.
struct Item<'a> {
    id: i64,
    text: &'a str,
    /// The label's index and name; None: left without a label.
    label: Option<(u32, &'a str)>,
    source: &'a str,
    /// The model's prediction for the row (calibrated).
    pred: Option<&'a crate::store::Prediction>,
    /// Who gave the label, for a person's label.
    annotator: Option<&'a str>,
}

impl Item<'_> {
    /// The model's probability for the label written, when the label is the
    /// model's choice (always for source `model`; for a person's label only
    /// when the model agrees).
    fn label_probability(&self) -> Option<f64> {
        match (self.label, self.pred) {
            (Some((l, _)), Some(p)) if p.label == l => Some(short(p.prob)),
            _ => None,
        }
    }
}

/// An f32 as the f64 with its shortest decimal form (0.9998879, not
/// 0.9998879432678223), as the CSV export writes it.
fn short(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The sink of one export format.
enum Sink {
    /// Ours, CSV (with the spreadsheet check) or JSONL.
    Plain {
        out: Out,
        csv: bool,
        spreadsheet_safe: bool,
    },
    Prodigy(Out),
    LabelStudio {
        out: Out,
        model_version: String,
    },
    Hf {
        out: Out,
        dir: PathBuf,
    },
}

impl Sink {
    fn write(&mut self, it: &Item, report: &mut ExportReport) -> Result<()> {
        let label = it.label.map(|(_, n)| n);
        match self {
            Sink::Plain { out, csv, spreadsheet_safe } => {
                let (mut text, mut label) = (std::borrow::Cow::from(it.text), std::borrow::Cow::from(label.unwrap_or("")));
                let mut annotator = std::borrow::Cow::from(it.annotator.unwrap_or(""));
                if *csv {
                    for cell in [&mut text, &mut label, &mut annotator] {
                        if formula_like(cell) {
                            report.formula_cells += 1;
                            if *spreadsheet_safe {
                                *cell = std::borrow::Cow::Owned(format!("'{cell}"));
                            }
                        }
                    }
                }
                out.write(&OutRow {
                    id: it.id,
                    text: &text,
                    label: it.label.map(|_| label.as_ref()),
                    source: it.source,
                    // As in every format: the probability of the label written, where the model chose it.
                    probability: it.label_probability().map(|p| p as f32),
                    entropy: it.pred.map(|p| p.entropy),
                    annotator: it.annotator.map(|_| annotator.as_ref()),
                })
            }
            Sink::Prodigy(out) => {
                let mut meta = json!({ "id": it.id, "source": it.source });
                if let Some(a) = it.annotator {
                    meta["annotator"] = json!(a);
                }
                if let Some(p) = it.label_probability() {
                    meta["probability"] = json!(p);
                }
                // An answer is a person's (or a seed's): the model's labels and
                // rows left without one are tasks to review, with no answer
                // (an `ignore` would be stored as an annotator's decision).
                let answered = matches!(it.source, "person" | "seed" | "adjudicated");
                let v = match label {
                    Some(l) if answered => json!({ "text": it.text, "label": l, "answer": "accept", "meta": meta }),
                    Some(l) => json!({ "text": it.text, "label": l, "meta": meta }),
                    None => json!({ "text": it.text, "meta": meta }),
                };
                out.write(&v)
            }
            Sink::LabelStudio { out, model_version } => {
                let mut task = json!({ "data": { "text": it.text, "row_id": it.id, "source": it.source } });
                // Label Studio credits every imported annotation to the importing user: who gave it stays in the data.
                if let Some(a) = it.annotator {
                    task["data"]["annotator"] = json!(a);
                }
                if let Some(l) = label {
                    let result = json!([{
                        "from_name": LABEL_STUDIO_FROM,
                        "to_name": LABEL_STUDIO_TO,
                        "type": "choices",
                        "value": { "choices": [l] },
                    }]);
                    if it.source == "model" {
                        task["predictions"] = json!([{
                            "model_version": model_version,
                            "score": it.label_probability(),
                            "result": result,
                        }]);
                    } else {
                        task["annotations"] = json!([{ "result": result }]);
                    }
                }
                out.write(&task)
            }
            Sink::Hf { out, .. } => out.write(&json!({
                "text": it.text,
                "label": label,
                "label_id": it.label.map(|(i, _)| i as i64).unwrap_or(-1),
                "source": it.source,
                "probability": it.label_probability(),
            })),
        }
    }

    fn finish(self, names: &[String], session: &Session) -> Result<()> {
        match self {
            Sink::Plain { out, .. } | Sink::Prodigy(out) | Sink::LabelStudio { out, .. } => out.finish(),
            Sink::Hf { out, dir } => {
                out.finish()?;
                write_all(
                    &dir.join("dataset_info.json"),
                    (serde_json::to_string_pretty(&hf_dataset_info(names, session))? + "\n").as_bytes(),
                )?;
                write_all(&dir.join("README.md"), hf_card(names, session).as_bytes())
            }
        }
    }
}

fn write_all(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut w = AtomicWriter::create(path)?;
    w.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    w.commit()
}

/// The features of the `hf` folder's rows, as `datasets` writes them in a
/// `dataset_info.json` (`Features.from_dict` reads them back).
fn hf_features(names: &[String]) -> serde_json::Value {
    json!({
        "text": { "dtype": "string", "_type": "Value" },
        "label": { "names": names, "num_classes": names.len(), "_type": "ClassLabel" },
        "label_id": { "dtype": "int64", "_type": "Value" },
        "source": { "dtype": "string", "_type": "Value" },
        "probability": { "dtype": "float32", "_type": "Value" },
    })
}

fn hf_dataset_info(names: &[String], session: &Session) -> serde_json::Value {
    json!({
        "description": format!(
            "Exported by labelrest from session '{}': the person's labels where given (source person or seed), \
             the model's elsewhere (source model, with its calibrated probability); label_id -1 and label null: no label.",
            session.name
        ),
        "features": hf_features(names),
    })
}

/// A dataset card whose YAML header gives `load_dataset(FOLDER)` the
/// features (`label` a class label) and the data file. Names are written as
/// JSON strings, which YAML reads as double-quoted scalars.
/// Words of the card that say labelrest wrote it (a later export may replace it).
const HF_CARD_MARK: &str = "Labels exported by labelrest";

fn hf_card(names: &[String], session: &Session) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut y = String::from("---\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n  - name: label\n    dtype:\n      class_label:\n        names:\n");
    for (i, n) in names.iter().enumerate() {
        y.push_str(&format!("          '{i}': {}\n", q(n)));
    }
    y.push_str("  - name: label_id\n    dtype: int64\n  - name: source\n    dtype: string\n  - name: probability\n    dtype: float32\n");
    // No `configs:` block: with one, `datasets` keys its cache on the card
    // alone, and a folder exported again would load as it was the first time.
    y.push_str("---\n\n");
    y.push_str(&format!(
        "# {}\n\n{HF_CARD_MARK}: the person's where given (`source` person or seed), the model's elsewhere \
         (`source` model, with its calibrated `probability`). `label_id` is -1 where a row has no label.\n\n\
         ```python\nfrom datasets import load_dataset\nds = load_dataset(\"path/to/this/folder\")\n```\n",
        crate::data::display_safe(&session.name)
    ));
    y
}

pub fn export(session: &Session, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    if let Some(p) = opts.min_confidence {
        if !(0.0..=1.0).contains(&p) {
            return Err(crate::term::usage(format!("--min-confidence must be between 0 and 1, not {p}")));
        }
    }
    let format = ExportFormat::resolve(out, opts.format).map_err(crate::term::usage)?;
    // One snapshot: labels, overlap rows, predictions and rows as they were
    // together, whatever annotators commit while the export is written.
    let _snapshot = session.snapshot()?;
    let names: Vec<String> = session.label_set()?.into_iter().map(|l| l.name).collect();
    let mut other_data: Vec<String> = Vec::new();
    let mut sink = match format {
        ExportFormat::Csv | ExportFormat::Jsonl => {
            crate::output::check_not_input(out, &[&session.db_path()])?;
            let csv = format == ExportFormat::Csv;
            Sink::Plain { out: Out::create(out, !csv, OUT_ROW_FIELDS)?, csv, spreadsheet_safe: opts.spreadsheet_safe }
        }
        ExportFormat::Prodigy => {
            crate::output::check_not_input(out, &[&session.db_path()])?;
            Sink::Prodigy(Out::create(out, true, &[])?)
        }
        ExportFormat::LabelStudio => {
            crate::output::check_not_input(out, &[&session.db_path()])?;
            let iteration = session.last_iteration()?;
            Sink::LabelStudio { out: Out::create_array(out)?, model_version: format!("labelrest {} iteration {iteration}", session.name) }
        }
        ExportFormat::Hf => {
            if out.exists() && !out.is_dir() {
                bail!(
                    "cannot write {}: it is {}, and --format hf writes a folder (data.jsonl, dataset_info.json, README.md)",
                    out.display(),
                    crate::output::what_is(out)
                );
            }
            // The card is README.md: one that labelrest did not write (a
            // repository's own, say) is not replaced.
            let card = out.join("README.md");
            if let Ok(old) = std::fs::read(&card) {
                if !String::from_utf8_lossy(&old).contains(HF_CARD_MARK) {
                    bail!(
                        "cannot write {}: a README.md that labelrest did not write is there; give --out a folder of its own for the dataset",
                        card.display()
                    );
                }
            }
            std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
            other_data = std::fs::read_dir(out)
                .map(|d| {
                    let mut v: Vec<String> = d
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "data.jsonl" && n != "dataset_info.json" && !n.starts_with('.'))
                        .filter(|n| {
                            let ext = n.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
                            n.contains('.')
                                && matches!(
                                    ext.as_str(),
                                    "csv" | "tsv" | "json" | "jsonl" | "ndjson" | "parquet" | "arrow" | "txt" | "gz" | "zip"
                                )
                        })
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default();
            let data = out.join("data.jsonl");
            crate::output::check_not_input(&data, &[&session.db_path()])?;
            Sink::Hf { out: Out::create(&data, true, &[])?, dir: out.to_path_buf() }
        }
    };
    tracing::debug!("export of session {} as {} to {}", session.name, format.name(), out.display());
    // The person's labels: agreed or adjudicated, and an overlap row's one
    // label while it waits for a second annotator; a disagreement nobody
    // adjudicated yet has none (source `disputed`).
    let resolved = session.resolved()?;
    let mut report = ExportReport {
        learnt_from: resolved.labels.len(),
        labels_used: resolved.labels.iter().map(|l| l.label).collect::<std::collections::HashSet<_>>().len(),
        label_set: names.len(),
        other_data_files: std::mem::take(&mut other_data),
        ..Default::default()
    };
    let mut labels: std::collections::HashMap<i64, (Option<u32>, RowSource, Option<&str>)> = std::collections::HashMap::new();
    for l in resolved.labels.iter().chain(&resolved.waiting) {
        labels.insert(l.row_id, (Some(l.label), RowSource::from(l.source), l.annotator.as_deref()));
    }
    let disputants: Vec<(i64, String)> =
        resolved.disputes.iter().map(|d| (d.row_id, crate::store::Resolved::dispute_annotators(d))).collect();
    for (row, who) in &disputants {
        labels.insert(*row, (None, RowSource::Disputed, Some(who.as_str())));
    }
    let preds = session.predictions()?;
    let mut model_prob_sum = 0f64;
    for row in session.rows()? {
        if row.split != Split::Pool {
            continue;
        }
        let pred = preds.get(&row.id);
        let (label, source) = match labels.get(&row.id) {
            Some((l, s, _)) => (*l, *s),
            None => match pred {
                Some(p) => (Some(p.label), RowSource::Model),
                None => (None, RowSource::None),
            },
        };
        if opts.only_labelled && matches!(source, RowSource::Model | RowSource::None | RowSource::Disputed) {
            continue;
        }
        let (label, source) = match (opts.min_confidence, source) {
            (Some(min), RowSource::Model) if pred.map(|p| p.prob < min).unwrap_or(true) => {
                report.below += 1;
                if opts.drop_below {
                    continue;
                }
                (None, RowSource::None)
            }
            _ => (label, source),
        };
        if source == RowSource::Model {
            model_prob_sum += pred.map(|p| p.prob as f64).unwrap_or(0.0);
        }
        match source {
            RowSource::Person => report.person += 1,
            RowSource::Seed => report.seed += 1,
            RowSource::Adjudicated => report.adjudicated += 1,
            RowSource::Disputed => report.disputed += 1,
            RowSource::Model => report.model += 1,
            RowSource::None => report.none += 1,
        }
        report.rows += 1;
        let annotator = labels.get(&row.id).and_then(|x| x.2);
        let item = Item {
            id: row.id,
            text: &row.text,
            label: label.map(|l| (l, names[l as usize].as_str())),
            source: source.as_str(),
            pred,
            annotator,
        };
        sink.write(&item, &mut report)?;
    }
    sink.finish(&names, session)?;
    report.model_expected = if report.model > 0 { Some(model_prob_sum / report.model as f64) } else { None };
    Ok(report)
}
