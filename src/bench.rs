//! `labelrest bench`: the figures in docs/BENCHMARKS.md.

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::{BenchArgs, BenchWhat};
use crate::data::{self, Columns, Format};
use crate::learn::{self, Engine, EngineConfig, Strategy};
use crate::model::{self, Encoder};
use crate::store::{ImportSpec, LabelColIs, Session, Settings};

/// Peak resident memory of this process in MiB (VmHWM), where Linux tells it.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Import { data, labels, label_col } => {
            let dir = tempfile_dir()?;
            let spec = ImportSpec {
                data: data.clone(),
                format: None,
                columns: Columns { text: "text".into(), label: label_col },
                label_col_is: LabelColIs::Gold,
                labels: Some(data::parse_label_list(&labels)),
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
            let dir = model.unwrap_or_else(|| crate::worker::model_dir("bundled"));
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
        BenchWhat::Refresh { data, labels, repeat, cache, self_training } => {
            let f = Format::from_path(&data)?;
            let mut texts = Vec::new();
            let mut golds = Vec::new();
            data::read_records(&data, f, &Columns { text: "text".into(), label: Some("label".into()) }, |r| {
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
            let enc = Encoder::load(&crate::worker::model_dir("bundled"), &candle_core::Device::Cpu)?;
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let t = Instant::now();
            let emb = model::embed_cached(&cache, &format!("{}-{}", enc.hash, texts.len()), &enc, &refs, &mut |_, d, n| {
                if d % 4096 < 64 {
                    eprint!("\rembedding {d}/{n}");
                }
            }, &AtomicBool::new(false))?;
            eprintln!("\rembeddings ready in {:.1}s", t.elapsed().as_secs_f64());
            let prompts: Vec<String> = names.iter().map(|n| model::label_prompt(n, None)).collect();
            let label_emb = enc.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {})?;
            let k = names.len();
            let n = texts.len();
            let engine = Engine::new(Arc::new(emb), (0..n).collect(), vec![], vec![], label_emb, k, EngineConfig { self_training, ..Default::default() })?;
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
            let pairs: Vec<(usize, u32)> = idx.iter().take(labels).map(|&i| (i, y[i])).collect();
            let mut elig = vec![true; n];
            for &(i, _) in &pairs {
                elig[i] = false;
            }
            let (mut tot, mut tr, mut pr, mut rk) = (vec![], vec![], vec![], vec![]);
            for _ in 0..repeat.max(1) {
                let t = Instant::now();
                let it = engine.iterate(&pairs)?;
                let t2 = Instant::now();
                let _r = learn::rank(&it.scores, Strategy::Margin, &elig, Some((&engine.emb, &engine.pool_rows)), 10, 0);
                rk.push(t2.elapsed().as_secs_f64() * 1e3);
                tot.push(t.elapsed().as_secs_f64() * 1e3);
                tr.push(it.train_ms);
                pr.push(it.predict_ms);
            }
            println!(
                "refresh: {n} rows, {k} classes, {labels} labels, self-training {}: median {:.1} ms (train {:.1}, predict {:.1}, rank {:.1}); peak memory {:.0} MiB",
                if self_training.enabled(k, n) { "on" } else { "off" },
                median(tot),
                median(tr),
                median(pr),
                median(rk),
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn read_texts(path: &std::path::Path, limit: usize) -> Result<Vec<String>> {
    let f = Format::from_path(path)?;
    let mut v = Vec::new();
    let _ = data::read_records(path, f, &Columns::default(), |r| {
        if v.len() < limit {
            v.push(r.text);
            Ok(())
        } else {
            Err(data::DataError::new(path, None, None, "limit"))
        }
    });
    Ok(v)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("labelrest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
