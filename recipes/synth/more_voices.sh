#!/usr/bin/env bash
# Development step, run once; its output, voices_more.tsv, is committed. More training voices for
# the synthetic corpus (the model renders its 67 training voices far better than unseen
# ones): every espeak-ng and mbrola candidate at a low and a high base pitch (candidates.sh
# --pitch), kept when the judge tells it apart from every voice of voices.tsv and every one added
# before it (select_voices.py --keep). voices.tsv's voices and splits stay as they are, so the
# validation voices are the same and stay unseen. Needs the judge's venv (../judge-venv) and the
# corpus of voices.tsv (run.sh stage 1: its recordings of the 12 probe sentences are reused).
#   bash recipes/synth/more_voices.sh [PROBE_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
probe=${1:-$here/data/probe_more}
py=${JUDGE_PY:-$here/../../../judge-venv/bin/python}
judge=$here/../../../shared/judge/judge.py
corpus=$here/data/corpus
mkdir -p "$probe"
"$here/candidates.sh" --pitch >"$probe/candidates.tsv"
# The probe sentences of select_voices.sh: the first 12 of the corpus's (sentences.sh 1200).
head -n 12 "$here/data/sentences.txt" >"$probe/sentences.txt"
# voices.tsv's voices: their corpus recordings of the probe sentences (every voice reads them).
while IFS=$'\t' read -r name engine voice split; do
  [[ $name = \#* || -z $name ]] && continue
  mkdir -p "$probe/$name"
  for k in $(seq 1 12); do
    f=s$(printf %04d "$k").wav
    ln -sf "$corpus/$split/$name/$f" "$probe/$name/$f"
  done
done <"$here/voices.tsv"
"$here/probe_synth.sh" "$probe"
"$py" "$judge" spk "$probe" | tee "$probe/spk.txt"
"$py" "$here/select_voices.py" --keep "$here/voices.tsv" "$probe/candidates.tsv" "$probe" >"$here/voices_more.tsv"
grep '^# .* more candidate' "$here/voices_more.tsv"
