import os
from pathlib import Path

import pytest
import torch

from dcforget.datasets import load_data

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parent.parent
TINY = "synthetic:classes=4,train=30,test=10,size=16,noise=0.3"


@pytest.fixture(scope="session")
def tiny():
    """4 classes x 30 train / 10 test images of 3x16x16, generated."""
    return load_data(TINY)


@pytest.fixture(scope="session")
def real_data_dir():
    """The real-data tier's data root: $DCFORGET_DATA_DIR or ./data (scripts/setup.sh unpacks it there)."""
    root = Path(os.environ.get("DCFORGET_DATA_DIR") or REPO / "data")
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real CIFAR-10 not found under {root} (scripts/setup.sh unpacks ../shared/data there)")
    return root
