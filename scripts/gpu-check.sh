#!/usr/bin/env bash
# The GPU check (docs/BENCHMARKS.md, "GPU").
#
#   scripts/gpu-check.sh build   # on a CPU machine of this project: builds the CUDA binary
#                                # (recipe of ../shared/docs/CUDA-BUILD.md, about 10 minutes)
#                                # and packs gpu-carry/labelrest.xz (the model and data travel
#                                # with the working tree: together under the 64 MiB a run carries)
#   scripts/gpu-check.sh run     # on the machine with the NVIDIA GPU, from the repo root with
#                                # gpu-carry/ beside it: CPU/CUDA agreement, embedding throughput,
#                                # one fine-tune step and a whole iteration; figures to $OUT or ./gpu-out
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
  du -sh gpu-carry
  echo "now run, on the GPU machine: scripts/gpu-check.sh run   (carry gpu-carry)"
}

run() {
  local out=${OUT:-gpu-out}
  mkdir -p "$out"
  export LD_LIBRARY_PATH=$(python3 -c 'import os, nvidia.cu13 as m; print(os.path.join(list(m.__path__)[0], "lib"))'):${LD_LIBRARY_PATH:-}
  python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open("gpu-carry/labelrest.xz"), open("/tmp/labelrest", "wb"))'
  chmod +x /tmp/labelrest
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
  # Agreement, throughput, one fine-tune step, a whole iteration (150 labels, 10k rows re-embedded).
  /tmp/labelrest bench gpu --data assets/demo/train.csv --device cuda --rows 10000 --labels 150 \
    --model assets/models/all-MiniLM-L6-v2 2>&1 | tee "$out/bench-gpu.txt"
  # The same on the GPU machine's CPU, for comparison.
  /tmp/labelrest bench embed --data assets/demo/train.csv --limit 2000 --model assets/models/all-MiniLM-L6-v2 \
    2>&1 | tee "$out/bench-cpu.txt"
}

case "$what" in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run" >&2; exit 2 ;;
esac
