#!/usr/bin/env bash
# Synthesises the probe sentences with every candidate voice: probe_synth.sh PROBE_DIR
# (PROBE_DIR/candidates.tsv: name, engine, voice; PROBE_DIR/sentences.txt) into
# PROBE_DIR/<name>/sNNNN.wav, in parallel, skipping what exists. For select_voices.sh and
# more_voices.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
probe=$1
mapfile -t text <"$probe/sentences.txt"
while IFS=$'\t' read -r name engine voice; do
  for k in "${!text[@]}"; do
    printf '%s\0%s\0%s\0%s\0' "$engine" "$voice" "${text[k]}" "$probe/$name/s$(printf %04d $((k + 1))).wav"
  done
done <"$probe/candidates.tsv" | xargs -0 -n4 -P "$(nproc)" "$here/synth_one.sh" || true
