#!/usr/bin/env python3
"""Fixtures for voxswap-model's parity tests, from the PyTorch reference (adain_vc.py).

Run in a throwaway venv, outside the repository:
    python3 -m venv ../torchvenv && ../torchvenv/bin/pip install numpy torch safetensors
    for p in tiny tiny-stream tiny-attn tiny-vq; do
      cargo run -p voxswap-model --example dump_config -- $p > tests/data/model/${p}_config.json
      (cd scripts/dev/torch_reference && ../../../torchvenv/bin/python make_fixtures.py $p)
    done
Writes tests/data/model/adain_vc_<preset>.safetensors: `param.<name>` (weights), `grad.<name>`
(gradient of the loss for that weight), `input` (a log-mel batch from the committed speech clip),
`noise`, and the outputs `out.mu`, `out.log_sigma`, `out.emb`, `out.dec`, `out.loss`,
`out.rec`, `out.kl` (and `out.vq`, the VQ loss, for a preset with a codebook). Everything is float32; the computation runs in float64 so the reference
itself carries no float32 rounding.
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from adain_vc import AE, loss_fn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
DATA = os.path.join(ROOT, "tests", "data", "model")

import sys

preset = sys.argv[1] if len(sys.argv) > 1 else "tiny"
cfg = json.load(open(os.path.join(DATA, f"{preset}_config.json")))
torch.manual_seed(0)
model = AE(cfg).double()
# Log-mel of the committed clip, as voxswap computes it (stored by the librosa fixture script).
fix = json.load(open(os.path.join(ROOT, "tests", "data", "fixtures", "fixtures.json")))
shape = fix["arrays"]["logmel_speech_m"]
mel = np.fromfile(os.path.join(ROOT, "tests", "data", "fixtures", "logmel_speech_m.f32"), dtype="<f4").reshape(shape)
# Two segments of 64 frames: a batch of 2, T divisible by the subsampling.
x = torch.tensor(np.stack([mel[:, 20:84], mel[:, 150:214]]), dtype=torch.float64)
sub = int(np.prod(cfg["content"]["stack"]["subsample"]))
noise = torch.randn(2, cfg["content"]["c_out"], 64 // sub, dtype=torch.float64)
mu, log_sigma, emb, dec, vq = model(x, noise)
loss, rec, kl = loss_fn(x, mu, log_sigma, dec, lambda_rec=10.0, lambda_kl=0.5, vq=vq)
loss.backward()

tensors = {"input": x, "noise": noise, "out.mu": mu, "out.log_sigma": log_sigma, "out.emb": emb, "out.dec": dec,
           "out.loss": loss.reshape(1), "out.rec": rec.reshape(1), "out.kl": kl.reshape(1)}
if vq is not None:
    tensors["out.vq"] = vq.reshape(1)
for name, p in model.named_parameters():
    tensors["param." + name] = p
    tensors["grad." + name] = p.grad
tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
save_file(tensors, os.path.join(DATA, f"adain_vc_{preset}.safetensors"))
n = sum(p.numel() for p in model.parameters())
print(f"{len(tensors)} tensors, {n} parameters, loss {loss.item():.6f} (rec {rec.item():.6f}, kl {kl.item():.6f})")
