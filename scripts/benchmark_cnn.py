"""The benchmark suite's CNN class-2 originals (cifar10-cnn-class, cpu preset), for the SSD scripts beside this one:
the data split they were trained on and each seed's original (and retraining, where asked)."""

from pathlib import Path

from dcforget.checkpoint import load_checkpoint
from dcforget.datasets import load_data

ORIGINALS = ("original.pt", "original-s1.pt", "original-s2.pt")  # seeds 0, 1, 2


def cnn_folder(out: str) -> Path:
    folders = sorted(Path(out, "artefacts").glob("cnn-*"))
    if len(folders) != 1:
        raise SystemExit(f"error: expected one cnn artefact folder under {out}/artefacts, found {len(folders)}")
    return folders[0]


def benchmark_data():
    return load_data("cifar10", "data", 250, seed=0, val_fraction=0.15)  # the benchmark's cpu preset


def load(path: Path, data):
    return load_checkpoint(path, fingerprint=data.fingerprint()).model.eval()
