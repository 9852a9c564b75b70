//! `labelrest simulate`: the paper's experiment with gold labels standing in
//! for the person. The test split never enters the pool.

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::data::{self, Columns, Format, LabelDef};
use crate::learn::{self, Engine, EngineConfig, SelfTraining, Strategy};
use crate::model::finetune::{self, FinetuneConfig, Mode};
use crate::model::{self, cpu, states, train, Encoder, Matrix};
use crate::worker::tuning::{self, Verdict};

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub train: PathBuf,
    pub test: PathBuf,
    pub name: Option<String>,
    pub strategies: Vec<Strategy>,
    pub batch: usize,
    pub max_labels: usize,
    pub seeds: usize,
    pub zero_shot: bool,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub model: PathBuf,
    pub device: crate::settings::DeviceSetting,
    pub labels_file: Option<PathBuf>,
    pub text_col: String,
    pub label_col: String,
    pub self_training: SelfTraining,
    pub prior_weight: f32,
    /// `EngineConfig::prior_rows`.
    pub prior_rows: usize,
    /// `EngineConfig::zero_shot_odds`.
    pub zero_shot_odds: f32,
    pub pseudo_per_class: usize,
    pub pseudo_weight: f32,
    pub head: crate::model::HeadConfig,
    /// How the model learns during the run (see `Mode`).
    pub mode: Mode,
    pub finetune: crate::store::FinetuneOverrides,
    /// Seconds the simulated person takes per label (when a CPU fine-tune lands).
    pub pace: f64,
    /// Swap every fine-tuned encoder in without the check (to measure the check).
    pub swap_always: bool,
    pub threads: usize,
    pub quiet: bool,
    /// The share of labels the simulated person gets wrong (a random other
    /// label), to measure the review of the person's labels.
    pub noise: f64,
}

impl SimOptions {
    /// The engine's settings for this run; `tunes` from the mode, as the
    /// workstation's `worker::pipeline::engine_config` does.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            self_training: self.self_training,
            prior_weight: self.prior_weight,
            head: self.head.clone(),
            pseudo_per_class: self.pseudo_per_class,
            pseudo_weight: self.pseudo_weight,
            prior_rows: self.prior_rows,
            tunes: self.mode.method().is_some(),
            zero_shot_odds: self.zero_shot_odds,
        }
    }
}

/// How the review of the person's labels did on one simulated session with
/// wrong labels injected (`--noise`): at the end of the run, how many of the
/// wrong labels are among the review's top k, for k a share of the labels,
/// and the held-out accuracy before and after fixing the ones found in the
/// top 5%.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewResult {
    pub dataset: String,
    pub strategy: String,
    pub seed: usize,
    pub labels: usize,
    pub wrong: usize,
    /// (share of the labels, k, wrong labels among the top k).
    pub found: Vec<(f64, usize, usize)>,
    pub accuracy: f64,
    pub accuracy_fixed: f64,
}

/// Shares of the labels at which the review's top k is scored.
pub const REVIEW_AT: [f64; 3] = [0.02, 0.05, 0.10];

/// One point of a learning curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub dataset: String,
    pub strategy: String,
    pub seed: usize,
    pub labels: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub seconds: f64,
    /// Labels the encoder in use was fine-tuned on (0: the base encoder).
    pub encoder_labels: usize,
    /// Seconds the fine-tune that was swapped in at this point took (0: none).
    pub finetune_seconds: f64,
    pub calib: Calib,
    /// Cohen's kappa between this point's model's labels on the pool and
    /// the previous point's (the stopping signal, `learn::stopping`).
    pub agreement: Option<f64>,
    /// Each label's scores on the held-out set at this point.
    pub classes: Vec<ClassScore>,
}

/// One label's held-out scores at one point of a curve (per_class.csv).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScore {
    pub label: String,
    /// Held-out rows with this gold label.
    pub support: usize,
    /// Labels the simulated person had given it (slips included).
    pub given: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Held-out rows predicted as this label.
    pub predicted: usize,
    /// Its held-out rows by the label predicted (the confusion matrix's row).
    pub row: Vec<usize>,
}

/// The label the rows of label `own` were most often mistaken for, by
/// their counts per label predicted (`ClassScore::row`; ties: the first).
fn most_mistaken(row: &[usize], own: usize) -> Option<usize> {
    (0..row.len()).filter(|&p| p != own && row[p] > 0).max_by_key(|&p| (row[p], std::cmp::Reverse(p)))
}

/// Each label's scores from an iteration's held-out metrics.
fn class_scores(m: &learn::Metrics, names: &[String], pairs: &[(usize, u32)]) -> Vec<ClassScore> {
    let k = names.len();
    if m.confusion.len() != k * k {
        return Vec::new();
    }
    (0..k)
        .map(|c| {
            let row = &m.confusion[c * k..(c + 1) * k];
            let (precision, recall, f1) =
                m.per_class.iter().find(|x| x.0 as usize == c).map(|x| (x.1, x.2, x.3)).unwrap_or((0.0, 0.0, 0.0));
            ClassScore {
                label: names[c].clone(),
                support: row.iter().sum(),
                given: pairs.iter().filter(|p| p.1 as usize == c).count(),
                precision,
                recall,
                f1,
                predicted: (0..k).map(|g| m.confusion[g * k + c]).sum(),
                row: row.to_vec(),
            }
        })
        .collect()
}

/// How far the probabilities can be trusted at one point of a curve.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calib {
    /// Held-out expected calibration error (15 bins), calibrated.
    pub ece: f64,
    /// The same before calibration (the model's own probabilities).
    pub ece_raw: f64,
    /// The same at the temperature fitted on the held-out split itself:
    /// the best a temperature can do there (a yardstick, never used).
    pub ece_best: f64,
    /// The calibration temperature.
    pub temperature: f64,
    /// True accuracy of the model's labels on the rows without a person's label.
    pub pool_acc: f64,
    /// The estimate of it from the calibrated probabilities (what the panel shows).
    pub pool_est: f64,
    /// The zero-shot head's share of the model (`learn::Engine::zero_shot_share`).
    pub zero_shot_share: f64,
    /// Held-out accuracy of the trained head alone (without the mix).
    pub trained_accuracy: f64,
}

