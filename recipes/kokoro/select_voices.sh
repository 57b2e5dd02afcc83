#!/usr/bin/env bash
# select_voices.sh [--jobs J]: remakes voices.tsv, the recipe's voice list (a development step;
# the recipe itself only reads voices.tsv). Needs run.sh's stage 0 and the judge's venv
# (../shared/judge, ../judge-venv; JUDGE and JUDGE_PY override them).
#   1. candidates: the 54 base voices and random blends, in two rounds (kokoro.py candidates;
#      seeds, counts and the held-out validation voices below);
#   2. every candidate reads the shared sentences into the corpus folder (stage 1 reuses them);
#   3. the judge's speaker encoder keeps the blends it tells apart (select_voices.py; its
#      embeddings are cached beside the probes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
JOBS=$(nproc)
[[ ${1-} = --jobs ]] && JOBS=$2
WORK=$here/data
ENV=$WORK/env
JUDGE=${JUDGE:-$repo/../shared/judge/judge.py}
JUDGE_PY=${JUDGE_PY:-$repo/../judge-venv/bin/python}
[[ -r $JUDGE && -x $JUDGE_PY ]] || { echo "select_voices.sh: needs the judge ($JUDGE) and its venv ($JUDGE_PY)" >&2; exit 1; }
[[ -x $ENV/venv/bin/python ]] || { echo "select_voices.sh: run 'bash run.sh --stop-stage 0' first" >&2; exit 1; }
# Held out entirely: 4 US, 2 British and 4 other-language voices, both sexes.
VALID=af_nicole,af_sarah,am_eric,am_liam,bf_emma,bm_daniel,ef_dora,im_nicola,pf_dora,zm_yunxi
mkdir -p "$WORK"
# Round 1: the base voices and blends of two at any weights; round 2: blends of two or three,
# weights near even (round 1 showed lopsided blends too close to a parent for the judge).
{
  "$ENV/venv/bin/python" "$here/kokoro.py" candidates --voices "$ENV/package/voices" --seed 1 \
    --blends 330 --valid-blends 8 --valid "$VALID" --round 1
  "$ENV/venv/bin/python" "$here/kokoro.py" candidates --voices "$ENV/package/voices" --seed 2 \
    --blends 300 --valid-blends 12 --valid "$VALID" --tag b --blends-only | tail -n +2
} >"$WORK/candidates.tsv"
mapfile -t shared < <("$repo/recipes/synth/sentences.sh" 600 | head -n 2)
jobs=$WORK/probe_jobs.tsv
: >"$jobs"
tail -n +2 "$WORK/candidates.tsv" | while IFS=$'\t' read -r name mix speed split; do
  for k in 0 1; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$mix" "$speed" "${shared[k]}" \
      "$WORK/corpus/$split/$name/s$(printf %04d $((k + 1))).wav" >>"$jobs"
  done
done
echo "$(wc -l <"$jobs") probe utterances ($JOBS jobs)"
for ((w = 0; w < JOBS; w++)); do
  KOKORO_JA_CACHE=$ENV/cache "$ENV/venv/bin/python" "$here/kokoro.py" synth --voices "$ENV/package/voices" \
    --jobs "$jobs" --worker $w --workers "$JOBS" &
done
wait
"$JUDGE_PY" "$here/select_voices.py" "$WORK/candidates.tsv" "$WORK/corpus" "$JUDGE" >"$here/voices.tsv.tmp"
mv "$here/voices.tsv.tmp" "$here/voices.tsv"
