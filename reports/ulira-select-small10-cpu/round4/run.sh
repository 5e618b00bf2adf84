#!/bin/bash
# Round 4: each candidate's U-LiRA on the selection pool (its diagnosis is in the report). Run from a checkout at
# 86dc470 (the candidates' options exist there) with the data in ./data, alone on the machine:
#   reports/ulira-select-small10-cpu/round4/run.sh STORE OUTDIR
# A candidate's jobs cost about 2.5 minutes on the 2-core VM the first time and seconds when read back; the pool's
# references about 10 minutes once.
set -euo pipefail
store=$1 out=$2
while read -r name opts; do
  args=()
  for o in $opts; do args+=(--option "$o"); done
  python -m attacks.cli ulira cifar10 --preset cpu --data-dir data --store "$store" --pool-seed 1 --splits 24 \
    --forget-size 10 --targets 100 --method condensed --untuned "${args[@]}" --out "$out/$name.json" -q --force
done < "$(dirname "$0")/candidates.txt"
