#!/usr/bin/env bash
# One-shot conversion into voices the model WAS trained on: sources are the 11 validation voices,
# targets every 6th training voice (12), each given ONE reference utterance (s0001); 44 pairs,
# otherwise the protocol of scripts/dev/judge_oneshot.sh (judge: ../shared/judge, its venv in
# ../judge-venv). Tells a model that cannot generalise to new voices from one that cannot
# convert at all. Development tool.
#
#   bash scripts/dev/judge_seen.sh MODEL_DIR OUT_DIR
set -euo pipefail
model=$1 out=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
valid=$root/recipes/synth/data/corpus/valid
train=$root/recipes/synth/data/corpus/train
mkdir -p "$out/converted"
mapfile -t src < <(find "$valid" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
mapfile -t tgt < <(find "$train" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | awk 'NR % 6 == 1')
mapfile -t text < "$valid/sentences.txt"
printf 'converted\ttargets\tsource\ttext\n' > "$out/vc.tsv"
n=0
for a in "${src[@]}"; do
  for j in 0 1 2 3; do
    b=${tgt[$(( (n + j * 3) % ${#tgt[@]} ))]}
    k=$((2 + n % 37)); s=$(printf 's%04d' "$k")
    t1=$(printf 's%04d' $((k + 1))); t2=$(printf 's%04d' $((k + 2)))
    c=$out/converted/${a}__${b}__$s.wav
    [[ -s $c ]] || "${VOXSWAP_BIN:-$root/target/release/voxswap}" convert "$valid/$a/$s.wav" -t "$train/$b/s0001.wav" -o "$c" --model "$model" ${CONVERT_ARGS:-} > /dev/null
    printf '%s\t%s;%s\t%s\t%s\n' "$c" "$train/$b/$t1.wav" "$train/$b/$t2.wav" "$valid/$a/$s.wav" "${text[k-1]}" >> "$out/vc.tsv"
    n=$((n + 1))
  done
done
echo "$n conversions"
"${JUDGE_PY:-$root/../judge-venv/bin/python}" "$root/../shared/judge/judge.py" vc "$out/vc.tsv" --asr --json "$out/vc.json"
