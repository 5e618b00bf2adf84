#!/bin/bash
# Round 2: each candidate's U-LiRA on the selection pool, then its diagnosis (reads the jobs back). Run from a
# checkout at 4b21110 (forget_side exists there) with the data in ./data, alone on the machine:
#   reports/ulira-select-small10-cpu/round2/run.sh STORE OUTDIR [CANDIDATES]
# CANDIDATES: one candidate a line, NAME KEY=VALUE ...; default round 2's, candidates.txt beside this script.
# A candidate's jobs cost about 2.5 minutes on the 2-core VM the first time (the originals, condensation and
# unlearning of its 96 forget sets) and seconds when read back; the pool's references cost about 10 minutes once.
set -euo pipefail
store=$1 out=$2
here=$(dirname "$0")
while read -r name opts; do
  args=()
  for o in $opts; do args+=(--option "$o"); done
  python -m attacks.cli ulira cifar10 --preset cpu --data-dir data --store "$store" --pool-seed 1 --splits 24 \
    --forget-size 10 --targets 100 --method condensed --untuned "${args[@]}" --out "$out/$name.json" -q --force
  # shellcheck disable=SC2086
  python "$here/diagnose.py" "$store" "$out/$name.diagnosis.json" $opts
done < "${3:-$here/candidates.txt}"
