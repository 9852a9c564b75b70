//! The trainable BERT: it computes what candle-transformers' BERT computes,
//! and a training step reaches and changes every encoder weight.

mod common;
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::*;
use labelrest::model::bert;
use labelrest::model::Encoder;

fn model() -> std::path::PathBuf {
    root().join("assets/models/all-MiniLM-L6-v2")
}

fn batch(enc: &Encoder, texts: &[&str]) -> (Tensor, Tensor) {
    let ids = enc.tokenize(texts).unwrap();
    let len = ids.iter().map(|i| i.len()).max().unwrap();
    let mut flat = vec![0u32; texts.len() * len];
    let mut mask = vec![0u32; texts.len() * len];
    for (i, s) in ids.iter().enumerate() {
        flat[i * len..i * len + s.len()].copy_from_slice(s);
        mask[i * len..i * len + s.len()].iter_mut().for_each(|m| *m = 1);
    }
    (Tensor::from_vec(flat, (texts.len(), len), &Device::Cpu).unwrap(), Tensor::from_vec(mask, (texts.len(), len), &Device::Cpu).unwrap())
}

const TEXTS: [&str; 4] =
    ["How do I reset my card PIN?", "ok", "The weather is sunny today and I am going for a long walk", "Ünïcödé façade — naïve café"];

#[test]
fn same_embeddings_as_candle_transformers() {
    let enc = Encoder::load(&model(), &Device::Cpu).unwrap();
    let want = enc.embed(&TEXTS, |_, _| {}).unwrap();
    let (b, _vars) = bert::load_trainable(&model(), &Device::Cpu).unwrap();
    let (ids, mask) = batch(&enc, &TEXTS);
    for train in [false] {
        let got: Vec<f32> = b.embed(&ids, &mask, train).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..TEXTS.len() {
            let cos: f32 = (0..384).map(|j| got[i * 384 + j] * want[i * 384 + j]).sum();
            assert!(cos > 0.99999, "text {i}: cosine {cos}");
        }
    }
}

#[test]
fn a_training_step_reaches_and_changes_every_weight() {
    let enc = Encoder::load(&model(), &Device::Cpu).unwrap();
    let (b, vars) = bert::load_trainable(&model(), &Device::Cpu).unwrap();
    let (ids, mask) = batch(&enc, &TEXTS);
    let e = b.embed(&ids, &mask, true).unwrap();
    // A loss that depends on every output dimension: pull the first two texts together, push the others apart.
    let target = Tensor::new(&[1f32, 0.0, 0.0], &Device::Cpu).unwrap();
    let cos = Tensor::cat(
        &[
            (e.get(0).unwrap() * e.get(1).unwrap()).unwrap().sum_all().unwrap().unsqueeze(0).unwrap(),
            (e.get(0).unwrap() * e.get(2).unwrap()).unwrap().sum_all().unwrap().unsqueeze(0).unwrap(),
            (e.get(1).unwrap() * e.get(3).unwrap()).unwrap().sum_all().unwrap().unsqueeze(0).unwrap(),
        ],
        0,
    )
    .unwrap();
    let loss = (cos - target).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let all = vars.data().lock().unwrap().clone();
    assert!(all.len() >= 6 * 16 + 5, "{} variables", all.len());
    let before: Vec<(String, Tensor)> = all.iter().map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap())).collect();
    for (name, v) in &all {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient reaches {name}"));
        let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
    let mut opt = AdamW::new(vars.all_vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
    opt.step(&grads).unwrap();
    for (name, old) in before {
        let new = all[&name].as_tensor();
        let diff: f32 = (new - &old)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff > 0.0, "{name} did not change");
    }
}

/// The background fine-tune: it runs beside the head, its outcome is
/// reported, a better encoder is swapped in and used on resume and by
/// predict, and a cancel keeps the current model. No label is touched.
#[test]
fn background_finetune_swap_or_keep_and_cancel() {
    use labelrest::store::Session;
    use labelrest::worker::{Event, Job, Worker};
    let d = tempfile::tempdir().unwrap();
    let data = write(d.path(), "data.csv", demo_head(60).as_bytes());
    let t = std::fs::read_to_string(demo("train.csv")).unwrap();
    let test = write(
        d.path(),
        "test.csv",
        (t.lines().take(1).chain(t.lines().skip(61).take(40)).collect::<Vec<_>>().join("\n") + "\n").as_bytes(),
    );
    let lf = demo_labels(d.path());
    let o = labelrest(
        d.path(),
        &[
            "new",
            "s",
            "--data",
            data.to_str().unwrap(),
            "--label-col",
            "label",
            "--label-col-is",
            "gold",
            "--test",
            test.to_str().unwrap(),
            "--mode",
            "finetune",
            "--labels-file",
            lf.to_str().unwrap(),
            "--ft-epochs",
            "2",
            "--ft-batch",
            "8",
        ],
    );
    assert!(o.status.success(), "{}", labelrest_stderr(&o));
    let s = Session::open(d.path(), "s").unwrap();
    assert_eq!(s.settings().unwrap().mode, "finetune");
    assert_eq!((s.settings().unwrap().finetune.epochs, s.settings().unwrap().finetune.batch), (Some(2), Some(8)));
    let rows = s.rows().unwrap();
    for r in rows.iter().filter(|r| r.split == labelrest::store::Split::Pool).take(24) {
        s.add_label(r.id, r.gold.unwrap(), 0, None).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Worker::start(&s, tx).unwrap();
    let outcome = |rx: &std::sync::mpsc::Receiver<Event>| -> (String, bool) {
        let mut saw_progress = false;
        loop {
            match rx.recv_timeout(std::time::Duration::from_secs(300)).unwrap() {
                Event::FineTune { running: true, text } => {
                    if text.starts_with("fine-tune ") {
                        saw_progress = true;
                        // 24 labels, batches of 8, 2 epochs: the settings are used.
                        assert!(text.contains("/6 loss"), "{text}");
                    }
                }
                Event::FineTune { running: false, text } => return (text, saw_progress),
                Event::Error(e) => panic!("{e}"),
                _ => {}
            }
        }
    };
    // Cancel right away: the current model stays.
    w.request(Job::FineTune);
    w.request(Job::CancelFineTune);
    let (text, _) = outcome(&rx);
    assert!(text.contains("cancelled"), "{text}");
    assert!(s.meta("encoder").unwrap().is_none());
    // A whole fine-tune.
    w.request(Job::FineTune);
    let (text, saw_progress) = outcome(&rx);
    assert!(saw_progress, "progress with step and loss");
    assert!(text.contains("swapped in") || text.contains("not better"), "{text}");
    assert_eq!(s.labels().unwrap().len(), 24, "no label touched");
    drop(w);
    if text.contains("swapped in") {
        let name = s.meta("encoder").unwrap().unwrap();
        assert!(d.path().join("s").join(&name).join("model.safetensors").exists());
        assert_eq!(labelrest::worker::encoder_dir(&s).unwrap(), d.path().join("s").join(&name));
    } else {
        assert!(s.meta("encoder").unwrap().is_none());
        let left: Vec<_> = std::fs::read_dir(d.path().join("s"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("encoder-"))
            .collect();
        assert!(left.is_empty(), "a rejected encoder is deleted");
    }
}

fn labelrest_stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
