"""Adds white noise to a recording at a given signal-to-noise ratio (over the whole file's
power), for judging conversions of noisy sources. Development tool, run with the judge's venv
(numpy, soundfile).

    ../judge-venv/bin/python scripts/dev/add_noise.py IN.wav OUT.wav SNR_DB [SEED]
"""
import sys

import numpy as np
import soundfile as sf

x, rate = sf.read(sys.argv[1], dtype="float64", always_2d=True)
snr = float(sys.argv[3])
rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
signal = np.mean(x ** 2)
noise = rng.standard_normal(x.shape) * np.sqrt(signal / 10 ** (snr / 10))
y = x + noise
peak = np.max(np.abs(y))
if peak > 0.999:  # keep it a valid float file a player can read the same way
    y *= 0.999 / peak
sf.write(sys.argv[2], y, rate, subtype="FLOAT")
