#!/usr/bin/env bash
# Development step, run once; its output, voices.tsv, is committed. Needs the judge's venv
# (../shared/judge/README.md) at ../judge-venv beside the checkout, or JUDGE_PY=/path/to/python.
#   bash recipes/synth/select_voices.sh [PROBE_DIR]
# Synthesises 12 sentences with every candidate voice into PROBE_DIR, scores them with the
# judge's `spk`, and writes voices.tsv (see select_voices.py for the rule).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
probe=${1:-$here/data/probe}
py=${JUDGE_PY:-$here/../../../judge-venv/bin/python}
judge=$here/../../../shared/judge/judge.py
mkdir -p "$probe"
"$here/candidates.sh" >"$probe/candidates.tsv"
"$here/sentences.sh" 1200 | head -n 12 >"$probe/sentences.txt"
"$here/probe_synth.sh" "$probe"
"$py" "$judge" spk "$probe" | tee "$probe/spk.txt"
"$py" "$here/select_voices.py" "$probe/candidates.tsv" "$probe" >"$here/voices.tsv"
head -n 1 "$here/voices.tsv"
