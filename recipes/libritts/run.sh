#!/usr/bin/env bash
# recipes/libritts/run.sh: voxswap on LibriTTS (24 kHz read English, 2,456 speakers), which you
# download yourself (see README.md).
#
#   bash recipes/libritts/run.sh [--config FILE] [--stage N] [--stop-stage M] [--jobs J]
#
# Stages (each can be re-run; a re-run resumes or does nothing):
#   0  check the download: [prepare] root holds the subsets named in [prepare] train_subsets and
#      valid_subsets (e.g. train-clean-100/, dev-clean/), each <subset>/<speaker>/<chapter>/*.wav
#   1  prepare data: <work>/corpus/{train,valid}/<speaker>/ linking to the speakers' folders;
#      the valid subsets' speakers (disjoint from the training subsets' in LibriTTS) go to valid/;
#      the normalised transcripts in phonemes, <work>/corpus/{train,valid}/phonemes.tsv, for the
#      phonetic head (train.lambda_phone; needs espeak-ng)
#   2  extract features: check the corpus (voxswap data check), fill the log-mel cache
#   3  train the model (voxswap train; resumes from the newest checkpoint)
#   4  train the vocoder (voxswap train --vocoder) when the config has a [vocoder] section
#   5  evaluate: one-shot conversions between validation speakers, scored by voxswap eval
#   6  export the newest checkpoint (and the vocoder's, if trained) to a model folder ([export] dir)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"

WORK=$(toml_path prepare work data)
ROOT=$(toml_path prepare root)
CORPUS=$WORK/corpus
read -r -a TRAIN_SUBSETS <<<"$(toml_get prepare train_subsets)"
read -r -a VALID_SUBSETS <<<"$(toml_get prepare valid_subsets)"

if stage 0 "check the download"; then
  for s in "${TRAIN_SUBSETS[@]}" "${VALID_SUBSETS[@]}"; do
    [[ -d $ROOT/$s ]] || { echo "LibriTTS subset $s not found in $ROOT; set [prepare] root in $CONFIG (see recipes/libritts/README.md)" >&2; exit 1; }
    echo "$s: $(find "$ROOT/$s" -mindepth 1 -maxdepth 1 -type d | wc -l) speakers"
  done
fi

if stage 1 "prepare data"; then
  rm -rf "$CORPUS.tmp"
  mkdir -p "$CORPUS.tmp/train" "$CORPUS.tmp/valid"
  link_subsets() {
    local split=$1
    shift
    for s in "$@"; do
      [[ -d $ROOT/$s ]] || { echo "LibriTTS subset $s not found in $ROOT" >&2; exit 1; }
      for dir in "$ROOT/$s"/*/; do
        local spk
        spk=$(basename "$dir")
        if [[ -e $CORPUS.tmp/train/$spk || -e $CORPUS.tmp/valid/$spk ]]; then
          echo "speaker $spk is in more than one subset ($s); LibriTTS subsets have disjoint speakers" >&2
          exit 1
        fi
        ln -s "$(realpath "$dir")" "$CORPUS.tmp/$split/$spk"
      done
    done
  }
  link_subsets train "${TRAIN_SUBSETS[@]}"
  link_subsets valid "${VALID_SUBSETS[@]}"
  # The normalised transcript beside each utterance, for the phonetic head.
  for split in train valid; do
    find -L "$CORPUS.tmp/$split" -mindepth 3 -maxdepth 3 -name '*.normalized.txt' -printf '%P\n' | LC_ALL=C sort \
      | while IFS= read -r t; do
        wav=${t%.normalized.txt}.wav
        [[ -e $CORPUS.tmp/$split/$wav ]] && printf '%s\t%s\n' "$wav" "$(tr -s '\n\t' '  ' <"$CORPUS.tmp/$split/$t")"
      done >"$CORPUS.tmp/$split/transcripts.tsv" || true
    write_phonemes "$CORPUS.tmp/$split"
  done
  rm -rf "$CORPUS"
  mv "$CORPUS.tmp" "$CORPUS"
  echo "$(find "$CORPUS/train" -mindepth 1 -maxdepth 1 -type l | wc -l) training speakers (${TRAIN_SUBSETS[*]}), $(find "$CORPUS/valid" -mindepth 1 -maxdepth 1 -type l | wc -l) validation speakers (${VALID_SUBSETS[*]})"
fi

run_common_stages "$CORPUS"
