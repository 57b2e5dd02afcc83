"""Paired comparison of two runs of scripts/judge_oneshot.sh over the same pairs, with the
independent judge's own speaker encoder and threshold (../shared/judge). Development tool: run it
with the judge's venv.

    ../judge-venv/bin/python scripts/judge_paired.py RUN_A/vc.tsv RUN_B/vc.tsv

Prints, for similarity to the target and to the source, both means, the mean of B − A over the
pairs with its standard error, and how many pairs each run alone gets accepted (the discordant
pairs of a McNemar test). The judge's own mean over a run is deterministic; the spread between
pairs is what makes a difference of means "measurable" or not.
"""
import csv
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "judge"))
import judge  # noqa: E402

THRESHOLD = 0.792  # judge.py vc's default
enc = judge.VoiceEncoderNP()
cache = {}


def emb(path):
    if path not in cache:
        cache[path] = enc.embed(judge.load(path))
    return cache[path]


def scores(tsv):
    """Per converted file name: (similarity to the targets' mean, similarity to the source)."""
    out = {}
    for r in csv.DictReader(open(tsv), delimiter="\t"):
        e = emb(r["converted"])
        t = np.stack([emb(p) for p in r["targets"].split(";") if p]).mean(0)
        out[pathlib.Path(r["converted"]).name] = (float(e @ (t / np.linalg.norm(t))), float(e @ emb(r["source"])))
    return out


a, b = scores(sys.argv[1]), scores(sys.argv[2])
keys = sorted(set(a) & set(b))
print(f"pairs in both runs: {len(keys)}")
for i, name in ((0, "similarity to target"), (1, "similarity to source")):
    d = np.array([b[k][i] - a[k][i] for k in keys])
    se = d.std(ddof=1) / np.sqrt(len(d))
    print(f"{name}: A {np.mean([a[k][i] for k in keys]):.4f}, B {np.mean([b[k][i] for k in keys]):.4f}; "
          f"B - A {d.mean():+.4f} +- {se:.4f} (standard error), t = {d.mean() / se:.2f}, B higher in {(d > 0).sum()}")
acc_a = np.array([a[k][0] > THRESHOLD for k in keys])
acc_b = np.array([b[k][0] > THRESHOLD for k in keys])
print(f"accepted: A {acc_a.mean():.1%}, B {acc_b.mean():.1%}; only A {(acc_a & ~acc_b).sum()}, only B {(acc_b & ~acc_a).sum()}")
