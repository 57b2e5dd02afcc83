#!/usr/bin/env python3
"""Reference values from librosa for voxswap-audio's parity tests.

Run in a throwaway venv, outside the repository:
    python3 -m venv ../refvenv && ../refvenv/bin/pip install numpy scipy librosa soundfile
    ../refvenv/bin/python scripts/dev/make_fixtures.py
Writes tests/data/fixtures/: raw little-endian f32 arrays (*.f32) and fixtures.json, which gives
each array's shape and the scalar references. The tests never need Python.
"""
import json
import os

import librosa
import numpy as np
import soundfile as sf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "data", "fixtures")
os.makedirs(OUT, exist_ok=True)
meta = {"librosa": librosa.__version__, "numpy": np.__version__, "arrays": {}, "values": {}}


def save(name, arr):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    arr.tofile(os.path.join(OUT, name + ".f32"))
    meta["arrays"][name] = list(arr.shape)


# Filterbanks: voxswap's default and two others that exercise HTK and no normalisation.
save("mel_fb_slaney_16k_400_80", librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=0.0, fmax=8000.0))
save("mel_fb_htk_22k_1024_64", librosa.filters.mel(sr=22050, n_fft=1024, n_mels=64, fmin=50.0, fmax=10000.0,
                                                   htk=True, norm=None))
save("mel_fb_slaney_htk_44k_1024_40", librosa.filters.mel(sr=44100, n_fft=1024, n_mels=40, fmin=20.0,
                                                           fmax=20000.0, htk=True))

# Log-mel of a committed speech clip, computed in float64 so the reference itself is exact.
y, sr = sf.read(os.path.join(ROOT, "tests", "data", "speech_m.wav"), dtype="float32")
assert sr == 16000
mel = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=16000, n_fft=400, hop_length=160, win_length=400,
                                     window="hann", center=True, pad_mode="constant", power=1.0, n_mels=80,
                                     fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
save("logmel_speech_m", np.log(np.maximum(mel, 1e-5)))

# Griffin-Lim at 32 iterations from zero phase (init=None) and from random phase (librosa's
# default init), on the magnitude STFT of the clip; reference spectral convergence.
S = np.abs(librosa.stft(y, n_fft=400, hop_length=160, win_length=400, center=True, pad_mode="constant"))


def sc(x):
    R = np.abs(librosa.stft(x, n_fft=400, hop_length=160, win_length=400, center=True, pad_mode="constant"))
    return float(np.linalg.norm(S - R) / np.linalg.norm(S))


gl = librosa.griffinlim(S, n_iter=32, hop_length=160, win_length=400, n_fft=400, center=True, length=len(y),
                        pad_mode="constant", momentum=0.99, init=None)
meta["values"]["griffinlim_sc_32_zero_phase"] = sc(gl)
meta["values"]["griffinlim_sc_32_random_phase_mean5"] = float(np.mean([
    sc(librosa.griffinlim(S, n_iter=32, hop_length=160, win_length=400, n_fft=400, center=True, length=len(y),
                          pad_mode="constant", momentum=0.99, init="random", random_state=s)) for s in range(5)]))

with open(os.path.join(OUT, "fixtures.json"), "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
print(json.dumps(meta, indent=1))
