#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and run voxswap on a bundled
# example. Until the pretrained model lands, that is `resynth`: speech -> log-mel -> Griffin-Lim
# -> speech, which lets you hear what the model's frontend keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
mkdir -p out
input=tests/data/speech_f.wav
./target/release/voxswap info "$input"
./target/release/voxswap resynth "$input" -o out/speech_f_resynth.wav
./target/release/voxswap spectrogram out/speech_f_resynth.wav -o out/speech_f_resynth.png
echo "Listen: out/speech_f_resynth.wav (original: $input); picture: out/speech_f_resynth.png"
