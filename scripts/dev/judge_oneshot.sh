#!/usr/bin/env bash
# One-shot conversion quality by the independent judge (../shared/judge), on speakers the model
# never saw. Development tool: needs the judge's venv (../judge-venv, see its README).
#
#   bash scripts/dev/judge_oneshot.sh MODEL_DIR VALID_CORPUS OUT_DIR
#   CEILING=0 bash scripts/dev/judge_oneshot.sh …   # skip the Griffin-Lim ceiling (model-independent)
#   ASR=0 bash scripts/dev/judge_oneshot.sh …       # speaker similarity only (no Whisper: much faster)
#   CONVERT_ARGS="--contrast 0" bash scripts/dev/judge_oneshot.sh …   # options for voxswap convert
#   SELF=1 bash scripts/dev/judge_oneshot.sh …      # each voice into itself (reconstruction), two
#                                                 # sentences a voice (SELF_PER_VOICE=N for more)
#   SHARED=2 bash scripts/dev/judge_oneshot.sh …    # sentences every voice reads (default 40, as
#                                                 # recipes/synth; recipes/kokoro: 2)
#   F0=0 bash scripts/dev/judge_oneshot.sh …        # without the intonation figures (vc --f0)
#   NOISE_SNR=20 bash scripts/dev/judge_oneshot.sh … # sources with white noise at 20 dB SNR
#                                                 # (scripts/dev/add_noise.py; the judge still
#                                                 # compares with the clean source)
#
# Every ordered pair (A, B) of validation speakers, A != B: A's recording of one shared sentence
# is converted with ONE reference utterance of B (B/s0001.wav, about 3 s). The judge compares the
# conversion with two other utterances of B (speaker similarity, verification at its threshold),
# with A's recording (leakage), and runs ASR on both (word error rate of the conversion vs the
# source's). The same is done for Griffin-Lim resynthesis of B's own recording of the sentence:
# the ceiling that the Griffin-Lim vocoder allows. OUT/vc_rows.jsonl holds the judge's score of
# every pair, for scripts/dev/judge_paired.py.
set -euo pipefail
model=$1 valid=$2 out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${JUDGE_PY:-$root/../judge-venv/bin/python}
judge=$root/../shared/judge/judge.py
bin=${VOXSWAP_BIN:-$root/target/release/voxswap}
SHARED=${SHARED:-40}
mkdir -p "$out/converted" "$out/resynth"
mapfile -t spk < <(find -L "$valid" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
mapfile -t text < "$valid/sentences.txt"
printf 'converted\ttargets\tsource\ttext\n' > "$out/vc.tsv"
printf 'converted\ttargets\tsource\ttext\n' > "$out/resynth.tsv"
n=0
for a in "${spk[@]}"; do
  # SELF=1: the source's own voice as the target (another utterance as the reference),
  # SELF_PER_VOICE times: what the model does when there is nothing to convert.
  if [[ ${SELF:-0} == 1 ]]; then targets=(); for b in "${spk[@]:1:${SELF_PER_VOICE:-2}}"; do targets+=("$a"); done
  else targets=(); for b in "${spk[@]}"; do [[ $a == "$b" ]] || targets+=("$b"); done; fi
  for b in "${targets[@]}"; do
    if ((SHARED >= 5)); then
      k=$((2 + n % (SHARED - 3)))         # shared sentences s0002..s(SHARED-2)
      s=$(printf 's%04d' "$k")
      t1=$(printf 's%04d' $((k + 1))); t2=$(printf 's%04d' $((k + 2)))
    else
      # Few shared sentences (recipes/kokoro: 2): the source reads the second, the judge's
      # targets are two of the target's own other sentences.
      k=2; s=s0002
      mapfile -t own < <(ls "$valid/$b" | grep -v -e '^s0001.wav$' -e '^s0002.wav$' | sort | head -n 2)
      t1=${own[0]%.wav}; t2=${own[1]%.wav}
    fi
    c=$out/converted/${a}__${b}__$s.wav
    src=$valid/$a/$s.wav
    if [[ -n ${NOISE_SNR:-} ]]; then
      mkdir -p "$out/noisy"
      src=$out/noisy/${a}__$s.wav
      [[ -s $src ]] || "$py" "$root/scripts/dev/add_noise.py" "$valid/$a/$s.wav" "$src" "$NOISE_SNR" "$n"
    fi
    [[ -s $c ]] || "$bin" convert "$src" -t "$valid/$b/s0001.wav" -o "$c" --model "$model" ${CONVERT_ARGS:-} > /dev/null
    r=$out/resynth/${b}__$s.wav
    [[ ${CEILING:-1} == 0 || -s $r ]] || "$bin" resynth "$valid/$b/$s.wav" -o "$r" > /dev/null
    printf '%s\t%s;%s\t%s\t%s\n' "$c" "$valid/$b/$t1.wav" "$valid/$b/$t2.wav" "$valid/$a/$s.wav" "${text[k-1]}" >> "$out/vc.tsv"
    [[ ${CEILING:-1} == 0 ]] || printf '%s\t%s;%s\t%s\t%s\n' "$r" "$valid/$b/$t1.wav" "$valid/$b/$t2.wav" "$valid/$b/$s.wav" "${text[k-1]}" >> "$out/resynth.tsv"
    n=$((n + 1))
  done
done
echo "$n conversions; judging"
"$py" "$judge" vc "$out/vc.tsv" $([[ ${ASR:-1} == 0 ]] || echo --asr) $([[ ${F0:-1} == 0 ]] || echo --f0) --json "$out/vc.json" --per-pair "$out/vc_rows.jsonl" | tee "$out/vc.txt"
[[ ${CEILING:-1} == 0 ]] || "$py" "$judge" vc "$out/resynth.tsv" --asr --json "$out/resynth.json" | tee "$out/resynth.txt"
