"""AdaIN-VC in PyTorch: the reference that voxswap-model's parity tests compare against.

A transcription of the authors' model.py (github.com/jjery2243542/adaptive_voice_conversion),
with the same module names (so the state_dict names are the safetensors names voxswap uses) and
dropout left out (the paper's configuration sets it to 0). Configured from voxswap's
config.json (ModelConfig). With `"temporal": "causal"` the content encoder and decoder pad on
the left with zeros and normalise with cumulative statistics (voxswap's streaming model). With
`speaker.attention` (voxswap's reference attention) the speaker encoder also pools the
reference's frames into tokens through learned queries, and every AdaIN of the decoder adds
what each frame reads from those tokens to its shift and scale.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


CAUSAL = False  # set by AE from the config


def pad_layer(inp, layer, pad_type="reflect", causal=None):
    k = layer.kernel_size[0]
    if CAUSAL if causal is None else causal:
        return layer(F.pad(inp, pad=(k - 1, 0)))
    pad = (k // 2, k // 2 - 1) if k % 2 == 0 else (k // 2, k // 2)
    return layer(F.pad(inp, pad=pad, mode=pad_type))


def conv_bank(x, module_list, act, causal=None):
    outs = [act(pad_layer(x, layer, causal=causal)) for layer in module_list]
    return torch.cat(outs + [x], dim=1)


def causal_norm(x, eps=1e-3):
    """Instance norm with the statistics of frames 0..t, over x - x0 (voxswap's causal norm)."""
    d = x - x[:, :, :1].detach()
    n = torch.arange(1, x.size(2) + 1, dtype=x.dtype, device=x.device)
    mean = torch.cumsum(d, 2) / n
    var = torch.relu(torch.cumsum(d * d, 2) / n - mean ** 2)
    return (d - mean) / torch.sqrt(var + eps)


class Norm(nn.Module):
    def __init__(self, c_h):
        super().__init__()
        self.inorm = nn.InstanceNorm1d(c_h, affine=False)

    def forward(self, x):
        return causal_norm(x) if CAUSAL else self.inorm(x)


def pixel_shuffle_1d(inp, scale_factor=2):
    b, c, w = inp.size()
    c //= scale_factor
    return inp.contiguous().view(b, c, scale_factor, w).permute(0, 1, 3, 2).contiguous().view(b, c, w * scale_factor)


def upsample(x, scale_factor=2):
    return F.interpolate(x, scale_factor=scale_factor, mode="nearest")


def append_cond(x, cond):
    p = cond.size(1) // 2
    mean, std = cond[:, :p], cond[:, p:]
    return x * std.unsqueeze(dim=2) + mean.unsqueeze(dim=2)


def bank_kernels(s):
    return list(range(s["bank_scale"], s["bank_size"] + 1, s["bank_scale"]))


class SpeakerEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        s = cfg["stack"]
        c_in, c_h, k, c_bank = s["c_in"], s["c_h"], s["kernel_size"], s["c_bank"]
        self.subsample = s["subsample"]
        self.conv_bank = nn.ModuleList([nn.Conv1d(c_in, c_bank, kk) for kk in bank_kernels(s)])
        self.in_conv_layer = nn.Conv1d(c_bank * len(bank_kernels(s)) + c_in, c_h, 1)
        self.first_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h, k) for _ in self.subsample])
        self.second_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h, k, stride=sub) for sub in self.subsample])
        n_dense = cfg["n_dense_blocks"]
        self.first_dense_layers = nn.ModuleList([nn.Linear(c_h, c_h) for _ in range(n_dense)])
        self.second_dense_layers = nn.ModuleList([nn.Linear(c_h, c_h) for _ in range(n_dense)])
        self.output_layer = nn.Linear(c_h, cfg["c_out"])
        att = cfg.get("attention")
        self.token_pool = TokenPool(c_h, att["tokens"], att["dim"]) if att else None

    def forward(self, x):
        out = conv_bank(x, self.conv_bank, F.relu, causal=False)
        out = F.relu(pad_layer(out, self.in_conv_layer, causal=False))
        for l, sub in enumerate(self.subsample):
            y = F.relu(pad_layer(out, self.first_conv_layers[l], causal=False))
            y = F.relu(pad_layer(y, self.second_conv_layers[l], causal=False))
            if sub > 1:
                out = F.avg_pool1d(out, kernel_size=sub, ceil_mode=True)
            out = y + out
        h = out
        out = out.mean(dim=2)
        for l in range(len(self.first_dense_layers)):
            y = F.relu(self.first_dense_layers[l](out))
            y = F.relu(self.second_dense_layers[l](y))
            out = y + out
        out = self.output_layer(out)
        if self.token_pool is not None:
            out = torch.cat([out, self.token_pool(h)], dim=1)
        return out


