#!/usr/bin/env bash
# labelrest against sentence-transformers with PyTorch, side by side in one
# run, on this machine's CPU: embedding throughput on short and long texts,
# and one fine-tune step (the default top layers, and all layers); prints
# the ratios (above 1: labelrest is faster). docs/BENCHMARKS.md records them.
#
#   scripts/compare-pytorch.sh [DATA_DIR] [THREADS]
#
# Builds a venv with sentence-transformers from PyPI in target/pytorch-env
# (the torch wheel is large; it runs on the CPU) unless $PYTORCH_ENV names one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
THREADS=${2:-$(nproc)}
ENV=${PYTORCH_ENV:-target/pytorch-env}
MODEL=assets/models/all-MiniLM-L6-v2
BIN=target/release/labelrest
LIMIT=${LIMIT:-2000}
if [ ! -x "$ENV/bin/python" ] || ! "$ENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  python3 -m venv "$ENV"
  "$ENV/bin/pip" install -q torch sentence-transformers
fi
cargo build --release -q
export LABELREST_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
PY="$ENV/bin/python scripts/pytorch_bench.py"
num() { grep -o "$1" | head -n1 | grep -o '[0-9.]*' | head -n1; }
echo "machine: $(lscpu | sed -n 's/Model name: *//p' | head -n1), $THREADS threads; $(date -u +%F)"
echo "versions: $($ENV/bin/python -c 'import torch, sentence_transformers as s; print("torch", torch.__version__, "sentence-transformers", s.__version__)')"
ROUNDS=${ROUNDS:-3}
median() { python3 -c "import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
# Each figure: ROUNDS runs of each side, alternating, and the medians (this machine is noisy).
for set in banking77 financial_phrasebank_allagree; do
  f=$DATA/$set/train.csv
  A=(); B=()
  for r in $(seq "$ROUNDS"); do
    A+=("$($BIN bench embed --data "$f" --limit "$LIMIT" --model $MODEL | num '= [0-9.]* sentences/s')")
    B+=("$($PY embed $MODEL "$f" "$LIMIT" "$THREADS" 2>/dev/null | num '= [0-9.]* sentences/s')")
  done
  a=$(median "${A[@]}"); b=$(median "${B[@]}")
  echo "embed $set ($LIMIT texts): labelrest $a sentences/s, pytorch $b sentences/s (medians of $ROUNDS: ${A[*]} / ${B[*]}), ratio $(python3 -c "print(f'{$a / $b:.2f}')")"
done
f=$DATA/banking77/train.csv
top=$($BIN bench finetune --data "$f" --rows 200 --labels 96 --model $MODEL | sed -n 's/.*top \([0-9]*\) layers.*/\1/p' | head -n1)
for layers in "$top" 6; do
  A=(); B=()
  for r in $(seq "$ROUNDS"); do
    A+=("$($BIN bench finetune --data "$f" --rows 200 --labels 96 --model $MODEL | grep '^step' | grep -o "[a-z]* $layers layers [0-9.]*s" | grep -o '[0-9.]*s$' | tr -d s)")
    B+=("$($PY step $MODEL "$f" "$layers" "$THREADS" 2>/dev/null | grep -o '[0-9.]*s$' | tr -d s)")
  done
  a=$(median "${A[@]}"); b=$(median "${B[@]}")
  echo "fine-tune step, batch 16, top $layers layers: labelrest ${a}s, pytorch ${b}s (medians of $ROUNDS), ratio $(python3 -c "print(f'{$b / $a:.2f}')") (pytorch time / labelrest time)"
done
