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

DEVICE=cuda runs either on the GPU (timings synchronised with it; steps 2-11 of
the first 176 texts); BATCH sets embed's batch size (default 32,
sentence-transformers' own).

  python scripts/pytorch_bench.py all MODEL_DIR DATA.csv LIMIT THREADS

all: embed at batch 32 and 256, then the step with the top 3 and all 6 layers,
in one process (the GPU check: torch's start paid once).
"""
import csv, os, sys, time
import torch
from sentence_transformers import SentenceTransformer

what, model_dir, data = sys.argv[1], sys.argv[2], sys.argv[3]
threads = int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
rows = list(csv.DictReader(open(data, newline='', encoding='utf-8')))
# The bundled weights are float16; compute in float32, as labelrest does.
dev = os.environ.get('DEVICE', 'cpu')
st = SentenceTransformer(model_dir, device=dev, model_kwargs={'dtype': torch.float32})
st = st.float()


def sync():
    if dev != 'cpu':
        torch.cuda.synchronize()


def embed(limit, batch):
    texts = [r['text'] for r in rows]
    texts = (texts * (limit // max(len(texts), 1) + 1))[:limit]
    st.encode(texts[:64 if dev == 'cpu' else 1024], batch_size=batch)
    sync()
    t = time.time()
    st.encode(texts, batch_size=batch)
    sync()
    secs = time.time() - t
    print(f"pytorch embed on {dev}: {len(texts)} texts, batch {batch}, in {secs:.2f}s = {len(texts) / secs:.1f} sentences/s; threads {torch.get_num_threads()}")


def step(layers):
    bert = st[0].auto_model
    tok = st.tokenizer
    names = sorted({r['label'] for r in rows})
    n_steps = 6 if dev == 'cpu' else 11
    texts = [r['text'] for r in rows[:16 * n_steps]]
    y = torch.tensor([names.index(r['label']) for r in rows[:16 * n_steps]], device=dev)
    n_layers = len(bert.encoder.layer)
    for p in bert.parameters():
        p.requires_grad = False
    for layer in bert.encoder.layer[n_layers - layers:]:
        for p in layer.parameters():
            p.requires_grad = True
    head = torch.nn.Linear(bert.config.hidden_size, len(names)).to(dev)
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-4)
    bert.train()
    times = []
    for s in range(n_steps):
        b = tok(texts[s * 16:(s + 1) * 16], padding=True, truncation=True, max_length=256, return_tensors='pt').to(dev)
        sync()
        t = time.time()
        out = bert(**b).last_hidden_state
        m = b['attention_mask'].unsqueeze(-1).float()
        e = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
        loss = torch.nn.functional.cross_entropy(head(e), y[s * 16:(s + 1) * 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        times.append(time.time() - t)
    bert.eval()
    print(f"pytorch step on {dev}, batch 16, top {layers} of {n_layers} layers: {sum(times[1:]) / len(times[1:]):.4f}s")


if what == 'embed':
    embed(int(sys.argv[4]), int(os.environ.get('BATCH', '32')))
elif what == 'step':
    step(int(sys.argv[4]))
elif what == 'all':
    # The GPU check's PyTorch side in one process: embed LIMIT texts at batch 32
    # and 256, then a step training the top 3 layers and one training all 6.
    embed(int(sys.argv[4]), 32)
    embed(int(sys.argv[4]), 256)
    step(3)
    step(6)
