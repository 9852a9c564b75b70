#!/usr/bin/env python3
"""Keeps the rows of some labels of a dataset folder (train.csv, test.csv).

Usage: scripts/subset_labels.py SRC_DIR OUT_DIR LABEL [LABEL ...]
e.g.   scripts/subset_labels.py ../shared/data/trec_coarse /tmp/trec4 DESC ENTY HUM NUM
"""
import csv
import os
import sys

if len(sys.argv) < 4:
    sys.exit(__doc__.strip())
src, out, keep = sys.argv[1], sys.argv[2], set(sys.argv[3:])
os.makedirs(out, exist_ok=True)
for split in ("train", "test"):
    with open(os.path.join(src, f"{split}.csv"), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in keep]
    with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([r["text"], r["label"]] for r in rows)
    print(f"{split}: {len(rows)} rows")
