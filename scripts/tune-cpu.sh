#!/usr/bin/env bash
# Tune every method of the `benchmark` suite at the cpu preset (issue #15): Optuna NSGA-III on the validation split,
# CIFAR-10, DC-U's MLP, 20 trials x 3 seeds each (`experiments tune`'s cpu defaults), one method after another.
# Resumable at two levels: a method whose tuned file exists is skipped; an interrupted study resumes from its
# journal (STUDIES) and finished unlearning runs are read back from the job store (STORE). The tuned files land in
# configs/tuned/cpu/cifar10-mlp/, where `unlearn --method`, `attacks ulira` and the benchmark suite find them.
# Random forgetting for every method (Deep Unlearn's setting); class forgetting only for the class-only methods,
# the others use their defaults there (the benchmark's report says which options each row used).
#
#   scripts/tune-cpu.sh [--data-dir data] [METHOD ...]     # default: every method below
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=data
if [ "${1:-}" = "--data-dir" ]; then data_dir=$2; shift 2; fi
random_methods=(finetune gradient-ascent srl neggrad-plus bad-teacher salun scrub fisher iu cf-k eu-k fcs msg cfw
                prmq ct kde rni condensed ssd lfssd jit topk-perturb aru mia-guided)
class_methods=(unsir lrp-npp)
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
for m in "${class_methods[@]}"; do selected "$m" && tune "$m" class:2 "$m.class.json"; done
echo "tuned files in $out"
