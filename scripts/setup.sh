#!/usr/bin/env bash
# One-step setup from a fresh clone: virtual environment in .venv, the toolkit and its test extra, and (when the
# project's shared data sits beside the clone) the real CIFAR-10/MNIST files for the real-data test tier.
#
# On a CPU machine this pins torch 2.13.0 + torchvision 0.28.0 first, so nothing pulls a multi-GB CUDA build.
# On a GPU machine, install your CUDA torch/torchvision into .venv first and run with DCFORGET_KEEP_TORCH=1:
# setup.py only asks for lower bounds, so pip keeps the torch you installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ -z "${DCFORGET_KEEP_TORCH:-}" ]; then
  "${pip[@]}" "torch==2.13.0" "torchvision==0.28.0"
fi
"${pip[@]}" -e ".[test]"
shared_data=../shared/data
if [ -x "$shared_data/unpack.sh" ]; then
  "$shared_data/unpack.sh" data >/dev/null
  echo "real datasets unpacked into ./data"
fi
.venv/bin/python -c "import dcforget.tv, kornia, h5py; print('dcforget ready:', dcforget.tv.torchvision.__version__)"
