#!/usr/bin/env python3
"""Where a coarse label set's held-out errors fall among the finer labels of
the same texts: joins `simulate`'s predictions.csv with a test file that
labels the same texts more finely (TREC coarse with TREC fine), and prints,
per fine label, its held-out rows, its share of the test and of the
training split, the errors a run makes on it and its error rate.

Usage: scripts/errors_by_fine_label.py OUT/predictions.csv FINE_DIR [TOP]
  e.g. scripts/errors_by_fine_label.py out/trec_coarse/predictions.csv ../shared/data/trec_fine 12
"""
import collections
import csv
import sys
from pathlib import Path


def main(pred_path, fine_dir, top=12):
    fine_dir = Path(fine_dir)
    fine = {r["text"]: r["label"] for r in csv.DictReader(open(fine_dir / "test.csv", newline=""))}
    train = collections.Counter(r["label"] for r in csv.DictReader(open(fine_dir / "train.csv", newline="")))
    test = collections.Counter(fine.values())
    n_train, n_test = sum(train.values()), sum(test.values())
    rows = list(csv.DictReader(open(pred_path, newline="")))
    runs = {(r["strategy"], r["seed"]) for r in rows}
    missing = sum(1 for r in rows if r["text"] not in fine)
    if missing:
        sys.exit(f"error: {missing} rows of {pred_path} have no text in {fine_dir / 'test.csv'}")
    errors = collections.Counter(fine[r["text"]] for r in rows if r["label"] != r["predicted"])
    into = collections.defaultdict(collections.Counter)
    for r in rows:
        if r["label"] != r["predicted"]:
            into[fine[r["text"]]][r["predicted"]] += 1
    n = len(runs)
    total = sum(errors.values()) / n
    print(f"{len(runs)} runs; {total:.1f} errors a run on {n_test} held-out rows (accuracy {1 - total / n_test:.3f})\n")
    print("| fine label | test rows | share of test | share of train | errors a run | error rate | mostly taken for |")
    print("|---|---|---|---|---|---|---|")
    for f, e in errors.most_common(int(top)):
        e /= n
        taken = into[f].most_common(1)[0][0]
        print(f"| {f} | {test[f]} | {test[f] / n_test:.3f} | {train[f] / n_train:.4f} | {e:.1f} | {e / test[f]:.2f} | {taken} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
