#!/usr/bin/env bash
# recipes/synth/run.sh: a multi-speaker English corpus from Debian's speech synthesisers, and a
# voxswap model trained on it.
#
#   bash recipes/synth/run.sh [--config FILE] [--stage N] [--stop-stage M] [--jobs J]
#
# Stages (each can be re-run; a re-run resumes or does nothing):
#   0  system packages: espeak-ng, mbrola and its voices, festival and its English voices, sox,
#      wordnet-base (contrib/non-free through private apt folders; the system's apt sources are
#      not changed). Skipped when everything is installed.
#   1  prepare data: the sentences (WordNet usage examples) and every voice of [prepare] voices
#      (voices.tsv) reading
#      its share of them, in parallel (--jobs), 16 kHz mono, into <work>/corpus/{train,valid}/
#   2  extract features: check the corpus (voxswap data check), fill the log-mel cache
#   3  train the model (voxswap train; resumes from the newest checkpoint)
#   4  train the vocoder (voxswap train --vocoder) when the config has a [vocoder] section
#   5  evaluate: one-shot conversions between validation speakers, scored by voxswap eval
#   6  export the newest checkpoint (and the vocoder's, if trained) to a model folder ([export] dir)
#
# --config defaults to config.toml beside this script (the stream preset, long run);
# config_tiny.toml trains the tiny preset for a few hundred steps (an end-to-end check).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"

WORK=$(toml_path prepare work data)
VOICES=$(toml_path prepare voices voices.tsv)
CORPUS=$WORK/corpus

if stage 0 "system packages"; then
  pkgs=(espeak-ng mbrola festival sox wordnet-base)
  while IFS=$'\t' read -r name engine voice split; do
    [[ $name = \#* || -z $name ]] && continue
    case $name in
    mb_*) pkgs+=("mbrola-${name#mb_}") ;;
    fe_*)
      case $voice in
      kal_diphone) pkgs+=(festvox-kallpc16k) ;;
      ked_diphone) pkgs+=(festvox-kdlpc16k) ;;
      rab_diphone) pkgs+=(festvox-rablpc16k) ;;
      don_diphone) pkgs+=(festvox-don) ;;
      cmu_us_slt_arctic_hts) pkgs+=(festvox-us-slt-hts) ;;
      *) echo "voices.tsv: $name: no Debian package known for festival voice $voice" >&2; exit 2 ;;
      esac
      ;;
    esac
  done <"$VOICES"
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing ${#missing[@]} packages: ${missing[*]}"
    apt_private_install "${missing[@]}"
  else
    echo "all ${#pkgs[@]} packages installed"
  fi
fi

if stage 1 "prepare data"; then
  n_sent=$(toml_get prepare sentences 1200)
  per=$(toml_get prepare utterances_per_speaker 200)
  shared=$(toml_get prepare shared_sentences 40)
  ((shared < per && per <= n_sent)) || { echo "config: need shared_sentences < utterances_per_speaker <= sentences" >&2; exit 2; }
  mkdir -p "$CORPUS/train" "$CORPUS/valid"
  sentences=$WORK/sentences.txt
  if [[ ! -s $sentences ]] || (($(wc -l <"$sentences") != n_sent)); then
    "$RECIPE_DIR/sentences.sh" "$n_sent" >"$sentences.tmp"
    mv "$sentences.tmp" "$sentences"
  fi
  cp -p "$sentences" "$CORPUS/train/sentences.txt"
  cp -p "$sentences" "$CORPUS/valid/sentences.txt"
  mapfile -t text <"$sentences"
  # Every speaker reads the first `shared` sentences (a parallel set shared by all voices) and
  # per-shared more from a window that moves on by per-shared sentences from one speaker to the
  # next, so that together the speakers read every sentence and any two neighbours share some.
  # The corpus is exactly what voices.tsv and [prepare] say: speaker folders and files they no
  # longer name (a voice dropped or moved to the other split, other sentence counts) are removed.
  jobs_file=$WORK/jobs.bin
  : >"$jobs_file"
  declare -A wanted=()
  i=0 todo=0 total=0
  while IFS=$'\t' read -r name engine voice split; do
    [[ $name = \#* || -z $name ]] && continue
    [[ $split = train || $split = valid ]] || { echo "voices.tsv: $name: split must be train or valid" >&2; exit 2; }
    dir=$CORPUS/$split/$name
    mkdir -p "$dir"
    rest=$((n_sent - shared))
    for ((j = 0; j < per; j++)); do
      if ((j < shared)); then k=$j; else k=$((shared + (i * (per - shared) + j - shared) % rest)); fi
      out=$dir/s$(printf %04d $((k + 1))).wav
      wanted[$out]=1
      total=$((total + 1))
      [[ -s $out ]] && continue
      printf '%s\0%s\0%s\0%s\0' "$engine" "$voice" "${text[k]}" "$out" >>"$jobs_file"
      todo=$((todo + 1))
    done
    i=$((i + 1))
  done <"$VOICES"
  prune_corpus "$CORPUS"
  echo "$i voices, $total utterances, $todo to synthesise ($JOBS jobs)"
  if ((todo)); then
    start=$SECONDS
    xargs -0 -n4 -P "$JOBS" "$RECIPE_DIR/synth_one.sh" <"$jobs_file" || true
    have=$(find "$CORPUS/train" "$CORPUS/valid" -mindepth 2 -maxdepth 2 -name '*.wav' | wc -l)
    ((have >= total)) || { echo "stage 1: $((total - have)) utterances failed; rerun to retry" >&2; exit 1; }
    echo "synthesised $todo utterances in $((SECONDS - start)) s"
  fi
  rm -f "$jobs_file"
  # Phoneme transcripts for the phonetic head (train.lambda_phone), remade when the sentences
  # or the corpus changed.
  for split in train valid; do
    tsv=$CORPUS/$split/phonemes.tsv
    if [[ ! -s $tsv || $CORPUS/$split/sentences.txt -nt $tsv || $(wc -l <"$tsv") -ne $(find "$CORPUS/$split" -mindepth 2 -maxdepth 2 -name '*.wav' | wc -l) ]]; then
      "$RECIPE_DIR/phonemes.sh" "$CORPUS/$split"
    fi
  done
fi

run_common_stages "$WORK/corpus"
