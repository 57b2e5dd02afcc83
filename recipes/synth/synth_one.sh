#!/usr/bin/env bash
# Synthesise one utterance: synth_one.sh ENGINE VOICE TEXT OUT.wav
#   ENGINE: espeak (VOICE = espeak-ng voice, e.g. en-us+m3 or mb-de1-en, optionally followed by
#           espeak-ng options: "en-us+m3 -p 25" sets the base pitch) | festival (VOICE = festival voice)
# Writes OUT.wav as 16 kHz mono 16-bit, peak-normalised to -3 dBFS, atomically (temp file + rename),
# and does nothing if OUT.wav already exists, so that a rerun resumes where the last one stopped.
set -euo pipefail
engine=$1 voice=$2 text=$3 out=$4
[[ -s $out ]] && exit 0
mkdir -p "$(dirname "$out")"
tmp=$(mktemp --tmpdir="$(dirname "$out")" .synth.XXXXXX)
raw=$tmp.raw.wav
trap 'rm -f "$tmp" "$raw"' EXIT
case $engine in
espeak)
  read -r -a opts <<<"$voice"
  espeak-ng -v "${opts[0]}" "${opts[@]:1}" -w "$raw" -- "$text" 2>/dev/null ;;
festival) printf '%s\n' "$text" | text2wave -eval "(voice_$voice)" -o "$raw" ;;
*) echo "synth_one.sh: unknown engine '$engine'" >&2; exit 2 ;;
esac
sox -V1 "$raw" -t wav -r 16000 -b 16 -c 1 "$tmp" norm -3
mv "$tmp" "$out"
