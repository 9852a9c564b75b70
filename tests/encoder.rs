//! The encoder against sentence-transformers' own embeddings.

mod common;
use labelrest::model::{Encoder, Head};
use std::path::PathBuf;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2")
}

#[test]
fn embeddings_match_sentence_transformers() {
    let (texts, wants) = common::fixture_embeddings("reference_embeddings.json");
    let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    assert!(texts.contains(&""), "the fixture has the empty text");
    let enc = Encoder::load(&model_dir(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(enc.dim, 384);
    assert_eq!(enc.max_len, 256);
    let got = enc.embed(&texts, |_, _| {}).unwrap();
    for (i, want) in wants.iter().enumerate() {
        let g = &got[i * 384..(i + 1) * 384];
        let dot: f32 = g.iter().zip(want).map(|(a, b)| a * b).sum();
        let ng: f32 = g.iter().map(|a| a * a).sum::<f32>().sqrt();
        let nw: f32 = want.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cos = dot / (ng * nw);
        assert!(cos >= 0.9999, "text {i} {:?}: cosine {cos}", texts[i]);
        assert!((ng - 1.0).abs() < 1e-4, "unit length");
    }
    // Batching and order must not change a vector: embed one alone.
    let alone = enc.embed(&texts[7..8], |_, _| {}).unwrap();
    let d: f32 = alone.iter().zip(&got[7 * 384..8 * 384]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d < 1e-4, "embedding depends on the batch: {d}");
}

#[test]
fn long_text_is_truncated_not_refused() {
    let enc = Encoder::load(&model_dir(), &candle_core::Device::Cpu).unwrap();
    let long = "word ".repeat(2000);
    let ids = enc.tokenize(&[long.as_str()]).unwrap();
    assert_eq!(ids[0].len(), 256);
    let v = enc.embed(&[long.as_str()], |_, _| {}).unwrap();
    assert_eq!(v.len(), 384);
}

#[test]
fn missing_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = Encoder::load(dir.path(), &candle_core::Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn head_save_load_roundtrip() {
    let h = Head { dim: 2, k: 3, w: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], b: vec![0.1, 0.2, 0.3], temperature: 1.0 };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.safetensors");
    h.save(&p).unwrap();
    assert_eq!(Head::load(&p).unwrap(), h);
}

/// A sentence-transformers folder that pools by the mean or the CLS token
/// is read as such; one that pools otherwise (max, or two modes at once) or
/// runs a layer after pooling is refused with one line naming the file; the
/// bundled one (mean, Normalize) and a folder without modules.json load.
#[test]
fn sentence_transformers_pooling_is_read() {
    use labelrest::model::family::pooling as check_sentence_transformers;
    use labelrest::model::family::Pooling;
    let bundled = model_dir();
    assert_eq!(check_sentence_transformers(&bundled).unwrap(), Pooling::Mean);
    let d = tempfile::tempdir().unwrap();
    assert_eq!(check_sentence_transformers(d.path()).unwrap(), Pooling::Mean);
    let modules = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#;
    std::fs::write(d.path().join("modules.json"), modules).unwrap();
    std::fs::create_dir_all(d.path().join("1_Pooling")).unwrap();
    let pooling = |cls: bool, mean: bool, max: bool| {
        format!(
            r#"{{"word_embedding_dimension": 384, "pooling_mode_cls_token": {cls}, "pooling_mode_mean_tokens": {mean}, "pooling_mode_max_tokens": {max}}}"#
        )
    };
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(false, true, false)).unwrap();
    assert_eq!(check_sentence_transformers(d.path()).unwrap(), Pooling::Mean);
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(true, false, false)).unwrap();
    assert_eq!(check_sentence_transformers(d.path()).unwrap(), Pooling::Cls);
    for (cfg, says) in [(pooling(false, false, true), "pools by max"), (pooling(true, true, false), "pools by the mean and the CLS token")]
    {
        std::fs::write(d.path().join("1_Pooling/config.json"), cfg).unwrap();
        let e = check_sentence_transformers(d.path()).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("1_Pooling/config.json") && e.contains("mean or CLS-token pooling"), "{e}");
    }
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(false, true, false)).unwrap();
    let dense = modules.replace("]", r#",{"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#);
    std::fs::write(d.path().join("modules.json"), dense).unwrap();
    let e = check_sentence_transformers(d.path()).unwrap_err().to_string();
    assert!(e.contains("Dense module") && e.contains("modules.json"), "{e}");
}

/// A folder configured for CLS-token pooling (the bundled MiniLM's weights,
/// `1_Pooling/config.json` set to the CLS token, as BGE models pool) embeds
/// as sentence-transformers does on it: `tests/fixtures/cls_embeddings.json`
/// (scripts/make-cls-fixture.py), on our CPU BERT and on candle's.
#[test]
fn cls_pooling_matches_sentence_transformers() {
    let (texts, wants) = common::fixture_embeddings("cls_embeddings.json");
    let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cls");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for e in std::fs::read_dir(model_dir()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("1_Pooling/config.json")).unwrap()).unwrap();
    cfg["pooling_mode_cls_token"] = true.into();
    cfg["pooling_mode_mean_tokens"] = false.into();
    std::fs::write(dir.join("1_Pooling/config.json"), cfg.to_string()).unwrap();
    let mean = Encoder::load(&model_dir(), &candle_core::Device::Cpu).unwrap().embed(&texts, |_, _| {}).unwrap();
    for enc in [Encoder::load(&dir, &candle_core::Device::Cpu).unwrap(), Encoder::load_candle(&dir, &candle_core::Device::Cpu).unwrap()] {
        assert_eq!(enc.pooling, labelrest::model::family::Pooling::Cls);
        let got = enc.embed(&texts, |_, _| {}).unwrap();
        let mut apart = 0;
        for (i, want) in wants.iter().enumerate() {
            let g = &got[i * 384..(i + 1) * 384];
            let cos: f32 = g.iter().zip(want).map(|(a, b)| a * b).sum::<f32>()
                / (g.iter().map(|a| a * a).sum::<f32>().sqrt() * want.iter().map(|a| a * a).sum::<f32>().sqrt());
            assert!(cos >= 0.9999, "text {i} {:?}: cosine {cos}", texts[i]);
            // And it is not the mean-pooled vector.
            let to_mean: f32 = g.iter().zip(&mean[i * 384..(i + 1) * 384]).map(|(a, b)| a * b).sum();
            apart += (to_mean < 0.99) as usize;
        }
        assert!(apart >= texts.len() - 1, "CLS vectors close to the mean's in {} texts", texts.len() - apart);
    }
    // The pooling is part of the model's identity: a cache keyed by it never mixes the two.
    assert_ne!(labelrest::model::model_hash(&dir).unwrap(), labelrest::model::model_hash(&model_dir()).unwrap());
}
