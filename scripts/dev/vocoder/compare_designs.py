#!/usr/bin/env python3
"""Compute cost of candidate neural vocoders on this CPU, before choosing one (issue: neural
vocoder; BENCHMARKS.md "Neural vocoder: choosing the design"). Untrained weights: only the cost
is measured. PyTorch in a throwaway venv (see scripts/dev/torch_reference/make_fixtures.py):

    ../torchvenv/bin/python scripts/dev/vocoder/compare_designs.py

For each design: parameters, multiply-accumulates per second of 16 kHz audio (counted by hooks on
every convolution and linear layer), and the real-time factor on ONE thread, offline (10 s of
mels at once) and streaming (one 10 ms frame at a time, the designs' receptive field recomputed
over a cached context: what a frame-by-frame step costs without per-layer state).
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
SR, HOP, N_MELS = 16000, 160, 80


class HifiResBlock(nn.Module):
    def __init__(self, c, k, dil):
        super().__init__()
        self.c1 = nn.ModuleList([nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2) for d in dil])
        self.c2 = nn.ModuleList([nn.Conv1d(c, c, k, padding=(k - 1) // 2) for _ in dil])

    def forward(self, x):
        for a, b in zip(self.c1, self.c2):
            x = x + b(F.leaky_relu(a(F.leaky_relu(x, 0.1)), 0.1))
        return x


class HifiGanV2(nn.Module):
    """HiFi-GAN V2 (Kong et al. 2020): upsampling 8·5·2·2 = 160 (16 kHz, hop 160), 128 channels."""

    def __init__(self, ups=(8, 5, 2, 2), c=128, ks=(3, 7, 11), dils=((1, 3, 5),) * 3):
        super().__init__()
        self.pre = nn.Conv1d(N_MELS, c, 7, padding=3)
        self.ups, self.res = nn.ModuleList(), nn.ModuleList()
        for i, u in enumerate(ups):
            ci, co = c // 2 ** i, c // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(ci, co, 2 * u, u, padding=u // 2 + u % 2, output_padding=u % 2))
            self.res.append(nn.ModuleList([HifiResBlock(co, k, d) for k, d in zip(ks, dils)]))
        self.post = nn.Conv1d(c // 2 ** len(ups), 1, 7, padding=3)

    def forward(self, m):
        x = self.pre(m)
        for up, rs in zip(self.ups, self.res):
            x = up(F.leaky_relu(x, 0.1))
            x = sum(r(x) for r in rs) / len(rs)
        return torch.tanh(self.post(F.leaky_relu(x)))


class ConvNeXt(nn.Module):
    def __init__(self, c, mult=3, k=7):
        super().__init__()
        self.k = k
        self.dw = nn.Conv1d(c, c, k, groups=c)
        self.norm = nn.LayerNorm(c)
        self.p1, self.p2 = nn.Linear(c, mult * c), nn.Linear(mult * c, c)

    def forward(self, x):
        y = self.dw(F.pad(x, (self.k - 1, 0)))  # causal
        y = self.p2(F.gelu(self.p1(self.norm(y.transpose(1, 2)))))
        return x + y.transpose(1, 2)


class VocosCausal(nn.Module):
    """Vocos (Siuzdiak 2023) made causal: frame-rate ConvNeXt blocks, then magnitude and phase of
    an n_fft-point spectrum per frame, inverse FFT and overlap-add (10 ms of look-ahead for n_fft
    320, hop 160)."""

    def __init__(self, c=192, blocks=6, n_fft=320):
        super().__init__()
        self.n_fft = n_fft
        self.pre = nn.Conv1d(N_MELS, c, 7)
        self.blocks = nn.Sequential(*[ConvNeXt(c) for _ in range(blocks)])
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 2 * (n_fft // 2 + 1))
        self.register_buffer("win", torch.hann_window(n_fft))

    def forward(self, m):
        x = self.blocks(self.pre(F.pad(m, (6, 0))))
        h = self.head(self.norm(x.transpose(1, 2)))
        mag, ph = h.chunk(2, dim=-1)
        spec = torch.exp(mag.clamp(max=10)) * torch.exp(1j * ph)
        frames = torch.fft.irfft(spec, n=self.n_fft) * self.win
        b, t, n = frames.shape
        return F.fold(frames.transpose(1, 2), (1, (t - 1) * HOP + n), (1, n), stride=(1, HOP)).flatten(1)


def macs(model, x):
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv1d):
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0]
        elif isinstance(mod, nn.ConvTranspose1d):
            total[0] += inp[0].numel() * mod.out_channels * mod.kernel_size[0]
        elif isinstance(mod, nn.Linear):
            total[0] += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def rtf(fn, seconds, reps=3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / seconds


def main():
    designs = {
        "HiFi-GAN V2 (128 ch, upsampling 8-5-2-2)": (HifiGanV2(), 40),
        "Vocos, causal (192 ch, 6 ConvNeXt blocks, n_fft 320)": (VocosCausal(), 7),
        "Vocos, causal (128 ch, 6 blocks, n_fft 320)": (VocosCausal(c=128), 7),
    }
    m10 = torch.randn(1, N_MELS, 1000)  # 10 s
    print("| design | parameters | MAC per second of audio | RTF offline (10 s, 1 thread) | RTF streaming (10 ms frames, receptive field recomputed) |")
    print("|---|---|---|---|---|")
    for name, (model, ctx) in designs.items():
        model.eval()
        n = sum(p.numel() for p in model.parameters())
        mac = macs(model, m10) / 10.0
        with torch.no_grad():
            off = rtf(lambda: model(m10), 10.0)
            frames = 100
            buf = torch.randn(1, N_MELS, ctx + frames)

            def stream():
                for t in range(frames):
                    model(buf[:, :, t:t + ctx + 1])

            st = rtf(stream, frames * HOP / SR)
        print(f"| {name} | {n / 1e6:.2f} M | {mac / 1e9:.2f} G | {off:.4f} | {st:.3f} |")


if __name__ == "__main__":
    main()