struct Split {
    texts: Vec<String>,
    labels: Vec<String>,
    /// Where each record starts in its file.
    lines: Vec<u64>,
}

fn read_split(path: &Path, cols: &Columns) -> Result<Split> {
    let f = Format::detect(path)?;
    let mut s = Split { texts: Vec::new(), labels: Vec::new(), lines: Vec::new() };
    data::read_records(path, f, cols, |r| {
        let l = r.label.unwrap_or_default();
        if l.is_empty() {
            return Err(data::DataError::new(path, Some(r.line), None, "a row without a gold label"));
        }
        s.texts.push(r.text);
        s.labels.push(l);
        s.lines.push(r.line);
        Ok(())
    })?;
    Ok(s)
}

/// Embeds with a cache in `dir` keyed by the model and the texts.
fn embed_cached(dir: &Path, encoder: &Encoder, texts: &[&str], quiet: bool) -> Result<Matrix> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(encoder.hash.as_bytes());
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    let key: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(dir)?;
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(texts.len() as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("embedding");
    let cancel = AtomicBool::new(false);
    let (m, _) = model::embed_cached(dir, &key, encoder, texts, &mut |_, done, _| bar.set_position(done as u64), &cancel)?;
    bar.finish_and_clear();
    Ok(m)
}

pub fn run(opts: &SimOptions) -> Result<Vec<Point>> {
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let cols = Columns::new(&opts.text_col, Some(&opts.label_col));
    let train = read_split(&opts.train, &cols)?;
    let test = read_split(&opts.test, &cols)?;
    // (A train file in the current folder: that folder's name.)
    let dataset = opts.name.clone().unwrap_or_else(|| {
        let train = opts.train.canonicalize().unwrap_or_else(|_| opts.train.clone());
        train.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "data".into())
    });
    // The label set: the labels file's, else every label of train then test.
    let mut labels: Vec<LabelDef> = match &opts.labels_file {
        Some(f) => data::read_labels_file(f)?,
        None => Vec::new(),
    };
    let rows = |s: &Split, path: &Path| s.labels.iter().zip(&s.lines).map(|(l, &n)| (l.clone(), path.to_path_buf(), n)).collect::<Vec<_>>();
    for (l, path, line) in rows(&train, &opts.train).into_iter().chain(rows(&test, &opts.test)) {
        if !labels.iter().any(|x| x.name == l) {
            if let Some(f) = &opts.labels_file {
                bail!("{}:{line}: label '{}' is not in {}", path.display(), data::display_safe(&l), f.display());
            }
            labels.push(LabelDef { name: l.clone(), description: None });
        }
    }
    // A test label the pool never has: none of its rows can be labelled,
    // so its test rows all count as errors; said, as it may be a typo.
    if !opts.quiet {
        let pool: std::collections::HashSet<&String> = train.labels.iter().collect();
        let mut told = std::collections::HashSet::new();
        for (l, line) in test.labels.iter().zip(&test.lines) {
            if !pool.contains(l) && told.insert(l) {
                let n = test.labels.iter().filter(|x| *x == l).count();
                eprintln!(
                    "note: {}:{line}: label '{}' never occurs in {}: its {n} test rows cannot be learnt and count as errors",
                    opts.test.display(),
                    data::display_safe(l),
                    opts.train.display()
                );
            }
        }
    }
    let k = labels.len();
    let index: std::collections::HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.name.as_str(), i as u32)).collect();
    let train_y: Vec<u32> = train.labels.iter().map(|l| index[l.as_str()]).collect();
    let test_y: Vec<u32> = test.labels.iter().map(|l| index[l.as_str()]).collect();

    let dev = model::device(opts.device)?;
    let encoder = Encoder::load(&opts.model, &dev)?;
    let texts: Vec<&str> = train.texts.iter().chain(test.texts.iter()).map(|s| s.as_str()).collect();
    let t = Instant::now();
    let emb = embed_cached(&opts.cache, &encoder, &texts, opts.quiet)?;
    if !opts.quiet {
        eprintln!(
            "{dataset}: {} train + {} test rows embedded in {:.1}s, {k} labels",
            train.texts.len(),
            test.texts.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    let prompt_refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let label_emb = encoder.embed(&prompt_refs, |_, _| {})?;
    let n_train = train.texts.len();
    let cfg = opts.engine_config();
    let engine = Arc::new(Engine::new(Arc::new(emb), (0..n_train).collect(), (n_train..texts.len()).collect(), test_y, label_emb, k, cfg)?);

    // Fine-tuning during the run: the base encoder's frozen layers run once
    // over every row; each fine-tune then trains and runs only the top ones.
    let method = opts.mode.method();
    let gpu = !matches!(dev, candle_core::Device::Cpu);
    let tuning = match method {
        None => None,
        Some(m) if gpu => {
            let mut fcfg = FinetuneConfig::for_mode(m).with(&opts.finetune);
            fcfg.seed = 0;
            let all: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
            Some(Tuning::Gpu { encoder, texts: all, prompts: prompts.clone(), method: m, cfg: fcfg, tmp: opts.out.join("encoder-tmp") })
        }
        Some(m) => {
            let mut fcfg = FinetuneConfig::for_mode(m).with(&opts.finetune);
            fcfg.seed = 0;
            let base = cpu::Bert::load(&opts.model)?;
            let from = base.dims.layers - fcfg.train_layers.clamp(1, base.dims.layers);
            let ids = encoder.tokenize(&texts)?;
            let t = Instant::now();
            let bar = if opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(texts.len() as u64) };
            bar.set_message("frozen layers");
            let states = states::States::compute(&base, &ids, from, opts.threads, &mut |d, _| bar.set_position(d as u64));
            bar.finish_and_clear();
            if !opts.quiet {
                eprintln!("{dataset}: states of the {from} frozen layers in {:.1}s", t.elapsed().as_secs_f64());
            }
            let prompt_ids = encoder.tokenize(&prompt_refs)?;
            Some(Tuning::Cpu { base, states, prompt_ids, method: m, cfg: fcfg })
        }
    };

    let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let mut points = Vec::new();
    let mut reviews = Vec::new();
    // (strategy, seed, labels, the held-out rows' scores) at each run's end.
    let mut finals: Vec<(String, usize, usize, learn::Scores)> = Vec::new();
    for &strategy in &opts.strategies {
        for seed in 0..opts.seeds {
            let (curve, review, last) = run_one(&engine, &train_y, strategy, seed as u64, opts, tuning.as_ref(), gpu, &dataset, &names)?;
            if let Some(s) = last {
                let at = curve.last().map(|c| c.labels).unwrap_or(0);
                finals.push((strategy.name().to_string(), seed, at, s));
            }
            if let Some(mut r) = review {
                r.dataset = dataset.clone();
                r.strategy = strategy.name().into();
                r.seed = seed;
                if !opts.quiet {
                    let f: Vec<String> = r.found.iter().map(|(a, k, n)| format!("top {:.0}% ({k}): {n}", a * 100.0)).collect();
                    eprintln!(
                        "{dataset} seed {seed}: {} wrong labels of {}; review found {}; accuracy {:.3} -> {:.3} fixing the top 5%",
                        r.wrong,
                        r.labels,
                        f.join(", "),
                        r.accuracy,
                        r.accuracy_fixed
                    );
                }
                reviews.push(r);
            }
            for c in curve {
                points.push(Point {
                    dataset: dataset.clone(),
                    strategy: strategy.name().into(),
                    seed,
                    labels: c.labels,
                    accuracy: c.accuracy,
                    macro_f1: c.macro_f1,
                    seconds: c.seconds,
                    encoder_labels: c.encoder_labels,
                    finetune_seconds: c.finetune_seconds,
                    calib: c.calib,
                    agreement: c.agreement,
                    classes: c.classes,
                });
            }
            if !opts.quiet {
                if let Some(p) = points.last() {
                    eprintln!(
                        "{dataset} {} seed {seed}: {} labels, accuracy {:.3}, macro-F1 {:.3}",
                        strategy.name(),
                        p.labels,
                        p.accuracy,
                        p.macro_f1
                    );
                }
            }
        }
    }
    write_outputs(&opts.out, &points)?;
    write_predictions(&opts.out, &dataset, &test, &names, &finals)?;
    if !reviews.is_empty() {
        write_review(&opts.out, &reviews)?;
    }
    Ok(points)
}

