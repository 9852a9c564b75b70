#!/usr/bin/env bash
# The GPU check (docs/BENCHMARKS.md, "GPU").
#
#   scripts/gpu-check.sh build   # on a CPU machine of this project: builds the CUDA binary
#                                # (recipe of ../shared/docs/CUDA-BUILD.md, about 10 minutes)
#                                # and packs gpu-carry/labelrest.xz (the model and data travel
#                                # with the working tree: together under the 64 MiB a run carries)
#   scripts/gpu-check.sh run     # on the machine with the NVIDIA GPU, from the repo root with
#                                # gpu-carry/ beside it: CPU/CUDA agreement, embedding throughput,
#                                # one fine-tune step and a whole iteration, simulate on TREC coarse
#                                # with the defaults, sentence-transformers on the same GPU; figures
#                                # to $OUT or ./gpu-out (gpu-check.txt, simulate-curves.csv, simulate-table.md)
#   scripts/gpu-check.sh simulate  # on the GPU machine: simulate with the defaults on the data sets in
#                                # gpu-carry/ ($SETS, default all), and once per "SET:FLAGS" in $VARIANTS
#                                # (';'-separated); each on its own clock ($PART_SECS, default 200)
#
# The tracked tree and gpu-carry/ must stay under the 64 MiB a device run carries:
# move docs/results/ aside for the run if they do not.
#
# The CUDA build is optional: the normal build, the tests and CI never need it.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}

build() {
  local env=target/cuda-env home=target/cuda-home
  if [ ! -x "$env/bin/python" ] || ! "$env/bin/python" -c "import importlib.util as u; assert u.find_spec('nvidia')" 2>/dev/null; then
    python3 -m venv "$env"
    "$env/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 \
      nvidia-cuda-nvrtc==13.0.88
  fi
  local cu
  cu=$("$env/bin/python" -c 'import os, nvidia.cu13 as m; print(list(m.__path__)[0])')
  rm -rf "$home" && mkdir -p "$home/lib/stubs"
  ln -s "$cu/bin" "$home/bin"; ln -s "$cu/include" "$home/include"; ln -s "$cu/nvvm" "$home/nvvm"
  for f in "$cu"/lib/*; do ln -s "$f" "$home/lib/"; done
  for n in cudart cublas cublasLt curand nvrtc; do
    src=$(ls "$cu"/lib/lib$n.so.* | head -n1); ln -sf "$src" "$home/lib/lib$n.so"
  done
  cargo fetch -q
  # A link-time stand-in for the driver's libcuda (never used at run time).
  local sys
  sys=$(ls -d ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs | tail -n1)
  grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$sys" | awk '{print $4}' | sort -u |
    awk '{print "int " $1 "(void) { return 100; }"}' > "$home/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/stubs/libcuda.so" "$home/stub.c"
  export CUDA_HOME=$PWD/$home CUDA_PATH=$PWD/$home CUDA_ROOT=$PWD/$home PATH=$PWD/$home/bin:$PATH \
    LIBRARY_PATH=$PWD/$home/lib:$PWD/$home/lib/stubs CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
  cargo build --release --features cuda --target-dir target/cuda
  # Only the binary is carried: the model and the demo data travel with the working tree,
  # which with it must stay under the device machine's 64 MiB.
  rm -rf gpu-carry && mkdir -p gpu-carry
  strip -o gpu-carry/labelrest target/cuda/release/labelrest
  xz -9e -T2 gpu-carry/labelrest
  # The data sets for the check's simulate (TREC coarse) and for 'simulate', where ../shared
  # has them (all but sst2: about 3 MB together).
  local d
  for d in ../shared/data/*/; do
    d=$(basename "$d")
    if [ "$d" != sst2 ] && [ -f "../shared/data/$d/train.csv" ] && [ -f "../shared/data/$d/test.csv" ]; then
      mkdir -p "gpu-carry/$d" && cp "../shared/data/$d/"{train,test}.csv "gpu-carry/$d/"
    fi
  done
  du -sh gpu-carry
  echo "now run, on the GPU machine: scripts/gpu-check.sh run   (carry gpu-carry)"
}

# The CUDA binary unpacked to /tmp/labelrest, and the libraries it needs on the path.
prepare() {
  # CUDA 13's runtime, cuBLAS, cuRAND and NVRTC from the machine's own PyTorch wheels (nvidia.*).
  local libs
  libs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(f) for p in nvidia.__path__ for f in glob.glob(os.path.join(p, "**", "lib*.so*"), recursive=True)})))')
  export LD_LIBRARY_PATH=$libs:${LD_LIBRARY_PATH:-}
  # The driver's libcuda.so.1, where the image keeps it.
  [ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/nvidia/lib64
  python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open("gpu-carry/labelrest.xz"), open("/tmp/labelrest", "wb"))'
  chmod +x /tmp/labelrest
}

