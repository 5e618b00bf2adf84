"""The forget spec as one object (issue #34): parsed once at the edge, its kind, classes, fraction and path as
properties, a canonical str() that round-trips, validation against the dataset in one place; and the forget sets it
selects pinned against the implementation before the refactor (same seed, same indices)."""

import hashlib

import pytest
import torch

from dcforget.forget import ForgetContext, resolve_forget

PIN_LABELS = torch.arange(1000) * 7919 % 10  # a synthetic, shuffled 10-class training set of 1,000
PIN_NAMES = tuple("abcdefghij")

# sha256 (first 16 hex digits) of the forget indices and their count, computed with the string-parsing
# implementation as it was before issue #34 (commit dbd073d): the refactor must select exactly these
PINNED = {
    ("random:0.1", 0): "7d2fdd33ecafac2d/100",
    ("random:0.1", 1): "2dc72f40bb5d50ae/100",
    ("random:0.1", 7): "a5d3d6b593669c1f/100",
    ("random:0.37", 0): "e83fd454e11720e4/370",
    ("random:0.37", 1): "8e8b8394e6422399/370",
    ("random:0.37", 7): "e17dc0e8cefb6876/370",
    ("class:3", 0): "9ff0cebcd7b58a4c/100",
    ("class:3", 7): "9ff0cebcd7b58a4c/100",
    ("class:d", 0): "9ff0cebcd7b58a4c/100",
    ("classes:1,3:0.25", 0): "e38c4b19a1afadab/50",
    ("classes:1,3:0.25", 1): "ffdf281fa44b34a2/50",
    ("classes:1,3:0.25", 7): "420b06d00de27809/50",
    ("classes:0,9", 0): "36112cd57cfd7903/200",
    ("classes:2,5,7:0.5", 0): "a3ca140577d8c2d7/150",
    ("classes:2,5,7:0.5", 1): "a1af3645a8422717/150",
    ("classes:2,5,7:0.5", 7): "e6b708ad7b8e3890/150",
    ("classes:1,2:1", 0): "c812ec3f2778821d/200",
}


@pytest.mark.parametrize("spec, seed", sorted(PINNED))
def test_same_seed_selects_the_same_forget_set_as_before(spec, seed):
    split = resolve_forget(spec, ForgetContext(PIN_LABELS, 10, seed, PIN_NAMES))
    digest = hashlib.sha256(split.forget.numpy().tobytes()).hexdigest()[:16]
    assert f"{digest}/{len(split.forget)}" == PINNED[(spec, seed)]
