"""voxswap's neural vocoder in PyTorch (causal Vocos): the reference voxswap-model's vocoder
parity test compares against. Module names are the safetensors names voxswap uses; configured
from voxswap's vocoder.json (VocoderConfig)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, mult, k):
        super().__init__()
        self.k = k
        self.dw = nn.Conv1d(c, c, k, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.p1 = nn.Linear(c, mult * c)
        self.p2 = nn.Linear(mult * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1.0))

    def forward(self, x):
        y = self.dw(F.pad(x, (self.k - 1, 0)))
        y = self.p2(F.gelu(self.p1(self.norm(y.transpose(1, 2)))))
        return x + (y * self.gamma).transpose(1, 2)


class Vocoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, k = cfg["channels"], cfg["kernel"]
        self.k, self.n_fft, self.hop = k, cfg["n_fft"], cfg["frontend"]["hop_length"]
        self.pre = nn.Conv1d(cfg["frontend"]["n_mels"], c, k)
        self.blocks = nn.ModuleList([Block(c, cfg["mult"], k) for _ in range(cfg["blocks"])])
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.head = nn.Linear(c, 2 * (self.n_fft // 2 + 1))
        self.integrated = cfg.get("phase", "absolute") == "integrated"

    def forward(self, mel):
        x = self.pre(F.pad(mel, (self.k - 1, 0)))
        for b in self.blocks:
            x = b(x)
        h = self.head(self.norm(x.transpose(1, 2)))
        f = self.n_fft // 2 + 1
        mag = torch.exp(h[..., :f].clamp(max=10.0))
        ph = h[..., f:]
        if self.integrated:
            # Phase advances summed over frames, plus each bin's carrier: pi*k per frame (hop = n_fft/2).
            t = ph.shape[1]
            k = torch.arange(f)
            steps = torch.arange(1, t + 1)
            carrier = math.pi * ((k[None, :] * steps[:, None]) % 2).to(ph.dtype)
            ph = torch.cumsum(ph, dim=1) + carrier
        spec = torch.complex(mag * torch.cos(ph), mag * torch.sin(ph))
        n = self.n_fft
        win = torch.sin(math.pi * torch.arange(n, dtype=mel.dtype) / n)
        frames = torch.fft.irfft(spec, n=n) * win  # [B, T, n]
        b, t, _ = frames.shape
        out = F.fold(frames.transpose(1, 2), (1, (t - 1) * self.hop + n), (1, n), stride=(1, self.hop)).flatten(1)
        return out[:, n // 2: n // 2 + t * self.hop]
