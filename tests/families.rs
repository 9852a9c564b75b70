//! Encoder families besides BERT: tiny DistilBERT and XLM-RoBERTa models
//! with random weights, built here (no download), load, embed as
//! candle-transformers' own implementation of each family does, and train a
//! head; a session of Korean text imports, ranks and exports with the
//! XLM-RoBERTa one (a SentencePiece/Unigram tokenizer).

mod common;
use candle_core::{DType, Device, Tensor};
use common::{labelrest, stderr, stdout};
use labelrest::model::family::{Family, Pooling};
use labelrest::model::{Encoder, Head, HeadConfig};
use std::collections::HashMap;
use std::path::Path;

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const INTER: usize = 64;
const LAYERS: usize = 2;

/// Deterministic values in (-scale, scale).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize], scale: f32, around: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| around + scale * self.next()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

/// Weights of a transformer layer under `names(kind)`: linear layers get
/// (out x in) weights and biases, LayerNorms weights near 1.
fn layer(rng: &mut Rng, m: &mut HashMap<String, Tensor>, names: &[(&str, &str)]) {
    for (kind, name) in names {
        let (w, b) = match *kind {
            "qkv" | "out" => ([HIDDEN, HIDDEN], HIDDEN),
            "up" => ([INTER, HIDDEN], INTER),
            "down" => ([HIDDEN, INTER], HIDDEN),
            _ => {
                m.insert(format!("{name}.weight"), rng.tensor(&[HIDDEN], 0.2, 1.0));
                m.insert(format!("{name}.bias"), rng.tensor(&[HIDDEN], 0.1, 0.0));
                continue;
            }
        };
        m.insert(format!("{name}.weight"), rng.tensor(&w, 0.3, 0.0));
        m.insert(format!("{name}.bias"), rng.tensor(&[b], 0.1, 0.0));
    }
}

