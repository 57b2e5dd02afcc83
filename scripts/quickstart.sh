#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and convert a bundled example
# into a voice the shipped model never heard, with the model in pretrained/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
mkdir -p out
source=tests/data/speech_m.wav
target=examples/target_unseen.wav
./target/release/voxswap convert "$source" -t "$target" -o out/converted.wav
./target/release/voxswap spectrogram out/converted.wav -o out/converted.png
echo "Listen: out/converted.wav ($source in the voice of $target); picture: out/converted.png"
