"""Paired comparison of two systems judged on the same pairs, from the rows the independent judge
writes with `vc --per-pair` (scripts/dev/judge_oneshot.sh writes them to OUT/vc_rows.jsonl).
Development tool; plain Python 3 with numpy (the judge's venv has it).

    ../judge-venv/bin/python scripts/dev/judge_paired.py RUN_A/vc_rows.jsonl RUN_B/vc_rows.jsonl [MAX_SOURCE_WER]

Rows are matched by the converted file's name. Prints, for similarity to the target, similarity
to the source and (when the rows have them) the row's WER, log-F0 correlation with the source
and voiced share (`vc --f0`): both means, the mean of B − A over the
pairs with its standard error, and t; for acceptance, the pairs only one run gets accepted (the
discordant pairs) and McNemar's exact two-sided p. A difference of means over the same pairs is
far less noisy than two separate means. With rows from `--asr` runs, the WER is also given over
the pairs whose source Whisper reads well (its own WER at most MAX_SOURCE_WER, 0.25 by default):
where words lost in conversion can be seen at all.
"""
import json
import math
import pathlib
import sys

import numpy as np


def rows(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        out[pathlib.Path(r["converted"]).name] = r
    return out


def mcnemar_p(only_a, only_b):
    """Exact two-sided p of McNemar's test (binomial with p = 1/2 over the discordant pairs)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


a, b = rows(sys.argv[1]), rows(sys.argv[2])
keys = sorted(set(a) & set(b))
if not keys:
    sys.exit("no converted file names in common: were both runs made on the same pairs?")
print(f"pairs in both runs: {len(keys)}")
for field, name in (("secs", "similarity to target"), ("source_cos", "similarity to source"), ("wer", "WER"),
                    ("f0_corr", "log-F0 correlation with the source"), ("voiced_converted", "voiced share")):
    # Rows the judge could score in both runs (vc --f0 leaves rows with too few voiced frames
    # without a correlation).
    ks = [k for k in keys if a[k].get(field) is not None and b[k].get(field) is not None]
    if len(ks) < 2:
        continue
    va = np.array([a[k][field] for k in ks])
    vb = np.array([b[k][field] for k in ks])
    d = vb - va
    se = d.std(ddof=1) / np.sqrt(len(d))
    t = d.mean() / se if se > 0 else float("nan")
    print(f"{name} ({len(ks)} pairs): A {va.mean():.4f}, B {vb.mean():.4f}; B - A {d.mean():+.4f} +- {se:.4f} "
          f"(standard error), t = {t:.2f}, B higher in {(d > 0).sum()}, lower in {(d < 0).sum()}")
max_src = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
clear = [k for k in keys if "source_wer" in a[k] and a[k]["source_wer"] <= max_src and "wer" in b[k]]
if clear:
    va = np.array([a[k]["wer"] for k in clear])
    vb = np.array([b[k]["wer"] for k in clear])
    vs = np.array([a[k]["source_wer"] for k in clear])
    d = vb - va
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    print(f"WER where the source reads well (source WER <= {max_src:.0%}, {len(clear)} pairs, sources {vs.mean():.4f}): "
          f"A {va.mean():.4f}, B {vb.mean():.4f}; B - A {d.mean():+.4f} +- {se:.4f}")
acc_a = np.array([a[k]["accepted"] for k in keys])
acc_b = np.array([b[k]["accepted"] for k in keys])
only_a, only_b = int((acc_a & ~acc_b).sum()), int((acc_b & ~acc_a).sum())
print(f"accepted: A {acc_a.mean():.1%}, B {acc_b.mean():.1%}; only A {only_a}, only B {only_b}, "
      f"McNemar exact p = {mcnemar_p(only_a, only_b):.3g}")