/// A tiny DistilBERT (weights under the `distilbert.` prefix, with a
/// pre-training head that must be ignored) and the bundled WordPiece tokenizer.
fn tiny_distilbert(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let bundled = common::root().join("assets/models/all-MiniLM-L6-v2");
    std::fs::copy(bundled.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let vocab = 30522;
    let cfg = serde_json::json!({
        "model_type": "distilbert", "architectures": ["DistilBertModel"], "activation": "gelu",
        "vocab_size": vocab, "dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": INTER,
        "max_position_embeddings": 64, "initializer_range": 0.02, "pad_token_id": 0,
        "dropout": 0.1, "attention_dropout": 0.1, "sinusoidal_pos_embds": false
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut rng = Rng(7);
    let mut m = HashMap::new();
    m.insert("distilbert.embeddings.word_embeddings.weight".into(), rng.tensor(&[vocab, HIDDEN], 0.5, 0.0));
    m.insert("distilbert.embeddings.position_embeddings.weight".into(), rng.tensor(&[64, HIDDEN], 0.5, 0.0));
    layer(&mut rng, &mut m, &[("norm", "distilbert.embeddings.LayerNorm")]);
    for l in 0..LAYERS {
        let p = format!("distilbert.transformer.layer.{l}");
        let names = [
            ("qkv", format!("{p}.attention.q_lin")),
            ("qkv", format!("{p}.attention.k_lin")),
            ("qkv", format!("{p}.attention.v_lin")),
            ("out", format!("{p}.attention.out_lin")),
            ("norm", format!("{p}.sa_layer_norm")),
            ("up", format!("{p}.ffn.lin1")),
            ("down", format!("{p}.ffn.lin2")),
            ("norm", format!("{p}.output_layer_norm")),
        ];
        layer(&mut rng, &mut m, &names.iter().map(|(k, n)| (*k, n.as_str())).collect::<Vec<_>>());
    }
    m.insert("vocab_projector.bias".into(), rng.tensor(&[vocab], 0.1, 0.0));
    candle_core::safetensors::save(&m, dir.join("model.safetensors")).unwrap();
}

/// Korean and German texts, three intents (card, transfer, password).
const KOREAN: &[(&str, &str)] = &[
    ("카드를 잃어버렸어요", "카드"),
    ("카드가 아직 도착하지 않았어요", "카드"),
    ("새 카드를 신청하고 싶어요", "카드"),
    ("카드 결제가 거절되었어요", "카드"),
    ("카드가 고장 났어요", "카드"),
    ("카드를 정지하고 싶어요", "카드"),
    ("송금이 아직 안 됐어요", "송금"),
    ("해외로 돈을 보내고 싶어요", "송금"),
    ("송금 수수료가 얼마예요", "송금"),
    ("친구에게 돈을 보내고 싶어요", "송금"),
    ("송금을 취소하고 싶어요", "송금"),
    ("계좌로 돈을 보냈어요", "송금"),
    ("비밀번호를 잊어버렸어요", "비밀번호"),
    ("비밀번호를 바꾸고 싶어요", "비밀번호"),
    ("비밀번호가 틀렸다고 나와요", "비밀번호"),
    ("비밀번호를 다시 설정해 주세요", "비밀번호"),
    ("비밀번호가 잠겼어요", "비밀번호"),
    ("새 비밀번호를 만들고 싶어요", "비밀번호"),
];
const GERMAN: &[&str] = &["Ich habe meine Karte verloren", "Überweisung ins Ausland", "Passwort vergessen"];

/// A SentencePiece (Unigram) tokenizer.json as XLM-RoBERTa's folders have
/// it: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, Metaspace pre-tokenizer,
/// `<s> $A </s>`. Whole words score above their letters.
fn unigram_tokenizer(texts: &[&str]) -> (serde_json::Value, usize) {
    let mut vocab: Vec<(String, f64)> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| (s.to_string(), 0.0)).collect();
    let mut seen = std::collections::HashSet::new();
    let mut add = |piece: String, score: f64, vocab: &mut Vec<(String, f64)>| {
        if seen.insert(piece.clone()) {
            vocab.push((piece, score));
        }
    };
    add("▁".into(), -3.0, &mut vocab);
    for t in texts {
        for w in t.split_whitespace() {
            add(format!("▁{w}"), -2.0, &mut vocab);
            for c in w.chars() {
                add(c.to_string(), -6.0, &mut vocab);
                add(format!("▁{c}"), -6.5, &mut vocab);
            }
        }
    }
    let special = |id: u32, s: &str| serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let n = vocab.len();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}
        },
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false}
    });
    (tok, n)
}

/// A tiny XLM-RoBERTa (positions from `pad_token_id + 1`, one token type)
/// with a Unigram tokenizer over `texts`, as a sentence-transformers folder
/// pooling by `pooling`.
fn tiny_xlm_roberta(dir: &Path, texts: &[&str], pooling: Pooling) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let (tok, vocab) = unigram_tokenizer(texts);
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let max_pos = 40;
    let cfg = serde_json::json!({
        "model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"], "hidden_act": "gelu",
        "vocab_size": vocab, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "intermediate_size": INTER, "max_position_embeddings": max_pos, "type_vocab_size": 1, "pad_token_id": 1,
        "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "position_embedding_type": "absolute", "initializer_range": 0.02
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    let cls = pooling == Pooling::Cls;
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        format!(r#"{{"word_embedding_dimension": {HIDDEN}, "pooling_mode_cls_token": {cls}, "pooling_mode_mean_tokens": {}}}"#, !cls),
    )
    .unwrap();
    std::fs::write(dir.join("sentence_bert_config.json"), r#"{"max_seq_length": 32, "do_lower_case": false}"#).unwrap();
    let mut rng = Rng(11);
    let mut m = HashMap::new();
    m.insert("embeddings.word_embeddings.weight".into(), rng.tensor(&[vocab, HIDDEN], 0.5, 0.0));
    m.insert("embeddings.position_embeddings.weight".into(), rng.tensor(&[max_pos, HIDDEN], 0.5, 0.0));
    m.insert("embeddings.token_type_embeddings.weight".into(), rng.tensor(&[1, HIDDEN], 0.5, 0.0));
    layer(&mut rng, &mut m, &[("norm", "embeddings.LayerNorm")]);
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let names = [
            ("qkv", format!("{p}.attention.self.query")),
            ("qkv", format!("{p}.attention.self.key")),
            ("qkv", format!("{p}.attention.self.value")),
            ("out", format!("{p}.attention.output.dense")),
            ("norm", format!("{p}.attention.output.LayerNorm")),
            ("up", format!("{p}.intermediate.dense")),
            ("down", format!("{p}.output.dense")),
            ("norm", format!("{p}.output.LayerNorm")),
        ];
        layer(&mut rng, &mut m, &names.iter().map(|(k, n)| (*k, n.as_str())).collect::<Vec<_>>());
    }
    m.insert("pooler.dense.weight".into(), rng.tensor(&[HIDDEN, HIDDEN], 0.3, 0.0));
    candle_core::safetensors::save(&m, dir.join("model.safetensors")).unwrap();
}

