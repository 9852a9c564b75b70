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
    let enc = Encoder::load_candle(&model(), &Device::Cpu).unwrap();
    let want = enc.embed(&TEXTS, |_, _| {}).unwrap();
    let (b, _vars) = bert::load_trainable(&model(), &Device::Cpu).unwrap();
    let (ids, mask) = batch(&enc, &TEXTS);
    let got: Vec<f32> = b.embed(&ids, &mask, false).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    for i in 0..TEXTS.len() {
        let cos: f32 = (0..384).map(|j| got[i * 384 + j] * want[i * 384 + j]).sum();
        assert!(cos > 0.99999, "text {i}: cosine {cos}");
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

/// The fine-tune behind the head, in the worker: it starts by itself on the
/// schedule (here at once: the session opens with 24 labels), the head
/// refreshes while it runs, a cancel keeps the current model, a fine-tune
/// asked for with F reports its steps and waits for labels it has not seen,
/// then is swapped in (and used on resume and by predict) or deleted. No
/// label is touched.
#[test]
fn background_finetune_schedule_check_and_cancel() {
    use labelrest::store::Session;
    use labelrest::worker::{Event, Job, Worker};
    let d = tempfile::tempdir().unwrap();
    // Three labels of the demo data (the schedule waits for two labels a class).
    let mut rdr = csv::Reader::from_path(demo("train.csv")).unwrap();
    let recs: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let mut count: std::collections::HashMap<String, usize> = Default::default();
    for r in &recs {
        *count.entry(r[1].to_string()).or_default() += 1;
    }
    let mut top: Vec<(usize, String)> = count.into_iter().map(|(l, c)| (c, l)).collect();
    top.sort_by(|a, b| b.cmp(a));
    let keep: Vec<String> = top.iter().take(3).map(|t| t.1.clone()).collect();
    let mut w = csv::Writer::from_path(d.path().join("data.csv")).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for r in recs.iter().filter(|r| keep.contains(&r[1].to_string())).take(60) {
        w.write_record([&r[0], &r[1]]).unwrap();
    }
    w.flush().unwrap();
    let data = d.path().join("data.csv");
    let new = |extra: &[&str]| {
        let mut args = vec!["new", "s", "--data", data.to_str().unwrap(), "--label-col", "label", "--label-col-is", "gold", "--force"];
        args.extend_from_slice(extra);
        let o = labelrest(d.path(), &args);
        assert!(o.status.success(), "{}", labelrest_stderr(&o));
    };
    // Many epochs: the first fine-tune runs long enough to be seen running.
    new(&["--mode", "finetune", "--ft-epochs", "200", "--ft-batch", "8"]);
    let s = Session::open(d.path(), "s").unwrap();
    assert_eq!(s.settings().unwrap().mode, labelrest::model::finetune::Mode::Finetune);
    let pool: Vec<_> = s.rows().unwrap().into_iter().filter(|r| r.split == labelrest::store::Split::Pool).collect();
    for r in pool.iter().take(24) {
        s.add_label(r.id, r.gold.unwrap(), 0, None).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Worker::start(&s, tx).unwrap();
    let next = |rx: &std::sync::mpsc::Receiver<Event>| rx.recv_timeout(std::time::Duration::from_secs(300)).unwrap();
    // It starts by itself; a retrain meanwhile gives a new view before it ends.
    loop {
        match next(&rx) {
            Event::FineTune { running: true, text } if text.contains("on 24 labels starting") => break,
            Event::FineTune { running: false, text } => panic!("ended early: {text}"),
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    w.request(Job::Retrain { strategy: labelrest::learn::Strategy::Margin });
    loop {
        match next(&rx) {
            Event::Update(u) => {
                assert_eq!(u.n_labels, 24);
                break;
            }
            Event::FineTune { running: false, text } => panic!("the head waited for the fine-tune: {text}"),
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    // Cancel: the current model stays.
    w.request(Job::CancelFineTune);
    let outcome = |rx: &std::sync::mpsc::Receiver<Event>| -> (String, Vec<String>) {
        let mut progress = Vec::new();
        loop {
            match next(rx) {
                Event::FineTune { running: true, text } => progress.push(text),
                Event::FineTune { running: false, text } => return (text, progress),
                Event::Error(e) => panic!("{e}"),
                _ => {}
            }
        }
    };
    let (text, _) = outcome(&rx);
    assert!(text.contains("cancelled"), "{text}");
    assert!(s.meta("encoder").unwrap().is_none());
    drop(w);
    drop(s);
    // Two epochs now: on opening, the schedule starts it again.
    new(&["--mode", "finetune", "--ft-epochs", "2", "--ft-batch", "8"]);
    let s = Session::open(d.path(), "s").unwrap();
    for r in pool.iter().take(24) {
        s.add_label(r.id, r.gold.unwrap(), 0, None).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Worker::start(&s, tx).unwrap();
    let (text, progress) = outcome(&rx);
    // 24 labels, batches of 8, 2 epochs: the settings are used, with step and loss.
    assert!(progress.iter().any(|p| p.contains("fine-tune 6/6 ~")), "{progress:?}");
    assert!(text.contains("tuned on 24 labels") && text.contains("next 5 labels"), "{text}");
    assert!(s.meta("encoder").unwrap().is_none(), "not swapped in before it is checked");
    // Quit while it waits and open again: the same encoder waits for the
    // same check, not thrown away, and no other fine-tune runs in its place.
    drop(w);
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Worker::start(&s, tx).unwrap();
    let (text, progress) = outcome(&rx);
    assert!(text.contains("tuned on 24 labels") && text.contains("next 5 labels"), "{text}");
    assert!(progress.is_empty(), "no fine-tune ran again: {progress:?}");
    // Five labels it has not seen: it is judged on them.
    for r in pool.iter().skip(24).take(5) {
        s.add_label(r.id, r.gold.unwrap(), 1, None).unwrap();
    }
    // (No retrain asked: the worker's look at the session finds them.)
    let (mut text, _) = outcome(&rx);
    let mut given = 29;
    if text.contains("checked again at 10") {
        // Worse on those five, not beyond chance: five more decide.
        assert!(s.meta("encoder").unwrap().is_none(), "not swapped in on labels that say it is worse");
        for r in pool.iter().skip(29).take(5) {
            s.add_label(r.id, r.gold.unwrap(), 1, None).unwrap();
        }
        given = 34;
        text = outcome(&rx).0;
    }
    assert!(text.contains("in use:") || text.contains("dropped:"), "{text}");
    // The check said "checking the fine-tuned encoder": the worker is idle
    // again after it, not left saying so.
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Event::Idle) => break,
            Ok(Event::Error(e)) => panic!("{e}"),
            Ok(_) => {}
            Err(e) => panic!("no idle after the check: {e}"),
        }
    }
    assert_eq!(s.labels().unwrap().len(), given, "no label touched");
    drop(w);
    let encoders: Vec<String> = std::fs::read_dir(d.path().join("s"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("encoder-"))
        .collect();
    if text.contains("in use:") {
        let name = s.meta("encoder").unwrap().unwrap();
        assert_eq!(encoders, vec![name.clone()]);
        assert!(d.path().join("s").join(&name).join("model.safetensors").exists());
        assert_eq!(labelrest::worker::encoder_dir(&s).unwrap(), d.path().join("s").join(&name));
        assert_eq!(s.meta("encoder_labels").unwrap().as_deref(), Some("24"));
        // The calibration knows which labels it learnt from, and every label's honest probabilities.
        let seen = s.tuned_encoder_rows().unwrap().unwrap();
        assert_eq!(seen, pool.iter().take(24).map(|r| r.id).collect());
        let honest = s.honest_probs().unwrap();
        assert_eq!(honest.len(), given);
        assert!(honest.values().all(|p| p.len() == s.label_set().unwrap().len()));
    } else {
        assert!(s.meta("encoder").unwrap().is_none());
        assert!(encoders.is_empty(), "a rejected encoder is deleted: {encoders:?}");
    }
}

fn labelrest_stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The candle fine-tune (the GPU's) trains only the top layers: the gradient
/// stops at the frozen layers' output, so none reaches them or the embeddings.
#[test]
fn frozen_layers_get_no_gradient() {
    let enc = Encoder::load(&model(), &Device::Cpu).unwrap();
    let (mut b, vars) = bert::load_trainable(&model(), &Device::Cpu).unwrap();
    b.frozen_below = 3;
    let (ids, mask) = batch(&enc, &TEXTS);
    let e = b.embed(&ids, &mask, true).unwrap();
    let loss = (e.get(0).unwrap() * e.get(1).unwrap()).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let all = vars.data().lock().unwrap().clone();
    let mut learning = 0;
    for (name, v) in &all {
        let learns = (3..6).any(|l| name.contains(&format!("encoder.layer.{l}.")));
        match grads.get(v.as_tensor()) {
            Some(g) => {
                assert!(learns, "a gradient reaches frozen {name}");
                let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(norm > 0.0, "zero gradient for {name}");
                learning += 1;
            }
            None => assert!(!learns, "no gradient reaches {name}"),
        }
    }
    assert_eq!(learning, 3 * 16, "variables that learn");
}
