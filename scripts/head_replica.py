#!/usr/bin/env python3
"""A NumPy replica of `labelrest simulate --mode head` on a two-class set:
the zero-shot head (label prompts over temperature 0.05), margin ranking over
a random 90% of the pool per seed, ten labels a batch, the head trained from
zero as `model::head::Head::train` does (weighted cross-entropy, the person's
labels balanced over classes, one label-prompt pseudo-example per class at
weight 5/(1 + its labels), weights normalised to sum 1, AdamW lr 0.1, weight
decay 1, 100 full-batch epochs). No fine-tune, no calibration (which does not
move a two-class argmax), no self-training (off below 3 classes). It exists
to try changes to the head in seconds before building them; what it prints
is not a figure of labelrest.

Optionally an L2 pull of each class's column towards the zero-shot head's,
of strength A0 / (1 + the class's labels)^POWER (`--anchor A0 --power P`).

  scripts/head_replica.py --cache target/sim-cache/sst2/emb-HASH.f32 \
      --prompts PROMPTS.f32 --data ../shared/data/sst2 [--anchor A0 --power P]

CACHE: simulate's embedding cache of that data set (train rows, then test
rows, 384 float32 each). PROMPTS: the embeddings of the label names in label
order (negative, positive), e.g. the cache of a session made from a CSV
holding just those two texts (`labelrest new` then `labelrest retrain`).
"""
import argparse, csv
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument('--cache', required=True)
ap.add_argument('--prompts', required=True)
ap.add_argument('--data', required=True)
ap.add_argument('--anchor', type=float, default=0.0)
ap.add_argument('--power', type=float, default=2.0)
ap.add_argument('--seeds', type=int, default=3)
a = ap.parse_args()

E = np.fromfile(a.cache, dtype=np.float32).reshape(-1, 384)
P = np.fromfile(a.prompts, dtype=np.float32).reshape(-1, 384)
train = list(csv.DictReader(open(f'{a.data}/train.csv', newline='', encoding='utf-8')))
test = list(csv.DictReader(open(f'{a.data}/test.csv', newline='', encoding='utf-8')))
names = sorted({r['label'] for r in train})
k = len(names)
assert P.shape[0] == k, f'{P.shape[0]} prompt embeddings for {k} labels'
n = len(train)
ytr = np.array([names.index(r['label']) for r in train])
yte = np.array([names.index(r['label']) for r in test])
X, XT = E[:n], E[n:n + len(test)]
Z = (P.T / 0.05).astype(np.float32)  # the zero-shot head


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit(idx):
    y = ytr[idx]
    counts = np.bincount(y, minlength=k)
    present = (counts > 0).sum()
    x = np.concatenate([X[idx], P])
    yy = np.concatenate([y, np.arange(k)])
    w = np.concatenate([len(idx) / (present * counts[y]), 5.0 / (1 + counts)]).astype(np.float32)
    w /= w.sum()
    pull = (a.anchor / (1 + counts) ** a.power).astype(np.float32)
    W = np.zeros((384, k), np.float32)
    b = np.zeros(k, np.float32)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    Y = np.eye(k, dtype=np.float32)[yy]
    for t in range(1, 101):
        g = (softmax(x @ W + b) - Y) * w[:, None]
        gW, gb = x.T @ g + 2 * pull[None, :] * (W - Z), g.sum(0)
        for p, gr, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
            p *= 1 - 0.1 * 1.0
            m[:] = 0.9 * m + 0.1 * gr
            v[:] = 0.999 * v + 0.001 * gr * gr
            p -= 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return W, b


def run(seed):
    allowed = np.random.RandomState(seed).rand(n) < 0.9
    labelled = []
    W, b = Z, np.zeros(k, np.float32)
    accs = [((XT @ W + b).argmax(1) == yte).mean()]
    while len(labelled) < 150:
        p = np.sort(softmax(X @ W + b), 1)
        margin = p[:, -1] - p[:, -2]
        margin[~allowed] = 9
        margin[labelled] = 9
        labelled += list(np.argsort(margin, kind='stable')[:10])
        W, b = fit(np.array(labelled))
        accs.append(((XT @ W + b).argmax(1) == yte).mean())
    return np.array(accs)


r = np.array([run(s) for s in range(a.seeds)])
at = [0, 1, 2, 3, 5, 10, 15]
print(f'anchor {a.anchor} power {a.power}: acc at ' + ', '.join(f'{10 * i}: {r.mean(0)[i]:.3f}' for i in at)
      + f'; worst vs zero-shot {(r.min(0) - r[0, 0]).min():+.3f}')