fn texts() -> Vec<&'static str> {
    KOREAN.iter().map(|(t, _)| *t).chain(GERMAN.iter().copied()).collect()
}

/// Pooled and L2-normalised rows of hidden states (b, len, h) with no padding.
fn pool(hidden: &Tensor, pooling: Pooling) -> Vec<f32> {
    let v = match pooling {
        Pooling::Mean => hidden.mean(1).unwrap(),
        Pooling::Cls => hidden.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(),
    };
    let n = v.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    v.broadcast_div(&n).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], min_cos: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.chunks(HIDDEN).zip(want.chunks(HIDDEN)).enumerate() {
        let cos: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
        assert!(cos >= min_cos, "{what}: text {i}: cosine {cos}");
    }
}

/// The embeddings differ from text to text (the check below is not vacuous).
fn assert_spread(e: &[f32]) {
    let rows: Vec<&[f32]> = e.chunks(HIDDEN).collect();
    let min = (1..rows.len()).map(|i| rows[0].iter().zip(rows[i]).map(|(a, b)| a * b).sum::<f32>()).fold(1.0, f32::min);
    assert!(min < 0.95, "every embedding is alike ({min})");
}

/// A head learns the labels of the embeddings (train accuracy).
fn head_learns(emb: &[f32], y: &[u32], k: usize) {
    let init = Head::zero_shot(&vec![0.0; k * HIDDEN], HIDDEN, k, 1.0);
    let cfg = HeadConfig { epochs: 300, weight_decay: 0.0, ..HeadConfig::default() };
    let head = Head::train(&init, emb, y, &vec![1.0; y.len()], &cfg).unwrap();
    let x = Tensor::from_slice(emb, (y.len(), HIDDEN), &Device::Cpu).unwrap();
    let p = head.predict(&x).unwrap();
    let right =
        p.chunks(k).zip(y).filter(|(row, &t)| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32 == t).count();
    assert!(right * 10 >= y.len() * 9, "the head fits {right} of {} training rows", y.len());
}

#[test]
fn distilbert_loads_embeds_and_trains_a_head() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("distil");
    tiny_distilbert(&dir);
    let texts = texts();
    let enc = Encoder::load(&dir, &Device::Cpu).unwrap();
    assert_eq!((enc.family, enc.pooling, enc.dim, enc.max_len), (Family::DistilBert, Pooling::Mean, HIDDEN, 64));
    let got = enc.embed(&texts, |_, _| {}).unwrap();
    assert_spread(&got);
    // candle-transformers' BERT on the weights read as BERT: the same vectors.
    let candle = Encoder::load_candle(&dir, &Device::Cpu).unwrap().embed(&texts, |_, _| {}).unwrap();
    assert_close(&got, &candle, 0.99999, "candle BERT");
    // candle-transformers' own DistilBERT on the original names. It runs
    // GELU's tanh approximation where Hugging Face's DistilBERT (and
    // labelrest) use the exact erf, hence a looser bound.
    let cfg: candle_transformers::models::distilbert::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap() };
    let model = candle_transformers::models::distilbert::DistilBertModel::load(vb, &cfg).unwrap();
    let ids = enc.tokenize(&texts).unwrap();
    let mut reference = Vec::new();
    for s in &ids {
        let input = Tensor::new(s.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let mask = Tensor::zeros((1, 1, 1, s.len()), DType::U8, &Device::Cpu).unwrap(); // nothing masked
        reference.extend(pool(&model.forward(&input, &mask).unwrap(), Pooling::Mean));
    }
    assert_close(&got, &reference, 0.999, "candle DistilBERT");
    let y: Vec<u32> = KOREAN.iter().map(|(_, l)| ["카드", "송금", "비밀번호"].iter().position(|x| x == l).unwrap() as u32).collect();
    head_learns(&got[..y.len() * HIDDEN], &y, 3);
}

