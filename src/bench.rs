//! `labelrest bench`: the figures in docs/BENCHMARKS.md.

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::{Args, Subcommand};
use std::path::PathBuf;

use crate::data::{self, Columns, Format};
use crate::learn::SelfTraining;
use crate::learn::{self, Strategy};
use crate::model::Encoder;
use crate::store::{ImportSpec, LabelColIs, Session, Settings};

/// `labelrest bench`'s arguments (here, not in `cli`: the CLI depends on
/// bench, never the other way).
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Import a file into a scratch session and report rows/s and peak memory
    /// (without --data: a CSV of --rows rows made from the demo texts).
    Import {
        /// The file to import (CSV, TSV or JSONL); without it, a CSV made from the demo texts.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Rows of the made-up CSV (without --data).
        #[arg(long, default_value_t = 1_000_000, value_parser = crate::settings::parse_count)]
        rows: usize,
        /// The label set, comma-separated (needed with --data).
        #[arg(long)]
        labels: Option<String>,
        /// The file's label column, read as seed labels.
        #[arg(long)]
        label_col: Option<String>,
    },
    /// From a file to its first ranking, as a person starting on a big pile
    /// waits for it: `new` (the import), then the workstation's worker until
    /// its first ranking (a first slice of the pile embedded); with --full,
    /// on until every row is embedded and ranked.
    First {
        /// The pile: a CSV, TSV or JSONL file with a text column and a label column.
        #[arg(long)]
        data: PathBuf,
        /// The file's label column (read as gold labels: never shown to the model).
        #[arg(long, default_value = "label")]
        label_col: String,
        /// Wait for the whole pile too.
        #[arg(long)]
        full: bool,
    },
    /// Embed the texts of a file and report sentences/s.
    Embed {
        /// A file with a text column (CSV, TSV or JSONL).
        #[arg(long)]
        data: PathBuf,
        /// Texts to embed (the file's first ones).
        #[arg(long, default_value_t = 2000, value_parser = crate::settings::parse_count)]
        limit: usize,
        /// Encoder: a model folder (Hugging Face BERT layout); default the bundled all-MiniLM-L6-v2.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// The workstation on a copy of a session: time to the first frame, and
    /// key-to-frame latency while a retrain runs in the background.
    Ui {
        /// Session to copy (it is not changed).
        name: String,
        /// Keys to time.
        #[arg(long, default_value_t = 40, value_parser = crate::settings::parse_count)]
        keys: usize,
        /// Time the keys while the encoder is fine-tuned in the background.
        #[arg(long)]
        finetune: bool,
    },
    /// The GPU check: CPU and DEVICE agree (embeddings, zero-shot predictions),
    /// then embedding throughput, one fine-tune step and a whole fine-tune
    /// iteration (fine-tune on N labels, re-embed ROWS rows) on DEVICE.
    Gpu {
        /// A CSV with text and label columns (its rows are repeated up to --rows).
        #[arg(long)]
        data: PathBuf,
        /// The device measured (checked against the CPU).
        #[arg(long, value_enum, default_value = "cuda")]
        device: crate::settings::DeviceSetting,
        /// Rows embedded again after the fine-tune.
        #[arg(long, default_value_t = 10000, value_parser = crate::settings::parse_count)]
        rows: usize,
        /// Labels the fine-tune learns from.
        #[arg(long, default_value_t = 150, value_parser = crate::settings::parse_count)]
        labels: usize,
        /// Encoder: a model folder (Hugging Face BERT layout); default the bundled all-MiniLM-L6-v2.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// The CPU fine-tune as the workstation runs it: the frozen layers'
    /// states (once per session), one training step (the default top
    /// layers, and all layers), a whole fine-tune on N labels, and
    /// embedding ROWS rows again with the result.
    Finetune {
        /// A CSV with text and label columns (its rows are repeated up to --rows).
        #[arg(long)]
        data: PathBuf,
        /// Rows embedded again after the fine-tune.
        #[arg(long, default_value_t = 10000, value_parser = crate::settings::parse_count)]
        rows: usize,
        /// Labels the fine-tune learns from.
        #[arg(long, default_value_t = 150, value_parser = crate::settings::parse_count)]
        labels: usize,
        /// Encoder: a model folder (Hugging Face BERT layout); default the bundled all-MiniLM-L6-v2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Several annotators at once: N headless `annotate` processes on one
    /// fresh session (the demo texts), each asking for batches (`next`) and
    /// labelling them as fast as it can; label-to-durable latency (a label
    /// written to the process until it says `ok`, the label on disk) and
    /// labels per second over all of them, for each N.
    Team {
        /// Numbers of concurrent annotators, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16", value_parser = crate::settings::parse_count)]
        annotators: Vec<usize>,
        /// Labels each annotator gives.
        #[arg(long, default_value_t = 100, value_parser = crate::settings::parse_count)]
        labels: usize,
    },
    /// Refresh latency on a session with gold labels: train the head on N
    /// labels (gold labels of random pool rows), predict every row, rank.
    Refresh {
        /// Session (embedded already, or embedded first).
        name: String,
        /// Labels the head trains on.
        #[arg(long, default_value_t = 150, value_parser = crate::settings::parse_count)]
        labels: usize,
        /// Refreshes timed (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = crate::settings::parse_count)]
        repeat: usize,
        /// Self-training (default: the session's setting).
        #[arg(long, value_enum)]
        self_training: Option<SelfTraining>,
    },
}

/// Peak resident memory of this process in MiB (VmHWM), where Linux tells it.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

pub fn run(a: BenchArgs, sessions: &crate::store::Store) -> Result<()> {
    match a.what {
        BenchWhat::Ui { name, keys, finetune } => bench_ui(sessions, &name, keys, finetune)?,
        BenchWhat::First { data, label_col, full } => bench_first(&data, label_col, full)?,
        BenchWhat::Team { annotators, labels } => bench_team(&annotators, labels, sessions.pg.as_deref())?,
        BenchWhat::Gpu { data, device, rows, labels, model } => bench_gpu(&data, device, rows, labels, model)?,
        BenchWhat::Finetune { data, rows, labels, model, threads } => {
            bench_finetune(&data, rows, labels, model, threads.unwrap_or_else(crate::model::threads))?
        }
        BenchWhat::Import { data, rows, labels, label_col } => {
            let dir = tempfile_dir()?;
            let (data, labels, label_col) = match data {
                Some(d) => (d, labels.ok_or_else(|| anyhow::anyhow!("give --labels a,b,... with --data"))?, label_col),
                None => {
                    // Demo texts, numbered, with their labels, up to `rows` rows.
                    let src = crate::model::assets::assets_dir().join("demo").join("train.csv");
                    let mut r = csv::Reader::from_path(&src)?;
                    let recs: Vec<csv::StringRecord> = r.records().collect::<std::result::Result<_, _>>()?;
                    let mut names: Vec<String> = Vec::new();
                    let p = dir.join("synthetic.csv");
                    let mut w = csv::Writer::from_path(&p)?;
                    w.write_record(["text", "label"])?;
                    for i in 0..rows {
                        let rec = &recs[i % recs.len()];
                        if !names.iter().any(|n| n == &rec[1]) {
                            names.push(rec[1].to_string());
                        }
                        w.write_record([format!("{} #{i}", &rec[0]), rec[1].to_string()])?;
                    }
                    w.flush()?;
                    (p, names.join(","), Some("label".to_string()))
                }
            };
            let spec = ImportSpec {
                data: data.clone(),
                format: None,
                columns: Columns { label: label_col, ..Columns::default() },
                label_col_is: LabelColIs::Gold,
                labels: Some(data::parse_label_list(&labels).map_err(|e| anyhow::anyhow!(e))?),
                test: None,
                test_label_col: None,
                settings: Settings::default(),
            };
            let t = Instant::now();
            let r = Session::create(&dir, "bench", &spec, true)?;
            let secs = t.elapsed().as_secs_f64();
            let size = std::fs::metadata(&data)?.len() as f64 / 1048576.0;
            println!(
                "import: {} rows ({size:.1} MiB) in {secs:.2}s = {:.0} rows/s; peak memory {:.1} MiB",
                r.pool_rows,
                r.pool_rows as f64 / secs,
                peak_rss_mib().unwrap_or(f64::NAN)
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        BenchWhat::Embed { data, limit, model } => {
            let texts = read_texts(&data, limit)?;
            let dir = model.unwrap_or_else(|| crate::model::assets::model_dir("bundled"));
            let enc = Encoder::load(&dir, &candle_core::Device::Cpu)?;
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let ids = enc.tokenize(&refs)?;
            let tokens: usize = ids.iter().map(|i| i.len()).sum();
            // Warm up, then measure.
            enc.embed(&refs[..refs.len().min(64)], |_, _| {})?;
            let t = Instant::now();
            enc.embed(&refs, |_, _| {})?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "embed: {} texts (mean {:.1} tokens) in {secs:.2}s = {:.1} sentences/s, {:.0} tokens/s; threads {}",
                texts.len(),
                tokens as f64 / texts.len().max(1) as f64,
                texts.len() as f64 / secs,
                tokens as f64 / secs,
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
            );
        }
        BenchWhat::Refresh { name, labels, repeat, self_training } => {
            let session = Session::open_read_only(sessions, &name)?;
            let t = Instant::now();
            let cancel = AtomicBool::new(false);
            let mut p = crate::worker::prepare(
                &session,
                &mut |stage, d, n| {
                    if n > 1 && (d % 4096 < 128 || d == n) && !crate::term::quiet() {
                        eprint!("\r{stage} {d}/{n}   ");
                    }
                },
                &cancel,
            )?;
            crate::progress!("\rprepared in {:.1}s (model, embeddings mapped)        ", t.elapsed().as_secs_f64());
            if let Some(st) = self_training {
                p.engine.cfg.self_training = st;
            }
            let rows = session.rows()?;
            let gold: Vec<Option<u32>> = rows.iter().filter(|r| r.split == crate::store::Split::Pool).map(|r| r.gold).collect();
            let n = p.engine.pool_len();
            let k = p.engine.k;
            let mut idx: Vec<usize> = (0..n).filter(|&i| gold[i].is_some()).collect();
            if idx.len() < labels {
                anyhow::bail!("session '{name}' has {} pool rows with gold labels; need {labels}", idx.len());
            }
            idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
            let pairs: Vec<(usize, u32)> = idx.iter().take(labels).map(|&i| (i, gold[i].unwrap_or(0))).collect();
            let mut elig = vec![true; n];
            for &(i, _) in &pairs {
                elig[i] = false;
            }
            let engine = &p.engine;
            let (mut tot, mut tr, mut pr, mut rk) = (vec![], vec![], vec![], vec![]);
            let mut acc = None;
            for _ in 0..repeat.max(1) {
                let t = Instant::now();
                let it = engine.iterate(&pairs)?;
                let t2 = Instant::now();
                let _r = learn::rank(&it.raw, Strategy::Margin, &elig, Some((&engine.emb, &engine.pool_rows)), 10, 0);
                rk.push(t2.elapsed().as_secs_f64() * 1e3);
                tot.push(t.elapsed().as_secs_f64() * 1e3);
                tr.push(it.train_ms);
                pr.push(it.predict_ms);
                acc = it.test.map(|m| m.accuracy);
            }
            println!(
                "refresh: {n} pool rows + {} held-out, {k} classes, {labels} labels, self-training {}: median {:.1} ms (train {:.1}, predict and score {:.1}, rank {:.1}){}; peak memory {:.0} MiB",
                engine.test_rows.len(),
                if engine.cfg.self_training.enabled(k, n, engine.cfg.tunes) { "on" } else { "off" },
                median(tot),
                median(tr),
                median(pr),
                median(rk),
                acc.map(|a| format!(", held-out accuracy {a:.3}")).unwrap_or_default(),
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn read_texts(path: &std::path::Path, limit: usize) -> Result<Vec<String>> {
    let f = Format::detect(path)?;
    let mut v = Vec::new();
    // Reading stops at the limit with an error of our own; any other error is the file's.
    match data::read_records(path, f, &Columns::default(), |r| {
        if v.len() < limit {
            v.push(r.text);
            Ok(())
        } else {
            Err(data::DataError::new(path, None, None, "limit reached"))
        }
    }) {
        Err(e) if e.message != "limit reached" => Err(e.into()),
        _ => Ok(v),
    }
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("labelrest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// N headless `annotate` processes on one fresh session of the demo texts,
/// each asking for batches and labelling them as fast as it can; the
/// session in a SQLite file, or in the PostgreSQL store `pg` (`--store`).
fn bench_team(annotators: &[usize], labels: usize, pg: Option<&str>) -> Result<()> {
    use std::io::{BufRead, Write};
    let exe = std::env::current_exe()?;
    let data = crate::model::assets::assets_dir().join("demo").join("train.csv");
    println!(
        "{:>10} {:>7} {:>8} {:>9} {:>12} {:>9} {:>9} {:>10}",
        "annotators", "labels", "seconds", "labels/s", "median ms", "p95 ms", "max ms", "next ms"
    );
    if let Some(url) = pg {
        println!("store: {}", crate::store::display_url(url));
    }
    for &n in annotators {
        let dir = crate::store::Store { local: tempfile_dir()?, pg: pg.map(str::to_string) };
        let name = format!("bench-team-{}-{n}", std::process::id());
        let name = name.as_str();
        let spec = ImportSpec {
            data: data.clone(),
            format: None,
            columns: Columns { label: Some("label".into()), ..Columns::default() },
            label_col_is: LabelColIs::Gold,
            labels: None,
            test: None,
            test_label_col: None,
            settings: Settings::default(),
        };
        Session::create(&dir, name, &spec, true)?;
        let (gold, pool) = {
            let s = Session::open_read_only(&dir, name)?;
            let names: Vec<String> = s.label_set()?.into_iter().map(|l| l.name).collect();
            let rows = s.rows()?;
            let gold: std::collections::HashMap<i64, String> =
                rows.iter().filter_map(|r| r.gold.map(|g| (r.id, names[g as usize].clone()))).collect();
            (std::sync::Arc::new(gold), rows.len())
        };
        if n * labels > pool {
            anyhow::bail!("{n} annotators x {labels} labels is more than the {pool} rows of the demo");
        }
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let (exe, dir, gold, name) = (exe.clone(), dir.clone(), gold.clone(), name.to_string());
                std::thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>)> {
                    let mut cmd = std::process::Command::new(exe);
                    if let Some(url) = &dir.pg {
                        cmd.args(["--store", url]);
                    }
                    let mut child = cmd
                        .arg("--sessions")
                        .arg(&dir.local)
                        .args(["annotate", &name, "--annotator", &format!("a{k}")])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::inherit())
                        .spawn()?;
                    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
                    let mut out = std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
                    let mut line = String::new();
                    let (mut lat, mut next) = (Vec::new(), Vec::new());
                    while lat.len() < labels {
                        let t = Instant::now();
                        writeln!(stdin, "next")?;
                        let mut rows = Vec::new();
                        loop {
                            line.clear();
                            if out.read_line(&mut line)? == 0 {
                                anyhow::bail!("annotate a{k} ended");
                            }
                            if line.trim_end() == "end" {
                                break;
                            }
                            rows.push(line.split('\t').nth(1).unwrap_or("").parse::<i64>()?);
                        }
                        next.push(t.elapsed().as_secs_f64() * 1e3);
                        if rows.is_empty() {
                            break;
                        }
                        for r in rows.into_iter().take(labels - lat.len()) {
                            let t = Instant::now();
                            writeln!(stdin, "{r}\t{}", gold[&r])?;
                            line.clear();
                            out.read_line(&mut line)?;
                            if line.trim_end() != format!("ok {r}") {
                                anyhow::bail!("annotate a{k}: expected ok {r}, got {line:?}");
                            }
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                    drop(stdin);
                    child.wait()?;
                    Ok((lat, next))
                })
            })
            .collect();
        let (mut lat, mut next) = (Vec::new(), Vec::new());
        for h in handles {
            let (l, x) = h.join().map_err(|_| anyhow::anyhow!("an annotator thread panicked"))??;
            lat.extend(l);
            next.extend(x);
        }
        let secs = t0.elapsed().as_secs_f64();
        let stored = Session::open_read_only(&dir, name)?.labels()?.len();
        if stored != lat.len() {
            anyhow::bail!("{} labels acknowledged, {stored} stored", lat.len());
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let p95 = lat[((lat.len() as f64 * 0.95) as usize).min(lat.len() - 1)];
        println!(
            "{n:>10} {:>7} {secs:>8.2} {:>9.0} {:>12.2} {p95:>9.2} {:>9.2} {:>10.2}",
            lat.len(),
            lat.len() as f64 / secs,
            median(lat.clone()),
            lat.last().copied().unwrap_or(f64::NAN),
            median(next)
        );
        if dir.pg.is_some() {
            crate::store::remove(&dir, name)?;
        }
        let _ = std::fs::remove_dir_all(&dir.local);
    }
    Ok(())
}

fn bench_first(data: &std::path::Path, label_col: String, full: bool) -> Result<()> {
    let dir = tempfile_dir()?;
    let spec = ImportSpec {
        data: data.to_path_buf(),
        format: None,
        columns: Columns { label: Some(label_col), ..Columns::default() },
        label_col_is: LabelColIs::Gold,
        labels: None,
        test: None,
        test_label_col: None,
        settings: Settings::default(),
    };
    // As `labelrest new` makes it, then as `labelrest label` opens it.
    let t0 = Instant::now();
    let (r, _) = crate::worker::create_session(&dir, "first", &spec, true)?;
    let import = t0.elapsed().as_secs_f64();
    let session = Session::open(&dir, "first")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = crate::worker::Worker::start(&session, tx)?;
    let mut first: Option<(f64, usize)> = None;
    let result = loop {
        match rx.recv()? {
            crate::worker::Event::Update(u) => {
                let covered = u.pool_index.as_ref().map(|p| p.len()).unwrap_or(r.pool_rows as usize);
                if first.is_none() {
                    first = Some((t0.elapsed().as_secs_f64(), covered));
                    if !full {
                        break Ok(None);
                    }
                }
                if u.pool_index.is_none() {
                    break Ok(Some(t0.elapsed().as_secs_f64()));
                }
            }
            crate::worker::Event::Error(e) => break Err(anyhow::anyhow!(e)),
            _ => {}
        }
    };
    drop(worker);
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
    let whole = result?;
    let (first_s, covered) = first.unwrap_or((f64::NAN, 0));
    println!(
        "first ranking: {} rows made into a session in {import:.1}s (as `new`); the first batch ranked over {covered} rows {first_s:.1}s after the start of `new`{}",
        r.pool_rows,
        whole.map(|w| format!("; every row embedded and ranked at {w:.1}s")).unwrap_or_default()
    );
    Ok(())
}

/// Copies a session, opens it as `labelrest label` would (without a
/// terminal: frames are drawn on ratatui's TestBackend at 100x30), and times
/// the first frame and key-to-frame while the worker retrains.
fn bench_ui(sessions: &crate::store::Store, name: &str, keys: usize, finetune: bool) -> Result<()> {
    use crate::ui::app::{Action, App};
    use crate::ui::render::{self, Theme};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    if sessions.pg.is_some() {
        anyhow::bail!("`bench ui` copies a session kept in a SQLite file; run it without --store");
    }
    let src = crate::store::session_dir(&sessions.local, name);
    if !src.join("session.db").exists() {
        anyhow::bail!("no session '{name}' in {}", sessions.local.display());
    }
    let tmp = tempfile_dir()?;
    let dst = tmp.join(name);
    std::fs::create_dir_all(&dst)?;
    for e in std::fs::read_dir(&src)? {
        let e = e?;
        let n = e.file_name();
        if n != "lock" {
            std::fs::copy(e.path(), dst.join(&n))?;
        }
    }
    // 150 labels (gold labels of the first pool rows, where there are some), so that the retrain trains.
    {
        let s = Session::open(&tmp, name)?;
        let it = s.last_iteration()?;
        for r in s.rows()?.iter().filter(|r| r.split == crate::store::Split::Pool && r.gold.is_some()).take(150) {
            s.add_label(r.id, r.gold.unwrap_or(0), it, None)?;
        }
    }
    let t0 = Instant::now();
    let session = Session::open(&tmp, name)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut worker = crate::worker::Worker::start(&session, tx)?;
    let mut app = App::load(session)?;
    let mut term = Terminal::new(TestBackend::new(100, 30))?;
    app.set_geometry(render::geometry(ratatui::layout::Rect::new(0, 0, 100, 30)));
    term.draw(|f| render::draw(f, &app, Theme { color: false }))?;
    let first_frame = t0.elapsed().as_secs_f64() * 1e3;
    // Wait for the worker's first view.
    loop {
        match rx.recv()? {
            crate::worker::Event::Update(u) => {
                app.apply_update(u);
                break;
            }
            crate::worker::Event::Error(e) => anyhow::bail!(e),
            _ => {}
        }
    }
    let ready = t0.elapsed().as_secs_f64() * 1e3;
    let rows = app.row_ids.len();
    if finetune {
        // Keys while an encoder fine-tune trains beside the head: wait for its first step.
        if !app.finetune_running {
            worker.request(crate::worker::Job::FineTune);
        }
        loop {
            let ev = rx.recv()?;
            let training = matches!(&ev, crate::worker::Event::FineTune { running: true, text } if text.starts_with("fine-tune ") && text.contains(" loss "));
            if let crate::worker::Event::FineTune { running: false, text } = &ev {
                anyhow::bail!("the fine-tune ended before the keys: {text}");
            }
            app.on_event(ev);
            if training {
                break;
            }
        }
    } else {
        while let Ok(ev) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            app.on_event(ev);
        }
    }
    // Keys while a retrain runs, one every 20 ms (a fast typist).
    worker.request(crate::worker::Job::Retrain { strategy: app.strategy });
    let mut times = Vec::new();
    let mut during = 0;
    let mut busy = true;
    let mut tuning_keys = 0;
    for i in 0..keys {
        // A typist who has read each row: the settle guard (a batch's end,
        // a new ranking) does not turn the measured decisions into
        // refusals, which write nothing.
        app.changed_at = None;
        let t = Instant::now();
        app.handle(if i % 2 == 0 { Action::Down } else { Action::Accept });
        term.draw(|f| render::draw(f, &app, Theme { color: false }))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        for ev in crate::worker::drain(&rx) {
            if matches!(ev, crate::worker::Event::Idle) {
                busy = false;
            }
            app.on_event(ev);
        }
        if busy {
            during += 1;
        }
        if app.finetune_running {
            tuning_keys += 1;
        }
        for job in app.outbox.drain(..) {
            worker.request(job);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    worker.shutdown();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "ui: {rows} rows; first frame {first_frame:.0} ms, worker ready {ready:.0} ms; key-to-frame median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {keys} keys ({during} while retraining, {tuning_keys} while fine-tuning; accepts include the fsync)",
        p(0.5),
        p(0.95),
        p(1.0)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// See `labelrest bench finetune --help`.
fn bench_finetune(data: &std::path::Path, rows: usize, n_labels: usize, model: Option<std::path::PathBuf>, threads: usize) -> Result<()> {
    use crate::model::finetune::{FinetuneConfig, Mode};
    use crate::model::{states::States, train};
    let dir = model.unwrap_or_else(|| crate::model::assets::model_dir("bundled"));
    let (texts, golds) = read_labelled(data)?;
    let mut names: Vec<String> = Vec::new();
    for g in &golds {
        if !names.contains(g) {
            names.push(g.clone());
        }
    }
    let y: Vec<u32> = golds.iter().map(|g| names.iter().position(|n| n == g).unwrap_or(0) as u32).collect();
    let enc = Encoder::load(&dir, &candle_core::Device::Cpu)?;
    let bert = enc.cpu_bert().ok_or_else(|| anyhow::anyhow!("the CPU encoder did not load"))?.clone();
    let many: Vec<&str> = texts.iter().cycle().take(rows).map(|s| s.as_str()).collect();
    let ids = enc.tokenize(&many)?;
    let tokens: usize = ids.iter().map(|i| i.len()).sum();
    let method = Mode::Auto.method().unwrap_or(Mode::Finetune);
    let cfg = FinetuneConfig::for_mode(method);
    let from = bert.dims.layers - cfg.train_layers;
    println!(
        "bench finetune: {} ({method:?}, top {} of {} layers), {rows} rows (mean {:.1} tokens) from {}, {n_labels} labels, {threads} threads",
        dir.display(),
        cfg.train_layers,
        bert.dims.layers,
        tokens as f64 / rows.max(1) as f64,
        data.display()
    );
    let cancel = AtomicBool::new(false);
    // 1. The frozen layers' states of every row (once per session).
    let t = Instant::now();
    let states = States::compute(&bert, &ids, from, threads, &mut |_, _| {});
    let prep = t.elapsed().as_secs_f64();
    println!("states of the {from} frozen layers, {rows} rows: {prep:.1}s (once per session)");
    // 2. One step, batch 16: the default layers, and all layers (after a warm-up step).
    let head = crate::model::Head {
        dim: bert.dims.hidden,
        k: names.len(),
        w: vec![0.0; bert.dims.hidden * names.len()],
        b: vec![0.0; names.len()],
        temperature: 1.0,
    };
    let step_time = |layers: usize| -> Result<f64> {
        let mut c = cfg.clone();
        c.train_layers = layers;
        c.batch = 16;
        c.epochs = 1;
        let n = 16 * 6;
        let lids: Vec<Vec<u32>> = ids.iter().take(n).cloned().collect();
        let inp = train::Inputs::compute(&bert, &lids, bert.dims.layers - layers, threads);
        let mut at = Vec::new();
        let t = Instant::now();
        train::finetune_from(
            &bert,
            inp,
            &y[..n.min(y.len())],
            &head,
            method,
            &c,
            threads,
            &mut |_, _, _| at.push(t.elapsed().as_secs_f64()),
            &cancel,
        )?;
        Ok((at[at.len() - 1] - at[0]) / (at.len() - 1) as f64)
    };
    let s_top = step_time(cfg.train_layers)?;
    let s_all = step_time(bert.dims.layers)?;
    println!("step, batch 16: top {} layers {s_top:.3}s; all {} layers {s_all:.3}s", cfg.train_layers, bert.dims.layers);
    // 3. A whole fine-tune on the first N labels (of the rows repeated), then 4. the re-embedding.
    let n = n_labels.min(texts.len());
    let rows_l: Vec<usize> = (0..n).collect();
    let inp = train::Inputs::from_states(&states, &rows_l);
    let t = Instant::now();
    let mut steps = 0;
    let (tuned, _) = train::finetune_from(&bert, inp, &y[..n], &head, method, &cfg, threads, &mut |s, _, _| steps = s, &cancel)?;
    let ft = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let emb = states.embed_all(&tuned, threads, &mut |_, _| {}, &cancel)?;
    let re = t.elapsed().as_secs_f64();
    assert_eq!(emb.len(), rows * bert.dims.hidden);
    println!("fine-tune on {n} labels ({steps} steps): {ft:.1}s; re-embed {rows} rows: {re:.1}s; whole iteration {:.1}s", ft + re);
    println!("peak memory {:.0} MiB", peak_rss_mib().unwrap_or(f64::NAN));
    Ok(())
}

fn read_labelled(data: &std::path::Path) -> Result<(Vec<String>, Vec<String>)> {
    let f = Format::detect(data)?;
    let (mut texts, mut golds) = (Vec::new(), Vec::new());
    data::read_records(data, f, &Columns::new("text", Some("label")), |r| {
        texts.push(r.text);
        golds.push(r.label.unwrap_or_default());
        Ok(())
    })?;
    Ok((texts, golds))
}

/// See `labelrest bench gpu --help`. Fails when the devices disagree.
fn bench_gpu(
    data: &std::path::Path,
    device: crate::settings::DeviceSetting,
    rows: usize,
    n_labels: usize,
    model: Option<std::path::PathBuf>,
) -> Result<()> {
    use crate::model::finetune::{self, FinetuneConfig, Mode};
    let dir = model.unwrap_or_else(|| crate::model::assets::model_dir("bundled"));
    let f = Format::detect(data)?;
    let (mut texts, mut golds) = (Vec::new(), Vec::new());
    data::read_records(data, f, &Columns::new("text", Some("label")), |r| {
        texts.push(r.text);
        golds.push(r.label.unwrap_or_default());
        Ok(())
    })?;
    let mut names: Vec<String> = Vec::new();
    for g in &golds {
        if !names.contains(g) {
            names.push(g.clone());
        }
    }
    let y: Vec<u32> = golds.iter().map(|g| names.iter().position(|n| n == g).unwrap_or(0) as u32).collect();
    let dev = crate::model::device(device)?;
    let cpu = Encoder::load(&dir, &candle_core::Device::Cpu)?;
    let gpu = Encoder::load(&dir, &dev)?;
    println!("gpu check: {} on {device}, {} texts from {}", dir.display(), texts.len(), data.display());
    // 1. Agreement.
    let sample: Vec<&str> = texts.iter().take(256).map(|s| s.as_str()).collect();
    let a = cpu.embed(&sample, |_, _| {})?;
    let b = gpu.embed(&sample, |_, _| {})?;
    let d = cpu.dim;
    let min_cos = (0..sample.len()).map(|i| (0..d).map(|j| a[i * d + j] * b[i * d + j]).sum::<f32>()).fold(1.0f32, f32::min);
    let max_abs = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let prompts: Vec<String> = names.iter().map(|n| crate::model::label_prompt(n, None)).collect();
    let pr: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let (la, lb) = (cpu.embed(&pr, |_, _| {})?, gpu.embed(&pr, |_, _| {})?);
    let argmax = |e: &[f32], l: &[f32], i: usize| -> usize {
        (0..names.len())
            .map(|c| (c, (0..d).map(|j| e[i * d + j] * l[c * d + j]).sum::<f32>()))
            .fold((0, f32::NEG_INFINITY), |m, x| if x.1 > m.1 { x } else { m })
            .0
    };
    let agree = (0..sample.len()).filter(|&i| argmax(&a, &la, i) == argmax(&b, &lb, i)).count() as f64 / sample.len() as f64;
    println!(
        "agreement: min cosine CPU/{device} {min_cos:.6}, largest difference of one embedding value {max_abs:.2e}, over {} texts; zero-shot predictions equal on {:.1}%",
        sample.len(),
        agree * 100.0
    );
    // 2. Embedding throughput.
    let many: Vec<&str> = texts.iter().cycle().take(rows).map(|s| s.as_str()).collect();
    gpu.embed(&many[..many.len().min(512)], |_, _| {})?;
    let t = Instant::now();
    gpu.embed(&many, |_, _| {})?;
    let secs = t.elapsed().as_secs_f64();
    println!("embed on {device}: {} texts in {secs:.2}s = {:.0} sentences/s", many.len(), many.len() as f64 / secs);
    // 3. One fine-tune step (batch 16) and 4. a whole iteration.
    let k = names.len();
    let head = crate::model::Head { dim: d, k, w: vec![0.0; d * k], b: vec![0.0; k], temperature: 1.0 };
    let n = n_labels.min(texts.len());
    let lt: Vec<&str> = texts.iter().take(n).map(|s| s.as_str()).collect();
    let ly: Vec<u32> = y.iter().take(n).copied().collect();
    let cancel = AtomicBool::new(false);
    let cfg = FinetuneConfig::for_mode(Mode::Finetune);
    let mut steps_at = Vec::new();
    let t = Instant::now();
    let vars = finetune::finetune(
        &dir,
        &dev,
        &gpu,
        &lt,
        &ly,
        &head,
        Mode::Finetune,
        &cfg,
        &mut |_, _, _| steps_at.push(t.elapsed().as_secs_f64()),
        &cancel,
    )?;
    let ft_secs = t.elapsed().as_secs_f64();
    let step = if steps_at.len() > 2 { (steps_at[steps_at.len() - 1] - steps_at[1]) / (steps_at.len() - 2) as f64 } else { ft_secs };
    println!("fine-tune step on {device} (batch {}, after warm-up): {:.3} s", cfg.batch, step);
    let tmp = tempfile_dir()?.join("tuned");
    crate::model::bert::save_model_dir(&vars, &dir, &tmp)?;
    let t2 = Instant::now();
    let tuned = Encoder::load(&tmp, &dev)?;
    tuned.embed(&many, |_, _| {})?;
    let re = t2.elapsed().as_secs_f64();
    println!(
        "whole iteration on {device}: fine-tune on {n} labels ({} epochs) {ft_secs:.1}s + re-embed {} rows {re:.1}s = {:.1}s",
        cfg.epochs,
        many.len(),
        ft_secs + re
    );
    let _ = std::fs::remove_dir_all(tmp.parent().unwrap_or(&tmp));
    if min_cos < 0.999 || max_abs > 1e-3 || agree < 0.99 {
        anyhow::bail!(
            "CPU and {device} disagree: min cosine {min_cos}, largest difference {max_abs:.2e}, predictions equal on {:.1}%",
            agree * 100.0
        );
    }
    Ok(())
}
