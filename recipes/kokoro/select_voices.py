#!/usr/bin/env python3
"""select_voices.py CANDIDATES.tsv CORPUS JUDGE_PY [--threshold T] > voices.tsv

The distinctness filter behind voices.tsv (run by select_voices.sh with the judge's venv). Every
candidate has read the shared sentences (CORPUS/{train,valid}/NAME/s0001.wav, s0002.wav...); the
judge's speaker encoder (Resemblyzer's d-vectors, ../shared/judge) embeds them, averaged per voice.
Base voices are all kept. A blend is kept when its cosine to every voice already kept in its split
is below the threshold: by default the judge's own verification threshold (0.792, its equal-error
point), so that the judge itself would call it a different speaker from each of them. Validation
blends are also checked against the training voices. Prints the kept rows, and a summary on stderr.
"""
import argparse
import glob
import importlib.util
import os
import sys

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candidates")
    p.add_argument("corpus")
    p.add_argument("judge")
    p.add_argument("--threshold", type=float, default=0.792)
    a = p.parse_args()
    spec = importlib.util.spec_from_file_location("judge", a.judge)
    judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judge)
    enc = judge.VoiceEncoderNP()
    rows = []
    with open(a.candidates, encoding="utf-8") as f:
        header = f.readline()
        for line in f:
            if line.strip():
                rows.append(line.rstrip("\n").split("\t"))
    emb = {}
    for r in rows:
        name, split = r[0], r[5]
        files = sorted(glob.glob(os.path.join(a.corpus, split, name, "s*.wav")))
        if not files:
            print(f"select_voices.py: {name}: no probe utterances; left out", file=sys.stderr)
            continue
        e = np.mean([enc.embed(judge.load(x)) for x in files], axis=0)
        emb[name] = e / np.linalg.norm(e)
    kept = {"train": [], "valid": []}
    out = [header.rstrip("\n")]
    closest = []
    for r in sorted((r for r in rows if r[0] in emb), key=lambda r: (r[1] != r[2], r[0])):
        name, split = r[0], r[5]
        others = kept[split] + (kept["train"] if split == "valid" else [])
        c = max((float(emb[name] @ emb[o]) for o in others), default=0.0)
        if r[1] == r[2] or c < a.threshold:
            kept[split].append(name)
            out.append("\t".join(r))
            if r[1] != r[2]:
                closest.append(c)
    print("\n".join(out))
    n_blend = sum(1 for r in rows if r[1] != r[2] and r[0] in emb)
    kept_blends = len(closest)
    print(f"kept {len(kept['train'])} training and {len(kept['valid'])} validation voices; "
          f"{kept_blends} of {n_blend} blends passed (cosine to the nearest kept voice < {a.threshold}; "
          f"kept blends' nearest: median {np.median(closest) if closest else float('nan'):.3f})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
