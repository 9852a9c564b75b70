//! Criterion benches of the hot paths on the bundled model and demo data:
//! embedding a batch, training the head on 150 labels, predicting and
//! scoring 2,000 rows, and ranking them.
//!
//! `cargo bench --bench hot_paths`

use criterion::{criterion_group, criterion_main, Criterion};
use labelrest::learn::{self, Engine, EngineConfig, Scores, SelfTraining, Strategy};
use labelrest::model::{Encoder, Matrix};
use std::path::PathBuf;
use std::sync::Arc;

fn demo() -> (Vec<String>, Vec<String>) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo/train.csv");
    let mut r = csv::Reader::from_path(p).unwrap();
    let (mut t, mut l) = (Vec::new(), Vec::new());
    for rec in r.records() {
        let rec = rec.unwrap();
        t.push(rec[0].to_string());
        l.push(rec[1].to_string());
    }
    (t, l)
}

fn benches(c: &mut Criterion) {
    let enc = Encoder::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2"), &candle_core::Device::Cpu)
        .unwrap();
    let (texts, labels) = demo();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    c.bench_function("embed 64 demo sentences", |b| b.iter(|| enc.embed(&refs[..64], |_, _| {}).unwrap()));
    let emb = enc.embed(&refs, |_, _| {}).unwrap();
    let mut names: Vec<String> = Vec::new();
    for l in &labels {
        if !names.contains(l) {
            names.push(l.clone());
        }
    }
    let y: Vec<u32> = labels.iter().map(|l| names.iter().position(|n| n == l).unwrap() as u32).collect();
    let prompts: Vec<String> = names.iter().map(|n| labelrest::model::label_prompt(n, None)).collect();
    let le = enc.embed(&prompts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), |_, _| {}).unwrap();
    let n = texts.len();
    let k = names.len();
    let engine = Engine::new(
        Arc::new(Matrix::owned(emb, 384)),
        (0..n).collect(),
        vec![],
        vec![],
        le,
        k,
        EngineConfig { self_training: SelfTraining::Off, ..Default::default() },
    )
    .unwrap();
    let pairs: Vec<(usize, u32)> = (0..150).map(|i| (i * 13 % n, y[i * 13 % n])).collect();
    c.bench_function("iteration: train head on 150 labels + predict 2000 rows", |b| b.iter(|| engine.iterate(&pairs).unwrap()));
    let it = engine.iterate(&pairs).unwrap();
    let probs = it.scores.probs.clone();
    c.bench_function("scores from probabilities, 2000 x 77", |b| b.iter(|| Scores::from_probs(probs.clone(), k)));
    let elig = vec![true; n];
    c.bench_function("rank margin 2000", |b| b.iter(|| learn::rank(&it.scores, Strategy::Margin, &elig, None, 10, 0)));
    c.bench_function("rank diverse 2000", |b| {
        b.iter(|| learn::rank(&it.scores, Strategy::Diverse, &elig, Some((&engine.emb, &engine.pool_rows)), 10, 0))
    });
}

criterion_group! {
    name = hot;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(hot);
