#!/bin/bash
cd /work/run8; export PYTHONPATH=/work/run8
P=/work/main/.wt/paired
U="/work/main/.venv/bin/python -m attacks.cli"
run() { name=$1; shift; args=(); for o in "$@"; do args+=(--option "$o"); done
  $U ulira cifar10 --preset cpu --data-dir data --store /work/main/runs/ulira-store --pool-seed 1 --splits 24 --forget-size 10 --targets 100 --method condensed --untuned "${args[@]}" --out $P/$name.json -q --force 2>&1 | grep -v Warn; }
run defaults
run rank-push forget_match=rank forget_push=confidence forget_weight=0.1
run rank-push-w0.03 forget_match=rank forget_push=confidence forget_weight=0.03
for c in rank-push rank-push-w0.03; do $U ulira-compare $P/$c.json $P/defaults.json --out $P/$c-minus-defaults.json --force 2>&1 | grep -v Warn; done