/// predictions.csv: every held-out row's gold label beside the last
/// model's label and calibrated probability, for each run (the errors to read).
fn write_predictions(
    out: &Path,
    dataset: &str,
    test: &Split,
    names: &[String],
    finals: &[(String, usize, usize, learn::Scores)],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("predictions.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record(["dataset", "strategy", "seed", "labels", "row", "text", "label", "predicted", "probability"])?;
    for (strategy, seed, labels, s) in finals {
        for (i, (text, gold)) in test.texts.iter().zip(&test.labels).enumerate() {
            let Some(&p) = s.pred.get(i) else { break };
            w.write_record([
                dataset,
                strategy,
                &seed.to_string(),
                &labels.to_string(),
                &i.to_string(),
                text,
                gold,
                &names[p as usize],
                &format!("{:.4}", s.prob[i]),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// review.csv and review.md: how the review found the injected wrong labels.
pub fn write_review(out: &Path, reviews: &[ReviewResult]) -> Result<()> {
    let mut w = csv::Writer::from_path(out.join("review.csv"))?;
    w.write_record(["dataset", "strategy", "seed", "labels", "wrong", "share", "k", "found", "accuracy", "accuracy_fixed"])?;
    for r in reviews {
        for &(a, k, n) in &r.found {
            w.write_record([
                r.dataset.clone(),
                r.strategy.clone(),
                r.seed.to_string(),
                r.labels.to_string(),
                r.wrong.to_string(),
                format!("{a}"),
                k.to_string(),
                n.to_string(),
                format!("{:.4}", r.accuracy),
                format!("{:.4}", r.accuracy_fixed),
            ])?;
        }
    }
    w.flush()?;
    let mut md = String::from("| dataset | strategy | labels | wrong |");
    for a in REVIEW_AT {
        md.push_str(&format!(" found in top {:.0}% |", a * 100.0));
    }
    md.push_str(" accuracy | fixing the top 5% |\n|---|---|---|---|");
    for _ in REVIEW_AT {
        md.push_str("---|");
    }
    md.push_str("---|---|\n");
    let m = |v: Vec<f64>| mean_sd(&v);
    // One row a dataset and strategy (in the order run), over its seeds.
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in reviews {
        if !groups.contains(&(r.dataset.as_str(), r.strategy.as_str())) {
            groups.push((r.dataset.as_str(), r.strategy.as_str()));
        }
    }
    for (dataset, strategy) in groups {
        let runs: Vec<&ReviewResult> = reviews.iter().filter(|r| r.dataset == dataset && r.strategy == strategy).collect();
        let (labels, _) = m(runs.iter().map(|r| r.labels as f64).collect());
        let (wrong, _) = m(runs.iter().map(|r| r.wrong as f64).collect());
        md.push_str(&format!("| {dataset} | {strategy} | {labels:.0} | {wrong:.1} |"));
        for (j, _) in REVIEW_AT.iter().enumerate() {
            let (k, _) = m(runs.iter().map(|r| r.found[j].1 as f64).collect());
            let found: usize = runs.iter().map(|r| r.found[j].2).sum();
            let total: usize = runs.iter().map(|r| r.wrong).sum();
            md.push_str(&format!(" {found} of {total} (k = {k:.0}) |"));
        }
        let (a, asd) = m(runs.iter().map(|r| r.accuracy).collect());
        let (b, bsd) = m(runs.iter().map(|r| r.accuracy_fixed).collect());
        md.push_str(&format!(" {a:.3} ± {asd:.3} | {b:.3} ± {bsd:.3} |\n"));
    }
    std::fs::write(out.join("review.md"), md)?;
    Ok(())
}

/// What a fine-tune during a simulated session needs.
enum Tuning {
    /// Our CPU trainer: every row's states (train then test) where the
    /// trained layers start, computed once.
    Cpu { base: cpu::Bert, states: states::States, prompt_ids: Vec<Vec<u32>>, method: Mode, cfg: FinetuneConfig },
    /// candle on a GPU: the fine-tuned encoder embeds every row again.
    Gpu { encoder: Encoder, texts: Vec<String>, prompts: Vec<String>, method: Mode, cfg: FinetuneConfig, tmp: PathBuf },
}

impl Tuning {
    /// Fine-tunes on the labels so far and builds the engine of the tuned
    /// encoder (every row and the label prompts embedded again).
    fn engine(
        &self,
        engine: &Engine,
        pairs: &[(usize, u32)],
        head: &crate::model::Head,
        seed: u64,
        threads: usize,
        model: &Path,
    ) -> Result<Engine> {
        let rows: Vec<usize> = pairs.iter().map(|&(i, _)| engine.pool_rows[i]).collect();
        let y: Vec<u32> = pairs.iter().map(|&(_, l)| l).collect();
        let cancel = AtomicBool::new(false);
        let (emb, label_emb, dim) = match self {
            Tuning::Cpu { base, states, prompt_ids, method, cfg } => {
                let mut cfg = cfg.clone();
                cfg.seed = seed;
                let inp = train::Inputs::from_states(states, &rows);
                let (tuned, _) = train::finetune_from(base, inp, &y, head, *method, &cfg, threads, &mut |_, _, _| {}, &cancel)?;
                let emb = states.embed_all(&tuned, threads, &mut |_, _| {}, &cancel)?;
                let seqs: Vec<&[u32]> = prompt_ids.iter().map(|s| s.as_slice()).collect();
                (emb, tuned.embed(&seqs, threads), tuned.dims.hidden)
            }
            Tuning::Gpu { encoder, texts, prompts, method, cfg, tmp } => {
                let mut cfg = cfg.clone();
                cfg.seed = seed;
                let lt: Vec<&str> = rows.iter().map(|&r| texts[r].as_str()).collect();
                let vars = finetune::finetune(model, &encoder.device, encoder, &lt, &y, head, *method, &cfg, &mut |_, _, _| {}, &cancel)?;
                crate::model::bert::save_model_dir(&vars, model, tmp)?;
                let tuned = Encoder::load(tmp, &encoder.device)?;
                let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
                let emb = tuned.embed(&refs, |_, _| {})?;
                let pr: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
                let le = tuned.embed(&pr, |_, _| {})?;
                let _ = std::fs::remove_dir_all(tmp);
                (emb, le, tuned.dim)
            }
        };
        Engine::new(
            Arc::new(Matrix::owned(emb, dim)),
            engine.pool_rows.clone(),
            engine.test_rows.clone(),
            engine.test_gold.clone(),
            label_emb,
            engine.k,
            engine.cfg.clone(),
        )
    }
}

/// One point of a simulated session's curve.
struct CurvePoint {
    labels: usize,
    accuracy: f64,
    macro_f1: f64,
    seconds: f64,
    encoder_labels: usize,
    finetune_seconds: f64,
    calib: Calib,
    agreement: Option<f64>,
    classes: Vec<ClassScore>,
}

/// The calibration measures of an iteration: held-out ECE before and after
/// calibration, and the pool's true accuracy beside its estimate.
fn calib_of(engine: &Engine, it: &learn::Iteration, gold: &[u32], pairs: &[(usize, u32)]) -> Result<Calib> {
    use learn::calibration::{ece, Estimate, ECE_BINS};
    let mut c = Calib {
        temperature: it.head.temperature as f64,
        zero_shot_share: it.zero_shot_share as f64,
        trained_accuracy: it.trained_accuracy.unwrap_or_default(),
        ..Default::default()
    };
    if let Some((raw, cal)) = engine.test_probs(&it.head)? {
        let mut best = raw.clone();
        learn::calibration::apply(&mut best, engine.k, learn::calibration::fit_temperature(&raw, engine.k, &engine.test_gold));
        for (probs, out) in [(raw, &mut c.ece_raw), (cal, &mut c.ece), (best, &mut c.ece_best)] {
            let s = learn::Scores::from_probs(probs, engine.k);
            let right: Vec<bool> = s.pred.iter().zip(&engine.test_gold).map(|(a, b)| a == b).collect();
            *out = ece(&s.prob, &right, ECE_BINS);
        }
    }
    let mut person = vec![false; gold.len()];
    for &(i, _) in pairs {
        person[i] = true;
    }
    let est = Estimate::of(&it.scores.prob, |i| !person[i]);
    c.pool_est = est.accuracy;
    let (right, n) =
        (0..gold.len()).filter(|&i| !person[i]).fold((0usize, 0usize), |(r, n), i| (r + (it.scores.pred[i] == gold[i]) as usize, n + 1));
    c.pool_acc = if n == 0 { 0.0 } else { right as f64 / n as f64 };
    Ok(c)
}

/// One simulated session. With fine-tuning, the schedule is the
/// workstation's: from `tuning::first_at` labels on, a fine-tune starts after a batch when
/// none is running and a batch arrived since the last one started; on the
/// CPU its encoder is used from the batch boundary at which the person
/// (labelling a row every `pace` seconds) would have it, at least one batch
/// later; on a GPU at once.
fn run_one(
    engine0: &Arc<Engine>,
    gold: &[u32],
    strategy: Strategy,
    seed: u64,
    opts: &SimOptions,
    tuning: Option<&Tuning>,
    gpu: bool,
    dataset: &str,
    names: &[String],
) -> Result<(Vec<CurvePoint>, Option<ReviewResult>, Option<learn::Scores>)> {
    let mut engine = engine0.clone();
    // The simulated person's slips (--noise): a random other label.
    let mut slips = {
        use rand::SeedableRng;
        rand_chacha::ChaCha8Rng::seed_from_u64(0x51195 ^ seed)
    };
    let mut wrong: std::collections::HashSet<usize> = Default::default();
    let n = engine.pool_len();
    // Each seed sees a different random 90% of the pool (the rest is never
    // offered), so that seeds differ even where the strategy is deterministic.
    let mut labelled = vec![false; n];
    if opts.seeds > 1 {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed ^ seed);
        for l in labelled.iter_mut() {
            *l = rng.gen_bool(0.1);
        }
    }
    let mut pairs: Vec<(usize, u32)> = Vec::new();
    let mut out = Vec::new();
    let mut prev_pred: Option<Vec<u32>> = None;
    let mut ranking: Vec<u32> = if opts.zero_shot {
        let t = Instant::now();
        let it = engine.iterate(&[])?;
        let m = it.test.clone().unwrap_or_default();
        out.push(CurvePoint {
            labels: 0,
            accuracy: m.accuracy,
            macro_f1: m.macro_f1,
            seconds: t.elapsed().as_secs_f64(),
            encoder_labels: 0,
            finetune_seconds: 0.0,
            calib: calib_of(&engine, &it, gold, &[])?,
            agreement: None,
            classes: class_scores(&m, names, &[]),
        });
        prev_pred = Some(it.scores.pred.clone());
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        learn::rank(&it.raw, strategy, &eligible, Some((&engine.emb, &engine.pool_rows)), opts.batch, seed)
    } else {
        // Without zero-shot the first batch is random.
        let s = learn::Scores::from_probs(vec![1.0 / 2.0; n * 2], 2);
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        learn::rank(&s, Strategy::Random, &eligible, None, opts.batch, seed)
    };
    let mut iteration = 0u64;
    let mut encoder_labels = 0usize;
    let mut last_head = engine.zero_shot_head();
    let mut last_it: Option<learn::Iteration> = None;
    // A fine-tune in flight or waiting to be checked: (batch at which it is
    // ready, its engine, the labels it learnt from, seconds).
    // A fine-tune waiting for its verdict: ready at which batch, its
    // engine, the labels it learnt from, its seconds, and whether it was
    // doubted (worse on fewer than `CHECK_MORE` unseen labels: it then
    // waits for that many, as in the workstation).
    let mut pending: Option<(u64, Arc<Engine>, Vec<(usize, u32)>, f64, bool)> = None;
    let mut last_start = 0usize;
    // Each label's honest probabilities (calibration, `learn::Honesty`).
    let mut honest: std::collections::HashMap<usize, Vec<f32>> = Default::default();
    while pairs.len() < opts.max_labels.min(n) {
        let take = opts.batch.min(opts.max_labels - pairs.len());
        let mut added = 0;
        for &i in &ranking {
            if added == take {
                break;
            }
            let i = i as usize;
            if !labelled[i] {
                labelled[i] = true;
                let mut l = gold[i];
                if opts.noise > 0.0 && engine0.k > 1 {
                    use rand::Rng;
                    if slips.gen_bool(opts.noise.min(1.0)) {
                        l = (gold[i] + slips.gen_range(1..engine0.k as u32)) % engine0.k as u32;
                        wrong.insert(i);
                    }
                }
                pairs.push((i, l));
                added += 1;
            }
        }
        if added == 0 {
            break;
        }
        iteration += 1;
        let mut ft_secs = 0.0;
        // A fine-tune that is ready now is judged as the workstation judges
        // it (on the labels it has not seen) and replaces the encoder if it
        // does as well.
        if let Some((ready, _, _, _, _)) = &pending {
            if *ready <= iteration {
                let (ready, e, seen, secs, doubted) = pending.take().expect("pending");
                let unseen = pairs.len() - seen.len();
                let verdict = if opts.swap_always {
                    Verdict::Swap { new: 0.0, old: 0.0, on: 0 }
                } else if doubted && unseen < tuning::CHECK_MORE {
                    Verdict::Wait { have: unseen }
                } else {
                    tuning::judge(&engine, &e, &seen, &pairs)?
                };
                match verdict {
                    Verdict::Swap { .. } => {
                        engine = e;
                        encoder_labels = seen.len();
                        ft_secs = secs;
                    }
                    Verdict::Keep { new, old, .. } => {
                        if !opts.quiet {
                            eprintln!("{dataset} seed {seed}: fine-tune on {} labels kept out ({new:.2} vs {old:.2})", seen.len());
                        }
                    }
                    Verdict::Wait { .. } => pending = Some((ready, e, seen, secs, doubted)),
                    Verdict::Doubt { .. } => pending = Some((ready, e, seen, secs, true)),
                }
            }
        }
        // Start one when none runs and a batch came since the last start
        // (not after the last batch: nothing would use it).
        if let Some(tu) = tuning {
            if pairs.len() < opts.max_labels.min(n)
                && pending.is_none()
                && pairs.len() >= tuning::first_at(engine0.k, &opts.finetune)
                && pairs.len() >= last_start + opts.batch
            {
                let t = Instant::now();
                let e = Arc::new(tu.engine(engine0, &pairs, &last_head, seed.wrapping_mul(7919) ^ iteration, opts.threads, &opts.model)?);
                let secs = t.elapsed().as_secs_f64();
                last_start = pairs.len();
                let batch_secs = opts.pace * opts.batch as f64;
                let lag = if gpu { 0 } else { ((secs / batch_secs).ceil() as u64).max(1) };
                if !opts.quiet {
                    eprintln!("{dataset} seed {seed}: fine-tuned on {} labels in {secs:.1}s (ready {lag} batch(es) later)", pairs.len());
                }
                // Ready at the batch boundary `lag` batches on (a GPU's at once;
                // it is then checked on the next batch's labels).
                pending = Some((iteration + lag, e, pairs.clone(), secs, false));
            }
        }
        let t = Instant::now();
        // The encoder in use learnt from the first `encoder_labels` labels.
        let honesty = learn::Honesty {
            seen: (0..pairs.len()).map(|j| j < encoder_labels).collect(),
            earlier: pairs.iter().map(|p| honest.get(&p.0).cloned()).collect(),
        };
        let it = engine.iterate_with(&pairs, &honesty)?;
        for (p, h) in pairs.iter().zip(&it.honest) {
            if let Some(h) = h {
                honest.insert(p.0, h.clone());
            }
        }
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        ranking = learn::rank(
            &it.raw,
            strategy,
            &eligible,
            Some((&engine.emb, &engine.pool_rows)),
            opts.batch,
            seed.wrapping_mul(1_000_003) ^ iteration,
        );
        let m = it.test.clone().unwrap_or_default();
        out.push(CurvePoint {
            labels: pairs.len(),
            accuracy: m.accuracy,
            macro_f1: m.macro_f1,
            seconds: t.elapsed().as_secs_f64(),
            encoder_labels,
            finetune_seconds: ft_secs,
            calib: calib_of(&engine, &it, gold, &pairs)?,
            agreement: prev_pred.as_ref().map(|p| learn::stopping::kappa(p, &it.scores.pred, engine.k)),
            classes: class_scores(&m, names, &pairs),
        });
        prev_pred = Some(it.scores.pred.clone());
        last_head = it.head.clone();
        last_it = Some(it);
    }
    // The review at the end: where the wrong labels rank among the disputed ones.
    let review = match (&last_it, opts.noise > 0.0) {
        (Some(it), true) => {
            let ranked: Vec<usize> = it.suspects.iter().map(|x| pairs[x.at].0).collect();
            let found = REVIEW_AT
                .iter()
                .map(|&a| {
                    let k = ((a * pairs.len() as f64).round() as usize).max(1);
                    (a, k, ranked.iter().take(k).filter(|i| wrong.contains(i)).count())
                })
                .collect();
            // Fix what the top 5% found, train again, score again.
            let k5 = ((0.05 * pairs.len() as f64).round() as usize).max(1);
            let fix: std::collections::HashSet<usize> = ranked.iter().take(k5).copied().filter(|i| wrong.contains(i)).collect();
            let fixed: Vec<(usize, u32)> = pairs.iter().map(|&(i, l)| if fix.contains(&i) { (i, gold[i]) } else { (i, l) }).collect();
            let accuracy_fixed = engine.iterate(&fixed)?.test.map(|m| m.accuracy).unwrap_or_default();
            Some(ReviewResult {
                dataset: String::new(),
                strategy: String::new(),
                seed: 0,
                labels: pairs.len(),
                wrong: wrong.len(),
                found,
                accuracy: it.test.as_ref().map(|m| m.accuracy).unwrap_or_default(),
                accuracy_fixed,
            })
        }
        _ => None,
    };
    // The held-out rows under the last model (predictions.csv).
    let last = match &last_it {
        Some(it) => engine.predict_test(&it.head)?,
        None => None,
    };
    Ok((out, review, last))
}

pub fn write_outputs(out: &Path, points: &[Point]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = csv::Writer::from_path(out.join("curves.csv"))?;
    w.write_record([
        "dataset",
        "strategy",
        "seed",
        "labels",
        "accuracy",
        "macro_f1",
        "seconds",
        "encoder_labels",
        "finetune_seconds",
        "ece",
        "ece_raw",
        "ece_best",
        "temperature",
        "pool_accuracy",
        "pool_estimate",
        "agreement",
        "zero_shot_share",
        "trained_accuracy",
    ])?;
    for p in points {
        w.write_record([
            p.dataset.clone(),
            p.strategy.clone(),
            p.seed.to_string(),
            p.labels.to_string(),
            format!("{:.4}", p.accuracy),
            format!("{:.4}", p.macro_f1),
            format!("{:.4}", p.seconds),
            p.encoder_labels.to_string(),
            format!("{:.2}", p.finetune_seconds),
            format!("{:.4}", p.calib.ece),
            format!("{:.4}", p.calib.ece_raw),
            format!("{:.4}", p.calib.ece_best),
            format!("{:.3}", p.calib.temperature),
            format!("{:.4}", p.calib.pool_acc),
            format!("{:.4}", p.calib.pool_est),
            p.agreement.map(|a| format!("{a:.5}")).unwrap_or_default(),
            format!("{:.3}", p.calib.zero_shot_share),
            format!("{:.4}", p.calib.trained_accuracy),
        ])?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(out.join("per_class.csv"))?;
    w.write_record([
        "dataset",
        "strategy",
        "seed",
        "labels",
        "label",
        "support",
        "given",
        "precision",
        "recall",
        "f1",
        "predicted",
        "mistaken_for",
        "mistaken_count",
    ])?;
    for p in points {
        for (i, c) in p.classes.iter().enumerate() {
            let mistaken = most_mistaken(&c.row, i);
            w.write_record([
                p.dataset.clone(),
                p.strategy.clone(),
                p.seed.to_string(),
                p.labels.to_string(),
                c.label.clone(),
                c.support.to_string(),
                c.given.to_string(),
                format!("{:.4}", c.precision),
                format!("{:.4}", c.recall),
                format!("{:.4}", c.f1),
                c.predicted.to_string(),
                mistaken.map(|t| p.classes[t].label.clone()).unwrap_or_default(),
                mistaken.map(|t| c.row[t].to_string()).unwrap_or_default(),
            ])?;
        }
    }
    w.flush()?;
    let table = markdown_table(points, &[0, 10, 50, 100, 150])
        + "\n"
        + &calibration_table(points, &[50, 100, 150])
        + "\n"
        + &stopping_table(points, STOP_CHOICES)
        + "\n"
        + &class_table(points);
    std::fs::File::create(out.join("table.md"))?.write_all(table.as_bytes())?;
    let plotted: Vec<crate::plot::Point> = points
        .iter()
        .map(|p| crate::plot::Point { dataset: &p.dataset, strategy: &p.strategy, labels: p.labels, accuracy: p.accuracy })
        .collect();
    crate::plot::curves(&plotted, &out.join("curves.svg"), &out.join("curves.png"))?;
    Ok(())
}

/// The (dataset, strategy) pairs of the points, in their first order.
fn runs_of(points: &[Point]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in points {
        let k = (p.dataset.clone(), p.strategy.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// Mean and standard deviation over seeds.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (m, var.sqrt())
}

/// A markdown table of accuracy and macro-F1 (mean ± sd over seeds) at the given label counts.
pub fn markdown_table(points: &[Point], at: &[usize]) -> String {
    let keys = runs_of(points);
    let mut at: Vec<usize> = at.iter().copied().filter(|a| points.iter().any(|p| p.labels == *a)).collect();
    // And where the runs ended, when that is not among them.
    if let Some(end) = points.iter().map(|p| p.labels).max() {
        if !at.contains(&end) {
            at.push(end);
        }
    }
    let mut s = String::new();
    s.push_str("| dataset | strategy |");
    for a in &at {
        s.push_str(&format!(" acc@{a} | F1@{a} |"));
    }
    s.push_str(" worst vs zero-shot | s/iter |\n|---|---|");
    for _ in &at {
        s.push_str("---|---|");
    }
    s.push_str("---|---|\n");
    for (d, st) in keys {
        s.push_str(&format!("| {d} | {st} |"));
        for a in &at {
            let acc: Vec<f64> =
                points.iter().filter(|p| p.dataset == d && p.strategy == st && p.labels == *a).map(|p| p.accuracy).collect();
            let f1: Vec<f64> = points.iter().filter(|p| p.dataset == d && p.strategy == st && p.labels == *a).map(|p| p.macro_f1).collect();
            if acc.is_empty() {
                s.push_str(" - | - |");
                continue;
            }
            let (am, asd) = mean_sd(&acc);
            let (fm, fsd) = mean_sd(&f1);
            s.push_str(&format!(" {am:.3} ± {asd:.3} | {fm:.3} ± {fsd:.3} |"));
        }
        let secs: Vec<f64> = points.iter().filter(|p| p.dataset == d && p.strategy == st && p.labels > 0).map(|p| p.seconds).collect();
        // The worst point after any batch against the zero-shot start, per seed.
        let seeds: Vec<usize> = points.iter().filter(|p| p.dataset == d && p.strategy == st).map(|p| p.seed).collect();
        let mut drops = Vec::new();
        for seed in seeds.iter().copied().collect::<std::collections::BTreeSet<_>>() {
            let run: Vec<&Point> = points.iter().filter(|p| p.dataset == d && p.strategy == st && p.seed == seed).collect();
            if let Some(z) = run.iter().find(|p| p.labels == 0) {
                let worst = run.iter().filter(|p| p.labels > 0).map(|p| p.accuracy).fold(f64::INFINITY, f64::min);
                if worst.is_finite() {
                    drops.push(worst - z.accuracy);
                }
            }
        }
        let floor = if drops.is_empty() { "-".to_string() } else { format!("{:+.3}", drops.iter().cloned().fold(f64::INFINITY, f64::min)) };
        s.push_str(&format!(" {floor} | {:.3} |\n", mean_sd(&secs).0));
    }
    s
}

/// Each label at the last point of each run (the most labels every seed
/// reached): held-out support, labels given, precision, recall and F1
/// (mean ± sd over seeds), and the label its rows were most often
/// mistaken for (over all seeds; the count is a seed's mean); the weakest
/// label first.
pub fn class_table(points: &[Point]) -> String {
    let keys = runs_of(points);
    let mut s = String::new();
    for (d, st) in keys {
        let runs: Vec<&Point> = points.iter().filter(|p| p.dataset == d && p.strategy == st).collect();
        let seeds: std::collections::BTreeSet<usize> = runs.iter().map(|p| p.seed).collect();
        // The most labels every seed reached.
        let at = seeds.iter().map(|&seed| runs.iter().filter(|p| p.seed == seed).map(|p| p.labels).max().unwrap_or(0)).min().unwrap_or(0);
        let last: Vec<&Point> = runs.iter().copied().filter(|p| p.labels == at && !p.classes.is_empty()).collect();
        let Some(first) = last.first() else { continue };
        // One block (no blank line) per run, so that docs can take it whole.
        s.push_str(&format!(
            "| label ({d}, {st}, {at} labels, {} seeds) | test rows | labels given | precision | recall | F1 | most often mistaken for |\n|---|---|---|---|---|---|---|\n",
            last.len()
        ));
        let of = |c: usize, f: fn(&ClassScore) -> f64| mean_sd(&last.iter().filter_map(|p| p.classes.get(c)).map(f).collect::<Vec<_>>());
        // The weakest first (by mean F1), labels with no held-out row last.
        let mut order: Vec<usize> = (0..first.classes.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |c: usize| (first.classes[c].support == 0, of(c, |x| x.f1).0);
            key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal)
        });
        for c in order {
            let class = &first.classes[c];
            let of = |f: fn(&ClassScore) -> f64| of(c, f);
            let (gm, _) = of(|x| x.given as f64);
            let (pm, psd) = of(|x| x.precision);
            let (rm, rsd) = of(|x| x.recall);
            let (fm, fsd) = of(|x| x.f1);
            // Its rows by the label predicted, summed over seeds.
            let mut to = vec![0usize; first.classes.len()];
            for p in &last {
                for (t, n) in to.iter_mut().zip(p.classes.get(c).map(|x| x.row.as_slice()).unwrap_or(&[])) {
                    *t += n;
                }
            }
            let worst = most_mistaken(&to, c)
                .map(|t| format!("{} ({:.1} rows)", first.classes[t].label, to[t] as f64 / last.len() as f64))
                .unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "| {} | {} | {gm:.1} | {pm:.3} ± {psd:.3} | {rm:.3} ± {rsd:.3} | {fm:.3} ± {fsd:.3} | {worst} |\n",
                class.label, class.support
            ));
        }
        s.push('\n');
    }
    s
}

/// Calibration at some label counts: held-out ECE after (and before)
/// calibration, and the estimated accuracy of the model's labels on the
/// rest of the pool beside the true one; means over seeds.
pub fn calibration_table(points: &[Point], at: &[usize]) -> String {
    let keys = runs_of(points);
    let mut at: Vec<usize> = at.iter().copied().filter(|a| points.iter().any(|p| p.labels == *a)).collect();
    if at.is_empty() {
        // A short run: its last point.
        at.extend(points.iter().map(|p| p.labels).max());
    }
    let mut s = String::from("| dataset | strategy |");
    for a in &at {
        s.push_str(&format!(" ECE@{a} (before; best T) | pool est / true @{a} |"));
    }
    s.push_str("\n|---|---|");
    for _ in &at {
        s.push_str("---|---|");
    }
    s.push('\n');
    for (d, st) in keys {
        s.push_str(&format!("| {d} | {st} |"));
        for a in &at {
            let sel: Vec<&Point> = points.iter().filter(|p| p.dataset == d && p.strategy == st && p.labels == *a).collect();
            if sel.is_empty() {
                s.push_str(" - | - |");
                continue;
            }
            let m = |f: &dyn Fn(&Point) -> f64| mean_sd(&sel.iter().map(|p| f(p)).collect::<Vec<_>>());
            let (e, esd) = m(&|p| p.calib.ece);
            let (r, _) = m(&|p| p.calib.ece_raw);
            let (b, _) = m(&|p| p.calib.ece_best);
            let (est, _) = m(&|p| p.calib.pool_est);
            let (tru, _) = m(&|p| p.calib.pool_acc);
            s.push_str(&format!(" {e:.3} ± {esd:.3} ({r:.3}; {b:.3}) | {est:.3} / {tru:.3} |"));
        }
        s.push('\n');
    }
    s
}

/// The stopping criteria `simulate` measures (kappa threshold, window):
/// the paper's 0.99 and lower ones; the panel's is marked.
pub const STOP_CHOICES: &[(f64, usize)] = &[(0.99, 3), (0.98, 3), (0.97, 3), (0.95, 3)];

/// When the stopping signal fired, per criterion: in how many seeds, the
/// mean label count there, the held-out accuracy there, at 150 labels and
/// at the end of the run (the budget `--max-labels` gave).
pub fn stopping_table(points: &[Point], choices: &[(f64, usize)]) -> String {
    let keys = runs_of(points);
    let end = points.iter().map(|p| p.labels).max().unwrap_or(0);
    let mut s = format!(
        "| dataset | strategy | stop when κ ≥ | fired (seeds) | labels there | acc there | acc@150 | acc@{end} (end) |\n|---|---|---|---|---|---|---|---|\n"
    );
    for (d, st) in keys {
        let seeds: std::collections::BTreeSet<usize> =
            points.iter().filter(|p| p.dataset == d && p.strategy == st).map(|p| p.seed).collect();
        for &(threshold, window) in choices {
            let (mut at, mut acc_at, mut acc150, mut acc_end) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for &seed in &seeds {
                let run: Vec<&Point> = points.iter().filter(|p| p.dataset == d && p.strategy == st && p.seed == seed).collect();
                let h: Vec<(usize, Option<f64>)> = run.iter().map(|p| (p.labels, p.agreement)).collect();
                let acc_of = |n: usize| run.iter().find(|p| p.labels == n).map(|p| p.accuracy);
                if let Some(n) = learn::stopping::first_firing(&h, threshold, window) {
                    at.push(n as f64);
                    acc_at.extend(acc_of(n));
                }
                acc150.extend(acc_of(150));
                acc_end.extend(run.last().map(|p| p.accuracy));
            }
            let f = |v: &[f64], digits: usize| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    let (m, sd) = mean_sd(v);
                    format!("{m:.digits$} ± {sd:.digits$}")
                }
            };
            s.push_str(&format!(
                "| {d} | {st} | {threshold} ×{window}{} | {}/{} | {} | {} | {} | {} |\n",
                if (threshold, window) == (learn::stopping::THRESHOLD, learn::stopping::WINDOW) { " (panel)" } else { "" },
                at.len(),
                seeds.len(),
                f(&at, 0),
                f(&acc_at, 3),
                f(&acc150, 3),
                f(&acc_end, 3)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// review.md has a row per strategy, each over its own seeds.
    #[test]
    fn the_review_table_has_a_row_per_strategy() {
        let d = tempfile::tempdir().unwrap();
        let run = |strategy: &str, seed: usize, wrong: usize, accuracy: f64| ReviewResult {
            dataset: "data".into(),
            strategy: strategy.into(),
            seed,
            labels: 40,
            wrong,
            found: REVIEW_AT.iter().map(|&a| (a, 1, 1)).collect(),
            accuracy,
            accuracy_fixed: accuracy + 0.01,
        };
        write_review(d.path(), &[run("margin", 0, 4, 0.5), run("margin", 1, 2, 0.7), run("random", 0, 3, 0.2), run("random", 1, 3, 0.4)])
            .unwrap();
        let md = std::fs::read_to_string(d.path().join("review.md")).unwrap();
        let rows: Vec<&str> = md.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{md}");
        assert!(rows[0].starts_with("| data | margin | 40 | 3.0 | 2 of 6 ") && rows[0].contains(" 0.600 ± "), "{md}");
        assert!(rows[1].starts_with("| data | random | 40 | 3.0 | 2 of 6 ") && rows[1].contains(" 0.300 ± "), "{md}");
    }
}
