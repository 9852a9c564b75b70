#!/usr/bin/env python3
"""Writes tests/fixtures/tiny-distilbert/, tests/fixtures/tiny-xlm-roberta/
and tests/fixtures/tiny_families.json: two tiny random-weight encoders made
and saved by Hugging Face transformers itself (save_pretrained, safetensors)
with a WordPiece and a SentencePiece/Unigram tokenizer, and their embeddings
(mean over real tokens, L2-normalised) computed by transformers on a padded
batch. tests/families.rs checks labelrest's embeddings against them.

Run once, with a venv that has transformers and tokenizers:
    /work/venv/bin/python scripts/make-family-fixtures.py
"""
import json, pathlib, shutil

import tokenizers, torch, transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import DistilBertConfig, DistilBertModel, PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

root = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures"
torch.manual_seed(0)
texts = [
    "카드를 잃어버렸어요",
    "송금이 아직 안 됐어요",
    "비밀번호를 잊어버렸어요",
    "Ich habe meine Karte verloren",
    "Überweisung ins Ausland",
    "How do I reset my card PIN?",
    "ok",
]


def randomise(m):
    # Larger than the usual initialisation, so that texts embed far apart.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "LayerNorm" in n or "layer_norm" in n:
                p.copy_(1 + 0.2 * (torch.rand_like(p) * 2 - 1) if n.endswith("weight") else 0.1 * (torch.rand_like(p) * 2 - 1))
            else:
                p.copy_(0.3 * (torch.rand_like(p) * 2 - 1))


def embed(model, tok):
    b = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).tolist()


def fresh(name):
    d = root / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


out = {"how": f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, torch {torch.__version__}, CPU; "
       "mean over real tokens of a padded batch, L2-normalised; scripts/make-family-fixtures.py", "texts": texts}

# DistilBERT, WordPiece (BERT's normaliser, lower case).
norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
words = sorted({p for t in texts for p, _ in pre.pre_tokenize_str(norm.normalize_str(t))})
vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
for w in words:
    for piece in [w] + list(w) + ["##" + c for c in w]:
        vocab.setdefault(piece, len(vocab))
wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
wp.normalizer = normalizers.BertNormalizer(lowercase=True)
wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
wp.decoder = decoders.WordPiece()
d = fresh("tiny-distilbert")
wp.save(str(d / "tokenizer.json"))
m = DistilBertModel(DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)).eval()
randomise(m)
m.save_pretrained(d, safe_serialization=True)
out["distilbert"] = embed(m, PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"), pad_token="[PAD]"))

# XLM-RoBERTa, SentencePiece (Unigram) as XLM-R's folders have it.
pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
seen = {p for p, _ in pieces}
for t in texts:
    for w in t.split():
        for p, s in [("▁" + w, -2.0)] + [(c, -6.0) for c in w] + [("▁" + c, -6.5) for c in w]:
            if p not in seen:
                seen.add(p)
                pieces.append((p, s))
sp = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
sp.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
sp.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
d = fresh("tiny-xlm-roberta")
sp.save(str(d / "tokenizer.json"))
cfg = XLMRobertaConfig(vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       max_position_embeddings=40, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
m = XLMRobertaModel(cfg).eval()
randomise(m)
m.save_pretrained(d, safe_serialization=True)
out["xlm-roberta"] = embed(m, PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"), pad_token="<pad>"))

(root / "tiny_families.json").write_text(json.dumps(out) + "\n")
print("wrote", ", ".join(f"{p.name} ({sum(f.stat().st_size for f in p.iterdir()) // 1024} KiB)" for p in [root / "tiny-distilbert", root / "tiny-xlm-roberta"]))
