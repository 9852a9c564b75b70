#!/usr/bin/env python3
"""Makes a development split: a dataset folder whose test.csv never touches
the real test split, so a setting can be chosen there and only then
measured on the real one (choosing on the test split's seeds fits noise).

Usage: scripts/dev_split.py SRC_DIR OUT_DIR N [FROM_CSV]
  Without FROM_CSV: N random rows of SRC_DIR/train.csv become the dev
  test.csv and the rest its train.csv.
  With FROM_CSV: train.csv is SRC_DIR's as it is and test.csv is N random
  rows of FROM_CSV that share no text with SRC_DIR's train or test
  (anote_banking: its pool and test both come from BANKING77's test split,
  so BANKING77's train split is new to it).
e.g. scripts/dev_split.py ../shared/data/trec_coarse /tmp/dev/trec_coarse 500
     scripts/dev_split.py ../shared/data/anote_banking /tmp/dev/anote_banking 2000 ../shared/data/banking77/train.csv
The draw is fixed (random.Random(12345)), so the split is the same each time.
"""
import csv
import os
import random
import sys


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


if len(sys.argv) not in (4, 5):
    sys.exit(__doc__.strip())
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(12345)
train = read(os.path.join(src, "train.csv"))
if len(sys.argv) == 5:
    seen = {t for t, _ in train} | {t for t, _ in read(os.path.join(src, "test.csv"))}
    labels = {l for _, l in train} | {l for _, l in read(os.path.join(src, "test.csv"))}
    fresh = [r for r in read(sys.argv[4]) if r[0] not in seen and r[1] in labels]
    rng.shuffle(fresh)
    test = fresh[:n]
else:
    rows = train[:]
    rng.shuffle(rows)
    test, train = rows[:n], rows[n:]
os.makedirs(out, exist_ok=True)
write(os.path.join(out, "train.csv"), train)
write(os.path.join(out, "test.csv"), test)
print(f"{out}: train {len(train)} rows, test {len(test)} rows")
