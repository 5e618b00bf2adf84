#!/bin/bash
# validation check of whole_epochs at the throughput suite's setting (CNN, 1,000 images per class, class 2): the
# suite's own original and condensed file, seeds 0-2 (a seed varies the method's randomness only: one original)
# (run at 511a2ad with the artefacts in a clone, /work/run58, and outputs under .wt/we; the artefacts are rebuilt by
# `experiments reproduce throughput --preset cpu --only unlearn --data-dir data --out reports/throughput-cpu`)
cd "$(git rev-parse --show-toplevel)"
for we in 0 12; do for s in 0 1 2; do
  rm -rf reports/choices-drop-rows-cpu/throughput-setting/out/we$we-s$s
  .venv/bin/python -m unlearn.cli --method condensed --option whole_epochs=$we --from-condensed reports/throughput-cpu/artefacts/cnn-a13b1b4b/fdm-K100-df966e0f.h5 --checkpoint reports/throughput-cpu/artefacts/cnn-a13b1b4b/original.pt --forget class:2 --seed $s --data-dir data --out reports/choices-drop-rows-cpu/throughput-setting/out/we$we-s$s --quiet
done; done
echo done
