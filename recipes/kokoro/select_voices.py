#!/usr/bin/env python3
"""select_voices.py CANDIDATES.tsv CORPUS JUDGE_PY [--threshold T] > voices.tsv

The distinctness filter behind voices.tsv (run by select_voices.sh with the judge's venv). Every
candidate has read the shared sentences (CORPUS/{train,valid}/NAME/s0001.wav, s0002.wav...); the
judge's speaker encoder (Resemblyzer's d-vectors, ../shared/judge) embeds them, averaged per voice.
Base voices are all kept. A blend is kept when its cosine to every voice already kept in its split
is below the threshold: by default the median of the judge's cosine between the two probe
utterances of one candidate voice, so that a kept blend is further from every voice kept before
it than two utterances of one voice usually are from each other. (Resemblyzer judges Kokoro's
blends close: at the 5th percentile of that spread only 49 of 650 blends pass, at the median 143;
base voices are nearer their nearest base voice, 0.81, than the judge's verification threshold.) Validation
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
    p.add_argument("--threshold", type=float, default=0.0,
                   help="cosine below which a blend counts as a new voice; 0 (default): the median "
                        "of the judge's cosine between two utterances of one candidate")
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
    emb, same = {}, []
    cache_path = os.path.join(a.corpus, "probe_embeddings.npz")
    cache = dict(np.load(cache_path)) if os.path.exists(cache_path) else {}
    for r in rows:
        name, split = r[0], r[3]
        files = sorted(glob.glob(os.path.join(a.corpus, split, name, "s000[12].wav")))
        if not files:
            print(f"select_voices.py: {name}: no probe utterances; left out", file=sys.stderr)
            continue
        per = []
        for x in files:
            key = os.path.relpath(x, a.corpus)
            if key not in cache:
                cache[key] = enc.embed(judge.load(x))
            per.append(cache[key])
        if len(per) == 2:
            same.append(float(per[0] @ per[1]))
        e = np.mean(per, axis=0)
        emb[name] = e / np.linalg.norm(e)
    np.savez(cache_path, **cache)
    # The judge's own spread between two utterances of one voice: a blend whose nearest kept
    # voice is further than most such pairs is, to the judge, another voice.
    if a.threshold <= 0:
        a.threshold = float(np.median(same))
        print(f"threshold: {a.threshold:.3f}, the median cosine between two utterances of one voice "
              f"(5th percentile {np.percentile(same, 5):.3f}, {len(same)} voices)", file=sys.stderr)
    kept = {"train": [], "valid": []}
    out = [header.rstrip("\n")]
    closest = []
    base = lambda r: "," not in r[1]  # noqa: E731
    for r in sorted((r for r in rows if r[0] in emb), key=lambda r: (not base(r), r[0])):
        name, split = r[0], r[3]
        others = kept[split] + (kept["train"] if split == "valid" else [])
        c = max((float(emb[name] @ emb[o]) for o in others), default=0.0)
        if base(r) or c < a.threshold:
            kept[split].append(name)
            out.append("\t".join(r))
            if not base(r):
                closest.append(c)
    print("\n".join(out))
    n_blend = sum(1 for r in rows if not base(r) and r[0] in emb)
    kept_blends = len(closest)
    print(f"kept {len(kept['train'])} training and {len(kept['valid'])} validation voices; "
          f"{kept_blends} of {n_blend} blends passed (cosine to the nearest kept voice < {a.threshold}; "
          f"kept blends' nearest: median {np.median(closest) if closest else float('nan'):.3f})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
