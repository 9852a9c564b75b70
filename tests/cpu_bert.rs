//! Our CPU BERT (`model::cpu`): the same embeddings as sentence-transformers
//! and candle-transformers, and the same gradients as candle's autograd.

mod common;
use candle_core::{Device, Tensor};
use common::*;
use labelrest::model::{bert, cpu, Encoder};

fn model() -> std::path::PathBuf {
    root().join("assets/models/all-MiniLM-L6-v2")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (na * nb)
}

#[test]
fn embeddings_match_sentence_transformers_and_candle() {
    let (texts, wants) = common::fixture_embeddings("reference_embeddings.json");
    let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    let enc = Encoder::load(&model(), &Device::Cpu).unwrap();
    let ids = enc.tokenize(&texts).unwrap();
    let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let b = cpu::Bert::load(&model()).unwrap();
    for threads in [1, 2] {
        let got = b.embed(&seqs, threads);
        for (i, want) in wants.iter().enumerate() {
            let c = cos(&got[i * 384..(i + 1) * 384], want);
            assert!(c >= 0.9999, "text {i}: cosine {c} with sentence-transformers");
        }
    }
    // And candle-transformers on more texts.
    let enc = Encoder::load_candle(&model(), &Device::Cpu).unwrap();
    let s = std::fs::read_to_string(demo("train.csv")).unwrap();
    let demo_texts: Vec<String> = csv::Reader::from_reader(s.as_bytes()).records().take(64).map(|r| r.unwrap()[0].to_string()).collect();
    let refs: Vec<&str> = demo_texts.iter().map(|t| t.as_str()).collect();
    let want = enc.embed(&refs, |_, _| {}).unwrap();
    let ids = enc.tokenize(&refs).unwrap();
    let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let got = b.embed(&seqs, 2);
    for i in 0..refs.len() {
        let c = cos(&got[i * 384..(i + 1) * 384], &want[i * 384..(i + 1) * 384]);
        assert!(c >= 0.99999, "text {i}: cosine {c} with candle-transformers");
    }
    // The lower layers' states, then the top layers, give the same vectors.
    let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let st = b.states(&seqs, 4);
    let again = b.embed_from_states(&st, &lens, 4);
    let top = cpu::TopLayers::of(&b, 2).embed(&st, &lens, 2);
    for i in 0..refs.len() {
        assert!(cos(&again[i * 384..(i + 1) * 384], &got[i * 384..(i + 1) * 384]) > 0.999999);
        assert!(cos(&top[i * 384..(i + 1) * 384], &got[i * 384..(i + 1) * 384]) > 0.999999);
    }
}

/// The backward pass of the top two layers against candle's autograd on our
/// trainable candle module (dropout off), for a loss on the embeddings, with
/// mean pooling and with the CLS token's.
#[test]
fn top_layer_gradients_match_candle_autograd() {
    gradients_match(labelrest::model::family::Pooling::Mean);
}

#[test]
fn top_layer_gradients_match_candle_autograd_with_cls_pooling() {
    gradients_match(labelrest::model::family::Pooling::Cls);
}

