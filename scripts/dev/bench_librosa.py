#!/usr/bin/env python3
"""librosa on the same inputs as benches/frontend.rs, one thread; prints mean seconds as JSON.

Run by scripts/dev/bench_vs_librosa.sh in a throwaway venv (numpy scipy librosa soundfile soxr).
"""
import json
import os
import sys
import time

import librosa
import numpy as np
import soundfile as sf

data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data")
clips = np.concatenate([sf.read(os.path.join(data, n), dtype="float32")[0]
                        for n in ["speech_m.wav", "speech_f.wav", "speech_s.wav"]])


def speech(seconds):
    n = seconds * 16000
    return np.resize(clips, n).astype(np.float32)  # np.resize repeats cyclically


def mean_time(fn, min_runs=5, min_seconds=3.0):
    fn()  # warm-up (numba JIT, FFT plans)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.mean(times))


k = dict(n_fft=400, hop_length=160, win_length=400, center=True, pad_mode="constant")
x60, x10 = speech(60), speech(10)
spec60 = librosa.stft(x60, **k)
mag10 = np.abs(librosa.stft(x10, **k))
x48 = librosa.resample(x60, orig_sr=16000, target_sr=48000)
out = {
    "librosa": librosa.__version__,
    "frontend/logmel_60s": mean_time(lambda: np.log(np.maximum(librosa.feature.melspectrogram(
        y=x60, sr=16000, power=1.0, n_mels=80, fmin=0.0, fmax=8000.0, **k), 1e-5))),
    "frontend/stft_60s": mean_time(lambda: librosa.stft(x60, **k)),
    "frontend/istft_60s": mean_time(lambda: librosa.istft(spec60, n_fft=400, hop_length=160, win_length=400,
                                                          length=len(x60))),
    "frontend/resample_60s_48k_16k": mean_time(lambda: librosa.resample(x48, orig_sr=48000, target_sr=16000)),
    "vocoder/griffinlim_10s_32it": mean_time(lambda: librosa.griffinlim(
        mag10, n_iter=32, hop_length=160, win_length=400, n_fft=400, length=len(x10), momentum=0.99)),
}
json.dump(out, sys.stdout, indent=1)