run() {
  local out=${OUT:-gpu-out} bin=/tmp/labelrest model=assets/models/all-MiniLM-L6-v2 demo=assets/demo/train.csv
  mkdir -p "$out"
  local log=$out/gpu-check.txt
  : > "$log"
  prepare
  # Each part on its own clock, so that one that hangs or fails leaves the others' figures.
  part() {
    local name=$1 secs=$2; shift 2
    echo "== $name ($(date -u +%T))" | tee -a "$log"
    local t0=$SECONDS rc=0 from
    from=$(($(wc -l < "$log") + 1))
    timeout "$secs" "$@" >> "$log" 2>&1 || rc=$?
    tail -n +"$from" "$log" | tail -n 15
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$log"
  }
  part gpu 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  part libraries 20 bash -c "ldd $bin | grep -E 'not found|cuda|cublas|curand|nvrtc'"
  # 1. Agreement with the CPU, embedding throughput, one fine-tune step and a whole
  #    iteration (fine-tune on 150 labels, re-embed 10,000 rows): the defaults.
  part bench-gpu 120 "$bin" bench gpu --data "$demo" --device cuda --rows 10000 --labels 150 --model "$model"
  # 2. simulate on TREC coarse with the defaults (device auto: CUDA), 3 seeds.
  if [ -f gpu-carry/trec_coarse/train.csv ]; then
    part simulate 240 "$bin" simulate --train gpu-carry/trec_coarse/train.csv --test gpu-carry/trec_coarse/test.csv \
      --name trec_coarse --model "$model" --out /tmp/sim
    cp /tmp/sim/curves.csv "$out/simulate-curves.csv" 2>/dev/null || true
    cp /tmp/sim/table.md "$out/simulate-table.md" 2>/dev/null || true
  fi
  # 3. PyTorch (sentence-transformers) on the same GPU, the same texts: embedding at
  #    batch 32 and 256, a step training the top 3 layers and one training all 6.
  part versions 30 python3 -c 'import torch, sentence_transformers as s; print("torch", torch.__version__, "sentence-transformers", s.__version__)'
  part pytorch 100 env DEVICE=cuda PYTHONUNBUFFERED=1 python3 scripts/pytorch_bench.py all "$model" "$demo" 10000 "$(nproc)"
  # 4. candle's embedding at the old, narrow batch (1,024 tokens), for the choice of 16,384.
  part bench-gpu-narrow 60 env LABELREST_BATCH_TOKENS=1024 "$bin" bench gpu --data "$demo" --device cuda --rows 10000 --labels 150 --model "$model"
  # The same build's CPU side on that machine's cores, for scale.
  part bench-cpu 40 "$bin" bench embed --data "$demo" --limit 2000 --model "$model"
  grep -E '^== .*exit|agreement|sentences/s|step|iteration|seed [0-9]|labels, accuracy' "$log"
}

# simulate with the defaults on the GPU for each dataset in gpu-carry/ named
# by $SETS (default: every one there), then once more per set for each extra
# flag set in $VARIANTS ("NAME:FLAGS;NAME:FLAGS", e.g. "trec_coarse:--ft-layers 6").
sims() {
  prepare
  local out=${OUT:-gpu-out} bin=/tmp/labelrest model=assets/models/all-MiniLM-L6-v2
  mkdir -p "$out"
  local log=$out/gpu-simulate.txt tables=$out/gpu-simulate-tables.md
  : > "$log"; : > "$tables"
  one() {
    local set=$1 tag=$2; shift 2
    echo "== $set $tag $* ($(date -u +%T))" | tee -a "$log"
    local t0=$SECONDS rc=0
    timeout "${PART_SECS:-200}" "$bin" simulate --train "gpu-carry/$set/train.csv" --test "gpu-carry/$set/test.csv" \
      --name "$set" --model "$model" --out "/tmp/sim-$set-$tag" "$@" >> "$log" 2>&1 || rc=$?
    { echo "### $set $tag $*"; cat "/tmp/sim-$set-$tag/table.md" 2>/dev/null || true; echo; } >> "$tables"
    cp "/tmp/sim-$set-$tag/curves.csv" "$out/curves-$set-$tag.csv" 2>/dev/null || true
    echo "== $set $tag: exit $rc after $((SECONDS - t0)) s" | tee -a "$log"
    grep -E "labels, accuracy" "$log" | tail -n 3 || true
  }
  local v set flags
  IFS=';' read -ra vs <<< "${VARIANTS:-}"
  for v in "${vs[@]}"; do
    [ -n "$v" ] || continue
    set=${v%%:*}; flags=${v#*:}
    # shellcheck disable=SC2086
    one "$set" variant $flags
  done
  for set in ${SETS:-$(ls gpu-carry)}; do
    [ -f "gpu-carry/$set/train.csv" ] && one "$set" defaults
  done
  cat "$tables"
}

case "$what" in
  build) build ;;
  run) run ;;
  simulate) sims ;;
  *) echo "usage: scripts/gpu-check.sh build|run|simulate" >&2; exit 2 ;;
esac
