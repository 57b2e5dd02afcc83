#!/usr/bin/env bash
# Makes the short speech clips and known-answer signals in tests/data/.
# Needs: espeak-ng, sox, lame (apt-get install espeak-ng sox lame).
# The sentences are Harvard sentences (IEEE 1969, public domain).
# The outputs are committed; tests never run this script.
set -euo pipefail
cd "$(dirname "$0")/../../tests/data"

say() { # voice, text, out.wav (16 kHz mono 16-bit)
  espeak-ng -v "$1" -s 150 -w /tmp/voxswap_say.wav "$2"
  sox /tmp/voxswap_say.wav -r 16000 -c 1 -b 16 "$3"
}

say en-us+m3 "The birch canoe slid on the smooth planks." speech_m.wav
say en-gb+f3 "Glue the sheet to the dark blue background." speech_f.wav
say en-gb-scotland+m1 "It's easy to tell the depth of a well." speech_s.wav

# Other formats of the same clip (FLAC lossless, Ogg Vorbis and MP3 lossy).
sox speech_m.wav speech_m.flac
sox speech_m.wav -C 5 speech_m.ogg
lame --quiet -b 64 speech_m.wav speech_m.mp3
# ADPCM WAV (4 bits a sample), which hound cannot read and Symphonia can.
sox speech_m.wav -e ima-adpcm speech_m_ima.wav
sox speech_m.wav -e ms-adpcm speech_m_ms.wav

# 44.1 kHz stereo, 24-bit: left and right are two different voices.
espeak-ng -v en-us+m3 -s 150 -w /tmp/voxswap_l.wav "Rice is often served."
espeak-ng -v en-gb+f3 -s 150 -w /tmp/voxswap_r.wav "Rice is often served."
sox -M /tmp/voxswap_l.wav /tmp/voxswap_r.wav -r 44100 -b 24 stereo_44k_24bit.wav trim 0 1.0

# Known answers: 1 kHz sine at 0.5 amplitude, 1 s, 16 kHz, 32-bit float.
sox -n -r 16000 -c 1 -e floating-point -b 32 sine_1k_16k_f32.wav synth 1 sine 1000 vol 0.5

rm -f /tmp/voxswap_say.wav /tmp/voxswap_l.wav /tmp/voxswap_r.wav
ls -l
