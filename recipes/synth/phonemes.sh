#!/usr/bin/env bash
# phonemes.sh SPLIT_DIR: writes SPLIT_DIR/phonemes.tsv, the phoneme transcript of every
# SPEAKER/sNNNN.wav under SPLIT_DIR (line NNNN of SPLIT_DIR/sentences.txt), for the phonetic
# head (train.lambda_phone, data.phonemes). Phonemes are espeak-ng's (`-x`, en-us, whatever
# voice read the sentence: the words, not the accent; ../phonemize.sh), one token per phoneme,
# stress marks and pauses dropped. Written to a temporary file and renamed.
set -euo pipefail
dir=${1:?usage: phonemes.sh SPLIT_DIR}
[[ -s $dir/sentences.txt ]] || { echo "phonemes.sh: $dir/sentences.txt missing" >&2; exit 1; }
tmp=$(mktemp --tmpdir="$dir" .phonemes.XXXXXX)
trap 'rm -f "$tmp" "$tmp.s"' EXIT
# Sentence number TAB its phonemes (../phonemize.sh).
awk '{ print NR "\t" $0 }' "$dir/sentences.txt" | "$(dirname "$0")/../phonemize.sh" >"$tmp.s"
(($(wc -l <"$tmp.s") == $(wc -l <"$dir/sentences.txt"))) || { echo "phonemes.sh: espeak-ng failed on a sentence" >&2; exit 1; }
find "$dir" -mindepth 2 -maxdepth 2 -name 's[0-9][0-9][0-9][0-9].wav' -printf '%P\n' | LC_ALL=C sort \
  | awk -F/ 'NR == FNR { split($0, kv, "\t"); ph[kv[1]] = kv[2]; next } { n = substr($2, 2, 4) + 0; if (n in ph) print $0 "\t" ph[n] }' "$tmp.s" - >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$dir/phonemes.tsv"
echo "$(wc -l <"$dir/phonemes.tsv") utterances transcribed in $dir/phonemes.tsv"
