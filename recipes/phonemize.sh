#!/usr/bin/env bash
# phonemize.sh [JOBS]: reads lines `KEY<TAB>TEXT` on stdin and writes `KEY<TAB>PHONEMES` on
# stdout, in the same order, for the phonetic head (train.lambda_phone, data.phonemes).
# Phonemes are espeak-ng's (`-x`, en-us: the words, not the talker's accent), one token per
# phoneme, stress marks and pauses dropped; a line whose text gives no phoneme is left out.
# With JOBS > 1 the lines are split into JOBS parts phonemized side by side.
set -euo pipefail
jobs=${1:-1}
command -v espeak-ng >/dev/null || { echo "phonemize.sh: espeak-ng missing (apt-get install espeak-ng)" >&2; exit 1; }
one() {
  local key text ph
  while IFS=$'\t' read -r key text; do
    ph=$(espeak-ng -q -x --sep=" " -v en-us -- "$text" | tr '\n' ' ' | tr -s ' ' '\n' \
      | sed "s/^[',]*//" | { grep -v -e '^_' -e '^$' || true; } | paste -sd ' ' -)
    [[ -n $ph ]] && printf '%s\t%s\n' "$key" "$ph"
  done
  return 0
}
if ((jobs <= 1)); then
  one
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/in"
split -n "l/$jobs" -d -a 4 "$tmp/in" "$tmp/part."
for p in "$tmp"/part.*; do
  one <"$p" >"$p.out" &
done
wait
cat "$tmp"/part.*.out
