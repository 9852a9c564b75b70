//! The encoder against sentence-transformers' own embeddings.

use labelrest::model::{Encoder, Head};
use std::path::PathBuf;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2")
}

#[test]
fn embeddings_match_sentence_transformers() {
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_embeddings.json")).unwrap(),
    )
    .unwrap();
    let items = refs["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&""), "the fixture has the empty text");
    let enc = Encoder::load(&model_dir(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(enc.dim, 384);
    assert_eq!(enc.max_len, 256);
    let got = enc.embed(&texts, |_, _| {}).unwrap();
    for (i, item) in items.iter().enumerate() {
        let want: Vec<f32> = item["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let g = &got[i * 384..(i + 1) * 384];
        let dot: f32 = g.iter().zip(&want).map(|(a, b)| a * b).sum();
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

/// A sentence-transformers folder that pools otherwise than by the mean, or
/// runs a layer after pooling, is refused with one line naming the file;
/// the bundled one (mean, Normalize) and a folder without modules.json load.
#[test]
fn sentence_transformers_pooling_is_read() {
    use labelrest::model::encoder::check_sentence_transformers;
    let bundled = model_dir();
    check_sentence_transformers(&bundled).unwrap();
    let d = tempfile::tempdir().unwrap();
    check_sentence_transformers(d.path()).unwrap();
    let modules = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#;
    std::fs::write(d.path().join("modules.json"), modules).unwrap();
    std::fs::create_dir_all(d.path().join("1_Pooling")).unwrap();
    let pooling = |cls: bool, mean: bool| {
        format!(
            r#"{{"word_embedding_dimension": 384, "pooling_mode_cls_token": {cls}, "pooling_mode_mean_tokens": {mean}, "pooling_mode_max_tokens": false}}"#
        )
    };
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(false, true)).unwrap();
    check_sentence_transformers(d.path()).unwrap();
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(true, false)).unwrap();
    let e = check_sentence_transformers(d.path()).unwrap_err().to_string();
    assert!(e.contains("the CLS token") && e.contains("1_Pooling/config.json") && e.contains("mean pooling only"), "{e}");
    std::fs::write(d.path().join("1_Pooling/config.json"), pooling(false, true)).unwrap();
    let dense = modules.replace("]", r#",{"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#);
    std::fs::write(d.path().join("modules.json"), dense).unwrap();
    let e = check_sentence_transformers(d.path()).unwrap_err().to_string();
    assert!(e.contains("Dense module") && e.contains("modules.json"), "{e}");
}
