#!/usr/bin/env python3
"""A NumPy replica of `labelrest simulate --mode head`, to try changes to the
head in seconds before building them; what it prints is not a figure of
labelrest.

What it replicates: the zero-shot head (label prompts over temperature 0.05);
margin ranking over a random 90% of the pool per seed, ten labels a batch; the
head trained from zero as `model::head::Head::train` does (weighted
cross-entropy, the person's labels balanced over the classes present, one
label-prompt pseudo-example per class at weight 5/(1 + its labels), weights
normalised to sum 1, AdamW lr 0.1, weight decay 1, 100 full-batch epochs);
self-training as the engine's `auto` with a fine-tuned encoder (from 3
classes and 50 pool rows a class: the 50 surest unlabelled rows per
predicted class at weight 0.3, 50 more epochs). No fine-tune, no
calibration; cross-validation with 5 folds where the engine has 10.

Variants (--variant):
  none     the head as it is
  anchor   an L2 pull of each class's column towards the zero-shot head's,
           A0 / (1 + the class's labels)^POWER (`simulate --head-anchor A0
           --head-anchor-fade POWER`)
  trust    the same pull times the zero-shot head's accuracy on the labels
           above chance (as `--prior-rows` measures it)
  mix      the model is the trained and zero-shot heads' weights mixed by the
           zero-shot head's posterior weight, sigmoid(A0 - evidence), the
           evidence the labels' summed log-likelihood ratio (trained head
           cross-validated against the zero-shot head), leaving out labels
           with no class-mate in the other folds (`simulate --zero-shot-odds
           A0`); with --rank-mixed the rows are ranked by the mix, else (as
           labelrest) by the trained head

  scripts/head_replica.py --cache target/sim-cache/sst2/emb-HASH.f32 \\
      --prompts PROMPTS.f32 --data ../shared/data/sst2 [--variant mix --a0 3]

CACHE: simulate's embedding cache of that data set (train rows, then test
rows, 384 float32 each). PROMPTS: the embeddings of the label names (`_` read
as a space) in sorted label order, e.g. simulate's cache of a data set whose
train and test files each hold those names as texts, one row per label.
"""
import argparse, csv
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument('--cache', required=True)
ap.add_argument('--prompts', required=True)
ap.add_argument('--data', required=True)
ap.add_argument('--variant', default='none', choices=['none', 'anchor', 'trust', 'mix'])
ap.add_argument('--a0', type=float, default=3.0)
ap.add_argument('--power', type=float, default=2.0)
ap.add_argument('--rank-mixed', action='store_true')
ap.add_argument('--seeds', type=int, default=3)
a = ap.parse_args()

E = np.fromfile(a.cache, dtype=np.float32).reshape(-1, 384)
train = list(csv.DictReader(open(f'{a.data}/train.csv', newline='', encoding='utf-8')))
test = list(csv.DictReader(open(f'{a.data}/test.csv', newline='', encoding='utf-8')))
names = sorted({r['label'] for r in train + test})
k = len(names)
P = np.fromfile(a.prompts, dtype=np.float32).reshape(-1, 384)[:k]
assert P.shape[0] == k, f'{P.shape[0]} prompt embeddings for {k} labels'
n = len(train)
ytr = np.array([names.index(r['label']) for r in train])
yte = np.array([names.index(r['label']) for r in test])
X, XT = E[:n], E[n:n + len(test)]
Z = (P.T / 0.05).astype(np.float32)  # the zero-shot head
SELF_TRAIN = k >= 3 and n >= 50 * k
FOLDS = 5


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def train_head(x, yy, w, pull, W0, epochs=100):
    w = (w / w.sum()).astype(np.float32)
    W = np.zeros((384, k), np.float32)
    b = np.zeros(k, np.float32)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    Y = np.eye(k, dtype=np.float32)[yy]
    for t in range(1, epochs + 1):
        g = (softmax(x @ W + b) - Y) * w[:, None]
        gW, gb = x.T @ g, g.sum(0)
        if pull is not None:
            gW = gW + 2 * pull[None, :] * (W - W0)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        for p, gr, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
            p *= 1 - 0.1
            m[:] = 0.9 * m + 0.1 * gr
            v[:] = 0.999 * v + 0.001 * gr * gr
            p -= 0.1 * (m / c1) / (np.sqrt(v / c2) + 1e-8)
    return W, b


