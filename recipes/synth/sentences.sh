#!/usr/bin/env bash
# sentences.sh N > sentences.txt
# Picks N different English sentences from the usage examples in WordNet 3.0 (Debian package
# wordnet-base; WordNet 3.0 licence: use, copy, modify and distribute for any purpose, with the
# copyright notice "WordNet 3.0 Copyright 2006 by Princeton University"). Kept: examples of 7 to 14
# words made only of letters, spaces, commas and apostrophes; every k-th of them in sorted order, so
# that the same package always gives the same list. Capitalised, with a full stop.
set -euo pipefail
n=${1:?usage: sentences.sh N}
src=/usr/share/wordnet
[[ -r $src/data.noun ]] || { echo "sentences.sh: $src/data.noun missing (apt-get install wordnet-base)" >&2; exit 1; }
all=$(grep -ho '"[^"]*"' "$src"/data.noun "$src"/data.verb "$src"/data.adj "$src"/data.adv | tr -d '"' \
  | awk 'NF>=7 && NF<=14' | grep -E "^[a-z][a-zA-Z ,']*[a-z]$" | LC_ALL=C sort -u)
total=$(wc -l <<<"$all")
(( total >= n )) || { echo "sentences.sh: only $total candidate sentences, asked for $n" >&2; exit 1; }
step=$((total / n))
awk -v s="$step" -v n="$n" 'NR % s == 0 && c < n {c++; print toupper(substr($0,1,1)) substr($0,2) "."}' <<<"$all"
