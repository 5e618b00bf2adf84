#!/usr/bin/env bash
# One-step setup from a fresh clone: virtual environment in .venv, the toolkit and its test extra, and (when the
# project's shared data sits beside the clone) the real CIFAR-10/MNIST files for the real-data test tier, and
# Fashion-MNIST from Debian's package where there is one.
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
"${pip[@]}" -e ".[test,docs]"  # docs: mkdocs build --strict, which .ci/run runs
shared_data=../shared/data
if [ -x "$shared_data/unpack.sh" ]; then
  "$shared_data/unpack.sh" data >/dev/null
  echo "real datasets unpacked into ./data"
fi
# Fashion-MNIST comes from Debian's dataset-fashion-mnist (../shared/data/README.md): installed where this runs as
# root with apt, unpacked to data/FashionMNIST/raw as torchvision expects it; without it the Fashion-MNIST tier skips
fmnist=/usr/share/datasets/fashion-mnist
if [ ! -d "$fmnist" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || echo "note: dataset-fashion-mnist not installed"
fi
if [ -d "$fmnist" ]; then
  mkdir -p data/FashionMNIST/raw
  for f in "$fmnist"/*-ubyte.gz; do  # each file written whole (temp, then rename), so a stopped setup leaves no half file
    dst="data/FashionMNIST/raw/$(basename "$f" .gz)"
    [ -f "$dst" ] || { gunzip -c "$f" > "$dst.part" && mv "$dst.part" "$dst"; }
  done
  echo "Fashion-MNIST unpacked into ./data"
fi
.venv/bin/python -c "import dcforget.tv, kornia, h5py; print('dcforget ready:', dcforget.tv.torchvision.__version__)"
