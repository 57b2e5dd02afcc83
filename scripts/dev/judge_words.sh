#!/usr/bin/env bash
# Words kept in conversion, by the independent judge (../shared/judge): clearly spoken sources
# converted into the unseen validation voices, Whisper's WER of each conversion against its
# source's. Development tool: needs the judge's venv (../judge-venv) and the synthesisers of
# recipes/synth (espeak-ng with mbrola-us1/us2, festival with kal, rab and the CMU slt HTS voice).
#
#   bash scripts/dev/judge_words.sh MODEL_DIR VALID_CORPUS OUT_DIR
#   ../judge-venv/bin/python scripts/dev/judge_paired.py A/vc_rows.jsonl B/vc_rows.jsonl 1
#
# The validation sources read too badly for Whisper tiny.en (83% WER on their own) to show lost
# words. These five read 10–40% (`judge.py asr`): mbrola us1 (a validation voice) and four voices
# no corpus has, made by shifting the pitch (sox) of voices Whisper reads well: mbrola us2 +400
# cents, festival kal +300, rab +400 and 10% faster, slt −400. Each reads 11 of the shared
# sentences (s0002..s0038, rotating); each reading is converted with one reference utterance
# (B/s0001.wav) into every validation voice but its own: 54 conversions. Sources are made once
# into OUT_DIR/../word_sources (shared by the runs judged beside it).
set -euo pipefail
model=$1 valid=$2 out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${JUDGE_PY:-$root/../judge-venv/bin/python}
bin=${VOXSWAP_BIN:-$root/target/release/voxswap}
synth=$root/recipes/synth/synth_one.sh
src_dir=$(dirname "$out")/word_sources
mkdir -p "$out/converted" "$src_dir"
mapfile -t spk < <(find -L "$valid" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
mapfile -t text < "$valid/sentences.txt"
# name engine voice sox-effects validation-voice-it-is (or -)
sources=(
  "us1|espeak|mb-us1||mb_us1"
  "us2_up|espeak|mb-us2|pitch 400|-"
  "kal_up|festival|kal_diphone|pitch 300|-"
  "rab_up|festival|rab_diphone|pitch 400 tempo 1.1|-"
  "slt_down|festival|cmu_us_slt_arctic_hts|pitch -400|-"
)
printf 'converted\ttargets\tsource\ttext\n' > "$out/vc.tsv"
n=0
for entry in "${sources[@]}"; do
  IFS='|' read -r name engine voice effects self <<<"$entry"
  for b in "${spk[@]}"; do
    [[ $b == "$self" ]] && continue
    k=$((2 + n % 37))
    s=$(printf 's%04d' "$k")
    t1=$(printf 's%04d' $((k + 1))); t2=$(printf 's%04d' $((k + 2)))
    src=$src_dir/$name/$s.wav
    if [[ ! -s $src ]]; then
      mkdir -p "$src_dir/$name"
      raw=$src_dir/$name/.raw_$s.wav
      rm -f "$raw"
      "$synth" "$engine" "$voice" "${text[k-1]}" "$raw"
      if [[ -n $effects ]]; then sox -V1 "$raw" "$src.tmp.wav" $effects; else cp "$raw" "$src.tmp.wav"; fi
      mv "$src.tmp.wav" "$src"
      rm -f "$raw"
    fi
    c=$out/converted/${name}__${b}__$s.wav
    [[ -s $c ]] || "$bin" convert "$src" -t "$valid/$b/s0001.wav" -o "$c" --model "$model" ${CONVERT_ARGS:-} > /dev/null
    printf '%s\t%s;%s\t%s\t%s\n' "$c" "$valid/$b/$t1.wav" "$valid/$b/$t2.wav" "$src" "${text[k-1]}" >> "$out/vc.tsv"
    n=$((n + 1))
  done
done
echo "$n conversions; judging"
"$py" "$root/../shared/judge/judge.py" vc "$out/vc.tsv" --asr --json "$out/vc.json" --per-pair "$out/vc_rows.jsonl" | tee "$out/vc.txt"
