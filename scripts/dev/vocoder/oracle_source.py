#!/usr/bin/env python3
"""The ceiling of the neural vocoder's source-filter synthesis ([vocoder] phase = "source"),
before anything is trained: each synthesis frame's spectrum is the original's own STFT magnitude
with the phases of the vocoder's sources (voxswap_model::excitation: harmonics at every multiple
of the F0, their phases the running integral of that F0; white noise), overlap-added with the
vocoder's square-root-Hann window. That is what the vocoder's real per-bin gains would give if
they were perfect, at a perfect F0 (librosa's pYIN on the original), so no trained vocoder of
that design can resynthesise better. Development tool (the judge's venv).

    python scripts/dev/vocoder/oracle_source.py VARIANT [VARIANT ...] -- IN.wav [IN.wav ...]

A VARIANT is MODE@N_FFT (frame length in samples at 16 kHz; the vocoder's is 320, 2 hops):
  mixed     harmonic phases in pYIN's voiced frames, noise phases elsewhere (what the vocoder does)
  harm      harmonic phases everywhere
  harm+sK   harm, plus a residual phase that varies smoothly over frequency: the phase of the
            original's cross-spectrum with the source, averaged over 2K+1 bins (what a head that
            also gave a smooth phase correction could reach at best)
  true      the original's own phases (checks the analysis and overlap-add: PESQ about 4.6)
Griffin-Lim (librosa's mel_to_audio, 32 iterations of fast Griffin-Lim from the frontend's 80-band
mel, as voxswap resynth --vocoder griffin-lim) is always scored beside them.

Prints each file's PESQ (wide band) and STOI against the original, then the means.
"""
import sys

import librosa
import numpy as np
import soundfile as sf
from pesq import pesq
from pystoi import stoi

SR, HOP = 16000, 160


def window(n):
    return np.sin(np.pi * np.arange(n) / n)


def frames_of(x, n_fft, count):
    """Frame t spans samples t*HOP - n_fft/2 .. t*HOP + n_fft/2, windowed."""
    pad = np.concatenate([np.zeros(n_fft // 2), x, np.zeros(n_fft + count * HOP)])
    w = window(n_fft)
    return np.stack([pad[i * HOP:i * HOP + n_fft] * w for i in range(count)])


def sources(f0, n, n_fft):
    """Harmonic and noise sources, per sample; each sample takes the F0 of the first frame that
    reaches it, as voxswap's Excitation does."""
    t = np.clip((np.arange(n) - n_fft // 2) // HOP + 1, 0, len(f0) - 1)
    f = f0[t]
    theta = np.cumsum(2 * np.pi * f / SR)
    harm = np.zeros(n)
    for h in range(1, int(SR / 2 / f.min()) + 1):
        taper = np.clip((SR / 2 - h * f) / (0.1 * SR / 2), 0, 1)
        harm += taper * np.cos(h * theta)
    harm *= 2 * np.sqrt(f / SR)
    noise = np.random.default_rng(0).uniform(-np.sqrt(3), np.sqrt(3), n)
    return harm, noise


def pitch(x):
    """pYIN's F0 per frame (unvoiced frames take the nearest voiced F0) and voicing."""
    count = len(x) // HOP + 1
    f0, voiced, _ = librosa.pyin(x, fmin=50, fmax=600, sr=SR, frame_length=1024, hop_length=HOP, center=True)
    f0, voiced = f0[:count], voiced[:count]
    good = np.where(np.isfinite(f0))[0]
    f0 = np.interp(np.arange(count), good, f0[good]) if len(good) else np.full(count, 120.0)
    return f0, voiced


def spectra(x, f0, n_fft):
    """The frame spectra of the original and of the two sources at `n_fft` points."""
    count = len(f0)
    harm, noise = sources(f0, len(x) + 2 * n_fft, n_fft)
    return [np.fft.rfft(frames_of(s, n_fft, count), axis=1) for s in (x, harm, noise)]


def oracle(x, spec, voiced, mode, n_fft):
    X, H, N = spec
    count = len(X)
    if mode == "true":
        Y = X
    else:
        if mode == "mixed":
            src = np.where(voiced[:, None], H, N)
        else:
            src = H
        Y = np.abs(X) * src / np.maximum(np.abs(src), 1e-9)
        if "+s" in mode:
            k = int(mode.split("+s")[1])
            cross = X * np.conj(src)
            ker = np.ones(2 * k + 1)
            smooth = np.stack([np.convolve(r.real, ker, "same") + 1j * np.convolve(r.imag, ker, "same") for r in cross])
            Y = Y * np.exp(1j * np.angle(smooth))
    w = window(n_fft)
    y = np.fft.irfft(Y, n=n_fft, axis=1) * w
    out = np.zeros((count - 1) * HOP + n_fft)
    norm = np.zeros_like(out)
    for i, f in enumerate(y):
        out[i * HOP:i * HOP + n_fft] += f
        norm[i * HOP:i * HOP + n_fft] += w * w
    out = out / np.maximum(norm, 1e-3)
    return out[n_fft // 2:n_fft // 2 + len(x)]


def griffin_lim(x):
    kw = dict(sr=SR, n_fft=400, hop_length=HOP, win_length=400, fmin=0, fmax=8000, power=1.0)
    m = librosa.feature.melspectrogram(y=x, n_mels=80, **kw)
    return librosa.feature.inverse.mel_to_audio(m, n_iter=32, **kw)[:len(x)]


def score(x, y):
    n = min(len(x), len(y))
    return pesq(SR, x[:n], y[:n], "wb"), stoi(x[:n], y[:n], SR)


def main():
    args = sys.argv[1:]
    if "--" not in args:
        sys.exit(__doc__)
    sep = args.index("--")
    variants = [(v.split("@")[0], int(v.split("@")[1])) for v in args[:sep]]
    names = [f"{m}@{n}" for m, n in variants] + ["griffin-lim"]
    res = {k: [] for k in names}
    for path in args[sep + 1:]:
        x, sr = sf.read(path, dtype="float64")
        if sr != SR:
            sys.exit(f"{path}: {sr} Hz, not {SR}")
        f0, voiced = pitch(x)
        spec = {n: spectra(x, f0, n) for n in {n for _, n in variants}}
        for (m, n), k in zip(variants, names):
            res[k].append(score(x, oracle(x, spec[n], voiced, m, n)))
        res["griffin-lim"].append(score(x, griffin_lim(x)))
        print(path, " ".join(f"{k} {v[-1][0]:.2f}/{v[-1][1]:.3f}" for k, v in res.items()), flush=True)
    for k, v in res.items():
        a = np.array(v)
        print(f"{k}: PESQ {a[:, 0].mean():.3f} STOI {a[:, 1].mean():.3f} ({len(v)} files)")


if __name__ == "__main__":
    main()
