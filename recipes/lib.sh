# Shared by every recipe's run.sh (sourced, not run). Gives:
#   parse_args "$@"      --config FILE --stage N --stop-stage M --jobs J --help
#   stage N "title"      true when stage N is selected; prints its banner and start time
#   toml_get SECTION KEY [DEFAULT]   a scalar from the config's [SECTION] (strings unquoted)
#   voxswap ARGS...      the workspace's release binary, built on first use
#   as_root CMD...       runs CMD as root (directly, or through sudo)
#   run_common_stages CORPUS   stages 2 to 6, the same in every recipe
#   prune_corpus CORPUS  removes the WAV files of CORPUS/{train,valid}/SPEAKER/ that the caller's
#                        associative array `wanted` (paths as keys) does not name, and empty folders
#   write_phonemes SPLIT_DIR   SPLIT_DIR/transcripts.tsv (corpus-relative path TAB text) to
#                        SPLIT_DIR/phonemes.tsv for the phonetic head (skipped without espeak-ng)
#   apt_private_install PKG...   apt-get install with Debian's contrib and non-free components
#                        enabled through private sources/lists/cache folders: the system's apt
#                        configuration is not changed.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
REPO_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
CONFIG=$RECIPE_DIR/config.toml
STAGE=0
STOP_STAGE=100
JOBS=$(nproc)

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$RECIPE_DIR/run.sh"
  exit "${1:-0}"
}

parse_args() {
  while (($#)); do
    case $1 in
    --config) CONFIG=$(realpath "$2"); shift 2 ;;
    --stage) STAGE=$2; shift 2 ;;
    --stop-stage) STOP_STAGE=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  [[ $STAGE =~ ^[0-9]+$ && $STOP_STAGE =~ ^[0-9]+$ && $JOBS =~ ^[1-9][0-9]*$ ]] ||
    { echo "run.sh: --stage, --stop-stage and --jobs take whole numbers" >&2; exit 2; }
  [[ -r $CONFIG ]] || { echo "run.sh: cannot read config $CONFIG" >&2; exit 2; }
  CONFIG_DIR=$(dirname "$CONFIG")
}

stage() {
  local n=$1
  ((n >= STAGE && n <= STOP_STAGE)) || return 1
  echo "== stage $n: $2 ($(date '+%H:%M:%S'))"
}