#[test]
fn xlm_roberta_with_a_unigram_tokenizer_matches_candle() {
    let d = tempfile::tempdir().unwrap();
    let texts = texts();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let dir = d.path().join(format!("xlmr-{}", pooling.name()));
        tiny_xlm_roberta(&dir, &texts, pooling);
        let enc = Encoder::load(&dir, &Device::Cpu).unwrap();
        assert_eq!((enc.family, enc.pooling, enc.dim, enc.max_len), (Family::Roberta, pooling, HIDDEN, 32));
        // SentencePiece: whole Korean and German words, no unknown piece, <s> ... </s>.
        let ids = enc.tokenize(&texts).unwrap();
        for (t, s) in texts.iter().zip(&ids) {
            assert_eq!((s[0], *s.last().unwrap()), (0, 2), "{t}");
            assert!(!s.contains(&3), "{t}: an unknown piece in {s:?}");
            assert_eq!(s.len(), t.split_whitespace().count() + 2, "{t}: {s:?}");
        }
        let got = enc.embed(&texts, |_, _| {}).unwrap();
        assert_spread(&got);
        let candle = Encoder::load_candle(&dir, &Device::Cpu).unwrap().embed(&texts, |_, _| {}).unwrap();
        assert_close(&got, &candle, 0.99999, "candle BERT");
        // candle-transformers' own XLM-RoBERTa: positions from pad_token_id + 1.
        let cfg: candle_transformers::models::xlm_roberta::Config =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let vb =
            unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap() };
        let model = candle_transformers::models::xlm_roberta::XLMRobertaModel::new(&cfg, vb).unwrap();
        let mut reference = Vec::new();
        for s in &ids {
            let input = Tensor::new(s.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let mask = input.ones_like().unwrap();
            let types = input.zeros_like().unwrap();
            reference.extend(pool(&model.forward(&input, &mask, &types, None, None, None).unwrap(), pooling));
        }
        assert_close(&got, &reference, 0.99999, "candle XLM-RoBERTa");
        let y: Vec<u32> = KOREAN.iter().map(|(_, l)| ["카드", "송금", "비밀번호"].iter().position(|x| x == l).unwrap() as u32).collect();
        head_learns(&got[..y.len() * HIDDEN], &y, 3);
    }
    // Pooling is part of the model's identity (the embedding cache's key).
    let mean = labelrest::model::model_hash(&d.path().join("xlmr-mean")).unwrap();
    let cls = labelrest::model::model_hash(&d.path().join("xlmr-CLS")).unwrap();
    assert_ne!(mean, cls);
}

/// What a folder of an architecture labelrest does not run says; `new`
/// refuses such a folder, or one that pools by max, with that one line and
/// makes no session.
#[test]
fn an_unknown_architecture_is_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("gpt");
    tiny_distilbert(&dir);
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2", "n_embd": 32}"#).unwrap();
    let e = format!("{:#}", Encoder::load(&dir, &Device::Cpu).err().unwrap());
    assert!(e.contains("gpt2") && e.contains("not supported") && e.contains("XLM-RoBERTa") && e.contains("config.json"), "{e}");
    let max = d.path().join("max");
    tiny_xlm_roberta(&max, &texts(), Pooling::Mean);
    std::fs::write(max.join("1_Pooling/config.json"), r#"{"pooling_mode_max_tokens": true}"#).unwrap();
    let sessions = d.path().join("s");
    std::fs::create_dir_all(&sessions).unwrap();
    let data = common::write(
        d.path(),
        "t.csv",
        "text
카드를 잃어버렸어요
"
        .as_bytes(),
    );
    for (folder, says) in [(&dir, "model type 'gpt2' is not supported"), (&max, "pools by max")] {
        let o =
            labelrest(&sessions, &["new", "x", "--data", data.to_str().unwrap(), "--labels", "a,b", "--model", folder.to_str().unwrap()]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(says) && e.trim().lines().count() == 1, "{e}");
        assert!(!sessions.join("x").exists(), "a session was made");
    }
}

