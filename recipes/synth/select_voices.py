#!/usr/bin/env python3
"""Development step (run once, result committed as voices.tsv): keep the candidate voices that the
independent judge (../shared/judge, Resemblyzer d-vectors) can tell apart.

    ./candidates.sh > candidates.tsv
    # synthesise 12 sentences per candidate into PROBE/<name>/sNNNN.wav (see README.md), then
    ../judge-venv/bin/python ../shared/judge/judge.py spk PROBE      # writes PROBE/dvectors.npy
    ../judge-venv/bin/python select_voices.py candidates.tsv PROBE > voices.tsv

Same rule as the judge's own "pairwise-separated" count: voices in order of decreasing
within-voice similarity, each kept only if its centroid's cosine to every kept voice is below
THRESHOLD (0.85; the judge's same-voice mean on these voices is 0.89 and its equal-error-rate
threshold 0.81). Voices that do not read the text are dropped first: more than MAX_SILENCE of
silence (missing diphones replaced by silence) or MAX_DURATION times the median duration
(spelling words out). Every VALID_EVERY-th kept voice, in name order, becomes a validation speaker.

    select_voices.py --keep voices.tsv candidates.tsv PROBE > voices_more.tsv

adds voices to an existing list instead (more_voices.sh): every voice of voices.tsv stays, with its
split and in its place (the probe must hold it too), and a candidate is added, as a training
voice, only if its centroid's cosine to every voice kept so far, validation voices included, is
below THRESHOLD. The validation voices stay what they were, and unseen.
"""
import os
import sys

import numpy as np

THRESHOLD = 0.85
VALID_EVERY = 7
MAX_DURATION = 2.0  # times the median voice's duration for the same sentences
MAX_SILENCE = 0.45  # share of 20 ms windows below -50 dBFS

args = sys.argv[1:]
keep_path = None
if args[0] == "--keep":
    keep_path, args = args[1], args[2:]
cand_path, probe = args[0], args[1]
cands = [l.rstrip("\n").split("\t") for l in open(cand_path) if l.strip()]
voices = sorted(d for d in os.listdir(probe) if os.path.isdir(os.path.join(probe, d))
                and any(f.endswith(".wav") for f in os.listdir(os.path.join(probe, d))))
names = [v for v in voices for f in sorted(os.listdir(os.path.join(probe, v))) if f.endswith(".wav")]
E = np.load(os.path.join(probe, "dvectors.npy"))
assert len(E) == len(names), "dvectors.npy does not match the probe folder"
idx = {v: [i for i, n in enumerate(names) if n == v] for v in voices}
C = np.stack([E[idx[v]].mean(0) for v in voices])
C /= np.linalg.norm(C, axis=1, keepdims=True)
intra = {}
for v in voices:
    S = E[idx[v]] @ E[idx[v]].T
    intra[v] = S[np.triu_indices(len(idx[v]), 1)].mean()
# Voices that do not read the text: a database lacking most English diphones (silence in their
# place) or a voice spelling words out letter by letter (far longer than the others).
import soundfile as sf
dur, sil = {}, {}
for v in voices:
    d, s_, n_ = 0.0, 0, 0
    for f in sorted(os.listdir(os.path.join(probe, v))):
        if f.endswith(".wav"):
            x, sr = sf.read(os.path.join(probe, v, f), dtype="float32")
            w = sr // 50
            p = (x[: len(x) // w * w].reshape(-1, w) ** 2).mean(1)
            d += len(x) / sr; s_ += int((p < 1e-5).sum()); n_ += len(p)
    dur[v], sil[v] = d, s_ / max(n_, 1)
med = float(np.median(list(dur.values())))
bad = {v: f"{dur[v] / med:.1f}x the median duration, {100 * sil[v]:.0f}% silence" for v in voices
       if dur[v] > MAX_DURATION * med or sil[v] > MAX_SILENCE}
for v, why in sorted(bad.items()):
    print(f"dropped {v}: {why}", file=sys.stderr)
if keep_path is not None:
    keep_lines = [l.rstrip("\n") for l in open(keep_path) if l.strip()]
    keep = [l.split("\t") for l in keep_lines if not l.startswith("#")]
    missing = [r[0] for r in keep if r[0] not in idx]
    assert not missing, f"the probe lacks voices of {keep_path}: {missing[:5]}"
    kept = [voices.index(r[0]) for r in keep]
    added = []
    for k in sorted(range(len(voices)), key=lambda k: -intra[voices[k]]):
        if voices[k] in bad or k in kept:
            continue
        if all(C[k] @ C[r] < THRESHOLD for r in kept):
            kept.append(k)
            added.append(voices[k])
    by_name = {c[0]: c for c in cands}
    n_new = len([v for v in voices if v not in {r[0] for r in keep}])
    for l in keep_lines:
        print(l)
    print(f"# {len(added)} of {n_new} more candidate voices added as training voices (more_voices.sh): centroid "
          f"cosine < {THRESHOLD} to every voice above and every one added before, {len([v for v in bad])} "
          f"dropped for not reading the text")
    for v in sorted(added):
        _, engine, voice = by_name[v][:3]
        print(f"{v}\t{engine}\t{voice}\ttrain")
    sys.exit(0)
kept = []
for k in sorted(range(len(voices)), key=lambda k: -intra[voices[k]]):
    if voices[k] in bad:
        continue
    if all(C[k] @ C[r] < THRESHOLD for r in kept):
        kept.append(k)
kept_names = sorted(voices[k] for k in kept)
by_name = {c[0]: c for c in cands}
print(f"# {len(kept_names)} of {len(voices)} candidate voices kept: centroid cosine < {THRESHOLD} to every other "
      f"kept voice (judge spk, 12 sentences each), {len(bad)} dropped for not reading the text; every {VALID_EVERY}th "
      f"is a validation speaker")
print("# name\tengine\tvoice\tsplit")
for i, v in enumerate(kept_names):
    _, engine, voice = by_name[v][:3]
    split = "valid" if i % VALID_EVERY == VALID_EVERY - 1 else "train"
    print(f"{v}\t{engine}\t{voice}\t{split}")
