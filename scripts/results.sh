#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: simulations on ../shared/data (not shipped).
# Usage: scripts/results.sh [DATA_DIR]     (about 2.5 hours on 2 cores)
#        (part 1 alone about 90 minutes, sst2 30 of them)
#        PARTS="1 2" scripts/results.sh    (only some parts)
#        DATASETS="trec_coarse" scripts/results.sh    (only some datasets)
# Run it on a quiet machine: with the default mode the simulated person
# labels a row every 4 s (--pace) and a CPU fine-tune lands at the batch
# boundary its measured time reaches, so a busy machine can delay it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PARTS=${PARTS:-1 2 3 4 5 6}
cargo build --release -q
# A copy: a build during the run cannot change the binary half-way.
BIN=target/results-bin/labelrest
mkdir -p "$(dirname "$BIN")" && cp target/release/labelrest "$BIN"
OUT=docs/results
DATASETS=${DATASETS:-trec_coarse financial_phrasebank_allagree sms_spam trec_fine banking77 anote_banking sst2}
# The commit measured (taken now: commits made during the run do not count).
HEAD_AT_START=$(git rev-parse --short HEAD)
echo "parts $PARTS: commit $HEAD_AT_START$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')" >> "$OUT/COMMIT"
# Parts 2-5 run their datasets that DATASETS names (all by default).
wanted() { [[ " $DATASETS " == *" $1 "* ]]; }
run() {
  local name=$1 ds=$2; shift 2
  mkdir -p "$OUT/$name"
  local t=$SECONDS
  "$BIN" simulate --train "$DATA/$ds/train.csv" --test "$DATA/$ds/test.csv" "$@" \
    --cache "target/sim-cache/$ds" --out "$OUT/$name" > "$OUT/$name/table.txt" 2> "$OUT/$name/stderr.log"
  echo "$HEAD_AT_START" > "$OUT/$name/COMMIT"
  echo "$name done in $((SECONDS - t)) s"
}
for part in $PARTS; do
  case $part in
    # 1. What a user gets: no flags (mode auto: the encoder fine-tuned during
    #    the run on the workstation's schedule, checked before it is used).
    1) for ds in $DATASETS; do run "$ds" "$ds" --seeds 3 --name "$ds"; done ;;
    # 2. The head alone on the frozen encoder (--mode head). banking77 and
    #    anote_banking are left out: with 77 classes the default fine-tunes
    #    from 154 labels on, so within 150 it is the head alone already.
    2) for ds in trec_coarse financial_phrasebank_allagree sms_spam trec_fine; do
         wanted "$ds" || continue
         run "$ds-head" "$ds" --seeds 3 --mode head --name "$ds head"
       done ;;
    # 3. The swap-in check against swapping every fine-tuned encoder in.
    3) for ds in trec_coarse financial_phrasebank_allagree; do
         wanted "$ds" || continue
         run "$ds-swap-always" "$ds" --seeds 3 --swap-always --name "$ds swap-always"
       done ;;
    # 4. The review of the person's labels: the simulated person slips on 5%.
    4) for ds in banking77 trec_coarse; do wanted "$ds" || continue; run "$ds-noise" "$ds" --seeds 3 --noise 0.05 --name "$ds noise 0.05"; done ;;
    # 5. When to stop: the stopping signal on a budget twice the paper's, the
    #    head alone (a fine-tune on every batch to 300 labels is hours on 2 cores).
    5) for ds in trec_coarse financial_phrasebank_allagree sms_spam banking77; do
         wanted "$ds" || continue
         run "$ds-stop" "$ds" --seeds 3 --mode head --max-labels 300 --name "$ds head"
       done ;;
    # 6. When the first fine-tune starts: one label a class (the default up
    #    to 50 classes) on the 77 intents of anote_banking (whose default is two).
    6) run "anote_banking-from77" anote_banking --seeds 3 --ft-from 77 --name "anote_banking ft-from 77" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
