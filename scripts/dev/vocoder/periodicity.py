"""Where a vocoder's voiced sounds repeat: at the voice's pitch period, as speech does, or at the
frame rate (10 ms), the buzz of a vocoder whose phases do not advance from frame to frame.
Development tool (numpy, soundfile: the judge's venv).

    python scripts/dev/vocoder/periodicity.py ROWS.tsv NAME [NAME ...]

ROWS.tsv: one row per utterance, tab-separated: the original, then one resynthesis per NAME
(scripts/dev/vocoder/judge_resynth.sh writes such rows to OUT/pairs.tsv: original, Griffin-Lim,
neural). For every voiced 64 ms window of the original (RMS above 0.02, normalised
autocorrelation above 0.5 at its strongest lag between 2.5 and 20 ms, that lag not within 8
samples of 10 ms), the mean normalised autocorrelation of each signal at the original's pitch
period and at 10 ms.
"""
import sys

import numpy as np
import soundfile as sf

W = 1024


def ac(v):
    v = v - v.mean()
    a = np.correlate(v, v, "full")[W - 1:]
    return a / (a[0] + 1e-12)


def main():
    rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
    names = ["original"] + sys.argv[2:]
    got = {n: [] for n in names}
    for row in rows:
        if len(row) != len(names):
            sys.exit(f"{sys.argv[1]}: a row has {len(row)} files, not {len(names)}")
        x = [sf.read(f)[0] for f in row]
        n = min(len(v) for v in x)
        for s in range(0, n - W, W // 2):
            o = x[0][s:s + W]
            if np.sqrt(np.mean(o ** 2)) < 0.02:
                continue
            ao = ac(o)
            lag = 40 + int(np.argmax(ao[40:320]))
            if ao[lag] < 0.5 or abs(lag - 160) < 8:
                continue
            for name, v in zip(names, x):
                a = ac(v[s:s + W])
                got[name].append((a[lag], a[160]))
    for name in names:
        r = np.array(got[name])
        print(f"{name:<16} {len(r):4d} voiced windows   at the pitch period {r[:, 0].mean():.3f}   at 10 ms {r[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