def fit(idx, A=0.0):
    y = ytr[idx]
    counts = np.bincount(y, minlength=k)
    present = max((counts > 0).sum(), 1)
    x = np.concatenate([X[idx], P])
    yy = np.concatenate([y, np.arange(k)])
    w = np.concatenate([len(idx) / (present * counts[y]), 5.0 / (1 + counts)]).astype(np.float32)
    pull = (A / (1 + counts) ** a.power).astype(np.float32) if A > 0 else None
    W, b = train_head(x, yy, w, pull, Z)
    if SELF_TRAIN:
        pr = softmax(X @ W + b)
        pred, prob = pr.argmax(1), pr.max(1)
        lab = np.zeros(n, bool)
        lab[idx] = True
        xs, ys, ws = [x], [yy], [w]
        for c in range(k):
            cand = np.where((pred == c) & ~lab)[0]
            top = cand[np.argsort(-prob[cand], kind='stable')[:50]]
            xs.append(X[top]); ys.append(np.full(len(top), c)); ws.append(np.full(len(top), 0.3, np.float32))
        W, b = train_head(np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), pull, W, epochs=50)
    return W, b


def zero_shot_share(idx):
    if a.a0 <= 0:
        return 0.0
    if len(idx) < 10:
        return 1 / (1 + np.exp(-a.a0))
    y = ytr[idx]
    fold = np.arange(len(idx)) % FOLDS
    pz = softmax(X[idx] @ Z)[np.arange(len(y)), y]
    ph = np.zeros(len(y))
    counted = np.zeros(len(y), bool)
    for f in range(FOLDS):
        tr, he = fold != f, fold == f
        W, b = fit(idx[tr])
        ph[he] = softmax(X[idx[he]] @ W + b)[np.arange(he.sum()), y[he]]
        have = set(y[tr].tolist())
        counted[he] = [c in have for c in y[he]]
    evidence = (np.log(np.maximum(ph, 1e-12)) - np.log(np.maximum(pz, 1e-12)))[counted].sum()
    return 1 / (1 + np.exp(-(a.a0 - evidence)))


def model(idx):
    """(the head shown and scored, the head that ranks)"""
    if a.variant == 'none':
        h = fit(idx)
        return h, h
    if a.variant == 'anchor':
        h = fit(idx, a.a0)
        return h, h
    if a.variant == 'trust':
        right = ((X[idx] @ Z).argmax(1) == ytr[idx]).mean()
        trust = float(np.clip((right - 1 / k) / (1 - 1 / k), 0, 1))
        h = fit(idx, a.a0 * trust)
        return h, h
    W, b = fit(idx)
    s = zero_shot_share(idx)
    mixed = ((1 - s) * W + s * Z, (1 - s) * b)
    return mixed, (mixed if a.rank_mixed else (W, b))


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
        (Ws, bs), (W, b) = model(np.array(labelled))
        accs.append(((XT @ Ws + bs).argmax(1) == yte).mean())
    return np.array(accs)


r = np.array([run(s) for s in range(a.seeds)])
at = [0, 1, 2, 3, 5, 10, 15]
print(f'{a.variant} A0 {a.a0}' + (f' power {a.power}' if a.variant in ('anchor', 'trust') else '')
      + (' ranked by the mix' if a.rank_mixed else '') + ': acc at '
      + ', '.join(f'{10 * i}: {r.mean(0)[i]:.3f}' for i in at)
      + f'; worst vs zero-shot {(r.min(0) - r[0, 0]).min():+.3f}')
