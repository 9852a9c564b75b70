#!/usr/bin/env bash
# The zero-shot floor (issue 9): the head alone (--mode head), 3 seeds,
# with the label prompts alone as the prior (--prior-rows 0, the default)
# and with the prompt's weight shared with the 20 pool rows per class the
# zero-shot head is surest of, as far as the zero-shot head is right on the
# labels above chance (--prior-rows 20). On six-class subsets of the demo
# data whose label names are words (made here from assets/demo) and on the
# shared datasets. Writes docs/results/zero-shot-floor/.
# Usage: scripts/zero-shot-floor.sh [DATA_DIR]      (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
cargo build --release -q
BIN=target/results-bin/labelrest-zsf
mkdir -p "$(dirname "$BIN")" && cp target/release/labelrest "$BIN"
OUT=docs/results/zero-shot-floor
SETS=target/zero-shot-floor
mkdir -p "$OUT" "$SETS"
git rev-parse --short HEAD > "$OUT/COMMIT"
python3 - "$SETS" <<'PY'
import csv, os, random, sys
out = sys.argv[1]
rows = {s: list(csv.DictReader(open(f"assets/demo/{s}.csv"))) for s in ("train", "test")}
labels = sorted(set(r["label"] for r in rows["train"]))
plain = {"lost_or_stolen_card": "lost or stolen card", "exchange_rate": "exchange rate", "passcode_forgotten": "forgotten passcode",
         "request_refund": "refund", "cash_withdrawal_charge": "cash withdrawal fee", "card_arrival": "card delivery"}
sets = {"demo-plain": plain}
rnd = random.Random(7)
for k in range(6):
    sets[f"demo-sub{k}"] = {l: l.replace("_", " ") for l in rnd.sample(labels, 6)}
for name, names in sets.items():
    os.makedirs(f"{out}/{name}", exist_ok=True)
    for s in ("train", "test"):
        with open(f"{out}/{name}/{s}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for r in rows[s]:
                if r["label"] in names:
                    w.writerow([r["text"], names[r["label"]]])
PY
run() {
  local name=$1 train=$2 test=$3 max=$4 pr=$5
  "$BIN" simulate --train "$train" --test "$test" --seeds 3 --mode head --max-labels "$max" --prior-rows "$pr" \
    --name "$name prior-rows $pr" --cache "target/sim-cache/$name" --out "$OUT/$name-$pr" > /dev/null 2> "$OUT/$name-$pr.log"
  sed -n 3p "$OUT/$name-$pr/table.md"
}
for set in demo-plain demo-sub0 demo-sub1 demo-sub2 demo-sub3 demo-sub4 demo-sub5; do
  for pr in 0 20; do run "$set" "$SETS/$set/train.csv" "$SETS/$set/test.csv" 100 "$pr"; done
done
for ds in trec_coarse financial_phrasebank_allagree sms_spam anote_banking trec_fine; do
  for pr in 0 20; do run "$ds" "$DATA/$ds/train.csv" "$DATA/$ds/test.csv" 150 "$pr"; done
done
