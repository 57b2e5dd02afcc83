#!/usr/bin/env bash
# recipes/vctk/run.sh: voxswap on the CSTR VCTK corpus (110 English speakers), which you download
# yourself (see README.md).
#
#   bash recipes/vctk/run.sh [--config FILE] [--stage N] [--stop-stage M] [--jobs J]
#
# Stages (each can be re-run; a re-run resumes or does nothing):
#   0  check the download: [prepare] root holds wav48_silence_trimmed/ (VCTK 0.92, FLAC, mic1)
#      or wav48/ (VCTK 0.80, WAV)
#   1  prepare data: <work>/corpus/{train,valid}/<speaker>/ of links to the audio; the speakers in
#      [prepare] valid_speakers go to valid/ (never trained on), the others to train/; the
#      transcripts (txt/) in phonemes, <work>/corpus/{train,valid}/phonemes.tsv, for the phonetic
#      head (train.lambda_phone; needs espeak-ng)
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

layout() {
  if [[ -d $ROOT/wav48_silence_trimmed ]]; then
    echo "0.92 $ROOT/wav48_silence_trimmed _mic1.flac"
  elif [[ -d $ROOT/wav48 ]]; then
    echo "0.80 $ROOT/wav48 .wav"
  else
    echo "VCTK not found: $ROOT has neither wav48_silence_trimmed/ (VCTK 0.92) nor wav48/ (VCTK 0.80);" \
      "set [prepare] root in $CONFIG (see recipes/vctk/README.md)" >&2
    exit 1
  fi
}

if stage 0 "check the download"; then
  read -r version audio suffix < <(layout)
  n=$(find "$audio" -mindepth 1 -maxdepth 1 -type d | wc -l)
  echo "VCTK $version at $ROOT: $n speaker folders"
  ((n > 0)) || { echo "no speaker folders in $audio" >&2; exit 1; }
fi

if stage 1 "prepare data"; then
  read -r version audio suffix < <(layout)
  valid=" $(toml_get prepare valid_speakers) "
  rm -rf "$CORPUS.tmp"
  mkdir -p "$CORPUS.tmp/train" "$CORPUS.tmp/valid"
  count=0
  for dir in "$audio"/*/; do
    spk=$(basename "$dir")
    split=train
    [[ $valid == *" $spk "* ]] && split=valid
    mkdir -p "$CORPUS.tmp/$split/$spk"
    for f in "$dir"*"$suffix"; do
      [[ -e $f ]] || continue
      name=$(basename "$f")
      ln -s "$(realpath "$f")" "$CORPUS.tmp/$split/$spk/$name"
      txt=$ROOT/txt/$spk/${name%"$suffix"}.txt
      [[ -f $txt ]] && printf '%s/%s\t%s\n' "$spk" "$name" "$(tr -s '\n\t' '  ' <"$txt")" >>"$CORPUS.tmp/$split/transcripts.tsv"
      count=$((count + 1))
    done
    rmdir "$CORPUS.tmp/$split/$spk" 2>/dev/null || true
  done
  ((count > 0)) || { echo "no *$suffix files under $audio" >&2; exit 1; }
  for split in train valid; do write_phonemes "$CORPUS.tmp/$split"; done
  rm -rf "$CORPUS"
  mv "$CORPUS.tmp" "$CORPUS"
  echo "$count utterances: $(find "$CORPUS/train" -mindepth 1 -maxdepth 1 -type d | wc -l) training speakers, $(find "$CORPUS/valid" -mindepth 1 -maxdepth 1 -type d | wc -l) validation speakers"
fi

run_common_stages "$CORPUS"
