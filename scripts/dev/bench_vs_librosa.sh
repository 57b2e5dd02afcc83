#!/usr/bin/env bash
# Runs the frontend benchmarks and librosa on the same inputs in one run, one thread each,
# and prints the speed ratios (librosa time / voxswap time: above 1 means voxswap is faster).
# Needs a Python venv with librosa: VENV=../refvenv (made by: python3 -m venv ../refvenv &&
# ../refvenv/bin/pip install numpy scipy librosa soundfile).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-../refvenv}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 RAYON_NUM_THREADS=1
cargo bench --bench frontend -- --noplot >/dev/null
"$VENV/bin/python" scripts/dev/bench_librosa.py > target/librosa_bench.json
python3 - <<'PY'
import json
lib = json.load(open("target/librosa_bench.json"))
print(f"librosa {lib.pop('librosa')}, one thread each")
print(f"{'benchmark':34} {'voxswap':>11} {'librosa':>11} {'ratio':>7}")
for name, t_lib in lib.items():
    est = json.load(open(f"target/criterion/{name}/new/estimates.json"))
    t_vox = est["mean"]["point_estimate"] / 1e9
    print(f"{name:34} {t_vox*1e3:9.2f}ms {t_lib*1e3:9.2f}ms {t_lib/t_vox:6.2f}x")
PY
