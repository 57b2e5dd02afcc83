#!/usr/bin/env bash
# Prints every candidate voice the installed synthesisers offer, as "name<TAB>engine<TAB>voice":
#   es_<accent>_<variant>  espeak-ng English accents x variants (accents assigned round-robin)
#   mb_<db>                every installed mbrola database through espeak-ng (its -en voice when
#                          espeak-ng has one, else the language's own voice reading English text)
#   fe_<name>              festival's English voices
# select_voices.sh turns this list into voices.tsv (the voices the judge can tell apart).
#
#   candidates.sh --pitch   instead: every espeak-ng and mbrola candidate above at a low and a
#                           high base pitch (espeak-ng -p 20 and -p 80; 50 is the default), named
#                           <name>_p20 and <name>_p80: more voices for more_voices.sh
set -euo pipefail
if [[ ${1-} == --pitch ]]; then
  "$0" | while IFS=$'\t' read -r name engine voice; do
    [[ $engine == espeak ]] || continue
    for p in 20 80; do printf '%s_p%s\tespeak\t%s -p %s\n' "$name" "$p" "$voice" "$p"; done
  done
  exit 0
fi
accents=(en-us en-gb en-gb-scotland en-gb-x-rp en-029 en-us-nyc en-gb-x-gbclan en-gb-x-gbcwmd)
for a in "${accents[@]}"; do printf 'es_%s_base\tespeak\t%s\n' "$a" "$a"; done
i=0
while read -r v; do
  a=${accents[$((i % ${#accents[@]}))]}
  printf 'es_%s_%s\tespeak\t%s+%s\n' "$a" "$v" "$a" "$v"
  i=$((i + 1))
done < <(espeak-ng --voices=variant | awk 'NR>1{n=$5; sub(/^!v\//, "", n); print n}' | sort -u)
have=$(espeak-ng --voices=mb | awk 'NR>1{n=$5; sub(/^mb\//, "", n); print n}')
for d in /usr/share/mbrola/*/; do
  db=$(basename "$d")
  if grep -qx "mb-$db-en" <<<"$have"; then v=mb-$db-en
  elif grep -qx "mb-$db" <<<"$have"; then v=mb-$db
  else continue; fi
  espeak-ng -v "$v" -q a 2>/dev/null || continue  # a voice espeak-ng cannot load (cn1)
  printf 'mb_%s\tespeak\t%s\n' "$db" "$v"
done
for f in kal_diphone ked_diphone rab_diphone don_diphone cmu_us_slt_arctic_hts; do
  n=${f%%_diphone}; n=${n#cmu_us_}; n=${n%%_arctic_hts}
  [[ -d /usr/share/festival/voices/english/$f || -d /usr/share/festival/voices/us/$f ]] && printf 'fe_%s\tfestival\t%s\n' "$n" "$f"
done