fn gradients_match(pooling: labelrest::model::family::Pooling) {
    let texts = ["How do I reset my card PIN?", "ok", "The weather is sunny today and I am going for a long walk"];
    // A copy of the model folder without dropout.
    let d = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model().join("config.json")).unwrap()).unwrap();
    cfg["hidden_dropout_prob"] = serde_json::json!(0.0);
    cfg["attention_probs_dropout_prob"] = serde_json::json!(0.0);
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(model().join(f), d.path().join(f)).unwrap();
    }
    if pooling == labelrest::model::family::Pooling::Cls {
        std::fs::write(d.path().join("modules.json"), r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#).unwrap();
        std::fs::create_dir(d.path().join("1_Pooling")).unwrap();
        std::fs::write(d.path().join("1_Pooling/config.json"), r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#)
            .unwrap();
    }
    let enc = Encoder::load(d.path(), &Device::Cpu).unwrap();
    assert_eq!(enc.pooling, pooling);
    let ids = enc.tokenize(&texts).unwrap();
    // A fixed direction per text: loss = sum_i e_i . r_i.
    let r: Vec<f32> = (0..texts.len() * 384).map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0).collect();
    // candle.
    let (cb, vars) = bert::load_trainable(d.path(), &Device::Cpu).unwrap();
    let len = ids.iter().map(|i| i.len()).max().unwrap();
    let mut flat = vec![0u32; texts.len() * len];
    let mut mask = vec![0u32; texts.len() * len];
    for (i, s) in ids.iter().enumerate() {
        flat[i * len..i * len + s.len()].copy_from_slice(s);
        mask[i * len..i * len + s.len()].iter_mut().for_each(|m| *m = 1);
    }
    let t = Tensor::from_vec(flat, (texts.len(), len), &Device::Cpu).unwrap();
    let m = Tensor::from_vec(mask, (texts.len(), len), &Device::Cpu).unwrap();
    let e = cb.embed(&t, &m, true).unwrap();
    let rt = Tensor::from_vec(r.clone(), (texts.len(), 384), &Device::Cpu).unwrap();
    let loss = (e * rt).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let data = vars.data().lock().unwrap().clone();
    let g = |name: &str| -> Vec<f32> { grads.get(data[name].as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    // Ours.
    let b = cpu::Bert::load(d.path()).unwrap();
    assert_eq!(b.dims.pool, pooling);
    let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let top = cpu::TopLayers::of(&b, 2);
    let st = b.states(&seqs, top.from);
    let mut caches = Vec::new();
    let (emb, last) = top.forward_train(&st, &lens, None, &mut caches);
    let mut ours = top.zero_grads();
    top.backward(&last, &lens, &emb, &r, &caches, &mut ours);
    let close = |name: &str, got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err / scale < 2e-3, "{name}: max error {err} against max {scale}");
    };
    for (k, l) in [4usize, 5].iter().enumerate() {
        let p = format!("encoder.layer.{l}.");
        let q: Vec<f32> = [
            g(&format!("{p}attention.self.query.weight")),
            g(&format!("{p}attention.self.key.weight")),
            g(&format!("{p}attention.self.value.weight")),
        ]
        .concat();
        close("qkv_w", &ours[k].qkv_w, &q);
        let qb: Vec<f32> = [
            g(&format!("{p}attention.self.query.bias")),
            g(&format!("{p}attention.self.key.bias")),
            g(&format!("{p}attention.self.value.bias")),
        ]
        .concat();
        close("qkv_b", &ours[k].qkv_b, &qb);
        close("o_w", &ours[k].o_w, &g(&format!("{p}attention.output.dense.weight")));
        close("o_b", &ours[k].o_b, &g(&format!("{p}attention.output.dense.bias")));
        close("ln1_w", &ours[k].ln1_w, &g(&format!("{p}attention.output.LayerNorm.weight")));
        close("ln1_b", &ours[k].ln1_b, &g(&format!("{p}attention.output.LayerNorm.bias")));
        close("i_w", &ours[k].i_w, &g(&format!("{p}intermediate.dense.weight")));
        close("i_b", &ours[k].i_b, &g(&format!("{p}intermediate.dense.bias")));
        close("f_w", &ours[k].f_w, &g(&format!("{p}output.dense.weight")));
        close("f_b", &ours[k].f_b, &g(&format!("{p}output.dense.bias")));
        close("ln2_w", &ours[k].ln2_w, &g(&format!("{p}output.LayerNorm.weight")));
        close("ln2_b", &ours[k].ln2_b, &g(&format!("{p}output.LayerNorm.bias")));
    }
}

/// The half-precision path: the frozen lower layers' token states kept as
/// float16 (what the fine-tune and the re-embedding after it start from),
/// then the top layers, give sentence-transformers' embeddings (cosine at
/// least 0.9999), on one thread and on two.
#[test]
fn float16_states_give_the_reference_embeddings() {
    let (texts, wants) = common::fixture_embeddings("reference_embeddings.json");
    let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    let enc = Encoder::load(&model(), &Device::Cpu).unwrap();
    let ids = enc.tokenize(&texts).unwrap();
    let b = cpu::Bert::load(&model()).unwrap();
    for (from, threads) in [(3, 1), (3, 2), (5, 2)] {
        let states = labelrest::model::states::States::compute(&b, &ids, from, threads, &mut |_, _| {});
        let got = states.embed_all(&b, threads, &mut |_, _| {}, &std::sync::atomic::AtomicBool::new(false)).unwrap();
        for (i, want) in wants.iter().enumerate() {
            let c = cos(&got[i * 384..(i + 1) * 384], want);
            assert!(c >= 0.9999, "states after layer {from}, {threads} threads, text {i}: cosine {c}");
        }
    }
}
