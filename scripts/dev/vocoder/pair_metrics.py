"""The judge's parallel-pair metrics (PESQ, STOI, MCD, F0) of two systems against the same
originals, and their paired differences. Development tool, run with the judge's venv; it imports
the judge's own `pair_metrics` (../shared/judge/judge.py), never a copy of it.

    ../judge-venv/bin/python scripts/dev/vocoder/pair_metrics.py PAIRS.tsv

PAIRS.tsv: lines `original<TAB>system A's file<TAB>system B's file` (no header). Prints, per
metric, A's and B's means and the mean of B − A with its standard error (higher is better for
PESQ and STOI, lower for MCD and the F0 error).
"""
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "judge"))
from judge import pair_metrics  # noqa: E402

METRICS = ["pesq_wb_trunc", "stoi_trunc", "mcd_db", "f0_rmse_cent", "vuv_err", "dvec_cos"]

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
a, b = {m: [] for m in METRICS}, {m: [] for m in METRICS}
per = []
for ref, fa, fb in rows:
    ma, mb = pair_metrics(ref, fa), pair_metrics(ref, fb)
    per.append(dict(original=ref, a=ma, b=mb))
    for m in METRICS:
        a[m].append(ma.get(m, float("nan")))
        b[m].append(mb.get(m, float("nan")))
print(f"{len(rows)} files")
print(f"{'metric':<14}{'A':>9}{'B':>9}{'B - A':>10}{'se':>8}")
summary = {}
for m in METRICS:
    x, y = np.array(a[m]), np.array(b[m])
    ok = ~(np.isnan(x) | np.isnan(y))
    d = y[ok] - x[ok]
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    summary[m] = dict(a=float(x[ok].mean()), b=float(y[ok].mean()), diff=float(d.mean()), se=float(se), n=int(ok.sum()))
    print(f"{m:<14}{x[ok].mean():9.3f}{y[ok].mean():9.3f}{d.mean():+10.3f}{se:8.3f}")
out = pathlib.Path(sys.argv[1]).with_name("pair_metrics.json")
json.dump(dict(summary=summary, rows=per), open(out, "w"), indent=1)
