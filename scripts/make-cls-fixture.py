#!/usr/bin/env python3
"""Writes tests/fixtures/cls_embeddings.json: sentence-transformers' own
embeddings of the texts of tests/fixtures/reference_embeddings.json by the
bundled MiniLM's weights with a CLS-token pooling config (a copy of
assets/models/all-MiniLM-L6-v2 whose 1_Pooling/config.json pools by the CLS
token). tests/encoder.rs builds the same folder and compares.

Run once, with a venv that has sentence-transformers:
    /work/venv/bin/python scripts/make-cls-fixture.py
"""
import json, pathlib, shutil, tempfile

import sentence_transformers, torch
from sentence_transformers import SentenceTransformer

root = pathlib.Path(__file__).resolve().parent.parent
texts = [i["text"] for i in json.loads((root / "tests/fixtures/reference_embeddings.json").read_text())["items"]]
with tempfile.TemporaryDirectory() as tmp:
    d = pathlib.Path(tmp) / "cls-model"
    shutil.copytree(root / "assets/models/all-MiniLM-L6-v2", d)
    cfg = json.loads((d / "1_Pooling/config.json").read_text())
    cfg["pooling_mode_cls_token"] = True
    cfg["pooling_mode_mean_tokens"] = False
    (d / "1_Pooling/config.json").write_text(json.dumps(cfg, indent=2))
    # The bundled weights are float16; run them in float32 as labelrest does.
    model = SentenceTransformer(str(d), device="cpu", model_kwargs={"dtype": torch.float32})
    emb = model.encode(texts, batch_size=4, convert_to_numpy=True)
out = {
    "model": "assets/models/all-MiniLM-L6-v2 with 1_Pooling/config.json set to CLS-token pooling",
    "how": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, CPU; "
    "SentenceTransformer(folder, model_kwargs={dtype: float32}).encode(texts), its own Normalize module; scripts/make-cls-fixture.py",
    "items": [{"text": t, "embedding": [round(float(x), 7) for x in e]} for t, e in zip(texts, emb)],
}
(root / "tests/fixtures/cls_embeddings.json").write_text(json.dumps(out) + "\n")
print(f"wrote {len(texts)} embeddings of dimension {emb.shape[1]}")
