#!/usr/bin/env bash
# Exports a checkpoint into pretrained/ (in half precision; HALF=0 for single) and builds its
# speaker bank (pretrained/speakers/): every training voice of the synthetic corpus, embedded
# from 5 of its utterances.
#   bash scripts/dev/export_pretrained.sh CHECKPOINT_DIR [TRAIN_CORPUS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ckpt=$1
corpus=${2:-$root/recipes/synth/data/corpus/train}
bin=${VOXSWAP_BIN:-$root/target/release/voxswap}
dest=$root/pretrained
mkdir -p "$dest"
half=()
[[ ${HALF:-1} == 1 ]] && half=(--half)
"$bin" export "$ckpt" "$dest" "${half[@]}" > /dev/null
# Checkpoints written before voxswap had `norm_refresh` (the synth run's up to step 65,000)
# lack it; the synth recipe's model configuration sets it to half its 128-frame segments.
if ! grep -q '"norm_refresh"' "$dest/config.json"; then
  sed -i '0,/^  "preset"/s//  "norm_refresh": '"${NORM_REFRESH:-64}"',\n  "preset"/' "$dest/config.json"
fi
rm -rf "$dest/speakers"
for d in "$corpus"/*/; do
  name=$(basename "$d")
  mapfile -t refs < <(find "$d" -name '*.wav' | sort | head -n 5)
  "$bin" embed "${refs[@]}" --name "$name" --bank "$dest/speakers" --model "$dest" > /dev/null
done
# Reference paths relative to the repository, not this machine.
sed -i "s|$root/||" "$dest"/speakers/*.json
echo "exported $(basename "$ckpt") with $(ls "$dest/speakers" | wc -l) speakers to $dest"
