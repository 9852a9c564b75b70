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
use crate::model::{self, Encoder, Matrix};

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
    pub device: String,
    pub labels_file: Option<PathBuf>,
    pub text_col: String,
    pub label_col: String,
    pub self_training: SelfTraining,
    pub prior_weight: f32,
    pub pseudo_per_class: usize,
    pub pseudo_weight: f32,
    pub head: crate::model::HeadConfig,
    /// After the last batch: fine-tune the encoder this way and measure again.
    pub mode: crate::model::finetune::Mode,
    pub finetune: crate::store::FinetuneOverrides,
    pub quiet: bool,
}

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
}

struct Split {
    texts: Vec<String>,
    labels: Vec<String>,
}

fn read_split(path: &Path, cols: &Columns) -> Result<Split> {
    let f = Format::from_path(path)?;
    let mut s = Split { texts: Vec::new(), labels: Vec::new() };
    data::read_records(path, f, cols, |r| {
        let l = r.label.unwrap_or_default();
        if l.is_empty() {
            return Err(data::DataError::new(path, Some(r.line), None, "a row without a gold label"));
        }
        s.texts.push(r.text);
        s.labels.push(l);
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
    let dataset = opts.name.clone().unwrap_or_else(|| {
        opts.train.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "data".into())
    });
    // The label set: the labels file's, else every label of train then test.
    let mut labels: Vec<LabelDef> = match &opts.labels_file {
        Some(f) => data::read_labels_file(f)?,
        None => Vec::new(),
    };
    for l in train.labels.iter().chain(test.labels.iter()) {
        if !labels.iter().any(|x| &x.name == l) {
            if opts.labels_file.is_some() {
                bail!(
                    "label '{l}' is in the data but not in {}",
                    opts.labels_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                );
            }
            labels.push(LabelDef { name: l.clone(), description: None });
        }
    }
    let k = labels.len();
    let index: std::collections::HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.name.as_str(), i as u32)).collect();
    let train_y: Vec<u32> = train.labels.iter().map(|l| index[l.as_str()]).collect();
    let test_y: Vec<u32> = test.labels.iter().map(|l| index[l.as_str()]).collect();

    let dev = model::device(&opts.device)?;
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
    let label_emb = encoder.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let n_train = train.texts.len();
    let cfg = EngineConfig {
        self_training: opts.self_training,
        prior_weight: opts.prior_weight,
        head: opts.head.clone(),
        pseudo_per_class: opts.pseudo_per_class,
        pseudo_weight: opts.pseudo_weight,
    };
    let engine = Engine::new(Arc::new(emb), (0..n_train).collect(), (n_train..texts.len()).collect(), test_y, label_emb, k, cfg)?;

    let mut points = Vec::new();
    for &strategy in &opts.strategies {
        for seed in 0..opts.seeds {
            let (curve, pairs, head) = run_one(&engine, &train_y, strategy, seed as u64, opts)?;
            for (labels, acc, f1, secs) in curve {
                points.push(Point {
                    dataset: dataset.clone(),
                    strategy: strategy.name().into(),
                    seed,
                    labels,
                    accuracy: acc,
                    macro_f1: f1,
                    seconds: secs,
                });
            }
            if !opts.quiet {
                let last = points.last().cloned();
                if let Some(p) = last {
                    eprintln!(
                        "{dataset} {} seed {seed}: {} labels, accuracy {:.3}, macro-F1 {:.3}",
                        strategy.name(),
                        p.labels,
                        p.accuracy,
                        p.macro_f1
                    );
                }
            }
            if let (true, Some(head)) = (opts.mode != Mode::Head, head) {
                let t = Instant::now();
                let (acc, f1) =
                    finetuned_accuracy(opts, &encoder, &texts, n_train, &labels, &engine, &pairs, &head, seed as u64, &dataset)?;
                points.push(Point {
                    dataset: dataset.clone(),
                    strategy: format!("{}+{}", strategy.name(), opts.mode.name()),
                    seed,
                    labels: pairs.len(),
                    accuracy: acc,
                    macro_f1: f1,
                    seconds: t.elapsed().as_secs_f64(),
                });
                if !opts.quiet {
                    eprintln!(
                        "{dataset} {}+{} seed {seed}: {} labels, accuracy {acc:.3}, macro-F1 {f1:.3} in {:.0}s",
                        strategy.name(),
                        opts.mode.name(),
                        pairs.len(),
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    write_outputs(&opts.out, &points)?;
    Ok(points)
}

/// Fine-tunes the encoder on the labelled rows, embeds everything again with
/// it, refits the head on the same labels, and scores the held-out set.
#[allow(clippy::too_many_arguments)]
fn finetuned_accuracy(
    opts: &SimOptions,
    encoder: &Encoder,
    texts: &[&str],
    n_train: usize,
    labels: &[LabelDef],
    engine: &Engine,
    pairs: &[(usize, u32)],
    head: &crate::model::Head,
    seed: u64,
    dataset: &str,
) -> Result<(f64, f64)> {
    let dev = model::device(&opts.device)?;
    let lt: Vec<&str> = pairs.iter().map(|&(i, _)| texts[i]).collect();
    let ly: Vec<u32> = pairs.iter().map(|&(_, l)| l).collect();
    let mut cfg = FinetuneConfig::for_mode(opts.mode).with(&opts.finetune);
    cfg.seed = seed;
    let cancel = AtomicBool::new(false);
    let quiet = opts.quiet;
    let vars = finetune::finetune(
        &opts.model,
        &dev,
        encoder,
        &lt,
        &ly,
        head,
        opts.mode,
        &cfg,
        &mut |step, steps, loss| {
            if !quiet && (step == steps || step % 10 == 0) {
                eprintln!("{dataset} fine-tune ({}) step {step}/{steps} loss {loss:.4}", opts.mode.name());
            }
        },
        &cancel,
    )?;
    let dir = opts.out.join(format!("encoder-{}-{seed}", opts.mode.name()));
    crate::model::bert::save_model_dir(&vars, &opts.model, &dir)?;
    let tuned = Encoder::load(&dir, &dev)?;
    let emb = embed_cached(&opts.cache, &tuned, texts, opts.quiet)?;
    let prompts: Vec<String> = labels.iter().map(|l| model::label_prompt(&l.name, l.description.as_deref())).collect();
    let label_emb = tuned.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
    let e2 = Engine::new(
        Arc::new(emb),
        (0..n_train).collect(),
        (n_train..texts.len()).collect(),
        engine.test_gold.clone(),
        label_emb,
        engine.k,
        engine.cfg.clone(),
    )?;
    let it = e2.iterate(pairs)?;
    let m = it.test.unwrap_or_default();
    // The fine-tuned weights are large; keep only the figures.
    let _ = std::fs::remove_dir_all(&dir);
    Ok((m.accuracy, m.macro_f1))
}

/// One simulated session: returns (labels, accuracy, macro-F1, seconds of the iteration).
type Curve = Vec<(usize, f64, f64, f64)>;

fn run_one(
    engine: &Engine,
    gold: &[u32],
    strategy: Strategy,
    seed: u64,
    opts: &SimOptions,
) -> Result<(Curve, Vec<(usize, u32)>, Option<crate::model::Head>)> {
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
    let mut ranking: Vec<u32> = if opts.zero_shot {
        let t = Instant::now();
        let it = engine.iterate(&[])?;
        let m = it.test.clone().unwrap_or_default();
        out.push((0, m.accuracy, m.macro_f1, t.elapsed().as_secs_f64()));
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        learn::rank(&it.scores, strategy, &eligible, Some((&engine.emb, &engine.pool_rows)), opts.batch, seed)
    } else {
        // Without zero-shot the first batch is random.
        let s = learn::Scores::from_probs(vec![1.0 / 2.0; n * 2], 2);
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        learn::rank(&s, Strategy::Random, &eligible, None, opts.batch, seed)
    };
    let mut iteration = 0u64;
    let mut last_head = None;
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
                pairs.push((i, gold[i]));
                added += 1;
            }
        }
        if added == 0 {
            break;
        }
        iteration += 1;
        let t = Instant::now();
        let it = engine.iterate(&pairs)?;
        let eligible: Vec<bool> = labelled.iter().map(|l| !l).collect();
        ranking = learn::rank(
            &it.scores,
            strategy,
            &eligible,
            Some((&engine.emb, &engine.pool_rows)),
            opts.batch,
            seed.wrapping_mul(1_000_003) ^ iteration,
        );
        let m = it.test.clone().unwrap_or_default();
        out.push((pairs.len(), m.accuracy, m.macro_f1, t.elapsed().as_secs_f64()));
        last_head = Some(it.head);
    }
    Ok((out, pairs, last_head))
}

pub fn write_outputs(out: &Path, points: &[Point]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = csv::Writer::from_path(out.join("curves.csv"))?;
    w.write_record(["dataset", "strategy", "seed", "labels", "accuracy", "macro_f1", "seconds"])?;
    for p in points {
        w.write_record([
            p.dataset.clone(),
            p.strategy.clone(),
            p.seed.to_string(),
            p.labels.to_string(),
            format!("{:.4}", p.accuracy),
            format!("{:.4}", p.macro_f1),
            format!("{:.4}", p.seconds),
        ])?;
    }
    w.flush()?;
    let table = markdown_table(points, &[0, 10, 50, 100, 150]);
    std::fs::File::create(out.join("table.md"))?.write_all(table.as_bytes())?;
    crate::plot::curves(points, &out.join("curves.svg"), &out.join("curves.png"))?;
    Ok(())
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
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in points {
        let k = (p.dataset.clone(), p.strategy.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let at: Vec<usize> = at.iter().copied().filter(|a| points.iter().any(|p| p.labels == *a)).collect();
    let mut s = String::new();
    s.push_str("| dataset | strategy |");
    for a in &at {
        s.push_str(&format!(" acc@{a} | F1@{a} |"));
    }
    s.push_str(" s/iter |\n|---|---|");
    for _ in &at {
        s.push_str("---|---|");
    }
    s.push_str("---|\n");
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
        s.push_str(&format!(" {:.3} |\n", mean_sd(&secs).0));
    }
    s
}
