#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: simulations on ../shared/data (not shipped).
# Usage: scripts/results.sh [DATA_DIR]   (about 15 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
BIN=target/release/labelrest
cargo build --release -q
OUT=docs/results
run() { local name=$1; shift; mkdir -p "$OUT/$name"; "$BIN" simulate "$@" --cache target/sim-cache --out "$OUT/$name" > "$OUT/$name/table.txt" 2> "$OUT/$name/stderr.log"; echo "$name done"; }
# 1. Strategies, defaults (self-training auto, label-prompt prior 1), 3 seeds.
for ds in banking77 anote_banking trec_coarse trec_fine financial_phrasebank_allagree; do
  run "$ds" --train "$DATA/$ds/train.csv" --test "$DATA/$ds/test.csv" --strategy margin,entropy,random,diverse --seeds 3
done
# 2. Self-training on and off (margin).
for ds in banking77 trec_coarse trec_fine financial_phrasebank_allagree; do
  for st in on off; do
    run "$ds-st-$st" --train "$DATA/$ds/train.csv" --test "$DATA/$ds/test.csv" --strategy margin --seeds 3 --self-training $st --name "$ds st=$st"
  done
done
# 3. TREC coarse with label descriptions.
run trec_coarse-descriptions --train "$DATA/trec_coarse/train.csv" --test "$DATA/trec_coarse/test.csv" --strategy margin --seeds 3 \
  --labels-file "$OUT/trec_coarse.labels.tsv" --name "trec_coarse described"
# 4. Without the label-prompt prior.
for ds in banking77 trec_coarse financial_phrasebank_allagree; do
  run "$ds-noprior" --train "$DATA/$ds/train.csv" --test "$DATA/$ds/test.csv" --strategy margin --seeds 3 --prior-weight 0 --name "$ds prior=0"
done
# 5. Fine-tuning the encoder after the last batch (CPU: one seed each).
for ds in banking77 trec_coarse financial_phrasebank_allagree; do
  for mode in finetune contrastive; do
    run "$ds-$mode" --train "$DATA/$ds/train.csv" --test "$DATA/$ds/test.csv" --strategy margin --seeds 1 --mode $mode --name "$ds"
  done
done