class TokenPool(nn.Module):
    """Learned queries [tokens, dim] attend over the frames [B, c_h, T]: [B, tokens * dim]."""

    def __init__(self, c_h, tokens, dim):
        super().__init__()
        self.query = nn.Parameter(torch.empty(tokens, dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.key = nn.Linear(c_h, dim)
        self.value = nn.Linear(c_h, dim)
        self.dim = dim

    def forward(self, h):
        ht = h.transpose(1, 2)
        k, v = self.key(ht), self.value(ht)
        a = torch.softmax(self.query @ k.transpose(1, 2) / self.dim ** 0.5, dim=-1)
        return (a @ v).flatten(1)


class TokenAttention(nn.Module):
    """Each frame of y [B, c_h, T] queries the tokens [B, M, d]: [B, 2 c_h, T] (shift, scale)."""

    def __init__(self, c_h, dim):
        super().__init__()
        self.query = nn.Linear(c_h, dim)
        self.output = nn.Linear(dim, 2 * c_h)
        self.dim = dim

    def forward(self, y, tokens):
        q = self.query(y.transpose(1, 2))
        a = torch.softmax(q @ tokens.transpose(1, 2) / self.dim ** 0.5, dim=-1)
        return self.output(a @ tokens).transpose(1, 2)


class ContentEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        s = cfg["stack"]
        c_in, c_h, k, c_bank = s["c_in"], s["c_h"], s["kernel_size"], s["c_bank"]
        self.subsample = s["subsample"]
        self.conv_bank = nn.ModuleList([nn.Conv1d(c_in, c_bank, kk) for kk in bank_kernels(s)])
        self.in_conv_layer = nn.Conv1d(c_bank * len(bank_kernels(s)) + c_in, c_h, 1)
        self.first_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h, k) for _ in self.subsample])
        self.second_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h, k, stride=sub) for sub in self.subsample])
        self.norm_layer = Norm(c_h)
        self.mean_layer = nn.Conv1d(c_h, cfg["c_out"], 1)
        self.std_layer = nn.Conv1d(c_h, cfg["c_out"], 1)
        k = cfg.get("vq_codes")
        if k:
            bound = 1.0 / cfg["c_out"] ** 0.5
            self.codebook = nn.Parameter(torch.empty(k, cfg["c_out"]).uniform_(-bound, bound))
        else:
            self.codebook = None

    def quantize(self, mu):
        """Each frame of mu and each entry scaled to length 1; the entry of largest dot product,
        straight-through; VQ loss mean((sg(z) - q)^2) + 0.25 * mean((z - sg(q))^2)."""
        b, c, t = mu.shape
        z = mu.transpose(1, 2).reshape(b * t, c)
        z = z / (z.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
        book = self.codebook / (self.codebook.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
        idx = (z @ book.t()).detach().argmax(1)
        q = book[idx]
        vq = ((z.detach() - q) ** 2).mean() + 0.25 * ((z - q.detach()) ** 2).mean()
        code = z + (q - z).detach()
        return code.reshape(b, t, c).transpose(1, 2), vq

    def forward(self, x):
        out = conv_bank(x, self.conv_bank, F.relu)
        out = F.relu(self.norm_layer(pad_layer(out, self.in_conv_layer)))
        for l, sub in enumerate(self.subsample):
            y = F.relu(self.norm_layer(pad_layer(out, self.first_conv_layers[l])))
            y = F.relu(self.norm_layer(pad_layer(y, self.second_conv_layers[l])))
            if sub > 1:
                out = F.avg_pool1d(out, kernel_size=sub, ceil_mode=True)
            out = y + out
        return pad_layer(out, self.mean_layer), pad_layer(out, self.std_layer)


class Decoder(nn.Module):
    def __init__(self, cfg, c_in, c_cond, c_out, att=None):
        super().__init__()
        c_h, k = cfg["c_h"], cfg["kernel_size"]
        self.upsample = cfg["upsample"]
        self.in_conv_layer = nn.Conv1d(c_in, c_h, 1)
        self.first_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h, k) for _ in self.upsample])
        self.second_conv_layers = nn.ModuleList([nn.Conv1d(c_h, c_h * up, k) for up in self.upsample])
        self.norm_layer = Norm(c_h)
        self.conv_affine_layers = nn.ModuleList([nn.Linear(c_cond, c_h * 2) for _ in range(len(self.upsample) * 2)])
        self.out_conv_layer = nn.Conv1d(c_h, c_out, 1)
        self.c_cond = c_cond
        self.att = att
        if att:
            self.token_attention = nn.ModuleList([TokenAttention(c_h, att["dim"]) for _ in range(len(self.upsample) * 2)])

    def adain(self, i, y, cond, tokens):
        c = self.conv_affine_layers[i](cond)
        if tokens is None:
            return append_cond(y, c)
        c = self.token_attention[i](y, tokens) + c.unsqueeze(2)
        p = c.size(1) // 2
        return y * c[:, p:] + c[:, :p]

    def forward(self, z, emb):
        cond, tokens = emb[:, :self.c_cond], None
        if self.att:
            tokens = emb[:, self.c_cond:].reshape(emb.size(0), self.att["tokens"], self.att["dim"])
        out = F.relu(self.norm_layer(pad_layer(z, self.in_conv_layer)))
        for l, up in enumerate(self.upsample):
            y = self.norm_layer(pad_layer(out, self.first_conv_layers[l]))
            y = F.relu(self.adain(l * 2, y, cond, tokens))
            y = pad_layer(y, self.second_conv_layers[l])
            if up > 1:
                y = pixel_shuffle_1d(y, scale_factor=up)
            y = self.norm_layer(y)
            y = F.relu(self.adain(l * 2 + 1, y, cond, tokens))
            out = y + upsample(out, scale_factor=up) if up > 1 else y + out
        return pad_layer(out, self.out_conv_layer)