/// A session of Korean text with Korean label names and a multilingual
/// (XLM-RoBERTa, SentencePiece) encoder from a local folder: it imports,
/// takes the person's labels, ranks (retrain) and exports every row, the
/// text byte for byte.
#[test]
fn a_korean_session_imports_ranks_and_exports() {
    let d = tempfile::tempdir().unwrap();
    let texts = texts();
    let model = d.path().join("xlmr");
    tiny_xlm_roberta(&model, &texts, Pooling::Mean);
    let mut csv = String::from("text\n");
    for (t, _) in KOREAN {
        csv.push_str(t);
        csv.push('\n');
    }
    let data = common::write(d.path(), "ko.csv", csv.as_bytes());
    let sessions = d.path().join("s");
    std::fs::create_dir_all(&sessions).unwrap();
    let o = labelrest(
        &sessions,
        &["new", "ko", "--data", data.to_str().unwrap(), "--labels", "카드,송금,비밀번호", "--model", model.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Two labels a class from the person (rows 1, 2, 7, 8, 13, 14).
    let given = [(1, "카드"), (2, "카드"), (7, "송금"), (8, "송금"), (13, "비밀번호"), (14, "비밀번호")];
    let lines: String = given.iter().map(|(id, l)| format!("{id}\t{l}\n")).collect();
    let o = common::annotate(&sessions, "ko", &["--annotator", "민지"], &[], &lines);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with("ok ")).count(), given.len(), "{}", stdout(&o));
    let o = labelrest(&sessions, &["retrain", "ko"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("ko-out.csv");
    let o = labelrest(&sessions, &["export", "ko", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut r = csv::Reader::from_path(&out).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap_or_else(|| panic!("no column {n} in {h:?}"));
    let (id_c, text_c, label_c, source_c, who_c) = (col("id"), col("text"), col("label"), col("source"), col("annotator"));
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), KOREAN.len());
    for row in &rows {
        let id: usize = row[id_c].parse().unwrap();
        assert_eq!(&row[text_c], KOREAN[id - 1].0, "the text comes back byte for byte");
        assert!(["카드", "송금", "비밀번호"].contains(&&row[label_c]), "row {id}: label {:?}", &row[label_c]);
        match given.iter().find(|(g, _)| *g == id) {
            Some((_, l)) => assert_eq!((&row[label_c], &row[source_c], &row[who_c]), (*l, "person", "민지")),
            None => assert_eq!(&row[source_c], "model", "row {id}"),
        }
    }
}

/// A fine-tuned encoder is saved in BERT's names with its base's config
/// (as BERT), tokenizer and pooling files: the saved folder of either family
/// loads and embeds as the weights it was saved from.
#[test]
fn a_saved_encoder_of_either_family_reloads_as_itself() {
    let d = tempfile::tempdir().unwrap();
    let texts = texts();
    let distil = d.path().join("distil");
    tiny_distilbert(&distil);
    let xlmr = d.path().join("xlmr");
    tiny_xlm_roberta(&xlmr, &texts, Pooling::Cls);
    for base in [distil, xlmr] {
        let bert = labelrest::model::cpu::Bert::load(&base).unwrap();
        let out = base.with_extension("tuned");
        std::fs::create_dir_all(&out).unwrap();
        labelrest::model::family::write_folder_files(&base, &out).unwrap();
        bert.save(&out.join("model.safetensors")).unwrap();
        let a = Encoder::load(&base, &Device::Cpu).unwrap();
        let b = Encoder::load(&out, &Device::Cpu).unwrap();
        assert_eq!((b.family, b.pooling, b.max_len), (Family::Bert, a.pooling, a.max_len), "{}", base.display());
        let (ea, eb) = (a.embed(&texts, |_, _| {}).unwrap(), b.embed(&texts, |_, _| {}).unwrap());
        assert_close(&eb, &ea, 0.99999, &base.display().to_string());
        assert_eq!(a.tokenize(&texts).unwrap(), b.tokenize(&texts).unwrap());
    }
}

/// Folders made by Hugging Face transformers itself (tiny random
/// DistilBERT with a WordPiece tokenizer, XLM-RoBERTa with a SentencePiece
/// one; `scripts/make-family-fixtures.py`) embed as transformers embeds
/// them, on our CPU BERT and on candle's.
#[test]
fn transformers_own_folders_embed_as_transformers_does() {
    let fixtures = common::root().join("tests/fixtures");
    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("tiny_families.json")).unwrap()).unwrap();
    let texts: Vec<&str> = refs["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for (dir, key, family) in [("tiny-distilbert", "distilbert", Family::DistilBert), ("tiny-xlm-roberta", "xlm-roberta", Family::Roberta)]
    {
        let want: Vec<f32> =
            refs[key].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
        assert_eq!(want.len(), texts.len() * HIDDEN);
        for enc in
            [Encoder::load(&fixtures.join(dir), &Device::Cpu).unwrap(), Encoder::load_candle(&fixtures.join(dir), &Device::Cpu).unwrap()]
        {
            assert_eq!(enc.family, family);
            let ids = enc.tokenize(&texts).unwrap();
            assert!(ids.iter().all(|s| s.len() > 2), "{ids:?}");
            let got = enc.embed(&texts, |_, _| {}).unwrap();
            assert_spread(&got);
            assert_close(&got, &want, 0.9999, key);
        }
    }
}

/// Embedding caches are keyed by the model's hash. A BERT folder pooled by
/// the mean keeps the hash older versions gave it (its caches stay valid);
/// a RoBERTa-family folder, which older versions ran as BERT (positions
/// from 0), gets a new one, so that vectors embedded the old way are never
/// mixed with new ones.
#[test]
fn model_hashes_keep_valid_caches_and_drop_stale_ones() {
    use sha2::{Digest, Sha256};
    let old_hash = |dir: &Path| -> String {
        let mut h = Sha256::new();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            h.update(f.as_bytes());
            h.update(std::fs::read(dir.join(f)).unwrap());
        }
        if let Ok(s) = std::fs::read(dir.join("sentence_bert_config.json")) {
            h.update(&s);
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    };
    let bundled = common::root().join("assets/models/all-MiniLM-L6-v2");
    assert_eq!(labelrest::model::model_hash(&bundled).unwrap(), old_hash(&bundled));
    let xlmr = common::root().join("tests/fixtures/tiny-xlm-roberta");
    assert_ne!(labelrest::model::model_hash(&xlmr).unwrap(), old_hash(&xlmr));
}

/// A saved encoder takes every module folder its base's modules.json names,
/// wherever it is: a CLS-pooled base stays CLS-pooled once fine-tuned.
#[test]
fn a_saved_encoder_keeps_a_pooling_folder_of_any_name() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("xlmr");
    tiny_xlm_roberta(&base, &texts(), Pooling::Cls);
    std::fs::rename(base.join("1_Pooling"), base.join("pooling_here")).unwrap();
    let modules = std::fs::read_to_string(base.join("modules.json")).unwrap().replace("\"1_Pooling\"", "\"pooling_here\"");
    std::fs::write(base.join("modules.json"), modules).unwrap();
    assert_eq!(Encoder::load(&base, &Device::Cpu).unwrap().pooling, Pooling::Cls);
    let out = d.path().join("tuned");
    std::fs::create_dir_all(&out).unwrap();
    labelrest::model::family::write_folder_files(&base, &out).unwrap();
    labelrest::model::cpu::Bert::load(&base).unwrap().save(&out.join("model.safetensors")).unwrap();
    assert_eq!(Encoder::load(&out, &Device::Cpu).unwrap().pooling, Pooling::Cls);
}
