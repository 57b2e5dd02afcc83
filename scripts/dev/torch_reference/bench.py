#!/usr/bin/env python3
"""The PyTorch reference on the same work as benches/train_step.rs: a training step (forward,
backward, Adam with AMSGrad) on 16 × 80 × 128, and converting 10 s (1000 frames), for the paper
and stream presets, at the thread count in torch.set_num_threads(argv[1]). Prints JSON of mean
seconds. Config files: tests/data/model/{paper,stream}_config.json (dump_config example).
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adain_vc  # noqa: E402
from adain_vc import AE, loss_fn  # noqa: E402

threads = int(sys.argv[1])
torch.set_num_threads(threads)
out = {"torch": torch.__version__, "threads": threads}
for preset in sys.argv[2:]:
    cfg = json.load(open(preset))
    torch.manual_seed(0)
    model = AE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4, amsgrad=True)
    x = torch.randn(16, 80, 128)
    sub = 1
    for s in cfg["content"]["stack"]["subsample"]:
        sub *= s
    noise = torch.randn(16, cfg["content"]["c_out"], 128 // sub)

    def step():
        opt.zero_grad()
        mu, ls, emb, dec, _ = model(x, noise)
        loss, _, _ = loss_fn(x, mu, ls, dec, 10.0, 1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    src = torch.randn(1, 80, 1000)

    def convert():
        with torch.no_grad():
            emb = model.speaker_encoder(src[:, :, :300])
            mu, _ = model.content_encoder(src)
            model.decoder(mu, emb)

    for name, fn in [("train_step", step), ("convert_10s", convert)]:
        fn()
        times = []
        start = time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < 8:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[f"model/{name}_{cfg['preset']}"] = sum(times) / len(times)
json.dump(out, sys.stdout, indent=1)