class AE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        global CAUSAL
        CAUSAL = cfg["temporal"] == "causal"
        n_mels = cfg["frontend"]["n_mels"]
        self.speaker_encoder = SpeakerEncoder(cfg["speaker"])
        self.content_encoder = ContentEncoder(cfg["content"])
        self.decoder = Decoder(cfg["decoder"], cfg["content"]["c_out"], cfg["speaker"]["c_out"], n_mels,
                               cfg["speaker"].get("attention"))

    def forward(self, x, noise):
        """mu, log_sigma, emb, dec and the VQ loss (None without a codebook: the code is then
        sampled with the noise)."""
        emb = self.speaker_encoder(x)
        mu, log_sigma = self.content_encoder(x)
        if self.content_encoder.codebook is not None:
            z, vq = self.content_encoder.quantize(mu)
        else:
            z, vq = mu + torch.exp(log_sigma / 2) * noise, None
        dec = self.decoder(z, emb)
        return mu, log_sigma, emb, dec, vq


def loss_fn(x, mu, log_sigma, dec, lambda_rec, lambda_kl, vq=None):
    """The reference trainer's loss: λ_rec · L1 + λ_kl · KL (+ the VQ loss)."""
    rec = torch.mean(torch.abs(dec - x))
    kl = 0.5 * torch.mean(torch.exp(log_sigma) + mu ** 2 - 1 - log_sigma)
    total = lambda_rec * rec + lambda_kl * kl
    if vq is not None:
        total = total + vq
    return total, rec, kl
