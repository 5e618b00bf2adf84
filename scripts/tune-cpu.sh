#!/usr/bin/env bash
# Tune every method of the `benchmark` suite at the cpu preset (issue #15): Optuna NSGA-III on the validation split,
# CIFAR-10, DC-U's MLP, 20 trials x 3 seeds each (`experiments tune`'s cpu defaults), one method after another.
# Resumable at two levels: a method whose tuned file exists is skipped; an interrupted study resumes from its
# journal (STUDIES) and finished unlearning runs are read back from the job store (STORE). The tuned files land in
# configs/tuned/cpu/cifar10-mlp/, where `unlearn --method`, `attacks ulira` and the benchmark suite find them.
# Random forgetting for every method (Deep Unlearn's setting); class forgetting for the class-only methods and for
# issue #17's parameter-level methods (CLASS_ALSO); the others use their defaults there (the benchmark's report says
# which options each row used).
#
#   scripts/tune-cpu.sh [--data-dir data] [METHOD ...]     # default: every method below
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=data
if [ "${1:-}" = "--data-dir" ]; then data_dir=$2; shift 2; fi
# the methods come from the benchmark suite's own files, so this list never drifts from what the suite runs
lists=$(.venv/bin/python - <<'PY'
from experiments.runner import load_suite
from unlearn.methods import METHODS
_, exps = load_suite("benchmark", "cpu")
names = list(dict.fromkeys(m for e in exps for m in e.spec["methods"] if METHODS.get(m).space))
print(" ".join(m for m in names if not METHODS.get(m).class_only))
print(" ".join(m for m in names if METHODS.get(m).class_only))
PY
)
read -r -a random_methods <<< "$(sed -n 1p <<< "$lists")"
read -r -a class_methods <<< "$(sed -n 2p <<< "$lists")"
studies=${STUDIES:-runs/studies}
store=${STORE:-runs/jobs}
out=configs/tuned/cpu/cifar10-mlp
want=("$@")
selected() { [ ${#want[@]} -eq 0 ] && return 0; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
tune() {  # METHOD FORGET FILE
  if [ -e "$out/$3" ]; then echo "skip $1 ($out/$3 exists)"; return; fi
  .venv/bin/experiments tune cifar10 --method "$1" --forget "$2" --preset cpu --data-dir "$data_dir" \
    --study "$studies/cifar10-mlp-cpu.journal" --store "$store" -q
}
for m in "${random_methods[@]}"; do selected "$m" && tune "$m" random:0.1 "$m.json"; done
class_also=(ssd lfssd jit topk-perturb aru mia-guided)  # issue #17: tuned for class 2 as well (2026-11-27)
for m in "${class_methods[@]}" "${class_also[@]}"; do selected "$m" && tune "$m" class:2 "$m.class.json"; done
echo "tuned files in $out"
