"""The PyTorch side of scripts/compare-pytorch.sh: sentence-transformers on the
same model, texts and threads as `labelrest bench embed` and `labelrest bench
finetune`.

  python scripts/pytorch_bench.py embed MODEL_DIR DATA.csv LIMIT THREADS
  python scripts/pytorch_bench.py step MODEL_DIR DATA.csv LAYERS THREADS

embed: SentenceTransformer(MODEL_DIR).encode of the first LIMIT texts (batch 32,
as sentence-transformers sorts and batches them), after a warm-up; prints
sentences/s.
step: one training step as labelrest's fine-tune takes it: 16 texts, mean
pooling, L2 norm, a linear head, cross-entropy, AdamW, dropout on; only the top
LAYERS layers (and the head) learn, the others run under no_grad; the mean over
steps 2-6 of the first 96 texts; prints seconds a step.
"""
import csv, sys, time
import torch
from sentence_transformers import SentenceTransformer

what, model_dir, data = sys.argv[1], sys.argv[2], sys.argv[3]
threads = int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
rows = list(csv.DictReader(open(data, newline='', encoding='utf-8')))
# The bundled weights are float16; compute in float32, as labelrest does.
st = SentenceTransformer(model_dir, device='cpu', model_kwargs={'dtype': torch.float32})
st = st.float()

if what == 'embed':
    limit = int(sys.argv[4])
    texts = [r['text'] for r in rows[:limit]]
    st.encode(texts[:64], batch_size=32)
    t = time.time()
    st.encode(texts, batch_size=32)
    secs = time.time() - t
    print(f"pytorch embed: {len(texts)} texts in {secs:.2f}s = {len(texts) / secs:.1f} sentences/s; threads {torch.get_num_threads()}")
elif what == 'step':
    layers = int(sys.argv[4])
    bert = st[0].auto_model
    tok = st.tokenizer
    names = sorted({r['label'] for r in rows})
    texts = [r['text'] for r in rows[:96]]
    y = torch.tensor([names.index(r['label']) for r in rows[:96]])
    n_layers = len(bert.encoder.layer)
    for p in bert.parameters():
        p.requires_grad = False
    for layer in bert.encoder.layer[n_layers - layers:]:
        for p in layer.parameters():
            p.requires_grad = True
    head = torch.nn.Linear(bert.config.hidden_size, len(names))
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-4)
    bert.train()
    times = []
    for s in range(6):
        b = tok(texts[s * 16:(s + 1) * 16], padding=True, truncation=True, max_length=256, return_tensors='pt')
        t = time.time()
        out = bert(**b).last_hidden_state
        m = b['attention_mask'].unsqueeze(-1).float()
        e = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
        loss = torch.nn.functional.cross_entropy(head(e), y[s * 16:(s + 1) * 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.time() - t)
    print(f"pytorch step, batch 16, top {layers} of {n_layers} layers: {sum(times[1:]) / len(times[1:]):.3f}s")
