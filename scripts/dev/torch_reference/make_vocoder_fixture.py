#!/usr/bin/env python3
"""Fixture for voxswap-model's vocoder parity test, from the PyTorch reference (vocoder.py).

Run in the throwaway venv of make_fixtures.py:
    cargo run -p voxswap-model --example dump_vocoder_config -- tiny > tests/data/model/vocoder_tiny.json
    (cd scripts/dev/torch_reference && ../../../torchvenv/bin/python make_vocoder_fixture.py)
    (cd scripts/dev/torch_reference && ../../../torchvenv/bin/python make_vocoder_fixture.py integrated)
Writes tests/data/model/vocoder_tiny.safetensors (with `integrated`: vocoder_tiny_integrated.json,
the same size with `"phase": "integrated"`, and vocoder_tiny_integrated.safetensors): `param.<name>`, `grad.<name>` (gradient of the
loss), `input` (two 40-frame log-mel segments of the committed speech clip), `out.audio` and
`out.loss` (mean absolute sample plus the mean log-magnitude of a 128-point STFT: a loss that
reaches every weight). Float32; computed in float64.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

from vocoder import Vocoder

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
DATA = os.path.join(ROOT, "tests", "data", "model")

cfg = json.load(open(os.path.join(DATA, "vocoder_tiny.json")))
out_name = "vocoder_tiny"
if len(sys.argv) > 1 and sys.argv[1] == "integrated":
    cfg["phase"] = "integrated"
    out_name = "vocoder_tiny_integrated"
    json.dump(cfg, open(os.path.join(DATA, out_name + ".json"), "w"), indent=2)
torch.manual_seed(0)
model = Vocoder(cfg).double()
with torch.no_grad():
    for b in model.blocks:  # non-trivial norms and scales, so their gradients are tested
        b.gamma.uniform_(0.2, 0.8)
        b.norm.weight.uniform_(0.5, 1.5)
        b.norm.bias.uniform_(-0.2, 0.2)
fix = json.load(open(os.path.join(ROOT, "tests", "data", "fixtures", "fixtures.json")))
shape = fix["arrays"]["logmel_speech_m"]
mel = np.fromfile(os.path.join(ROOT, "tests", "data", "fixtures", "logmel_speech_m.f32"), dtype="<f4").reshape(shape)
x = torch.tensor(np.stack([mel[:, 30:70], mel[:, 160:200]]), dtype=torch.float64)
audio = model(x)
spec = torch.stft(audio, 128, hop_length=32, window=torch.hann_window(128, dtype=torch.float64), center=False,
                  return_complex=True)
loss = audio.abs().mean() + torch.log(spec.abs() + 1e-3).mean()
loss.backward()
tensors = {"input": x, "out.audio": audio, "out.loss": loss.reshape(1)}
for name, p in model.named_parameters():
    tensors["param." + name] = p
    tensors["grad." + name] = p.grad
tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
save_file(tensors, os.path.join(DATA, out_name + ".safetensors"))
print(f"{len(tensors)} tensors, {sum(p.numel() for p in model.parameters())} parameters, loss {loss.item():.6f}")
