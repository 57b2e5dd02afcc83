#!/usr/bin/env bash
# The neural vocoder against Griffin-Lim on resynthesis of voices it never trained on, by the
# independent judge (../shared/judge). Development tool: needs the judge's venv (../judge-venv).
#
#   bash scripts/dev/vocoder/judge_resynth.sh MODEL_DIR VALID_CORPUS OUT_DIR
#   PER_VOICE=2 ASR=0 bash scripts/dev/vocoder/judge_resynth.sh …   # quicker: fewer files, no Whisper
#
# For PER_VOICE utterances (s0002…) of every validation voice: its log-mel resynthesised by
# MODEL_DIR's neural vocoder (`voxswap resynth --vocoder neural`) and by 32-iteration Griffin-Lim
# (`--vocoder griffin-lim`). The judge's `pair` metrics of each against the original (PESQ, STOI,
# MCD: scripts/dev/vocoder/pair_metrics.py, paired differences), then its `vc` scores of both
# (similarity to two other utterances of the voice, Whisper's WER) and their paired comparison
# (scripts/dev/judge_paired.py).
set -euo pipefail
model=$1 valid=$2 out=$3
root=$(cd "$(dirname "$0")/../../.." && pwd)
py=${JUDGE_PY:-$root/../judge-venv/bin/python}
judge=$root/../shared/judge/judge.py
bin=${VOXSWAP_BIN:-$root/target/release/voxswap}
per=${PER_VOICE:-4}
mkdir -p "$out/neural" "$out/griffin-lim"
mapfile -t spk < <(find -L "$valid" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
mapfile -t text < "$valid/sentences.txt"
hdr=$'converted\ttargets\tsource\ttext'
for v in neural griffin-lim; do echo "$hdr" > "$out/$v.tsv"; done
: > "$out/pairs.tsv"
for s in "${spk[@]}"; do
  for ((i = 0; i < per; i++)); do
    k=$((2 + i)); u=$(printf 's%04d' "$k")
    t1=$(printf 's%04d' $((k + 10))); t2=$(printf 's%04d' $((k + 11)))
    src=$valid/$s/$u.wav
    for v in neural griffin-lim; do
      o=$out/$v/${s}__$u.wav
      [[ -s $o ]] || "$bin" resynth "$src" -o "$o" --model "$model" --vocoder "$v" > /dev/null
      printf '%s\t%s;%s\t%s\t%s\n' "$o" "$valid/$s/$t1.wav" "$valid/$s/$t2.wav" "$src" "${text[k-1]}" >> "$out/$v.tsv"
    done
    printf '%s\t%s\t%s\n' "$src" "$out/griffin-lim/${s}__$u.wav" "$out/neural/${s}__$u.wav" >> "$out/pairs.tsv"
  done
done
echo "$(wc -l < "$out/pairs.tsv") files; pair metrics (A = Griffin-Lim, B = neural)"
"$py" "$root/scripts/dev/vocoder/pair_metrics.py" "$out/pairs.tsv" | tee "$out/pair.txt"
asr=$([[ ${ASR:-1} == 0 ]] || echo --asr)
for v in griffin-lim neural; do
  "$py" "$judge" vc "$out/$v.tsv" $asr --json "$out/$v.json" --per-pair "$out/${v}_rows.jsonl" > "$out/$v.txt"
done
echo "similarity and WER (A = Griffin-Lim, B = neural)"
"$py" "$root/scripts/dev/judge_paired.py" "$out/griffin-lim_rows.jsonl" "$out/neural_rows.jsonl" | tee "$out/vc_paired.txt"