toml_get() {
  local section=$1 key=$2 default=${3-}
  local v
  v=$(awk -v s="[$section]" -v k="$key" '
    /^[[:space:]]*\[/ { insec = ($0 ~ "^[[:space:]]*\\[" substr(s, 2, length(s) - 2) "\\][[:space:]]*(#.*)?$"); next }
    insec && $0 ~ "^[[:space:]]*" k "[[:space:]]*=" {
      sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); gsub(/^"|"$/, ""); print; exit
    }' "$CONFIG")
  if [[ -z $v ]]; then
    [[ $# -ge 3 ]] || { echo "run.sh: $CONFIG has no [$section] $key" >&2; exit 2; }
    v=$default
  fi
  printf '%s\n' "$v"
}

# A path from the config, relative to the config's folder.
toml_path() {
  local p
  p=$(toml_get "$@")
  [[ $p = /* ]] || p=$CONFIG_DIR/$p
  printf '%s\n' "$p"
}

voxswap() {
  if [[ -z ${VOXSWAP_BIN-} ]]; then
    (cd "$REPO_ROOT" && cargo build --release --locked --quiet)
    VOXSWAP_BIN=$REPO_ROOT/target/release/voxswap
  fi
  "$VOXSWAP_BIN" "$@"
}

as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

apt_private_install() {
  local dir=${APT_PRIVATE_DIR:-$REPO_ROOT/target/apt-private}
  mkdir -p "$dir/sources" "$dir/lists/partial" "$dir/cache/archives/partial"
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  cat >"$dir/sources/voxswap.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local opts=(-o "Dir::Etc::SourceParts=$dir/sources" -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o "APT::Sandbox::User=root")
  as_root apt-get "${opts[@]}" update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq --no-install-recommends "$@"
}

prune_corpus() {
  local corpus=$1 f removed=0
  while IFS= read -r -d '' f; do
    [[ -n ${wanted[$f]-} ]] && continue
    rm -f "$f"
    removed=$((removed + 1))
  done < <(find "$corpus/train" "$corpus/valid" -mindepth 2 -maxdepth 2 -name '*.wav' -print0)
  find "$corpus/train" "$corpus/valid" -mindepth 1 -maxdepth 1 -type d -empty -delete
  ((removed == 0)) || echo "removed $removed files that the voices and settings no longer name"
}

write_phonemes() {
  local dir=$1
  [[ -s $dir/transcripts.tsv ]] || { echo "no transcripts in $dir: no phoneme transcripts (train.lambda_phone needs them)"; return 0; }
  if ! command -v espeak-ng >/dev/null; then
    echo "espeak-ng missing: no phoneme transcripts for $dir (train.lambda_phone needs them; apt-get install espeak-ng)"
    return 0
  fi
  "$REPO_ROOT/recipes/phonemize.sh" "$JOBS" <"$dir/transcripts.tsv" >"$dir/.phonemes.tmp"
  mv "$dir/.phonemes.tmp" "$dir/phonemes.tsv"
  echo "$(wc -l <"$dir/phonemes.tsv") of $(wc -l <"$dir/transcripts.tsv") transcripts in phonemes in $dir/phonemes.tsv"
}

# The file of speaker $2 under $1 for a name without the speaker prefix.
file_of() {
  if [[ -e $1/$2/$3 ]]; then echo "$1/$2/$3"; else echo "$1/$2/$2_$3"; fi
}

# Stage 5: one-shot conversion between the unseen (validation) speakers, scored by voxswap eval.
# Speaker i converts to speaker i+1, for up to [eval] sentences files that both recorded (same
# file name once a "<speaker>_" prefix is removed: a parallel pair); the target's one reference
# is another such file. Corpora without
# parallel files (LibriTTS) have nothing to score here.
evaluate() {
  local valid=$1
  local run ckpt out n_sent
  run=$(toml_path output dir)
  ckpt=$(find "$run/checkpoints" -maxdepth 1 -type d -name 'step-*' 2>/dev/null | sort | tail -n 1)
  [[ -n $ckpt ]] || { echo "stage 5: no checkpoint in $run/checkpoints (run stage 3)" >&2; exit 1; }
  n_sent=$(toml_get eval sentences 3)
  out=$run/eval/$(basename "$ckpt")
  mkdir -p "$out/converted"
  mapfile -t spk < <(find "$valid" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
  if ((${#spk[@]} < 2)); then
    echo "stage 5: fewer than two validation speakers in $valid; nothing to score"
    return 0
  fi
  printf 'converted\treference\tsource\ttargets\n' >"$out/pairs.tsv"
  local i pairs=0
  for ((i = 0; i < ${#spk[@]}; i++)); do
    local a=${spk[i]} b=${spk[$(((i + 1) % ${#spk[@]}))]}
    # File names without a leading "<speaker>_" (VCTK's p225_001_mic1.flac → 001_mic1.flac).
    mapfile -t common < <(comm -12 <(ls "$valid/$a" | sed "s/^${a}_//" | sort) \
      <(ls "$valid/$b" | sed "s/^${b}_//" | sort) | grep -E '\.(wav|flac)$' | head -n $((n_sent + 1)))
    ((${#common[@]} >= 2)) || continue
    local ref f
    ref=$(file_of "$valid" "$b" "${common[0]}")
    for f in "${common[@]:1}"; do
      local conv=$out/converted/${a}_to_${b}_${f%.*}.wav src tgt
      src=$(file_of "$valid" "$a" "$f")
      tgt=$(file_of "$valid" "$b" "$f")
      [[ -s $conv ]] || voxswap convert "$src" -t "$ref" -o "$conv" --model "$ckpt" >/dev/null
      printf '%s\t%s\t%s\t%s\n' "$conv" "$tgt" "$src" "$ref" >>"$out/pairs.tsv"
      pairs=$((pairs + 1))
    done
  done
  if ((pairs == 0)); then
    echo "stage 5: no parallel pairs (same file names) among the validation speakers; nothing to score"
    return 0
  fi
  voxswap eval --manifest "$out/pairs.tsv" --model "$ckpt" --json "$out/scores.json" >/dev/null
  grep -E '^  "(pairs|mcd_db|f0_rmse_hz|f0_corr|similarity_to_target_voxswap_encoder|similarity_to_source_voxswap_encoder)"' "$out/scores.json"
  echo "$pairs conversions in $out/converted; scores in $out/scores.json"
}

# Stages 2 to 6 of every recipe, on CORPUS/train and CORPUS/valid (unseen speakers).
run_common_stages() {
  local corpus=$1
  if stage 2 "extract features"; then
    voxswap data check "$corpus/train"
    voxswap data check "$corpus/valid"
    voxswap train --config "$CONFIG" --features-only
  fi
  if stage 3 "train the model"; then
    voxswap train --config "$CONFIG"
  fi
  if stage 4 "train the vocoder"; then
    if grep -q '^[[:space:]]*\[vocoder\]' "$CONFIG"; then
      voxswap train --config "$CONFIG" --vocoder
    else
      echo "skipped: the config has no [vocoder] section (conversion then uses Griffin-Lim)"
    fi
  fi
  if stage 5 "evaluate"; then
    evaluate "$corpus/valid"
  fi
  if stage 6 "export"; then
    local run dest last
    run=$(toml_path output dir)
    dest=$(toml_path export dir)
    last=$(find "$run/checkpoints" -maxdepth 1 -type d -name 'step-*' 2>/dev/null | sort | tail -n 1)
    [[ -n $last ]] || { echo "stage 6: no checkpoint in $run/checkpoints (run stage 3)" >&2; exit 1; }
    # [export] half = true writes the weights in half precision (voxswap export --half).
    local args=("$last" "$dest")
    [[ $(toml_get export half false) == true ]] && args+=(--half)
    if grep -q '^[[:space:]]*\[vocoder\]' "$CONFIG"; then
      local vdir vlast
      vdir=$(toml_path vocoder dir "$run/vocoder")
      vlast=$(find "$vdir/checkpoints" -maxdepth 1 -type d -name 'step-*' 2>/dev/null | sort | tail -n 1)
      if [[ -n $vlast ]]; then
        args+=(--vocoder "$vlast")
      else
        echo "no vocoder checkpoint in $vdir/checkpoints (run stage 4): the model folder has no vocoder"
      fi
    fi
    voxswap export "${args[@]}"
  fi
}
