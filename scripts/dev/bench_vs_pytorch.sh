#!/usr/bin/env bash
# Model benchmarks against the PyTorch reference, same machine, same run, at 1 and 2 threads:
# a training step on 16 x 80 x 128 and converting 10 s, paper and stream presets.
# Needs a venv with torch: TORCH_VENV=../torchvenv (python3 -m venv ../torchvenv &&
# ../torchvenv/bin/pip install numpy torch safetensors).
# ROUNDS=n repeats the whole comparison n times (default 1), one table per round: on a shared
# VM the two-thread figures drift by up to 30% over minutes, for both libraries alike, so
# compare within a round.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${TORCH_VENV:-../torchvenv}
mkdir -p target/bench
for p in paper stream; do
  cargo run -q --release -p voxswap-model --example dump_config -- $p > target/bench/${p}_config.json
done
for round in $(seq 1 "${ROUNDS:-1}"); do
for t in 1 2; do
  RAYON_NUM_THREADS=$t cargo bench --bench train_step -- --noplot >/dev/null
  mkdir -p target/bench/candle-$t
  for d in target/criterion/model/*/; do
    n=$(basename "$d"); cp "$d/new/estimates.json" "target/bench/candle-$t/$n.json"
  done
  OMP_NUM_THREADS=$t "$VENV/bin/python" scripts/dev/torch_reference/bench.py $t target/bench/paper_config.json \
    target/bench/stream_config.json > target/bench/torch-$t.json
done
echo "round $round ($(date -u +%H:%M:%S) UTC)"
python3 - <<'PY'
import json
print(f"{'benchmark':28} {'threads':>7} {'voxswap':>10} {'PyTorch':>10} {'ratio':>7}")
for t in (1, 2):
    tor = json.load(open(f"target/bench/torch-{t}.json"))
    for key, secs in tor.items():
        if not key.startswith("model/"):
            continue
        name = key.split("/", 1)[1]
        vox = json.load(open(f"target/bench/candle-{t}/{name}.json"))["mean"]["point_estimate"] / 1e9
        print(f"{name:28} {t:>7} {vox*1e3:8.1f}ms {secs*1e3:8.1f}ms {vox/secs:6.2f}x")
print(f"torch {tor['torch']}; ratio = voxswap time / PyTorch time (below 1: voxswap faster)")
PY
done
